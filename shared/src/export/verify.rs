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

/// Pure: a logical export's `backstop-manifest.json` against what the catalog recorded of the
/// export when it finished. The manifest lies beside the data in the export bucket, where
/// anyone allowed to put an object could rewrite it (and the data with it, consistently): it
/// counts only when it agrees with the catalog (id, summary, count, fingerprint), and what is
/// read is then checked against those figures. `Err` says what differs.
pub fn agrees_with_catalog(
    meta: &ExportMeta,
    manifest: &BackstopManifest,
) -> std::result::Result<(), String> {
    let forged = |what: String| {
        format!("{what}: the manifest is not the one Backstop wrote, and the catalog's record wins")
    };
    if !meta.export_id.is_empty() && manifest.export_id != meta.export_id {
        return Err(forged(format!(
            "backstop-manifest.json names export {:?}, the catalog records {:?}",
            crate::report::clip(&manifest.export_id, 80),
            meta.export_id
        )));
    }
    if let Some(key) = &meta.manifest_key {
        if &manifest.manifest_summary_key != key {
            return Err(forged(format!(
                "backstop-manifest.json names the summary {:?}, the catalog records {key}",
                crate::report::clip(&manifest.manifest_summary_key, 200)
            )));
        }
    }
    if let Some(count) = meta.item_count {
        if manifest.item_count != count {
            return Err(forged(format!(
                "backstop-manifest.json records {} items, the catalog {count}",
                manifest.item_count
            )));
        }
    }
    if let Some(fp) = &meta.fingerprint {
        match &manifest.fingerprint {
            Some(m) if m.same_content(fp) => {}
            Some(m) => {
                return Err(forged(format!(
                    "backstop-manifest.json records the fingerprint {m}, the catalog {fp}"
                )))
            }
            None => {
                return Err(forged(format!(
                    "backstop-manifest.json records no fingerprint, the catalog {fp}"
                )))
            }
        }
    }
    Ok(())
}

/// Reads `backstop-manifest.json` of the export under `root`, checked to point into its own
/// export. Errors name the object and what is wrong.
async fn read_manifest(s3: &S3, bucket: &str, root: &str) -> Result<BackstopManifest> {
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
    Ok(manifest)
}

/// A logical export's `backstop-manifest.json`, read and checked against the catalog's record
/// ([`agrees_with_catalog`]): a manifest that does not agree is reported (an error naming it)
/// and never used.
pub async fn catalog_manifest(s3: &S3, meta: &ExportMeta) -> Result<BackstopManifest> {
    let manifest = read_manifest(s3, &meta.bucket, &meta.root).await?;
    agrees_with_catalog(meta, &manifest)
        .map_err(|why| broken(&backstop_manifest_key(&meta.root), &meta.bucket, why))?;
    Ok(manifest)
}

/// Reads the export under `root` whole and checks it against its own `backstop-manifest.json`
/// (see the module). Errors name the object and what is wrong; an export without
/// `backstop-manifest.json` is not whole. With the catalog's record at hand, use
/// [`verify_meta`]: the manifest alone proves nothing to someone who could rewrite it.
pub async fn verify(s3: &S3, bucket: &str, root: &str) -> Result<Verified> {
    let manifest = read_manifest(s3, bucket, root).await?;
    verify_read(s3, bucket, root, &manifest).await
}

async fn verify_read(
    s3: &S3,
    bucket: &str,
    root: &str,
    manifest: &BackstopManifest,
) -> Result<Verified> {
    let key = backstop_manifest_key(root);
    let read = reader::read_export(s3, bucket, &manifest.manifest_summary_key, |_| {}).await?;
    compare(manifest, &read).map_err(|why| broken(&key, bucket, why))?;
    Ok(Verified {
        items: read.fingerprint.items,
        files: read.files.len(),
        stored_bytes: read.stored_bytes,
        fingerprint: read.fingerprint,
        fingerprint_checked: manifest.fingerprint.is_some(),
    })
}

/// Verifies an export from its catalog record. A logical export is checked against its
/// `backstop-manifest.json` once that agrees with the catalog's record ([`catalog_manifest`]),
/// so that what is read is held to the count and fingerprint the catalog recorded. AWS writes no Backstop manifest for a native export:
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
        let manifest = catalog_manifest(s3, meta).await?;
        return verify_read(s3, &meta.bucket, &meta.root, &manifest).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{ExportType, Made};

    fn fp(seed: &[u8]) -> Fingerprint {
        let mut f = Fingerprint::default();
        f.add_canonical(seed);
        f
    }

    #[test]
    fn a_manifest_counts_only_when_it_agrees_with_the_catalog() {
        let meta = ExportMeta {
            export_id: "01795316400000-abcdef01".into(),
            manifest_key: Some(
                "p/T/s/AWSDynamoDB/01795316400000-abcdef01/manifest-summary.json".into(),
            ),
            item_count: Some(5),
            fingerprint: Some(fp(b"five items")),
            ..ExportMeta::planned(
                Made::Logical,
                ExportType::FullExport,
                "b",
                "p/T/s".into(),
                "2026-11-22T03:00:00Z".parse().unwrap(),
            )
        };
        let own = BackstopManifest {
            format: 1,
            table: "T".into(),
            table_arn: String::new(),
            slot: "2026-11-22T03:00:00Z".into(),
            mode: Made::Logical,
            export_type: ExportType::FullExport,
            export_id: meta.export_id.clone(),
            export_arn: None,
            manifest_summary_key: meta.manifest_key.clone().unwrap(),
            key_schema: serde_json::Value::Null,
            item_count: 5,
            bytes: 100,
            stored_bytes: 60,
            fingerprint: meta.fingerprint,
            segments: vec![],
            started_at: String::new(),
            finished_at: String::new(),
        };
        assert_eq!(agrees_with_catalog(&meta, &own), Ok(()));
        // A forged "empty" manifest, consistent with forged files beside it.
        let empty = BackstopManifest {
            item_count: 0,
            fingerprint: Some(Fingerprint::default()),
            ..own.clone()
        };
        let e = agrees_with_catalog(&meta, &empty).unwrap_err();
        assert!(e.contains("records 0 items, the catalog 5"), "{e}");
        assert!(e.contains("the catalog's record wins"), "{e}");
        let other_data = BackstopManifest {
            fingerprint: Some(fp(b"other items")),
            ..own.clone()
        };
        assert!(agrees_with_catalog(&meta, &other_data)
            .unwrap_err()
            .contains("fingerprint"));
        let elsewhere = BackstopManifest {
            manifest_summary_key: "p/T/s/AWSDynamoDB/forged/manifest-summary.json".into(),
            ..own.clone()
        };
        assert!(agrees_with_catalog(&meta, &elsewhere)
            .unwrap_err()
            .contains("names the summary"));
        let unfingerprinted = BackstopManifest {
            fingerprint: None,
            ..own
        };
        assert!(agrees_with_catalog(&meta, &unfingerprinted).is_err());
    }
}
