//! Idempotency when answers are lost (issue 8): the jobs run behind the fault proxy with 30 % of
//! all AWS calls failing at random, a third of those carried out by moto and then their answer
//! lost, and every slot is retried the way Lambda and the scheduler would until it succeeds.
//! Invariants: exactly one backup per (table, slot), the catalog agrees with ListBackups, no claim
//! is left held, no backup the policy keeps is deleted, and a backup deleted with its answer lost
//! is never reported as failed.
//!
//! Each later job (export, validate, restore, buckets) adds itself here when it lands.
//!
//! `cargo test -p backstop-tests --test lost_answers -- --nocapture` prints the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backstop::aws::Clients;
use backstop::catalog::Catalog;
use backstop::event::{JobRequest, ScheduleSlot};
use backstop::jobs::{retention, snapshot};
use backstop::report::{Outcome, RunReport};
use backstop::settings::{self, Environment, JobKind, Settings};
use backstop_tests::fault_proxy::{Chaos, ChaosCounts, FaultProxy};
use backstop_tests::{clients_through, Harness};
use jiff::Timestamp;
use serde_json::json;

const SEEDS: [u64; 3] = [7, 1_234, 99_991];
const FAULT_RATE: f64 = 0.30;
const LOST_SHARE: f64 = 1.0 / 3.0;
/// Retries of one slot before the test gives up (Lambda gives 2, the scheduler 185).
const MAX_ATTEMPTS: u32 = 40;
/// The invocation budget each attempt runs with: a claim never outlives it, so a retry after it
/// may take over the slot of an attempt that left its claim behind.
const BUDGET: Duration = Duration::from_secs(2);

fn chaos(seed: u64) -> Chaos {
    Chaos {
        rate: FAULT_RATE,
        lost_share: LOST_SHARE,
        seed,
        operations: vec![],
    }
}

/// Runs one job for one slot until a run needs no retry, as Lambda and the scheduler would:
/// quick retries, and when a claim is held, a retry after the holder's deadline. Returns the
/// reports of every attempt.
async fn until_done(
    clients: &Clients,
    env: &Environment,
    kind: JobKind,
    slot: &str,
) -> Vec<RunReport> {
    let mut reports = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let mut request =
            JobRequest::from_payload(&json!({ "slot": slot }), Timestamp::now()).unwrap();
        request.deadline = Some(Timestamp::now() + BUDGET);
        let settings = Settings::resolve(kind, env, &request).unwrap();
        let report = match kind {
            JobKind::Snapshot => snapshot::run(clients, &settings, &request).await,
            JobKind::Export => backstop::jobs::export::run(clients, &settings, &request).await,
            JobKind::Retention => retention::run(clients, &settings, &request).await,
            JobKind::Bucket => backstop::jobs::bucket::run(clients, &settings, &request).await,
            JobKind::Validate => backstop::jobs::validate::run(clients, &settings, &request).await,
        };
        let held = report
            .targets
            .iter()
            .any(|t| matches!(t.outcome, Outcome::InProgress { .. }));
        // An export handed off to a continuation is not done until a later invocation finishes it.
        let done = !report.needs_retry()
            && !report
                .targets
                .iter()
                .any(|t| matches!(t.outcome, Outcome::Started { .. }));
        reports.push(report);
        if done {
            return reports;
        }
        tokio::time::sleep(if held {
            BUDGET + Duration::from_millis(100)
        } else {
            Duration::from_millis(50)
        })
        .await;
    }
    panic!("{slot} did not converge in {MAX_ATTEMPTS} attempts: {reports:#?}");
}

fn print_figures(job: &str, seed: u64, counts: ChaosCounts, attempts: &[(String, usize)]) {
    let retries: Vec<String> = attempts
        .iter()
        .map(|(slot, n)| format!("{slot}: {}", n - 1))
        .collect();
    println!(
        "{job:<9} seed {seed:>6}: {:>4} calls, {:>3} faults, {:>3} lost answers; retries per slot: {}",
        counts.calls,
        counts.faults,
        counts.lost_answers,
        retries.join(", ")
    );
}

