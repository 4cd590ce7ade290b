//! One call per operation for every database kind: the jobs, drills and restores go through
//! these and never name a kind's API themselves. Each matches on the kind without a wildcard,
//! so a new kind does not compile until every operation says what it does.

use aws_sdk_rds::Client as Rds;
use jiff::Timestamp;

use super::rds::{RestoreShape, SnapshotInfo};
use super::{aurora, rds, DbFacts, DbKind, DbTarget};
use crate::backups::Deleted;
use crate::error::{Error, Result};
use crate::freshness::Pitr;

/// The identifiers a selection of `kind` names, and those left out with the reason.
pub async fn resolve(
    client: &Rds,
    kind: DbKind,
    selection: &crate::selection::TableSelection,
    drill_prefix: &str,
) -> Result<(Vec<String>, Vec<crate::selection::Excluded>)> {
    match kind {
        DbKind::RdsInstance => rds::resolve(client, selection, drill_prefix).await,
        DbKind::AuroraCluster => aurora::resolve(client, selection, drill_prefix).await,
    }
}

/// The target as it is now (`None`: it does not exist).
pub async fn describe(client: &Rds, t: &DbTarget) -> Result<Option<DbFacts>> {
    match t.kind {
        DbKind::RdsInstance => Ok(rds::describe_instance(client, &t.id)
            .await?
            .map(|i| rds::instance_facts(&i))),
        DbKind::AuroraCluster => Ok(aurora::describe_cluster(client, &t.id)
            .await?
            .map(|c| aurora::cluster_facts(&c))),
    }
}

/// The target, or an error that names it and says what to check.
pub async fn require(client: &Rds, t: &DbTarget) -> Result<DbFacts> {
    describe(client, t).await?.ok_or_else(|| Error::Aws {
        operation: match t.kind {
            DbKind::RdsInstance => "DescribeDBInstances",
            DbKind::AuroraCluster => "DescribeDBClusters",
        },
        resource: match t.kind {
            DbKind::RdsInstance => format!("DB instance {}", t.id),
            DbKind::AuroraCluster => format!("DB cluster {}", t.id),
        },
        code: Some(
            match t.kind {
                DbKind::RdsInstance => "DBInstanceNotFound",
                DbKind::AuroraCluster => "DBClusterNotFoundFault",
            }
            .into(),
        ),
        message: format!(
            "RDS has no such {} in this account and region",
            match t.kind {
                DbKind::RdsInstance => "instance",
                DbKind::AuroraCluster => "cluster",
            }
        ),
        retryable: false,
        hint: format!(
            "check {} (identifiers are lower case) and the function's region",
            match t.kind {
                DbKind::RdsInstance => crate::settings::ENV_RDS_INSTANCES,
                DbKind::AuroraCluster => crate::settings::ENV_AURORA_CLUSTERS,
            }
        ),
    })
}

pub async fn describe_snapshot(
    client: &Rds,
    kind: DbKind,
    id: &str,
) -> Result<Option<SnapshotInfo>> {
    match kind {
        DbKind::RdsInstance => rds::describe_snapshot(client, id).await,
        DbKind::AuroraCluster => aurora::describe_snapshot(client, id).await,
    }
}

pub async fn list_manual_snapshots(client: &Rds, t: &DbTarget) -> Result<Vec<SnapshotInfo>> {
    match t.kind {
        DbKind::RdsInstance => rds::list_manual_snapshots(client, &t.id).await,
        DbKind::AuroraCluster => aurora::list_manual_snapshots(client, &t.id).await,
    }
}

pub async fn create_snapshot(
    client: &Rds,
    t: &DbTarget,
    name: &str,
    slot: &str,
) -> Result<SnapshotInfo> {
    match t.kind {
        DbKind::RdsInstance => rds::create_snapshot(client, &t.id, name, slot).await,
        DbKind::AuroraCluster => aurora::create_snapshot(client, &t.id, name, slot).await,
    }
}

pub async fn delete_snapshot(client: &Rds, kind: DbKind, id: &str) -> Result<Deleted> {
    match kind {
        DbKind::RdsInstance => rds::delete_snapshot(client, id).await,
        DbKind::AuroraCluster => aurora::delete_snapshot(client, id).await,
    }
}

