//! `backstop demo` and `backstop local up`: bring up moto and the stack, then run the daily cycle
//! on it or leave it running for another shell.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use backstop::aws::{emulator_config, Clients};
use backstop::event::{JobRequest, ScheduleSlot};
use backstop::jobs::{retention, snapshot};
use backstop::notify::{METRIC_DURATION, METRIC_FAILURE, METRIC_SIZE, METRIC_SUCCESS};
use backstop::settings::{self, Environment, JobKind, Settings};
use backstop::Error;
use backstop_testkit::local::{self, Emulator, LocalStack, DEMO_TABLES};

use crate::{exit_for, render};

/// Starts an emulator unless an endpoint was given; provisions the stack and the demo tables.
async fn bring_up(
    endpoint: Option<&str>,
    items: usize,
) -> Result<(Option<Emulator>, LocalStack), Error> {
    let (emulator, url) = match endpoint {
        Some(url) => {
            println!("Using the emulator at {url}");
            (None, url.to_owned())
        }
        None => {
            let t = Instant::now();
            let e = Emulator::start()?;
            println!(
                "Started moto at {} (pid {}) in {:.1} s",
                e.endpoint(),
                e.pid(),
                t.elapsed().as_secs_f64()
            );
            let url = e.endpoint().to_owned();
            (Some(e), url)
        }
    };
    let config = emulator_config(&url).await;
    let stack = local::provision(&config, &url, "backstop-").await?;
    println!(
        "Created catalog table {}, topic {}, and queue {} subscribed to it",
        stack.catalog_table, stack.topic_arn, stack.queue_url
    );
    let t = Instant::now();
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let seeds = DEMO_TABLES.map(|table| local::seed_demo_table(&ddb, table, items));
    let [a, b, c] = seeds;
    let (a, b, c) = tokio::join!(a, b, c);
    a.and(b).and(c)?;
    println!(
        "Created {} with {items} items each (with a GSI) in {:.1} s",
        DEMO_TABLES.join(", "),
        t.elapsed().as_secs_f64()
    );
    Ok((emulator, stack))
}

