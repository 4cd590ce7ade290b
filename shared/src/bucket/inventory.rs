//! S3 Inventory as the listing of a very large bucket: instead of paging through
//! ListObjectVersions (1,000 versions a call), a backup reads the newest inventory report S3
//! delivered for the bucket, in AWS's documented CSV format:
//!
//! ```text
//! s3://<destination>/<prefix>/<source-bucket>/<config-id>/<YYYY-MM-DDTHH-MMZ>/manifest.json
//!     {"sourceBucket": …, "fileFormat": "CSV", "creationTimestamp": "<ms>",
//!      "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, …",
//!      "files": [{"key": "<prefix>/…/data/<uuid>.csv.gz", "size": …, "MD5checksum": …}]}
//! ```
//!
//! Each data file is gzip CSV, one quoted field per column of `fileSchema`, keys URL-encoded
//! with `+` for a space. The report must list all versions (`IncludedObjectVersions: All`) with
//! at least Size, LastModifiedDate and ETag; StorageClass is used when present. A report older
//! than the configured age, or none, means the backup lists the bucket itself.

use std::io::Read;

use aws_sdk_s3::Client as S3;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::export::s3io;

/// Where a bucket's inventory reports are, and how old the newest may be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventorySource {
    /// The destination bucket of the reports.
    pub bucket: String,
    /// The key prefix of one configuration's reports, with `{bucket}` for the source bucket:
    /// `inventories/{bucket}/backstop-all-versions`.
    pub prefix: String,
    #[serde(serialize_with = "ser_secs")]
    pub max_age: jiff::SignedDuration,
}

fn ser_secs<S: serde::Serializer>(
    d: &jiff::SignedDuration,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_i64(d.as_secs())
}

impl InventorySource {
    /// `s3://<bucket>/<prefix with {bucket}>`.
    pub fn parse(v: &str, max_age: jiff::SignedDuration) -> std::result::Result<Self, String> {
        let rest = v.trim().strip_prefix("s3://").ok_or_else(|| {
            format!(
                "must be s3://<inventory bucket>/<prefix>/{{bucket}}/<configuration id>, got {:?}",
                crate::report::clip(v, 200)
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        super::check_bucket_name(bucket)?;
        let prefix = prefix.trim_matches('/');
        if !prefix.contains("{bucket}") {
            return Err(
                "the prefix must hold {bucket} where the source bucket's name goes (S3 delivers each bucket's reports under <prefix>/<source bucket>/<configuration id>/)"
                    .into(),
            );
        }
        Ok(InventorySource {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            max_age,
        })
    }

    /// The prefix of `source`'s reports, ending in `/`.
    pub fn prefix_for(&self, source: &str) -> String {
        format!("{}/", self.prefix.replace("{bucket}", source))
    }
}

#[derive(Debug, Deserialize)]
struct RawManifest {
    #[serde(rename = "sourceBucket")]
    source_bucket: String,
    #[serde(rename = "fileFormat")]
    file_format: String,
    #[serde(rename = "fileSchema")]
    file_schema: String,
    #[serde(rename = "creationTimestamp")]
    creation_timestamp: String,
    files: Vec<RawFile>,
}

#[derive(Debug, Deserialize)]
struct RawFile {
    key: String,
}

/// Column positions in the report's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    key: usize,
    version: usize,
    latest: usize,
    delete_marker: usize,
    size: usize,
    modified: usize,
    etag: usize,
    class: Option<usize>,
}

impl Columns {
    fn of(schema: &str) -> std::result::Result<Columns, String> {
        let names: Vec<&str> = schema.split(',').map(str::trim).collect();
        let find = |n: &str| names.iter().position(|c| *c == n);
        let need = |n: &str| {
            find(n).ok_or_else(|| {
                format!("its fileSchema has no {n}: configure the inventory with all object versions (IncludedObjectVersions All) and the fields Size, LastModifiedDate and ETag")
            })
        };
        Ok(Columns {
            key: need("Key")?,
            version: need("VersionId")?,
            latest: need("IsLatest")?,
            delete_marker: need("IsDeleteMarker")?,
            size: need("Size")?,
            modified: need("LastModifiedDate")?,
            etag: need("ETag")?,
            class: find("StorageClass"),
        })
    }
}

/// One inventory report, ready to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub manifest_key: String,
    pub created: Timestamp,
    /// The data files, in the manifest's order.
    pub files: Vec<String>,
    pub columns: Columns,
}

/// A current version as a report (or a listing) gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub version_id: String,
    pub etag: String,
    pub size: i64,
    /// As ListObjectVersions' `LastModified` prints (`aws_smithy_types::DateTime`).
    pub last_modified: String,
    pub storage_class: Option<String>,
}