pub async fn copy_snapshot(
    replica: &Rds,
    kind: DbKind,
    source_arn: &str,
    name: &str,
    kms_key: Option<&str>,
    slot: &str,
) -> Result<SnapshotInfo> {
    match kind {
        DbKind::RdsInstance => rds::copy_snapshot(replica, source_arn, name, kms_key, slot).await,
        DbKind::AuroraCluster => {
            aurora::copy_snapshot(replica, source_arn, name, kms_key, slot).await
        }
    }
}

/// Whether an error says the snapshot identifier is taken (either kind's code).
pub fn is_already_exists(e: &Error) -> bool {
    rds::is_already_exists(e) || aurora::is_snapshot_already_exists(e)
}

/// Whether an error says the new instance's or cluster's identifier is taken.
pub fn is_target_taken(e: &Error) -> bool {
    matches!(
        e.code(),
        Some(
            "DBInstanceAlreadyExists"
                | "DBInstanceAlreadyExistsFault"
                | "DBClusterAlreadyExistsFault"
                | "DBClusterAlreadyExists"
        )
    )
}

pub async fn restore_from_snapshot(
    client: &Rds,
    kind: DbKind,
    snapshot: &str,
    new_id: &str,
    shape: &RestoreShape,
    tags: Vec<(String, String)>,
) -> Result<()> {
    match kind {
        DbKind::RdsInstance => rds::restore_from_snapshot(client, snapshot, new_id, shape, tags)
            .await
            .map(|_| ()),
        DbKind::AuroraCluster => {
            aurora::restore_from_snapshot(client, snapshot, new_id, shape, tags).await
        }
    }
}

pub async fn restore_to_point_in_time(
    client: &Rds,
    kind: DbKind,
    source: &str,
    time: Option<Timestamp>,
    new_id: &str,
    shape: &RestoreShape,
) -> Result<()> {
    match kind {
        DbKind::RdsInstance => rds::restore_to_point_in_time(client, source, time, new_id, shape)
            .await
            .map(|_| ()),
        DbKind::AuroraCluster => {
            aurora::restore_to_point_in_time(client, source, time, new_id, shape).await
        }
    }
}

/// Deletes a drill instance or cluster, without a final snapshot. Safe to repeat.
pub async fn delete_drill(client: &Rds, kind: DbKind, id: &str) -> Result<()> {
    match kind {
        DbKind::RdsInstance => rds::delete_drill_instance(client, id).await,
        DbKind::AuroraCluster => aurora::delete_drill_cluster(client, id).await,
    }
}

/// The automated backups as point-in-time recovery.
pub async fn automated_backups(client: &Rds, t: &DbTarget) -> Pitr {
    match describe(client, t).await {
        Ok(Some(f)) if f.backup_retention_days.unwrap_or(0) > 0 => Pitr::On {
            latest_restorable: f.latest_restorable,
        },
        Ok(Some(_)) => Pitr::Off,
        Ok(None) => Pitr::Unknown(format!("{t} does not exist")),
        Err(e) => Pitr::Unknown(e.to_string()),
    }
}

/// The drill instances or clusters that exist (identifier, tags, created at), for the sweep.
pub async fn list_for_sweep(
    client: &Rds,
    kind: DbKind,
) -> Result<Vec<(String, bool, Option<Timestamp>, Option<String>)>> {
    let created = |t: Option<&aws_smithy_types::DateTime>| {
        t.and_then(|t| Timestamp::from_second(t.secs()).ok())
    };
    let tag = super::drill::TAG_DRILL;
    Ok(match kind {
        DbKind::RdsInstance => rds::list_instances(client)
            .await?
            .iter()
            .filter_map(|i| {
                Some((
                    i.db_instance_identifier()?.to_owned(),
                    rds::has_tag(i.tag_list(), tag, Some("true")),
                    created(i.instance_create_time()),
                    i.db_instance_status().map(str::to_owned),
                ))
            })
            .collect(),
        DbKind::AuroraCluster => aurora::list_clusters(client)
            .await?
            .iter()
            .filter_map(|c| {
                Some((
                    c.db_cluster_identifier()?.to_owned(),
                    rds::has_tag(c.tag_list(), tag, Some("true")),
                    created(c.cluster_create_time()),
                    c.status().map(str::to_owned),
                ))
            })
            .collect(),
    })
}
