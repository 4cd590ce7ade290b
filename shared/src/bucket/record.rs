//! Each bucket slot's record in the catalog (`pk` = `TARGET#bucket#<bucket>`, `sk` =
//! `SLOT#<slot>`): the proof that a slot in the backup bucket is Backstop's own, and the time of
//! the data it holds.
//!
//! Anyone allowed to put one object into the backup bucket can write a `checkpoint.json`, a
//! `manifest.json` or a `pruning.json` beside the real ones. None of them changes what a job does
//! unless it carries the random token this record holds for its slot: a checkpoint is resumed, a
//! summary called complete, only when its token is the record's. Retention plans on these
//! records (their data time, their legal hold), never on slot names found in S3; a slot in S3
//! without a record is reported and kept, never planned.
//!
//! | attribute | what |
//! |---|---|
//! | kind | `bucket_slot` (not `target`: the job reports do not count these) |
//! | status | `STARTED` → `DONE` → `PRUNING` → `DELETED` |
//! | token | random, written into the slot's checkpoint and summary |
//! | data_time | when the listing began (or the S3 Inventory report's time): the slot's time |
//! | fingerprint | the complete slot's manifest fingerprint |
//! | legal_hold | set by operators, as on every target: any value but false holds |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

use crate::catalog::{legal_hold_of, Catalog};
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;
use crate::settings::JobKind;

/// Where a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotStatus {
    /// Being backed up (a checkpoint with this record's token may exist).
    Started,
    /// Complete: the summary with this record's token is the slot.
    Done,
    /// A prune decided to delete it (and checked its hold); the next prune finishes.
    Pruning,
    /// Deleted by a prune.
    Deleted,
}

impl SlotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Started => "STARTED",
            SlotStatus::Done => "DONE",
            SlotStatus::Pruning => "PRUNING",
            SlotStatus::Deleted => "DELETED",
        }
    }

    fn parse(s: &str) -> Option<SlotStatus> {
        [
            SlotStatus::Started,
            SlotStatus::Done,
            SlotStatus::Pruning,
            SlotStatus::Deleted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One slot's record.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRecord {
    pub slot: ScheduleSlot,
    pub status: SlotStatus,
    pub token: String,
    /// The time of the slot's data: when its listing began, or its inventory report's time.
    pub data_time: Timestamp,
    pub fingerprint: Option<String>,
    /// Fails safe: a value that cannot be read as "no hold" holds.
    pub legal_hold: bool,
    /// The hold attribute is of a kind that is neither a hold nor not (a list, a map...).
    pub hold_unreadable: bool,
    /// Backup buckets in which this slot's objects carry an S3 Object Lock legal hold.
    pub locked_in: Vec<String>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn pk(source: &str) -> String {
    format!("TARGET#{}#{source}", JobKind::Bucket)
}

fn key(source: &str, slot: &ScheduleSlot) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(pk(source))),
        ("sk".to_owned(), s(format!("SLOT#{slot}"))),
    ])
}

fn resource(catalog: &Catalog, source: &str, slot: Option<&ScheduleSlot>) -> String {
    match slot {
        Some(slot) => format!(
            "catalog table {} item {} {slot}",
            catalog.table_name(),
            pk(source)
        ),
        None => format!(
            "catalog table {} items {}",
            catalog.table_name(),
            pk(source)
        ),
    }
}

fn is_condition_failed<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// An UpdateItem of the slot's record, with `#status` named.
fn update(
    catalog: &Catalog,
    source: &str,
    slot: &ScheduleSlot,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(source, slot)))
        .expression_attribute_names("#status", "status")
}

/// Sends a conditional write of the slot's record: `Ok(true)` written, `Ok(false)` its
/// condition refused it.
async fn conditional(
    req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    operation: &'static str,
    catalog: &Catalog,
    source: &str,
    slot: &ScheduleSlot,
) -> Result<bool> {
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failed(&e) => Ok(false),
        Err(e) => Err(Error::aws(
            operation,
            resource(catalog, source, Some(slot)),
            e,
        )),
    }
}

/// A new random token for a slot (or a prune).
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Option<SlotRecord> {
    let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
    let slot = ScheduleSlot::parse(get("slot")?).ok()?;
    let hold = legal_hold_of(item.get("legal_hold"));
    Some(SlotRecord {
        slot,
        status: SlotStatus::parse(get("status")?)?,
        token: get("token")?.clone(),
        data_time: get("data_time")?.parse().ok()?,
        fingerprint: get("fingerprint").cloned(),
        legal_hold: hold.unwrap_or(true),
        hold_unreadable: hold.is_none(),
        locked_in: item
            .get("locked_in")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
    })
}

