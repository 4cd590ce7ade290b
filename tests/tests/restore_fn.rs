//! The `restore` function's handler against moto, invoked as Lambda would invoke it (one call
//! per invocation, same payload again to carry on): backups and PITR restores start, then
//! finish with the settings re-applied; an export loads a data file per invocation with its
//! place in the catalog, survives an invocation killed mid-load, and reads back with the
//! export's fingerprint; refusals create nothing.

use std::time::Duration;

use backstop::export::logical::fingerprint_table;
use backstop::report::RunStatus;
use backstop::restore::request::{handle, RestoreSettings, State, Status};
use backstop::settings::{Environment, JobKind};
use backstop_tests::{put_every_type, run_job, Harness};
use jiff::Timestamp;
use serde_json::{json, Value};

fn this_hour() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:00:00Z").to_string()
}

fn settings_for(h: &Harness, extra: &[(&str, &str)]) -> RestoreSettings {
    let prefix = h.name("restored-");
    // The tables of this test are the function's selection, unless the test sets its own.
    let selection = format!("{}*", h.prefix);
    let mut pairs: Vec<(&str, &str)> = vec![
        ("BACKSTOP_CATALOG_TABLE", h.stack.catalog_table.as_str()),
        ("BACKSTOP_RESTORE_PREFIX", prefix.as_str()),
    ];
    if !extra.iter().any(|(k, _)| k.starts_with("BACKSTOP_TABLE")) {
        pairs.push(("BACKSTOP_TABLE_PATTERN", selection.as_str()));
    }
    pairs.extend_from_slice(extra);
    RestoreSettings::resolve(&Environment::from_pairs(pairs)).unwrap()
}

async fn exists(h: &Harness, table: &str) -> bool {
    backstop::restore::table_status(&h.clients.dynamodb, table)
        .await
        .unwrap()
        .is_some()
}

async fn invoke(h: &Harness, s: &RestoreSettings, payload: &Value) -> Status {
    handle(&h.clients, s, payload, None)
        .await
        .unwrap_or_else(|e| panic!("{payload}: {e}"))
}

