//! One call per operation for every database kind: the jobs, drills and restores go through
//! these and never name a kind's API themselves. Each matches on the kind without a wildcard,
//! so a new kind does not compile until every operation says what it does.

use jiff::Timestamp;

use super::rds::{RestoreShape, SnapshotInfo};
use super::{aurora, elasticache, rds, DbFacts, DbKind, DbTarget};
use crate::aws::{Clients, Lazy};
use crate::backups::Deleted;
use crate::error::{Error, Result};
use crate::freshness::Pitr;

/// The clients of every database kind, for one region; each built on first use.
#[derive(Debug, Clone)]
pub struct DbClient {
    pub rds: Lazy<aws_sdk_rds::Client>,
    pub elasticache: Lazy<aws_sdk_elasticache::Client>,
}

impl Clients {
    /// The database clients of this region.
    pub fn db(&self) -> DbClient {
        DbClient {
            rds: self.rds.clone(),
            elasticache: self.elasticache.clone(),
        }
    }

    /// The database clients of `region` (this one's when `None`): same credentials, endpoint
    /// and settings. For copies in a replica region.
    pub fn db_in(&self, region: Option<&str>) -> DbClient {
        let Some(r) = region else { return self.db() };
        let (rds, ec, r) = (self.rds.clone(), self.elasticache.clone(), r.to_owned());
        let r2 = r.clone();
        DbClient {
            rds: Lazy::new(move || {
                aws_sdk_rds::Client::from_conf(
                    rds.config()
                        .to_builder()
                        .region(aws_sdk_rds::config::Region::new(r.clone()))
                        .build(),
                )
            }),
            elasticache: Lazy::new(move || {
                aws_sdk_elasticache::Client::from_conf(
                    ec.config()
                        .to_builder()
                        .region(aws_sdk_elasticache::config::Region::new(r2.clone()))
                        .build(),
                )
            }),
        }
    }
}

/// Refuses what a kind does not offer, naming the target and the operation.
fn not_offered(operation: &'static str, what: String, message: &str, hint: &str) -> Error {
    Error::Aws {
        operation,
        resource: what,
        code: None,
        message: message.to_owned(),
        retryable: false,
        hint: hint.to_owned(),
    }
}

/// The identifiers a selection of `kind` names, and those left out with the reason.
pub async fn resolve(
    client: &DbClient,
    kind: DbKind,
    selection: &crate::selection::TableSelection,
    drill_prefix: &str,
) -> Result<(Vec<String>, Vec<crate::selection::Excluded>)> {
    match kind {
        DbKind::RdsInstance => rds::resolve(&client.rds, selection, drill_prefix).await,
        DbKind::AuroraCluster => aurora::resolve(&client.rds, selection, drill_prefix).await,
        DbKind::ElastiCacheGroup => {
            elasticache::resolve(&client.elasticache, selection, drill_prefix).await
        }
    }
}

/// The target as it is now (`None`: it does not exist).
pub async fn describe(client: &DbClient, t: &DbTarget) -> Result<Option<DbFacts>> {
    match t.kind {
        DbKind::RdsInstance => Ok(rds::describe_instance(&client.rds, &t.id)
            .await?
            .map(|i| rds::instance_facts(&i))),
        DbKind::AuroraCluster => Ok(aurora::describe_cluster(&client.rds, &t.id)
            .await?
            .map(|c| aurora::cluster_facts(&c))),
        DbKind::ElastiCacheGroup => elasticache::describe_facts(&client.elasticache, &t.id).await,
    }
}