/// The newest report of `source` no older than the source's `max_age` at `now`, or why there is
/// none to use (the caller lists the bucket itself then). A report that is there but cannot be
/// used as documented is an error that says what to configure.
pub async fn newest(
    s3: &S3,
    inv: &InventorySource,
    source: &str,
    now: Timestamp,
) -> Result<std::result::Result<Report, String>> {
    let prefix = inv.prefix_for(source);
    let mut manifests: Vec<String> = s3io::list(s3, &inv.bucket, &prefix)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with("/manifest.json"))
        .collect();
    // The folders are named by the report's time (YYYY-MM-DDTHH-MMZ): the last is the newest.
    manifests.sort();
    let Some(key) = manifests.pop() else {
        return Ok(Err(format!(
            "no inventory report under s3://{}/{prefix}",
            inv.bucket
        )));
    };
    let url = format!("s3://{}/{key}", inv.bucket);
    let bytes = s3io::get(s3, &inv.bucket, &key)
        .await?
        .ok_or_else(|| Error::Local(format!("{url} vanished while it was read")))?;
    let refuse = |why: String| {
        Error::refused(
            "read inventory report",
            format!("{url}: {why}"),
            "fix the inventory configuration, or unset BACKSTOP_BUCKET_INVENTORY to list the bucket instead",
        )
    };
    let raw: RawManifest = serde_json::from_slice(&bytes)
        .map_err(|e| refuse(format!("not an S3 Inventory manifest ({e})")))?;
    if raw.source_bucket != source {
        return Err(refuse(format!(
            "it is the inventory of {}, not of {source}",
            raw.source_bucket
        )));
    }
    if !raw.file_format.eq_ignore_ascii_case("CSV") {
        return Err(refuse(format!(
            "its format is {}; Backstop reads CSV reports",
            raw.file_format
        )));
    }
    let columns = Columns::of(&raw.file_schema).map_err(refuse)?;
    let created = raw
        .creation_timestamp
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .ok_or_else(|| refuse("its creationTimestamp is not milliseconds since 1970".into()))?;
    if now.duration_since(created) > inv.max_age {
        return Ok(Err(format!(
            "the newest inventory report ({url}, of {created}) is older than {}",
            crate::report::clip(&format!("{:#}", inv.max_age), 40)
        )));
    }
    Ok(Ok(Report {
        manifest_key: key,
        created,
        files: raw.files.into_iter().map(|f| f.key).collect(),
        columns,
    }))
}

/// The current versions in one data file of `report` (delete markers and older versions left
/// out), in the file's order.
pub async fn read_file(s3: &S3, bucket: &str, report: &Report, file: usize) -> Result<Vec<Listed>> {
    let key = report
        .files
        .get(file)
        .ok_or_else(|| Error::Local(format!("inventory report has no data file {file}")))?;
    let url = format!("s3://{bucket}/{key}");
    let gz = s3io::get(s3, bucket, key).await?.ok_or_else(|| {
        Error::refused(
            "read inventory report",
            format!("{url}, named by {}, is missing", report.manifest_key),
            "wait for the next report, or unset BACKSTOP_BUCKET_INVENTORY to list the bucket instead",
        )
    })?;
    parse_rows(&gz, &report.columns).map_err(|why| {
        Error::refused(
            "read inventory report",
            format!("{url}: {why}"),
            "wait for the next report, or unset BACKSTOP_BUCKET_INVENTORY to list the bucket instead",
        )
    })
}

