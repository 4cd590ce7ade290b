//! Restores from bucket backups: a whole slot (or a prefix of it) into a bucket, and one object
//! (a previous version, or its copy in a slot) onto a key. Server-side copies only; an object
//! in the target is never overwritten unless asked, and then only if it is still the one seen.

use std::collections::HashMap;

use aws_sdk_s3::Client as S3;
use futures::{stream, StreamExt};
use serde::Serialize;

use super::backup::{read_manifest, with_retries};
use super::s3::{self as s3x, Condition, CopyHeaders};
use super::{ObjectEntry, Store};
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;

/// How restores copy.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    pub multipart_threshold: i64,
    pub part_size: i64,
    pub parallel: usize,
}

/// What a bucket restore did (or would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketRestoreReport {
    pub source_bucket: String,
    pub slot: String,
    pub target: String,
    pub prefix: Option<String>,
    pub dry_run: bool,
    pub objects: u64,
    pub bytes: u64,
    /// Of those, objects that were in the target and were overwritten (`--overwrite`).
    pub overwritten: u64,
    /// Every restored object was read back (HeadObject): size, content type, user metadata.
    pub checked: u64,
}

/// Restores slot `slot` of `source`'s backups (entries under `prefix` only, when given) into
/// `target`. Refused, before anything is written, when the slot is not complete or its manifest
/// does not match its summary, or when a key exists in the target and `overwrite` is off.
#[allow(clippy::too_many_arguments)]
pub async fn restore_bucket(
    s3: &S3,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
    target: &str,
    prefix: Option<&str>,
    overwrite: bool,
    dry_run: bool,
    opts: &CopyOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<BucketRestoreReport> {
    let (_summary, entries) = read_manifest(s3, store, source, slot).await?;
    let entries: Vec<ObjectEntry> = entries
        .into_iter()
        .filter(|e| prefix.is_none_or(|p| e.key.starts_with(p)))
        .collect();
    let existing: HashMap<String, String> =
        crate::export::s3io::list_with_etags(s3, target, prefix.unwrap_or(""))
            .await?
            .into_iter()
            .map(|(k, _, etag)| (k, etag))
            .collect();
    let conflicts: Vec<&str> = entries
        .iter()
        .filter(|e| existing.contains_key(&e.key))
        .map(|e| e.key.as_str())
        .collect();
    if !conflicts.is_empty() && !overwrite {
        let shown: Vec<String> = conflicts
            .iter()
            .take(10)
            .map(|k| format!("{k:?}"))
            .collect();
        return Err(Error::refused(
            "restore bucket",
            format!(
                "{} of the {} objects to restore already exist in bucket {target} ({}{})",
                conflicts.len(),
                entries.len(),
                shown.join(", "),
                if conflicts.len() > 10 { ", …" } else { "" }
            ),
            "restore into an empty bucket or another --prefix, or pass --overwrite to replace them (each only if unchanged since this check)",
        ));
    }
    let mut report = BucketRestoreReport {
        source_bucket: source.to_owned(),
        slot: slot.to_string(),
        target: target.to_owned(),
        prefix: prefix.map(str::to_owned),
        dry_run,
        objects: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size.max(0) as u64).sum(),
        overwritten: conflicts.len() as u64,
        checked: 0,
    };
    if dry_run {
        return Ok(report);
    }
    let total = entries.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let results: Vec<Result<()>> = stream::iter(entries.iter())
        .map(|e| {
            let existing = &existing;
            let done = &done;
            async move {
                let condition = match existing.get(&e.key) {
                    Some(etag) => Condition::Matches(etag.as_str()),
                    None => Condition::Absent,
                };
                let stored = store.object_key(source, &e.stored);
                with_retries(|| {
                    s3x::copy(
                        s3,
                        (&store.bucket, &stored, None),
                        None,
                        e.size,
                        (target, &e.key),
                        None,
                        CopyHeaders::Set(e),
                        condition,
                        opts.multipart_threshold,
                        opts.part_size,
                    )
                })
                .await?;
                check_restored(s3, target, e).await?;
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(n, total);
                Ok(())
            }
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;
    let failed: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        return Err(Error::Aws {
            operation: "restore bucket",
            resource: format!("bucket {target}"),
            code: first.code().map(str::to_owned),
            message: format!(
                "{} of {} objects were not restored; the first: {first}",
                failed.len(),
                total
            ),
            retryable: first.is_retryable(),
            hint: "run the restore again with --overwrite to finish it (objects restored already are replaced only if unchanged)".into(),
        });
    }
    report.checked = total;
    Ok(report)
}

/// Reads a restored object's headers back and compares them with its manifest entry.
async fn check_restored(s3: &S3, bucket: &str, e: &ObjectEntry) -> Result<()> {
    let got = s3x::read_headers(s3, bucket, &e.key, "null").await?;
    let mismatch = match &got {
        None => Some("it is not there".to_owned()),
        Some(h) if h.size != e.size => Some(format!("{} bytes, the backup {}", h.size, e.size)),
        Some(h) if h.metadata != e.metadata => Some("its user metadata differs".to_owned()),
        Some(h) if h.tags != e.tags => Some("its tags differ".to_owned()),
        Some(h) if e.content_type.is_some() && h.content_type != e.content_type => {
            Some("its content type differs".to_owned())
        }
        Some(_) => None,
    };
    match mismatch {
        None => Ok(()),
        Some(why) => Err(Error::Aws {
            operation: "HeadObject",
            resource: format!("s3://{bucket}/{}", e.key),
            code: None,
            message: format!("the restored object does not match the backup: {why}"),
            retryable: true,
            hint: "run the restore again with --overwrite".into(),
        }),
    }
}

/// Where a single object is restored from.
#[derive(Debug, Clone)]
pub enum ObjectSource {
    /// A previous version in the bucket itself.
    Version(String),
    /// Its copy in a slot's backup.
    Slot(ScheduleSlot),
}

/// What an object restore did (or would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectRestoreReport {
    pub bucket: String,
    pub key: String,
    pub to: String,
    pub from: String,
    pub size: i64,
    pub dry_run: bool,
    /// The target key held an object, which stays as a noncurrent version (versioned bucket)
    /// or was replaced (`--overwrite`).
    pub replaced_current: bool,
    /// The object that was current had a version id: it stays as a noncurrent version.
    pub versioned: bool,
}

