//! The bucket job: for each selected S3 bucket, the slot's backup (server-side copies of what is
//! new or changed, then a complete manifest), its replica when one is configured, and a prune of
//! both by policy once the backup is complete. A backup that runs out of time stops at a
//! checkpoint and continues in a new invocation of the function.

use std::time::Instant;

use futures::{stream, StreamExt};
use jiff::Timestamp;
use tracing::{info, info_span, warn, Instrument};

use crate::aws::Clients;
use crate::bucket::backup::{self, BackupOutcome, GuardPolicy};
use crate::bucket::replica::Replica;
use crate::bucket::{prune, Store};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::event::{JobRequest, ScheduleSlot};
use crate::report::{
    BackupInfo, BucketPrune, BucketTarget, Outcome, ReplicaState, RunReport, TargetReport,
};
use crate::selection;
use crate::settings::{BucketSettings, JobKind, Settings};

pub const JOB: JobKind = JobKind::Bucket;

pub async fn run(clients: &Clients, settings: &Settings, request: &JobRequest) -> RunReport {
    let mut run = super::RunInProgress::start(JOB, settings, request);
    let span = info_span!("run", run_id = %run.run_id, job = %JOB, slot = %request.slot);
    async {
        let catalog = Catalog::new((*clients.dynamodb).clone(), &settings.catalog_table);
        let Some(b) = settings.bucket() else {
            run.errors
                .push("bucket settings: the settings were resolved for another job".into());
            return run.finish(clients, settings, &catalog).await;
        };
        let region = clients.s3.config().region().map(|r| r.to_string());
        let mut own = vec![b.backup_bucket.as_str()];
        own.extend(b.replica.as_ref().map(|r| r.bucket.as_str()));
        let selected = match selection::resolve_buckets(
            &clients.s3,
            &settings.selection,
            settings.within.as_ref(),
            region.as_deref(),
            &own,
            settings.concurrency,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "selection failed");
                run.errors.push(format!("selecting buckets: {e}"));
                return run.finish(clients, settings, &catalog).await;
            }
        };
        info!(
            buckets = selected.tables.len(),
            excluded = selected.excluded.len(),
            "selected"
        );
        run.excluded = selected.excluded;
        let replica = b.replica_store().map(|store| Replica {
            s3: clients.s3_in(b.replica.as_ref().and_then(|r| r.region.as_deref())),
            store,
        });
        let ctx = BucketCtx {
            clients,
            catalog: &catalog,
            settings: b,
            request,
            replica: replica.as_ref(),
            work_until: crate::export::logical::work_until(
                run.started_at,
                request.deadline,
                b.time_budget,
            ),
        };
        run.targets = stream::iter(selected.tables)
            .map(|bucket| {
                let span = info_span!("target", bucket = %bucket);
                ctx.back_up(bucket).instrument(span)
            })
            .buffered(settings.concurrency)
            .collect()
            .await;
        for u in selected.unreadable {
            warn!(bucket = %u.table, error = %u.error, "selection unreadable");
            run.targets.push(super::unreadable_target(u));
        }
        let unfinished: Vec<String> = run
            .targets
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Started { .. }))
            .map(|t| t.table.clone())
            .collect();
        if !unfinished.is_empty() && !request.dry_run {
            match continue_elsewhere(clients, b, &request.slot, &unfinished).await {
                Ok(Some(how)) => info!(buckets = unfinished.len(), how = %how, "continuation"),
                Ok(None) => {}
                Err(e) => run
                    .errors
                    .push(format!("continuing the unfinished bucket backups: {e}")),
            }
        }
        run.finish(clients, settings, &catalog).await
    }
    .instrument(span)
    .await
}

