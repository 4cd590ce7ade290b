//! RDS DB instances: their selection, snapshots, copies, restores and drills' deletes. Every
//! call names the instance or snapshot in its error. Only manual snapshots are ever listed for
//! deletion: automated ones are AWS's (they go with the instance's backup retention), and a
//! listing is filtered on `SnapshotType` here too, whatever the request asked for.

use aws_sdk_rds::types::{DbInstance, DbSnapshot, Tag};
use aws_sdk_rds::Client as Rds;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{DbFacts, DbKind};
use crate::error::{Error, Result};
use crate::selection::{Excluded, TableSelection};

/// The tag Backstop puts on every snapshot and copy it makes (with the value `true`); retention
/// trusts the catalog, not the tag, to tell what is Backstop's.
pub const TAG_MANAGED: &str = "backstop:managed";
/// The tag naming the slot a snapshot is for.
pub const TAG_SLOT: &str = "backstop:slot";

/// One DB snapshot as RDS reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub arn: String,
    pub instance: String,
    /// `SnapshotCreateTime`: the only time Backstop trusts for a snapshot (absent while it is
    /// being made).
    pub created_at: Option<Timestamp>,
    /// `creating`, `available`, `failed`, ...
    pub status: String,
    /// `manual`, `automated`, `awsbackup`, ...
    pub snapshot_type: String,
    pub allocated_storage: Option<i32>,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    /// When it is a copy: the snapshot it was copied from.
    pub source_arn: Option<String>,
    /// The instance's resource id (stays one instance's, unlike its identifier).
    pub dbi_resource_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl SnapshotInfo {
    pub fn is_available(&self) -> bool {
        self.status == "available"
    }

    pub fn is_manual(&self) -> bool {
        self.snapshot_type == "manual"
    }

    /// A snapshot that will never become available.
    pub fn has_failed(&self) -> bool {
        matches!(
            self.status.as_str(),
            "failed" | "incompatible-restore" | "incompatible-parameters" | "deleting"
        )
    }
}

pub(crate) fn ts(t: Option<&aws_smithy_types::DateTime>) -> Option<Timestamp> {
    t.and_then(|t| Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok())
}

pub(crate) fn tags(list: &[Tag]) -> Vec<(String, String)> {
    list.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub fn snapshot_info(s: &DbSnapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: s.db_snapshot_identifier().unwrap_or_default().to_owned(),
        arn: s.db_snapshot_arn().unwrap_or_default().to_owned(),
        instance: s.db_instance_identifier().unwrap_or_default().to_owned(),
        // A copy's SnapshotCreateTime is when it was copied; its original's is the data's time.
        created_at: ts(s.original_snapshot_create_time()).or_else(|| ts(s.snapshot_create_time())),
        status: s.status().unwrap_or_default().to_owned(),
        snapshot_type: s.snapshot_type().unwrap_or_default().to_owned(),
        allocated_storage: s.allocated_storage(),
        engine: s.engine().map(str::to_owned),
        engine_version: s.engine_version().map(str::to_owned),
        encrypted: s.encrypted(),
        kms_key_id: s.kms_key_id().map(str::to_owned),
        source_arn: s.source_db_snapshot_identifier().map(str::to_owned),
        dbi_resource_id: s.dbi_resource_id().map(str::to_owned),
        tags: tags(s.tag_list()),
    }
}

