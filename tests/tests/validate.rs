//! The validate job's parts against moto, as they are built (#11): freshness judged on what the
//! catalog and DescribeContinuousBackups really say.

use backstop::catalog::Catalog;
use backstop::event::JobRequest;
use backstop::freshness::{assess, Limits, Pitr, Violation};
use backstop::jobs::{self, validate::freshness_evidence};
use backstop::report::RunStatus;
use backstop::settings::{JobKind, Settings};
use backstop_tests::Harness;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

#[tokio::test]
async fn freshness_reads_the_catalog_and_pitr_never_backed_up_stale_and_fresh() {
    let h = Harness::new().await;
    let table = h.name("Fresh");
    h.create_table(&table, 10, &[]).await;
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let limits = Limits {
        export: None,
        ..Limits::default()
    };

    // Nothing yet: never backed up, PITR off.
    let e = freshness_evidence(&h.clients, &catalog, &table)
        .await
        .unwrap();
    assert_eq!((e.newest_backup, e.newest_export), (None, None));
    assert_eq!(e.pitr, Pitr::Off);
    let f = assess(Timestamp::now(), &Limits::default(), &e);
    assert_eq!(
        f.violations,
        vec![
            Violation::NeverBackedUp,
            Violation::NeverExported,
            Violation::PitrOff
        ]
    );

    // A snapshot run that turns PITR on: fresh now, stale 27 hours later.
    let request = JobRequest::from_payload(&json!({"tables": [table]}), Timestamp::now()).unwrap();
    let settings = Settings::resolve(
        JobKind::Snapshot,
        &h.env(&[("BACKSTOP_ENABLE_PITR", "true")]),
        &request,
    )
    .unwrap();
    let r = jobs::run(JobKind::Snapshot, &h.clients, &settings, &request).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let e = freshness_evidence(&h.clients, &catalog, &table)
        .await
        .unwrap();
    let made = e.newest_backup.expect("the new backup is seen");
    assert!(
        (Timestamp::now() - SignedDuration::from_mins(5)) < made,
        "{made}"
    );
    assert!(matches!(e.pitr, Pitr::On { .. }), "{:?}", e.pitr);
    let mut e_known_lag = e.clone();
    e_known_lag.pitr = Pitr::On {
        latest_restorable: Some(Timestamp::now()),
    };
    assert!(assess(Timestamp::now(), &limits, &e_known_lag).is_fresh());
    let later = Timestamp::now() + SignedDuration::from_hours(27);
    let f = assess(later, &limits, &e_known_lag);
    assert!(
        matches!(f.violations[0], Violation::BackupStale { age_s, limit_s: 93_600 } if age_s >= 27 * 3600 - 5),
        "{f:?}"
    );
    // Whatever moto says of the latest restorable time, it is judged, never taken as fresh
    // when absent.
    let f = assess(Timestamp::now(), &limits, &e);
    if let Pitr::On {
        latest_restorable: None,
    } = e.pitr
    {
        assert!(!f.is_fresh());
    }

    // A catalog that cannot be read is an error, never "never backed up".
    let missing = Catalog::new((*h.clients.dynamodb).clone(), "no-such-catalog");
    let err = freshness_evidence(&h.clients, &missing, &table)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-catalog"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The validate job end to end.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue as A;
use backstop::drill::{self, DrillCtx, DrillLevel, DrillState};
use backstop::report::{Outcome, RunReport, TargetReport};
use backstop_tests::{backstop_cmd, cli_binary, local, put_every_type, run_job};

/// The current hour as a slot: exports of it are fresh.
fn this_hour() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:00:00Z").to_string()
}

fn target<'a>(r: &'a RunReport, table: &str) -> &'a TargetReport {
    r.targets
        .iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("{table} in {r:#?}"))
}

async fn validate_metric(h: &Harness, metric: &str, table: &str) -> Option<f64> {
    local::metric_sum(&h.config, &h.namespace(), metric, "validate", Some(table))
        .await
        .unwrap()
}

async fn table_exists(h: &Harness, table: &str) -> bool {
    h.clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
}

