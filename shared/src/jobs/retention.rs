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
use crate::event::JobRequest;
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
        let catalog = Catalog::new(clients.dynamodb.clone(), &settings.catalog_table);
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
        run.over_selected_tables(clients, settings, |table| {
            retain_table(&clients.dynamodb, catalog, policy, request, limiter, table)
        })
        .await;
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
    let records = by_arn;
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
    // With include_unmanaged on, a backup named as Backstop's that the catalog does not know
    // would be deleted as a stranger's: the catalog may have been replaced or emptied. Stop.
    if policy.includes_unmanaged() && !request.dry_run {
        if let Some(l) = listed
            .iter()
            .find(|l| l.record.is_none() && super::snapshot::is_backstop_backup_name(&l.name))
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
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
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
                match backups::delete(ddb, limiter, &planned.point.id).await {
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
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
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
