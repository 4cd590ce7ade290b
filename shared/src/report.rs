//! The `RunReport`: one JSON document per run, returned as the Lambda response, and rendered
//! (purely) into the SNS message. Item contents never appear here; only names, counts and sizes.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::{ScheduleSlot, Trigger};
use crate::retention::Decision;
use crate::selection::Excluded;
use crate::settings::JobKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub job: JobKind,
    pub slot: ScheduleSlot,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub status: RunStatus,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub duration_ms: u64,
    /// What was asked for, in words ("tables matching Sales*").
    pub selection: String,
    pub targets: Vec<TargetReport>,
    /// Tables that matched but are never worked on (Backstop's own tables).
    #[serde(default)]
    pub excluded: Vec<Excluded>,
    pub totals: Totals,
    /// Errors that belong to the run rather than to one target (selection, catalog, publishing).
    #[serde(default)]
    pub errors: Vec<String>,
    pub delivery: Delivery,
    /// Set when the report was cut to fit a limit (Lambda's response), saying what was left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
    /// What deserves attention without being a failure (a run longer than an hour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// SNS takes messages up to 256 KiB; the body stays well under it with room for the subject and
/// attributes.
pub const MAX_EMAIL_BYTES: usize = 200 * 1024;
/// Lambda's response limit is 6 MB; the report stays under this.
pub const MAX_RESPONSE_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every selected target is backed up for this slot (now or by an earlier delivery).
    Succeeded,
    /// Some targets are done and some are not; a retry redoes only the rest.
    PartiallyFailed,
    /// Nothing was done.
    Failed,
    /// The selection matched no table.
    NothingSelected,
    /// Validate: every table was checked and something is wrong (stale, a damaged export, a
    /// failed drill). Pages, but is not retried: checking again changes nothing.
    ProblemsFound,
}

impl RunStatus {
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "OK",
            RunStatus::PartiallyFailed => "PARTIAL FAILURE",
            RunStatus::Failed => "FAILED",
            RunStatus::NothingSelected => "NOTHING SELECTED",
            RunStatus::ProblemsFound => "PROBLEMS FOUND",
        }
    }

    /// The `severity` message attribute, for subscription filter policies.
    pub fn severity(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "info",
            RunStatus::NothingSelected => "warning",
            RunStatus::PartiallyFailed | RunStatus::Failed | RunStatus::ProblemsFound => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    pub table: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrState>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Retention: every backup of the table with its decision and reasons, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<PointDecision>,
    /// Export: what was exported, where, and its fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<crate::export::ExportMeta>,
    /// Retention: what became of the table's exports (their decisions are in `decisions`,
    /// named `export …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_retention: Option<ExportsRetained>,
    /// Validate: freshness, export verifications and the drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Box<Validation>>,
    /// Bucket job: the bucket's backup for the slot, its replica and its prune (`table` is
    /// then the bucket's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Box<BucketTarget>>,
    /// Export and bucket jobs with a replica configured: the replica of what this target's
    /// backup is, after this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaState>,
    /// Snapshot and export: the new backup's size and item count against the median of the
    /// table's last complete ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_check: Option<crate::anomaly::SizeCheck>,
}

impl TargetReport {
    /// A report on `table` (or any target's name) with `outcome` and nothing else yet.
    pub fn new(table: impl Into<String>, outcome: Outcome) -> TargetReport {
        TargetReport {
            table: table.into(),
            outcome,
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
        }
    }
}

/// What the bucket job did for one bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketTarget {
    /// The slot's summary (`s3://…/manifest.json`), once written; the checkpoint while under way.
    pub manifest: String,
    /// In the slot's backup (the bucket's current objects).
    pub objects: u64,
    pub bytes: u64,
    /// Copied for this slot (new or changed); the rest are referenced from earlier slots.
    pub copied: u64,
    pub copied_bytes: u64,
    pub referenced: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The source's versioning as the guard found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
    /// The prunes after a complete backup: the backup bucket's, then the replica's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prunes: Vec<BucketPrune>,
}

/// The replica of a bucket's backups after this run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// Where the replica lives (`s3://replica/prefix/bucket/`).
    pub target: String,
    /// The slot's replica is complete and matches the original's fingerprint.
    pub ok: bool,
    pub copied: u64,
    pub copied_bytes: u64,
    /// How far the replica's newest complete backup is behind the original's, by slot time
    /// (0: in step; the metric ReplicaLagSeconds). `None` when it could not be measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_s: Option<i64>,
    /// What was checked, or what went wrong.
    pub detail: String,
}

/// One prune of a bucket's backups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketPrune {
    /// The store pruned (`s3://backups/prefix/bucket/`).
    pub store: String,
    /// Slots kept and deleted (in a dry run: to be deleted).
    pub kept: usize,
    pub deleted: usize,
    pub swept: u64,
    pub swept_bytes: u64,
    /// Slots kept for a legal hold.
    #[serde(default)]
    pub held: usize,
    /// Slots in the store that the catalog does not record: kept, never planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_slots: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What validate found for one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Age of the newest complete backup, seconds (`None`: there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_age_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_age_s: Option<i64>,
    /// How far PITR's latest restorable time is behind (`None`: PITR off or unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_lag_s: Option<i64>,
    /// Point-in-time recovery on (`None`: its state could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_enabled: Option<bool>,
    /// Each way the table is stale, in words; empty when it is fresh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
    /// The exports verified in this run (each export is verified once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportCheck>,
    /// Native exports this run found still recorded as under way, and what became of them
    /// ("slot: finished", "slot: still running", "slot: FAILED: why").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalized: Vec<String>,
    /// Incremental exports whose chain back to a full export is not whole: "slot: why".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_chains: Vec<String>,
    /// The restore drill this run started, advanced or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<crate::drill::DrillReport>,
}

