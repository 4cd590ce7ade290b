//! The one Lambda entry point every function binary uses: tracing the Lambda way, clients and
//! settings built once per process, then each event through [`crate::jobs::handle`].

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::jobs::{deadline_of, handle, Context};
use crate::settings::JobKind;

/// Errors become the function's error response: a machine-readable type
/// (`Backstop.InvalidSetting`, `Backstop.RunFailed`, ...) and the message, which names the
/// resource and the operation and says what to do.
impl From<crate::Error> for Diagnostic {
    fn from(e: crate::Error) -> Self {
        Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// A function's whole `main`: the runtime (see [`crate::runtime::build`]), then [`serve`].
pub fn main(job: JobKind) -> Result<(), lambda_runtime::Error> {
    crate::runtime::build()?.block_on(serve(job))
}

/// Serves `job` until the Lambda runtime stops the process.
pub async fn serve(job: JobKind) -> Result<(), lambda_runtime::Error> {
    crate::logging::init_lambda();
    // Built once per process, outside the handler: warm invocations reuse clients and connections.
    let ctx = Context::from_env().await;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(job, ctx, event.payload, deadline_of(event.context.deadline))
            .await
            .map_err(Diagnostic::from)
    }))
    .await
}

/// The `restore` function's `main`: restores asked for by payload (see
/// [`crate::restore::request`]). Settings that cannot be used fail every invocation with the
/// reason, rather than the process.
pub fn main_restore() -> Result<(), lambda_runtime::Error> {
    crate::runtime::build()?.block_on(serve_restore())
}

pub async fn serve_restore() -> Result<(), lambda_runtime::Error> {
    use crate::restore::request::{self, RestoreSettings};
    crate::logging::init_lambda();
    let ctx = Context::from_env().await;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        ctx.check().map_err(Diagnostic::from)?;
        let settings = RestoreSettings::resolve(&ctx.env).map_err(Diagnostic::from)?;
        request::handle(
            &ctx.clients,
            &settings,
            &event.payload,
            deadline_of(event.context.deadline),
        )
        .await
        .map_err(Diagnostic::from)
    }))
    .await
}

/// The `summary` function's `main`: the daily and monthly summaries (see [`crate::summary`]).
pub fn main_summary() -> Result<(), lambda_runtime::Error> {
    crate::runtime::build()?.block_on(serve_summary())
}

pub async fn serve_summary() -> Result<(), lambda_runtime::Error> {
    crate::logging::init_lambda();
    let ctx = Context::from_env().await;
    let ctx = &ctx;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        ctx.check().map_err(Diagnostic::from)?;
        crate::summary::handle(
            &ctx.clients,
            &ctx.env,
            &event.payload,
            jiff::Timestamp::now(),
            deadline_of(event.context.deadline),
        )
        .await
        .map_err(Diagnostic::from)
    }))
    .await
}