/// The target, or an error that names it and says what to check.
pub async fn require(client: &DbClient, t: &DbTarget) -> Result<DbFacts> {
    describe(client, t).await?.ok_or_else(|| Error::Aws {
        operation: match t.kind {
            DbKind::RdsInstance => "DescribeDBInstances",
            DbKind::AuroraCluster => "DescribeDBClusters",
            DbKind::ElastiCacheGroup => "DescribeReplicationGroups",
        },
        resource: match t.kind {
            DbKind::RdsInstance => format!("DB instance {}", t.id),
            DbKind::AuroraCluster => format!("DB cluster {}", t.id),
            DbKind::ElastiCacheGroup => format!("ElastiCache replication group {}", t.id),
        },
        code: Some(
            match t.kind {
                DbKind::RdsInstance => "DBInstanceNotFound",
                DbKind::AuroraCluster => "DBClusterNotFoundFault",
                DbKind::ElastiCacheGroup => "ReplicationGroupNotFoundFault",
            }
            .into(),
        ),
        message: format!(
            "{} has no such {} in this account and region",
            match t.kind {
                DbKind::RdsInstance | DbKind::AuroraCluster => "RDS",
                DbKind::ElastiCacheGroup => "ElastiCache",
            },
            match t.kind {
                DbKind::RdsInstance => "instance",
                DbKind::AuroraCluster => "cluster",
                DbKind::ElastiCacheGroup => "replication group",
            }
        ),
        retryable: false,
        hint: format!(
            "check {} (identifiers are lower case) and the function's region",
            match t.kind {
                DbKind::RdsInstance => crate::settings::ENV_RDS_INSTANCES,
                DbKind::AuroraCluster => crate::settings::ENV_AURORA_CLUSTERS,
                DbKind::ElastiCacheGroup => crate::settings::ENV_ELASTICACHE_GROUPS,
            }
        ),
    })
}

pub async fn describe_snapshot(
    client: &DbClient,
    kind: DbKind,
    id: &str,
) -> Result<Option<SnapshotInfo>> {
    match kind {
        DbKind::RdsInstance => rds::describe_snapshot(&client.rds, id).await,
        DbKind::AuroraCluster => aurora::describe_snapshot(&client.rds, id).await,
        DbKind::ElastiCacheGroup => elasticache::describe_snapshot(&client.elasticache, id).await,
    }
}

pub async fn list_manual_snapshots(client: &DbClient, t: &DbTarget) -> Result<Vec<SnapshotInfo>> {
    match t.kind {
        DbKind::RdsInstance => rds::list_manual_snapshots(&client.rds, &t.id).await,
        DbKind::AuroraCluster => aurora::list_manual_snapshots(&client.rds, &t.id).await,
        DbKind::ElastiCacheGroup => {
            elasticache::list_manual_snapshots(&client.elasticache, &t.id).await
        }
    }
}

pub async fn create_snapshot(
    client: &DbClient,
    t: &DbTarget,
    name: &str,
    slot: &str,
) -> Result<SnapshotInfo> {
    match t.kind {
        DbKind::RdsInstance => rds::create_snapshot(&client.rds, &t.id, name, slot).await,
        DbKind::AuroraCluster => aurora::create_snapshot(&client.rds, &t.id, name, slot).await,
        DbKind::ElastiCacheGroup => {
            elasticache::create_snapshot(&client.elasticache, &t.id, name, slot).await
        }
    }
}

pub async fn delete_snapshot(client: &DbClient, kind: DbKind, id: &str) -> Result<Deleted> {
    match kind {
        DbKind::RdsInstance => rds::delete_snapshot(&client.rds, id).await,
        DbKind::AuroraCluster => aurora::delete_snapshot(&client.rds, id).await,
        DbKind::ElastiCacheGroup => elasticache::delete_snapshot(&client.elasticache, id).await,
    }
}

pub async fn copy_snapshot(
    replica: &DbClient,
    kind: DbKind,
    source_arn: &str,
    name: &str,
    kms_key: Option<&str>,
    slot: &str,
) -> Result<SnapshotInfo> {
    match kind {
        DbKind::RdsInstance => rds::copy_snapshot(&replica.rds, source_arn, name, kms_key, slot).await,
        DbKind::AuroraCluster => {
            aurora::copy_snapshot(&replica.rds, source_arn, name, kms_key, slot).await
        }
        DbKind::ElastiCacheGroup => Err(not_offered(
            "CopySnapshot",
            format!("ElastiCache snapshot {name} (from {source_arn})"),
            "ElastiCache copies snapshots within their own region only",
            "export the snapshot to an S3 bucket (aws elasticache copy-snapshot --target-bucket) and replicate the bucket",
        )),
    }
}

/// Whether an error says the snapshot identifier is taken (either kind's code).
pub fn is_already_exists(e: &Error) -> bool {
    rds::is_already_exists(e)
        || aurora::is_snapshot_already_exists(e)
        || elasticache::is_already_exists(e)
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
    ) || elasticache::is_group_taken(e)
}

