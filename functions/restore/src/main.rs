//! Lambda entry point for restores. All logic lives in the library.

fn main() -> Result<(), lambda_runtime::Error> {
    backstop::lambda::main_restore()
}