/// Invokes this function again (asynchronously) for `buckets` and the same slot. Outside Lambda
/// there is no function to invoke: the next run of the slot goes on from the checkpoints.
async fn continue_elsewhere(
    clients: &Clients,
    settings: &BucketSettings,
    slot: &ScheduleSlot,
    buckets: &[String],
) -> Result<Option<String>> {
    let Ok(function) = std::env::var(super::export::ENV_FUNCTION_NAME) else {
        return Ok(None);
    };
    let next = settings.continuation + 1;
    if next > crate::settings::MAX_CONTINUATIONS {
        return Err(Error::Local(format!(
            "{next} invocations in a row did not finish the bucket backups; stopping the chain (raise BACKSTOP_BUCKET_PARALLEL or the function's timeout, then invoke the function with this slot again: it goes on from the checkpoint; a later slot does not)"
        )));
    }
    let payload = serde_json::json!({
        "slot": slot.to_string(),
        "buckets": buckets,
        "continuation": next,
    });
    clients
        .invoke_async("Invoke (continuation)", &function, &payload)
        .await?;
    Ok(Some(format!("invoked {function} (continuation {next})")))
}

struct BucketCtx<'a> {
    clients: &'a Clients,
    catalog: &'a Catalog,
    settings: &'a BucketSettings,
    request: &'a JobRequest,
    replica: Option<&'a Replica>,
    work_until: Option<Timestamp>,
}

fn failed(e: &Error, operation: &str) -> Outcome {
    Outcome::Failed {
        operation: match e {
            Error::Aws { operation, .. } => (*operation).to_owned(),
            _ => operation.to_owned(),
        },
        error: e.to_string(),
        retryable: e.is_retryable(),
    }
}

