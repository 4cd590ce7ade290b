//! The snapshot job: an on-demand DynamoDB backup of each selected table, at most once per
//! schedule slot, with PITR checked on the way.

use std::time::Instant;

use aws_sdk_dynamodb::types::{PointInTimeRecoverySpecification, PointInTimeRecoveryStatus};
use jiff::Timestamp;
use tracing::{info, info_span, Instrument};

use crate::aws::Clients;
use crate::backups;
use crate::catalog::{self, Catalog, Claim};
use crate::error::{Error, Result};
use crate::event::{JobRequest, ScheduleSlot};
use crate::report::{BackupInfo, Outcome, PitrState, RunReport, TargetReport};
use crate::settings::{JobKind, Settings};

pub const JOB: JobKind = JobKind::Snapshot;

/// Marks names of backups Backstop made: `<table>-backstop-<slot>`.
const NAME_MARK: &str = "-backstop-";

pub use super::Context;

/// Runs the job for already resolved settings (the same path as the Lambda; the CLI calls it
/// directly): select, back up each table with bounded concurrency, then publish the report.
/// Never fails as a whole: every error lands in the report.
pub async fn run(clients: &Clients, settings: &Settings, request: &JobRequest) -> RunReport {
    let mut run = super::RunInProgress::start(JOB, settings, request);
    let span = info_span!("run", run_id = %run.run_id, job = %JOB, slot = %request.slot);
    async {
        let catalog = Catalog::new((*clients.dynamodb).clone(), &settings.catalog_table);
        let run_id = run.run_id.clone();
        run.over_selected_tables(clients, settings, |table| {
            snapshot_table(clients, &catalog, settings, request, &run_id, table)
        })
        .await;
        run.over_selected_databases(clients, settings, |target| {
            super::database::snapshot_target(clients, &catalog, settings, request, &run_id, target)
        })
        .await;
        run.finish(clients, settings, &catalog).await
    }
    .instrument(span)
    .await
}

/// The new backup's size and item count against the median of the table's last complete
/// backups (from the catalog). A history that cannot be read gives no check at all (never
/// "first backup"), with a warning: the backup stands either way.
async fn size_check(
    catalog: &Catalog,
    table: &str,
    slot: &ScheduleSlot,
    backup: &crate::report::BackupInfo,
    settings: &Settings,
    report: &mut TargetReport,
) -> Option<crate::anomaly::SizeCheck> {
    let history = match catalog.list_targets(JOB, Some(table)).await {
        Ok(h) => h,
        Err(e) => {
            report.warnings.push(format!(
                "size not compared: could not read the backup history ({e})"
            ));
            return None;
        }
    };
    let check = crate::anomaly::check(
        crate::anomaly::baseline(&history, &slot.to_string(), |_| true),
        backup.size_bytes,
        backup.item_count,
        settings.anomaly_threshold_pct,
    );
    if check.is_anomaly() {
        tracing::warn!(change_pct = ?check.change_pct(), "backup size anomaly");
    }
    Some(check)
}

/// Pure: the backup name for a table and slot, `<table>-backstop-<YYYYMMDDTHHMMSSZ>`. Names are
/// 3 to 255 characters of `[a-zA-Z0-9_.-]`; a table name too long to fit is cut and given a
/// short hash of the full name, so that two long names never share a backup name.
pub fn backup_name(table: &str, slot: &ScheduleSlot) -> String {
    const MAX: usize = 255;
    let suffix = format!("{NAME_MARK}{}", slot.compact());
    let clean: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() + suffix.len() <= MAX && clean == table {
        return format!("{clean}{suffix}");
    }
    let hash = blake3::hash(table.as_bytes()).to_hex();
    let tag = format!("-{}", &hash[..8]);
    let keep = MAX - suffix.len() - tag.len();
    let head: String = clean.chars().take(keep).collect();
    format!("{head}{tag}{suffix}")
}

/// Pure: whether a backup name is one Backstop made (for retention, which never touches others
/// unless asked).
pub fn is_backstop_backup_name(name: &str) -> bool {
    name.rsplit_once(NAME_MARK)
        .is_some_and(|(head, slot)| !head.is_empty() && slot.len() == 16 && slot.ends_with('Z'))
}

