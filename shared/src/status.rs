//! `backstop status`: where every selected table and bucket stands, one line each. The verdict
//! is pure ([`assess_table`], [`assess_bucket`]); [`gather`] reads the catalog,
//! DescribeContinuousBackups and GetBucketVersioning.

use jiff::Timestamp;
use serde::Serialize;

use crate::aws::Clients;
use crate::catalog::{Catalog, TargetRecord, TargetStatus};
use crate::drill::{Drill, DrillLevel};
use crate::error::{Error, Result};
use crate::freshness::{self, Evidence, Limits, Pitr};
use crate::settings::JobKind;

/// How one target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Fresh,
    /// A limit is passed (no backup recently enough, PITR off or behind).
    Stale,
    /// The newest attempt failed, or something could not be read.
    Failed,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Fresh => "fresh",
            Verdict::Stale => "STALE",
            Verdict::Failed => "FAILED",
        }
    }
}

/// Point-in-time recovery as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PitrWindow {
    /// `on`, `off` or `unknown`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earliest: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last drill of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastDrill {
    pub started_at: Timestamp,
    /// `proven`, `consistent`, `failed`, or the state of a drill still going.
    pub level: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_s: Option<f64>,
}

/// The last run of a job (the retention job's, for status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRun {
    pub slot: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// One line of `backstop status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusLine {
    /// `table` or `bucket`.
    pub kind: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_backup: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_age_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_export: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_age_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrWindow>,
    /// Buckets: the versioning status (`Enabled`, `Suspended`, or `never enabled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<LastDrill>,
    pub verdict: Verdict,
    /// Why the verdict is not `fresh`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Everything `backstop status` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub at: Timestamp,
    pub catalog: String,
    pub lines: Vec<StatusLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_retention: Option<LastRun>,
    /// Selections that could not be resolved (the reason).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Status {
    /// All fresh, and nothing that could not be read: the exit status 0.
    /// Nothing selected is not fresh either: a selection that matches nothing (a typo, a tag
    /// removed, the wrong region) must not pass a gate.
    pub fn all_fresh(&self) -> bool {
        self.errors.is_empty()
            && !self.lines.is_empty()
            && self.lines.iter().all(|l| l.verdict == Verdict::Fresh)
    }
}

/// Whether a record is an attempt still going: claimed with a lease that has not run out, or
/// started (AWS runs a native export; a logical one continues in a later invocation).
fn in_the_works(r: &TargetRecord, now: Timestamp) -> bool {
    match r.status {
        TargetStatus::Started => true,
        TargetStatus::Claimed => r.lease_until.is_none_or(|l| l >= now.as_second()),
        _ => false,
    }
}

/// The newest record of a target's history that is not still in the works, when it failed
/// (or died holding its claim): the reason. A failed slot followed by a done one is history,
/// not a failure.
fn newest_failure(records: &[TargetRecord], now: Timestamp) -> Option<String> {
    let newest = records
        .iter()
        .filter(|r| !in_the_works(r, now))
        .max_by(|a, b| a.slot.cmp(&b.slot))?;
    match newest.status {
        TargetStatus::Failed => Some(format!(
            "the newest attempt (slot {}) failed: {}",
            newest.slot,
            crate::report::clip(newest.error.as_deref().unwrap_or("no reason recorded"), 300)
        )),
        TargetStatus::Claimed => Some(format!(
            "the newest attempt (slot {}, run {}) died holding its claim (its lease ran out) and nothing has retried it",
            newest.slot, newest.run_id
        )),
        _ => None,
    }
}

/// When the newest complete export was read back and found damaged: what is wrong.
fn newest_export_damaged(exports: &[TargetRecord]) -> Option<String> {
    let newest = exports
        .iter()
        .filter(|r| r.status == TargetStatus::Done && r.export.is_some())
        .max_by_key(|r| r.export.as_ref().map(|m| m.export_time))?;
    let v = newest.verification.as_ref()?;
    (!v.ok).then(|| {
        format!(
            "the newest export (slot {}) failed its read-back: {}",
            newest.slot,
            crate::report::clip(&v.detail, 300)
        )
    })
}