impl BucketCtx<'_> {
    async fn back_up(&self, bucket: String) -> TargetReport {
        let started = Instant::now();
        let slot = self.request.slot;
        let store = self.settings.store();
        let manifest = store.url(&store.manifest_key(&bucket, &slot));
        let mut target = BucketTarget {
            manifest: manifest.clone(),
            ..BucketTarget::default()
        };
        let mut report = TargetReport {
            table: bucket.clone(),
            outcome: Outcome::Planned {
                backup_name: manifest.clone(),
            },
            pitr: None,
            duration_ms: 0,
            warnings: vec![],
            decisions: vec![],
            export: None,
            export_retention: None,
            validation: None,
            bucket: None,
            replica: None,
            size_check: None,
        };
        let s3 = &self.clients.s3;

        if self.request.dry_run {
            report.outcome = match self
                .dry_run(&store, &bucket, &mut target, &mut report)
                .await
            {
                Ok(o) => o,
                Err(e) => failed(&e, "bucket backup (dry run)"),
            };
            report.bucket = Some(Box::new(target));
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }

        let mut outcome = backup::backup(
            s3,
            self.catalog,
            &store,
            &bucket,
            &slot,
            &self.settings.options,
            self.work_until,
            self.request.deadline,
        )
        .await;
        // Another invocation's prune (or backup) holds the bucket's lock: wait for its lease,
        // when this invocation has the time, rather than leave the slot without a backup (a
        // scheduled run that ends "in progress" is not retried).
        for _ in 0..2 {
            let Ok(BackupOutcome::Held { until, .. }) = &outcome else {
                break;
            };
            let wait_until = *until + jiff::SignedDuration::from_secs(1);
            if self.work_until.is_none_or(|w| wait_until >= w) {
                break;
            }
            let wait = wait_until.duration_since(Timestamp::now());
            if wait.is_positive() {
                tokio::time::sleep(wait.unsigned_abs()).await;
            }
            outcome = backup::backup(
                s3,
                self.catalog,
                &store,
                &bucket,
                &slot,
                &self.settings.options,
                self.work_until,
                self.request.deadline,
            )
            .await;
        }
        report.outcome = match outcome {
            Ok(BackupOutcome::Done { summary, already }) => {
                target.objects = summary.objects;
                target.bytes = summary.bytes;
                target.copied = summary.copied;
                target.copied_bytes = summary.copied_bytes;
                target.referenced = summary.referenced;
                target.fingerprint = Some(summary.fingerprint.clone());
                target.versioning = Some(summary.versioning.clone());
                report.warnings.extend(summary.warnings.iter().cloned());
                let backup = BackupInfo {
                    backup_arn: manifest.clone(),
                    backup_name: slot.compact(),
                    created_at: summary.finished_at.parse().ok(),
                    size_bytes: Some(summary.bytes as i64),
                    item_count: Some(summary.objects as i64),
                    backup_status: "COMPLETE".into(),
                    table_shape: None,
                    table_settings: None,
                };
                if already {
                    Outcome::AlreadyDone {
                        backup,
                        note: "already backed up for this slot".into(),
                    }
                } else {
                    Outcome::Created { backup }
                }
            }
            Ok(BackupOutcome::Continues { progress }) => {
                target.manifest = store.url(&store.checkpoint_key(&bucket, &slot));
                target.objects = progress.objects;
                target.bytes = progress.bytes;
                target.copied = progress.copied;
                target.copied_bytes = progress.copied_bytes;
                target.referenced = progress.referenced;
                target.versioning = Some(progress.versioning.clone());
                Outcome::Started {
                    export_id: target.manifest.clone(),
                    note: format!(
                        "under way: {} objects in {} manifest parts so far; continues from its checkpoint",
                        progress.objects, progress.parts
                    ),
                }
            }
            Ok(BackupOutcome::Held {
                holder,
                doing,
                until,
            }) => Outcome::InProgress {
                held_by_run: holder,
                note: format!(
                    "the bucket's lock is held ({doing}) until {until}; this run left the bucket alone and a retry tries again"
                ),
            },
            Err(e) => {
                warn!(error = %e, "bucket backup failed");
                failed(&e, "bucket backup")
            }
        };

        let complete = matches!(
            report.outcome,
            Outcome::Created { .. } | Outcome::AlreadyDone { .. }
        );
        if complete {
            if let Some(replica) = self.replica {
                let state = self.replicate(&store, replica, &bucket).await;
                if !state.ok {
                    report.outcome = Outcome::Failed {
                        operation: "replicate".into(),
                        error: format!(
                            "the backup is complete but its replica is not: {}",
                            state.detail
                        ),
                        retryable: true,
                    };
                }
                report.replica = Some(state);
            }
        }
        // Pruned only after a complete backup whose replica (if any) is in step: when in
        // doubt, keep.
        let in_step = matches!(
            report.outcome,
            Outcome::Created { .. } | Outcome::AlreadyDone { .. }
        );
        if in_step && self.settings.prune {
            let mut prunes = vec![
                self.prune(s3, &store, &bucket, false, prune::Role::Original)
                    .await,
            ];
            if let Some(replica) = self.replica {
                prunes.push(
                    self.prune(
                        &replica.s3,
                        &replica.store,
                        &bucket,
                        false,
                        prune::Role::Replica,
                    )
                    .await,
                );
            }
            for p in &prunes {
                if !p.unknown_slots.is_empty() {
                    report.warnings.push(format!(
                        "{} holds slots the catalog does not record ({}): not Backstop's, or made before bucket slots were recorded; kept and never pruned, delete them by hand once you know what they are",
                        p.store,
                        p.unknown_slots.join(", ")
                    ));
                }
            }
            if let Some(e) = prunes.iter().find_map(|p| p.error.clone()) {
                report.outcome = Outcome::Failed {
                    operation: "bucket prune".into(),
                    error: format!("the backup is complete; pruning its older slots failed: {e}"),
                    retryable: true,
                };
            }
            target.prunes = prunes;
        }
        report.bucket = Some(Box::new(target));
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// A dry run looks only: whether the slot is done, the guards (reported, never enforced),
    /// and what a prune would delete.
    async fn dry_run(
        &self,
        store: &Store,
        bucket: &str,
        target: &mut BucketTarget,
        report: &mut TargetReport,
    ) -> Result<Outcome> {
        let s3 = &self.clients.s3;
        let guards = GuardPolicy {
            enforce: false,
            ..self.settings.options.guards.clone()
        };
        let guard = backup::check_guards(s3, bucket, &guards).await?;
        target.versioning = Some(guard.versioning);
        report.warnings.extend(guard.warnings);
        if self.settings.prune {
            target.prunes.push(
                self.prune(s3, store, bucket, true, prune::Role::Original)
                    .await,
            );
        }
        Ok(
            match backup::read_summary(s3, store, bucket, &self.request.slot).await? {
                Some(summary) => {
                    target.objects = summary.objects;
                    target.bytes = summary.bytes;
                    target.fingerprint = Some(summary.fingerprint);
                    Outcome::AlreadyDone {
                        backup: BackupInfo {
                            backup_arn: target.manifest.clone(),
                            backup_name: self.request.slot.compact(),
                            created_at: summary.finished_at.parse().ok(),
                            size_bytes: Some(summary.bytes as i64),
                            item_count: Some(summary.objects as i64),
                            backup_status: "COMPLETE".into(),
                            table_shape: None,
                            table_settings: None,
                        },
                        note: "already backed up for this slot".into(),
                    }
                }
                None => Outcome::Planned {
                    backup_name: target.manifest.clone(),
                },
            },
        )
    }

    /// Copies the slot's backup to the replica (a no-op when it is there and matches) and
    /// measures how far the replica is behind.
    async fn replicate(&self, store: &Store, replica: &Replica, bucket: &str) -> ReplicaState {
        let s3 = &self.clients.s3;
        let o = &self.settings.options;
        let mut state = ReplicaState {
            target: replica.store.url(&replica.store.root(bucket)),
            ..ReplicaState::default()
        };
        // Under the bucket's lock, as backups and prunes: a prune of the replica that listed its
        // slots before this copy's parts existed would otherwise sweep the copies just made.
        let holder = uuid::Uuid::new_v4().to_string();
        let now = Timestamp::now();
        let until = self
            .request
            .deadline
            .unwrap_or(now + jiff::SignedDuration::from_mins(15));
        let slot = self.request.slot;
        match crate::bucket::lock::acquire(
            self.catalog,
            bucket,
            &holder,
            &format!("replicate {slot}"),
            now,
            until,
        )
        .await
        {
            Ok(None) => {}
            Ok(Some(h)) => {
                state.detail = format!(
                    "the bucket's lock is held ({}) until {}: not replicated now; a retry replicates",
                    h.doing, h.until
                );
                return state;
            }
            Err(e) => {
                state.detail = format!("taking the bucket's lock to replicate: {e}");
                return state;
            }
        }
        // The original must be the slot the catalog records before it is copied anywhere.
        let mut ignored = Vec::new();
        match backup::proven_summary(s3, self.catalog, store, bucket, &slot, &mut ignored).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                state.detail = format!(
                    "the original's summary is not the one the catalog records: not replicated ({})",
                    ignored.join("; ")
                );
                let _ = crate::bucket::lock::release(self.catalog, bucket, &holder).await;
                return state;
            }
            Err(e) => {
                state.detail = e.to_string();
                let _ = crate::bucket::lock::release(self.catalog, bucket, &holder).await;
                return state;
            }
        }
        let copied = crate::bucket::replica::replicate_slot(
            s3,
            store,
            replica,
            bucket,
            &self.request.slot,
            o.parallel,
            o.multipart_threshold,
            o.part_size,
        )
        .await;
        if let Err(e) = crate::bucket::lock::release(self.catalog, bucket, &holder).await {
            warn!(bucket, error = %e, "releasing the bucket lock after the replica");
        }
        match copied {
            Ok(r) => {
                state.ok = true;
                state.copied = r.copied;
                state.copied_bytes = r.copied_bytes;
                state.detail = format!(
                    "{}; manifest read back, fingerprint {} matches the original",
                    if r.already {
                        "already complete".to_owned()
                    } else {
                        format!("copied {} objects", r.copied)
                    },
                    r.fingerprint
                );
            }
            Err(e) => {
                warn!(error = %e, "replica failed");
                state.detail = e.to_string();
            }
        }
        match replica_lag(s3, store, replica, bucket, Timestamp::now()).await {
            Ok(lag) => state.lag_s = Some(lag),
            Err(e) => warn!(error = %e, "replica lag not measured"),
        }
        state
    }

    async fn prune(
        &self,
        s3: &aws_sdk_s3::Client,
        store: &Store,
        bucket: &str,
        dry_run: bool,
        role: prune::Role,
    ) -> BucketPrune {
        let mut out = BucketPrune {
            store: store.url(&store.root(bucket)),
            ..BucketPrune::default()
        };
        let policy = match self.settings.policy.compile() {
            Ok(p) => p,
            Err(e) => {
                out.error = Some(format!("the bucket retention policy does not compile: {e}"));
                return out;
            }
        };
        let now = self.request.slot.later_of(self.request.received_at);
        match prune::prune(s3, self.catalog, store, bucket, &policy, now, dry_run, role).await {
            Ok(r) => {
                out.held = r.held_slots.len();
                out.unknown_slots = r.unknown_slots.clone();
                let to_delete = r.plan.deletes().count();
                out.kept = r.plan.points.len() - to_delete;
                out.deleted = if dry_run {
                    to_delete
                } else {
                    r.deleted_slots.len()
                };
                out.swept = r.swept;
                out.swept_bytes = r.swept_bytes;
                out.blocked = r.blocked.or(r.plan.blocked);
            }
            Err(e) => {
                warn!(error = %e, "bucket prune failed");
                out.error = Some(e.to_string());
            }
        }
        out
    }
}

