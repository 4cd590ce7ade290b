//! One source bucket's backup for one slot: guards, listing, server-side copies of what is not
//! stored yet, manifest parts, checkpoint, summary.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, NoncurrentVersionTransition,
    TransitionStorageClass, VersioningConfiguration,
};
use aws_sdk_s3::Client as S3;
use futures::{stream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::inventory;
use super::lock::{self, Holder};
use super::manifest::{self, ObjectEntry, Summary};
use super::record::{self, SlotStatus};
use super::s3::{self as s3x, Condition, CopyHeaders};
use super::{object_id, Store};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;
use crate::export::s3io;

/// How a backup copies and what its guards expect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupOptions {
    /// Objects above this many bytes are copied in parts (UploadPartCopy); S3 allows one
    /// CopyObject up to 5 GiB.
    pub multipart_threshold: i64,
    pub part_size: i64,
    /// Versions listed per ListObjectVersions page (one manifest part each), 1 to 1,000.
    pub page_size: i32,
    /// Copies under way at once.
    pub parallel: usize,
    pub guards: GuardPolicy,
    /// Read the newest S3 Inventory report instead of listing (very large buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<super::inventory::InventorySource>,
    /// How far in the past a slot may lie when nothing of it exists yet (see
    /// [`crate::event::check_backfill`]).
    #[serde(skip)]
    pub backfill_window: jiff::SignedDuration,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            multipart_threshold: s3x::MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
            page_size: 1000,
            parallel: 16,
            guards: GuardPolicy::default(),
            inventory: None,
            backfill_window: crate::settings::DEFAULT_BACKFILL_WINDOW,
        }
    }
}

/// What each source bucket should have: versioning on, and a lifecycle rule for noncurrent
/// versions (the runbooks: to Glacier after 90 days, deleted after 7 years).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardPolicy {
    /// Turn versioning on, and put Backstop's noncurrent-version rule, where they are off or
    /// drifted. Off by default: a guard reports, it does not change a bucket unless asked.
    pub enforce: bool,
    pub noncurrent_transition_days: Option<i32>,
    pub noncurrent_expiration_days: Option<i32>,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            enforce: false,
            noncurrent_transition_days: Some(90),
            noncurrent_expiration_days: Some(2555),
        }
    }
}

/// The id of the lifecycle rule Backstop puts when asked to enforce.
pub const LIFECYCLE_RULE_ID: &str = "backstop-noncurrent-versions";

/// How long the bucket lock holds before its holder renews it (at every listing page).
pub const LOCK_LEASE: Duration = Duration::from_secs(5 * 60);

/// What one call did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BackupOutcome {
    /// The slot's backup is complete; `already`: it was before this call (a redelivery).
    Done { summary: Summary, already: bool },
    /// Stopped at the time limit with a checkpoint; the next call goes on from there.
    Continues { progress: Checkpoint },
    /// Another backup or a prune of this bucket holds its lock.
    Held {
        holder: String,
        doing: String,
        until: Timestamp,
    },
}

/// Where an unfinished backup stands (`checkpoint.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub started_at: String,
    pub versioning: String,
    /// Where the listing goes on (ListObjectVersions' markers); `None` before the first page.
    pub key_marker: Option<String>,
    pub version_marker: Option<String>,
    pub parts: u32,
    /// Each written part's digest, in order (the fingerprint is made from them).
    pub digests: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    pub referenced: u64,
    pub vanished: u64,
    #[serde(default)]
    pub archived: u64,
    pub warnings: Vec<String>,
    /// Set when the backup reads an S3 Inventory report instead of listing the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryCursor>,
    /// The token the catalog records for this slot: a checkpoint without it is not resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The time of the slot's data: the listing's start, or the inventory report's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_time: Option<String>,
}

/// Where a backup stands in the inventory report it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryCursor {
    pub report: inventory::Report,
    /// The data file and the row in it (of the current versions) the next page starts at.
    pub file: usize,
    pub row: usize,
}