/// Pure: what Backstop records of an instance.
pub fn instance_facts(i: &DbInstance) -> DbFacts {
    DbFacts {
        kind: Some(DbKind::RdsInstance),
        arn: i.db_instance_arn().map(str::to_owned),
        dbi_resource_id: i.dbi_resource_id().map(str::to_owned),
        status: i.db_instance_status().map(str::to_owned),
        engine: i.engine().map(str::to_owned),
        engine_version: i.engine_version().map(str::to_owned),
        instance_class: i.db_instance_class().map(str::to_owned),
        allocated_storage: i.allocated_storage(),
        storage_type: i.storage_type().map(str::to_owned),
        multi_az: i.multi_az(),
        port: i.endpoint().and_then(|e| e.port()).or(i.db_instance_port()),
        publicly_accessible: i.publicly_accessible(),
        subnet_group: i
            .db_subnet_group()
            .and_then(|g| g.db_subnet_group_name())
            .map(str::to_owned),
        parameter_group: i
            .db_parameter_groups()
            .first()
            .and_then(|g| g.db_parameter_group_name())
            .map(str::to_owned),
        option_group: i
            .option_group_memberships()
            .first()
            .and_then(|g| g.option_group_name())
            .map(str::to_owned),
        security_groups: i
            .vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
            .collect(),
        encrypted: i.storage_encrypted(),
        kms_key_id: i.kms_key_id().map(str::to_owned),
        backup_retention_days: i.backup_retention_period(),
        backup_window: i.preferred_backup_window().map(str::to_owned),
        deletion_protection: i.deletion_protection(),
        latest_restorable: ts(i.latest_restorable_time()),
        endpoint: i
            .endpoint()
            .and_then(|e| Some(format!("{}:{}", e.address()?, e.port().unwrap_or_default()))),
        cluster: i.db_cluster_identifier().map(str::to_owned),
        ..DbFacts::default()
    }
}

/// Pure: does an instance carry the tag (`key`, and `value` when given)?
pub fn has_tag(list: &[Tag], key: &str, value: Option<&str>) -> bool {
    list.iter()
        .any(|t| t.key() == Some(key) && value.is_none_or(|v| t.value() == Some(v)))
}

/// Pure: the next page's marker, `None` after the last page. A marker that does not move
/// would page forever, and stopping there would leave the listing short: an error.
pub fn next_marker(
    got: Option<&str>,
    sent: Option<&str>,
    operation: &'static str,
    resource: &str,
) -> Result<Option<String>> {
    match got {
        None | Some("") => Ok(None),
        Some(m) if Some(m) == sent => Err(Error::Aws {
            operation,
            resource: resource.to_owned(),
            code: None,
            message: "the service answered a page with the marker it was asked for: the listing does not advance and is incomplete".into(),
            retryable: true,
            hint: "a retry may page normally; nothing is deleted on a short listing".into(),
        }),
        Some(m) => Ok(Some(m.to_owned())),
    }
}

/// Every DB instance of the account and region (all pages).
pub async fn list_instances(rds: &Rds) -> Result<Vec<DbInstance>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = rds
            .describe_db_instances()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| Error::aws("DescribeDBInstances", "the account's DB instances", e))?;
        out.extend(page.db_instances().iter().cloned());
        match next_marker(
            page.marker(),
            marker.as_deref(),
            "DescribeDBInstances",
            "the account's DB instances",
        )? {
            Some(m) => marker = Some(m),
            None => return Ok(out),
        }
    }
}

