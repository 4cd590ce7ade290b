//! Restore drills: the newest complete backup of a table is restored into a drill table, the
//! restored table is scanned with the fingerprint and compared with the strongest evidence
//! there is, and the drill table is deleted.
//!
//! A restore can outlast an invocation, so a drill is a small state machine kept in the catalog
//! (one item per table, `DRILL#<table>` / `LATEST`, plus a history item per finished drill):
//!
//! - `started`: the drill is recorded (its table name, the backup); the restore may or may not
//!   have been asked for;
//! - `active`: the restore was accepted; the drill table exists (creating or ready);
//! - `verified`: the drill table was compared; the level is recorded;
//! - `cleaned`: the drill table is gone (or kept on request): the drill is over.
//!
//! Every step is safe to repeat: a run that dies between two steps leaves the drill in the
//! state of the last step that finished, and the next run takes it from there. The level a
//! drill reaches:
//!
//! - **proven**: the restored table's count and fingerprint equal an export's taken at the
//!   backup's moment (a logical export of the same slot, or a native export whose export time
//!   is the backup's creation time);
//! - **consistent**: no such export, but the key schema, indexes and billing mode match the
//!   source's at backup time and the item count matches the one recorded for the backup;
//! - **failed**: anything else, or a restore that failed; the detail says what differs.
//!
//! A drill table carries the tags the database drills' copies carry (`backstop:drill=true`,
//! `backstop:drill-of=<source table>`): a restore cannot tag, so the drill tags the table right
//! after the restore is accepted, and again once it is ACTIVE (AWS refuses to tag a table for a
//! while after it appears). A drill verifies and deletes only a table it made, or one found under
//! its name that DynamoDB says was restored from the drill's backup (`RestoreSummary`'s
//! `SourceBackupArn`, set by AWS: the drill's own restore, whose answer or tagging was lost). The
//! drill tags are never proof of that (the drill table's name is predictable, and anyone allowed
//! to create tables can create one under it carrying them): any other table under the name fails
//! the drill and is left alone. The sweep deletes only drill-prefix tables that carry
//! `backstop:drill=true`.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, TableStatus};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::Clients;
use crate::catalog::{Catalog, TargetRecord, TargetStatus};
use crate::db::drill::{TAG_DRILL, TAG_DRILL_OF};
use crate::error::{Error, Result};
use crate::export::native::{self, NativeState};
use crate::export::{ExportMeta, ExportType, Made};
use crate::fingerprint::Fingerprint;
use crate::report::clip;
use crate::settings::ExportLocation;

/// Where a drill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillState {
    Started,
    Active,
    Verified,
    Cleaned,
}

impl DrillState {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillState::Started => "started",
            DrillState::Active => "active",
            DrillState::Verified => "verified",
            DrillState::Cleaned => "cleaned",
        }
    }
}

/// How much a drill proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillLevel {
    Proven,
    Consistent,
    Failed,
}

impl DrillLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillLevel::Proven => "proven",
            DrillLevel::Consistent => "consistent",
            DrillLevel::Failed => "failed",
        }
    }

    /// The `RestoreDrillLevel` metric: 2 proven, 1 consistent, 0 failed.
    pub fn metric(self) -> f64 {
        match self {
            DrillLevel::Proven => 2.0,
            DrillLevel::Consistent => 1.0,
            DrillLevel::Failed => 0.0,
        }
    }
}

impl fmt::Display for DrillLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One drill as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    pub table: String,
    /// The table the backup is restored into (the drill prefix, the table, the start time).
    pub drill_table: String,
    pub backup_arn: String,
    /// The slot of the backup's catalog record.
    pub backup_slot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_created_at: Option<Timestamp>,
    pub state: DrillState,
    pub started_at: Timestamp,
    pub run_id: String,
    /// Leave the drill table in place at the end (`backstop drill --keep`).
    #[serde(default)]
    pub keep: bool,
    /// Seconds from the start to the drill table being ready (the restore's RTO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_s: Option<f64>,
    /// Seconds the scan and comparison took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<DrillLevel>,
    /// What the comparison found (counts, fingerprints, what differs), or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaned_at: Option<Timestamp>,
    /// The native export of the source table at the backup's creation time that the drill
    /// asked AWS for (when PITR allows): the exact evidence. Its manifest key and count are
    /// filled in when it completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<ExportMeta>,
    /// Set once the witness export is finished (or given up on, with the reason in `detail`).
    #[serde(default)]
    pub witness_done: bool,
    /// The restore into `drill_table` was accepted for this drill (or, for a table, the name was
    /// found taken by a table DynamoDB says was restored from its backup; a database drill
    /// takes a taken name on by its tags), so the drill deletes it
    /// without reading its tags again (a database group that is not available may refuse that).
    /// A table drill with it unset (one started before tables were tagged) deletes its table
    /// only when [`DrillCtx`] finds it is the drill's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub made: bool,
}

/// What a run's report says of a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub drill_table: String,
    pub backup_arn: String,
    pub state: DrillState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<DrillLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_s: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl DrillReport {
    pub fn of(d: &Drill) -> DrillReport {
        DrillReport {
            drill_table: d.drill_table.clone(),
            backup_arn: d.backup_arn.clone(),
            state: d.state,
            level: d.level,
            restore_s: d.restore_s,
            verify_s: d.verify_s,
            detail: d.detail.clone(),
        }
    }

    /// One line for messages.
    pub fn line(&self) -> String {
        match self.level {
            Some(level) => format!(
                "{} (restore {}, verify {}; state {}): {}",
                level.as_str().to_uppercase(),
                secs(self.restore_s),
                secs(self.verify_s),
                self.state.as_str(),
                self.detail
            ),
            None => format!(
                "under way (state {}, table {}){}",
                self.state.as_str(),
                self.drill_table,
                if self.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", self.detail)
                }
            ),
        }
    }
}