/// Backs up `source` for `slot` into `store`. Safe to call again at any point: a complete slot
/// answers `Done { already: true }`; an unfinished one goes on from its checkpoint; copies
/// already stored are not made again. `work_until`: stop with a checkpoint once past it;
/// `deadline`: the invocation's end, which the lock's lease never outlives.
#[allow(clippy::too_many_arguments)]
pub async fn backup(
    s3: &S3,
    catalog: &Catalog,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
    opts: &BackupOptions,
    work_until: Option<Timestamp>,
    deadline: Option<Timestamp>,
) -> Result<BackupOutcome> {
    if let Some(summary) = proven_summary(s3, catalog, store, source, slot, &mut vec![]).await? {
        return Ok(BackupOutcome::Done {
            summary,
            already: true,
        });
    }
    let holder = uuid::Uuid::new_v4().to_string();
    let lease = |now: Timestamp| {
        let until = now + LOCK_LEASE;
        deadline.map_or(until, |d| until.min(d))
    };
    let now = Timestamp::now();
    if let Some(Holder {
        holder,
        doing,
        until,
    }) = lock::acquire(
        catalog,
        source,
        &holder,
        &format!("backup {slot}"),
        now,
        lease(now),
    )
    .await?
    {
        return Ok(BackupOutcome::Held {
            holder,
            doing,
            until,
        });
    }
    let result = backup_locked(
        s3, catalog, store, source, slot, opts, work_until, &holder, &lease,
    )
    .await;
    // Released whatever happened; a lock that cannot be released runs out by its lease.
    if let Err(e) = lock::release(catalog, source, &holder).await {
        warn!(bucket = source, error = %e, "releasing the bucket lock");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn backup_locked(
    s3: &S3,
    catalog: &Catalog,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
    opts: &BackupOptions,
    work_until: Option<Timestamp>,
    holder: &str,
    lease: &dyn Fn(Timestamp) -> Timestamp,
) -> Result<BackupOutcome> {
    // Completed by another call between the first look and the lock. Files in the backup
    // bucket that are not this slot's own (see `record`) are reported and left alone.
    let mut ignored = Vec::new();
    if let Some(summary) = proven_summary(s3, catalog, store, source, slot, &mut ignored).await? {
        return Ok(BackupOutcome::Done {
            summary,
            already: true,
        });
    }
    let own = record::get(catalog, source, slot).await?;
    let checkpoint_key = store.checkpoint_key(source, slot);
    let resumed = match s3io::get(s3, &store.bucket, &checkpoint_key).await? {
        None => None,
        Some(bytes) => match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(cp)
                if own
                    .as_ref()
                    .is_some_and(|r| r.status == SlotStatus::Started)
                    && record::proves(own.as_ref(), cp.token.as_deref()) =>
            {
                // A listing begun longer ago than the backfill window is not carried on: the
                // rest of it would be read today and recorded at the old time. Measured from
                // when the backup began (an inventory report's own time may be older).
                let began = cp
                    .started_at
                    .parse::<Timestamp>()
                    .ok()
                    .or(own.as_ref().map(|r| r.data_time));
                match began {
                    Some(t) if Timestamp::now().duration_since(t) > opts.backfill_window => {
                        ignored.push(format!(
                            "the backup of slot {slot} began at {t}, more than BACKSTOP_BACKFILL_WINDOW ago: not carried on, the slot was backed up from a new listing (its time is the new listing's)"
                        ));
                        None
                    }
                    _ => Some(cp),
                }
            }
            Ok(_) => {
                ignored.push(format!(
                    "{} does not carry the token the catalog records for slot {slot}: it is not Backstop's (or predates the catalog's slot records) and was not resumed; the slot was backed up from a new listing",
                    store.url(&checkpoint_key)
                ));
                None
            }
            Err(e) => {
                ignored.push(format!(
                    "{} is not a checkpoint ({e}): not resumed; the slot was backed up from a new listing",
                    store.url(&checkpoint_key)
                ));
                None
            }
        },
    };
    if !ignored.is_empty() {
        warn!(bucket = source, %slot, ignored = ?ignored, "files in the backup bucket that are not Backstop's");
    }
    let mut cp = match resumed {
        Some(cp) => cp,
        None => {
            // Nothing of this slot exists yet: a backup made now must not stand for the past.
            if own.is_none() {
                // Slots only move forward: none is started before one that was completed.
                let newest = record::list(catalog, source)
                    .await?
                    .into_iter()
                    .filter(|r| r.status != SlotStatus::Started)
                    .map(|r| r.slot.timestamp())
                    .max();
                crate::event::check_backfill(*slot, Timestamp::now(), opts.backfill_window, newest)
                    .map_err(|why| {
                        Error::refused(
                            "bucket backup",
                            format!("bucket {source}: {why}"),
                            "back up the current slot instead; an old slot can only be continued, never started",
                        )
                    })?;
            }
            let mut guard = check_guards(s3, source, &opts.guards).await?;
            let inventory = match &opts.inventory {
                None => None,
                Some(inv) => match inventory::newest(s3, inv, source, Timestamp::now()).await? {
                    Ok(report) => Some(InventoryCursor {
                        report,
                        file: 0,
                        row: 0,
                    }),
                    Err(why) => {
                        guard.warnings.push(format!(
                            "listed with ListObjectVersions instead of S3 Inventory: {why}"
                        ));
                        None
                    }
                },
            };
            if let Some(cur) = &inventory {
                guard.warnings.push(format!(
                    "listed from the S3 Inventory report s3://{}/{} of {}: this slot is the bucket as it was then",
                    opts.inventory.as_ref().map(|i| i.bucket.as_str()).unwrap_or_default(),
                    cur.report.manifest_key,
                    cur.report.created
                ));
            }
            let started_at = Timestamp::now();
            // The slot's time is the time of its data: the listing's start, or the report's.
            let data_time = inventory
                .as_ref()
                .map_or(started_at, |cur| cur.report.created);
            let token = record::new_token();
            record::start(catalog, source, slot, &token, data_time).await?;
            guard.warnings.extend(ignored.iter().cloned());
            Checkpoint {
                inventory,
                token: Some(token),
                data_time: Some(data_time.to_string()),
                started_at: started_at.to_string(),
                versioning: guard.versioning,
                key_marker: None,
                version_marker: None,
                parts: 0,
                digests: vec![],
                objects: 0,
                bytes: 0,
                copied: 0,
                copied_bytes: 0,
                referenced: 0,
                vanished: 0,
                archived: 0,
                warnings: guard.warnings,
            }
        }
    };

    let mut stored = stored_ids(s3, store, source).await?;
    let previous = previous_entries(s3, catalog, store, source, slot).await?;
    info!(
        bucket = source,
        %slot,
        stored = stored.len(),
        previous = previous.len(),
        resumed_at_part = cp.parts,
        "bucket backup"
    );

    // The inventory data file being read, decoded, while the pages go through it.
    let mut inventory_file: Option<(usize, Vec<inventory::Listed>)> = None;
    loop {
        if !lock::renew(catalog, source, holder, lease(Timestamp::now())).await? {
            return Err(lock_lost(source));
        }
        // The next page of current versions: from the inventory report, or listed.
        let (page_versions, more, markers) = match cp.inventory.as_mut() {
            Some(cur) => {
                let Some(inv) = opts.inventory.as_ref() else {
                    return Err(Error::refused(
                        "bucket backup",
                        format!(
                            "the checkpoint of slot {slot} reads inventory report {}, and BACKSTOP_BUCKET_INVENTORY is no longer set",
                            cur.report.manifest_key
                        ),
                        "set it again, or delete the slot's checkpoint.json to start the slot over from a listing",
                    ));
                };
                if cur.file >= cur.report.files.len() {
                    // A report of no data files (an empty bucket): nothing more to read.
                    inventory_file = Some((cur.file, Vec::new()));
                } else if inventory_file.as_ref().map(|(i, _)| *i) != Some(cur.file) {
                    let rows = with_retries(|| {
                        inventory::read_file(s3, &inv.bucket, &cur.report, cur.file)
                    })
                    .await?;
                    inventory_file = Some((cur.file, rows));
                }
                let rows = inventory_file
                    .as_ref()
                    .map(|(_, r)| r.as_slice())
                    .unwrap_or(&[]);
                let start = cur.row.min(rows.len());
                let end = (start + opts.page_size.max(1) as usize).min(rows.len());
                let page = rows[start..end].to_vec();
                cur.row = end;
                if end >= rows.len() {
                    cur.file += 1;
                    cur.row = 0;
                }
                (page, cur.file < cur.report.files.len(), None)
            }
            None => {
                let page = with_retries(|| async {
                    s3.list_object_versions()
                        .bucket(source)
                        .max_keys(opts.page_size)
                        .set_key_marker(cp.key_marker.clone())
                        .set_version_id_marker(cp.version_marker.clone())
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws("ListObjectVersions", format!("bucket {source}"), e)
                        })
                })
                .await?;
                let listed: Vec<inventory::Listed> = page
                    .versions()
                    .iter()
                    .filter(|v| v.is_latest() == Some(true))
                    .filter_map(|v| {
                        Some(inventory::Listed {
                            key: v.key()?.to_owned(),
                            version_id: v.version_id().unwrap_or("null").to_owned(),
                            etag: v.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                            size: v.size().unwrap_or(0),
                            last_modified: v
                                .last_modified()
                                .map(|t| t.to_string())
                                .unwrap_or_default(),
                            storage_class: v.storage_class().map(|c| c.as_str().to_owned()),
                        })
                    })
                    .collect();
                let truncated = page.is_truncated() == Some(true);
                let markers = (
                    page.next_key_marker().map(str::to_owned),
                    page.next_version_id_marker().map(str::to_owned),
                );
                (listed, truncated, Some(markers))
            }
        };

        // Objects in an archive tier cannot be copied before a restore; one whose copy is
        // stored already is kept in the slot like any other (its copy stays referenced).
        let listed: Vec<(ObjectEntry, bool)> = page_versions
            .into_iter()
            .map(|v| {
                let archived = v.storage_class.as_deref().is_some_and(is_archive_class);
                let e = ObjectEntry {
                    key: v.key,
                    version_id: v.version_id,
                    etag: v.etag,
                    size: v.size,
                    last_modified: v.last_modified,
                    content_type: None,
                    cache_control: None,
                    content_disposition: None,
                    content_encoding: None,
                    content_language: None,
                    metadata: BTreeMap::new(),
                    tags: BTreeMap::new(),
                    stored: String::new(),
                };
                (e, archived)
            })
            .collect();

        let results: Vec<Result<Step>> = stream::iter(listed)
            .map(|(mut e, archived)| {
                let previous = &previous;
                let stored = &stored;
                async move {
                    e.stored = object_id(&e.key, &e.version_id, &e.etag);
                    if archived && stored.get(&e.stored) != Some(&e.size) {
                        return Ok(Step::Archived);
                    }
                    // An unversioned key rewritten with the same bytes keeps its ETag (so its
                    // id) but may have new headers: reused only when it was not rewritten.
                    match previous
                        .get(&e.stored)
                        .filter(|p| p.last_modified == e.last_modified)
                    {
                        Some(p) => {
                            e.content_type.clone_from(&p.content_type);
                            e.cache_control.clone_from(&p.cache_control);
                            e.content_disposition.clone_from(&p.content_disposition);
                            e.content_encoding.clone_from(&p.content_encoding);
                            e.content_language.clone_from(&p.content_language);
                            e.metadata.clone_from(&p.metadata);
                            e.tags.clone_from(&p.tags);
                        }
                        None => {
                            let read = with_retries(|| {
                                s3x::read_headers(s3, source, &e.key, &e.version_id)
                            })
                            .await;
                            let read = match read {
                                Err(err) if err.code() == Some("InvalidObjectState") => {
                                    return Ok(Step::Archived)
                                }
                                other => other?,
                            };
                            let Some(h) = read else {
                                return Ok(Step::Vanished);
                            };
                            if h.etag != e.etag {
                                // Rewritten since it was listed (an unversioned key).
                                return Ok(Step::Vanished);
                            }
                            e.content_type = h.content_type;
                            e.cache_control = h.cache_control;
                            e.content_disposition = h.content_disposition;
                            e.content_encoding = h.content_encoding;
                            e.content_language = h.content_language;
                            e.metadata = h.metadata;
                            e.tags = h.tags;
                        }
                    }
                    if stored.get(&e.stored) == Some(&e.size) {
                        return Ok(Step::Keep(e, false));
                    }
                    if archived {
                        return Ok(Step::Archived);
                    }
                    let versioned = e.version_id != "null";
                    let dst = store.object_key(source, &e.stored);
                    let copied = with_retries(|| {
                        s3x::copy(
                            s3,
                            (source, &e.key, versioned.then_some(e.version_id.as_str())),
                            (!versioned).then_some(e.etag.as_str()),
                            e.size,
                            (&store.bucket, &dst),
                            Some(&store.enc),
                            CopyHeaders::Keep,
                            Condition::None,
                            opts.multipart_threshold,
                            opts.part_size,
                        )
                    })
                    .await;
                    match copied {
                        Ok(()) => Ok(Step::Keep(e, true)),
                        Err(err) if is_vanished(&err) => Ok(Step::Vanished),
                        Err(err) if err.code() == Some("InvalidObjectState") => Ok(Step::Archived),
                        Err(err) => Err(err),
                    }
                }
            })
            .buffered(opts.parallel.max(1))
            .collect()
            .await;

        let mut entries = Vec::with_capacity(results.len());
        let mut vanished = 0u64;
        for r in results {
            match r? {
                Step::Keep(e, copied) => {
                    cp.objects += 1;
                    cp.bytes += e.size.max(0) as u64;
                    if copied {
                        cp.copied += 1;
                        cp.copied_bytes += e.size.max(0) as u64;
                        stored.insert(e.stored.clone(), e.size);
                    } else {
                        cp.referenced += 1;
                    }
                    entries.push(e);
                }
                Step::Vanished => vanished += 1,
                Step::Archived => cp.archived += 1,
            }
        }
        if vanished > 0 {
            cp.vanished += vanished;
        }
        // The page's copies may have taken longer than the lease: nothing is written on a
        // lock another holder may have taken meanwhile.
        if !lock::renew(catalog, source, holder, lease(Timestamp::now())).await? {
            return Err(lock_lost(source));
        }
        if !entries.is_empty() {
            let (gz, lines) = manifest::encode_part(&entries);
            cp.parts += 1;
            let key = store.part_key(source, slot, cp.parts);
            with_retries(|| {
                s3io::put_small(
                    s3,
                    &store.bucket,
                    &key,
                    gz.clone(),
                    "application/gzip",
                    &store.enc,
                )
            })
            .await?;
            cp.digests.push(manifest::part_digest(&lines));
        }
        if let Some((key_marker, version_marker)) = markers {
            cp.key_marker = key_marker;
            cp.version_marker = version_marker;
        }
        if !more {
            break;
        }
        if cp.inventory.is_none() && cp.key_marker.is_none() {
            return Err(Error::Aws {
                operation: "ListObjectVersions",
                resource: format!("bucket {source}"),
                code: None,
                message: "a truncated page came without a next marker".into(),
                retryable: true,
                hint: "a retry lists again from the last checkpoint".into(),
            });
        }
        save_checkpoint(s3, store, source, slot, &cp).await?;
        if work_until.is_some_and(|t| Timestamp::now() >= t) {
            return Ok(BackupOutcome::Continues { progress: cp });
        }
    }

    if cp.archived > 0 {
        cp.warnings.push(format!(
            "{} objects are in an archive tier (Glacier Flexible Retrieval, Deep Archive or an Intelligent-Tiering archive tier) that S3 cannot copy without a restore; they are left out of this slot: restore them (or keep them in Glacier Instant Retrieval or a warmer class) to have them backed up",
            cp.archived
        ));
    }
    if cp.vanished > 0 {
        cp.warnings.push(format!(
            "{} objects were deleted or rewritten while they were being backed up and are left out of this slot; the next slot has them as they are then",
            cp.vanished
        ));
    }
    let summary = Summary {
        format: manifest::FORMAT,
        source_bucket: source.to_owned(),
        slot: slot.to_string(),
        started_at: cp.started_at.clone(),
        finished_at: Timestamp::now().to_string(),
        objects: cp.objects,
        bytes: cp.bytes,
        copied: cp.copied,
        copied_bytes: cp.copied_bytes,
        referenced: cp.referenced,
        parts: cp.parts,
        fingerprint: manifest::fingerprint_of_parts(&cp.digests),
        versioning: cp.versioning.clone(),
        vanished: cp.vanished,
        archived: cp.archived,
        warnings: cp.warnings.clone(),
        data_time: cp.data_time.clone(),
        token: cp.token.clone(),
    };
    // The last checks, then the summary (from which on the slot is a complete backup): the lock
    // is still ours, and every copy the parts name is stored with its size (read back from the
    // parts and a new listing, so that nothing swept or lost on the way is named).
    if !lock::renew(catalog, source, holder, lease(Timestamp::now())).await? {
        return Err(lock_lost(source));
    }
    let now_stored = stored_ids(s3, store, source).await?;
    let mut digests = Vec::with_capacity(cp.parts as usize);
    let mut named = 0u64;
    for part in 1..=cp.parts {
        let key = store.part_key(source, slot, part);
        let url = store.url(&key);
        let bytes = s3io::get(s3, &store.bucket, &key)
            .await?
            .ok_or_else(|| Error::Aws {
                operation: "GetObject",
                resource: url.clone(),
                code: None,
                message: "a manifest part written by this backup is missing".into(),
                retryable: false,
                hint: "delete the slot's checkpoint.json to back the slot up anew".into(),
            })?;
        let (entries, lines) = manifest::decode_part(&bytes, &url).map_err(|e| {
            Error::refused(
                "bucket backup",
                e,
                "delete the slot's checkpoint.json to back it up anew",
            )
        })?;
        digests.push(manifest::part_digest(&lines));
        for e in &entries {
            named += 1;
            if now_stored.get(&e.stored) != Some(&e.size) {
                return Err(Error::Aws {
                    operation: "bucket backup",
                    resource: store.url(&store.object_key(source, &e.stored)),
                    code: None,
                    message: format!(
                        "the copy of {:?} that the manifest names is not stored (or not with its {} bytes)",
                        e.key, e.size
                    ),
                    retryable: false,
                    hint: "delete the slot's checkpoint.json to back the slot up anew".into(),
                });
            }
        }
    }
    if digests != cp.digests || named != cp.objects {
        return Err(Error::refused(
            "bucket backup",
            format!("the parts of bucket {source} slot {slot} changed while it was backed up (another writer?)"),
            "delete the slot's checkpoint.json to back the slot up anew",
        ));
    }
    let body = serde_json::to_vec_pretty(&summary).expect("a summary serializes");
    let summary_key = store.manifest_key(source, slot);
    with_retries(|| {
        s3io::put_small(
            s3,
            &store.bucket,
            &summary_key,
            body.clone(),
            "application/json",
            &store.enc,
        )
    })
    .await?;
    // From here on the slot is complete: the summary carries the record's token.
    if let Some(token) = &cp.token {
        record::complete(catalog, source, slot, token, &summary.fingerprint).await?;
    }
    // Best effort: a checkpoint beside a summary is never read again.
    let _ = s3
        .delete_object()
        .bucket(&store.bucket)
        .key(&checkpoint_key)
        .send()
        .await;
    info!(
        bucket = source,
        %slot,
        objects = summary.objects,
        copied = summary.copied,
        "bucket backup complete"
    );
    Ok(BackupOutcome::Done {
        summary,
        already: false,
    })
}

