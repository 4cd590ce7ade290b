//! `backstop --stack NAME …`: a deployed stack's outputs (CloudFormation DescribeStacks) stand in
//! for the settings a person would otherwise copy by hand, and `backstop invoke` runs a deployed
//! function synchronously and reads its report.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use backstop::report::RunReport;
use backstop::Error;

use crate::{exit_for, render};

/// Where the Lambda API is, when not where the rest of AWS is (a local `cargo lambda watch`).
pub const ENV_LAMBDA_ENDPOINT: &str = "BACKSTOP_LAMBDA_ENDPOINT";

/// The stack's outputs that stand for settings, and the settings they stand for. A setting
/// already in the environment wins.
pub const OUTPUT_SETTINGS: &[(&str, &str)] = &[
    ("CatalogTableName", backstop::settings::ENV_CATALOG_TABLE),
    ("NotificationTopicArn", backstop::settings::ENV_TOPIC_ARN),
    ("ExportsBucketName", backstop::settings::ENV_EXPORT_BUCKET),
    (
        "BucketBackupsBucketName",
        backstop::settings::ENV_BUCKET_BACKUP_BUCKET,
    ),
];

/// A deployed stack, as DescribeStacks gives it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub outputs: BTreeMap<String, String>,
}

impl Stack {
    /// Reads the stack's outputs. A stack that does not exist, or is not in a state with
    /// outputs, is an error that names it.
    pub async fn describe(config: &aws_config::SdkConfig, name: &str) -> Result<Stack, Error> {
        let cfn = aws_sdk_cloudformation::Client::new(config);
        let out = cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| {
                let mut err = Error::aws("DescribeStacks", format!("stack {name}"), e);
                if let Error::Aws { hint, .. } = &mut err {
                    *hint = format!(
                        "check the stack name ({name}), the region ({}) and the credentials; the CloudFormation console lists the stacks",
                        config.region().map(|r| r.to_string()).unwrap_or_else(|| "unset: set AWS_REGION".into())
                    );
                }
                err
            })?;
        let Some(stack) = out.stacks().first() else {
            return Err(Error::refused(
                "reading the stack's outputs",
                format!("DescribeStacks returned no stack named {name}"),
                "check the stack name and the region",
            ));
        };
        let outputs = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        Ok(Stack {
            name: name.to_owned(),
            outputs,
        })
    }

    /// One output, or an error that names it and the stack.
    pub fn output(&self, key: &str) -> Result<&str, Error> {
        self.outputs.get(key).map(String::as_str).ok_or_else(|| {
            Error::refused(
                "reading the stack's outputs",
                format!(
                    "stack {} has no output {key} (it has: {})",
                    self.name,
                    if self.outputs.is_empty() {
                        "none".to_owned()
                    } else {
                        self.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
                "is it a Backstop stack, deployed from this version's infra/template.yaml?",
            )
        })
    }

    /// The settings its outputs stand for, except those `present` says are set already.
    pub fn settings(&self, present: impl Fn(&str) -> bool) -> Vec<(&'static str, String)> {
        OUTPUT_SETTINGS
            .iter()
            .filter(|(_, env)| !present(env))
            .filter_map(|(out, env)| Some((*env, self.outputs.get(*out)?.clone())))
            .collect()
    }
}

/// The `--stack` and `--endpoint` values from the command line (or `BACKSTOP_STACK`), read before
/// the full parse: the settings they stand for must be in place when clap reads its `env`
/// defaults.
pub fn prescan(args: &[String]) -> (Option<String>, Option<String>) {
    let mut stack = std::env::var("BACKSTOP_STACK")
        .ok()
        .filter(|s| !s.is_empty());
    let mut endpoint = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        for (flag, slot) in [("--stack", &mut stack), ("--endpoint", &mut endpoint)] {
            if a == flag {
                if let Some(v) = it.clone().next() {
                    *slot = Some(v.clone());
                }
            } else if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                *slot = Some(v.to_owned());
            }
        }
    }
    (stack, endpoint)
}

/// Which deployed function a job is, by the template's output.
pub fn function_output(job: &str) -> String {
    let mut c = job.chars();
    let cap: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    format!("{cap}FunctionName")
}

/// `backstop --stack S invoke JOB`: one synchronous invocation of the deployed function, its
/// report printed as `run` prints it, and the exit status `run` would give.
pub async fn invoke(
    config: &aws_config::SdkConfig,
    stack: &Stack,
    job: &str,
    payload: serde_json::Value,
    json: bool,
) -> Result<ExitCode, Error> {
    let function = stack.output(&function_output(job))?.to_owned();
    let mut b = aws_sdk_lambda::config::Builder::from(config);
    if let Ok(url) = std::env::var(ENV_LAMBDA_ENDPOINT) {
        if !url.is_empty() {
            b = b.endpoint_url(url);
        }
    }
    let lambda = aws_sdk_lambda::Client::from_conf(b.build());
    let out = lambda
        .invoke()
        .function_name(&function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::RequestResponse)
        .payload(aws_smithy_types::Blob::new(payload.to_string()))
        .send()
        .await
        .map_err(|e| Error::aws("Invoke", format!("function {function}"), e))?;
    let body = out
        .payload()
        .map(|p| p.as_ref().to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if let Some(kind) = out.function_error() {
        // The function's own error: its type and message (which name what to do).
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let etype = v["errorType"].as_str().unwrap_or(kind);
        eprintln!(
            "error: function {function} failed ({etype}): {}",
            v["errorMessage"].as_str().unwrap_or(&text)
        );
        return Ok(match etype {
            "Backstop.InvalidSetting" | "Backstop.InvalidPayload" | "Backstop.Refused" => {
                ExitCode::from(2)
            }
            _ => ExitCode::from(1),
        });
    }
    match serde_json::from_str::<RunReport>(&text) {
        Ok(report) => {
            render::print_report(&report, json);
            Ok(exit_for(&report))
        }
        // The restore and summary functions answer with their own shapes.
        Err(_) => {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::Local(format!(
                    "function {function} answered with something that is not JSON ({e}): {}",
                    backstop::report::clip(&text, 300)
                ))
            })?;
            println!(
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The payload `invoke` sends: the file's, or one made of `--dry-run` and `--tables`.
pub fn payload(
    file: Option<&Path>,
    dry_run: bool,
    tables: Option<&str>,
) -> Result<serde_json::Value, Error> {
    if let Some(f) = file {
        let mut v = crate::run::read_payload(f)?;
        if dry_run {
            v["dry_run"] = serde_json::Value::Bool(true);
        }
        return Ok(v);
    }
    let mut v = serde_json::json!({});
    if dry_run {
        v["dry_run"] = serde_json::Value::Bool(true);
    }
    if let Some(t) = tables {
        let list: Vec<&str> = t
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        v["tables"] = serde_json::json!(list);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prescan_finds_stack_and_endpoint_in_both_spellings() {
        let args: Vec<String> = [
            "backstop",
            "--stack",
            "prod",
            "--endpoint=http://x",
            "status",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (s, e) = prescan(&args);
        assert_eq!(s.as_deref(), Some("prod"));
        assert_eq!(e.as_deref(), Some("http://x"));
        assert_eq!(function_output("snapshot"), "SnapshotFunctionName");
        let p = payload(None, true, Some("A, B,")).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"dry_run": true, "tables": ["A", "B"]})
        );
    }
}
