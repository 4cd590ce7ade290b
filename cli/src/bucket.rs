//! `backstop bucket backup|list|prune` and `backstop restore bucket|object`: bucket backups with
//! settings from BACKSTOP_BUCKET_* (see `backstop --help`).

use std::io::IsTerminal;
use std::process::ExitCode;

use backstop::aws::Clients;
use backstop::bucket::backup::{self, BackupOutcome};
use backstop::bucket::restore::{self, ObjectSource};
use backstop::bucket::{check_bucket_name, prune};
use backstop::catalog::Catalog;
use backstop::event::ScheduleSlot;
use backstop::settings::{BucketSettings, Environment};
use backstop::Error;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;

use crate::aws_config_for;

async fn setup(endpoint: Option<&str>) -> Result<(Clients, BucketSettings), Error> {
    let settings = BucketSettings::resolve(&Environment::from_process())?;
    let config = aws_config_for(endpoint).await;
    Ok((Clients::from_config(&config), settings))
}

fn bucket_arg(name: &str) -> Result<(), Error> {
    check_bucket_name(name).map_err(|rule| Error::setting("--bucket", rule))
}

fn slot_arg(slot: Option<&str>) -> Result<ScheduleSlot, Error> {
    match slot {
        Some(s) => ScheduleSlot::parse(s).map_err(|rule| Error::setting("--slot", rule)),
        None => Ok(ScheduleSlot::new(Timestamp::now())),
    }
}

fn catalog_of(clients: &Clients, catalog: Option<String>) -> Result<Catalog, Error> {
    let table = catalog.ok_or_else(|| {
        Error::setting(
            backstop::settings::ENV_CATALOG_TABLE,
            "required: the bucket lock lives in the catalog",
        )
    })?;
    Ok(Catalog::new((*clients.dynamodb).clone(), table))
}

fn print_json<T: serde::Serialize + ?Sized>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    );
}

/// Backs up the named buckets (default: BACKSTOP_BUCKETS) for one slot.
pub async fn backup(
    endpoint: Option<&str>,
    buckets: Vec<String>,
    slot: Option<&str>,
    catalog: Option<String>,
    json: bool,
) -> Result<ExitCode, Error> {
    let (clients, settings) = setup(endpoint).await?;
    let buckets = if buckets.is_empty() {
        settings.buckets.clone()
    } else {
        buckets
    };
    if buckets.is_empty() {
        return Err(Error::setting(
            backstop::settings::ENV_BUCKETS,
            "no bucket to back up: pass --bucket or set BACKSTOP_BUCKETS",
        ));
    }
    for b in &buckets {
        bucket_arg(b)?;
        if *b == settings.backup_bucket {
            return Err(Error::setting(
                "--bucket",
                format!("{b} is the backup bucket itself"),
            ));
        }
    }
    let slot = slot_arg(slot)?;
    let catalog = catalog_of(&clients, catalog)?;
    let store = settings.store();
    let mut code = ExitCode::SUCCESS;
    let mut outcomes = Vec::new();
    for b in &buckets {
        let outcome = backup::backup(
            &clients.s3,
            &catalog,
            &store,
            b,
            &slot,
            &settings.options,
            None,
            None,
        )
        .await;
        match &outcome {
            Ok(BackupOutcome::Done { summary, already }) => {
                if !json {
                    println!(
                        "bucket {b} slot {slot}: {} objects, {} bytes; copied {} ({} bytes), referenced {}{}",
                        summary.objects,
                        summary.bytes,
                        summary.copied,
                        summary.copied_bytes,
                        summary.referenced,
                        if *already { " (already done for this slot)" } else { "" }
                    );
                    println!("  manifest {}", store.url(&store.manifest_key(b, &slot)));
                    println!("  fingerprint {}", summary.fingerprint);
                    for w in &summary.warnings {
                        println!("  warning: {w}");
                    }
                }
            }
            Ok(BackupOutcome::Continues { progress }) => {
                if !json {
                    println!(
                        "bucket {b} slot {slot}: under way, {} objects in {} parts so far; run again to go on",
                        progress.objects, progress.parts
                    );
                }
            }
            Ok(BackupOutcome::Held {
                holder,
                doing,
                until,
            }) => {
                code = ExitCode::from(1);
                if !json {
                    println!(
                        "bucket {b} slot {slot}: not started, {holder} holds the bucket's lock ({doing}) until {until}; try again later"
                    );
                }
            }
            Err(e) => {
                code = ExitCode::from(1);
                eprintln!("error: bucket {b} slot {slot}: {e}");
            }
        }
        outcomes.push(serde_json::json!({
            "bucket": b,
            "slot": slot.to_string(),
            "outcome": match &outcome {
                Ok(o) => serde_json::to_value(o).unwrap_or_default(),
                Err(e) => serde_json::json!({"state": "failed", "error": e.to_string()}),
            },
        }));
    }
    if json {
        print_json(&outcomes);
    }
    Ok(code)
}

