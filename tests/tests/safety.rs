//! The holes a security review found (issue 7), each shown closed against moto, with faults
//! injected by the fault proxy or aws-smithy-mocks where moto cannot make them.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use backstop::aws::{emulator_config, Clients};
use backstop::catalog::{self, Catalog, Claim};
use backstop::event::{JobRequest, ScheduleSlot};
use backstop::jobs::{retention, snapshot, Context};
use backstop::notify::{METRIC_RETENTION_DELETED, METRIC_RETENTION_FAILURE};
use backstop::report::{DeliveryState, Outcome, RunReport};
use backstop::settings::{self, Environment, JobKind, Settings};
use backstop_testkit::local;
use backstop_tests::fault_proxy::{Fault, FaultProxy};
use backstop_tests::Harness;
use jiff::Timestamp;
use serde_json::{json, Value};

const POLICY_KEEP_ONE: &str = "keep_last=1,min_complete=1";

async fn snapshot_run(clients: &Clients, env: &Environment, payload: Value) -> RunReport {
    let request = JobRequest::from_payload(&payload, Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Snapshot, env, &request).unwrap();
    snapshot::run(clients, &settings, &request).await
}

async fn retention_run(clients: &Clients, env: &Environment, payload: Value) -> RunReport {
    let request = JobRequest::from_payload(&payload, Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Retention, env, &request).unwrap();
    retention::run(clients, &settings, &request).await
}

fn outcome<'a>(r: &'a RunReport, table: &str) -> &'a Outcome {
    &r.targets
        .iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("{table} not in report: {r:#?}"))
        .outcome
}

/// `n` backups of `table`, one per daily slot from 2026-11-01, made by the snapshot job; and one
/// backup Backstop did not make.
async fn history(h: &Harness, table: &str, n: u32) {
    h.create_table(table, 2, &[]).await;
    let env = h.env(&[(settings::ENV_TABLES, table)]);
    for day in 1..=n {
        let r = snapshot_run(
            &h.clients,
            &env,
            json!({"slot": format!("2026-11-{day:02}T02:00:00Z")}),
        )
        .await;
        assert_eq!(r.totals.created, 1, "{r:#?}");
    }
    h.clients
        .dynamodb
        .create_backup()
        .table_name(table)
        .backup_name(format!("{table}-by-hand"))
        .send()
        .await
        .unwrap();
}

/// Clients that talk to moto through the fault proxy.
async fn through(proxy: &FaultProxy) -> Clients {
    Clients::from_config(&emulator_config(&proxy.endpoint).await)
}

// ---------- 1. invoke rights are not delete rights ----------

#[tokio::test]
async fn the_destructive_payload_is_refused_and_nothing_is_deleted() {
    let h = Harness::new().await;
    let table = h.name("Precious");
    history(&h, &table, 4).await;
    assert_eq!(h.backups_of(&table).await.len(), 5);
    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[(settings::ENV_TABLES, &table)]),
    };
    let attack = json!({"table_pattern": "*", "policy": {"keep_last": 1, "min_complete": 1,
        "include_unmanaged": true, "freshness_limit": "100y"}});

    let err = backstop::jobs::handle(JobKind::Retention, &ctx, attack.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Backstop.InvalidSetting");
    assert!(
        err.to_string().starts_with("setting table_pattern:")
            && err
                .to_string()
                .contains("only narrow the configured selection"),
        "{err}"
    );
    // Without the pattern, the policy is refused by name and reason.
    let mut policy_only = attack.clone();
    policy_only.as_object_mut().unwrap().remove("table_pattern");
    let err = backstop::jobs::handle(JobKind::Retention, &ctx, policy_only, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("setting policy: min_complete is a safety floor"),
        "{err}"
    );
    let err = backstop::jobs::handle(
        JobKind::Retention,
        &ctx,
        json!({"policy": "keep_last=1"}),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("it has no keep_daily, the configured policy has keep_daily 30"),
        "{err}"
    );
    assert_eq!(h.backups_of(&table).await.len(), 5, "nothing deleted");

    // As a dry run, the same payload plans (and deletes nothing).
    let mut dry = attack;
    dry["dry_run"] = json!(true);
    dry.as_object_mut().unwrap().remove("table_pattern");
    dry["tables"] = json!([table]);
    let planned = backstop::jobs::handle(JobKind::Retention, &ctx, dry, None)
        .await
        .unwrap();
    assert!(
        matches!(
            outcome(&planned, &table),
            Outcome::Retained {
                deleted: 0,
                to_delete: 4,
                ..
            }
        ),
        "{planned:#?}"
    );
    assert_eq!(h.backups_of(&table).await.len(), 5, "nothing deleted");

    // A payload that keeps more than the configured policy is accepted.
    let kept = backstop::jobs::handle(
        JobKind::Retention,
        &ctx,
        json!({"policy": "keep_daily=60,keep_weekly=12,keep_monthly=12,keep_yearly=7"}),
        None,
    )
    .await
    .unwrap();
    assert!(matches!(
        outcome(&kept, &table),
        Outcome::Retained { deleted: 0, .. }
    ));
}