/// One instance, `None` when RDS does not know it.
pub async fn describe_instance(rds: &Rds, id: &str) -> Result<Option<DbInstance>> {
    match rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .db_instances()
            .iter()
            .find(|i| i.db_instance_identifier() == Some(id))
            .cloned()),
        Err(e) => {
            let e = Error::aws("DescribeDBInstances", format!("DB instance {id}"), e);
            if e.code() == Some("DBInstanceNotFound") || e.code() == Some("DBInstanceNotFoundFault")
            {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// The instances a selection names, and those left out with the reason: Aurora members (their
/// cluster is what can be snapshotted), Backstop's own drill instances. A listed instance is
/// taken as given; one that does not exist then fails on its own.
pub async fn resolve(
    rds: &Rds,
    selection: &TableSelection,
    drill_prefix: &str,
) -> Result<(Vec<String>, Vec<Excluded>)> {
    let listed: Vec<DbInstance> = match selection {
        TableSelection::Names(names) => {
            return Ok(names
                .iter()
                .cloned()
                .partition::<Vec<String>, _>(|n| !n.starts_with(drill_prefix)))
            .map(|(keep, drills)| {
                (
                    keep,
                    drills
                        .into_iter()
                        .map(|id| Excluded {
                            table: super::DbTarget::rds(id).name(),
                            reason: "Backstop's own restore-drill instance; never backed up".into(),
                        })
                        .collect(),
                )
            })
        }
        TableSelection::Pattern(_) | TableSelection::Tag { .. } => list_instances(rds).await?,
    };
    let (mut keep, mut excluded) = (Vec::new(), Vec::new());
    for i in listed {
        let Some(id) = i.db_instance_identifier() else {
            continue;
        };
        // RDS stores identifiers in lower case; one that is not is taken as RDS would name it.
        let id = &id.to_ascii_lowercase();
        let selected = match selection {
            TableSelection::Tag { key, value } => has_tag(i.tag_list(), key, value.as_deref()),
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
        let name = super::DbTarget::rds(id).name();
        if id.starts_with(drill_prefix) {
            excluded.push(Excluded {
                table: name,
                reason: "Backstop's own restore-drill instance; never backed up".into(),
            });
        } else if let Some(c) = i.db_cluster_identifier() {
            excluded.push(Excluded {
                table: name,
                reason: format!(
                    "a member of Aurora cluster {c}: RDS snapshots the cluster, not its instances"
                ),
            });
        } else {
            keep.push(id.to_owned());
        }
    }
    Ok((keep, excluded))
}

/// One snapshot by its identifier, `None` when RDS does not know it.
pub async fn describe_snapshot(rds: &Rds, id: &str) -> Result<Option<SnapshotInfo>> {
    match rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .db_snapshots()
            .iter()
            .map(snapshot_info)
            .find(|s| s.id == id)),
        Err(e) => {
            let e = Error::aws("DescribeDBSnapshots", format!("DB snapshot {id}"), e);
            if e.code() == Some("DBSnapshotNotFound") || e.code() == Some("DBSnapshotNotFoundFault")
            {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Every manual snapshot of an instance (all pages; automated ones are dropped even when RDS
/// returns them). Any error means the listing is incomplete: the caller must not delete.
pub async fn list_manual_snapshots(rds: &Rds, instance: &str) -> Result<Vec<SnapshotInfo>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = rds
            .describe_db_snapshots()
            .db_instance_identifier(instance)
            .snapshot_type("manual")
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "DescribeDBSnapshots",
                    format!("snapshots of DB instance {instance}"),
                    e,
                )
            })?;
        out.extend(
            page.db_snapshots()
                .iter()
                .map(snapshot_info)
                .filter(|s| s.is_manual() && s.instance == instance),
        );
        match next_marker(
            page.marker(),
            marker.as_deref(),
            "DescribeDBSnapshots",
            &format!("snapshots of DB instance {instance}"),
        )? {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    // One snapshot per identifier, whatever the pages did.
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

/// CreateDBSnapshot. An identifier RDS already has gives an error with code
/// `DBSnapshotAlreadyExists`: the caller decides whether that one is the slot's.
pub async fn create_snapshot(
    rds: &Rds,
    instance: &str,
    name: &str,
    slot: &str,
) -> Result<SnapshotInfo> {
    let out = rds
        .create_db_snapshot()
        .db_instance_identifier(instance)
        .db_snapshot_identifier(name)
        .set_tags(Some(backstop_tags(slot)))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "CreateDBSnapshot",
                format!("DB instance {instance} (snapshot {name})"),
                e,
            )
        })?;
    out.db_snapshot()
        .map(snapshot_info)
        .ok_or_else(|| Error::Aws {
            operation: "CreateDBSnapshot",
            resource: format!("DB instance {instance} (snapshot {name})"),
            code: None,
            message: "the answer named no snapshot".into(),
            retryable: true,
            hint: "a retry looks for the snapshot by its name".into(),
        })
}

/// Whether an error says the snapshot identifier is taken.
pub fn is_already_exists(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("DBSnapshotAlreadyExists" | "DBSnapshotAlreadyExistsFault")
    )
}

