//! The catalog: a DynamoDB table that records each run and each backup, and guards against doing
//! the same work twice for one schedule slot.
//!
//! Schema (one table, string keys `pk` and `sk`, on-demand billing):
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | target (one per job, table, slot) | `TARGET#<job>#<table>` | `SLOT#<slot>` | kind=`target`, job, table, slot, status (`CLAIMED`/`DONE`/`FAILED`/`DELETED`), run_id, claimed_at (epoch s), lease_until (epoch s), deadline (epoch s, the holder's invocation deadline), attempts, backup_arn, backup_name, backup_created_at, size_bytes, item_count, table_shape (JSON: keys, indexes, billing mode at backup time), error, updated_at, completed_at (when marked done), deleted_at, legal_hold (set by operators: any value but false holds) |
//! | run (one per invocation) | `RUN#<job>` | `<slot>#<run_id>` | kind=`run`, job, slot, run_id, status, trigger, dry_run, started_at, finished_at, duration_ms, errors, and the job's counters ([`RunReport::run_counters`]): snapshot selected, created, already_done, in_progress, failed, bytes, items; retention selected, retained, kept, deleted, failed |
//!
//! The guard: before any work on a (job, table, slot), a conditional write takes the target
//! item from "absent" or `FAILED` (or a `CLAIMED` whose lease has run out: its holder is dead)
//! to `CLAIMED` by this run, with a short lease that never outlives the holder's invocation
//! deadline. The holder renews the lease just before it creates anything, and only the holder of
//! the claim creates a backup. A redelivered event finds `DONE` and reports "already done for
//! this slot".

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client as DynamoDb;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::ScheduleSlot;
use crate::report::{BackupInfo, RunReport};
use crate::settings::JobKind;

/// How long a claim protects a slot at most, before its holder renews it (just before it creates
/// anything). Short, so that a retry one to three minutes after a crash (Lambda's asynchronous
/// retries) can take over; never past the holder's invocation deadline, after which the holder
/// cannot be running. See [`lease_until`].
pub const CLAIM_LEASE: Duration = Duration::from_secs(90);

/// Claims made outside Lambda (the CLI) have no deadline; they are held at most this long.
pub const DEFAULT_RUN_BUDGET: Duration = Duration::from_secs(15 * 60);

/// Claims written before leases were recorded carry only `claimed_at`; they count as dead this
/// long after it.
const LEGACY_LEASE: Duration = Duration::from_secs(20 * 60);

/// Pure: until when a claim taken at `now` by an invocation that must end by `deadline` holds.
pub fn lease_until(now: Timestamp, deadline: Option<Timestamp>) -> Timestamp {
    let budget = deadline.unwrap_or_else(|| now + DEFAULT_RUN_BUDGET);
    (now + CLAIM_LEASE).min(budget)
}

/// Where one (job, table, slot) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetStatus {
    /// A run holds the slot (until its lease runs out).
    Claimed,
    /// The backup is made and recorded.
    Done,
    /// The last attempt failed; the next one may go ahead at once.
    Failed,
    /// The backup was made, and later deleted by retention.
    Deleted,
    /// Work goes on outside any invocation (AWS runs a native export) or continues in a later
    /// one (a logical export's checkpoints): the next claim finalizes or resumes it.
    Started,
}

impl TargetStatus {
    pub const ALL: [TargetStatus; 5] = [
        TargetStatus::Claimed,
        TargetStatus::Done,
        TargetStatus::Failed,
        TargetStatus::Deleted,
        TargetStatus::Started,
    ];

    /// As stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Claimed => "CLAIMED",
            TargetStatus::Done => "DONE",
            TargetStatus::Failed => "FAILED",
            TargetStatus::Deleted => "DELETED",
            TargetStatus::Started => "STARTED",
        }
    }

    /// Done for its slot: the backup was made (and may have been deleted since by retention).
    pub fn is_done(self) -> bool {
        matches!(self, TargetStatus::Done | TargetStatus::Deleted)
    }
}

impl std::fmt::Display for TargetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

const STATUS_CLAIMED: &str = "CLAIMED";
const STATUS_DONE: &str = "DONE";
const STATUS_FAILED: &str = "FAILED";
const STATUS_DELETED: &str = "DELETED";
const STATUS_STARTED: &str = "STARTED";

