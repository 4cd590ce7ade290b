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
use crate::error::{Error, Result};
use crate::event::{JobRequest, ScheduleSlot};
use crate::report::{BackupInfo, Outcome, ReplicaState, TargetReport};
use crate::retention::{CompiledPolicy, RecoveryPoint};
use crate::settings::{DbReplica, JobKind, Settings};

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

/// Pure: whether an existing snapshot with the slot's name is the slot's: of this instance, and
/// made no earlier than the slot (one still being made must carry the slot's tag).
fn is_the_slots(s: &SnapshotInfo, instance: &str, slot: &ScheduleSlot) -> bool {
    if s.instance != instance || !s.is_manual() {
        return false;
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
    let instance = require_instance(clients, target).await?;
    let facts = rds::instance_facts(&instance);
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

async fn require_instance(
    clients: &Clients,
    target: &DbTarget,
) -> Result<aws_sdk_rds::types::DbInstance> {
    rds::describe_instance(&clients.rds, &target.id)
        .await?
        .ok_or_else(|| Error::Aws {
            operation: "DescribeDBInstances",
            resource: format!("DB instance {}", target.id),
            code: Some("DBInstanceNotFound".into()),
            message: "RDS has no such instance in this account and region".into(),
            retryable: false,
            hint: format!(
                "check {} (identifiers are lower case) and the function's region",
                crate::settings::ENV_RDS_INSTANCES
            ),
        })
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
    // Earlier slots' snapshots that AWS was still making: record how they ended.
    let records = catalog.list_targets(JOB, Some(&target_name)).await?;
    for r in records
        .iter()
        .filter(|r| r.status == TargetStatus::Started && r.slot != slot.to_string())
    {
        if let Some(note) = follow(
            clients, catalog, settings, request, run_id, target, r, report,
        )
        .await
        {
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
            return Ok(());
        }
        Claim::Held(rec) => {
            report.outcome = Outcome::InProgress {
                held_by_run: rec.run_id.clone(),
                note: format!(
                    "run {} is working on this slot now (status {}); left alone, a retry will see its result",
                    rec.run_id, rec.status
                ),
            };
            return Ok(());
        }
        Claim::Fresh => false,
        Claim::Retaken { .. } => true,
    };

    let holder = Holder {
        catalog,
        run_id,
        target: &target_name,
        slot: &slot,
    };
    match make_snapshot(
        clients,
        settings,
        request,
        &holder,
        target,
        name,
        previous_attempt,
        &records,
        report,
    )
    .await
    {
        Ok(snap) => {
            record(clients, settings, request, &holder, target, snap, report).await;
            Ok(())
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
            Err(e)
        }
    }
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
    settings: &Settings,
    request: &JobRequest,
    holder: &Holder<'_>,
    target: &DbTarget,
    name: &str,
    previous_attempt: bool,
    records: &[TargetRecord],
    report: &mut TargetReport,
) -> Result<Made> {
    let slot = holder.slot;
    let instance = require_instance(clients, target).await?;
    let facts = rds::instance_facts(&instance);
    let previous = previous_facts(records, slot);
    let guard = db::guard(
        &facts,
        previous.as_ref().map(|(s, f)| (s.as_str(), f)),
        &settings.databases.guard,
    );
    for w in &guard {
        warn!(target = %target, warning = %w, "database guard");
    }
    report.warnings.extend(guard);

    // An earlier attempt may have made the snapshot and died before recording it.
    if previous_attempt {
        if let Some(s) = rds::describe_snapshot(&clients.rds, name).await? {
            if is_the_slots(&s, &target.id, slot) {
                report.warnings.push(
                    "an earlier attempt had made this snapshot; it was adopted, not made again"
                        .into(),
                );
                return Ok(Made { info: s, facts });
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
    let info = create_once(&clients.rds, target, slot, name, &mut report.warnings).await?;
    info!(snapshot = %info.id, status = %info.status, "database snapshot requested");
    Ok(Made { info, facts })
}

/// Makes the slot's snapshot once. The name is the slot's, so RDS itself refuses a second one
/// (`DBSnapshotAlreadyExists`); after an error that leaves in doubt whether the request took
/// effect, the snapshot is looked for by its name and adopted when it is the slot's.
async fn create_once(
    client: &aws_sdk_rds::Client,
    target: &DbTarget,
    slot: &ScheduleSlot,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<SnapshotInfo> {
    let mut backoff = std::time::Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        let err = match rds::create_snapshot(client, &target.id, name, &slot.to_string()).await {
            Ok(s) => return Ok(s),
            Err(e) => e,
        };
        let exists = rds::is_already_exists(&err);
        if !exists && (!err.is_retryable() || attempt >= CREATE_ATTEMPTS) {
            return Err(err);
        }
        if !exists {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        match rds::describe_snapshot(client, name).await? {
            Some(s) if is_the_slots(&s, &target.id, slot) => {
                warnings.push(format!(
                    "CreateDBSnapshot's answer was lost or refused ({err}); the snapshot it made was found by name and adopted"
                ));
                return Ok(s);
            }
            Some(s) => {
                return Err(Error::Aws {
                    operation: "CreateDBSnapshot",
                    resource: format!("DB instance {} (snapshot {name})", target.id),
                    code: Some("DBSnapshotAlreadyExists".into()),
                    message: format!(
                        "a snapshot named {name} exists but is not this slot's (instance {}, made {}); nothing was made",
                        s.instance,
                        s.created_at.map(|c| c.to_string()).unwrap_or_else(|| "at an unknown time".into())
                    ),
                    retryable: false,
                    hint: "rename or delete that snapshot, then run the slot again".into(),
                })
            }
            None if exists => {
                // Refused as existing, yet not found: it may be being deleted. A retry decides.
                return Err(err);
            }
            None => attempt += 1,
        }
    }
}

/// Records a snapshot in the claim: DONE when available (then copied to the replica),
/// STARTED while RDS is still making it, FAILED when it failed.
async fn record(
    clients: &Clients,
    settings: &Settings,
    request: &JobRequest,
    holder: &Holder<'_>,
    target: &DbTarget,
    made: Made,
    report: &mut TargetReport,
) {
    let backup = backup_info(&made.info, Some(&made.facts));
    let (catalog, slot, run_id) = (holder.catalog, holder.slot, holder.run_id);
    if made.info.is_available() {
        match catalog
            .complete(JOB, holder.target, slot, run_id, &backup, Timestamp::now())
            .await
        {
            Ok(()) => {
                report.outcome = Outcome::Created {
                    backup: backup.clone(),
                };
                if let Some(replica) = &settings.databases.replica {
                    report.replica = Some(
                        copy_to_replica(
                            clients, catalog, replica, request, run_id, target, &made.info, slot,
                        )
                        .await,
                    );
                }
            }
            Err(e) => {
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
        let error = format!(
            "RDS reports snapshot {} as {}; no backup was made for this slot",
            made.info.id, made.info.status
        );
        let _ = catalog
            .fail(JOB, holder.target, slot, run_id, &error, Timestamp::now())
            .await;
        report.outcome = Outcome::Failed {
            operation: "DescribeDBSnapshots".into(),
            error,
            retryable: true,
        };
    } else {
        let note = format!(
            "snapshot {} is {} (RDS is still making it); a later run records its completion",
            made.info.id, made.info.status
        );
        match catalog
            .hand_off_backup(
                JOB,
                holder.target,
                slot,
                run_id,
                &backup,
                &note,
                Timestamp::now(),
            )
            .await
        {
            Ok(()) => {
                report.warnings.push(note);
                report.outcome = Outcome::Created { backup };
            }
            Err(e) => {
                report.outcome = Outcome::Failed {
                    operation: "UpdateItem (hand off)".into(),
                    error: format!(
                        "snapshot {} was requested but could not be recorded: {e}",
                        made.info.id
                    ),
                    retryable: true,
                }
            }
        }
    }
}

/// Follows one earlier slot's snapshot that RDS was still making: claims its record, and
/// records it DONE (and copies it) once available, FAILED when it failed, or hands it back
/// while it is still being made. Returns what to tell the report.
#[allow(clippy::too_many_arguments)]
async fn follow(
    clients: &Clients,
    catalog: &Catalog,
    settings: &Settings,
    request: &JobRequest,
    run_id: &str,
    target: &DbTarget,
    record_: &TargetRecord,
    report: &mut TargetReport,
) -> Option<String> {
    let slot = ScheduleSlot::parse(&record_.slot).ok()?;
    let name = record_.backup_name.clone()?;
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
        Err(e) => return Some(format!("the snapshot of {slot} could not be followed: {e}")),
    }
    let facts: Option<DbFacts> = record_
        .table_shape
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let target_name = target.name();
    let holder = Holder {
        catalog,
        run_id,
        target: &target_name,
        slot: &slot,
    };
    match rds::describe_snapshot(&clients.rds, &name).await {
        Ok(Some(info)) => {
            let mut sub = TargetReport::new(
                target.name(),
                Outcome::Planned {
                    backup_name: name.clone(),
                },
            );
            let status = info.status.clone();
            record(
                clients,
                settings,
                request,
                &holder,
                target,
                Made {
                    info,
                    facts: facts.unwrap_or_default(),
                },
                &mut sub,
            )
            .await;
            if report.replica.is_none() {
                report.replica = sub.replica;
            }
            Some(match sub.outcome {
                Outcome::Created { backup } if backup.backup_status == "AVAILABLE" => {
                    format!("the snapshot of {slot} ({name}) is now available and recorded")
                }
                Outcome::Created { .. } => {
                    format!("the snapshot of {slot} ({name}) is still {status}")
                }
                other => format!(
                    "the snapshot of {slot} ({name}) did not complete: {}",
                    other.failure().unwrap_or_default()
                ),
            })
        }
        Ok(None) => {
            let error = format!("snapshot {name} is gone: RDS no longer knows it");
            let _ = catalog
                .fail(JOB, &target.name(), &slot, run_id, &error, Timestamp::now())
                .await;
            Some(format!("the snapshot of {slot} did not complete: {error}"))
        }
        Err(e) => {
            // Leave it for the next run: hand it back as it was.
            let backup = BackupInfo {
                backup_arn: record_.backup_arn.clone().unwrap_or_default(),
                backup_name: name.clone(),
                created_at: None,
                size_bytes: None,
                item_count: None,
                backup_status: "CREATING".into(),
                table_shape: record_.table_shape.clone(),
                table_settings: None,
            };
            let _ = catalog
                .hand_off_backup(
                    JOB,
                    &target.name(),
                    &slot,
                    run_id,
                    &backup,
                    &e.to_string(),
                    Timestamp::now(),
                )
                .await;
            Some(format!("the snapshot of {slot} could not be checked: {e}"))
        }
    }
}

/// Copies a completed snapshot to the replica region, once per (target, slot): the copy has
/// its own catalog record (`rds:<id>@<region>`), the slot's name, and the replica's KMS key.
#[allow(clippy::too_many_arguments)]
async fn copy_to_replica(
    clients: &Clients,
    catalog: &Catalog,
    replica: &DbReplica,
    request: &JobRequest,
    run_id: &str,
    target: &DbTarget,
    source: &SnapshotInfo,
    slot: &ScheduleSlot,
) -> ReplicaState {
    let copy_target = target.replica_name(&replica.region);
    let mut state = ReplicaState {
        target: format!("{} {}", replica.region, source.id),
        ..ReplicaState::default()
    };
    let client = clients.rds_in(Some(&replica.region));
    let result: Result<String> = async {
        let now = Timestamp::now();
        let claim = catalog
            .claim(
                JOB,
                &copy_target,
                slot,
                run_id,
                now,
                catalog::lease_until(now, request.deadline),
                request.deadline,
            )
            .await?;
        match claim {
            Claim::Done(_) => return Ok("copied already".to_owned()),
            Claim::Held(r) => return Ok(format!("run {} is copying it now", r.run_id)),
            Claim::Fresh | Claim::Retaken { .. } => {}
        }
        let copy = match rds::describe_snapshot(&client, &source.id).await? {
            Some(c) if c.source_arn.as_deref().is_none_or(|s| s == source.arn) => c,
            Some(c) => {
                return Err(Error::Aws {
                    operation: "CopyDBSnapshot",
                    resource: format!("DB snapshot {} in {}", c.id, replica.region),
                    code: Some("DBSnapshotAlreadyExists".into()),
                    message: format!(
                        "a snapshot with the copy's name exists there, copied from {}",
                        c.source_arn.unwrap_or_default()
                    ),
                    retryable: false,
                    hint:
                        "rename or delete it; Backstop does not take another's snapshot as its copy"
                            .into(),
                })
            }
            None => match rds::copy_snapshot(
                &client,
                &source.arn,
                &source.id,
                replica.kms_key.as_deref(),
                &slot.to_string(),
            )
            .await
            {
                Ok(c) => c,
                Err(e) if rds::is_already_exists(&e) => rds::describe_snapshot(&client, &source.id)
                    .await?
                    .ok_or(e)?,
                Err(e) => return Err(e),
            },
        };
        let mut backup = backup_info(&copy, None);
        backup.created_at = backup.created_at.or(source.created_at);
        if copy.is_available() {
            catalog
                .complete(JOB, &copy_target, slot, run_id, &backup, Timestamp::now())
                .await?;
            Ok(format!("copy {} is available", copy.id))
        } else if copy.has_failed() {
            let e = format!("RDS reports the copy {} as {}", copy.id, copy.status);
            catalog
                .fail(JOB, &copy_target, slot, run_id, &e, Timestamp::now())
                .await?;
            Err(Error::Aws {
                operation: "CopyDBSnapshot",
                resource: format!("DB snapshot {} in {}", copy.id, replica.region),
                code: None,
                message: e,
                retryable: true,
                hint: "the next run of this slot copies it again".into(),
            })
        } else {
            let note = format!("copy {} is {}", copy.id, copy.status);
            catalog
                .hand_off_backup(
                    JOB,
                    &copy_target,
                    slot,
                    run_id,
                    &backup,
                    &note,
                    Timestamp::now(),
                )
                .await?;
            Ok(note)
        }
    }
    .await;
    match result {
        Ok(detail) => {
            state.ok = detail.contains("available") || detail == "copied already";
            state.detail = detail;
        }
        Err(e) => {
            if let Err(fe) = catalog
                .fail(
                    JOB,
                    &copy_target,
                    slot,
                    run_id,
                    &e.to_string(),
                    Timestamp::now(),
                )
                .await
            {
                warn!(error = %fe, "could not record the copy's failure");
            }
            state.detail = e.to_string();
        }
    }
    // The lag: how far the newest complete copy's slot is behind this slot.
    state.lag_s = match catalog.list_targets(JOB, Some(&copy_target)).await {
        Ok(records) => records
            .iter()
            .filter(|r| r.status == TargetStatus::Done)
            .filter_map(|r| ScheduleSlot::parse(&r.slot).ok())
            .map(|s| (slot.timestamp().as_second() - s.timestamp().as_second()).max(0))
            .min(),
        Err(_) => None,
    };
    if state.ok {
        state.copied = 1;
    }
    state
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
    let mut report = TargetReport::new(
        target.name(),
        Outcome::Failed {
            operation: "DescribeDBSnapshots".into(),
            error: String::new(),
            retryable: true,
        },
    );
    retain_in(
        clients,
        catalog,
        policy,
        None,
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
            request,
            limiter,
            &target,
            &mut copies,
        )
        .await;
        // The copies' decisions go with the target's, named by region; a failure there fails
        // the target.
        for mut d in copies.decisions {
            d.backup_name = format!("{} (copy in {})", d.backup_name, r.region);
            report.decisions.push(d);
        }
        report.warnings.extend(copies.warnings);
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
                Outcome::Retained {
                    kept: k,
                    deleted: d,
                    to_delete: t,
                    failed_deletes: f,
                    error: e,
                    blocked,
                },
            ) => {
                *kept += k;
                *deleted += d;
                *to_delete += t;
                *failed_deletes += f;
                if let Some(b) = blocked {
                    report.warnings.push(format!("copies in {}: {b}", r.region));
                }
                if let Some(e) = e {
                    *error = Some(match error.take() {
                        Some(mine) => format!("{mine}; copies in {}: {e}", r.region),
                        None => format!("copies in {}: {e}", r.region),
                    });
                }
            }
            (
                Outcome::Retained { .. },
                Outcome::Failed {
                    operation,
                    error,
                    retryable,
                },
            ) => {
                report.outcome = Outcome::Failed {
                    operation,
                    error: format!("copies in {}: {error}", r.region),
                    retryable,
                };
            }
            _ => {}
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

#[allow(clippy::too_many_arguments)]
async fn retain_in(
    clients: &Clients,
    catalog: &Catalog,
    policy: &CompiledPolicy,
    region: Option<&str>,
    request: &JobRequest,
    limiter: &crate::backups::RateLimiter,
    target: &DbTarget,
    report: &mut TargetReport,
) {
    let client = clients.rds_in(region);
    let records_of = match region {
        Some(r) => target.replica_name(r),
        None => target.name(),
    };
    let listed = async {
        let records = super::retention::records_by_arn(catalog, &records_of).await?;
        let snapshots = rds::list_manual_snapshots(&client, &target.id).await?;
        Ok::<_, Error>(
            snapshots
                .into_iter()
                .map(|s| {
                    let record = records.get(&s.arn).cloned();
                    super::retention::ListedBackup {
                        point: RecoveryPoint {
                            id: s.arn.clone(),
                            source: target.name(),
                            // A snapshot still being made has no time yet: it counts as now,
                            // and as incomplete it is never deleted.
                            created_at: s.created_at.unwrap_or_else(Timestamp::now),
                            complete: s.is_available() && s.created_at.is_some(),
                            legal_hold: record.as_ref().is_some_and(|r| r.legal_hold),
                            managed: record.is_some(),
                        },
                        name: s.id,
                        record,
                    }
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
                    _ => "DescribeDBSnapshots".into(),
                },
                error: format!("nothing deleted: the listing is incomplete: {e}"),
                retryable: e.is_retryable(),
            };
            return;
        }
    };
    let points: Vec<RecoveryPoint> = listed.iter().map(|l| l.point.clone()).collect();
    let plan = crate::retention::plan(&points, policy, request.slot.later_of(request.received_at));
    // Deletes go by identifier; the plan's points are ARNs.
    let ids: std::collections::HashMap<String, String> = listed
        .iter()
        .map(|l| (l.point.id.clone(), l.name.clone()))
        .collect();
    let (client, ids) = (&client, &ids);
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
            rds::delete_snapshot(client, &id).await
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
            &slot
        ));
        assert!(is_the_slots(
            &snap("db", Some("2026-11-22T01:56:00Z"), &[]),
            "db",
            &slot
        ));
        assert!(!is_the_slots(
            &snap("db", Some("2026-11-21T02:01:00Z"), &[]),
            "db",
            &slot
        ));
        assert!(!is_the_slots(
            &snap("other", Some("2026-11-22T02:01:00Z"), &[]),
            "db",
            &slot
        ));
        assert!(is_the_slots(
            &snap("db", None, &[(rds::TAG_SLOT, "2026-11-22T02:00:00Z")]),
            "db",
            &slot
        ));
        assert!(!is_the_slots(&snap("db", None, &[]), "db", &slot));
        let mut automated = snap("db", Some("2026-11-22T02:01:00Z"), &[]);
        automated.snapshot_type = "automated".into();
        assert!(!is_the_slots(&automated, "db", &slot));
    }
}