// ---------- 2. a dead claim does not lose the slot ----------

#[tokio::test]
async fn a_retry_two_minutes_after_the_holders_deadline_backs_the_slot_up() {
    let h = Harness::new().await;
    let (dead, made, live) = (
        h.name("DeadHolder"),
        h.name("DeadMade"),
        h.name("LiveHolder"),
    );
    for t in [&dead, &made, &live] {
        h.create_table(t, 2, &[]).await;
    }
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let slot = ScheduleSlot::parse("2026-11-21T02:00:00Z").unwrap();
    let now = Timestamp::now();
    let minutes = |m: i64| jiff::SignedDuration::from_mins(m);
    // Two invocations claimed their slots 5 minutes ago with a deadline 2 minutes ago (a 3-minute
    // timeout), and died; one of them had made its backup. A third is still running.
    for t in [&dead, &made] {
        let deadline = now - minutes(2);
        let claim = catalog
            .claim(
                snapshot::JOB,
                t,
                &slot,
                "timed-out-run",
                now - minutes(5),
                catalog::lease_until(now - minutes(5), Some(deadline)),
                Some(deadline),
            )
            .await
            .unwrap();
        assert_eq!(claim, Claim::Fresh);
    }
    h.clients
        .dynamodb
        .create_backup()
        .table_name(&made)
        .backup_name(snapshot::backup_name(&made, &slot))
        .send()
        .await
        .unwrap();
    let deadline = now + minutes(10);
    catalog
        .claim(
            snapshot::JOB,
            &live,
            &slot,
            "running-run",
            now,
            catalog::lease_until(now, Some(deadline)),
            Some(deadline),
        )
        .await
        .unwrap();

    let env = h.env(&[(settings::ENV_TABLES, &format!("{dead},{made},{live}"))]);
    let r = snapshot_run(&h.clients, &env, json!({"slot": slot.to_string()})).await;
    assert!(
        matches!(outcome(&r, &dead), Outcome::Created { .. }),
        "{r:#?}"
    );
    assert!(matches!(outcome(&r, &made), Outcome::Created { .. }));
    let warnings = &r.targets.iter().find(|t| t.table == made).unwrap().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("adopted")),
        "{warnings:?}"
    );
    assert!(
        matches!(outcome(&r, &live), Outcome::InProgress { held_by_run, .. } if held_by_run == "running-run"),
        "a live holder within its lease is left alone: {r:#?}"
    );
    assert_eq!(h.backups_of(&dead).await.len(), 1);
    assert_eq!(
        h.backups_of(&made).await.len(),
        1,
        "adopted, not made again"
    );
    assert!(h.backups_of(&live).await.is_empty());
    for t in [&dead, &made] {
        let rec = catalog.get(snapshot::JOB, t, &slot).await.unwrap().unwrap();
        assert_eq!(rec.status, backstop::catalog::TargetStatus::Done);
    }
    // The claim records the holder's lease, and it never outlives its deadline.
    let rec = catalog
        .get(snapshot::JOB, &live, &slot)
        .await
        .unwrap()
        .unwrap();
    assert!(rec.lease_until.unwrap() <= deadline.as_second());
}

