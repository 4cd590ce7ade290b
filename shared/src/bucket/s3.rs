//! The S3 calls bucket backups and restores make: server-side copies (one CopyObject up to the
//! multipart threshold, UploadPartCopy above it), reads of an object's headers and tags, and the
//! encodings S3 wants for copy sources and tag sets.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption,
    TaggingDirective,
};
use aws_sdk_s3::Client as S3;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::ObjectEntry;
use crate::error::{Error, Result};
use crate::export::s3io::Encryption;

/// S3's limit for one CopyObject.
pub const MAX_SINGLE_COPY: i64 = 5 * 1024 * 1024 * 1024;
/// S3's smallest part (except the last).
pub const MIN_PART: i64 = 5 * 1024 * 1024;
/// S3's most parts in one upload.
pub const MAX_PARTS: i64 = 10_000;

/// Everything but unreserved characters and '/' is escaped in a copy source.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// `bucket/key?versionId=v`, URL-encoded as CopyObject's `x-amz-copy-source` wants it. A
/// version of `null` (never versioned) is left out.
pub fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let key = utf8_percent_encode(key, COPY_SOURCE);
    match version_id {
        Some(v) if v != "null" && !v.is_empty() => {
            format!(
                "{bucket}/{key}?versionId={}",
                utf8_percent_encode(v, COPY_SOURCE)
            )
        }
        _ => format!("{bucket}/{key}"),
    }
}

/// A tag set as the `x-amz-tagging` header wants it (`k=v&k2=v2`, form-encoded).
pub fn tagging_header(tags: &BTreeMap<String, String>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(tags.iter())
        .finish()
}

fn url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

fn version_url(bucket: &str, key: &str, version: &str) -> String {
    if version == "null" {
        url(bucket, key)
    } else {
        format!("s3://{bucket}/{key} (version {version})")
    }
}

fn sse(enc: &Encryption) -> ServerSideEncryption {
    if enc.kms_key.is_some() {
        ServerSideEncryption::AwsKms
    } else {
        ServerSideEncryption::Aes256
    }
}

/// Content headers, user metadata and tags of one object version, read from the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub size: i64,
    pub etag: String,
}

/// HeadObject and GetObjectTagging of one version. `Ok(None)`: it is gone.
pub async fn read_headers(
    s3: &S3,
    bucket: &str,
    key: &str,
    version: &str,
) -> Result<Option<Headers>> {
    let versioned = version != "null";
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(versioned.then(|| version.to_owned()))
        .send()
        .await;
    let head = match head {
        Ok(h) => h,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => {
            return Err(Error::aws(
                "HeadObject",
                version_url(bucket, key, version),
                e,
            ))
        }
    };
    let tags = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(versioned.then(|| version.to_owned()))
        .send()
        .await;
    let tags = match tags {
        Ok(t) => t
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => {
            return Err(Error::aws(
                "GetObjectTagging",
                version_url(bucket, key, version),
                e,
            ))
        }
    };
    Ok(Some(Headers {
        content_type: head.content_type,
        cache_control: head.cache_control,
        content_disposition: head.content_disposition,
        content_encoding: head.content_encoding,
        content_language: head.content_language,
        metadata: head.metadata.unwrap_or_default().into_iter().collect(),
        tags,
        size: head.content_length.unwrap_or(0),
        etag: head.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
    }))
}

/// Whether an error says the object (or version) does not exist.
pub fn is_gone<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    matches!(e, aws_sdk_s3::error::SdkError::ServiceError(_))
        && (e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
            || e.as_service_error()
                .and_then(|s| s.code())
                .is_some_and(|c| matches!(c, "NoSuchKey" | "NoSuchVersion" | "NotFound")))
}

/// The size and ETag of a key, or `None` when there is none.
pub async fn head(s3: &S3, bucket: &str, key: &str) -> Result<Option<(i64, String)>> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(h) => Ok(Some((
            h.content_length.unwrap_or(0),
            h.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
        ))),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(Error::aws("HeadObject", url(bucket, key), e)),
    }
}

/// The size, ETag and version id of a key's current object, or `None` when there is none.
pub async fn head_version(
    s3: &S3,
    bucket: &str,
    key: &str,
) -> Result<Option<(i64, String, Option<String>)>> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(h) => Ok(Some((
            h.content_length.unwrap_or(0),
            h.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
            h.version_id,
        ))),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(Error::aws("HeadObject", url(bucket, key), e)),
    }
}

/// What a copy writes on its destination besides the bytes.
#[derive(Debug, Clone)]
pub enum CopyHeaders<'a> {
    /// Keep the source's content headers, metadata and tags (backups: the manifest has them).
    Keep,
    /// Set these (restores: the manifest's headers, metadata and tags).
    Set(&'a ObjectEntry),
}

