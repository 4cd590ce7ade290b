//! Replicas of exports: every file of a complete export copied, server-side, to the same keys in
//! another bucket (another region or account), the manifests last so that a replica is never
//! taken for a complete export before all its data is there; then the replica is checked
//! against the original (every file there with its size, every manifest byte for byte).

use std::collections::HashMap;

use aws_sdk_s3::Client as S3;
use futures::{stream, StreamExt};

use super::s3io::{self, Encryption};
use crate::bucket::backup::with_retries;
use crate::bucket::s3::{self as s3x, Condition, CopyHeaders};
use crate::error::{Error, Result};

/// Where export replicas go.
#[derive(Debug, Clone)]
pub struct ExportReplica {
    /// A client for the replica's region.
    pub s3: S3,
    pub bucket: String,
    pub enc: Encryption,
}

/// What one replication did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replicated {
    pub files: usize,
    pub copied: u64,
    pub copied_bytes: u64,
}

/// How the copies are made.
#[derive(Debug, Clone, Copy)]
pub struct CopyTuning {
    pub parallel: usize,
    pub multipart_threshold: i64,
    pub part_size: i64,
}

impl Default for CopyTuning {
    fn default() -> Self {
        CopyTuning {
            parallel: 16,
            multipart_threshold: 5 * 1024 * 1024 * 1024,
            part_size: 512 * 1024 * 1024,
        }
    }
}

/// The order manifests are copied in: the files they list are all there before any of them,
/// and Backstop's own manifest (what says an export is complete) is the very last.
fn manifest_rank(key: &str) -> Option<u8> {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name {
        "manifest-files.json" => Some(0),
        "manifest-summary.json" => Some(1),
        "backstop-manifest.json" => Some(2),
        _ if name.starts_with("manifest-") && name.ends_with(".json") => Some(1),
        _ => None,
    }
}

/// Copies the export under `root` in `bucket` to the same keys in the replica and checks it.
/// Safe to repeat: files already there with their size are not copied again, manifests are
/// copied again only when they differ.
pub async fn replicate_export(
    s3: &S3,
    bucket: &str,
    root: &str,
    replica: &ExportReplica,
    tuning: CopyTuning,
) -> Result<Replicated> {
    let prefix = format!("{}/", root.trim_end_matches('/'));
    let original = s3io::list(s3, bucket, &prefix).await?;
    let complete = original
        .iter()
        .any(|(k, _)| k.ends_with("/backstop-manifest.json"));
    if !complete {
        return Err(Error::refused(
            "replicate export",
            format!("s3://{bucket}/{prefix} holds no backstop-manifest.json"),
            "only a complete export is replicated; the next run replicates it once it is complete",
        ));
    }
    let there: HashMap<String, i64> = s3io::list(&replica.s3, &replica.bucket, &prefix)
        .await?
        .into_iter()
        .collect();
    type Files = Vec<(String, i64)>;
    let (mut manifests, data): (Files, Files) = original
        .iter()
        .cloned()
        .partition(|(k, _)| manifest_rank(k).is_some());
    manifests.sort_by_key(|(k, _)| manifest_rank(k));

    let mut out = Replicated {
        files: original.len(),
        ..Replicated::default()
    };
    let copy = |key: String, size: i64| async move {
        with_retries(|| {
            s3x::copy(
                &replica.s3,
                (bucket, &key, None),
                None,
                size,
                (&replica.bucket, &key),
                Some(&replica.enc),
                CopyHeaders::Keep,
                Condition::None,
                tuning.multipart_threshold,
                tuning.part_size,
            )
        })
        .await
        .map(|()| size)
    };
    let missing: Vec<(String, i64)> = data
        .into_iter()
        .filter(|(k, size)| there.get(k) != Some(size))
        .collect();
    let results: Vec<Result<i64>> = stream::iter(missing)
        .map(|(k, size)| copy(k, size))
        .buffer_unordered(tuning.parallel.max(1))
        .collect()
        .await;
    for r in results {
        let size = r?;
        out.copied += 1;
        out.copied_bytes += size.max(0) as u64;
    }
    // The manifests, in order, each only once the files before it are there.
    for (key, size) in manifests {
        if there.get(&key) == Some(&size) && same_bytes(s3, bucket, replica, &key).await? {
            continue;
        }
        copy(key, size).await?;
        out.copied += 1;
        out.copied_bytes += size.max(0) as u64;
    }
    verify(s3, bucket, &prefix, &original, replica).await?;
    Ok(out)
}

/// Whether the replica's copy of `key` has the original's bytes.
async fn same_bytes(s3: &S3, bucket: &str, replica: &ExportReplica, key: &str) -> Result<bool> {
    let a = s3io::get(s3, bucket, key).await?;
    let b = s3io::get(&replica.s3, &replica.bucket, key).await?;
    Ok(match (a, b) {
        (Some(a), Some(b)) => blake3::hash(&a) == blake3::hash(&b),
        _ => false,
    })
}

/// Every original file is in the replica with its size, and every manifest byte for byte.
async fn verify(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    original: &[(String, i64)],
    replica: &ExportReplica,
) -> Result<()> {
    let there: HashMap<String, i64> = s3io::list(&replica.s3, &replica.bucket, prefix)
        .await?
        .into_iter()
        .collect();
    let wrong: Vec<&str> = original
        .iter()
        .filter(|(k, size)| there.get(k) != Some(size))
        .map(|(k, _)| k.as_str())
        .collect();
    if let Some(first) = wrong.first() {
        return Err(Error::refused(
            "replicate export",
            format!(
                "{} of {} files of s3://{bucket}/{prefix} are missing or of another size in s3://{}/{prefix} (first: {first})",
                wrong.len(),
                original.len(),
                replica.bucket
            ),
            "the next run copies them again; if it keeps failing, check the replica bucket's permissions and lifecycle",
        ));
    }
    for (key, _) in original.iter().filter(|(k, _)| manifest_rank(k).is_some()) {
        if !same_bytes(s3, bucket, replica, key).await? {
            return Err(Error::refused(
                "replicate export",
                format!(
                    "the replica's s3://{}/{key} differs from the original",
                    replica.bucket
                ),
                "delete the replica's copy of this export so that the next run copies it again",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_go_last_and_backstops_own_very_last() {
        let mut keys = vec![
            "p/T/s/backstop-manifest.json",
            "p/T/s/AWSDynamoDB/x/manifest-summary.json",
            "p/T/s/AWSDynamoDB/x/manifest-files.json",
        ];
        keys.sort_by_key(|k| manifest_rank(k));
        assert_eq!(
            keys,
            [
                "p/T/s/AWSDynamoDB/x/manifest-files.json",
                "p/T/s/AWSDynamoDB/x/manifest-summary.json",
                "p/T/s/backstop-manifest.json"
            ]
        );
        assert_eq!(manifest_rank("p/T/s/AWSDynamoDB/x/data/abc.json.gz"), None);
    }
}
