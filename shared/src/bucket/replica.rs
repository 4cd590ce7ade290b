//! Copies of complete bucket backups in another bucket (another region or account): every stored
//! object a slot references that the replica lacks, then the slot's manifest parts, then its
//! summary last, so that a replica slot is never visible half made. Then the replica's manifest
//! is read back and checked against the original.

use std::collections::HashSet;

use aws_sdk_s3::Client as S3;
use futures::{stream, StreamExt};
use jiff::Timestamp;
use serde::Serialize;

use super::backup::{read_manifest, read_summary, stored_ids, with_retries};
use super::s3::{self as s3x, Condition, CopyHeaders};
use super::Store;
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;

/// Where replicas go: a client for the replica's region, and the replica's store.
#[derive(Debug, Clone)]
pub struct Replica {
    pub s3: S3,
    pub store: Store,
}

/// What one replication did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaReport {
    pub source_bucket: String,
    pub slot: String,
    pub replica: String,
    /// The replica slot was complete and matching before this call.
    pub already: bool,
    pub copied: u64,
    pub copied_bytes: u64,
    /// The replica's manifest read back: its fingerprint, equal to the original's.
    pub fingerprint: String,
    /// From the original backup's end to now (the replica is at most this far behind).
    pub lag_seconds: f64,
}

/// Replicates slot `slot` of `source`'s backups from `store` to `replica`, and checks it.
/// Safe to repeat: objects and parts already there are not copied again.
#[allow(clippy::too_many_arguments)]
pub async fn replicate_slot(
    s3: &S3,
    store: &Store,
    replica: &Replica,
    source: &str,
    slot: &ScheduleSlot,
    parallel: usize,
    multipart_threshold: i64,
    part_size: i64,
) -> Result<ReplicaReport> {
    let (summary, entries) = read_manifest(s3, store, source, slot).await?;
    let lag = |finished: &str| {
        finished
            .parse::<Timestamp>()
            .map(|t| Timestamp::now().duration_since(t).as_secs_f64().max(0.0))
            .unwrap_or(0.0)
    };
    let mut report = ReplicaReport {
        source_bucket: source.to_owned(),
        slot: slot.to_string(),
        replica: replica.store.url(&replica.store.root(source)),
        already: false,
        copied: 0,
        copied_bytes: 0,
        fingerprint: String::new(),
        lag_seconds: 0.0,
    };
    if read_summary(&replica.s3, &replica.store, source, slot)
        .await?
        .is_some()
    {
        let (r, _) = read_manifest(&replica.s3, &replica.store, source, slot).await?;
        if r.fingerprint != summary.fingerprint {
            return Err(Error::refused(
                "replicate bucket backup",
                format!(
                    "the replica of bucket {source} slot {slot} at {} has fingerprint {}, the original {}",
                    report.replica, r.fingerprint, summary.fingerprint
                ),
                "delete the replica's slot so that the next run copies it again",
            ));
        }
        // Complete only when every object it names is there too; else the copy below fills in.
        let there = stored_ids(&replica.s3, &replica.store, source).await?;
        if entries
            .iter()
            .all(|e| there.get(&e.stored) == Some(&e.size))
        {
            report.already = true;
            report.fingerprint = r.fingerprint;
            report.lag_seconds = lag(&summary.finished_at);
            return Ok(report);
        }
    }

    let there = stored_ids(&replica.s3, &replica.store, source).await?;
    let mut seen = HashSet::new();
    let missing: Vec<(String, i64)> = entries
        .iter()
        .filter(|e| there.get(&e.stored) != Some(&e.size))
        .filter(|e| seen.insert(e.stored.clone()))
        .map(|e| (e.stored.clone(), e.size))
        .collect();
    let results: Vec<Result<i64>> = stream::iter(missing)
        .map(|(id, size)| async move {
            let from = store.object_key(source, &id);
            let to = replica.store.object_key(source, &id);
            with_retries(|| {
                s3x::copy(
                    &replica.s3,
                    (&store.bucket, &from, None),
                    None,
                    size,
                    (&replica.store.bucket, &to),
                    Some(&replica.store.enc),
                    CopyHeaders::Keep,
                    Condition::None,
                    multipart_threshold,
                    part_size,
                )
            })
            .await
            .map(|()| size)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    for r in results {
        let size = r?;
        report.copied += 1;
        report.copied_bytes += size.max(0) as u64;
    }
    // The parts, then the summary: a replica slot is complete only once everything it names
    // is there.
    let mut files: Vec<String> = (1..=summary.parts)
        .map(|p| store.part_key(source, slot, p))
        .collect();
    let summary_key = store.manifest_key(source, slot);
    files.push(summary_key.clone());
    for from in files {
        if from == summary_key {
            // The summary only once every object the parts name is in the replica.
            let now_there = stored_ids(&replica.s3, &replica.store, source).await?;
            let absent = entries
                .iter()
                .filter(|e| now_there.get(&e.stored) != Some(&e.size))
                .count();
            if absent > 0 {
                return Err(Error::Aws {
                    operation: "replicate bucket backup",
                    resource: report.replica.clone(),
                    code: None,
                    message: format!(
                        "{absent} objects are missing in the replica, or of another size, after their copies: its summary is not written"
                    ),
                    retryable: true,
                    hint: "the next run copies what is missing".into(),
                });
            }
        }
        let name = from.rsplit('/').next().unwrap_or_default().to_owned();
        let to = format!("{}{name}", replica.store.slot_prefix(source, slot));
        let size = s3x::head(s3, &store.bucket, &from)
            .await?
            .map(|(size, _)| size)
            .ok_or_else(|| {
                Error::refused(
                    "replicate bucket backup",
                    format!("{} vanished while it was replicated", store.url(&from)),
                    "a prune may have deleted the slot; nothing to replicate",
                )
            })?;
        with_retries(|| {
            s3x::copy(
                &replica.s3,
                (&store.bucket, &from, None),
                None,
                size,
                (&replica.store.bucket, &to),
                Some(&replica.store.enc),
                CopyHeaders::Keep,
                Condition::None,
                multipart_threshold,
                part_size,
            )
        })
        .await?;
    }
    // Read back: the replica's manifest against its own summary and the original's
    // fingerprint, and every object it names present with its size.
    let (r, replica_entries) = read_manifest(&replica.s3, &replica.store, source, slot).await?;
    let now_there = stored_ids(&replica.s3, &replica.store, source).await?;
    let absent = replica_entries
        .iter()
        .filter(|e| now_there.get(&e.stored) != Some(&e.size))
        .count();
    if r.fingerprint != summary.fingerprint || absent > 0 {
        // Never left looking complete: the replica's summary goes.
        let key = replica.store.manifest_key(source, slot);
        if let Err(e) =
            crate::export::s3io::delete_keys(&replica.s3, &replica.store.bucket, &[key]).await
        {
            tracing::warn!(bucket = source, error = %e, "deleting a mismatched replica summary");
        }
        return Err(Error::Aws {
            operation: "replicate bucket backup",
            resource: report.replica.clone(),
            code: None,
            message: format!(
                "the replica does not match: fingerprint {} (original {}), {absent} objects missing or of another size",
                r.fingerprint, summary.fingerprint
            ),
            retryable: true,
            hint: "the next run copies what is missing".into(),
        });
    }
    report.fingerprint = r.fingerprint;
    report.lag_seconds = lag(&summary.finished_at);
    Ok(report)
}
