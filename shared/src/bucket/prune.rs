//! Retention for bucket backups: the planner decides which slots' manifests to keep (the same
//! planner and floors as for table backups); then mark and sweep, like restic's prune: every
//! stored object that no remaining manifest (kept, or still being written) references is
//! deleted. Nothing is swept while a backup of the bucket runs (the bucket's lock), and nothing
//! at all when any remaining manifest cannot be read in full.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_s3::Client as S3;
use jiff::Timestamp;
use serde::Serialize;
use tracing::{info, warn};

use super::backup::LOCK_LEASE;
use super::lock;
use super::manifest;
use super::{parse_compact_slot, Store};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;
use crate::export::s3io;
use crate::retention::{self, CompiledPolicy, RecoveryPoint, RetentionPlan};

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneReport {
    pub bucket: String,
    pub dry_run: bool,
    pub plan: RetentionPlan,
    /// Slots whose manifests were deleted.
    pub deleted_slots: Vec<String>,
    /// Stored objects referenced by a remaining manifest.
    pub referenced: u64,
    pub swept: u64,
    pub swept_bytes: u64,
    /// Why nothing was swept, if nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

/// Put in a slot's directory before a prune deletes anything of it, deleted last.
pub const PRUNING_MARKER: &str = "pruning.json";

/// One slot's files, as listed.
#[derive(Debug, Default)]
struct SlotFiles {
    complete: bool,
    /// A prune decided to delete it and had begun (`pruning.json`): the next prune finishes.
    pruning: bool,
    parts: Vec<String>,
    all: Vec<String>,
}

/// Prunes the backups of `source`. `dry_run`: plan and count, delete nothing.
pub async fn prune(
    s3: &S3,
    catalog: &Catalog,
    store: &Store,
    source: &str,
    policy: &CompiledPolicy,
    now: Timestamp,
    dry_run: bool,
) -> Result<PruneReport> {
    let holder = uuid::Uuid::new_v4().to_string();
    // The lock runs on the clock, whatever `now` the plan is made for.
    let clock = Timestamp::now();
    if let Some(h) =
        lock::acquire(catalog, source, &holder, "prune", clock, clock + LOCK_LEASE).await?
    {
        return Ok(PruneReport {
            bucket: source.to_owned(),
            dry_run,
            plan: retention::plan(&[], policy, now),
            deleted_slots: vec![],
            referenced: 0,
            swept: 0,
            swept_bytes: 0,
            blocked: Some(format!(
                "bucket {source} is locked by {} ({}) until {}: nothing pruned; the next run tries again",
                h.holder, h.doing, h.until
            )),
        });
    }
    let result = prune_locked(s3, catalog, store, source, policy, now, dry_run, &holder).await;
    if let Err(e) = lock::release(catalog, source, &holder).await {
        warn!(bucket = source, error = %e, "releasing the bucket lock");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn prune_locked(
    s3: &S3,
    catalog: &Catalog,
    store: &Store,
    source: &str,
    policy: &CompiledPolicy,
    now: Timestamp,
    dry_run: bool,
    holder: &str,
) -> Result<PruneReport> {
    let slots_prefix = store.slots_prefix(source);
    let mut slots: BTreeMap<String, SlotFiles> = BTreeMap::new();
    for (key, _) in s3io::list(s3, &store.bucket, &slots_prefix).await? {
        let Some((slot, file)) = key
            .strip_prefix(&slots_prefix)
            .and_then(|r| r.split_once('/'))
        else {
            continue;
        };
        let files = slots.entry(slot.to_owned()).or_default();
        if file == "manifest.json" {
            files.complete = true;
        } else if file == PRUNING_MARKER {
            files.pruning = true;
        } else if file.starts_with("part-") {
            files.parts.push(key.clone());
        }
        files.all.push(key.clone());
    }

    let mut points = Vec::new();
    for (name, files) in &slots {
        // A directory not named like a slot is never planned, so kept; its parts count below.
        // A slot a prune began to delete is not a recovery point any more.
        if files.pruning {
            continue;
        }
        if let Some(slot) = parse_compact_slot(name) {
            points.push(RecoveryPoint {
                id: name.clone(),
                source: source.to_owned(),
                created_at: slot.timestamp(),
                complete: files.complete,
                legal_hold: false,
                managed: true,
            });
        }
    }
    let plan = retention::plan(&points, policy, now);
    // The plan's deletes, and the slots an earlier prune began to delete (their summary may be
    // gone already, which would otherwise make them look like backups under way, kept forever
    // with every copy they name).
    let doomed: HashSet<String> = plan
        .deletes()
        .map(|p| p.point.id.clone())
        .chain(
            slots
                .iter()
                .filter(|(_, f)| f.pruning)
                .map(|(n, _)| n.clone()),
        )
        .collect();

    // Mark: every stored id named by a manifest that stays (kept, in progress, or unknown).
    let mut referenced: HashSet<String> = HashSet::new();
    let mut blocked = None;
    for (name, files) in &slots {
        if doomed.contains(name.as_str()) {
            continue;
        }
        let complete_slot = parse_compact_slot(name).filter(|_| files.complete);
        if let Some(slot) = complete_slot {
            match super::backup::read_manifest(s3, store, source, &slot).await {
                Ok((_, entries)) => referenced.extend(entries.into_iter().map(|e| e.stored)),
                Err(e) => {
                    blocked = Some(format!(
                        "the kept manifest of slot {slot} cannot be read in full ({e}): nothing is swept until it is fixed or deleted"
                    ));
                    break;
                }
            }
        } else {
            // Unfinished (or not named like a slot): every part written so far counts.
            for key in &files.parts {
                let url = store.url(key);
                let read = match s3io::get(s3, &store.bucket, key).await? {
                    Some(bytes) => manifest::decode_part(&bytes, &url),
                    None => Err(format!("{url} vanished while it was read")),
                };
                match read {
                    Ok((entries, _)) => referenced.extend(entries.into_iter().map(|e| e.stored)),
                    Err(e) => {
                        blocked = Some(format!(
                            "a part of unfinished slot {name} cannot be read ({e}): nothing is swept until it is fixed or deleted"
                        ));
                        break;
                    }
                }
            }
            if blocked.is_some() {
                break;
            }
        }
    }
    let mut report = PruneReport {
        bucket: source.to_owned(),
        dry_run,
        plan,
        deleted_slots: vec![],
        referenced: referenced.len() as u64,
        swept: 0,
        swept_bytes: 0,
        blocked: None,
    };
    if let Some(b) = blocked {
        warn!(bucket = source, reason = %b, "prune blocked");
        report.blocked = Some(b);
        return Ok(report);
    }

    // Delete the pruned manifests: the summary first, so that a slot half deleted is never
    // taken for a complete one.
    let mut doomed_sorted: Vec<&str> = doomed.iter().map(String::as_str).collect();
    doomed_sorted.sort_unstable();
    for name in doomed_sorted {
        let files = &slots[name];
        if !dry_run {
            renew(catalog, source, holder).await?;
            // The marker first: from here on the slot is being deleted, and a prune that stops
            // half-way is finished by the next one.
            let marker = format!("{slots_prefix}{name}/{PRUNING_MARKER}");
            if !files.pruning {
                s3io::put_small(
                    s3,
                    &store.bucket,
                    &marker,
                    br#"{"pruning":true}"#.to_vec(),
                    "application/json",
                    &store.enc,
                )
                .await?;
            }
            let summary = format!("{slots_prefix}{name}/manifest.json");
            s3io::delete_keys(s3, &store.bucket, std::slice::from_ref(&summary)).await?;
            let rest: Vec<String> = files
                .all
                .iter()
                .filter(|k| **k != summary && **k != marker)
                .cloned()
                .collect();
            for chunk in rest.chunks(1000) {
                renew(catalog, source, holder).await?;
                s3io::delete_keys(s3, &store.bucket, chunk).await?;
            }
            s3io::delete_keys(s3, &store.bucket, std::slice::from_ref(&marker)).await?;
        }
        report.deleted_slots.push(name.to_owned());
    }

    // Sweep.
    let objects_prefix = store.objects_prefix(source);
    let unreferenced: Vec<(String, i64)> = s3io::list(s3, &store.bucket, &objects_prefix)
        .await?
        .into_iter()
        .filter(|(k, _)| {
            super::stored_id(k, &objects_prefix).is_some_and(|id| !referenced.contains(id))
        })
        .collect();
    report.swept = unreferenced.len() as u64;
    report.swept_bytes = unreferenced.iter().map(|(_, s)| s.max(&0)).sum::<i64>() as u64;
    if !dry_run {
        for chunk in unreferenced.chunks(1000) {
            renew(catalog, source, holder).await?;
            let keys: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
            s3io::delete_keys(s3, &store.bucket, &keys).await?;
        }
    }
    info!(
        bucket = source,
        deleted_slots = report.deleted_slots.len(),
        swept = report.swept,
        dry_run,
        "bucket prune"
    );
    Ok(report)
}

async fn renew(catalog: &Catalog, source: &str, holder: &str) -> Result<()> {
    if lock::renew(catalog, source, holder, Timestamp::now() + LOCK_LEASE).await? {
        Ok(())
    } else {
        Err(Error::Aws {
            operation: "UpdateItem",
            resource: format!("lock of bucket {source}"),
            code: None,
            message: "the prune lost the bucket's lock; it stopped before deleting more".into(),
            retryable: true,
            hint: "the next retention run prunes again".into(),
        })
    }
}

/// The slots of `source` in the store, oldest first, each with whether it is complete (its
/// summary is there and no prune has begun to delete it): for listings.
pub async fn list_slots(s3: &S3, store: &Store, source: &str) -> Result<Vec<(ScheduleSlot, bool)>> {
    let prefix = store.slots_prefix(source);
    // (summary there, being pruned)
    let mut out: BTreeMap<ScheduleSlot, (bool, bool)> = BTreeMap::new();
    for (key, _) in s3io::list(s3, &store.bucket, &prefix).await? {
        let Some((name, file)) = key.strip_prefix(&prefix).and_then(|r| r.split_once('/')) else {
            continue;
        };
        if let Some(slot) = parse_compact_slot(name) {
            let state = out.entry(slot).or_default();
            state.0 |= file == "manifest.json";
            state.1 |= file == PRUNING_MARKER;
        }
    }
    Ok(out
        .into_iter()
        .map(|(slot, (summary, pruning))| (slot, summary && !pruning))
        .collect())
}
