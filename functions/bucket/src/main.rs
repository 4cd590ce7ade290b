//! Lambda entry point for the bucket job. All logic lives in the library.

fn main() -> Result<(), lambda_runtime::Error> {
    backstop::lambda::main(backstop::settings::JobKind::Bucket)
}
