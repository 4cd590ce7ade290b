//! Database targets in the snapshot and retention jobs (see [`crate::db`]): one snapshot per
//! (target, slot) through the catalog's claim, exactly as for tables; snapshots AWS is still
//! making are recorded STARTED and finished by later runs; completed ones are copied to the
//! replica region; retention plans each kind's manual snapshots, never the automated ones.

use std::time::Instant;

use jiff::Timestamp;
use tracing::{info, warn};

use crate::aws::Clients;
use crate::catalog::{self, Catalog, Claim, TargetRecord, TargetStatus};
use crate::db::rds::{self, SnapshotInfo};
use crate::db::{self, DbFacts, DbTarget};
use crate::db::{api, DbKind};
use crate::error::{Error, Result};
use crate::event::{JobRequest, ScheduleSlot};
use crate::report::{BackupInfo, Outcome, ReplicaState, TargetReport};
use crate::retention::{CompiledPolicy, RecoveryPoint};
use crate::settings::{DbReplica, JobKind, Settings};

/// Pure: the AWS CLI command that deletes a snapshot (for messages).
fn delete_command(kind: DbKind, id: &str, region: Option<&str>) -> String {
    let region = region.map(|r| format!(" --region {r}")).unwrap_or_default();
    match kind {
        DbKind::RdsInstance => {
            format!("aws rds delete-db-snapshot{region} --db-snapshot-identifier {id}")
        }
        DbKind::AuroraCluster => format!(
            "aws rds delete-db-cluster-snapshot{region} --db-cluster-snapshot-identifier {id}"
        ),
        DbKind::ElastiCacheGroup => {
            format!("aws elasticache delete-snapshot{region} --snapshot-name {id}")
        }
    }
}

/// The floor that keeps a snapshot while its copy is being made from it.
pub const RULE_COPY_IN_PROGRESS: &str = "floor:copy_in_progress";

/// Database snapshots are recorded under the snapshot job, like table backups.
const JOB: JobKind = JobKind::Snapshot;

/// How much earlier than its slot a snapshot may have been made and still be the slot's.
const ADOPT_SKEW_SECS: i64 = super::snapshot::ADOPT_SKEW_SECS;

/// CreateDBSnapshot attempts, each followed (after an error that leaves it in doubt) by a look
/// for the snapshot by its name.
const CREATE_ATTEMPTS: u32 = 4;

fn failed(e: &Error, fallback: &str) -> Outcome {
    Outcome::Failed {
        operation: match e {
            Error::Aws { operation, .. } => (*operation).to_owned(),
            _ => fallback.to_owned(),
        },
        error: e.to_string(),
        retryable: e.is_retryable(),
    }
}

/// Pure: the report's view of a snapshot, with the database's facts for the catalog.
fn backup_info(s: &SnapshotInfo, facts: Option<&DbFacts>) -> BackupInfo {
    BackupInfo {
        backup_arn: s.arn.clone(),
        backup_name: s.id.clone(),
        created_at: s.created_at,
        size_bytes: s
            .allocated_storage
            .map(|g| i64::from(g) * 1024 * 1024 * 1024),
        item_count: None,
        backup_status: s.status.to_ascii_uppercase(),
        table_shape: facts.and_then(|f| serde_json::to_value(f).ok()),
        table_settings: None,
    }
}

/// Pure: whether an existing snapshot with the slot's name is the slot's: a manual snapshot of
/// this instance (by identifier, and by resource id where both are known: an identifier can be
/// reused by another instance), not a copy of another region's, and made no earlier than the
/// slot (one still being made must carry the slot's tag).
fn is_the_slots(
    s: &SnapshotInfo,
    instance: &str,
    resource_id: Option<&str>,
    slot: &ScheduleSlot,
) -> bool {
    if s.instance != instance || !s.is_manual() || s.source_arn.is_some() {
        return false;
    }
    if let (Some(a), Some(b)) = (s.dbi_resource_id.as_deref(), resource_id) {
        if a != b {
            return false;
        }
    }
    match s.created_at {
        Some(c) => c.as_second() >= slot.timestamp().as_second() - ADOPT_SKEW_SECS,
        None => s
            .tags
            .iter()
            .any(|(k, v)| k == rds::TAG_SLOT && *v == slot.to_string()),
    }
}

/// The facts recorded with the target's newest snapshot before `slot`, with that slot.
fn previous_facts(records: &[TargetRecord], slot: &ScheduleSlot) -> Option<(String, DbFacts)> {
    let slot = slot.to_string();
    records
        .iter()
        .filter(|r| r.slot < slot && r.status.is_done())
        .filter_map(|r| {
            let facts: DbFacts = serde_json::from_value(r.table_shape.clone()?).ok()?;
            Some((r.slot.clone(), facts))
        })
        .next_back()
}

