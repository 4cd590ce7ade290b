//! Native exports: `ExportTableToPointInTime`, full or incremental, and their finalization
//! from `DescribeExport` and the manifests AWS writes. The chain plan is pure.

use aws_sdk_dynamodb::types::{
    ExportFormat, ExportStatus, ExportType as SdkExportType, ExportViewType,
    IncrementalExportSpecification, S3SseAlgorithm,
};
use jiff::{SignedDuration, Timestamp};

use super::{reader, ExportMeta, ExportType, Made};
use crate::aws::Clients;
use crate::catalog::{TargetRecord, TargetStatus};
use crate::error::{Error, Result};

/// AWS's bounds on an incremental export's window.
pub const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(24);
pub const MIN_WINDOW: SignedDuration = SignedDuration::from_mins(15);
/// PITR keeps 35 days: a chain cannot continue from a link older than that.
pub const PITR_WINDOW: SignedDuration = SignedDuration::from_hours(35 * 24);

/// What the next native export of a table is.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainPlan {
    /// A full export at the slot; `why` says why not an incremental, when one was possible.
    Full { why: Option<String> },
    /// Incrementals from the last link to the slot, each window at most 24 hours.
    Incremental {
        base_slot: String,
        windows: Vec<(Timestamp, Timestamp)>,
    },
}

/// A table's native exports with their records, oldest first.
fn native_links(records: &[TargetRecord]) -> Vec<(&TargetRecord, &ExportMeta)> {
    let mut links: Vec<(&TargetRecord, &ExportMeta)> = records
        .iter()
        .filter_map(|r| Some((r, r.export.as_ref()?)))
        .filter(|(_, m)| m.made == Made::Native)
        .collect();
    links.sort_by_key(|(_, m)| m.export_time);
    links
}

/// Walks from `link` back to its chain's full export through `links`; every link on the way
/// must be there and finished. `Err` says which is not.
fn base_of<'a>(
    links: &[(&'a TargetRecord, &'a ExportMeta)],
    link: &'a ExportMeta,
) -> std::result::Result<&'a ExportMeta, String> {
    chain_of(links, link).map(|chain| chain[0])
}

/// The chain that ends at `link`: its full export first, then each incremental in order.
fn chain_of<'a>(
    links: &[(&'a TargetRecord, &'a ExportMeta)],
    link: &'a ExportMeta,
) -> std::result::Result<Vec<&'a ExportMeta>, String> {
    chain_records(links, link).map(|c| c.into_iter().map(|(_, m)| m).collect())
}

/// [`chain_of`] with each link's record.
fn chain_records<'a>(
    links: &[(&'a TargetRecord, &'a ExportMeta)],
    link: &'a ExportMeta,
) -> std::result::Result<Vec<(&'a TargetRecord, &'a ExportMeta)>, String> {
    let own = links
        .iter()
        .find(|(_, m)| std::ptr::eq(*m, link))
        .map(|(r, _)| *r)
        .ok_or("the link is not among the table's exports")?;
    let mut chain = vec![(own, link)];
    let mut cursor = link;
    // Each step goes to an earlier link, so the walk ends; the bound guards bad records.
    for _ in 0..=links.len() {
        if cursor.export_type == ExportType::FullExport {
            chain.reverse();
            return Ok(chain);
        }
        let Some(from) = cursor.from else {
            return Err("an incremental link has no window start".into());
        };
        match links
            .iter()
            .find(|(_, m)| m.export_time == from && m.export_time < cursor.export_time)
        {
            Some((r, m)) if r.status == TargetStatus::Done => {
                cursor = m;
                chain.push((r, m));
            }
            Some((r, _)) => {
                return Err(format!(
                    "the chain's link at slot {} is {}; a broken chain is never continued",
                    r.slot, r.status
                ))
            }
            None => {
                return Err(format!(
                "the chain's link ending at {from} is missing; a broken chain is never continued"
            ))
            }
        }
    }
    Err("the chain's links do not lead back to a full export".into())
}