/// A table with 40 plain items and one of every type, TTL, stream, PITR, deletion protection
/// and tags on, backed up (settings recorded) and exported (logical) at the current hour.
async fn source(h: &Harness, table: &str, env: &[(&'static str, String)]) {
    use aws_sdk_dynamodb::types::{
        PointInTimeRecoverySpecification, StreamSpecification, StreamViewType,
        TimeToLiveSpecification,
    };
    h.create_table(table, 40, &[("team", "sales")]).await;
    put_every_type(&h.clients, table, false).await;
    let ddb = &h.clients.dynamodb;
    ddb.update_time_to_live()
        .table_name(table)
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
        .table_name(table)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .unwrap(),
        )
        .deletion_protection_enabled(true)
        .send()
        .await
        .unwrap();
    ddb.update_continuous_backups()
        .table_name(table)
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
    let r = run_job(h, JobKind::Snapshot, env, slot.clone()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let r = run_job(h, JobKind::Export, env, slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
}

/// The settings the result says were applied, and the same read back from the table.
async fn assert_settings_applied(h: &Harness, to: &str, result: &Value) {
    let applied: Vec<String> = result["settings"]
        .as_array()
        .unwrap_or_else(|| panic!("no settings in {result}"))
        .iter()
        .filter(|a| a["outcome"] == "applied")
        .map(|a| a["setting"].as_str().unwrap().to_owned())
        .collect();
    for s in ["TTL", "stream", "PITR", "tags", "deletion protection"] {
        assert!(applied.iter().any(|a| a == s), "{s} applied: {result}");
    }
    let ddb = &h.clients.dynamodb;
    let d = ddb
        .describe_table()
        .table_name(to)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(d.deletion_protection_enabled, Some(true), "{to}");
    assert!(d.stream_specification.is_some_and(|s| s.stream_enabled));
    let ttl = ddb
        .describe_time_to_live()
        .table_name(to)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name.as_deref(), Some("expires"));
    let tags = ddb
        .list_tags_of_resource()
        .resource_arn(d.table_arn.unwrap())
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert!(tags.iter().any(|t| t.key == "team" && t.value == "sales"));
}

#[tokio::test]
async fn a_backup_or_pitr_restore_starts_then_a_later_invocation_finishes_it_with_its_settings() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Source");
    source(&h, &table, &env).await;
    let expected = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    let s = settings_for(&h, &[]);

    for (kind, extra) in [
        ("backup", json!({"table": table, "latest": true})),
        ("pitr", json!({"table": table, "latest": true})),
    ] {
        let to = h.name(&format!("restored-{kind}"));
        let mut request = json!({"kind": kind, "to": to});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let payload = json!({ "restore": request });

        let first = invoke(&h, &s, &payload).await;
        assert_eq!(first.state, State::Restoring, "{first:?}");
        assert!(first.message.contains("started the restore"), "{first:?}");
        assert!(first.result.is_none());

        let second = invoke(&h, &s, &payload).await;
        assert_eq!(second.state, State::Done, "{kind}: {second:?}");
        let result = second.result.clone().unwrap();
        assert_eq!(
            result["fingerprint"],
            json!(expected.to_string()),
            "{kind}: {result}"
        );
        assert_eq!(
            fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
            expected,
            "{kind}"
        );
        assert_settings_applied(&h, &to, &result).await;
        // Applied again (an invocation that died after applying them, carried on): what is on
        // already is reported so, nothing fails, deletion protection stays.
        let recorded = backstop::table_settings::read(&h.clients.dynamodb, &table)
            .await
            .unwrap();
        let again =
            backstop::table_settings::apply(&h.clients.dynamodb, &to, &recorded, true).await;
        assert!(again.iter().all(|a| !a.failed()), "{again:?}");
        for setting in ["TTL", "stream"] {
            let a = again.iter().find(|a| a.setting == setting).unwrap();
            assert!(a.line().contains("already on"), "{}", a.line());
        }
        if kind == "backup" {
            assert!(
                second
                    .message
                    .contains("the count equals the source's record"),
                "{second:?}"
            );
        }

        // Asked again: the same answer, nothing done twice.
        let third = invoke(&h, &s, &payload).await;
        assert_eq!(third.state, State::Done);
        assert_eq!(third.result, second.result);

        // Another request for the same target is refused, naming the first.
        let mut other = payload.clone();
        other["restore"]["settings"] = json!(false);
        let e = handle(&h.clients, &s, &other, None).await.unwrap_err();
        assert_eq!(e.error_type(), "Backstop.Refused", "{e}");
        assert!(e.to_string().contains("target of another restore"), "{e}");
    }
}

#[tokio::test]
async fn refusals_name_the_reason_and_create_nothing() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    // An export of several data files, so that checking it takes several invocations.
    env.push(("BACKSTOP_EXPORT_FILE_BYTES", "1024".to_owned()));
    env.push(("BACKSTOP_EXPORT_PAGE_ITEMS", "10".to_owned()));
    let table = h.name("Source");
    source(&h, &table, &env).await;
    let s = settings_for(&h, &[]);
    let taken = h.name("restored-taken");
    h.create_table(&taken, 1, &[]).await;
    let t = table.as_str();
    // A table outside the function's selection (the tables named with this test's prefix),
    // which exists and has PITR: whoever invokes the function cannot restore it.
    let outside = format!("outside-{}", h.prefix);
    h.create_table(&outside, 2, &[]).await;
    let outside_arn = format!(
        "arn:aws:dynamodb:us-east-1:123456789012:table/{outside}/backup/01700000000000-abcdef12"
    );
    for (request, says) in [
        (
            json!({"kind": "pitr", "table": outside, "latest": true, "to": h.name("restored-out1")}),
            "is not in this function's selection",
        ),
        (
            json!({"kind": "backup", "backup_arn": outside_arn, "to": h.name("restored-out2")}),
            "is not in this function's selection",
        ),
        (
            json!({"kind": "export", "table": outside, "latest": true, "to": h.name("restored-out3")}),
            "is not in this function's selection",
        ),
        (
            json!({"kind": "backup", "table": t, "latest": true, "to": h.name("elsewhere")}),
            "does not start with the restore prefix",
        ),
        (
            json!({"kind": "backup", "table": t, "latest": true, "to": "restored-x"}),
            "does not start with the restore prefix",
        ),
        (
            json!({"kind": "backup", "table": t, "latest": true, "to": taken}),
            "exists; a restore never writes into an existing table",
        ),
        (
            json!({"kind": "backup", "table": t, "slot": "2020-01-01T00:00:00Z", "to": h.name("restored-old")}),
            "records no complete backup",
        ),
        (
            json!({"kind": "backup", "table": h.name("Nothing"), "latest": true, "to": h.name("restored-none")}),
            "records no complete backup",
        ),
        (
            json!({"kind": "pitr", "table": t, "time": "2020-01-01T00:00:00Z", "to": h.name("restored-early")}),
            "outside table",
        ),
        (
            json!({"kind": "export", "export_id": "no-such-export", "to": h.name("restored-noexp")}),
            "records no finished export",
        ),
    ] {
        let to = request["to"].as_str().unwrap().to_owned();
        let e = handle(&h.clients, &s, &json!({ "restore": request }), None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(says), "{request}: {e}");
        if to != taken {
            assert!(!exists(&h, &to).await, "{to} was created");
        }
        // Nothing recorded either: the same name is free for a good request.
        let got = h
            .clients
            .dynamodb
            .get_item()
            .table_name(&h.stack.catalog_table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("RESTORE#{to}")),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("RESTORE".into()),
            )
            .send()
            .await
            .unwrap();
        assert!(got.item.is_none(), "{to} recorded: {:?}", got.item);
    }
}

