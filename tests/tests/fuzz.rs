//! Fuzzed inputs through the real handlers: at least 1,000 generated malformed or hostile
//! payloads per entry point (each job's handler with manual payloads and EventBridge Scheduled
//! Events, the restore function's and the summary function's handlers), each built from a valid
//! payload by one change that makes it invalid: not an object, a field of the wrong type or
//! with a value no setting takes, an unknown field, deep nesting, huge numbers and strings,
//! control characters. Every one must fail with an error that names what is wrong (the field,
//! or what a payload must be), never panic, and leave the emulator as it was: no table, backup,
//! export, object, catalog record or message more or less. Then the `backstop` CLI with 1,000
//! generated argument lists (subcommands, flags, hostile strings, invalid UTF-8): never a panic,
//! and again no state changed.
//!
//! BACKSTOP_FUZZ_CASES sets the number per entry point (default 1,000).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use backstop::jobs::{self, Context};
use backstop::settings::{self, JobKind};
use backstop_testkit::Harness;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

fn cases() -> u32 {
    std::env::var("BACKSTOP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// A runner with a fixed seed (BACKSTOP_FUZZ_SEED, default 1): the same inputs on every run
/// unless asked for others.
fn runner() -> TestRunner {
    let seed: u64 = std::env::var("BACKSTOP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        ),
    )
}

/// A value of any JSON shape: extremes of numbers, long and odd strings, nesting.
fn hostile() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        "[\\u{0}-\\u{1f}\\u{7f}\\u{202e}\\u{feff}\\u{10ffff}]{1,20}".prop_map(Value::String),
        (1000usize..70_000).prop_map(|n| Value::String("9".repeat(n))),
    ];
    let nested = leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        4 => nested,
        // As deep as Lambda's JSON parser lets a payload through (its limit is 128 levels).
        1 => (20usize..120).prop_map(|depth| {
            let mut v = json!("bottom");
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }),
    ]
}

/// A value of any type but this field's, or one of this field's type that no setting takes.
fn wrong_for(field: &'static str) -> BoxedStrategy<Value> {
    match field {
        "slot" | "time" | "period" => prop_oneof![
            hostile().prop_filter("not a string", |v| !v.is_string() && !v.is_null()),
            "[a-z ]{1,20}".prop_map(Value::String),
            Just(json!("2026-02-30T02:00:00Z")),
            Just(json!("+999999-01-01T00:00:00Z")),
        ]
        .boxed(),
        "dry_run" | "retry" | "settings" | "latest" => hostile()
            .prop_filter("not a boolean", |v| !v.is_boolean() && !v.is_null())
            .boxed(),
        // Not a bucket name: too short or long, or a character S3 refuses inside it.
        "buckets" => not_a_name_list(
            prop_oneof![
                Just(String::new()),
                Just("b".repeat(64)),
                "[a-z]{2,5}[A-Z _/#:*?\u{0}\u{e9}][a-z]{2,5}",
            ],
            |t| {
                t.len() < 3
                    || t.len() > 63
                    || t.chars().any(|c| {
                        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
                    })
            },
        ),
        // Not a table name: empty, too long, or a character DynamoDB refuses inside it (spaces
        // around a name are trimmed, as in the settings' lists).
        "tables" => not_a_name_list(
            prop_oneof![
                Just(String::new()),
                Just("t".repeat(256)),
                "[a-z]{2,5}[ /#:*?\\u{0}\\u{e9}][a-z]{2,5}",
            ],
            |t| {
                t.len() < 3
                    || t.len() > 255
                    || t.chars()
                        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            },
        ),
        "kind" | "summary" => prop_oneof![
            hostile().prop_filter("not a string", |v| !v.is_string()),
            "[A-Z]{1,10}".prop_map(Value::String),
        ]
        .boxed(),
        "to" => prop_oneof![
            hostile().prop_filter("not a string", |v| !v.is_string() && !v.is_null()),
            // Outside the restore prefix.
            "[a-z]{1,10}".prop_map(|s| json!(format!("x{s}"))),
        ]
        .boxed(),
        "detail" => hostile()
            .prop_filter("not an object", |v| !v.is_object() && !v.is_null())
            .boxed(),
        _ => hostile()
            .prop_filter("not a string", |v| !v.is_string() && !v.is_null())
            .boxed(),
    }
}

