//! Publishing a run: one SNS message (plain text, and a Chatbot card for HTTPS subscriptions:
//! see [`crate::chat`]) and one CloudWatch PutMetricData batch.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_types::DateTime;

use crate::error::{Error, Result};
use crate::report::{Outcome, RunReport};
use crate::settings::JobKind;

pub const METRIC_SUCCESS: &str = "BackupSuccess";
pub const METRIC_FAILURE: &str = "BackupFailure";
pub const METRIC_DURATION: &str = "BackupDuration";
pub const METRIC_SIZE: &str = "BackupSize";
pub const METRIC_EXPORT_SUCCESS: &str = "ExportSuccess";
pub const METRIC_EXPORT_FAILURE: &str = "ExportFailure";
pub const METRIC_EXPORT_DURATION: &str = "ExportDuration";
pub const METRIC_EXPORT_ITEMS: &str = "ExportItems";
pub const METRIC_EXPORT_BYTES: &str = "ExportBytes";
pub const METRIC_RETENTION_KEPT: &str = "RetentionKept";
pub const METRIC_RETENTION_DELETED: &str = "RetentionDeleted";
pub const METRIC_RETENTION_FAILURE: &str = "RetentionFailure";
pub const METRIC_BACKUP_AGE: &str = "BackupAgeSeconds";
pub const METRIC_EXPORT_AGE: &str = "ExportAgeSeconds";
pub const METRIC_PITR_LAG: &str = "PitrLagSeconds";
pub const METRIC_FRESHNESS_VIOLATION: &str = "FreshnessViolation";
pub const METRIC_EXPORT_VERIFY_FAILURE: &str = "ExportVerificationFailure";
pub const METRIC_VALIDATE_FAILURE: &str = "ValidateFailure";
pub const METRIC_DRILL_SUCCESS: &str = "RestoreDrillSuccess";
pub const METRIC_DRILL_SECONDS: &str = "RestoreDrillSeconds";
pub const METRIC_DRILL_VERIFY_SECONDS: &str = "RestoreDrillVerifySeconds";
pub const METRIC_DRILL_LEVEL: &str = "RestoreDrillLevel";
pub const METRIC_DRILL_FAILURE: &str = "RestoreDrillFailure";
pub const METRIC_BUCKET_SUCCESS: &str = "BucketBackupSuccess";
pub const METRIC_BUCKET_FAILURE: &str = "BucketBackupFailure";
pub const METRIC_BUCKET_DURATION: &str = "BucketBackupDuration";
pub const METRIC_BUCKET_OBJECTS: &str = "BucketBackupObjects";
pub const METRIC_BUCKET_BYTES: &str = "BucketBackupBytes";
pub const METRIC_BUCKET_COPIED_BYTES: &str = "BucketBackupCopiedBytes";
pub const METRIC_REPLICA_LAG: &str = "ReplicaLagSeconds";
pub const METRIC_REPLICA_FAILURE: &str = "ReplicaFailure";
pub const METRIC_SIZE_CHANGE: &str = "BackupSizeChangePercent";
pub const METRIC_ANOMALY: &str = "BackupAnomaly";
pub const METRIC_PITR_ENABLED: &str = "PitrEnabled";
pub const METRIC_VERSIONING_ENABLED: &str = "BucketVersioningEnabled";

/// CloudWatch accepts up to 1,000 metric data points per PutMetricData call.
pub const MAX_DATA_PER_CALL: usize = 1000;

/// Publishes the report to the topic; returns the message id.
pub async fn publish_sns(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    report: &RunReport,
) -> Result<String> {
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .map_err(|e| Error::Aws {
                operation: "Publish",
                resource: format!("topic {topic_arn}"),
                code: None,
                message: format!("could not build a message attribute: {e}"),
                retryable: false,
                hint: String::new(),
            })
    };
    let out = sns
        .publish()
        .topic_arn(topic_arn)
        .subject(report.subject())
        .message_structure("json")
        .message(crate::chat::structured_message(report))
        .message_attributes("severity", attr(report.severity())?)
        .message_attributes("job", attr(report.job.name())?)
        .message_attributes("status", attr(&format!("{:?}", report.status))?)
        .send()
        .await
        .map_err(|e| Error::aws("Publish", format!("topic {topic_arn}"), e))?;
    Ok(out.message_id.unwrap_or_default())
}

