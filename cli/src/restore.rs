//! `backstop restore backup|pitr|export`: each into a new table, refused before anything is
//! created when the target exists or is protected, and ended by comparing the restored table's
//! count and fingerprint with what the source recorded.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use backstop::aws::Clients;
use backstop::catalog::{Catalog, TargetRecord};
use backstop::restore::{self, source, PitrTime, Restored};
use backstop::settings;
use backstop::Error;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};

use crate::aws_config_for;

/// Tables a restore must never write into: the catalog and the tables named for backup.
fn protected(catalog: Option<&str>, source: Option<&str>) -> Vec<String> {
    source::protected(
        std::env::var(settings::ENV_TABLES).ok().as_deref(),
        catalog,
        source,
    )
}

/// A spinner on a terminal while `what` runs; nothing otherwise.
fn spinner(json: bool, what: &str) -> Option<ProgressBar> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

fn finish(restored: &Restored, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(restored)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!("restored {}", restored.line());
        for a in &restored.settings {
            println!("  setting {}", a.line());
        }
        for n in &restored.notes {
            println!("  note: {n}");
        }
        println!("  took {:.1} s", restored.seconds);
    }
    if restored.settings_failed() && !json {
        eprintln!(
            "error: the data of {} is restored, but a setting above FAILED: set it by hand",
            restored.table
        );
    }
    match restored.matches() {
        Some(false) => ExitCode::from(1),
        _ if restored.settings_failed() => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// Waits for a restore AWS runs (backup, PITR), then reads the table back.
async fn wait_and_read(
    clients: &Clients,
    to: &str,
    wait: SignedDuration,
    json: bool,
    started: Instant,
) -> Result<Restored, Error> {
    let bar = spinner(json, &format!("restoring into {to} (waiting for ACTIVE)"));
    let until = Timestamp::now().checked_add(wait).unwrap_or(Timestamp::MAX);
    let waited =
        restore::wait_active(&clients.dynamodb, to, until, Duration::from_secs(2), |_| {}).await;
    if let Some(b) = &bar {
        b.set_message(format!("reading {to} back (count and fingerprint)"));
    }
    let read = match waited {
        Ok(()) => backstop::export::logical::fingerprint_table(&clients.dynamodb, to).await,
        Err(e) => Err(e),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(Restored {
        table: to.to_owned(),
        fingerprint: read?,
        expected: None,
        expected_count: None,
        seconds: started.elapsed().as_secs_f64(),
        notes: Vec::new(),
        settings: Vec::new(),
    })
}

pub struct BackupArgs {
    pub no_settings: bool,
    pub backup: Option<String>,
    pub table: Option<String>,
    pub slot: Option<String>,
    pub catalog: Option<String>,
    pub to: String,
    pub wait: SignedDuration,
    pub json: bool,
}

pub async fn backup(endpoint: Option<&str>, a: BackupArgs) -> Result<ExitCode, Error> {
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let started = Instant::now();
    // The backup: by ARN, or the table's record of a slot (or its newest complete one).
    let (arn, record) = source::backup(
        &clients,
        a.catalog.as_deref(),
        a.backup.as_deref(),
        a.table.as_deref(),
        a.slot.as_deref(),
    )
    .await?;
    restore::check_target(
        &clients.dynamodb,
        &a.to,
        &protected(a.catalog.as_deref(), a.table.as_deref()),
    )
    .await?;
    restore::start_from_backup(&clients.dynamodb, &arn, &a.to).await?;
    if !a.json {
        eprintln!("restoring backup {arn} into {}", a.to);
    }
    let mut restored = wait_and_read(&clients, &a.to, a.wait, a.json, started).await?;
    restored.expected_count = record
        .as_ref()
        .and_then(|r: &TargetRecord| r.item_count)
        .and_then(|c| u64::try_from(c).ok());
    if restored.expected_count.is_some() {
        restored.notes.push(
            "the count compared is the backup's as DynamoDB reported it at backup time".into(),
        );
    }
    if !a.no_settings {
        let source = a
            .table
            .clone()
            .or_else(|| source::table_of_backup_arn(&arn));
        restored
            .reapply_settings(
                &clients.dynamodb,
                record.as_ref().and_then(|r| r.table_settings.as_ref()),
                source.as_deref(),
            )
            .await;
    }
    Ok(finish(&restored, a.json))
}

pub struct PitrArgs {
    pub no_settings: bool,
    pub table: String,
    pub to: String,
    pub time: Option<String>,
    pub hours_ago: Option<f64>,
    pub latest: bool,
    pub wait: SignedDuration,
    pub json: bool,
}

pub async fn pitr(endpoint: Option<&str>, a: PitrArgs) -> Result<ExitCode, Error> {
    let time = source::pitr_time(a.time.as_deref(), a.hours_ago, a.latest, Timestamp::now())?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let started = Instant::now();
    restore::check_target(&clients.dynamodb, &a.to, &protected(None, Some(&a.table))).await?;
    let asked = restore::start_from_pitr(&clients.dynamodb, &a.table, &a.to, time).await?;
    if !a.json {
        match asked {
            PitrTime::Latest => eprintln!(
                "restoring {} at its latest restorable time into {}",
                a.table, a.to
            ),
            PitrTime::At(t) => eprintln!("restoring {} as of {t} into {}", a.table, a.to),
        }
    }
    let mut restored = wait_and_read(&clients, &a.to, a.wait, a.json, started).await?;
    if !a.no_settings {
        restored
            .reapply_settings(&clients.dynamodb, None, Some(&a.table))
            .await;
    }
    Ok(finish(&restored, a.json))
}

pub struct ExportArgs {
    pub no_settings: bool,
    pub export: Option<String>,
    pub table: Option<String>,
    pub slot: Option<String>,
    pub catalog: String,
    pub to: String,
    pub until: Option<String>,
    pub via: restore::Via,
    pub parallel: usize,
    pub json: bool,
}

/// `restore export --table T --until TIME`: the native chain to the newest link by then.
async fn export_chain(clients: &Clients, a: &ExportArgs, until: &str) -> Result<ExitCode, Error> {
    let until: Timestamp = until.parse().map_err(|e| {
        Error::Payload(format!(
            "--until {until:?} is not an RFC 3339 time such as 2026-11-20T03:00:00Z: {e}"
        ))
    })?;
    let Some(table) = a.table.as_deref() else {
        return Err(Error::Payload("--until needs --table".into()));
    };
    let catalog = Catalog::new((*clients.dynamodb).clone(), a.catalog.clone());
    let (links, restored_to) = source::chain(clients, &catalog, table, until).await?;
    restore::check_target(
        &clients.dynamodb,
        &a.to,
        &protected(Some(&a.catalog), Some(table)),
    )
    .await?;
    if !a.json {
        eprintln!(
            "restoring {table}'s native chain ({} links, up to {restored_to}) into {}",
            links.len(),
            a.to
        );
    }
    let mut restored =
        restore::restore_chain(clients, &links, restored_to, &a.to, a.parallel, |_| {}).await?;
    restored
        .notes
        .extend(source::chain_short_note(restored_to, until));
    if !a.no_settings {
        restored
            .reapply_settings(&clients.dynamodb, None, Some(table))
            .await;
    }
    Ok(finish(&restored, a.json))
}

pub async fn export(endpoint: Option<&str>, a: ExportArgs) -> Result<ExitCode, Error> {
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    if let Some(until) = a.until.clone() {
        return export_chain(&clients, &a, &until).await;
    }
    let catalog = Catalog::new((*clients.dynamodb).clone(), a.catalog.clone());
    if a.export.is_none() && a.table.is_none() {
        return Err(Error::Payload(
            "give --export ID, or --table T with --slot S or --latest".into(),
        ));
    }
    let (record, meta, source) = source::export(
        &clients,
        &catalog,
        a.export.as_deref(),
        a.table.as_deref(),
        a.slot.as_deref(),
    )
    .await?;
    restore::check_target(
        &clients.dynamodb,
        &a.to,
        &protected(Some(&a.catalog), Some(&record.table)),
    )
    .await?;
    if !a.json {
        eprintln!(
            "{} the {} export of {} at {} ({}) into {}",
            match a.via {
                restore::Via::Load => "loading",
                restore::Via::Import => "importing",
            },
            meta.made.name(),
            record.table,
            record.slot,
            meta.uri(),
            a.to
        );
    }
    let bar = if !a.json && std::io::stderr().is_terminal() {
        let bar = match meta.item_count {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed} [{bar:30}] {pos}/{len} items written ({per_sec})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let b = bar.clone();
    let restored = restore::restore_export(&clients, &source, &a.to, a.via, a.parallel, move |n| {
        if let Some(b) = &b {
            b.set_position(n);
        }
    })
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut restored = restored?;
    if !a.no_settings {
        // The settings of the newest backup at or before the export's slot.
        let recorded = source::settings_before(&catalog, &record.table, &record.slot).await?;
        restored
            .reapply_settings(&clients.dynamodb, recorded.as_ref(), Some(&record.table))
            .await;
    }
    Ok(finish(&restored, a.json))
}

/// The AUTH token in `path` (surrounding white space dropped), checked against ElastiCache's
/// rules so that a bad one is refused before anything is made. The token is never printed.
pub fn read_auth_token(path: &std::path::Path) -> Result<backstop::db::rds::Secret, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Payload(format!(
            "--auth-token-file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    let bad = |why: &str| {
        Error::Payload(format!(
            "--auth-token-file {}: the token {why} (ElastiCache takes 16 to 128 printable ASCII characters, not @, \" or /)",
            path.display()
        ))
    };
    if token.len() < 16 || token.len() > 128 {
        return Err(bad(&format!(
            "is {} characters long",
            token.chars().count()
        )));
    }
    if !token
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '@' | '"' | '/'))
    {
        return Err(bad("holds a character ElastiCache refuses"));
    }
    Ok(backstop::db::rds::Secret::new(token.to_owned()))
}

pub struct RdsArgs {
    pub kind: backstop::db::DbKind,
    pub snapshot: Option<String>,
    /// The instance or cluster whose automated backups to restore from.
    pub source: Option<String>,
    pub time: Option<String>,
    pub latest: bool,
    pub to: String,
    pub shape: backstop::db::rds::RestoreShape,
    pub wait: SignedDuration,
    pub catalog: Option<String>,
    pub json: bool,
}

/// `restore rds`, `restore aurora` and `restore elasticache`: a new instance, cluster or
/// replication group from a snapshot (or a point in time for RDS and Aurora), shaped like the
/// source.
pub async fn rds(endpoint: Option<&str>, a: RdsArgs) -> Result<ExitCode, Error> {
    use backstop::db::restore::{self as dbr, DbRestored, From};
    use backstop::db::{DbKind, DbTarget};
    let from = match (&a.snapshot, &a.source) {
        (Some(s), _) => From::Snapshot(a.kind, s.clone()),
        (None, Some(i)) => {
            let time = match (&a.time, a.latest) {
                (Some(t), _) => Some(t.parse::<Timestamp>().map_err(|e| {
                    Error::Payload(format!(
                        "--time {t:?} is not an RFC 3339 time such as 2026-11-20T03:00:00Z: {e}"
                    ))
                })?),
                (None, true) => None,
                (None, false) => {
                    return Err(Error::Payload(
                        "a point-in-time restore needs --time or --latest".into(),
                    ))
                }
            };
            From::PointInTime {
                source: DbTarget {
                    kind: a.kind,
                    id: i.clone(),
                },
                time,
            }
        }
        (None, None) => return Err(Error::Payload("give --snapshot, or the source".into())),
    };
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let started = Instant::now();
    dbr::check_target(&clients, &from, &a.to).await?;
    let catalog = a
        .catalog
        .as_ref()
        .map(|c| Catalog::new((*clients.dynamodb).clone(), c.clone()));
    let mut notes = Vec::new();
    let facts = dbr::source_facts(&clients, catalog.as_ref(), &from, &mut notes).await?;
    let shape = backstop::db::rds::RestoreShape::from_source(&facts.unwrap_or_default(), &a.shape);
    dbr::start(&clients, &from, &a.to, &shape).await?;
    let what = match &from {
        From::Snapshot(_, s) => format!("snapshot {s}"),
        From::PointInTime {
            source,
            time: Some(t),
        } => format!("{} as of {t}", source.id),
        From::PointInTime { source, time: None } => {
            format!("{} at its latest restorable time", source.id)
        }
    };
    let target = DbTarget {
        kind: a.kind,
        id: a.to.clone(),
    };
    if !a.json {
        eprintln!("restoring {what} into {target}");
    }
    let bar = spinner(a.json, &format!("waiting for {} to become available", a.to));
    let until = Timestamp::now()
        .checked_add(a.wait)
        .unwrap_or(Timestamp::MAX);
    let waited = dbr::wait_available(&clients, &target, until, Duration::from_secs(15)).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let f = waited?;
    if a.kind == DbKind::AuroraCluster {
        notes.push(format!(
            "a cluster restored from a snapshot or a point in time has no instances: add one to connect (aws rds create-db-instance --db-cluster-identifier {} --db-instance-identifier {}-1 --engine {} --db-instance-class <class>)",
            a.to,
            a.to,
            f.engine.as_deref().unwrap_or("<engine>")
        ));
    }
    let restored = DbRestored {
        instance: target.name(),
        from: what,
        status: f.status.clone().unwrap_or_default(),
        engine: f.engine.clone(),
        engine_version: f.engine_version.clone(),
        allocated_storage: f.allocated_storage,
        endpoint: f.endpoint.clone(),
        seconds: started.elapsed().as_secs_f64(),
        notes,
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&restored)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!("restored {}", restored.line());
        for n in &restored.notes {
            println!("  note: {n}");
        }
        println!("  took {:.1} s", restored.seconds);
    }
    Ok(ExitCode::SUCCESS)
}