fn secs(s: Option<f64>) -> String {
    match s {
        Some(s) if s >= 60.0 => format!("{} m {} s", (s / 60.0).floor(), (s % 60.0).round()),
        Some(s) => format!("{s:.1} s"),
        None => "n/a".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions.

/// What to do about a table's drills now.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// A drill is open (not cleaned): take it on from its state.
    Continue(Box<Drill>),
    /// No drill is open and the last one is older than `every` (or there was none).
    New,
    /// The last drill finished recently enough; the next is due at this time.
    NotYet(Timestamp),
}

/// Pure: whether a drill is due for a table whose latest drill is `last`.
pub fn due(last: Option<&Drill>, now: Timestamp, every: SignedDuration) -> Due {
    match last {
        None => Due::New,
        Some(d) if d.state != DrillState::Cleaned => Due::Continue(Box::new(d.clone())),
        Some(d) => {
            let next = d.started_at.checked_add(every).unwrap_or(Timestamp::MAX);
            if next <= now {
                Due::New
            } else {
                Due::NotYet(next)
            }
        }
    }
}

/// Pure: the drill table's name: `<prefix><table>-<yyyymmddThhmmssZ>`, shortened (with a hash
/// of the full name) to DynamoDB's 255 characters.
pub fn drill_table_name(prefix: &str, table: &str, at: Timestamp) -> String {
    let stamp = at.strftime("%Y%m%dT%H%M%SZ").to_string();
    let full = format!("{prefix}{table}-{stamp}");
    if full.len() <= 255 {
        return full;
    }
    let hash = blake3::hash(full.as_bytes()).to_hex();
    let room = 255 - prefix.len() - stamp.len() - 1 - 9;
    // Table names are ASCII, so any byte index is a character boundary.
    format!("{prefix}{}-{}-{stamp}", &table[..room], &hash[..8])
}

/// The shortest drill prefix Backstop takes (`BACKSTOP_DRILL_TABLE_PREFIX`). Drills restore
/// into tables named with it, the sweep deletes old ones that also carry the drill tag, and no
/// job backs up a table named with it: a short prefix, one ordinary names may begin with ("dr",
/// "test-"), would put ordinary tables out of every backup and in the sweep's view.
pub const MIN_PREFIX_LEN: usize = 8;
/// The longest: a drill table's name is the prefix, the source's name (cut to fit), a hash and
/// the time, in DynamoDB's 255 characters (the template's `DrillTablePrefix` takes 100 too).
pub const MAX_PREFIX_LEN: usize = 100;

/// Pure: whether `prefix` may name drill tables, beside the catalog table and the prefix of the
/// tables the restore function makes. Otherwise a setting error naming
/// `BACKSTOP_DRILL_TABLE_PREFIX`, what is wrong and what to do.
pub fn check_table_prefix(prefix: &str, catalog_table: &str, restore_prefix: &str) -> Result<()> {
    use crate::settings::{
        DEFAULT_DRILL_TABLE_PREFIX, ENV_CATALOG_TABLE, ENV_DRILL_TABLE_PREFIX, ENV_RESTORE_PREFIX,
    };
    let shown = clip(prefix, 120);
    let count = prefix.chars().count();
    let rule = if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&count) {
        format!(
            "must be {MIN_PREFIX_LEN} to {MAX_PREFIX_LEN} characters, got {shown:?} ({count}): no job backs up a table whose name starts with it and the drill sweep deletes such tables (those carrying the drill tag), so a short one could take in ordinary tables; set a prefix only drill tables use, such as the default {DEFAULT_DRILL_TABLE_PREFIX}"
        )
    } else if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        format!(
            "{shown:?} may hold only letters, digits, '_', '-' and '.' (DynamoDB's table names); set a prefix such as the default {DEFAULT_DRILL_TABLE_PREFIX}"
        )
    } else if catalog_table.starts_with(prefix) {
        format!(
            "{shown:?} begins the name of the catalog table {catalog_table} ({ENV_CATALOG_TABLE}): Backstop would take its own catalog for a drill table; set a prefix the catalog's name does not start with, such as the default {DEFAULT_DRILL_TABLE_PREFIX}"
        )
    } else if restore_prefix.starts_with(prefix) || prefix.starts_with(restore_prefix) {
        format!(
            "{shown:?} overlaps the restore prefix {restore_prefix:?} ({ENV_RESTORE_PREFIX}): tables restored for people would count as drill tables, never backed up; give the two prefixes different beginnings"
        )
    } else {
        return Ok(());
    };
    Err(Error::setting(ENV_DRILL_TABLE_PREFIX, rule))
}

/// Pure: the newest complete backup of a table among its snapshot records.
pub fn newest_backup(records: &[TargetRecord]) -> Option<&TargetRecord> {
    records
        .iter()
        .filter(|r| r.status == TargetStatus::Done && r.backup_arn.is_some())
        .max_by(|a, b| a.slot.cmp(&b.slot))
}

/// The export a drill is compared with, and whether it is of the backup's exact moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Witness {
    pub slot: String,
    pub uri: String,
    pub fingerprint: Fingerprint,
    /// A native export at the backup's creation time: any difference is the restore's fault.
    /// Otherwise a logical export of the same slot, taken minutes from the backup.
    pub exact: bool,
}

/// Pure: the strongest export evidence for the backup in `backup` among the table's export
/// records: a native full export at the backup's creation time (exact), else a finished export
/// of the same slot with a fingerprint (recorded when written, or by its first verification).
pub fn witness(backup: &TargetRecord, exports: &[TargetRecord]) -> Option<Witness> {
    let created: Option<Timestamp> = backup
        .backup_created_at
        .as_deref()
        .and_then(|t| t.parse().ok());
    let usable = exports
        .iter()
        .filter(|r| r.status == TargetStatus::Done)
        .filter_map(|r| {
            let m = r.export.as_ref()?;
            if m.export_type != ExportType::FullExport {
                return None;
            }
            let fingerprint = m
                .fingerprint
                .or_else(|| r.verification.as_ref().and_then(|v| v.fingerprint))?;
            Some((r, m, fingerprint))
        });
    let mut same_slot = None;
    for (r, m, fingerprint) in usable {
        let exact = m.made == Made::Native && Some(m.export_time) == created;
        let w = Witness {
            slot: r.slot.clone(),
            uri: m.uri(),
            fingerprint,
            exact,
        };
        if exact {
            return Some(w);
        }
        if r.slot == backup.slot {
            same_slot = Some(w);
        }
    }
    same_slot
}