/// A destination condition for the copy.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    None,
    /// Only if no object has the key (`If-None-Match: *`).
    Absent,
    /// Only if the key's current object has this ETag (an overwrite of what was seen).
    Matches(&'a str),
}

/// One server-side copy of `src_bucket/src_key` (at `src_version`) of `size` bytes to
/// `dst_bucket/dst_key`, only while the source's ETag is `src_etag` when given (an unversioned
/// key rewritten mid-backup fails with 412 rather than copying other bytes than listed):
/// CopyObject up to `threshold`, else a multipart upload of
/// UploadPartCopy parts of `part_size`. Checked twice: the answer (a copy can fail after
/// answering 200, with the error in the body, which the SDK turns into an error; a result
/// without an ETag is refused too) and a HeadObject of the destination, whose size must be
/// `size`.
#[allow(clippy::too_many_arguments)]
pub async fn copy(
    s3: &S3,
    (src_bucket, src_key, src_version): (&str, &str, Option<&str>),
    src_etag: Option<&str>,
    size: i64,
    (dst_bucket, dst_key): (&str, &str),
    enc: Option<&Encryption>,
    headers: CopyHeaders<'_>,
    condition: Condition<'_>,
    threshold: i64,
    part_size: i64,
) -> Result<()> {
    let source = copy_source(src_bucket, src_key, src_version);
    let what = format!(
        "{} to {}",
        version_url(src_bucket, src_key, src_version.unwrap_or("null")),
        url(dst_bucket, dst_key)
    );
    if size <= threshold.min(MAX_SINGLE_COPY) {
        let mut req = s3
            .copy_object()
            .bucket(dst_bucket)
            .key(dst_key)
            .copy_source(&source)
            .set_copy_source_if_match(src_etag.map(|e| format!("\"{e}\"")));
        if let Some(enc) = enc {
            req = req.server_side_encryption(sse(enc));
            if let Some(k) = &enc.kms_key {
                req = req.ssekms_key_id(k);
            }
        }
        req = match &headers {
            CopyHeaders::Keep => req
                .metadata_directive(MetadataDirective::Copy)
                .tagging_directive(TaggingDirective::Copy),
            CopyHeaders::Set(e) => req
                .metadata_directive(MetadataDirective::Replace)
                .tagging_directive(TaggingDirective::Replace)
                .tagging(tagging_header(&e.tags))
                .set_metadata(Some(e.metadata.clone().into_iter().collect()))
                .set_content_type(e.content_type.clone())
                .set_cache_control(e.cache_control.clone())
                .set_content_disposition(e.content_disposition.clone())
                .set_content_encoding(e.content_encoding.clone())
                .set_content_language(e.content_language.clone()),
        };
        req = match condition {
            Condition::None => req,
            Condition::Absent => req.if_none_match("*"),
            Condition::Matches(etag) => req.if_match(format!("\"{etag}\"")),
        };
        let out = req
            .send()
            .await
            .map_err(|e| Error::aws("CopyObject", what.clone(), e))?;
        if out
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .is_none_or(str::is_empty)
        {
            return Err(copy_unconfirmed("CopyObject", &what));
        }
    } else {
        multipart_copy(
            s3,
            &source,
            src_etag,
            size,
            (dst_bucket, dst_key),
            enc,
            headers,
            condition,
            part_size,
            &what,
        )
        .await?;
    }
    match head(s3, dst_bucket, dst_key).await? {
        Some((got, _)) if got == size => Ok(()),
        Some((got, _)) => Err(Error::Aws {
            operation: "HeadObject",
            resource: url(dst_bucket, dst_key),
            code: None,
            message: format!("the copy of {what} has {got} bytes, the source {size}"),
            retryable: true,
            hint: "the source changed or the copy failed; a retry copies it again".into(),
        }),
        None => Err(copy_unconfirmed("HeadObject", &what)),
    }
}

