//! Lambda entry point for the snapshot job. All logic lives in the library.

fn main() -> Result<(), lambda_runtime::Error> {
    backstop::lambda::main(backstop::settings::JobKind::Snapshot)
}
