//! The snapshot job end to end, against moto in server mode.

use std::time::Duration;

use backstop::event::JobRequest;
use backstop::jobs::snapshot::{self, backup_name, Context};
use backstop::notify::{METRIC_DURATION, METRIC_FAILURE, METRIC_SIZE, METRIC_SUCCESS};
use backstop::report::{Outcome, PitrState, RunReport, RunStatus};
use backstop::settings::{self, JobKind, Settings};
use backstop::Error;
use backstop_testkit::local;
use backstop_tests::Harness;
use serde_json::{json, Value};

fn scheduled(time: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/backstop-daily"],
        "detail": detail
    })
}

async fn run_payload(h: &Harness, env: &[(&str, &str)], payload: Value) -> RunReport {
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Snapshot, &h.env(env), &request).unwrap();
    snapshot::run(&h.clients, &settings, &request).await
}

/// The Lambda handler's body, outside Lambda (no deadline).
async fn handle(ctx: &Context, payload: Value) -> backstop::Result<RunReport> {
    backstop::jobs::handle(JobKind::Snapshot, ctx, payload, None).await
}

fn outcome<'a>(r: &'a RunReport, table: &str) -> &'a Outcome {
    &r.targets
        .iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("{table} not in report: {r:#?}"))
        .outcome
}

#[tokio::test]
async fn backups_exist_in_list_backups_and_restore_brings_back_the_same_items() {
    let h = Harness::new().await;
    let table = h.name("Orders");
    h.create_table(&table, 40, &[]).await;

    let r = run_payload(
        &h,
        &[],
        json!({"tables": [table], "slot": "2026-11-20T02:00:00Z"}),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");

    let backups = h.backups_of(&table).await;
    let expected_name = format!("{table}-backstop-20261120T020000Z");
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0].0, expected_name);
    let Outcome::Created { backup } = outcome(&r, &table) else {
        panic!("not created: {r:#?}")
    };
    assert_eq!(backup.backup_arn, backups[0].1);
    assert_eq!(backup.item_count, Some(40));
    assert!(backup.size_bytes.is_some() && backup.created_at.is_some());

    let restored = h.name("Orders-restored");
    h.clients
        .dynamodb
        .restore_table_from_backup()
        .backup_arn(&backup.backup_arn)
        .target_table_name(&restored)
        .send()
        .await
        .unwrap();
    let original = h.scan_all(&table).await;
    assert_eq!(original.len(), 40);
    assert_eq!(h.scan_all(&restored).await, original);

    // The catalog records the backup for `backstop backups list`.
    let catalog =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let records = catalog
        .list_targets(snapshot::JOB, Some(&table))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, backstop::catalog::TargetStatus::Done);
    assert_eq!(
        records[0].backup_arn.as_deref(),
        Some(backup.backup_arn.as_str())
    );
    assert_eq!(records[0].item_count, Some(40));
    // And what a restore drill compares the restored table with: the shape at backup time.
    let shape = records[0]
        .table_shape
        .as_ref()
        .expect("table_shape recorded");
    assert_eq!(
        shape["KeySchema"],
        json!([{"AttributeName": "id", "KeyType": "HASH"}])
    );
    assert_eq!(
        shape["AttributeDefinitions"],
        json!([{"AttributeName": "id", "AttributeType": "S"}])
    );
    assert_eq!(shape["BillingMode"], json!("PAY_PER_REQUEST"));
    assert_eq!(shape["GlobalSecondaryIndexes"], json!([]));
}