/// Pure: the metric data of one run, dimensions Job and Table.
/// - snapshot: BackupSuccess and BackupFailure (Count) for every table worked on in this run;
///   BackupDuration (Seconds) and BackupSize (Bytes) for every backup made. Tables already done
///   for the slot add nothing, so a redelivery counts nothing twice.
/// - export: ExportSuccess and ExportFailure (Count) for every table whose export finished or
///   failed in this run; ExportDuration (Seconds), ExportItems (Count) and ExportBytes (Bytes,
///   as stored) for every export finished. An export still under way adds nothing yet.
/// - retention: RetentionKept and RetentionDeleted (Count) per table whose plan ran (a dry run
///   publishes nothing); RetentionFailure (Count) 1 for a failed table, 0 otherwise.
/// - and the run's totals of the same metrics with the Job dimension alone (BackupDuration:
///   the run's duration), which the template's alarms and dashboard read.
pub fn metric_data(report: &RunReport) -> Vec<MetricDatum> {
    let data = MetricData::of(report);
    match report.job {
        JobKind::Snapshot => [
            snapshot_metrics(report, &data),
            anomaly_metrics(report, &data),
        ]
        .concat(),
        JobKind::Export => [
            export_metrics(report, &data),
            anomaly_metrics(report, &data),
        ]
        .concat(),
        JobKind::Retention => retention_metrics(report, &data),
        JobKind::Validate => validate_metrics(report, &data),
        JobKind::Bucket => bucket_metrics(report, &data),
    }
}

/// Per bucket (dimensions Job and Bucket): BucketBackupSuccess and BucketBackupFailure (Count)
/// for every bucket whose backup finished or failed in this run; BucketBackupDuration
/// (Seconds), BucketBackupObjects (Count), BucketBackupBytes and BucketBackupCopiedBytes
/// (Bytes) for every backup finished; with a replica, ReplicaLagSeconds (dimensions Job, Bucket
/// and Replica) whenever it was measured and ReplicaFailure 1/0. Run totals of success,
/// failure, duration, copied bytes and replica failures with the Job dimension alone.
fn bucket_metrics(report: &RunReport, m: &MetricData) -> Vec<MetricDatum> {
    let mut data = Vec::new();
    let t = &report.totals;
    if t.created + t.failed > 0 {
        data.push(m.total(METRIC_BUCKET_SUCCESS, t.created as f64, StandardUnit::Count));
        data.push(m.total(METRIC_BUCKET_FAILURE, t.failed as f64, StandardUnit::Count));
        data.push(m.total(
            METRIC_BUCKET_DURATION,
            report.duration_ms as f64 / 1000.0,
            StandardUnit::Seconds,
        ));
        data.push(m.total(
            METRIC_BUCKET_COPIED_BYTES,
            t.bytes_copied as f64,
            StandardUnit::Bytes,
        ));
    }
    data.extend(replica_total(report, m));
    for t in &report.targets {
        let b = t.bucket.as_deref();
        match &t.outcome {
            Outcome::Created { .. } => {
                data.push(m.bucket(METRIC_BUCKET_SUCCESS, &t.table, 1.0, StandardUnit::Count));
                data.push(m.bucket(METRIC_BUCKET_FAILURE, &t.table, 0.0, StandardUnit::Count));
                data.push(m.bucket(
                    METRIC_BUCKET_DURATION,
                    &t.table,
                    t.duration_ms as f64 / 1000.0,
                    StandardUnit::Seconds,
                ));
                if let Some(b) = b {
                    data.push(m.bucket(
                        METRIC_BUCKET_OBJECTS,
                        &t.table,
                        b.objects as f64,
                        StandardUnit::Count,
                    ));
                    data.push(m.bucket(
                        METRIC_BUCKET_BYTES,
                        &t.table,
                        b.bytes as f64,
                        StandardUnit::Bytes,
                    ));
                    data.push(m.bucket(
                        METRIC_BUCKET_COPIED_BYTES,
                        &t.table,
                        b.copied_bytes as f64,
                        StandardUnit::Bytes,
                    ));
                }
            }
            Outcome::Failed { .. } => {
                data.push(m.bucket(METRIC_BUCKET_SUCCESS, &t.table, 0.0, StandardUnit::Count));
                data.push(m.bucket(METRIC_BUCKET_FAILURE, &t.table, 1.0, StandardUnit::Count));
            }
            _ => {}
        }
        if let Some(v) = b.and_then(|b| b.versioning.as_deref()) {
            let on = if v == "Enabled" { 1.0 } else { 0.0 };
            data.push(m.bucket(METRIC_VERSIONING_ENABLED, &t.table, on, StandardUnit::Count));
        }
        data.extend(replica_metrics(m, t));
    }
    data
}

