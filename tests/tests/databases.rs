//! RDS instances as targets of the snapshot and retention jobs, against moto in server mode:
//! one snapshot per slot, redelivery and lost answers, the guard, a failure that fails alone,
//! and (on moto under libfaketime, so that each snapshot carries its day's SnapshotCreateTime)
//! retention over a history with copies in a replica region pruned by their own policy.

use std::collections::BTreeSet;
use std::path::PathBuf;

use aws_sdk_rds::types::Tag;
use backstop::aws::{emulator_config, Clients};
use backstop::catalog::{Catalog, TargetStatus};
use backstop::event::{JobRequest, ScheduleSlot};
use backstop::jobs::{retention, snapshot};
use backstop::report::{Outcome, RunReport, RunStatus};
use backstop::retention::Decision;
use backstop::settings::{self, Environment, JobKind, Settings};
use backstop_testkit::fault_proxy::{Fault, FaultProxy};
use backstop_testkit::local::{self, Emulator};
use backstop_tests::Harness;
use serde_json::{json, Value};

/// A PostgreSQL instance as the runbooks have it, with its backup retention and deletion
/// protection.
async fn create_instance(
    rds: &aws_sdk_rds::Client,
    id: &str,
    tags: &[(&str, &str)],
    retention_days: i32,
    deletion_protection: bool,
) {
    rds.create_db_instance()
        .db_instance_identifier(id)
        .engine("postgres")
        .engine_version("16.3")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("backstop")
        .master_user_password("not-a-real-secret-1")
        .backup_retention_period(retention_days)
        .deletion_protection(deletion_protection)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create DB instance {id}: {e:?}"));
}

/// Every snapshot of an instance in the client's region: (identifier, type).
async fn snapshots_of(rds: &aws_sdk_rds::Client, id: &str) -> Vec<(String, String)> {
    let out = rds
        .describe_db_snapshots()
        .db_instance_identifier(id)
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = out
        .db_snapshots()
        .iter()
        .map(|s| {
            (
                s.db_snapshot_identifier().unwrap_or_default().to_owned(),
                s.snapshot_type().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn manual(v: &[(String, String)]) -> Vec<String> {
    v.iter()
        .filter(|(_, t)| t == "manual")
        .map(|(n, _)| n.clone())
        .collect()
}

async fn run_with(clients: &Clients, env: &Environment, job: JobKind, payload: Value) -> RunReport {
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now()).unwrap();
    let settings = Settings::resolve(job, env, &request).unwrap();
    match job {
        JobKind::Snapshot => snapshot::run(clients, &settings, &request).await,
        _ => retention::run(clients, &settings, &request).await,
    }
}

fn target<'a>(r: &'a RunReport, name: &str) -> &'a backstop::report::TargetReport {
    r.targets
        .iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("{name} not in report: {r:#?}"))
}

#[tokio::test]
async fn an_instance_gets_one_snapshot_per_slot_and_a_redelivery_makes_none() {
    let h = Harness::new().await;
    let id = h.name("orders");
    create_instance(&h.clients.rds, &id, &[], 7, true).await;
    let env = h.env(&[(settings::ENV_RDS_INSTANCES, &id)]);
    let payload = json!({"slot": "2026-11-20T02:00:00Z"});

    let first = run_with(&h.clients, &env, JobKind::Snapshot, payload.clone()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!(first.selection, format!("RDS instances {id}"));
    let name = format!("{id}-backstop-20261120t020000z");
    let t = target(&first, &format!("rds:{id}"));
    let Outcome::Created { backup } = &t.outcome else {
        panic!("not created: {t:#?}")
    };
    assert_eq!(backup.backup_name, name);
    assert_eq!(backup.backup_status, "AVAILABLE");
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);

    // The redelivered event finds the slot done.
    let again = run_with(&h.clients, &env, JobKind::Snapshot, payload).await;
    assert!(
        matches!(
            target(&again, &format!("rds:{id}")).outcome,
            Outcome::AlreadyDone { .. }
        ),
        "{again:#?}"
    );
    let all = snapshots_of(&h.clients.rds, &id).await;
    assert_eq!(manual(&all), vec![name.clone()], "{all:?}");

    // Tagged as Backstop's, recorded DONE with the instance's facts for restores.
    let snap = h
        .clients
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(&name)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = snap.db_snapshots()[0]
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert!(
        tags.contains(&("backstop:managed".into(), "true".into())),
        "{tags:?}"
    );
    assert!(tags.contains(&("backstop:slot".into(), "2026-11-20T02:00:00Z".into())));
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let rec = catalog
        .get(
            JobKind::Snapshot,
            &format!("rds:{id}"),
            &ScheduleSlot::parse("2026-11-20T02:00:00Z").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, TargetStatus::Done);
    let facts: backstop::db::DbFacts = serde_json::from_value(rec.table_shape.unwrap()).unwrap();
    assert_eq!(facts.engine.as_deref(), Some("postgres"));
    assert_eq!(facts.backup_retention_days, Some(7));
    assert_eq!(facts.instance_class.as_deref(), Some("db.t3.micro"));
}

#[tokio::test]
async fn the_guard_reports_weak_backup_settings_and_their_drift() {
    let h = Harness::new().await;
    let id = h.name("weak");
    create_instance(&h.clients.rds, &id, &[], 7, true).await;
    let env = h.env(&[(settings::ENV_RDS_INSTANCES, &id)]);
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": "2026-11-20T02:00:00Z"}),
    )
    .await;
    assert!(target(&r, &format!("rds:{id}")).warnings.is_empty());

    // Someone shortens automated backups to a day and turns deletion protection off.
    h.clients
        .rds
        .modify_db_instance()
        .db_instance_identifier(&id)
        .backup_retention_period(1)
        .deletion_protection(false)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    let t = target(&r, &format!("rds:{id}"));
    assert!(matches!(t.outcome, Outcome::Created { .. }), "{t:#?}");
    let w = t.warnings.join("\n");
    assert!(
        w.contains("automated backups are kept 1 days, fewer than the 7 expected"),
        "{w}"
    );
    assert!(w.contains("deletion protection is off"), "{w}");
    assert!(w.contains("automated backup retention changed since the snapshot of 2026-11-20T02:00:00Z: 7 days -> 1 days"), "{w}");
    assert!(
        w.contains(
            "deletion protection changed since the snapshot of 2026-11-20T02:00:00Z: on -> off"
        ),
        "{w}"
    );
    // Warnings, not failures: the snapshot was made and the run succeeded.
    assert_eq!(r.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_missing_instance_fails_alone_and_tables_run_beside_databases() {
    let h = Harness::new().await;
    let (good, gone) = (h.name("good"), h.name("gone"));
    create_instance(&h.clients.rds, &good, &[], 7, true).await;
    let table = h.name("Orders");
    h.create_table(&table, 3, &[]).await;
    let list = format!("{good},{gone}");
    let env = h.env(&[
        (settings::ENV_RDS_INSTANCES, &list),
        (settings::ENV_TABLES, &table),
    ]);
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": "2026-11-20T02:00:00Z"}),
    )
    .await;
    assert_eq!(r.status, RunStatus::PartiallyFailed, "{r:#?}");
    assert!(matches!(
        target(&r, &table).outcome,
        Outcome::Created { .. }
    ));
    assert!(matches!(
        target(&r, &format!("rds:{good}")).outcome,
        Outcome::Created { .. }
    ));
    let Outcome::Failed {
        operation,
        error,
        retryable,
    } = &target(&r, &format!("rds:{gone}")).outcome
    else {
        panic!("{r:#?}")
    };
    assert_eq!(operation, "DescribeDBInstances");
    assert!(
        error.contains(&format!("DB instance {gone}")) && error.contains("no such instance"),
        "{error}"
    );
    assert!(!retryable);
    assert_eq!(manual(&snapshots_of(&h.clients.rds, &good).await).len(), 1);
}