fn unreadable(catalog: &Catalog, source: &str, item: &HashMap<String, AttributeValue>) -> Error {
    let sk = item
        .get("sk")
        .and_then(|v| v.as_s().ok())
        .map(|v| crate::report::clip(v, 60))
        .unwrap_or_default();
    Error::Aws {
        operation: "read catalog item",
        resource: format!("{} {sk}", resource(catalog, source, None)),
        code: None,
        message: "a bucket slot record without a readable slot, status, token or data_time".into(),
        retryable: false,
        hint: "the item was not written by Backstop: fix or delete it (nothing of this bucket is pruned until then)".into(),
    }
}

/// The slot's record, read consistently.
pub async fn get(
    catalog: &Catalog,
    source: &str,
    slot: &ScheduleSlot,
) -> Result<Option<SlotRecord>> {
    let out = catalog
        .client()
        .get_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(source, slot)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| Error::aws("GetItem", resource(catalog, source, Some(slot)), e))?;
    match out.item {
        None => Ok(None),
        Some(item) => from_item(&item)
            .map(Some)
            .ok_or_else(|| unreadable(catalog, source, &item)),
    }
}

/// Every slot record of `source`, oldest first, read consistently. One that cannot be read is
/// an error: a prune never plans on part of the records.
pub async fn list(catalog: &Catalog, source: &str) -> Result<Vec<SlotRecord>> {
    let items: Vec<HashMap<String, AttributeValue>> = catalog
        .client()
        .query()
        .table_name(catalog.table_name())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(pk(source)))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::aws("Query", resource(catalog, source, None), e))?;
    let mut out = items
        .iter()
        .map(|item| from_item(item).ok_or_else(|| unreadable(catalog, source, item)))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|r| r.slot);
    Ok(out)
}

/// Records that this slot's backup starts (or starts over) with `token`, for data of
/// `data_time`. Only a slot that is absent or still `STARTED` is (re)started: a complete,
/// pruning or deleted slot is never made anew.
pub async fn start(
    catalog: &Catalog,
    source: &str,
    slot: &ScheduleSlot,
    token: &str,
    data_time: Timestamp,
) -> Result<()> {
    let req = update(catalog, source, slot)
        .update_expression(
            "SET #kind = :kind, job = :job, #table = :table, slot = :slot, #status = :started, #token = :token, data_time = :t, updated_at = :now",
        )
        .condition_expression("attribute_not_exists(pk) OR #status = :started")
        .expression_attribute_names("#kind", "kind")
        .expression_attribute_names("#table", "table")
        .expression_attribute_names("#token", "token")
        .expression_attribute_values(":kind", s("bucket_slot"))
        .expression_attribute_values(":job", s(JobKind::Bucket.name()))
        .expression_attribute_values(":table", s(source))
        .expression_attribute_values(":slot", s(slot.to_string()))
        .expression_attribute_values(":started", s(SlotStatus::Started.as_str()))
        .expression_attribute_values(":token", s(token))
        .expression_attribute_values(":t", s(data_time.to_string()))
        .expression_attribute_values(":now", s(Timestamp::now().to_string()));
    if conditional(req, "UpdateItem (start bucket slot)", catalog, source, slot).await? {
        return Ok(());
    }
    Err(Error::refused(
        "bucket backup",
        format!(
            "the catalog says slot {slot} of bucket {source} is complete or pruned, but its summary is not in the backup bucket (or not Backstop's)"
        ),
        "the slot is not made again; look at the backup bucket (a summary deleted or replaced by hand?) and back up a new slot",
    ))
}