/// The snapshot job for one database target.
pub(crate) async fn snapshot_target(
    clients: &Clients,
    catalog: &Catalog,
    settings: &Settings,
    request: &JobRequest,
    run_id: &str,
    target: DbTarget,
) -> TargetReport {
    let started = Instant::now();
    let slot = request.slot;
    let name = db::snapshot_name(&target.id, &slot);
    let mut report = TargetReport::new(
        target.name(),
        Outcome::Planned {
            backup_name: name.clone(),
        },
    );
    let result = if request.dry_run {
        dry_run(
            clients,
            catalog,
            settings,
            &target,
            &slot,
            &name,
            &mut report,
        )
        .await
    } else {
        snapshot(
            clients,
            catalog,
            settings,
            request,
            run_id,
            &target,
            &name,
            &mut report,
        )
        .await
    };
    if let Err(e) = result {
        report.outcome = failed(&e, "snapshot");
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

async fn dry_run(
    clients: &Clients,
    catalog: &Catalog,
    settings: &Settings,
    target: &DbTarget,
    slot: &ScheduleSlot,
    name: &str,
    report: &mut TargetReport,
) -> Result<()> {
    if let Some(rec) = catalog.get(JOB, &target.name(), slot).await? {
        if let (true, Some(backup)) = (rec.status.is_done(), rec.backup_info()) {
            report.outcome = Outcome::AlreadyDone {
                backup,
                note: format!("already done for this slot (run {})", rec.run_id),
            };
            return Ok(());
        }
    }
    let facts = api::require(&clients.db(), target).await?;
    let records = catalog.list_targets(JOB, Some(&target.name())).await?;
    let previous = previous_facts(&records, slot);
    report.warnings.extend(db::guard(
        &facts,
        previous.as_ref().map(|(s, f)| (s.as_str(), f)),
        &settings.databases.guard,
    ));
    report.outcome = Outcome::Planned {
        backup_name: name.to_owned(),
    };
    Ok(())
}

/// Earlier slots whose snapshot is not recorded DONE that each run looks at again (the newest
/// this many): one still being made, one whose record failed after RDS made it, one whose
/// holder died.
const FOLLOW_UP: usize = 5;

/// Pure: the earlier records a run follows up, newest first: STARTED, FAILED, or CLAIMED with
/// the lease run out, never the slot being worked on.
fn to_follow<'a>(
    records: &'a [TargetRecord],
    slot: &ScheduleSlot,
    now: Timestamp,
) -> Vec<&'a TargetRecord> {
    let slot = slot.to_string();
    let mut out: Vec<&TargetRecord> = records
        .iter()
        .filter(|r| r.slot != slot)
        .filter(|r| match r.status {
            TargetStatus::Started | TargetStatus::Failed => true,
            TargetStatus::Claimed => r.lease_until.is_some_and(|l| l < now.as_second()),
            TargetStatus::Done | TargetStatus::Deleted => false,
        })
        .collect();
    out.sort_by(|a, b| b.slot.cmp(&a.slot));
    out.truncate(FOLLOW_UP);
    out
}

#[allow(clippy::too_many_arguments)]
async fn snapshot(
    clients: &Clients,
    catalog: &Catalog,
    settings: &Settings,
    request: &JobRequest,
    run_id: &str,
    target: &DbTarget,
    name: &str,
    report: &mut TargetReport,
) -> Result<()> {
    let slot = request.slot;
    let target_name = target.name();
    let facts = api::require(&clients.db(), target).await?;
    let records = catalog.list_targets(JOB, Some(&target_name)).await?;
    let previous = previous_facts(&records, &slot);
    let guard = db::guard(
        &facts,
        previous.as_ref().map(|(s, f)| (s.as_str(), f)),
        &settings.databases.guard,
    );
    for w in &guard {
        warn!(target = %target, warning = %w, "database guard");
    }
    report.warnings.extend(guard);

    // Earlier slots' snapshots that RDS was still making, or that were made and not recorded.
    for r in to_follow(&records, &slot, Timestamp::now()) {
        if let Some(note) = follow(clients, catalog, request, run_id, target, &facts, r).await {
            report.warnings.push(note);
        }
    }

    let now = Timestamp::now();
    let lease = catalog::lease_until(now, request.deadline);
    let claim = catalog
        .claim(
            JOB,
            &target_name,
            &slot,
            run_id,
            now,
            lease,
            request.deadline,
        )
        .await?;
    // `Some(previous attempt?)`: the claim is this run's, go ahead.
    let previous_attempt = match claim {
        Claim::Done(rec) => {
            report.outcome = match rec.backup_info() {
                Some(backup) => Outcome::AlreadyDone {
                    backup,
                    note: format!("already done for this slot (run {})", rec.run_id),
                },
                None => Outcome::Failed {
                    operation: "read catalog".into(),
                    error: format!(
                        "catalog {} says {target_name} is done for {slot} but names no snapshot; fix the catalog item",
                        catalog.table_name()
                    ),
                    retryable: false,
                },
            };
            None
        }
        Claim::Held(rec) => {
            report.outcome = Outcome::InProgress {
                held_by_run: rec.run_id.clone(),
                note: format!(
                    "run {} is working on this slot now (status {}); left alone, a retry will see its result",
                    rec.run_id, rec.status
                ),
            };
            None
        }
        Claim::Fresh => Some(false),
        Claim::Retaken { .. } => Some(true),
    };
    if let Some(previous_attempt) = previous_attempt {
        let holder = Holder {
            catalog,
            run_id,
            target: &target_name,
            slot: &slot,
        };
        match make_snapshot(
            clients,
            request,
            &holder,
            target,
            &facts,
            name,
            previous_attempt,
            report,
        )
        .await
        {
            Ok(info) => {
                record(
                    &holder,
                    Made {
                        info,
                        facts: facts.clone(),
                    },
                    report,
                )
                .await
            }
            Err(e) => {
                if let Err(fe) = catalog
                    .fail(
                        JOB,
                        &target_name,
                        &slot,
                        run_id,
                        &e.to_string(),
                        Timestamp::now(),
                    )
                    .await
                {
                    report
                        .warnings
                        .push(format!("could not record the failure in the catalog: {fe}"));
                }
                return Err(e);
            }
        }
    }
    if let Some(replica) = &settings.databases.replica {
        if target.kind.copies_across_regions() {
            report.replica =
                Some(ensure_copies(clients, catalog, replica, request, run_id, target).await);
        } else {
            report.warnings.push(format!(
                "not copied to {}: ElastiCache copies snapshots within their own region only (the README shows an export to S3 instead)",
                replica.region
            ));
        }
    }
    Ok(())
}

/// The claim a snapshot works under.
struct Holder<'a> {
    catalog: &'a Catalog,
    run_id: &'a str,
    target: &'a str,
    slot: &'a ScheduleSlot,
}

