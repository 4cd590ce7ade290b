//! `backstop restore backup|pitr|export` against moto, run as an operator runs them: the real
//! CLI binary. Each restore of a table holding every DynamoDB type reads back with the source's
//! fingerprint; refusals create nothing; the loader writes every item under throttling.

use std::io::Read;
use std::process::Output;

use backstop::export::logical::fingerprint_table;
use backstop::report::RunStatus;
use backstop::settings::JobKind;
use backstop_tests::fault_proxy::{Chaos, FaultProxy};
use backstop_tests::{backstop_cmd, cli_binary, put_every_type, run_job, Harness};
use serde_json::json;

fn this_hour() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:00:00Z")
        .to_string()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn exists(h: &Harness, table: &str) -> bool {
    h.clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
}

/// A table with 40 plain items and one of every DynamoDB type, PITR on, backed up and exported
/// (logical) at the current hour. Returns its fingerprint as of then.
async fn source(
    h: &Harness,
    table: &str,
) -> (
    backstop::fingerprint::Fingerprint,
    Vec<(&'static str, String)>,
) {
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    h.create_table(table, 40, &[]).await;
    put_every_type(&h.clients, table, false).await;
    h.clients
        .dynamodb
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let slot = json!({"tables": [table], "slot": this_hour()});
    let r = run_job(h, JobKind::Snapshot, &env, slot.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let r = run_job(h, JobKind::Export, &env, slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    (
        fingerprint_table(&h.clients.dynamodb, table).await.unwrap(),
        env,
    )
}

#[tokio::test]
async fn backup_export_and_pitr_restores_of_every_type_read_back_with_the_sources_fingerprint() {
    let h = Harness::new().await;
    let table = h.name("Source");
    let (expected, _) = source(&h, &table).await;
    let cli = cli_binary();
    let run = |args: &[&str]| {
        backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
            .args(args)
            .output()
            .unwrap()
    };
    for (how, args, says) in [
        (
            "backup",
            vec!["restore", "backup", "--table", &table, "--latest"],
            "the count equals the source's record",
        ),
        (
            "export",
            vec!["restore", "export", "--table", &table, "--latest"],
            "equal to the source's",
        ),
        (
            "pitr",
            vec!["restore", "pitr", "--table", &table, "--latest"],
            "nothing recorded to compare with",
        ),
    ] {
        let to = h.name(&format!("From-{how}"));
        let mut args = args.clone();
        args.extend(["--to", &to]);
        let out = run(&args);
        let shown = text(&out);
        assert!(out.status.success(), "restore {how}: {shown}");
        assert!(shown.contains(says), "restore {how}: {shown}");
        let got = fingerprint_table(&h.clients.dynamodb, &to).await.unwrap();
        assert_eq!(got, expected, "restore {how} into {to}");
        // The new table is refused as a target from now on: it exists.
        let again = run(&args);
        assert_eq!(again.status.code(), Some(2), "{}", text(&again));
        assert!(
            text(&again).contains(&format!("table {to} exists")),
            "{}",
            text(&again)
        );
    }
    // --json prints the comparison for scripts.
    let to = h.name("From-json");
    let out = run(&[
        "restore", "export", "--table", &table, "--latest", "--to", &to, "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fingerprint"], v["expected"], "{v}");
    assert_eq!(v["table"], to.as_str());
}

#[tokio::test]
async fn refusals_name_the_reason_and_create_nothing() {
    let h = Harness::new().await;
    let table = h.name("Refusing");
    let (_, env) = source(&h, &table).await;
    let cli = cli_binary();
    let run = |args: &[&str]| {
        backstop_cmd(&cli, &h, &h.stack.endpoint, &env)
            .args(args)
            .output()
            .unwrap()
    };
    let to = h.name("Never");
    let missing_arn = format!(
        "arn:aws:dynamodb:us-east-1:123456789012:table/{table}/backup/01700000000000-deadbeef"
    );
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "an existing target",
            vec![
                "restore", "export", "--table", &table, "--latest", "--to", &table,
            ],
            "Backstop protects",
        ),
        (
            "the catalog as target",
            vec![
                "restore",
                "backup",
                "--table",
                &table,
                "--latest",
                "--to",
                &h.stack.catalog_table,
            ],
            "protects",
        ),
        (
            "a missing backup",
            vec!["restore", "backup", "--backup", &missing_arn, "--to", &to],
            "RestoreTableFromBackup",
        ),
        (
            "a slot with no backup",
            vec![
                "restore",
                "backup",
                "--table",
                &table,
                "--slot",
                "2020-01-01T00:00:00Z",
                "--to",
                &to,
            ],
            "records no complete backup",
        ),
        (
            "a time outside the PITR window",
            vec![
                "restore",
                "pitr",
                "--table",
                &table,
                "--time",
                "2020-01-01T00:00:00Z",
                "--to",
                &to,
            ],
            "outside table",
        ),
        (
            "two ways of saying when",
            vec![
                "restore",
                "pitr",
                "--table",
                &table,
                "--latest",
                "--hours-ago",
                "1",
                "--to",
                &to,
            ],
            "cannot be used with",
        ),
    ];
    for (what, args, says) in &cases {
        let out = run(args);
        let shown = text(&out);
        assert!(!out.status.success(), "{what}: {shown}");
        assert!(shown.contains(says), "{what}: {shown}");
        assert!(!exists(&h, &to).await, "{what} created {to}");
    }

    // A broken export: one item changed in its data file (gzip and manifest left as they are).
    let catalog =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let record = catalog
        .list_targets(JobKind::Export, Some(&table))
        .await
        .unwrap()
        .remove(0);
    let meta = record.export.unwrap();
    let keys = backstop::export::s3io::list(&h.clients.s3, &meta.bucket, &meta.root)
        .await
        .unwrap();
    let data_key = keys
        .iter()
        .map(|(k, _)| k.clone())
        .find(|k| k.ends_with(".json.gz"))
        .unwrap();
    let body = backstop::export::s3io::get(&h.clients.s3, &meta.bucket, &data_key)
        .await
        .unwrap()
        .unwrap();
    let mut plain = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut plain)
        .unwrap();
    let changed = plain.replacen("\"N\":\"1\"", "\"N\":\"2\"", 1);
    assert_ne!(changed, plain, "the test found a number to change");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, changed.as_bytes()).unwrap();
    h.clients
        .s3
        .put_object()
        .bucket(&meta.bucket)
        .key(&data_key)
        .body(gz.finish().unwrap().into())
        .send()
        .await
        .unwrap();
    let out = run(&[
        "restore", "export", "--table", &table, "--latest", "--to", &to,
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("restore export refused"), "{shown}");
    assert!(shown.contains(&data_key), "names the object: {shown}");
    assert!(!exists(&h, &to).await, "a broken export created {to}");
}