/// Whether an error says the snapshot is not there.
pub fn is_not_found(e: &Error) -> bool {
    matches!(
        e.code(),
        Some("DBSnapshotNotFound" | "DBSnapshotNotFoundFault")
    )
}

/// Deletes one manual snapshot. Safe to repeat: one already gone counts as deleted.
pub async fn delete_snapshot(rds: &Rds, id: &str) -> Result<crate::backups::Deleted> {
    match rds
        .delete_db_snapshot()
        .db_snapshot_identifier(id)
        .send()
        .await
    {
        Ok(_) => Ok(crate::backups::Deleted::Now),
        Err(e) => {
            let e = Error::aws("DeleteDBSnapshot", format!("DB snapshot {id}"), e);
            if is_not_found(&e) {
                Ok(crate::backups::Deleted::AlreadyGone)
            } else {
                Err(e)
            }
        }
    }
}

/// CopyDBSnapshot, called on the replica region's client with the source's ARN, encrypted with
/// `kms_key` (a key in the replica region) when given. Tagged as Backstop's.
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
    // PreSignedUrl is left out: RDS reads it only for copies between GovCloud (US) regions
    // (it is ignored elsewhere), and Backstop does not build one; see the README.
    let req = replica
        .copy_db_snapshot()
        .source_db_snapshot_identifier(source_arn)
        .target_db_snapshot_identifier(name)
        .set_tags(Some(backstop_tags(slot)))
        .set_kms_key_id(kms_key.map(str::to_owned));
    let out = req.send().await.map_err(|e| {
        Error::aws(
            "CopyDBSnapshot",
            format!("DB snapshot {name} in {region} (from {source_arn})"),
            e,
        )
    })?;
    out.db_snapshot()
        .map(snapshot_info)
        .ok_or_else(|| Error::Aws {
            operation: "CopyDBSnapshot",
            resource: format!("DB snapshot {name} in {region}"),
            code: None,
            message: "the answer named no snapshot".into(),
            retryable: true,
            hint: "a retry looks for the copy by its name".into(),
        })
}

/// Where and how a restored instance is made; unset fields take the source's recorded values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreShape {
    pub instance_class: Option<String>,
    pub subnet_group: Option<String>,
    pub parameter_group: Option<String>,
    pub option_group: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    pub multi_az: Option<bool>,
    pub publicly_accessible: Option<bool>,
    pub port: Option<i32>,
    /// Deletion protection of the new instance (drills: off, so they can delete it).
    pub deletion_protection: Option<bool>,
    /// ElastiCache: the nodes of the new group (default the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_nodes: Option<i32>,
    /// ElastiCache: the source's node groups (shards), engine and cluster mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_groups: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_mode: Option<bool>,
    /// ElastiCache: the source's engine version (a restore otherwise takes the newest, which
    /// an older parameter group's family refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// ElastiCache: encryption at rest and its KMS key, encryption in transit, data tiering
    /// and automatic failover, as the source has them (an RDS snapshot carries its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_tiering: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_failover: Option<bool>,
    /// ElastiCache: whether the source asks clients for an AUTH token. A restore of such a
    /// source needs `auth_token` or `user_groups`: it never makes an open copy of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_auth: Option<bool>,
    /// ElastiCache: the new group's AUTH token. Never recorded, printed or logged.
    #[serde(skip)]
    pub auth_token: Option<Secret>,
    /// ElastiCache: the RBAC user groups of the new group (default the source's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_groups: Vec<String>,
}