/// Pure, for restores: the native chain that brings a table to the newest finished link at or
/// before `until` (a full export, then its incrementals in order). `Err` says why there is
/// none: no finished native export by then, or a chain that is not whole.
pub fn chain_until(
    records: &[TargetRecord],
    until: Timestamp,
) -> std::result::Result<Vec<TargetRecord>, String> {
    let links = native_links(records);
    let Some((_, last)) = links
        .iter()
        .rev()
        .find(|(r, m)| r.status == TargetStatus::Done && m.export_time <= until)
    else {
        return Err(format!("no finished native export at or before {until}"));
    };
    chain_records(&links, last).map(|c| c.into_iter().map(|(r, _)| r.clone()).collect())
}

/// Pure, for validate: every finished incremental export whose chain back to its full export
/// is not whole, as (slot, why). A restore from such a link would be short.
pub fn broken_chains(records: &[TargetRecord]) -> Vec<(String, String)> {
    let links = native_links(records);
    links
        .iter()
        .filter(|(r, m)| {
            r.status == TargetStatus::Done && m.export_type == ExportType::IncrementalExport
        })
        .filter_map(|(r, m)| base_of(&links, m).err().map(|why| (r.slot.clone(), why)))
        .collect()
}

/// Pure: plans the next native export at `slot` from the table's export records (any order).
/// A chain continues only from a finished link whose chain back to its full export is whole:
/// a missing, failed or unfinished link makes the next export full, and says why.
pub fn plan_chain(records: &[TargetRecord], slot: Timestamp, full_every_days: u32) -> ChainPlan {
    if full_every_days == 0 {
        return ChainPlan::Full { why: None };
    }
    let mut links = native_links(records);
    links.retain(|(_, m)| m.export_time < slot);
    let Some((last, last_meta)) = links.last().copied() else {
        return ChainPlan::Full {
            why: Some("no earlier native export of this table".into()),
        };
    };
    match last.status {
        TargetStatus::Done => {}
        TargetStatus::Started | TargetStatus::Claimed => {
            return ChainPlan::Full {
                why: Some(format!(
                    "the last export (slot {}) has not finished; a chain continues only from a finished export",
                    last.slot
                )),
            }
        }
        TargetStatus::Failed => {
            return ChainPlan::Full {
                why: Some(format!(
                    "the last export of the chain (slot {}) failed ({}); a broken chain is never continued",
                    last.slot,
                    last.error.as_deref().unwrap_or("no reason recorded")
                )),
            }
        }
        TargetStatus::Deleted => {
            return ChainPlan::Full {
                why: Some(format!(
                    "the last export of the chain (slot {}) was deleted",
                    last.slot
                )),
            }
        }
    }
    // Walk back to the chain's full export: every link must be there and finished.
    let base = match base_of(&links, last_meta) {
        Ok(base) => base,
        Err(why) => return ChainPlan::Full { why: Some(why) },
    };
    let age = slot.duration_since(base.export_time);
    if age >= SignedDuration::from_hours(24 * i64::from(full_every_days)) {
        return ChainPlan::Full {
            why: Some(format!(
                "the last full export is {} days old (a full export every {full_every_days} days)",
                age.as_hours() / 24
            )),
        };
    }
    let gap = slot.duration_since(last_meta.export_time);
    if gap < MIN_WINDOW {
        return ChainPlan::Full {
            why: Some(
                "less than 15 minutes since the last export: too short a window for an incremental"
                    .into(),
            ),
        };
    }
    if gap > PITR_WINDOW {
        return ChainPlan::Full {
            why: Some("the last export is older than the 35 days of point-in-time recovery".into()),
        };
    }
    // Windows of equal length, none over 24 hours (and so none under 15 minutes).
    let secs = gap.as_secs();
    let count = (secs + MAX_WINDOW.as_secs() - 1) / MAX_WINDOW.as_secs();
    let mut windows = Vec::new();
    let mut from = last_meta.export_time;
    for i in 1..=count {
        let to = if i == count {
            slot
        } else {
            last_meta.export_time + SignedDuration::from_secs(secs * i / count)
        };
        windows.push((from, to));
        from = to;
    }
    ChainPlan::Incremental {
        base_slot: base_slot_of(links.as_slice(), base),
        windows,
    }
}

fn base_slot_of(links: &[(&TargetRecord, &ExportMeta)], base: &ExportMeta) -> String {
    links
        .iter()
        .find(|(_, m)| std::ptr::eq(*m, base))
        .map(|(r, _)| r.slot.clone())
        .unwrap_or_default()
}

