//! ElastiCache replication groups (Valkey and Redis OSS, cluster mode on or off): their
//! selection, snapshots, restores and drills' deletes. Every call names the group or snapshot in
//! its error. Only manual snapshots are ever listed for deletion (`SnapshotSource` `manual`):
//! automatic ones are ElastiCache's (they go with the group's snapshot retention limit), and a
//! listing is filtered on the source here too, whatever the request asked for.
//!
//! What ElastiCache does not offer, and Backstop therefore does not do: Memcached has no
//! snapshots; `CopySnapshot` copies within one region only (or exports to an S3 bucket of that
//! region), so there are no cross-region copies of this kind; there is no point-in-time restore
//! (automatic backups are daily snapshots); a group has no deletion protection.

use aws_sdk_elasticache::types::{CacheCluster, ReplicationGroup, Snapshot, Tag};
use aws_sdk_elasticache::Client as ElastiCache;
use jiff::Timestamp;

use super::rds::{RestoreShape, SnapshotInfo, TAG_MANAGED, TAG_SLOT};
use super::{DbFacts, DbKind, DbTarget};
use crate::error::{Error, Result};
use crate::selection::{Excluded, TableSelection};

/// ElastiCache's limit on a replication group's identifier.
pub const MAX_ID: usize = 40;

fn ts(t: Option<&aws_smithy_types::DateTime>) -> Option<Timestamp> {
    super::rds::ts(t)
}