/// Snapshot and export, per new backup compared with its baseline (dimensions Job and Table):
/// BackupSizeChangePercent (signed, Percent) and BackupAnomaly (1/0); a first backup has no
/// baseline and sends BackupAnomaly 0 alone. The run's BackupAnomaly total (Job alone), which
/// the template's alarm watches, whenever any backup was checked.
fn anomaly_metrics(report: &RunReport, m: &MetricData) -> Vec<MetricDatum> {
    let mut data = Vec::new();
    for t in &report.targets {
        let Some(c) = &t.size_check else { continue };
        if let Some(p) = c.change_pct() {
            data.push(m.table(METRIC_SIZE_CHANGE, &t.table, p, StandardUnit::Percent));
        }
        let v = if c.is_anomaly() { 1.0 } else { 0.0 };
        data.push(m.table(METRIC_ANOMALY, &t.table, v, StandardUnit::Count));
    }
    if report.targets.iter().any(|t| t.size_check.is_some()) {
        data.push(m.total(
            METRIC_ANOMALY,
            report.totals.anomalies as f64,
            StandardUnit::Count,
        ));
    }
    data
}

/// The run's ReplicaFailure total (Job dimension alone), when any target has a replica.
fn replica_total(report: &RunReport, m: &MetricData) -> Option<MetricDatum> {
    report.targets.iter().any(|t| t.replica.is_some()).then(|| {
        m.total(
            METRIC_REPLICA_FAILURE,
            report.totals.replicas_failed as f64,
            StandardUnit::Count,
        )
    })
}

/// ReplicaFailure (1/0) and ReplicaLagSeconds of a target with a replica, dimensions Job,
/// the target (Bucket or Table) and Replica.
fn replica_metrics(m: &MetricData, t: &crate::report::TargetReport) -> Vec<MetricDatum> {
    let Some(r) = &t.replica else {
        return Vec::new();
    };
    let dim = match m.report.job {
        JobKind::Bucket => "Bucket",
        JobKind::Snapshot | JobKind::Export | JobKind::Retention | JobKind::Validate => "Table",
    };
    let failed = if r.ok { 0.0 } else { 1.0 };
    let mut data = vec![m.replica(
        METRIC_REPLICA_FAILURE,
        (dim, &t.table),
        &r.target,
        failed,
        StandardUnit::Count,
    )];
    if let Some(lag) = r.lag_s {
        data.push(m.replica(
            METRIC_REPLICA_LAG,
            (dim, &t.table),
            &r.target,
            lag as f64,
            StandardUnit::Seconds,
        ));
    }
    data
}

