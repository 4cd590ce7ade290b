//! Restore drills of database targets, in the validate job: the newest complete Backstop
//! snapshot is restored into a new drill instance (the drill prefix, never an existing
//! identifier), with the source's subnet group, parameter and option groups and security groups
//! as recorded with the snapshot and deletion protection off; once it is available it is
//! checked against what was recorded (engine, version, storage, status), its RTO measured, and
//! it is deleted with no final snapshot.
//!
//! The drill is the same small state machine as a table's (see [`crate::drill`]), kept in the
//! same catalog items under the target's name (`DRILL#rds:<id>`): `started` (recorded), `active`
//! (the restore was accepted), `verified` (checked, level recorded), `cleaned` (the instance is
//! deleted). A restore takes RDS ten minutes or more, so later runs take the drill on from its
//! state. The best level a database drill reaches is **consistent**: Backstop has no SQL access
//! to the restored database, so it does not read its content (see the README for a SQL check of
//! your own against the drill instance).

use jiff::{SignedDuration, Timestamp};
use tracing::{info, warn};

use super::rds::{RestoreShape, Secret};
use super::{api, DbKind};
use super::{DbFacts, DbTarget};
use crate::aws::Clients;
use crate::catalog::Catalog;
use crate::drill::{self as tdrill, Drill, DrillLevel, DrillState};
use crate::error::{Error, Result};

/// The tag every drill instance carries (value `true`); the sweep deletes only instances with
/// it and the drill prefix.
pub const TAG_DRILL: &str = "backstop:drill";
/// The tag naming the instance a drill instance restores.
pub const TAG_DRILL_OF: &str = "backstop:drill-of";

/// RDS and ElastiCache statuses from which a restored database never becomes available.
const DEAD: &[&str] = &[
    "create-failed",
    "deleted",
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "incompatible-option-group",
    "storage-full",
    "inaccessible-encryption-credentials",
    "deleting",
];

/// Pure: the drill instance's identifier: the prefix, the source's identifier (cut to fit the
/// kind's `max` characters: RDS 63, ElastiCache 40) and 8 hex digits of a hash of the source
/// and the start, so that each drill has its own (RDS keeps a deleted instance's identifier for
/// a while).
pub fn drill_instance_name(prefix: &str, id: &str, at: Timestamp, max: usize) -> String {
    let hash = blake3::hash(format!("{id}@{}", at.as_second()).as_bytes()).to_hex();
    let room = max.saturating_sub(prefix.len() + 9);
    let head: String = id.chars().take(room).collect();
    let head = head.trim_end_matches('-');
    format!("{prefix}{head}-{}", &hash[..8])
}

/// Pure: whether the drill prefix makes valid names of `kind`: the prefix, one character of
/// the source and "-" and 8 hex digits must fit the service's identifier rules and length.
pub fn check_prefix(prefix: &str, kind: DbKind) -> Result<()> {
    let (max, service) = (kind.max_id(), kind.service());
    super::check_identifier(prefix.trim_end_matches('-'), max)
        .and_then(|()| {
            (prefix.len() + 10 <= max).then_some(()).ok_or_else(|| {
                format!(
                    "{:?} leaves no room for the source's name and the drill's 9-character suffix in {service}'s {max}",
                    prefix
                )
            })
        })
        .map_err(|rule| {
            let what = match kind {
                DbKind::RdsInstance => "instances",
                DbKind::AuroraCluster => "clusters",
                DbKind::ElastiCacheGroup => "replication groups",
            };
            Error::setting(
                crate::settings::ENV_DRILL_TABLE_PREFIX,
                format!("database drills name {what} with it, and {service} refuses it: {rule}"),
            )
        })
}

/// Pure: whether a drill group gets an AUTH token of its own (one nobody keeps: a drill reads
/// no content, and the copy is never open): an ElastiCache source that asks for AUTH, or may
/// (a record from before Backstop read that), and controls access by no RBAC user groups.
pub fn needs_own_token(kind: DbKind, shape: &RestoreShape) -> bool {
    kind == DbKind::ElastiCacheGroup
        && shape.user_groups.is_empty()
        && shape.source_auth != Some(false)
}

/// Pure: whether tags mark a drill instance, cluster or group of `source`.
pub fn is_drill_of(tags: &[(String, String)], source: &str) -> bool {
    let has = |k: &str, v: &str| tags.iter().any(|(tk, tv)| tk == k && tv == v);
    has(TAG_DRILL, "true") && has(TAG_DRILL_OF, source)
}

