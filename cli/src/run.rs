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
) -> Result<ExitCode, Error> {
    let payload = read_payload(event)?;
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now())?;
    let settings = Settings::resolve(kind, &Environment::from_process(), &request)?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let report = backstop::jobs::run(kind, &clients, &settings, &request).await;
    render::print_report(&report, json);
    Ok(exit_for(&report))
}

fn read_payload(path: &Path) -> Result<serde_json::Value, Error> {
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