/// How far the replica's newest complete backup of `bucket` is behind the original's, by slot
/// time, in seconds: 0 when they are in step. A replica with none is behind by the age of the
/// original's oldest.
pub async fn replica_lag(
    s3: &aws_sdk_s3::Client,
    store: &Store,
    replica: &Replica,
    bucket: &str,
    now: Timestamp,
) -> Result<i64> {
    let original = backup::complete_slots(s3, store, bucket).await?;
    let there = backup::complete_slots(&replica.s3, &replica.store, bucket).await?;
    Ok(lag_of(&original, &there, now))
}

/// Pure: see [`replica_lag`].
pub fn lag_of(original: &[ScheduleSlot], replica: &[ScheduleSlot], now: Timestamp) -> i64 {
    let secs = |s: &ScheduleSlot| s.timestamp().as_second();
    match (original.iter().max(), replica.iter().max()) {
        (None, _) => 0,
        (Some(newest), Some(r)) => (secs(newest) - secs(r)).max(0),
        (Some(_), None) => original
            .iter()
            .min()
            .map_or(0, |oldest| (now.as_second() - secs(oldest)).max(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(s: &str) -> ScheduleSlot {
        ScheduleSlot::parse(s).unwrap()
    }

    #[test]
    fn lag_is_zero_in_step_and_grows_with_what_the_replica_misses() {
        let now: Timestamp = "2026-12-03T00:00:00Z".parse().unwrap();
        let a = slot("2026-12-01T00:00:00Z");
        let b = slot("2026-12-02T00:00:00Z");
        assert_eq!(lag_of(&[a, b], &[a, b], now), 0);
        assert_eq!(lag_of(&[a, b], &[a], now), 86_400);
        // A replica that holds nothing is behind by the age of the oldest original.
        assert_eq!(lag_of(&[a, b], &[], now), 2 * 86_400);
        assert_eq!(lag_of(&[], &[], now), 0);
        // A replica ahead (the original pruned first) is not behind.
        assert_eq!(lag_of(&[a], &[a, b], now), 0);
    }
}
