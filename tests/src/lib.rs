//! End-to-end tests against the local emulator; their kit is `backstop-testkit`.

pub use backstop_testkit::*;

/// Writes the manifests AWS writes beside a native export's data (moto writes only the data
/// file), in the documented format, for the export at `root` with ARN `arn`.
pub async fn place_native_manifests(
    h: &Harness,
    bucket: &str,
    root: &str,
    arn: &str,
    table: &str,
) -> u64 {
    use base64::Engine;
    use md5::Digest;
    use std::io::Read;
    let keys = backstop::export::s3io::list(&h.clients.s3, bucket, &format!("{root}/AWSDynamoDB/"))
        .await
        .unwrap();
    let (data_key, _) = keys
        .iter()
        .find(|(k, _)| k.contains("/data/"))
        .cloned()
        .unwrap_or_else(|| panic!("moto wrote no data file under {root}: {keys:?}"));
    let body = backstop::export::s3io::get(&h.clients.s3, bucket, &data_key)
        .await
        .unwrap()
        .unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .unwrap();
    let count = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    // The data file's ETag as S3 reports it, as AWS's manifest records it.
    let etag = h
        .clients
        .s3
        .head_object()
        .bucket(bucket)
        .key(&data_key)
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    let dir = data_key.split("/data/").next().unwrap().to_owned();
    let files = serde_json::json!({
        "itemCount": count,
        "md5Checksum": base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body)),
        "etag": etag,
        "dataFileS3Key": data_key,
    });
    let summary = serde_json::json!({
        "version": "2020-06-30", "exportArn": arn,
        "startTime": "2026-11-10T03:00:01.000Z", "endTime": "2026-11-10T03:05:00.000Z",
        "tableArn": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}"),
        "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
        "exportTime": "2026-11-10T03:00:00.000Z", "s3Bucket": bucket, "s3Prefix": root,
        "s3SseAlgorithm": "KMS", "s3SseKmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/test",
        "manifestFilesS3Key": format!("{dir}/manifest-files.json"),
        "billedSizeBytes": body.len(), "itemCount": count,
        "outputFormat": "DYNAMODB_JSON", "exportType": "FULL_EXPORT",
    });
    let enc = backstop::export::s3io::Encryption { kms_key: None };
    for (key, v) in [
        ("manifest-files.json", format!("{files}\n")),
        ("manifest-summary.json", summary.to_string()),
    ] {
        backstop::export::s3io::put_small(
            &h.clients.s3,
            bucket,
            &format!("{dir}/{key}"),
            v.into_bytes(),
            "application/json",
            &enc,
        )
        .await
        .unwrap();
    }
    count
}
