//! Retention for bucket backups: the planner decides which slots' manifests to keep (the same
//! planner and floors as for table backups); then mark and sweep, like restic's prune: every
//! stored object that no remaining manifest (kept, or still being written) references is
//! deleted. Nothing is swept while a backup of the bucket runs (the bucket's lock), and nothing
//! at all when any remaining manifest cannot be read in full.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_s3::Client as S3;
use jiff::Timestamp;
use serde::Serialize;
use tracing::{info, warn};

use super::backup::LOCK_LEASE;
use super::lock;
use super::manifest;
use super::record::{self, SlotRecord, SlotStatus};
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
    /// Slots kept for a legal hold the catalog records.
    pub held_slots: Vec<String>,
    /// Held slots whose objects this prune put under an S3 Object Lock legal hold.
    pub locked_slots: Vec<String>,
    /// Slots found in the store that the catalog does not record (not Backstop's, or made
    /// before it recorded bucket slots): kept, never planned, reported.
    pub unknown_slots: Vec<String>,
    /// Stored objects referenced by a remaining manifest.
    pub referenced: u64,
    pub swept: u64,
    pub swept_bytes: u64,
    /// Why nothing was swept, if nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

/// One slot's files, as listed.
#[derive(Debug, Default)]
struct SlotFiles {
    complete: bool,
    parts: Vec<String>,
    all: Vec<String>,
}

/// Whose decisions a prune follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The original store: plans with the policy over the catalog's slot records.
    Original,
    /// A replica: deletes only what the original's prune decided (slots the catalog records as
    /// pruning or deleted), never on a plan of its own, so that a replica that lags can never
    /// doom a slot the original keeps.
    Replica,
}

