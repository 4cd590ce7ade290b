//! Lambda entry point for the retention job. All logic lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    backstop::lambda::serve(backstop::settings::JobKind::Retention).await
}
