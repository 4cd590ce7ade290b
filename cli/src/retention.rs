//! `backstop retention plan`: what the policy keeps and deletes for one table, deleting nothing.

use std::collections::HashMap;
use std::process::ExitCode;

use backstop::catalog::Catalog;
use backstop::jobs::retention;
use backstop::retention::RetentionPolicy;
use backstop::Error;

use crate::{aws_config_for, render};

pub async fn plan(
    endpoint: Option<&str>,
    table: &str,
    policy: Option<&str>,
    catalog: String,
    now: Option<&str>,
    json: bool,
) -> Result<ExitCode, Error> {
    let policy = match policy {
        Some(p) => RetentionPolicy::parse(p).map_err(|rule| Error::setting("--policy", rule))?,
        None => RetentionPolicy::runbook_default(),
    };
    let compiled = policy
        .compile()
        .map_err(|rule| Error::setting("--policy", rule))?;
    let now = match now {
        Some(n) => n
            .parse::<jiff::Timestamp>()
            .map_err(|e| Error::setting("--now", format!("{n:?} is not an RFC 3339 time ({e})")))?,
        None => jiff::Timestamp::now(),
    };
    let config = aws_config_for(endpoint).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let catalog = Catalog::new(ddb.clone(), catalog);
    let (plan, listed) = retention::plan_table(&ddb, &catalog, &compiled, table, now).await?;
    // The plan knows backups by ARN; the table shows the names people recognise.
    let names: HashMap<&str, &str> = listed
        .iter()
        .map(|l| (l.point.id.as_str(), l.name.as_str()))
        .collect();
    render::print_plan(table, &plan, &names, now, json);
    Ok(ExitCode::SUCCESS)
}