/// Starts a native export as `meta` describes it (full at `export_time`, or the incremental
/// window `from`..`export_time`). The ClientToken comes from (table, window, attempt), so a
/// repeated request asks for the same export. Returns the export's ARN.
pub async fn start(
    clients: &Clients,
    table_arn: &str,
    table: &str,
    meta: &ExportMeta,
    kms_key: Option<&str>,
    attempt_salt: Option<&str>,
) -> Result<String> {
    let mut token_from = meta.from;
    let token = match attempt_salt {
        None => super::client_token(table, meta.export_time, token_from.take()),
        Some(salt) => {
            let t = super::client_token(table, meta.export_time, token_from.take());
            blake3::hash(format!("{t}|{salt}").as_bytes()).to_hex()[..32].to_owned()
        }
    };
    let mut req = clients
        .dynamodb
        .export_table_to_point_in_time()
        .table_arn(table_arn)
        .client_token(token)
        .s3_bucket(&meta.bucket)
        .s3_prefix(&meta.root)
        .export_format(ExportFormat::DynamodbJson);
    req = match kms_key {
        Some(k) => req
            .s3_sse_algorithm(S3SseAlgorithm::Kms)
            .s3_sse_kms_key_id(k),
        None => req.s3_sse_algorithm(S3SseAlgorithm::Aes256),
    };
    req = match (meta.export_type, meta.from) {
        (ExportType::IncrementalExport, Some(from)) => req
            .export_type(SdkExportType::IncrementalExport)
            .incremental_export_specification(
                IncrementalExportSpecification::builder()
                    .export_from_time(aws_smithy_types::DateTime::from_secs(from.as_second()))
                    .export_to_time(aws_smithy_types::DateTime::from_secs(
                        meta.export_time.as_second(),
                    ))
                    .export_view_type(ExportViewType::NewAndOldImages)
                    .build(),
            ),
        // To the millisecond: a drill's export is of a backup's creation time, which has them.
        _ => req.export_type(SdkExportType::FullExport).export_time(
            aws_smithy_types::DateTime::from_millis(meta.export_time.as_millisecond()),
        ),
    };
    let out = req
        .send()
        .await
        .map_err(|e| Error::aws("ExportTableToPointInTime", format!("table {table}"), e))?;
    out.export_description
        .and_then(|d| d.export_arn)
        .ok_or_else(|| Error::Aws {
            operation: "ExportTableToPointInTime",
            resource: format!("table {table}"),
            code: None,
            message: "the answer names no export".into(),
            retryable: true,
            hint: "a retry asks for the same export (same ClientToken)".into(),
        })
}

/// Where a native export stands.
#[derive(Debug, Clone, PartialEq)]
pub enum NativeState {
    Running,
    /// Finished, manifests read: `meta` carries the manifest key, item count and bytes.
    Completed(Box<ExportMeta>),
    Failed {
        reason: String,
    },
}

/// Pure: the time of a finished native export's data as AWS reports it (DescribeExport): a full
/// export's ExportTime, an incremental's window end. It is what Backstop asked for; where AWS
/// says otherwise, AWS's is what the data holds and is recorded (a chain whose windows then no
/// longer meet is broken, and the next export is full). Without one, the time asked.
pub fn data_time(d: &aws_sdk_dynamodb::types::ExportDescription, meta: &ExportMeta) -> Timestamp {
    match meta.export_type {
        ExportType::FullExport => d.export_time(),
        ExportType::IncrementalExport => d
            .incremental_export_specification()
            .and_then(|s| s.export_to_time()),
    }
    .and_then(|t| Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok())
    .unwrap_or(meta.export_time)
}

/// Pure: whether a full export's `manifest-summary.json` (`summary_count` items) is the one AWS
/// wrote, by DescribeExport's own ItemCount. The summary lies in the export bucket, where anyone
/// allowed to put an object could have rewritten it (an empty file list and a count of 0 would
/// make an export look complete and empty): its count must be AWS's before it is recorded.
/// Incrementals are not checked (their count is of change records, which the API documents
/// less firmly); neither is an answer without ItemCount.
pub fn summary_is_aws(
    d: &aws_sdk_dynamodb::types::ExportDescription,
    meta: &ExportMeta,
    summary_count: u64,
) -> std::result::Result<(), String> {
    if meta.export_type != ExportType::FullExport {
        return Ok(());
    }
    match d.item_count() {
        Some(aws) if u64::try_from(aws).ok() != Some(summary_count) => Err(format!(
            "manifest-summary.json says {summary_count} items, DescribeExport says AWS exported {aws}: the summary is not the one AWS wrote, and the export is not recorded as finished"
        )),
        _ => Ok(()),
    }
}