/// Prunes the backups of `source`. `dry_run`: plan and count, delete nothing.
#[allow(clippy::too_many_arguments)]
pub async fn prune(
    s3: &S3,
    catalog: &Catalog,
    store: &Store,
    source: &str,
    policy: &CompiledPolicy,
    now: Timestamp,
    dry_run: bool,
    role: Role,
) -> Result<PruneReport> {
    let holder = uuid::Uuid::new_v4().to_string();
    // A dry run deletes nothing, so it takes no lock: it must never keep a backup from running.
    if dry_run {
        return prune_locked(s3, catalog, store, source, policy, now, true, &holder, role).await;
    }
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
            held_slots: vec![],
            locked_slots: vec![],
            unknown_slots: vec![],
            referenced: 0,
            swept: 0,
            swept_bytes: 0,
            blocked: Some(format!(
                "bucket {source} is locked by {} ({}) until {}: nothing pruned; the next run tries again",
                h.holder, h.doing, h.until
            )),
        });
    }
    let result = prune_locked(
        s3, catalog, store, source, policy, now, dry_run, &holder, role,
    )
    .await;
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
    role: Role,
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
        } else if file.starts_with("part-") {
            files.parts.push(key.clone());
        }
        files.all.push(key.clone());
    }

    // The catalog's records are the recovery points, at the time of their data; a slot found in
    // S3 without one is not Backstop's (or predates the records): kept, never planned.
    let records = record::list(catalog, source).await?;
    let by_name: HashMap<String, &SlotRecord> =
        records.iter().map(|r| (r.slot.compact(), r)).collect();
    let unknown_slots: Vec<String> = slots
        .keys()
        .filter(|name| !by_name.contains_key(name.as_str()))
        .cloned()
        .collect();
    let mut points = Vec::new();
    for r in &records {
        if r.status != SlotStatus::Done {
            continue;
        }
        let name = r.slot.compact();
        points.push(RecoveryPoint {
            id: name.clone(),
            source: source.to_owned(),
            created_at: r.data_time,
            complete: slots.get(&name).is_some_and(|f| f.complete),
            legal_hold: r.legal_hold,
            managed: true,
        });
    }
    let mut plan = retention::plan(&points, policy, now);
    if let Some(r) = records.iter().find(|r| r.hold_unreadable) {
        plan.blocked = Some(format!(
            "the legal_hold of bucket {source} slot {} cannot be read as a hold or not: nothing of this bucket is pruned until it is true or false",
            r.slot
        ));
    }
    let mut report = PruneReport {
        bucket: source.to_owned(),
        dry_run,
        plan,
        deleted_slots: vec![],
        held_slots: vec![],
        locked_slots: vec![],
        unknown_slots,
        referenced: 0,
        swept: 0,
        swept_bytes: 0,
        blocked: None,
    };
    if !report.unknown_slots.is_empty() {
        warn!(bucket = source, slots = ?report.unknown_slots, "slots without a catalog record: kept");
    }
    if let Some(b) = report.plan.blocked.clone() {
        report.blocked = Some(b);
        return Ok(report);
    }
    // What goes: the plan's deletes (the original only), and the slots a prune already decided
    // to delete (their summary may be gone already; the catalog says so, never a file in S3).
    let decided = records
        .iter()
        .filter(|r| matches!(r.status, SlotStatus::Pruning | SlotStatus::Deleted))
        .map(|r| r.slot.compact())
        .filter(|name| slots.contains_key(name));
    let doomed: HashSet<String> = match role {
        Role::Original => report
            .plan
            .deletes()
            .map(|p| p.point.id.clone())
            .chain(decided)
            .collect(),
        Role::Replica => decided.collect(),
    };

    // Slots kept for a legal hold whose objects are not yet under an Object Lock legal hold in
    // this store: their keys are gathered while marking.
    let to_lock: HashSet<String> = report
        .plan
        .keeps()
        .filter(|p| p.point.legal_hold)
        .map(|p| p.point.id.clone())
        .filter(|name| {
            by_name
                .get(name.as_str())
                .is_some_and(|r| !r.locked_in.contains(&store.bucket))
        })
        .collect();
    let mut lock_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();

    // Mark: every stored id named by a manifest that stays (kept, in progress, or unknown).
    let mut referenced: HashSet<String> = HashSet::new();
    let mut blocked = None;
    for (name, files) in &slots {
        if doomed.contains(name.as_str()) {
            continue;
        }
        if to_lock.contains(name.as_str()) {
            lock_keys.insert(name.clone(), files.all.clone());
        }
        // A complete slot of Backstop's is read through its summary, in full or not at all, and
        // only the summary the catalog records (its token and fingerprint) counts: a summary
        // rewritten to name nothing must not let the sweep take the copies. A slot that is not
        // complete in the catalog, or that the catalog does not record (a summary anyone may
        // have written), counts by its parts.
        let done = by_name
            .get(name.as_str())
            .filter(|r| r.status == SlotStatus::Done);
        let complete_slot = parse_compact_slot(name).filter(|_| files.complete && done.is_some());
        if let (Some(slot), Some(rec)) = (complete_slot, done) {
            match super::backup::read_manifest(s3, store, source, &slot).await {
                Ok((summary, _))
                    if !record::proves(Some(rec), summary.token.as_deref())
                        || rec.fingerprint.as_deref() != Some(summary.fingerprint.as_str()) =>
                {
                    blocked = Some(format!(
                        "the summary of kept slot {slot} in {} is not the one the catalog records (token or fingerprint differ): nothing is swept until it is put back (a versioned bucket keeps the real one)",
                        store.url(&store.manifest_key(source, &slot))
                    ));
                    break;
                }
                Ok((_, entries)) => {
                    if let Some(keys) = lock_keys.get_mut(name.as_str()) {
                        keys.extend(entries.iter().map(|e| store.object_key(source, &e.stored)));
                    }
                    referenced.extend(entries.into_iter().map(|e| e.stored))
                }
                Err(e) => {
                    blocked = Some(format!(
                        "the kept manifest of slot {slot} cannot be read in full ({e}): nothing is swept until it is fixed or deleted"
                    ));
                    break;
                }
            }
            continue;
        }
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
                        "a part of slot {name} cannot be read ({e}): nothing is swept until it is fixed or deleted"
                    ));
                    break;
                }
            }
        }
        if blocked.is_some() {
            break;
        }
    }
    report.referenced = referenced.len() as u64;
    if let Some(b) = blocked {
        warn!(bucket = source, reason = %b, "prune blocked");
        report.blocked = Some(b);
        return Ok(report);
    }

    // Delete the pruned slots: first the catalog's word (the hold read once more before and
    // after the slot is marked PRUNING, see `record::begin_prune`), then the summary, so that a
    // slot half deleted is never taken for a complete one, then the rest.
    let mut doomed_sorted: Vec<&str> = doomed.iter().map(String::as_str).collect();
    doomed_sorted.sort_unstable();
    let mut kept_now = Vec::new();
    for name in doomed_sorted {
        let files = &slots[name];
        let Some(rec) = by_name.get(name) else {
            continue;
        };
        if !dry_run {
            renew(catalog, source, holder).await?;
            let go = if rec.status == SlotStatus::Deleted {
                // Deleted in the original: a copy left here (a replica) goes too, unless a hold
                // came since.
                !record::get(catalog, source, &rec.slot)
                    .await?
                    .is_some_and(|r| r.legal_hold)
            } else {
                record::begin_prune(catalog, source, &rec.slot).await?
            };
            if !go {
                // Held since the listing (or no longer complete): kept.
                kept_now.push(name.to_owned());
                continue;
            }
            let summary = format!("{slots_prefix}{name}/manifest.json");
            s3io::delete_keys(s3, &store.bucket, std::slice::from_ref(&summary)).await?;
            let rest: Vec<String> = files
                .all
                .iter()
                .filter(|k| **k != summary)
                .cloned()
                .collect();
            for chunk in rest.chunks(1000) {
                renew(catalog, source, holder).await?;
                s3io::delete_keys(s3, &store.bucket, chunk).await?;
            }
            record::deleted(catalog, source, &rec.slot).await?;
        }
        report.deleted_slots.push(name.to_owned());
    }
    if !kept_now.is_empty() {
        // A slot kept at the last moment keeps every copy it names: sweep nothing this time.
        report.held_slots = kept_now;
        report.blocked = Some(format!(
            "slots {} were put on legal hold while this prune ran: kept, and nothing swept this time",
            report.held_slots.join(", ")
        ));
        return Ok(report);
    }
    report.held_slots = report
        .plan
        .keeps()
        .filter(|p| p.point.legal_hold)
        .map(|p| p.point.id.clone())
        .collect();
    // Where the store has S3 Object Lock, a held slot's files and the copies it names get an
    // Object Lock legal hold too, which no delete passes until someone lifts it.
    if !dry_run
        && !lock_keys.is_empty()
        && super::s3::object_lock_enabled(s3, &store.bucket).await?
    {
        for (name, keys) in &lock_keys {
            for key in keys {
                renew(catalog, source, holder).await?;
                super::s3::legal_hold_on(s3, &store.bucket, key).await?;
            }
            if let Some(rec) = by_name.get(name.as_str()) {
                record::locked(catalog, source, &rec.slot, &store.bucket).await?;
            }
            report.locked_slots.push(name.clone());
        }
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

/// The slots of `source` in the store, oldest first, each with whether its summary is there:
/// for listings. Whether a slot is Backstop's own is the catalog's to say
/// ([`super::backup::proven_summary`]).
pub async fn list_slots(s3: &S3, store: &Store, source: &str) -> Result<Vec<(ScheduleSlot, bool)>> {
    let prefix = store.slots_prefix(source);
    // Whether the summary is there. (A prune takes the summary first; files such as an old
    // `pruning.json` change nothing.)
    let mut out: BTreeMap<ScheduleSlot, bool> = BTreeMap::new();
    for (key, _) in s3io::list(s3, &store.bucket, &prefix).await? {
        let Some((name, file)) = key.strip_prefix(&prefix).and_then(|r| r.split_once('/')) else {
            continue;
        };
        if let Some(slot) = parse_compact_slot(name) {
            *out.entry(slot).or_default() |= file == "manifest.json";
        }
    }
    Ok(out.into_iter().collect())
}