#[tokio::test]
async fn same_scheduled_event_delivered_three_times_makes_one_backup_per_table() {
    let h = Harness::new().await;
    let tables = [h.name("A1"), h.name("B2")];
    for t in &tables {
        h.create_table(t, 5, &[]).await;
    }
    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[(settings::ENV_TABLES, &tables.join(","))]),
    };
    let event = scheduled("2026-11-21T02:00:00Z", json!({}));

    let first = handle(&ctx, event.clone()).await.unwrap();
    assert_eq!(first.totals.created, 2);
    for _ in 0..2 {
        let again = handle(&ctx, event.clone()).await.unwrap();
        assert_eq!(again.totals.created, 0, "{again:#?}");
        assert_eq!(again.totals.already_done, 2);
        for t in &tables {
            match outcome(&again, t) {
                Outcome::AlreadyDone { note, backup } => {
                    assert!(note.starts_with("already done for this slot"), "{note}");
                    assert!(backup.backup_name.ends_with("-backstop-20261121T020000Z"));
                }
                other => panic!("{t}: {other:?}"),
            }
        }
    }
    for t in &tables {
        assert_eq!(h.backups_of(t).await.len(), 1, "{t}");
    }

    // A different slot is new work.
    let next = handle(&ctx, scheduled("2026-11-22T02:00:00Z", json!({})))
        .await
        .unwrap();
    assert_eq!(next.totals.created, 2);
    for t in &tables {
        assert_eq!(h.backups_of(t).await.len(), 2, "{t}");
    }
}

#[tokio::test]
async fn concurrent_deliveries_of_one_slot_make_one_backup() {
    let h = Harness::new().await;
    let table = h.name("Concurrent");
    h.create_table(&table, 5, &[]).await;
    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[(settings::ENV_TABLES, &table)]),
    };
    let event = scheduled("2026-11-21T03:00:00Z", json!({}));
    let (a, b, c) = tokio::join!(
        handle(&ctx, event.clone()),
        handle(&ctx, event.clone()),
        handle(&ctx, event.clone())
    );
    let created: usize = [&a, &b, &c]
        .iter()
        .map(|r| match r {
            Ok(r) => r.totals.created,
            Err(_) => 0,
        })
        .sum();
    assert_eq!(created, 1, "{a:?}\n{b:?}\n{c:?}");
    assert_eq!(h.backups_of(&table).await.len(), 1);
}

#[tokio::test]
async fn one_missing_table_fails_alone_and_a_retry_redoes_only_it() {
    let h = Harness::new().await;
    let (good1, missing, good2) = (h.name("Good1"), h.name("Missing"), h.name("Good2"));
    h.create_table(&good1, 3, &[]).await;
    h.create_table(&good2, 3, &[]).await;
    let tables = format!("{good1},{missing},{good2}");
    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[(settings::ENV_TABLES, &tables)]),
    };
    let event = scheduled("2026-11-21T02:00:00Z", json!({}));

    // The invocation fails (so Lambda retries), naming the missing table and the operation.
    let err = handle(&ctx, event.clone()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::RunFailed { .. }), "{msg}");
    assert!(
        msg.contains(&missing) && msg.contains("DescribeTable"),
        "{msg}"
    );
    assert!(msg.contains("1 of 3 targets not done"), "{msg}");
    assert_eq!(h.backups_of(&good1).await.len(), 1);
    assert_eq!(h.backups_of(&good2).await.len(), 1);

    // The report was still published: an error-severity message, and failure metrics.
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].attributes.get("severity").map(String::as_str),
        Some("error")
    );
    assert!(
        got[0].subject.contains("PARTIAL FAILURE"),
        "{}",
        got[0].subject
    );
    assert!(
        got[0].message.contains(&format!("- {missing}: FAILED")),
        "{}",
        got[0].message
    );
    assert_eq!(h.metric(METRIC_FAILURE, &missing).await, Some(1.0));
    assert_eq!(h.metric(METRIC_SUCCESS, &good1).await, Some(1.0));

    // The report itself says which table failed and why.
    let request = JobRequest::from_payload(&event, jiff::Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Snapshot, &ctx.env, &request).unwrap();
    let dry = snapshot::run(
        &h.clients,
        &settings,
        &JobRequest {
            dry_run: true,
            ..request.clone()
        },
    )
    .await;
    match outcome(&dry, &missing) {
        Outcome::Failed {
            operation,
            error,
            retryable,
        } => {
            assert_eq!(operation, "DescribeTable");
            assert!(
                error.contains("ResourceNotFound")
                    || error.contains("not found")
                    || error.contains("exists"),
                "{error}"
            );
            assert!(!retryable);
        }
        other => panic!("{other:?}"),
    }

    // The table appears; the retry of the same slot backs up only it.
    h.create_table(&missing, 2, &[]).await;
    let retry = handle(&ctx, event).await.unwrap();
    assert_eq!(retry.totals.created, 1, "{retry:#?}");
    assert_eq!(retry.totals.already_done, 2);
    assert!(matches!(outcome(&retry, &missing), Outcome::Created { .. }));
    for t in [&good1, &missing, &good2] {
        assert_eq!(h.backups_of(t).await.len(), 1, "{t}");
    }
}