/// Restores one object of `bucket` onto `to` (default: its own key). From a version: the
/// version is copied onto the key and becomes current; every version stays (in a versioned
/// bucket). From a slot: the stored copy with the manifest's headers and tags. In a bucket
/// without versioning an existing target is replaced only with `overwrite`, and only if it is
/// still the object seen.
#[allow(clippy::too_many_arguments)]
pub async fn restore_object(
    s3: &S3,
    store: Option<&Store>,
    bucket: &str,
    key: &str,
    from: &ObjectSource,
    to: Option<&str>,
    overwrite: bool,
    dry_run: bool,
    opts: &CopyOptions,
) -> Result<ObjectRestoreReport> {
    let to = to.unwrap_or(key);
    // What a copy onto `to` would do to the object there: when that object has a version id,
    // it stays as a noncurrent version whatever the bucket's versioning is now (enabled keeps
    // it; suspended writes a `null` version beside it). Only a `null` (unversioned) current
    // object is replaced.
    let current = s3x::head_version(s3, bucket, to).await?;
    let versioned = current
        .as_ref()
        .is_some_and(|(_, _, v)| v.as_deref().is_some_and(|v| v != "null"));
    let current = current.map(|(size, etag, _)| (size, etag));
    if current.is_some() && !versioned && !overwrite {
        return Err(Error::refused(
            "restore object",
            format!("s3://{bucket}/{to} exists without a version id (bucket {bucket} has no versioning, or had none when it was written), so restoring onto it would lose the object there"),
            "pass --overwrite to replace it, or --to another key",
        ));
    }
    let condition = match (&current, versioned) {
        (Some((_, etag)), false) => Condition::Matches(etag),
        (Some(_), true) => Condition::None,
        // Nothing there at the check: nothing may be overwritten that appears meanwhile.
        (None, _) => Condition::Absent,
    };
    // The copy's source, and the headers and tags the restored object gets.
    let (src_bucket, src_key, src_version, from_text, mut entry) = match from {
        ObjectSource::Version(v) => {
            let h = s3x::read_headers(s3, bucket, key, v)
                .await?
                .ok_or_else(|| {
                    Error::refused(
                        "restore object",
                        format!("s3://{bucket}/{key} has no version {v}"),
                        "list its versions with `aws s3api list-object-versions --prefix`",
                    )
                })?;
            let entry = ObjectEntry {
                key: key.to_owned(),
                version_id: v.clone(),
                etag: h.etag,
                size: h.size,
                last_modified: String::new(),
                content_type: h.content_type,
                cache_control: h.cache_control,
                content_disposition: h.content_disposition,
                content_encoding: h.content_encoding,
                content_language: h.content_language,
                metadata: h.metadata,
                tags: h.tags,
                stored: String::new(),
            };
            (
                bucket.to_owned(),
                key.to_owned(),
                Some(v.clone()),
                format!("version {v}"),
                entry,
            )
        }
        ObjectSource::Slot(slot) => {
            let store = store.ok_or_else(|| {
                Error::setting(
                    "BACKSTOP_BUCKET_BACKUP_BUCKET",
                    "restoring from a slot needs the backup bucket",
                )
            })?;
            let (_, entries) = read_manifest(s3, store, bucket, slot).await?;
            let entry = entries.into_iter().find(|e| e.key == key).ok_or_else(|| {
                Error::refused(
                    "restore object",
                    format!("the backup of bucket {bucket} for slot {slot} has no key {key:?}"),
                    "check the key, or pick another slot",
                )
            })?;
            (
                store.bucket.clone(),
                store.object_key(bucket, &entry.stored),
                None,
                format!("slot {slot}"),
                entry,
            )
        }
    };
    entry.key = to.to_owned();
    let report = ObjectRestoreReport {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        to: to.to_owned(),
        from: from_text,
        size: entry.size,
        dry_run,
        replaced_current: current.is_some(),
        versioned,
    };
    if dry_run {
        return Ok(report);
    }
    with_retries(|| {
        s3x::copy(
            s3,
            (&src_bucket, &src_key, src_version.as_deref()),
            None,
            entry.size,
            (bucket, to),
            None,
            CopyHeaders::Set(&entry),
            condition,
            opts.multipart_threshold,
            opts.part_size,
        )
    })
    .await?;
    check_restored(s3, bucket, &entry).await?;
    Ok(report)
}