/// A value that must not be shown: `Debug` prints only that it is set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// A random token of 64 hexadecimal digits (two version 4 UUIDs: 244 random bits), for a
    /// group nobody connects to.
    pub fn random() -> Secret {
        Secret(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// The value itself, for the one request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl RestoreShape {
    /// The source's shape from its recorded facts, with `given` taking precedence.
    pub fn from_source(facts: &DbFacts, given: &RestoreShape) -> RestoreShape {
        RestoreShape {
            instance_class: given
                .instance_class
                .clone()
                .or_else(|| facts.instance_class.clone()),
            subnet_group: given
                .subnet_group
                .clone()
                .or_else(|| facts.subnet_group.clone()),
            // An RDS engine's default groups are left out: a restore takes them anyway. An
            // ElastiCache group keeps its own, default or not: default.redis7.cluster.on is
            // what makes a restore cluster mode on.
            parameter_group: given.parameter_group.clone().or_else(|| {
                facts.parameter_group.clone().filter(|g| {
                    facts.kind == Some(super::DbKind::ElastiCacheGroup)
                        || !g.starts_with("default.")
                })
            }),
            option_group: given.option_group.clone().or_else(|| {
                facts
                    .option_group
                    .clone()
                    .filter(|g| !g.starts_with("default:"))
            }),
            security_groups: if given.security_groups.is_empty() {
                facts.security_groups.clone()
            } else {
                given.security_groups.clone()
            },
            multi_az: given.multi_az.or(facts.multi_az),
            publicly_accessible: given.publicly_accessible.or(facts.publicly_accessible),
            port: given.port.or(facts.port),
            deletion_protection: given.deletion_protection,
            cache_nodes: given.cache_nodes.or(facts.cache_nodes),
            node_groups: given.node_groups.or(facts.node_groups),
            engine: given.engine.clone().or_else(|| facts.engine.clone()),
            cluster_mode: given.cluster_mode.or(facts.cluster_mode),
            engine_version: given.engine_version.clone().or_else(|| {
                facts.engine_version.as_deref().map(|v| match facts.kind {
                    Some(super::DbKind::ElastiCacheGroup) => {
                        super::elasticache::version_to_ask(facts.engine.as_deref(), v)
                    }
                    _ => v.to_owned(),
                })
            }),
            encrypted: given.encrypted.or(facts.encrypted),
            kms_key_id: given
                .kms_key_id
                .clone()
                .or_else(|| facts.kms_key_id.clone()),
            transit_encryption: given.transit_encryption.or(facts.transit_encryption),
            data_tiering: given.data_tiering.or(facts.data_tiering),
            automatic_failover: given.automatic_failover.or(facts.automatic_failover),
            source_auth: given.source_auth.or(facts.auth_token),
            auth_token: given.auth_token.clone(),
            // A token given instead replaces the source's user groups (one or the other).
            user_groups: if given.user_groups.is_empty() && given.auth_token.is_none() {
                facts.user_groups.clone()
            } else {
                given.user_groups.clone()
            },
        }
    }
}

/// RestoreDBInstanceFromDBSnapshot into `new_id`, which must not exist (RDS refuses an
/// identifier in use). Tagged as Backstop's restore.
pub async fn restore_from_snapshot(
    rds: &Rds,
    snapshot: &str,
    new_id: &str,
    shape: &RestoreShape,
    tags: Vec<(String, String)>,
) -> Result<DbInstance> {
    let out = rds
        .restore_db_instance_from_db_snapshot()
        .db_snapshot_identifier(snapshot)
        .db_instance_identifier(new_id)
        .set_db_instance_class(shape.instance_class.clone())
        .set_db_subnet_group_name(shape.subnet_group.clone())
        .set_db_parameter_group_name(shape.parameter_group.clone())
        .set_option_group_name(shape.option_group.clone())
        .set_vpc_security_group_ids(
            (!shape.security_groups.is_empty()).then(|| shape.security_groups.clone()),
        )
        .set_multi_az(shape.multi_az)
        .set_publicly_accessible(shape.publicly_accessible)
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
                "RestoreDBInstanceFromDBSnapshot",
                format!("DB instance {new_id} (from snapshot {snapshot})"),
                e,
            )
        })?;
    out.db_instance().cloned().ok_or_else(|| Error::Aws {
        operation: "RestoreDBInstanceFromDBSnapshot",
        resource: format!("DB instance {new_id}"),
        code: None,
        message: "the answer named no instance".into(),
        retryable: true,
        hint: "describe the instance to see whether it is being made".into(),
    })
}

