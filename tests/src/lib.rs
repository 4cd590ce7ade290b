//! End-to-end tests against the local emulator; their kit is `backstop-testkit`.

pub use backstop_testkit::*;

use backstop::event::JobRequest;
use backstop::report::RunReport;
use backstop::settings::{JobKind, Settings};

/// Runs one job in this process with the harness's settings plus `extra`.
pub async fn run_job(
    h: &Harness,
    kind: JobKind,
    extra: &[(&str, String)],
    payload: serde_json::Value,
) -> RunReport {
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now()).unwrap();
    let pairs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let settings = Settings::resolve(kind, &h.env(&pairs), &request).unwrap();
    backstop::jobs::run(kind, &h.clients, &settings, &request).await
}

/// The `backstop` CLI, built as the tests are (debug) into the same target directory.
pub fn cli_binary() -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-q", "-p", "backstop-cli", "--bin", "backstop"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the backstop CLI failed");
    // target/debug/deps/<this test> -> target/debug/backstop
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("backstop")
}

/// A `backstop --endpoint <endpoint>` command with the harness's settings plus `extra` in its
/// environment (and nothing of the caller's AWS profile).
pub fn backstop_cmd(
    cli: &std::path::Path,
    h: &Harness,
    endpoint: &str,
    extra: &[(&str, String)],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(cli);
    cmd.args(["--endpoint", endpoint])
        .env_remove("AWS_PROFILE")
        .env_remove(backstop::settings::ENV_TABLES)
        .env(
            backstop::settings::ENV_CATALOG_TABLE,
            &h.stack.catalog_table,
        )
        .env(backstop::settings::ENV_TOPIC_ARN, &h.stack.topic_arn)
        .env(backstop::settings::ENV_METRICS_NAMESPACE, h.namespace())
        // As `Harness::env`: the test's tables and buckets are the configured selection (a
        // payload may only narrow it), and history is made at named past slots.
        .env(backstop::settings::ENV_BACKFILL_WINDOW, "3650d");
    let sets = |prefix: &str| extra.iter().any(|(k, _)| k.starts_with(prefix));
    if !sets("BACKSTOP_TABLE")
        && !sets("BACKSTOP_RDS")
        && !sets("BACKSTOP_AURORA")
        && !sets("BACKSTOP_ELASTICACHE")
    {
        cmd.env_remove(backstop::settings::ENV_TABLE_TAG).env(
            backstop::settings::ENV_TABLE_PATTERN,
            format!("{}*", h.prefix),
        );
    }
    if extra
        .iter()
        .any(|(k, _)| *k == backstop::settings::ENV_BUCKET_BACKUP_BUCKET)
        && !extra.iter().any(|(k, _)| {
            [
                backstop::settings::ENV_BUCKETS,
                backstop::settings::ENV_BUCKET_PATTERN,
                backstop::settings::ENV_BUCKET_TAG,
            ]
            .contains(k)
        })
    {
        cmd.env_remove(backstop::settings::ENV_BUCKET_TAG).env(
            backstop::settings::ENV_BUCKET_PATTERN,
            format!("{}*", h.prefix),
        );
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

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
