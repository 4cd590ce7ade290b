//! `backstop`: run Backstop's jobs locally, list what the catalog holds, and run the local demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use backstop::aws::{emulator_config, Clients};
use backstop::catalog::Catalog;
use backstop::event::{JobRequest, ScheduleSlot};
use backstop::jobs::{retention, snapshot};
use backstop::notify::{METRIC_DURATION, METRIC_FAILURE, METRIC_SIZE, METRIC_SUCCESS};
use backstop::report::{DeliveryState, RunReport};
use backstop::retention::{Decision, RetentionPolicy};
use backstop::settings::{self, Environment, JobKind, Settings};
use backstop::Error;
use backstop_testkit::local::{self, Emulator, LocalStack, DEMO_TABLES};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "backstop",
    version,
    about = "Backstop: scheduled, verified backups of DynamoDB tables, run locally.",
    long_about = "Backstop backs up DynamoDB tables on a schedule, records every backup in a catalog, \
                  and reports each run by SNS and CloudWatch metrics. In AWS the same jobs run as \
                  Lambda functions; this command runs them locally, reads the catalog, and runs the \
                  demo on a local emulator.\n\n\
                  AWS access comes from the usual AWS environment (AWS_REGION, credentials, \
                  AWS_ENDPOINT_URL), or from --endpoint for a local emulator.",
    after_long_help = settings_help()
)]
struct Cli {
    /// Talk to an AWS emulator at this URL (dummy credentials, region us-east-1) instead of AWS.
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job once, exactly as its Lambda function would, with settings from BACKSTOP_*.
    Run {
        /// Which job.
        job: Job,
        /// The payload: an EventBridge Scheduled Event or a manual payload (JSON file; - for stdin).
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Print the RunReport as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Read backups from the catalog.
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// The local demo: start moto, create the stack and the three demo tables, run the daily
    /// cycle (snapshot, then retention), and print the report, the SNS message read from SQS
    /// and the metrics read back.
    Demo {
        /// Items per demo table.
        #[arg(long, default_value_t = 2000)]
        items: usize,
        /// Also print the RunReport as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The local stack on its own: start moto, create the stack and the demo tables, print the
    /// environment to use it from another shell, and wait for Ctrl-C.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Retention: see what the policy keeps and deletes, and why.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Plan one table without deleting anything: every backup with its age, decision and reasons.
    Plan {
        /// The table whose backups to plan.
        #[arg(long)]
        table: String,
        /// The policy, such as keep_daily=30,keep_weekly=12 (default: BACKSTOP_RETENTION_POLICY,
        /// else daily 30, weekly 12, monthly 12, yearly 7).
        #[arg(long, env = settings::ENV_RETENTION_POLICY)]
        policy: Option<String>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Evaluate as of this RFC 3339 time instead of now.
        #[arg(long)]
        now: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BackupsCommand {
    /// List the backups the catalog records, oldest slot first.
    List {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Start the emulator and provision the stack; stop with Ctrl-C.
    Up {
        /// Items per demo table.
        #[arg(long, default_value_t = 2000)]
        items: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Job {
    /// On-demand DynamoDB backups of the selected tables, once per schedule slot.
    Snapshot,
    /// Delete the backups the retention policy no longer keeps (dry_run: only plan).
    Retention,
}

fn settings_help() -> String {
    let mut s = String::from("Settings (environment variables; a payload may override them):\n");
    for (name, what) in settings::ALL_ENV {
        s.push_str(&format!("  {name:<30} {what}\n"));
    }
    s.push_str("\nExit status: 0 when the run succeeded, 1 when any target failed (the report says which), 2 on bad input or settings.");
    s
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::Setting { .. } | Error::Payload(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Run { job, event, json } => {
            let payload = read_payload(&event)?;
            let request = JobRequest::from_payload(&payload, jiff::Timestamp::now())?;
            let kind = match job {
                Job::Snapshot => JobKind::Snapshot,
                Job::Retention => JobKind::Retention,
            };
            let settings = Settings::resolve(kind, &Environment::from_process(), &request)?;
            let clients = Clients::from_config(&aws_config_for(cli.endpoint.as_deref()).await);
            let report = backstop::jobs::run(kind, &clients, &settings, &request).await;
            print_report(&report, json);
            Ok(exit_for(&report))
        }
        Command::Retention {
            command:
                RetentionCommand::Plan {
                    table,
                    policy,
                    catalog,
                    now,
                    json,
                },
        } => {
            let policy = match policy {
                Some(p) => {
                    RetentionPolicy::parse(&p).map_err(|rule| Error::setting("--policy", rule))?
                }
                None => RetentionPolicy::runbook_default(),
            };
            let compiled = policy
                .compile()
                .map_err(|rule| Error::setting("--policy", rule))?;
            let now = match now {
                Some(n) => n.parse::<jiff::Timestamp>().map_err(|e| {
                    Error::setting("--now", format!("{n:?} is not an RFC 3339 time ({e})"))
                })?,
                None => jiff::Timestamp::now(),
            };
            let config = aws_config_for(cli.endpoint.as_deref()).await;
            let ddb = aws_sdk_dynamodb::Client::new(&config);
            let catalog = Catalog::new(ddb.clone(), catalog);
            let (plan, listed) =
                retention::plan_table(&ddb, &catalog, &compiled, &table, now).await?;
            let names: std::collections::HashMap<&str, &str> = listed
                .iter()
                .map(|l| (l.point.id.as_str(), l.name.as_str()))
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                );
            } else {
                print_plan(&table, &plan, &names, now);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backups {
            command:
                BackupsCommand::List {
                    table,
                    catalog,
                    json,
                },
        } => {
            let config = aws_config_for(cli.endpoint.as_deref()).await;
            let catalog = Catalog::new(aws_sdk_dynamodb::Client::new(&config), catalog);
            let records = catalog
                .list_targets(snapshot::JOB, table.as_deref())
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&records).unwrap_or_default()
                );
            } else if records.is_empty() {
                println!("No backups recorded in catalog {}.", catalog.table_name());
            } else {
                println!(
                    "{:<24} {:<21} {:<8} {:>10} {:>8}  BACKUP",
                    "TABLE", "SLOT", "STATUS", "SIZE", "ITEMS"
                );
                for r in &records {
                    println!(
                        "{:<24} {:<21} {:<8} {:>10} {:>8}  {}",
                        r.table,
                        r.slot,
                        r.status,
                        r.size_bytes
                            .map(backstop::report::human_bytes)
                            .unwrap_or_default(),
                        r.item_count.map(|n| n.to_string()).unwrap_or_default(),
                        r.backup_arn.as_deref().or(r.error.as_deref()).unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { items, json } => demo(cli.endpoint.as_deref(), items, json).await,
        Command::Local {
            command: LocalCommand::Up { items },
        } => local_up(items).await,
    }
}

/// The SDK configuration: the emulator's when --endpoint is given, else the standard AWS chain.
async fn aws_config_for(endpoint: Option<&str>) -> aws_config::SdkConfig {
    match endpoint {
        Some(url) => emulator_config(url).await,
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    }
}

fn read_payload(path: &PathBuf) -> Result<serde_json::Value, Error> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Error::Payload(format!("cannot read standard input: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Payload(format!("cannot read {}: {e}", path.display())))?
    };
    serde_json::from_str(&text)
        .map_err(|e| Error::Payload(format!("{} is not JSON: {e}", path.display())))
}

fn outcome_summary(o: &backstop::report::Outcome) -> String {
    match o {
        backstop::report::Outcome::Retained { kept, deleted, .. } => {
            format!("kept {kept}, deleted {deleted}")
        }
        backstop::report::Outcome::Failed { error, .. } => format!("FAILED: {error}"),
        other => format!("{other:?}"),
    }
}

fn exit_for(report: &RunReport) -> ExitCode {
    if report.needs_retry() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(report: &RunReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    print!("{}", report.email_body());
    println!();
    for (what, state) in [
        ("SNS message", &report.delivery.sns),
        ("CloudWatch metrics", &report.delivery.metrics),
        ("catalog run record", &report.delivery.catalog),
    ] {
        let line = match state {
            DeliveryState::Pending => "not attempted".to_owned(),
            DeliveryState::Sent { id: Some(id) } => format!("sent ({id})"),
            DeliveryState::Sent { id: None } => "sent".to_owned(),
            DeliveryState::Skipped { reason } => format!("skipped: {reason}"),
            DeliveryState::Failed { error } => format!("FAILED: {error}"),
        };
        println!("{what:<20} {line}");
    }
}

fn print_plan(
    table: &str,
    plan: &backstop::retention::RetentionPlan,
    names: &std::collections::HashMap<&str, &str>,
    now: jiff::Timestamp,
) {
    println!("Retention plan for {table} as of {now}");
    println!("Policy: {}", plan.policy);
    if let Some(b) = &plan.blocked {
        println!("Nothing will be deleted: {b}");
    }
    println!(
        "{} backups: {} kept, {} to delete\n",
        plan.points.len(),
        plan.keeps().count(),
        plan.deletes().count()
    );
    println!(
        "{:<48} {:<21} {:>9}  {:<8} REASONS",
        "BACKUP", "CREATED", "AGE", "DECISION"
    );
    for p in &plan.points {
        let name = names
            .get(p.point.id.as_str())
            .copied()
            .unwrap_or(p.point.id.as_str());
        let age = now.duration_since(p.point.created_at);
        let age = format!("{}d {:02}h", age.as_hours() / 24, age.as_hours() % 24);
        let (decision, reasons) = match &p.decision {
            Decision::Keep { reasons } => (
                "keep",
                reasons
                    .iter()
                    .map(|r| format!("{} ({})", r.rule, r.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Decision::Delete { reason } => ("DELETE", reason.clone()),
        };
        println!(
            "{:<48} {:<21} {:>9}  {:<8} {}",
            name,
            p.point
                .created_at
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            age,
            decision,
            reasons
        );
    }
}

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

async fn demo(endpoint: Option<&str>, items: usize, json: bool) -> Result<ExitCode, Error> {
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
    // Today's 02:00 UTC slot, as the daily schedule would deliver it.
    // The latest 02:00 UTC slot that has passed, as the daily schedule would deliver it.
    let slot = latest_daily_slot(2).to_string();
    let payload = serde_json::json!({ "tables": DEMO_TABLES, "slot": slot });
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now())?;
    let settings = Settings::resolve(JobKind::Snapshot, &env, &request)?;
    println!("\nRunning snapshot for slot {slot} with payload {payload}\n");
    let report = snapshot::run(&clients, &settings, &request).await;

    println!("== 1. Run report ==\n");
    print_report(&report, false);
    if json {
        println!(
            "\n{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }

    println!(
        "\n== 2. SNS message, as read from SQS queue {} ==\n",
        stack.queue_url
    );
    let received =
        local::receive_notifications(&config, &stack.queue_url, 1, Duration::from_secs(10)).await?;
    match received.first() {
        Some(n) => {
            println!("Subject: {}", n.subject);
            let attrs: Vec<String> = n
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!("Message attributes: {}\n", attrs.join(" "));
            println!("{}", n.message);
        }
        None => println!("(no message arrived within 10 s)"),
    }

    println!("== 3. CloudWatch metrics, read back with GetMetricStatistics (namespace {}, Sum, last hour) ==\n", settings.metrics_namespace);
    println!(
        "{:<16} {:>14} {:>14} {:>18} {:>16}",
        "Table", METRIC_SUCCESS, METRIC_FAILURE, "BackupDuration(s)", "BackupSize(B)"
    );
    for table in DEMO_TABLES {
        let mut cells = Vec::new();
        for metric in [METRIC_SUCCESS, METRIC_FAILURE, METRIC_DURATION, METRIC_SIZE] {
            let v = local::metric_sum(
                &config,
                &settings.metrics_namespace,
                metric,
                snapshot::JOB.name(),
                Some(table),
            )
            .await?;
            cells.push(v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()));
        }
        println!(
            "{:<16} {:>14} {:>14} {:>18} {:>16}",
            table, cells[0], cells[1], cells[2], cells[3]
        );
    }

    println!("\n== 4. The same event delivered again (EventBridge delivers at least once) ==\n");
    let again = snapshot::run(&clients, &settings, &request).await;
    println!(
        "{} of {} tables already done for this slot; {} new backups made.",
        again.totals.already_done, again.totals.selected, again.totals.created
    );

    // Retention takes its tables from the environment: a deleting payload may only narrow them.
    let retention_request = JobRequest::from_payload(
        &serde_json::json!({ "slot": latest_daily_slot(5).to_string() }),
        jiff::Timestamp::now(),
    )?;
    let retention_settings = Settings::resolve(JobKind::Retention, &env, &retention_request)?;
    println!(
        "\n== 5. Retention, the second job of the daily cycle (policy: {}) ==\n",
        retention_settings
            .retention_policy
            .as_ref()
            .and_then(|p| p.compile().ok())
            .map(|p| p.describe())
            .unwrap_or_default()
    );
    let pruned = retention::run(&clients, &retention_settings, &retention_request).await;
    for t in &pruned.targets {
        let reasons = t
            .decisions
            .first()
            .map(|d| match &d.decision {
                Decision::Keep { reasons } => reasons
                    .iter()
                    .map(|r| r.rule.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                Decision::Delete { reason } => reason.clone(),
            })
            .unwrap_or_default();
        println!(
            "- {}: {} (newest backup kept by: {reasons})",
            t.table,
            outcome_summary(&t.outcome)
        );
    }

    match emulator {
        Some(e) => {
            drop(e);
            println!("\nStopped the emulator it started.");
        }
        None => println!("\nThe emulator at {} was left running.", stack.endpoint),
    }
    Ok(if report.needs_retry() {
        exit_for(&report)
    } else {
        exit_for(&pruned)
    })
}

async fn local_up(items: usize) -> Result<ExitCode, Error> {
    let (emulator, stack) = bring_up(None, items).await?;
    println!("\nUse it from another shell:\n");
    println!(
        "export AWS_ENDPOINT_URL={} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=backstop-local AWS_SECRET_ACCESS_KEY=backstop-local",
        stack.endpoint
    );
    println!(
        "export {}={} {}={} {}={}",
        settings::ENV_CATALOG_TABLE,
        stack.catalog_table,
        settings::ENV_TOPIC_ARN,
        stack.topic_arn,
        settings::ENV_TABLES,
        DEMO_TABLES.join(",")
    );
    println!("backstop run snapshot --event events/snapshot-manual.json");
    println!("\nPress Ctrl-C to stop the emulator.");
    let _ = tokio::signal::ctrl_c().await;
    drop(emulator);
    println!("Stopped the emulator.");
    Ok(ExitCode::SUCCESS)
}