async fn snapshot_table(
    clients: &Clients,
    catalog: &Catalog,
    settings: &Settings,
    request: &JobRequest,
    run_id: &str,
    table: String,
) -> TargetReport {
    let started = Instant::now();
    let slot = request.slot;
    let name = backup_name(&table, &slot);
    let mut report = TargetReport {
        table: table.clone(),
        outcome: Outcome::Planned {
            backup_name: name.clone(),
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

    if request.dry_run {
        report.outcome = match dry_run_outcome(
            clients,
            catalog,
            settings,
            &table,
            &slot,
            &name,
            &mut report,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => failed(&e),
        };
        report.duration_ms = started.elapsed().as_millis() as u64;
        return report;
    }

    let now = Timestamp::now();
    let lease = catalog::lease_until(now, request.deadline);
    let claim = match catalog
        .claim(JOB, &table, &slot, run_id, now, lease, request.deadline)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            // Without the guard we cannot promise one backup per slot: do nothing.
            report.outcome = failed(&e);
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
    };
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
                        "catalog {} says {table} is done for {slot} but names no backup; fix the catalog item",
                        catalog.table_name()
                    ),
                    retryable: false,
                },
            };
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
        Claim::Held(rec) => {
            report.outcome = Outcome::InProgress {
                held_by_run: rec.run_id.clone(),
                note: format!(
                    "run {} is working on this slot now (status {}); left alone, a retry will see its result",
                    rec.run_id, rec.status
                ),
            };
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
        Claim::Fresh => false,
        Claim::Retaken { .. } => true,
    };

    let holder = Holder {
        catalog,
        run_id,
        deadline: request.deadline,
    };
    let result = make_backup(
        clients,
        settings,
        &holder,
        &table,
        &slot,
        &name,
        previous_attempt,
        &mut report,
    )
    .await;
    report.duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(backup) => {
            match catalog
                .complete(JOB, &table, &slot, run_id, &backup, Timestamp::now())
                .await
            {
                Ok(()) => {
                    report.size_check =
                        size_check(catalog, &table, &slot, &backup, settings, &mut report).await;
                    report.outcome = Outcome::Created { backup };
                }
                Err(e) => {
                    // The backup exists. Leave the target FAILED, never CLAIMED, so that the very
                    // next attempt takes over at once and adopts the backup by its name.
                    let error = format!(
                        "backup {} was made but could not be recorded: {e}",
                        backup.backup_name
                    );
                    if let Err(fe) = catalog
                        .fail(JOB, &table, &slot, run_id, &error, Timestamp::now())
                        .await
                    {
                        report.warnings.push(format!(
                            "could not record the failure in the catalog either ({fe}); the claim lapses at its lease"
                        ));
                    }
                    report.outcome = Outcome::Failed {
                        operation: "UpdateItem (complete)".into(),
                        error,
                        retryable: true,
                    }
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            if let Err(fe) = catalog
                .fail(JOB, &table, &slot, run_id, &msg, Timestamp::now())
                .await
            {
                report
                    .warnings
                    .push(format!("could not record the failure in the catalog: {fe}"));
            }
            report.outcome = failed(&e);
        }
    }
    report
}

fn failed(e: &Error) -> Outcome {
    Outcome::Failed {
        operation: match e {
            Error::Aws { operation, .. } => (*operation).to_owned(),
            _ => "snapshot".to_owned(),
        },
        error: e.to_string(),
        retryable: e.is_retryable(),
    }
}

async fn dry_run_outcome(
    clients: &Clients,
    catalog: &Catalog,
    settings: &Settings,
    table: &str,
    slot: &ScheduleSlot,
    name: &str,
    report: &mut TargetReport,
) -> Result<Outcome> {
    if let Some(rec) = catalog.get(JOB, table, slot).await? {
        let done = rec.status.is_done();
        if let (true, Some(backup)) = (done, rec.backup_info()) {
            return Ok(Outcome::AlreadyDone {
                backup,
                note: format!("already done for this slot (run {})", rec.run_id),
            });
        }
    }
    describe_table(clients, table).await?;
    // A dry run reads PITR but never changes it.
    report.pitr = Some(match pitr_status(clients, table).await {
        Ok(true) => PitrState::Enabled,
        Ok(false) if settings.enable_pitr() => {
            report
                .warnings
                .push("point-in-time recovery is off; a real run would turn it on".into());
            PitrState::Disabled
        }
        Ok(false) => PitrState::Disabled,
        Err(e) => PitrState::Unknown {
            error: e.to_string(),
        },
    });
    Ok(Outcome::Planned {
        backup_name: name.to_owned(),
    })
}

