//! The manifests: AWS's (`manifest-summary.json`, `manifest-files.json`, in the documented
//! format of native exports) and Backstop's (`backstop-manifest.json`). Pure.

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;

/// `manifest-summary.json` as AWS documents it for DynamoDB exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub version: String,
    pub export_arn: String,
    pub start_time: String,
    pub end_time: String,
    pub table_arn: String,
    #[serde(default)]
    pub table_id: Option<String>,
    #[serde(default)]
    pub export_time: Option<String>,
    #[serde(default)]
    pub export_from_time: Option<String>,
    #[serde(default)]
    pub export_to_time: Option<String>,
    #[serde(default)]
    pub export_view_type: Option<String>,
    pub s3_bucket: String,
    #[serde(default)]
    pub s3_prefix: Option<String>,
    #[serde(default)]
    pub s3_sse_algorithm: Option<String>,
    #[serde(default)]
    pub s3_sse_kms_key_id: Option<String>,
    pub manifest_files_s3_key: String,
    #[serde(default)]
    pub billed_size_bytes: Option<u64>,
    pub item_count: u64,
    pub output_format: String,
    #[serde(default)]
    pub export_type: Option<String>,
}

/// One line of `manifest-files.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub item_count: u64,
    /// Base64 MD5 of the object's bytes (as stored, compressed).
    pub md5_checksum: String,
    pub etag: String,
    pub data_file_s3_key: String,
}

/// Parses `manifest-files.json`: one JSON object per line. Errors name the line.
pub fn parse_files(text: &str) -> Result<Vec<FileEntry>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("manifest-files.json line {}: {e}", i + 1))
        })
        .collect()
}

pub fn files_text(files: &[FileEntry]) -> String {
    let mut out = String::new();
    for f in files {
        out.push_str(&serde_json::to_string(f).expect("plain struct"));
        out.push('\n');
    }
    out
}

/// One scan segment's figures in the Backstop manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentFigures {
    pub segment: u32,
    pub items: u64,
    /// Uncompressed bytes of DynamoDB JSON written.
    pub bytes: u64,
    pub files: u32,
    pub fingerprint: Fingerprint,
}

/// `backstop-manifest.json`: what the export is of, and the figures that prove it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackstopManifest {
    pub format: u32,
    pub table: String,
    pub table_arn: String,
    pub slot: String,
    pub mode: super::Made,
    pub export_type: super::ExportType,
    pub export_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_arn: Option<String>,
    pub manifest_summary_key: String,
    /// `KeySchema`, `AttributeDefinitions`, global and local secondary indexes, billing mode,
    /// as DescribeTable gave them (AWS's JSON shapes), for restores.
    pub key_schema: serde_json::Value,
    pub item_count: u64,
    /// Uncompressed bytes of DynamoDB JSON.
    pub bytes: u64,
    pub stored_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentFigures>,
    pub started_at: String,
    pub finished_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of AWS's documentation ("DynamoDB table export output format").
    #[test]
    fn reads_the_documented_format() {
        let summary = r#"{"version":"2020-06-30","exportArn":"arn:aws:dynamodb:us-east-1:123456789012:table/ProductCatalog/export/01234567890123-a1b2c3d4","startTime":"2020-11-04T07:28:34.028Z","endTime":"2020-11-04T07:33:43.897Z","tableArn":"arn:aws:dynamodb:us-east-1:123456789012:table/ProductCatalog","tableId":"12345a12-abcd-123a-ab12-1234abc12345","exportTime":"2020-11-04T07:28:34.028Z","s3Bucket":"ddb-productcatalog-export","s3Prefix":"2020-Nov","s3SseAlgorithm":"AES256","s3SseKmsKeyId":null,"manifestFilesS3Key":"2020-Nov/AWSDynamoDB/01693685827463-2d8752fd/manifest-files.json","billedSizeBytes":0,"itemCount":8,"outputFormat":"DYNAMODB_JSON","exportType":"FULL_EXPORT"}"#;
        let s: Summary = serde_json::from_str(summary).unwrap();
        assert_eq!(s.item_count, 8);
        assert_eq!(s.export_type.as_deref(), Some("FULL_EXPORT"));
        let files = "{\"itemCount\":8,\"md5Checksum\":\"sQMSpEILNgoQmarvDFonGQ==\",\"etag\":\"af83d6f217c19b8b0fff8023d8ca4716-1\",\"dataFileS3Key\":\"2020-Nov/AWSDynamoDB/01693685827463-2d8752fd/data/asdl123dasas.json.gz\"}\n";
        let f = parse_files(files).unwrap();
        assert_eq!(f[0].item_count, 8);
        assert_eq!(parse_files(&files_text(&f)).unwrap(), f);
        let e = parse_files("{}\n{\"x\":1}").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