fn age(now: Timestamp, t: Option<Timestamp>) -> Option<i64> {
    t.map(|t| now.duration_since(t).as_secs().max(0))
}

/// Pure: a table's line from its snapshot and export records, PITR and last drill.
pub fn assess_table(
    now: Timestamp,
    limits: &Limits,
    table: &str,
    backups: &[TargetRecord],
    exports: &[TargetRecord],
    pitr: (Pitr, Option<Timestamp>),
    drill: Option<&Drill>,
) -> StatusLine {
    let (pitr, earliest) = pitr;
    let evidence = Evidence {
        newest_backup: freshness::newest_backup(backups),
        newest_export: freshness::newest_export(exports),
        pitr: pitr.clone(),
    };
    let f = freshness::assess(now, limits, &evidence);
    let mut reasons: Vec<String> = f.violations.iter().map(|v| v.to_string()).collect();
    let mut verdict = if f.is_fresh() {
        Verdict::Fresh
    } else {
        Verdict::Stale
    };
    for (what, failure) in [
        ("backup", newest_failure(backups, now)),
        ("export", newest_failure(exports, now)),
        ("export", newest_export_damaged(exports)),
    ] {
        if let Some(why) = failure {
            verdict = Verdict::Failed;
            reasons.push(format!("{what}: {why}"));
        }
    }
    let last_drill = drill.map(|d| LastDrill {
        started_at: d.started_at,
        level: match d.level {
            Some(l) => l.as_str().to_owned(),
            None => format!("{} (not finished)", d.state.as_str()),
        },
        rto_s: d.restore_s,
    });
    if drill.and_then(|d| d.level) == Some(DrillLevel::Failed) {
        verdict = Verdict::Failed;
        reasons.push(format!(
            "the last restore drill failed: {}",
            crate::report::clip(drill.map(|d| d.detail.as_str()).unwrap_or_default(), 300)
        ));
    }
    let pitr_window = match &pitr {
        Pitr::On { latest_restorable } => PitrWindow {
            state: "on".into(),
            earliest,
            latest: *latest_restorable,
            error: None,
        },
        Pitr::Off => PitrWindow {
            state: "off".into(),
            earliest: None,
            latest: None,
            error: None,
        },
        Pitr::Unknown(e) => PitrWindow {
            state: "unknown".into(),
            earliest: None,
            latest: None,
            error: Some(crate::report::clip(e, 300)),
        },
    };
    StatusLine {
        kind: "table",
        name: table.to_owned(),
        newest_backup: evidence.newest_backup,
        backup_age_s: f.backup_age_s,
        newest_export: evidence.newest_export,
        export_age_s: f.export_age_s,
        pitr: Some(pitr_window),
        versioning: None,
        last_drill,
        verdict,
        reasons,
    }
}

/// Pure: a database's line (`rds:<id>`) from its snapshot records, automated backups and last
/// drill: a table's judgement without exports.
pub fn assess_database(
    now: Timestamp,
    limits: &Limits,
    target: &str,
    snapshots: &[TargetRecord],
    automated: Pitr,
    drill: Option<&Drill>,
) -> StatusLine {
    let has_pitr = crate::db::DbTarget::parse(target).is_none_or(|t| t.kind.has_point_in_time());
    let limits = Limits {
        export: None,
        // A kind without point-in-time recovery (ElastiCache) is judged by its snapshots.
        pitr_lag: limits.pitr_lag.filter(|_| has_pitr),
        ..*limits
    };
    StatusLine {
        kind: "database",
        ..assess_table(
            now,
            &limits,
            target,
            snapshots,
            &[],
            (automated, None),
            drill,
        )
    }
}