#[tokio::test]
async fn a_failed_write_of_done_leaves_the_target_failed_and_the_next_attempt_adopts_the_backup() {
    let h = Harness::new().await;
    let table = h.name("Unrecorded");
    h.create_table(&table, 2, &[]).await;
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    // The DONE write is the only catalog write that carries "DONE".
    proxy.inject(Fault::new(
        "UpdateItem",
        "{\"S\":\"DONE\"}",
        400,
        "AccessDeniedException",
    ));
    let clients = through(&proxy).await;
    let env = h.env(&[(settings::ENV_TABLES, &table)]);
    let payload = json!({"slot": "2026-11-21T02:00:00Z"});

    let r = snapshot_run(&clients, &env, payload.clone()).await;
    match outcome(&r, &table) {
        Outcome::Failed {
            operation, error, ..
        } => {
            assert_eq!(operation, "UpdateItem (complete)");
            assert!(
                error.contains("was made but could not be recorded"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    let slot = ScheduleSlot::parse("2026-11-21T02:00:00Z").unwrap();
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let rec = catalog
        .get(snapshot::JOB, &table, &slot)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.status,
        backstop::catalog::TargetStatus::Failed,
        "never left CLAIMED"
    );

    // The very next attempt (no lease to wait for) adopts the backup.
    proxy.clear();
    let retry = snapshot_run(&clients, &env, payload).await;
    assert!(
        matches!(outcome(&retry, &table), Outcome::Created { .. }),
        "{retry:#?}"
    );
    assert_eq!(h.backups_of(&table).await.len(), 1);
}

#[tokio::test]
async fn a_look_alike_backup_made_before_the_slot_is_not_adopted() {
    // moto under libfaketime, its clock an hour behind: the look-alike is made "an hour ago".
    let real_now = Timestamp::now();
    let clock =
        std::env::temp_dir().join(format!("backstop-clock-{}", uuid::Uuid::new_v4().simple()));
    let stamp = |t: Timestamp| t.strftime("%Y-%m-%d %H:%M:%S").to_string();
    std::fs::write(
        &clock,
        format!(
            "{}\n",
            stamp(real_now - jiff::SignedDuration::from_hours(1))
        ),
    )
    .unwrap();
    let emulator = local::Emulator::start_with_clock(Some(&clock))
        .expect("moto under libfaketime (apt-get install faketime)");
    let config = emulator_config(emulator.endpoint()).await;
    let stack = local::provision(&config, emulator.endpoint(), "la-")
        .await
        .unwrap();
    let clients = Clients::from_config(&config);
    let table = "LookAlike";
    local::seed_demo_table(&clients.dynamodb, table, 3)
        .await
        .unwrap();
    // The slot passed ten minutes ago; a backup with its name was made an hour ago.
    let slot = ScheduleSlot::new(real_now - jiff::SignedDuration::from_mins(10));
    let fake = clients
        .dynamodb
        .create_backup()
        .table_name(table)
        .backup_name(snapshot::backup_name(table, &slot))
        .send()
        .await
        .unwrap()
        .backup_details
        .unwrap()
        .backup_arn;
    std::fs::write(&clock, format!("@{}\n", stamp(Timestamp::now()))).unwrap();
    // An earlier attempt failed, so the next one looks for a backup to adopt.
    let catalog = Catalog::new((*clients.dynamodb).clone(), &stack.catalog_table);
    let now = Timestamp::now();
    catalog
        .claim(
            snapshot::JOB,
            table,
            &slot,
            "r0",
            now,
            catalog::lease_until(now, None),
            None,
        )
        .await
        .unwrap();
    catalog
        .fail(snapshot::JOB, table, &slot, "r0", "injected", now)
        .await
        .unwrap();

    let env = Environment::from_pairs([
        (settings::ENV_CATALOG_TABLE, stack.catalog_table.as_str()),
        (settings::ENV_TABLES, table),
    ]);
    let r = snapshot_run(&clients, &env, json!({"slot": slot.to_string()})).await;
    let Outcome::Created { backup } = outcome(&r, table) else {
        panic!("{r:#?}")
    };
    assert_ne!(backup.backup_arn, fake, "the look-alike was not taken");
    let warnings = &r.targets[0].warnings;
    assert!(
        warnings.iter().any(|w| w.contains("before the slot")),
        "{warnings:?}"
    );
    let names: Vec<_> = clients
        .dynamodb
        .list_backups()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .backup_summaries()
        .to_vec();
    assert_eq!(names.len(), 2);
    let _ = std::fs::remove_file(&clock);
}

// ---------- 3. a bad retention setting does not stop snapshots ----------

#[tokio::test]
async fn snapshot_works_with_a_garbage_retention_policy_set() {
    let h = Harness::new().await;
    let table = h.name("Unbothered");
    h.create_table(&table, 2, &[]).await;
    let ctx = Context {
        clients: h.clients.clone(),
        env: h.env(&[
            (settings::ENV_TABLES, &table),
            (
                settings::ENV_RETENTION_POLICY,
                "keep_daily=thirty,,{garbage",
            ),
        ]),
    };
    let r = backstop::jobs::handle(
        JobKind::Snapshot,
        &ctx,
        json!({"slot": "2026-11-21T02:00:00Z"}),
        None,
    )
    .await
    .unwrap();
    assert!(matches!(outcome(&r, &table), Outcome::Created { .. }));
    assert_eq!(h.backups_of(&table).await.len(), 1);
    // Retention, whose setting it is, refuses it by name.
    let err = backstop::jobs::handle(JobKind::Retention, &ctx, json!({}), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("setting BACKSTOP_RETENTION_POLICY:"),
        "{err}"
    );
}

// ---------- 5. the catalog is not trusted blindly ----------

async fn set_legal_hold(h: &Harness, table: &str, day: u32, value: AttributeValue) {
    let slot = ScheduleSlot::parse(&format!("2026-11-{day:02}T02:00:00Z")).unwrap();
    h.clients
        .dynamodb
        .update_item()
        .table_name(&h.stack.catalog_table)
        .set_key(Some(catalog::target_key(snapshot::JOB, table, &slot)))
        .update_expression("SET legal_hold = :h")
        .expression_attribute_values(":h", value)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_string_valued_legal_hold_keeps_its_backup_and_an_unreadable_one_stops_the_table() {
    let h = Harness::new().await;
    let (held, odd) = (h.name("Held"), h.name("OddHold"));
    history(&h, &held, 4).await;
    history(&h, &odd, 3).await;
    set_legal_hold(&h, &held, 1, AttributeValue::S("true".into())).await;
    set_legal_hold(&h, &held, 2, AttributeValue::N("1".into())).await;
    set_legal_hold(&h, &held, 3, AttributeValue::S("false".into())).await;
    set_legal_hold(&h, &odd, 1, AttributeValue::L(vec![])).await;
    let env = h.env(&[
        (settings::ENV_TABLES, &format!("{held},{odd}")),
        (settings::ENV_RETENTION_POLICY, POLICY_KEEP_ONE),
    ]);

    let r = retention_run(&h.clients, &env, json!({})).await;
    // Held: days 1 and 2 held, day 4 newest, day 3 deleted; the hand-made backup untouched.
    assert!(
        matches!(
            outcome(&r, &held),
            Outcome::Retained {
                deleted: 1,
                kept: 4,
                ..
            }
        ),
        "{r:#?}"
    );
    let names: Vec<String> = h.backups_of(&held).await.into_iter().map(|b| b.0).collect();
    for day in ["20261101", "20261102", "20261104"] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!("{day}T020000Z"))),
            "{day}: {names:?}"
        );
    }
    match outcome(&r, &odd) {
        Outcome::Failed { error, .. } => {
            assert!(
                error.contains("legal_hold is a list; set it to true or false")
                    && error.contains("nothing deleted"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.backups_of(&odd).await.len(), 4, "nothing deleted");
}

#[tokio::test]
async fn a_hold_is_checked_again_in_the_catalog_just_before_each_delete() {
    let h = Harness::new().await;
    let table = h.name("Checked");
    history(&h, &table, 3).await;
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let records = catalog
        .list_targets(snapshot::JOB, Some(&table))
        .await
        .unwrap();
    let now = Timestamp::now();
    // The condition DynamoDB evaluates agrees with how Backstop reads a hold.
    for (value, free) in [
        (None, true),
        (Some(AttributeValue::Bool(false)), true),
        (Some(AttributeValue::S("No".into())), true),
        (Some(AttributeValue::N("0".into())), true),
        (Some(AttributeValue::Bool(true)), false),
        (Some(AttributeValue::S("until 2027-06".into())), false),
        (Some(AttributeValue::S(" no ".into())), false),
        (Some(AttributeValue::N("1".into())), false),
    ] {
        if let Some(v) = value.clone() {
            set_legal_hold(&h, &table, 1, v).await;
        }
        let record = catalog
            .list_targets(snapshot::JOB, Some(&table))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.slot == records[0].slot)
            .unwrap();
        assert_eq!(record.legal_hold, !free, "{value:?}");
        assert_eq!(
            catalog.still_not_held(&record, now).await.unwrap(),
            free,
            "{value:?}"
        );
    }
}

#[tokio::test]
async fn with_include_unmanaged_a_backup_named_as_backstops_but_unrecorded_stops_the_table() {
    let h = Harness::new().await;
    let table = h.name("Forgotten");
    history(&h, &table, 3).await;
    // A Backstop-named backup the catalog does not know: as after the catalog was replaced.
    h.clients
        .dynamodb
        .create_backup()
        .table_name(&table)
        .backup_name(format!("{table}-backstop-20261001T020000Z"))
        .send()
        .await
        .unwrap();
    let env = h.env(&[
        (settings::ENV_TABLES, &table),
        (
            settings::ENV_RETENTION_POLICY,
            "keep_last=1,min_complete=1,include_unmanaged=true",
        ),
    ]);
    let r = retention_run(&h.clients, &env, json!({})).await;
    match outcome(&r, &table) {
        Outcome::Failed { error, .. } => assert!(
            error.starts_with("nothing deleted") && error.contains("has no record of it"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.backups_of(&table).await.len(), 5, "nothing deleted");
}

// ---------- 7. failures are reported exactly, one table alone ----------

#[tokio::test]
async fn delete_backup_failing_for_some_backups_leaves_the_report_exact() {
    let h = Harness::new().await;
    let table = h.name("Flaky");
    history(&h, &table, 6).await;
    let listed = h.backups_of(&table).await;
    let arn_of = |day: u32| {
        listed
            .iter()
            .find(|(n, _)| n.ends_with(&format!("202611{day:02}T020000Z")))
            .unwrap()
            .1
            .clone()
    };
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    proxy.inject(Fault::new(
        "DeleteBackup",
        &arn_of(1),
        400,
        "AccessDeniedException",
    ));
    proxy.inject(Fault::new(
        "DeleteBackup",
        &arn_of(2),
        400,
        "BackupInUseException",
    ));
    proxy.inject(Fault::new(
        "DeleteBackup",
        &arn_of(3),
        400,
        "ThrottlingException",
    ));
    let clients = through(&proxy).await;
    let env = h.env(&[
        (settings::ENV_TABLES, &table),
        (settings::ENV_RETENTION_POLICY, POLICY_KEEP_ONE),
    ]);

    let r = retention_run(&clients, &env, json!({})).await;
    match outcome(&r, &table) {
        Outcome::Retained {
            kept,
            deleted,
            to_delete,
            failed_deletes,
            error,
            ..
        } => {
            assert_eq!((*deleted, *failed_deletes, *to_delete), (2, 3, 5));
            assert_eq!(
                *kept, 5,
                "the newest, the hand-made one and the three not deleted"
            );
            let error = error.as_deref().unwrap();
            assert!(
                error.contains("AccessDeniedException") || error.contains("injected"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.totals.deleted, 2);
    assert_eq!(r.totals.failed, 1);
    assert!(r.needs_retry());
    let results: Vec<(String, String)> = r.targets[0]
        .decisions
        .iter()
        .filter_map(|d| Some((d.backup_arn.clone(), d.result.clone()?)))
        .collect();
    for day in 1..=3 {
        let (_, res) = results.iter().find(|(a, _)| *a == arn_of(day)).unwrap();
        assert!(res.starts_with("delete failed:"), "day {day}: {res}");
    }
    for day in 4..=5 {
        let (_, res) = results.iter().find(|(a, _)| *a == arn_of(day)).unwrap();
        assert_eq!(res, "deleted");
    }
    assert_eq!(h.backups_of(&table).await.len(), 5);
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let deleted_in_catalog = catalog
        .list_targets(snapshot::JOB, Some(&table))
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.status == backstop::catalog::TargetStatus::Deleted)
        .count();
    assert_eq!(deleted_in_catalog, 2);
    let namespace = h.namespace();
    let metric =
        |m: &'static str| local::metric_sum(&h.config, &namespace, m, "retention", Some(&table));
    assert_eq!(metric(METRIC_RETENTION_DELETED).await.unwrap(), Some(2.0));
    assert_eq!(metric(METRIC_RETENTION_FAILURE).await.unwrap(), Some(1.0));
    let body = r.email_body();
    assert!(
        body.contains("kept 5, deleted 2, 3 deletes FAILED"),
        "{body}"
    );

    // The faults pass; the retry deletes the rest, and a third run deletes nothing.
    proxy.clear();
    let retry = retention_run(&clients, &env, json!({})).await;
    assert!(matches!(
        outcome(&retry, &table),
        Outcome::Retained {
            deleted: 3,
            failed_deletes: 0,
            ..
        }
    ));
    let again = retention_run(&clients, &env, json!({})).await;
    assert!(matches!(
        outcome(&again, &table),
        Outcome::Retained { deleted: 0, .. }
    ));
    assert_eq!(h.backups_of(&table).await.len(), 2);
}

#[tokio::test]
async fn a_tag_selection_with_one_unreadable_table_backs_up_the_rest() {
    let h = Harness::new().await;
    let tag_key = format!("{}plan", h.prefix);
    let (a, b, locked) = (h.name("TagA"), h.name("TagB"), h.name("TagLocked"));
    for t in [&a, &b, &locked] {
        h.create_table(t, 2, &[(&tag_key, "daily")]).await;
    }
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    proxy.inject(Fault::new(
        "ListTagsOfResource",
        &format!("/{locked}\""),
        400,
        "AccessDeniedException",
    ));
    let clients = through(&proxy).await;
    let env = h.env(&[(settings::ENV_TABLE_TAG, &format!("{tag_key}=daily"))]);

    let r = snapshot_run(&clients, &env, json!({"slot": "2026-11-21T02:00:00Z"})).await;
    assert!(matches!(outcome(&r, &a), Outcome::Created { .. }), "{r:#?}");
    assert!(matches!(outcome(&r, &b), Outcome::Created { .. }));
    match outcome(&r, &locked) {
        Outcome::Failed {
            operation, error, ..
        } => {
            assert_eq!(operation, "ListTagsOfResource");
            assert!(
                error.contains("could not tell whether it is selected"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        r.needs_retry(),
        "the unreadable table is not silently skipped"
    );
    assert_eq!(h.backups_of(&a).await.len(), 1);
    assert_eq!(h.backups_of(&b).await.len(), 1);
    assert!(h.backups_of(&locked).await.is_empty());
}

#[tokio::test]
async fn sns_and_metrics_failing_are_reported_and_the_run_record_keeps_them() {
    let h = Harness::new().await;
    let table = h.name("Quiet");
    h.create_table(&table, 2, &[]).await;
    // SNS and CloudWatch unreachable (nothing listens on port 1); DynamoDB works.
    let unreachable = emulator_config("http://127.0.0.1:1").await;
    let clients = Clients {
        sns: aws_sdk_sns::Client::new(&unreachable).into(),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&unreachable).into(),
        ..h.clients.clone()
    };
    let env = h.env(&[(settings::ENV_TABLES, &table)]);

    let r = snapshot_run(&clients, &env, json!({"slot": "2026-11-21T02:00:00Z"})).await;
    assert!(matches!(outcome(&r, &table), Outcome::Created { .. }));
    assert!(
        matches!(r.delivery.sns, DeliveryState::Failed { .. }),
        "{:?}",
        r.delivery
    );
    assert!(matches!(r.delivery.metrics, DeliveryState::Failed { .. }));
    assert!(matches!(r.delivery.catalog, DeliveryState::Sent { .. }));
    assert!(
        r.needs_retry(),
        "a run nobody heard of fails the invocation"
    );

    // The run record exists and names both failures.
    let record = h.run_record(&r).await;
    let errors = record.get("errors").and_then(|v| v.as_ss().ok()).unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("publishing to SNS") && e.contains("Publish")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("publishing metrics") && e.contains("PutMetricData")),
        "{errors:?}"
    );
    // Nothing reached the queue.
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(2))
            .await
            .unwrap();
    assert!(got.is_empty(), "{got:?}");
}
