//! Reads an export back, native or logical alike: the summary, the file manifest, every data
//! file checked against its ETag, MD5 and item count, every line parsed into an item. Errors
//! name the object and the line. Data files are streamed (a chunk of gzip and a line at a time),
//! so memory does not grow with the export.

use std::io::Write;

use aws_sdk_s3::Client as S3;
use base64::Engine;
use flate2::write::MultiGzDecoder;
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

pub(crate) fn broken(key: &str, bucket: &str, message: String) -> Error {
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
    let summary: Summary = serde_json::from_slice(&bytes)
        .map_err(|e| broken(key, bucket, format!("not a manifest-summary.json: {e}")))?;
    // What the reader knows how to read; anything else would be misread line by line.
    if summary.output_format != "DYNAMODB_JSON" {
        return Err(broken(
            key,
            bucket,
            format!(
                "outputFormat is {:?}: Backstop reads DYNAMODB_JSON exports only",
                crate::report::clip(&summary.output_format, 40)
            ),
        ));
    }
    if let Some(t) = summary.export_type.as_deref() {
        if t != "FULL_EXPORT" && t != "INCREMENTAL_EXPORT" {
            return Err(broken(
                key,
                bucket,
                format!(
                    "exportType is {:?}, neither FULL_EXPORT nor INCREMENTAL_EXPORT",
                    crate::report::clip(t, 40)
                ),
            ));
        }
    }
    Ok(summary)
}

/// The folder of an object key (`a/b/c.json` -> `a/b/`), where an export's manifests and data
/// must all be.
fn folder(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

/// A key one manifest names must be in `dir` (the export's own folder): never empty, never
/// another object of the bucket, which a rewritten manifest could otherwise have read.
fn check_inside(named: &str, dir: &str, by: &str, bucket: &str, what: &str) -> Result<()> {
    if named.is_empty() || dir.is_empty() || !named.starts_with(dir) || named.len() == dir.len() {
        return Err(broken(
            by,
            bucket,
            format!(
                "it names {what} {:?}, which is not in the export's folder {dir}",
                crate::report::clip(named, 200)
            ),
        ));
    }
    Ok(())
}

/// The file manifest the summary at `summary_key` names, read and checked: in the summary's own
/// folder, every data file in its folder, the counts adding up.
pub async fn read_files(
    s3: &S3,
    bucket: &str,
    summary_key: &str,
    summary: &Summary,
) -> Result<Vec<FileEntry>> {
    let key = &summary.manifest_files_s3_key;
    check_inside(
        key,
        folder(summary_key),
        summary_key,
        bucket,
        "its file manifest",
    )?;
    let bytes = s3io::get(s3, bucket, key)
        .await?
        .ok_or_else(|| broken(key, bucket, "the file manifest is missing".into()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| broken(key, bucket, "the file manifest is not UTF-8".into()))?;
    let files = manifest::parse_files(&text).map_err(|e| broken(key, bucket, e))?;
    for f in &files {
        check_inside(&f.data_file_s3_key, folder(key), key, bucket, "a data file")?;
    }
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

/// Where read items go: `take` gets each item as its line completes, `drain` is awaited between
/// the chunks of a data file (and at the end of each), so that a loader writes items out as
/// they come and memory does not grow with the export.
pub trait Sink {
    fn take(&mut self, item: Item);
    /// A change record of an incremental export (`Keys`, and `NewImage`/`OldImage` when the
    /// record holds them, each a map); ignored unless the sink applies changes.
    fn change(&mut self, _record: Item) {}
    fn drain(&mut self) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// A closure as a [`Sink`] with nothing to drain.
struct Each<F>(F);

impl<F: FnMut(Item)> Sink for Each<F> {
    fn take(&mut self, item: Item) {
        (self.0)(item);
    }
    fn drain(&mut self) -> impl std::future::Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Reads every item of the export whose summary is at `summary_key`, calling `each` per item,
/// and returns the figures. Fails on the first mismatch: a missing file, an ETag or MD5 other
/// than the manifest's, a truncated or corrupt gzip stream, a line that is not an item, a count
/// that differs from the manifest. A file's MD5 is known only once it has been read, so `each`
/// may have seen items of a file that then fails: on an error, discard what `each` gathered.
pub async fn read_export<F>(s3: &S3, bucket: &str, summary_key: &str, each: F) -> Result<ReadBack>
where
    F: FnMut(Item),
{
    read_export_into(s3, bucket, summary_key, &mut Each(each)).await
}

/// [`read_export`] into a [`Sink`]. The same caveat: a file that fails its MD5 or count after
/// some of its items were drained leaves them drained; read an export whole (verify it) before
/// loading it anywhere that matters.
pub async fn read_export_into<S: Sink>(
    s3: &S3,
    bucket: &str,
    summary_key: &str,
    sink: &mut S,
) -> Result<ReadBack> {
    let summary = read_summary(s3, bucket, summary_key).await?;
    let files = read_files(s3, bucket, summary_key, &summary).await?;
    // An incremental export holds change records, not items: each is read and counted, and
    // fingerprinted as one map (Keys and images), and handed to the sink as a change.
    let changes = summary.export_type.as_deref() == Some("INCREMENTAL_EXPORT");
    let mut fp = Fingerprinter::default();
    let mut stored = 0u64;
    for f in &files {
        stored += read_data_file(s3, bucket, f, changes, &mut fp, sink).await?;
    }
    Ok(ReadBack {
        summary,
        files,
        fingerprint: fp.fingerprint,
        stored_bytes: stored,
    })
}

/// Reads one data file of an export into `sink`, adding its items (or change records, when
/// `changes`) to `fp`, with every check [`read_export_into`] makes of a file; returns its stored
/// size. For work that resumes between files (the `restore` function's load).
pub async fn read_file_into<S: Sink>(
    s3: &S3,
    bucket: &str,
    f: &FileEntry,
    changes: bool,
    fp: &mut Fingerprinter,
    sink: &mut S,
) -> Result<u64> {
    read_data_file(s3, bucket, f, changes, fp, sink).await
}

/// Lines of decompressed text, handed on as each one completes.
struct Lines<'a, S: Sink> {
    pending: Vec<u8>,
    /// Lines seen so far (blank ones too, so that numbers match the file's).
    line: u64,
    items: u64,
    /// Lines are change records of an incremental export, not items.
    changes: bool,
    fp: &'a mut Fingerprinter,
    sink: &'a mut S,
    /// The first bad line, kept until the writer's caller can report it.
    bad: Option<String>,
}

impl<S: Sink> Lines<'_, S> {
    /// The first bad line met so far, if any, as an error to return.
    fn fault(&mut self) -> std::result::Result<(), String> {
        self.bad.take().map_or(Ok(()), Err)
    }

    fn take(&mut self, line: &[u8]) {
        self.line += 1;
        if self.bad.is_some() {
            return;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t.trim_end_matches('\r'),
            Err(e) => {
                self.bad = Some(format!("line {}: not UTF-8 ({e})", self.line));
                return;
            }
        };
        if text.trim().is_empty() {
            return;
        }
        let parsed = if self.changes {
            ddbjson::change_from_line(text)
        } else {
            ddbjson::item_from_line(text)
        };
        let item = match parsed {
            Ok(i) => i,
            Err(e) => {
                self.bad = Some(format!("line {}: {e}", self.line));
                return;
            }
        };
        if let Err(e) = self.fp.add(&item) {
            self.bad = Some(format!("line {}: {e}", self.line));
            return;
        }
        if self.changes {
            self.sink.change(item);
        } else {
            self.sink.take(item);
        }
        self.items += 1;
    }
}

impl<S: Sink> Write for Lines<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                self.take(&rest[..nl]);
            } else {
                self.pending.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut self.pending);
                self.take(&line);
                self.pending = line;
                self.pending.clear();
            }
            rest = &rest[nl + 1..];
        }
        self.pending.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams one data file: ETag, MD5, gzip, every line, the count. Returns its stored size.
