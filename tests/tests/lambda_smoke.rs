//! Smoke test of the real function binaries (snapshot, retention, export, validate, restore) through the Lambda Runtime API: `cargo lambda watch`
//! runs it, `cargo lambda invoke` sends the sample events from `events/`.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use backstop::report::RunReport;
use backstop_testkit::local::{self, DEMO_TABLES};
use backstop_tests::Harness;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo lambda watch` in its own process group, stopped (with the function) when dropped.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let pgid = self.0.id() as i32;
        // SAFETY: signals the process group this test created; no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn invoke(port: u16, data_file: &str) -> Output {
    invoke_fn(port, "snapshot", data_file)
}

fn invoke_fn(port: u16, function: &str, data_file: &str) -> Output {
    Command::new("cargo")
        .current_dir(workspace_root())
        .args([
            "lambda",
            "invoke",
            function,
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--data-file",
            data_file,
            "--output-format",
            "json",
        ])
        .output()
        .expect("cargo lambda is installed (pip install -r requirements-dev.txt)")
}

fn report_of(out: &Output) -> RunReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "invoke failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a RunReport ({e}): {stdout}"))
}

#[tokio::test]
async fn snapshot_binary_answers_sample_events_through_the_lambda_runtime_api() {
    let h = Harness::new().await;
    for t in DEMO_TABLES {
        local::seed_demo_table(&h.clients.dynamodb, t, 20)
            .await
            .unwrap();
    }
    let port = free_port();
    let (bucket, _) = h.export_bucket().await;
    // A versioned source bucket of 12 objects and a bucket for its backups.
    let source = h.name("smoke-source");
    let bucket_backups = h.name("smoke-bucket-backups");
    for b in [&source, &bucket_backups] {
        h.clients.s3.create_bucket().bucket(b).send().await.unwrap();
        h.clients
            .s3
            .put_bucket_versioning()
            .bucket(b)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    for i in 0..12 {
        h.clients
            .s3
            .put_object()
            .bucket(&source)
            .key(format!("doc {i}.txt"))
            .body(aws_sdk_s3::primitives::ByteStream::from(vec![b'x'; 10 + i]))
            .send()
            .await
            .unwrap();
    }
    let env_vars = [
        format!("BACKSTOP_BUCKETS={source}"),
        format!("BACKSTOP_BUCKET_BACKUP_BUCKET={bucket_backups}"),
        "BACKSTOP_BUCKET_TIME_BUDGET=0".into(),
        "BACKSTOP_BUCKET_PAGE_SIZE=5".into(),
        format!("BACKSTOP_EXPORT_BUCKET={bucket}"),
        "BACKSTOP_EXPORT_TIME_BUDGET=0".into(),
        "BACKSTOP_EXPORT_FILE_BYTES=1024".into(),
        "BACKSTOP_EXPORT_PAGE_ITEMS=5".into(),
        format!("AWS_ENDPOINT_URL={}", h.stack.endpoint),
        "AWS_REGION=us-east-1".into(),
        "AWS_ACCESS_KEY_ID=backstop-local".into(),
        "AWS_SECRET_ACCESS_KEY=backstop-local".into(),
        "AWS_EC2_METADATA_DISABLED=true".into(),
        format!("BACKSTOP_CATALOG_TABLE={}", h.stack.catalog_table),
        format!("BACKSTOP_TOPIC_ARN={}", h.stack.topic_arn),
        format!("BACKSTOP_METRICS_NAMESPACE={}", h.namespace()),
        format!("BACKSTOP_TABLES={}", DEMO_TABLES.join(",")),
        // The sample events name fixed slots of the past (events/*.json).
        "BACKSTOP_BACKFILL_WINDOW=3650d".into(),
    ];
    let log_path = std::env::temp_dir().join(format!("{}cargo-lambda-watch.log", h.prefix));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--ignore-changes",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    // An env file, not --env-var: values such as the table list hold commas.
    let env_file = std::env::temp_dir().join(format!("{}lambda.env", h.prefix));
    std::fs::write(&env_file, env_vars.join("\n")).unwrap();
    cmd.arg("--env-file").arg(&env_file);
    // SAFETY: setsid and prctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut watch = Watch(
        cmd.spawn()
            .expect("cargo lambda is installed (pip install -r requirements-dev.txt)"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            watch.0.try_wait().unwrap().is_none(),
            "cargo lambda watch exited: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not listen on {port}: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The manual sample: three backups for the slot it names.
    let first = report_of(&invoke(port, "events/snapshot-manual.json"));
    assert_eq!(first.totals.created, 3, "{first:#?}");
    assert_eq!(first.slot.to_string(), "2026-11-22T02:00:00Z");
    for t in DEMO_TABLES {
        let backups = h.backups_of(t).await;
        assert!(
            backups
                .iter()
                .any(|(name, _)| name == &format!("{t}-backstop-20261122T020000Z")),
            "{t}: {backups:?}"
        );
    }

    // The scheduled sample names the same slot: a redelivery, so nothing new.
    let again = report_of(&invoke(port, "events/snapshot-scheduled.json"));
    assert_eq!(again.totals.created, 0, "{again:#?}");
    assert_eq!(again.totals.already_done, 3);

    // The dry-run sample changes nothing.
    let dry = report_of(&invoke(port, "events/snapshot-dry-run.json"));
    assert!(dry.dry_run);
    assert_eq!(dry.totals.created, 0);

    // A bad payload is an invocation error with our error type, not a crash.
    let bad = std::env::temp_dir().join(format!("{}bad-event.json", h.prefix));
    std::fs::write(&bad, r#"{"tabels": ["SalesTable"]}"#).unwrap();
    let out = invoke(port, bad.to_str().unwrap());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("Backstop.InvalidPayload") && all.contains("tabels"),
        "{all}"
    );
    // ...and the function still serves the next invocation.
    let after = report_of(&invoke(port, "events/snapshot-scheduled.json"));
    assert_eq!(after.totals.already_done, 3);

    // The retention function, under the same runtime: its dry-run sample plans every table.
    let plan = report_of(&invoke_fn(
        port,
        "retention",
        "events/retention-dry-run.json",
    ));
    assert_eq!(plan.job, backstop::settings::JobKind::Retention);
    assert!(plan.dry_run);
    assert_eq!(plan.totals.retained, 3, "{plan:#?}");
    assert_eq!(plan.totals.deleted, 0);
    for t in &plan.targets {
        assert!(!t.decisions.is_empty(), "{t:#?}");
    }
    // The export function: a logical export that works one data file per segment per
    // invocation (a time budget of 0), then continues by invoking itself. moto runs no Lambda
    // functions, so that Invoke fails by name, and the test plays Lambda's queue: it delivers
    // the continuation payload through the Runtime API until every table is exported.
    let first = invoke_fn(port, "export", "events/export-logical.json");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        all.contains("Invoke (continuation) on function export failed"),
        "the export tried to continue itself: {all}"
    );
    let continuation = std::env::temp_dir().join(format!("{}continuation.json", h.prefix));
    let catalog =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let slot = backstop::event::ScheduleSlot::parse("2026-11-22T03:00:00Z").unwrap();
    let mut invocations = 1;
    loop {
        let mut left = Vec::new();
        for t in DEMO_TABLES {
            let rec = catalog
                .get(backstop::settings::JobKind::Export, t, &slot)
                .await
                .unwrap()
                .unwrap();
            if rec.status != backstop::catalog::TargetStatus::Done {
                assert_eq!(
                    rec.status,
                    backstop::catalog::TargetStatus::Started,
                    "{rec:?}"
                );
                left.push(t.to_string());
            }
        }
        if left.is_empty() {
            break;
        }
        invocations += 1;
        assert!(
            invocations < 40,
            "not exported after {invocations} invocations: {left:?}"
        );
        std::fs::write(
            &continuation,
            serde_json::json!({"slot": slot.to_string(), "tables": left, "continuation": invocations - 1}).to_string(),
        )
        .unwrap();
        let _ = invoke_fn(port, "export", continuation.to_str().unwrap());
    }
    assert!(
        invocations > 2,
        "the export continued: {invocations} invocations"
    );
    for t in DEMO_TABLES {
        let meta = catalog
            .get(backstop::settings::JobKind::Export, t, &slot)
            .await
            .unwrap()
            .unwrap()
            .export
            .unwrap();
        let expected = backstop::export::logical::fingerprint_table(&h.clients.dynamodb, t)
            .await
            .unwrap();
        assert!(meta.fingerprint.unwrap().same_content(&expected), "{t}");
    }
    // The validate function, on its dry-run sample: every table checked, each export just made
    // read back whole and found as recorded (a dry run records nothing and drills nothing).
    let checked = report_of(&invoke_fn(port, "validate", "events/validate-dry-run.json"));
    assert_eq!(checked.job, backstop::settings::JobKind::Validate);
    assert!(checked.dry_run);
    assert_eq!(checked.totals.validated, 3, "{checked:#?}");
    assert_eq!(checked.totals.exports_verified, 3, "{checked:#?}");
    for t in &checked.targets {
        let v = t.validation.as_ref().unwrap();
        assert!(v.drill.is_none(), "{t:#?}");
        assert!(v.exports.iter().all(|c| c.ok), "{t:#?}");
    }

    // The restore function, on its backup sample: the first invocation starts the restore of
    // the manual sample's backup of SalesTable, the same payload again finishes it (read back,
    // settings applied), and a target outside the restore prefix is refused by name.
    let restore = |file: &str| {
        let out = invoke_fn(port, "restore", file);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "restore invoke failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<backstop::restore::request::Status>(&stdout)
            .unwrap_or_else(|e| panic!("not a restore status ({e}): {stdout}"))
    };
    let started = restore("events/restore-backup.json");
    assert_eq!(
        started.state,
        backstop::restore::request::State::Restoring,
        "{started:?}"
    );
    let done = restore("events/restore-backup.json");
    assert_eq!(
        done.state,
        backstop::restore::request::State::Done,
        "{done:?}"
    );
    let restored =
        backstop::export::logical::fingerprint_table(&h.clients.dynamodb, "restored-SalesTable")
            .await
            .unwrap();
    assert_eq!(restored.items, 20, "{done:?}");
    let outside = std::env::temp_dir().join(format!("{}restore-outside.json", h.prefix));
    std::fs::write(
        &outside,
        r#"{"restore": {"kind": "backup", "table": "SalesTable", "latest": true, "to": "SalesTable-copy"}}"#,
    )
    .unwrap();
    let out = invoke_fn(port, "restore", outside.to_str().unwrap());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && all.contains("Backstop.Refused") && all.contains("restored-"),
        "{all}"
    );

    // The bucket function: one page of 5 versions per invocation (a time budget of 0), then it
    // continues by invoking itself; as with the export, the test delivers the continuation
    // payloads until the slot's summary exists. Then the scheduled sample for the same slot
    // finds it done.
    let bucket_slot = backstop::event::ScheduleSlot::parse("2026-11-22T04:00:00Z").unwrap();
    let first_payload = std::env::temp_dir().join(format!("{}bucket-first.json", h.prefix));
    std::fs::write(&first_payload, r#"{"slot": "2026-11-22T04:00:00Z"}"#).unwrap();
    let first = invoke_fn(port, "bucket", first_payload.to_str().unwrap());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        all.contains("Invoke (continuation) on function bucket failed"),
        "the bucket backup tried to continue itself: {all}"
    );
    let store = backstop::bucket::Store::new(&bucket_backups, "buckets", None);
    let mut invocations = 1;
    while backstop::bucket::backup::read_summary(&h.clients.s3, &store, &source, &bucket_slot)
        .await
        .unwrap()
        .is_none()
    {
        invocations += 1;
        assert!(
            invocations < 20,
            "not backed up after {invocations} invocations"
        );
        std::fs::write(
            &continuation,
            serde_json::json!({"slot": bucket_slot.to_string(), "buckets": [source], "continuation": invocations - 1}).to_string(),
        )
        .unwrap();
        let _ = invoke_fn(port, "bucket", continuation.to_str().unwrap());
    }
    assert!(
        invocations >= 3,
        "12 versions in pages of 5: {invocations} invocations"
    );
    let (summary, entries) =
        backstop::bucket::backup::read_manifest(&h.clients.s3, &store, &source, &bucket_slot)
            .await
            .unwrap();
    assert_eq!((summary.objects, entries.len()), (12, 12), "{summary:?}");
    let again = report_of(&invoke_fn(port, "bucket", "events/bucket-scheduled.json"));
    assert_eq!(again.job, backstop::settings::JobKind::Bucket);
    assert_eq!(again.totals.already_done, 1, "{again:#?}");

    // The summary function, on its daily sample: the 24 hours before 07:00 hold the scheduled
    // snapshot above; a second delivery of the same event publishes nothing again.
    let summary = |file: &str| {
        let out = invoke_fn(port, "summary", file);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "summary invoke failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<serde_json::Value>(&stdout)
            .unwrap_or_else(|e| panic!("not a summary outcome ({e}): {stdout}"))
    };
    let daily = summary("events/summary-daily.json");
    assert_eq!(daily["published"], true, "{daily:#}");
    assert_eq!(
        daily["period"],
        "2026-11-21T07:00:00Z to 2026-11-22T07:00:00Z"
    );
    assert!(
        daily["headline"]
            .as_str()
            .unwrap()
            .contains("3 tables backed up"),
        "{daily:#}"
    );
    assert_eq!(summary("events/summary-daily.json")["published"], false);

    // `backstop --stack`: a CloudFormation stack in moto whose outputs name this test's catalog
    // and topic and the functions `cargo lambda watch` serves; the CLI invokes the deployed
    // snapshot function through Lambda's Invoke API and reads its report, and `backups list`
    // finds the catalog from the stack alone.
    let stack = format!("{}stack", h.prefix);
    let outputs = serde_json::json!({
        "CatalogTableName": {"Value": h.stack.catalog_table},
        "NotificationTopicArn": {"Value": h.stack.topic_arn},
        "SnapshotFunctionName": {"Value": "snapshot"},
    });
    let template = serde_json::json!({
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": format!("{stack}-marker")}}},
        "Outputs": outputs,
    });
    aws_sdk_cloudformation::Client::new(&h.config)
        .create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    let cli = backstop_tests::cli_binary();
    let backstop = |args: &[&str]| {
        let out = Command::new(&cli)
            .args(["--endpoint", &h.stack.endpoint])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "BACKSTOP_LAMBDA_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = backstop(&[
        "--stack",
        &stack,
        "invoke",
        "snapshot",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let planned: RunReport = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(planned.dry_run, "{planned:#?}");
    assert_eq!(planned.job, backstop::settings::JobKind::Snapshot);
    assert_eq!(planned.totals.selected, 3, "{planned:#?}");
    let (code, out, err) = backstop(&["--stack", &stack, "invoke", "snapshot", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("dry run"), "{out}");
    let (code, out, err) = backstop(&["--stack", &stack, "backups", "list", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("SalesTable-backstop-20261122T020000Z"),
        "{out}"
    );
    // A wrong stack name and a missing output are named.
    let (code, _, err) = backstop(&["--stack", "no-such-stack", "backups", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no-such-stack") && err.contains("DescribeStacks"),
        "{err}"
    );
    let (code, _, err) = backstop(&["--stack", &stack, "invoke", "retention", "--dry-run"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no output RetentionFunctionName"), "{err}");

    let _ = std::fs::remove_file(first_payload);
    let _ = std::fs::remove_file(outside);
    let _ = std::fs::remove_file(continuation);
    let _ = std::fs::remove_file(bad);
    let _ = std::fs::remove_file(env_file);
    drop(watch);
    let _ = std::fs::remove_file(log_path);
}