/// Records the slot complete (its summary, with `token`, is written). Safe to repeat.
pub async fn complete(
    catalog: &Catalog,
    source: &str,
    slot: &ScheduleSlot,
    token: &str,
    fingerprint: &str,
) -> Result<()> {
    let req = update(catalog, source, slot)
        .update_expression("SET #status = :done, fingerprint = :fp, completed_at = :now")
        .condition_expression("#token = :token AND #status IN (:started, :done)")
        .expression_attribute_names("#token", "token")
        .expression_attribute_values(":done", s(SlotStatus::Done.as_str()))
        .expression_attribute_values(":started", s(SlotStatus::Started.as_str()))
        .expression_attribute_values(":token", s(token))
        .expression_attribute_values(":fp", s(fingerprint))
        .expression_attribute_values(":now", s(Timestamp::now().to_string()));
    if conditional(
        req,
        "UpdateItem (complete bucket slot)",
        catalog,
        source,
        slot,
    )
    .await?
    {
        return Ok(());
    }
    Err(Error::Aws {
        operation: "UpdateItem (complete bucket slot)",
        resource: resource(catalog, source, Some(slot)),
        code: Some("ConditionalCheckFailedException".into()),
        message: "the slot's record no longer carries this backup's token".into(),
        retryable: true,
        hint: "a retry sees what the record says now".into(),
    })
}

/// Takes a complete slot to `PRUNING` unless it carries a legal hold. `Ok(false)`: it is held,
/// or no longer complete: keep it. A slot already `PRUNING` (a prune that stopped half-way)
/// answers `Ok(true)`.
///
/// The bucket function's role may not name `legal_hold` in any write (IAM's
/// `dynamodb:Attributes` cannot tell an attribute a condition tests from one it sets), so the
/// hold is read, not tested in the write: read (consistently), mark `PRUNING` on condition that
/// the slot is still `DONE`, read again, and give the slot back (`DONE`) when a hold was set
/// meanwhile. A hold set before the second read keeps the slot, as the conditional write of the
/// table backups' retention does for a hold set before it.
pub async fn begin_prune(catalog: &Catalog, source: &str, slot: &ScheduleSlot) -> Result<bool> {
    let Some(before) = get(catalog, source, slot).await? else {
        return Ok(false);
    };
    match before.status {
        // A prune that stopped half-way is finished, unless a hold came since: then the slot
        // is given back (what is left of it stays, and its parts keep their copies).
        SlotStatus::Pruning if before.legal_hold => {
            give_back(catalog, source, slot).await?;
            return Ok(false);
        }
        SlotStatus::Pruning => return Ok(true),
        SlotStatus::Done if !before.legal_hold => {}
        _ => return Ok(false),
    }
    let req = update(catalog, source, slot)
        .update_expression("SET #status = :pruning, pruning_at = :now")
        .condition_expression("#status = :done")
        .expression_attribute_values(":pruning", s(SlotStatus::Pruning.as_str()))
        .expression_attribute_values(":done", s(SlotStatus::Done.as_str()))
        .expression_attribute_values(":now", s(Timestamp::now().to_string()));
    // Refused: either no longer complete, or marked already (this very write, its answer lost
    // and the SDK's retry refused): the second read below decides.
    conditional(req, "UpdateItem (begin prune)", catalog, source, slot).await?;
    let after = get(catalog, source, slot).await?;
    match after {
        Some(r) if r.status == SlotStatus::Pruning && !r.legal_hold => Ok(true),
        Some(r) if r.status == SlotStatus::Pruning => {
            // Held since the first read (or unreadable now): given back, kept.
            give_back(catalog, source, slot).await?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Takes a `PRUNING` slot back to `DONE` (a hold came while it was being pruned).
async fn give_back(catalog: &Catalog, source: &str, slot: &ScheduleSlot) -> Result<()> {
    let req = update(catalog, source, slot)
        .update_expression("SET #status = :done REMOVE pruning_at")
        .condition_expression("#status = :pruning")
        .expression_attribute_values(":pruning", s(SlotStatus::Pruning.as_str()))
        .expression_attribute_values(":done", s(SlotStatus::Done.as_str()));
    // Refused: given back already (a retry whose first answer was lost).
    conditional(
        req,
        "UpdateItem (give a held slot back)",
        catalog,
        source,
        slot,
    )
    .await?;
    Ok(())
}

/// Records the slot deleted (every file of it is gone from the store). Safe to repeat.
pub async fn deleted(catalog: &Catalog, source: &str, slot: &ScheduleSlot) -> Result<()> {
    let req = update(catalog, source, slot)
        .update_expression("SET #status = :deleted, deleted_at = :now")
        .condition_expression("#status IN (:pruning, :deleted)")
        .expression_attribute_values(":pruning", s(SlotStatus::Pruning.as_str()))
        .expression_attribute_values(":deleted", s(SlotStatus::Deleted.as_str()))
        .expression_attribute_values(":now", s(Timestamp::now().to_string()));
    if conditional(
        req,
        "UpdateItem (bucket slot deleted)",
        catalog,
        source,
        slot,
    )
    .await?
    {
        return Ok(());
    }
    Err(Error::Aws {
        operation: "UpdateItem (bucket slot deleted)",
        resource: resource(catalog, source, Some(slot)),
        code: Some("ConditionalCheckFailedException".into()),
        message: "the slot's record is not PRUNING".into(),
        retryable: false,
        hint: "look at the record; the slot's files are deleted already".into(),
    })
}

/// Records that the slot's objects in backup bucket `bucket` carry an Object Lock legal hold.
pub async fn locked(
    catalog: &Catalog,
    source: &str,
    slot: &ScheduleSlot,
    bucket: &str,
) -> Result<()> {
    catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(source, slot)))
        .update_expression("ADD locked_in :b")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":b", AttributeValue::Ss(vec![bucket.to_owned()]))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "UpdateItem (Object Lock legal hold recorded)",
                resource(catalog, source, Some(slot)),
                e,
            )
        })?;
    Ok(())
}

