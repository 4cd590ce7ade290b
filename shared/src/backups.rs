//! DynamoDB on-demand backups, the AWS resource Backstop makes and deletes: paged listing,
//! describe into [`BackupInfo`], create (never retried blindly) and delete (within DeleteBackup's
//! limit of 10 calls per second, safe to repeat). Every error names the operation and the table
//! or backup.

use std::time::Duration;

use aws_sdk_dynamodb::types::{BackupStatus, BackupTypeFilter};
use aws_sdk_dynamodb::Client as DynamoDb;
use jiff::Timestamp;
use tracing::warn;

use crate::error::{Error, Result};
use crate::report::BackupInfo;

/// DeleteBackup allows 10 calls per second per account.
pub const DELETES_PER_SECOND: u32 = 10;
const DELETE_ATTEMPTS: u32 = 6;

/// One user backup as ListBackups shows it (deleted ones are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub arn: String,
    pub name: String,
    /// `BackupCreationDateTime`: the only time Backstop trusts for a backup.
    pub created_at: Timestamp,
    /// False while it is still being made (CREATING).
    pub available: bool,
}

/// Every user backup of `table` (all pages of ListBackups), made at or after `since` when given.
/// Any error means the listing is incomplete, and says on which page.
pub async fn list(ddb: &DynamoDb, table: &str, since: Option<Timestamp>) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    let mut pages = 0u32;
    loop {
        pages += 1;
        let page = ddb
            .list_backups()
            .table_name(table)
            .backup_type(BackupTypeFilter::User)
            .set_time_range_lower_bound(
                since.map(|t| aws_smithy_types::DateTime::from_secs(t.as_second())),
            )
            .set_exclusive_start_backup_arn(start.take())
            .send()
            .await
            .map_err(|e| {
                let mut err = Error::aws("ListBackups", format!("table {table}"), e);
                if let Error::Aws { message, .. } = &mut err {
                    message.push_str(&format!(" (on page {pages}; the listing is incomplete)"));
                }
                err
            })?;
        for b in page.backup_summaries() {
            let (Some(arn), Some(created)) = (b.backup_arn(), b.backup_creation_date_time()) else {
                return Err(Error::Aws {
                    operation: "ListBackups",
                    resource: format!("table {table}"),
                    code: None,
                    message: "a backup summary has no ARN or creation time; the listing cannot be trusted".into(),
                    retryable: true,
                    hint: "a retry may succeed".into(),
                });
            };
            let status = b.backup_status();
            if status == Some(&BackupStatus::Deleted) {
                continue;
            }
            let created_at = Timestamp::new(created.secs(), created.subsec_nanos() as i32)
                .map_err(|e| Error::Aws {
                    operation: "ListBackups",
                    resource: format!("backup {arn}"),
                    code: None,
                    message: format!("creation time out of range: {e}"),
                    retryable: false,
                    hint: String::new(),
                })?;
            out.push(Listed {
                arn: arn.to_owned(),
                name: b.backup_name().unwrap_or_default().to_owned(),
                created_at,
                available: status == Some(&BackupStatus::Available),
            });
        }
        match page.last_evaluated_backup_arn {
            Some(arn) if !arn.is_empty() => start = Some(arn),
            _ => return Ok(out),
        }
    }
}

/// DescribeBackup as [`BackupInfo`]; sizes and counts DynamoDB does not give are `None`.
pub async fn describe(ddb: &DynamoDb, arn: &str, name: &str) -> Result<BackupInfo> {
    let described = ddb
        .describe_backup()
        .backup_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeBackup", format!("backup {arn}"), e))?
        .backup_description;
    let details = described.as_ref().and_then(|d| d.backup_details.as_ref());
    let source = described
        .as_ref()
        .and_then(|d| d.source_table_details.as_ref());
    Ok(BackupInfo {
        backup_arn: arn.to_owned(),
        backup_name: name.to_owned(),
        created_at: details.and_then(|d| {
            let c = &d.backup_creation_date_time;
            Timestamp::new(c.secs(), c.subsec_nanos() as i32).ok()
        }),
        size_bytes: details.and_then(|d| d.backup_size_bytes),
        item_count: source.and_then(|s| s.item_count),
        backup_status: details
            .map(|d| d.backup_status.as_str().to_owned())
            .unwrap_or_else(|| "UNKNOWN".into()),
        table_shape: None,
        table_settings: None,
    })
}

/// One CreateBackup call, with the SDK's retries off: CreateBackup has no client token, so a
/// request repeated after its answer was lost makes a second backup with the same name. The
/// caller decides what to do after an error (see `jobs::snapshot`: look by name, then create).
pub async fn create(ddb: &DynamoDb, table: &str, name: &str) -> Result<String> {
    let no_sdk_retries = aws_sdk_dynamodb::config::Builder::default()
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled());
    let out = ddb
        .create_backup()
        .table_name(table)
        .backup_name(name)
        .customize()
        .config_override(no_sdk_retries)
        .send()
        .await
        .map_err(|e| Error::aws("CreateBackup", format!("table {table}"), e))?;
    out.backup_details
        .map(|d| d.backup_arn)
        .ok_or_else(|| Error::Aws {
            operation: "CreateBackup",
            resource: format!("table {table}"),
            code: None,
            message: "the response named no backup".into(),
            retryable: true,
            hint: "a retry may succeed".into(),
        })
}

/// How a delete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Now,
    /// DynamoDB no longer knows the backup: an earlier attempt (whose answer was lost, or a run
    /// before) deleted it. Counted as deleted, and said so.
    AlreadyGone,
}

/// Deletes one backup, retrying what can be retried with exponential backoff. Safe to repeat: a
/// backup already gone counts as deleted, so a lost answer or a redelivered run is harmless.
pub async fn delete(ddb: &DynamoDb, limiter: &RateLimiter, arn: &str) -> Result<Deleted> {
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        limiter.acquire().await;
        match ddb.delete_backup().backup_arn(arn).send().await {
            Ok(_) => return Ok(Deleted::Now),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_backup_not_found_exception()) =>
            {
                return Ok(Deleted::AlreadyGone)
            }
            Err(e) => {
                let err = Error::aws("DeleteBackup", format!("backup {arn}"), e);
                if !err.is_retryable() || attempt >= DELETE_ATTEMPTS {
                    return Err(err);
                }
                warn!(attempt, error = %err, "retrying DeleteBackup");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
        }
    }
}

/// Spaces calls evenly: at most `n` per second across every task that shares it.
pub struct RateLimiter {
    next: tokio::sync::Mutex<tokio::time::Instant>,
    interval: Duration,
}

impl RateLimiter {
    pub fn per_second(n: u32) -> RateLimiter {
        RateLimiter {
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            interval: Duration::from_secs(1) / n.max(1),
        }
    }

    pub async fn acquire(&self) {
        let mut next = self.next.lock().await;
        let now = tokio::time::Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = (*next).max(now) + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rate_limiter_never_lets_calls_closer_than_its_interval() {
        // A lower bound only: sleeps never end early, so this cannot flake.
        let limiter = RateLimiter::per_second(100);
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            limiter.acquire().await;
        }
        // 11 calls: the first at once, then one every 10 ms at the earliest.
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    }
}