#[tokio::test]
async fn the_loader_writes_every_item_when_a_third_of_its_calls_are_throttled() {
    let h = Harness::new().await;
    let table = h.name("Throttled");
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    h.create_table(&table, 1500, &[]).await;
    put_every_type(&h.clients, &table, false).await;
    let slot = json!({"tables": [table], "slot": this_hour()});
    let r = run_job(&h, JobKind::Export, &env, slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let expected = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();

    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    proxy.chaos(Chaos {
        rate: 0.3,
        lost_share: 0.0,
        seed: 7,
        operations: vec!["BatchWriteItem".into()],
    });
    let to = h.name("Loaded");
    let mut cmd = backstop_cmd(&cli_binary(), &h, &proxy.endpoint, &[]);
    cmd.args([
        "restore", "export", "--table", &table, "--latest", "--to", &to,
    ]);
    // Awaited, not blocking: the proxy answers from this test's own runtime.
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("equal to the source's"), "{shown}");
    let counts = proxy.counts();
    assert!(
        counts.faults * 5 >= counts.calls && counts.faults > 10,
        "throttled {} of {} BatchWriteItem calls",
        counts.faults,
        counts.calls
    );
    assert!(shown.contains("calls sent again"), "{shown}");
    assert_eq!(
        fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
        expected
    );
}