#[tokio::test]
async fn snapshot_makes_exactly_one_backup_per_slot_when_answers_are_lost() {
    for seed in SEEDS {
        let h = Harness::new().await;
        let tables: Vec<String> = ["Alpha", "Beta", "Gamma"]
            .iter()
            .map(|t| h.name(t))
            .collect();
        for t in &tables {
            h.create_table(t, 3, &[]).await;
        }
        let env = h.env(&[(settings::ENV_TABLES, &tables.join(","))]);
        let proxy = FaultProxy::start(&h.stack.endpoint).await;
        let clients = clients_through(&proxy).await;
        proxy.chaos(chaos(seed));

        let slots = [
            "2026-11-19T02:00:00Z",
            "2026-11-20T02:00:00Z",
            "2026-11-21T02:00:00Z",
        ];
        let mut attempts = Vec::new();
        for slot in slots {
            let reports = until_done(&clients, &env, JobKind::Snapshot, slot).await;
            attempts.push((slot[..10].to_owned(), reports.len()));
        }
        let counts = proxy.counts();
        proxy.clear();
        print_figures("snapshot", seed, counts, &attempts);
        assert!(
            counts.lost_answers > 0 && counts.faults > counts.lost_answers,
            "{counts:?}"
        );

        // Exactly one backup per (table, slot), and the catalog agrees with ListBackups.
        let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
        for t in &tables {
            let backups = h.backups_of(t).await;
            let mut per_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (name, arn) in &backups {
                per_name.entry(name).or_default().push(arn);
            }
            assert_eq!(backups.len(), slots.len(), "seed {seed}, {t}: {backups:?}");
            for slot in slots {
                let slot = ScheduleSlot::parse(slot).unwrap();
                let name = snapshot::backup_name(t, &slot);
                let arns = per_name.get(name.as_str()).cloned().unwrap_or_default();
                assert_eq!(arns.len(), 1, "seed {seed}: {name}: {arns:?}");
                let record = catalog.get(snapshot::JOB, t, &slot).await.unwrap().unwrap();
                assert_eq!(
                    record.status,
                    backstop::catalog::TargetStatus::Done,
                    "seed {seed}: {record:?}"
                );
                assert_eq!(record.backup_arn.as_deref(), Some(arns[0]), "seed {seed}");
            }
            let claimed = catalog
                .list_targets(snapshot::JOB, Some(t))
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.status == backstop::catalog::TargetStatus::Claimed)
                .count();
            assert_eq!(claimed, 0, "seed {seed}: no claim left held");
        }
    }
}