/// Per table: the ages and lag (when there is something to age), 1/0 for a freshness
/// violation, failed export verifications, and for a drill that finished: success, RTO, verify
/// time and level (2 proven, 1 consistent, 0 failed). Run totals (what the alarms watch):
/// tables that could not be checked, stale tables, failed verifications and broken chains,
/// failed drills.
fn validate_metrics(report: &RunReport, m: &MetricData) -> Vec<MetricDatum> {
    let t = &report.totals;
    let broken: usize = report
        .targets
        .iter()
        .filter_map(|t| t.validation.as_ref())
        .map(|v| v.broken_chains.len())
        .sum();
    let mut data = vec![
        m.total(
            METRIC_VALIDATE_FAILURE,
            t.failed as f64,
            StandardUnit::Count,
        ),
        m.total(
            METRIC_FRESHNESS_VIOLATION,
            t.stale as f64,
            StandardUnit::Count,
        ),
        m.total(
            METRIC_EXPORT_VERIFY_FAILURE,
            (t.exports_failed + broken) as f64,
            StandardUnit::Count,
        ),
        m.total(
            METRIC_DRILL_FAILURE,
            t.drills_failed as f64,
            StandardUnit::Count,
        ),
    ];
    for t in &report.targets {
        if matches!(t.outcome, Outcome::Failed { .. }) {
            data.push(m.table(METRIC_VALIDATE_FAILURE, &t.table, 1.0, StandardUnit::Count));
        }
        let Some(v) = &t.validation else { continue };
        for (name, value) in [
            (METRIC_BACKUP_AGE, v.backup_age_s),
            (METRIC_EXPORT_AGE, v.export_age_s),
            (METRIC_PITR_LAG, v.pitr_lag_s),
        ] {
            if let Some(s) = value {
                data.push(m.table(name, &t.table, s as f64, StandardUnit::Seconds));
            }
        }
        data.push(m.table(
            METRIC_FRESHNESS_VIOLATION,
            &t.table,
            if v.stale.is_empty() { 0.0 } else { 1.0 },
            StandardUnit::Count,
        ));
        if let Some(on) = v.pitr_enabled {
            data.push(m.table(
                METRIC_PITR_ENABLED,
                &t.table,
                if on { 1.0 } else { 0.0 },
                StandardUnit::Count,
            ));
        }
        let failed = v.exports.iter().filter(|c| !c.ok).count() + v.broken_chains.len();
        data.push(m.table(
            METRIC_EXPORT_VERIFY_FAILURE,
            &t.table,
            failed as f64,
            StandardUnit::Count,
        ));
        if let Some(d) = &v.drill {
            if let Some(level) = d.level {
                let ok = level != crate::drill::DrillLevel::Failed;
                data.push(m.table(
                    METRIC_DRILL_SUCCESS,
                    &t.table,
                    if ok { 1.0 } else { 0.0 },
                    StandardUnit::Count,
                ));
                data.push(m.table(
                    METRIC_DRILL_LEVEL,
                    &t.table,
                    level.metric(),
                    StandardUnit::None,
                ));
                if let Some(s) = d.restore_s {
                    data.push(m.table(METRIC_DRILL_SECONDS, &t.table, s, StandardUnit::Seconds));
                }
                if let Some(s) = d.verify_s {
                    data.push(m.table(
                        METRIC_DRILL_VERIFY_SECONDS,
                        &t.table,
                        s,
                        StandardUnit::Seconds,
                    ));
                }
            }
        }
    }
    data
}

/// Builds the data points of one run: its time, and its Job dimension.
struct MetricData<'a> {
    report: &'a RunReport,
    at: DateTime,
}

impl<'a> MetricData<'a> {
    fn of(report: &'a RunReport) -> Self {
        MetricData {
            report,
            at: DateTime::from_secs(report.finished_at.as_second()),
        }
    }

    /// A run total: dimension Job alone.
    fn total(&self, name: &str, value: f64, unit: StandardUnit) -> MetricDatum {
        self.datum(name, None, value, unit)
    }