/// Asks AWS where the export stands and, when it completed, reads its manifests (summary, file
/// list, counts consistent) into the record.
pub async fn check(clients: &Clients, table: &str, meta: &ExportMeta) -> Result<NativeState> {
    let arn = meta.export_arn.as_deref().ok_or_else(|| Error::Aws {
        operation: "DescribeExport",
        resource: format!("table {table}"),
        code: None,
        message: "the catalog records a native export without its ARN".into(),
        retryable: false,
        hint: "fix or delete the catalog item".into(),
    })?;
    let out = clients
        .dynamodb
        .describe_export()
        .export_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeExport", arn.to_owned(), e))?;
    let Some(d) = out.export_description else {
        return Ok(NativeState::Running);
    };
    match d.export_status() {
        Some(ExportStatus::Completed) => {}
        Some(ExportStatus::Failed) => {
            return Ok(NativeState::Failed {
                reason: format!(
                    "{}: {}",
                    d.failure_code().unwrap_or("FAILED"),
                    d.failure_message().unwrap_or("no message from AWS")
                ),
            })
        }
        _ => return Ok(NativeState::Running),
    }
    // The summary's key: DescribeExport's ExportManifest, else found under the root.
    let found = match d.export_manifest() {
        Some(key) if !key.is_empty() => {
            let summary = reader::read_summary(&clients.s3, &meta.bucket, key).await?;
            Some((key.to_owned(), summary))
        }
        _ => reader::find_summary(&clients.s3, &meta.bucket, &meta.root, Some(arn)).await?,
    };
    let Some((key, summary)) = found else {
        return Err(Error::Aws {
            operation: "read export manifests",
            resource: format!("s3://{}/{}/AWSDynamoDB/", meta.bucket, meta.root),
            code: None,
            message: format!(
                "export {arn} is COMPLETED but its manifest-summary.json is not there"
            ),
            retryable: true,
            hint: "S3 may not show it yet; the next run looks again".into(),
        });
    };
    if let Err(why) = summary_is_aws(&d, meta, summary.item_count) {
        return Err(Error::Aws {
            operation: "read export manifests",
            resource: format!("s3://{}/{key}", meta.bucket),
            code: None,
            message: why,
            retryable: false,
            hint: "someone with write access to the export bucket changed it; find out who, and let the next export start anew".into(),
        });
    }
    let files = reader::read_files(&clients.s3, &meta.bucket, &key, &summary).await?;
    let mut stored = 0u64;
    let listed = super::s3io::list(&clients.s3, &meta.bucket, &format!("{}/", meta.root)).await?;
    for f in &files {
        match listed.iter().find(|(k, _)| *k == f.data_file_s3_key) {
            Some((_, size)) => stored += *size as u64,
            None => {
                return Err(Error::Aws {
                    operation: "read export manifests",
                    resource: format!("s3://{}/{}", meta.bucket, f.data_file_s3_key),
                    code: None,
                    message: "a data file named by the manifest is missing".into(),
                    retryable: false,
                    hint: "the export is incomplete; the next export of this table is full".into(),
                })
            }
        }
    }
    let export_time = data_time(&d, meta);
    if export_time != meta.export_time {
        tracing::warn!(asked = %meta.export_time, reported = %export_time, export = %arn, "DescribeExport reports another export time than the one asked; recording AWS's");
    }
    Ok(NativeState::Completed(Box::new(ExportMeta {
        export_time,
        manifest_key: Some(key),
        item_count: Some(summary.item_count),
        stored_bytes: Some(stored),
        export_id: arn.rsplit('/').next().unwrap_or(&meta.export_id).to_owned(),
        ..meta.clone()
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::JobKind;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record(
        slot: &str,
        status: TargetStatus,
        ty: ExportType,
        from: Option<&str>,
    ) -> TargetRecord {
        TargetRecord {
            job: JobKind::Export,
            table: "T".into(),
            slot: slot.into(),
            status,
            run_id: "r".into(),
            attempts: 1,
            backup_arn: None,
            backup_name: None,
            backup_created_at: None,
            size_bytes: None,
            item_count: None,
            table_shape: None,
            table_settings: None,
            error: (status == TargetStatus::Failed).then(|| "S3 access denied".into()),
            claimed_at: None,
            updated_at: None,
            legal_hold: false,
            legal_hold_unreadable: None,
            completed_at: None,
            deleted_at: None,
            lease_until: None,
            export: Some(ExportMeta {
                made: Made::Native,
                export_type: ty,
                export_id: format!("id-{slot}"),
                export_arn: Some(format!("arn:x/{slot}")),
                bucket: "b".into(),
                root: format!("p/T/{slot}"),
                export_time: t(slot),
                from: from.map(t),
                base_slot: None,
                manifest_key: None,
                fingerprint: None,
                item_count: None,
                stored_bytes: None,
                note: None,
            }),
            verification: None,
        }
    }

    const FULL: ExportType = ExportType::FullExport;
    const INC: ExportType = ExportType::IncrementalExport;
    use TargetStatus::{Done, Failed, Started};

    #[test]
    fn the_recorded_time_and_count_are_awss_own() {
        use aws_sdk_dynamodb::types::{ExportDescription, IncrementalExportSpecification};
        use aws_smithy_types::DateTime;
        let full = record("2026-11-22T03:00:00Z", Started, FULL, None)
            .export
            .unwrap();
        let inc = record(
            "2026-11-23T03:00:00Z",
            Started,
            INC,
            Some("2026-11-22T03:00:00Z"),
        )
        .export
        .unwrap();
        // No time in the answer: the one asked.
        let bare = ExportDescription::builder().build();
        assert_eq!(data_time(&bare, &full), full.export_time);
        // AWS's ExportTime (to the millisecond) is recorded, for a full export.
        let d = ExportDescription::builder()
            .export_time(DateTime::from_millis(
                t("2026-11-22T03:00:00.250Z").as_millisecond(),
            ))
            .item_count(50)
            .build();
        assert_eq!(data_time(&d, &full), t("2026-11-22T03:00:00.250Z"));
        // An incremental's is its window's end.
        let d_inc = ExportDescription::builder()
            .incremental_export_specification(
                IncrementalExportSpecification::builder()
                    .export_to_time(DateTime::from_secs(t("2026-11-23T03:00:00Z").as_second()))
                    .build(),
            )
            .build();
        assert_eq!(data_time(&d_inc, &inc), t("2026-11-23T03:00:00Z"));
        // A summary whose count is not AWS's is refused; without AWS's count, not judged.
        assert!(summary_is_aws(&d, &full, 50).is_ok());
        let e = summary_is_aws(&d, &full, 0).unwrap_err();
        assert!(
            e.contains("says 0 items") && e.contains("AWS exported 50"),
            "{e}"
        );
        assert!(summary_is_aws(&bare, &full, 0).is_ok());
        assert!(summary_is_aws(&d, &inc, 0).is_ok());
    }

    #[test]
    fn a_weekly_full_then_daily_incrementals() {
        let history = vec![record("2026-11-22T03:00:00Z", Done, FULL, None)];
        let plan = plan_chain(&history, t("2026-11-23T03:00:00Z"), 7);
        assert_eq!(
            plan,
            ChainPlan::Incremental {
                base_slot: "2026-11-22T03:00:00Z".into(),
                windows: vec![(t("2026-11-22T03:00:00Z"), t("2026-11-23T03:00:00Z"))]
            }
        );
        let mut history = history;
        history.push(record(
            "2026-11-23T03:00:00Z",
            Done,
            INC,
            Some("2026-11-22T03:00:00Z"),
        ));
        let ChainPlan::Incremental { windows, .. } =
            plan_chain(&history, t("2026-11-24T03:00:00Z"), 7)
        else {
            panic!("incremental expected")
        };
        assert_eq!(
            windows,
            vec![(t("2026-11-23T03:00:00Z"), t("2026-11-24T03:00:00Z"))]
        );
        // Seven days after the full: full again.
        let plan = plan_chain(&history, t("2026-11-29T03:00:00Z"), 7);
        assert!(
            matches!(&plan, ChainPlan::Full { why: Some(w) } if w.contains("7 days old")),
            "{plan:?}"
        );
        assert_eq!(
            plan_chain(&history, t("2026-11-24T03:00:00Z"), 0),
            ChainPlan::Full { why: None }
        );
    }

    #[test]
    fn a_gap_over_a_day_is_chained_in_windows_of_at_most_a_day() {
        let history = vec![record("2026-11-22T03:00:00Z", Done, FULL, None)];
        let ChainPlan::Incremental { windows, .. } =
            plan_chain(&history, t("2026-11-24T15:00:00Z"), 7)
        else {
            panic!()
        };
        assert_eq!(windows.len(), 3);
        assert_eq!(windows[0].0, t("2026-11-22T03:00:00Z"));
        assert_eq!(windows[2].1, t("2026-11-24T15:00:00Z"));
        for w in windows.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous");
        }
        for (a, b) in &windows {
            let d = b.duration_since(*a);
            assert!(d <= MAX_WINDOW && d >= MIN_WINDOW, "{d:?}");
        }
    }

    #[test]
    fn a_broken_chain_is_never_continued() {
        let full = record("2026-11-22T03:00:00Z", Done, FULL, None);
        for (last, want) in [
            (
                record(
                    "2026-11-23T03:00:00Z",
                    Failed,
                    INC,
                    Some("2026-11-22T03:00:00Z"),
                ),
                "failed (S3 access denied)",
            ),
            (
                record(
                    "2026-11-23T03:00:00Z",
                    Started,
                    INC,
                    Some("2026-11-22T03:00:00Z"),
                ),
                "has not finished",
            ),
            // A link whose window starts where no export ended: one is missing.
            (
                record(
                    "2026-11-23T03:00:00Z",
                    Done,
                    INC,
                    Some("2026-11-21T03:00:00Z"),
                ),
                "is missing",
            ),
        ] {
            let plan = plan_chain(&[full.clone(), last], t("2026-11-24T03:00:00Z"), 7);
            assert!(
                matches!(&plan, ChainPlan::Full { why: Some(w) } if w.contains(want)),
                "{plan:?}"
            );
        }
        // A failed link in the middle breaks everything after it, too.
        let history = vec![
            full,
            record(
                "2026-11-23T03:00:00Z",
                Failed,
                INC,
                Some("2026-11-22T03:00:00Z"),
            ),
            record(
                "2026-11-24T03:00:00Z",
                Done,
                INC,
                Some("2026-11-23T03:00:00Z"),
            ),
        ];
        let plan = plan_chain(&history, t("2026-11-25T03:00:00Z"), 7);
        assert!(
            matches!(&plan, ChainPlan::Full { why: Some(w) } if w.contains("FAILED")),
            "{plan:?}"
        );
        assert!(matches!(
            plan_chain(&[], t("2026-11-25T03:00:00Z"), 7),
            ChainPlan::Full { why: Some(_) }
        ));
    }

    #[test]
    fn validate_names_each_finished_link_whose_chain_is_not_whole() {
        let link = |slot, status, from| record(slot, status, INC, Some(from));
        let whole = vec![
            record("2026-11-22T03:00:00Z", Done, FULL, None),
            link("2026-11-23T03:00:00Z", Done, "2026-11-22T03:00:00Z"),
            link("2026-11-24T03:00:00Z", Done, "2026-11-23T03:00:00Z"),
        ];
        assert_eq!(broken_chains(&whole), vec![]);

        // The middle link failed: the last one cannot be restored whole.
        let mut failed = whole.clone();
        failed[1].status = Failed;
        let broken = broken_chains(&failed);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].0, "2026-11-24T03:00:00Z");
        assert!(
            broken[0].1.contains("2026-11-23T03:00:00Z is FAILED"),
            "{broken:?}"
        );

        // The middle link is gone from the catalog.
        let missing = vec![whole[0].clone(), whole[2].clone()];
        let broken = broken_chains(&missing);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0]
            .1
            .contains("ending at 2026-11-23T03:00:00Z is missing"));

        // No full export under the chain at all.
        let baseless = vec![whole[1].clone(), whole[2].clone()];
        assert_eq!(broken_chains(&baseless).len(), 2);

        // A link whose window starts at its own end (a bad record) ends the walk, never loops.
        let selfish = vec![link("2026-11-23T03:00:00Z", Done, "2026-11-23T03:00:00Z")];
        assert_eq!(broken_chains(&selfish).len(), 1);
    }
}