/// A snapshot with the facts recorded with it.
struct Made {
    info: SnapshotInfo,
    facts: DbFacts,
}

#[allow(clippy::too_many_arguments)]
async fn make_snapshot(
    clients: &Clients,
    request: &JobRequest,
    holder: &Holder<'_>,
    target: &DbTarget,
    facts: &DbFacts,
    name: &str,
    previous_attempt: bool,
    report: &mut TargetReport,
) -> Result<SnapshotInfo> {
    let slot = holder.slot;
    let resource_id = facts.dbi_resource_id.as_deref();
    // An earlier attempt may have made the snapshot and died before recording it.
    if previous_attempt {
        if let Some(s) = api::describe_snapshot(&clients.db(), target.kind, name).await? {
            if is_the_slots(&s, &target.id, resource_id, slot) && !s.has_failed() {
                report.warnings.push(
                    "an earlier attempt had made this snapshot; it was adopted, not made again"
                        .into(),
                );
                return Ok(s);
            }
        }
    }
    // Nobody may take the slot over while the snapshot is being made.
    let lease = catalog::lease_until(Timestamp::now(), request.deadline);
    if !holder
        .catalog
        .renew(JOB, holder.target, slot, holder.run_id, lease)
        .await?
    {
        return Err(Error::Aws {
            operation: "UpdateItem (renew claim)",
            resource: format!("catalog table {}", holder.catalog.table_name()),
            code: None,
            message: format!(
                "the claim on {} at {slot} was taken over by another run after its lease ran out; nothing was created",
                holder.target
            ),
            retryable: true,
            hint: "a retry sees the other run's result".into(),
        });
    }
    let info = create_once(
        &clients.db(),
        target,
        resource_id,
        slot,
        name,
        &mut report.warnings,
    )
    .await?;
    info!(snapshot = %info.id, status = %info.status, "database snapshot requested");
    Ok(info)
}