#[tokio::test]
async fn retention_deletes_only_what_the_policy_drops_when_answers_are_lost() {
    for seed in SEEDS {
        let h = Harness::new().await;
        let tables: Vec<String> = ["Old", "Older"].iter().map(|t| h.name(t)).collect();
        for t in &tables {
            h.create_table(t, 2, &[]).await;
        }
        let env = h.env(&[
            (settings::ENV_TABLES, &tables.join(",")),
            (settings::ENV_RETENTION_POLICY, "keep_last=2,min_complete=1"),
        ]);
        // Six backups per table, made without faults.
        for day in 10..16 {
            let slot = format!("2026-11-{day}T02:00:00Z");
            let r = until_done(&h.clients, &env, JobKind::Snapshot, &slot).await;
            assert_eq!(r.len(), 1);
        }
        // What the policy keeps: the two newest of each table (planned without faults).
        let request =
            JobRequest::from_payload(&json!({"dry_run": true}), Timestamp::now()).unwrap();
        let settings = Settings::resolve(JobKind::Retention, &env, &request).unwrap();
        let plan = retention::run(&h.clients, &settings, &request).await;
        let keep: BTreeSet<String> = plan
            .targets
            .iter()
            .flat_map(|t| t.decisions.iter())
            .filter(|d| !d.decision.is_delete())
            .map(|d| d.backup_arn.clone())
            .collect();
        assert_eq!(keep.len(), 4);

        let proxy = FaultProxy::start(&h.stack.endpoint).await;
        let clients = clients_through(&proxy).await;
        proxy.chaos(chaos(seed));
        let mut attempts = 0;
        let mut converged = false;
        while attempts < MAX_ATTEMPTS && !converged {
            attempts += 1;
            let request = JobRequest::from_payload(&json!({}), Timestamp::now()).unwrap();
            let settings = Settings::resolve(JobKind::Retention, &env, &request).unwrap();
            let r = retention::run(&clients, &settings, &request).await;
            let now: BTreeSet<String> = {
                let mut all = BTreeSet::new();
                for t in &tables {
                    all.extend(h.backups_of(t).await.into_iter().map(|(_, arn)| arn));
                }
                all
            };
            // No backup the policy keeps is ever deleted.
            assert!(keep.is_subset(&now), "seed {seed}: a kept backup went");
            // A backup reported as failed to delete still exists: a delete whose answer was
            // lost is never reported as failed.
            for d in r.targets.iter().flat_map(|t| t.decisions.iter()) {
                if d.result
                    .as_deref()
                    .is_some_and(|x| x.starts_with("delete failed"))
                {
                    assert!(
                        now.contains(&d.backup_arn),
                        "seed {seed}: {} reported failed but gone",
                        d.backup_arn
                    );
                }
            }
            converged = !r.needs_retry();
            if !converged {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(converged, "seed {seed}: retention did not converge");
        let counts = proxy.counts();
        proxy.clear();
        print_figures(
            "retention",
            seed,
            counts,
            &[("run".into(), attempts as usize)],
        );

        // Only the kept backups remain, and a second run deletes nothing.
        for t in &tables {
            let left: BTreeSet<String> =
                h.backups_of(t).await.into_iter().map(|(_, a)| a).collect();
            assert_eq!(left.len(), 2, "seed {seed}: {t}");
            assert!(left.is_subset(&keep));
        }
        let request = JobRequest::from_payload(&json!({}), Timestamp::now()).unwrap();
        let settings = Settings::resolve(JobKind::Retention, &env, &request).unwrap();
        let again = retention::run(&h.clients, &settings, &request).await;
        assert_eq!(again.totals.deleted, 0, "seed {seed}: {again:#?}");
        assert!(!again.needs_retry());
    }
}

#[tokio::test]
async fn export_makes_exactly_one_exact_export_per_slot_when_answers_are_lost() {
    for seed in SEEDS {
        let h = Harness::new().await;
        let tables: Vec<String> = ["Alpha", "Beta"].iter().map(|t| h.name(t)).collect();
        for t in &tables {
            h.create_table(t, 120, &[]).await;
        }
        let (bucket, export_env) = h.export_bucket().await;
        let mut pairs: Vec<(&str, &str)> =
            export_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let list = tables.join(",");
        pairs.extend([
            (settings::ENV_TABLES, list.as_str()),
            (settings::ENV_EXPORT_MODE, "logical"),
            (settings::ENV_EXPORT_SEGMENTS, "2"),
            (settings::ENV_EXPORT_FILE_BYTES, "2048"),
            (settings::ENV_EXPORT_PAGE_ITEMS, "20"),
        ]);
        let env = h.env(&pairs);
        let proxy = FaultProxy::start(&h.stack.endpoint).await;
        let clients = clients_through(&proxy).await;
        proxy.chaos(chaos(seed));
        let slots = ["2026-11-15T03:00:00Z", "2026-11-22T03:00:00Z"];
        let mut attempts = Vec::new();
        for slot in slots {
            let reports = until_done(&clients, &env, JobKind::Export, slot).await;
            attempts.push((slot[..10].to_owned(), reports.len()));
        }
        let counts = proxy.counts();
        proxy.clear();
        print_figures("export", seed, counts, &attempts);
        assert!(counts.lost_answers > 0, "{counts:?}");

        // One export per (table, slot), DONE, exact, and nothing else under its root.
        let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
        for t in &tables {
            let expected = backstop::export::logical::fingerprint_table(&h.clients.dynamodb, t)
                .await
                .unwrap();
            let records = catalog
                .list_targets(JobKind::Export, Some(t))
                .await
                .unwrap();
            assert_eq!(records.len(), slots.len(), "seed {seed}: {records:#?}");
            for r in &records {
                assert_eq!(
                    r.status,
                    backstop::catalog::TargetStatus::Done,
                    "seed {seed}: {r:#?}"
                );
                let meta = r.export.clone().unwrap();
                let mut seen = BTreeSet::new();
                let rb = backstop::export::reader::read_export(
                    &h.clients.s3,
                    &bucket,
                    meta.manifest_key.as_deref().unwrap(),
                    |item| assert!(seen.insert(item["id"].as_s().unwrap().clone()), "duplicate"),
                )
                .await
                .unwrap();
                assert!(
                    rb.fingerprint.same_content(&expected),
                    "seed {seed} {t} {}",
                    r.slot
                );
                assert!(meta.fingerprint.unwrap().same_content(&expected));
                let ids: BTreeSet<String> = backstop::export::s3io::list(
                    &h.clients.s3,
                    &bucket,
                    &format!("{}/AWSDynamoDB/", meta.root),
                )
                .await
                .unwrap()
                .into_iter()
                .map(|(k, _)| k.split('/').nth(4).unwrap_or_default().to_owned())
                .collect();
                assert_eq!(ids.len(), 1, "one export id under the slot's root: {ids:?}");
                let data = backstop::export::s3io::list(
                    &h.clients.s3,
                    &bucket,
                    &format!("{}/AWSDynamoDB/{}/data/", meta.root, meta.export_id),
                )
                .await
                .unwrap();
                assert_eq!(data.len(), rb.files.len(), "no stray data file");
            }
        }
    }
}

/// The bucket job under the same chaos: three slots of a changing bucket, each backed up a page
/// per attempt (the attempts' short deadline makes every invocation continue from its
/// checkpoint), pruned to one daily slot. Invariants: the newest slot's manifest is exactly the
/// bucket as it was, every copy a remaining manifest names is stored with its size, the pruned
/// slots are gone, nothing unreferenced is left, and no lock is left held.
#[tokio::test]
async fn bucket_backups_stay_exact_and_complete_when_answers_are_lost() {
    use aws_sdk_s3::primitives::ByteStream;
    use backstop::bucket::{backup, lock, Store};
    for seed in SEEDS {
        let h = Harness::new().await;
        let source = h.name("chaos-source");
        let backups = h.name("chaos-backups");
        for b in [&source, &backups] {
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
        // key -> ETag, as the bucket is now.
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        let put = |key: String, round: u32| {
            let s3 = (*h.clients.s3).clone();
            let source = source.clone();
            async move {
                let out = s3
                    .put_object()
                    .bucket(&source)
                    .key(&key)
                    .body(ByteStream::from(
                        format!("{key} round {round}").into_bytes(),
                    ))
                    .send()
                    .await
                    .unwrap();
                (key, out.e_tag().unwrap().trim_matches('"').to_owned())
            }
        };
        for i in 0..20 {
            let (k, e) = put(format!("obj {i:02}"), 1).await;
            model.insert(k, e);
        }
        let env = h.env(&[
            (settings::ENV_BUCKETS, &source),
            (settings::ENV_BUCKET_BACKUP_BUCKET, &backups),
            (settings::ENV_BUCKET_PAGE_SIZE, "8"),
            (settings::ENV_BUCKET_PARALLEL, "4"),
            (
                settings::ENV_BUCKET_RETENTION_POLICY,
                "keep_daily=1,min_complete=1",
            ),
        ]);
        let proxy = FaultProxy::start(&h.stack.endpoint).await;
        let clients = clients_through(&proxy).await;
        proxy.chaos(chaos(seed));
        let now = Timestamp::now();
        let slots: Vec<String> = [50, 26, 2]
            .iter()
            .map(|hours| {
                ScheduleSlot::new(now - jiff::SignedDuration::from_hours(*hours)).to_string()
            })
            .collect();
        let mut attempts = Vec::new();
        for (n, slot) in slots.iter().enumerate() {
            if n > 0 {
                // Between slots: three objects change and one is deleted.
                for i in 0..3 {
                    let (k, e) = put(format!("obj {:02}", i + n), 1 + n as u32).await;
                    model.insert(k, e);
                }
                let gone = format!("obj {:02}", 10 + n);
                h.clients
                    .s3
                    .delete_object()
                    .bucket(&source)
                    .key(&gone)
                    .send()
                    .await
                    .unwrap();
                model.remove(&gone);
            }
            let reports = until_done(&clients, &env, JobKind::Bucket, slot).await;
            attempts.push((slot[..10].to_owned(), reports.len()));
        }
        let counts = proxy.counts();
        proxy.clear();
        print_figures("bucket", seed, counts, &attempts);
        assert!(counts.lost_answers > 0, "{counts:?}");

        let s3 = &h.clients.s3;
        let store = Store::new(&backups, "buckets", None);
        let newest = ScheduleSlot::parse(&slots[2]).unwrap();
        let (summary, entries) = backup::read_manifest(s3, &store, &source, &newest)
            .await
            .unwrap();
        let backed_up: BTreeMap<String, String> = entries
            .iter()
            .map(|e| (e.key.clone(), e.etag.clone()))
            .collect();
        assert_eq!(
            backed_up, model,
            "seed {seed}: the newest slot is the bucket as it was"
        );
        assert_eq!(summary.objects as usize, model.len());
        let stored = backup::stored_ids(s3, &store, &source).await.unwrap();
        for e in &entries {
            assert_eq!(
                stored.get(&e.stored),
                Some(&e.size),
                "seed {seed}: {}",
                e.key
            );
        }
        // A prune that found the lock still held (an attempt whose release was lost holds it
        // until its deadline) sweeps nothing and says so; the next delivery, without chaos,
        // after the lease, sweeps the rest.
        tokio::time::sleep(BUDGET + Duration::from_millis(200)).await;
        until_done(&h.clients, &env, JobKind::Bucket, &slots[2]).await;
        let stored = backup::stored_ids(s3, &store, &source).await.unwrap();
        let referenced: BTreeSet<&String> = entries.iter().map(|e| &e.stored).collect();
        assert_eq!(
            stored.keys().collect::<BTreeSet<_>>(),
            referenced,
            "seed {seed}: nothing unreferenced is left after the next prune"
        );
        for old in &slots[..2] {
            let old = ScheduleSlot::parse(old).unwrap();
            assert!(
                backup::read_summary(s3, &store, &source, &old)
                    .await
                    .unwrap()
                    .is_none(),
                "seed {seed}: slot {old} pruned"
            );
        }
        let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
        let held = lock::current(&catalog, &source).await.unwrap();
        assert!(
            held.is_none_or(|l| l.until <= Timestamp::now()),
            "seed {seed}: no lock left held"
        );
    }
}
