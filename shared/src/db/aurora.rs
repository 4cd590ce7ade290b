//! Aurora DB clusters: their selection, cluster snapshots, copies, restores and drills' deletes,
//! the same shape as [`super::rds`] (one RDS API, cluster calls). Only manual cluster snapshots
//! are ever listed for deletion; automated ones are AWS's.

use aws_sdk_rds::types::{DbCluster, DbClusterSnapshot, Tag};
use aws_sdk_rds::Client as Rds;
use jiff::Timestamp;

use super::rds::{
    has_tag, next_marker, tags, ts, RestoreShape, SnapshotInfo, TAG_MANAGED, TAG_SLOT,
};
use super::{DbFacts, DbKind};
use crate::error::{Error, Result};
use crate::selection::{Excluded, TableSelection};

pub fn snapshot_info(s: &DbClusterSnapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: s
            .db_cluster_snapshot_identifier()
            .unwrap_or_default()
            .to_owned(),
        arn: s.db_cluster_snapshot_arn().unwrap_or_default().to_owned(),
        instance: s.db_cluster_identifier().unwrap_or_default().to_owned(),
        created_at: ts(s.snapshot_create_time()),
        status: s.status().unwrap_or_default().to_owned(),
        snapshot_type: s.snapshot_type().unwrap_or_default().to_owned(),
        allocated_storage: s.allocated_storage(),
        engine: s.engine().map(str::to_owned),
        engine_version: s.engine_version().map(str::to_owned),
        encrypted: s.storage_encrypted(),
        kms_key_id: s.kms_key_id().map(str::to_owned),
        source_arn: s.source_db_cluster_snapshot_arn().map(str::to_owned),
        dbi_resource_id: s.db_cluster_resource_id().map(str::to_owned),
        tags: tags(s.tag_list()),
    }
}

/// Pure: what Backstop records of a cluster.
pub fn cluster_facts(c: &DbCluster) -> DbFacts {
    DbFacts {
        kind: Some(DbKind::AuroraCluster),
        arn: c.db_cluster_arn().map(str::to_owned),
        dbi_resource_id: c.db_cluster_resource_id().map(str::to_owned),
        status: c.status().map(str::to_owned),
        engine: c.engine().map(str::to_owned),
        engine_version: c.engine_version().map(str::to_owned),
        instance_class: c.db_cluster_instance_class().map(str::to_owned),
        allocated_storage: c.allocated_storage(),
        storage_type: c.storage_type().map(str::to_owned),
        multi_az: c.multi_az(),
        port: c.port(),
        publicly_accessible: c.publicly_accessible(),
        subnet_group: c.db_subnet_group().map(str::to_owned),
        parameter_group: c.db_cluster_parameter_group().map(str::to_owned),
        option_group: c
            .db_cluster_option_group_memberships()
            .first()
            .and_then(|g| g.db_cluster_option_group_name())
            .map(str::to_owned),
        security_groups: c
            .vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
            .collect(),
        encrypted: c.storage_encrypted(),
        kms_key_id: c.kms_key_id().map(str::to_owned),
        backup_retention_days: c.backup_retention_period(),
        backup_window: c.preferred_backup_window().map(str::to_owned),
        deletion_protection: c.deletion_protection(),
        latest_restorable: ts(c.latest_restorable_time()),
        endpoint: c
            .endpoint()
            .map(|e| format!("{e}:{}", c.port().unwrap_or_default())),
        cluster: None,
        ..DbFacts::default()
    }
}

/// Every DB cluster of the account and region (all pages).
pub async fn list_clusters(rds: &Rds) -> Result<Vec<DbCluster>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = rds
            .describe_db_clusters()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("DescribeDBClusters", "the account's DB clusters", e))?;
        out.extend(page.db_clusters().iter().cloned());
        match next_marker(
            page.marker(),
            marker.as_deref(),
            "DescribeDBClusters",
            "the account's DB clusters",
        )? {
            Some(m) => marker = Some(m),
            None => return Ok(out),
        }
    }
}

/// Whether an error says the cluster does not exist.
pub fn is_cluster_not_found(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("DBClusterNotFoundFault" | "DBClusterNotFound")
    )
}