impl Validation {
    /// What is wrong, one line each (for the summary and the problem count).
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.stale.iter().map(|s| format!("stale: {s}")).collect();
        out.extend(
            self.exports
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("export {} failed verification: {}", c.slot, c.detail)),
        );
        out.extend(
            self.broken_chains
                .iter()
                .map(|c| format!("incremental export {c}")),
        );
        out.extend(
            self.finalized
                .iter()
                .filter(|f| f.contains(": FAILED"))
                .map(|f| format!("native export {f}")),
        );
        if let Some(d) = &self.drill {
            if d.level == Some(crate::drill::DrillLevel::Failed) {
                out.push(format!("restore drill failed: {}", d.detail));
            }
        }
        out
    }
}

/// One export read back and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportCheck {
    pub slot: String,
    pub uri: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// What was checked, or what is wrong (which file, line or count).
    pub detail: String,
}

/// Retention of one table's exports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportsRetained {
    pub kept: usize,
    pub deleted: usize,
    pub to_delete: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// Set when the exports could not be listed or some deletes failed: nothing (or not
    /// everything planned) was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One backup's retention decision, and what was done about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointDecision {
    pub backup_arn: String,
    pub backup_name: String,
    pub created_at: Timestamp,
    #[serde(flatten)]
    pub decision: Decision,
    /// For deletes: `deleted`, `not deleted: dry run`, `not deleted: <why>` or `delete failed: <error>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// A backup was made in this run.
    Created { backup: BackupInfo },
    /// An earlier delivery of the same slot already made the backup; nothing new was made.
    AlreadyDone { backup: BackupInfo, note: String },
    /// Another invocation holds this slot right now; this run left it alone.
    InProgress { held_by_run: String, note: String },
    /// Dry run: this backup would be made.
    Planned { backup_name: String },
    /// The work goes on beyond this invocation: AWS runs the native export, or the logical
    /// export continues in a new invocation from its checkpoints. The next run finalizes it.
    Started { export_id: String, note: String },
    /// Retention ran its plan for the table (in a dry run: only planned). With failed deletes
    /// the table is not done (a retry deletes the rest), but the counts stay exact.
    Retained {
        /// Backups that still exist (kept by the plan, or whose delete failed).
        kept: usize,
        deleted: usize,
        /// Deletes the plan asked for; more than `deleted` in a dry run, or when deletes failed.
        to_delete: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        blocked: Option<String>,
        /// Deletes that failed; each backup's own error is in `decisions`.
        #[serde(default, skip_serializing_if = "is_zero")]
        failed_deletes: usize,
        /// The first failures in words, when there were any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Validate checked the table; `problems` counts what it found wrong (stale backups or
    /// exports, failed verifications, broken chains, a failed drill), each in `validation`.
    Validated { problems: usize },
    /// The target failed; the error names the operation and says what to do.
    Failed {
        operation: String,
        error: String,
        retryable: bool,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Outcome {
    pub fn is_done(&self) -> bool {
        match self {
            Outcome::Created { .. }
            | Outcome::AlreadyDone { .. }
            | Outcome::Started { .. }
            | Outcome::Validated { .. } => true,
            Outcome::Retained { failed_deletes, .. } => *failed_deletes == 0,
            _ => false,
        }
    }

    /// Why the target is not done, when it is not (for summaries).
    pub fn failure(&self) -> Option<String> {
        match self {
            Outcome::Failed { error, .. } => Some(error.clone()),
            Outcome::InProgress { note, .. } => Some(note.clone()),
            Outcome::Retained {
                failed_deletes,
                to_delete,
                error,
                ..
            } if *failed_deletes > 0 => Some(format!(
                "{failed_deletes} of {to_delete} deletes failed: {}",
                error.as_deref().unwrap_or("see the decisions")
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub backup_arn: String,
    pub backup_name: String,
    /// `BackupCreationDateTime` as AWS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i64>,
    /// `CREATING`, `AVAILABLE` or `DELETED` at the time of the report.
    pub backup_status: String,
    /// The source table's keys, indexes and billing mode when the backup was made (AWS's JSON
    /// shapes, see `export::logical::schema_of`), kept in the catalog for restore drills; not
    /// part of reports.
    #[serde(skip)]
    pub table_shape: Option<serde_json::Value>,
    /// The source table's settings when the backup was made, kept in the catalog for
    /// restores; not part of reports.
    #[serde(skip)]
    pub table_settings: Option<crate::table_settings::TableSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PitrState {
    Enabled,
    /// Off, and left off (settings say not to enable it).
    Disabled,
    /// Was off; this run turned it on.
    EnabledNow,
    /// Could not be read or changed; the backup went ahead regardless.
    Unknown {
        error: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub selected: usize,
    pub created: usize,
    pub already_done: usize,
    pub in_progress: usize,
    pub planned: usize,
    pub failed: usize,
    /// Bytes of the backups made in this run.
    pub bytes: i64,
    /// Items in the backups made in this run.
    pub items: i64,
    pub pitr_disabled: usize,
    pub pitr_enabled_now: usize,
    /// Export: exports under way beyond this invocation (native, or continued).
    #[serde(default)]
    pub started: usize,
    /// Retention: tables whose plan ran, backups kept, backups deleted.
    #[serde(default)]
    pub retained: usize,
    #[serde(default)]
    pub kept: usize,
    #[serde(default)]
    pub deleted: usize,
    /// Retention: exports kept and deleted.
    #[serde(default)]
    pub exports_kept: usize,
    #[serde(default)]
    pub exports_deleted: usize,
    /// Validate: tables checked, and what was found wrong across them.
    #[serde(default)]
    pub validated: usize,
    #[serde(default)]
    pub problems: usize,
    #[serde(default)]
    pub stale: usize,
    #[serde(default)]
    pub exports_verified: usize,
    #[serde(default)]
    pub exports_failed: usize,
    #[serde(default)]
    pub drills_finished: usize,
    #[serde(default)]
    pub drills_failed: usize,
    /// Bucket job: objects and bytes copied in this run (the rest were referenced).
    #[serde(default)]
    pub objects_copied: i64,
    #[serde(default)]
    pub bytes_copied: i64,
    /// Bucket job: replicas that failed, slots pruned and stored objects swept.
    #[serde(default)]
    pub replicas_failed: usize,
    #[serde(default)]
    pub slots_pruned: usize,
    #[serde(default)]
    pub objects_swept: i64,
    /// Snapshot and export: new backups whose size or item count is off their baseline.
    #[serde(default)]
    pub anomalies: usize,
}

/// Where the report went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub sns: DeliveryState,
    pub metrics: DeliveryState,
    pub catalog: DeliveryState,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeliveryState {
    #[default]
    Pending,
    Sent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
}

impl Totals {
    pub fn from_targets(targets: &[TargetReport]) -> Totals {
        let mut t = Totals {
            selected: targets.len(),
            ..Totals::default()
        };
        for target in targets {
            if target.size_check.as_ref().is_some_and(|c| c.is_anomaly()) {
                t.anomalies += 1;
            }
            match &target.outcome {
                Outcome::Created { backup } => {
                    t.created += 1;
                    t.bytes += backup.size_bytes.unwrap_or(0);
                    t.items += backup.item_count.unwrap_or(0);
                }
                Outcome::AlreadyDone { .. } => t.already_done += 1,
                Outcome::InProgress { .. } => t.in_progress += 1,
                Outcome::Planned { .. } => t.planned += 1,
                Outcome::Started { .. } => t.started += 1,
                Outcome::Failed { .. } => t.failed += 1,
                Outcome::Validated { problems } => {
                    t.validated += 1;
                    t.problems += problems;
                }
                Outcome::Retained {
                    kept,
                    deleted,
                    failed_deletes,
                    ..
                } => {
                    // Counts stay exact when some deletes failed; the table is then not done.
                    if *failed_deletes > 0 {
                        t.failed += 1;
                    } else {
                        t.retained += 1;
                    }
                    t.kept += kept;
                    t.deleted += deleted;
                }
            }
            if let Some(e) = &target.export_retention {
                t.exports_kept += e.kept;
                t.exports_deleted += e.deleted;
                if e.error.is_some()
                    && matches!(
                        target.outcome,
                        Outcome::Retained {
                            failed_deletes: 0,
                            ..
                        }
                    )
                {
                    t.retained -= 1;
                    t.failed += 1;
                }
            }
            if let Some(v) = &target.validation {
                t.stale += usize::from(!v.stale.is_empty());
                t.exports_verified += v.exports.iter().filter(|c| c.ok).count();
                t.exports_failed += v.exports.iter().filter(|c| !c.ok).count();
                if let Some(d) = &v.drill {
                    t.drills_finished += usize::from(d.level.is_some());
                    t.drills_failed +=
                        usize::from(d.level == Some(crate::drill::DrillLevel::Failed));
                }
            }
            t.replicas_failed += usize::from(target.replica.as_ref().is_some_and(|r| !r.ok));
            if let Some(b) = &target.bucket {
                // Counted when the backup was made in this run, like `bytes` and `items`.
                if matches!(target.outcome, Outcome::Created { .. }) {
                    t.objects_copied += b.copied as i64;
                    t.bytes_copied += b.copied_bytes as i64;
                }
                for p in &b.prunes {
                    t.slots_pruned += p.deleted;
                    t.objects_swept += p.swept as i64;
                }
            }
            match target.pitr {
                Some(PitrState::Disabled) => t.pitr_disabled += 1,
                Some(PitrState::EnabledNow) => t.pitr_enabled_now += 1,
                _ => {}
            }
        }
        t
    }
}

/// Pure: the run's status from its targets and run-level errors.
pub fn run_status(totals: &Totals, run_errors: &[String]) -> RunStatus {
    let done = totals.created
        + totals.already_done
        + totals.planned
        + totals.retained
        + totals.started
        + totals.validated;
    let not_done = totals.failed + totals.in_progress;
    if totals.selected == 0 {
        if run_errors.is_empty() {
            RunStatus::NothingSelected
        } else {
            RunStatus::Failed
        }
    } else if not_done == 0 && totals.problems > 0 {
        RunStatus::ProblemsFound
    } else if not_done == 0 {
        RunStatus::Succeeded
    } else if done == 0 {
        RunStatus::Failed
    } else {
        RunStatus::PartiallyFailed
    }
}

impl RunReport {
    /// The `severity` message attribute: the status's, raised from `info` to `warning` when a
    /// backup is off its size baseline or the run drew a warning.
    pub fn severity(&self) -> &'static str {
        let s = self.status.severity();
        if s == "info" && (self.totals.anomalies > 0 || !self.warnings.is_empty()) {
            "warning"
        } else {
            s
        }
    }

    /// Whether the invocation must end in an error (after publishing) so that Lambda retries.
    pub fn needs_retry(&self) -> bool {
        matches!(self.status, RunStatus::Failed | RunStatus::PartiallyFailed)
            || !self.errors.is_empty()
    }

    /// One line: what failed and why, for the Lambda error message.
    pub fn failure_summary(&self) -> String {
        const MAX_PARTS: usize = 20;
        let mut parts: Vec<String> = self.errors.clone();
        parts.extend(self.targets.iter().filter_map(|t| {
            t.outcome
                .failure()
                .map(|why| format!("{}: {}", t.table, clip(&why, 1000)))
        }));
        parts.extend(self.targets.iter().filter_map(|t| {
            let e = t.export_retention.as_ref()?.error.as_ref()?;
            Some(format!("{} exports: {}", t.table, clip(e, 1000)))
        }));
        let more = parts.len().saturating_sub(MAX_PARTS);
        parts.truncate(MAX_PARTS);
        if more > 0 {
            parts.push(format!("and {more} more (see the report)"));
        }
        format!(
            "{} of {} targets not done; {}. A retry redoes only these.",
            self.totals.failed + self.totals.in_progress,
            self.totals.selected,
            parts.join("; ")
        )
    }

    /// SNS subject: ASCII, one line, under 100 characters.
    pub fn subject(&self) -> String {
        let t = &self.totals;
        let dry = if self.dry_run { " (dry run)" } else { "" };
        let s = format!(
            "Backstop {} {}{dry}: {} done, {} failed of {} - {}",
            self.job,
            self.status.label(),
            t.created + t.already_done + t.planned + t.retained,
            t.failed + t.in_progress,
            t.selected,
            self.slot
        );
        let ascii: String = s
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        ascii.chars().take(99).collect()
    }

    /// A plain-text body that reads well in an e-mail client.
    pub fn email_body(&self) -> String {
        self.email_body_within(MAX_EMAIL_BYTES)
    }

    /// The plain-text body in at most about `max` bytes: the targets not done first when not
    /// all fit, then a count of the rest.
    pub fn email_body_within(&self, max: usize) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Backstop {} run {}{}\n\n",
            self.job,
            self.status.label(),
            if self.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            }
        ));
        out.push_str(&format!("Slot:       {}\n", self.slot));
        out.push_str(&format!("Run id:     {}\n", self.run_id));
        out.push_str(&format!("Selection:  {}\n", self.selection));
        out.push_str(&format!(
            "Duration:   {:.1} s\n",
            self.duration_ms as f64 / 1000.0
        ));
        out.push_str(&self.totals_lines());
        if self.totals.anomalies > 0 {
            out.push_str(&format!(
                "Anomalies:  {} backups off their size baseline (see below)\n",
                self.totals.anomalies
            ));
        }
        for w in self.warnings.iter().take(10) {
            out.push_str(&format!("Warning:    {}\n", clip(w, 1000)));
        }
        out.push('\n');
        // Targets not done first when not all fit; then a count of the rest.
        let mut blocks: Vec<(bool, String)> = self
            .targets
            .iter()
            .map(|t| (t.outcome.is_done(), target_block(t)))
            .collect();
        blocks.extend(self.excluded.iter().map(|e| {
            (
                true,
                format!(
                    "- {}: not backed up: {}\n",
                    clip(&e.table, 255),
                    clip(&e.reason, 500)
                ),
            )
        }));
        let mut errors = String::new();
        if !self.errors.is_empty() {
            errors.push_str("\nErrors:\n");
            for e in self.errors.iter().take(50) {
                errors.push_str(&format!("- {}\n", clip(e, 1000)));
            }
            if self.errors.len() > 50 {
                errors.push_str(&format!("- and {} more\n", self.errors.len() - 50));
            }
        }
        let budget = max.saturating_sub(out.len() + errors.len() + 1024);
        if blocks.iter().map(|(_, b)| b.len()).sum::<usize>() <= budget {
            for (_, b) in &blocks {
                out.push_str(b);
            }
        } else {
            let (mut used, mut left_done, mut left_not_done) = (0usize, 0usize, 0usize);
            for pass_done in [false, true] {
                for (done, b) in blocks.iter().filter(|(d, _)| *d == pass_done) {
                    if used + b.len() <= budget {
                        used += b.len();
                        out.push_str(b);
                    } else if *done {
                        left_done += 1;
                    } else {
                        left_not_done += 1;
                    }
                }
            }
            out.push_str(&format!(
                "- ... and {} more tables not listed here ({left_not_done} not done, {left_done} done); the function's response and log have them all\n",
                left_done + left_not_done
            ));
        }
        out.push_str(&errors);
        if self.needs_retry() {
            out.push_str(
                "\nThe run ends in an error so that Lambda retries it; the retry redoes only what is not done.\n",
            );
        }
        out
    }
}

impl RunReport {
    /// The job's own counters, as its run record keeps them.
    pub fn run_counters(&self) -> Vec<(&'static str, i64)> {
        let t = &self.totals;
        let c = |n: usize| n as i64;
        match self.job {
            JobKind::Snapshot => vec![
                ("selected", c(t.selected)),
                ("created", c(t.created)),
                ("already_done", c(t.already_done)),
                ("in_progress", c(t.in_progress)),
                ("failed", c(t.failed)),
                ("bytes", t.bytes),
                ("items", t.items),
            ],
            JobKind::Export => vec![
                ("selected", c(t.selected)),
                ("created", c(t.created)),
                ("started", c(t.started)),
                ("already_done", c(t.already_done)),
                ("in_progress", c(t.in_progress)),
                ("failed", c(t.failed)),
                ("bytes", t.bytes),
                ("items", t.items),
            ],
            JobKind::Retention => vec![
                ("selected", c(t.selected)),
                ("retained", c(t.retained)),
                ("kept", c(t.kept)),
                ("deleted", c(t.deleted)),
                ("failed", c(t.failed)),
            ],
            JobKind::Bucket => vec![
                ("selected", c(t.selected)),
                ("created", c(t.created)),
                ("started", c(t.started)),
                ("already_done", c(t.already_done)),
                ("in_progress", c(t.in_progress)),
                ("failed", c(t.failed)),
                ("bytes", t.bytes),
                ("objects", t.items),
                ("objects_copied", t.objects_copied),
                ("bytes_copied", t.bytes_copied),
                ("replicas_failed", c(t.replicas_failed)),
                ("slots_pruned", c(t.slots_pruned)),
            ],
            JobKind::Validate => vec![
                ("selected", c(t.selected)),
                ("validated", c(t.validated)),
                ("problems", c(t.problems)),
                ("stale", c(t.stale)),
                ("exports_verified", c(t.exports_verified)),
                ("exports_failed", c(t.exports_failed)),
                ("drills_finished", c(t.drills_finished)),
                ("drills_failed", c(t.drills_failed)),
                ("failed", c(t.failed)),
            ],
        }
    }

    /// The job's own lines of totals in the e-mail.
    fn totals_lines(&self) -> String {
        let t = &self.totals;
        match self.job {
            JobKind::Snapshot => {
                let mut out = format!(
                    "Targets:    {} selected, {} backed up now, {} already done for this slot, {} failed{}\n",
                    t.selected,
                    t.created,
                    t.already_done,
                    t.failed,
                    if t.in_progress > 0 {
                        format!(", {} in progress elsewhere", t.in_progress)
                    } else {
                        String::new()
                    }
                );
                if t.created > 0 {
                    out.push_str(&format!(
                        "New data:   {} in {} items\n",
                        human_bytes(t.bytes),
                        t.items
                    ));
                }
                out
            }
            JobKind::Export => {
                let mut out = format!(
                    "Targets:    {} selected, {} exported now, {} under way, {} already done for this slot, {} failed{}\n",
                    t.selected,
                    t.created,
                    t.started,
                    t.already_done,
                    t.failed,
                    if t.in_progress > 0 {
                        format!(", {} in progress elsewhere", t.in_progress)
                    } else {
                        String::new()
                    }
                );
                if t.created > 0 {
                    out.push_str(&format!(
                        "Exported:   {} items, {} stored\n",
                        t.items,
                        human_bytes(t.bytes)
                    ));
                }
                out
            }
            JobKind::Retention => {
                let mut out = format!(
                    "Targets:    {} selected, {} planned, {} failed\nBackups:    {} kept, {} deleted{}\n",
                    t.selected,
                    t.retained,
                    t.failed,
                    t.kept,
                    t.deleted,
                    if self.dry_run { " (dry run)" } else { "" }
                );
                if self.targets.iter().any(|x| x.export_retention.is_some()) {
                    out.push_str(&format!(
                        "Exports:    {} kept, {} deleted{}\n",
                        t.exports_kept,
                        t.exports_deleted,
                        if self.dry_run { " (dry run)" } else { "" }
                    ));
                }
                out
            }
            JobKind::Bucket => {
                let mut out = format!(
                    "Buckets:    {} selected, {} backed up now, {} under way, {} already done for this slot, {} failed{}\n",
                    t.selected,
                    t.created,
                    t.started,
                    t.already_done,
                    t.failed,
                    if t.in_progress > 0 {
                        format!(", {} in progress elsewhere", t.in_progress)
                    } else {
                        String::new()
                    }
                );
                if t.created > 0 {
                    out.push_str(&format!(
                        "Backed up:  {} objects, {}; copied {} objects, {}\n",
                        t.items,
                        human_bytes(t.bytes),
                        t.objects_copied,
                        human_bytes(t.bytes_copied)
                    ));
                }
                if self
                    .targets
                    .iter()
                    .any(|x| x.bucket.as_ref().is_some_and(|b| !b.prunes.is_empty()))
                {
                    out.push_str(&format!(
                        "Pruned:     {} slots, {} stored objects swept{}\n",
                        t.slots_pruned,
                        t.objects_swept,
                        if self.dry_run { " (dry run)" } else { "" }
                    ));
                }
                if t.replicas_failed > 0 {
                    out.push_str(&format!("Replicas:   {} FAILED\n", t.replicas_failed));
                }
                out
            }
            JobKind::Validate => format!(
                "Targets:    {} selected, {} checked, {} with problems ({} problems), {} failed\n\
                 Freshness:  {} stale\n\
                 Exports:    {} verified now, {} failed verification\n\
                 Drills:     {} finished, {} failed\n",
                t.selected,
                t.validated,
                self.targets
                    .iter()
                    .filter(
                        |x| matches!(x.outcome, Outcome::Validated { problems } if problems > 0)
                    )
                    .count(),
                t.problems,
                t.failed,
                t.stale,
                t.exports_verified,
                t.exports_failed,
                t.drills_finished,
                t.drills_failed,
            ),
        }
    }
}

fn target_block(target: &TargetReport) -> String {
    let mut out = format!(
        "- {}: {}\n",
        clip(&target.table, 255),
        clip(&outcome_line(&target.outcome), 2000)
    );
    match &target.pitr {
        Some(PitrState::Disabled) => {
            out.push_str("    point-in-time recovery is OFF for this table\n")
        }
        Some(PitrState::EnabledNow) => {
            out.push_str("    point-in-time recovery was off; Backstop turned it on\n")
        }
        Some(PitrState::Unknown { error }) => out.push_str(&format!(
            "    point-in-time recovery unknown: {}\n",
            clip(error, 1000)
        )),
        _ => {}
    }
    if let Some(e) = &target.export_retention {
        out.push_str(&format!(
            "    exports: kept {}, deleted {}{}{}\n",
            e.kept,
            e.deleted,
            e.blocked
                .as_ref()
                .map(|b| format!(" ({})", clip(b, 500)))
                .unwrap_or_default(),
            e.error
                .as_ref()
                .map(|b| format!("; FAILED: {}", clip(b, 1000)))
                .unwrap_or_default()
        ));
    }
    if let Some(m) = &target.export {
        if let Some(fp) = &m.fingerprint {
            out.push_str(&format!("    fingerprint {fp}\n"));
        }
        out.push_str(&format!("    at {}\n", clip(&m.uri(), 1100)));
    }
    if let Some(v) = &target.validation {
        out.push_str(&validation_lines(v));
    }
    if let Some(b) = &target.bucket {
        out.push_str(&bucket_lines(b));
    }
    if let Some(r) = &target.replica {
        out.push_str(&format!(
            "    replica {}: {}{}\n",
            clip(&r.target, 1100),
            if r.ok { "" } else { "FAILED: " },
            clip(&r.detail, 1000)
        ));
    }
    if let Some(c) = &target.size_check {
        let what = if target.export.is_some() {
            "export"
        } else {
            "backup"
        };
        if c.is_anomaly() {
            out.push_str(&format!("    warning: {}\n", c.describe(what)));
        } else {
            out.push_str(&format!("    {}\n", c.describe(what)));
        }
    }
    for w in target.warnings.iter().take(10) {
        out.push_str(&format!("    warning: {}\n", clip(w, 1000)));
    }
    out
}

/// The bucket job's lines for one bucket: counts, where the manifest is, the replica, the
/// prunes. Object keys never appear.
fn bucket_lines(b: &BucketTarget) -> String {
    let mut out = format!(
        "    {} objects ({}); copied {} ({}), referenced {}\n",
        b.objects,
        human_bytes(b.bytes as i64),
        b.copied,
        human_bytes(b.copied_bytes as i64),
        b.referenced
    );
    if let Some(fp) = &b.fingerprint {
        out.push_str(&format!("    fingerprint {fp}\n"));
    }
    if !b.manifest.is_empty() {
        out.push_str(&format!("    at {}\n", clip(&b.manifest, 1100)));
    }
    for p in &b.prunes {
        out.push_str(&format!(
            "    prune {}: kept {} slots, deleted {}, swept {} objects ({}){}{}\n",
            clip(&p.store, 1100),
            p.kept,
            p.deleted,
            p.swept,
            human_bytes(p.swept_bytes as i64),
            p.blocked
                .as_ref()
                .map(|b| format!(" ({})", clip(b, 500)))
                .unwrap_or_default(),
            p.error
                .as_ref()
                .map(|e| format!("; FAILED: {}", clip(e, 1000)))
                .unwrap_or_default()
        ));
    }
    out
}

/// Validate's lines for one table: what is stale, each export verified, each broken chain, the
/// drill. No item content: counts, fingerprints, object names.
fn validation_lines(v: &Validation) -> String {
    let age = |s: Option<i64>| {
        s.map(|s| format!("{:.1} h", s as f64 / 3600.0))
            .unwrap_or_else(|| "none".into())
    };
    let mut out = format!(
        "    newest backup {}, newest export {}, PITR lag {}\n",
        age(v.backup_age_s),
        age(v.export_age_s),
        v.pitr_lag_s
            .map(|s| format!("{s} s"))
            .unwrap_or_else(|| "n/a".into())
    );
    for s in v.stale.iter().take(10) {
        out.push_str(&format!("    STALE: {}\n", clip(s, 500)));
    }
    for c in v.exports.iter().take(20) {
        out.push_str(&format!(
            "    export {} {}: {}\n",
            clip(&c.slot, 40),
            if c.ok {
                "verified"
            } else {
                "FAILED VERIFICATION"
            },
            clip(&c.detail, 1000)
        ));
    }
    for f in v.finalized.iter().take(10) {
        out.push_str(&format!("    native export {}\n", clip(f, 500)));
    }
    for b in v.broken_chains.iter().take(10) {
        out.push_str(&format!(
            "    BROKEN CHAIN: incremental export {}\n",
            clip(b, 500)
        ));
    }
    if let Some(d) = &v.drill {
        out.push_str(&format!("    drill: {}\n", clip(&d.line(), 1500)));
    }
    out
}

impl RunReport {
    /// The report cut to Lambda's response limit: per-backup decisions go first (each is in the
    /// log), then targets that are done (totals still count them all). Says what it left out.
    pub fn fit_response(mut self) -> RunReport {
        let size = |r: &RunReport| serde_json::to_vec(r).map_or(usize::MAX, |v| v.len());
        if size(&self) <= MAX_RESPONSE_BYTES {
            return self;
        }
        let decisions: usize = self.targets.iter().map(|t| t.decisions.len()).sum();
        for t in &mut self.targets {
            t.decisions.clear();
        }
        let mut note = format!(
            "{decisions} per-backup decisions left out to stay under Lambda's 6 MB response limit; every decision is in the function's log"
        );
        if size(&self) > MAX_RESPONSE_BYTES {
            let all = std::mem::take(&mut self.targets);
            let total = all.len();
            let mut budget = MAX_RESPONSE_BYTES.saturating_sub(size(&self) + 4096);
            let (not_done, done): (Vec<_>, Vec<_>) =
                all.into_iter().partition(|t| !t.outcome.is_done());
            for t in not_done.into_iter().chain(done) {
                let n = serde_json::to_vec(&t).map_or(usize::MAX, |v| v.len() + 1);
                if n <= budget {
                    budget -= n;
                    self.targets.push(t);
                }
            }
            note.push_str(&format!(
                "; {} of {total} targets listed, those not done first (the totals count all)",
                self.targets.len()
            ));
        }
        self.truncated = Some(note);
        self
    }
}

fn outcome_line(o: &Outcome) -> String {
    match o {
        Outcome::Created { backup } => format!(
            "backed up as {} ({}, {} items)",
            backup.backup_name,
            backup
                .size_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "size unknown".into()),
            backup
                .item_count
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        Outcome::AlreadyDone { backup, note } => format!("{note} ({})", backup.backup_name),
        Outcome::InProgress { note, .. } => note.clone(),
        Outcome::Planned { backup_name } => format!("would back up as {backup_name}"),

        Outcome::Started { export_id, note } => format!("{note} ({export_id})"),
        Outcome::Validated { problems: 0 } => "all checks passed".into(),
        Outcome::Validated { problems } => format!("{problems} PROBLEM(S) FOUND"),
        Outcome::Retained {
            kept,
            deleted,
            to_delete,
            blocked,
            failed_deletes,
            error,
        } => {
            let mut line = format!("kept {kept}, deleted {deleted}");
            if *failed_deletes > 0 {
                line.push_str(&format!(
                    ", {failed_deletes} deletes FAILED ({})",
                    error.as_deref().unwrap_or("see the report")
                ));
            } else if to_delete > deleted {
                line.push_str(&format!(
                    ", {} more marked for deletion but kept",
                    to_delete - deleted
                ));
            }
            if let Some(b) = blocked {
                line.push_str(&format!(" ({b})"));
            }
            line
        }
        Outcome::Failed { error, .. } => format!("FAILED: {error}"),
    }
}

/// At most `max` characters of `s`, marked when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    }
}

pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(name: &str) -> BackupInfo {
        BackupInfo {
            backup_arn: format!("arn:aws:dynamodb:us-east-1:123456789012:table/T/backup/{name}"),
            backup_name: name.into(),
            created_at: None,
            size_bytes: Some(2048),
            item_count: Some(10),
            backup_status: "AVAILABLE".into(),
            table_shape: None,
            table_settings: None,
        }
    }

    fn target(table: &str, outcome: Outcome) -> TargetReport {
        TargetReport {
            table: table.into(),
            outcome,
            pitr: Some(PitrState::Enabled),
            duration_ms: 5,
            warnings: vec![],
            decisions: vec![],
            export: None,
            export_retention: None,
            validation: None,
            bucket: None,
            replica: None,
            size_check: None,
        }
    }

    fn report(targets: Vec<TargetReport>) -> RunReport {
        let totals = Totals::from_targets(&targets);
        RunReport {
            run_id: "r1".into(),
            job: JobKind::Snapshot,
            slot: ScheduleSlot::parse("2026-11-22T02:00:00Z").unwrap(),
            trigger: Trigger::Schedule,
            dry_run: false,
            status: run_status(&totals, &[]),
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
            duration_ms: 1500,
            selection: "tables A, B".into(),
            targets,
            excluded: vec![],
            totals,
            errors: vec![],
            delivery: Delivery::default(),
            truncated: None,
            warnings: vec![],
        }
    }

    #[test]
    fn status_reflects_partial_failure() {
        let r = report(vec![
            target(
                "Aaa",
                Outcome::Created {
                    backup: backup("a"),
                },
            ),
            target(
                "Bbb",
                Outcome::Failed {
                    operation: "CreateBackup".into(),
                    error: "boom".into(),
                    retryable: false,
                },
            ),
        ]);
        assert_eq!(r.status, RunStatus::PartiallyFailed);
        assert!(r.needs_retry());
        assert_eq!(r.status.severity(), "error");
        assert!(r.failure_summary().contains("Bbb: boom"));
    }

    #[test]
    fn already_done_counts_as_success() {
        let r = report(vec![target(
            "Aaa",
            Outcome::AlreadyDone {
                backup: backup("a"),
                note: "already done for this slot".into(),
            },
        )]);
        assert_eq!(r.status, RunStatus::Succeeded);
        assert!(!r.needs_retry());
        assert!(r.email_body().contains("already done for this slot"));
    }

    #[test]
    fn in_progress_elsewhere_is_not_success() {
        let r = report(vec![target(
            "Aaa",
            Outcome::InProgress {
                held_by_run: "x".into(),
                note: "held".into(),
            },
        )]);
        assert_eq!(r.status, RunStatus::Failed);
    }

    #[test]
    fn nothing_selected_is_a_warning() {
        let r = report(vec![]);
        assert_eq!(r.status, RunStatus::NothingSelected);
        assert_eq!(r.status.severity(), "warning");
    }

    #[test]
    fn subject_is_short_ascii_and_has_counts() {
        let mut r = report(vec![target(
            "Aaa",
            Outcome::Created {
                backup: backup("a"),
            },
        )]);
        r.job = JobKind::Retention;
        r.dry_run = true;
        r.totals.selected = usize::MAX;
        let s = r.subject();
        assert!(s.len() < 100 && s.is_ascii(), "{s}");
        let r = report(vec![target(
            "Aaa",
            Outcome::Created {
                backup: backup("a"),
            },
        )]);
        assert_eq!(
            r.subject(),
            "Backstop snapshot OK: 1 done, 0 failed of 1 - 2026-11-22T02:00:00Z"
        );
    }

    #[test]
    fn email_body_lists_every_table_and_pitr_warnings() {
        let mut t = target(
            "Bbb",
            Outcome::Created {
                backup: backup("b"),
            },
        );
        t.pitr = Some(PitrState::Disabled);
        let r = report(vec![
            target(
                "Aaa",
                Outcome::Created {
                    backup: backup("a"),
                },
            ),
            t,
        ]);
        let body = r.email_body();
        assert!(
            body.contains("- Aaa: backed up as a (2.0 KiB, 10 items)"),
            "{body}"
        );
        assert!(body.contains("point-in-time recovery is OFF"), "{body}");
        assert!(body.contains("Slot:       2026-11-22T02:00:00Z"));
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = report(vec![target(
            "Aaa",
            Outcome::Created {
                backup: backup("a"),
            },
        )]);
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("\"status\":\"created\""), "{j}");
        let back: RunReport = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(123), "123 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn the_sns_body_and_the_lambda_response_stay_under_their_limits_however_large_the_run() {
        use crate::retention::{Decision, Reason};
        // 4,000 tables, one in ten failed with a long error, each with 50 backups decided.
        let targets: Vec<TargetReport> = (0..4_000)
            .map(|i| {
                let mut t = if i % 10 == 0 {
                    target(
                        &format!("Table{i:05}-{}", "x".repeat(200)),
                        Outcome::Failed {
                            operation: "ListBackups".into(),
                            error: "e".repeat(5000),
                            retryable: true,
                        },
                    )
                } else {
                    target(
                        &format!("Table{i:05}"),
                        Outcome::Created {
                            backup: backup("b"),
                        },
                    )
                };
                t.warnings = vec!["w".repeat(1000); 2];
                t.decisions = (0..50)
                    .map(|j| PointDecision {
                        backup_arn: format!(
                            "arn:aws:dynamodb:us-east-1:1:table/T{i}/backup/{j:020}"
                        ),
                        backup_name: format!("T{i}-backstop-{j}"),
                        created_at: Timestamp::UNIX_EPOCH,
                        decision: Decision::Keep {
                            reasons: vec![Reason {
                                rule: "keep_daily 30".into(),
                                detail: "newest of day 2026-11-22".into(),
                            }],
                        },
                        result: None,
                    })
                    .collect();
                t
            })
            .collect();
        let r = report(targets);
        let body = r.email_body();
        assert!(body.len() <= MAX_EMAIL_BYTES, "{}", body.len());
        assert!(body.contains("- Table00000-xxx"), "failures come first");
        assert!(
            body.contains("more tables not listed here (0 not done,") || body.contains("not done,"),
            "{}",
            &body[body.len() - 300..]
        );
        let totals_before = r.totals.clone();
        let fitted = r.fit_response();
        let size = serde_json::to_vec(&fitted).unwrap().len();
        assert!(size <= MAX_RESPONSE_BYTES, "{size}");
        assert_eq!(fitted.totals, totals_before, "totals count every target");
        let note = fitted.truncated.as_deref().unwrap();
        assert!(
            note.contains("200000 per-backup decisions left out"),
            "{note}"
        );
        assert!(
            note.contains("of 4000 targets listed, those not done first"),
            "{note}"
        );
        assert!(!fitted.targets[0].outcome.is_done());
        // A small report is returned whole.
        let small = report(vec![target(
            "Aaa",
            Outcome::Created {
                backup: backup("a"),
            },
        )]);
        assert_eq!(small.clone().fit_response(), small);
        assert!(small.failure_summary().len() < 200);
    }
}
