//! Restores of database targets into a new instance only: from a snapshot, or to a point in
//! time from the source's automated backups. The new instance takes the source's subnet group,
//! parameter and option groups and security groups (as recorded with the snapshot, else as the
//! source has them now) unless given. An identifier in use is refused before anything is asked
//! for, and RDS refuses it again (`DBInstanceAlreadyExists`): a restore never writes into an
//! existing database.

use jiff::Timestamp;
use serde::Serialize;

use super::rds::RestoreShape;
use super::{api, DbFacts, DbKind, DbTarget};
use crate::aws::Clients;
use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Where a restore comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// A DB snapshot or DB cluster snapshot, by identifier (or ARN).
    Snapshot(DbKind, String),
    /// The source instance's or cluster's automated backups at a time (`None`: its latest
    /// restorable time).
    PointInTime {
        source: DbTarget,
        time: Option<Timestamp>,
    },
}

impl From {
    pub fn kind(&self) -> DbKind {
        match self {
            From::Snapshot(k, _) => *k,
            From::PointInTime { source, .. } => source.kind,
        }
    }
}

/// A restore that was asked for, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbRestored {
    /// The new instance's or cluster's name (`rds:<id>`, `aurora:<id>`).
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
            "{} from {}: {} {}{}, {}{}",
            self.instance,
            self.from,
            self.engine.as_deref().unwrap_or("?"),
            self.engine_version.as_deref().unwrap_or("?"),
            self.allocated_storage
                .map(|g| format!(", {g} GiB"))
                .unwrap_or_default(),
            self.status,
            self.endpoint
                .as_deref()
                .map(|e| format!(", endpoint {e}"))
                .unwrap_or_default()
        )
    }
}

