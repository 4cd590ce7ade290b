//! `backstop backups list` and `backstop exports list`: what the catalog records.

use std::process::ExitCode;

use backstop::catalog::Catalog;
use backstop::jobs::snapshot;
use backstop::Error;

use crate::{aws_config_for, render};

pub async fn list(
    endpoint: Option<&str>,
    table: Option<&str>,
    catalog: String,
    json: bool,
) -> Result<ExitCode, Error> {
    let config = aws_config_for(endpoint).await;
    let catalog = Catalog::new(aws_sdk_dynamodb::Client::new(&config), catalog);
    let records = catalog.list_targets(snapshot::JOB, table).await?;
    render::print_backups(catalog.table_name(), &records, json);
    Ok(ExitCode::SUCCESS)
}

pub async fn list_exports(
    endpoint: Option<&str>,
    table: Option<&str>,
    catalog: String,
    json: bool,
) -> Result<ExitCode, Error> {
    let config = aws_config_for(endpoint).await;
    let catalog = Catalog::new(aws_sdk_dynamodb::Client::new(&config), catalog);
    let records = catalog
        .list_targets(backstop::jobs::export::JOB, table)
        .await?;
    render::print_exports(catalog.table_name(), &records, json);
    Ok(ExitCode::SUCCESS)
}
