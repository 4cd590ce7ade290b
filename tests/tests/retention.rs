//! Retention end to end: a 400-day backup history built on moto under libfaketime (so each backup
//! carries its day's BackupCreationDateTime), planned and pruned with the default policy.

use std::collections::BTreeSet;
use std::path::PathBuf;

use backstop::aws::{emulator_config, Clients};
use backstop::catalog::{Catalog, Claim};
use backstop::event::{JobRequest, ScheduleSlot};
use backstop::jobs::{retention, snapshot};
use backstop::notify::{METRIC_RETENTION_DELETED, METRIC_RETENTION_KEPT};
use backstop::report::{BackupInfo, Outcome, RunReport};
use backstop::retention::Decision;
use backstop::settings::{self, Environment, JobKind, Settings};
use backstop_testkit::local::{self, Emulator};
use jiff::civil::Date;
use serde_json::{json, Value};

const TABLE: &str = "History";
const LAST_DAY: &str = "2026-11-21";
/// The test's "now": when its requests arrive.
const NOW: &str = "2026-11-22T03:00:00Z";

struct Clocked {
    _emulator: Emulator,
    clock: PathBuf,
    clients: Clients,
    config: aws_config::SdkConfig,
    stack: local::LocalStack,
}

impl Clocked {
    fn set_clock(&self, at: &str) {
        std::fs::write(&self.clock, format!("{at}\n")).unwrap();
    }

    /// Runs a job as if the request arrived at NOW, the test's clock.
    async fn run(&self, job: &str, payload: Value) -> RunReport {
        self.run_at(job, payload, NOW, &[]).await
    }

    async fn run_at(
        &self,
        job: &str,
        payload: Value,
        received_at: &str,
        extra_env: &[(&str, &str)],
    ) -> RunReport {
        let request = JobRequest::from_payload(&payload, received_at.parse().unwrap()).unwrap();
        let env = Environment::from_pairs(
            [
                (
                    settings::ENV_CATALOG_TABLE,
                    self.stack.catalog_table.as_str(),
                ),
                (settings::ENV_TOPIC_ARN, self.stack.topic_arn.as_str()),
                (settings::ENV_TABLES, TABLE),
            ]
            .into_iter()
            .chain(extra_env.iter().copied()),
        );
        match job {
            "snapshot" => {
                let settings = Settings::resolve(JobKind::Snapshot, &env, &request).unwrap();
                snapshot::run(&self.clients, &settings, &request).await
            }
            _ => {
                let settings = Settings::resolve(JobKind::Retention, &env, &request).unwrap();
                retention::run(&self.clients, &settings, &request).await
            }
        }
    }

    async fn backup_names(&self) -> BTreeSet<String> {
        backstop::backups::list(&self.clients.dynamodb, TABLE, None)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect()
    }
}

fn days() -> Vec<Date> {
    let last: Date = LAST_DAY.parse().unwrap();
    let mut out: Vec<Date> = (0..400)
        .map(|i| last.checked_sub(jiff::Span::new().days(i)).unwrap())
        .collect();
    out.reverse();
    out
}

fn name_of(day: Date) -> String {
    format!("{TABLE}-backstop-{}T020000Z", day.strftime("%Y%m%d"))
}

/// The default policy (daily 30, weekly 12, monthly 12, yearly 7; UTC) on daily backups from
/// 2025-10-18 to 2026-11-21 at 02:00, checked by hand:
/// - daily 30: 2026-10-23 .. 2026-11-21;
/// - weekly 12 (ISO weeks, newest day of each): W47 2026-11-21 (a Saturday), then the Sundays
///   11-15, 11-08, 11-01, 10-25, 10-18, 10-11, 10-04, 09-27, 09-20, 09-13, 09-06;
/// - monthly 12: 2026-11-21, then the last day of Oct .. Jan 2026 (2026-02-28: no leap day) and
///   2025-12-31;
/// - yearly 7: 2026-11-21 and 2025-12-31 — only 2 years have backups, so the oldest backup,
///   2025-10-18, is kept too.
fn expected_kept_days() -> BTreeSet<String> {
    let mut kept: BTreeSet<String> = BTreeSet::new();
    let last: Date = LAST_DAY.parse().unwrap();
    for i in 0..30 {
        kept.insert(
            last.checked_sub(jiff::Span::new().days(i))
                .unwrap()
                .to_string(),
        );
    }
    for d in [
        "2026-11-15",
        "2026-11-08",
        "2026-11-01",
        "2026-10-25",
        "2026-10-18",
        "2026-10-11",
        "2026-10-04",
        "2026-09-27",
        "2026-09-20",
        "2026-09-13",
        "2026-09-06", // weekly
        "2026-10-31",
        "2026-09-30",
        "2026-08-31",
        "2026-07-31",
        "2026-06-30",
        "2026-05-31",
        "2026-04-30",
        "2026-03-31",
        "2026-02-28",
        "2026-01-31",
        "2025-12-31", // monthly
        "2025-10-18", // yearly ran out: the oldest
    ] {
        kept.insert(d.to_string());
    }
    kept
}

