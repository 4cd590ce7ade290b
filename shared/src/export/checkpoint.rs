//! A logical export's checkpoints: one catalog item per scan segment
//! (`EXPORT#<table>#<slot>` / `SEG#<n>`), written after each completed data file with the scan
//! position (`LastEvaluatedKey`), the files so far, the counts and the partial fingerprint.
//! An invocation claims a segment with a lease (so that invocations sharing a table never work
//! on one segment together) and resumes from its checkpoint: at most the one data file it had
//! not finished is redone, under the same key.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

use super::manifest::FileEntry;
use crate::catalog::Catalog;
use crate::ddbjson::{self, Item};
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;
use crate::fingerprint::Fingerprint;

/// Where one segment stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub segment: u32,
    pub total: u32,
    /// Number of the next data file (files before it are complete and listed).
    pub next_file: u32,
    /// Where the scan resumes; `None` before the first file and after the last.
    pub resume_at: Option<Item>,
    pub done: bool,
    pub items: u64,
    /// Uncompressed bytes written.
    pub bytes: u64,
    pub fingerprint: Fingerprint,
    pub files: Vec<FileEntry>,
    pub owner: Option<String>,
    pub lease_until: Option<i64>,
}

impl Segment {
    pub fn new(segment: u32, total: u32) -> Segment {
        Segment {
            segment,
            total,
            next_file: 0,
            resume_at: None,
            done: false,
            items: 0,
            bytes: 0,
            fingerprint: Fingerprint::default(),
            files: Vec::new(),
            owner: None,
            lease_until: None,
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn pk(table: &str, slot: &ScheduleSlot) -> String {
    format!("EXPORT#{table}#{slot}")
}

fn key(table: &str, slot: &ScheduleSlot, segment: u32) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(pk(table, slot))),
        ("sk".to_owned(), s(format!("SEG#{segment:04}"))),
    ])
}

fn resource(catalog: &Catalog, table: &str, slot: &ScheduleSlot) -> String {
    format!(
        "catalog table {} item {} (export checkpoints)",
        catalog.table_name(),
        pk(table, slot)
    )
}

fn unreadable(catalog: &Catalog, table: &str, slot: &ScheduleSlot, what: String) -> Error {
    Error::Aws {
        operation: "read export checkpoint",
        resource: resource(catalog, table, slot),
        code: None,
        message: what,
        retryable: false,
        hint: "the checkpoint was not written by Backstop; delete the EXPORT# items of this slot to start the export over".into(),
    }
}

/// Every segment's checkpoint of (table, slot), strongly consistent; empty before the first.
pub async fn load(catalog: &Catalog, table: &str, slot: &ScheduleSlot) -> Result<Vec<Segment>> {
    let items: Vec<HashMap<String, AttributeValue>> = catalog
        .client()
        .query()
        .table_name(catalog.table_name())
        .consistent_read(true)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(pk(table, slot)))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::aws("Query", resource(catalog, table, slot), e))?;
    items
        .iter()
        .map(|i| from_item(i).map_err(|w| unreadable(catalog, table, slot, w)))
        .collect()
}

fn from_item(item: &HashMap<String, AttributeValue>) -> std::result::Result<Segment, String> {
    let num = |k: &str| -> std::result::Result<u64, String> {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("attribute {k} is missing or not a number"))
    };
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Ok(Segment {
        segment: num("segment")? as u32,
        total: num("total")? as u32,
        next_file: num("next_file")? as u32,
        resume_at: match text("resume_at") {
            Some(t) => Some(ddbjson::item_from_json(&t).map_err(|e| format!("resume_at: {e}"))?),
            None => None,
        },
        done: item
            .get("done")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        items: num("items")?,
        bytes: num("bytes")?,
        fingerprint: text("fingerprint")
            .ok_or("attribute fingerprint is missing")?
            .parse()?,
        files: serde_json::from_str(&text("files").unwrap_or_else(|| "[]".into()))
            .map_err(|e| format!("files: {e}"))?,
        owner: text("owner"),
        lease_until: item
            .get("lease_until")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
    })
}

