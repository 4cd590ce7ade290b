//! The retention job: for each selected table, list its backups (all pages, joined with the
//! catalog), plan with the policy, and delete what the plan says, within DeleteBackup's limit of
//! 10 calls per second. Anything short of a complete listing deletes nothing for that table.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::Client as DynamoDb;
use jiff::Timestamp;
use tracing::{info, info_span, Instrument};

use crate::aws::Clients;
use crate::backups;
use crate::catalog::{Catalog, TargetRecord};
use crate::error::{Error, Result};
use crate::event::{JobRequest, ScheduleSlot};
use crate::report::{Outcome, PointDecision, RunReport, TargetReport};
use crate::retention::{self, CompiledPolicy, Decision, RecoveryPoint, RetentionPlan};
use crate::settings::{JobKind, Settings};

pub const JOB: JobKind = JobKind::Retention;

pub use crate::backups::{RateLimiter, DELETES_PER_SECOND};

/// Runs retention for resolved settings. The policy is evaluated as of the request's slot; the
/// freshness floor measures from the later of the slot and the time the request arrived, so an
/// old slot in a payload cannot switch it off.
pub async fn run(clients: &Clients, settings: &Settings, request: &JobRequest) -> RunReport {
    let mut run = super::RunInProgress::start(JOB, settings, request);
    let span = info_span!("run", run_id = %run.run_id, job = %JOB, slot = %request.slot);
    async {
        let catalog = Catalog::new((*clients.dynamodb).clone(), &settings.catalog_table);
        let compiled = match settings.retention_policy() {
            Some(p) => p.compile(),
            None => Err("the settings were resolved for another job and carry no policy".into()),
        };
        let policy = match compiled {
            Ok(p) => p,
            Err(e) => {
                run.errors.push(format!("retention policy: {e}"));
                return run.finish(clients, settings, &catalog).await;
            }
        };
        let limiter = RateLimiter::per_second(DELETES_PER_SECOND);
        let (policy, limiter, catalog) = (&policy, &limiter, &catalog);
        let exports = match settings
            .export_retention()
            .map(|e| e.policy.compile().map(|p| (e, p)))
        {
            None => None,
            Some(Ok(x)) => Some(x),
            Some(Err(e)) => {
                run.errors.push(format!("export retention policy: {e}"));
                return run.finish(clients, settings, catalog).await;
            }
        };
        let exports = exports.as_ref();
        run.over_selected_tables(clients, settings, |table| async move {
            let mut report = retain_table(
                &clients.dynamodb,
                catalog,
                policy,
                request,
                limiter,
                table.clone(),
            )
            .await;
            if let Some((e, p)) = exports {
                retain_exports(clients, catalog, e, p, request, &table, &mut report).await;
            }
            report
        })
        .await;
        if settings.databases.any() {
            let compile = |what: &str, p: Option<&crate::retention::RetentionPolicy>| match p {
                Some(p) => p.compile().map_err(|e| format!("{what}: {e}")),
                None => Err(format!("{what}: none resolved")),
            };
            let db = &settings.databases;
            // Each kind's policy, and its copies' (the replica's own, or the kind's).
            let mut policies = Vec::new();
            let mut errors = Vec::new();
            for kind in crate::db::DbKind::ALL
                .into_iter()
                .filter(|k| db.selection(*k).is_some())
            {
                let own = compile(
                    &format!("{} retention policy", kind.noun()),
                    db.policy(kind),
                );
                let copies = db.replica.as_ref().map(|r| {
                    compile(
                        "database replica retention policy",
                        r.policy.as_ref().or(db.policy(kind)),
                    )
                });
                match (own, copies.transpose()) {
                    (Ok(own), Ok(copies)) => policies.push((kind, own, copies)),
                    (Err(e), _) | (_, Err(e)) => errors.push(e),
                }
            }
            if errors.is_empty() {
                let policies = &policies;
                run.over_selected_databases(clients, settings, |target| async move {
                    let Some((_, own, copies)) =
                        policies.iter().find(|(k, _, _)| *k == target.kind)
                    else {
                        return TargetReport::new(
                            target.name(),
                            Outcome::Failed {
                                operation: "retention policy".into(),
                                error: format!(
                                    "no policy was resolved for {}",
                                    target.kind.plural()
                                ),
                                retryable: false,
                            },
                        );
                    };
                    let replica = db.replica.as_ref().zip(copies.as_ref());
                    super::database::retain_target(
                        clients, catalog, own, replica, request, limiter, target,
                    )
                    .await
                })
                .await;
            } else {
                run.errors.extend(errors);
            }
        }
        run.finish(clients, settings, catalog).await
    }
    .instrument(span)
    .await
}

