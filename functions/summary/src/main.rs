//! Lambda entry point for the daily and monthly summaries. All logic lives in the library.

fn main() -> Result<(), lambda_runtime::Error> {
    backstop::lambda::main_summary()
}