    /// A table's datum: dimensions Job and Table.
    fn table(&self, name: &str, table: &str, value: f64, unit: StandardUnit) -> MetricDatum {
        self.datum(name, Some(table), value, unit)
    }

    /// A bucket's datum: dimensions Job and Bucket.
    fn bucket(&self, name: &str, bucket: &str, value: f64, unit: StandardUnit) -> MetricDatum {
        self.with_dimensions(name, &[("Bucket", bucket)], value, unit)
    }

    /// A replica's datum: dimensions Job, the target's (Bucket or Table) and Replica (the
    /// replica's location).
    fn replica(
        &self,
        name: &str,
        (dim, target): (&str, &str),
        replica: &str,
        value: f64,
        unit: StandardUnit,
    ) -> MetricDatum {
        self.with_dimensions(name, &[(dim, target), ("Replica", replica)], value, unit)
    }

    fn datum(
        &self,
        name: &str,
        table: Option<&str>,
        value: f64,
        unit: StandardUnit,
    ) -> MetricDatum {
        match table {
            Some(t) => self.with_dimensions(name, &[("Table", t)], value, unit),
            None => self.with_dimensions(name, &[], value, unit),
        }
    }

    fn with_dimensions(
        &self,
        name: &str,
        dims: &[(&str, &str)],
        value: f64,
        unit: StandardUnit,
    ) -> MetricDatum {
        let mut b = MetricDatum::builder().metric_name(name).dimensions(
            Dimension::builder()
                .name("Job")
                .value(self.report.job.name())
                .build(),
        );
        for (k, v) in dims {
            // CloudWatch takes dimension values up to 1,024 characters.
            let v: String = v.chars().take(1024).collect();
            b = b.dimensions(Dimension::builder().name(*k).value(v).build());
        }
        b.timestamp(self.at).value(value).unit(unit).build()
    }
}

fn snapshot_metrics(report: &RunReport, m: &MetricData) -> Vec<MetricDatum> {
    let mut data = Vec::new();
    // Run totals only for runs that worked on something, so a redelivery adds no data points.
    let t = &report.totals;
    if t.created + t.failed > 0 {
        data.push(m.total(METRIC_SUCCESS, t.created as f64, StandardUnit::Count));
        data.push(m.total(METRIC_FAILURE, t.failed as f64, StandardUnit::Count));
        data.push(m.total(
            METRIC_DURATION,
            report.duration_ms as f64 / 1000.0,
            StandardUnit::Seconds,
        ));
        data.push(m.total(METRIC_SIZE, t.bytes as f64, StandardUnit::Bytes));
    }
    for t in &report.targets {
        match &t.outcome {
            Outcome::Created { backup } => {
                data.push(m.table(METRIC_SUCCESS, &t.table, 1.0, StandardUnit::Count));
                data.push(m.table(METRIC_FAILURE, &t.table, 0.0, StandardUnit::Count));
                data.push(m.table(
                    METRIC_DURATION,
                    &t.table,
                    t.duration_ms as f64 / 1000.0,
                    StandardUnit::Seconds,
                ));
                if let Some(size) = backup.size_bytes {
                    data.push(m.table(METRIC_SIZE, &t.table, size as f64, StandardUnit::Bytes));
                }
            }
            Outcome::Failed { .. } => {
                data.push(m.table(METRIC_SUCCESS, &t.table, 0.0, StandardUnit::Count));
                data.push(m.table(METRIC_FAILURE, &t.table, 1.0, StandardUnit::Count));
            }
            _ => {}
        }
    }
    data
}