/// Makes the slot's snapshot once. The name is the slot's, so RDS itself refuses a second one
/// (`DBSnapshotAlreadyExists`); after an error that leaves in doubt whether the request took
/// effect, the snapshot is looked for by its name and adopted when it is the slot's. A failed
/// snapshot of the slot is reported with what to do; the snapshot job never deletes one.
async fn create_once(
    client: &crate::db::api::DbClient,
    target: &DbTarget,
    resource_id: Option<&str>,
    slot: &ScheduleSlot,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<SnapshotInfo> {
    let mut backoff = std::time::Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        let err = match api::create_snapshot(client, target, name, &slot.to_string()).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        let exists = api::is_already_exists(&err);
        if !exists && !err.is_retryable() {
            return Err(err);
        }
        if !exists {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        match api::describe_snapshot(client, target.kind, name).await? {
            Some(s) if is_the_slots(&s, &target.id, resource_id, slot) && s.status == "failed" => {
                // The snapshot job never deletes a snapshot (its role denies it): say which.
                return Err(Error::Aws {
                    operation: target.kind.create_op(),
                    resource: format!("{} {} (snapshot {name})", target.kind.noun(), target.id),
                    code: Some(target.kind.exists_code().into()),
                    message: format!("{} made this slot's snapshot {name} and it failed; it holds no data and its name blocks a new one", target.kind.service()),
                    retryable: false,
                    hint: format!("delete it ({}) and run the slot again; {}'s events say why it failed", delete_command(target.kind, name, None), target.kind.service()),
                });
            }
            Some(s) if is_the_slots(&s, &target.id, resource_id, slot) => {
                warnings.push(format!(
                    "{}'s answer was lost or refused ({err}); the snapshot it made was found by name and adopted",
                    target.kind.create_op()
                ));
                return Ok(s);
            }
            Some(s) => {
                return Err(Error::Aws {
                    operation: target.kind.create_op(),
                    resource: format!("{} {} (snapshot {name})", target.kind.noun(), target.id),
                    code: Some(target.kind.exists_code().into()),
                    message: format!(
                        "a snapshot named {name} exists but is not this slot's (of {}, {}made {}); nothing was made",
                        s.instance,
                        if s.source_arn.is_some() { "a copy, " } else { "" },
                        s.created_at.map(|c| c.to_string()).unwrap_or_else(|| "at an unknown time".into())
                    ),
                    retryable: false,
                    hint: "delete that snapshot (a snapshot cannot be renamed), then run the slot again".into(),
                })
            }
            None if exists => {
                // Refused as existing, yet not found: it may be being deleted. A retry decides.
                return Err(err);
            }
            None if attempt >= CREATE_ATTEMPTS => return Err(err),
            None => attempt += 1,
        }
    }
}

/// Records a snapshot in the claim: DONE when available, STARTED while RDS is still making it,
/// FAILED when it failed.
async fn record(holder: &Holder<'_>, made: Made, report: &mut TargetReport) {
    let backup = backup_info(&made.info, Some(&made.facts));
    let (catalog, slot, run_id) = (holder.catalog, holder.slot, holder.run_id);
    if made.info.is_available() {
        match catalog
            .complete(JOB, holder.target, slot, run_id, &backup, Timestamp::now())
            .await
        {
            Ok(()) => report.outcome = Outcome::Created { backup },
            Err(e) => {
                // Keep the snapshot findable: the record keeps no ARN on failure, but the next
                // run follows FAILED slots up by the slot's name.
                let error = format!(
                    "snapshot {} was made but could not be recorded: {e}",
                    backup.backup_name
                );
                let _ = catalog
                    .fail(JOB, holder.target, slot, run_id, &error, Timestamp::now())
                    .await;
                report.outcome = Outcome::Failed {
                    operation: "UpdateItem (complete)".into(),
                    error,
                    retryable: true,
                };
            }
        }
    } else if made.info.has_failed() {
        let kind = made.facts.kind.unwrap_or(DbKind::RdsInstance);
        let error = format!(
            "{} reports snapshot {} as {}; no backup was made for this slot",
            kind.service(),
            made.info.id,
            made.info.status
        );
        let _ = catalog
            .fail(JOB, holder.target, slot, run_id, &error, Timestamp::now())
            .await;
        report.outcome = Outcome::Failed {
            operation: kind.describe_op().into(),
            error,
            retryable: true,
        };
    } else {
        let note = format!(
            "snapshot {} is {} ({} is still making it); a later run records its completion",
            made.info.id,
            made.info.status,
            made.facts.kind.unwrap_or(DbKind::RdsInstance).service()
        );
        match catalog
            .hand_off_backup(JOB, holder.target, slot, run_id, &backup, &note, Timestamp::now())
            .await
        {
            Ok(()) => {
                report.outcome = Outcome::Started {
                    export_id: made.info.id.clone(),
                    note,
                }
            }
            Err(e) => {
                report.outcome = Outcome::Failed {
                    operation: "UpdateItem (hand off)".into(),
                    error: format!(
                        "snapshot {} was requested but could not be recorded: {e}; the next run looks for it by name",
                        made.info.id
                    ),
                    retryable: true,
                }
            }
        }
    }
}

/// Follows one earlier slot up: claims its record and looks for the slot's snapshot by name;
/// records it DONE once available, hands it back while RDS is still making it, and leaves it
/// FAILED when there is none. Returns a line for the report when something changed or went
/// wrong.
async fn follow(
    clients: &Clients,
    catalog: &Catalog,
    request: &JobRequest,
    run_id: &str,
    target: &DbTarget,
    facts_now: &DbFacts,
    earlier: &TargetRecord,
) -> Option<String> {
    let Ok(slot) = ScheduleSlot::parse(&earlier.slot) else {
        return Some(format!(
            "catalog record {} of {} names a slot that cannot be read; fix or delete it",
            earlier.slot,
            target.name()
        ));
    };
    let name = earlier
        .backup_name
        .clone()
        .unwrap_or_else(|| db::snapshot_name(&target.id, &slot));
    let now = Timestamp::now();
    let claim = catalog
        .claim(
            JOB,
            &target.name(),
            &slot,
            run_id,
            now,
            catalog::lease_until(now, request.deadline),
            request.deadline,
        )
        .await;
    match claim {
        Ok(Claim::Retaken { .. }) | Ok(Claim::Fresh) => {}
        Ok(_) => return None,
        Err(e) => {
            return Some(format!(
                "the snapshot of {slot} could not be followed up: {e}"
            ))
        }
    }
    let target_name = target.name();
    let holder = Holder {
        catalog,
        run_id,
        target: &target_name,
        slot: &slot,
    };
    // The facts recorded with it; the instance's now when none were (or they cannot be read).
    let facts = earlier
        .table_shape
        .clone()
        .and_then(|v| serde_json::from_value::<DbFacts>(v).ok())
        .unwrap_or_else(|| facts_now.clone());
    let give_back = |why: String| {
        let name = name.clone();
        async move {
            if earlier.status == TargetStatus::Started {
                let backup = BackupInfo {
                    backup_arn: earlier.backup_arn.clone().unwrap_or_default(),
                    backup_name: name,
                    created_at: None,
                    size_bytes: None,
                    item_count: None,
                    backup_status: "CREATING".into(),
                    table_shape: earlier.table_shape.clone(),
                    table_settings: None,
                };
                let _ = catalog
                    .hand_off_backup(
                        JOB,
                        &target.name(),
                        &slot,
                        run_id,
                        &backup,
                        &why,
                        Timestamp::now(),
                    )
                    .await;
            } else {
                let _ = catalog
                    .fail(JOB, &target.name(), &slot, run_id, &why, Timestamp::now())
                    .await;
            }
        }
    };
    match api::describe_snapshot(&clients.db(), target.kind, &name).await {
        Ok(Some(info))
            if is_the_slots(&info, &target.id, facts.dbi_resource_id.as_deref(), &slot) =>
        {
            let mut sub = TargetReport::new(
                target.name(),
                Outcome::Planned {
                    backup_name: name.clone(),
                },
            );
            let status = info.status.clone();
            record(&holder, Made { info, facts }, &mut sub).await;
            match sub.outcome {
                Outcome::Created { .. } => Some(format!(
                    "the snapshot of {slot} ({name}) is {status} now, and recorded"
                )),
                // Still being made: nothing new to say.
                Outcome::Started { .. } if earlier.status == TargetStatus::Started => None,
                Outcome::Started { .. } => Some(format!(
                    "the snapshot of {slot} ({name}) was found by name, {status}; it is followed up"
                )),
                other => Some(format!(
                    "the snapshot of {slot} ({name}) FAILED: {}",
                    other.failure().unwrap_or_default()
                )),
            }
        }
        Ok(Some(info)) => {
            give_back(format!(
                "a snapshot named {name} exists but is not this slot's (instance {})",
                info.instance
            ))
            .await;
            None
        }
        Ok(None) if earlier.status == TargetStatus::Started => {
            let error = format!("snapshot {name} is gone: RDS no longer knows it");
            let _ = catalog
                .fail(JOB, &target.name(), &slot, run_id, &error, Timestamp::now())
                .await;
            Some(format!("the snapshot of {slot} FAILED: {error}"))
        }
        Ok(None) => {
            // Never made: the slot stays failed, with its error.
            give_back(
                earlier
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("no snapshot {name} was made")),
            )
            .await;
            None
        }
        Err(e) => {
            let line = format!("the snapshot of {slot} could not be checked: {e}");
            give_back(e.to_string()).await;
            Some(line)
        }
    }
}