#[tokio::test]
async fn an_export_restored_by_import_table_reads_back_with_its_fingerprint_and_local_indexes_are_loaded(
) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue as A, BillingMode, KeySchemaElement, KeyType,
        LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType,
    };
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    // Every type moto's ImportTable parser reads (see put_every_type).
    let table = h.name("Importable");
    h.create_table(&table, 60, &[]).await;
    put_every_type(&h.clients, &table, true).await;
    // A table with a local secondary index, which ImportTable cannot create.
    let local = h.name("WithLsi");
    let def = |n: &str, t| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .unwrap()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    h.clients
        .dynamodb
        .create_table()
        .table_name(&local)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def("pk", ScalarAttributeType::S))
        .attribute_definitions(def("sk", ScalarAttributeType::N))
        .attribute_definitions(def("n", ScalarAttributeType::N))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name("byN")
                .key_schema(key("pk", KeyType::Hash))
                .key_schema(key("n", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for i in 0..20 {
        h.clients
            .dynamodb
            .put_item()
            .table_name(&local)
            .item("pk", A::S(format!("p{}", i % 3)))
            .item("sk", A::N(i.to_string()))
            .item("n", A::N((100 - i).to_string()))
            .send()
            .await
            .unwrap();
    }
    let slot = json!({"tables": [table, local], "slot": this_hour()});
    let r = run_job(&h, JobKind::Export, &env, slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");

    let cli = cli_binary();
    for (source, says, to) in [
        (&table, "imported by ImportTable arn:", "Imported"),
        (
            &local,
            "cannot create local secondary indexes (byN): loaded",
            "Loaded",
        ),
    ] {
        let expected = fingerprint_table(&h.clients.dynamodb, source)
            .await
            .unwrap();
        let to = h.name(to);
        let out = backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
            .args([
                "restore", "export", "--table", source, "--latest", "--to", &to, "--via", "import",
            ])
            .output()
            .unwrap();
        let shown = text(&out);
        assert!(out.status.success(), "{source}: {shown}");
        assert!(shown.contains(says), "{source}: {shown}");
        assert!(shown.contains("equal to the source's"), "{source}: {shown}");
        assert_eq!(
            fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
            expected,
            "{source} into {to}"
        );
        let d = h
            .clients
            .dynamodb
            .describe_table()
            .table_name(&to)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let lsis: Vec<&str> = d
            .local_secondary_indexes()
            .iter()
            .map(|l| l.index_name().unwrap_or_default())
            .collect();
        if source == &local {
            assert_eq!(lsis, ["byN"], "{to} keeps the local index");
        }
    }
}

/// TTL, stream, PITR, deletion protection and tags as a restore loses them, re-applied from
/// what the snapshot job recorded, and read back from the new table.
#[tokio::test]
async fn a_restore_re_applies_the_settings_recorded_at_backup_time_and_reads_them_back() {
    use aws_sdk_dynamodb::types::{
        PointInTimeRecoverySpecification, StreamSpecification, StreamViewType, Tag,
        TimeToLiveSpecification,
    };
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Settled");
    h.create_table(&table, 20, &[("team", "sales"), ("cost-centre", "42")])
        .await;
    let ddb = &h.clients.dynamodb;
    ddb.update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    ddb.update_table()
        .table_name(&table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .deletion_protection_enabled(true)
        .send()
        .await
        .unwrap();
    ddb.update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let slot = json!({"tables": [table], "slot": this_hour()});
    let r = run_job(&h, JobKind::Snapshot, &env, slot.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let r = run_job(&h, JobKind::Export, &env, slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    // After the backup the source changes: the restore applies what was recorded then.
    let arn = ddb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .table_arn
        .unwrap();
    ddb.tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("added").value("later").build().unwrap())
        .send()
        .await
        .unwrap();

    let cli = cli_binary();
    let run = |args: &[&str]| {
        backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
            .args(args)
            .output()
            .unwrap()
    };
    for (how, args) in [
        (
            "backup",
            vec!["restore", "backup", "--table", &table, "--latest"],
        ),
        (
            "export",
            vec!["restore", "export", "--table", &table, "--latest"],
        ),
    ] {
        let to = h.name(&format!("Settled-{how}"));
        let mut args = args.clone();
        args.extend(["--to", &to]);
        let out = run(&args);
        let shown = text(&out);
        assert!(out.status.success(), "{how}: {shown}");
        for line in [
            "setting TTL: applied (attribute expires)",
            "setting stream: applied (NEW_AND_OLD_IMAGES",
            "setting PITR: applied (on)",
            "setting tags: applied (cost-centre, team)",
            "setting deletion protection: applied (on)",
            "CloudWatch alarms and IAM policies",
        ] {
            assert!(shown.contains(line), "{how}: {line:?} in {shown}");
        }
        // Read back from the new table.
        let d = ddb
            .describe_table()
            .table_name(&to)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        assert_eq!(d.deletion_protection_enabled, Some(true), "{how}");
        let stream = d.stream_specification.expect("a stream");
        assert!(stream.stream_enabled, "{how}");
        assert_eq!(
            stream.stream_view_type,
            Some(StreamViewType::NewAndOldImages)
        );
        let ttl = ddb
            .describe_time_to_live()
            .table_name(&to)
            .send()
            .await
            .unwrap()
            .time_to_live_description
            .unwrap();
        assert_eq!(ttl.attribute_name.as_deref(), Some("expires"), "{how}");
        let pitr = restore_pitr_on(&h, &to).await;
        assert!(pitr, "{how}: PITR on");
        let tags: Vec<(String, String)> = ddb
            .list_tags_of_resource()
            .resource_arn(d.table_arn.unwrap())
            .send()
            .await
            .unwrap()
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        let mut tags = tags;
        tags.sort();
        assert_eq!(
            tags,
            [
                ("cost-centre".to_owned(), "42".to_owned()),
                ("team".to_owned(), "sales".to_owned())
            ],
            "{how}: the tags at backup time, not the one added later"
        );
    }

    // --no-settings leaves them off.
    let to = h.name("Bare");
    let out = run(&[
        "restore",
        "backup",
        "--table",
        &table,
        "--latest",
        "--to",
        &to,
        "--no-settings",
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(!shown.contains("setting "), "{shown}");
    // What the restore alone leaves: none of it (so the checks above see Backstop's work).
    assert!(!restore_pitr_on(&h, &to).await);
    let d = ddb
        .describe_table()
        .table_name(&to)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_ne!(d.deletion_protection_enabled, Some(true));
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&to)
        .send()
        .await
        .unwrap()
        .time_to_live_description;
    assert_ne!(
        ttl.and_then(|t| t.attribute_name).as_deref(),
        Some("expires")
    );
}

async fn restore_pitr_on(h: &Harness, table: &str) -> bool {
    h.clients
        .dynamodb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
        .and_then(|p| p.point_in_time_recovery_status)
        .is_some_and(|s| s.as_str() == "ENABLED")
}

/// The runbooks' accidental deletion: after a backup, 37 items are deleted from the live table
/// and 5 changed. The restored copy diffed against it shows exactly those; recover puts back the
/// deleted ones and nothing else, and never overwrites an item written after the diff.
#[tokio::test]
async fn diff_finds_the_deleted_and_changed_items_and_recover_puts_back_only_what_was_lost() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use backstop::diff::{self, Side};
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let live = h.name("Live");
    h.create_table(&live, 300, &[]).await;
    put_every_type(&h.clients, &live, false).await;
    let slot = json!({"tables": [live], "slot": this_hour()});
    assert_eq!(
        run_job(&h, JobKind::Snapshot, &env, slot.clone())
            .await
            .status,
        RunStatus::Succeeded
    );
    assert_eq!(
        run_job(&h, JobKind::Export, &env, slot).await.status,
        RunStatus::Succeeded
    );
    let cli = cli_binary();
    let run = |args: &[&str]| {
        backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
            .args(args)
            .output()
            .unwrap()
    };
    let restored = h.name("Restored");
    let out = run(&[
        "restore", "backup", "--table", &live, "--latest", "--to", &restored,
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // The accident.
    let ddb = &h.clients.dynamodb;
    let id = |i: usize| format!("item-{i:05}");
    for i in 0..37 {
        ddb.delete_item()
            .table_name(&live)
            .key("id", A::S(id(i)))
            .send()
            .await
            .unwrap();
    }
    for i in 100..105 {
        ddb.update_item()
            .table_name(&live)
            .key("id", A::S(id(i)))
            .update_expression("SET note = :n")
            .expression_attribute_values(":n", A::S("changed".into()))
            .send()
            .await
            .unwrap();
    }

    // diff: exactly those, as JSON lines; exit 1.
    let out = run(&["diff", "--left", &restored, "--right", &live]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys_of = |kind: &str| {
        let mut k: Vec<String> = lines
            .iter()
            .filter(|l| l["diff"] == kind)
            .map(|l| l["key"]["id"]["S"].as_str().unwrap().to_owned())
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys_of("only_left"), (0..37).map(id).collect::<Vec<_>>());
    assert_eq!(keys_of("changed"), (100..105).map(id).collect::<Vec<_>>());
    assert_eq!(lines.len(), 42, "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "diff: 37 only in {restored}, 0 only in {live}, 5 changed, 260 equal"
        )),
        "{}",
        text(&out)
    );
    // --items carries the items; an export compares with the table it was taken from.
    let out = run(&["diff", "--left", &restored, "--right", &live, "--items"]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(
        first["left"].is_object() || first["right"].is_object(),
        "{first}"
    );
    let out = run(&[
        "diff",
        "--left",
        &format!("export:{live}@latest"),
        "--right",
        &restored,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("0 changed, 302 equal"),
        "{}",
        text(&out)
    );

    // A dry run writes nothing.
    let out = run(&[
        "recover",
        "--from",
        &restored,
        "--into",
        &live,
        "--deleted",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("37 items would be put back"),
        "{}",
        text(&out)
    );

    // Recover, with a write to one of the deleted keys between the diff and the writes.
    let from = Side::Table(restored.clone());
    let (summary, todo) = diff::plan_recovery(&h.clients, &from, &live, true, false)
        .await
        .unwrap();
    assert_eq!(todo.len(), 37);
    ddb.put_item()
        .table_name(&live)
        .item("id", A::S(id(3)))
        .item("note", A::S("written after the diff".into()))
        .send()
        .await
        .unwrap();
    let r = diff::apply_recovery(ddb, &live, summary, todo, false)
        .await
        .unwrap();
    assert_eq!(r.put_back, 36, "{r:?}");
    assert_eq!(r.skipped, [format!("{{\"id\":{{\"S\":\"{}\"}}}}", id(3))]);
    let live_ref = live.as_str();
    let note = |i: usize| async move {
        ddb.get_item()
            .table_name(live_ref)
            .key("id", A::S(id(i)))
            .send()
            .await
            .unwrap()
            .item
            .and_then(|mut it| it.remove("note"))
    };
    assert_eq!(note(3).await, Some(A::S("written after the diff".into())));
    // Nothing else was touched: the changed items keep their change.
    for i in 100..105 {
        assert_eq!(note(i).await, Some(A::S("changed".into())), "{}", id(i));
    }
    let out = run(&["diff", "--left", &restored, "--right", &live]);
    assert!(
        text(&out).contains("0 only in") && text(&out).contains("6 changed"),
        "{}",
        text(&out)
    );

    // --changed overwrites the rest; the live table is the backup again.
    let out = run(&["recover", "--from", &restored, "--into", &live, "--changed"]);
    assert!(text(&out).contains("6 items overwritten"), "{}", text(&out));
    assert_eq!(
        fingerprint_table(ddb, &live).await.unwrap(),
        fingerprint_table(ddb, &restored).await.unwrap()
    );
}

/// Places one native export in AWS's documented layout (data file of `lines`, gzip;
/// manifest-files.json; manifest-summary.json) and its finished record in the catalog, as the
/// export job records a native export it finalized. Returns nothing: the catalog is the index.
async fn place_native_link(
    h: &Harness,
    bucket: &str,
    table: &str,
    at: &str,
    from: Option<&str>,
    lines: &[serde_json::Value],
) {
    use base64::Engine;
    use md5::Digest;
    let full = from.is_none();
    let root = format!("backstop/{table}/{at}");
    let id = format!(
        "0{}-{}",
        at.replace([':', '-'], ""),
        if full { "f" } else { "i" }
    );
    let dir = format!("{root}/AWSDynamoDB/{id}");
    let data_key = format!("{dir}/data/part-0000.json.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in lines {
        std::io::Write::write_all(&mut gz, format!("{l}\n").as_bytes()).unwrap();
    }
    let body = gz.finish().unwrap();
    let etag = h
        .clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(&data_key)
        .body(body.clone().into())
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    let arn = format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}/export/{id}");
    let files = json!({
        "itemCount": lines.len(),
        "md5Checksum": base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body)),
        "etag": etag,
        "dataFileS3Key": data_key,
    });
    let mut summary = json!({
        "version": "2023-08-01", "exportArn": arn,
        "startTime": at, "endTime": at,
        "tableArn": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}"),
        "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
        "s3Bucket": bucket, "s3Prefix": root,
        "s3SseAlgorithm": "AES256",
        "manifestFilesS3Key": format!("{dir}/manifest-files.json"),
        "billedSizeBytes": body.len(), "itemCount": lines.len(),
        "outputFormat": "DYNAMODB_JSON",
        "exportType": if full { "FULL_EXPORT" } else { "INCREMENTAL_EXPORT" },
    });
    match from {
        None => summary["exportTime"] = json!(at),
        Some(f) => {
            summary["incrementalExportSpecification"] = json!({
                "exportFromTime": f, "exportToTime": at, "exportViewType": "NEW_AND_OLD_IMAGES"
            })
        }
    }
    for (name, text) in [
        ("manifest-files.json", format!("{files}\n")),
        ("manifest-summary.json", summary.to_string()),
    ] {
        h.clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(format!("{dir}/{name}"))
            .body(text.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let mut meta = backstop::export::ExportMeta::planned(
        backstop::export::Made::Native,
        if full {
            backstop::export::ExportType::FullExport
        } else {
            backstop::export::ExportType::IncrementalExport
        },
        bucket,
        root,
        t(at),
    );
    meta.from = from.map(t);
    meta.export_id = id;
    meta.export_arn = Some(arn);
    meta.manifest_key = Some(format!("{dir}/manifest-summary.json"));
    meta.item_count = Some(lines.len() as u64);
    use aws_sdk_dynamodb::types::AttributeValue as A;
    h.clients
        .dynamodb
        .put_item()
        .table_name(&h.stack.catalog_table)
        .item("pk", A::S(format!("TARGET#export#{table}")))
        .item("sk", A::S(format!("SLOT#{at}")))
        .item("kind", A::S("target".into()))
        .item("job", A::S("export".into()))
        .item("table", A::S(table.into()))
        .item("slot", A::S(at.into()))
        .item("status", A::S("DONE".into()))
        .item("run_id", A::S("fixture".into()))
        .item("export", A::S(serde_json::to_string(&meta).unwrap()))
        .send()
        .await
        .unwrap();
}

/// A native full export and two incrementals in AWS's documented formats (full: `{"Item":…}`
/// lines; incremental: `{"Metadata":…,"Keys":…,"OldImage":…,"NewImage":…}`, no NewImage for a
/// delete): the chain restore puts, updates and deletes exactly, and `--until` stops at the
/// last link before it.
#[tokio::test]
async fn an_incremental_chain_restores_puts_updates_and_deletes_exactly_up_to_until() {
    let h = Harness::new().await;
    let (bucket, _) = h.export_bucket().await;
    let table = h.name("Chain");
    h.create_table(&table, 0, &[]).await;
    let item = |id: &str, v: &str| json!({"id": {"S": id}, "v": {"S": v}});
    let full: Vec<_> = (0..10)
        .map(|i| json!({"Item": item(&format!("k{i}"), "v0")}))
        .collect();
    let meta = json!({"WriteTimestampMicros": {"N": "1764565200000000"}});
    let put = |id: &str, old: Option<&str>, new: &str| {
        let mut c = json!({"Metadata": meta, "Keys": {"id": {"S": id}}, "NewImage": item(id, new)});
        if let Some(o) = old {
            c["OldImage"] = item(id, o);
        }
        c
    };
    let delete = |id: &str, old: &str| json!({"Metadata": meta, "Keys": {"id": {"S": id}}, "OldImage": item(id, old)});
    let (t0, t1, t2) = (
        "2026-11-29T03:00:00Z",
        "2026-11-30T03:00:00Z",
        "2026-12-01T03:00:00Z",
    );
    place_native_link(&h, &bucket, &table, t0, None, &full).await;
    // Link 1: k1 updated, k10 new, k2 deleted.
    place_native_link(
        &h,
        &bucket,
        &table,
        t1,
        Some(t0),
        &[
            put("k1", Some("v0"), "v1"),
            put("k10", None, "v1"),
            delete("k2", "v0"),
        ],
    )
    .await;
    // Link 2: k10 deleted, k1 updated again, k2 put back.
    place_native_link(
        &h,
        &bucket,
        &table,
        t2,
        Some(t1),
        &[
            delete("k10", "v1"),
            put("k1", Some("v1"), "v2"),
            put("k2", None, "v2"),
        ],
    )
    .await;

    let cli = cli_binary();
    let expect = |pairs: &[(&str, &str)]| {
        let items: Vec<backstop::ddbjson::Item> = pairs
            .iter()
            .map(|(k, v)| backstop::ddbjson::item_from_json(&item(k, v).to_string()).unwrap())
            .collect();
        backstop::fingerprint::of_items(&items).unwrap()
    };
    let mut at_t2: Vec<(String, &str)> = (0..10).map(|i| (format!("k{i}"), "v0")).collect();
    at_t2[1].1 = "v2";
    at_t2[2].1 = "v2";
    let mut at_t1: Vec<(String, &str)> = (0..10)
        .filter(|i| *i != 2)
        .map(|i| (format!("k{i}"), if i == 1 { "v1" } else { "v0" }))
        .collect();
    at_t1.push(("k10".into(), "v1"));
    for (until, want, links) in [
        (
            "2026-12-01T12:00:00Z",
            at_t2,
            "3 links, up to 2026-12-01T03:00:00Z",
        ),
        (
            "2026-11-30T23:00:00Z",
            at_t1,
            "2 links, up to 2026-11-30T03:00:00Z",
        ),
    ] {
        let to = h.name(&format!("Chain-{}", &until[8..10]));
        let out = backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
            .args([
                "restore", "export", "--table", &table, "--until", until, "--to", &to,
            ])
            .output()
            .unwrap();
        let shown = text(&out);
        assert!(out.status.success(), "{until}: {shown}");
        assert!(shown.contains(links), "{until}: {shown}");
        assert!(shown.contains("the chain's last link"), "{until}: {shown}");
        let pairs: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
            expect(&pairs),
            "{until}: {shown}"
        );
    }
    // An incremental export is changes, not a table: diff refuses it (exit 2, not "differs").
    let out = backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
        .args([
            "diff",
            "--left",
            &format!("export:{table}@{t1}"),
            "--right",
            &table,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("an incremental export holds changes"),
        "{}",
        text(&out)
    );
    // Before the full export there is nothing to restore: refused, nothing created.
    let to = h.name("Chain-none");
    let out = backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
        .args([
            "restore",
            "export",
            "--table",
            &table,
            "--until",
            "2026-11-01T00:00:00Z",
            "--to",
            &to,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no finished native export at or before"),
        "{}",
        text(&out)
    );
    assert!(!exists(&h, &to).await);
}