fn export_metrics(report: &RunReport, m: &MetricData) -> Vec<MetricDatum> {
    let mut data = Vec::new();
    let t = &report.totals;
    if t.created + t.failed > 0 {
        data.push(m.total(METRIC_EXPORT_SUCCESS, t.created as f64, StandardUnit::Count));
        data.push(m.total(METRIC_EXPORT_FAILURE, t.failed as f64, StandardUnit::Count));
        data.push(m.total(
            METRIC_EXPORT_DURATION,
            report.duration_ms as f64 / 1000.0,
            StandardUnit::Seconds,
        ));
        data.push(m.total(METRIC_EXPORT_ITEMS, t.items as f64, StandardUnit::Count));
        data.push(m.total(METRIC_EXPORT_BYTES, t.bytes as f64, StandardUnit::Bytes));
    }
    for t in &report.targets {
        match &t.outcome {
            Outcome::Created { backup } => {
                data.push(m.table(METRIC_EXPORT_SUCCESS, &t.table, 1.0, StandardUnit::Count));
                data.push(m.table(METRIC_EXPORT_FAILURE, &t.table, 0.0, StandardUnit::Count));
                data.push(m.table(
                    METRIC_EXPORT_DURATION,
                    &t.table,
                    t.duration_ms as f64 / 1000.0,
                    StandardUnit::Seconds,
                ));
                let items = backup.item_count.unwrap_or(0) as f64;
                data.push(m.table(METRIC_EXPORT_ITEMS, &t.table, items, StandardUnit::Count));
                let bytes = backup.size_bytes.unwrap_or(0) as f64;
                data.push(m.table(METRIC_EXPORT_BYTES, &t.table, bytes, StandardUnit::Bytes));
            }
            Outcome::Failed { .. } => {
                data.push(m.table(METRIC_EXPORT_SUCCESS, &t.table, 0.0, StandardUnit::Count));
                data.push(m.table(METRIC_EXPORT_FAILURE, &t.table, 1.0, StandardUnit::Count));
            }
            _ => {}
        }
        data.extend(replica_metrics(m, t));
    }
    data.extend(replica_total(report, m));
    data
}

fn retention_metrics(report: &RunReport, m: &MetricData) -> Vec<MetricDatum> {
    let mut data = Vec::new();
    let t = &report.totals;
    if t.retained + t.failed > 0 {
        data.push(m.total(METRIC_RETENTION_KEPT, t.kept as f64, StandardUnit::Count));
        data.push(m.total(
            METRIC_RETENTION_DELETED,
            t.deleted as f64,
            StandardUnit::Count,
        ));
        data.push(m.total(
            METRIC_RETENTION_FAILURE,
            t.failed as f64,
            StandardUnit::Count,
        ));
    }
    for t in &report.targets {
        match &t.outcome {
            Outcome::Failed { .. } => {
                data.push(m.table(METRIC_RETENTION_FAILURE, &t.table, 1.0, StandardUnit::Count));
            }
            Outcome::Retained {
                kept,
                deleted,
                failed_deletes,
                ..
            } => {
                data.push(m.table(
                    METRIC_RETENTION_KEPT,
                    &t.table,
                    *kept as f64,
                    StandardUnit::Count,
                ));
                data.push(m.table(
                    METRIC_RETENTION_DELETED,
                    &t.table,
                    *deleted as f64,
                    StandardUnit::Count,
                ));
                let failed = if *failed_deletes > 0 { 1.0 } else { 0.0 };
                data.push(m.table(
                    METRIC_RETENTION_FAILURE,
                    &t.table,
                    failed,
                    StandardUnit::Count,
                ));
            }
            _ => {}
        }
    }
    data
}