/// Pure: the snapshot identifier an RDS snapshot ARN names (`arn:…:snapshot:<id>`).
pub fn snapshot_id_of(arn: &str) -> &str {
    arn.rsplit_once(":cluster-snapshot:")
        .or_else(|| arn.rsplit_once(":snapshot:"))
        .map_or(arn, |(_, id)| id)
}

/// Pure: how a restored instance compares with what was recorded with its snapshot.
pub fn judge(restored: &DbFacts, recorded: Option<&DbFacts>) -> (DrillLevel, String) {
    let Some(recorded) = recorded else {
        return (
            DrillLevel::Failed,
            "no facts were recorded with the snapshot; nothing to compare with".into(),
        );
    };
    let mut differ = Vec::new();
    let mut same = |what: &str, a: &Option<String>, b: &Option<String>| {
        if a != b {
            differ.push(format!(
                "{what} {} (recorded {})",
                a.as_deref().unwrap_or("unknown"),
                b.as_deref().unwrap_or("unknown")
            ));
        }
    };
    same("engine", &restored.engine, &recorded.engine);
    same(
        "engine version",
        &restored.engine_version,
        &recorded.engine_version,
    );
    let cache = recorded.kind == Some(DbKind::ElastiCacheGroup);
    if cache {
        same(
            "node type",
            &restored.instance_class,
            &recorded.instance_class,
        );
    }
    match (restored.allocated_storage, recorded.allocated_storage) {
        (Some(a), Some(b)) if a >= b => {}
        // ElastiCache reports no storage: its node type stands for it.
        (None, None) if cache => {}
        (a, b) => differ.push(format!(
            "storage {} GiB (recorded {} GiB)",
            a.map_or("unknown".into(), |v| v.to_string()),
            b.map_or("unknown".into(), |v| v.to_string())
        )),
    }
    if restored.status.as_deref() != Some("available") {
        differ.push(format!(
            "status {}",
            restored.status.as_deref().unwrap_or("unknown")
        ));
    }
    if differ.is_empty() && cache {
        (
            DrillLevel::Consistent,
            format!(
                "{}{}, {}, available, as recorded with the snapshot; content not read (no Redis check)",
                restored.engine.as_deref().unwrap_or("?"),
                restored
                    .engine_version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                restored.instance_class.as_deref().unwrap_or("?")
            ),
        )
    } else if differ.is_empty() {
        (
            DrillLevel::Consistent,
            format!(
                "{} {}, {} GiB, available, as recorded with the snapshot; content not read (no SQL check)",
                restored.engine.as_deref().unwrap_or("?"),
                restored.engine_version.as_deref().unwrap_or("?"),
                restored.allocated_storage.unwrap_or_default()
            ),
        )
    } else {
        (DrillLevel::Failed, differ.join("; "))
    }
}

/// What a database drill works with.
pub struct DbDrillCtx<'a> {
    pub clients: &'a Clients,
    pub catalog: &'a Catalog,
    pub prefix: &'a str,
    pub run_id: &'a str,
}

