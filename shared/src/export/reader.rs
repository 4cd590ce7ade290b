//! Reads an export back, native or logical alike: the summary, the file manifest, every data
//! file checked against its MD5 and item count, every line parsed into an item. Errors name the
//! object and the line.

use std::io::{BufRead, BufReader};

use aws_sdk_s3::Client as S3;
use base64::Engine;
use flate2::read::MultiGzDecoder;
use md5::{Digest, Md5};

use super::manifest::{self, FileEntry, Summary};
use super::s3io;
use crate::ddbjson::{self, Item};
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprinter;

/// What reading an export found.
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub summary: Summary,
    pub files: Vec<FileEntry>,
    pub fingerprint: crate::fingerprint::Fingerprint,
    pub stored_bytes: u64,
}

fn broken(key: &str, bucket: &str, message: String) -> Error {
    Error::Aws {
        operation: "read export",
        resource: format!("s3://{bucket}/{key}"),
        code: None,
        message,
        retryable: false,
        hint:
            "the export is damaged or incomplete; take a new one and do not restore from this one"
                .into(),
    }
}

/// Finds `manifest-summary.json` under `<root>/AWSDynamoDB/`. With several (an export retried
/// under a new id), the one whose `exportArn` is `export_arn`, when given.
pub async fn find_summary(
    s3: &S3,
    bucket: &str,
    root: &str,
    export_arn: Option<&str>,
) -> Result<Option<(String, Summary)>> {
    let keys = s3io::list(s3, bucket, &format!("{root}/AWSDynamoDB/")).await?;
    for (key, _) in keys
        .iter()
        .filter(|(k, _)| k.ends_with("/manifest-summary.json"))
    {
        let summary = read_summary(s3, bucket, key).await?;
        if export_arn.is_none_or(|a| a == summary.export_arn) {
            return Ok(Some((key.clone(), summary)));
        }
    }
    Ok(None)
}

pub async fn read_summary(s3: &S3, bucket: &str, key: &str) -> Result<Summary> {
    let bytes = s3io::get(s3, bucket, key)
        .await?
        .ok_or_else(|| broken(key, bucket, "the summary manifest is missing".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| broken(key, bucket, format!("not a manifest-summary.json: {e}")))
}

pub async fn read_files(s3: &S3, bucket: &str, summary: &Summary) -> Result<Vec<FileEntry>> {
    let key = &summary.manifest_files_s3_key;
    let bytes = s3io::get(s3, bucket, key)
        .await?
        .ok_or_else(|| broken(key, bucket, "the file manifest is missing".into()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| broken(key, bucket, "the file manifest is not UTF-8".into()))?;
    let files = manifest::parse_files(&text).map_err(|e| broken(key, bucket, e))?;
    let sum: u64 = files.iter().map(|f| f.item_count).sum();
    if sum != summary.item_count {
        return Err(broken(
            key,
            bucket,
            format!(
                "the files hold {sum} items by their manifest, the summary says {}",
                summary.item_count
            ),
        ));
    }
    Ok(files)
}

/// Reads every item of the export whose summary is at `summary_key`, calling `each` per item,
/// and returns the figures. Fails on the first mismatch: a missing file, a wrong MD5, a line
/// that is not an item, a count that differs from the manifest.
pub async fn read_export<F>(
    s3: &S3,
    bucket: &str,
    summary_key: &str,
    mut each: F,
) -> Result<ReadBack>
where
    F: FnMut(Item),
{
    let summary = read_summary(s3, bucket, summary_key).await?;
    let files = read_files(s3, bucket, &summary).await?;
    let mut fp = Fingerprinter::default();
    let mut stored = 0u64;
    for f in &files {
        let key = &f.data_file_s3_key;
        let bytes = s3io::get(s3, bucket, key).await?.ok_or_else(|| {
            broken(
                key,
                bucket,
                "a data file named by the manifest is missing".into(),
            )
        })?;
        stored += bytes.len() as u64;
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&bytes));
        if md5 != f.md5_checksum {
            return Err(broken(
                key,
                bucket,
                format!("MD5 is {md5}, the manifest says {}", f.md5_checksum),
            ));
        }
        let mut count = 0u64;
        let reader = BufReader::new(MultiGzDecoder::new(&bytes[..]));
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| broken(key, bucket, format!("line {}: {e}", i + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let item = ddbjson::item_from_line(&line)
                .map_err(|e| broken(key, bucket, format!("line {}: {e}", i + 1)))?;
            fp.add(&item)
                .map_err(|e| broken(key, bucket, format!("line {}: {e}", i + 1)))?;
            each(item);
            count += 1;
        }
        if count != f.item_count {
            return Err(broken(
                key,
                bucket,
                format!("holds {count} items, the manifest says {}", f.item_count),
            ));
        }
    }
    Ok(ReadBack {
        summary,
        files,
        fingerprint: fp.fingerprint,
        stored_bytes: stored,
    })
}