/// The facts to shape the new database like its source: those recorded with the snapshot in
/// the catalog when Backstop made it, else the source's as it is now. The notes say which.
pub async fn source_facts(
    clients: &Clients,
    catalog: Option<&Catalog>,
    from: &From,
    notes: &mut Vec<String>,
) -> Result<Option<DbFacts>> {
    let source = match from {
        From::Snapshot(kind, s) => {
            let id = super::drill::snapshot_id_of(s);
            let snap = api::describe_snapshot(&clients.db(), *kind, id)
                .await?
                .ok_or_else(|| Error::Aws {
                    operation: "describe snapshot",
                    resource: format!("{} snapshot {id}", kind.noun()),
                    code: None,
                    message: "no such snapshot in this account and region".into(),
                    retryable: false,
                    hint: match kind {
                        DbKind::RdsInstance | DbKind::AuroraCluster => "list them with aws rds describe-db-snapshots (or describe-db-cluster-snapshots), or the catalog's records",
                        DbKind::ElastiCacheGroup => "list them with aws elasticache describe-snapshots, or the catalog's records",
                    }
                    .into(),
                })?;
            let source = DbTarget {
                kind: *kind,
                id: snap.instance.clone(),
            };
            if let Some(catalog) = catalog {
                let records = catalog
                    .list_targets(crate::settings::JobKind::Snapshot, Some(&source.name()))
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
            source
        }
        From::PointInTime { source, .. } => source.clone(),
    };
    match api::describe(&clients.db(), &source).await? {
        Some(f) => {
            notes.push(format!("shaped like {} as it is now", source.id));
            Ok(Some(f))
        }
        None => {
            notes.push(format!(
                "{} no longer exists and the catalog has no record of it: {}'s defaults apply where nothing was given",
                source.id,
                source.kind.service()
            ));
            Ok(None)
        }
    }
}

/// Refuses a target identifier that is not valid, is the source's, or exists; and a snapshot
/// ARN of another region (it would be looked up by its bare name here).
pub async fn check_target(clients: &Clients, from: &From, to: &str) -> Result<()> {
    let kind = from.kind();
    if let From::Snapshot(_, s) = from {
        let own = clients.rds.config().region().map(|r| r.to_string());
        if let Some(region) = s.strip_prefix("arn:").and_then(|r| r.split(':').nth(2)) {
            if own.as_deref() != Some(region) {
                return Err(Error::refused(
                    "restore",
                    format!(
                        "snapshot {s} is in {region}, not in {}",
                        own.unwrap_or_default()
                    ),
                    "run the restore in the snapshot's region (--region, AWS_REGION)",
                ));
            }
        }
    }
    super::check_identifier(to, kind.max_id())
        .map_err(|rule| Error::refused("restore", format!("--to {rule}"), ""))?;
    if matches!(from, From::PointInTime { source, .. } if source.id == to) {
        return Err(Error::refused(
            "restore",
            format!("{to} is the source itself"),
            "restore into a new identifier, then switch your application over",
        ));
    }
    let target = DbTarget {
        kind,
        id: to.to_owned(),
    };
    if let Some(f) = api::describe(&clients.db(), &target).await? {
        return Err(Error::refused(
            "restore",
            format!(
                "{target} exists (status {}); a restore creates a new {} only",
                f.status.as_deref().unwrap_or("unknown"),
                match kind {
                    DbKind::RdsInstance => "instance",
                    DbKind::AuroraCluster => "cluster",
                    DbKind::ElastiCacheGroup => "replication group",
                }
            ),
            "choose another --to, or delete it yourself first",
        ));
    }
    Ok(())
}

/// Asks RDS for the restore. Tagged `backstop:restored-from`.
pub async fn start(clients: &Clients, from: &From, to: &str, shape: &RestoreShape) -> Result<()> {
    match from {
        From::Snapshot(kind, s) => {
            let id = super::drill::snapshot_id_of(s);
            let tags = vec![("backstop:restored-from".to_owned(), id.to_owned())];
            // Aurora restores take the identifier (not every API takes an ARN there).
            let snapshot = match kind {
                DbKind::RdsInstance => s.as_str(),
                DbKind::AuroraCluster | DbKind::ElastiCacheGroup => id,
            };
            api::restore_from_snapshot(&clients.db(), *kind, snapshot, to, shape, tags).await
        }
        From::PointInTime { source, time } => {
            api::restore_to_point_in_time(&clients.db(), source.kind, &source.id, *time, to, shape)
                .await
        }
    }
}

/// Waits until the new database is available (or `until` passes, or it can never be).
pub async fn wait_available(
    clients: &Clients,
    target: &DbTarget,
    until: Timestamp,
    poll: std::time::Duration,
) -> Result<DbFacts> {
    loop {
        let f = api::describe(&clients.db(), target).await?;
        let status = f
            .as_ref()
            .and_then(|f| f.status.clone())
            .unwrap_or_default();
        match f {
            Some(f) if status == "available" => return Ok(f),
            Some(_)
                if matches!(
                    status.as_str(),
                    "failed"
                        | "create-failed"
                        | "incompatible-restore"
                        | "incompatible-parameters"
                        | "incompatible-network"
                        | "storage-full"
                        | "inaccessible-encryption-credentials"
                ) =>
            {
                return Err(Error::Aws {
                    operation: "describe",
                    resource: target.to_string(),
                    code: None,
                    message: format!(
                        "the restored database is {status}: it will not become available"
                    ),
                    retryable: false,
                    hint: match target.kind {
                        DbKind::ElastiCacheGroup => {
                            "read its events (aws elasticache describe-events); delete it and restore again"
                        }
                        _ => "read its events (aws rds describe-events); delete it and restore again",
                    }
                    .into(),
                })
            }
            _ if Timestamp::now() >= until => {
                return Err(Error::Aws {
                    operation: "describe",
                    resource: target.to_string(),
                    code: None,
                    message: format!(
                        "not available within --wait; {} goes on restoring it",
                        target.kind.service()
                    ),
                    retryable: true,
                    hint: match target.kind {
                        DbKind::RdsInstance => "aws rds wait db-instance-available",
                        DbKind::AuroraCluster => "watch aws rds describe-db-clusters",
                        DbKind::ElastiCacheGroup => {
                            "watch aws elasticache describe-replication-groups"
                        }
                    }
                    .into(),
                })
            }
            _ => tokio::time::sleep(poll).await,
        }
    }
}