/// Newest source snapshots (DONE) whose copy is looked after in each run: copied when there is
/// none, followed while RDS makes it, made again when it failed.
const COPIES_FOLLOWED: usize = 3;

/// How one copy stands after this run.
#[derive(Debug, Clone, PartialEq)]
enum CopyState {
    Available(String),
    InProgress(String),
    Failed(String),
}

/// Looks after the copies of the target's newest complete snapshots in the replica region
/// (see [`COPIES_FOLLOWED`]); the state returned is the newest one's, with the lag.
async fn ensure_copies(
    clients: &Clients,
    catalog: &Catalog,
    replica: &DbReplica,
    request: &JobRequest,
    run_id: &str,
    target: &DbTarget,
) -> ReplicaState {
    let copy_target = target.replica_name(&replica.region);
    let mut state = ReplicaState {
        target: format!("{} ({})", replica.region, copy_target),
        ..ReplicaState::default()
    };
    let own_region = clients.rds.config().region().map(|r| r.to_string());
    if own_region.as_deref() == Some(replica.region.as_str()) {
        state.detail = format!(
            "{} is the region the databases are in: a copy there is no replica ({} must name another region); nothing copied",
            replica.region,
            crate::settings::ENV_DB_REPLICA_REGION
        );
        return state;
    }
    let sources = match catalog.list_targets(JOB, Some(&target.name())).await {
        Ok(r) => r,
        Err(e) => {
            state.detail = format!("the snapshots to copy could not be read: {e}");
            return state;
        }
    };
    let mut done: Vec<&TargetRecord> = sources
        .iter()
        .filter(|r| r.status == TargetStatus::Done && r.backup_name.is_some())
        .collect();
    done.sort_by(|a, b| b.slot.cmp(&a.slot));
    done.truncate(COPIES_FOLLOWED);
    let copies = catalog
        .list_targets(JOB, Some(&copy_target))
        .await
        .unwrap_or_default();
    let client = clients.db_in(Some(&replica.region));
    let mut newest: Option<CopyState> = None;
    for source in done {
        let already = copies
            .iter()
            .any(|c| c.slot == source.slot && c.status == TargetStatus::Done);
        let s = if already {
            CopyState::Available("copied already".into())
        } else {
            copy_one(
                target.kind,
                clients,
                &client,
                catalog,
                replica,
                request,
                run_id,
                &copy_target,
                source,
            )
            .await
        };
        if let CopyState::Failed(e) = &s {
            warn!(slot = %source.slot, error = %e, "copy failed");
        }
        newest.get_or_insert(s);
    }
    match newest {
        Some(CopyState::Available(d)) => {
            state.ok = true;
            state.copied = 1;
            state.detail = d;
        }
        Some(CopyState::InProgress(d)) | Some(CopyState::Failed(d)) => state.detail = d,
        None => state.detail = "no complete snapshot to copy yet".into(),
    }
    // The lag: how far the newest complete copy's slot is behind this slot.
    state.lag_s = match catalog.list_targets(JOB, Some(&copy_target)).await {
        Ok(records) => records
            .iter()
            .filter(|r| r.status == TargetStatus::Done)
            .filter_map(|r| ScheduleSlot::parse(&r.slot).ok())
            .map(|s| (request.slot.timestamp().as_second() - s.timestamp().as_second()).max(0))
            .min(),
        Err(_) => None,
    };
    state
}

