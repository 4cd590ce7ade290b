//! Verifies an export as validate does: everything the reader checks (manifests consistent,
//! every data file present with the manifest's ETag and MD5, every line an item, every count),
//! then the figures Backstop recorded when it wrote the export (`backstop-manifest.json`): the
//! item count, and for a logical export the fingerprint. The comparison is pure
//! ([`compare`]); [`verify`] does the reading.

use aws_sdk_s3::Client as S3;

use super::manifest::BackstopManifest;
use super::reader::{self, broken, ReadBack};
use super::{backstop_manifest_key, s3io, ExportMeta, Made};
use crate::error::Result;
use crate::fingerprint::Fingerprint;

/// What a verification that passed found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Whether the fingerprint read was compared with one recorded before (Backstop's manifest
    /// of a logical export, or a native export's first verification).
    pub fingerprint_checked: bool,
    pub items: u64,
    pub files: usize,
    pub stored_bytes: u64,
    /// The fingerprint of the data as read; for an export whose manifest recorded none (a
    /// native one), the one to record.
    pub fingerprint: Fingerprint,
}

/// What reading found against what the Backstop manifest recorded; `Err` says what differs.
pub fn compare(manifest: &BackstopManifest, read: &ReadBack) -> std::result::Result<(), String> {
    if read.summary.item_count != manifest.item_count {
        return Err(format!(
            "backstop-manifest.json records {} items, manifest-summary.json {}",
            manifest.item_count, read.summary.item_count
        ));
    }
    if read.fingerprint.items != manifest.item_count {
        return Err(format!(
            "the data files hold {} items, backstop-manifest.json records {}",
            read.fingerprint.items, manifest.item_count
        ));
    }
    if let Some(recorded) = &manifest.fingerprint {
        if !recorded.same_content(&read.fingerprint) {
            return Err(format!(
                "the data's fingerprint is {}, backstop-manifest.json recorded {recorded}: \
                 the items differ from the ones exported",
                read.fingerprint
            ));
        }
    }
    Ok(())
}

/// Reads the export under `root` whole and checks it (see the module). Errors name the object
/// and what is wrong; an export without `backstop-manifest.json` is not whole.
pub async fn verify(s3: &S3, bucket: &str, root: &str) -> Result<Verified> {
    let key = backstop_manifest_key(root);
    let bytes = s3io::get(s3, bucket, &key).await?.ok_or_else(|| {
        broken(
            &key,
            bucket,
            "backstop-manifest.json is missing: the export never finished, or it was removed"
                .into(),
        )
    })?;
    let manifest: BackstopManifest = serde_json::from_slice(&bytes)
        .map_err(|e| broken(&key, bucket, format!("not a backstop-manifest.json: {e}")))?;
    // The manifest must point into its own export, not at another one of the bucket.
    if !manifest
        .manifest_summary_key
        .starts_with(&format!("{root}/"))
        || !manifest
            .manifest_summary_key
            .ends_with("/manifest-summary.json")
    {
        return Err(broken(
            &key,
            bucket,
            format!(
                "it names the summary {:?}, which is not this export's (under {root}/)",
                crate::report::clip(&manifest.manifest_summary_key, 200)
            ),
        ));
    }
    let read = reader::read_export(s3, bucket, &manifest.manifest_summary_key, |_| {}).await?;
    compare(&manifest, &read).map_err(|why| broken(&key, bucket, why))?;
    Ok(Verified {
        items: read.fingerprint.items,
        files: read.files.len(),
        stored_bytes: read.stored_bytes,
        fingerprint: read.fingerprint,
        fingerprint_checked: manifest.fingerprint.is_some(),
    })
}

/// Verifies an export from its catalog record. A logical export is checked against its
/// `backstop-manifest.json` ([`verify`]). AWS writes no Backstop manifest for a native export:
/// its manifests are read from the key the catalog recorded when the export finished (or found
/// under its root), every data file checked as for any export, the count compared with the one
/// recorded, and the fingerprint with `recorded` (a first verification's) when there is one.
/// An incremental export's lines are change records; they are read, counted and fingerprinted
/// as such.
pub async fn verify_meta(
    s3: &S3,
    meta: &ExportMeta,
    recorded: Option<&Fingerprint>,
) -> Result<Verified> {
    if meta.made == Made::Logical {
        return verify(s3, &meta.bucket, &meta.root).await;
    }
    let bucket = &meta.bucket;
    let summary_key = match &meta.manifest_key {
        Some(k) => k.clone(),
        None => reader::find_summary(s3, bucket, &meta.root, meta.export_arn.as_deref())
            .await?
            .map(|(k, _)| k)
            .ok_or_else(|| {
                broken(
                    &format!("{}/AWSDynamoDB/", meta.root),
                    bucket,
                    "no manifest-summary.json for this export".into(),
                )
            })?,
    };
    let read = reader::read_export(s3, bucket, &summary_key, |_| {}).await?;
    compare_native(meta, recorded, &read).map_err(|why| broken(&summary_key, bucket, why))?;
    Ok(Verified {
        items: read.fingerprint.items,
        files: read.files.len(),
        stored_bytes: read.stored_bytes,
        fingerprint: read.fingerprint,
        fingerprint_checked: recorded.is_some(),
    })
}

/// Pure: a native export as read against what the catalog recorded of it.
pub fn compare_native(
    meta: &ExportMeta,
    recorded: Option<&Fingerprint>,
    read: &ReadBack,
) -> std::result::Result<(), String> {
    if let Some(count) = meta.item_count {
        if read.summary.item_count != count {
            return Err(format!(
                "manifest-summary.json says {} items, the catalog recorded {count} when the export finished",
                read.summary.item_count
            ));
        }
    }
    if let Some(fp) = recorded {
        if !fp.same_content(&read.fingerprint) {
            return Err(format!(
                "the data's fingerprint is {}, its first verification recorded {fp}: the data changed since",
                read.fingerprint
            ));
        }
    }
    Ok(())
}