/// Pure: a bucket's line from its bucket-job records and versioning status.
pub fn assess_bucket(
    now: Timestamp,
    max_age: jiff::SignedDuration,
    bucket: &str,
    records: &[TargetRecord],
    versioning: std::result::Result<String, String>,
) -> StatusLine {
    let newest = freshness::newest_backup(records);
    let backup_age_s = age(now, newest);
    let mut reasons = Vec::new();
    let mut verdict = Verdict::Fresh;
    match backup_age_s {
        None => {
            verdict = Verdict::Stale;
            reasons.push("no complete backup at all".to_owned());
        }
        Some(a) if a > max_age.as_secs() => {
            verdict = Verdict::Stale;
            reasons.push(format!(
                "newest complete backup is {} old (limit {})",
                freshness::human(a),
                freshness::human(max_age.as_secs())
            ));
        }
        Some(_) => {}
    }
    if let Some(why) = newest_failure(records, now) {
        verdict = Verdict::Failed;
        reasons.push(format!("backup: {why}"));
    }
    let versioning = match versioning {
        Ok(v) => {
            if v != "Enabled" {
                reasons.push(format!(
                    "versioning is {v}: an overwritten or deleted object cannot be recovered from the bucket itself"
                ));
                if verdict == Verdict::Fresh {
                    verdict = Verdict::Stale;
                }
            }
            v
        }
        Err(e) => {
            verdict = Verdict::Failed;
            reasons.push(e);
            "unknown".to_owned()
        }
    };
    StatusLine {
        kind: "bucket",
        name: bucket.to_owned(),
        newest_backup: newest,
        backup_age_s,
        newest_export: None,
        export_age_s: None,
        pitr: None,
        versioning: Some(versioning),
        last_drill: None,
        verdict,
        reasons,
    }
}

/// The newest run record of a job, by slot.
pub async fn last_run(catalog: &Catalog, job: JobKind) -> Result<Option<LastRun>> {
    let out = catalog
        .client()
        .query()
        .table_name(catalog.table_name())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("RUN#{job}")),
        )
        .scan_index_forward(false)
        .limit(1)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "Query (run records)",
                format!("catalog table {}", catalog.table_name()),
                e,
            )
        })?;
    Ok(out.items().first().map(|item| {
        let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        LastRun {
            slot: get("slot").unwrap_or_default(),
            status: get("status").unwrap_or_default(),
            finished_at: get("finished_at"),
        }
    }))
}