/// Sends the run's metric data: one PutMetricData call (more only past 1,000 data points).
pub async fn publish_metrics(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    report: &RunReport,
) -> Result<usize> {
    let data = metric_data(report);
    for chunk in data.chunks(MAX_DATA_PER_CALL) {
        cw.put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws("PutMetricData", format!("namespace {namespace}"), e))?;
    }
    Ok(data.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ScheduleSlot, Trigger};
    use crate::report::*;

    fn report() -> RunReport {
        let targets = vec![
            TargetReport {
                table: "Aaa".into(),
                outcome: Outcome::Created {
                    backup: BackupInfo {
                        backup_arn: "arn".into(),
                        backup_name: "n".into(),
                        created_at: None,
                        size_bytes: Some(500),
                        item_count: Some(3),
                        backup_status: "AVAILABLE".into(),
                        table_shape: None,
                        table_settings: None,
                    },
                },
                pitr: None,
                duration_ms: 2500,
                warnings: vec![],
                decisions: vec![],
                export: None,
                export_retention: None,
                validation: None,
                bucket: None,
                replica: None,
                size_check: None,
            },
            TargetReport {
                table: "Bbb".into(),
                outcome: Outcome::Failed {
                    operation: "CreateBackup".into(),
                    error: "x".into(),
                    retryable: false,
                },
                pitr: None,
                duration_ms: 1,
                warnings: vec![],
                decisions: vec![],
                export: None,
                export_retention: None,
                validation: None,
                bucket: None,
                replica: None,
                size_check: None,
            },
            TargetReport {
                table: "Ccc".into(),
                outcome: Outcome::AlreadyDone {
                    backup: BackupInfo {
                        backup_arn: "arn".into(),
                        backup_name: "n".into(),
                        created_at: None,
                        size_bytes: Some(500),
                        item_count: Some(3),
                        backup_status: "AVAILABLE".into(),
                        table_shape: None,
                        table_settings: None,
                    },
                    note: "already".into(),
                },
                pitr: None,
                duration_ms: 1,
                warnings: vec![],
                decisions: vec![],
                export: None,
                export_retention: None,
                validation: None,
                bucket: None,
                replica: None,
                size_check: None,
            },
        ];
        let totals = Totals::from_targets(&targets);
        RunReport {
            run_id: "r".into(),
            job: JobKind::Snapshot,
            slot: ScheduleSlot::parse("2026-11-22T02:00:00Z").unwrap(),
            trigger: Trigger::Manual,
            dry_run: false,
            status: run_status(&totals, &[]),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
            duration_ms: 1,
            selection: String::new(),
            targets,
            excluded: vec![],
            totals,
            errors: vec![],
            delivery: Delivery::default(),
            truncated: None,
            warnings: vec![],
        }
    }

    fn find<'a>(d: &'a [MetricDatum], name: &str, table: &str) -> Option<&'a MetricDatum> {
        d.iter().find(|m| {
            m.metric_name() == Some(name)
                && m.dimensions()
                    .iter()
                    .any(|x| x.name() == Some("Table") && x.value() == Some(table))
        })
    }

    #[test]
    fn created_and_failed_tables_produce_metrics_and_already_done_none() {
        let d = metric_data(&report());
        assert_eq!(find(&d, METRIC_SUCCESS, "Aaa").unwrap().value(), Some(1.0));
        assert_eq!(find(&d, METRIC_DURATION, "Aaa").unwrap().value(), Some(2.5));
        assert_eq!(
            find(&d, METRIC_SIZE, "Aaa").unwrap().unit(),
            Some(&StandardUnit::Bytes)
        );
        assert_eq!(find(&d, METRIC_FAILURE, "Bbb").unwrap().value(), Some(1.0));
        assert!(find(&d, METRIC_SUCCESS, "Ccc").is_none());
        let per_table: Vec<_> = d.iter().filter(|m| m.dimensions().len() == 2).collect();
        assert_eq!(per_table.len(), 6);
        for m in &per_table {
            let dims: Vec<_> = m.dimensions().iter().filter_map(|x| x.name()).collect();
            assert_eq!(dims, ["Job", "Table"]);
        }
        // Run totals with the Job dimension alone, for the alarms.
        let job_level = |name: &str| {
            d.iter()
                .find(|m| m.metric_name() == Some(name) && m.dimensions().len() == 1)
                .and_then(|m| m.value())
        };
        assert_eq!(job_level(METRIC_SUCCESS), Some(1.0));
        assert_eq!(job_level(METRIC_FAILURE), Some(1.0));
        assert_eq!(job_level(METRIC_SIZE), Some(500.0));
    }
}
