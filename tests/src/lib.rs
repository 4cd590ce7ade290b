//! End-to-end tests against the local emulator; their kit is `backstop-testkit`.

pub use backstop_testkit::*;