/// The catalog table, seen through one client.
#[derive(Debug, Clone)]
pub struct Catalog {
    client: DynamoDb,
    table: String,
}

/// One target's record for one slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub job: JobKind,
    pub table: String,
    pub slot: String,
    pub status: TargetStatus,
    pub run_id: String,
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i64>,
    /// Snapshots: the table's keys, indexes and billing mode at backup time (for drills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_shape: Option<serde_json::Value>,
    /// Snapshots: the settings a restore loses (TTL, stream, PITR, deletion protection, tags)
    /// as they were at backup time, re-applied by `backstop restore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_settings: Option<crate::table_settings::TableSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// When the target was marked done (the claim's `claimed_at` to this is its duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// When retention deleted the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Set by an operator on the catalog item; retention never deletes a held backup.
    #[serde(default)]
    pub legal_hold: bool,
    /// The legal_hold attribute is of a kind that cannot be read as a hold or not (a list, a
    /// map, a null...): retention deletes nothing of this table until it is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold_unreadable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    /// Exports: what was exported, where, and its fingerprint (attribute `export`, JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<crate::export::ExportMeta>,
    /// Exports: the result of validate's read-back (attribute `verification`, JSON), once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// What validate found when it read an export back (recorded once per export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub at: Timestamp,
    pub ok: bool,
    /// What was checked, or what is wrong (which file, which line, which count).
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// The fingerprint of the data as read: for a native export, the first verification's is
    /// the one later checks compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<crate::fingerprint::Fingerprint>,
}

impl TargetRecord {
    pub fn backup_info(&self) -> Option<BackupInfo> {
        Some(BackupInfo {
            backup_arn: self.backup_arn.clone()?,
            backup_name: self.backup_name.clone().unwrap_or_default(),
            created_at: self
                .backup_created_at
                .as_deref()
                .and_then(|s| s.parse().ok()),
            size_bytes: self.size_bytes,
            item_count: self.item_count,
            backup_status: "AVAILABLE".into(),
            table_shape: self.table_shape.clone(),
            table_settings: self.table_settings.clone(),
        })
    }
}

/// The result of trying to claim a (job, table, slot).
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Nobody worked on this slot before: go ahead.
    Fresh,
    /// An earlier attempt failed or died: go ahead, but first look for a backup it may have made.
    Retaken { previous: TargetRecord },
    /// Done already: do nothing.
    Done(TargetRecord),
    /// Another invocation holds it now.
    Held(TargetRecord),
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn target_key(
    job: JobKind,
    table: &str,
    slot: &ScheduleSlot,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(format!("TARGET#{job}#{table}"))),
        ("sk".to_owned(), s(format!("SLOT#{slot}"))),
    ])
}

