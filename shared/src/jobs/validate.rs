//! The validate job: for each selected table, freshness (the RPO watch), every new export read
//! back and checked once, incremental chains checked, and a restore drill when one is due (see
//! [`crate::drill`]). What it finds wrong is reported (severity `error`) but is not retried:
//! checking again changes nothing. What it could not check fails the table, and is retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aws_sdk_dynamodb::types::PointInTimeRecoveryStatus;
use jiff::{SignedDuration, Timestamp};
use tracing::{info, info_span, warn, Instrument};

use crate::aws::Clients;
use crate::catalog::{Catalog, TargetRecord, TargetStatus, Verification};
use crate::drill::{self, DrillCtx, DrillReport, Due};
use crate::error::{Error, Result};
use crate::event::JobRequest;
use crate::export::native::broken_chains;
use crate::export::Made;
use crate::freshness::{self, newest_backup, newest_export, Evidence, Pitr};
use crate::jobs::export::{finalize_native, Finalized};
use crate::report::{ExportCheck, Outcome, RunReport, TargetReport, Validation};
use crate::settings::{JobKind, Settings, ValidateSettings};

pub const JOB: JobKind = JobKind::Validate;

/// Drill tables older than this that no open drill names are deleted by the sweep.
pub const SWEEP_AGE: SignedDuration = SignedDuration::from_hours(24);

/// How long one invocation waits for a drill's restore before leaving it to the next run.
pub const DRILL_WAIT: SignedDuration = SignedDuration::from_mins(10);

pub async fn run(clients: &Clients, settings: &Settings, request: &JobRequest) -> RunReport {
    let mut run = super::RunInProgress::start(JOB, settings, request);
    let span = info_span!("run", run_id = %run.run_id, job = %JOB, slot = %request.slot);
    async {
        let catalog = Catalog::new((*clients.dynamodb).clone(), &settings.catalog_table);
        let Some(v) = settings.validate() else {
            run.errors
                .push("validate settings: the settings were resolved for another job".into());
            return run.finish(clients, settings, &catalog).await;
        };
        let run_id = run.run_id.clone();
        let ctx = TableCtx {
            clients,
            catalog: &catalog,
            settings: v,
            prefix: &settings.drill_table_prefix,
            request,
            run_id: &run_id,
            databases: &settings.databases,
            drills_left: AtomicUsize::new(v.drills_per_run),
        };
        run.over_selected_tables(clients, settings, |table| ctx.validate_table(table))
            .await;
        run.over_selected_databases(clients, settings, |target| ctx.validate_database(target))
            .await;
        if !request.dry_run && v.drill_every.is_some() {
            match ctx.sweep().await {
                Ok(left_alone) => run.excluded.extend(left_alone),
                Err(e) => run.errors.push(format!("sweeping old drill tables: {e}")),
            }
            if settings.databases.any() {
                if let Err(e) = ctx.sweep_databases().await {
                    run.errors
                        .push(format!("sweeping old drill instances: {e}"));
                }
            }
        }
        run.finish(clients, settings, &catalog).await
    }
    .instrument(span)
    .await
}

struct TableCtx<'a> {
    clients: &'a Clients,
    catalog: &'a Catalog,
    settings: &'a ValidateSettings,
    prefix: &'a str,
    request: &'a JobRequest,
    run_id: &'a str,
    /// The database selections (for the sweep of drill instances and clusters).
    databases: &'a crate::settings::DatabaseSettings,
    /// New drills this run may still start (shared by the tables worked on at once).
    drills_left: AtomicUsize,
}