struct TableFacts {
    item_count: Option<i64>,
    size_bytes: Option<i64>,
    shape: Option<serde_json::Value>,
}

async fn describe_table(clients: &Clients, table: &str) -> Result<TableFacts> {
    let out = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeTable", format!("table {table}"), e))?;
    let t = out.table;
    Ok(TableFacts {
        item_count: t.as_ref().and_then(|t| t.item_count),
        size_bytes: t.as_ref().and_then(|t| t.table_size_bytes),
        shape: t.as_ref().map(crate::export::logical::schema_of),
    })
}

async fn pitr_status(clients: &Clients, table: &str) -> Result<bool> {
    let out = clients
        .dynamodb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeContinuousBackups", format!("table {table}"), e))?;
    Ok(out
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
        .and_then(|p| p.point_in_time_recovery_status)
        == Some(PointInTimeRecoveryStatus::Enabled))
}

async fn ensure_pitr(clients: &Clients, settings: &Settings, table: &str) -> PitrState {
    match pitr_status(clients, table).await {
        Ok(true) => PitrState::Enabled,
        Ok(false) if !settings.enable_pitr() => PitrState::Disabled,
        Ok(false) => {
            let spec = match PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
            {
                Ok(s) => s,
                Err(e) => {
                    return PitrState::Unknown {
                        error: e.to_string(),
                    }
                }
            };
            match clients
                .dynamodb
                .update_continuous_backups()
                .table_name(table)
                .point_in_time_recovery_specification(spec)
                .send()
                .await
            {
                Ok(_) => {
                    info!(table, "turned point-in-time recovery on");
                    PitrState::EnabledNow
                }
                Err(e) => PitrState::Unknown {
                    error: Error::aws("UpdateContinuousBackups", format!("table {table}"), e)
                        .to_string(),
                },
            }
        }
        Err(e) => PitrState::Unknown {
            error: e.to_string(),
        },
    }
}

/// The claim a snapshot works under.
struct Holder<'a> {
    catalog: &'a Catalog,
    run_id: &'a str,
    deadline: Option<Timestamp>,
}

#[allow(clippy::too_many_arguments)]
async fn make_backup(
    clients: &Clients,
    settings: &Settings,
    holder: &Holder<'_>,
    table: &str,
    slot: &ScheduleSlot,
    name: &str,
    previous_attempt: bool,
    report: &mut TargetReport,
) -> Result<BackupInfo> {
    let facts = describe_table(clients, table).await?;
    report.pitr = Some(ensure_pitr(clients, settings, table).await);

    // An earlier attempt may have made the backup and died before recording it: adopt it
    // rather than make a second one.
    let existing = if previous_attempt {
        find_backup_by_name(clients, table, slot, name).await?
    } else {
        Found::default()
    };
    if let Some(created) = existing.too_early {
        report.warnings.push(format!(
            "a backup named {name} exists but was made at {created}, before the slot; it was not taken as this slot's backup"
        ));
    }
    let arn = match existing.arn {
        Some(arn) => {
            report.warnings.push(
                "an earlier attempt had made this backup; it was adopted, not made again".into(),
            );
            arn
        }
        None => {
            // Nobody may take the slot over while the backup is being made.
            let lease = catalog::lease_until(Timestamp::now(), holder.deadline);
            if !holder
                .catalog
                .renew(JOB, table, slot, holder.run_id, lease)
                .await?
            {
                return Err(Error::Aws {
                    operation: "UpdateItem (renew claim)",
                    resource: format!("catalog table {}", holder.catalog.table_name()),
                    code: None,
                    message: format!(
                        "the claim on {table} at {slot} was taken over by another run after its lease ran out; nothing was created"
                    ),
                    retryable: true,
                    hint: "a retry sees the other run's result".into(),
                });
            }
            create_backup_once(clients, table, slot, name, &mut report.warnings).await?
        }
    };

    let mut info = backups::describe(&clients.dynamodb, &arn, name).await?;
    info.size_bytes = info.size_bytes.or(facts.size_bytes);
    info.item_count = info.item_count.or(facts.item_count);
    info.table_shape = facts.shape;
    match crate::table_settings::read(&clients.dynamodb, table).await {
        Ok(s) => {
            report.warnings.extend(
                s.unread
                    .iter()
                    .map(|u| format!("a setting could not be recorded for restores: {u}")),
            );
            info.table_settings = Some(s);
        }
        Err(e) => report.warnings.push(format!(
            "the table's settings could not be recorded for restores: {e}"
        )),
    }
    Ok(info)
}