async fn read_data_file<S: Sink>(
    s3: &S3,
    bucket: &str,
    f: &FileEntry,
    changes: bool,
    fp: &mut Fingerprinter,
    sink: &mut S,
) -> Result<u64> {
    let key = &f.data_file_s3_key;
    let (mut body, etag) = s3io::open(s3, bucket, key).await?.ok_or_else(|| {
        broken(
            key,
            bucket,
            "a data file named by the manifest is missing".into(),
        )
    })?;
    if !f.etag.is_empty() && !etag.is_empty() && etag != f.etag {
        return Err(broken(
            key,
            bucket,
            format!("ETag is {etag}, the manifest says {}", f.etag),
        ));
    }
    let mut md5 = Md5::new();
    let mut stored = 0u64;
    let mut gz = MultiGzDecoder::new(Lines {
        pending: Vec::new(),
        line: 0,
        items: 0,
        changes,
        fp,
        sink,
        bad: None,
    });
    loop {
        let chunk = match body.try_next().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                return Err(Error::Aws {
                    operation: "GetObject",
                    resource: format!("s3://{bucket}/{key}"),
                    code: None,
                    message: format!("reading the body at byte {stored}: {e}"),
                    retryable: true,
                    hint: "a retry may succeed".into(),
                })
            }
        };
        md5.update(&chunk);
        stored += chunk.len() as u64;
        let written = gz.write_all(&chunk);
        gz.get_mut()
            .fault()
            .map_err(|bad| broken(key, bucket, bad))?;
        written.map_err(|e| {
            broken(
                key,
                bucket,
                format!("not a whole gzip stream (at stored byte {stored}): {e}"),
            )
        })?;
        gz.get_mut().sink.drain().await?;
    }
    let finished = gz.try_finish();
    let lines = gz.get_mut();
    lines.fault().map_err(|bad| broken(key, bucket, bad))?;
    finished.map_err(|e| {
        broken(
            key,
            bucket,
            format!("the gzip stream ends early (after {stored} bytes): {e}"),
        )
    })?;
    if !lines.pending.is_empty() {
        let last = std::mem::take(&mut lines.pending);
        lines.take(&last);
        lines.fault().map_err(|bad| broken(key, bucket, bad))?;
    }
    lines.sink.drain().await?;
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5.finalize());
    if md5 != f.md5_checksum {
        return Err(broken(
            key,
            bucket,
            format!("MD5 is {md5}, the manifest says {}", f.md5_checksum),
        ));
    }
    if lines.items != f.item_count {
        return Err(broken(
            key,
            bucket,
            format!(
                "holds {} items, the manifest says {}",
                lines.items, f.item_count
            ),
        ));
    }
    Ok(stored)
}