/// Status as the settings in `env` select it: the validate job's tables and freshness limits,
/// and, when a bucket selection is set, the bucket job's buckets held to the backup age limit.
/// Selections that cannot be resolved are errors in the status (its exit status is then 1).
pub async fn for_environment(
    clients: &Clients,
    env: &crate::settings::Environment,
    now: Timestamp,
) -> Result<Status> {
    use crate::settings::{JobSettings, Settings, ENV_BUCKETS, ENV_BUCKET_PATTERN, ENV_BUCKET_TAG};
    let request = crate::event::JobRequest::from_payload(&serde_json::json!({}), now)?;
    let settings = Settings::resolve(JobKind::Validate, env, &request)?;
    let JobSettings::Validate(v) = &settings.job else {
        return Err(Error::Local("validate settings expected".into()));
    };
    let limits = v.limits();
    let catalog = Catalog::new((*clients.dynamodb).clone(), &settings.catalog_table);
    let mut errors = Vec::new();
    let mut unreadable_lines = Vec::new();
    let tables = match crate::selection::resolve(&clients.dynamodb, &settings).await {
        Ok(sel) => {
            for u in sel.unreadable {
                unreadable_lines.push(StatusLine {
                    reasons: vec![format!("its selection could not be decided: {}", u.error)],
                    ..unreadable("table", &u.table, &Error::Local(String::new()))
                });
            }
            sel.tables
        }
        Err(e) => {
            errors.push(format!("selecting tables: {e}"));
            Vec::new()
        }
    };
    let mut databases = Vec::new();
    for kind in crate::db::DbKind::ALL {
        let Some(selection) = settings.databases.selection(kind) else {
            continue;
        };
        match crate::db::api::resolve(&clients.db(), kind, selection, &settings.drill_table_prefix)
            .await
        {
            Ok((ids, _)) => {
                databases.extend(ids.into_iter().map(|id| crate::db::DbTarget { kind, id }))
            }
            Err(e) => errors.push(format!("selecting {}: {e}", kind.plural())),
        }
    }
    let mut buckets = Vec::new();
    if [ENV_BUCKETS, ENV_BUCKET_PATTERN, ENV_BUCKET_TAG]
        .iter()
        .any(|k| env.value(k).is_some())
    {
        match Settings::resolve(JobKind::Bucket, env, &request) {
            Ok(bs) => {
                if let JobSettings::Bucket(b) = &bs.job {
                    let region = clients.s3.config().region().map(|r| r.to_string());
                    let mut own = vec![b.backup_bucket.as_str()];
                    own.extend(b.replica.as_ref().map(|r| r.bucket.as_str()));
                    match crate::selection::resolve_buckets(
                        &clients.s3,
                        &bs.selection,
                        bs.within.as_ref(),
                        region.as_deref(),
                        &own,
                        bs.concurrency,
                    )
                    .await
                    {
                        Ok(sel) => buckets = sel.tables,
                        Err(e) => errors.push(format!("selecting buckets: {e}")),
                    }
                }
            }
            Err(e) => errors.push(format!("bucket settings: {e}")),
        }
    }
    let mut status = gather(
        clients,
        &catalog,
        &limits,
        Targets {
            tables: &tables,
            buckets: &buckets,
            databases: &databases,
        },
        now,
    )
    .await;
    status.lines.extend(unreadable_lines);
    status.errors.extend(errors);
    Ok(status)
}

/// What to show: the tables and the buckets, already selected.
pub struct Targets<'a> {
    pub tables: &'a [String],
    pub buckets: &'a [String],
    pub databases: &'a [crate::db::DbTarget],
}

/// Reads what status shows, per target. A catalog that cannot be read for a target fails that
/// line (never a fresh verdict on half a view).
pub async fn gather(
    clients: &Clients,
    catalog: &Catalog,
    limits: &Limits,
    targets: Targets<'_>,
    now: Timestamp,
) -> Status {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for table in targets.tables {
        let read = async {
            let backups = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
            let exports = catalog.list_targets(JobKind::Export, Some(table)).await?;
            let drill = crate::drill::latest(catalog, table).await?;
            Ok::<_, Error>((backups, exports, drill))
        };
        match read.await {
            Ok((backups, exports, drill)) => {
                let pitr = crate::jobs::validate::pitr_window(clients, table).await;
                lines.push(assess_table(
                    now,
                    limits,
                    table,
                    &backups,
                    &exports,
                    pitr,
                    drill.as_ref(),
                ));
            }
            Err(e) => lines.push(unreadable("table", table, &e)),
        }
    }
    for db in targets.databases {
        let name = db.name();
        let read = async {
            let snapshots = catalog.list_targets(JobKind::Snapshot, Some(&name)).await?;
            let drill = crate::drill::latest(catalog, &name).await?;
            Ok::<_, Error>((snapshots, drill))
        };
        match read.await {
            Ok((snapshots, drill)) => {
                let automated = crate::db::api::automated_backups(&clients.db(), db).await;
                lines.push(assess_database(
                    now,
                    limits,
                    &name,
                    &snapshots,
                    automated,
                    drill.as_ref(),
                ));
            }
            Err(e) => lines.push(unreadable("database", &name, &e)),
        }
    }
    for bucket in targets.buckets {
        // The bucket job's slot records: each complete slot at the time of its data.
        match crate::bucket::record::list(catalog, bucket).await {
            Ok(slots) => {
                let records: Vec<_> = slots.iter().map(|r| r.as_target(bucket)).collect();
                let versioning = match clients
                    .s3
                    .get_bucket_versioning()
                    .bucket(bucket)
                    .send()
                    .await
                {
                    Ok(v) => Ok(v
                        .status()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "never enabled".to_owned())),
                    Err(e) => Err(
                        Error::aws("GetBucketVersioning", format!("bucket {bucket}"), e)
                            .to_string(),
                    ),
                };
                lines.push(assess_bucket(
                    now,
                    limits.backup,
                    bucket,
                    &records,
                    versioning,
                ));
            }
            Err(e) => lines.push(unreadable("bucket", bucket, &e)),
        }
    }
    let last_retention = match last_run(catalog, JobKind::Retention).await {
        Ok(r) => r,
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    Status {
        at: now,
        catalog: catalog.table_name().to_owned(),
        lines,
        last_retention,
        errors,
    }
}

