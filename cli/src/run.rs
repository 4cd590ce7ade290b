//! `backstop run`: one job, run once exactly as its Lambda function would.

use std::path::Path;
use std::process::ExitCode;

use backstop::aws::Clients;
use backstop::event::JobRequest;
use backstop::settings::{Environment, JobKind, Settings};
use backstop::Error;

use crate::{aws_config_for, exit_for, render};

pub async fn run(
    endpoint: Option<&str>,
    kind: JobKind,
    event: &Path,
    json: bool,
    deadline: Option<jiff::Timestamp>,
) -> Result<ExitCode, Error> {
    let payload = read_payload(event)?;
    let mut request = JobRequest::from_payload(&payload, jiff::Timestamp::now())?;
    request.deadline = deadline;
    let settings = Settings::resolve(kind, &Environment::from_process(), &request)?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let progress = (kind == JobKind::Export && !json).then(progress::start);
    let report = backstop::jobs::run(kind, &clients, &settings, &request).await;
    if let Some(p) = progress {
        p.stop();
    }
    render::print_report(&report, json);
    Ok(exit_for(&report))
}

/// One invocation of the summary function: the period's summary published to the topic (or
/// not again, when an earlier delivery sent it). Prints the headline and the report.
pub async fn summary(
    endpoint: Option<&str>,
    event: &Path,
    json: bool,
    deadline: Option<jiff::Timestamp>,
) -> Result<ExitCode, Error> {
    let payload = read_payload(event)?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let out = backstop::summary::handle(
        &clients,
        &Environment::from_process(),
        &payload,
        jiff::Timestamp::now(),
        deadline,
    )
    .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!(
            "{} ({})\n",
            out.headline,
            if out.published {
                format!(
                    "published, message {}",
                    out.message_id.as_deref().unwrap_or("?")
                )
            } else {
                "already published for this period; nothing sent".to_owned()
            }
        );
        println!("{}", out.report.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// One invocation of the restore function, as Lambda would run it (without `--time-left`, no
/// deadline: it works until the restore is done, or BACKSTOP_RESTORE_TIME_BUDGET runs out).
/// Exit 0 when the invocation succeeded (whatever the state), 1 when it failed.
pub async fn restore(
    endpoint: Option<&str>,
    event: &Path,
    json: bool,
    deadline: Option<jiff::Timestamp>,
) -> Result<ExitCode, Error> {
    use backstop::restore::request::{self, RestoreSettings};
    let payload = read_payload(event)?;
    let settings = RestoreSettings::resolve(&Environment::from_process())?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let status = request::handle(&clients, &settings, &payload, deadline).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!("{}: {:?}: {}", status.to, status.state, status.message);
        if let (Some(done), Some(total)) = (status.files_done, status.files_total) {
            println!(
                "  {done}/{total} data files, {} items written",
                status.items_written.unwrap_or(0)
            );
        }
        if let Some(how) = &status.continuation {
            println!("  continues: {how}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn read_payload(path: &Path) -> Result<serde_json::Value, Error> {
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

/// The export's progress while it runs: a bar on a terminal (items, bytes, segments done),
/// a plain line every 10 seconds otherwise. Read from the export's counters.
mod progress {
    use std::io::IsTerminal;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use backstop::export::logical::PROGRESS;
    use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

    pub struct Progress {
        task: tokio::task::JoinHandle<()>,
        bar: Option<ProgressBar>,
    }

    fn line() -> String {
        format!(
            "{} items, {}, {}/{} segments done",
            PROGRESS.items.load(Ordering::Relaxed),
            HumanBytes(PROGRESS.bytes.load(Ordering::Relaxed)),
            PROGRESS.segments_done.load(Ordering::Relaxed),
            PROGRESS.segments_total.load(Ordering::Relaxed)
        )
    }

    pub fn start() -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} export {elapsed}: {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let b = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    b.set_message(line());
                    b.tick();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            Progress {
                task,
                bar: Some(bar),
            }
        } else {
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    eprintln!("export: {}", line());
                }
            });
            Progress { task, bar: None }
        }
    }

    impl Progress {
        pub fn stop(self) {
            self.task.abort();
            if let Some(b) = self.bar {
                b.finish_and_clear();
            }
            if PROGRESS.segments_total.load(Ordering::Relaxed) > 0 {
                eprintln!("export: {}", line());
            }
        }
    }
}