#[tokio::test]
async fn selection_by_tag_and_pattern_leaves_out_drill_instances() {
    let h = Harness::new().await;
    let (a, b) = (h.name("app-a"), h.name("app-b"));
    create_instance(&h.clients.rds, &a, &[("backup", "daily")], 7, true).await;
    create_instance(&h.clients.rds, &b, &[], 7, true).await;
    let drill = format!("backstop-drill-{}", h.prefix.trim_end_matches('-'));
    create_instance(&h.clients.rds, &drill, &[("backup", "daily")], 7, true).await;

    let tag = run_with(
        &h.clients,
        &h.env(&[(settings::ENV_RDS_INSTANCE_TAG, "backup=daily")]),
        JobKind::Snapshot,
        json!({"slot": "2026-11-20T02:00:00Z", "dry_run": true}),
    )
    .await;
    let names: BTreeSet<&str> = tag.targets.iter().map(|t| t.table.as_str()).collect();
    assert!(names.contains(format!("rds:{a}").as_str()), "{names:?}");
    assert!(!names.contains(format!("rds:{b}").as_str()));
    assert!(
        tag.excluded
            .iter()
            .any(|e| e.table == format!("rds:{drill}")),
        "{:?}",
        tag.excluded
    );
    assert!(matches!(
        target(&tag, &format!("rds:{a}")).outcome,
        Outcome::Planned { .. }
    ));

    let pattern = format!("{}app-*", h.prefix);
    let p = run_with(
        &h.clients,
        &h.env(&[(settings::ENV_RDS_INSTANCE_PATTERN, &pattern)]),
        JobKind::Snapshot,
        json!({"slot": "2026-11-20T02:00:00Z", "dry_run": true}),
    )
    .await;
    let names: BTreeSet<String> = p.targets.iter().map(|t| t.table.clone()).collect();
    assert_eq!(
        names,
        BTreeSet::from([format!("rds:{a}"), format!("rds:{b}")])
    );
    // A dry run makes nothing.
    assert!(manual(&snapshots_of(&h.clients.rds, &a).await).is_empty());
}

#[tokio::test]
async fn a_lost_create_answer_adopts_the_snapshot_and_a_refused_one_is_made_on_the_retry() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let (lost, failing) = (h.name("lost"), h.name("failing"));
    create_instance(&h.clients.rds, &lost, &[], 7, true).await;
    create_instance(&h.clients.rds, &failing, &[], 7, true).await;
    // RDS makes the snapshot, and the answer never arrives (every SDK attempt's).
    proxy.lose_answers("CreateDBSnapshot", &lost, 3);
    // RDS refuses with a 500 every time and makes nothing.
    proxy.inject(Fault::new(
        "CreateDBSnapshot",
        &failing,
        500,
        "InternalFailure",
    ));
    let list = format!("{lost},{failing}");
    let env = h.env(&[(settings::ENV_RDS_INSTANCES, &list)]);
    let payload = json!({"slot": "2026-11-20T02:00:00Z"});
    let r = run_with(&clients, &env, JobKind::Snapshot, payload.clone()).await;
    assert_eq!(r.status, RunStatus::PartiallyFailed, "{r:#?}");
    let t = target(&r, &format!("rds:{lost}"));
    assert!(matches!(t.outcome, Outcome::Created { .. }), "{t:#?}");
    assert!(
        t.warnings.iter().any(|w| w.contains("adopted")),
        "{:?}",
        t.warnings
    );
    assert_eq!(manual(&snapshots_of(&h.clients.rds, &lost).await).len(), 1);
    let Outcome::Failed {
        operation,
        retryable,
        ..
    } = &target(&r, &format!("rds:{failing}")).outcome
    else {
        panic!("{r:#?}")
    };
    assert_eq!((operation.as_str(), *retryable), ("CreateDBSnapshot", true));
    assert!(manual(&snapshots_of(&h.clients.rds, &failing).await).is_empty());

    // The retry of the slot (Lambda's, or the next delivery) makes it, once; the adopted one is
    // already done.
    proxy.clear();
    let r = run_with(&clients, &env, JobKind::Snapshot, payload).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert!(matches!(
        target(&r, &format!("rds:{failing}")).outcome,
        Outcome::Created { .. }
    ));
    assert!(matches!(
        target(&r, &format!("rds:{lost}")).outcome,
        Outcome::AlreadyDone { .. }
    ));
    assert_eq!(
        manual(&snapshots_of(&h.clients.rds, &failing).await).len(),
        1
    );
    assert_eq!(manual(&snapshots_of(&h.clients.rds, &lost).await).len(), 1);
}

// ---- Retention over a history, with copies in a replica region (moto under libfaketime) ----

const REPLICA: &str = "us-west-2";

struct Clocked {
    _emulator: Emulator,
    clock: PathBuf,
    clients: Clients,
    stack: local::LocalStack,
}

impl Clocked {
    fn set_clock(&self, at: &str) {
        std::fs::write(&self.clock, format!("{at}\n")).unwrap();
    }

    fn env(&self, extra: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(
            [
                (
                    settings::ENV_CATALOG_TABLE,
                    self.stack.catalog_table.as_str(),
                ),
                (settings::ENV_RDS_INSTANCES, "ledger"),
                (settings::ENV_DB_REPLICA_REGION, REPLICA),
            ]
            .into_iter()
            .chain(extra.iter().copied()),
        )
    }

    async fn run_at(
        &self,
        job: JobKind,
        payload: Value,
        received_at: &str,
        extra: &[(&str, &str)],
    ) -> RunReport {
        let request = JobRequest::from_payload(&payload, received_at.parse().unwrap()).unwrap();
        let settings = Settings::resolve(job, &self.env(extra), &request).unwrap();
        match job {
            JobKind::Snapshot => snapshot::run(&self.clients, &settings, &request).await,
            _ => retention::run(&self.clients, &settings, &request).await,
        }
    }
}

#[tokio::test]
async fn retention_keeps_the_policys_snapshots_never_automated_ones_and_prunes_copies_by_their_own_policy(
) {
    let clock =
        std::env::temp_dir().join(format!("backstop-clock-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&clock, "2026-11-01 12:00:00\n").unwrap();
    let emulator = Emulator::start_with_clock(Some(&clock))
        .expect("moto under libfaketime (apt-get install faketime)");
    let config = emulator_config(emulator.endpoint()).await;
    let stack = local::provision(&config, emulator.endpoint(), "d-")
        .await
        .unwrap();
    let h = Clocked {
        _emulator: emulator,
        clock,
        clients: Clients::from_config(&config),
        stack,
    };
    let replica = h.clients.rds_in(Some(REPLICA));
    create_instance(&h.clients.rds, "ledger", &[], 7, true).await;
    // Someone's own manual snapshot, made by hand in the runbook's way.
    h.set_clock("2026-11-03 09:00:00");
    h.clients
        .rds
        .create_db_snapshot()
        .db_instance_identifier("ledger")
        .db_snapshot_identifier("ledger-manual-20261103")
        .send()
        .await
        .unwrap();
    // Twelve daily slots, each run by the snapshot job with moto's clock just after the slot.
    let days: Vec<String> = (10..=21).map(|d| format!("2026-11-{d}")).collect();
    for day in &days {
        h.set_clock(&format!("{day} 02:01:00"));
        let r = h
            .run_at(
                JobKind::Snapshot,
                json!({"slot": format!("{day}T02:00:00Z")}),
                &format!("{day}T02:01:00Z"),
                &[],
            )
            .await;
        let t = target(&r, "rds:ledger");
        assert!(matches!(t.outcome, Outcome::Created { .. }), "{t:#?}");
        let replica_state = t.replica.as_ref().expect("a replica state");
        assert!(replica_state.ok, "{replica_state:?}");
        assert_eq!(replica_state.lag_s, Some(0));
    }
    h.set_clock("@2026-11-22 03:00:00");
    let before = snapshots_of(&h.clients.rds, "ledger").await;
    let automated: Vec<&(String, String)> =
        before.iter().filter(|(_, t)| t == "automated").collect();
    assert!(
        !automated.is_empty(),
        "moto makes an automated snapshot at creation: {before:?}"
    );
    assert_eq!(manual(&before).len(), 13);
    let copies = manual(&snapshots_of(&replica, "ledger").await);
    assert_eq!(
        copies.len(),
        12,
        "every snapshot copied to {REPLICA}: {copies:?}"
    );

    let policy = [
        (settings::ENV_RDS_RETENTION_POLICY, "keep_daily=5"),
        (
            settings::ENV_DB_REPLICA_RETENTION_POLICY,
            "keep_daily=2,min_complete=1",
        ),
    ];
    let slot = json!({"slot": "2026-11-22T03:00:00Z"});
    // A dry run plans, explains and deletes nothing.
    let dry = h
        .run_at(
            JobKind::Retention,
            json!({"slot": "2026-11-22T03:00:00Z", "dry_run": true}),
            "2026-11-22T03:00:00Z",
            &policy,
        )
        .await;
    let t = target(&dry, "rds:ledger");
    assert!(
        matches!(
            t.outcome,
            Outcome::Retained {
                deleted: 0,
                to_delete: 17,
                ..
            }
        ),
        "7 originals and 10 copies: {:#?}",
        t.outcome
    );
    assert_eq!(
        manual(&snapshots_of(&h.clients.rds, "ledger").await).len(),
        13
    );
    let reason = |name: &str| -> String {
        let d = t
            .decisions
            .iter()
            .find(|d| d.backup_name == name)
            .unwrap_or_else(|| panic!("{name}: {:#?}", t.decisions));
        match &d.decision {
            Decision::Keep { reasons } => reasons
                .iter()
                .map(|r| format!("{}: {}", r.rule, r.detail))
                .collect::<Vec<_>>()
                .join("; "),
            Decision::Delete { reason } => format!("DELETE: {reason}"),
        }
    };
    assert!(
        reason("ledger-manual-20261103").starts_with("floor:not_made_by_backstop"),
        "{}",
        reason("ledger-manual-20261103")
    );
    assert!(reason("ledger-backstop-20261121t020000z")
        .starts_with("keep_daily 5: newest of day 2026-11-21"));
    assert!(reason("ledger-backstop-20261116t020000z").starts_with("DELETE: matched no keep rule"));
    assert!(
        reason("ledger-backstop-20261120t020000z (copy in us-west-2)").starts_with("keep_daily 2")
    );
    assert!(reason("ledger-backstop-20261119t020000z (copy in us-west-2)").starts_with("DELETE"));
    // Automated snapshots are not even listed.
    assert!(automated.iter().all(|(n, _)| t
        .decisions
        .iter()
        .all(|d| !d.backup_name.starts_with(n.as_str()))));

    let r = h
        .run_at(JobKind::Retention, slot, "2026-11-22T03:00:00Z", &policy)
        .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let after = snapshots_of(&h.clients.rds, "ledger").await;
    let kept: BTreeSet<String> = manual(&after).into_iter().collect();
    let expected: BTreeSet<String> = (17..=21)
        .map(|d| format!("ledger-backstop-202611{d}t020000z"))
        .chain(["ledger-manual-20261103".to_owned()])
        .collect();
    assert_eq!(kept, expected);
    // The automated snapshots are all still there.
    let still: Vec<&(String, String)> = after.iter().filter(|(_, t)| t == "automated").collect();
    assert_eq!(still, automated);
    // The copies: the two newest days.
    let copies: BTreeSet<String> = manual(&snapshots_of(&replica, "ledger").await)
        .into_iter()
        .collect();
    assert_eq!(
        copies,
        BTreeSet::from([
            "ledger-backstop-20261120t020000z".to_owned(),
            "ledger-backstop-20261121t020000z".to_owned()
        ])
    );
    // The catalog says which were deleted.
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let records = catalog
        .list_targets(JobKind::Snapshot, Some("rds:ledger"))
        .await
        .unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.status == TargetStatus::Deleted)
            .count(),
        7
    );
    let _ = std::fs::remove_file(&h.clock);
}