fn pairs(list: &[Tag]) -> Vec<(String, String)> {
    list.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn not_found(e: &Error, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}

const GROUP_NOT_FOUND: &[&str] = &["ReplicationGroupNotFoundFault", "ReplicationGroupNotFound"];
const CLUSTER_NOT_FOUND: &[&str] = &["CacheClusterNotFound", "CacheClusterNotFoundFault"];
const SNAPSHOT_NOT_FOUND: &[&str] = &["SnapshotNotFoundFault", "SnapshotNotFound"];

/// Pure: the engine version to ask a restore for, from the one a cluster reports. Valkey and
/// Redis OSS 6 and later take only major.minor ("Specific version selection is not allowed for
/// '6.2.6', please use '6.2'"); Redis OSS 5 and earlier take the full version.
pub fn version_to_ask(engine: Option<&str>, reported: &str) -> String {
    let mut parts = reported.split('.');
    let (major, minor) = (parts.next().unwrap_or_default(), parts.next());
    let modern = engine.is_some_and(|e| e.eq_ignore_ascii_case("valkey"))
        || major.parse::<u32>().is_ok_and(|m| m >= 6);
    match minor {
        Some(minor) if modern => format!("{major}.{minor}"),
        _ => reported.to_owned(),
    }
}

/// Pure: a snapshot as Backstop reads it. Its time is the earliest of its nodes'
/// `SnapshotCreateTime` (absent while it is being made). `group` is the replication group it
/// belongs to (a standalone cluster's snapshot names the cluster instead).
pub fn snapshot_info(s: &Snapshot, tags: Vec<(String, String)>) -> SnapshotInfo {
    let created_at = s
        .node_snapshots()
        .iter()
        .filter_map(|n| ts(n.snapshot_create_time()))
        .min();
    let status = s.snapshot_status().unwrap_or_default().to_owned();
    // An available snapshot whose nodes carry no time (moto's, which has no NodeSnapshots) is
    // dated by the slot Backstop tagged it with; any other stays without a time, and retention
    // never deletes a snapshot without one.
    let created_at = created_at.or_else(|| {
        (status == "available")
            .then(|| tags.iter().find(|(k, _)| k == TAG_SLOT))
            .flatten()
            .and_then(|(_, v)| v.parse().ok())
    });
    SnapshotInfo {
        id: s.snapshot_name().unwrap_or_default().to_owned(),
        arn: s.arn().unwrap_or_default().to_owned(),
        instance: s
            .replication_group_id()
            .or(s.cache_cluster_id())
            .unwrap_or_default()
            .to_owned(),
        created_at,
        status,
        snapshot_type: s.snapshot_source().unwrap_or_default().to_owned(),
        allocated_storage: None,
        engine: s.engine().map(str::to_owned),
        engine_version: s.engine_version().map(str::to_owned),
        encrypted: s.kms_key_id().map(|_| true),
        kms_key_id: s.kms_key_id().map(str::to_owned),
        source_arn: None,
        dbi_resource_id: None,
        tags,
    }
}

/// Pure: what Backstop records of a replication group (`member`: one of its clusters, for
/// what only a cluster reports: engine version, subnet and parameter groups, security groups).
pub fn group_facts(g: &ReplicationGroup, member: Option<&CacheCluster>) -> DbFacts {
    let cluster_mode = g.cluster_enabled().unwrap_or(false);
    let endpoint = g
        .configuration_endpoint()
        .or_else(|| g.node_groups().first().and_then(|n| n.primary_endpoint()));
    DbFacts {
        kind: Some(DbKind::ElastiCacheGroup),
        arn: g.arn().map(str::to_owned),
        dbi_resource_id: None,
        status: g.status().map(str::to_owned),
        engine: g
            .engine()
            .or(member.and_then(|m| m.engine()))
            .map(str::to_owned),
        engine_version: member.and_then(|m| m.engine_version()).map(str::to_owned),
        instance_class: g.cache_node_type().map(str::to_owned),
        allocated_storage: None,
        storage_type: None,
        multi_az: g
            .multi_az()
            .map(|m| m.as_str().eq_ignore_ascii_case("enabled")),
        port: endpoint.and_then(|e| e.port()),
        publicly_accessible: None,
        subnet_group: member
            .and_then(|m| m.cache_subnet_group_name())
            .map(str::to_owned),
        parameter_group: member
            .and_then(|m| m.cache_parameter_group())
            .and_then(|p| p.cache_parameter_group_name())
            .map(str::to_owned),
        option_group: None,
        security_groups: member
            .map(|m| {
                m.security_groups()
                    .iter()
                    .filter_map(|s| s.security_group_id().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        encrypted: g.at_rest_encryption_enabled(),
        kms_key_id: g.kms_key_id().map(str::to_owned),
        backup_retention_days: g.snapshot_retention_limit(),
        backup_window: g.snapshot_window().map(str::to_owned),
        deletion_protection: None,
        endpoint: endpoint
            .and_then(|e| Some(format!("{}:{}", e.address()?, e.port().unwrap_or_default()))),
        latest_restorable: None,
        cluster: None,
        cache_nodes: i32::try_from(g.member_clusters().len()).ok(),
        node_groups: i32::try_from(g.node_groups().len()).ok(),
        cluster_mode: Some(cluster_mode),
        transit_encryption: g.transit_encryption_enabled(),
        auth_token: g.auth_token_enabled(),
        user_groups: g.user_group_ids().to_vec(),
        data_tiering: g
            .data_tiering()
            .map(|d| d.as_str().eq_ignore_ascii_case("enabled")),
        automatic_failover: g
            .automatic_failover()
            .map(|a| a.as_str().eq_ignore_ascii_case("enabled")),
    }
}

/// Every replication group of the account and region (all pages).
pub async fn list_groups(ec: &ElastiCache) -> Result<Vec<ReplicationGroup>> {
    let what = "the account's ElastiCache replication groups";
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = ec
            .describe_replication_groups()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("DescribeReplicationGroups", what, e))?;
        out.extend(page.replication_groups().iter().cloned());
        match super::rds::next_marker(
            page.marker(),
            marker.as_deref(),
            "DescribeReplicationGroups",
            what,
        )? {
            Some(m) => marker = Some(m),
            None => return Ok(out),
        }
    }
}

/// One replication group, `None` when ElastiCache does not know it.
pub async fn describe_group(ec: &ElastiCache, id: &str) -> Result<Option<ReplicationGroup>> {
    match ec
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .replication_groups()
            .iter()
            .find(|g| g.replication_group_id() == Some(id))
            .cloned()),
        Err(e) => {
            let e = Error::aws(
                "DescribeReplicationGroups",
                format!("ElastiCache replication group {id}"),
                e,
            );
            if not_found(&e, GROUP_NOT_FOUND) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// A group's facts, with one of its clusters described for what only a cluster reports
/// (engine version, subnet, parameter and security groups). A member ElastiCache no longer
/// knows (replaced while the group changes) leaves those facts unknown; any other error is
/// the caller's, so that a refused DescribeCacheClusters never records a partial shape.
pub async fn describe_facts(ec: &ElastiCache, id: &str) -> Result<Option<DbFacts>> {
    let Some(g) = describe_group(ec, id).await? else {
        return Ok(None);
    };
    let member = match g.member_clusters().first() {
        Some(m) => match ec
            .describe_cache_clusters()
            .cache_cluster_id(m)
            .send()
            .await
        {
            Ok(o) => o.cache_clusters().first().cloned(),
            Err(e) => {
                let e = Error::aws(
                    "DescribeCacheClusters",
                    format!("cache cluster {m} of ElastiCache replication group {id}"),
                    e,
                );
                if not_found(&e, CLUSTER_NOT_FOUND) {
                    None
                } else {
                    return Err(e);
                }
            }
        },
        None => None,
    };
    Ok(Some(group_facts(&g, member.as_ref())))
}

/// The tags of a resource by ARN.
pub async fn tags_of(ec: &ElastiCache, arn: &str) -> Result<Vec<(String, String)>> {
    let out = ec
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| Error::aws("ListTagsForResource", format!("ElastiCache {arn}"), e))?;
    Ok(pairs(out.tag_list()))
}

/// The groups a selection names, and those left out with the reason (Backstop's own drill
/// groups). A listed group is taken as given; one that does not exist then fails on its own.
pub async fn resolve(
    ec: &ElastiCache,
    selection: &TableSelection,
    drill_prefix: &str,
) -> Result<(Vec<String>, Vec<Excluded>)> {
    let drill = |id: String| Excluded {
        table: DbTarget::elasticache(id).name(),
        reason: "Backstop's own restore-drill group; never backed up".into(),
    };
    let listed = match selection {
        TableSelection::Names(names) => {
            let (keep, drills): (Vec<String>, Vec<String>) = names
                .iter()
                .cloned()
                .partition(|n| !n.starts_with(drill_prefix));
            return Ok((keep, drills.into_iter().map(drill).collect()));
        }
        TableSelection::Pattern(_) | TableSelection::Tag { .. } => list_groups(ec).await?,
    };
    let (mut keep, mut excluded) = (Vec::new(), Vec::new());
    for g in listed {
        let Some(id) = g.replication_group_id() else {
            continue;
        };
        let id = id.to_ascii_lowercase();
        let selected = match selection {
            TableSelection::Tag { key, value } => {
                let tags = match g.arn() {
                    Some(arn) => tags_of(ec, arn).await?,
                    None => Vec::new(),
                };
                tags.iter()
                    .any(|(k, v)| k == key && value.as_deref().is_none_or(|want| want == v))
            }
            TableSelection::Pattern(p) => glob::Pattern::new(p).is_ok_and(|g| {
                g.matches_with(
                    &id,
                    glob::MatchOptions {
                        case_sensitive: false,
                        ..glob::MatchOptions::new()
                    },
                )
            }),
            other => other.matches_name(&id),
        };
        if !selected {
            continue;
        }
        if id.starts_with(drill_prefix) {
            excluded.push(drill(id));
        } else {
            keep.push(id);
        }
    }
    Ok((keep, excluded))
}

/// One snapshot by its name (with its tags), `None` when ElastiCache does not know it.
pub async fn describe_snapshot(ec: &ElastiCache, name: &str) -> Result<Option<SnapshotInfo>> {
    let found = match ec.describe_snapshots().snapshot_name(name).send().await {
        Ok(out) => out
            .snapshots()
            .iter()
            .find(|s| s.snapshot_name() == Some(name))
            .cloned(),
        Err(e) => {
            let e = Error::aws(
                "DescribeSnapshots",
                format!("ElastiCache snapshot {name}"),
                e,
            );
            if not_found(&e, SNAPSHOT_NOT_FOUND) {
                None
            } else {
                return Err(e);
            }
        }
    };
    let Some(s) = found else { return Ok(None) };
    let tags = match s.arn() {
        Some(arn) => tags_of(ec, arn).await?,
        None => Vec::new(),
    };
    Ok(Some(snapshot_info(&s, tags)))
}

/// Every manual snapshot of a group (all pages; automatic ones are dropped even when
/// ElastiCache returns them). Any error means the listing is incomplete: the caller must not
/// delete. Tags are read only for a snapshot whose nodes give no time.
pub async fn list_manual_snapshots(ec: &ElastiCache, group: &str) -> Result<Vec<SnapshotInfo>> {
    let what = format!("snapshots of ElastiCache replication group {group}");
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = ec
            .describe_snapshots()
            .replication_group_id(group)
            .snapshot_source("user")
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("DescribeSnapshots", what.clone(), e))?;
        for s in page.snapshots() {
            let mut info = snapshot_info(s, Vec::new());
            if !info.is_manual() || info.instance != group {
                continue;
            }
            if info.created_at.is_none() && !info.arn.is_empty() {
                info = snapshot_info(s, tags_of(ec, &info.arn).await?);
            }
            out.push(info);
        }
        match super::rds::next_marker(page.marker(), marker.as_deref(), "DescribeSnapshots", &what)?
        {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// CreateSnapshot of a replication group. A name ElastiCache already has gives an error with
/// code `SnapshotAlreadyExistsFault`: the caller decides whether that one is the slot's.
pub async fn create_snapshot(
    ec: &ElastiCache,
    group: &str,
    name: &str,
    slot: &str,
) -> Result<SnapshotInfo> {
    let resource = format!("ElastiCache replication group {group} (snapshot {name})");
    let out = ec
        .create_snapshot()
        .replication_group_id(group)
        .snapshot_name(name)
        .tags(tag(TAG_MANAGED, "true"))
        .tags(tag(TAG_SLOT, slot))
        .send()
        .await
        .map_err(|e| Error::aws("CreateSnapshot", resource.clone(), e))?;
    let tags = vec![
        (TAG_MANAGED.to_owned(), "true".to_owned()),
        (TAG_SLOT.to_owned(), slot.to_owned()),
    ];
    out.snapshot()
        .map(|s| snapshot_info(s, tags))
        .ok_or_else(|| Error::Aws {
            operation: "CreateSnapshot",
            resource,
            code: None,
            message: "the answer named no snapshot".into(),
            retryable: true,
            hint: "a retry looks for the snapshot by its name".into(),
        })
}

/// Whether an error says the snapshot name is taken.
pub fn is_already_exists(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("SnapshotAlreadyExistsFault" | "SnapshotAlreadyExists")
    )
}

/// Deletes one manual snapshot. Safe to repeat: one already gone counts as deleted.
pub async fn delete_snapshot(ec: &ElastiCache, name: &str) -> Result<crate::backups::Deleted> {
    match ec.delete_snapshot().snapshot_name(name).send().await {
        Ok(_) => Ok(crate::backups::Deleted::Now),
        Err(e) => {
            let e = Error::aws("DeleteSnapshot", format!("ElastiCache snapshot {name}"), e);
            if not_found(&e, SNAPSHOT_NOT_FOUND) {
                Ok(crate::backups::Deleted::AlreadyGone)
            } else {
                Err(e)
            }
        }
    }
}

/// CreateReplicationGroup seeded from `snapshot` into `new_id`, which must not exist
/// (ElastiCache refuses an identifier in use). Shaped like the source: engine and version,
/// node type, subnet and parameter groups, security groups, port, its nodes (`cache_nodes`
/// clusters, or `node_groups` shards with the same replicas each when cluster mode is on),
/// data tiering, failover (cluster mode follows from the parameter group, kept even when it
/// is a default one, and the shards), and its protection: encryption at rest (with its KMS
/// key) and in transit, and its access control (the source's RBAC user groups, or an AUTH
/// token). A source that asks for AUTH is never restored into a group that does not: without a
/// token or user groups the restore is refused before anything is made.
pub async fn restore_from_snapshot(
    ec: &ElastiCache,
    snapshot: &str,
    new_id: &str,
    shape: &RestoreShape,
    tags: Vec<(String, String)>,
) -> Result<()> {
    let resource = format!("ElastiCache replication group {new_id} (from snapshot {snapshot})");
    if shape.source_auth == Some(true) && shape.auth_token.is_none() && shape.user_groups.is_empty()
    {
        return Err(Error::refused(
            "CreateReplicationGroup",
            format!("{resource}: the source asks clients for an AUTH token, and the new group would ask for none"),
            "give the new group's token in a file (--auth-token-file) or its RBAC user groups (--user-groups)",
        ));
    }
    let nodes = shape.cache_nodes.unwrap_or(1).max(1);
    let user_groups = (!shape.user_groups.is_empty()).then(|| shape.user_groups.clone());
    // AUTH and RBAC both need TLS.
    let transit = if shape.auth_token.is_some() || user_groups.is_some() {
        Some(true)
    } else {
        shape.transit_encryption
    };
    let mut req = ec
        .create_replication_group()
        .replication_group_id(new_id)
        .replication_group_description(format!("Backstop restore of snapshot {snapshot}"))
        .snapshot_name(snapshot)
        .set_engine(shape.engine.clone())
        .set_engine_version(shape.engine_version.clone())
        .set_cache_node_type(shape.instance_class.clone())
        .set_cache_subnet_group_name(shape.subnet_group.clone())
        .set_cache_parameter_group_name(shape.parameter_group.clone())
        .set_security_group_ids(
            (!shape.security_groups.is_empty()).then(|| shape.security_groups.clone()),
        )
        .set_port(shape.port)
        .set_at_rest_encryption_enabled(shape.encrypted)
        .set_kms_key_id(
            shape
                .kms_key_id
                .clone()
                .filter(|_| shape.encrypted == Some(true)),
        )
        .set_transit_encryption_enabled(transit)
        .set_auth_token(
            shape
                .auth_token
                .as_ref()
                .filter(|_| user_groups.is_none())
                .map(|t| t.expose().to_owned()),
        )
        .set_user_group_ids(user_groups)
        .set_data_tiering_enabled(shape.data_tiering)
        .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()));
    if shape.cluster_mode == Some(true) {
        let groups = shape.node_groups.unwrap_or(1).max(1);
        let replicas = (nodes / groups - 1).max(0);
        req = req
            .num_node_groups(groups)
            .replicas_per_node_group(replicas)
            .automatic_failover_enabled(true)
            .set_multi_az_enabled(shape.multi_az.filter(|_| replicas > 0));
    } else {
        req = req.num_cache_clusters(nodes);
        // Failover and Multi-AZ need a replica: a one-node group (a drill's) has neither.
        if nodes > 1 {
            let failover = shape.automatic_failover.unwrap_or(false);
            req = req
                .automatic_failover_enabled(failover)
                .multi_az_enabled(failover && shape.multi_az.unwrap_or(false));
        }
    }
    req.send()
        .await
        .map_err(|e| Error::aws("CreateReplicationGroup", resource, e))?;
    Ok(())
}

