//! The export job: for each selected table, once per slot (the catalog's claim, as for
//! snapshots), a native or logical export into `s3://<bucket>/<prefix>/<table>/<slot>/`.
//!
//! - Native exports run in AWS for minutes to hours: the job starts one (a ClientToken derived
//!   from table and window, so a redelivered event never starts a second), records it as
//!   STARTED, and a later run finalizes it from DescribeExport and the manifests. Between full
//!   exports, incrementals continue the chain from its last finished link.
//! - Logical exports scan the table; when the invocation's time runs low they checkpoint, hand
//!   the claim off (STARTED) and continue in a new invocation of the function.

use std::time::Instant;

use aws_sdk_dynamodb::types::{PointInTimeRecoveryStatus, TableDescription};
use jiff::Timestamp;
use tracing::{info, info_span, warn, Instrument};

use crate::aws::Clients;
use crate::catalog::{self, Catalog, Claim, TargetRecord, TargetStatus};
use crate::error::{Error, Result};
use crate::event::{JobRequest, ScheduleSlot};
use crate::export::logical::{self, Finished, Logical};
use crate::export::native::{self, ChainPlan, NativeState};
use crate::export::{self, ExportMeta, ExportType, Made};
use crate::report::{BackupInfo, Outcome, RunReport, TargetReport};
use crate::settings::{ExportMode, ExportSettings, JobKind, Settings};

pub const JOB: JobKind = JobKind::Export;

/// Environment variable Lambda sets to the running function's name: a logical export continues
/// by invoking it.
pub const ENV_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";

pub async fn run(clients: &Clients, settings: &Settings, request: &JobRequest) -> RunReport {
    let mut run = super::RunInProgress::start(JOB, settings, request);
    let span = info_span!("run", run_id = %run.run_id, job = %JOB, slot = %request.slot);
    async {
        let catalog = Catalog::new((*clients.dynamodb).clone(), &settings.catalog_table);
        let Some(export) = settings.export() else {
            run.errors
                .push("export settings: the settings were resolved for another job".into());
            return run.finish(clients, settings, &catalog).await;
        };
        let run_id = run.run_id.clone();
        let ctx = TableCtx {
            clients,
            catalog: &catalog,
            settings: export,
            request,
            run_id: &run_id,
            anomaly_threshold_pct: settings.anomaly_threshold_pct,
            backfill_window: settings.backfill_window,
        };
        run.over_selected_tables(clients, settings, |table| ctx.export_table(table))
            .await;
        // Logical exports handed off for lack of time continue in a new invocation.
        let unfinished: Vec<String> = run
            .targets
            .iter()
            .filter(|t| {
                matches!(t.outcome, Outcome::Started { .. })
                    && t.export.as_ref().is_some_and(|m| m.made == Made::Logical)
            })
            .map(|t| t.table.clone())
            .collect();
        if !unfinished.is_empty() && !request.dry_run && !export.helper {
            match continue_elsewhere(clients, export, request, &unfinished).await {
                Ok(Some(how)) => info!(tables = unfinished.len(), how = %how, "continuation"),
                Ok(None) => {}
                Err(e) => run
                    .errors
                    .push(format!("continuing the unfinished exports: {e}")),
            }
        }
        // Replicas last: the continuations above are never held up or lost by them.
        if let (Some(replica), false) = (&export.replica, request.dry_run || export.helper) {
            replicate_exports(clients, &catalog, replica, &mut run.targets).await;
        }
        run.finish(clients, settings, &catalog).await
    }
    .instrument(span)
    .await
}