impl Catalog {
    pub fn new(client: DynamoDb, table: impl Into<String>) -> Catalog {
        Catalog {
            client,
            table: table.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The client, for the records a job keeps beside its targets (export checkpoints).
    pub fn client(&self) -> &DynamoDb {
        &self.client
    }

    /// Records what the holder is exporting (attribute `export`), before or as it completes.
    /// Safe to repeat: it writes the same value again.
    pub async fn set_export(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
        meta: &crate::export::ExportMeta,
    ) -> Result<()> {
        let text = serde_json::to_string(meta).map_err(|e| Error::Local(e.to_string()))?;
        let result = self
            .holder_update(job, table, slot, run_id)
            .update_expression("SET #export = :export")
            .expression_attribute_names("#export", "export")
            .expression_attribute_values(":export", s(text))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => {
                let current = self.get(job, table, slot).await?;
                Err(self.not_ours("UpdateItem (record export)", table, slot, current))
            }
            Err(e) => Err(Error::aws("UpdateItem (record export)", self.resource(), e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// Lets go of a claim whose work goes on elsewhere: status STARTED with what was started,
    /// lease ended, so that the next run (a continuation, a retry, the next schedule) claims it
    /// at once and finalizes or resumes it. Safe to repeat.
    pub async fn hand_off(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
        meta: &crate::export::ExportMeta,
        note: &str,
        now: Timestamp,
    ) -> Result<()> {
        let text = serde_json::to_string(meta).map_err(|e| Error::Local(e.to_string()))?;
        let result = self
            .holder_update(job, table, slot, run_id)
            .update_expression(
                "SET #status = :started, #export = :export, #lease = :now, #error = :note, updated_at = :now_s",
            )
            .expression_attribute_names("#export", "export")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":started", s(STATUS_STARTED))
            .expression_attribute_values(":export", s(text))
            .expression_attribute_values(":now", n(now.as_second()))
            .expression_attribute_values(":note", s(note))
            .expression_attribute_values(":now_s", s(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => match self.get(job, table, slot).await? {
                Some(c) if c.status == TargetStatus::Started && c.run_id == run_id => Ok(()),
                other => Err(self.not_ours("UpdateItem (hand off)", table, slot, other)),
            },
            Err(e) => Err(Error::aws("UpdateItem (hand off)", self.resource(), e)),
        }
    }

    /// Lets go of a claim whose backup AWS is still making (a database snapshot `creating`):
    /// status STARTED with the backup's ARN and name, lease ended, so that a later run claims
    /// it at once and records its completion. Safe to repeat.
    #[allow(clippy::too_many_arguments)]
    pub async fn hand_off_backup(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
        backup: &BackupInfo,
        note: &str,
        now: Timestamp,
    ) -> Result<()> {
        let mut req = self
            .holder_update(job, table, slot, run_id)
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":started", s(STATUS_STARTED))
            .expression_attribute_values(":arn", s(&backup.backup_arn))
            .expression_attribute_values(":name", s(&backup.backup_name))
            .expression_attribute_values(":now", n(now.as_second()))
            .expression_attribute_values(":note", s(note))
            .expression_attribute_values(":now_s", s(now.to_string()));
        let mut set = vec![
            "#status = :started",
            "backup_arn = :arn",
            "backup_name = :name",
            "#lease = :now",
            "#error = :note",
            "updated_at = :now_s",
        ];
        if let Some(shape) = &backup.table_shape {
            req = req.expression_attribute_values(":shape", s(shape.to_string()));
            set.push("table_shape = :shape");
        }
        let result = req
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => match self.get(job, table, slot).await? {
                Some(c) if c.status == TargetStatus::Started && c.run_id == run_id => Ok(()),
                other => Err(self.not_ours("UpdateItem (hand off)", table, slot, other)),
            },
            Err(e) => Err(Error::aws("UpdateItem (hand off)", self.resource(), e)),
        }
    }

    fn resource(&self) -> String {
        format!("catalog table {}", self.table)
    }

    /// Takes the claim on (job, table, slot) for `run_id` until `lease` (see [`lease_until`]),
    /// recording the holder's `deadline`, or says why not.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
        now: Timestamp,
        lease: Timestamp,
        deadline: Option<Timestamp>,
    ) -> Result<Claim> {
        let stale_before = now.as_second() - LEGACY_LEASE.as_secs() as i64;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target_key(job, table, slot)))
            .update_expression(
                "SET #kind = :kind, #job = :job, #table = :table, #slot = :slot, #status = :claimed, \
                 #run = :run, #claimed_at = :now, #lease = :lease, #deadline = :deadline, \
                 #updated = :now_s ADD #attempts :one REMOVE #error",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR #status = :failed OR #status = :started OR \
                 (#status = :claimed AND \
                 (#lease < :now OR (attribute_not_exists(#lease) AND #claimed_at < :stale)))",
            )
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_names("#deadline", "deadline")
            .expression_attribute_values(":lease", n(lease.as_second()))
            .expression_attribute_values(
                ":deadline",
                n(deadline.unwrap_or(lease).as_second()),
            )
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#job", "job")
            .expression_attribute_names("#table", "table")
            .expression_attribute_names("#slot", "slot")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#run", "run_id")
            .expression_attribute_names("#claimed_at", "claimed_at")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":kind", s("target"))
            .expression_attribute_values(":job", s(job.name()))
            .expression_attribute_values(":table", s(table))
            .expression_attribute_values(":slot", s(slot.to_string()))
            .expression_attribute_values(":claimed", s(STATUS_CLAIMED))
            .expression_attribute_values(":failed", s(STATUS_FAILED))
            .expression_attribute_values(":started", s(STATUS_STARTED))
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":now", n(now.as_second()))
            .expression_attribute_values(":now_s", s(now.to_string()))
            .expression_attribute_values(":stale", n(stale_before))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(old) if !old.is_empty() => Ok(Claim::Retaken {
                    previous: record_from_item(&old)?,
                }),
                _ => Ok(Claim::Fresh),
            },
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                let current = self
                    .get(job, table, slot)
                    .await?
                    .ok_or_else(|| Error::Aws {
                        operation: "GetItem",
                        resource: self.resource(),
                        code: None,
                        message: format!(
                            "the claim for {table} at {slot} was refused but the record is gone"
                        ),
                        retryable: true,
                        hint: "a retry may succeed".into(),
                    })?;
                if current.status.is_done() {
                    Ok(Claim::Done(current))
                } else if current.status == TargetStatus::Claimed && current.run_id == run_id {
                    // Our own claim: the write took effect, its answer was lost, and the SDK's
                    // retry found the condition failing. Carry on as the holder, looking first
                    // for a backup an earlier holder may have made.
                    Ok(Claim::Retaken { previous: current })
                } else {
                    Ok(Claim::Held(current))
                }
            }
            Err(e) => Err(Error::aws("UpdateItem (claim)", self.resource(), e)),
        }
    }

    /// Reads one target record (strongly consistent).
    pub async fn get(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
    ) -> Result<Option<TargetRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(target_key(job, table, slot)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("GetItem", self.resource(), e))?;
        out.item.as_ref().map(record_from_item).transpose()
    }

    /// Extends the holder's lease to `lease` just before it creates something, so that nobody
    /// takes the slot over while the creation is under way. `Ok(false)`: the claim is no longer
    /// this run's (it was taken over after the lease ran out); create nothing.
    pub async fn renew(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
        lease: Timestamp,
    ) -> Result<bool> {
        let result = self
            .holder_update(job, table, slot, run_id)
            .update_expression("SET #lease = :lease")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":lease", n(lease.as_second()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::aws("UpdateItem (renew claim)", self.resource(), e)),
        }
    }

    /// Marks a claimed target done with its backup. Only the claim holder may do so.
    pub async fn complete(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
        backup: &BackupInfo,
        now: Timestamp,
    ) -> Result<()> {
        let mut req = self
            .holder_update(job, table, slot, run_id)
            .expression_attribute_values(":done", s(STATUS_DONE))
            .expression_attribute_values(":arn", s(&backup.backup_arn))
            .expression_attribute_values(":name", s(&backup.backup_name))
            .expression_attribute_values(":now_s", s(now.to_string()));
        let mut set = vec![
            "#status = :done",
            "backup_arn = :arn",
            "backup_name = :name",
            "updated_at = :now_s",
            "completed_at = :now_s",
        ];
        if let Some(c) = backup.created_at {
            req = req.expression_attribute_values(":created", s(c.to_string()));
            set.push("backup_created_at = :created");
        }
        if let Some(b) = backup.size_bytes {
            req = req.expression_attribute_values(":size", n(b));
            set.push("size_bytes = :size");
        }
        if let Some(i) = backup.item_count {
            req = req.expression_attribute_values(":items", n(i));
            set.push("item_count = :items");
        }
        if let Some(shape) = &backup.table_shape {
            req = req.expression_attribute_values(":shape", s(shape.to_string()));
            set.push("table_shape = :shape");
        }
        if let Some(settings) = backup
            .table_settings
            .as_ref()
            .and_then(|t| serde_json::to_string(t).ok())
        {
            req = req.expression_attribute_values(":settings", s(settings));
            set.push("table_settings = :settings");
        }
        // Safe to repeat: when the condition fails because an earlier attempt of this very write
        // took effect (its answer lost), the item shows it, and that is success.
        match req
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => {
                let current = self.get(job, table, slot).await?;
                match current {
                    Some(c)
                        if c.status == TargetStatus::Done
                            && c.run_id == run_id
                            && c.backup_arn.as_deref() == Some(backup.backup_arn.as_str()) =>
                    {
                        Ok(())
                    }
                    other => Err(self.not_ours("UpdateItem (complete)", table, slot, other)),
                }
            }
            Err(e) => Err(Error::aws("UpdateItem (complete)", self.resource(), e)),
        }
    }

    /// The slot a record names, which Backstop wrote and reads back.
    fn slot_of(&self, record: &TargetRecord) -> Result<ScheduleSlot> {
        ScheduleSlot::parse(&record.slot).map_err(|e| Error::Aws {
            operation: "read catalog item",
            resource: self.resource(),
            code: None,
            message: e,
            retryable: false,
            hint: "the catalog item was not written by Backstop; fix or delete it".into(),
        })
    }

    /// An UpdateItem on a target that only the run holding its claim may make.
    fn holder_update(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target_key(job, table, slot)))
            .condition_expression("#status = :claimed AND #run = :run")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#run", "run_id")
            .expression_attribute_values(":claimed", s(STATUS_CLAIMED))
            .expression_attribute_values(":run", s(run_id))
    }

    /// The error for a conditional write refused because the item is no longer this run's.
    fn not_ours(
        &self,
        operation: &'static str,
        table: &str,
        slot: &ScheduleSlot,
        current: Option<TargetRecord>,
    ) -> Error {
        let now = match current {
            Some(c) => format!("it is {} by run {}", c.status, c.run_id),
            None => "the record is gone".to_owned(),
        };
        Error::Aws {
            operation,
            resource: self.resource(),
            code: Some("ConditionalCheckFailedException".into()),
            message: format!(
                "the claim on {table} at {slot} is no longer this run's ({now}); it was taken over after its lease ran out"
            ),
            retryable: true,
            hint: "a retry sees the other run's result".into(),
        }
    }

    /// Marks a claimed target failed, so that the next delivery retries it at once.
    pub async fn fail(
        &self,
        job: JobKind,
        table: &str,
        slot: &ScheduleSlot,
        run_id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<()> {
        let result = self
            .holder_update(job, table, slot, run_id)
            .update_expression("SET #status = :failed, #error = :err, updated_at = :now_s")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":failed", s(STATUS_FAILED))
            .expression_attribute_values(":err", s(error))
            .expression_attribute_values(":now_s", s(now.to_string()))
            .send()
            .await;
        // Safe to repeat, like `complete`.
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => match self.get(job, table, slot).await? {
                Some(c) if c.status == TargetStatus::Failed && c.run_id == run_id => Ok(()),
                other => Err(self.not_ours("UpdateItem (fail)", table, slot, other)),
            },
            Err(e) => Err(Error::aws("UpdateItem (fail)", self.resource(), e)),
        }
    }

    /// Checks, in one conditional write just before a delete, that the record carries no legal
    /// hold now (one may have been set since the listing). `Ok(false)`: it is held; do not
    /// delete. Safe to repeat (it only stamps `hold_checked_at`).
    pub async fn still_not_held(&self, record: &TargetRecord, now: Timestamp) -> Result<bool> {
        let slot = self.slot_of(record)?;
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target_key(record.job, &record.table, &slot)))
            .update_expression("SET hold_checked_at = :now_s")
            .expression_attribute_values(":now_s", s(now.to_string()));
        let (req, not_held) = not_held_condition(req);
        let result = req
            .condition_expression(format!("attribute_exists(pk) AND {not_held}"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(Error::aws(
                "UpdateItem (check legal hold)",
                self.resource(),
                e,
            )),
        }
    }

    /// Records an export's verification, once: a record that already holds one keeps it (the
    /// first reading is the one that counts), and `false` says so.
    pub async fn record_verification(
        &self,
        record: &TargetRecord,
        verification: &Verification,
    ) -> Result<bool> {
        let slot = self.slot_of(record)?;
        let text = serde_json::to_string(verification).map_err(|e| Error::Local(e.to_string()))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target_key(record.job, &record.table, &slot)))
            .update_expression("SET #verification = :v, updated_at = :now_s")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#verification)")
            .expression_attribute_names("#verification", "verification")
            .expression_attribute_values(":v", s(text))
            .expression_attribute_values(":now_s", s(verification.at.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(Error::aws(
                "UpdateItem (record verification)",
                self.resource(),
                e,
            )),
        }
    }

    /// Marks a target's backup deleted by retention (kept as history).
    pub async fn mark_deleted(&self, record: &TargetRecord, now: Timestamp) -> Result<()> {
        let slot = self.slot_of(record)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target_key(record.job, &record.table, &slot)))
            .update_expression("SET #status = :deleted, deleted_at = :now_s, updated_at = :now_s")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":deleted", s(STATUS_DELETED))
            .expression_attribute_values(":now_s", s(now.to_string()))
            .send()
            .await
            .map_err(|e| Error::aws("UpdateItem (mark deleted)", self.resource(), e))?;
        Ok(())
    }

    /// Records a finished run.
    pub async fn record_run(&self, report: &RunReport) -> Result<()> {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(format!("RUN#{}", report.job))),
            (
                "sk".to_owned(),
                s(format!("{}#{}", report.slot, report.run_id)),
            ),
            ("kind".to_owned(), s("run")),
            ("job".to_owned(), s(report.job.name())),
            ("slot".to_owned(), s(report.slot.to_string())),
            ("run_id".to_owned(), s(&report.run_id)),
            ("status".to_owned(), s(format!("{:?}", report.status))),
            ("trigger".to_owned(), s(format!("{:?}", report.trigger))),
            ("dry_run".to_owned(), AttributeValue::Bool(report.dry_run)),
            ("started_at".to_owned(), s(report.started_at.to_string())),
            ("finished_at".to_owned(), s(report.finished_at.to_string())),
            ("duration_ms".to_owned(), n(report.duration_ms as i64)),
        ]);
        // Each job's own counters.
        item.extend(
            report
                .run_counters()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), n(value))),
        );
        if !report.errors.is_empty() {
            item.insert(
                "errors".to_owned(),
                AttributeValue::Ss(dedup(&report.errors)),
            );
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| Error::aws("PutItem (run record)", self.resource(), e))?;
        Ok(())
    }

    /// Backups recorded for one table (all slots), or for every table, oldest slot first.
    pub async fn list_targets(
        &self,
        job: JobKind,
        table: Option<&str>,
    ) -> Result<Vec<TargetRecord>> {
        let items: Vec<HashMap<String, AttributeValue>> = match table {
            Some(t) => self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("TARGET#{job}#{t}")))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| Error::aws("Query", self.resource(), e))?,
            None => self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#kind = :kind AND #job = :job")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_names("#job", "job")
                .expression_attribute_values(":kind", s("target"))
                .expression_attribute_values(":job", s(job.name()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| Error::aws("Scan", self.resource(), e))?,
        };
        let mut records = items
            .iter()
            .map(record_from_item)
            .collect::<Result<Vec<_>>>()?;
        records.sort_by(|a, b| (&a.table, &a.slot).cmp(&(&b.table, &b.slot)));
        Ok(records)
    }
}