/// Whether an error says the new group's identifier is taken.
pub fn is_group_taken(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("ReplicationGroupAlreadyExists" | "ReplicationGroupAlreadyExistsFault")
    )
}

/// Deletes a drill group with no final snapshot. Safe to repeat: one already gone or being
/// deleted counts as deleted.
pub async fn delete_drill_group(ec: &ElastiCache, id: &str) -> Result<()> {
    match describe_group(ec, id).await? {
        None => return Ok(()),
        Some(g) if g.status() == Some("deleting") => return Ok(()),
        Some(_) => {}
    }
    match ec
        .delete_replication_group()
        .replication_group_id(id)
        .retain_primary_cluster(false)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = Error::aws(
                "DeleteReplicationGroup",
                format!("drill ElastiCache replication group {id}"),
                e,
            );
            if not_found(&e, GROUP_NOT_FOUND) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// The groups with `prefix` (identifier, drill tag, created at, status), for the sweep; tags
/// are read only for those.
pub async fn list_for_sweep(
    ec: &ElastiCache,
    prefix: &str,
) -> Result<Vec<(String, bool, Option<Timestamp>, Option<String>)>> {
    let mut out = Vec::new();
    for g in list_groups(ec).await? {
        let Some(id) = g.replication_group_id().filter(|id| id.starts_with(prefix)) else {
            continue;
        };
        // A group that cannot answer for its tags yet (being made or changed) is not swept
        // this time.
        let tagged = match g.arn() {
            Some(arn) => match tags_of(ec, arn).await {
                Ok(tags) => tags
                    .iter()
                    .any(|(k, v)| k == super::drill::TAG_DRILL && v == "true"),
                Err(e) if super::api::is_not_ready(&e) => false,
                Err(e) => return Err(e),
            },
            None => false,
        };
        out.push((
            id.to_owned(),
            tagged,
            ts(g.replication_group_create_time()),
            g.status().map(str::to_owned),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticache::types::{AutomaticFailoverStatus, DataTieringStatus, NodeSnapshot};

    #[test]
    fn a_groups_protection_is_recorded_and_a_restore_shaped_by_it_never_shows_a_token() {
        let g = ReplicationGroup::builder()
            .replication_group_id("vault")
            .at_rest_encryption_enabled(true)
            .kms_key_id("key-1")
            .transit_encryption_enabled(true)
            .auth_token_enabled(true)
            .user_group_ids("app-users")
            .data_tiering(DataTieringStatus::Enabled)
            .automatic_failover(AutomaticFailoverStatus::Enabled)
            .build();
        let member = CacheCluster::builder()
            .engine_version("7.1.0")
            .cache_parameter_group(
                aws_sdk_elasticache::types::CacheParameterGroupStatus::builder()
                    .cache_parameter_group_name("default.redis7.cluster.on")
                    .build(),
            )
            .build();
        let facts = group_facts(&g, Some(&member));
        assert_eq!(facts.encrypted, Some(true));
        assert_eq!(facts.kms_key_id.as_deref(), Some("key-1"));
        assert_eq!(facts.transit_encryption, Some(true));
        assert_eq!(facts.auth_token, Some(true));
        assert_eq!(facts.user_groups, vec!["app-users".to_owned()]);
        assert_eq!(facts.data_tiering, Some(true));
        assert_eq!(facts.automatic_failover, Some(true));
        let shape = RestoreShape::from_source(
            &facts,
            &RestoreShape {
                auth_token: Some(crate::db::rds::Secret::new("s3cret-s3cret-s3cret".into())),
                ..RestoreShape::default()
            },
        );
        // An ElastiCache default parameter group is kept: it is what sets cluster mode.
        assert_eq!(
            shape.parameter_group.as_deref(),
            Some("default.redis7.cluster.on")
        );
        assert_eq!(shape.engine_version.as_deref(), Some("7.1"));
        assert_eq!(version_to_ask(Some("redis"), "6.2.6"), "6.2");
        assert_eq!(version_to_ask(Some("valkey"), "8.0.1"), "8.0");
        assert_eq!(version_to_ask(Some("redis"), "5.0.6"), "5.0.6");
        assert_eq!(version_to_ask(Some("redis"), "7.1"), "7.1");
        assert_eq!(version_to_ask(None, "7"), "7");
        assert_eq!(shape.source_auth, Some(true));
        // A token given takes the place of the source's user groups; without one they stay.
        assert!(shape.user_groups.is_empty(), "{shape:?}");
        assert_eq!(
            RestoreShape::from_source(&facts, &RestoreShape::default()).user_groups,
            vec!["app-users".to_owned()]
        );
        let shown = format!("{shape:?} {}", serde_json::to_string(&shape).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            shape.auth_token.as_ref().map(|t| t.expose()),
            Some("s3cret-s3cret-s3cret")
        );
        // An RDS engine's default group is left to the restore.
        let rds = DbFacts {
            kind: Some(DbKind::RdsInstance),
            parameter_group: Some("default.postgres16".into()),
            ..DbFacts::default()
        };
        assert_eq!(
            RestoreShape::from_source(&rds, &RestoreShape::default()).parameter_group,
            None
        );
        let a = crate::db::rds::Secret::random();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, crate::db::rds::Secret::random());
    }

    fn at(s: &str) -> aws_smithy_types::DateTime {
        aws_smithy_types::DateTime::from_secs(s.parse::<Timestamp>().unwrap().as_second())
    }

    #[test]
    fn a_snapshot_is_dated_by_its_earliest_node_and_by_its_slot_tag_only_without_one() {
        let slot = vec![(TAG_SLOT.to_owned(), "2026-11-22T02:00:00Z".to_owned())];
        let nodes = Snapshot::builder()
            .snapshot_name("g-backstop-20261122t020000z")
            .replication_group_id("g")
            .snapshot_status("available")
            .snapshot_source("manual")
            .node_snapshots(
                NodeSnapshot::builder()
                    .snapshot_create_time(at("2026-11-22T02:07:00Z"))
                    .build(),
            )
            .node_snapshots(
                NodeSnapshot::builder()
                    .snapshot_create_time(at("2026-11-22T02:05:00Z"))
                    .build(),
            )
            .build();
        let info = snapshot_info(&nodes, slot.clone());
        assert_eq!(
            info.created_at,
            Some("2026-11-22T02:05:00Z".parse().unwrap())
        );
        assert_eq!(info.instance, "g");
        assert!(info.is_manual() && info.is_available());

        let bare = Snapshot::builder()
            .snapshot_name("g-backstop-20261122t020000z")
            .replication_group_id("g")
            .snapshot_status("available")
            .snapshot_source("manual")
            .build();
        assert_eq!(
            snapshot_info(&bare, slot.clone()).created_at,
            Some("2026-11-22T02:00:00Z".parse().unwrap())
        );
        assert_eq!(snapshot_info(&bare, Vec::new()).created_at, None);
        let creating = Snapshot::builder()
            .snapshot_status("creating")
            .snapshot_source("manual")
            .build();
        assert_eq!(snapshot_info(&creating, slot).created_at, None);
        let automatic = Snapshot::builder().snapshot_source("automated").build();
        assert!(!snapshot_info(&automatic, Vec::new()).is_manual());
    }
}