/// A list field given something that is no list of names: not a list, a list with a value that
/// is not a string, or one name that `bad` (once trimmed, as the settings trim) says is none.
fn not_a_name_list(
    names: impl Strategy<Value = String> + 'static,
    bad: fn(&str) -> bool,
) -> BoxedStrategy<Value> {
    prop_oneof![
        hostile().prop_filter("not an array", |v| !v.is_array() && !v.is_null()),
        proptest::collection::vec(
            hostile().prop_filter("not a string", |v| !v.is_string()),
            1..4
        )
        .prop_map(Value::Array),
        names
            .prop_filter("no name once trimmed", move |s| bad(s.trim()))
            .prop_map(|s| json!([s])),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum Change {
    /// The whole payload replaced by something that is not an object.
    Top(Value),
    /// One field (at a path: `["restore", "to"]`) given a value it cannot take.
    Field(Vec<&'static str>, Value),
    /// A field nobody takes, added at a path.
    Unknown(Vec<&'static str>, String, Value),
}

impl Change {
    fn apply(&self, base: &Value) -> Value {
        let mut v = base.clone();
        match self {
            Change::Top(t) => return t.clone(),
            Change::Field(path, value) => {
                let (last, parents) = path.split_last().unwrap();
                let mut at = &mut v;
                for p in parents {
                    at = at.get_mut(*p).unwrap();
                }
                at[*last] = value.clone();
            }
            Change::Unknown(path, key, value) => {
                let mut at = &mut v;
                for p in path {
                    at = at.get_mut(*p).unwrap();
                }
                at[key.as_str()] = value.clone();
            }
        }
        v
    }

    /// What the error must name.
    fn names(&self) -> Vec<String> {
        match self {
            Change::Top(_) => vec!["object".into(), "expected".into()],
            Change::Field(path, _) => {
                let last = path.last().unwrap().to_string();
                match last.as_str() {
                    "detail-type" => vec!["Scheduled Event".into(), "detail-type".into()],
                    "tables" => vec!["tables".into(), "table name".into()],
                    "buckets" => vec!["buckets".into(), "bucket name".into()],
                    "to" => vec!["\"to\"".into(), "`to`".into(), "prefix".into()],
                    _ => vec![last],
                }
            }
            Change::Unknown(_, key, _) => vec![key.clone()],
        }
    }
}

/// One of `fields` (at `path`) made wrong, an unknown field (at `unknown_at`: an EventBridge
/// envelope may gain fields, so there it goes into `detail`, which is Backstop's), or not an
/// object at all.
fn change(
    path: &'static [&'static str],
    fields: &'static [&'static str],
    unknown_at: &'static [&'static str],
) -> BoxedStrategy<Change> {
    let field = proptest::sample::select(fields).prop_flat_map(move |f| {
        wrong_for(f).prop_map(move |v| {
            let mut p = path.to_vec();
            p.push(f);
            Change::Field(p, v)
        })
    });
    let unknown = ("zz_[a-z_]{1,10}", hostile())
        .prop_map(move |(k, v)| Change::Unknown(unknown_at.to_vec(), k, v));
    let top = hostile()
        .prop_filter("not an object", |v| !v.is_object())
        .prop_map(Change::Top);
    prop_oneof![4 => field, 2 => unknown, 1 => top].boxed()
}

/// What an invalid input could have changed, as the emulator holds it.
#[derive(Debug, PartialEq)]
struct State {
    tables: Vec<String>,
    backups: Vec<String>,
    catalog: Vec<String>,
    objects: Vec<(String, String)>,
    exports: usize,
    messages: String,
}

async fn state(h: &Harness, buckets: &[&str], table: &str) -> State {
    let c = &h.clients;
    let mut tables: Vec<String> = c
        .dynamodb
        .list_tables()
        .send()
        .await
        .unwrap()
        .table_names
        .unwrap_or_default()
        .into_iter()
        .collect();
    tables.sort();
    let mut backups: Vec<String> = c
        .dynamodb
        .list_backups()
        .send()
        .await
        .unwrap()
        .backup_summaries
        .unwrap_or_default()
        .into_iter()
        .filter_map(|b| b.backup_arn)
        .collect();
    backups.sort();
    let mut catalog: Vec<String> = c
        .dynamodb
        .scan()
        .table_name(&h.stack.catalog_table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|i| format!("{:?}", i.into_iter().collect::<BTreeMap<_, _>>()))
        .collect();
    catalog.sort();
    let mut objects = vec![];
    for b in buckets {
        let out = c.s3.list_object_versions().bucket(*b).send().await.unwrap();
        for v in out.versions.unwrap_or_default() {
            objects.push((v.key.unwrap_or_default(), v.version_id.unwrap_or_default()));
        }
    }
    objects.sort();
    let arn = c
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .table_arn
        .unwrap();
    let exports = c
        .dynamodb
        .list_exports()
        .table_arn(arn)
        .send()
        .await
        .unwrap()
        .export_summaries
        .unwrap_or_default()
        .len();
    let messages = aws_sdk_sqs::Client::new(&h.config)
        .get_queue_attributes()
        .queue_url(&h.stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default()
        .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .cloned()
        .unwrap_or_default();
    State {
        tables,
        backups,
        catalog,
        objects,
        exports,
        messages,
    }
}

/// Runs `cases()` changed payloads through `call`, each of which must fail naming what is
/// wrong and never panic. Prints how many and the kinds of errors.
type Outcome<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, backstop::Error>> + 'a>>;

fn fuzz<'a>(
    rt: &tokio::runtime::Runtime,
    entry: &str,
    base: &Value,
    strategy: BoxedStrategy<Change>,
    call: &'a dyn Fn(Value) -> Outcome<'a>,
) {
    let mut runner = runner();
    let kinds: std::cell::RefCell<BTreeMap<&'static str, u32>> = Default::default();
    let n = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |change| {
        let payload = change.apply(base);
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(call(payload.clone()))));
        let outcome = outcome.map_err(|_| {
            TestCaseError::fail(format!(
                "{entry}: the handler panicked on {}",
                clip(&payload)
            ))
        })?;
        let err = match outcome {
            Ok(ok) => {
                return Err(TestCaseError::fail(format!(
                    "{entry}: an invalid payload was taken ({change:?}): {} -> {ok}",
                    clip(&payload)
                )))
            }
            Err(e) => e,
        };
        let msg = err.to_string();
        prop_assert!(
            matches!(
                err,
                backstop::Error::Payload(_)
                    | backstop::Error::Setting { .. }
                    | backstop::Error::Refused { .. }
            ),
            "{entry}: {} failed as {} ({msg}), not as an invalid payload",
            clip(&payload),
            err.error_type()
        );
        prop_assert!(
            change.names().iter().any(|w| msg.contains(w.as_str())),
            "{entry}: the error for {change:?} names none of {:?}: {msg}",
            change.names()
        );
        prop_assert!(
            msg.len() < 2_000,
            "{entry}: a {}-byte error message for {}: {}",
            msg.len(),
            clip(&payload),
            clip(&Value::String(msg.clone()))
        );
        *kinds.borrow_mut().entry(err.error_type()).or_default() += 1;
        n.set(n.get() + 1);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    println!(
        "{entry}: {} invalid payloads refused, none panicked: {:?}",
        n.get(),
        kinds.borrow()
    );
}