fn lock_lost(source: &str) -> Error {
    Error::Aws {
        operation: "UpdateItem",
        resource: format!("lock of bucket {source}"),
        code: None,
        message: "this backup lost the bucket's lock (its lease ran out and another backup or prune took it)".into(),
        retryable: true,
        hint: "a retry goes on from the last checkpoint".into(),
    }
}

async fn save_checkpoint(
    s3: &S3,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
    cp: &Checkpoint,
) -> Result<()> {
    let body = serde_json::to_vec(cp).expect("a checkpoint serializes");
    let key = store.checkpoint_key(source, slot);
    with_retries(|| {
        s3io::put_small(
            s3,
            &store.bucket,
            &key,
            body.clone(),
            "application/json",
            &store.enc,
        )
    })
    .await?;
    Ok(())
}

/// The stored copies of `source`: id and size.
pub async fn stored_ids(s3: &S3, store: &Store, source: &str) -> Result<HashMap<String, i64>> {
    let prefix = store.objects_prefix(source);
    Ok(s3io::list(s3, &store.bucket, &prefix)
        .await?
        .into_iter()
        .filter_map(|(k, size)| super::stored_id(&k, &prefix).map(|id| (id.to_owned(), size)))
        .collect())
}

/// A copy that failed because its source is gone (deleted, or rewritten: 412 on the ETag).
/// What became of one listed object.
// Not boxed: at most one page (1,000) of these exists at a time, almost all `Keep`.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// In the slot's manifest; `true` when copied now, `false` when already stored.
    Keep(ObjectEntry, bool),
    /// Deleted or rewritten before it could be copied.
    Vanished,
    /// In an archive tier: S3 refuses the copy (InvalidObjectState) until it is restored.
    Archived,
}

