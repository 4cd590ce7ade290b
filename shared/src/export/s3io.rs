//! S3 for exports: a gzip data file streamed in parts (multipart above one part; each part
//! waits in a spool file in the temporary directory, so memory stays flat however large the
//! export), small JSON objects, reads, listings and deletes.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::PathBuf;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_sdk_s3::Client as S3;
use base64::Engine;
use flate2::write::GzEncoder;
use flate2::Compression;
use md5::{Digest, Md5};

use super::manifest::FileEntry;
use crate::error::{Error, Result};

/// Compressed bytes held before a part is sent: above S3's 5 MiB minimum part size.
pub const PART_BYTES: u64 = 8 * 1024 * 1024;

/// Where a part's compressed bytes wait until they are sent: a file of its own in the temporary
/// directory (Lambda's `/tmp`), removed when the data file is done with, so that a process
/// holds no part in memory. The MD5 of everything written is kept on the way through.
struct Spool {
    path: PathBuf,
    file: File,
    /// Bytes in the file now (the part being filled).
    len: u64,
    md5: Md5,
}

/// Spool files of processes that were killed (a Lambda timeout, Ctrl-C) are not removed by
/// them; Lambda keeps `/tmp` for the next invocation in the same environment. Once per process,
/// before its first spool file, those untouched for an hour are removed (a live one is written
/// or read every few seconds), so that they cannot fill the disk.
fn sweep_stale_spools() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        let hour = std::time::Duration::from_secs(3600);
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with("backstop-part-") && name.ends_with(".gz")) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > hour);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    });
}

impl Spool {
    fn create() -> std::io::Result<Spool> {
        sweep_stale_spools();
        let path = std::env::temp_dir().join(format!("backstop-part-{}.gz", uuid::Uuid::new_v4()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Spool {
            path,
            file,
            len: 0,
            md5: Md5::new(),
        })
    }

    /// Empties the file for the next part.
    fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.len = 0;
        Ok(())
    }