pub async fn restore_from_snapshot(
    client: &DbClient,
    kind: DbKind,
    snapshot: &str,
    new_id: &str,
    shape: &RestoreShape,
    tags: Vec<(String, String)>,
) -> Result<()> {
    match kind {
        DbKind::RdsInstance => {
            rds::restore_from_snapshot(&client.rds, snapshot, new_id, shape, tags)
                .await
                .map(|_| ())
        }
        DbKind::AuroraCluster => {
            aurora::restore_from_snapshot(&client.rds, snapshot, new_id, shape, tags).await
        }
        DbKind::ElastiCacheGroup => {
            elasticache::restore_from_snapshot(&client.elasticache, snapshot, new_id, shape, tags)
                .await
        }
    }
}

pub async fn restore_to_point_in_time(
    client: &DbClient,
    kind: DbKind,
    source: &str,
    time: Option<Timestamp>,
    new_id: &str,
    shape: &RestoreShape,
) -> Result<()> {
    match kind {
        DbKind::RdsInstance => {
            rds::restore_to_point_in_time(&client.rds, source, time, new_id, shape)
                .await
                .map(|_| ())
        }
        DbKind::AuroraCluster => {
            aurora::restore_to_point_in_time(&client.rds, source, time, new_id, shape).await
        }
        DbKind::ElastiCacheGroup => Err(not_offered(
            "restore to a point in time",
            format!("ElastiCache replication group {source}"),
            "ElastiCache has no point-in-time restore (its automatic backups are daily snapshots)",
            "restore from a snapshot instead (--snapshot)",
        )),
    }
}

/// The tags of an instance, cluster or group (`None`: it does not exist): what a drill reads
/// before it takes a name as its own or deletes it.
pub async fn tags_of(client: &DbClient, t: &DbTarget) -> Result<Option<Vec<(String, String)>>> {
    match t.kind {
        DbKind::RdsInstance => Ok(rds::describe_instance(&client.rds, &t.id)
            .await?
            .map(|i| rds::tags(i.tag_list()))),
        DbKind::AuroraCluster => Ok(aurora::describe_cluster(&client.rds, &t.id)
            .await?
            .map(|c| rds::tags(c.tag_list()))),
        DbKind::ElastiCacheGroup => {
            match elasticache::describe_group(&client.elasticache, &t.id).await? {
                None => Ok(None),
                Some(g) => match g.arn() {
                    Some(arn) => Ok(Some(elasticache::tags_of(&client.elasticache, arn).await?)),
                    None => Err(Error::Aws {
                        operation: "DescribeReplicationGroups",
                        resource: t.to_string(),
                        code: None,
                        message: "the answer gives the group no ARN, so its tags cannot be read"
                            .into(),
                        retryable: true,
                        hint: "a later run reads it again".into(),
                    }),
                },
            }
        }
    }
}

/// Whether an error says the resource is not in a state to answer yet (ElastiCache refuses to
/// read the tags of a group that is not available: `InvalidReplicationGroupState`).
pub fn is_not_ready(e: &Error) -> bool {
    matches!(
        e.code(),
        Some(
            "InvalidReplicationGroupState"
                | "InvalidReplicationGroupStateFault"
                | "InvalidDBInstanceState"
                | "InvalidDBClusterStateFault"
        )
    )
}

/// Deletes a drill instance or cluster, without a final snapshot. Safe to repeat.
pub async fn delete_drill(client: &DbClient, kind: DbKind, id: &str) -> Result<()> {
    match kind {
        DbKind::RdsInstance => rds::delete_drill_instance(&client.rds, id).await,
        DbKind::AuroraCluster => aurora::delete_drill_cluster(&client.rds, id).await,
        DbKind::ElastiCacheGroup => elasticache::delete_drill_group(&client.elasticache, id).await,
    }
}

/// The automated backups as point-in-time recovery (a kind without it: off).
pub async fn automated_backups(client: &DbClient, t: &DbTarget) -> Pitr {
    if !t.kind.has_point_in_time() {
        return Pitr::Off;
    }
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
    client: &DbClient,
    kind: DbKind,
    prefix: &str,
) -> Result<Vec<(String, bool, Option<Timestamp>, Option<String>)>> {
    let created = |t: Option<&aws_smithy_types::DateTime>| {
        t.and_then(|t| Timestamp::from_second(t.secs()).ok())
    };
    let tag = super::drill::TAG_DRILL;
    Ok(match kind {
        DbKind::RdsInstance => rds::list_instances(&client.rds)
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
        DbKind::AuroraCluster => aurora::list_clusters(&client.rds)
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
        DbKind::ElastiCacheGroup => {
            elasticache::list_for_sweep(&client.elasticache, prefix).await?
        }
    })
}