/// Storage classes S3 cannot copy from without a restore first.
fn is_archive_class(class: &str) -> bool {
    matches!(class, "GLACIER" | "DEEP_ARCHIVE")
}

fn is_vanished(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("NoSuchKey" | "NoSuchVersion" | "PreconditionFailed")
    )
}

/// Runs `f` up to 5 times while it fails with a retryable error, backing off 0.2 s, 0.4 s, …
/// (on top of the SDK's own retries of each request).
pub async fn with_retries<F, Fut, T>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && attempt < 5 => {
                warn!(attempt, error = %e, "retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The slot's summary, if the slot is complete.
pub async fn read_summary(
    s3: &S3,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
) -> Result<Option<Summary>> {
    let key = store.manifest_key(source, slot);
    match s3io::get(s3, &store.bucket, &key).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::refused(
                "reading a bucket backup",
                format!("{} is not a manifest summary ({e})", store.url(&key)),
                "the slot cannot be trusted; back up a new slot",
            )
        }),
    }
}

/// The slot's summary when the slot is complete and the summary is Backstop's own: it carries
/// the token the catalog records for the slot. A summary that does not is described in `ignored`
/// and not taken for a complete slot. A proven summary whose record is still `STARTED` (the
/// invocation that wrote it ended before it recorded the slot complete) is recorded complete.
pub async fn proven_summary(
    s3: &S3,
    catalog: &Catalog,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
    ignored: &mut Vec<String>,
) -> Result<Option<Summary>> {
    let summary = match read_summary(s3, store, source, slot).await {
        Ok(Some(summary)) => summary,
        Ok(None) => return Ok(None),
        Err(e) => {
            ignored.push(format!("{e}: not taken for a complete slot"));
            return Ok(None);
        }
    };
    let own = record::get(catalog, source, slot).await?;
    match &own {
        Some(r)
            if record::proves(own.as_ref(), summary.token.as_deref())
                && (r.status == SlotStatus::Started
                    || (r.status == SlotStatus::Done
                        && r.fingerprint.as_deref() == Some(summary.fingerprint.as_str()))) =>
        {
            if r.status == SlotStatus::Started {
                record::complete(catalog, source, slot, &r.token, &summary.fingerprint).await?;
            }
            Ok(Some(summary))
        }
        _ => {
            ignored.push(format!(
                "{} does not carry the token the catalog records for slot {slot}: it is not Backstop's (or predates the catalog's slot records), so it was not taken for a complete backup",
                store.url(&store.manifest_key(source, slot))
            ));
            Ok(None)
        }
    }
}