/// Pure: the level a drill reached, and what was found, from the restored table's fingerprint
/// and shape against the backup's record and the witness export.
pub fn judge(
    restored: &Fingerprint,
    restored_shape: &serde_json::Value,
    backup: &TargetRecord,
    witness: Option<&Witness>,
) -> (DrillLevel, String) {
    let mut notes = Vec::new();
    if let Some(w) = witness {
        if w.fingerprint.same_content(restored) {
            return (
                DrillLevel::Proven,
                format!(
                    "{} items; count and fingerprint equal the export {} ({}){}",
                    restored.items,
                    w.slot,
                    w.uri,
                    if w.exact {
                        " taken at the backup's moment"
                    } else {
                        " of the same slot"
                    }
                ),
            );
        }
        if w.exact {
            return (
                DrillLevel::Failed,
                format!(
                    "the restored table ({} items, fingerprint {restored}) differs from the export taken at the backup's moment ({} items, fingerprint {}, {})",
                    restored.items,
                    w.fingerprint.items,
                    w.fingerprint,
                    w.uri
                ),
            );
        }
        notes.push(format!(
            "the export of the same slot differs ({} items there, {} restored): the table changed between the backup and the export, so the drill falls back to the recorded count and shape",
            w.fingerprint.items, restored.items
        ));
    }
    let Some(count) = backup.item_count else {
        notes.push("no item count was recorded for the backup".into());
        return (DrillLevel::Failed, notes.join("; "));
    };
    if count < 0 || restored.items != count as u64 {
        notes.push(format!(
            "the restored table holds {} items, the backup's record says {count}",
            restored.items
        ));
        return (DrillLevel::Failed, notes.join("; "));
    }
    match &backup.table_shape {
        None => {
            notes.push("no table shape was recorded for the backup".into());
            return (DrillLevel::Failed, notes.join("; "));
        }
        Some(shape) => {
            let differs = shape_differences(shape, restored_shape);
            if !differs.is_empty() {
                notes.push(format!(
                    "the restored table's {} differ(s) from the source's at backup time",
                    differs.join(", ")
                ));
                return (DrillLevel::Failed, notes.join("; "));
            }
        }
    }
    notes.insert(
        0,
        format!("{count} items as recorded; keys, indexes and billing mode as at backup time"),
    );
    (DrillLevel::Consistent, notes.join("; "))
}

/// Pure: the parts of two table shapes ([`crate::export::logical::schema_of`]) that differ.
/// Index lists compare in any order.
pub fn shape_differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<&'static str> {
    let sorted = |v: Option<&serde_json::Value>| {
        let mut list: Vec<String> = v
            .and_then(|v| v.as_array())
            .map(|l| l.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default();
        list.sort();
        list
    };
    let mut out = Vec::new();
    if a.get("KeySchema") != b.get("KeySchema") {
        out.push("key schema");
    }
    // DescribeTable leaves BillingModeSummary out for many provisioned tables.
    let billing = |v: &serde_json::Value| {
        v.get("BillingMode")
            .and_then(|m| m.as_str())
            .unwrap_or("PROVISIONED")
            .to_owned()
    };
    if billing(a) != billing(b) {
        out.push("billing mode");
    }
    for (field, label) in [
        ("AttributeDefinitions", "attribute definitions"),
        ("GlobalSecondaryIndexes", "global secondary indexes"),
        ("LocalSecondaryIndexes", "local secondary indexes"),
    ] {
        if sorted(a.get(field)) != sorted(b.get(field)) {
            out.push(label);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The catalog's drill items.

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn drill_key(table: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(format!("DRILL#{table}"))),
        ("sk".to_owned(), s(sk)),
    ])
}

const LATEST: &str = "LATEST";

fn resource(catalog: &Catalog) -> String {
    format!("catalog table {}", catalog.table_name())
}

fn is_condition_failed<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// The table's latest drill, if it ever had one.
pub async fn latest(catalog: &Catalog, table: &str) -> Result<Option<Drill>> {
    let out = catalog
        .client()
        .get_item()
        .table_name(catalog.table_name())
        .set_key(Some(drill_key(table, LATEST)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| Error::aws("GetItem (drill)", resource(catalog), e))?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let text = item
        .get("drill")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt(catalog, table, "attribute drill is missing".into()))?;
    serde_json::from_str(text).map(Some).map_err(|e| {
        corrupt(
            catalog,
            table,
            format!("attribute drill is not a drill: {e}"),
        )
    })
}

fn corrupt(catalog: &Catalog, table: &str, message: String) -> Error {
    Error::Aws {
        operation: "read drill record",
        resource: format!("{} item DRILL#{table}", resource(catalog)),
        code: None,
        message,
        retryable: false,
        hint: "the item was not written by Backstop; delete it (a drill table it names may need deleting by hand)".into(),
    }
}

/// Writes `drill` as the table's latest, if the one there is in `expected` state with the same
/// start (or, for `None`, there is none or it is cleaned). `false`: someone else moved it.
pub(crate) async fn put_latest(
    catalog: &Catalog,
    drill: &Drill,
    expected: Option<(&Drill, DrillState)>,
) -> Result<bool> {
    let text = serde_json::to_string(drill).map_err(|e| Error::Local(e.to_string()))?;
    let mut item = drill_key(&drill.table, LATEST);
    item.insert("kind".into(), s("drill"));
    item.insert("state".into(), s(drill.state.as_str()));
    item.insert("drill_table".into(), s(&drill.drill_table));
    item.insert("started_at".into(), s(drill.started_at.to_string()));
    item.insert("updated_at".into(), s(Timestamp::now().to_string()));
    item.insert("drill".into(), s(text));
    let mut put = catalog
        .client()
        .put_item()
        .table_name(catalog.table_name())
        .set_item(Some(item))
        .expression_attribute_names("#state", "state");
    put = match expected {
        None => put
            .condition_expression("attribute_not_exists(pk) OR #state = :cleaned")
            .expression_attribute_values(":cleaned", s(DrillState::Cleaned.as_str())),
        Some((before, state)) => put
            .condition_expression("#state = :state AND started_at = :started")
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":started", s(before.started_at.to_string())),
    };
    match put.send().await {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failed(&e) => Ok(false),
        Err(e) => Err(Error::aws("PutItem (drill)", resource(catalog), e)),
    }
}

/// Keeps a finished drill as history (`DRILL#<table>` / `AT#<start>`). Safe to repeat.
pub(crate) async fn put_history(catalog: &Catalog, drill: &Drill) -> Result<()> {
    let text = serde_json::to_string(drill).map_err(|e| Error::Local(e.to_string()))?;
    let mut item = drill_key(&drill.table, &format!("AT#{}", drill.started_at));
    item.insert("kind".into(), s("drill"));
    item.insert("state".into(), s(drill.state.as_str()));
    item.insert("drill".into(), s(text));
    catalog
        .client()
        .put_item()
        .table_name(catalog.table_name())
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| Error::aws("PutItem (drill history)", resource(catalog), e))?;
    Ok(())
}

/// Every finished drill the catalog keeps as history (`DRILL#<table>` / `AT#<start>`), of every
/// table. Reads the whole catalog (a filtered scan); an item that is not a drill is skipped.
pub async fn history(catalog: &Catalog) -> Result<Vec<Drill>> {
    let mut pages = catalog
        .client()
        .scan()
        .table_name(catalog.table_name())
        .filter_expression("#kind = :drill AND begins_with(sk, :at)")
        .expression_attribute_names("#kind", "kind")
        .expression_attribute_values(":drill", s("drill"))
        .expression_attribute_values(":at", s("AT#"))
        .into_paginator()
        .items()
        .send();
    let mut out = Vec::new();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| Error::aws("Scan (drill history)", resource(catalog), e))?;
        if let Some(d) = item
            .get("drill")
            .and_then(|v| v.as_s().ok())
            .and_then(|t| serde_json::from_str::<Drill>(t).ok())
        {
            out.push(d);
        }
    }
    Ok(out)
}