#[tokio::test]
async fn sns_message_arrives_on_the_subscribed_queue_with_its_attributes() {
    let h = Harness::new().await;
    let table = h.name("Notified");
    h.create_table(&table, 3, &[]).await;
    let r = run_payload(
        &h,
        &[],
        json!({"tables": [table], "slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    assert!(
        matches!(r.delivery.sns, backstop::report::DeliveryState::Sent { .. }),
        "{r:#?}"
    );

    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let n = &got[0];
    assert_eq!(
        n.subject,
        "Backstop snapshot OK: 1 done, 0 failed of 1 - 2026-11-21T02:00:00Z"
    );
    assert_eq!(
        n.attributes.get("severity").map(String::as_str),
        Some("info")
    );
    assert_eq!(
        n.attributes.get("job").map(String::as_str),
        Some("snapshot")
    );
    assert!(
        n.message.contains(&format!(
            "- {table}: backed up as {table}-backstop-20261121T020000Z"
        )),
        "{}",
        n.message
    );
    assert!(n.message.contains(&format!("Run id:     {}", r.run_id)));
    // Item contents never reach a notification.
    assert!(!n.message.contains("row 0 of"), "{}", n.message);
}

#[tokio::test]
async fn metrics_can_be_read_back_with_get_metric_statistics() {
    let h = Harness::new().await;
    let (a, b) = (h.name("MetricsA"), h.name("MetricsB"));
    h.create_table(&a, 3, &[]).await;
    h.create_table(&b, 3, &[]).await;
    let r = run_payload(
        &h,
        &[],
        json!({"tables": [a, b], "slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    assert_eq!(r.totals.created, 2);
    for t in [&a, &b] {
        assert_eq!(h.metric(METRIC_SUCCESS, t).await, Some(1.0), "{t}");
        assert_eq!(h.metric(METRIC_FAILURE, t).await, Some(0.0), "{t}");
        let size = h.metric(METRIC_SIZE, t).await.expect("size metric");
        assert!(size > 0.0);
        assert!(h.metric(METRIC_DURATION, t).await.expect("duration metric") >= 0.0);
    }
    // The run totals, with the Job dimension alone, feed the template's alarms. (moto matches
    // any metric whose dimensions include the query's, unlike CloudWatch, so its sum for
    // Job=snapshot also counts the per-table data: 2 per table + 2 in total.)
    let listed = h
        .clients
        .cloudwatch
        .list_metrics()
        .namespace(h.namespace())
        .metric_name(METRIC_SUCCESS)
        .send()
        .await
        .unwrap();
    let job_only: Vec<_> = listed
        .metrics()
        .iter()
        .filter(|m| m.dimensions().len() == 1)
        .collect();
    assert_eq!(job_only.len(), 1, "{listed:?}");
    assert_eq!(job_only[0].dimensions()[0].value(), Some("snapshot"));
    assert_eq!(h.metric_of(METRIC_SUCCESS, None).await, Some(4.0));
    // A redelivery adds no data points: the sums stay the same.
    let again = run_payload(
        &h,
        &[],
        json!({"tables": [a, b], "slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    assert_eq!(again.totals.already_done, 2);
    assert_eq!(h.metric(METRIC_SUCCESS, &a).await, Some(1.0));
    assert_eq!(h.metric_of(METRIC_SUCCESS, None).await, Some(4.0));
}

#[tokio::test]
async fn tag_and_pattern_selection_never_pick_backstop_own_tables() {
    let h = Harness::new().await;
    let (tagged, untagged) = (h.name("Tagged"), h.name("Untagged"));
    let drill = format!("backstop-drill-{}", h.name("x"));
    h.create_table(&tagged, 2, &[("backup:plan", "daily")])
        .await;
    h.create_table(&untagged, 2, &[("backup:plan", "never")])
        .await;
    h.create_table(&drill, 2, &[("backup:plan", "daily")]).await;
    h.clients
        .dynamodb
        .tag_resource()
        .resource_arn(format!(
            "arn:aws:dynamodb:us-east-1:123456789012:table/{}",
            h.stack.catalog_table
        ))
        .tags(
            aws_sdk_dynamodb::types::Tag::builder()
                .key("backup:plan")
                .value("daily")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let slot = "2026-11-21T02:00:00Z";
    let r = run_payload(
        &h,
        &[],
        json!({"table_tag": "backup:plan=daily", "slot": slot, "dry_run": true}),
    )
    .await;
    let picked: Vec<&str> = r.targets.iter().map(|t| t.table.as_str()).collect();
    assert!(picked.contains(&tagged.as_str()), "{picked:?}");
    assert!(!picked.contains(&untagged.as_str()), "{picked:?}");
    assert!(!picked.contains(&drill.as_str()), "{picked:?}");
    assert!(
        !picked.contains(&h.stack.catalog_table.as_str()),
        "{picked:?}"
    );

    // A pattern that matches the catalog and a drill table still leaves them out, and says so.
    let r = run_payload(
        &h,
        &[],
        json!({"table_pattern": format!("*{}*", h.prefix), "slot": slot, "dry_run": true}),
    )
    .await;
    let picked: Vec<&str> = r.targets.iter().map(|t| t.table.as_str()).collect();
    assert!(
        picked.contains(&tagged.as_str()) && picked.contains(&untagged.as_str()),
        "{picked:?}"
    );
    assert!(
        !picked
            .iter()
            .any(|t| *t == h.stack.catalog_table || t.starts_with("backstop-drill-")),
        "{picked:?}"
    );
    assert!(
        r.excluded.iter().any(|e| e.table == h.stack.catalog_table),
        "{:?}",
        r.excluded
    );
    assert!(
        r.excluded.iter().any(|e| e.table == drill),
        "{:?}",
        r.excluded
    );
}

#[tokio::test]
async fn pitr_is_turned_on_only_when_settings_say_so_and_reported_either_way() {
    let h = Harness::new().await;
    let (a, b) = (h.name("PitrOff"), h.name("PitrOn"));
    h.create_table(&a, 2, &[]).await;
    h.create_table(&b, 2, &[]).await;

    let r = run_payload(
        &h,
        &[],
        json!({"tables": [a], "slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    assert_eq!(r.targets[0].pitr, Some(PitrState::Disabled));
    assert_eq!(r.totals.pitr_disabled, 1);
    assert!(r.email_body().contains("point-in-time recovery is OFF"));

    let r = run_payload(
        &h,
        &[(settings::ENV_ENABLE_PITR, "true")],
        json!({"tables": [b], "slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    assert_eq!(r.targets[0].pitr, Some(PitrState::EnabledNow));
    let status = h
        .clients
        .dynamodb
        .describe_continuous_backups()
        .table_name(&b)
        .send()
        .await
        .unwrap()
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
        .and_then(|p| p.point_in_time_recovery_status);
    assert_eq!(
        status,
        Some(aws_sdk_dynamodb::types::PointInTimeRecoveryStatus::Enabled)
    );
}

#[tokio::test]
async fn dry_run_makes_no_backup_and_publishes_nothing() {
    let h = Harness::new().await;
    let table = h.name("Dry");
    h.create_table(&table, 2, &[]).await;
    let r = run_payload(
        &h,
        &[],
        json!({"tables": [table], "slot": "2026-11-21T02:00:00Z", "dry_run": true}),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert!(
        matches!(outcome(&r, &table), Outcome::Planned { backup_name } if backup_name.ends_with("-backstop-20261121T020000Z"))
    );
    assert!(h.backups_of(&table).await.is_empty());
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(2))
            .await
            .unwrap();
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(h.metric(METRIC_SUCCESS, &table).await, None);
}

#[tokio::test]
async fn a_retry_after_a_dead_attempt_adopts_its_backup_instead_of_making_another() {
    let h = Harness::new().await;
    let table = h.name("Crashed");
    h.create_table(&table, 2, &[]).await;
    let slot = backstop::event::ScheduleSlot::parse("2026-11-21T02:00:00Z").unwrap();
    // A run claimed the slot 30 minutes ago, made the backup, and died before recording it.
    let mut key = backstop::catalog::target_key(snapshot::JOB, &table, &slot);
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.into());
    key.extend([
        ("kind".to_owned(), s("target")),
        ("job".to_owned(), s("snapshot")),
        ("table".to_owned(), s(&table)),
        ("slot".to_owned(), s(&slot.to_string())),
        ("status".to_owned(), s("CLAIMED")),
        ("run_id".to_owned(), s("dead-run")),
        (
            "claimed_at".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::N(
                (jiff::Timestamp::now().as_second() - 1800).to_string(),
            ),
        ),
        (
            "attempts".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        ),
    ]);
    h.clients
        .dynamodb
        .put_item()
        .table_name(&h.stack.catalog_table)
        .set_item(Some(key))
        .send()
        .await
        .unwrap();
    h.clients
        .dynamodb
        .create_backup()
        .table_name(&table)
        .backup_name(backup_name(&table, &slot))
        .send()
        .await
        .unwrap();

    let r = run_payload(
        &h,
        &[],
        json!({"tables": [table], "slot": slot.to_string()}),
    )
    .await;
    assert!(
        matches!(outcome(&r, &table), Outcome::Created { .. }),
        "{r:#?}"
    );
    assert!(
        r.targets[0].warnings.iter().any(|w| w.contains("adopted")),
        "{r:#?}"
    );
    assert_eq!(h.backups_of(&table).await.len(), 1);
}

#[tokio::test]
async fn a_live_claim_by_another_run_is_left_alone_and_the_invocation_fails_for_retry() {
    let h = Harness::new().await;
    let table = h.name("Held");
    h.create_table(&table, 2, &[]).await;
    let slot = backstop::event::ScheduleSlot::parse("2026-11-21T02:00:00Z").unwrap();
    let catalog =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let claim = catalog
        .claim(
            snapshot::JOB,
            &table,
            &slot,
            "other-run",
            jiff::Timestamp::now(),
            backstop::catalog::lease_until(jiff::Timestamp::now(), None),
            None,
        )
        .await
        .unwrap();
    assert_eq!(claim, backstop::catalog::Claim::Fresh);

    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[(settings::ENV_TABLES, &table)]),
    };
    let err = handle(&ctx, json!({"slot": slot.to_string()}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("run other-run is working on this slot"),
        "{err}"
    );
    assert!(h.backups_of(&table).await.is_empty());
}

#[tokio::test]
async fn bad_settings_and_payloads_fail_the_invocation_with_a_clear_error() {
    let h = Harness::new().await;
    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[
            (settings::ENV_TABLES, "Fine-table"),
            (settings::ENV_CONCURRENCY, "500"),
        ]),
    };
    let err = handle(&ctx, json!({})).await.unwrap_err();
    assert_eq!(err.error_type(), "Backstop.InvalidSetting");
    assert!(
        err.to_string()
            .contains("BACKSTOP_CONCURRENCY: must be a whole number from 1 to 50, got 500"),
        "{err}"
    );

    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[(settings::ENV_TABLES, "Fine-table")]),
    };
    let err = handle(&ctx, json!({"tables": ["bad name!"]}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("setting tables: table name \"bad name!\""),
        "{err}"
    );
    let err = handle(&ctx, json!("snapshot please")).await.unwrap_err();
    assert_eq!(err.error_type(), "Backstop.InvalidPayload");
}