/// Settings for validate in these tests: exports checked, PITR not (moto's latest restorable
/// time is not AWS's), drills with a prefix of this test's own.
fn validate_env(h: &Harness, bucket_env: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = bucket_env.to_vec();
    env.push(("BACKSTOP_PITR_MAX_LAG", "off".into()));
    env.push(("BACKSTOP_DRILL_TABLE_PREFIX", format!("{}drill-", h.prefix)));
    env
}

#[tokio::test]
async fn a_drill_of_every_type_is_proven_its_table_is_gone_and_exports_are_verified_once() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Drilled");
    h.create_table(&table, 30, &[]).await;
    put_every_type(&h.clients, &table, false).await;
    let slot = json!({"tables": [table], "slot": this_hour()});
    let r = run_job(&h, JobKind::Snapshot, &env, slot.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let r = run_job(&h, JobKind::Export, &env, slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");

    let venv = validate_env(&h, &env);
    let r = run_job(&h, JobKind::Validate, &venv, json!({"tables": [table]})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let t = target(&r, &table);
    assert_eq!(t.outcome, Outcome::Validated { problems: 0 }, "{t:#?}");
    let v = t.validation.as_ref().unwrap();
    assert!(v.stale.is_empty(), "{v:#?}");
    assert_eq!(v.exports.len(), 1, "{v:#?}");
    assert!(v.exports[0].ok && v.exports[0].items == Some(32), "{v:#?}");
    let d = v.drill.as_ref().expect("a first run drills the table");
    assert_eq!(d.level, Some(DrillLevel::Proven), "{d:#?}");
    assert_eq!(d.state, DrillState::Cleaned);
    assert!(d.restore_s.is_some() && d.verify_s.is_some(), "{d:#?}");
    assert!(d.detail.contains("32 items"), "{}", d.detail);
    assert!(
        !table_exists(&h, &d.drill_table).await,
        "the drill table is deleted"
    );
    // What a person reads: the message names the level and the RTO.
    let body = r.email_body();
    assert!(body.contains("drill: PROVEN (restore "), "{body}");

    // The verification is in the catalog; the metrics are published.
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let exports = catalog
        .list_targets(JobKind::Export, Some(&table))
        .await
        .unwrap();
    let verification = exports[0].verification.as_ref().expect("recorded");
    assert!(verification.ok && verification.fingerprint.is_some());
    assert_eq!(
        validate_metric(&h, "RestoreDrillLevel", &table).await,
        Some(2.0)
    );
    assert_eq!(
        validate_metric(&h, "RestoreDrillSuccess", &table).await,
        Some(1.0)
    );
    assert!(validate_metric(&h, "RestoreDrillSeconds", &table)
        .await
        .is_some());
    assert_eq!(
        validate_metric(&h, "FreshnessViolation", &table).await,
        Some(0.0)
    );
    assert!(validate_metric(&h, "BackupAgeSeconds", &table)
        .await
        .is_some());

    // A second run within drill_every: no new drill, no export verified again.
    let r = run_job(&h, JobKind::Validate, &venv, json!({"tables": [table]})).await;
    let v = target(&r, &table).validation.as_ref().unwrap();
    assert!(v.drill.is_none() && v.exports.is_empty(), "{v:#?}");
    assert_eq!(r.status, RunStatus::Succeeded);
    let latest = drill::latest(&catalog, &table).await.unwrap().unwrap();
    assert_eq!(latest.state, DrillState::Cleaned);
}

#[tokio::test]
async fn a_damaged_export_is_reported_with_its_object_recorded_and_pages() {
    use std::io::Read;
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Damaged");
    h.create_table(&table, 25, &[]).await;
    let slot = json!({"tables": [table], "slot": this_hour()});
    assert_eq!(
        run_job(&h, JobKind::Snapshot, &env, slot.clone())
            .await
            .status,
        RunStatus::Succeeded
    );
    let r = run_job(&h, JobKind::Export, &env, slot).await;
    let meta = target(&r, &table).export.clone().unwrap();
    // One line dropped from the data file, gzip and MD5 left as they are: the first check to see
    // it is the ETag/MD5 against the manifest.
    let objects = h
        .clients
        .s3
        .list_objects_v2()
        .bucket(&meta.bucket)
        .prefix(&meta.root)
        .send()
        .await
        .unwrap();
    let data_key = objects
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .find(|k| k.ends_with(".json.gz"))
        .unwrap()
        .to_owned();
    let body = backstop::export::s3io::get(&h.clients.s3, &meta.bucket, &data_key)
        .await
        .unwrap()
        .unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    let shorter: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, shorter.as_bytes()).unwrap();
    h.clients
        .s3
        .put_object()
        .bucket(&meta.bucket)
        .key(&data_key)
        .body(gz.finish().unwrap().into())
        .send()
        .await
        .unwrap();
    local::receive_notifications(&h.config, &h.stack.queue_url, 10, Duration::from_secs(1))
        .await
        .unwrap();

    let mut venv = validate_env(&h, &env);
    venv.push(("BACKSTOP_DRILL_EVERY", "off".into()));
    let r = run_job(&h, JobKind::Validate, &venv, json!({"tables": [table]})).await;
    assert_eq!(r.status, RunStatus::ProblemsFound, "{r:#?}");
    assert!(!r.needs_retry(), "a finding is not retried");
    let t = target(&r, &table);
    assert_eq!(t.outcome, Outcome::Validated { problems: 1 });
    let check = &t.validation.as_ref().unwrap().exports[0];
    assert!(!check.ok);
    assert!(
        check.detail.contains(&data_key),
        "names the object: {}",
        check.detail
    );
    assert_eq!(
        validate_metric(&h, "ExportVerificationFailure", &table).await,
        Some(1.0)
    );
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let record = &catalog
        .list_targets(JobKind::Export, Some(&table))
        .await
        .unwrap()[0];
    assert!(!record.verification.as_ref().unwrap().ok);
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].attributes.get("severity").map(String::as_str),
        Some("error")
    );
    assert!(
        got[0].message.contains("FAILED VERIFICATION") && got[0].message.contains(&table),
        "{}",
        got[0].message
    );
}