/// Every entry of a complete slot's manifest, checked against its summary (part count and
/// fingerprint).
pub async fn read_manifest(
    s3: &S3,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
) -> Result<(Summary, Vec<ObjectEntry>)> {
    let Some(summary) = read_summary(s3, store, source, slot).await? else {
        return Err(Error::refused(
            "reading a bucket backup",
            format!("bucket {source} has no complete backup for slot {slot}"),
            "list the slots with `backstop bucket list`",
        ));
    };
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for part in 1..=summary.parts {
        let key = store.part_key(source, slot, part);
        let url = store.url(&key);
        let Some(bytes) = s3io::get(s3, &store.bucket, &key).await? else {
            return Err(Error::refused(
                "reading a bucket backup",
                format!(
                    "{url} is missing (the summary names {} parts)",
                    summary.parts
                ),
                "the slot is damaged; restore another slot",
            ));
        };
        let (part_entries, lines) = manifest::decode_part(&bytes, &url)
            .map_err(|e| Error::refused("reading a bucket backup", e, "restore another slot"))?;
        digests.push(manifest::part_digest(&lines));
        entries.extend(part_entries);
    }
    let fingerprint = manifest::fingerprint_of_parts(&digests);
    if fingerprint != summary.fingerprint || entries.len() as u64 != summary.objects {
        return Err(Error::refused(
            "reading a bucket backup",
            format!(
                "the manifest of bucket {source} slot {slot} does not match its summary ({} entries, fingerprint {fingerprint}; the summary says {} and {})",
                entries.len(),
                summary.objects,
                summary.fingerprint
            ),
            "the slot is damaged; restore another slot",
        ));
    }
    Ok((summary, entries))
}