#[tokio::test]
async fn an_export_loads_a_file_per_invocation_survives_a_killed_one_and_reads_back_exactly() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    // Small data files, so that the export has several.
    env.push(("BACKSTOP_EXPORT_FILE_BYTES", "1024".to_owned()));
    env.push(("BACKSTOP_EXPORT_PAGE_ITEMS", "250".to_owned()));
    let table = h.name("Big");
    h.create_table(&table, 1500, &[]).await;
    put_every_type(&h.clients, &table, false).await;
    let slot = json!({"tables": [table], "slot": this_hour()});
    let r = run_job(&h, JobKind::Export, &env, slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let expected = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    let to = h.name("restored-big");
    let payload = json!({"restore": {"kind": "export", "table": table, "latest": true, "to": to}});

    // A time budget of 0: each invocation checks or loads one data file, then stops.
    let step = settings_for(&h, &[("BACKSTOP_RESTORE_TIME_BUDGET", "0")]);
    let first = invoke(&h, &step, &payload).await;
    assert_eq!(first.state, State::Checking, "{first:?}");
    let total = first.files_total.unwrap();
    assert!(total >= 4, "the export has {total} data files");
    assert_eq!(first.files_done, Some(1), "{first:?}");
    assert!(
        !exists(&h, &to).await,
        "no table while the export is checked"
    );
    let mut seen = vec![first];
    while seen.last().unwrap().state == State::Checking || seen.last().unwrap().files_done < Some(2)
    {
        let s = invoke(&h, &step, &payload).await;
        seen.push(s);
        assert!(seen.len() < 3 * total, "{seen:#?}");
    }
    let at = seen.last().unwrap().clone();
    assert_eq!(at.state, State::Loading, "{at:?}");
    assert!(seen.len() > total, "one file per invocation: {seen:#?}");

    // An invocation with no budget, killed mid-load: its lease (capped by its deadline) holds
    // off the next invocation until it runs out; then the next takes over where the catalog
    // says and redoes at most the file it was in.
    let whole = settings_for(&h, &[]);
    let deadline = Timestamp::now() + jiff::SignedDuration::from_secs(8);
    // Killed for sure mid-load, however fast the machine: its writes are held unanswered.
    let proxy = backstop_tests::fault_proxy::FaultProxy::start(&h.stack.endpoint).await;
    let stalled = backstop_tests::clients_through(&proxy).await;
    proxy.stall("BatchWriteItem", &to);
    let killed = tokio::time::timeout(
        Duration::from_millis(600),
        handle(&stalled, &whole, &payload, Some(deadline)),
    )
    .await;
    proxy.clear();
    assert!(killed.is_err(), "the load was cut short: {killed:?}");
    let held = invoke(&h, &whole, &payload).await;
    assert!(
        held.message.contains("another invocation is working on it"),
        "{held:?}"
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    let done = invoke(&h, &whole, &payload).await;
    assert_eq!(done.state, State::Done, "{done:?}");
    assert!(done.message.contains("equal to the source's"), "{done:?}");
    assert_eq!(done.files_done, Some(total));
    let result = done.result.unwrap();
    assert_eq!(result["fingerprint"], json!(expected.to_string()));
    assert_eq!(result["expected"], json!(expected.to_string()));
    assert_eq!(
        fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
        expected
    );
}

#[tokio::test]
async fn a_table_of_the_targets_name_made_by_someone_else_meanwhile_is_never_written_into() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    env.push(("BACKSTOP_EXPORT_FILE_BYTES", "1024".to_owned()));
    env.push(("BACKSTOP_EXPORT_PAGE_ITEMS", "10".to_owned()));
    let table = h.name("Source");
    source(&h, &table, &env).await;
    let step = settings_for(&h, &[("BACKSTOP_RESTORE_TIME_BUDGET", "0")]);
    let to = h.name("restored-race");
    let payload = json!({"restore": {"kind": "export", "table": table, "latest": true, "to": to}});
    let first = invoke(&h, &step, &payload).await;
    assert_eq!(first.state, State::Checking, "{first:?}");
    assert!(first.files_total.unwrap() > 2, "{first:?}");
    // While the export is checked, somebody creates a table of that name.
    h.create_table(&to, 1, &[]).await;
    let before = fingerprint_table(&h.clients.dynamodb, &to).await.unwrap();
    let mut refused = None;
    for _ in 0..50 {
        match handle(&h.clients, &step, &payload, None).await {
            Ok(s) => assert_eq!(s.state, State::Checking, "{s:?}"),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the restore stopped at the stranger's table");
    assert!(
        e.to_string().contains("exists and is not this restore's"),
        "{e}"
    );
    assert_eq!(
        fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
        before,
        "the stranger's table is untouched"
    );
    // Asked again: the failure and its reason, and no restart while the table is there.
    let failed = invoke(&h, &step, &payload).await;
    assert_eq!(failed.state, State::Failed, "{failed:?}");
    assert!(
        failed.message.contains("is not this restore's"),
        "{failed:?}"
    );
    let mut retry = payload.clone();
    retry["retry"] = json!(true);
    let still = invoke(&h, &step, &retry).await;
    assert_eq!(still.state, State::Failed, "{still:?}");
    assert!(still.message.contains("exists"), "{still:?}");
    // Once the name is free, "retry" starts anew and finishes with the export's fingerprint.
    h.clients
        .dynamodb
        .delete_table()
        .table_name(&to)
        .send()
        .await
        .unwrap();
    let whole = settings_for(&h, &[]);
    let done = invoke(&h, &whole, &retry).await;
    assert_eq!(done.state, State::Done, "{done:?}");
    assert_eq!(
        fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
        fingerprint_table(&h.clients.dynamodb, &table)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn backstop_run_restore_is_one_invocation_run_again_until_done() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Source");
    source(&h, &table, &env).await;
    let to = h.name("restored-cli");
    let event = std::env::temp_dir().join(format!("{}restore-event.json", h.prefix));
    std::fs::write(
        &event,
        json!({"restore": {"kind": "backup", "table": table, "latest": true, "to": to}})
            .to_string(),
    )
    .unwrap();
    let cli = backstop_tests::cli_binary();
    let run = |json: bool| {
        let mut cmd = backstop_tests::backstop_cmd(
            &cli,
            &h,
            &h.stack.endpoint,
            &[("BACKSTOP_RESTORE_PREFIX", h.name("restored-"))],
        );
        cmd.args(["run", "restore", "--event"]).arg(&event);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let first = run(false);
    let shown = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        shown.contains(&format!("{to}: Restoring: started the restore")),
        "{shown}"
    );
    let second = run(true);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let status: Status = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(status.state, State::Done, "{status:?}");
    assert_eq!(
        fingerprint_table(&h.clients.dynamodb, &to).await.unwrap(),
        fingerprint_table(&h.clients.dynamodb, &table)
            .await
            .unwrap()
    );
    // A target outside the prefix: exit 2 and the reason.
    std::fs::write(
        &event,
        json!({"restore": {"kind": "backup", "table": table, "latest": true, "to": h.name("other")}}).to_string(),
    )
    .unwrap();
    let refused = run(false);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not start with the restore prefix"),
        "{refused:?}"
    );
    let _ = std::fs::remove_file(event);
}