/// Writes the first checkpoint of every segment, unless one exists already (safe to repeat:
/// an existing checkpoint is never reset).
pub async fn create_all(
    catalog: &Catalog,
    table: &str,
    slot: &ScheduleSlot,
    total: u32,
) -> Result<()> {
    for seg in 0..total {
        let fresh = Segment::new(seg, total);
        let mut item = key(table, slot, seg);
        item.extend([
            ("kind".to_owned(), s("export_segment")),
            ("table".to_owned(), s(table)),
            ("slot".to_owned(), s(slot.to_string())),
            ("segment".to_owned(), n(seg)),
            ("total".to_owned(), n(total)),
            ("next_file".to_owned(), n(0)),
            ("done".to_owned(), AttributeValue::Bool(false)),
            ("items".to_owned(), n(0)),
            ("bytes".to_owned(), n(0)),
            ("fingerprint".to_owned(), s(fresh.fingerprint.to_string())),
            ("files".to_owned(), s("[]")),
        ]);
        let result = catalog
            .client()
            .put_item()
            .table_name(catalog.table_name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
            Err(e) => {
                return Err(Error::aws(
                    "PutItem (export checkpoint)",
                    resource(catalog, table, slot),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Takes a segment for `run_id` until `lease`. `Ok(false)`: another invocation holds it (its
/// lease has not run out), or it is done. Safe to repeat (the holder may take it again).
pub async fn claim(
    catalog: &Catalog,
    table: &str,
    slot: &ScheduleSlot,
    segment: u32,
    run_id: &str,
    now: Timestamp,
    lease: Timestamp,
) -> Result<bool> {
    let result = catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(table, slot, segment)))
        .update_expression("SET #owner = :run, #lease = :lease")
        .condition_expression(
            "attribute_exists(pk) AND #done = :no AND (attribute_not_exists(#owner) OR #owner = :run OR #lease < :now)",
        )
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_names("#done", "done")
        .expression_attribute_names("#lease", "lease_until")
        .expression_attribute_values(":run", s(run_id))
        .expression_attribute_values(":lease", n(lease.as_second()))
        .expression_attribute_values(":now", n(now.as_second()))
        .expression_attribute_values(":no", AttributeValue::Bool(false))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::aws(
            "UpdateItem (claim export segment)",
            resource(catalog, table, slot),
            e,
        )),
    }
}

/// Records a completed data file (or the segment's end): only the segment's holder may, and
/// only from the checkpoint it resumed (`previous_next_file`). Safe to repeat: writing the same
/// checkpoint again is accepted. `lease` extends the holder's lease.
pub async fn save(
    catalog: &Catalog,
    table: &str,
    slot: &ScheduleSlot,
    seg: &Segment,
    previous_next_file: u32,
    run_id: &str,
    lease: Timestamp,
) -> Result<()> {
    let files = serde_json::to_string(&seg.files).map_err(|e| Error::Local(e.to_string()))?;
    let mut req = catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(table, slot, seg.segment)))
        .condition_expression("#owner = :run AND (#next = :prev OR #next = :next)")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_names("#next", "next_file")
        .expression_attribute_names("#done", "done")
        .expression_attribute_names("#items", "items")
        .expression_attribute_names("#bytes", "bytes")
        .expression_attribute_names("#fp", "fingerprint")
        .expression_attribute_names("#files", "files")
        .expression_attribute_names("#lease", "lease_until")
        .expression_attribute_names("#resume", "resume_at")
        .expression_attribute_values(":run", s(run_id))
        .expression_attribute_values(":prev", n(previous_next_file))
        .expression_attribute_values(":next", n(seg.next_file))
        .expression_attribute_values(":done", AttributeValue::Bool(seg.done))
        .expression_attribute_values(":items", n(seg.items))
        .expression_attribute_values(":bytes", n(seg.bytes))
        .expression_attribute_values(":fp", s(seg.fingerprint.to_string()))
        .expression_attribute_values(":files", s(files))
        .expression_attribute_values(":lease", n(lease.as_second()))
        .expression_attribute_values(":now_s", s(Timestamp::now().to_string()));
    let set = "SET #next = :next, #done = :done, #items = :items, #bytes = :bytes, \
               #fp = :fp, #files = :files, #lease = :lease, updated_at = :now_s";
    req = match &seg.resume_at {
        Some(k) => {
            let text = ddbjson::item_to_json(k).map_err(|e| Error::Local(e.to_string()))?;
            req.update_expression(format!("{set}, #resume = :resume"))
                .expression_attribute_values(":resume", s(text))
        }
        None => req.update_expression(format!("{set} REMOVE #resume")),
    };
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Err(Error::Aws {
                operation: "UpdateItem (export checkpoint)",
                resource: resource(catalog, table, slot),
                code: Some("ConditionalCheckFailedException".into()),
                message: format!(
                    "segment {} is no longer this run's: another invocation took it over after the lease ran out",
                    seg.segment
                ),
                retryable: true,
                hint: "the other invocation carries the segment on".into(),
            })
        }
        Err(e) => Err(Error::aws(
            "UpdateItem (export checkpoint)",
            resource(catalog, table, slot),
            e,
        )),
    }
}