#[tokio::test]
async fn a_stale_table_is_reported_published_and_pages_and_a_fresh_one_is_not() {
    let h = Harness::new().await;
    let fresh = h.name("FreshOne");
    let never = h.name("NeverBacked");
    h.create_table(&fresh, 5, &[]).await;
    h.create_table(&never, 5, &[]).await;
    let r = run_job(&h, JobKind::Snapshot, &[], json!({"tables": [fresh]})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    local::receive_notifications(&h.config, &h.stack.queue_url, 10, Duration::from_secs(1))
        .await
        .unwrap();

    let mut venv = validate_env(&h, &[]);
    venv.push(("BACKSTOP_DRILL_EVERY", "off".into()));
    let r = run_job(
        &h,
        JobKind::Validate,
        &venv,
        json!({"tables": [fresh, never]}),
    )
    .await;
    assert_eq!(r.status, RunStatus::ProblemsFound, "{r:#?}");
    let f = target(&r, &fresh);
    assert_eq!(f.outcome, Outcome::Validated { problems: 0 }, "{f:#?}");
    let n = target(&r, &never);
    assert_eq!(n.outcome, Outcome::Validated { problems: 1 }, "{n:#?}");
    assert_eq!(
        n.validation.as_ref().unwrap().stale,
        vec!["no complete backup at all".to_owned()]
    );
    assert_eq!(
        validate_metric(&h, "FreshnessViolation", &never).await,
        Some(1.0)
    );
    assert_eq!(
        validate_metric(&h, "FreshnessViolation", &fresh).await,
        Some(0.0)
    );
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(
        got[0].attributes.get("severity").map(String::as_str),
        Some("error")
    );
    assert!(
        got[0].message.contains(&never) && got[0].message.contains("STALE: no complete backup"),
        "{}",
        got[0].message
    );
    assert!(
        !got[0].message.contains(&format!("{fresh}: 1 PROBLEM")),
        "{}",
        got[0].message
    );

    // The fresh table's backup, held to a limit it is older than: stale, with its age.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    venv.push(("BACKSTOP_BACKUP_MAX_AGE", "1s".into()));
    let r = run_job(&h, JobKind::Validate, &venv, json!({"tables": [fresh]})).await;
    assert_eq!(r.status, RunStatus::ProblemsFound, "{r:#?}");
    let stale = &target(&r, &fresh).validation.as_ref().unwrap().stale;
    assert!(
        stale.len() == 1
            && stale[0].starts_with("newest complete backup is ")
            && stale[0].ends_with("old (limit 1 s)"),
        "{stale:?}"
    );
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(
        got[0].attributes.get("severity").map(String::as_str),
        Some("error")
    );
    assert!(
        got[0].message.contains("STALE: newest complete backup is"),
        "{}",
        got[0].message
    );
}

/// Puts a native full export record whose export time is the backup's creation time, with the
/// fingerprint of the table as it is: the exact witness a drill compares with.
async fn exact_witness(h: &Harness, catalog: &Catalog, table: &str) {
    let backups = catalog
        .list_targets(JobKind::Snapshot, Some(table))
        .await
        .unwrap();
    let created: Timestamp = backups[0]
        .backup_created_at
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let fp = backstop::export::logical::fingerprint_table(&h.clients.dynamodb, table)
        .await
        .unwrap();
    let mut meta = backstop::export::ExportMeta::planned(
        backstop::export::Made::Native,
        backstop::export::ExportType::FullExport,
        "witness-bucket",
        format!("backstop/{table}/x"),
        created,
    );
    meta.fingerprint = Some(fp);
    put_export_record(h, table, "2020-01-01T00:00:00Z", &meta).await;
}

/// Puts a finished export's record into the catalog as the export job writes it, with a
/// verification already recorded (validate leaves it alone): a fixture in Backstop's own format.
async fn put_export_record(
    h: &Harness,
    table: &str,
    slot: &str,
    meta: &backstop::export::ExportMeta,
) {
    h.clients
        .dynamodb
        .put_item()
        .table_name(&h.stack.catalog_table)
        .item("pk", A::S(format!("TARGET#export#{table}")))
        .item("sk", A::S(format!("SLOT#{slot}")))
        .item("job", A::S("export".into()))
        .item("table", A::S(table.into()))
        .item("slot", A::S(slot.into()))
        .item("status", A::S("DONE".into()))
        .item("run_id", A::S("fixture".into()))
        .item("export", A::S(serde_json::to_string(meta).unwrap()))
        .item(
            "verification",
            A::S(
                json!({"at": "2026-11-01T00:00:00Z", "ok": true, "detail": "fixture"}).to_string(),
            ),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_incremental_export_whose_chain_misses_a_link_is_reported_every_run() {
    use backstop::export::{ExportMeta, ExportType, Made};
    let h = Harness::new().await;
    let table = h.name("Chained");
    h.create_table(&table, 5, &[]).await;
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let link = |ty, at: &str, from: Option<&str>| {
        let mut m = ExportMeta::planned(
            Made::Native,
            ty,
            "chain-bucket",
            format!("backstop/{table}/{at}"),
            t(at),
        );
        m.from = from.map(t);
        m.export_arn = Some(format!(
            "arn:aws:dynamodb:us-east-1:123456789012:table/{table}/export/{at}"
        ));
        m
    };
    let full = "2026-11-01T03:00:00Z";
    let missing = "2026-11-02T03:00:00Z";
    let last = "2026-11-03T03:00:00Z";
    put_export_record(&h, &table, full, &link(ExportType::FullExport, full, None)).await;
    // The link ending at `missing` was never recorded: the chain to `last` is broken.
    put_export_record(
        &h,
        &table,
        last,
        &link(ExportType::IncrementalExport, last, Some(missing)),
    )
    .await;
    let mut venv = validate_env(&h, &[]);
    venv.push(("BACKSTOP_DRILL_EVERY", "off".into()));
    venv.push(("BACKSTOP_BACKUP_MAX_AGE", "1000d".into()));
    let r = run_job(&h, JobKind::Validate, &venv, json!({"tables": [table]})).await;
    let v = target(&r, &table).validation.clone().unwrap();
    assert_eq!(v.broken_chains.len(), 1, "{v:#?}");
    assert!(
        v.broken_chains[0].starts_with(last)
            && v.broken_chains[0].contains(&format!("link ending at {missing} is missing")),
        "{v:#?}"
    );
    assert!(
        v.problems()
            .iter()
            .any(|p| p.starts_with("incremental export ")),
        "{:?}",
        v.problems()
    );
    assert_eq!(r.status, RunStatus::ProblemsFound);
    assert_eq!(
        validate_metric(&h, "ExportVerificationFailure", &table).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_drill_table_altered_mid_drill_or_a_restore_that_fails_is_never_a_success() {
    let h = Harness::new().await;
    let table = h.name("Mutated");
    h.create_table(&table, 20, &[]).await;
    let r = run_job(&h, JobKind::Snapshot, &[], json!({"tables": [table]})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    exact_witness(&h, &catalog, &table).await;
    let prefix = format!("{}drill-", h.prefix);
    let ctx = DrillCtx {
        clients: &h.clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "test",
        witness_exports: None,
    };

    // Started → active; then one item of the drill table changes before it is verified.
    let d = ctx
        .begin(&table, false, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Active);
    let first = h
        .clients
        .dynamodb
        .scan()
        .table_name(&d.drill_table)
        .limit(1)
        .send()
        .await
        .unwrap();
    let mut item = first.items()[0].clone();
    item.insert("tampered".into(), A::Bool(true));
    h.clients
        .dynamodb
        .put_item()
        .table_name(&d.drill_table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Verified);
    assert_eq!(d.level, Some(DrillLevel::Failed), "{d:#?}");
    assert!(
        d.detail
            .contains("differs from the export taken at the backup's moment"),
        "{}",
        d.detail
    );
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Cleaned);
    assert!(!table_exists(&h, &d.drill_table).await);

    // Untouched, the same drill is proven.
    let d = ctx
        .begin(
            &table,
            false,
            Timestamp::now() + SignedDuration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    let d = ctx
        .drive(
            d,
            Timestamp::now() + SignedDuration::from_secs(60),
            Duration::from_millis(200),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(d.level, Some(DrillLevel::Proven), "{d:#?}");

    // A backup whose restore fails (deleted behind the catalog's back): failed, never success.
    h.clients
        .dynamodb
        .delete_backup()
        .backup_arn(&d.backup_arn)
        .send()
        .await
        .unwrap();
    let d = ctx
        .begin(
            &table,
            false,
            Timestamp::now() + SignedDuration::from_secs(2),
        )
        .await
        .unwrap()
        .unwrap();
    let d = ctx
        .drive(
            d,
            Timestamp::now() + SignedDuration::from_secs(60),
            Duration::from_millis(200),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(d.level, Some(DrillLevel::Failed), "{d:#?}");
    assert!(
        d.detail.contains("the restore failed") && d.detail.contains("RestoreTableFromBackup"),
        "{}",
        d.detail
    );
    assert_eq!(d.state, DrillState::Cleaned);
}

#[tokio::test]
async fn a_drill_killed_between_its_states_is_taken_on_by_the_next_run_and_its_table_removed() {
    let h = Harness::new().await;
    let table = h.name("Interrupted");
    h.create_table(&table, 10, &[]).await;
    // moto restores every backup as PROVISIONED (it ignores the source's billing mode, which
    // AWS keeps): a provisioned source lets the drill's shape check pass here.
    h.clients
        .dynamodb
        .update_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::Provisioned)
        .provisioned_throughput(
            aws_sdk_dynamodb::types::ProvisionedThroughput::builder()
                .read_capacity_units(5)
                .write_capacity_units(5)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r = run_job(&h, JobKind::Snapshot, &[], json!({"tables": [table]})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let prefix = format!("{}drill-", h.prefix);
    let mut venv = validate_env(&h, &[]);
    // A drill every second: each round below opens a new one.
    venv.push(("BACKSTOP_DRILL_EVERY", "1s".into()));
    let cli = cli_binary();
    let event = std::env::temp_dir().join(format!("{}validate-event.json", h.prefix));
    std::fs::write(&event, json!({"tables": [table]}).to_string()).unwrap();
    // The validate invocation is killed (SIGKILL) while its call that would move the drill on
    // hangs: the restore (state started), the scan of the drill table (active), the deletion
    // of the drill table (verified). The next run finishes the drill and removes its table.
    for (held, killed_in) in [
        ("RestoreTableFromBackup", DrillState::Started),
        ("Scan", DrillState::Active),
        ("DeleteTable", DrillState::Verified),
    ] {
        let proxy = backstop_testkit::fault_proxy::FaultProxy::start(&h.stack.endpoint).await;
        proxy.stall(held, &prefix);
        let mut child = backstop_cmd(&cli, &h, &proxy.endpoint, &venv)
            .args(["run", "validate", "--event"])
            .arg(&event)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !proxy.requests(held).iter().any(|b| b.contains(&prefix)) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("validate ended ({status}) before it called {held} on a drill table");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "validate never called {held} on a drill table"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(proxy);
        let open = drill::latest(&catalog, &table).await.unwrap().unwrap();
        assert_eq!(open.state, killed_in, "killed in {held}: {open:#?}");
        let drill_table = open.drill_table.clone();

        let r = run_job(&h, JobKind::Validate, &venv, json!({"tables": [table]})).await;
        let v = target(&r, &table).validation.clone().unwrap();
        let report = v.drill.expect("the open drill is taken on");
        assert_eq!(
            report.state,
            DrillState::Cleaned,
            "killed in {killed_in:?}: {report:#?}"
        );
        assert_eq!(report.drill_table, drill_table);
        assert_eq!(report.level, Some(DrillLevel::Consistent), "{report:#?}");
        assert!(
            !table_exists(&h, &drill_table).await,
            "killed in {killed_in:?}: {drill_table} left behind"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}

#[tokio::test]
async fn a_native_export_under_way_is_finalized_verified_once_and_later_damage_is_caught() {
    use std::io::{Read, Write};
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "native".to_owned()));
    let table = h.name("NativeV");
    h.create_table(&table, 30, &[]).await;
    h.clients
        .dynamodb
        .update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let slot = this_hour();
    let payload = json!({"tables": [table], "slot": slot});
    let r = run_job(&h, JobKind::Snapshot, &env, payload.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let r = run_job(&h, JobKind::Export, &env, payload).await;
    let t = target(&r, &table);
    assert!(matches!(t.outcome, Outcome::Started { .. }), "{t:#?}");
    let meta = t.export.clone().unwrap();
    let arn = meta.export_arn.clone().unwrap();
    let count = backstop_tests::place_native_manifests(&h, &bucket, &meta.root, &arn, &table).await;
    assert_eq!(count, 30);

    // Validate finalizes it (the export job would only next week), then reads it back.
    let mut venv = validate_env(&h, &env);
    venv.push(("BACKSTOP_DRILL_EVERY", "off".into()));
    let r = run_job(&h, JobKind::Validate, &venv, json!({"tables": [table]})).await;
    let v = target(&r, &table).validation.clone().unwrap();
    assert_eq!(v.finalized, vec![format!("{slot}: finished")], "{v:#?}");
    assert_eq!(v.exports.len(), 1, "{v:#?}");
    assert!(v.exports[0].ok, "{v:#?}");
    assert!(
        v.exports[0].detail.contains("fingerprint recorded now"),
        "{v:#?}"
    );
    assert!(
        v.export_age_s.is_some(),
        "the finalized export counts for freshness: {v:#?}"
    );
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let record = catalog
        .list_targets(JobKind::Export, Some(&table))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(record.status, backstop::catalog::TargetStatus::Done);
    let first = record.verification.clone().unwrap().fingerprint.unwrap();
    let scanned = backstop::export::logical::fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    assert!(
        first.same_content(&scanned),
        "the first verification's fingerprint is the table's"
    );

    // One item changed in the data file, manifests rewritten to agree (MD5 and count): only
    // the recorded fingerprint can tell, and it does.
    let keys = backstop::export::s3io::list(
        &h.clients.s3,
        &bucket,
        &format!("{}/AWSDynamoDB/", meta.root),
    )
    .await
    .unwrap();
    let (data_key, _) = keys
        .iter()
        .find(|(k, _)| k.contains("/data/"))
        .cloned()
        .unwrap();
    let body = backstop::export::s3io::get(&h.clients.s3, &bucket, &data_key)
        .await
        .unwrap()
        .unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    let changed = text.replacen("row ", "ROW ", 1);
    assert_ne!(changed, text);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(changed.as_bytes()).unwrap();
    h.clients
        .s3
        .put_object()
        .bucket(&bucket)
        .key(&data_key)
        .body(gz.finish().unwrap().into())
        .send()
        .await
        .unwrap();
    backstop_tests::place_native_manifests(&h, &bucket, &meta.root, &arn, &table).await;
    let check = backstop::jobs::validate::verify_export(&h.clients, &catalog, &record, false)
        .await
        .unwrap();
    assert!(!check.ok, "{check:#?}");
    assert!(
        check.detail.contains("its first verification recorded"),
        "{}",
        check.detail
    );
}

#[tokio::test]
async fn a_drill_asks_for_an_export_of_the_backups_moment_waits_for_it_and_is_proven_against_it() {
    let h = Harness::new().await;
    let (bucket, _) = h.export_bucket().await;
    let table = h.name("Witnessed");
    h.create_table(&table, 25, &[]).await;
    h.clients
        .dynamodb
        .update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let r = run_job(&h, JobKind::Snapshot, &[], json!({"tables": [table]})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let location = backstop::settings::ExportLocation {
        bucket: bucket.clone(),
        prefix: "backstop".into(),
    };
    let prefix = format!("{}drill-", h.prefix);
    let ctx = DrillCtx {
        clients: &h.clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "witness",
        witness_exports: Some((&location, None)),
    };
    let d = ctx
        .begin(&table, false, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    // Started → active: the export of the backup's moment is asked for, then the restore.
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Active);
    let witness = d
        .witness
        .clone()
        .expect("an export of the backup's moment was asked for");
    assert_eq!(Some(witness.export_time), d.backup_created_at);
    assert!(
        witness.root.starts_with("backstop/~drills/"),
        "{}",
        witness.root
    );
    // The table is ready but AWS has not finished the export (moto writes no manifests): the
    // drill waits, and says so by staying active.
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Active);
    assert!(!d.witness_done && d.restore_s.is_some(), "{d:#?}");
    let arn = witness.export_arn.clone().unwrap();
    backstop_tests::place_native_manifests(&h, &bucket, &witness.root, &arn, &table).await;
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Verified);
    assert_eq!(d.level, Some(DrillLevel::Proven), "{d:#?}");
    assert!(
        d.detail.contains("taken at the backup's moment"),
        "{}",
        d.detail
    );
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Cleaned);
    assert!(!table_exists(&h, &d.drill_table).await);

    // Again, with one item of the drill table changed before it is verified: failed, against
    // the export of the backup's moment.
    let d = ctx
        .begin(
            &table,
            false,
            Timestamp::now() + SignedDuration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    let d = ctx.step(&d).await.unwrap();
    let witness = d.witness.clone().unwrap();
    let first = h
        .clients
        .dynamodb
        .scan()
        .table_name(&d.drill_table)
        .limit(1)
        .send()
        .await
        .unwrap();
    let mut item = first.items()[0].clone();
    item.insert("note".into(), A::S("changed".into()));
    h.clients
        .dynamodb
        .put_item()
        .table_name(&d.drill_table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    backstop_tests::place_native_manifests(
        &h,
        &bucket,
        &witness.root,
        witness.export_arn.as_deref().unwrap(),
        &table,
    )
    .await;
    let d = ctx
        .drive(
            d,
            Timestamp::now() + SignedDuration::from_secs(60),
            Duration::from_millis(200),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(d.level, Some(DrillLevel::Failed), "{d:#?}");
    assert!(
        d.detail
            .contains("differs from the export taken at the backup's moment"),
        "{}",
        d.detail
    );
    assert!(!table_exists(&h, &d.drill_table).await);
}