/// Distinct errors, each clipped, at most 50: a run record stays far below DynamoDB's 400 KB.
fn is_condition_failed<R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<UpdateItemError, R>,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in v {
        let e = crate::report::clip(e, 2000);
        if !out.contains(&e) && out.len() < 50 {
            out.push(e);
        }
    }
    out
}

fn record_from_item(item: &HashMap<String, AttributeValue>) -> Result<TargetRecord> {
    let get_s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let get_n = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let required = |k: &str| {
        get_s(k).ok_or_else(|| Error::Aws {
            operation: "read catalog item",
            resource: format!(
                "catalog item {}",
                get_s("pk").unwrap_or_else(|| "(no pk)".into())
            ),
            code: None,
            message: format!("attribute {k} is missing"),
            retryable: false,
            hint: "the catalog item was not written by Backstop; fix or delete it".into(),
        })
    };
    let hold = legal_hold_of(item.get("legal_hold"));
    Ok(TargetRecord {
        job: required("job")?.parse().map_err(|e: String| Error::Aws {
            operation: "read catalog item",
            resource: format!(
                "catalog item {}",
                get_s("pk").unwrap_or_else(|| "(no pk)".into())
            ),
            code: None,
            message: e,
            retryable: false,
            hint: "the catalog item was not written by Backstop; fix or delete it".into(),
        })?,
        table: required("table")?,
        slot: required("slot")?,
        status: {
            let text = required("status")?;
            TargetStatus::ALL
                .into_iter()
                .find(|st| st.as_str() == text)
                .ok_or_else(|| Error::Aws {
                    operation: "read catalog item",
                    resource: format!(
                        "catalog item {}",
                        get_s("pk").unwrap_or_else(|| "(no pk)".into())
                    ),
                    code: None,
                    message: format!(
                        "status {:?} is none of CLAIMED, DONE, FAILED, DELETED, STARTED",
                        crate::report::clip(&text, 40)
                    ),
                    retryable: false,
                    hint: "the catalog item was not written by Backstop; fix or delete it".into(),
                })?
        },
        run_id: required("run_id")?,
        attempts: get_n("attempts").unwrap_or(0),
        backup_arn: get_s("backup_arn"),
        backup_name: get_s("backup_name"),
        backup_created_at: get_s("backup_created_at"),
        size_bytes: get_n("size_bytes"),
        item_count: get_n("item_count"),
        // Written by Backstop as JSON; anything else reads as unknown, never as an error.
        table_shape: get_s("table_shape").and_then(|t| serde_json::from_str(&t).ok()),
        table_settings: get_s("table_settings").and_then(|t| serde_json::from_str(&t).ok()),
        error: get_s("error"),
        claimed_at: get_n("claimed_at"),
        updated_at: get_s("updated_at"),
        completed_at: get_s("completed_at"),
        deleted_at: get_s("deleted_at"),
        legal_hold: hold.unwrap_or(true),
        legal_hold_unreadable: match (hold, misspelled_hold(item)) {
            (None, _) => Some(format!(
                "legal_hold is {}; set it to true or false",
                kind_of(item.get("legal_hold"))
            )),
            (_, Some(k)) => Some(format!(
                "attribute {:?} looks like a legal hold but Backstop reads only legal_hold; rename it",
                crate::report::clip(k, 64)
            )),
            _ => None,
        },
        lease_until: get_n("lease_until"),
        export: match get_s("export") {
            None => None,
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| Error::Aws {
                operation: "read catalog item",
                resource: format!(
                    "catalog item {}",
                    get_s("pk").unwrap_or_else(|| "(no pk)".into())
                ),
                code: None,
                message: format!("attribute export is not an export record: {e}"),
                retryable: false,
                hint: "the catalog item was not written by Backstop; fix or delete it".into(),
            })?),
        },
        // Written by Backstop as JSON; anything else reads as not verified yet.
        verification: get_s("verification").and_then(|t| serde_json::from_str(&t).ok()),
    })
}