fn clip(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    } else {
        s
    }
}

const JOB_FIELDS: &[&str] = &["tables", "slot", "dry_run"];
const BUCKET_FIELDS: &[&str] = &["buckets", "slot", "dry_run"];
const EVENT_FIELDS: &[&str] = &["time", "detail-type", "detail"];
const RESTORE_FIELDS: &[&str] = &["kind", "table", "slot", "to", "latest", "settings"];
const SUMMARY_FIELDS: &[&str] = &["summary", "slot", "period"];

#[test]
fn invalid_payloads_fail_naming_what_is_wrong_and_change_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::new());
    let table = h.name("fuzzed");
    let (bucket, export_env) = rt.block_on(h.export_bucket());
    let source = format!("{}source", h.prefix);
    let store = format!("{}store", h.prefix);
    rt.block_on(async {
        h.create_table(&table, 5, &[]).await;
        for b in [&source, &store] {
            h.clients.s3.create_bucket().bucket(b).send().await.unwrap();
        }
        h.clients
            .s3
            .put_object()
            .bucket(&source)
            .key("a.txt")
            .body(b"a".to_vec().into())
            .send()
            .await
            .unwrap();
    });
    let mut extra: Vec<(&str, String)> = export_env;
    extra.push((settings::ENV_TABLES, table.clone()));
    extra.push((settings::ENV_BUCKETS, source.clone()));
    extra.push((settings::ENV_BUCKET_BACKUP_BUCKET, store.clone()));
    let pairs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&pairs),
    };
    let buckets = [bucket.as_str(), source.as_str(), store.as_str()];
    println!(
        "fuzz seed {} ({} cases per entry point)",
        std::env::var("BACKSTOP_FUZZ_SEED").unwrap_or_else(|_| "1".into()),
        cases()
    );
    let before = rt.block_on(state(&h, &buckets, &table));

    let slot = "2026-11-22T02:00:00Z";
    let manual = json!({"tables": [table], "slot": slot, "dry_run": false});
    let scheduled: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/snapshot-scheduled.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let buckets_manual = json!({"buckets": [source], "slot": slot, "dry_run": false});
    for job in JobKind::ALL.iter() {
        let (manual, fields) = if *job == JobKind::Bucket {
            (&buckets_manual, BUCKET_FIELDS)
        } else {
            (&manual, JOB_FIELDS)
        };
        // The unchanged payloads are valid for this job (so a failure below is the change's).
        ctx.prepare(*job, manual, None)
            .unwrap_or_else(|e| panic!("{job}: {e}"));
        ctx.prepare(*job, &scheduled, None)
            .unwrap_or_else(|e| panic!("{job}: {e}"));
        let call = |p: Value| -> Outcome<'_> {
            let ctx = &ctx;
            let job = *job;
            Box::pin(async move {
                jobs::handle(job, ctx, p, None)
                    .await
                    .map(|r| format!("{:?}", r.status))
            })
        };
        fuzz(
            &rt,
            &format!("{job} (manual payload)"),
            manual,
            change(&[], fields, &[]),
            &call,
        );
        fuzz(
            &rt,
            &format!("{job} (Scheduled Event)"),
            &scheduled,
            change(&[], EVENT_FIELDS, &["detail"]),
            &call,
        );
    }

    let restore_settings = backstop::restore::request::RestoreSettings::resolve(&ctx.env).unwrap();
    let restore = json!({"restore": {"kind": "backup", "table": table, "slot": slot, "to": format!("restored-{table}"), "latest": false, "settings": true}});
    backstop::restore::request::parse(&restore).unwrap();
    let call = |p: Value| -> Outcome<'_> {
        let (c, s) = (&ctx.clients, &restore_settings);
        Box::pin(async move {
            backstop::restore::request::handle(c, s, &p, None)
                .await
                .map(|st| format!("{:?}", st.state))
        })
    };
    fuzz(
        &rt,
        "restore",
        &restore,
        change(&["restore"], RESTORE_FIELDS, &["restore"]),
        &call,
    );
    fuzz(
        &rt,
        "restore (envelope)",
        &restore,
        change(&[], &["restore"], &[]),
        &call,
    );

    let summary =
        json!({"summary": "daily", "slot": "2026-11-22T07:00:00Z", "period": "2026-11-21"});
    backstop::summary::SummaryRequest::parse(&summary)
        .unwrap()
        .period(jiff::Timestamp::now())
        .unwrap();
    let call = |p: Value| -> Outcome<'_> {
        let ctx = &ctx;
        Box::pin(async move {
            backstop::summary::handle(&ctx.clients, &ctx.env, &p, jiff::Timestamp::now(), None)
                .await
                .map(|o| o.headline)
        })
    };
    fuzz(
        &rt,
        "summary",
        &summary,
        change(&[], SUMMARY_FIELDS, &[]),
        &call,
    );

    let after = rt.block_on(state(&h, &buckets, &table));
    assert_eq!(
        before, after,
        "an invalid payload changed the emulator's state"
    );
    cli_arguments(&h);
    let after_cli = rt.block_on(state(&h, &buckets, &table));
    assert_eq!(
        before, after_cli,
        "a generated command line changed the emulator's state"
    );
    damaged_exports(&rt, &h, &ctx, &table, &bucket);
    println!("state unchanged: {} tables, {} backups, {} catalog records, {} objects, {} exports, {} messages", after.tables.len(), after.backups.len(), after.catalog.len(), after.objects.len(), after.exports, after.messages);
}