/// CreateBackup attempts, each followed (after an error) by a look for what it may have made.
const CREATE_ATTEMPTS: u32 = 4;

/// Makes the slot's backup once. CreateBackup has no client token, so a request repeated after
/// its answer was lost makes a second backup with the same name: the SDK never retries it. After
/// an error that leaves in doubt whether it took effect (a timeout, a dropped connection, a 500,
/// throttling), the job looks for the backup by its name and slot and adopts it; only when there
/// is none does it create again. An error that says it did not happen (access denied, a missing
/// table) ends it at once.
async fn create_backup_once(
    clients: &Clients,
    table: &str,
    slot: &ScheduleSlot,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<String> {
    let mut backoff = std::time::Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        let err = match backups::create(&clients.dynamodb, table, name).await {
            Ok(arn) => return Ok(arn),
            Err(e) => e,
        };
        if !err.is_retryable() || attempt >= CREATE_ATTEMPTS {
            return Err(err);
        }
        tracing::warn!(attempt, error = %err, "CreateBackup in doubt; looking for its backup");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        if let Some(arn) = find_backup_by_name(clients, table, slot, name).await?.arn {
            warnings.push(format!(
                "CreateBackup's answer was lost ({}); the backup it made was found by name and adopted",
                err
            ));
            return Ok(arn);
        }
        attempt += 1;
    }
}

/// How much earlier than its slot a backup may have been made and still be the slot's: clock
/// skew between the scheduler and DynamoDB, nothing more.
pub const ADOPT_SKEW_SECS: i64 = 300;

/// What a search by name found.
#[derive(Debug, Default)]
struct Found {
    /// A backup with the name, made for this slot (not before it).
    arn: Option<String>,
    /// A backup with the name made before the slot: a look-alike, never adopted.
    too_early: Option<Timestamp>,
}

async fn find_backup_by_name(
    clients: &Clients,
    table: &str,
    slot: &ScheduleSlot,
    name: &str,
) -> Result<Found> {
    // A backup for a slot is made after the slot. One made earlier holds older data, whatever
    // its name says: it is never adopted. (The time filter is checked here too, not only in the
    // request.)
    let earliest = slot.timestamp().as_second() - ADOPT_SKEW_SECS;
    // A day before: look-alikes made shortly before the slot are reported.
    let since = Timestamp::from_second(earliest - 86_400).ok();
    let mut found = Found::default();
    for b in backups::list(&clients.dynamodb, table, since).await? {
        if b.name != name {
            continue;
        }
        if b.created_at.as_second() >= earliest {
            found.arn = Some(b.arn);
            return Ok(found);
        }
        found.too_early = Some(b.created_at);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> ScheduleSlot {
        ScheduleSlot::parse("2026-11-22T02:00:00Z").unwrap()
    }

    fn valid(name: &str) -> bool {
        (3..=255).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    }

    #[test]
    fn backup_name_shows_table_and_slot() {
        let n = backup_name("SalesTable", &slot());
        assert_eq!(n, "SalesTable-backstop-20261122T020000Z");
        assert!(valid(&n));
        assert!(is_backstop_backup_name(&n));
    }

    #[test]
    fn long_table_names_are_cut_with_a_hash_and_stay_distinct() {
        let a = "a".repeat(255);
        let mut b = "a".repeat(254);
        b.push('b');
        let na = backup_name(&a, &slot());
        let nb = backup_name(&b, &slot());
        assert_eq!(na.len(), 255);
        assert!(valid(&na) && valid(&nb));
        assert_ne!(na, nb);
        assert!(na.ends_with("-backstop-20261122T020000Z"));
    }

    #[test]
    fn foreign_backup_names_are_not_ours() {
        assert!(!is_backstop_backup_name("SalesTable-manual-20260130"));
        assert!(!is_backstop_backup_name("-backstop-20261122T020000Z"));
    }

    proptest::proptest! {
        #[test]
        fn every_table_name_gives_a_valid_backup_name(table in "[a-zA-Z0-9_.-]{3,255}", secs in 0i64..4_000_000_000) {
            let slot = ScheduleSlot::new(Timestamp::from_second(secs).unwrap());
            let n = backup_name(&table, &slot);
            proptest::prop_assert!(valid(&n), "{}", n);
            proptest::prop_assert!(is_backstop_backup_name(&n));
        }
    }
}