/// The condition "carries no legal hold now" for a conditional UpdateItem, with its names and
/// values set on `req`: the same rule as [`legal_hold_of`], as DynamoDB compares values.
pub fn not_held_condition(
    mut req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
) -> (
    aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    String,
) {
    req = req
        .expression_attribute_names("#hold", "legal_hold")
        .expression_attribute_values(":no_b", AttributeValue::Bool(false))
        .expression_attribute_values(":no_n", AttributeValue::N("0".into()));
    let mut names = Vec::new();
    for (i, text) in NOT_HELD_STRINGS.iter().enumerate() {
        let name = format!(":no_s{i}");
        req = req.expression_attribute_values(&name, s(*text));
        names.push(name);
    }
    let cond = format!(
        "(attribute_not_exists(#hold) OR #hold IN (:no_b, :no_n, {}))",
        names.join(", ")
    );
    (req, cond)
}

/// The strings that say "no hold". Exact: the check made just before a delete is a DynamoDB
/// condition, which compares values as they are, and the two must agree.
pub const NOT_HELD_STRINGS: &[&str] = &[
    "false", "False", "FALSE", "no", "No", "NO", "0", "off", "Off", "OFF",
];

/// Pure: whether a `legal_hold` attribute holds. Fails safe: any value but false is a hold
/// (`true`, `"true"`, `"yes"`, `1`, `"until 2027"`, `" no "`); absent, `false`, the strings of
/// [`NOT_HELD_STRINGS`] and the number `0` are not. `None` for a value that is neither a boolean,
/// a string nor a number.
pub fn legal_hold_of(v: Option<&AttributeValue>) -> Option<bool> {
    match v {
        None => Some(false),
        Some(AttributeValue::Bool(b)) => Some(*b),
        Some(AttributeValue::S(text)) => Some(!NOT_HELD_STRINGS.contains(&text.as_str())),
        Some(AttributeValue::N(num)) => Some(num != "0"),
        Some(_) => None,
    }
}