const SUBCOMMANDS: &[&[&str]] = &[
    &["run", "snapshot"],
    &["run", "export"],
    &["run", "retention"],
    &["run", "validate"],
    &["run", "bucket"],
    &["run", "restore"],
    &["run", "summary"],
    &["invoke", "snapshot"],
    &["backups", "list"],
    &["exports", "list"],
    &["retention", "plan"],
    &["restore", "backup"],
    &["restore", "pitr"],
    &["restore", "export"],
    &["restore", "bucket"],
    &["restore", "object"],
    &["diff"],
    &["recover"],
    &["status"],
    &["report"],
    &["validate", "exports"],
    &["drill"],
    &["bucket"],
    &["help"],
    &[],
];
const FLAGS: &[&str] = &[
    "--table",
    "--tables",
    "--slot",
    "--to",
    "--json",
    "--event",
    "--month",
    "--day",
    "--format",
    "-o",
    "--policy",
    "--now",
    "--items",
    "--overwrite",
    "--stack",
    "--time-left",
    "--dry-run",
    "--latest",
    "--arn",
    "--time",
    "--bucket",
    "--key",
    "--catalog",
    "--payload",
    "--hours-ago",
    "--via",
    "-h",
    "--version",
    "--from",
    "--export",
];

#[derive(Debug, Clone)]
enum Arg {
    Word(&'static str),
    Text(String),
    Bytes(Vec<u8>),
    /// A file of hostile content (for --event, --payload, --policy and the like).
    File(Vec<u8>),
}

fn arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        4 => proptest::sample::select(FLAGS).prop_map(Arg::Word),
        2 => "\\PC{0,30}".prop_map(Arg::Text),
        1 => prop_oneof![
            Just(String::new()),
            Just("9".repeat(100_000)),
            Just("-".to_owned()),
            Just("--".to_owned()),
        ]
        .prop_map(Arg::Text),
        1 => proptest::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..20)
            .prop_map(Arg::Bytes),
        1 => prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (1usize..20_000).prop_map(|n| "[".repeat(n).into_bytes()),
            Just(b"{\"tables\": [".to_vec()),
            Just(vec![0xff, 0xfe, b'{', b'}']),
        ]
        .prop_map(Arg::File),
    ]
}