const MANUAL: [(&str, &str); 3] = [
    ("2025-11-05 09:00:00", "History-manual-20251105"),
    ("2026-02-14 09:00:00", "History-manual-20260214"),
    ("2026-06-01 09:00:00", "History-manual-20260601"),
];

async fn build_history() -> Clocked {
    let clock =
        std::env::temp_dir().join(format!("backstop-clock-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&clock, "2025-10-17 12:00:00\n").unwrap();
    let emulator = Emulator::start_with_clock(Some(&clock))
        .expect("moto under libfaketime (apt-get install faketime)");
    let config = emulator_config(emulator.endpoint()).await;
    let stack = local::provision(&config, emulator.endpoint(), "r-")
        .await
        .unwrap();
    let clients = Clients::from_config(&config);
    local::seed_demo_table(&clients.dynamodb, TABLE, 3)
        .await
        .unwrap();
    let h = Clocked {
        _emulator: emulator,
        clock,
        clients,
        config,
        stack,
    };
    // Each day's backup, recorded in the catalog exactly as the snapshot job records it (claim,
    // CreateBackup, complete), with moto's clock at that day's 02:00.
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    for day in days() {
        h.set_clock(&format!("{day} 02:00:00"));
        let slot = ScheduleSlot::parse(&format!("{day}T02:00:00Z")).unwrap();
        let claim = catalog
            .claim(
                snapshot::JOB,
                TABLE,
                &slot,
                "history",
                jiff::Timestamp::now(),
                backstop::catalog::lease_until(jiff::Timestamp::now(), None),
                None,
            )
            .await
            .unwrap();
        assert_eq!(claim, Claim::Fresh);
        let details = h
            .clients
            .dynamodb
            .create_backup()
            .table_name(TABLE)
            .backup_name(snapshot::backup_name(TABLE, &slot))
            .send()
            .await
            .unwrap()
            .backup_details
            .unwrap();
        let backup = BackupInfo {
            backup_arn: details.backup_arn,
            backup_name: details.backup_name,
            created_at: None,
            size_bytes: details.backup_size_bytes,
            item_count: Some(3),
            backup_status: "AVAILABLE".into(),
            table_shape: None,
            table_settings: None,
        };
        catalog
            .complete(
                snapshot::JOB,
                TABLE,
                &slot,
                "history",
                &backup,
                jiff::Timestamp::now(),
            )
            .await
            .unwrap();
    }
    for (at, name) in MANUAL {
        h.set_clock(at);
        h.clients
            .dynamodb
            .create_backup()
            .table_name(TABLE)
            .backup_name(name)
            .send()
            .await
            .unwrap();
    }
    // From here on moto's clock runs (long polls on SQS wait for time to pass).
    h.set_clock("@2026-11-22 03:00:00");
    h
}

fn decisions(r: &RunReport) -> Vec<(String, Decision)> {
    r.targets[0]
        .decisions
        .iter()
        .map(|d| (d.backup_name.clone(), d.decision.clone()))
        .collect()
}

fn kept_names(r: &RunReport) -> BTreeSet<String> {
    decisions(r)
        .into_iter()
        .filter(|(_, d)| !d.is_delete())
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test]
async fn four_hundred_daily_backups_pruned_by_the_default_policy() {
    let h = build_history().await;
    let all = h.backup_names().await;
    assert_eq!(all.len(), 403);
    let expected: BTreeSet<String> = expected_kept_days()
        .iter()
        .map(|d| name_of(d.parse().unwrap()))
        .chain(MANUAL.iter().map(|(_, n)| n.to_string()))
        .collect();
    assert_eq!(expected.len(), 48 + 3);
    let slot = json!({"slot": "2026-11-22T03:00:00Z"});

    // A dry run plans and explains, and deletes nothing.
    let dry = h
        .run(
            "retention",
            json!({"slot": "2026-11-22T03:00:00Z", "dry_run": true}),
        )
        .await;
    assert!(
        matches!(
            dry.targets[0].outcome,
            Outcome::Retained {
                deleted: 0,
                to_delete: 352,
                ..
            }
        ),
        "{:?}",
        dry.targets[0].outcome
    );
    assert_eq!(kept_names(&dry), expected);
    assert_eq!(h.backup_names().await.len(), 403);
    let rules_of = |name: &str| -> Vec<String> {
        match decisions(&dry)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
        {
            Decision::Keep { reasons } => reasons
                .into_iter()
                .map(|r| format!("{}: {}", r.rule, r.detail))
                .collect(),
            Decision::Delete { reason } => vec![format!("DELETE: {reason}")],
        }
    };
    assert_eq!(
        rules_of(&name_of("2025-12-31".parse().unwrap())),
        [
            "keep_monthly 12: newest of month 2025-12",
            "keep_yearly 7: newest of year 2025"
        ]
    );
    assert_eq!(
        rules_of(&name_of("2025-10-18".parse().unwrap())),
        ["keep_yearly 7: oldest backup, kept because only 2 of 7 periods have one"]
    );
    assert_eq!(
        rules_of(&name_of("2026-11-21".parse().unwrap())),
        [
            "keep_daily 30: newest of day 2026-11-21",
            "keep_weekly 12: newest of ISO week 2026-W47",
            "keep_monthly 12: newest of month 2026-11",
            "keep_yearly 7: newest of year 2026",
            "floor:newest_complete 3: number 1 of the newest complete backups"
        ]
    );
    assert!(rules_of("History-manual-20251105")[0].starts_with("floor:not_made_by_backstop"));
    assert!(rules_of(&name_of("2026-09-29".parse().unwrap()))[0]
        .starts_with("DELETE: matched no keep rule"));

    // An old slot in a payload does not switch the freshness floor off: it measures from the
    // later of the slot and the time the request arrived.
    let late = h
        .run_at(
            "retention",
            json!({"slot": "2026-11-22T03:00:00Z", "dry_run": true}),
            "2026-11-30T00:00:00Z",
            &[],
        )
        .await;
    match &late.targets[0].outcome {
        Outcome::Retained {
            to_delete, blocked, ..
        } => {
            assert_eq!(*to_delete, 0, "{blocked:?}");
            assert!(blocked.as_deref().unwrap().contains("freshness limit 48h"));
        }
        other => panic!("{other:?}"),
    }

    // Backups older than the freshness limit: nothing is deleted, and the report says why.
    let stale = h
        .run_at(
            "retention",
            json!({"slot": "2026-11-25T03:00:00Z"}),
            "2026-11-25T03:00:00Z",
            &[(settings::ENV_RETENTION_POLICY, "keep_last=1,min_complete=1")],
        )
        .await;
    match &stale.targets[0].outcome {
        Outcome::Retained {
            deleted,
            blocked,
            to_delete,
            ..
        } => {
            assert_eq!(*deleted, 0);
            assert_eq!(*to_delete, 0);
            let why = blocked.as_deref().unwrap();
            assert!(
                why.contains("freshness limit 48h") && why.contains("nothing is deleted"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.backup_names().await.len(), 403);
    let told = local::receive_notifications(
        &h.config,
        &h.stack.queue_url,
        1,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(
        told[0]
            .message
            .contains("nothing is deleted while backups are failing"),
        "{}",
        told[0].message
    );

    // The real run deletes exactly the planned backups, and the plan is the dry run's.
    let real = h.run("retention", slot.clone()).await;
    assert!(
        matches!(
            real.targets[0].outcome,
            Outcome::Retained {
                deleted: 352,
                kept: 51,
                ..
            }
        ),
        "{:?}",
        real.targets[0].outcome
    );
    assert_eq!(decisions(&real), decisions(&dry));
    assert_eq!(
        h.backup_names().await,
        expected,
        "BackupCreationDateTime decided, and only planned backups went"
    );
    assert!(real.targets[0]
        .decisions
        .iter()
        .filter(|d| d.decision.is_delete())
        .all(|d| d.result.as_deref() == Some("deleted")));
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let records = catalog
        .list_targets(snapshot::JOB, Some(TABLE))
        .await
        .unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.status == backstop::catalog::TargetStatus::Deleted)
            .count(),
        352
    );

    // Reported: the SNS message summarises, the metrics count.
    let got = local::receive_notifications(
        &h.config,
        &h.stack.queue_url,
        1,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(
        got[0].subject.starts_with("Backstop retention OK"),
        "{}",
        got[0].subject
    );
    assert!(
        got[0]
            .message
            .contains(&format!("- {TABLE}: kept 51, deleted 352")),
        "{}",
        got[0].message
    );
    let metric =
        |m: &'static str| local::metric_sum(&h.config, "Backstop", m, "retention", Some(TABLE));
    assert_eq!(metric(METRIC_RETENTION_DELETED).await.unwrap(), Some(352.0));
    assert!(metric(METRIC_RETENTION_KEPT).await.unwrap().is_some());

    // A second run deletes nothing.
    let again = h.run("retention", slot).await;
    assert!(
        matches!(
            again.targets[0].outcome,
            Outcome::Retained {
                deleted: 0,
                to_delete: 0,
                kept: 51,
                ..
            }
        ),
        "{:?}",
        again.targets[0].outcome
    );
    assert_eq!(h.backup_names().await.len(), 51);

    // A late redelivery of a pruned slot does not make the backup again.
    let redelivered = h
        .run("snapshot", json!({"slot": "2025-11-01T02:00:00Z"}))
        .await;
    assert_eq!(redelivered.totals.already_done, 1, "{redelivered:#?}");
    assert_eq!(h.backup_names().await.len(), 51);
    let _ = std::fs::remove_file(&h.clock);
}