/// An attribute that looks like a legal hold but is not spelled `legal_hold` (`LegalHold`,
/// `legal-hold`, ...): an operator meant a hold, and Backstop would not see it.
fn misspelled_hold(item: &HashMap<String, AttributeValue>) -> Option<&str> {
    item.keys().map(String::as_str).find(|k| {
        *k != "legal_hold"
            && k.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .eq_ignore_ascii_case("legalhold")
    })
}

fn kind_of(v: Option<&AttributeValue>) -> &'static str {
    match v {
        None => "absent",
        Some(AttributeValue::Null(_)) => "NULL",
        Some(AttributeValue::L(_)) => "a list",
        Some(AttributeValue::M(_)) => "a map",
        Some(AttributeValue::B(_)) => "binary",
        Some(AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_)) => "a set",
        Some(_) => "of an unknown type",
    }
}

/// Creates the catalog table (on-demand billing), as the SAM template does. Used by the local
/// stack and the tests; succeeds if the table already exists.
pub async fn create_catalog_table(ddb: &DynamoDb, name: &str) -> Result<()> {
    let result = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(Error::aws(
            "CreateTable",
            format!("catalog table {name}"),
            e,
        )),
    }
}

fn attr(name: &str) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| Error::Local(e.to_string()))
}

fn key(name: &str, t: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()
        .map_err(|e| Error::Local(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_legal_hold_but_false_holds_and_odd_kinds_are_unreadable() {
        let s = |v: &str| AttributeValue::S(v.into());
        let n = |v: &str| AttributeValue::N(v.into());
        for held in [
            AttributeValue::Bool(true),
            s("true"),
            s("TRUE"),
            s("yes"),
            s("1"),
            s("until 2027-06-30"),
            s(""),
            s(" no "),
            n("1"),
            n("-2"),
        ] {
            assert_eq!(legal_hold_of(Some(&held)), Some(true), "{held:?}");
        }
        for free in [
            AttributeValue::Bool(false),
            s("false"),
            s("No"),
            s("OFF"),
            s("0"),
            n("0"),
        ] {
            assert_eq!(legal_hold_of(Some(&free)), Some(false), "{free:?}");
        }
        assert_eq!(legal_hold_of(None), Some(false));
        for odd in [
            AttributeValue::Null(true),
            AttributeValue::L(vec![]),
            AttributeValue::M(HashMap::new()),
            AttributeValue::Ss(vec!["true".into()]),
        ] {
            assert_eq!(legal_hold_of(Some(&odd)), None, "{odd:?}");
        }
    }

    #[test]
    fn a_misspelled_legal_hold_makes_the_record_unreadable() {
        let s = |v: &str| AttributeValue::S(v.into());
        let mut item = HashMap::from([
            ("pk".to_owned(), s("TARGET#snapshot#T")),
            ("job".to_owned(), s("snapshot")),
            ("table".to_owned(), s("T")),
            ("slot".to_owned(), s("2026-11-22T02:00:00Z")),
            ("status".to_owned(), s("DONE")),
            ("run_id".to_owned(), s("r")),
        ]);
        assert_eq!(record_from_item(&item).unwrap().legal_hold_unreadable, None);
        item.insert("LegalHold".into(), AttributeValue::Bool(true));
        let why = record_from_item(&item)
            .unwrap()
            .legal_hold_unreadable
            .unwrap();
        assert!(
            why.contains("\"LegalHold\" looks like a legal hold"),
            "{why}"
        );
    }

    #[test]
    fn a_lease_is_short_and_never_outlives_the_deadline() {
        let now: Timestamp = "2026-11-22T02:00:00Z".parse().unwrap();
        assert_eq!(lease_until(now, None), now + CLAIM_LEASE);
        let far = now + Duration::from_secs(900);
        assert_eq!(lease_until(now, Some(far)), now + CLAIM_LEASE);
        let near = now + Duration::from_secs(20);
        assert_eq!(lease_until(now, Some(near)), near);
    }
}