/// Copies each table's newest complete export (made in this run or before, native ones
/// finished since) to the replica and checks it there. A replica that fails fails the table's
/// target: the export stays, and the retry replicates again.
async fn replicate_exports(
    clients: &Clients,
    catalog: &Catalog,
    settings: &crate::settings::ReplicaSettings,
    targets: &mut [TargetReport],
) {
    use crate::export::replica::{replicate_export, CopyTuning, ExportReplica};
    let replica = ExportReplica {
        s3: clients.s3_in(settings.region.as_deref()),
        bucket: settings.bucket.clone(),
        enc: crate::export::s3io::Encryption {
            kms_key: settings.kms_key.clone(),
        },
    };
    for t in targets.iter_mut() {
        if matches!(
            t.outcome,
            Outcome::Failed { .. } | Outcome::InProgress { .. }
        ) {
            continue;
        }
        let newest = match catalog.list_targets(JOB, Some(&t.table)).await {
            Ok(records) => records
                .into_iter()
                .filter(|r| r.status == crate::catalog::TargetStatus::Done)
                .filter_map(|r| r.export)
                .max_by_key(|m| m.export_time),
            Err(e) => {
                t.replica = Some(crate::report::ReplicaState {
                    target: format!("s3://{}/", settings.bucket),
                    detail: format!("could not find the newest complete export: {e}"),
                    ..Default::default()
                });
                continue;
            }
        };
        let Some(meta) = newest else { continue };
        // The table's place in the replica (not the slot's), so that the metric's Replica
        // dimension stays one series per table.
        let table_root = meta
            .root
            .rsplit_once('/')
            .map_or(meta.root.as_str(), |(t, _)| t);
        let mut state = crate::report::ReplicaState {
            target: format!("s3://{}/{table_root}/", settings.bucket),
            ..Default::default()
        };
        // The original's manifest must be the one the catalog recorded before it is copied:
        // a replica of a forged manifest would carry the forgery to the second copy.
        let agreed = if meta.made == Made::Logical {
            crate::export::verify::catalog_manifest(&clients.s3, &meta)
                .await
                .map(|_| ())
        } else {
            Ok(())
        };
        let replicated = match agreed {
            Ok(()) => {
                replicate_export(
                    &clients.s3,
                    &meta.bucket,
                    &meta.root,
                    &replica,
                    CopyTuning::default(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        match replicated {
            Ok(r) => {
                state.ok = true;
                state.copied = r.copied;
                state.copied_bytes = r.copied_bytes;
                state.lag_s = Some(0);
                state.detail = format!(
                    "{} files in place ({} copied now), manifests identical to the original's",
                    r.files, r.copied
                );
            }
            Err(e) => {
                warn!(table = %t.table, error = %e, "export replica failed");
                state.lag_s = Some(
                    jiff::Timestamp::now()
                        .duration_since(meta.export_time)
                        .as_secs()
                        .max(0),
                );
                state.detail = e.to_string();
                // An export still under way keeps its outcome (its continuation must go on);
                // the replica's failure is in `replica` and its metric.
                if matches!(t.outcome, Outcome::Started { .. }) {
                    t.replica = Some(state);
                    continue;
                }
                t.outcome = Outcome::Failed {
                    operation: "replicate".into(),
                    error: format!("the export is complete but its replica is not: {e}"),
                    retryable: true,
                };
            }
        }
        t.replica = Some(state);
    }
}

/// Invokes this function again (asynchronously) with a continuation payload for `tables`.
/// Outside Lambda there is no function to invoke: the next run (or `backstop run export` with
/// the same slot) resumes from the checkpoints.
async fn continue_elsewhere(
    clients: &Clients,
    settings: &ExportSettings,
    request: &JobRequest,
    tables: &[String],
) -> Result<Option<String>> {
    let Ok(function) = std::env::var(ENV_FUNCTION_NAME) else {
        return Ok(None);
    };
    let next = settings.continuation + 1;
    if next > crate::settings::MAX_CONTINUATIONS {
        return Err(Error::Local(format!(
            "{next} invocations in a row did not finish the export; stopping the chain (raise BACKSTOP_EXPORT_SEGMENTS or the memory, or use a native export)"
        )));
    }
    let payload = serde_json::json!({
        "slot": request.slot.to_string(),
        "tables": tables,
        "continuation": next,
    });
    clients
        .invoke_async("Invoke (continuation)", &function, &payload)
        .await?;
    Ok(Some(format!("invoked {function} (continuation {next})")))
}

/// Starts `fan_out - 1` helper invocations of this function for `table` (asynchronous Invoke),
/// each working on the segments that are free. Outside Lambda there is none to start.
async fn fan_out(
    clients: &Clients,
    settings: &ExportSettings,
    slot: &ScheduleSlot,
    table: &str,
) -> Result<Option<u32>> {
    let Ok(function) = std::env::var(ENV_FUNCTION_NAME) else {
        return Ok(None);
    };
    let payload = serde_json::json!({
        "slot": slot.to_string(),
        "tables": [table],
        "continuation": settings.continuation + 1,
        "helper": true,
    });
    for _ in 1..settings.fan_out {
        clients
            .invoke_async("Invoke (fan-out helper)", &function, &payload)
            .await?;
    }
    Ok(Some(settings.fan_out - 1))
}

struct TableCtx<'a> {
    clients: &'a Clients,
    catalog: &'a Catalog,
    settings: &'a ExportSettings,
    request: &'a JobRequest,
    run_id: &'a str,
    /// See [`crate::anomaly`].
    anomaly_threshold_pct: f64,
    /// How far in the past a slot of which nothing exists yet may lie (see
    /// [`crate::event::check_backfill`]).
    backfill_window: jiff::SignedDuration,
}

fn failed(e: &Error) -> Outcome {
    Outcome::Failed {
        operation: match e {
            Error::Aws { operation, .. } => (*operation).to_owned(),
            _ => "export".into(),
        },
        error: e.to_string(),
        retryable: e.is_retryable(),
    }
}

/// What the report and the catalog say of a finished export.
pub fn export_info(meta: &ExportMeta) -> BackupInfo {
    BackupInfo {
        backup_arn: meta.uri(),
        backup_name: meta.export_id.clone(),
        created_at: Some(meta.export_time),
        size_bytes: meta.stored_bytes.map(|b| b as i64),
        item_count: meta.item_count.map(|n| n as i64),
        backup_status: "COMPLETED".into(),
        table_shape: None,
        table_settings: None,
    }
}

impl TableCtx<'_> {
    async fn export_table(&self, table: String) -> TargetReport {
        let started = Instant::now();
        let mut report = TargetReport {
            table: table.clone(),
            outcome: Outcome::Failed {
                operation: "export".into(),
                error: String::new(),
                retryable: true,
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
        report.outcome = match self.export(&table, &mut report).await {
            Ok(o) => o,
            Err(e) => failed(&e),
        };
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// `Err` (why, naming the slot) when the catalog records nothing of (table, `slot`) and the
    /// slot lies further in the past than the backfill window allows, or before the table's
    /// newest complete export. A slot with any record (a claim, a checkpointed or failed
    /// attempt, a native export under way) is never refused: it is continued.
    fn backfill(
        &self,
        records: &[TargetRecord],
        slot: &ScheduleSlot,
    ) -> std::result::Result<(), String> {
        let key = slot.to_string();
        if records.iter().any(|r| r.slot == key) {
            return Ok(());
        }
        // Slots only move forward: none is started before one that was completed (as for
        // bucket slots). The export's own time is its data's, whatever its slot.
        let newest = records
            .iter()
            .filter(|r| r.status.is_done() && r.export.is_some())
            .filter_map(|r| ScheduleSlot::parse(&r.slot).ok())
            .map(|s| s.timestamp())
            .max();
        crate::event::check_backfill(*slot, Timestamp::now(), self.backfill_window, newest)
    }

    fn location_root(&self, table: &str, slot: &ScheduleSlot) -> String {
        export::root_of(&self.settings.location, table, slot)
    }

    async fn describe(&self, table: &str) -> Result<(TableDescription, bool)> {
        let d = self
            .clients
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeTable", format!("table {table}"), e))?
            .table
            .ok_or_else(|| Error::Local(format!("DescribeTable of {table} returned no table")))?;
        let pitr = self
            .clients
            .dynamodb
            .describe_continuous_backups()
            .table_name(table)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeContinuousBackups", format!("table {table}"), e))?
            .continuous_backups_description
            .and_then(|c| c.point_in_time_recovery_description)
            .and_then(|p| p.point_in_time_recovery_status)
            == Some(PointInTimeRecoveryStatus::Enabled);
        Ok((d, pitr))
    }

    /// Native or logical for this table, and why.
    fn choose(&self, d: &TableDescription, pitr: bool, report: &mut TargetReport) -> Result<Made> {
        let size = d.table_size_bytes.unwrap_or(0).max(0) as u64;
        report.pitr = Some(if pitr {
            crate::report::PitrState::Enabled
        } else {
            crate::report::PitrState::Disabled
        });
        match self.settings.mode {
            ExportMode::Logical => Ok(Made::Logical),
            ExportMode::Native if !pitr => Err(Error::Aws {
                operation: "ExportTableToPointInTime",
                resource: format!("table {}", report.table),
                code: Some("PointInTimeRecoveryUnavailableException".into()),
                message: "a native export needs point-in-time recovery, which is off for this table".into(),
                retryable: false,
                hint: "turn PITR on (BACKSTOP_ENABLE_PITR=true on the snapshot job) or set BACKSTOP_EXPORT_MODE to logical or auto".into(),
            }),
            ExportMode::Native => Ok(Made::Native),
            ExportMode::Auto if pitr => Ok(Made::Native),
            ExportMode::Auto => {
                if size > self.settings.native_threshold {
                    report.warnings.push(format!(
                        "the table holds {} (over the {} threshold for native exports) but PITR is off, so it is exported by scan; turn PITR on for a native export",
                        crate::report::human_bytes(size as i64),
                        crate::report::human_bytes(self.settings.native_threshold as i64)
                    ));
                }
                Ok(Made::Logical)
            }
        }
    }

    async fn export(&self, table: &str, report: &mut TargetReport) -> Result<Outcome> {
        let slot = self.request.slot;
        if self.request.dry_run {
            let (d, pitr) = self.describe(table).await?;
            let made = self.choose(&d, pitr, report)?;
            // A dry run only looks, but says what the real run would refuse.
            let records = self.catalog.list_targets(JOB, Some(table)).await?;
            if let Err(why) = self.backfill(&records, &slot) {
                report
                    .warnings
                    .push(format!("outside a dry run this would be refused: {why}"));
            }
            let what = match made {
                Made::Logical => "logical full export".to_owned(),
                Made::Native => {
                    match native::plan_chain(
                        &records,
                        slot.timestamp(),
                        self.settings.full_every_days,
                    ) {
                        ChainPlan::Full { why } => format!(
                            "native full export{}",
                            why.map(|w| format!(" ({w})")).unwrap_or_default()
                        ),
                        ChainPlan::Incremental { windows, .. } => {
                            format!("native incremental export ({} windows)", windows.len())
                        }
                    }
                }
            };
            return Ok(Outcome::Planned {
                backup_name: format!(
                    "{what} to s3://{}/{}/",
                    self.settings.location.bucket,
                    self.location_root(table, &slot)
                ),
            });
        }
        if self.settings.helper {
            return self.help(table, &slot, report).await;
        }
        // Native exports of earlier slots still running: finalize them first, so that the chain
        // decision below sees them finished (or failed).
        let records = self.catalog.list_targets(JOB, Some(table)).await?;
        // A slot of which nothing exists yet must not lie in the past: refused before anything
        // is claimed or written (a retry or continuation of a slot that exists goes on).
        if let Err(why) = self.backfill(&records, &slot) {
            warn!(table = %table, slot = %slot, "backfill refused");
            return Ok(Outcome::Failed {
                operation: "export (backfill refused)".into(),
                error: why,
                retryable: false,
            });
        }
        // Logical exports of earlier slots left STARTED (their continuation never came) are
        // resumed here too.
        for r in records.iter().filter(|r| {
            r.status == TargetStatus::Started && r.slot != slot.to_string() && r.export.is_some()
        }) {
            if let Err(e) = self.finalize_other(table, r).await {
                report
                    .warnings
                    .push(format!("finalizing the export of slot {}: {e}", r.slot));
            }
        }
        self.slot_export(table, &slot, report, true).await
    }

    /// Claims (table, slot) and finishes, resumes or starts its export.
    async fn slot_export(
        &self,
        table: &str,
        slot: &ScheduleSlot,
        report: &mut TargetReport,
        main: bool,
    ) -> Result<Outcome> {
        let now = Timestamp::now();
        let lease = catalog::lease_until(now, self.request.deadline);
        let claim = self
            .catalog
            .claim(
                JOB,
                table,
                slot,
                self.run_id,
                now,
                lease,
                self.request.deadline,
            )
            .await?;
        let previous = match claim {
            Claim::Done(rec) => {
                report.export = rec.export.clone();
                return Ok(match rec.export.as_ref() {
                    Some(m) => Outcome::AlreadyDone {
                        backup: export_info(m),
                        note: format!("already exported for this slot (run {})", rec.run_id),
                    },
                    None => Outcome::Failed {
                        operation: "read catalog".into(),
                        error: format!(
                            "catalog {} says {table} is exported for {slot} but records no export; fix the catalog item",
                            self.catalog.table_name()
                        ),
                        retryable: false,
                    },
                });
            }
            Claim::Held(rec) => {
                return Ok(Outcome::InProgress {
                    held_by_run: rec.run_id.clone(),
                    note: format!(
                        "run {} is working on this slot now (status {}); left alone, a retry will see its result",
                        rec.run_id, rec.status
                    ),
                })
            }
            Claim::Fresh => None,
            Claim::Retaken { previous } => Some(previous),
        };
        let result = self.claimed(table, slot, previous, report, main).await;
        match result {
            Ok(o) => Ok(o),
            Err(e) => {
                let msg = e.to_string();
                if let Err(fe) = self
                    .catalog
                    .fail(JOB, table, slot, self.run_id, &msg, Timestamp::now())
                    .await
                {
                    report
                        .warnings
                        .push(format!("could not record the failure in the catalog: {fe}"));
                }
                Err(e)
            }
        }
    }

    /// The holder's work on (table, slot).
    async fn claimed(
        &self,
        table: &str,
        slot: &ScheduleSlot,
        previous: Option<TargetRecord>,
        report: &mut TargetReport,
        main: bool,
    ) -> Result<Outcome> {
        // Something was started for this slot before: finish it rather than start anew.
        if let Some(prev) = &previous {
            if let Some(meta) = &prev.export {
                match meta.made {
                    Made::Native
                        if meta.export_arn.is_some() && prev.status != TargetStatus::Failed =>
                    {
                        return self.follow_native(table, slot, meta.clone(), report).await;
                    }
                    Made::Logical => {
                        // A scan begun longer ago than the backfill window is not carried on:
                        // its remaining segments would be read today and recorded at the old
                        // time. The slot stays unfinished (never complete, never a point).
                        if Timestamp::now().duration_since(meta.export_time) > self.backfill_window
                        {
                            return Err(Error::refused(
                                "export",
                                format!(
                                    "the logical export of {table} for slot {slot} began at {}, more than BACKSTOP_BACKFILL_WINDOW ago: it is not carried on (the rest of the table would be read today and recorded at that time)",
                                    meta.export_time
                                ),
                                "export a new slot; this one stays unfinished and is never taken for a recovery point",
                            ));
                        }
                        let (d, _) = self.describe(table).await?;
                        return self.logical(table, slot, &d, meta.clone(), report).await;
                    }
                    // Asked for before, answer never recorded (lost, or the invocation died):
                    // ask again for exactly the same export, so that its ClientToken is the same
                    // and AWS answers with the export it started.
                    Made::Native if meta.export_arn.is_none() => {
                        let (d, _) = self.describe(table).await?;
                        let table_arn = d.table_arn.clone().unwrap_or_default();
                        return self
                            .start_native(table, &table_arn, slot, meta.clone(), None, report)
                            .await;
                    }
                    Made::Native => {}
                }
            }
        }
        let (d, pitr) = self.describe(table).await?;
        let made = if main {
            self.choose(&d, pitr, report)?
        } else {
            Made::Native
        };
        let root = self.location_root(table, slot);
        match made {
            Made::Logical => {
                // The time of the data is the scan's start, not the slot: the slot is only the
                // idempotency key. Recorded before the scan, kept by every later invocation
                // (resumes and helpers read it from the catalog).
                let meta = ExportMeta {
                    export_id: export::logical_export_id(table, slot),
                    ..ExportMeta::planned(
                        made,
                        ExportType::FullExport,
                        &self.settings.location.bucket,
                        root,
                        Timestamp::now(),
                    )
                };
                self.catalog
                    .set_export(JOB, table, slot, self.run_id, &meta)
                    .await?;
                self.logical(table, slot, &d, meta, report).await
            }
            Made::Native => {
                let table_arn = d.table_arn.clone().unwrap_or_default();
                let records = self.catalog.list_targets(JOB, Some(table)).await?;
                let mut plan = if main {
                    native::plan_chain(&records, slot.timestamp(), self.settings.full_every_days)
                } else {
                    ChainPlan::Full { why: None }
                };
                // The catalog may say DONE of a full export whose objects are gone (deleted by
                // hand, or by retention when its catalog write failed): a chain continues only
                // from a base whose summary is still in S3.
                if let ChainPlan::Incremental { base_slot, .. } = &plan {
                    let base = records
                        .iter()
                        .find(|r| &r.slot == base_slot)
                        .and_then(|r| r.export.as_ref())
                        .and_then(|m| Some((m.bucket.clone(), m.manifest_key.clone()?)));
                    // Looked for by listing, not by reading: for a key that is gone S3 answers
                    // 404 only to a caller allowed ListBucket on the whole bucket; the role may
                    // list only under the export prefix, so a read would be refused (403), and
                    // the chain's fallback to a full export would become a failure.
                    let present = match &base {
                        Some((bucket, key)) => {
                            crate::export::s3io::list(&self.clients.s3, bucket, key)
                                .await?
                                .iter()
                                .any(|(k, _)| k == key)
                        }
                        None => false,
                    };
                    if !present {
                        plan = ChainPlan::Full {
                            why: Some(format!(
                                "the chain's full export (slot {base_slot}) is no longer in S3; a broken chain is never continued"
                            )),
                        };
                    }
                }
                let mut meta = ExportMeta::planned(
                    made,
                    ExportType::FullExport,
                    &self.settings.location.bucket,
                    root,
                    slot.timestamp(),
                );
                match plan {
                    ChainPlan::Full { why } => {
                        if let Some(w) = &why {
                            report.warnings.push(format!("full export: {w}"));
                        }
                        meta.note = why;
                    }
                    ChainPlan::Incremental { base_slot, windows } => {
                        // Earlier windows (a gap over 24 hours) become links of their own.
                        let (last, earlier) = windows.split_last().expect("at least one window");
                        for (from, to) in earlier {
                            let link_slot = ScheduleSlot::new(*to);
                            let outcome = self
                                .start_link(
                                    table,
                                    &table_arn,
                                    &link_slot,
                                    *from,
                                    &base_slot,
                                    prev_failed_arn(&records, &link_slot),
                                )
                                .await;
                            if let Err(e) = outcome {
                                return Err(Error::Local(format!(
                                    "the incremental window ending {to} could not be started ({e}); this slot's export is not started either, so the chain stays whole"
                                )));
                            }
                        }
                        meta.export_type = ExportType::IncrementalExport;
                        meta.from = Some(last.0);
                        meta.base_slot = Some(base_slot);
                    }
                }
                let salt = previous
                    .as_ref()
                    .filter(|p| p.status == TargetStatus::Failed)
                    .and_then(|p| p.export.as_ref())
                    .and_then(|m| m.export_arn.clone());
                self.start_native(table, &table_arn, slot, meta, salt, report)
                    .await
            }
        }
    }

    /// Records what is asked, renews the claim, asks AWS for the export, and follows it.
    async fn start_native(
        &self,
        table: &str,
        table_arn: &str,
        slot: &ScheduleSlot,
        mut meta: ExportMeta,
        salt: Option<String>,
        report: &mut TargetReport,
    ) -> Result<Outcome> {
        // Recorded before the request, so a lost answer leaves a record of what was asked.
        self.catalog
            .set_export(JOB, table, slot, self.run_id, &meta)
            .await?;
        // Only the holder of a live claim may start anything.
        let lease = catalog::lease_until(Timestamp::now(), self.request.deadline);
        if !self
            .catalog
            .renew(JOB, table, slot, self.run_id, lease)
            .await?
        {
            return Err(Error::Aws {
                operation: "UpdateItem (renew claim)",
                resource: format!("catalog table {}", self.catalog.table_name()),
                code: Some("ConditionalCheckFailedException".into()),
                message: format!(
                    "the export of {table} at {slot} was taken over by another run before it was started; nothing was started"
                ),
                retryable: true,
                hint: "the other run carries it on".into(),
            });
        }
        let arn = native::start(
            self.clients,
            table_arn,
            table,
            &meta,
            self.settings.kms_key.as_deref(),
            salt.as_deref(),
        )
        .await?;
        meta.export_id = arn.rsplit('/').next().unwrap_or_default().to_owned();
        meta.export_arn = Some(arn);
        self.follow_native(table, slot, meta, report).await
    }

    /// Starts one intermediate incremental link (its own slot, its own claim).
    async fn start_link(
        &self,
        table: &str,
        table_arn: &str,
        link_slot: &ScheduleSlot,
        from: Timestamp,
        base_slot: &str,
        salt: Option<String>,
    ) -> Result<()> {
        let now = Timestamp::now();
        let lease = catalog::lease_until(now, self.request.deadline);
        match self
            .catalog
            .claim(
                JOB,
                table,
                link_slot,
                self.run_id,
                now,
                lease,
                self.request.deadline,
            )
            .await?
        {
            Claim::Done(_) | Claim::Held(_) => return Ok(()),
            Claim::Retaken { previous }
                if previous.status != TargetStatus::Failed
                    && previous
                        .export
                        .as_ref()
                        .is_some_and(|m| m.export_arn.is_some()) =>
            {
                let meta = previous.export.clone().expect("checked");
                return self
                    .catalog
                    .hand_off(
                        JOB,
                        table,
                        link_slot,
                        self.run_id,
                        &meta,
                        "native export running in AWS",
                        Timestamp::now(),
                    )
                    .await;
            }
            _ => {}
        }
        let mut meta = ExportMeta {
            from: Some(from),
            base_slot: Some(base_slot.to_owned()),
            note: Some("a window of a gap over 24 hours".into()),
            ..ExportMeta::planned(
                Made::Native,
                ExportType::IncrementalExport,
                &self.settings.location.bucket,
                self.location_root(table, link_slot),
                link_slot.timestamp(),
            )
        };
        self.catalog
            .set_export(JOB, table, link_slot, self.run_id, &meta)
            .await?;
        let arn = native::start(
            self.clients,
            table_arn,
            table,
            &meta,
            self.settings.kms_key.as_deref(),
            salt.as_deref(),
        )
        .await;
        let arn = match arn {
            Ok(a) => a,
            Err(e) => {
                let _ = self
                    .catalog
                    .fail(
                        JOB,
                        table,
                        link_slot,
                        self.run_id,
                        &e.to_string(),
                        Timestamp::now(),
                    )
                    .await;
                return Err(e);
            }
        };
        meta.export_id = arn.rsplit('/').next().unwrap_or_default().to_owned();
        meta.export_arn = Some(arn);
        self.catalog
            .hand_off(
                JOB,
                table,
                link_slot,
                self.run_id,
                &meta,
                "native export running in AWS",
                Timestamp::now(),
            )
            .await
    }

    /// Asks AWS where a native export stands and records it: done (with its manifest figures),
    /// still running (handed off: the next run looks again), or failed.
    async fn follow_native(
        &self,
        table: &str,
        slot: &ScheduleSlot,
        meta: ExportMeta,
        report: &mut TargetReport,
    ) -> Result<Outcome> {
        report.export = Some(meta.clone());
        match native::check(self.clients, table, &meta).await {
            Ok(NativeState::Completed(done)) => self.complete(table, slot, *done, report).await,
            Ok(NativeState::Running) => {
                self.catalog
                    .hand_off(JOB, table, slot, self.run_id, &meta, "native export running in AWS", Timestamp::now())
                    .await?;
                Ok(Outcome::Started {
                    export_id: meta.export_id.clone(),
                    note: format!(
                        "native {} export running in AWS; the next run finalizes it",
                        if meta.export_type == ExportType::FullExport { "full" } else { "incremental" }
                    ),
                })
            }
            Ok(NativeState::Failed { reason }) => Err(Error::Aws {
                operation: "DescribeExport",
                resource: meta.export_arn.clone().unwrap_or_default(),
                code: Some("ExportFailed".into()),
                message: format!("the native export failed: {reason}"),
                retryable: true,
                hint: "the next attempt starts a new export; the chain after it starts with a full export".into(),
            }),
            // Could not ask: the export may still be fine; the next run asks again.
            Err(e) if e.is_retryable() => {
                self.catalog
                    .hand_off(JOB, table, slot, self.run_id, &meta, &format!("could not check the export: {e}"), Timestamp::now())
                    .await?;
                report.warnings.push(format!("could not check the native export: {e}"));
                Ok(Outcome::Started {
                    export_id: meta.export_id.clone(),
                    note: "native export started; its state could not be read, the next run looks again".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn logical(
        &self,
        table: &str,
        slot: &ScheduleSlot,
        d: &TableDescription,
        meta: ExportMeta,
        report: &mut TargetReport,
    ) -> Result<Outcome> {
        report.export = Some(meta.clone());
        let job = Logical {
            clients: self.clients,
            catalog: self.catalog,
            settings: self.settings,
            table,
            description: d,
            slot,
            run_id: self.run_id,
            deadline: self.request.deadline,
            started_at: Timestamp::now(),
            meta: meta.clone(),
            helper: false,
            work_until: logical::work_until(
                Timestamp::now(),
                self.request.deadline,
                self.settings.time_budget,
            ),
        };
        if self.settings.fan_out > 1 && !self.request.dry_run {
            match fan_out(self.clients, self.settings, slot, table).await {
                Ok(Some(n)) => info!(helpers = n, "fanned out"),
                Ok(None) => {}
                Err(e) => report.warnings.push(format!(
                    "could not start the helper invocations ({e}); this invocation works alone"
                )),
            }
        }
        match job.run().await? {
            Finished::Complete(done) => self.complete(table, slot, *done, report).await,
            Finished::Unfinished { left, note } => {
                self.catalog
                    .hand_off(
                        JOB,
                        table,
                        slot,
                        self.run_id,
                        &meta,
                        &note,
                        Timestamp::now(),
                    )
                    .await?;
                info!(left, "logical export continues later");
                Ok(Outcome::Started {
                    export_id: meta.export_id.clone(),
                    note: format!(
                        "logical export checkpointed: {note}; it continues in a new invocation"
                    ),
                })
            }
        }
    }

    async fn complete(
        &self,
        table: &str,
        slot: &ScheduleSlot,
        meta: ExportMeta,
        report: &mut TargetReport,
    ) -> Result<Outcome> {
        self.catalog
            .set_export(JOB, table, slot, self.run_id, &meta)
            .await?;
        let info = export_info(&meta);
        self.catalog
            .complete(JOB, table, slot, self.run_id, &info, Timestamp::now())
            .await?;
        report.size_check = self.size_check(table, slot, &meta, report).await;
        report.export = Some(meta);
        Ok(Outcome::Created { backup: info })
    }

    /// A finished full export's item count and stored size against the median of the table's
    /// last complete full exports made the same way (native and logical files differ in size).
    /// Incrementals hold only a window's changes: not compared.
    async fn size_check(
        &self,
        table: &str,
        slot: &ScheduleSlot,
        meta: &ExportMeta,
        report: &mut TargetReport,
    ) -> Option<crate::anomaly::SizeCheck> {
        if meta.export_type != ExportType::FullExport {
            return None;
        }
        let history = match self.catalog.list_targets(JOB, Some(table)).await {
            Ok(h) => h,
            Err(e) => {
                report.warnings.push(format!(
                    "size not compared: could not read the export history ({e})"
                ));
                return None;
            }
        };
        let baseline = crate::anomaly::baseline(&history, &slot.to_string(), |r| {
            r.export
                .as_ref()
                .is_some_and(|m| m.export_type == ExportType::FullExport && m.made == meta.made)
        });
        Some(crate::anomaly::check(
            baseline,
            meta.stored_bytes.map(|b| b as i64),
            meta.item_count.map(|n| n as i64),
            self.anomaly_threshold_pct,
        ))
    }

    /// A fan-out helper: works on the free segments of the export another invocation holds.
    async fn help(
        &self,
        table: &str,
        slot: &ScheduleSlot,
        report: &mut TargetReport,
    ) -> Result<Outcome> {
        let record = self.catalog.get(JOB, table, slot).await?;
        let meta = match record {
            Some(r)
                if matches!(r.status, TargetStatus::Claimed | TargetStatus::Started)
                    && r.export.as_ref().is_some_and(|m| m.made == Made::Logical) =>
            {
                r.export.clone().expect("checked")
            }
            other => {
                return Ok(Outcome::AlreadyDone {
                    backup: other
                        .as_ref()
                        .and_then(|r| r.export.as_ref())
                        .map(export_info)
                        .unwrap_or_else(|| BackupInfo {
                            backup_arn: String::new(),
                            backup_name: String::new(),
                            created_at: None,
                            size_bytes: None,
                            item_count: None,
                            backup_status: "NONE".into(),
                            table_shape: None,
                            table_settings: None,
                        }),
                    note: format!(
                        "helper: nothing to help with (the export is {})",
                        other
                            .map(|r| r.status.to_string())
                            .unwrap_or_else(|| "not started".into())
                    ),
                })
            }
        };
        report.export = Some(meta.clone());
        let (d, _) = self.describe(table).await?;
        let job = Logical {
            clients: self.clients,
            catalog: self.catalog,
            settings: self.settings,
            table,
            description: &d,
            slot,
            run_id: self.run_id,
            deadline: self.request.deadline,
            started_at: Timestamp::now(),
            meta: meta.clone(),
            helper: true,
            work_until: logical::work_until(
                Timestamp::now(),
                self.request.deadline,
                self.settings.time_budget,
            ),
        };
        let note = match job.run().await? {
            Finished::Unfinished { note, .. } => note,
            Finished::Complete(_) => "done".into(),
        };
        Ok(Outcome::Started {
            export_id: meta.export_id,
            note: format!("helper: {note}"),
        })
    }

    /// Finalizes the native export of another slot (a link still running when this run began),
    /// or resumes the logical export of another slot that was left STARTED.
    async fn finalize_other(&self, table: &str, record: &TargetRecord) -> Result<()> {
        let slot = ScheduleSlot::parse(&record.slot).map_err(Error::Local)?;
        let mut scratch = TargetReport {
            table: table.to_owned(),
            outcome: Outcome::Planned {
                backup_name: String::new(),
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
        match self.slot_export(table, &slot, &mut scratch, false).await {
            Ok(o) => {
                info!(slot = %slot, outcome = ?o, "earlier export followed");
                Ok(())
            }
            Err(e) => {
                warn!(slot = %slot, error = %e, "earlier export failed");
                Err(e)
            }
        }
    }
}

fn prev_failed_arn(records: &[TargetRecord], slot: &ScheduleSlot) -> Option<String> {
    records
        .iter()
        .find(|r| r.slot == slot.to_string() && r.status == TargetStatus::Failed)
        .and_then(|r| r.export.as_ref())
        .and_then(|m| m.export_arn.clone())
}

/// What [`finalize_native`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Finalized {
    /// The export completed in AWS and is now recorded DONE with its manifest figures.
    Done(Box<ExportMeta>),
    /// Still running in AWS (or its state could not be read): handed back, unchanged.
    Running,
    /// AWS says it failed: recorded FAILED (the export job starts a new one next time).
    Failed(String),
    /// Not a native export still under way, or another run holds it: left alone.
    LeftAlone(String),
}

/// For validate: finalizes a native export that the catalog records as STARTED, as the export
/// job's next run would, without waiting for it. Claims the slot, asks DescribeExport, and
/// records the export DONE (with its manifests' figures), hands it back when still running, or
/// records the failure. It never starts an export: anything else it finds under the claim is
/// handed back as it was.
pub async fn finalize_native(
    clients: &Clients,
    catalog: &Catalog,
    record: &TargetRecord,
    run_id: &str,
    deadline: Option<Timestamp>,
) -> Result<Finalized> {
    let table = record.table.as_str();
    let slot = ScheduleSlot::parse(&record.slot).map_err(Error::Local)?;
    let now = Timestamp::now();
    let claim = catalog
        .claim(
            JOB,
            table,
            &slot,
            run_id,
            now,
            catalog::lease_until(now, deadline),
            deadline,
        )
        .await?;
    let previous = match claim {
        Claim::Retaken { previous } => previous,
        Claim::Done(_) => return Ok(Finalized::LeftAlone("already finished".into())),
        Claim::Held(r) => {
            return Ok(Finalized::LeftAlone(format!(
                "run {} holds it now",
                r.run_id
            )))
        }
        Claim::Fresh => {
            // The record vanished under us: give the claim up again, recording why.
            catalog
                .fail(
                    JOB,
                    table,
                    &slot,
                    run_id,
                    "no export was recorded for this slot",
                    now,
                )
                .await?;
            return Ok(Finalized::LeftAlone("no export recorded".into()));
        }
    };
    let native = previous.status == TargetStatus::Started
        && previous
            .export
            .as_ref()
            .is_some_and(|m| m.made == Made::Native && m.export_arn.is_some());
    let Some(meta) = previous.export.clone() else {
        catalog
            .fail(
                JOB,
                table,
                &slot,
                run_id,
                "no export was recorded for this slot",
                now,
            )
            .await?;
        return Ok(Finalized::LeftAlone("no export recorded".into()));
    };
    if !native {
        // A logical export (its continuation resumes it) or a failed one: hand it back as it was
        // for the export job.
        catalog
            .hand_off(
                JOB,
                table,
                &slot,
                run_id,
                &meta,
                previous
                    .error
                    .as_deref()
                    .unwrap_or("left for the export job"),
                Timestamp::now(),
            )
            .await?;
        return Ok(Finalized::LeftAlone(
            "not a native export under way; left for the export job".into(),
        ));
    }
    match native::check(clients, table, &meta).await {
        Ok(NativeState::Completed(done)) => {
            catalog.set_export(JOB, table, &slot, run_id, &done).await?;
            catalog
                .complete(
                    JOB,
                    table,
                    &slot,
                    run_id,
                    &export_info(&done),
                    Timestamp::now(),
                )
                .await?;
            info!(table = %table, slot = %slot, "native export finalized by validate");
            Ok(Finalized::Done(done))
        }
        Ok(NativeState::Running) => {
            catalog
                .hand_off(
                    JOB,
                    table,
                    &slot,
                    run_id,
                    &meta,
                    "native export running in AWS",
                    Timestamp::now(),
                )
                .await?;
            Ok(Finalized::Running)
        }
        Ok(NativeState::Failed { reason }) => {
            let msg = format!("the native export failed: {reason}");
            catalog
                .fail(JOB, table, &slot, run_id, &msg, Timestamp::now())
                .await?;
            Ok(Finalized::Failed(msg))
        }
        // Could not ask: the export may still be fine; the next run asks again.
        Err(e) if e.is_retryable() => {
            let note = format!("could not check the export: {e}");
            catalog
                .hand_off(JOB, table, &slot, run_id, &meta, &note, Timestamp::now())
                .await?;
            Ok(Finalized::Running)
        }
        // Completed in AWS but not whole (a data file missing): failed, as the export job has it.
        Err(e) => {
            let msg = e.to_string();
            catalog
                .fail(JOB, table, &slot, run_id, &msg, Timestamp::now())
                .await?;
            Ok(Finalized::Failed(msg))
        }
    }
}