// ---- Restore drills in the validate job ----

fn this_hour() -> String {
    let now = jiff::Timestamp::now();
    let s = now.as_second() - now.as_second().rem_euclid(3600);
    jiff::Timestamp::from_second(s).unwrap().to_string()
}

async fn validate_with(clients: &Clients, env: &Environment, payload: Value) -> RunReport {
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Validate, env, &request).unwrap();
    backstop::jobs::validate::run(clients, &settings, &request).await
}

#[tokio::test]
async fn a_drill_restores_the_newest_snapshot_checks_it_measures_and_deletes_it() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let id = h.name("drilled");
    create_instance(&h.clients.rds, &id, &[], 7, true).await;
    let env = h.env(&[
        (settings::ENV_RDS_INSTANCES, &id),
        (settings::ENV_PITR_MAX_LAG, "off"),
    ]);
    let slot = this_hour();
    let r = run_with(&clients, &env, JobKind::Snapshot, json!({"slot": slot})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");

    let v = validate_with(&clients, &env, json!({"slot": slot})).await;
    let t = target(&v, &format!("rds:{id}"));
    assert!(
        matches!(t.outcome, Outcome::Validated { problems: 0 }),
        "{t:#?}"
    );
    let validation = t.validation.as_ref().unwrap();
    assert!(
        validation.backup_age_s.is_some_and(|a| a < 3600),
        "{validation:?}"
    );
    let drill = validation.drill.as_ref().expect("a drill ran");
    assert_eq!(
        drill.level,
        Some(backstop::drill::DrillLevel::Consistent),
        "{drill:?}"
    );
    assert_eq!(drill.state, backstop::drill::DrillState::Cleaned);
    assert!(drill.restore_s.is_some(), "the RTO is measured: {drill:?}");
    assert!(
        drill.detail.contains("postgres 16.3, 20 GiB, available"),
        "{}",
        drill.detail
    );
    assert!(
        drill.drill_table.starts_with("backstop-drill-"),
        "{}",
        drill.drill_table
    );
    // The restore asked for a new instance like the source, deletable; then it was deleted
    // without a final snapshot.
    let restores = proxy.requests("RestoreDBInstanceFromDBSnapshot");
    assert_eq!(restores.len(), 1, "{restores:?}");
    let body = &restores[0];
    assert!(
        body.contains(&format!("DBInstanceIdentifier={}", drill.drill_table)),
        "{body}"
    );
    assert!(
        body.contains(&format!("DBSnapshotIdentifier={id}-backstop-")),
        "{body}"
    );
    assert!(body.contains("DeletionProtection=false"), "{body}");
    assert!(body.contains("DBInstanceClass=db.t3.micro"), "{body}");
    let deletes = proxy.requests("DeleteDBInstance");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(
        deletes[0].contains("SkipFinalSnapshot=true"),
        "{}",
        deletes[0]
    );
    let left = backstop::db::rds::describe_instance(&h.clients.rds, &drill.drill_table)
        .await
        .unwrap();
    assert!(
        left.is_none() || left.as_ref().and_then(|i| i.db_instance_status()) == Some("deleting"),
        "{left:?}"
    );
    // The source is untouched, and no drill is due again this week.
    assert!(backstop::db::rds::describe_instance(&h.clients.rds, &id)
        .await
        .unwrap()
        .is_some());
    let again = validate_with(&clients, &env, json!({"slot": slot})).await;
    let t = target(&again, &format!("rds:{id}"));
    assert!(t.validation.as_ref().unwrap().drill.is_none(), "{t:#?}");
    assert_eq!(proxy.requests("RestoreDBInstanceFromDBSnapshot").len(), 1);
}

#[tokio::test]
async fn a_drill_of_a_snapshot_that_is_gone_fails_and_is_reported() {
    let h = Harness::new().await;
    let id = h.name("lostsnap");
    create_instance(&h.clients.rds, &id, &[], 7, true).await;
    let env = h.env(&[
        (settings::ENV_RDS_INSTANCES, &id),
        (settings::ENV_PITR_MAX_LAG, "off"),
    ]);
    let slot = this_hour();
    let r = run_with(&h.clients, &env, JobKind::Snapshot, json!({"slot": slot})).await;
    let Outcome::Created { backup } = &target(&r, &format!("rds:{id}")).outcome else {
        panic!("{r:#?}")
    };
    // Someone deletes the snapshot behind Backstop's back.
    h.clients
        .rds
        .delete_db_snapshot()
        .db_snapshot_identifier(&backup.backup_name)
        .send()
        .await
        .unwrap();
    let v = validate_with(&h.clients, &env, json!({"slot": slot})).await;
    let t = target(&v, &format!("rds:{id}"));
    let drill = t
        .validation
        .as_ref()
        .unwrap()
        .drill
        .as_ref()
        .expect("a drill ran");
    assert_eq!(
        drill.level,
        Some(backstop::drill::DrillLevel::Failed),
        "{drill:?}"
    );
    assert!(
        drill.detail.contains("the restore was refused"),
        "{}",
        drill.detail
    );
    assert!(
        matches!(t.outcome, Outcome::Validated { problems: 1 }),
        "{t:#?}"
    );
    assert_eq!(v.status, RunStatus::ProblemsFound, "{v:#?}");
}