    /// The file's bytes as a request body that can be read again on a retry.
    async fn body(&self) -> Result<ByteStream> {
        ByteStream::read_from()
            .path(&self.path)
            .length(aws_sdk_s3::primitives::Length::Exact(self.len))
            .build()
            .await
            .map_err(|e| {
                Error::Local(format!(
                    "reading the spooled part {}: {e}",
                    self.path.display()
                ))
            })
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.md5.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Server-side encryption for everything an export writes.
#[derive(Debug, Clone)]
pub struct Encryption {
    pub kms_key: Option<String>,
}

impl Encryption {
    fn algorithm(&self) -> ServerSideEncryption {
        if self.kms_key.is_some() {
            ServerSideEncryption::AwsKms
        } else {
            ServerSideEncryption::Aes256
        }
    }

    pub fn algorithm_name(&self) -> &'static str {
        if self.kms_key.is_some() {
            "KMS"
        } else {
            "AES256"
        }
    }
}

fn resource(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// One gzip data file being written.
pub struct DataFile<'a> {
    s3: &'a S3,
    bucket: String,
    key: String,
    enc: Encryption,
    gz: GzEncoder<Spool>,
    stored: u64,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    pub items: u64,
    /// Uncompressed bytes written.
    pub bytes: u64,
}

impl<'a> DataFile<'a> {
    /// A new data file; its spool file is made in the temporary directory.
    pub fn new(s3: &'a S3, bucket: &str, key: String, enc: &Encryption) -> Result<DataFile<'a>> {
        let spool = Spool::create().map_err(|e| {
            Error::Local(format!(
                "making a spool file in {} for {}: {e} (the export needs about {} MiB free there per segment)",
                std::env::temp_dir().display(),
                resource(bucket, &key),
                PART_BYTES >> 20
            ))
        })?;
        Ok(DataFile {
            s3,
            bucket: bucket.to_owned(),
            key,
            enc: enc.clone(),
            gz: GzEncoder::new(spool, Compression::fast()),
            stored: 0,
            upload_id: None,
            parts: Vec::new(),
            items: 0,
            bytes: 0,
        })
    }

    fn spool_error(&self, doing: &str, e: std::io::Error) -> Error {
        Error::Local(format!(
            "{doing} the spool file {} of {}: {e}",
            self.gz.get_ref().path.display(),
            resource(&self.bucket, &self.key)
        ))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends lines (one item each, `items` of them); sends a part when enough is held.
    pub async fn write(&mut self, lines: &[u8], items: u64) -> Result<()> {
        self.gz
            .write_all(lines)
            .map_err(|e| self.spool_error("writing gzip to", e))?;
        self.items += items;
        self.bytes += lines.len() as u64;
        if self.gz.get_ref().len >= PART_BYTES {
            self.send_part().await?;
        }
        Ok(())
    }

    /// Sends what the spool holds as the next part, then empties the spool.
    async fn send_part(&mut self) -> Result<()> {
        let spool = self.gz.get_ref();
        let body = spool.body().await?;
        let len = spool.len;
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let mut req = self
                    .s3
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type("application/gzip")
                    .server_side_encryption(self.enc.algorithm());
                if let Some(k) = &self.enc.kms_key {
                    req = req.ssekms_key_id(k);
                }
                let out = req.send().await.map_err(|e| {
                    Error::aws(
                        "CreateMultipartUpload",
                        resource(&self.bucket, &self.key),
                        e,
                    )
                })?;
                let id = out.upload_id.ok_or_else(|| Error::Aws {
                    operation: "CreateMultipartUpload",
                    resource: resource(&self.bucket, &self.key),
                    code: None,
                    message: "no UploadId in the answer".into(),
                    retryable: true,
                    hint: "a retry may succeed".into(),
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let out = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .content_length(len as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::aws("UploadPart", resource(&self.bucket, &self.key), e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
        self.stored += len;
        let cleared = self.gz.get_mut().clear();
        cleared.map_err(|e| self.spool_error("emptying", e))
    }

    /// Ends the file: the last bytes go up (one PutObject when it never grew past a part,
    /// otherwise the last part and CompleteMultipartUpload). Returns its manifest line.
    pub async fn finish(mut self) -> Result<FileEntry> {
        self.gz
            .try_finish()
            .map_err(|e| self.spool_error("finishing gzip in", e))?;
        let etag = if self.upload_id.is_none() {
            let spool = self.gz.get_ref();
            let (len, body) = (spool.len, spool.body().await?);
            let md5 =
                base64::engine::general_purpose::STANDARD.encode(spool.md5.clone().finalize());
            self.stored += len;
            let mut req = self
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type("application/gzip")
                .content_md5(&md5)
                .content_length(len as i64)
                .server_side_encryption(self.enc.algorithm())
                .body(body);
            if let Some(k) = &self.enc.kms_key {
                req = req.ssekms_key_id(k);
            }
            req.send()
                .await
                .map_err(|e| Error::aws("PutObject", resource(&self.bucket, &self.key), e))?
                .e_tag
                .unwrap_or_default()
        } else {
            if self.gz.get_ref().len > 0 {
                self.send_part().await?;
            }
            let upload_id = self.upload_id.clone().unwrap_or_default();
            let result = self
                .s3
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(self.parts.clone()))
                        .build(),
                )
                .send()
                .await;
            match result {
                Ok(out) => out.e_tag.unwrap_or_default(),
                // An earlier attempt completed it and its answer was lost: the object is there
                // when it has exactly our length.
                Err(e)
                    if e.as_service_error().and_then(|s| {
                        aws_smithy_types::error::metadata::ProvideErrorMetadata::code(s)
                    }) == Some("NoSuchUpload") =>
                {
                    let head = self
                        .s3
                        .head_object()
                        .bucket(&self.bucket)
                        .key(&self.key)
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws("HeadObject", resource(&self.bucket, &self.key), e)
                        })?;
                    if head.content_length != Some(self.stored as i64) {
                        return Err(Error::Aws {
                            operation: "CompleteMultipartUpload",
                            resource: resource(&self.bucket, &self.key),
                            code: Some("NoSuchUpload".into()),
                            message: format!(
                                "the upload is gone and the object holds {:?} bytes, not the {} written",
                                head.content_length, self.stored
                            ),
                            retryable: true,
                            hint: "the export redoes this file on its next attempt".into(),
                        });
                    }
                    head.e_tag.unwrap_or_default()
                }
                Err(e) => {
                    return Err(Error::aws(
                        "CompleteMultipartUpload",
                        resource(&self.bucket, &self.key),
                        e,
                    ))
                }
            }
        };
        Ok(FileEntry {
            item_count: self.items,
            md5_checksum: base64::engine::general_purpose::STANDARD
                .encode(self.gz.get_ref().md5.clone().finalize()),
            etag: etag.trim_matches('"').to_owned(),
            data_file_s3_key: self.key.clone(),
        })
    }

    /// Gives up on the file: an unfinished multipart upload is aborted (best effort; the bucket's
    /// lifecycle rule removes any left over).
    pub async fn abandon(self) {
        if let Some(id) = &self.upload_id {
            let _ = self
                .s3
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await;
        }
    }

    /// Bytes stored so far (compressed).
    pub fn stored(&self) -> u64 {
        self.stored + self.gz.get_ref().len
    }
}

/// Writes a small object (a manifest) in one PutObject.
pub async fn put_small(
    s3: &S3,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    enc: &Encryption,
) -> Result<String> {
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
    let mut req = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .content_md5(md5)
        .server_side_encryption(enc.algorithm())
        .body(ByteStream::from(body));
    if let Some(k) = &enc.kms_key {
        req = req.ssekms_key_id(k);
    }
    let out = req
        .send()
        .await
        .map_err(|e| Error::aws("PutObject", resource(bucket, key), e))?;
    Ok(out.e_tag.unwrap_or_default())
}

/// Reads a whole object. `Ok(None)` when there is no such key.
/// S3 keys are at most 1,024 bytes. A longer one (only a damaged manifest names such a key) is
/// refused here: the SDK panics building the request's URI for a very long one.
fn check_key(bucket: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::Aws {
            operation: "GetObject",
            resource: resource(bucket, &crate::report::clip(key, 200)),
            code: None,
            message: format!("{} bytes is no S3 key (1 to 1,024 bytes)", key.len()),
            retryable: false,
            hint: "the manifest that named it is damaged".into(),
        });
    }
    Ok(())
}

pub async fn get(s3: &S3, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
    check_key(bucket, key)?;
    let out = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(Error::aws("GetObject", resource(bucket, key), e)),
    };
    let bytes = out.body.collect().await.map_err(|e| Error::Aws {
        operation: "GetObject",
        resource: resource(bucket, key),
        code: None,
        message: format!("reading the body: {e}"),
        retryable: true,
        hint: "a retry may succeed".into(),
    })?;
    Ok(Some(bytes.into_bytes().to_vec()))
}