/// Extends the holder's lease on a segment while it writes a data file. `Ok(false)`: the segment
/// is no longer this run's; the file must be abandoned.
pub async fn renew(
    catalog: &Catalog,
    table: &str,
    slot: &ScheduleSlot,
    segment: u32,
    run_id: &str,
    lease: Timestamp,
) -> Result<bool> {
    let result = catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(table, slot, segment)))
        .update_expression("SET #lease = :lease")
        .condition_expression("#owner = :run")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_names("#lease", "lease_until")
        .expression_attribute_values(":run", s(run_id))
        .expression_attribute_values(":lease", n(lease.as_second()))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::aws(
            "UpdateItem (renew export segment)",
            resource(catalog, table, slot),
            e,
        )),
    }
}

/// Starts a segment over (its data files are rewritten under the same keys): for a segment one
/// of whose files no longer matches its checkpoint. Safe to repeat.
pub async fn reset(
    catalog: &Catalog,
    table: &str,
    slot: &ScheduleSlot,
    segment: u32,
    total: u32,
) -> Result<()> {
    let fresh = Segment::new(segment, total);
    catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(table, slot, segment)))
        .update_expression(
            "SET #next = :zero, #done = :no, #items = :zero, #bytes = :zero, #fp = :fp, #files = :files, #lease = :zero REMOVE #resume",
        )
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#next", "next_file")
        .expression_attribute_names("#done", "done")
        .expression_attribute_names("#items", "items")
        .expression_attribute_names("#bytes", "bytes")
        .expression_attribute_names("#fp", "fingerprint")
        .expression_attribute_names("#files", "files")
        .expression_attribute_names("#lease", "lease_until")
        .expression_attribute_names("#resume", "resume_at")
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":no", AttributeValue::Bool(false))
        .expression_attribute_values(":fp", s(fresh.fingerprint.to_string()))
        .expression_attribute_values(":files", s("[]"))
        .send()
        .await
        .map_err(|e| Error::aws("UpdateItem (reset export segment)", resource(catalog, table, slot), e))?;
    Ok(())
}

/// Pure: whether a loaded set of checkpoints is whole: every segment `0..total` once, one total.
pub fn whole(segments: &[Segment]) -> std::result::Result<u32, String> {
    let Some(total) = segments.first().map(|s| s.total) else {
        return Err("no checkpoints".into());
    };
    if segments.iter().any(|s| s.total != total) {
        return Err("the checkpoints disagree on the number of segments".into());
    }
    let mut seen: Vec<u32> = segments.iter().map(|s| s.segment).collect();
    seen.sort_unstable();
    if seen != (0..total).collect::<Vec<u32>>() {
        return Err(format!(
            "{} of {total} segment checkpoints are present",
            seen.len()
        ));
    }
    Ok(total)
}

/// Lets go of a segment so the next invocation takes it at once. Best effort: an expired lease
/// does the same a little later.
pub async fn release(
    catalog: &Catalog,
    table: &str,
    slot: &ScheduleSlot,
    segment: u32,
    run_id: &str,
) {
    let _ = catalog
        .client()
        .update_item()
        .table_name(catalog.table_name())
        .set_key(Some(key(table, slot, segment)))
        .update_expression("SET #lease = :zero")
        .condition_expression("#owner = :run")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_names("#lease", "lease_until")
        .expression_attribute_values(":run", s(run_id))
        .expression_attribute_values(":zero", n(0))
        .send()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_set_of_checkpoints_is_not_whole() {
        let all: Vec<Segment> = (0..4).map(|i| Segment::new(i, 4)).collect();
        assert_eq!(whole(&all), Ok(4));
        assert!(whole(&all[..2]).unwrap_err().contains("2 of 4"));
        assert!(whole(&[]).is_err());
        let mut odd = all.clone();
        odd[3].total = 5;
        assert!(whole(&odd).is_err());
    }
}
