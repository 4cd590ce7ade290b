//! A bucket backup's manifest: one JSON line per object, gzip, in parts; and its summary.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

/// One object as it was in the source bucket, and where its copy lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    /// `null` when the source bucket was never versioned.
    pub version_id: String,
    /// As S3 gives it, without quotes.
    pub etag: String,
    pub size: i64,
    /// RFC 3339.
    pub last_modified: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// User metadata (`x-amz-meta-*`), names as S3 returns them (lower case).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The stored copy's id (its key is `objects/<id>` under the source's root).
    pub stored: String,
}

/// A complete backup's summary (`manifest.json`), written after every part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub format: u32,
    pub source_bucket: String,
    pub slot: String,
    pub started_at: String,
    pub finished_at: String,
    pub objects: u64,
    pub bytes: u64,
    /// Copied for this slot (new or changed objects) and referenced from earlier slots.
    pub copied: u64,
    pub copied_bytes: u64,
    pub referenced: u64,
    /// Parts `part-00001` to `part-<parts>`.
    pub parts: u32,
    /// BLAKE3 over the parts' digests (each BLAKE3 of its lines), in order: what a replica or a
    /// read-back compares.
    pub fingerprint: String,
    /// The source's versioning as seen at the start (`Enabled`, `Suspended`, `off`).
    pub versioning: String,
    /// Objects listed that were gone before they could be copied (deleted during the backup):
    /// left out of the manifest.
    #[serde(default)]
    pub vanished: u64,
    /// Objects in an archive tier (Glacier Flexible Retrieval, Deep Archive, Intelligent-Tiering's
    /// archive tiers) that S3 cannot copy until they are restored: left out, with a warning.
    #[serde(default)]
    pub archived: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The time of the slot's data (when its listing began, or its S3 Inventory report's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_time: Option<String>,
    /// The token the catalog records for this slot: a summary without it is not Backstop's
    /// (see [`super::record`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

pub const FORMAT: u32 = 1;

/// One part's bytes: gzip of the entries' JSON lines. Returns the bytes and the uncompressed
/// lines (for the fingerprint).
pub fn encode_part(entries: &[ObjectEntry]) -> (Vec<u8>, Vec<u8>) {
    let mut lines = Vec::new();
    for e in entries {
        // Serializing a struct of strings and maps cannot fail.
        serde_json::to_writer(&mut lines, e).expect("an entry serializes");
        lines.push(b'\n');
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&lines).expect("writing to memory");
    (gz.finish().expect("writing to memory"), lines)
}

/// Reads a part back. `what` names it in errors (its S3 URL).
pub fn decode_part(bytes: &[u8], what: &str) -> Result<(Vec<ObjectEntry>, Vec<u8>), String> {
    let mut lines = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut lines)
        .map_err(|e| format!("{what} is not gzip: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in lines.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry: ObjectEntry = serde_json::from_slice(line)
            .map_err(|e| format!("{what} line {}: not a manifest entry ({e})", i + 1))?;
        out.push(entry);
    }
    Ok((out, lines))
}

/// One part's digest: BLAKE3 of its lines. A manifest's fingerprint is BLAKE3 over its parts'
/// digests in order ([`fingerprint_of_parts`]), so that a checkpoint can carry it forward.
pub fn part_digest(lines: &[u8]) -> String {
    blake3::hash(lines).to_hex().to_string()
}

/// The manifest's fingerprint from its parts' digests, in order.
pub fn fingerprint_of_parts<'a>(digests: impl IntoIterator<Item = &'a String>) -> String {
    let mut h = blake3::Hasher::new();
    for d in digests {
        h.update(d.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> ObjectEntry {
        ObjectEntry {
            key: key.into(),
            version_id: "null".into(),
            etag: "abc".into(),
            size: 3,
            last_modified: "2026-12-01T00:00:00Z".into(),
            content_type: Some("text/plain".into()),
            cache_control: None,
            content_disposition: None,
            content_encoding: None,
            content_language: None,
            metadata: BTreeMap::from([("owner".into(), "ops".into())]),
            tags: BTreeMap::new(),
            stored: "id".into(),
        }
    }

    #[test]
    fn parts_round_trip_keys_with_newlines_and_unicode() {
        let entries = vec![entry("a b/ü.txt"), entry("line\nbreak"), entry("")];
        let (gz, lines) = encode_part(&entries);
        let (back, lines_back) = decode_part(&gz, "part").unwrap();
        assert_eq!(back, entries);
        assert_eq!(lines, lines_back);
    }

    #[test]
    fn a_damaged_part_is_an_error_naming_it() {
        let err = decode_part(b"not gzip", "s3://b/part-00001").unwrap_err();
        assert!(err.contains("s3://b/part-00001"), "{err}");
        let (gz, _) = {
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(b"{\"key\":1}\n").unwrap();
            (gz.finish().unwrap(), ())
        };
        let err = decode_part(&gz, "p").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn fingerprint_depends_on_every_part_and_their_order() {
        let a = part_digest(b"a\n");
        let b = part_digest(b"b\n");
        let ab = fingerprint_of_parts([&a, &b]);
        assert_ne!(ab, fingerprint_of_parts([&b, &a]));
        assert_ne!(ab, fingerprint_of_parts([&a]));
    }
}
