//! Tracing for the functions and the CLI. The SDK's and HTTP stack's own trace events are
//! dropped whatever `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL` asks for: at trace level the SDK
//! describes each request it sends, and requests hold an ElastiCache AUTH token, a session
//! token, item contents. Today's SDK leaves bodies and signed headers out of that description
//! (the CLI test of an AUTH restore at trace level finds no token either way); this does not
//! depend on it. Their debug events and everything else follow the setting.

use tracing::{Level, Metadata};
use tracing_subscriber::{
    self as subscriber,
    filter::{filter_fn, EnvFilter, LevelFilter},
    fmt::MakeWriter,
    prelude::*,
};

/// The targets whose trace events are never written.
const QUIET_AT_TRACE: &[&str] = &["aws_", "hyper", "h2", "rustls", "tower"];

/// Pure: whether an event or span may be written at all (before the level setting).
pub fn allowed(meta: &Metadata<'_>) -> bool {
    !(*meta.level() == Level::TRACE && QUIET_AT_TRACE.iter().any(|t| meta.target().starts_with(t)))
}

/// The level filter: `setting` (a level or `RUST_LOG` directives), else `default`.
pub fn env_filter(setting: Option<&str>, default: LevelFilter) -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(default.into())
        .parse_lossy(setting.unwrap_or_default())
}

/// Installs the subscriber: `json` lines or text, without time (CloudWatch adds it) when
/// `lambda`.
pub fn init<W>(writer: W, setting: Option<&str>, default: LevelFilter, json: bool, lambda: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = subscriber::registry()
        .with(env_filter(setting, default))
        .with(filter_fn(allowed));
    let layer = subscriber::fmt::layer().with_writer(writer);
    // A second call (tests) keeps the first subscriber.
    let _ = match (json, lambda) {
        (true, _) => base
            .with(layer.json().with_target(false).without_time())
            .try_init(),
        (false, true) => base
            .with(layer.with_target(false).without_time())
            .try_init(),
        (false, false) => base.with(layer).try_init(),
    };
}

/// The Lambda way (as `lambda_runtime::tracing::init_default_subscriber`): the level from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO; JSON lines when `AWS_LAMBDA_LOG_FORMAT`
/// is JSON; to standard output.
pub fn init_lambda() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    init(
        std::io::stdout,
        level.as_deref(),
        LevelFilter::INFO,
        json,
        true,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::{callsite::Identifier, field::FieldSet, metadata::Kind};

    struct Cs;
    impl tracing::callsite::Callsite for Cs {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static CS: Cs = Cs;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        Metadata::new(
            "e",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&CS)),
            Kind::EVENT,
        )
    }

    #[test]
    fn the_sdks_trace_events_are_never_written_and_the_rest_follow_the_setting() {
        assert!(!allowed(&meta(
            "aws_smithy_runtime::client::orchestrator",
            Level::TRACE
        )));
        assert!(!allowed(&meta(
            "aws_sigv4::http_request::sign",
            Level::TRACE
        )));
        assert!(!allowed(&meta("hyper::proto::h1::io", Level::TRACE)));
        assert!(allowed(&meta(
            "aws_smithy_runtime::client::orchestrator",
            Level::DEBUG
        )));
        assert!(allowed(&meta("backstop::db::drill", Level::TRACE)));
    }
}
