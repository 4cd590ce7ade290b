//! Lambda entry point for the export job. All logic lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    backstop::lambda::serve(backstop::settings::JobKind::Export).await
}