/// One backup as listed, with its catalog record when Backstop made it.
#[derive(Debug, Clone)]
pub struct ListedBackup {
    pub point: RecoveryPoint,
    pub name: String,
    pub record: Option<TargetRecord>,
}

/// Lists every user backup of a table (all pages of ListBackups) and joins the catalog: a backup
/// is Backstop's when the catalog records its ARN. `BackupCreationDateTime` from AWS is the
/// point's time; names and catalog times are never trusted over it. Any error means the listing
/// is incomplete, and the caller must not delete.
pub async fn list_backups(
    ddb: &DynamoDb,
    catalog: &Catalog,
    table: &str,
) -> Result<Vec<ListedBackup>> {
    let records = records_by_arn(catalog, table).await?;
    Ok(backups::list(ddb, table, None)
        .await?
        .into_iter()
        .map(|b| {
            let record = records.get(&b.arn).cloned();
            ListedBackup {
                point: RecoveryPoint {
                    id: b.arn,
                    source: table.to_owned(),
                    created_at: b.created_at,
                    complete: b.available,
                    legal_hold: record.as_ref().is_some_and(|r| r.legal_hold),
                    managed: record.is_some(),
                },
                name: b.name,
                record,
            }
        })
        .collect())
}

/// The snapshot job's catalog records of a target (a table, a database), by the ARN of the
/// backup each names. A hold that cannot be read fails it all: it might be a hold.
pub(crate) async fn records_by_arn(
    catalog: &Catalog,
    table: &str,
) -> Result<HashMap<String, TargetRecord>> {
    let records = catalog
        .list_targets(super::snapshot::JOB, Some(table))
        .await?;
    // A hold that cannot be read might be a hold: delete nothing of this table until it is fixed.
    if let Some((r, why)) = records
        .iter()
        .find_map(|r| Some((r, r.legal_hold_unreadable.as_ref()?)))
    {
        return Err(Error::Aws {
            operation: "read catalog item",
            resource: format!(
                "catalog table {} item TARGET#{}#{} / SLOT#{}",
                catalog.table_name(),
                r.job,
                r.table,
                r.slot
            ),
            code: None,
            message: format!("{why}; nothing of table {table} is deleted until then"),
            retryable: false,
            hint: "write legal_hold as a boolean".into(),
        });
    }
    // Two records naming one backup: a hold on either holds it.
    let mut by_arn: HashMap<String, TargetRecord> = HashMap::new();
    for r in records {
        let Some(arn) = r.backup_arn.clone() else {
            continue;
        };
        by_arn
            .entry(arn)
            .and_modify(|kept| kept.legal_hold |= r.legal_hold)
            .or_insert(r);
    }
    Ok(by_arn)
}

/// Lists and plans one table, deleting nothing.
pub async fn plan_table(
    ddb: &DynamoDb,
    catalog: &Catalog,
    policy: &CompiledPolicy,
    table: &str,
    now: Timestamp,
) -> Result<(RetentionPlan, Vec<ListedBackup>)> {
    let listed = list_backups(ddb, catalog, table).await?;
    let points: Vec<RecoveryPoint> = listed.iter().map(|l| l.point.clone()).collect();
    Ok((retention::plan(&points, policy, now), listed))
}

