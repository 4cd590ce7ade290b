//! Bucket backups, the way restic backs up files: every slot's backup is a complete manifest of
//! the source bucket's current objects, but only objects whose (key, version, ETag) is not stored
//! yet are copied, server-side (CopyObject, or UploadPartCopy above the multipart threshold),
//! never through this process's memory.
//!
//! Layout in the backup bucket, under `<prefix>/<source bucket>/`:
//!
//! | key | what |
//! |---|---|
//! | `objects/<id>` | one stored copy; `id` = BLAKE3 of (key, version id, ETag), so an unchanged object has the same id in every slot and is stored once |
//! | `slots/<slot>/part-00001.jsonl.gz` … | the manifest: one JSON line per object (key, version, ETag, size, last modified, content headers, user metadata, tags, and `stored`: where its copy lives), in source listing order, one part per listing page |
//! | `slots/<slot>/checkpoint.json` | while a backup is under way: where the listing stands, parts written, counters |
//! | `slots/<slot>/manifest.json` | the summary (count, bytes, fingerprint, parts), written last: a slot is a complete backup exactly when this exists |
//!
//! A backup and a prune of one source bucket never run at the same time: each holds the
//! bucket's lock in the catalog ([`lock`]) and renews it, conditionally, before every step that
//! depends on it.

pub mod backup;
pub mod inventory;
pub mod lock;
pub mod manifest;
pub mod prune;
pub mod record;
pub mod replica;
pub mod restore;
pub mod s3;

pub use manifest::{ObjectEntry, Summary};

use crate::event::ScheduleSlot;
use crate::export::s3io::Encryption;

/// Where bucket backups live, and how they are written.
#[derive(Debug, Clone)]
pub struct Store {
    /// The backup bucket.
    pub bucket: String,
    /// Key prefix inside it (no leading or trailing '/'; may be empty).
    pub prefix: String,
    pub enc: Encryption,
}

impl Store {
    pub fn new(bucket: impl Into<String>, prefix: &str, kms_key: Option<String>) -> Store {
        Store {
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').to_owned(),
            enc: Encryption { kms_key },
        }
    }

    /// `<prefix>/<source>/`: everything kept for one source bucket.
    pub fn root(&self, source: &str) -> String {
        if self.prefix.is_empty() {
            format!("{source}/")
        } else {
            format!("{}/{source}/", self.prefix)
        }
    }

    pub fn objects_prefix(&self, source: &str) -> String {
        format!("{}objects/", self.root(source))
    }

    pub fn object_key(&self, source: &str, id: &str) -> String {
        format!("{}{id}", self.objects_prefix(source))
    }

    pub fn slots_prefix(&self, source: &str) -> String {
        format!("{}slots/", self.root(source))
    }

    pub fn slot_prefix(&self, source: &str, slot: &ScheduleSlot) -> String {
        format!("{}{}/", self.slots_prefix(source), slot.compact())
    }

    pub fn manifest_key(&self, source: &str, slot: &ScheduleSlot) -> String {
        format!("{}manifest.json", self.slot_prefix(source, slot))
    }

    pub fn checkpoint_key(&self, source: &str, slot: &ScheduleSlot) -> String {
        format!("{}checkpoint.json", self.slot_prefix(source, slot))
    }

    pub fn part_key(&self, source: &str, slot: &ScheduleSlot, part: u32) -> String {
        format!("{}part-{part:05}.jsonl.gz", self.slot_prefix(source, slot))
    }

    /// `s3://bucket/key`, for messages.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// The stored copy's id of one object version: BLAKE3 of its key, version id (`null` when the
/// bucket is not versioned) and ETag. A changed object has a new ETag (or version), so a new id;
/// an unchanged one keeps its id and is referenced, not copied again.
pub fn object_id(key: &str, version_id: &str, etag: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [key, version_id, etag] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Parses a compact slot (`20261122T020000Z`) as found in a key; only the one spelling
/// Backstop writes, so that a slot's directory is always the one its name leads back to.
pub fn parse_compact_slot(s: &str) -> Option<ScheduleSlot> {
    let ts = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", s).ok()?;
    let ts = ts.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    let slot = ScheduleSlot::new(ts);
    (slot.compact() == s).then_some(slot)
}

/// The stored id a key under `objects/` names: exactly 64 lowercase hex digits after the
/// prefix, nothing nested. Anything else under the prefix is not Backstop's: never counted as
/// stored, never swept.
pub fn stored_id<'a>(key: &'a str, objects_prefix: &str) -> Option<&'a str> {
    let id = key.strip_prefix(objects_prefix)?;
    (id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(id)
}

/// Checks a bucket name the way S3 does (3–63 of a-z, 0-9, '.', '-'; starting and ending with a
/// letter or digit), so that a typo is refused before any call.
pub fn check_bucket_name(name: &str) -> std::result::Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if (3..=63).contains(&name.len())
        && ok_chars
        && ends(name.bytes().next())
        && ends(name.bytes().last())
    {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an S3 bucket name (3 to 63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit)",
            crate::settings::truncate_for_message(name)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_by_key_version_and_etag_and_cannot_be_shifted() {
        let a = object_id("a", "v1", "e1");
        assert_eq!(a, object_id("a", "v1", "e1"));
        assert_ne!(a, object_id("a", "v2", "e1"));
        assert_ne!(a, object_id("a", "v1", "e2"));
        // Lengths are hashed too: moving a character from one part to the next changes the id.
        assert_ne!(object_id("ab", "c", "d"), object_id("a", "bc", "d"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn layout_keeps_each_source_apart_and_slots_sort_by_time() {
        let s = Store::new("backups", "/buckets/", None);
        let slot = ScheduleSlot::parse("2026-12-01T02:00:00Z").unwrap();
        assert_eq!(s.root("attachments"), "buckets/attachments/");
        assert_eq!(
            s.manifest_key("attachments", &slot),
            "buckets/attachments/slots/20261201T020000Z/manifest.json"
        );
        assert_eq!(
            s.part_key("attachments", &slot, 3),
            "buckets/attachments/slots/20261201T020000Z/part-00003.jsonl.gz"
        );
        assert_eq!(parse_compact_slot(&slot.compact()), Some(slot));
        assert_eq!(parse_compact_slot("nonsense"), None);
        assert_eq!(parse_compact_slot("20261301T020000Z"), None);
        let id = object_id("k", "v", "e");
        let p = s.objects_prefix("a");
        assert_eq!(stored_id(&format!("{p}{id}"), &p), Some(id.as_str()));
        assert_eq!(stored_id(&format!("{p}x/{id}"), &p), None);
        assert_eq!(stored_id(&format!("{p}{}", id.to_uppercase()), &p), None);
        let bare = Store::new("backups", "", None);
        assert_eq!(bare.objects_prefix("a-b"), "a-b/objects/");
    }

    #[test]
    fn bucket_names_are_checked() {
        assert!(check_bucket_name("attachments-prod.eu").is_ok());
        for bad in ["ab", "Upper", "-lead", "trail-", "has space", "x/y", ""] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