/// RestoreDBInstanceToPointInTime from `source` at `time` (its latest restorable time when
/// `None`) into `new_id`, which must not exist.
pub async fn restore_to_point_in_time(
    rds: &Rds,
    source: &str,
    time: Option<Timestamp>,
    new_id: &str,
    shape: &RestoreShape,
) -> Result<DbInstance> {
    let out = rds
        .restore_db_instance_to_point_in_time()
        .source_db_instance_identifier(source)
        .target_db_instance_identifier(new_id)
        .set_restore_time(time.map(|t| aws_smithy_types::DateTime::from_secs(t.as_second())))
        .set_use_latest_restorable_time(time.is_none().then_some(true))
        .set_db_instance_class(shape.instance_class.clone())
        .set_db_subnet_group_name(shape.subnet_group.clone())
        .set_db_parameter_group_name(shape.parameter_group.clone())
        .set_option_group_name(shape.option_group.clone())
        .set_vpc_security_group_ids(
            (!shape.security_groups.is_empty()).then(|| shape.security_groups.clone()),
        )
        .set_multi_az(shape.multi_az)
        .set_publicly_accessible(shape.publicly_accessible)
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
                "RestoreDBInstanceToPointInTime",
                format!("DB instance {new_id} (from {source})"),
                e,
            )
        })?;
    out.db_instance().cloned().ok_or_else(|| Error::Aws {
        operation: "RestoreDBInstanceToPointInTime",
        resource: format!("DB instance {new_id}"),
        code: None,
        message: "the answer named no instance".into(),
        retryable: true,
        hint: "describe the instance to see whether it is being made".into(),
    })
}

/// Deletes a drill instance without a final snapshot, turning its deletion protection off
/// first (a restore takes the snapshot's). Safe to repeat: one already gone or being deleted
/// counts as deleted.
pub async fn delete_drill_instance(rds: &Rds, id: &str) -> Result<()> {
    match describe_instance(rds, id).await? {
        None => return Ok(()),
        Some(i) if i.db_instance_status() == Some("deleting") => return Ok(()),
        Some(i) if i.deletion_protection() == Some(true) => {
            rds.modify_db_instance()
                .db_instance_identifier(id)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        "ModifyDBInstance (deletion protection off)",
                        format!("drill DB instance {id}"),
                        e,
                    )
                })?;
        }
        Some(_) => {}
    }
    match rds
        .delete_db_instance()
        .db_instance_identifier(id)
        .skip_final_snapshot(true)
        .delete_automated_backups(true)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = Error::aws("DeleteDBInstance", format!("drill DB instance {id}"), e);
            if matches!(
                e.code(),
                Some("DBInstanceNotFound" | "DBInstanceNotFoundFault")
            ) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_that_does_not_move_is_an_error_not_the_end() {
        assert_eq!(next_marker(None, None, "X", "r").unwrap(), None);
        assert_eq!(next_marker(Some(""), Some("a"), "X", "r").unwrap(), None);
        assert_eq!(
            next_marker(Some("b"), Some("a"), "X", "r")
                .unwrap()
                .as_deref(),
            Some("b")
        );
        let e = next_marker(
            Some("a"),
            Some("a"),
            "DescribeDBSnapshots",
            "snapshots of x",
        )
        .unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("incomplete"), "{e}");
    }
}