/// The drill tables every open (not cleaned) drill names, across all tables: the sweep leaves
/// these alone. Reads the whole catalog (a filtered scan, every page): a partial view would let
/// the sweep delete a table a drill still works on.
pub async fn open_drill_tables(catalog: &Catalog) -> Result<Vec<String>> {
    let mut pages = catalog
        .client()
        .scan()
        .table_name(catalog.table_name())
        .filter_expression("#kind = :drill AND sk = :latest AND #state <> :cleaned")
        .expression_attribute_names("#kind", "kind")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":drill", s("drill"))
        .expression_attribute_values(":latest", s(LATEST))
        .expression_attribute_values(":cleaned", s(DrillState::Cleaned.as_str()))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send();
    let mut out = Vec::new();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| Error::aws("Scan (open drills)", resource(catalog), e))?;
        if let Some(t) = item.get("drill_table").and_then(|v| v.as_s().ok()) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The steps.

/// Whose a table under a drill's name is.
#[derive(Debug, Clone, PartialEq)]
enum Ownership {
    /// The drill's: it deletes the table at its end.
    Ours,
    /// Someone else's (why): the drill fails and leaves it alone.
    Theirs(String),
}

/// What a sweep of drill tables did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swept {
    /// The drill tables deleted.
    pub deleted: Vec<String>,
    /// Tables with the drill prefix, older than the age and named by no open drill, that the
    /// sweep left alone, each with why: they lack the drill tag, or their tags (or description)
    /// could not be read. No job backs them up either (the prefix is Backstop's own), so the
    /// validate run lists them among its excluded tables.
    pub left_alone: Vec<crate::selection::Excluded>,
}

/// What a drill works with.
pub struct DrillCtx<'a> {
    pub clients: &'a Clients,
    pub catalog: &'a Catalog,
    pub prefix: &'a str,
    pub run_id: &'a str,
    /// Where the drill's own export of the backup's moment goes (`<prefix>/~drills/…`), and its
    /// KMS key; `None`: no such export, the drill compares with what the catalog holds.
    pub witness_exports: Option<(&'a ExportLocation, Option<&'a str>)>,
}

/// The key prefix of a drill's witness export: `<prefix>/~drills/<table>/<stamp>`. `~` cannot
/// be in a table name, so it never meets a table's own exports.
pub fn witness_root(location: &ExportLocation, drill: &Drill) -> String {
    format!(
        "{}/~drills/{}/{}",
        location.prefix,
        drill.table,
        drill.started_at.strftime("%Y%m%dT%H%M%SZ")
    )
}