async fn retain_table(
    ddb: &DynamoDb,
    catalog: &Catalog,
    policy: &CompiledPolicy,
    request: &JobRequest,
    limiter: &RateLimiter,
    table: String,
) -> TargetReport {
    let started = Instant::now();
    let mut report = TargetReport {
        table: table.clone(),
        outcome: Outcome::Failed {
            operation: "ListBackups".into(),
            error: String::new(),
            retryable: true,
        },
        pitr: None,
        duration_ms: 0,
        warnings: vec![],
        decisions: vec![],
        export: None,
        export_retention: None,
        validation: None,
        bucket: None,
        replica: None,
        size_check: None,
    };
    let (plan, listed) = match plan_table(
        ddb,
        catalog,
        policy,
        &table,
        request.slot.later_of(request.received_at),
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            let operation = match &e {
                Error::Aws { operation, .. } => (*operation).to_owned(),
                _ => "ListBackups".into(),
            };
            report.outcome = Outcome::Failed {
                error: if operation == "ListBackups" || operation == "Query" {
                    format!("nothing deleted: the listing is incomplete: {e}")
                } else {
                    format!("nothing deleted: {e}")
                },
                operation,
                retryable: e.is_retryable(),
            };
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
    };
    apply_plan(
        catalog,
        policy,
        request,
        &plan,
        &listed,
        super::snapshot::is_backstop_backup_name,
        |id| async move { backups::delete(ddb, limiter, &id).await },
        &mut report,
    )
    .await;
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Carries out a plan over listed recovery points (a table's backups, a database's snapshots):
/// deletes what it says, each just after checking its legal hold again, marks the catalog, and
/// writes every decision and the outcome into `report`. With `include_unmanaged` on, a point
/// named as Backstop's (`looks_ours`) that the catalog does not know stops it all: the catalog
/// may have been replaced or emptied.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_plan<D, Fut>(
    catalog: &Catalog,
    policy: &CompiledPolicy,
    request: &JobRequest,
    plan: &RetentionPlan,
    listed: &[ListedBackup],
    looks_ours: fn(&str) -> bool,
    delete: D,
    report: &mut TargetReport,
) where
    D: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<backups::Deleted>>,
{
    // With include_unmanaged on, a backup named as Backstop's that the catalog does not know
    // would be deleted as a stranger's: the catalog may have been replaced or emptied. Stop.
    if policy.includes_unmanaged() && !request.dry_run {
        if let Some(l) = listed
            .iter()
            .find(|l| l.record.is_none() && looks_ours(&l.name))
        {
            report.outcome = Outcome::Failed {
                operation: "read catalog".into(),
                error: format!(
                    "nothing deleted: backup {} is named as Backstop's but catalog {} has no record of it (was the catalog replaced or emptied?); with include_unmanaged on it would be deleted as another's. Restore the catalog's records, or delete that backup by hand",
                    l.name,
                    catalog.table_name()
                ),
                retryable: false,
            };
            return;
        }
    }
    let by_arn: HashMap<&str, &ListedBackup> =
        listed.iter().map(|l| (l.point.id.as_str(), l)).collect();
    let (mut deleted, mut failures) = (0usize, Vec::new());
    for planned in &plan.points {
        let listed = by_arn.get(planned.point.id.as_str());
        let result = if let Decision::Delete { .. } = planned.decision {
            let record = listed.and_then(|l| l.record.as_ref());
            let held_now = match record {
                Some(r) if !request.dry_run => catalog
                    .still_not_held(r, Timestamp::now())
                    .await
                    .map(|free| !free),
                _ => Ok(false),
            };
            if request.dry_run {
                Some("not deleted: dry run".to_owned())
            } else if let Err(e) = held_now {
                failures.push(format!("{}: {e}", planned.point.id));
                Some(format!(
                    "delete failed: could not check its legal hold: {e}"
                ))
            } else if matches!(held_now, Ok(true)) {
                Some("not deleted: a legal hold was set on it during the run".to_owned())
            } else {
                match delete(planned.point.id.clone()).await {
                    Ok(how) => {
                        deleted += 1;
                        if let Some(record) = listed.and_then(|l| l.record.as_ref()) {
                            if let Err(e) = catalog.mark_deleted(record, Timestamp::now()).await {
                                report
                                    .warnings
                                    .push(format!("deleted, but the catalog was not updated: {e}"));
                            }
                        }
                        Some(match how {
                            backups::Deleted::Now => "deleted".to_owned(),
                            backups::Deleted::AlreadyGone => {
                                "deleted (it was already gone: an earlier attempt's answer was lost)"
                                    .to_owned()
                            }
                        })
                    }
                    Err(e) => {
                        failures.push(format!("{}: {e}", planned.point.id));
                        Some(format!("delete failed: {e}"))
                    }
                }
            }
        } else {
            None
        };
        // The full plan goes to the log, one line per backup, whatever the report keeps.
        info!(
            backup = %planned.point.id,
            created_at = %planned.point.created_at,
            decision = %decision_words(&planned.decision),
            result = result.as_deref().unwrap_or("-"),
            "decision"
        );
        report.decisions.push(PointDecision {
            backup_arn: planned.point.id.clone(),
            backup_name: listed.map(|l| l.name.clone()).unwrap_or_default(),
            created_at: planned.point.created_at,
            decision: planned.decision.clone(),
            result,
        });
    }
    let to_delete = plan.deletes().count();
    // Exact whatever failed: the counts of what was deleted and what still exists, and each
    // failure on its backup's decision.
    report.outcome = Outcome::Retained {
        kept: plan.points.len() - deleted,
        deleted,
        to_delete,
        blocked: plan.blocked.clone(),
        failed_deletes: failures.len(),
        error: (!failures.is_empty()).then(|| {
            let mut first: Vec<String> = failures.iter().take(3).cloned().collect();
            if failures.len() > 3 {
                first.push(format!("and {} more", failures.len() - 3));
            }
            first.join("; ")
        }),
    };
}

