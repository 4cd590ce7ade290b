//! One error type for the library. Every error names what it was doing and to which resource,
//! says what to do about it, and knows whether a retry can help.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting (environment variable or payload override) broke a rule.
    #[error("setting {name}: {rule}")]
    Setting { name: String, rule: String },

    /// The invocation payload could not be understood.
    #[error("payload: {0}")]
    Payload(String),

    /// An AWS call failed.
    #[error("{operation} on {resource} failed: {message}{}", hint_suffix(hint))]
    Aws {
        operation: &'static str,
        resource: String,
        /// The AWS error code (for example `ResourceNotFoundException`), when the service sent one.
        code: Option<String>,
        message: String,
        retryable: bool,
        hint: String,
    },

    /// The run finished and was reported, but some targets failed. Returned after publishing so
    /// that Lambda's retry and failure destination see the run as failed.
    #[error("{job} run {run_id} for slot {slot}: {summary}")]
    RunFailed {
        job: String,
        run_id: String,
        slot: String,
        summary: String,
    },

    /// The local emulator stack (demo and tests only).
    #[error("local emulator: {0}")]
    Local(String),

    /// A restore or recovery that would be unsafe, or cannot be done, was refused before
    /// anything was created or written.
    #[error("{operation} refused: {reason}{}", hint_suffix(hint))]
    Refused {
        operation: &'static str,
        reason: String,
        hint: String,
    },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

impl Error {
    pub fn setting(name: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Setting {
            name: name.into(),
            rule: rule.into(),
        }
    }

    pub fn refused(
        operation: &'static str,
        reason: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Refused {
            operation,
            reason: reason.into(),
            hint: hint.into(),
        }
    }

    /// Whether running the same thing again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Aws { retryable, .. } => *retryable,
            Error::RunFailed { .. } => true,
            _ => false,
        }
    }

    /// The AWS error code, if this is an AWS error that carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// A short machine-readable kind, used as the Lambda error type.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Setting { .. } => "Backstop.InvalidSetting",
            Error::Payload(_) => "Backstop.InvalidPayload",
            Error::Aws { .. } => "Backstop.AwsCallFailed",
            Error::RunFailed { .. } => "Backstop.RunFailed",
            Error::Local(_) => "Backstop.LocalEmulator",
            Error::Refused { .. } => "Backstop.Refused",
        }
    }

    /// Turns an SDK error into an [`Error::Aws`] that names the operation and the resource.
    pub fn aws<E>(
        operation: &'static str,
        resource: impl Into<String>,
        err: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let resource = resource.into();
        let (code, message, retryable) = match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().map(str::to_owned);
                // An answer without a body (HEAD) carries only its HTTP status.
                let status = service.raw().status().as_u16();
                let message = match e.message() {
                    Some(m) => m.to_owned(),
                    None => format!("HTTP {status}, no message from the service"),
                };
                let retryable = code.as_deref().is_some_and(is_retryable_code)
                    || (code.is_none() && (status == 429 || status >= 500));
                (code, message, retryable)
            }
            SdkError::TimeoutError(_) => (None, "the request timed out".to_owned(), true),
            SdkError::DispatchFailure(_) => (
                None,
                format!(
                    "could not reach the service ({})",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                true,
            ),
            SdkError::ResponseError(_) => (
                None,
                format!(
                    "unreadable response ({})",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                true,
            ),
            _ => (
                None,
                aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
                false,
            ),
        };
        let hint = hint_for(operation, &resource, code.as_deref(), retryable);
        Error::Aws {
            operation,
            resource,
            code,
            message,
            retryable,
            hint,
        }
    }
}

fn is_retryable_code(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "BackupInUseException"
            | "InternalServerError"
            | "InternalFailure"
            | "InternalError"
            | "ServiceUnavailable"
            | "SlowDown"
            | "RequestTimeout"
            | "TransactionConflictException"
    )
}

fn hint_for(operation: &str, resource: &str, code: Option<&str>, retryable: bool) -> String {
    match code {
        Some("ResourceNotFoundException") => {
            format!("check that {resource} exists in this account and region, or remove it from the selection")
        }
        Some("AccessDeniedException") | Some("AccessDenied") | Some("AuthorizationError") => {
            format!("grant {operation} on {resource} to the function's role")
        }
        Some("BackupInUseException") => {
            "another backup or restore is running on this table; a retry will try again".to_owned()
        }
        Some("ContinuousBackupsUnavailableException") => {
            "point-in-time recovery is still being set up on this table; try again in a few minutes"
                .to_owned()
        }
        Some("InvalidParameter") | Some("InvalidParameterValue") | Some("ValidationException") => {
            "the request was refused as invalid; check the setting that names this resource"
                .to_owned()
        }
        _ if retryable => "a retry may succeed".to_owned(),
        None => "check the network, the region and AWS_ENDPOINT_URL if set".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_error_names_the_setting_and_the_rule() {
        let e = Error::setting(
            "BACKSTOP_CONCURRENCY",
            "must be a whole number from 1 to 50, got \"x\"",
        );
        assert_eq!(
            e.to_string(),
            "setting BACKSTOP_CONCURRENCY: must be a whole number from 1 to 50, got \"x\""
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn throttling_codes_are_retryable_and_not_found_is_not() {
        assert!(is_retryable_code("ThrottlingException"));
        assert!(is_retryable_code("BackupInUseException"));
        assert!(!is_retryable_code("ResourceNotFoundException"));
    }

    #[test]
    fn not_found_hint_says_what_to_do() {
        let hint = hint_for(
            "CreateBackup",
            "table Foo",
            Some("ResourceNotFoundException"),
            false,
        );
        assert!(hint.contains("table Foo exists"), "{hint}");
    }
}