impl DrillCtx<'_> {
    /// Starts a drill of `table` from its newest complete backup: records it (state
    /// `started`); the restore is asked for by the next [`DrillCtx::step`]. `None` when another
    /// run opened one first.
    pub async fn begin(&self, table: &str, keep: bool, now: Timestamp) -> Result<Option<Drill>> {
        let backups = self
            .catalog
            .list_targets(crate::settings::JobKind::Snapshot, Some(table))
            .await?;
        let backup = newest_backup(&backups).ok_or_else(|| Error::Aws {
            operation: "drill",
            resource: format!("table {table}"),
            code: None,
            message: "the catalog holds no complete backup of this table to drill".into(),
            retryable: false,
            hint: "run the snapshot job first".into(),
        })?;
        let drill_table = drill_table_name(self.prefix, table, now);
        if !drill_table.starts_with(self.prefix) {
            return Err(Error::Local(format!(
                "drill table name {drill_table} lacks the drill prefix"
            )));
        }
        let drill = Drill {
            table: table.to_owned(),
            drill_table,
            backup_arn: backup.backup_arn.clone().unwrap_or_default(),
            backup_slot: backup.slot.clone(),
            backup_created_at: backup
                .backup_created_at
                .as_deref()
                .and_then(|t| t.parse().ok()),
            state: DrillState::Started,
            started_at: now,
            run_id: self.run_id.to_owned(),
            keep,
            restore_s: None,
            verify_s: None,
            level: None,
            detail: String::new(),
            cleaned_at: None,
            witness: None,
            witness_done: false,
            made: false,
        };
        if put_latest(self.catalog, &drill, None).await? {
            info!(drill_table = %drill.drill_table, backup = %drill.backup_arn, "drill started");
            Ok(Some(drill))
        } else {
            Ok(None)
        }
    }

    /// Moves `drill` one state on and records it; returns the drill as it now stands. A drill
    /// whose table is still being restored comes back unchanged (state `active`). Errors that a
    /// retry may cure come back as errors, the drill's state unchanged; a restore that cannot
    /// succeed makes the drill `verified` with level `failed`.
    pub async fn step(&self, drill: &Drill) -> Result<Drill> {
        let mut next = drill.clone();
        next.run_id = self.run_id.to_owned();
        match drill.state {
            DrillState::Started => {
                if next.witness.is_none() && !next.witness_done {
                    match self.start_witness(drill).await {
                        Ok(Some(meta)) => next.witness = Some(meta),
                        Ok(None) => next.witness_done = true,
                        Err(e) if e.is_retryable() => return Err(e),
                        Err(e) => {
                            next.witness_done = true;
                            note(
                                &mut next.detail,
                                format!("no export of the backup's moment: {e}"),
                            );
                        }
                    }
                }
                match self.restore(drill).await {
                    Ok(Ownership::Ours) => {
                        next.state = DrillState::Active;
                        next.made = true;
                    }
                    Ok(Ownership::Theirs(why)) => {
                        next.state = DrillState::Verified;
                        next.level = Some(DrillLevel::Failed);
                        note(
                            &mut next.detail,
                            format!(
                                "the drill table's name {} is taken by a table that is not this drill's ({why}): left alone, not deleted",
                                drill.drill_table
                            ),
                        );
                    }
                    Err(e) if !e.is_retryable() => {
                        next.state = DrillState::Verified;
                        next.level = Some(DrillLevel::Failed);
                        note(&mut next.detail, format!("the restore failed: {e}"));
                    }
                    Err(e) => return Err(e),
                }
            }
            DrillState::Active => match self.table_status(&drill.drill_table).await? {
                Some(TableStatus::Active) => {
                    if next.restore_s.is_none() {
                        // Tagged again now that AWS takes it (the first time, right after the
                        // restore, may have been refused): a drill lost from here on leaves a
                        // table the sweep knows.
                        if drill.made {
                            match self.tag_named(drill).await {
                                Ok(()) => {}
                                Err(e) if e.is_retryable() => return Err(e),
                                Err(e) => note(
                                    &mut next.detail,
                                    format!(
                                        "the drill table could not be tagged ({e}); the drill still deletes it, but were the drill lost the sweep would leave it alone"
                                    ),
                                ),
                            }
                        }
                        next.restore_s = Some(seconds_since(drill.started_at));
                    }
                    if !next.witness_done && !self.follow_witness(&mut next).await? {
                        // The export of the backup's moment is still running in AWS.
                        if next != *drill {
                            self.record(drill, &next).await?;
                        }
                        return Ok(next);
                    }
                    let t = Instant::now();
                    let (level, detail) = self.verify(&next).await?;
                    next.verify_s = Some(t.elapsed().as_secs_f64());
                    next.level = Some(level);
                    let earlier = std::mem::take(&mut next.detail);
                    next.detail = detail;
                    if !earlier.is_empty() {
                        note(&mut next.detail, earlier);
                    }
                    next.state = DrillState::Verified;
                }
                Some(TableStatus::Creating) | Some(TableStatus::Updating) => return Ok(next),
                None => {
                    // Gone before it was verified (deleted by hand, or a restore AWS gave up on).
                    next.state = DrillState::Verified;
                    next.level = Some(DrillLevel::Failed);
                    next.detail = format!(
                        "the drill table {} disappeared before it was verified",
                        drill.drill_table
                    );
                }
                Some(other) => {
                    next.state = DrillState::Verified;
                    next.level = Some(DrillLevel::Failed);
                    next.detail = format!(
                        "the drill table {} is {} instead of becoming ACTIVE",
                        drill.drill_table,
                        other.as_str()
                    );
                }
            },
            DrillState::Verified => {
                if !drill.keep {
                    // Deleted when this drill made it, or when it is found to be the drill's;
                    // a table someone else put under the name is left to them.
                    let ours = drill.made
                        || match self.ownership(drill).await? {
                            None => false,
                            Some(Ownership::Ours) => true,
                            Some(Ownership::Theirs(why)) => {
                                // Said once: a drill failed for the taken name says it already.
                                if !next.detail.contains(&why) {
                                    note(
                                        &mut next.detail,
                                        format!(
                                            "{} is not this drill's ({why}): left alone, not deleted",
                                            drill.drill_table
                                        ),
                                    );
                                }
                                false
                            }
                        };
                    if ours {
                        self.delete_table(&drill.drill_table).await?;
                    }
                }
                next.state = DrillState::Cleaned;
                next.cleaned_at = Some(Timestamp::now());
                put_history(self.catalog, &next).await?;
            }
            DrillState::Cleaned => return Ok(next),
        }
        self.record(drill, &next).await?;
        info!(state = next.state.as_str(), level = ?next.level, "drill step");
        Ok(next)
    }

    /// Writes `next` over `drill` in the catalog, if nobody moved it meanwhile.
    async fn record(&self, drill: &Drill, next: &Drill) -> Result<()> {
        if !put_latest(self.catalog, next, Some((drill, drill.state))).await? {
            return Err(Error::Aws {
                operation: "PutItem (drill)",
                resource: resource(self.catalog),
                code: None,
                message: format!(
                    "the drill of {} moved on in another run while this one worked on it",
                    drill.table
                ),
                retryable: true,
                hint: "the next run takes the drill from where the other run left it".into(),
            });
        }
        Ok(())
    }

    /// Asks AWS for a native export of the source table at the backup's creation time, when
    /// exports are configured, PITR is on and the backup's time is known. `None`: not possible
    /// (said why in the log); an error AWS gives for the request (a time outside the PITR
    /// window) comes back as a non-retryable error, and the drill goes on without.
    async fn start_witness(&self, drill: &Drill) -> Result<Option<ExportMeta>> {
        let Some((location, kms)) = self.witness_exports else {
            return Ok(None);
        };
        let Some(created) = drill.backup_created_at else {
            return Ok(None);
        };
        let pitr = self
            .clients
            .dynamodb
            .describe_continuous_backups()
            .table_name(&drill.table)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "DescribeContinuousBackups",
                    format!("table {}", drill.table),
                    e,
                )
            })?;
        let on = pitr
            .continuous_backups_description
            .and_then(|d| d.point_in_time_recovery_description)
            .and_then(|p| p.point_in_time_recovery_status)
            == Some(aws_sdk_dynamodb::types::PointInTimeRecoveryStatus::Enabled);
        if !on {
            info!("PITR off: no export of the backup's moment");
            return Ok(None);
        }
        let table_arn = self
            .clients
            .dynamodb
            .describe_table()
            .table_name(&drill.table)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeTable", format!("table {}", drill.table), e))?
            .table
            .and_then(|t| t.table_arn)
            .unwrap_or_default();
        let mut meta = ExportMeta::planned(
            Made::Native,
            ExportType::FullExport,
            &location.bucket,
            witness_root(location, drill),
            created,
        );
        meta.note = Some(format!("restore drill of backup {}", drill.backup_arn));
        let arn = native::start(
            self.clients,
            &table_arn,
            &drill.table,
            &meta,
            kms,
            // Per drill: a retried step asks for the same export; another drill of the same
            // backup (its own prefix) for its own.
            Some(&format!("drill|{}|{}", drill.backup_arn, drill.started_at)),
        )
        .await?;
        meta.export_id = arn.rsplit('/').next().unwrap_or(&arn).to_owned();
        meta.export_arn = Some(arn);
        info!(export = %meta.uri(), "asked for the export of the backup's moment");
        Ok(Some(meta))
    }

    /// Where the witness export stands: `true` when the drill can be verified (the export is
    /// complete, or failed and given up on), `false` while AWS still runs it.
    async fn follow_witness(&self, next: &mut Drill) -> Result<bool> {
        let Some(meta) = next.witness.clone() else {
            next.witness_done = true;
            return Ok(true);
        };
        match native::check(self.clients, &next.table, &meta).await {
            Ok(NativeState::Completed(done)) => {
                next.witness = Some(*done);
                next.witness_done = true;
                Ok(true)
            }
            Ok(NativeState::Running) => Ok(false),
            Ok(NativeState::Failed { reason }) => {
                next.witness_done = true;
                note(
                    &mut next.detail,
                    format!("the export of the backup's moment failed: {reason}"),
                );
                Ok(true)
            }
            Err(e) if e.is_retryable() => Ok(false),
            Err(e) => {
                next.witness_done = true;
                note(
                    &mut next.detail,
                    format!("the export of the backup's moment is unusable: {e}"),
                );
                Ok(true)
            }
        }
    }

    /// Steps `drill` until it is cleaned or `until` passes while its table is still being
    /// restored (polling every `poll`). A failure on the way still cleans the drill table up
    /// when it can.
    pub async fn drive(
        &self,
        drill: Drill,
        until: Timestamp,
        poll: std::time::Duration,
        mut on_step: impl FnMut(&Drill),
    ) -> Result<Drill> {
        let mut drill = drill;
        loop {
            let before = drill.state;
            let next = self.step(&drill).await?;
            on_step(&next);
            let moved = next.state != before;
            drill = next;
            if drill.state == DrillState::Cleaned {
                return Ok(drill);
            }
            if !moved {
                if Timestamp::now() >= until {
                    return Ok(drill);
                }
                tokio::time::sleep(poll).await;
            }
        }
    }

    /// Restores the backup into the drill table and tags it. A name already taken (an earlier
    /// attempt's restore, its answer lost, or a table of someone else's) is the drill's only
    /// when [`DrillCtx::ownership`] says so.
    async fn restore(&self, drill: &Drill) -> Result<Ownership> {
        if self.table_status(&drill.drill_table).await?.is_none() {
            let result = self
                .clients
                .dynamodb
                .restore_table_from_backup()
                .target_table_name(&drill.drill_table)
                .backup_arn(&drill.backup_arn)
                .send()
                .await;
            match result {
                Ok(out) => {
                    match out.table_description.and_then(|t| t.table_arn) {
                        Some(arn) => self.tag_best_effort(drill, &arn).await,
                        None => warn!(
                            drill_table = %drill.drill_table,
                            "the restore's answer names no table ARN: tagged once ACTIVE"
                        ),
                    }
                    return Ok(Ownership::Ours);
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_table_already_exists_exception()) => {}
                Err(e) => {
                    return Err(Error::aws(
                        "RestoreTableFromBackup",
                        format!("backup {} into {}", drill.backup_arn, drill.drill_table),
                        e,
                    ))
                }
            }
        }
        match self.ownership(drill).await? {
            Some(own) => Ok(own),
            None => Err(Error::Aws {
                operation: "DescribeTable",
                resource: format!("table {}", drill.drill_table),
                code: None,
                message: "the drill table was there a moment ago and is gone".into(),
                retryable: true,
                hint: "the next step restores again".into(),
            }),
        }
    }

    /// Whose the table under the drill's name is; `None` when there is none. The drill's only
    /// when DynamoDB says it was restored from the drill's backup (`RestoreSummary`'s
    /// `SourceBackupArn`, which AWS sets and no caller can write): the drill's own restore,
    /// whose answer or tagging was lost (the name holds the drill's start to the second); such a
    /// table is tagged now. Tags never make a table the drill's: anyone allowed to create tables
    /// can create one under the drill's predictable name carrying them, and the drill would then
    /// verify (and delete) a table it did not restore.
    async fn ownership(&self, drill: &Drill) -> Result<Option<Ownership>> {
        let table = match self
            .clients
            .dynamodb
            .describe_table()
            .table_name(&drill.drill_table)
            .send()
            .await
        {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => {
                return Err(Error::aws(
                    "DescribeTable",
                    format!("table {}", drill.drill_table),
                    e,
                ))
            }
        };
        let Some(table) = table else {
            return Ok(None);
        };
        let source = table
            .restore_summary()
            .and_then(|r| r.source_backup_arn())
            .filter(|b| !b.is_empty());
        if !drill.backup_arn.is_empty() && source == Some(drill.backup_arn.as_str()) {
            match table.table_arn() {
                Some(arn) => self.tag_best_effort(drill, arn).await,
                None => warn!(
                    drill_table = %drill.drill_table,
                    "the description names no table ARN: not tagged now"
                ),
            }
            return Ok(Some(Ownership::Ours));
        }
        let mut why = match source {
            Some(b) => format!(
                "DynamoDB says it was restored from backup {b}, not from this drill's backup {}",
                drill.backup_arn
            ),
            None => format!(
                "DynamoDB does not say it was restored from this drill's backup {}",
                drill.backup_arn
            ),
        };
        // Read only to say so: tags are not proof.
        if let Some(arn) = table.table_arn() {
            if let Ok(tags) = self.tags_of(&drill.drill_table, arn).await {
                let drill_tags: Vec<String> = tags
                    .iter()
                    .filter(|(k, _)| k == TAG_DRILL || k == TAG_DRILL_OF)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if !drill_tags.is_empty() {
                    why.push_str(&format!(
                        "; its tags {} do not make it the drill's: anyone may tag a table",
                        drill_tags.join(", ")
                    ));
                }
            }
        }
        Ok(Some(Ownership::Theirs(why)))
    }

    /// A table's tags, every page.
    async fn tags_of(&self, table: &str, arn: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .clients
                .dynamodb
                .list_tags_of_resource()
                .resource_arn(arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| Error::aws("ListTagsOfResource", format!("table {table}"), e))?;
            out.extend(
                page.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned())),
            );
            match page.next_token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Tags the drill table (`backstop:drill=true`, `backstop:drill-of=<source>`). Safe to
    /// repeat.
    async fn tag(&self, drill: &Drill, arn: &str) -> Result<()> {
        let tag = |k: &str, v: &str| {
            aws_sdk_dynamodb::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::Local(format!("drill tag {k}: {e}")))
        };
        self.clients
            .dynamodb
            .tag_resource()
            .resource_arn(arn)
            .tags(tag(TAG_DRILL, "true")?)
            .tags(tag(TAG_DRILL_OF, &drill.table)?)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "TagResource",
                    format!("drill table {}", drill.drill_table),
                    e,
                )
            })?;
        Ok(())
    }

    /// Tags the drill table right after its restore: a table AWS is still making may refuse
    /// (ResourceNotFound for a while), and the drill tags it again once it is ACTIVE.
    async fn tag_best_effort(&self, drill: &Drill, arn: &str) {
        if let Err(e) = self.tag(drill, arn).await {
            info!(drill_table = %drill.drill_table, error = %e, "not tagged yet: tagged once ACTIVE");
        }
    }

    /// Tags the drill table, its ARN read by name.
    async fn tag_named(&self, drill: &Drill) -> Result<()> {
        let arn = self
            .clients
            .dynamodb
            .describe_table()
            .table_name(&drill.drill_table)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeTable", format!("table {}", drill.drill_table), e))?
            .table
            .and_then(|t| t.table_arn)
            .ok_or_else(|| Error::Aws {
                operation: "DescribeTable",
                resource: format!("table {}", drill.drill_table),
                code: None,
                message: "the answer carried no table ARN".into(),
                retryable: true,
                hint: "a retry may succeed".into(),
            })?;
        self.tag(drill, &arn).await
    }

    /// The table's status, `None` when it does not exist.
    async fn table_status(&self, table: &str) -> Result<Option<TableStatus>> {
        crate::restore::table_status(&self.clients.dynamodb, table).await
    }

    async fn verify(&self, drill: &Drill) -> Result<(DrillLevel, String)> {
        let restored =
            crate::export::logical::fingerprint_table(&self.clients.dynamodb, &drill.drill_table)
                .await?;
        let described = self
            .clients
            .dynamodb
            .describe_table()
            .table_name(&drill.drill_table)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeTable", format!("table {}", drill.drill_table), e))?;
        let shape = described
            .table
            .as_ref()
            .map(crate::export::logical::schema_of)
            .unwrap_or_default();
        let backups = self
            .catalog
            .list_targets(crate::settings::JobKind::Snapshot, Some(&drill.table))
            .await?;
        let Some(backup) = backups
            .iter()
            .find(|r| r.backup_arn.as_deref() == Some(drill.backup_arn.as_str()))
        else {
            return Ok((
                DrillLevel::Failed,
                format!(
                    "the backup's catalog record ({}) is gone; nothing to compare with",
                    drill.backup_slot
                ),
            ));
        };
        let exports = self
            .catalog
            .list_targets(crate::settings::JobKind::Export, Some(&drill.table))
            .await?;
        let own = match drill.witness.as_ref().filter(|m| m.manifest_key.is_some()) {
            Some(m) => {
                let key = m.manifest_key.as_deref().unwrap_or_default();
                let read =
                    crate::export::reader::read_export(&self.clients.s3, &m.bucket, key, |_| {})
                        .await?;
                Some(Witness {
                    slot: format!("at {}", m.export_time),
                    uri: m.uri(),
                    fingerprint: read.fingerprint,
                    exact: true,
                })
            }
            None => None,
        };
        let witness = own.or_else(|| witness(backup, &exports));
        Ok(judge(&restored, &shape, backup, witness.as_ref()))
    }

    async fn delete_table(&self, table: &str) -> Result<()> {
        if !table.starts_with(self.prefix) {
            return Err(Error::Local(format!(
                "refusing to delete {table}: it lacks the drill prefix {}",
                self.prefix
            )));
        }
        match self
            .clients
            .dynamodb
            .delete_table()
            .table_name(table)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::aws(
                "DeleteTable (drill table)",
                format!("table {table}"),
                e,
            )),
        }
    }

    /// Deletes drill tables created more than `age` ago that no open drill names: what a
    /// crashed run, or a drill record deleted by hand, left behind. A drill table is one whose
    /// name has the prefix and that carries `backstop:drill=true`; a table with the prefix
    /// alone, or whose tags cannot be read, is left alone and named in [`Swept::left_alone`]
    /// (and the log, as a warning).
    pub async fn sweep(&self, open: &[String], age: SignedDuration) -> Result<Swept> {
        let now = Timestamp::now();
        let mut swept = Swept::default();
        for table in crate::selection::list_tables(&self.clients.dynamodb).await? {
            if !table.starts_with(self.prefix) || open.contains(&table) {
                continue;
            }
            let mut leave = |why: String| {
                warn!(table = %table, why = %why, "sweep: left alone");
                swept.left_alone.push(crate::selection::Excluded {
                    table: clip(&table, 255),
                    reason: why,
                });
            };
            let described = match self
                .clients
                .dynamodb
                .describe_table()
                .table_name(&table)
                .send()
                .await
            {
                Ok(out) => out.table,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    continue
                }
                Err(e) => {
                    leave(format!(
                        "it has the drill prefix and could not be described ({}): the drill sweep left it alone",
                        Error::aws("DescribeTable", format!("table {table}"), e)
                    ));
                    continue;
                }
            };
            let Some(described) = described else { continue };
            if described.table_status == Some(TableStatus::Deleting) {
                continue;
            }
            let created = described
                .creation_date_time
                .and_then(|t| Timestamp::from_second(t.secs()).ok());
            let Some(created) = created else { continue };
            if now.duration_since(created) < age {
                continue;
            }
            let Some(arn) = described.table_arn.as_deref() else {
                leave(
                    "it has the drill prefix and its description names no ARN, so its tags cannot be read: the drill sweep left it alone".into(),
                );
                continue;
            };
            match self.tags_of(&table, arn).await {
                Ok(tags) if tags.iter().any(|(k, v)| k == TAG_DRILL && v == "true") => {
                    self.delete_table(&table).await?;
                    info!(table = %table, "sweep: deleted a drill table left behind");
                    swept.deleted.push(clip(&table, 255));
                }
                Ok(_) => leave(format!(
                    "it has the drill prefix but not the tag {TAG_DRILL}=true every drill table carries: the drill sweep left it alone, not deleted; no job backs up a table with this prefix: rename it, or delete it by hand if it is a drill's"
                )),
                Err(e) => leave(format!(
                    "it has the drill prefix and its tags could not be read ({e}): the drill sweep left it alone"
                )),
            }
        }
        Ok(swept)
    }
}