/// One source snapshot's copy, under the copy's own claim (`rds:<id>@<region>`, the source's
/// slot): found and followed, or made. Only a copy of this very source (by ARN) is taken.
#[allow(clippy::too_many_arguments)]
async fn copy_one(
    kind: DbKind,
    clients: &Clients,
    client: &crate::db::api::DbClient,
    catalog: &Catalog,
    replica: &DbReplica,
    request: &JobRequest,
    run_id: &str,
    copy_target: &str,
    source_record: &TargetRecord,
) -> CopyState {
    let Ok(slot) = ScheduleSlot::parse(&source_record.slot) else {
        return CopyState::Failed(format!("slot {} cannot be read", source_record.slot));
    };
    let name = source_record.backup_name.clone().unwrap_or_default();
    let now = Timestamp::now();
    match catalog
        .claim(
            JOB,
            copy_target,
            &slot,
            run_id,
            now,
            catalog::lease_until(now, request.deadline),
            request.deadline,
        )
        .await
    {
        Ok(Claim::Done(_)) => return CopyState::Available("copied already".into()),
        Ok(Claim::Held(r)) => {
            return CopyState::InProgress(format!("run {} is copying {name} now", r.run_id))
        }
        Ok(Claim::Fresh) | Ok(Claim::Retaken { .. }) => {}
        Err(e) => {
            return CopyState::Failed(format!("the copy of {name} could not be claimed: {e}"))
        }
    }
    let result: Result<CopyState> = async {
        let source = api::describe_snapshot(&clients.db(), kind, &name).await?.ok_or_else(|| Error::Aws {
            operation: kind.describe_op(),
            resource: format!("{} {name}", kind.snapshot_noun()),
            code: None,
            message: "the snapshot to copy is gone".into(),
            retryable: false,
            hint: "nothing to copy for this slot".into(),
        })?;
        let mine = |c: &SnapshotInfo| c.source_arn.as_deref() == Some(source.arn.as_str());
        let not_mine = |c: &SnapshotInfo| Error::Aws {
            operation: kind.copy_op(),
            resource: format!("{} {} in {}", kind.snapshot_noun(), c.id, replica.region),
            code: Some(kind.exists_code().into()),
            message: format!(
                "a snapshot with the copy's name exists there and is not a copy of {} ({})",
                source.arn,
                c.source_arn.as_deref().map_or("not a copy".to_owned(), |s| format!("copied from {s}"))
            ),
            retryable: false,
            hint: "Backstop never takes another snapshot as its copy; delete or keep it, and this slot stays uncopied".into(),
        };
        let copy = match api::describe_snapshot(client, kind, &name).await? {
            Some(c) if mine(&c) => Some(c),
            Some(c) => return Err(not_mine(&c)),
            None => None,
        };
        let copy = match copy {
            Some(c) => c,
            None => match api::copy_snapshot(client, kind, &source.arn, &name, replica.kms_key.as_deref(), &slot.to_string()).await {
                Ok(c) => c,
                Err(e) if api::is_already_exists(&e) => match api::describe_snapshot(client, kind, &name).await? {
                    Some(c) if mine(&c) => c,
                    Some(c) => return Err(not_mine(&c)),
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            },
        };
        let mut backup = backup_info(&copy, None);
        backup.created_at = source.created_at.or(backup.created_at);
        if copy.is_available() {
            catalog.complete(JOB, copy_target, &slot, run_id, &backup, Timestamp::now()).await?;
            Ok(CopyState::Available(format!("copy {} is available", copy.id)))
        } else if copy.has_failed() {
            Err(Error::Aws {
                operation: kind.copy_op(),
                resource: format!("{} {} in {}", kind.snapshot_noun(), copy.id, replica.region),
                code: None,
                message: format!("{} reports the copy as {}", kind.service(), copy.status),
                retryable: false,
                hint: format!(
                    "delete it ({}); the next run copies again",
                    delete_command(kind, &copy.id, Some(&replica.region))
                ),
            })
        } else {
            let note = format!("copy {} is {}", copy.id, copy.status);
            catalog
                .hand_off_backup(JOB, copy_target, &slot, run_id, &backup, &note, Timestamp::now())
                .await?;
            Ok(CopyState::InProgress(note))
        }
    }
    .await;
    match result {
        Ok(s) => s,
        Err(e) => {
            if let Err(fe) = catalog
                .fail(
                    JOB,
                    copy_target,
                    &slot,
                    run_id,
                    &e.to_string(),
                    Timestamp::now(),
                )
                .await
            {
                warn!(error = %fe, "could not record the copy's failure");
            }
            CopyState::Failed(e.to_string())
        }
    }
}

/// Lists and plans one database target's manual snapshots in `region` (the source's when
/// `None`) under `records_of` (the target's catalog name, or its copies'), then deletes what the
/// plan says. Anything short of a complete listing deletes nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn retain_target(
    clients: &Clients,
    catalog: &Catalog,
    policy: &CompiledPolicy,
    replica: Option<(&DbReplica, &CompiledPolicy)>,
    request: &JobRequest,
    limiter: &crate::backups::RateLimiter,
    target: DbTarget,
) -> TargetReport {
    let started = Instant::now();
    // A kind the service copies within its region only has no copies to retain.
    let replica = replica.filter(|_| target.kind.copies_across_regions());
    let mut report = TargetReport::new(
        target.name(),
        Outcome::Failed {
            operation: target.kind.describe_op().into(),
            error: String::new(),
            retryable: true,
        },
    );
    let copies_of = replica.map(|(r, _)| target.replica_name(&r.region));
    retain_in(
        clients,
        catalog,
        policy,
        None,
        copies_of.as_deref(),
        request,
        limiter,
        &target,
        &mut report,
    )
    .await;
    if let Some((r, p)) = replica {
        let mut copies = TargetReport::new(
            target.replica_name(&r.region),
            Outcome::Planned {
                backup_name: String::new(),
            },
        );
        retain_in(
            clients,
            catalog,
            p,
            Some(&r.region),
            Some(&target.name()),
            request,
            limiter,
            &target,
            &mut copies,
        )
        .await;
        merge_copies(&mut report, copies, &r.region);
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Pure: the copies' retention folded into the target's report: their decisions (named
/// `… (copy in <region>)`), counts and errors; a failure on either side fails the target, and
/// neither side's counts or errors are lost.
fn merge_copies(report: &mut TargetReport, copies: TargetReport, region: &str) {
    for mut d in copies.decisions {
        d.backup_name = format!("{} (copy in {region})", d.backup_name);
        report.decisions.push(d);
    }
    report.warnings.extend(copies.warnings);
    fn side(o: &Outcome) -> (usize, usize, usize, usize, Option<String>) {
        match o {
            Outcome::Retained {
                kept,
                deleted,
                to_delete,
                failed_deletes,
                error,
                ..
            } => (*kept, *deleted, *to_delete, *failed_deletes, error.clone()),
            other => (0, 0, 0, 0, other.failure()),
        }
    }
    let (k, d, t, f, e) = side(&copies.outcome);
    if let Outcome::Retained {
        blocked: Some(b), ..
    } = &copies.outcome
    {
        report.warnings.push(format!("copies in {region}: {b}"));
    }
    let copies_error = e.map(|e| format!("copies in {region}: {e}"));
    let mine = side(&report.outcome);
    match (&mut report.outcome, copies.outcome) {
        (
            Outcome::Retained {
                kept,
                deleted,
                to_delete,
                failed_deletes,
                error,
                ..
            },
            Outcome::Retained { .. },
        ) => {
            *kept += k;
            *deleted += d;
            *to_delete += t;
            *failed_deletes += f;
            if let Some(ce) = copies_error {
                *error = Some(match error.take() {
                    Some(m) => format!("{m}; {ce}"),
                    None => ce,
                });
            }
        }
        (
            Outcome::Retained { .. },
            Outcome::Failed {
                operation,
                retryable,
                ..
            },
        ) => {
            report.outcome = Outcome::Failed {
                operation,
                error: format!(
                    "{}; the instance's own snapshots: {} kept, {} deleted",
                    copies_error.unwrap_or_default(),
                    mine.0,
                    mine.1
                ),
                retryable,
            };
        }
        (Outcome::Failed { error, .. }, _) => {
            error.push_str(&format!("; copies in {region}: {k} kept, {d} deleted"));
            if let Some(ce) = copies_error {
                error.push_str(&format!(" ({ce})"));
            }
        }
        _ => {}
    }
}

/// Retention of one side (the instance's snapshots, or its copies in `region`). `linked` names
/// the other side's records: a legal hold on a slot there holds this side's snapshot of the
/// slot too, and (for the instance's side) a source whose copy is still being made is kept.
#[allow(clippy::too_many_arguments)]
async fn retain_in(
    clients: &Clients,
    catalog: &Catalog,
    policy: &CompiledPolicy,
    region: Option<&str>,
    linked: Option<&str>,
    request: &JobRequest,
    limiter: &crate::backups::RateLimiter,
    target: &DbTarget,
    report: &mut TargetReport,
) {
    let client = clients.db_in(region);
    let records_of = match region {
        Some(r) => target.replica_name(r),
        None => target.name(),
    };
    let listed = async {
        let records = super::retention::records_by_arn(catalog, &records_of).await?;
        let linked: Vec<TargetRecord> = match linked {
            Some(l) => catalog.list_targets(JOB, Some(l)).await?,
            None => Vec::new(),
        };
        if let Some(r) = linked.iter().find(|r| r.legal_hold_unreadable.is_some()) {
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
                message: format!(
                    "its legal_hold cannot be read; nothing of {} is deleted until then",
                    target.name()
                ),
                retryable: false,
                hint: "write legal_hold as a boolean".into(),
            });
        }
        let snapshots = api::list_manual_snapshots(&client, target).await?;
        Ok::<_, Error>(
            snapshots
                .into_iter()
                .map(|s| {
                    let record = records.get(&s.arn).cloned();
                    let other = record
                        .as_ref()
                        .and_then(|r| linked.iter().find(|l| l.slot == r.slot));
                    let copying = region.is_none()
                        && other.is_some_and(|o| {
                            matches!(o.status, TargetStatus::Started | TargetStatus::Claimed)
                        });
                    let listed = super::retention::ListedBackup {
                        point: RecoveryPoint {
                            id: s.arn.clone(),
                            source: target.name(),
                            // A snapshot still being made has no time yet: it counts as now,
                            // and as incomplete it is never deleted.
                            // The data's time: Backstop's record of a copy holds its
                            // source's (a cluster copy's own time is when it was copied).
                            created_at: record
                                .as_ref()
                                .and_then(|r| r.backup_created_at.as_deref())
                                .and_then(|t| t.parse().ok())
                                .or(s.created_at)
                                .unwrap_or_else(Timestamp::now),
                            complete: s.is_available() && s.created_at.is_some(),
                            // A hold on the slot's other side (source or copy) holds this one.
                            legal_hold: record.as_ref().is_some_and(|r| r.legal_hold)
                                || other.is_some_and(|o| o.legal_hold),
                            managed: record.is_some(),
                        },
                        name: s.id,
                        record,
                    };
                    (listed, copying)
                })
                .collect::<Vec<_>>(),
        )
    }
    .await;
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            report.outcome = Outcome::Failed {
                operation: match &e {
                    Error::Aws { operation, .. } => (*operation).to_owned(),
                    _ => target.kind.describe_op().into(),
                },
                error: format!("nothing deleted: the listing is incomplete: {e}"),
                retryable: e.is_retryable(),
            };
            return;
        }
    };
    let (listed, copying): (Vec<_>, Vec<bool>) = listed.into_iter().unzip();
    let points: Vec<RecoveryPoint> = listed.iter().map(|l| l.point.clone()).collect();
    let mut plan =
        crate::retention::plan(&points, policy, request.slot.later_of(request.received_at));
    // A copy still being made reads its source: the source is kept until the copy is done.
    let copying: std::collections::HashSet<&str> = listed
        .iter()
        .zip(&copying)
        .filter(|(_, c)| **c)
        .map(|(l, _)| l.point.id.as_str())
        .collect();
    for p in plan.points.iter_mut() {
        if copying.contains(p.point.id.as_str()) && p.decision.is_delete() {
            p.decision = crate::retention::Decision::Keep {
                reasons: vec![crate::retention::Reason {
                    rule: RULE_COPY_IN_PROGRESS.into(),
                    detail: "its copy in the replica region is still being made from it".into(),
                }],
            };
        }
    }
    // Deletes go by identifier; the plan's points are ARNs.
    let ids: std::collections::HashMap<String, String> = listed
        .iter()
        .map(|l| (l.point.id.clone(), l.name.clone()))
        .collect();
    let (client, ids, kind) = (&client, &ids, target.kind);
    super::retention::apply_plan(
        catalog,
        policy,
        request,
        &plan,
        &listed,
        db::is_backstop_snapshot_name,
        |arn| async move {
            limiter.acquire().await;
            let id = ids.get(&arn).cloned().unwrap_or(arn);
            api::delete_snapshot(client, kind, &id).await
        },
        report,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(instance: &str, created: Option<&str>, tags: &[(&str, &str)]) -> SnapshotInfo {
        SnapshotInfo {
            id: "db-backstop-20261122t020000z".into(),
            arn: "arn:aws:rds:us-east-1:123456789012:snapshot:db-backstop-20261122t020000z".into(),
            instance: instance.into(),
            created_at: created.map(|c| c.parse().unwrap()),
            status: "available".into(),
            snapshot_type: "manual".into(),
            allocated_storage: Some(20),
            engine: None,
            engine_version: None,
            encrypted: None,
            kms_key_id: None,
            source_arn: None,
            dbi_resource_id: Some("db-ABC".into()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_this_instances_snapshot_made_for_the_slot_is_adopted() {
        let slot = ScheduleSlot::parse("2026-11-22T02:00:00Z").unwrap();
        assert!(is_the_slots(
            &snap("db", Some("2026-11-22T02:01:00Z"), &[]),
            "db",
            None,
            &slot
        ));
        assert!(is_the_slots(
            &snap("db", Some("2026-11-22T01:56:00Z"), &[]),
            "db",
            None,
            &slot
        ));
        assert!(!is_the_slots(
            &snap("db", Some("2026-11-21T02:01:00Z"), &[]),
            "db",
            None,
            &slot
        ));
        assert!(!is_the_slots(
            &snap("other", Some("2026-11-22T02:01:00Z"), &[]),
            "db",
            None,
            &slot
        ));
        assert!(is_the_slots(
            &snap("db", None, &[(rds::TAG_SLOT, "2026-11-22T02:00:00Z")]),
            "db",
            None,
            &slot
        ));
        assert!(!is_the_slots(&snap("db", None, &[]), "db", None, &slot));
        // Another region's copy of an instance with the same identifier is never this one's.
        let mut copy = snap("db", Some("2026-11-22T02:01:00Z"), &[]);
        copy.source_arn = Some("arn:aws:rds:eu-west-1:123456789012:snapshot:x".into());
        assert!(!is_the_slots(&copy, "db", None, &slot));
        // Nor a snapshot of an earlier instance that had the identifier.
        let fresh = snap("db", Some("2026-11-22T02:01:00Z"), &[]);
        assert!(is_the_slots(&fresh, "db", Some("db-ABC"), &slot));
        assert!(!is_the_slots(&fresh, "db", Some("db-XYZ"), &slot));
        let mut automated = snap("db", Some("2026-11-22T02:01:00Z"), &[]);
        automated.snapshot_type = "automated".into();
        assert!(!is_the_slots(&automated, "db", None, &slot));
    }

    fn record(slot: &str, status: TargetStatus, lease_until: Option<i64>) -> TargetRecord {
        TargetRecord {
            job: JOB,
            table: "rds:db".into(),
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
            error: None,
            claimed_at: None,
            updated_at: None,
            completed_at: None,
            deleted_at: None,
            legal_hold: false,
            legal_hold_unreadable: None,
            lease_until,
            export: None,
            verification: None,
        }
    }

    #[test]
    fn follow_up_takes_unfinished_earlier_slots_newest_first_and_never_the_current_one() {
        let now: Timestamp = "2026-11-22T02:00:00Z".parse().unwrap();
        let slot = ScheduleSlot::parse("2026-11-22T02:00:00Z").unwrap();
        let mut records = vec![
            record("2026-11-22T02:00:00Z", TargetStatus::Started, None),
            record("2026-11-21T02:00:00Z", TargetStatus::Started, None),
            record("2026-11-20T02:00:00Z", TargetStatus::Done, None),
            record("2026-11-19T02:00:00Z", TargetStatus::Failed, None),
            record(
                "2026-11-18T02:00:00Z",
                TargetStatus::Claimed,
                Some(now.as_second() - 1),
            ),
            record(
                "2026-11-17T02:00:00Z",
                TargetStatus::Claimed,
                Some(now.as_second() + 60),
            ),
            record("2026-11-16T02:00:00Z", TargetStatus::Deleted, None),
        ];
        for d in 1..=9 {
            records.push(record(
                &format!("2026-10-0{d}T02:00:00Z"),
                TargetStatus::Failed,
                None,
            ));
        }
        let slots: Vec<&str> = to_follow(&records, &slot, now)
            .iter()
            .map(|r| r.slot.as_str())
            .collect();
        assert_eq!(
            slots,
            [
                "2026-11-21T02:00:00Z",
                "2026-11-19T02:00:00Z",
                "2026-11-18T02:00:00Z",
                "2026-10-09T02:00:00Z",
                "2026-10-08T02:00:00Z"
            ]
        );
    }

    #[test]
    fn copies_folded_into_the_report_keep_both_sides_counts_and_errors() {
        let retained = |kept, deleted, error: Option<&str>| Outcome::Retained {
            kept,
            deleted,
            to_delete: deleted,
            blocked: None,
            failed_deletes: usize::from(error.is_some()),
            error: error.map(str::to_owned),
        };
        let mut r = TargetReport::new("rds:db", retained(5, 2, None));
        merge_copies(
            &mut r,
            TargetReport::new("rds:db@x", retained(2, 3, Some("boom"))),
            "us-west-2",
        );
        assert!(
            matches!(&r.outcome, Outcome::Retained { kept: 7, deleted: 5, failed_deletes: 1, error: Some(e), .. } if e == "copies in us-west-2: boom"),
            "{:?}",
            r.outcome
        );

        let failed = Outcome::Failed {
            operation: "DescribeDBSnapshots".into(),
            error: "nothing deleted: x".into(),
            retryable: true,
        };
        let mut r = TargetReport::new("rds:db", failed.clone());
        merge_copies(
            &mut r,
            TargetReport::new("rds:db@x", retained(2, 3, None)),
            "us-west-2",
        );
        let Outcome::Failed { error, .. } = &r.outcome else {
            panic!()
        };
        assert!(
            error.contains("nothing deleted: x; copies in us-west-2: 2 kept, 3 deleted"),
            "{error}"
        );

        let mut r = TargetReport::new("rds:db", retained(5, 2, None));
        merge_copies(&mut r, TargetReport::new("rds:db@x", failed), "us-west-2");
        let Outcome::Failed { error, .. } = &r.outcome else {
            panic!()
        };
        assert!(error.contains("copies in us-west-2: nothing deleted: x; the instance's own snapshots: 5 kept, 2 deleted"), "{error}");
    }
}