/// Pure: the current versions in a gzip CSV data file.
pub fn parse_rows(gz: &[u8], c: &Columns) -> std::result::Result<Vec<Listed>, String> {
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut text)
        .map_err(|e| format!("not gzip ({e})"))?;
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_slice());
    let mut out = Vec::new();
    for (n, row) in rows.records().enumerate() {
        let row = row.map_err(|e| format!("row {}: {e}", n + 1))?;
        let field = |i: usize| row.get(i).unwrap_or("");
        if field(c.latest) != "true" || field(c.delete_marker) == "true" {
            continue;
        }
        let key = decode_key(field(c.key)).map_err(|e| format!("row {}: {e}", n + 1))?;
        let size = field(c.size)
            .parse::<i64>()
            .map_err(|_| format!("row {}: Size {:?} is not a number", n + 1, field(c.size)))?;
        let modified = aws_smithy_types::DateTime::from_str(
            field(c.modified),
            aws_smithy_types::date_time::Format::DateTime,
        )
        .map_err(|e| format!("row {}: LastModifiedDate: {e}", n + 1))?;
        let version = field(c.version);
        out.push(Listed {
            key,
            version_id: if version.is_empty() { "null" } else { version }.to_owned(),
            etag: field(c.etag).trim_matches('"').to_owned(),
            size,
            last_modified: modified.to_string(),
            storage_class: c
                .class
                .map(|i| field(i).to_owned())
                .filter(|s| !s.is_empty()),
        });
    }
    Ok(out)
}

/// Inventory keys are URL-encoded with `+` for a space (a `+` in a key is `%2B`).
fn decode_key(k: &str) -> std::result::Result<String, String> {
    percent_encoding::percent_decode_str(&k.replace('+', " "))
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| format!("Key is not URL-encoded UTF-8 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    const SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass";

    #[test]
    fn rows_in_the_documented_format_give_current_versions_with_decoded_keys() {
        let c = Columns::of(SCHEMA).unwrap();
        let text = concat!(
            "\"b\",\"a+b%2Bc%20%C3%BC.txt\",\"v2\",\"true\",\"false\",\"12\",\"2026-12-01T10:00:00.000Z\",\"abc\",\"STANDARD\"\n",
            "\"b\",\"a+b%2Bc%20%C3%BC.txt\",\"v1\",\"false\",\"false\",\"10\",\"2026-11-30T10:00:00.000Z\",\"old\",\"STANDARD\"\n",
            "\"b\",\"gone\",\"v9\",\"true\",\"true\",\"\",\"2026-12-01T11:00:00.000Z\",\"\",\"\"\n",
            "\"b\",\"plain\",\"\",\"true\",\"false\",\"0\",\"2026-12-01T12:00:00.000Z\",\"d41d\",\"GLACIER\"\n",
        );
        let rows = parse_rows(&gz(text), &c).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, "a b+c ü.txt");
        assert_eq!(rows[0].version_id, "v2");
        assert_eq!(rows[0].size, 12);
        assert_eq!(rows[0].last_modified, "2026-12-01T10:00:00Z");
        assert_eq!(rows[1].version_id, "null");
        assert_eq!(rows[1].storage_class.as_deref(), Some("GLACIER"));
    }

    #[test]
    fn a_report_without_versions_or_sizes_is_refused_with_what_to_configure() {
        let e = Columns::of("Bucket, Key, Size, LastModifiedDate, ETag").unwrap_err();
        assert!(e.contains("VersionId") && e.contains("All"), "{e}");
        assert!(parse_rows(b"not gzip", &Columns::of(SCHEMA).unwrap()).is_err());
    }

    #[test]
    fn the_source_names_its_prefix_with_the_bucket() {
        let s = InventorySource::parse(
            "s3://inv-bucket/inventories/{bucket}/all-versions/",
            jiff::SignedDuration::from_hours(48),
        )
        .unwrap();
        assert_eq!(
            s.prefix_for("attachments"),
            "inventories/attachments/all-versions/"
        );
        assert!(
            InventorySource::parse("s3://inv/no-placeholder", jiff::SignedDuration::ZERO).is_err()
        );
        assert!(InventorySource::parse("inv/{bucket}", jiff::SignedDuration::ZERO).is_err());
    }
}