/// The CLI with generated argument lists after a subcommand (`demo` and `local` left out:
/// they start emulators of their own): never a panic (exit 101 or a signal), always an exit
/// status the README documents.
fn cli_arguments(h: &Harness) {
    use std::os::unix::ffi::OsStringExt;
    let cli = backstop_tests::cli_binary();
    let dir = std::env::temp_dir().join(format!("backstop-fuzz-{}", h.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    // Mostly a flag followed by a hostile value, so that most lines get past the parser to
    // the command itself; sometimes anything at all.
    let pairs = proptest::collection::vec(
        (
            proptest::sample::select(FLAGS).prop_map(Arg::Word),
            arg().prop_filter("a value", |a| !matches!(a, Arg::Word(_))),
        ),
        0..4,
    )
    .prop_map(|v| v.into_iter().flat_map(|(f, a)| [f, a]).collect::<Vec<_>>());
    let strategy = (
        proptest::sample::select(SUBCOMMANDS),
        prop_oneof![3 => pairs, 1 => proptest::collection::vec(arg(), 0..6)],
    );
    let mut runner = runner();
    let codes: std::cell::RefCell<BTreeMap<i32, u32>> = Default::default();
    let files = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |(sub, args)| {
        let mut cmd = std::process::Command::new(&cli);
        cmd.arg("--endpoint")
            .arg(&h.stack.endpoint)
            .env_remove("AWS_PROFILE")
            .env_remove(settings::ENV_TABLES)
            .env(settings::ENV_CATALOG_TABLE, &h.stack.catalog_table)
            .env(settings::ENV_TOPIC_ARN, &h.stack.topic_arn)
            .env(settings::ENV_METRICS_NAMESPACE, h.namespace())
            .env("NO_COLOR", "1")
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd.args(sub.iter());
        let mut shown = sub.join(" ");
        for a in &args {
            match a {
                Arg::Word(w) => {
                    cmd.arg(w);
                    shown.push_str(&format!(" {w}"));
                }
                Arg::Text(t) => {
                    cmd.arg(t);
                    shown.push_str(&format!(" {:?}", backstop::report::clip(t, 40)));
                }
                Arg::Bytes(b) => {
                    cmd.arg(std::ffi::OsString::from_vec(b.clone()));
                    shown.push_str(" <bytes>");
                }
                Arg::File(content) => {
                    let n = files.get() + 1;
                    files.set(n);
                    let path = dir.join(format!("input-{n}.json"));
                    std::fs::write(&path, content).unwrap();
                    cmd.arg(&path);
                    shown.push_str(&format!(" <file of {} bytes>", content.len()));
                }
            }
        }
        let out = cmd
            .output()
            .map_err(|e| TestCaseError::fail(format!("{shown}: {e}")))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let Some(code) = out.status.code() else {
            return Err(TestCaseError::fail(format!(
                "backstop {shown}: killed by a signal: {stderr}"
            )));
        };
        prop_assert!(
            !stderr.contains("panicked at") && code != 101,
            "backstop {shown}: panicked (exit {code}): {stderr}"
        );
        prop_assert!(
            [0, 1, 2, 3].contains(&code),
            "backstop {shown}: exit {code}, not one the README documents: {stderr}"
        );
        *codes.borrow_mut().entry(code).or_default() += 1;
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        panic!("{e}");
    }
    println!(
        "backstop CLI: {} generated command lines, none panicked; exit codes {:?}",
        codes.borrow().values().sum::<u32>(),
        codes.borrow()
    );
}

/// A replacement for one object of an export: bytes that no export can hold there.
#[derive(Debug, Clone)]
enum Damage {
    /// The object cut short after this many bytes.
    Truncated(usize),
    /// These bytes instead (random, invalid UTF-8, deep nesting, not gzip).
    Bytes(Vec<u8>),
    /// The JSON document replaced by this value (not the object it must be).
    Json(Value),
    /// One field of the JSON document given this value.
    Field(String, Value),
    /// A data file whose lines are these (gzip, valid as gzip), each a JSON text.
    Lines(Vec<String>),
}

fn damage(fields: Vec<String>) -> BoxedStrategy<Damage> {
    let lines = proptest::collection::vec(
        prop_oneof![
            hostile().prop_map(|v| v.to_string()),
            hostile().prop_map(|v| json!({"Item": {"id": v}}).to_string()),
            hostile()
                .prop_map(|v| json!({"Item": {"id": {"S": "item-00000"}, "n": v}}).to_string()),
            Just(json!({"Item": {"id": {"N": "1e999999"}}}).to_string()),
            Just(json!({"Item": {"id": {"S": "\u{0}"}, "b": {"B": "not base64!"}}}).to_string()),
            (1usize..5000).prop_map(|n| format!("{}{}", "{\"L\":[".repeat(n), "]}".repeat(n))),
            "\\PC{0,80}",
        ],
        0..8,
    )
    .prop_map(Damage::Lines);
    // (An exportType that is null or absent is an export from before incremental ones, read
    // as full: no damage.)
    let field = (proptest::sample::select(fields), hostile())
        .prop_filter("a change", |(f, v)| !(f == "exportType" && v.is_null()))
        .prop_map(|(f, v)| Damage::Field(f, v));
    prop_oneof![
        2 => (0usize..400).prop_map(Damage::Truncated),
        2 => prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            Just(vec![0xff, 0xfe, 0xfd]),
            (1usize..20_000).prop_map(|n| "[".repeat(n).into_bytes()),
        ]
        .prop_map(Damage::Bytes),
        1 => hostile()
            .prop_filter("not an object", |v| !v.is_object())
            .prop_map(Damage::Json),
        3 => field,
        3 => lines,
    ]
    .boxed()
}

fn damaged(original: &[u8], key: &str, d: &Damage) -> Vec<u8> {
    use std::io::Write;
    match d {
        Damage::Truncated(n) => original[..(*n).min(original.len().saturating_sub(1))].to_vec(),
        Damage::Bytes(b) => b.clone(),
        Damage::Json(v) => v.to_string().into_bytes(),
        Damage::Field(f, v) => {
            // manifest-files.json is JSON lines: the first line's field.
            let text = String::from_utf8_lossy(original);
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let Some(mut doc) = lines
                .first()
                .and_then(|l| serde_json::from_str::<Value>(l).ok())
            else {
                return v.to_string().into_bytes();
            };
            doc[f.as_str()] = v.clone();
            lines[0] = doc.to_string();
            lines.join("\n").into_bytes()
        }
        Damage::Lines(lines) => {
            assert!(key.ends_with(".gz"));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for l in lines {
                gz.write_all(l.as_bytes()).unwrap();
                gz.write_all(b"\n").unwrap();
            }
            gz.finish().unwrap()
        }
    }
}

/// Whether a damage left the object saying the same (only a trailing newline cut, or a field
/// given the value it had): then it is no damage.
fn equivalent(a: &[u8], b: &[u8]) -> bool {
    if a.trim_ascii() == b.trim_ascii() {
        return true;
    }
    let lines = |x: &[u8]| -> Option<Vec<Value>> {
        std::str::from_utf8(x)
            .ok()?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    matches!((lines(a), lines(b)), (Some(x), Some(y)) if x == y)
}

/// Damaged exports through the validate job's verifier and the restore function: each of
/// `cases()` changes to one object of a real logical export (a data file, either AWS manifest,
/// Backstop's manifest) must be found, by an error that names the export, and a restore from it
/// must fail in its checking, before any table exists. No panic; the export is put back after
/// each case.
fn damaged_exports(
    rt: &tokio::runtime::Runtime,
    h: &Harness,
    ctx: &Context,
    table: &str,
    bucket: &str,
) {
    let s3 = &h.clients.s3;
    let slot = "2026-11-22T03:00:00Z";
    let report = rt
        .block_on(jobs::handle(
            JobKind::Export,
            ctx,
            json!({"tables": [table], "slot": slot, "mode": "logical"}),
            None,
        ))
        .expect("the export to damage");
    assert_eq!(report.totals.created, 1, "{report:?}");
    let listed = rt
        .block_on(
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix(format!("backstop/{table}/"))
                .send(),
        )
        .unwrap();
    let keys: Vec<String> = listed
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.key)
        .collect();
    let root = keys
        .iter()
        .find_map(|k| k.strip_suffix("/backstop-manifest.json"))
        .expect("a backstop-manifest.json")
        .to_owned();
    println!("damaging the export at {root}: {keys:?}");
    let originals: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|k| {
            let body = rt
                .block_on(async {
                    s3.get_object()
                        .bucket(bucket)
                        .key(k)
                        .send()
                        .await
                        .unwrap()
                        .body
                        .collect()
                        .await
                        .unwrap()
                })
                .into_bytes()
                .to_vec();
            (k.clone(), body)
        })
        .collect();
    let fields_of = |k: &str| -> Vec<String> {
        if k.ends_with("manifest-files.json") {
            ["itemCount", "md5Checksum", "etag", "dataFileS3Key"]
                .map(String::from)
                .to_vec()
        } else if k.ends_with("manifest-summary.json") {
            [
                "itemCount",
                "manifestFilesS3Key",
                "outputFormat",
                "exportType",
            ]
            .map(String::from)
            .to_vec()
        } else if k.ends_with("backstop-manifest.json") {
            ["item_count", "fingerprint", "manifest_summary_key", "mode"]
                .map(String::from)
                .to_vec()
        } else {
            vec![]
        }
    };
    // A data file takes every damage but a field's; a manifest every one but lines'.
    let strategies: Vec<BoxedStrategy<(usize, Damage)>> = originals
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            let fields = fields_of(k);
            let gz = k.ends_with(".gz");
            damage(if fields.is_empty() {
                vec!["-".into()]
            } else {
                fields
            })
            .prop_filter("fits the object", move |d| match d {
                Damage::Field(..) => !gz,
                Damage::Lines(..) => gz,
                _ => true,
            })
            .prop_map(move |d| (i, d))
            .boxed()
        })
        .collect();
    let strategy = proptest::strategy::Union::new(strategies);
    let settings = backstop::restore::request::RestoreSettings::resolve(&ctx.env).unwrap();
    let mut runner = runner();
    let n = std::cell::Cell::new(0u32);
    let attempts = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |(i, d)| {
        let (key, original) = &originals[i];
        let bytes = damaged(original, key, &d);
        prop_assume!(!equivalent(&bytes, original));
        rt.block_on(s3.put_object().bucket(bucket).key(key).body(bytes.clone().into()).send())
            .unwrap();
        // A panic must not leave the export damaged for the next case: put it back first.
        let put_back = || {
            rt.block_on(s3.put_object().bucket(bucket).key(key).body(original.clone().into()).send())
                .unwrap();
        };
        let verified = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(backstop::export::verify::verify(s3, bucket, &root))
        })) {
            Ok(v) => v,
            Err(_) => {
                put_back();
                return Err(TestCaseError::fail(format!("verify panicked on {key} {d:?}")));
            }
        };
        // A new target on every call (shrinking calls again with the same case number).
        let case = attempts.get();
        attempts.set(case + 1);
        let to = format!("restored-{}fuzz-{case}", h.prefix);
        let payload = json!({"restore": {"kind": "export", "table": table, "slot": slot, "to": to}});
        let mut last = None;
        for _ in 0..10 {
            let status = match std::panic::catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(backstop::restore::request::handle(&ctx.clients, &settings, &payload, None))
            })) {
                Ok(s) => s,
                Err(_) => {
                    put_back();
                    return Err(TestCaseError::fail(format!("restore panicked on {key} {d:?}")));
                }
            };
            let done = !matches!(&status, Ok(s) if !matches!(s.state, backstop::restore::request::State::Done | backstop::restore::request::State::Failed));
            last = Some(status);
            if done {
                break;
            }
        }
        let exists = rt
            .block_on(h.clients.dynamodb.describe_table().table_name(&to).send())
            .is_ok();
        // Put the export back before judging, so that a failure leaves it whole.
        rt.block_on(s3.put_object().bucket(bucket).key(key).body(original.clone().into()).send())
            .unwrap();
        let e = match verified {
            Err(e) => e.to_string(),
            Ok(v) => return Err(TestCaseError::fail(format!("{key} damaged ({d:?}) and verified: {v:?}"))),
        };
        prop_assert!(e.contains(&root), "the verifier's error names no object of the export: {e}");
        match last.unwrap() {
            Ok(s) => prop_assert!(
                matches!(s.state, backstop::restore::request::State::Failed),
                "restore from {key} damaged ({d:?}) into {to} ended {:?}: {} (the verifier said: {e})",
                s.state,
                s.message
            ),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        prop_assert!(!exists, "restore from a damaged {key} created {to}");
        n.set(n.get() + 1);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        for (k, original) in &originals {
            let now = s3
                .get_object()
                .bucket(bucket)
                .key(k)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            assert_eq!(&now[..], &original[..], "{k} put back");
        }
    });
    // And whole again: it verifies.
    rt.block_on(backstop::export::verify::verify(s3, bucket, &root))
        .expect("the export, put back, verifies");
    println!(
        "damaged exports: {} cases over {} objects of one export, each found by the verifier and failing the restore before any table exists",
        n.get(),
        originals.len()
    );
}