fn copy_unconfirmed(operation: &'static str, what: &str) -> Error {
    Error::Aws {
        operation,
        resource: what.to_owned(),
        code: None,
        message: "S3 answered without confirming the copy (no ETag, or no object after it)".into(),
        retryable: true,
        hint: "a retry copies it again".into(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn multipart_copy(
    s3: &S3,
    source: &str,
    src_etag: Option<&str>,
    size: i64,
    (bucket, key): (&str, &str),
    enc: Option<&Encryption>,
    headers: CopyHeaders<'_>,
    condition: Condition<'_>,
    part_size: i64,
    what: &str,
) -> Result<()> {
    // Parts of at least S3's minimum, and few enough for its part limit.
    let part_size = part_size
        .max(MIN_PART)
        .max((size + MAX_PARTS - 1) / MAX_PARTS);
    let mut create = s3.create_multipart_upload().bucket(bucket).key(key);
    if let Some(enc) = enc {
        create = create.server_side_encryption(sse(enc));
        if let Some(k) = &enc.kms_key {
            create = create.ssekms_key_id(k);
        }
    }
    match &headers {
        CopyHeaders::Set(e) => {
            create = create
                .tagging(tagging_header(&e.tags))
                .set_metadata(Some(e.metadata.clone().into_iter().collect()))
                .set_content_type(e.content_type.clone())
                .set_cache_control(e.cache_control.clone())
                .set_content_disposition(e.content_disposition.clone())
                .set_content_encoding(e.content_encoding.clone())
                .set_content_language(e.content_language.clone());
        }
        CopyHeaders::Keep => {}
    }
    let upload = create
        .send()
        .await
        .map_err(|e| Error::aws("CreateMultipartUpload", url(bucket, key), e))?;
    let Some(upload_id) = upload.upload_id else {
        return Err(copy_unconfirmed("CreateMultipartUpload", what));
    };
    let result = async {
        let mut parts = Vec::new();
        let mut start = 0i64;
        let mut number = 1i32;
        while start < size {
            let end = (start + part_size).min(size) - 1;
            let out = s3
                .upload_part_copy()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .copy_source(source)
                .set_copy_source_if_match(src_etag.map(|e| format!("\"{e}\"")))
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| Error::aws("UploadPartCopy", format!("{what}, part {number}"), e))?;
            let Some(etag) = out.copy_part_result().and_then(|r| r.e_tag()) else {
                return Err(copy_unconfirmed("UploadPartCopy", what));
            };
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            );
            start = end + 1;
            number += 1;
        }
        let mut complete = s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        complete = match condition {
            Condition::None => complete,
            Condition::Absent => complete.if_none_match("*"),
            Condition::Matches(etag) => complete.if_match(format!("\"{etag}\"")),
        };
        let done = complete
            .send()
            .await
            .map_err(|e| Error::aws("CompleteMultipartUpload", what.to_owned(), e))?;
        if done.e_tag().is_none_or(str::is_empty) {
            return Err(copy_unconfirmed("CompleteMultipartUpload", what));
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        // Parts left behind cost money until a lifecycle rule aborts them; best effort.
        let _ = s3
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

/// Whether `bucket` has S3 Object Lock enabled. A bucket without an Object Lock configuration
/// answers ObjectLockConfigurationNotFoundError: not enabled.
pub async fn object_lock_enabled(s3: &S3, bucket: &str) -> Result<bool> {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    use aws_sdk_s3::types::ObjectLockEnabled;
    match s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            == Some(&ObjectLockEnabled::Enabled)),
        Err(e)
            if matches!(
                e.code(),
                Some("ObjectLockConfigurationNotFoundError" | "NoSuchObjectLockConfiguration")
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::aws(
            "GetObjectLockConfiguration",
            format!("bucket {bucket}"),
            e,
        )),
    }
}

/// Puts an S3 Object Lock legal hold on the current version of `key`.
pub async fn legal_hold_on(s3: &S3, bucket: &str, key: &str) -> Result<()> {
    use aws_sdk_s3::types::{ObjectLockLegalHold, ObjectLockLegalHoldStatus};
    s3.put_object_legal_hold()
        .bucket(bucket)
        .key(key)
        .legal_hold(
            ObjectLockLegalHold::builder()
                .status(ObjectLockLegalHoldStatus::On)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "PutObjectLegalHold",
                format!("s3://{bucket}/{}", crate::report::clip(key, 200)),
                e,
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_url_encoded_and_carry_the_version() {
        assert_eq!(
            copy_source("src", "a b/ü+x?.txt", Some("v1")),
            "src/a%20b/%C3%BC%2Bx%3F.txt?versionId=v1"
        );
        assert_eq!(
            copy_source("src", "plain/key", Some("null")),
            "src/plain/key"
        );
        assert_eq!(copy_source("src", "k", None), "src/k");
    }

    #[test]
    fn tag_sets_are_form_encoded() {
        let tags = BTreeMap::from([
            ("a b".to_owned(), "x&y".to_owned()),
            ("c".to_owned(), "ü".to_owned()),
        ]);
        assert_eq!(tagging_header(&tags), "a+b=x%26y&c=%C3%BC");
        assert_eq!(tagging_header(&BTreeMap::new()), "");
    }
}
