//! `backstop restore backup|pitr|export`: each into a new table, refused before anything is
//! created when the target exists or is protected, and ended by comparing the restored table's
//! count and fingerprint with what the source recorded.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use backstop::aws::Clients;
use backstop::catalog::{Catalog, TargetRecord, TargetStatus};
use backstop::export::{self, manifest::BackstopManifest, Made};
use backstop::restore::{self, ExportSource, PitrTime, Restored};
use backstop::settings::{self, JobKind};
use backstop::Error;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};

use crate::aws_config_for;

/// Tables a restore must never write into: the catalog and the tables named for backup.
fn protected(catalog: Option<&str>, source: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = std::env::var(settings::ENV_TABLES)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    names.extend(catalog.map(str::to_owned));
    names.extend(source.map(str::to_owned));
    names
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

/// The source table's name in a backup ARN (`arn:…:table/<name>/backup/<id>`).
fn table_of_backup_arn(arn: &str) -> Option<String> {
    let rest = arn.split_once(":table/")?.1;
    rest.split_once("/backup/").map(|(t, _)| t.to_owned())
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

fn need_catalog(catalog: Option<String>) -> Result<String, Error> {
    catalog.ok_or_else(|| {
        Error::setting(
            settings::ENV_CATALOG_TABLE,
            "--table needs the catalog: give --catalog or set BACKSTOP_CATALOG_TABLE",
        )
    })
}

pub async fn backup(endpoint: Option<&str>, a: BackupArgs) -> Result<ExitCode, Error> {
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let started = Instant::now();
    // The backup: by ARN, or the table's record of a slot (or its newest complete one).
    let (arn, record) = match (&a.backup, &a.table) {
        (Some(arn), _) => {
            // The catalog's record of this backup, when there is one: its count and settings.
            let record = match (&a.catalog, table_of_backup_arn(arn)) {
                (Some(c), Some(t)) => Catalog::new(clients.dynamodb.clone(), c.clone())
                    .list_targets(JobKind::Snapshot, Some(&t))
                    .await
                    .ok()
                    .and_then(|rs| {
                        rs.into_iter()
                            .find(|r| r.backup_arn.as_deref() == Some(arn.as_str()))
                    }),
                _ => None,
            };
            (arn.clone(), record)
        }
        (None, Some(table)) => {
            let catalog = Catalog::new(clients.dynamodb.clone(), need_catalog(a.catalog.clone())?);
            let records = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
            let found = match &a.slot {
                Some(slot) => records
                    .iter()
                    .find(|r| &r.slot == slot && r.status == TargetStatus::Done),
                None => backstop::drill::newest_backup(&records),
            };
            let r = found.cloned().ok_or_else(|| {
                Error::refused(
                    "restore backup",
                    format!(
                        "catalog {} records no complete backup of {table}{}",
                        catalog.table_name(),
                        a.slot
                            .as_deref()
                            .map(|s| format!(" at slot {s}"))
                            .unwrap_or_default()
                    ),
                    "list them with `backstop backups list --table T`",
                )
            })?;
            let arn = r.backup_arn.clone().ok_or_else(|| {
                Error::refused(
                    "restore backup",
                    format!("the record of {table} at {} holds no backup ARN", r.slot),
                    "restore by --backup ARN",
                )
            })?;
            (arn, Some(r))
        }
        (None, None) => {
            return Err(Error::Payload(
                "give --backup ARN, or --table T with --slot S or --latest".into(),
            ))
        }
    };
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
        let source = a.table.clone().or_else(|| table_of_backup_arn(&arn));
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

/// Pure: the point in time the arguments ask for.
pub fn pitr_time(
    time: Option<&str>,
    hours_ago: Option<f64>,
    latest: bool,
    now: Timestamp,
) -> Result<PitrTime, Error> {
    match (time, hours_ago, latest) {
        (Some(t), None, false) => t.parse::<Timestamp>().map(PitrTime::At).map_err(|e| {
            Error::Payload(format!(
                "--time {t:?} is not an RFC 3339 time such as 2026-11-20T03:00:00Z: {e}"
            ))
        }),
        (None, Some(h), false) if h.is_finite() && (0.0..24.0 * 366.0).contains(&h) => {
            let back = SignedDuration::from_secs_f64(h * 3600.0);
            Ok(PitrTime::At(now.checked_sub(back).map_err(|e| {
                Error::Payload(format!("--hours-ago {h}: {e}"))
            })?))
        }
        (None, Some(h), false) => Err(Error::Payload(format!(
            "--hours-ago {h} is not a number of hours between 0 and 8784"
        ))),
        (None, None, true) => Ok(PitrTime::Latest),
        _ => Err(Error::Payload(
            "give exactly one of --time, --hours-ago and --latest".into(),
        )),
    }
}

pub async fn pitr(endpoint: Option<&str>, a: PitrArgs) -> Result<ExitCode, Error> {
    let time = pitr_time(a.time.as_deref(), a.hours_ago, a.latest, Timestamp::now())?;
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

/// The export the arguments name, from the catalog: by id, by table and slot, or the table's
/// newest finished full export.
fn pick_export<'a>(
    records: &'a [TargetRecord],
    export_id: Option<&str>,
    slot: Option<&str>,
) -> Option<&'a TargetRecord> {
    let done = records.iter().filter(|r| {
        r.status == TargetStatus::Done
            && r.export
                .as_ref()
                .is_some_and(|m| m.export_type == export::ExportType::FullExport)
    });
    match (export_id, slot) {
        (Some(id), _) => records.iter().find(|r| {
            r.status == TargetStatus::Done
                && r.export
                    .as_ref()
                    .is_some_and(|m| m.export_id == id || m.export_arn.as_deref() == Some(id))
        }),
        (None, Some(s)) => records
            .iter()
            .find(|r| r.slot == s && r.status == TargetStatus::Done),
        (None, None) => done.max_by(|a, b| a.slot.cmp(&b.slot)),
    }
}

/// A native export's key schema (AWS's manifests do not carry it): the table's at its newest
/// backup, else the table's as it is now.
async fn native_schema(
    clients: &Clients,
    catalog: &Catalog,
    table: &str,
) -> Result<serde_json::Value, Error> {
    let snapshots = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
    if let Some(shape) =
        backstop::drill::newest_backup(&snapshots).and_then(|r| r.table_shape.clone())
    {
        return Ok(shape);
    }
    let d = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeTable", format!("table {table}"), e))?;
    Ok(d.table
        .as_ref()
        .map(backstop::export::logical::schema_of)
        .unwrap_or_default())
}

/// Where a native export is read from: its manifest as finalized, the table's key schema, and
/// the fingerprint its first verification recorded.
fn native_source(
    record: &TargetRecord,
    meta: &export::ExportMeta,
    schema: serde_json::Value,
) -> Result<ExportSource, Error> {
    let summary_key = meta.manifest_key.clone().ok_or_else(|| {
        Error::refused(
            "restore export",
            format!(
                "the native export at {} has no manifest recorded yet",
                meta.uri()
            ),
            "let validate finalize it, then restore",
        )
    })?;
    Ok(ExportSource {
        bucket: meta.bucket.clone(),
        summary_key,
        schema,
        fingerprint: record
            .verification
            .as_ref()
            .and_then(|v| v.fingerprint)
            .or(meta.fingerprint),
    })
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
    let catalog = Catalog::new(clients.dynamodb.clone(), a.catalog.clone());
    let records = catalog.list_targets(JobKind::Export, Some(table)).await?;
    let chain = export::native::chain_until(&records, until).map_err(|why| {
        Error::refused(
            "restore export",
            format!(
                "catalog {} holds no whole chain of {table}: {why}",
                catalog.table_name()
            ),
            "restore from a full export (--latest) or a backup",
        )
    })?;
    let schema = native_schema(clients, &catalog, table).await?;
    let mut links = Vec::with_capacity(chain.len());
    for r in &chain {
        let Some(meta) = &r.export else { continue };
        links.push(native_source(r, meta, schema.clone())?);
    }
    restore::check_target(
        &clients.dynamodb,
        &a.to,
        &protected(Some(&a.catalog), Some(table)),
    )
    .await?;
    if !a.json {
        let last = chain.last().map(|r| r.slot.as_str()).unwrap_or_default();
        eprintln!(
            "restoring {table}'s native chain ({} links, up to slot {last}) into {}",
            chain.len(),
            a.to
        );
    }
    let Some(restored_to) = chain
        .last()
        .and_then(|r| r.export.as_ref())
        .map(|m| m.export_time)
    else {
        return Err(Error::refused(
            "restore export",
            format!("the chain of {table} has no links"),
            "",
        ));
    };
    let mut restored =
        restore::restore_chain(clients, &links, restored_to, &a.to, a.parallel, |_| {}).await?;
    if restored_to < until {
        restored.notes.push(format!(
            "that is {} before --until {until}: no finished link is newer",
            (until - restored_to)
                .round(
                    jiff::SpanRound::new()
                        .largest(jiff::Unit::Hour)
                        .smallest(jiff::Unit::Minute)
                )
                .map(|s| format!("{s:#}"))
                .unwrap_or_else(|_| "some time".into())
        ));
    }
    if !a.no_settings {
        restored
            .reapply_settings(&clients.dynamodb, None, Some(table))
            .await;
    }
    Ok(finish(&restored, a.json))
}

/// The export the catalog records by id, or by table and slot, or a table's newest finished
/// full export: its record and where to read it.
pub async fn export_source(
    clients: &Clients,
    catalog: &Catalog,
    export_id: Option<&str>,
    table: Option<&str>,
    slot: Option<&str>,
) -> Result<(TargetRecord, export::ExportMeta, ExportSource), Error> {
    let records = catalog.list_targets(JobKind::Export, table).await?;
    let record = pick_export(&records, export_id, slot).ok_or_else(|| {
        Error::refused(
            "restore export",
            format!(
                "catalog {} records no finished export{}{}{}",
                catalog.table_name(),
                export_id
                    .map(|e| format!(" with id {e}"))
                    .unwrap_or_default(),
                table.map(|t| format!(" of {t}")).unwrap_or_default(),
                slot.map(|s| format!(" at slot {s}")).unwrap_or_default(),
            ),
            "list them with `backstop exports list`",
        )
    })?;
    let meta = record.export.clone().ok_or_else(|| {
        Error::refused(
            "restore export",
            format!(
                "the record of {} at {} holds no export",
                record.table, record.slot
            ),
            "",
        )
    })?;
    let source = match meta.made {
        Made::Logical => {
            let key = export::backstop_manifest_key(&meta.root);
            let bytes = export::s3io::get(&clients.s3, &meta.bucket, &key)
                .await?
                .ok_or_else(|| {
                    Error::refused(
                        "restore export",
                        format!("s3://{}/{key} is missing", meta.bucket),
                        "the export is incomplete; restore from another",
                    )
                })?;
            let m: BackstopManifest = serde_json::from_slice(&bytes).map_err(|e| {
                Error::refused(
                    "restore export",
                    format!("s3://{}/{key} is not a Backstop manifest: {e}", meta.bucket),
                    "restore from another export",
                )
            })?;
            // The manifest lives beside the data, so whoever can rewrite the one can rewrite
            // the other: the catalog's record (written when the export finished) is what the
            // data is checked against, and the summary must be this export's own.
            if !m
                .manifest_summary_key
                .starts_with(&format!("{}/", meta.root))
            {
                return Err(Error::refused(
                    "restore export",
                    format!(
                        "s3://{}/{key} points at {}, outside the export's own prefix {}/",
                        meta.bucket, m.manifest_summary_key, meta.root
                    ),
                    "the export's manifest was changed; restore from another export",
                ));
            }
            let mut source = ExportSource::from_manifest(&meta.bucket, &m);
            if meta.fingerprint.is_some() {
                source.fingerprint = meta.fingerprint;
            }
            source
        }
        Made::Native => {
            let schema = native_schema(clients, catalog, &record.table).await?;
            native_source(record, &meta, schema)?
        }
    };
    Ok((record.clone(), meta, source))
}

pub async fn export(endpoint: Option<&str>, a: ExportArgs) -> Result<ExitCode, Error> {
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    if let Some(until) = a.until.clone() {
        return export_chain(&clients, &a, &until).await;
    }
    let catalog = Catalog::new(clients.dynamodb.clone(), a.catalog.clone());
    if a.export.is_none() && a.table.is_none() {
        return Err(Error::Payload(
            "give --export ID, or --table T with --slot S or --latest".into(),
        ));
    }
    let (record, meta, source) = export_source(
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
        let snapshots = catalog
            .list_targets(JobKind::Snapshot, Some(&record.table))
            .await?;
        let recorded = snapshots
            .iter()
            .filter(|r| r.status == TargetStatus::Done && r.slot <= record.slot)
            .filter(|r| r.table_settings.is_some())
            .max_by(|x, y| x.slot.cmp(&y.slot))
            .and_then(|r| r.table_settings.as_ref());
        restored
            .reapply_settings(&clients.dynamodb, recorded, Some(&record.table))
            .await;
    }
    Ok(finish(&restored, a.json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_arn_names_its_table() {
        assert_eq!(
            table_of_backup_arn(
                "arn:aws:dynamodb:us-east-1:123456789012:table/Sales/backup/01700000000000-deadbeef"
            )
            .as_deref(),
            Some("Sales")
        );
        assert_eq!(table_of_backup_arn("nonsense"), None);
    }

    #[test]
    fn pitr_time_takes_exactly_one_way_of_saying_when() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            pitr_time(None, Some(2.5), false, now).unwrap(),
            PitrTime::At("2026-12-01T09:30:00Z".parse().unwrap())
        );
        assert_eq!(pitr_time(None, None, true, now).unwrap(), PitrTime::Latest);
        assert_eq!(
            pitr_time(Some("2026-11-20T03:00:00Z"), None, false, now).unwrap(),
            PitrTime::At("2026-11-20T03:00:00Z".parse().unwrap())
        );
        for (t, h, l) in [
            (None, None, false),
            (Some("2026-11-20T03:00:00Z"), None, true),
            (Some("yesterday"), None, false),
            (None, Some(-1.0), false),
            (None, Some(f64::NAN), false),
        ] {
            assert!(pitr_time(t, h, l, now).is_err(), "{t:?} {h:?} {l}");
        }
    }
}