impl DbDrillCtx<'_> {
    /// Starts a drill of `target` from its newest complete snapshot (state `started`). `None`
    /// when another run opened one first.
    pub async fn begin(&self, target: &DbTarget, now: Timestamp) -> Result<Option<Drill>> {
        check_prefix(self.prefix, target.kind)?;
        let records = self
            .catalog
            .list_targets(crate::settings::JobKind::Snapshot, Some(&target.name()))
            .await?;
        let backup = tdrill::newest_backup(&records).ok_or_else(|| Error::Aws {
            operation: "drill",
            resource: target.to_string(),
            code: None,
            message: "the catalog holds no complete snapshot of this database to drill".into(),
            retryable: false,
            hint: "run the snapshot job first".into(),
        })?;
        let drill = Drill {
            table: target.name(),
            drill_table: drill_instance_name(self.prefix, &target.id, now, target.kind.max_id()),
            backup_arn: backup.backup_arn.clone().unwrap_or_default(),
            backup_slot: backup.slot.clone(),
            backup_created_at: backup
                .backup_created_at
                .as_deref()
                .and_then(|t| t.parse().ok()),
            state: DrillState::Started,
            started_at: now,
            run_id: self.run_id.to_owned(),
            keep: false,
            restore_s: None,
            verify_s: None,
            level: None,
            detail: String::new(),
            cleaned_at: None,
            witness: None,
            witness_done: true,
            made: false,
        };
        if tdrill::put_latest(self.catalog, &drill, None).await? {
            info!(drill_instance = %drill.drill_table, snapshot = %drill.backup_arn, "database drill started");
            Ok(Some(drill))
        } else {
            Ok(None)
        }
    }

    /// The facts recorded with the drill's snapshot.
    async fn recorded(&self, drill: &Drill) -> Result<Option<DbFacts>> {
        let records = self
            .catalog
            .list_targets(crate::settings::JobKind::Snapshot, Some(&drill.table))
            .await?;
        Ok(records
            .into_iter()
            .find(|r| r.backup_arn.as_deref() == Some(drill.backup_arn.as_str()))
            .and_then(|r| r.table_shape)
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Moves the drill one state on and records it (see [`crate::drill::DrillCtx::step`]).
    pub async fn step(&self, drill: &Drill) -> Result<Drill> {
        let mut next = drill.clone();
        next.run_id = self.run_id.to_owned();
        let client = &self.clients.db();
        let Some(source) = DbTarget::parse(&drill.table) else {
            return Err(Error::Local(format!(
                "drill record {} names no database target",
                drill.table
            )));
        };
        let kind = source.kind;
        let drill_target = DbTarget {
            kind,
            id: drill.drill_table.clone(),
        };
        match drill.state {
            DrillState::Started => {
                let facts = self.recorded(drill).await?.unwrap_or_default();
                let mut shape = RestoreShape::from_source(
                    &facts,
                    &RestoreShape {
                        deletion_protection: Some(false),
                        // A drill group needs one node per shard, not the source's replicas.
                        cache_nodes: facts
                            .node_groups
                            .filter(|_| facts.cluster_mode == Some(true))
                            .or(Some(1))
                            .filter(|_| kind == DbKind::ElastiCacheGroup),
                        ..RestoreShape::default()
                    },
                );
                if needs_own_token(kind, &shape) {
                    shape.auth_token = Some(Secret::random());
                }
                let tags = vec![
                    (TAG_DRILL.to_owned(), "true".to_owned()),
                    (TAG_DRILL_OF.to_owned(), source.id.clone()),
                ];
                match api::restore_from_snapshot(
                    client,
                    kind,
                    snapshot_id_of(&drill.backup_arn),
                    &drill.drill_table,
                    &shape,
                    tags,
                )
                .await
                {
                    Ok(_) => {
                        next.state = DrillState::Active;
                        next.made = true;
                    }
                    Err(e) if api::is_target_taken(&e) => {
                        // An earlier attempt's restore was accepted when the name carries this
                        // drill's tags; one that does not is someone else's and is left alone.
                        // Tags that cannot be read yet (a group still being made refuses) are
                        // read on a later step.
                        let tags = match api::tags_of(client, &drill_target).await {
                            Ok(t) => t,
                            Err(e) if e.is_retryable() || api::is_not_ready(&e) => {
                                return Ok(drill.clone())
                            }
                            Err(e) => return Err(e),
                        };
                        match tags {
                            None => return Ok(drill.clone()),
                            Some(tags) if is_drill_of(&tags, &source.id) => {
                                next.state = DrillState::Active;
                                next.made = true;
                            }
                            Some(_) => {
                                next.state = DrillState::Verified;
                                next.level = Some(DrillLevel::Failed);
                                tdrill::note(
                                    &mut next.detail,
                                    format!("{} exists and is not this drill's: {e}", drill_target),
                                );
                            }
                        }
                    }
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        next.state = DrillState::Verified;
                        next.level = Some(DrillLevel::Failed);
                        tdrill::note(&mut next.detail, format!("the restore was refused: {e}"));
                    }
                }
            }
            DrillState::Active => match api::describe(client, &drill_target).await? {
                None => {
                    next.state = DrillState::Verified;
                    next.level = Some(DrillLevel::Failed);
                    tdrill::note(
                        &mut next.detail,
                        "the drill instance is gone before it was checked".into(),
                    );
                }
                Some(restored) => {
                    let status = restored.status.clone().unwrap_or_default();
                    if status == "available" {
                        next.restore_s = Some(tdrill::seconds_since(drill.started_at));
                        let checked = std::time::Instant::now();
                        let (level, detail) =
                            judge(&restored, self.recorded(drill).await?.as_ref());
                        next.verify_s = Some(checked.elapsed().as_secs_f64());
                        next.level = Some(level);
                        tdrill::note(&mut next.detail, detail);
                        next.state = DrillState::Verified;
                    } else if DEAD.contains(&status.as_str()) {
                        next.level = Some(DrillLevel::Failed);
                        tdrill::note(
                            &mut next.detail,
                            format!("the drill instance is {status}: it will not become available"),
                        );
                        next.state = DrillState::Verified;
                    } else {
                        return Ok(drill.clone());
                    }
                }
            },
            DrillState::Verified => {
                if !drill.drill_table.starts_with(self.prefix) {
                    return Err(Error::Local(format!(
                        "refusing to delete {}: it lacks the drill prefix {}",
                        drill.drill_table, self.prefix
                    )));
                }
                // Deleted when this drill made it, or when it carries this drill's tags: a
                // name someone else took is left to them (the operator's own credentials may
                // run a CLI drill, where IAM's tag condition does not hold).
                // `None`: it is gone already.
                let ours = if drill.made {
                    Some(true)
                } else {
                    match api::tags_of(client, &drill_target).await {
                        Ok(tags) => tags.map(|t| is_drill_of(&t, &source.id)),
                        // Read again on a later step; nothing is deleted without them.
                        Err(e) if api::is_not_ready(&e) => return Ok(drill.clone()),
                        Err(e) => return Err(e),
                    }
                };
                match ours {
                    None => {}
                    Some(true) => api::delete_drill(client, kind, &drill.drill_table).await?,
                    Some(false) => tdrill::note(
                        &mut next.detail,
                        format!(
                            "{drill_target} lacks this drill's tags ({TAG_DRILL}=true, {TAG_DRILL_OF}={}): left alone, not deleted",
                            source.id
                        ),
                    ),
                }
                next.state = DrillState::Cleaned;
                next.cleaned_at = Some(Timestamp::now());
            }
            DrillState::Cleaned => return Ok(drill.clone()),
        }
        if !tdrill::put_latest(self.catalog, &next, Some((drill, drill.state))).await? {
            return Err(Error::Aws {
                operation: "PutItem (drill)",
                resource: format!("catalog table {}", self.catalog.table_name()),
                code: Some("ConditionalCheckFailedException".into()),
                message: format!(
                    "the drill of {} was moved on by another run; this run leaves it",
                    drill.table
                ),
                retryable: true,
                hint: "the next run takes the drill on from where it stands".into(),
            });
        }
        if next.state == DrillState::Cleaned {
            tdrill::put_history(self.catalog, &next).await?;
        }
        Ok(next)
    }

    /// Steps the drill until it is cleaned or `until` passes while the instance is still being
    /// restored.
    pub async fn drive(
        &self,
        drill: Drill,
        until: Timestamp,
        poll: std::time::Duration,
    ) -> Result<Drill> {
        let mut drill = drill;
        loop {
            let before = drill.state;
            drill = self.step(&drill).await?;
            if drill.state == DrillState::Cleaned {
                return Ok(drill);
            }
            if drill.state == before {
                if Timestamp::now() >= until {
                    return Ok(drill);
                }
                tokio::time::sleep(poll).await;
            }
        }
    }

    /// Deletes drill instances and clusters of `kinds` (the prefix and the drill tag) created
    /// more than `age` ago that no open drill names: what a crashed run left behind. Returns
    /// their identifiers.
    pub async fn sweep(
        &self,
        kinds: &[DbKind],
        open: &[String],
        age: SignedDuration,
    ) -> Result<Vec<String>> {
        let now = Timestamp::now();
        let mut deleted = Vec::new();
        for kind in kinds {
            for (id, tagged, created, status) in
                api::list_for_sweep(&self.clients.db(), *kind, self.prefix).await?
            {
                if !id.starts_with(self.prefix)
                    || open.contains(&id)
                    || !tagged
                    || status.as_deref() == Some("deleting")
                {
                    continue;
                }
                match created {
                    Some(c) if now.duration_since(c) >= age => {}
                    _ => continue,
                }
                match api::delete_drill(&self.clients.db(), *kind, &id).await {
                    Ok(()) => {
                        info!(drill = %id, kind = kind.noun(), "sweep: deleted a drill left behind");
                        deleted.push(id);
                    }
                    Err(e) => warn!(drill = %id, error = %e, "sweep: could not delete"),
                }
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_too_long_for_the_kind_is_a_setting_error_and_tags_name_the_drills_source() {
        let p30 = format!("{}-", "d".repeat(30));
        assert!(check_prefix("backstop-drill-", DbKind::ElastiCacheGroup).is_ok());
        assert!(check_prefix(&p30, DbKind::RdsInstance).is_ok());
        let e = check_prefix(&p30, DbKind::ElastiCacheGroup)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ElastiCache") && e.contains("40"), "{e}");
        assert!(e.contains(crate::settings::ENV_DRILL_TABLE_PREFIX), "{e}");
        assert!(check_prefix("Drill-", DbKind::RdsInstance).is_err());
        let tags = |of: &str| {
            vec![
                (TAG_DRILL.to_owned(), "true".to_owned()),
                (TAG_DRILL_OF.to_owned(), of.to_owned()),
            ]
        };
        let shape = |auth: Option<bool>, groups: &[&str]| RestoreShape {
            source_auth: auth,
            user_groups: groups.iter().map(|g| g.to_string()).collect(),
            ..RestoreShape::default()
        };
        let cache = DbKind::ElastiCacheGroup;
        assert!(needs_own_token(cache, &shape(Some(true), &[])));
        // A record from before Backstop read AUTH: locked all the same.
        assert!(needs_own_token(cache, &shape(None, &[])));
        assert!(!needs_own_token(cache, &shape(Some(false), &[])));
        assert!(!needs_own_token(cache, &shape(Some(true), &["app-users"])));
        assert!(!needs_own_token(DbKind::RdsInstance, &shape(None, &[])));
        assert!(is_drill_of(&tags("app"), "app"));
        assert!(!is_drill_of(&tags("other"), "app"));
        assert!(!is_drill_of(&tags("app")[1..], "app"));
    }

    #[test]
    fn drill_instance_names_are_valid_distinct_and_carry_the_prefix() {
        let at: Timestamp = "2026-12-03T09:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-12-10T09:00:00Z".parse().unwrap();
        let long = format!("a{}", "-b".repeat(31));
        for max in [63, 40] {
            for id in ["orders-db", "a", long.as_str()] {
                let n = drill_instance_name("backstop-drill-", id, at, max);
                assert!(super::super::check_identifier(&n, max).is_ok(), "{n}");
                assert!(n.starts_with("backstop-drill-"), "{n}");
                assert_ne!(n, drill_instance_name("backstop-drill-", id, later, max));
            }
        }
    }

    #[test]
    fn the_snapshot_id_comes_from_its_arn() {
        assert_eq!(
            snapshot_id_of(
                "arn:aws:rds:us-east-1:123456789012:snapshot:db-backstop-20261122t020000z"
            ),
            "db-backstop-20261122t020000z"
        );
        assert_eq!(snapshot_id_of("plain"), "plain");
        assert_eq!(
            snapshot_id_of("arn:aws:rds:us-east-1:123456789012:cluster-snapshot:c-backstop-x"),
            "c-backstop-x"
        );
    }

    #[test]
    fn a_restored_instance_is_consistent_only_when_it_matches_the_record() {
        let recorded = DbFacts {
            engine: Some("postgres".into()),
            engine_version: Some("16.3".into()),
            allocated_storage: Some(20),
            status: Some("available".into()),
            ..DbFacts::default()
        };
        let (level, detail) = judge(&recorded, Some(&recorded));
        assert_eq!(level, DrillLevel::Consistent, "{detail}");
        let other = DbFacts {
            engine_version: Some("15.1".into()),
            allocated_storage: Some(10),
            status: Some("storage-full".into()),
            ..recorded.clone()
        };
        let (level, detail) = judge(&other, Some(&recorded));
        assert_eq!(level, DrillLevel::Failed);
        assert!(
            detail.contains("engine version 15.1 (recorded 16.3)"),
            "{detail}"
        );
        assert!(
            detail.contains("storage 10 GiB (recorded 20 GiB)"),
            "{detail}"
        );
        assert!(detail.contains("status storage-full"), "{detail}");
        assert_eq!(judge(&recorded, None).0, DrillLevel::Failed);
    }

    #[test]
    fn a_restored_cache_group_is_judged_by_engine_and_node_type_not_storage() {
        let recorded = DbFacts {
            kind: Some(DbKind::ElastiCacheGroup),
            engine: Some("redis".into()),
            instance_class: Some("cache.t4g.small".into()),
            status: Some("available".into()),
            ..DbFacts::default()
        };
        let (level, detail) = judge(&recorded, Some(&recorded));
        assert_eq!(level, DrillLevel::Consistent, "{detail}");
        assert!(detail.contains("cache.t4g.small, available"), "{detail}");
        let smaller = DbFacts {
            instance_class: Some("cache.t4g.micro".into()),
            ..recorded.clone()
        };
        let (level, detail) = judge(&smaller, Some(&recorded));
        assert_eq!(level, DrillLevel::Failed);
        assert!(
            detail.contains("node type cache.t4g.micro (recorded cache.t4g.small)"),
            "{detail}"
        );
    }
}