/// One cluster, `None` when RDS does not know it.
pub async fn describe_cluster(rds: &Rds, id: &str) -> Result<Option<DbCluster>> {
    match rds
        .describe_db_clusters()
        .db_cluster_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .db_clusters()
            .iter()
            .find(|c| c.db_cluster_identifier() == Some(id))
            .cloned()),
        Err(e) => {
            let e = Error::aws("DescribeDBClusters", format!("DB cluster {id}"), e);
            if is_cluster_not_found(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// The clusters a selection names, and those left out (Backstop's drill clusters). A listed
/// cluster is taken as given; one that does not exist then fails on its own.
pub async fn resolve(
    rds: &Rds,
    selection: &TableSelection,
    drill_prefix: &str,
) -> Result<(Vec<String>, Vec<Excluded>)> {
    let drill = |id: &str| Excluded {
        table: super::DbTarget::aurora(id).name(),
        reason: "Backstop's own restore-drill cluster; never backed up".into(),
    };
    let (mut keep, mut excluded) = (Vec::new(), Vec::new());
    if let TableSelection::Names(names) = selection {
        for n in names {
            if n.starts_with(drill_prefix) {
                excluded.push(drill(n));
            } else {
                keep.push(n.clone());
            }
        }
        return Ok((keep, excluded));
    }
    for c in list_clusters(rds).await? {
        let Some(id) = c.db_cluster_identifier() else {
            continue;
        };
        // DescribeDBClusters also lists Multi-AZ DB clusters, Neptune and DocumentDB: only
        // Aurora's are this kind.
        if !c.engine().is_some_and(|e| e.starts_with("aurora")) {
            continue;
        }
        let id = &id.to_ascii_lowercase();
        let selected = match selection {
            TableSelection::Tag { key, value } => has_tag(c.tag_list(), key, value.as_deref()),
            TableSelection::Pattern(p) => glob::Pattern::new(p).is_ok_and(|g| {
                g.matches_with(
                    id,
                    glob::MatchOptions {
                        case_sensitive: false,
                        ..glob::MatchOptions::new()
                    },
                )
            }),
            other => other.matches_name(id),
        };
        if !selected {
            continue;
        }
        if id.starts_with(drill_prefix) {
            excluded.push(drill(id));
        } else {
            keep.push(id.to_owned());
        }
    }
    Ok((keep, excluded))
}

/// Whether an error says the cluster snapshot is not there.
pub fn is_snapshot_not_found(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("DBClusterSnapshotNotFoundFault" | "DBClusterSnapshotNotFound")
    )
}

/// Whether an error says the cluster snapshot identifier is taken.
pub fn is_snapshot_already_exists(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("DBClusterSnapshotAlreadyExistsFault" | "DBClusterSnapshotAlreadyExists")
    )
}