fn decision_words(d: &Decision) -> String {
    match d {
        Decision::Keep { reasons } => {
            let rules: Vec<&str> = reasons.iter().map(|r| r.rule.as_str()).collect();
            format!("keep ({})", rules.join(", "))
        }
        Decision::Delete { reason } => format!("delete ({reason})"),
    }
}

/// The chain floor, pure: every export that a kept incremental builds on (the links before it,
/// back to its full export) is kept too, with the reason. `links` are (id, full?, export time,
/// window start) of every export of the table.
pub fn keep_chain_bases(
    plan: &mut RetentionPlan,
    links: &[(String, bool, Timestamp, Option<Timestamp>)],
) {
    let kept: Vec<String> = plan.keeps().map(|p| p.point.id.clone()).collect();
    let mut needed: Vec<(String, String)> = Vec::new();
    for id in kept {
        let Some(mut link) = links.iter().find(|l| l.0 == id) else {
            continue;
        };
        // At most one step per link: a malformed chain (a link starting where it ends) ends
        // the walk instead of looping.
        for _ in 0..links.len() {
            if link.1 {
                break;
            }
            let Some(from) = link.3 else { break };
            let Some(prev) = links.iter().find(|l| l.2 == from && l.0 != link.0) else {
                break;
            };
            needed.push((prev.0.clone(), id.clone()));
            link = prev;
        }
    }
    for p in plan.points.iter_mut() {
        let Some((_, by)) = needed.iter().find(|(n, _)| *n == p.point.id) else {
            continue;
        };
        let reason = retention::Reason {
            rule: RULE_CHAIN_BASE.into(),
            detail: format!("the kept incremental export {by} builds on it"),
        };
        match &mut p.decision {
            Decision::Keep { reasons } => {
                if !reasons.iter().any(|r| r.rule == RULE_CHAIN_BASE) {
                    reasons.push(reason)
                }
            }
            Decision::Delete { .. } => {
                p.decision = Decision::Keep {
                    reasons: vec![reason],
                }
            }
        }
    }
}