impl TableCtx<'_> {
    fn drills(&self) -> DrillCtx<'_> {
        DrillCtx {
            clients: self.clients,
            catalog: self.catalog,
            prefix: self.prefix,
            run_id: self.run_id,
            witness_exports: self
                .settings
                .witness_exports
                .as_ref()
                .map(|l| (l, self.settings.export_kms_key.as_deref())),
        }
    }

    async fn validate_table(&self, table: String) -> TargetReport {
        let started = Instant::now();
        let mut validation = Validation::default();
        let mut errors: Vec<Error> = Vec::new();
        if let Err(e) = self.check(&table, &mut validation, &mut errors).await {
            errors.push(e);
        }
        let outcome = match errors.first() {
            None => Outcome::Validated {
                problems: validation.problems().len(),
            },
            Some(first) => Outcome::Failed {
                operation: match first {
                    Error::Aws { operation, .. } => (*operation).to_owned(),
                    _ => "validate".into(),
                },
                error: errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                retryable: errors.iter().any(Error::is_retryable),
            },
        };
        TargetReport {
            table,
            outcome,
            pitr: None,
            duration_ms: started.elapsed().as_millis() as u64,
            warnings: vec![],
            decisions: vec![],
            export: None,
            export_retention: None,
            validation: Some(Box::new(validation)),
            bucket: None,
            replica: None,
            size_check: None,
        }
    }

    /// Everything validate does for one table. An error that stops one part is kept in `errors`
    /// and the other parts still run; an error returned stops the rest (the catalog unreadable).
    async fn check(&self, table: &str, v: &mut Validation, errors: &mut Vec<Error>) -> Result<()> {
        let backups = self
            .catalog
            .list_targets(JobKind::Snapshot, Some(table))
            .await?;
        let mut exports = self
            .catalog
            .list_targets(JobKind::Export, Some(table))
            .await?;

        // Native exports still recorded as under way: finished in AWS by now, most of them.
        // Finalized here (the export job would only on its next weekly run), then verified below.
        if !self.request.dry_run {
            let started: Vec<&TargetRecord> = exports
                .iter()
                .filter(|r| {
                    r.status == TargetStatus::Started
                        && r.export.as_ref().is_some_and(|m| m.made == Made::Native)
                })
                .collect();
            for r in &started {
                let what = match finalize_native(
                    self.clients,
                    self.catalog,
                    r,
                    self.run_id,
                    self.request.deadline,
                )
                .await
                {
                    Ok(Finalized::Done(_)) => "finished".to_owned(),
                    Ok(Finalized::Running) => "still running".to_owned(),
                    Ok(Finalized::Failed(why)) => format!("FAILED: {why}"),
                    Ok(Finalized::LeftAlone(why)) => format!("left alone ({why})"),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                v.finalized.push(format!("{}: {what}", r.slot));
            }
            if !started.is_empty() {
                exports = self
                    .catalog
                    .list_targets(JobKind::Export, Some(table))
                    .await?;
            }
        }

        let evidence = Evidence {
            newest_backup: newest_backup(&backups),
            newest_export: newest_export(&exports),
            pitr: pitr(self.clients, table).await,
        };
        let fresh = freshness::assess(Timestamp::now(), &self.settings.limits(), &evidence);
        v.backup_age_s = fresh.backup_age_s;
        v.export_age_s = fresh.export_age_s;
        v.pitr_lag_s = fresh.pitr_lag_s;
        v.pitr_enabled = match evidence.pitr {
            freshness::Pitr::On { .. } => Some(true),
            freshness::Pitr::Off => Some(false),
            freshness::Pitr::Unknown(_) => None,
        };
        v.stale = fresh.violations.iter().map(|x| x.to_string()).collect();
        if !v.stale.is_empty() {
            warn!(stale = ?v.stale, "stale");
        }

        for record in exports
            .iter()
            .filter(|r| r.status == TargetStatus::Done && r.verification.is_none())
        {
            match verify_export(self.clients, self.catalog, record, !self.request.dry_run).await {
                Ok(check) => v.exports.push(check),
                Err(e) => errors.push(e),
            }
        }
        v.broken_chains = broken_chains(&exports)
            .into_iter()
            .map(|(slot, why)| format!("{slot}: {why}"))
            .collect();

        if let Some(every) = self.settings.drill_every {
            if !self.request.dry_run {
                match self.drill(table, every).await {
                    Ok(d) => v.drill = d,
                    Err(e) => errors.push(e),
                }
            }
        }
        Ok(())
    }

    /// Continues the table's open drill, or starts one when it is due and this run may still
    /// start one; drives it until it is cleaned or its restore outlasts this invocation.
    async fn drill(&self, table: &str, every: SignedDuration) -> Result<Option<DrillReport>> {
        let now = Timestamp::now();
        let drills = self.drills();
        let last = drill::latest(self.catalog, table).await?;
        let open = match drill::due(last.as_ref(), now, every) {
            Due::Continue(d) => *d,
            Due::NotYet(next) => {
                info!(next = %next, "drill not due");
                return Ok(None);
            }
            Due::New => {
                if !self.take_drill_turn() {
                    return Ok(None);
                }
                match drills.begin(table, false, now).await? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
        };
        let until = self.drill_until(now);
        let d = drills
            .drive(open, until, std::time::Duration::from_secs(5), |_| {})
            .await?;
        Ok(Some(DrillReport::of(&d)))
    }

    fn db_drills(&self) -> crate::db::drill::DbDrillCtx<'_> {
        crate::db::drill::DbDrillCtx {
            clients: self.clients,
            catalog: self.catalog,
            prefix: self.prefix,
            run_id: self.run_id,
        }
    }

    /// Validate for a database target: the newest complete snapshot's age, the automated
    /// backups' latest restorable time (RDS's point-in-time recovery), and a restore drill when
    /// one is due.
    async fn validate_database(&self, target: crate::db::DbTarget) -> TargetReport {
        let started = Instant::now();
        let mut v = Validation::default();
        let result: Result<()> = async {
            let records = self
                .catalog
                .list_targets(JobKind::Snapshot, Some(&target.name()))
                .await?;
            let pitr = crate::db::api::automated_backups(&self.clients.db(), &target).await;
            let evidence = Evidence {
                newest_backup: newest_backup(&records),
                newest_export: None,
                pitr,
            };
            let all = self.settings.limits();
            let limits = freshness::Limits {
                export: None,
                // ElastiCache has no point-in-time recovery: its snapshots are the evidence.
                pitr_lag: all.pitr_lag.filter(|_| target.kind.has_point_in_time()),
                ..all
            };
            let fresh = freshness::assess(Timestamp::now(), &limits, &evidence);
            v.backup_age_s = fresh.backup_age_s;
            v.pitr_lag_s = fresh.pitr_lag_s;
            v.pitr_enabled = match evidence.pitr {
                Pitr::On { .. } => Some(true),
                Pitr::Off => Some(false),
                Pitr::Unknown(_) => None,
            };
            v.stale = fresh.violations.iter().map(|x| x.to_string()).collect();
            if let (Some(every), false) = (self.settings.drill_every, self.request.dry_run) {
                v.drill = self.drill_database(&target, every).await?;
            }
            Ok(())
        }
        .await;
        let outcome = match result {
            Ok(()) => Outcome::Validated {
                problems: v.problems().len(),
            },
            Err(e) => Outcome::Failed {
                operation: match &e {
                    Error::Aws { operation, .. } => (*operation).to_owned(),
                    _ => "validate".into(),
                },
                error: e.to_string(),
                retryable: e.is_retryable(),
            },
        };
        let mut report = TargetReport::new(target.name(), outcome);
        report.validation = Some(Box::new(v));
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// The database's open drill taken on, or a new one when due and this run may start one.
    async fn drill_database(
        &self,
        target: &crate::db::DbTarget,
        every: SignedDuration,
    ) -> Result<Option<DrillReport>> {
        let now = Timestamp::now();
        let last = drill::latest(self.catalog, &target.name()).await?;
        let open = match drill::due(last.as_ref(), now, every) {
            Due::Continue(d) => *d,
            Due::NotYet(next) => {
                info!(next = %next, "drill not due");
                return Ok(None);
            }
            Due::New => {
                if !self.take_drill_turn() {
                    return Ok(None);
                }
                match self.db_drills().begin(target, now).await? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
        };
        let until = self.drill_until(now);
        let d = self
            .db_drills()
            .drive(open, until, std::time::Duration::from_secs(15))
            .await?;
        Ok(Some(DrillReport::of(&d)))
    }

    /// Takes one of the run's new drills, `false` when they are used up.
    fn take_drill_turn(&self) -> bool {
        let mut left = self.drills_left.load(Ordering::SeqCst);
        loop {
            if left == 0 {
                info!("drill due, waiting its turn (drills per run used up)");
                return false;
            }
            match self.drills_left.compare_exchange(
                left,
                left - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now_left) => left = now_left,
            }
        }
    }

    /// How long this invocation may drive a drill: 90 s before its deadline, at most
    /// [`DRILL_WAIT`].
    fn drill_until(&self, now: Timestamp) -> Timestamp {
        self.request
            .deadline
            .and_then(|d| d.checked_sub(SignedDuration::from_secs(90)).ok())
            .unwrap_or(Timestamp::MAX)
            .min(now.checked_add(DRILL_WAIT).unwrap_or(Timestamp::MAX))
    }

    async fn sweep_databases(&self) -> Result<()> {
        let open = drill::open_drill_tables(self.catalog).await?;
        let kinds: Vec<crate::db::DbKind> = crate::db::DbKind::ALL
            .into_iter()
            .filter(|k| self.databases.selection(*k).is_some())
            .collect();
        let swept = self.db_drills().sweep(&kinds, &open, SWEEP_AGE).await?;
        if !swept.is_empty() {
            info!(instances = ?swept, "swept drill instances left behind");
        }
        Ok(())
    }

    /// Deletes the drill tables left behind (the drill prefix and the drill tag, see
    /// [`crate::drill::DrillCtx::sweep`]). Returns the prefix tables it left alone (no drill
    /// tag, or tags it could not read), each with why: the run's report lists them, as no job
    /// backs them up either.
    async fn sweep(&self) -> Result<Vec<crate::selection::Excluded>> {
        let open = drill::open_drill_tables(self.catalog).await?;
        let swept = self.drills().sweep(&open, SWEEP_AGE).await?;
        if !swept.deleted.is_empty() {
            info!(tables = ?swept.deleted, "swept drill tables left behind");
        }
        Ok(swept.left_alone)
    }
}

/// Reads an export back whole and (with `record_result`) records the result once. A damaged export is a finding,
/// recorded; an error reading it (throttling, access) is not, and the next run tries again.
pub async fn verify_export(
    clients: &Clients,
    catalog: &Catalog,
    record: &TargetRecord,
    record_result: bool,
) -> Result<ExportCheck> {
    let Some(meta) = &record.export else {
        return Err(Error::Local(format!(
            "export record {} of {} holds no export",
            record.slot, record.table
        )));
    };
    let uri = meta.uri();
    let (check, fingerprint) =
        match crate::export::verify::verify_meta(
            &clients.s3,
            meta,
            record.verification.as_ref().and_then(|v| v.fingerprint.as_ref()),
        )
        .await
        {
            Ok(found) => (
                ExportCheck {
                    slot: record.slot.clone(),
                    uri,
                    ok: true,
                    items: Some(found.items),
                    detail: format!(
                        "{} items in {} data files ({} bytes stored) read back; every ETag, MD5 and count as the manifests say{}",
                        found.items,
                        found.files,
                        found.stored_bytes,
                        if found.fingerprint_checked {
                            ", fingerprint as recorded"
                        } else {
                            "; fingerprint recorded now"
                        }
                    ),
                },
                Some(found.fingerprint),
            ),
            Err(e @ Error::Aws {
                operation: "read export",
                ..
            }) => (
                ExportCheck {
                    slot: record.slot.clone(),
                    uri,
                    ok: false,
                    items: None,
                    detail: e.to_string(),
                },
                None,
            ),
            Err(e) => return Err(e),
        };
    info!(export = %check.uri, ok = check.ok, "export verified");
    if record_result {
        let verification = Verification {
            at: Timestamp::now(),
            ok: check.ok,
            detail: check.detail.clone(),
            items: check.items,
            fingerprint,
        };
        catalog.record_verification(record, &verification).await?;
    }
    Ok(check)
}

/// What freshness is judged on, for one table: its newest complete backup and export from the
/// catalog, and PITR from DescribeContinuousBackups. A catalog that cannot be read is an error
/// (nothing is judged on half a view); PITR that cannot be read is `Pitr::Unknown`, a violation.
pub async fn freshness_evidence(
    clients: &Clients,
    catalog: &Catalog,
    table: &str,
) -> Result<Evidence> {
    let backups = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
    let exports = catalog.list_targets(JobKind::Export, Some(table)).await?;
    Ok(Evidence {
        newest_backup: newest_backup(&backups),
        newest_export: newest_export(&exports),
        pitr: pitr(clients, table).await,
    })
}

async fn pitr(clients: &Clients, table: &str) -> Pitr {
    pitr_window(clients, table).await.0
}

/// A table's PITR state as DescribeContinuousBackups gives it, and its earliest restorable
/// time when on. A call that fails, or an answer without a recovery description, is
/// `Pitr::Unknown` with the reason (a violation, never fresh).
pub async fn pitr_window(clients: &Clients, table: &str) -> (Pitr, Option<jiff::Timestamp>) {
    let out = match clients
        .dynamodb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            return (
                Pitr::Unknown(
                    Error::aws("DescribeContinuousBackups", format!("table {table}"), e)
                        .to_string(),
                ),
                None,
            )
        }
    };
    let Some(p) = out
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
    else {
        return (
            Pitr::Unknown("DescribeContinuousBackups gave no recovery description".into()),
            None,
        );
    };
    let ts = |t: Option<aws_smithy_types::DateTime>| {
        t.and_then(|t| jiff::Timestamp::from_second(t.secs()).ok())
    };
    match p.point_in_time_recovery_status {
        Some(PointInTimeRecoveryStatus::Enabled) => (
            Pitr::On {
                latest_restorable: ts(p.latest_restorable_date_time),
            },
            ts(p.earliest_restorable_date_time),
        ),
        Some(PointInTimeRecoveryStatus::Disabled) => (Pitr::Off, None),
        other => (
            Pitr::Unknown(format!("point-in-time recovery status {other:?}")),
            None,
        ),
    }
}