impl SlotRecord {
    /// The record as the target records status and freshness read: a complete slot is a backup
    /// made at the time of its data.
    pub fn as_target(&self, source: &str) -> crate::catalog::TargetRecord {
        use crate::catalog::{TargetRecord, TargetStatus};
        TargetRecord {
            job: JobKind::Bucket,
            table: source.to_owned(),
            slot: self.slot.to_string(),
            status: match self.status {
                SlotStatus::Started => TargetStatus::Started,
                SlotStatus::Done => TargetStatus::Done,
                SlotStatus::Pruning | SlotStatus::Deleted => TargetStatus::Deleted,
            },
            run_id: String::new(),
            attempts: 0,
            backup_arn: Some(format!("bucket slot {}", self.slot.compact())),
            backup_name: Some(self.slot.compact()),
            backup_created_at: Some(self.data_time.to_string()),
            size_bytes: None,
            item_count: None,
            table_shape: None,
            table_settings: None,
            error: None,
            claimed_at: None,
            updated_at: None,
            completed_at: None,
            deleted_at: None,
            legal_hold: self.legal_hold,
            legal_hold_unreadable: None,
            lease_until: None,
            export: None,
            verification: None,
        }
    }
}

/// Pure: whether a control file's token proves it is the slot's own.
pub fn proves(record: Option<&SlotRecord>, token: Option<&str>) -> bool {
    match (record, token) {
        (Some(r), Some(t)) => !t.is_empty() && r.token == t,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn a_record_reads_back_and_a_hold_fails_safe() {
        let base = [
            ("slot", s("2026-12-01T02:00:00Z")),
            ("status", s("DONE")),
            ("token", s("abc")),
            ("data_time", s("2026-12-01T02:00:03Z")),
        ];
        let r = from_item(&item(&base)).unwrap();
        assert_eq!(r.status, SlotStatus::Done);
        assert!(!r.legal_hold);
        assert_eq!(r.data_time, "2026-12-01T02:00:03Z".parse().unwrap());
        let mut held = base.to_vec();
        held.push(("legal_hold", s("until 2027")));
        assert!(from_item(&item(&held)).unwrap().legal_hold);
        let mut odd = base.to_vec();
        odd.push(("legal_hold", AttributeValue::L(vec![])));
        let r = from_item(&item(&odd)).unwrap();
        assert!(r.legal_hold && r.hold_unreadable);
        // Without a token or a data time it is not a record Backstop wrote.
        assert!(from_item(&item(&base[..3])).is_none());
    }

    #[test]
    fn only_the_records_token_proves_a_file() {
        let r = SlotRecord {
            slot: ScheduleSlot::parse("2026-12-01T02:00:00Z").unwrap(),
            status: SlotStatus::Started,
            token: "t1".into(),
            data_time: "2026-12-01T02:00:00Z".parse().unwrap(),
            fingerprint: None,
            legal_hold: false,
            hold_unreadable: false,
            locked_in: vec![],
        };
        assert!(proves(Some(&r), Some("t1")));
        assert!(!proves(Some(&r), Some("t2")));
        assert!(!proves(Some(&r), None));
        assert!(!proves(None, Some("t1")));
        assert!(!proves(Some(&r), Some("")));
    }
}