/// Adds a note to a drill's detail.
pub(crate) fn note(detail: &mut String, text: String) {
    if !detail.is_empty() {
        detail.push_str("; ");
    }
    detail.push_str(&text);
}

pub(crate) fn seconds_since(t: Timestamp) -> f64 {
    Timestamp::now().duration_since(t).as_secs_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprinter;
    use crate::settings::JobKind;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn drill(state: DrillState, started: &str) -> Drill {
        Drill {
            table: "T".into(),
            drill_table: "backstop-drill-T-x".into(),
            backup_arn: "arn".into(),
            backup_slot: "2026-11-01T00:00:00Z".into(),
            backup_created_at: None,
            state,
            started_at: t(started),
            run_id: "r".into(),
            keep: false,
            restore_s: None,
            verify_s: None,
            level: None,
            detail: String::new(),
            cleaned_at: None,
            witness: None,
            witness_done: false,
            made: false,
        }
    }

    #[test]
    fn a_drill_is_due_after_every_and_an_open_one_is_continued() {
        let every = SignedDuration::from_hours(24 * 7);
        let now = t("2026-11-20T00:00:00Z");
        assert_eq!(due(None, now, every), Due::New);
        let recent = drill(DrillState::Cleaned, "2026-11-15T00:00:00Z");
        assert_eq!(
            due(Some(&recent), now, every),
            Due::NotYet(t("2026-11-22T00:00:00Z"))
        );
        let old = drill(DrillState::Cleaned, "2026-11-13T00:00:00Z");
        assert_eq!(due(Some(&old), now, every), Due::New);
        let open = drill(DrillState::Active, "2026-11-01T00:00:00Z");
        assert_eq!(
            due(Some(&open), now, every),
            Due::Continue(Box::new(open.clone()))
        );
    }

    #[test]
    fn drill_table_names_keep_the_prefix_and_fit() {
        let at = t("2026-11-20T01:02:03Z");
        assert_eq!(
            drill_table_name("backstop-drill-", "Sales", at),
            "backstop-drill-Sales-20261120T010203Z"
        );
        let long = "a".repeat(255);
        let name = drill_table_name("backstop-drill-", &long, at);
        assert_eq!(name.len(), 255);
        assert!(name.starts_with("backstop-drill-aaa") && name.ends_with("-20261120T010203Z"));
        assert_ne!(
            name,
            drill_table_name("backstop-drill-", &"a".repeat(254), at)
        );
    }

    #[test]
    fn a_drill_prefix_is_long_enough_plain_and_clear_of_the_catalog_and_restores() {
        let ok = |p: &str| check_table_prefix(p, "backstop-catalog", "restored-");
        assert!(ok("backstop-drill-").is_ok());
        assert!(ok("drill-01").is_ok());
        for short in ["", "bd-", "drill-0"] {
            let e = ok(short).unwrap_err().to_string();
            assert!(
                e.contains("BACKSTOP_DRILL_TABLE_PREFIX")
                    && e.contains("must be 8 to 100 characters")
                    && e.contains("backstop-drill-"),
                "{e}"
            );
        }
        assert!(ok(&"d".repeat(101)).is_err());
        let e = ok("backstop drill ").unwrap_err().to_string();
        assert!(e.contains("only letters, digits"), "{e}");
        // A prefix the catalog's name starts with would make the catalog a drill table.
        let e = ok("backstop-").unwrap_err().to_string();
        assert!(e.contains("catalog table backstop-catalog"), "{e}");
        // Either prefix starting the other: restored tables would look like drill tables.
        let e = ok("restored-drill-").unwrap_err().to_string();
        assert!(e.contains("BACKSTOP_RESTORE_PREFIX"), "{e}");
        assert!(check_table_prefix("drills-x", "cat", "drills-x-restored-").is_err());
    }

    fn fp(n: usize) -> Fingerprint {
        let mut f = Fingerprinter::default();
        for i in 0..n {
            let item = HashMap::from([("id".to_owned(), AttributeValue::S(format!("{i}")))]);
            f.add(&item).unwrap();
        }
        f.fingerprint
    }

    fn shape() -> serde_json::Value {
        json!({"KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
               "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
               "GlobalSecondaryIndexes": [], "LocalSecondaryIndexes": [],
               "BillingMode": "PAY_PER_REQUEST"})
    }

    fn backup(count: i64) -> TargetRecord {
        TargetRecord {
            job: JobKind::Snapshot,
            table: "T".into(),
            slot: "2026-11-01T00:00:00Z".into(),
            status: TargetStatus::Done,
            run_id: "r".into(),
            attempts: 1,
            backup_arn: Some("arn".into()),
            backup_name: None,
            backup_created_at: Some("2026-11-01T00:00:05Z".into()),
            size_bytes: None,
            item_count: Some(count),
            table_shape: Some(shape()),
            table_settings: None,
            error: None,
            claimed_at: None,
            updated_at: None,
            legal_hold: false,
            legal_hold_unreadable: None,
            completed_at: None,
            deleted_at: None,
            lease_until: None,
            export: None,
            verification: None,
        }
    }

    fn witness_of(n: usize, exact: bool) -> Witness {
        Witness {
            slot: "2026-11-01T00:00:00Z".into(),
            uri: "s3://b/x".into(),
            fingerprint: fp(n),
            exact,
        }
    }

    #[test]
    fn judge_proves_consists_or_fails() {
        let (level, detail) = judge(&fp(5), &shape(), &backup(5), Some(&witness_of(5, false)));
        assert_eq!(level, DrillLevel::Proven, "{detail}");
        // An exact witness that differs: the restore is wrong.
        let (level, detail) = judge(&fp(4), &shape(), &backup(5), Some(&witness_of(5, true)));
        assert_eq!(level, DrillLevel::Failed);
        assert!(
            detail.contains("4 items") && detail.contains("5 items"),
            "{detail}"
        );
        // A same-slot witness that differs: fall back to count and shape.
        let (level, detail) = judge(&fp(5), &shape(), &backup(5), Some(&witness_of(6, false)));
        assert_eq!(level, DrillLevel::Consistent, "{detail}");
        assert!(
            detail.contains("changed between the backup and the export"),
            "{detail}"
        );
        let (level, _) = judge(&fp(5), &shape(), &backup(5), None);
        assert_eq!(level, DrillLevel::Consistent);
        let (level, detail) = judge(&fp(4), &shape(), &backup(5), None);
        assert_eq!(level, DrillLevel::Failed);
        assert!(
            detail.contains("4 items") && detail.contains("says 5"),
            "{detail}"
        );
        let mut other = shape();
        other["BillingMode"] = json!("PROVISIONED");
        let (level, detail) = judge(&fp(5), &other, &backup(5), None);
        assert_eq!(level, DrillLevel::Failed);
        assert!(detail.contains("billing mode"), "{detail}");
        let mut unrecorded = backup(5);
        unrecorded.item_count = None;
        assert_eq!(
            judge(&fp(5), &shape(), &unrecorded, None).0,
            DrillLevel::Failed
        );
    }

    #[test]
    fn index_order_does_not_matter_but_content_does() {
        let mut a = shape();
        a["GlobalSecondaryIndexes"] = json!([{"IndexName": "a"}, {"IndexName": "b"}]);
        let mut b = shape();
        b["GlobalSecondaryIndexes"] = json!([{"IndexName": "b"}, {"IndexName": "a"}]);
        assert!(shape_differences(&a, &b).is_empty());
        b["GlobalSecondaryIndexes"] = json!([{"IndexName": "b"}]);
        assert_eq!(shape_differences(&a, &b), vec!["global secondary indexes"]);
        // No billing mode reported reads as provisioned.
        let mut p = shape();
        p["BillingMode"] = json!("PROVISIONED");
        let mut absent = shape();
        absent["BillingMode"] = serde_json::Value::Null;
        assert!(shape_differences(&p, &absent).is_empty());
        assert_eq!(shape_differences(&shape(), &absent), vec!["billing mode"]);
    }
}
