//! The validate job (#11), being built: so far, what its freshness check reads of a table.

use aws_sdk_dynamodb::types::PointInTimeRecoveryStatus;

use crate::aws::Clients;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::freshness::{newest_backup, newest_export, Evidence, Pitr};
use crate::settings::JobKind;

/// What freshness is judged on, for one table: its newest complete backup and export from the
/// catalog, and PITR from DescribeContinuousBackups. A catalog that cannot be read is an error
/// (nothing is judged on half a view); PITR that cannot be read is `Pitr::Unknown`, a violation.
pub async fn freshness_evidence(
    clients: &Clients,
    catalog: &Catalog,
    table: &str,
) -> Result<Evidence> {
    let backups = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
    let exports = catalog.list_targets(JobKind::Export, Some(table)).await?;
    Ok(Evidence {
        newest_backup: newest_backup(&backups),
        newest_export: newest_export(&exports),
        pitr: pitr(clients, table).await,
    })
}

async fn pitr(clients: &Clients, table: &str) -> Pitr {
    let out = match clients
        .dynamodb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            return Pitr::Unknown(
                Error::aws("DescribeContinuousBackups", format!("table {table}"), e).to_string(),
            )
        }
    };
    let Some(p) = out
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
    else {
        return Pitr::Unknown("DescribeContinuousBackups gave no recovery description".into());
    };
    match p.point_in_time_recovery_status {
        Some(PointInTimeRecoveryStatus::Enabled) => Pitr::On {
            latest_restorable: p
                .latest_restorable_date_time
                .and_then(|t| jiff::Timestamp::from_second(t.secs()).ok()),
        },
        Some(PointInTimeRecoveryStatus::Disabled) => Pitr::Off,
        other => Pitr::Unknown(format!("point-in-time recovery status {other:?}")),
    }
}
