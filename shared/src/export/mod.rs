//! Exports of DynamoDB tables to S3, native (`ExportTableToPointInTime`) or logical (Backstop's
//! own parallel scan), in one layout so that AWS ImportTable and Backstop's reader take both:
//!
//! ```text
//! s3://<bucket>/<prefix>/<table>/<slot>/
//!     AWSDynamoDB/<export-id>/manifest-summary.json
//!     AWSDynamoDB/<export-id>/manifest-files.json     one JSON line per data file
//!     AWSDynamoDB/<export-id>/data/<file>.json.gz      one {"Item":{…}} line per item
//!     backstop-manifest.json                           table, slot, mode, keys, indexes,
//!                                                      count, bytes, fingerprint, segments
//! ```

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::ScheduleSlot;
use crate::fingerprint::Fingerprint;
use crate::settings::ExportLocation;

pub mod checkpoint;
pub mod logical;
pub mod manifest;
pub mod native;
pub mod reader;
pub mod replica;
pub mod s3io;
pub mod verify;

/// How an export was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Made {
    Native,
    Logical,
}

impl Made {
    pub fn name(self) -> &'static str {
        match self {
            Made::Native => "native",
            Made::Logical => "logical",
        }
    }
}

/// Full, or the changes of a window since the previous export of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExportType {
    FullExport,
    IncrementalExport,
}

/// What the catalog records of one export (attribute `export` of its target item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMeta {
    pub made: Made,
    pub export_type: ExportType,
    pub export_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_arn: Option<String>,
    pub bucket: String,
    /// `<prefix>/<table>/<slot>` (no trailing slash): everything of this export is under it.
    pub root: String,
    /// The time of the data the export holds, which retention, chains, restores `--until`,
    /// freshness and reports go by (the slot, the catalog's key, only names the export).
    /// Native full exports: their ExportTime (asked of AWS, as DescribeExport reports it once
    /// finished). Native incrementals: the window's end. Logical exports: the moment their scan
    /// started, recorded before it and kept by every invocation that continues it.
    pub export_time: Timestamp,
    /// Incrementals: the window's start (the previous link's `export_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    /// Incrementals: the slot of the chain's full export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_slot: Option<String>,
    /// `…/manifest-summary.json`, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<u64>,
    /// Bytes of the data files as stored (compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// Why this export is full when an incremental might have been expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ExportMeta {
    /// What is known of an export before it is made: how, what kind, where, and of when.
    pub fn planned(
        made: Made,
        export_type: ExportType,
        bucket: &str,
        root: String,
        export_time: Timestamp,
    ) -> ExportMeta {
        ExportMeta {
            made,
            export_type,
            export_id: String::new(),
            export_arn: None,
            bucket: bucket.to_owned(),
            root,
            export_time,
            from: None,
            base_slot: None,
            manifest_key: None,
            fingerprint: None,
            item_count: None,
            stored_bytes: None,
            note: None,
        }
    }

    /// `s3://bucket/root/`: what a person pastes into a console or an `aws s3 ls`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}/", self.bucket, self.root)
    }
}

/// `<prefix>/<table>/<slot>`: the root of a table's export for a slot.
pub fn root_of(location: &ExportLocation, table: &str, slot: &ScheduleSlot) -> String {
    format!("{}/{}/{}", location.prefix, table, slot.compact())
}

/// The id of a logical export: derived from (table, slot), so a retried or continued run writes
/// the same keys and never a second copy. Shaped like AWS's (`<millis>-<8 hex>`).
pub fn logical_export_id(table: &str, slot: &ScheduleSlot) -> String {
    let h = blake3::hash(format!("backstop-logical|{table}|{slot}").as_bytes());
    format!(
        "{:014}-{}",
        slot.timestamp().as_millisecond(),
        &h.to_hex()[..8]
    )
}

/// The ClientToken of a native export: derived from (table, slot, window), so that a
/// redelivered event asks AWS for the same export and never starts a second one.
pub fn client_token(table: &str, export_time: Timestamp, from: Option<Timestamp>) -> String {
    let h = blake3::hash(
        format!(
            "backstop-native|{table}|{export_time}|{}",
            from.map(|f| f.to_string()).unwrap_or_default()
        )
        .as_bytes(),
    );
    h.to_hex()[..32].to_owned()
}

/// Key of the Backstop manifest of an export root.
pub fn backstop_manifest_key(root: &str) -> String {
    format!("{root}/backstop-manifest.json")
}

/// `<root>/AWSDynamoDB/<export-id>`.
pub fn export_dir(root: &str, export_id: &str) -> String {
    format!("{root}/AWSDynamoDB/{export_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_stable_per_table_and_slot() {
        let slot = ScheduleSlot::parse("2026-11-22T03:00:00Z").unwrap();
        let other = ScheduleSlot::parse("2026-11-29T03:00:00Z").unwrap();
        assert_eq!(
            logical_export_id("T1", &slot),
            logical_export_id("T1", &slot)
        );
        assert_ne!(
            logical_export_id("T1", &slot),
            logical_export_id("T2", &slot)
        );
        assert_ne!(
            logical_export_id("T1", &slot),
            logical_export_id("T1", &other)
        );
        assert!(logical_export_id("T1", &slot).starts_with("01795316400000-"));
        let t = slot.timestamp();
        assert_eq!(client_token("T1", t, None), client_token("T1", t, None));
        assert_ne!(client_token("T1", t, None), client_token("T1", t, Some(t)));
        assert_eq!(client_token("T1", t, None).len(), 32);
        let loc = ExportLocation {
            bucket: "b".into(),
            prefix: "backstop".into(),
        };
        assert_eq!(root_of(&loc, "T1", &slot), "backstop/T1/20261122T030000Z");
    }
}
