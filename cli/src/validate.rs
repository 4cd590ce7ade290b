//! `backstop validate exports` (read every finished export back and check it) and `backstop
//! drill` (one restore drill now, its steps shown as they happen).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use backstop::aws::Clients;
use backstop::catalog::{Catalog, TargetStatus};
use backstop::drill::{self, DrillCtx, DrillLevel, DrillReport, DrillState, Due};
use backstop::event::JobRequest;
use backstop::jobs::validate::verify_export;
use backstop::settings::{Environment, JobKind, Settings};
use backstop::Error;
use jiff::{SignedDuration, Timestamp};

use crate::aws_config_for;

/// Verifies every finished export the catalog records (of one table, or all), whether or not
/// it was verified before, and records the result where none is recorded yet. Exit 1 when any
/// export fails.
pub async fn exports(
    endpoint: Option<&str>,
    table: Option<&str>,
    slot: Option<&str>,
    catalog: String,
    json: bool,
) -> Result<ExitCode, Error> {
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let catalog = Catalog::new((*clients.dynamodb).clone(), catalog);
    let records = catalog.list_targets(JobKind::Export, table).await?;
    let done: Vec<_> = records
        .iter()
        .filter(|r| r.status == TargetStatus::Done)
        .filter(|r| slot.is_none_or(|s| r.slot == s))
        .collect();
    if done.is_empty() {
        println!(
            "No finished exports recorded in catalog {}{}{}.",
            catalog.table_name(),
            table.map(|t| format!(" for {t}")).unwrap_or_default(),
            slot.map(|s| format!(" at slot {s}")).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut checks = Vec::new();
    for r in done {
        let t = Instant::now();
        let check = verify_export(&clients, &catalog, r, r.verification.is_none()).await?;
        if !json {
            println!(
                "{:<24} {:<21} {:<6} {:>6.1} s  {}",
                r.table,
                r.slot,
                if check.ok { "OK" } else { "FAILED" },
                t.elapsed().as_secs_f64(),
                check.detail
            );
        }
        checks.push(check);
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!(
            "{} exports read back: {} verified, {failed} failed",
            checks.len(),
            checks.len() - failed
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs one drill of `table` now (or takes on its open one), showing each step, and waits for
/// the restore as long as `wait`. Exit 0 when it is proven or consistent, 1 when it failed or
/// did not finish in time.
pub async fn drill(
    endpoint: Option<&str>,
    table: &str,
    catalog: String,
    keep: bool,
    wait: SignedDuration,
    json: bool,
) -> Result<ExitCode, Error> {
    if let Some(target) = backstop::db::DbTarget::parse(table) {
        return drill_database(endpoint, target, catalog, keep, wait, json).await;
    }
    // The validate job's settings (drill prefix, export bucket for the export of the backup's
    // moment), with this table and catalog.
    // The operator's flags configure the job (as the environment does a function's): a
    // payload could only narrow a configured selection.
    let env = Environment::from_process()
        .without(backstop::settings::ENV_TABLE_PATTERN)
        .without(backstop::settings::ENV_TABLE_TAG)
        .with(backstop::settings::ENV_TABLES, table)
        .with(backstop::settings::ENV_CATALOG_TABLE, &catalog);
    let request = JobRequest::from_payload(&serde_json::json!({}), Timestamp::now())?;
    let settings = Settings::resolve(JobKind::Validate, &env, &request)?;
    let validate = settings
        .validate()
        .ok_or_else(|| Error::Local("validate settings were not resolved".into()))?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let catalog = Catalog::new((*clients.dynamodb).clone(), settings.catalog_table.clone());
    let run_id = format!("cli-{}", Timestamp::now().as_millisecond());
    let ctx = DrillCtx {
        clients: &clients,
        catalog: &catalog,
        prefix: &settings.drill_table_prefix,
        run_id: &run_id,
        witness_exports: validate
            .witness_exports
            .as_ref()
            .map(|l| (l, validate.export_kms_key.as_deref())),
    };
    let now = Timestamp::now();
    let started = Instant::now();
    let say = |what: &str| {
        if !json {
            eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
        }
    };
    let open = match drill::due(
        drill::latest(&catalog, table).await?.as_ref(),
        now,
        SignedDuration::ZERO,
    ) {
        Due::Continue(d) => {
            say(&format!(
                "taking on the open drill of {table} (state {}, table {})",
                d.state.as_str(),
                d.drill_table
            ));
            *d
        }
        _ => match ctx.begin(table, keep, now).await? {
            Some(d) => {
                say(&format!(
                    "started: restoring {} into {}",
                    d.backup_arn, d.drill_table
                ));
                d
            }
            None => {
                return Err(Error::Local(format!(
                    "another run opened a drill of {table} just now; run again to take it on"
                )))
            }
        },
    };
    let until = now.checked_add(wait).unwrap_or(Timestamp::MAX);
    let tty = std::io::stderr().is_terminal();
    let done = ctx
        .drive(open, until, std::time::Duration::from_secs(2), |d| {
            let line = match d.state {
                DrillState::Started => "restore not yet accepted".to_owned(),
                DrillState::Active => {
                    format!("restoring into {} (waiting for ACTIVE)", d.drill_table)
                }
                DrillState::Verified => format!(
                    "verified: {} ({})",
                    d.level.map(|l| l.as_str()).unwrap_or("?"),
                    d.detail
                ),
                DrillState::Cleaned if d.keep => {
                    format!("done; {} kept for inspection (--keep)", d.drill_table)
                }
                DrillState::Cleaned => format!("cleaned: {} deleted", d.drill_table),
            };
            if tty || d.state != DrillState::Active {
                say(&line);
            }
        })
        .await?;
    Ok(finish(&done, table, json, wait))
}

/// `backstop drill --table rds:<id>` (or `aurora:`, `elasticache:`): the validate job's drill of
/// one database now: its newest complete Backstop snapshot restored into a drill database,
/// checked, measured and deleted. No `--keep`: a drill database costs by the hour, and the
/// restore commands make a database to keep.
async fn drill_database(
    endpoint: Option<&str>,
    target: backstop::db::DbTarget,
    catalog: String,
    keep: bool,
    wait: SignedDuration,
    json: bool,
) -> Result<ExitCode, Error> {
    use backstop::db::drill::DbDrillCtx;
    if keep {
        return Err(Error::Payload(format!(
            "--keep is for tables; to keep a restored copy of {target}, use backstop restore {} --snapshot … --to …",
            target.kind.prefix()
        )));
    }
    let prefix = std::env::var(backstop::settings::ENV_DRILL_TABLE_PREFIX)
        .unwrap_or_else(|_| backstop::settings::DEFAULT_DRILL_TABLE_PREFIX.to_owned());
    // The rule every job applies at settings load.
    let restore_prefix = std::env::var(backstop::settings::ENV_RESTORE_PREFIX)
        .unwrap_or_else(|_| backstop::restore::request::DEFAULT_PREFIX.to_owned());
    backstop::drill::check_table_prefix(&prefix, &catalog, &restore_prefix)?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let catalog = Catalog::new((*clients.dynamodb).clone(), catalog);
    let run_id = format!("cli-{}", Timestamp::now().as_millisecond());
    let ctx = DbDrillCtx {
        clients: &clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: &run_id,
    };
    let name = target.name();
    let now = Timestamp::now();
    let open = match drill::due(
        drill::latest(&catalog, &name).await?.as_ref(),
        now,
        SignedDuration::ZERO,
    ) {
        Due::Continue(d) => *d,
        _ => ctx.begin(&target, now).await?.ok_or_else(|| {
            Error::Local(format!(
                "another run opened a drill of {name} just now; run again to take it on"
            ))
        })?,
    };
    if !json {
        eprintln!(
            "drilling {target}: {} into {}",
            open.backup_arn, open.drill_table
        );
    }
    let until = now.checked_add(wait).unwrap_or(Timestamp::MAX);
    let done = ctx
        .drive(open, until, std::time::Duration::from_secs(15))
        .await?;
    Ok(finish(&done, &name, json, wait))
}

/// Prints a finished (or still open) drill, as JSON or one line; exit 0 only for a drill
/// that proved the backup and cleaned up.
fn finish(done: &backstop::drill::Drill, name: &str, json: bool, wait: SignedDuration) -> ExitCode {
    let report = DrillReport::of(done);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!("drill of {name}: {}", report.line());
    }
    match done.level {
        Some(DrillLevel::Proven | DrillLevel::Consistent) if done.state == DrillState::Cleaned => {
            ExitCode::SUCCESS
        }
        Some(_) => ExitCode::from(1),
        None => {
            eprintln!(
                "the restore did not finish within {wait:#}; run the same command again (or let validate) to take the drill on"
            );
            ExitCode::from(1)
        }
    }
}