/// An object opened for reading as a stream, with its ETag (without quotes); `None` when there
/// is no such key. The body is read chunk by chunk, never whole.
pub async fn open(s3: &S3, bucket: &str, key: &str) -> Result<Option<(ByteStream, String)>> {
    check_key(bucket, key)?;
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(Some((
            o.body,
            o.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
        ))),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(Error::aws("GetObject", resource(bucket, key), e)),
    }
}

/// Every key under `prefix` (all pages) with its size.
pub async fn list(s3: &S3, bucket: &str, prefix: &str) -> Result<Vec<(String, i64)>> {
    Ok(list_with_etags(s3, bucket, prefix)
        .await?
        .into_iter()
        .map(|(k, size, _)| (k, size))
        .collect())
}

/// Every key under `prefix` (all pages) with its size and ETag (without quotes).
pub async fn list_with_etags(
    s3: &S3,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, i64, String)>> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws("ListObjectsV2", resource(bucket, prefix), e))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push((
                    k.to_owned(),
                    o.size().unwrap_or(0),
                    o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                ));
            }
        }
    }
    Ok(out)
}

/// Deletes every object under `prefix` (which must end in `/`), 1,000 keys a call. Returns how
/// many keys were deleted. Safe to repeat: keys already gone are not errors.
pub async fn delete_prefix(s3: &S3, bucket: &str, prefix: &str) -> Result<usize> {
    if !prefix.ends_with('/') || prefix.len() < 2 {
        return Err(Error::Local(format!(
            "refusing to delete under {prefix:?}: an export root ends in '/'"
        )));
    }
    let keys = list(s3, bucket, prefix).await?;
    for chunk in keys.chunks(1000) {
        let chunk: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
        delete_keys(s3, bucket, &chunk).await?;
    }
    Ok(keys.len())
}

/// Deletes `keys` (at most 1,000: one DeleteObjects call), failing on any key S3 reports it could
/// not delete. Keys already gone are not errors.
pub async fn delete_keys(s3: &S3, bucket: &str, keys: &[String]) -> Result<()> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    if keys.is_empty() {
        return Ok(());
    }
    let objects = keys
        .iter()
        .map(|k| ObjectIdentifier::builder().key(k).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Local(e.to_string()))?;
    let out = s3
        .delete_objects()
        .bucket(bucket)
        .delete(
            Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::Local(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| Error::aws("DeleteObjects", format!("bucket {bucket}"), e))?;
    if let Some(first) = out.errors().first() {
        return Err(Error::Aws {
            operation: "DeleteObjects",
            resource: resource(bucket, first.key().unwrap_or_default()),
            code: first.code().map(str::to_owned),
            message: format!(
                "{} of {} keys were not deleted: {}",
                out.errors().len(),
                keys.len(),
                first.message().unwrap_or("no message")
            ),
            retryable: true,
            hint: "the next run deletes the rest".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_files_left_by_killed_processes_are_swept_live_ones_kept() {
        let dir = std::env::temp_dir();
        let stale = dir.join(format!("backstop-part-{}.gz", uuid::Uuid::new_v4()));
        let recent = dir.join(format!("backstop-part-{}.gz", uuid::Uuid::new_v4()));
        let other = dir.join(format!("not-backstop-{}.gz", uuid::Uuid::new_v4()));
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [&stale, &recent, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        for p in [&stale, &other] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(two_hours_ago)
                .unwrap();
        }
        let mut spool = Spool::create().unwrap();
        spool.write_all(b"part").unwrap();
        assert_eq!(spool.len, 4);
        let own = spool.path.clone();
        assert!(own.exists());
        assert!(!stale.exists(), "a stale spool file is removed");
        assert!(recent.exists() && other.exists(), "nothing else is touched");
        spool.clear().unwrap();
        assert_eq!(std::fs::metadata(&own).unwrap().len(), 0);
        drop(spool);
        assert!(!own.exists(), "a spool file is removed with its data file");
        for p in [&recent, &other] {
            std::fs::remove_file(p).unwrap();
        }
    }
}