#[tokio::test]
async fn the_sweep_deletes_only_tagged_drill_instances_no_open_drill_names() {
    let h = Harness::new().await;
    let tag = h.prefix.trim_end_matches('-');
    let (left_behind, untagged, open) = (
        format!("backstop-drill-{tag}-left"),
        format!("backstop-drill-{tag}-mine"),
        format!("backstop-drill-{tag}-open"),
    );
    create_instance(
        &h.clients.rds,
        &left_behind,
        &[("backstop:drill", "true")],
        0,
        false,
    )
    .await;
    create_instance(&h.clients.rds, &untagged, &[], 0, false).await;
    create_instance(
        &h.clients.rds,
        &open,
        &[("backstop:drill", "true")],
        0,
        false,
    )
    .await;
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let ctx = backstop::db::drill::DbDrillCtx {
        clients: &h.clients,
        catalog: &catalog,
        // This test's own names only: other tests' drills in flight are not its to sweep.
        prefix: &format!("backstop-drill-{tag}-"),
        run_id: "sweep-test",
    };
    let swept = ctx
        .sweep(
            &[backstop::db::DbKind::RdsInstance],
            std::slice::from_ref(&open),
            jiff::SignedDuration::ZERO,
        )
        .await
        .unwrap();
    assert!(swept.contains(&left_behind), "{swept:?}");
    assert!(
        !swept.contains(&untagged) && !swept.contains(&open),
        "{swept:?}"
    );
    let exists = |id: String| {
        let rds = h.clients.rds.clone();
        async move {
            backstop::db::rds::describe_instance(&rds, &id)
                .await
                .unwrap()
                .is_some_and(|i| i.db_instance_status() != Some("deleting"))
        }
    };
    assert!(!exists(left_behind).await);
    assert!(exists(untagged).await && exists(open).await);
}

// ---- What moto cannot show: snapshots still being made, pages, copies in flight ----

/// Clients whose RDS client answers by `rules` where one matches (moto otherwise).
fn rds_with_rules(h: &Harness, rules: &[&aws_smithy_mocks::Rule]) -> Clients {
    let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new()
        .rule_mode(aws_smithy_mocks::RuleMode::MatchAny)
        .allow_passthrough();
    for r in rules {
        interceptor = interceptor.with_rule(r);
    }
    let conf = aws_sdk_rds::config::Builder::from(&h.config)
        .interceptor(interceptor)
        .build();
    Clients {
        rds: aws_sdk_rds::Client::from_conf(conf).into(),
        ..h.clients.clone()
    }
}

#[tokio::test]
async fn a_snapshot_still_being_made_is_recorded_started_and_a_later_run_records_it_done() {
    use aws_sdk_rds::operation::create_db_snapshot::CreateDbSnapshotOutput;
    use aws_sdk_rds::types::DbSnapshot;
    let h = Harness::new().await;
    let id = h.name("slow");
    create_instance(&h.clients.rds, &id, &[], 7, true).await;
    let slot = "2026-11-20T02:00:00Z";
    let name = format!("{id}-backstop-20261120t020000z");
    // RDS takes the request (the snapshot exists) and answers "creating", as it does for
    // minutes in AWS; moto would answer "available" at once.
    h.clients
        .rds
        .create_db_snapshot()
        .db_instance_identifier(&id)
        .db_snapshot_identifier(&name)
        .send()
        .await
        .unwrap();
    let arn = format!("arn:aws:rds:us-east-1:123456789012:snapshot:{name}");
    let (arn2, name2, id2) = (arn.clone(), name.clone(), id.clone());
    let creating =
        aws_smithy_mocks::mock!(aws_sdk_rds::Client::create_db_snapshot).then_output(move || {
            CreateDbSnapshotOutput::builder()
                .db_snapshot(
                    DbSnapshot::builder()
                        .db_snapshot_identifier(&name2)
                        .db_snapshot_arn(&arn2)
                        .db_instance_identifier(&id2)
                        .snapshot_type("manual")
                        .status("creating")
                        .build(),
                )
                .build()
        });
    let env = h.env(&[(settings::ENV_RDS_INSTANCES, &id)]);
    let r = run_with(
        &rds_with_rules(&h, &[&creating]),
        &env,
        JobKind::Snapshot,
        json!({"slot": slot}),
    )
    .await;
    let t = target(&r, &format!("rds:{id}"));
    assert!(
        matches!(&t.outcome, Outcome::Started { export_id, note } if *export_id == name && note.contains("is creating")),
        "{t:#?}"
    );
    assert_eq!(r.totals.created, 0, "not counted as made: {:?}", r.totals);
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let rec = catalog
        .get(
            JobKind::Snapshot,
            &format!("rds:{id}"),
            &ScheduleSlot::parse(slot).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, TargetStatus::Started);
    assert_eq!(rec.backup_name.as_deref(), Some(name.as_str()));
    // Retention leaves a snapshot alone while the catalog says it is being made... and the
    // next slot's run finds it available and records it.
    let next = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    let t = target(&next, &format!("rds:{id}"));
    assert!(matches!(t.outcome, Outcome::Created { .. }), "{t:#?}");
    assert!(
        t.warnings.iter().any(|w| w.contains(&format!(
            "the snapshot of {slot} ({name}) is available now, and recorded"
        ))),
        "{:?}",
        t.warnings
    );
    let rec = catalog
        .get(
            JobKind::Snapshot,
            &format!("rds:{id}"),
            &ScheduleSlot::parse(slot).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, TargetStatus::Done);
    assert_eq!(manual(&snapshots_of(&h.clients.rds, &id).await).len(), 2);
}

