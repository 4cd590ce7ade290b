//! Lambda entry point for the retention job. All logic lives in the library.

use backstop::jobs::retention::handle;
use backstop::jobs::{deadline_of, Context};
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Built once per process, outside the handler: warm invocations reuse clients and connections.
    let ctx = Context::from_env().await;
    run(service_fn(|event: LambdaEvent<Value>| {
        let ctx = &ctx;
        async move {
            handle(ctx, event.payload, deadline_of(event.context.deadline))
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.error_type().to_owned(),
                    error_message: e.to_string(),
                })
        }
    }))
    .await
}
