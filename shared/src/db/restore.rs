//! Restores of database targets into a new instance only: from a snapshot, or to a point in
//! time from the source's automated backups. The new instance takes the source's subnet group,
//! parameter and option groups and security groups (as recorded with the snapshot, else as the
//! source has them now) unless given. An identifier in use is refused before anything is asked
//! for, and RDS refuses it again (`DBInstanceAlreadyExists`): a restore never writes into an
//! existing database.

use jiff::Timestamp;
use serde::Serialize;

use super::rds::{self, RestoreShape};
use super::{DbFacts, DbTarget};
use crate::aws::Clients;
use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Where a restore comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// A DB snapshot, by identifier (or ARN).
    Snapshot(String),
    /// The source instance's automated backups at a time (`None`: its latest restorable time).
    PointInTime {
        instance: String,
        time: Option<Timestamp>,
    },
}

/// A restore that was asked for, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbRestored {
    pub instance: String,
    pub from: String,
    pub status: String,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub allocated_storage: Option<i32>,
    pub endpoint: Option<String>,
    pub seconds: f64,
    pub notes: Vec<String>,
}

impl DbRestored {
    pub fn line(&self) -> String {
        format!(
            "rds:{} from {}: {} {}, {} GiB, {}{}",
            self.instance,
            self.from,
            self.engine.as_deref().unwrap_or("?"),
            self.engine_version.as_deref().unwrap_or("?"),
            self.allocated_storage.unwrap_or_default(),
            self.status,
            self.endpoint
                .as_deref()
                .map(|e| format!(", endpoint {e}"))
                .unwrap_or_default()
        )
    }
}

/// The facts to shape the new instance like its source: those recorded with the snapshot in
/// the catalog when Backstop made it, else the source instance's as it is now. The notes say
/// which.
pub async fn source_facts(
    clients: &Clients,
    catalog: Option<&Catalog>,
    from: &From,
    notes: &mut Vec<String>,
) -> Result<Option<DbFacts>> {
    let instance = match from {
        From::Snapshot(s) => {
            let id = super::drill::snapshot_id_of(s);
            let snap = rds::describe_snapshot(&clients.rds, id)
                .await?
                .ok_or_else(|| Error::Aws {
                    operation: "DescribeDBSnapshots",
                    resource: format!("DB snapshot {id}"),
                    code: Some("DBSnapshotNotFound".into()),
                    message: "RDS has no such snapshot in this account and region".into(),
                    retryable: false,
                    hint: "list them with aws rds describe-db-snapshots, or the catalog's records"
                        .into(),
                })?;
            if let Some(catalog) = catalog {
                let records = catalog
                    .list_targets(
                        crate::settings::JobKind::Snapshot,
                        Some(&DbTarget::rds(&snap.instance).name()),
                    )
                    .await?;
                if let Some(f) = records
                    .into_iter()
                    .find(|r| r.backup_arn.as_deref() == Some(snap.arn.as_str()))
                    .and_then(|r| r.table_shape)
                    .and_then(|v| serde_json::from_value::<DbFacts>(v).ok())
                {
                    notes.push("shaped like the source as recorded with the snapshot".into());
                    return Ok(Some(f));
                }
            }
            snap.instance
        }
        From::PointInTime { instance, .. } => instance.clone(),
    };
    match rds::describe_instance(&clients.rds, &instance).await? {
        Some(i) => {
            notes.push(format!("shaped like {instance} as it is now"));
            Ok(Some(rds::instance_facts(&i)))
        }
        None => {
            notes.push(format!(
                "{instance} no longer exists and the catalog has no record of it: RDS's defaults apply where nothing was given"
            ));
            Ok(None)
        }
    }
}

/// Refuses a target identifier that is not valid, is the source's, or exists.
pub async fn check_target(clients: &Clients, from: &From, to: &str) -> Result<()> {
    super::check_identifier(to, 63)
        .map_err(|rule| Error::refused("restore rds", format!("--to {rule}"), ""))?;
    if matches!(from, From::PointInTime { instance, .. } if instance == to) {
        return Err(Error::refused(
            "restore rds",
            format!("{to} is the source instance itself"),
            "restore into a new identifier, then switch your application over",
        ));
    }
    if let Some(i) = rds::describe_instance(&clients.rds, to).await? {
        return Err(Error::refused(
            "restore rds",
            format!(
                "DB instance {to} exists (status {}); a restore creates a new instance only",
                i.db_instance_status().unwrap_or("unknown")
            ),
            "choose another --to, or delete that instance yourself first",
        ));
    }
    Ok(())
}

/// Asks RDS for the restore. Tagged `backstop:restored-from`.
pub async fn start(clients: &Clients, from: &From, to: &str, shape: &RestoreShape) -> Result<()> {
    match from {
        From::Snapshot(s) => {
            let tags = vec![(
                "backstop:restored-from".to_owned(),
                super::drill::snapshot_id_of(s).to_owned(),
            )];
            rds::restore_from_snapshot(&clients.rds, s, to, shape, tags).await?;
        }
        From::PointInTime { instance, time } => {
            rds::restore_to_point_in_time(&clients.rds, instance, *time, to, shape).await?;
        }
    }
    Ok(())
}

/// Waits until the new instance is available (or `until` passes, or it can never be).
pub async fn wait_available(
    clients: &Clients,
    to: &str,
    until: Timestamp,
    poll: std::time::Duration,
) -> Result<aws_sdk_rds::types::DbInstance> {
    loop {
        let i = rds::describe_instance(&clients.rds, to).await?;
        match i {
            Some(i) if i.db_instance_status() == Some("available") => return Ok(i),
            Some(i)
                if matches!(
                    i.db_instance_status(),
                    Some(
                        "failed"
                            | "incompatible-restore"
                            | "incompatible-parameters"
                            | "incompatible-network"
                            | "storage-full"
                    )
                ) =>
            {
                return Err(Error::Aws {
                    operation: "DescribeDBInstances",
                    resource: format!("DB instance {to}"),
                    code: None,
                    message: format!(
                        "the restored instance is {}: it will not become available",
                        i.db_instance_status().unwrap_or_default()
                    ),
                    retryable: false,
                    hint: "read its events (aws rds describe-events); delete it and restore again"
                        .into(),
                })
            }
            _ if Timestamp::now() >= until => {
                return Err(Error::Aws {
                    operation: "DescribeDBInstances",
                    resource: format!("DB instance {to}"),
                    code: None,
                    message: "not available within --wait; RDS goes on restoring it".into(),
                    retryable: true,
                    hint: format!(
                        "aws rds wait db-instance-available --db-instance-identifier {to}"
                    ),
                })
            }
            _ => tokio::time::sleep(poll).await,
        }
    }
}