#[tokio::test]
async fn a_snapshot_listing_whose_pages_do_not_advance_deletes_nothing() {
    use aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput;
    let h = Harness::new().await;
    let id = h.name("paged");
    create_instance(&h.clients.rds, &id, &[], 7, true).await;
    let env = h.env(&[
        (settings::ENV_RDS_INSTANCES, &id),
        (
            settings::ENV_RDS_RETENTION_POLICY,
            "keep_last=1,min_complete=1",
        ),
    ]);
    for day in 1..=3 {
        run_with(
            &h.clients,
            &env,
            JobKind::Snapshot,
            json!({"slot": format!("2026-11-0{day}T02:00:00Z")}),
        )
        .await;
    }
    // The listing's pages: the first names a next page, which names itself again.
    let first = aws_smithy_mocks::mock!(aws_sdk_rds::Client::describe_db_snapshots)
        .match_requests(|r| r.snapshot_type() == Some("manual") && r.marker().is_none())
        .then_output(|| DescribeDbSnapshotsOutput::builder().marker("m1").build());
    let stuck = aws_smithy_mocks::mock!(aws_sdk_rds::Client::describe_db_snapshots)
        .match_requests(|r| r.marker() == Some("m1"))
        .then_output(|| DescribeDbSnapshotsOutput::builder().marker("m1").build());
    let r = run_with(
        &rds_with_rules(&h, &[&first, &stuck]),
        &env,
        JobKind::Retention,
        json!({}),
    )
    .await;
    let Outcome::Failed {
        error, retryable, ..
    } = &target(&r, &format!("rds:{id}")).outcome
    else {
        panic!("{r:#?}")
    };
    assert!(
        error.starts_with("nothing deleted: the listing is incomplete"),
        "{error}"
    );
    assert!(retryable);
    assert_eq!(manual(&snapshots_of(&h.clients.rds, &id).await).len(), 3);
    // Without the fault the same run deletes the two older ones.
    let r = run_with(&h.clients, &env, JobKind::Retention, json!({})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(manual(&snapshots_of(&h.clients.rds, &id).await).len(), 1);
}

#[tokio::test]
async fn a_source_whose_copy_is_in_flight_is_kept_and_a_hold_on_either_side_holds_both() {
    let h = Harness::new().await;
    let id = h.name("linked");
    create_instance(&h.clients.rds, &id, &[], 7, true).await;
    let env = h.env(&[
        (settings::ENV_RDS_INSTANCES, &id),
        (settings::ENV_DB_REPLICA_REGION, REPLICA),
        (
            settings::ENV_RDS_RETENTION_POLICY,
            "keep_last=1,min_complete=1",
        ),
        (
            settings::ENV_DB_REPLICA_RETENTION_POLICY,
            "keep_last=1,min_complete=1",
        ),
    ]);
    for day in 1..=3 {
        let r = run_with(
            &h.clients,
            &env,
            JobKind::Snapshot,
            json!({"slot": format!("2026-11-0{day}T02:00:00Z")}),
        )
        .await;
        assert!(
            target(&r, &format!("rds:{id}"))
                .replica
                .as_ref()
                .is_some_and(|x| x.ok),
            "{r:#?}"
        );
    }
    let replica = h.clients.rds_in(Some(REPLICA));
    assert_eq!(manual(&snapshots_of(&replica, &id).await).len(), 3);
    let slot = |d: u32| ScheduleSlot::parse(&format!("2026-11-0{d}T02:00:00Z")).unwrap();
    // Day 1's copy is (as far as the catalog knows) still being made from its source.
    let copy_target = format!("rds:{id}@{REPLICA}");
    h.clients
        .dynamodb
        .update_item()
        .table_name(&h.stack.catalog_table)
        .set_key(Some(backstop::catalog::target_key(
            JobKind::Snapshot,
            &copy_target,
            &slot(1),
        )))
        .update_expression("SET #s = :started")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(
            ":started",
            aws_sdk_dynamodb::types::AttributeValue::S("STARTED".into()),
        )
        .send()
        .await
        .unwrap();
    // Day 2's source is on legal hold.
    h.clients
        .dynamodb
        .update_item()
        .table_name(&h.stack.catalog_table)
        .set_key(Some(backstop::catalog::target_key(
            JobKind::Snapshot,
            &format!("rds:{id}"),
            &slot(2),
        )))
        .update_expression("SET legal_hold = :h")
        .expression_attribute_values(":h", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .send()
        .await
        .unwrap();
    let r = run_with(&h.clients, &env, JobKind::Retention, json!({})).await;
    let t = target(&r, &format!("rds:{id}"));
    let rules = |name: &str| -> String {
        let d = t
            .decisions
            .iter()
            .find(|d| d.backup_name == name)
            .unwrap_or_else(|| panic!("{name}: {:#?}", t.decisions));
        match &d.decision {
            Decision::Keep { reasons } => reasons
                .iter()
                .map(|r| r.rule.clone())
                .collect::<Vec<_>>()
                .join(","),
            Decision::Delete { .. } => "DELETE".into(),
        }
    };
    let day = |d: u32| format!("{id}-backstop-2026110{d}t020000z");
    assert_eq!(rules(&day(1)), "floor:copy_in_progress");
    assert!(
        rules(&day(2)).contains("floor:legal_hold"),
        "{}",
        rules(&day(2))
    );
    assert!(rules(&format!("{} (copy in {REPLICA})", day(2))).contains("floor:legal_hold"));
    // Day 1's copy itself is complete in RDS and Backstop's (it has a record): its own policy
    // deletes it; only its source waited for it.
    assert_eq!(rules(&format!("{} (copy in {REPLICA})", day(1))), "DELETE");
    let kept: BTreeSet<String> = manual(&snapshots_of(&h.clients.rds, &id).await)
        .into_iter()
        .collect();
    assert_eq!(kept, BTreeSet::from([day(1), day(2), day(3)]));
    let copies: BTreeSet<String> = manual(&snapshots_of(&replica, &id).await)
        .into_iter()
        .collect();
    assert_eq!(copies, BTreeSet::from([day(2), day(3)]));
}

// ---- Aurora clusters: the same jobs, cluster calls ----

async fn create_cluster(rds: &aws_sdk_rds::Client, id: &str, deletion_protection: bool) {
    rds.create_db_cluster()
        .db_cluster_identifier(id)
        .engine("aurora-postgresql")
        .engine_version("16.4")
        .master_username("backstop")
        .master_user_password("not-a-real-secret-1")
        .backup_retention_period(7)
        .deletion_protection(deletion_protection)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create DB cluster {id}: {e:?}"));
}

/// Every snapshot of a cluster in the client's region: (identifier, type).
async fn cluster_snapshots_of(rds: &aws_sdk_rds::Client, id: &str) -> Vec<(String, String)> {
    let out = rds
        .describe_db_cluster_snapshots()
        .db_cluster_identifier(id)
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = out
        .db_cluster_snapshots()
        .iter()
        .map(|s| {
            (
                s.db_cluster_snapshot_identifier()
                    .unwrap_or_default()
                    .to_owned(),
                s.snapshot_type().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_aurora_cluster_is_snapshotted_once_per_slot_copied_pruned_and_drilled() {
    let h = Harness::new().await;
    let id = h.name("ledger");
    create_cluster(&h.clients.rds, &id, true).await;
    let env = h.env(&[
        (settings::ENV_AURORA_CLUSTERS, &id),
        (settings::ENV_DB_REPLICA_REGION, REPLICA),
        (
            settings::ENV_AURORA_RETENTION_POLICY,
            "keep_last=1,min_complete=1",
        ),
        (
            settings::ENV_DB_REPLICA_RETENTION_POLICY,
            "keep_last=2,min_complete=1",
        ),
        (settings::ENV_PITR_MAX_LAG, "off"),
    ]);
    let name = format!("aurora:{id}");
    let before = cluster_snapshots_of(&h.clients.rds, &id).await;
    for day in 1..=3 {
        let payload = json!({"slot": format!("2026-11-0{day}T02:00:00Z")});
        let r = run_with(&h.clients, &env, JobKind::Snapshot, payload.clone()).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
        assert_eq!(r.selection, format!("Aurora clusters {id}"));
        let t = target(&r, &name);
        let Outcome::Created { backup } = &t.outcome else {
            panic!("{t:#?}")
        };
        assert_eq!(
            backup.backup_name,
            format!("{id}-backstop-2026110{day}t020000z")
        );
        assert!(
            backup.backup_arn.contains(":cluster-snapshot:"),
            "{}",
            backup.backup_arn
        );
        assert!(t.replica.as_ref().is_some_and(|x| x.ok), "{:?}", t.replica);
        // Redelivered: nothing new.
        let again = run_with(&h.clients, &env, JobKind::Snapshot, payload).await;
        assert!(matches!(
            target(&again, &name).outcome,
            Outcome::AlreadyDone { .. }
        ));
    }
    let made = manual(&cluster_snapshots_of(&h.clients.rds, &id).await);
    assert_eq!(made.len(), manual(&before).len() + 3, "{made:?}");
    let replica = h.clients.rds_in(Some(REPLICA));
    assert_eq!(manual(&cluster_snapshots_of(&replica, &id).await).len(), 3);

    // Retention: the kind's policy here, the replica's there; automated snapshots untouched.
    let r = run_with(&h.clients, &env, JobKind::Retention, json!({})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let after = cluster_snapshots_of(&h.clients.rds, &id).await;
    assert_eq!(
        manual(&after),
        vec![format!("{id}-backstop-20261103t020000z")],
        "{after:?}"
    );
    let automated = |v: &[(String, String)]| {
        v.iter()
            .filter(|(_, t)| t == "automated")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(automated(&after), automated(&before));
    assert_eq!(manual(&cluster_snapshots_of(&replica, &id).await).len(), 2);

    // A drill restores the newest snapshot into a drill cluster, checks it and deletes it.
    let v = validate_with(&h.clients, &env, json!({"slot": this_hour()})).await;
    let t = target(&v, &name);
    let drill = t
        .validation
        .as_ref()
        .unwrap()
        .drill
        .as_ref()
        .expect("a drill ran");
    assert_eq!(
        drill.level,
        Some(backstop::drill::DrillLevel::Consistent),
        "{drill:?}"
    );
    assert_eq!(drill.state, backstop::drill::DrillState::Cleaned);
    assert!(
        drill.detail.contains("aurora-postgresql 16.4"),
        "{}",
        drill.detail
    );
    let gone = backstop::db::aurora::describe_cluster(&h.clients.rds, &drill.drill_table)
        .await
        .unwrap();
    assert!(
        gone.is_none() || gone.as_ref().and_then(|c| c.status()) == Some("deleting"),
        "{gone:?}"
    );
    assert!(backstop::db::aurora::describe_cluster(&h.clients.rds, &id)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn instances_and_clusters_in_one_run_and_a_cluster_member_is_left_to_its_cluster() {
    let h = Harness::new().await;
    let (cluster, instance) = (h.name("books"), h.name("cache"));
    create_cluster(&h.clients.rds, &cluster, false).await;
    create_instance(&h.clients.rds, &instance, &[("backup", "nightly")], 7, true).await;
    // An instance of the cluster: RDS snapshots the cluster, not it.
    let member = h.name("books-1");
    h.clients
        .rds
        .create_db_instance()
        .db_instance_identifier(&member)
        .db_cluster_identifier(&cluster)
        .engine("aurora-postgresql")
        .db_instance_class("db.r6g.large")
        .tags(Tag::builder().key("backup").value("nightly").build())
        .send()
        .await
        .unwrap();
    let env = h.env(&[
        (settings::ENV_RDS_INSTANCE_TAG, "backup=nightly"),
        (settings::ENV_AURORA_CLUSTERS, &cluster),
    ]);
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": "2026-11-20T02:00:00Z"}),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(
        r.selection,
        format!("RDS instances tagged backup=nightly; Aurora clusters {cluster}")
    );
    assert!(matches!(
        target(&r, &format!("rds:{instance}")).outcome,
        Outcome::Created { .. }
    ));
    assert!(matches!(
        target(&r, &format!("aurora:{cluster}")).outcome,
        Outcome::Created { .. }
    ));
    let left = r
        .excluded
        .iter()
        .find(|e| e.table == format!("rds:{member}"))
        .unwrap_or_else(|| panic!("{:?}", r.excluded));
    assert!(
        left.reason
            .contains(&format!("a member of Aurora cluster {cluster}")),
        "{}",
        left.reason
    );
    // The guard speaks of the cluster's settings too.
    assert!(target(&r, &format!("aurora:{cluster}"))
        .warnings
        .iter()
        .any(|w| w.contains("deletion protection is off")));
}

// ElastiCache replication groups: the third kind, through the same jobs.

/// A Redis OSS replication group with `nodes` clusters, its automatic snapshots kept
/// `retention_days`.
async fn create_group(
    ec: &aws_sdk_elasticache::Client,
    id: &str,
    tags: &[(&str, &str)],
    retention_days: i32,
) {
    ec.create_replication_group()
        .replication_group_id(id)
        .replication_group_description("sessions")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t4g.small")
        .num_cache_clusters(2)
        // moto counts the clusters from the replicas only.
        .replicas_per_node_group(1)
        .snapshot_retention_limit(retention_days)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| {
                    aws_sdk_elasticache::types::Tag::builder()
                        .key(*k)
                        .value(*v)
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create replication group {id}: {e:?}"));
}

/// Every snapshot of a group: (name, source).
async fn group_snapshots_of(ec: &aws_sdk_elasticache::Client, id: &str) -> Vec<(String, String)> {
    let out = ec
        .describe_snapshots()
        .replication_group_id(id)
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = out
        .snapshots()
        .iter()
        .map(|s| {
            (
                s.snapshot_name().unwrap_or_default().to_owned(),
                s.snapshot_source().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_elasticache_group_is_snapshotted_once_per_slot_pruned_by_its_policy_and_drilled() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let ec = &h.clients.elasticache;
    let id = h.name("sessions");
    create_group(ec, &id, &[], 7).await;
    // Someone's own snapshot beside Backstop's: never Backstop's to delete.
    ec.create_snapshot()
        .replication_group_id(&id)
        .snapshot_name(format!("{id}-manual-20261030"))
        .send()
        .await
        .unwrap();
    let env = h.env(&[
        (settings::ENV_ELASTICACHE_GROUPS, &id),
        (settings::ENV_DB_REPLICA_REGION, REPLICA),
        (
            settings::ENV_ELASTICACHE_RETENTION_POLICY,
            "keep_last=1,min_complete=1",
        ),
        (settings::ENV_PITR_MAX_LAG, "15m"),
    ]);
    let name = format!("elasticache:{id}");
    // Recent slots: moto's snapshots carry no time, so they are dated by their slot, and
    // retention deletes nothing while the newest is older than the freshness limit.
    let base: jiff::Timestamp = this_hour().parse().unwrap();
    let slots: Vec<ScheduleSlot> = (0..3)
        .map(|h| ScheduleSlot::new(base - jiff::SignedDuration::from_hours(2 - h)))
        .collect();
    let snap = |i: usize| backstop::db::snapshot_name(&id, &slots[i]);
    for (i, slot) in slots.iter().enumerate() {
        let payload = json!({"slot": slot.to_string()});
        let r = run_with(&clients, &env, JobKind::Snapshot, payload.clone()).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
        assert_eq!(r.selection, format!("ElastiCache replication groups {id}"));
        let t = target(&r, &name);
        let Outcome::Created { backup } = &t.outcome else {
            panic!("{t:#?}")
        };
        assert_eq!(backup.backup_name, snap(i));
        assert!(backup.backup_arn.contains(":elasticache:"), "{backup:?}");
        assert_eq!(backup.backup_status, "AVAILABLE");
        // No copy: ElastiCache copies within its region only, and the report says so.
        assert!(t.replica.is_none(), "{:?}", t.replica);
        assert!(
            t.warnings
                .iter()
                .any(|w| w.contains("not copied to us-west-2")),
            "{:?}",
            t.warnings
        );
        // Redelivered: nothing new.
        let again = run_with(&clients, &env, JobKind::Snapshot, payload).await;
        assert!(
            matches!(target(&again, &name).outcome, Outcome::AlreadyDone { .. }),
            "{again:#?}"
        );
    }
    assert_eq!(proxy.requests("CreateSnapshot").len(), 3);
    let made = group_snapshots_of(ec, &id).await;
    assert_eq!(made.len(), 4, "{made:?}");
    // Tagged as Backstop's, with the slot.
    let arn = backstop::db::elasticache::describe_snapshot(ec, &snap(0))
        .await
        .unwrap()
        .unwrap();
    assert!(
        arn.tags
            .contains(&("backstop:managed".into(), "true".into())),
        "{arn:?}"
    );
    assert!(arn
        .tags
        .contains(&("backstop:slot".into(), slots[0].to_string())));
    // The facts recorded for restores and the guard.
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let rec = catalog
        .get(JobKind::Snapshot, &name, &slots[2])
        .await
        .unwrap()
        .unwrap();
    let facts: backstop::db::DbFacts = serde_json::from_value(rec.table_shape.unwrap()).unwrap();
    assert_eq!(facts.engine.as_deref(), Some("redis"));
    assert_eq!(facts.instance_class.as_deref(), Some("cache.t4g.small"));
    assert_eq!(facts.cache_nodes, Some(2));
    assert_eq!(facts.backup_retention_days, Some(7));

    // Retention keeps the newest by the policy, says why, and leaves the other snapshot alone;
    // nothing is listed in the replica region.
    let r = run_with(&clients, &env, JobKind::Retention, json!({})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let t = target(&r, &name);
    let deleted: BTreeSet<String> = t
        .decisions
        .iter()
        .filter(|d| matches!(d.decision, Decision::Delete { .. }))
        .map(|d| d.backup_name.clone())
        .collect();
    assert_eq!(deleted, BTreeSet::from([snap(0), snap(1)]), "{t:#?}");
    let after = group_snapshots_of(ec, &id).await;
    assert_eq!(
        after.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        vec![snap(2), format!("{id}-manual-20261030")],
        "{after:?}"
    );
    assert!(proxy
        .requests("DescribeSnapshots")
        .iter()
        .all(|b| !b.contains("us-west-2")));

    // Validate: fresh by its snapshots (no point-in-time recovery to lag), and a drill restores
    // the newest snapshot into a one-node drill group, checks it and deletes it.
    let v = validate_with(&clients, &env, json!({"slot": slots[2].to_string()})).await;
    let t = target(&v, &name);
    let validation = t.validation.as_ref().unwrap();
    assert!(validation.stale.is_empty(), "{validation:?}");
    assert!(
        matches!(t.outcome, Outcome::Validated { problems: 0 }),
        "{t:#?}"
    );
    let drill = validation.drill.as_ref().expect("a drill ran");
    assert_eq!(
        drill.level,
        Some(backstop::drill::DrillLevel::Consistent),
        "{drill:?}"
    );
    assert_eq!(drill.state, backstop::drill::DrillState::Cleaned);
    assert!(drill.detail.contains("redis"), "{}", drill.detail);
    assert!(
        drill.detail.contains("cache.t4g.small, available"),
        "{}",
        drill.detail
    );
    assert!(drill.drill_table.len() <= 40, "{}", drill.drill_table);
    let creates = proxy.requests("CreateReplicationGroup");
    assert_eq!(creates.len(), 1, "{creates:?}");
    let body = &creates[0];
    assert!(
        body.contains(&format!("ReplicationGroupId={}", drill.drill_table)),
        "{body}"
    );
    assert!(
        body.contains(&format!("SnapshotName={}", snap(2))),
        "{body}"
    );
    assert!(body.contains("CacheNodeType=cache.t4g.small"), "{body}");
    assert!(body.contains("NumCacheClusters=1"), "{body}");
    assert_eq!(proxy.requests("DeleteReplicationGroup").len(), 1);
    let left = backstop::db::elasticache::describe_group(ec, &drill.drill_table)
        .await
        .unwrap();
    assert!(
        left.is_none() || left.as_ref().and_then(|g| g.status()) == Some("deleting"),
        "{left:?}"
    );
    let source = backstop::db::elasticache::describe_group(ec, &id)
        .await
        .unwrap();
    assert_eq!(
        source
            .and_then(|g| g.status().map(str::to_owned))
            .as_deref(),
        Some("available")
    );
}

#[tokio::test]
async fn elasticache_selection_by_tag_leaves_out_drill_groups_and_a_missing_group_fails_alone() {
    let h = Harness::new().await;
    let ec = &h.clients.elasticache;
    let (a, b) = (h.name("cart"), h.name("feed"));
    let drill = format!("backstop-drill-{}", &h.name("x")[..10]);
    create_group(ec, &a, &[("backup", "6h")], 1).await;
    create_group(ec, &b, &[], 0).await;
    create_group(ec, &drill, &[("backup", "6h")], 0).await;
    let env = h.env(&[(settings::ENV_ELASTICACHE_GROUP_TAG, "backup=6h")]);
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": "2026-11-20T06:00:00Z"}),
    )
    .await;
    let ours: Vec<&str> = r
        .targets
        .iter()
        .map(|t| t.table.as_str())
        .filter(|n| n.contains(&h.prefix) || n.contains(&drill))
        .collect();
    assert_eq!(ours, vec![format!("elasticache:{a}").as_str()], "{r:#?}");
    assert!(
        r.excluded
            .iter()
            .any(|e| e.table == format!("elasticache:{drill}")),
        "{:?}",
        r.excluded
    );
    // The guard: automatic snapshots kept 1 day, fewer than the 7 expected.
    let t = target(&r, &format!("elasticache:{a}"));
    assert!(
        t.warnings.iter().any(|w| w.contains("kept 1 days")),
        "{:?}",
        t.warnings
    );
    assert!(group_snapshots_of(ec, &b).await.is_empty());

    // A listed group that does not exist fails on its own; the other is snapshotted.
    let missing = h.name("gone");
    let env = h.env(&[(settings::ENV_ELASTICACHE_GROUPS, &format!("{missing},{b}"))]);
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": "2026-11-20T06:00:00Z"}),
    )
    .await;
    assert_eq!(r.status, RunStatus::PartiallyFailed, "{r:#?}");
    let t = target(&r, &format!("elasticache:{missing}"));
    let Outcome::Failed { error, .. } = &t.outcome else {
        panic!("{t:#?}")
    };
    assert!(error.contains("replication group"), "{error}");
    assert!(error.contains(settings::ENV_ELASTICACHE_GROUPS), "{error}");
    assert!(matches!(
        target(&r, &format!("elasticache:{b}")).outcome,
        Outcome::Created { .. }
    ));
    let t = target(&r, &format!("elasticache:{b}"));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("automatic backups are off")),
        "{:?}",
        t.warnings
    );
}

#[tokio::test]
async fn elasticache_retention_never_lists_automatic_snapshots_for_deletion() {
    use aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput;
    use aws_sdk_elasticache::types::Snapshot;
    // moto makes no automatic snapshots: the service's answer is mocked, holding one beside a
    // manual one, as DescribeSnapshots may return them.
    let answer = DescribeSnapshotsOutput::builder()
        .snapshots(
            Snapshot::builder()
                .snapshot_name("automatic.sessions-2026-11-20-05-00")
                .replication_group_id("sessions")
                .snapshot_source("automated")
                .snapshot_status("available")
                .build(),
        )
        .snapshots(
            Snapshot::builder()
                .snapshot_name("sessions-backstop-20261120t060000z")
                .replication_group_id("sessions")
                .snapshot_source("manual")
                .snapshot_status("available")
                .node_snapshots(
                    aws_sdk_elasticache::types::NodeSnapshot::builder()
                        .snapshot_create_time(aws_smithy_types::DateTime::from_secs(1_795_500_000))
                        .build(),
                )
                .build(),
        )
        .build();
    let rule = aws_smithy_mocks::mock!(aws_sdk_elasticache::Client::describe_snapshots)
        .then_output(move || answer.clone());
    let h = Harness::new().await;
    let conf = aws_sdk_elasticache::config::Builder::from(&h.config)
        .interceptor(
            aws_smithy_mocks::MockResponseInterceptor::new()
                .rule_mode(aws_smithy_mocks::RuleMode::MatchAny)
                .with_rule(&rule),
        )
        .build();
    let ec = aws_sdk_elasticache::Client::from_conf(conf);
    let listed = backstop::db::elasticache::list_manual_snapshots(&ec, "sessions")
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["sessions-backstop-20261120t060000z"]
    );
}

#[tokio::test]
async fn the_sweep_deletes_only_tagged_drill_groups_no_open_drill_names() {
    let h = Harness::new().await;
    let ec = &h.clients.elasticache;
    let tag = &h.prefix[1..9];
    let (left_behind, untagged, open) = (
        format!("backstop-drill-{tag}-left"),
        format!("backstop-drill-{tag}-mine"),
        format!("backstop-drill-{tag}-open"),
    );
    create_group(ec, &left_behind, &[("backstop:drill", "true")], 0).await;
    create_group(ec, &untagged, &[], 0).await;
    create_group(ec, &open, &[("backstop:drill", "true")], 0).await;
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let ctx = backstop::db::drill::DbDrillCtx {
        clients: &h.clients,
        catalog: &catalog,
        // This test's own names only: other tests' drills in flight are not its to sweep.
        prefix: &format!("backstop-drill-{tag}-"),
        run_id: "sweep-test",
    };
    let swept = ctx
        .sweep(
            &[backstop::db::DbKind::ElastiCacheGroup],
            std::slice::from_ref(&open),
            jiff::SignedDuration::ZERO,
        )
        .await
        .unwrap();
    assert!(swept.contains(&left_behind), "{swept:?}");
    assert!(
        !swept.contains(&untagged) && !swept.contains(&open),
        "{swept:?}"
    );
    let status = |id: String| {
        let ec = ec.clone();
        async move {
            backstop::db::elasticache::describe_group(&ec, &id)
                .await
                .unwrap()
                .and_then(|g| g.status().map(str::to_owned))
        }
    };
    assert_eq!(status(left_behind).await.as_deref(), Some("deleting"));
    assert_eq!(status(untagged).await.as_deref(), Some("available"));
    assert_eq!(status(open).await.as_deref(), Some("available"));
}

#[tokio::test]
async fn a_lost_elasticache_create_answer_adopts_the_snapshot_and_a_refused_one_is_made_on_the_retry(
) {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let ec = &h.clients.elasticache;
    let (lost, failing) = (h.name("lost"), h.name("failing"));
    create_group(ec, &lost, &[], 7).await;
    create_group(ec, &failing, &[], 7).await;
    // ElastiCache makes the snapshot, and the answer never arrives (every SDK attempt's).
    proxy.lose_answers("CreateSnapshot", &lost, 3);
    // ElastiCache refuses with a 500 every time and makes nothing.
    proxy.inject(Fault::new(
        "CreateSnapshot",
        &failing,
        500,
        "InternalFailure",
    ));
    let list = format!("{lost},{failing}");
    let env = h.env(&[(settings::ENV_ELASTICACHE_GROUPS, &list)]);
    let payload = json!({"slot": "2026-11-20T06:00:00Z"});
    let r = run_with(&clients, &env, JobKind::Snapshot, payload.clone()).await;
    assert_eq!(r.status, RunStatus::PartiallyFailed, "{r:#?}");
    let t = target(&r, &format!("elasticache:{lost}"));
    assert!(matches!(t.outcome, Outcome::Created { .. }), "{t:#?}");
    assert!(
        t.warnings.iter().any(|w| w.contains("adopted")),
        "{:?}",
        t.warnings
    );
    assert_eq!(group_snapshots_of(ec, &lost).await.len(), 1);
    let Outcome::Failed {
        operation,
        retryable,
        ..
    } = &target(&r, &format!("elasticache:{failing}")).outcome
    else {
        panic!("{r:#?}")
    };
    assert_eq!((operation.as_str(), *retryable), ("CreateSnapshot", true));
    assert!(group_snapshots_of(ec, &failing).await.is_empty());

    proxy.clear();
    let r = run_with(&clients, &env, JobKind::Snapshot, payload).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert!(matches!(
        target(&r, &format!("elasticache:{failing}")).outcome,
        Outcome::Created { .. }
    ));
    assert!(matches!(
        target(&r, &format!("elasticache:{lost}")).outcome,
        Outcome::AlreadyDone { .. }
    ));
    assert_eq!(group_snapshots_of(ec, &failing).await.len(), 1);
    assert_eq!(group_snapshots_of(ec, &lost).await.len(), 1);
}

#[tokio::test]
async fn an_elasticache_drill_keeps_the_sources_encryption_and_access_control() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let ec = &h.clients.elasticache;
    let (vault, rbac) = (h.name("vault"), h.name("rbac"));
    let key = "0b1c2d3e-1111-2222-3333-444455556666";
    let token = "the-sources-own-token-0123456789";
    // Encrypted at rest with a customer key and in transit, clients giving an AUTH token.
    ec.create_replication_group()
        .replication_group_id(&vault)
        .replication_group_description("vault")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.r6gd.xlarge")
        .num_cache_clusters(2)
        .replicas_per_node_group(1)
        .at_rest_encryption_enabled(true)
        .kms_key_id(key)
        .transit_encryption_enabled(true)
        .auth_token(token)
        .data_tiering_enabled(true)
        .send()
        .await
        .unwrap();
    // Access through RBAC user groups.
    ec.create_replication_group()
        .replication_group_id(&rbac)
        .replication_group_description("rbac")
        .engine("redis")
        .cache_node_type("cache.t4g.small")
        .num_cache_clusters(2)
        .replicas_per_node_group(1)
        .transit_encryption_enabled(true)
        .user_group_ids("app-users")
        .send()
        .await
        .unwrap();
    let env = h.env(&[
        (settings::ENV_ELASTICACHE_GROUPS, &format!("{vault},{rbac}")),
        (settings::ENV_DRILLS_PER_RUN, "2"),
    ]);
    let slot = ScheduleSlot::new(this_hour().parse().unwrap());
    let r = run_with(
        &clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": slot.to_string()}),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    // What was recorded says how the source is protected, never its token.
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let rec = catalog
        .get(JobKind::Snapshot, &format!("elasticache:{vault}"), &slot)
        .await
        .unwrap()
        .unwrap();
    let shape = rec.table_shape.clone().unwrap();
    assert!(!shape.to_string().contains(token), "{shape}");
    let facts: backstop::db::DbFacts = serde_json::from_value(shape).unwrap();
    assert_eq!(facts.encrypted, Some(true), "{facts:?}");
    assert_eq!(facts.kms_key_id.as_deref(), Some(key));
    assert_eq!(facts.transit_encryption, Some(true));
    assert_eq!(facts.auth_token, Some(true));
    assert_eq!(facts.data_tiering, Some(true));

    let v = validate_with(&clients, &env, json!({"slot": slot.to_string()})).await;
    let report = serde_json::to_string(&v).unwrap();
    let creates = proxy.requests("CreateReplicationGroup");
    assert_eq!(creates.len(), 2, "{creates:?}");
    for (id, want) in [(&vault, "vault"), (&rbac, "rbac")] {
        let t = target(&v, &format!("elasticache:{id}"));
        let drill = t.validation.as_ref().unwrap().drill.as_ref().unwrap();
        assert_eq!(
            drill.level,
            Some(backstop::drill::DrillLevel::Consistent),
            "{drill:?}"
        );
        assert_eq!(drill.state, backstop::drill::DrillState::Cleaned);
        let body = creates
            .iter()
            .find(|b| b.contains(&format!("ReplicationGroupId={}", drill.drill_table)))
            .unwrap_or_else(|| panic!("{creates:?}"));
        assert!(body.contains("TransitEncryptionEnabled=true"), "{body}");
        if want == "vault" {
            assert!(body.contains("AtRestEncryptionEnabled=true"), "{body}");
            assert!(body.contains(&format!("KmsKeyId={key}")), "{body}");
            // The recorded version when one was read (moto's member clusters cannot be
            // described, so there it is unknown and ElastiCache's default applies).
            match &facts.engine_version {
                Some(v) => assert!(body.contains(&format!("EngineVersion={v}")), "{body}"),
                None => assert!(!body.contains("EngineVersion="), "{body}"),
            }
            assert!(body.contains("DataTieringEnabled=true"), "{body}");
            // A token of its own that nobody keeps: never the source's, never reported.
            let drill_token = body
                .split('&')
                .find_map(|p| p.strip_prefix("AuthToken="))
                .unwrap_or_else(|| panic!("no AuthToken: {body}"));
            assert_eq!(drill_token.len(), 64, "{body}");
            assert_ne!(drill_token, token);
            assert!(!report.contains(drill_token));
            assert!(!drill.detail.contains(drill_token));
        } else {
            assert!(body.contains("UserGroupIds.member.1=app-users"), "{body}");
            assert!(!body.contains("AuthToken="), "{body}");
        }
    }
}

#[tokio::test]
async fn a_drill_name_someone_else_holds_is_neither_adopted_nor_deleted() {
    let h = Harness::new().await;
    let ec = &h.clients.elasticache;
    let id = h.name("cache");
    create_group(ec, &id, &[], 7).await;
    let env = h.env(&[(settings::ENV_ELASTICACHE_GROUPS, &id)]);
    let slot = ScheduleSlot::new(this_hour().parse().unwrap());
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": slot.to_string()}),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let ctx = backstop::db::drill::DbDrillCtx {
        clients: &h.clients,
        catalog: &catalog,
        prefix: "backstop-drill-",
        run_id: "stranger-test",
    };
    let target = backstop::db::DbTarget::elasticache(id.clone());
    let drill = ctx
        .begin(&target, jiff::Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    // Someone holds the drill's name: a group with a drill tag, but not of this source.
    create_group(
        ec,
        &drill.drill_table,
        &[("backstop:drill", "true"), ("backstop:drill-of", "other")],
        0,
    )
    .await;
    let verified = ctx.step(&drill).await.unwrap();
    assert_eq!(verified.state, backstop::drill::DrillState::Verified);
    assert_eq!(verified.level, Some(backstop::drill::DrillLevel::Failed));
    assert!(
        verified.detail.contains("is not this drill's"),
        "{}",
        verified.detail
    );
    let cleaned = ctx.step(&verified).await.unwrap();
    assert_eq!(cleaned.state, backstop::drill::DrillState::Cleaned);
    assert!(
        cleaned.detail.contains("left alone, not deleted"),
        "{}",
        cleaned.detail
    );
    let held = backstop::db::elasticache::describe_group(ec, &drill.drill_table)
        .await
        .unwrap()
        .and_then(|g| g.status().map(str::to_owned));
    assert_eq!(held.as_deref(), Some("available"));
}

#[tokio::test]
async fn a_drill_waits_while_elasticache_cannot_give_a_groups_tags_and_the_sweep_passes_it_over() {
    let h = Harness::new().await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let ec = &h.clients.elasticache;
    let id = h.name("busy");
    create_group(ec, &id, &[], 7).await;
    let env = h.env(&[(settings::ENV_ELASTICACHE_GROUPS, &id)]);
    let slot = ScheduleSlot::new(this_hour().parse().unwrap());
    let r = run_with(
        &h.clients,
        &env,
        JobKind::Snapshot,
        json!({"slot": slot.to_string()}),
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    // A prefix of this test's own: the sweep sees no other test's drill groups.
    let prefix = format!("bd{}-", &h.prefix[1..9]);
    let ctx = backstop::db::drill::DbDrillCtx {
        clients: &clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "busy-test",
    };
    let target = backstop::db::DbTarget::elasticache(id.clone());
    let drill = ctx
        .begin(&target, jiff::Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    // An earlier attempt's restore was accepted (its answer lost): the group exists with this
    // drill's tags, and ElastiCache will not list them while it is being made.
    create_group(
        ec,
        &drill.drill_table,
        &[
            ("backstop:drill", "true"),
            ("backstop:drill-of", id.as_str()),
        ],
        0,
    )
    .await;
    proxy.inject(Fault::new(
        "ListTagsForResource",
        &drill.drill_table,
        400,
        "InvalidReplicationGroupState",
    ));
    let waiting = ctx.step(&drill).await.unwrap();
    assert_eq!(waiting.state, backstop::drill::DrillState::Started);
    assert!(!waiting.made && waiting.level.is_none(), "{waiting:?}");
    // The sweep passes over a drill-prefixed group whose tags cannot be read, and deletes nothing.
    let leftover = format!("{prefix}gone");
    create_group(ec, &leftover, &[("backstop:drill", "true")], 0).await;
    proxy.inject(Fault::new(
        "ListTagsForResource",
        &leftover,
        400,
        "InvalidReplicationGroupState",
    ));
    let swept = ctx
        .sweep(
            &[backstop::db::DbKind::ElastiCacheGroup],
            std::slice::from_ref(&drill.drill_table),
            jiff::SignedDuration::ZERO,
        )
        .await
        .unwrap();
    assert!(!swept.contains(&leftover), "{swept:?}");
    assert_eq!(proxy.requests("DeleteReplicationGroup").len(), 0);
    // Once ElastiCache answers, the name is the drill's; deleted later without asking again.
    proxy.clear();
    let active = ctx.step(&waiting).await.unwrap();
    assert_eq!(active.state, backstop::drill::DrillState::Active);
    assert!(active.made, "{active:?}");
    let verified = ctx.step(&active).await.unwrap();
    assert_eq!(verified.state, backstop::drill::DrillState::Verified);
    proxy.inject(Fault::new(
        "ListTagsForResource",
        &drill.drill_table,
        400,
        "InvalidReplicationGroupState",
    ));
    let cleaned = ctx.step(&verified).await.unwrap();
    assert_eq!(cleaned.state, backstop::drill::DrillState::Cleaned);
    assert_eq!(proxy.requests("DeleteReplicationGroup").len(), 1);
    let status = backstop::db::elasticache::describe_group(ec, &drill.drill_table)
        .await
        .unwrap()
        .and_then(|g| g.status().map(str::to_owned));
    assert_eq!(status.as_deref(), Some("deleting"));
}