/// The latest `hour`:00 UTC that has passed: a daily schedule's newest slot.
fn latest_daily_slot(hour: i8) -> ScheduleSlot {
    let now = jiff::Timestamp::now();
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let at = |d: jiff::civil::Date| {
        d.at(hour, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(now)
    };
    let slot = at(today);
    ScheduleSlot::new(if slot <= now {
        slot
    } else {
        today.yesterday().map(at).unwrap_or(now)
    })
}

pub async fn demo(endpoint: Option<&str>, items: usize, json: bool) -> Result<ExitCode, Error> {
    println!("== Backstop demo: the daily cycle on a local emulator ==\n");
    let (emulator, stack) = bring_up(endpoint, items).await?;
    let config = emulator_config(&stack.endpoint).await;
    let clients = Clients::from_config(&config);

    let demo_tables = DEMO_TABLES.join(",");
    let env = Environment::from_pairs([
        (settings::ENV_CATALOG_TABLE, stack.catalog_table.as_str()),
        (settings::ENV_TOPIC_ARN, stack.topic_arn.as_str()),
        (settings::ENV_TABLES, demo_tables.as_str()),
        (settings::ENV_ENABLE_PITR, "true"),
    ]);
    // The latest 02:00 UTC slot that has passed, as the daily schedule would deliver it.
    let slot = latest_daily_slot(2).to_string();
    let payload = serde_json::json!({ "tables": DEMO_TABLES, "slot": slot });
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now())?;
    let settings = Settings::resolve(JobKind::Snapshot, &env, &request)?;
    println!("\nRunning snapshot for slot {slot} with payload {payload}\n");
    let report = snapshot::run(&clients, &settings, &request).await;
    render::demo_report(&report, json);

    render::demo_message_heading(&stack.queue_url);
    let wait = Duration::from_secs(10);
    let received = local::receive_notifications(&config, &stack.queue_url, 1, wait).await?;
    render::demo_message(received.first(), wait);

    render::demo_metrics_heading(&settings.metrics_namespace);
    let metrics = [METRIC_SUCCESS, METRIC_FAILURE, METRIC_DURATION, METRIC_SIZE];
    for table in DEMO_TABLES {
        let mut sums = [None; 4];
        for (sum, metric) in sums.iter_mut().zip(metrics) {
            *sum = local::metric_sum(
                &config,
                &settings.metrics_namespace,
                metric,
                snapshot::JOB.name(),
                Some(table),
            )
            .await?;
        }
        render::demo_metrics_row(table, &sums);
    }

    let again = snapshot::run(&clients, &settings, &request).await;
    render::demo_redelivery(&again);

    // Retention takes its tables from the environment: a deleting payload may only narrow them.
    let retention_request = JobRequest::from_payload(
        &serde_json::json!({ "slot": latest_daily_slot(5).to_string() }),
        jiff::Timestamp::now(),
    )?;
    let retention_settings = Settings::resolve(JobKind::Retention, &env, &retention_request)?;
    let pruned = retention::run(&clients, &retention_settings, &retention_request).await;
    render::demo_retention(retention_settings.retention_policy(), &pruned);

    // The weekly export, logical here: moto's native export writes no manifests (in AWS, auto
    // picks native for these tables, whose PITR the snapshot turned on).
    let bucket = "backstop-demo-exports";
    clients
        .s3
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| Error::aws("CreateBucket", format!("bucket {bucket}"), e))?;
    let export_env = Environment::from_pairs([
        (settings::ENV_CATALOG_TABLE, stack.catalog_table.as_str()),
        (settings::ENV_TOPIC_ARN, stack.topic_arn.as_str()),
        (settings::ENV_TABLES, demo_tables.as_str()),
        (settings::ENV_EXPORT_BUCKET, bucket),
        (settings::ENV_EXPORT_MODE, "logical"),
    ]);
    let export_request = JobRequest::from_payload(
        &serde_json::json!({ "slot": latest_daily_slot(3).to_string() }),
        jiff::Timestamp::now(),
    )?;
    let export_settings = Settings::resolve(JobKind::Export, &export_env, &export_request)?;
    let exported =
        backstop::jobs::run(JobKind::Export, &clients, &export_settings, &export_request).await;
    let mut checks = Vec::new();
    for t in &exported.targets {
        let Some(meta) = t.export.as_ref().filter(|m| m.manifest_key.is_some()) else {
            checks.push((t.table.clone(), Err("not exported".to_owned())));
            continue;
        };
        let read = backstop::export::reader::read_export(
            &clients.s3,
            &meta.bucket,
            meta.manifest_key.as_deref().unwrap_or_default(),
            |_| {},
        )
        .await;
        let table_fp =
            backstop::export::logical::fingerprint_table(&clients.dynamodb, &t.table).await;
        checks.push((
            t.table.clone(),
            match (read, table_fp) {
                (Ok(rb), Ok(fp)) => Ok((rb.fingerprint, fp)),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            },
        ));
    }
    render::demo_export(&exported, &checks);

    match emulator {
        Some(e) => {
            drop(e);
            println!("\nStopped the emulator it started.");
        }
        None => println!("\nThe emulator at {} was left running.", stack.endpoint),
    }
    Ok(if report.needs_retry() {
        exit_for(&report)
    } else if pruned.needs_retry() {
        exit_for(&pruned)
    } else {
        exit_for(&exported)
    })
}

pub async fn local_up(items: usize) -> Result<ExitCode, Error> {
    let (emulator, stack) = bring_up(None, items).await?;
    render::local_usage(&stack);
    let _ = tokio::signal::ctrl_c().await;
    drop(emulator);
    println!("Stopped the emulator.");
    Ok(ExitCode::SUCCESS)
}