/// The slots of one bucket's backups.
pub async fn list(endpoint: Option<&str>, bucket: &str, json: bool) -> Result<ExitCode, Error> {
    bucket_arg(bucket)?;
    let (clients, settings) = setup(endpoint).await?;
    let store = settings.store();
    let slots = prune::list_slots(&clients.s3, &store, bucket).await?;
    let mut rows = Vec::new();
    for (slot, complete) in slots {
        let summary = if complete {
            backup::read_summary(&clients.s3, &store, bucket, &slot).await?
        } else {
            None
        };
        rows.push((slot, complete, summary));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(slot, complete, summary)| {
                serde_json::json!({"slot": slot.to_string(), "complete": complete, "summary": summary})
            })
            .collect();
        print_json(&v);
    } else {
        println!(
            "{:<22} {:<11} {:>9} {:>14} {:>8}",
            "SLOT", "STATE", "OBJECTS", "BYTES", "COPIED"
        );
        for (slot, _, summary) in &rows {
            match summary {
                Some(s) => println!(
                    "{:<22} {:<11} {:>9} {:>14} {:>8}",
                    slot.to_string(),
                    "complete",
                    s.objects,
                    s.bytes,
                    s.copied
                ),
                None => println!("{:<22} {:<11}", slot.to_string(), "unfinished"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Retention for one bucket's backups.
pub async fn prune_bucket(
    endpoint: Option<&str>,
    bucket: &str,
    catalog: Option<String>,
    now: Option<&str>,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode, Error> {
    bucket_arg(bucket)?;
    let (clients, settings) = setup(endpoint).await?;
    let catalog = catalog_of(&clients, catalog)?;
    let policy = settings
        .policy
        .compile()
        .map_err(|rule| Error::setting(backstop::settings::ENV_BUCKET_RETENTION_POLICY, rule))?;
    let now = match now {
        Some(t) => t
            .parse::<Timestamp>()
            .map_err(|e| Error::setting("--now", format!("{t:?} is not an RFC 3339 time ({e})")))?,
        None => Timestamp::now(),
    };
    let report = prune::prune(
        &clients.s3,
        &catalog,
        &settings.store(),
        bucket,
        &policy,
        now,
        dry_run,
        prune::Role::Original,
    )
    .await?;
    if json {
        print_json(&report);
    } else {
        let verb = if dry_run { "would delete" } else { "deleted" };
        for p in &report.plan.points {
            let decision = match &p.decision {
                backstop::retention::Decision::Keep { reasons } => format!(
                    "keep ({})",
                    reasons
                        .iter()
                        .map(|r| r.rule.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                backstop::retention::Decision::Delete { reason } => format!("delete: {reason}"),
            };
            println!("  slot {}  {decision}", p.point.id);
        }
        println!(
            "bucket {bucket}: {verb} {} slots; {} stored objects referenced by the slots kept; {verb} {} unreferenced objects ({} bytes)",
            report.deleted_slots.len(),
            report.referenced,
            report.swept,
            report.swept_bytes
        );
        if let Some(b) = &report.blocked {
            println!("  nothing swept: {b}");
        }
    }
    Ok(if report.blocked.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn bar(json: bool) -> Option<ProgressBar> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} objects {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

pub struct BucketRestoreArgs {
    pub bucket: String,
    pub slot: String,
    pub to: String,
    pub prefix: Option<String>,
    pub overwrite: bool,
    pub dry_run: bool,
    pub json: bool,
}

pub async fn restore_bucket(
    endpoint: Option<&str>,
    a: BucketRestoreArgs,
) -> Result<ExitCode, Error> {
    bucket_arg(&a.bucket)?;
    check_bucket_name(&a.to).map_err(|rule| Error::setting("--to", rule))?;
    let (clients, settings) = setup(endpoint).await?;
    if a.to == settings.backup_bucket {
        return Err(Error::setting(
            "--to",
            "the backup bucket itself cannot be a restore target",
        ));
    }
    let slot = slot_arg(Some(&a.slot))?;
    let progress = bar(a.json);
    let report = restore::restore_bucket(
        &clients.s3,
        &settings.store(),
        &a.bucket,
        &slot,
        &a.to,
        a.prefix.as_deref(),
        a.overwrite,
        a.dry_run,
        &settings.copy_options(),
        &|done, total| {
            if let Some(b) = &progress {
                b.set_length(total);
                b.set_position(done);
            }
        },
    )
    .await;
    if let Some(b) = &progress {
        b.finish_and_clear();
    }
    let report = report?;
    if a.json {
        print_json(&report);
    } else if a.dry_run {
        println!(
            "would restore {} objects ({} bytes) of bucket {} slot {slot} into {}{}",
            report.objects,
            report.bytes,
            a.bucket,
            a.to,
            if report.overwritten > 0 {
                format!(", replacing {}", report.overwritten)
            } else {
                String::new()
            }
        );
    } else {
        println!(
            "restored {} objects ({} bytes) of bucket {} slot {slot} into {}; each read back and matching the backup ({} replaced)",
            report.objects, report.bytes, a.bucket, a.to, report.overwritten
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub struct ObjectRestoreArgs {
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
    pub slot: Option<String>,
    pub to: Option<String>,
    pub overwrite: bool,
    pub dry_run: bool,
    pub json: bool,
}

pub async fn restore_object(
    endpoint: Option<&str>,
    a: ObjectRestoreArgs,
) -> Result<ExitCode, Error> {
    bucket_arg(&a.bucket)?;
    let from = match (&a.version, &a.slot) {
        (Some(v), None) => ObjectSource::Version(v.clone()),
        (None, Some(s)) => ObjectSource::Slot(slot_arg(Some(s))?),
        _ => return Err(Error::setting("--version/--slot", "give exactly one")),
    };
    let env = Environment::from_process();
    let config = aws_config_for(endpoint).await;
    let clients = Clients::from_config(&config);
    // A version restore needs no backup settings; a slot restore does.
    let settings = match &from {
        ObjectSource::Slot(_) => Some(BucketSettings::resolve(&env)?),
        ObjectSource::Version(_) => BucketSettings::resolve(&env).ok(),
    };
    let store = settings.as_ref().map(BucketSettings::store);
    let opts = settings
        .as_ref()
        .map(BucketSettings::copy_options)
        .unwrap_or(restore::CopyOptions {
            multipart_threshold: backstop::bucket::s3::MAX_SINGLE_COPY,
            part_size: 512 * 1024 * 1024,
            parallel: 1,
        });
    let report = restore::restore_object(
        &clients.s3,
        store.as_ref(),
        &a.bucket,
        &a.key,
        &from,
        a.to.as_deref(),
        a.overwrite,
        a.dry_run,
        &opts,
    )
    .await?;
    if a.json {
        print_json(&report);
    } else {
        println!(
            "{} s3://{}/{} from {} of {:?} ({} bytes){}",
            if a.dry_run {
                "would restore"
            } else {
                "restored"
            },
            report.bucket,
            report.to,
            report.from,
            report.key,
            report.size,
            match (report.replaced_current, report.versioned) {
                (true, true) => "; the object that was current stays as a noncurrent version",
                (true, false) => "; replaced the object that was there (--overwrite)",
                _ => "",
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Replicates one slot of one bucket's backups.
pub async fn replicate(
    endpoint: Option<&str>,
    bucket: &str,
    slot: &str,
    json: bool,
) -> Result<ExitCode, Error> {
    bucket_arg(bucket)?;
    let (clients, settings) = setup(endpoint).await?;
    let (Some(replica_settings), Some(replica_store)) =
        (settings.replica.clone(), settings.replica_store())
    else {
        return Err(Error::setting(
            backstop::settings::ENV_REPLICA_BUCKET,
            "required: the bucket that receives the replicas",
        ));
    };
    let slot = slot_arg(Some(slot))?;
    let mut config = aws_config_for(endpoint).await.into_builder();
    if let Some(region) = &replica_settings.region {
        config = config.region(aws_config::Region::new(region.clone()));
    }
    let replica = backstop::bucket::replica::Replica {
        s3: (*Clients::from_config(&config.build()).s3).clone(),
        store: replica_store,
    };
    let report = backstop::bucket::replica::replicate_slot(
        &clients.s3,
        &settings.store(),
        &replica,
        bucket,
        &slot,
        settings.options.parallel,
        settings.options.multipart_threshold,
        settings.options.part_size,
    )
    .await?;
    if json {
        print_json(&report);
    } else {
        println!(
            "bucket {bucket} slot {slot}: replica {} {}; copied {} objects ({} bytes); fingerprint {} matches; {:.0} s behind the original",
            report.replica,
            if report.already { "was complete already" } else { "complete" },
            report.copied,
            report.copied_bytes,
            report.fingerprint,
            report.lag_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