/// The complete slots of `source`, oldest first.
pub async fn complete_slots(s3: &S3, store: &Store, source: &str) -> Result<Vec<ScheduleSlot>> {
    Ok(super::prune::list_slots(s3, store, source)
        .await?
        .into_iter()
        .filter(|(_, complete)| *complete)
        .map(|(slot, _)| slot)
        .collect())
}

/// The newest complete slot before `slot`'s entries by stored id: their headers and tags are
/// reused for unchanged objects (a version's metadata cannot change).
async fn previous_entries(
    s3: &S3,
    catalog: &Catalog,
    store: &Store,
    source: &str,
    slot: &ScheduleSlot,
) -> Result<HashMap<String, ObjectEntry>> {
    // Only a complete slot the catalog records: a manifest put beside them by someone else
    // never lends its headers and tags to a new backup.
    let records = record::list(catalog, source).await?;
    let Some(prev) = records
        .iter()
        .rev()
        .find(|r| r.status == SlotStatus::Done && r.slot < *slot)
    else {
        return Ok(HashMap::new());
    };
    match read_manifest(s3, store, source, &prev.slot).await {
        Ok((summary, _))
            if !record::proves(Some(prev), summary.token.as_deref())
                || prev.fingerprint.as_deref() != Some(summary.fingerprint.as_str()) =>
        {
            warn!(bucket = source, slot = %prev.slot, "previous manifest is not the one the catalog records");
            Ok(HashMap::new())
        }
        Ok((_, entries)) => Ok(entries.into_iter().map(|e| (e.stored.clone(), e)).collect()),
        Err(e) => {
            // Only a saving: without it every object's headers are read again.
            warn!(bucket = source, slot = %prev.slot, error = %e, "previous manifest unreadable");
            Ok(HashMap::new())
        }
    }
}