pub const RULE_CHAIN_BASE: &str = "floor:chain_base";

/// Plans and prunes one table's exports with the export policy: the same planner and floors as
/// backups, plus the chain floor. Deleting an export deletes its whole prefix, and only a
/// prefix under the configured `<prefix>/<table>/`. Anything short of a complete listing
/// deletes nothing.
async fn retain_exports(
    clients: &Clients,
    catalog: &Catalog,
    settings: &crate::settings::ExportRetention,
    policy: &CompiledPolicy,
    request: &JobRequest,
    table: &str,
    report: &mut TargetReport,
) {
    let mut out = crate::report::ExportsRetained::default();
    let records = match catalog.list_targets(JobKind::Export, Some(table)).await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(format!(
                "nothing deleted: the export listing is incomplete: {e}"
            ));
            report.export_retention = Some(out);
            return;
        }
    };
    if let Some((r, why)) = records
        .iter()
        .find_map(|r| Some((r, r.legal_hold_unreadable.as_ref()?)))
    {
        out.error = Some(format!(
            "nothing deleted: the hold on the export of slot {} cannot be read: {why}",
            r.slot
        ));
        report.export_retention = Some(out);
        return;
    }
    let with_meta: Vec<(&TargetRecord, &crate::export::ExportMeta)> = records
        .iter()
        .filter(|r| r.status != crate::catalog::TargetStatus::Deleted)
        .filter_map(|r| Some((r, r.export.as_ref()?)))
        .collect();
    let points: Vec<RecoveryPoint> = with_meta
        .iter()
        .map(|(r, m)| RecoveryPoint {
            id: m.uri(),
            source: table.to_owned(),
            created_at: m.export_time,
            complete: r.status == crate::catalog::TargetStatus::Done,
            legal_hold: r.legal_hold,
            managed: true,
        })
        .collect();
    let links: Vec<(String, bool, Timestamp, Option<Timestamp>)> = with_meta
        .iter()
        .map(|(_, m)| {
            (
                m.uri(),
                m.export_type == crate::export::ExportType::FullExport,
                m.export_time,
                m.from,
            )
        })
        .collect();
    let mut plan = retention::plan(&points, policy, request.slot.later_of(request.received_at));
    keep_chain_bases(&mut plan, &links);
    out.blocked = plan.blocked.clone();
    out.to_delete = plan.deletes().count();
    let allowed = format!("{}/{}/", settings.location.prefix, table);
    let mut failures = Vec::new();
    for planned in &plan.points {
        let Some((record, meta)) = with_meta.iter().find(|(_, m)| m.uri() == planned.point.id)
        else {
            continue;
        };
        let result = if planned.decision.is_delete() {
            let root = format!("{}/", meta.root);
            if request.dry_run {
                Some("not deleted: dry run".to_owned())
            } else if meta.bucket != settings.location.bucket
                || !root.starts_with(&allowed)
                || ScheduleSlot::parse(&record.slot).map(|slot| {
                    crate::export::root_of(&settings.location, table, &slot) != meta.root
                }) != Ok(false)
            {
                failures.push(format!(
                    "{}: outside the configured prefix",
                    planned.point.id
                ));
                Some(format!(
                    "not deleted: its root is not s3://{}/{allowed}<its slot>/, the only place retention deletes an export",
                    settings.location.bucket
                ))
            } else {
                match catalog.still_not_held(record, Timestamp::now()).await {
                    Ok(false) => {
                        Some("not deleted: a legal hold was set on it during the run".into())
                    }
                    Err(e) => {
                        failures.push(format!("{}: {e}", planned.point.id));
                        Some(format!(
                            "delete failed: could not check its legal hold: {e}"
                        ))
                    }
                    Ok(true) => {
                        match crate::export::s3io::delete_prefix(&clients.s3, &meta.bucket, &root)
                            .await
                        {
                            Ok(n) => {
                                out.deleted += 1;
                                if let Err(e) = catalog.mark_deleted(record, Timestamp::now()).await
                                {
                                    report.warnings.push(format!(
                                        "export {} deleted, but the catalog was not updated: {e}",
                                        planned.point.id
                                    ));
                                }
                                Some(format!("deleted ({n} objects)"))
                            }
                            Err(e) => {
                                failures.push(format!("{}: {e}", planned.point.id));
                                Some(format!("delete failed: {e}"))
                            }
                        }
                    }
                }
            }
        } else {
            None
        };
        info!(export = %planned.point.id, decision = %decision_words(&planned.decision), result = result.as_deref().unwrap_or("-"), "export decision");
        report.decisions.push(PointDecision {
            backup_arn: planned.point.id.clone(),
            backup_name: format!("export {}", record.slot),
            created_at: planned.point.created_at,
            decision: planned.decision.clone(),
            result,
        });
    }
    out.kept = plan.points.len() - out.deleted;
    if !failures.is_empty() {
        out.error = Some(format!(
            "{} deletes failed: {}",
            failures.len(),
            failures
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    report.export_retention = Some(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::PlannedPoint;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_export_that_a_kept_incremental_needs_is_kept_with_the_reason() {
        let point = |id: &str, at: &str| RecoveryPoint {
            id: id.into(),
            source: "T".into(),
            created_at: t(at),
            complete: true,
            legal_hold: false,
            managed: true,
        };
        let delete = Decision::Delete {
            reason: "not kept by any rule".into(),
        };
        let keep = Decision::Keep { reasons: vec![] };
        let mut plan = RetentionPlan {
            now: t("2026-11-25T00:00:00Z"),
            policy: "keep_last=1".into(),
            points: vec![
                PlannedPoint {
                    point: point("inc2", "2026-11-24T03:00:00Z"),
                    decision: keep,
                },
                PlannedPoint {
                    point: point("inc1", "2026-11-23T03:00:00Z"),
                    decision: delete.clone(),
                },
                PlannedPoint {
                    point: point("full", "2026-11-22T03:00:00Z"),
                    decision: delete.clone(),
                },
                PlannedPoint {
                    point: point("old", "2026-11-15T03:00:00Z"),
                    decision: delete,
                },
            ],
            blocked: None,
        };
        let links = vec![
            (
                "inc2".to_owned(),
                false,
                t("2026-11-24T03:00:00Z"),
                Some(t("2026-11-23T03:00:00Z")),
            ),
            (
                "inc1".to_owned(),
                false,
                t("2026-11-23T03:00:00Z"),
                Some(t("2026-11-22T03:00:00Z")),
            ),
            ("full".to_owned(), true, t("2026-11-22T03:00:00Z"), None),
            ("old".to_owned(), true, t("2026-11-15T03:00:00Z"), None),
        ];
        keep_chain_bases(&mut plan, &links);
        let d: Vec<(&str, bool)> = plan
            .points
            .iter()
            .map(|p| (p.point.id.as_str(), p.decision.is_delete()))
            .collect();
        assert_eq!(
            d,
            vec![
                ("inc2", false),
                ("inc1", false),
                ("full", false),
                ("old", true)
            ]
        );
        let Decision::Keep { reasons } = &plan.points[2].decision else {
            panic!()
        };
        assert_eq!(reasons[0].rule, RULE_CHAIN_BASE);
        assert!(reasons[0].detail.contains("inc2"));
    }
}