/// One cluster snapshot by its identifier, `None` when RDS does not know it.
pub async fn describe_snapshot(rds: &Rds, id: &str) -> Result<Option<SnapshotInfo>> {
    match rds
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .db_cluster_snapshots()
            .iter()
            .map(snapshot_info)
            .find(|s| s.id == id)),
        Err(e) => {
            let e = Error::aws(
                "DescribeDBClusterSnapshots",
                format!("DB cluster snapshot {id}"),
                e,
            );
            if is_snapshot_not_found(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Every manual snapshot of a cluster (all pages; automated ones dropped even when returned).
/// Any error means the listing is incomplete: the caller must not delete.
pub async fn list_manual_snapshots(rds: &Rds, cluster: &str) -> Result<Vec<SnapshotInfo>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    let resource = format!("snapshots of DB cluster {cluster}");
    loop {
        let page = rds
            .describe_db_cluster_snapshots()
            .db_cluster_identifier(cluster)
            .snapshot_type("manual")
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("DescribeDBClusterSnapshots", resource.clone(), e))?;
        out.extend(
            page.db_cluster_snapshots()
                .iter()
                .map(snapshot_info)
                .filter(|s| s.is_manual() && s.instance == cluster),
        );
        match next_marker(
            page.marker(),
            marker.as_deref(),
            "DescribeDBClusterSnapshots",
            &resource,
        )? {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

fn backstop_tags(slot: &str) -> Vec<Tag> {
    vec![
        Tag::builder().key(TAG_MANAGED).value("true").build(),
        Tag::builder().key(TAG_SLOT).value(slot).build(),
    ]
}

fn no_snapshot(operation: &'static str, resource: String) -> Error {
    Error::Aws {
        operation,
        resource,
        code: None,
        message: "the answer named no snapshot".into(),
        retryable: true,
        hint: "a retry looks for the snapshot by its name".into(),
    }
}

/// CreateDBClusterSnapshot (tagged as Backstop's).
pub async fn create_snapshot(
    rds: &Rds,
    cluster: &str,
    name: &str,
    slot: &str,
) -> Result<SnapshotInfo> {
    let resource = format!("DB cluster {cluster} (snapshot {name})");
    let out = rds
        .create_db_cluster_snapshot()
        .db_cluster_identifier(cluster)
        .db_cluster_snapshot_identifier(name)
        .set_tags(Some(backstop_tags(slot)))
        .send()
        .await
        .map_err(|e| Error::aws("CreateDBClusterSnapshot", resource.clone(), e))?;
    out.db_cluster_snapshot()
        .map(snapshot_info)
        .ok_or_else(|| no_snapshot("CreateDBClusterSnapshot", resource))
}

/// Deletes one manual cluster snapshot. Safe to repeat.
pub async fn delete_snapshot(rds: &Rds, id: &str) -> Result<crate::backups::Deleted> {
    match rds
        .delete_db_cluster_snapshot()
        .db_cluster_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(_) => Ok(crate::backups::Deleted::Now),
        Err(e) => {
            let e = Error::aws(
                "DeleteDBClusterSnapshot",
                format!("DB cluster snapshot {id}"),
                e,
            );
            if is_snapshot_not_found(&e) {
                Ok(crate::backups::Deleted::AlreadyGone)
            } else {
                Err(e)
            }
        }
    }
}

/// CopyDBClusterSnapshot on the replica region's client, from the source's ARN.
pub async fn copy_snapshot(
    replica: &Rds,
    source_arn: &str,
    name: &str,
    kms_key: Option<&str>,
    slot: &str,
) -> Result<SnapshotInfo> {
    let region = replica
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let resource = format!("DB cluster snapshot {name} in {region} (from {source_arn})");
    let out = replica
        .copy_db_cluster_snapshot()
        .source_db_cluster_snapshot_identifier(source_arn)
        .target_db_cluster_snapshot_identifier(name)
        .set_tags(Some(backstop_tags(slot)))
        .set_kms_key_id(kms_key.map(str::to_owned))
        .send()
        .await
        .map_err(|e| Error::aws("CopyDBClusterSnapshot", resource.clone(), e))?;
    out.db_cluster_snapshot()
        .map(snapshot_info)
        .ok_or_else(|| no_snapshot("CopyDBClusterSnapshot", resource))
}

/// RestoreDBClusterFromSnapshot into `new_id` (by the snapshot's identifier: moto refuses an
/// ARN), with the engine of the snapshot. The restored cluster has no instances.
pub async fn restore_from_snapshot(
    rds: &Rds,
    snapshot: &str,
    new_id: &str,
    shape: &RestoreShape,
    tags: Vec<(String, String)>,
) -> Result<()> {
    let snap = describe_snapshot(rds, snapshot)
        .await?
        .ok_or_else(|| Error::Aws {
            operation: "RestoreDBClusterFromSnapshot",
            resource: format!("DB cluster snapshot {snapshot}"),
            code: Some("DBClusterSnapshotNotFoundFault".into()),
            message: "RDS has no such cluster snapshot".into(),
            retryable: false,
            hint: "list them with aws rds describe-db-cluster-snapshots".into(),
        })?;
    rds.restore_db_cluster_from_snapshot()
        .snapshot_identifier(snapshot)
        .db_cluster_identifier(new_id)
        .set_engine(snap.engine.clone())
        .set_engine_version(snap.engine_version.clone())
        .set_db_subnet_group_name(shape.subnet_group.clone())
        .set_db_cluster_parameter_group_name(shape.parameter_group.clone())
        .set_vpc_security_group_ids(
            (!shape.security_groups.is_empty()).then(|| shape.security_groups.clone()),
        )
        .set_port(shape.port)
        .set_deletion_protection(shape.deletion_protection)
        .set_tags(Some(
            tags.into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "RestoreDBClusterFromSnapshot",
                format!("DB cluster {new_id} (from snapshot {snapshot})"),
                e,
            )
        })?;
    Ok(())
}

/// RestoreDBClusterToPointInTime from `source` into `new_id`.
pub async fn restore_to_point_in_time(
    rds: &Rds,
    source: &str,
    time: Option<Timestamp>,
    new_id: &str,
    shape: &RestoreShape,
) -> Result<()> {
    rds.restore_db_cluster_to_point_in_time()
        .source_db_cluster_identifier(source)
        .db_cluster_identifier(new_id)
        .set_restore_to_time(time.map(|t| aws_smithy_types::DateTime::from_secs(t.as_second())))
        .set_use_latest_restorable_time(time.is_none().then_some(true))
        .set_db_subnet_group_name(shape.subnet_group.clone())
        .set_db_cluster_parameter_group_name(shape.parameter_group.clone())
        .set_vpc_security_group_ids(
            (!shape.security_groups.is_empty()).then(|| shape.security_groups.clone()),
        )
        .set_port(shape.port)
        .set_deletion_protection(shape.deletion_protection)
        .set_tags(Some(vec![Tag::builder()
            .key("backstop:restored-from")
            .value(source)
            .build()]))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "RestoreDBClusterToPointInTime",
                format!("DB cluster {new_id} (from {source})"),
                e,
            )
        })?;
    Ok(())
}

/// Deletes a drill cluster without a final snapshot (deletion protection off first). Safe to
/// repeat.
pub async fn delete_drill_cluster(rds: &Rds, id: &str) -> Result<()> {
    match describe_cluster(rds, id).await? {
        None => return Ok(()),
        Some(c) if c.status() == Some("deleting") => return Ok(()),
        Some(c) if c.deletion_protection() == Some(true) => {
            rds.modify_db_cluster()
                .db_cluster_identifier(id)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        "ModifyDBCluster (deletion protection off)",
                        format!("drill DB cluster {id}"),
                        e,
                    )
                })?;
        }
        Some(_) => {}
    }
    match rds
        .delete_db_cluster()
        .db_cluster_identifier(id)
        .skip_final_snapshot(true)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = Error::aws("DeleteDBCluster", format!("drill DB cluster {id}"), e);
            if is_cluster_not_found(&e) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}