/// What the guards found on one source bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardReport {
    pub versioning: String,
    pub warnings: Vec<String>,
}

/// Checks versioning and the noncurrent-version lifecycle of `source`; turns them on when the
/// policy says to enforce, and reports what it found or changed.
pub async fn check_guards(s3: &S3, source: &str, policy: &GuardPolicy) -> Result<GuardReport> {
    let mut warnings = Vec::new();
    let mut versioning = match s3.get_bucket_versioning().bucket(source).send().await {
        Ok(v) => v
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "off".into()),
        // An answer without an error code that the SDK cannot read (moto 5.2 names the XML
        // root GetBucketVersioningResponse): the backup itself does not depend on it, so it is
        // reported, not fatal. Errors with a code (AccessDenied, NoSuchBucket) stop the backup.
        Err(e)
            if e.as_service_error()
                .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                .is_none()
                && !matches!(
                    e,
                    aws_sdk_s3::error::SdkError::DispatchFailure(_)
                        | aws_sdk_s3::error::SdkError::TimeoutError(_)
                ) =>
        {
            warnings.push(format!(
                "the versioning of bucket {source} could not be read (GetBucketVersioning: {}); check it by hand",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ));
            "unknown".into()
        }
        Err(e) => {
            return Err(Error::aws(
                "GetBucketVersioning",
                format!("bucket {source}"),
                e,
            ))
        }
    };
    if versioning != "Enabled" && versioning != "unknown" {
        if policy.enforce {
            s3.put_bucket_versioning()
                .bucket(source)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| Error::aws("PutBucketVersioning", format!("bucket {source}"), e))?;
            warnings.push(format!(
                "versioning of bucket {source} was {versioning}; turned on"
            ));
            versioning = "Enabled".into();
        } else {
            warnings.push(format!(
                "versioning of bucket {source} is {versioning}: a delete or overwrite loses the object until the next backup (turn it on, or set BACKSTOP_BUCKET_ENFORCE_GUARDS=true)"
            ));
        }
    }
    if policy.noncurrent_transition_days.is_none() && policy.noncurrent_expiration_days.is_none() {
        return Ok(GuardReport {
            versioning,
            warnings,
        });
    }
    let rules = match s3
        .get_bucket_lifecycle_configuration()
        .bucket(source)
        .send()
        .await
    {
        Ok(c) => c.rules.unwrap_or_default(),
        Err(e)
            if e.as_service_error()
                .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                == Some("NoSuchLifecycleConfiguration") =>
        {
            vec![]
        }
        Err(e) => {
            return Err(Error::aws(
                "GetBucketLifecycleConfiguration",
                format!("bucket {source}"),
                e,
            ))
        }
    };
    // The rule's legacy top-level prefix counts too (deprecated, still returned by old rules).
    #[allow(deprecated)]
    let whole_bucket = |r: &LifecycleRule| {
        r.status == ExpirationStatus::Enabled
            && r.filter.as_ref().is_none_or(|f| {
                f.prefix().is_none_or(str::is_empty) && f.and().is_none() && f.tag().is_none()
            })
            && r.prefix().is_none_or(str::is_empty)
    };
    let transition_ok = policy.noncurrent_transition_days.is_none_or(|days| {
        rules.iter().filter(|r| whole_bucket(r)).any(|r| {
            r.noncurrent_version_transitions().iter().any(|t| {
                t.noncurrent_days() == Some(days)
                    && t.storage_class() == Some(&TransitionStorageClass::Glacier)
            })
        })
    });
    let expiration_ok = policy.noncurrent_expiration_days.is_none_or(|days| {
        rules.iter().filter(|r| whole_bucket(r)).any(|r| {
            r.noncurrent_version_expiration()
                .is_some_and(|x| x.noncurrent_days() == Some(days))
        })
    });
    if transition_ok && expiration_ok {
        return Ok(GuardReport {
            versioning,
            warnings,
        });
    }
    let wanted = describe_lifecycle(policy);
    if !policy.enforce {
        warnings.push(format!(
            "bucket {source} has no enabled whole-bucket lifecycle rule for noncurrent versions as policy says ({wanted}): old versions are kept forever or deleted early (set BACKSTOP_BUCKET_ENFORCE_GUARDS=true to put one)"
        ));
        return Ok(GuardReport {
            versioning,
            warnings,
        });
    }
    // Every other rule is kept as it is; only Backstop's own rule is replaced.
    let mut new_rules: Vec<LifecycleRule> = rules
        .into_iter()
        .filter(|r| r.id() != Some(LIFECYCLE_RULE_ID))
        .collect();
    let mut rule = LifecycleRule::builder()
        .id(LIFECYCLE_RULE_ID)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build());
    if let Some(days) = policy.noncurrent_transition_days {
        rule = rule.noncurrent_version_transitions(
            NoncurrentVersionTransition::builder()
                .noncurrent_days(days)
                .storage_class(TransitionStorageClass::Glacier)
                .build(),
        );
    }
    if let Some(days) = policy.noncurrent_expiration_days {
        rule = rule.noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(days)
                .build(),
        );
    }
    new_rules.push(rule.build().map_err(|e| Error::Local(e.to_string()))?);
    s3.put_bucket_lifecycle_configuration()
        .bucket(source)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(new_rules))
                .build()
                .map_err(|e| Error::Local(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "PutBucketLifecycleConfiguration",
                format!("bucket {source}"),
                e,
            )
        })?;
    warnings.push(format!(
        "bucket {source} had no lifecycle rule for noncurrent versions as policy says; put rule {LIFECYCLE_RULE_ID} ({wanted})"
    ));
    Ok(GuardReport {
        versioning,
        warnings,
    })
}

fn describe_lifecycle(policy: &GuardPolicy) -> String {
    let mut parts = Vec::new();
    if let Some(d) = policy.noncurrent_transition_days {
        parts.push(format!("to Glacier after {d} days"));
    }
    if let Some(d) = policy.noncurrent_expiration_days {
        parts.push(format!("deleted after {d} days"));
    }
    format!("noncurrent versions {}", parts.join(", "))
}