fn unreadable(kind: &'static str, name: &str, e: &Error) -> StatusLine {
    StatusLine {
        kind,
        name: name.to_owned(),
        newest_backup: None,
        backup_age_s: None,
        newest_export: None,
        export_age_s: None,
        pitr: None,
        versioning: None,
        last_drill: None,
        verdict: Verdict::Failed,
        reasons: vec![format!("could not read its records: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(slot: &str, status: TargetStatus, created: &str) -> TargetRecord {
        TargetRecord {
            job: JobKind::Snapshot,
            table: "T".into(),
            slot: slot.into(),
            status,
            run_id: "r".into(),
            attempts: 1,
            backup_arn: Some("arn".into()),
            backup_name: None,
            backup_created_at: Some(created.into()),
            size_bytes: Some(1),
            item_count: Some(1),
            table_shape: None,
            table_settings: None,
            error: (status == TargetStatus::Failed).then(|| "CreateBackup: throttled".into()),
            claimed_at: None,
            updated_at: None,
            completed_at: None,
            deleted_at: None,
            legal_hold: false,
            legal_hold_unreadable: None,
            lease_until: None,
            export: None,
            verification: None,
        }
    }

    fn limits() -> Limits {
        Limits {
            backup: jiff::SignedDuration::from_hours(26),
            export: None,
            pitr_lag: None,
        }
    }

    #[test]
    fn fresh_stale_and_failed_tables() {
        let now: Timestamp = "2026-12-02T08:00:00Z".parse().unwrap();
        let on = || {
            (
                Pitr::On {
                    latest_restorable: Some(now),
                },
                Some("2026-11-25T00:00:00Z".parse().unwrap()),
            )
        };
        let fresh = vec![rec(
            "2026-12-02T02:00:00Z",
            TargetStatus::Done,
            "2026-12-02T02:00:05Z",
        )];
        let l = assess_table(now, &limits(), "T", &fresh, &[], on(), None);
        assert_eq!(l.verdict, Verdict::Fresh, "{l:?}");
        assert_eq!(l.backup_age_s, Some(6 * 3600 - 5));
        assert_eq!(l.pitr.as_ref().unwrap().state, "on");

        let old = vec![rec(
            "2026-11-29T02:00:00Z",
            TargetStatus::Done,
            "2026-11-29T02:00:05Z",
        )];
        let l = assess_table(now, &limits(), "T", &old, &[], on(), None);
        assert_eq!(l.verdict, Verdict::Stale);
        assert!(l.reasons[0].contains("old"), "{:?}", l.reasons);

        // A newer failed slot after a done one: failed, with its reason.
        let mut failed = fresh.clone();
        failed.push(rec("2026-12-02T03:00:00Z", TargetStatus::Failed, "x"));
        let l = assess_table(now, &limits(), "T", &failed, &[], on(), None);
        assert_eq!(l.verdict, Verdict::Failed);
        assert!(
            l.reasons.iter().any(|r| r.contains("throttled")),
            "{:?}",
            l.reasons
        );

        // A newer slot claimed by a run that died (its lease ran out) is a failure; one still
        // within its lease is in the works.
        let mut dead = fresh.clone();
        let mut claimed = rec("2026-12-02T03:00:00Z", TargetStatus::Claimed, "x");
        claimed.lease_until = Some(now.as_second() - 60);
        dead.push(claimed.clone());
        let l = assess_table(now, &limits(), "T", &dead, &[], on(), None);
        assert_eq!(l.verdict, Verdict::Failed, "{l:?}");
        assert!(
            l.reasons
                .iter()
                .any(|r| r.contains("died holding its claim")),
            "{:?}",
            l.reasons
        );
        claimed.lease_until = Some(now.as_second() + 60);
        let live = [fresh.clone(), vec![claimed]].concat();
        let l = assess_table(now, &limits(), "T", &live, &[], on(), None);
        assert_eq!(l.verdict, Verdict::Fresh, "{l:?}");

        // An older failure, since made good, is history.
        let mut healed = fresh.clone();
        healed.insert(0, rec("2026-12-01T02:00:00Z", TargetStatus::Failed, "x"));
        let l = assess_table(now, &limits(), "T", &healed, &[], on(), None);
        assert_eq!(l.verdict, Verdict::Fresh, "{l:?}");
    }

    #[test]
    fn a_damaged_newest_export_fails_and_nothing_selected_is_not_fresh() {
        let now: Timestamp = "2026-12-02T08:00:00Z".parse().unwrap();
        let backups = vec![rec(
            "2026-12-02T02:00:00Z",
            TargetStatus::Done,
            "2026-12-02T02:00:05Z",
        )];
        let mut export = rec(
            "2026-11-29T03:00:00Z",
            TargetStatus::Done,
            "2026-11-29T03:00:00Z",
        );
        export.job = JobKind::Export;
        export.export = Some(
            serde_json::from_value(serde_json::json!({
                "made": "logical", "export_type": "FULL_EXPORT", "export_id": "e",
                "bucket": "b", "root": "r", "export_time": "2026-11-29T03:00:00Z"
            }))
            .unwrap(),
        );
        let limits = Limits {
            export: Some(jiff::SignedDuration::from_hours(8 * 24)),
            ..limits()
        };
        let pitr = || (Pitr::Off, None);
        let l = assess_table(now, &limits, "T", &backups, &[export.clone()], pitr(), None);
        assert_eq!(l.verdict, Verdict::Fresh, "{l:?}");
        export.verification = Some(crate::catalog::Verification {
            at: now,
            ok: false,
            detail: "data file 2 of 3: md5 mismatch".into(),
            items: None,
            fingerprint: None,
        });
        let l = assess_table(now, &limits, "T", &backups, &[export], pitr(), None);
        assert_eq!(l.verdict, Verdict::Failed, "{l:?}");
        assert!(
            l.reasons.iter().any(|r| r.contains("md5 mismatch")),
            "{:?}",
            l.reasons
        );

        let empty = Status {
            at: now,
            catalog: "c".into(),
            lines: vec![],
            last_retention: None,
            errors: vec![],
        };
        assert!(!empty.all_fresh());
    }

    #[test]
    fn a_bucket_without_versioning_is_stale_and_one_unreadable_failed() {
        let now: Timestamp = "2026-12-02T08:00:00Z".parse().unwrap();
        let fresh = vec![rec(
            "2026-12-02T02:00:00Z",
            TargetStatus::Done,
            "2026-12-02T02:00:05Z",
        )];
        let max = jiff::SignedDuration::from_hours(26);
        assert_eq!(
            assess_bucket(now, max, "b", &fresh, Ok("Enabled".into())).verdict,
            Verdict::Fresh
        );
        assert_eq!(
            assess_bucket(now, max, "b", &fresh, Ok("Suspended".into())).verdict,
            Verdict::Stale
        );
        assert_eq!(
            assess_bucket(now, max, "b", &fresh, Err("denied".into())).verdict,
            Verdict::Failed
        );
        assert_eq!(
            assess_bucket(now, max, "b", &[], Ok("Enabled".into())).verdict,
            Verdict::Stale
        );
    }
}
