//! Databases beyond DynamoDB, in the same jobs as tables: a target kind, not a copy of each job.
//!
//! A database target is named `<kind>:<identifier>` (`rds:orders-db`) in reports, metrics and
//! the catalog. DynamoDB table names and S3 bucket names cannot hold a colon, so no table or
//! bucket shares a name with a database target. Its snapshots are named like a table's backups,
//! `<identifier>-backstop-<slot>` (lower case: RDS stores identifiers so), and the catalog keeps
//! one record per (job, target, slot) exactly as for tables: the snapshot job's guard against a
//! second snapshot for a slot, retention's proof of what Backstop made.
//!
//! Kinds: RDS DB instances ([`rds`]), Aurora DB clusters ([`aurora`]) and ElastiCache
//! replication groups ([`elasticache`]), through one set of calls ([`api`]).

pub mod api;
pub mod aurora;
pub mod drill;
pub mod elasticache;
pub mod rds;
pub mod restore;

use serde::{Deserialize, Serialize};

use crate::event::ScheduleSlot;

/// What a database target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbKind {
    /// An RDS DB instance (not a member of an Aurora cluster).
    RdsInstance,
    /// An Aurora DB cluster (snapshotted as a whole, whatever its instances).
    AuroraCluster,
    /// An ElastiCache replication group, Valkey or Redis OSS (snapshotted as a whole).
    ElastiCacheGroup,
}

impl DbKind {
    pub const ALL: [DbKind; 3] = [
        DbKind::RdsInstance,
        DbKind::AuroraCluster,
        DbKind::ElastiCacheGroup,
    ];

    /// The prefix of the target's name: `rds:<id>`.
    pub fn prefix(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "rds",
            DbKind::AuroraCluster => "aurora",
            DbKind::ElastiCacheGroup => "elasticache",
        }
    }

    /// In words, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "RDS instance",
            DbKind::AuroraCluster => "Aurora cluster",
            DbKind::ElastiCacheGroup => "ElastiCache replication group",
        }
    }

    /// The plural noun for a selection's description.
    pub fn plural(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "RDS instances",
            DbKind::AuroraCluster => "Aurora clusters",
            DbKind::ElastiCacheGroup => "ElastiCache replication groups",
        }
    }

    /// The API that makes a snapshot of this kind (for errors and reports).
    pub fn create_op(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "CreateDBSnapshot",
            DbKind::AuroraCluster => "CreateDBClusterSnapshot",
            DbKind::ElastiCacheGroup => "CreateSnapshot",
        }
    }

    /// The API that lists or finds this kind's snapshots.
    pub fn describe_op(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "DescribeDBSnapshots",
            DbKind::AuroraCluster => "DescribeDBClusterSnapshots",
            DbKind::ElastiCacheGroup => "DescribeSnapshots",
        }
    }

    /// The API that copies this kind's snapshots.
    pub fn copy_op(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "CopyDBSnapshot",
            DbKind::AuroraCluster => "CopyDBClusterSnapshot",
            DbKind::ElastiCacheGroup => "CopySnapshot",
        }
    }

    /// The service's code for a snapshot name in use.
    pub fn exists_code(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "DBSnapshotAlreadyExists",
            DbKind::AuroraCluster => "DBClusterSnapshotAlreadyExistsFault",
            DbKind::ElastiCacheGroup => "SnapshotAlreadyExistsFault",
        }
    }

    /// A snapshot of this kind, in words.
    pub fn snapshot_noun(self) -> &'static str {
        match self {
            DbKind::RdsInstance => "DB snapshot",
            DbKind::AuroraCluster => "DB cluster snapshot",
            DbKind::ElastiCacheGroup => "ElastiCache snapshot",
        }
    }

    /// The service, in words.
    pub fn service(self) -> &'static str {
        match self {
            DbKind::RdsInstance | DbKind::AuroraCluster => "RDS",
            DbKind::ElastiCacheGroup => "ElastiCache",
        }
    }

    /// The longest identifier the service takes for a database of this kind.
    pub fn max_id(self) -> usize {
        match self {
            DbKind::RdsInstance | DbKind::AuroraCluster => 63,
            DbKind::ElastiCacheGroup => elasticache::MAX_ID,
        }
    }

    /// Whether the service restores it to a point in time (RDS and Aurora's automated
    /// backups); ElastiCache's automatic backups are daily snapshots.
    pub fn has_point_in_time(self) -> bool {
        match self {
            DbKind::RdsInstance | DbKind::AuroraCluster => true,
            DbKind::ElastiCacheGroup => false,
        }
    }

    /// Whether its snapshots can be copied to another region by the service (ElastiCache's
    /// CopySnapshot stays in the snapshot's region).
    pub fn copies_across_regions(self) -> bool {
        match self {
            DbKind::RdsInstance | DbKind::AuroraCluster => true,
            DbKind::ElastiCacheGroup => false,
        }
    }
}

/// One database target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DbTarget {
    pub kind: DbKind,
    pub id: String,
}

impl DbTarget {
    pub fn rds(id: impl Into<String>) -> DbTarget {
        DbTarget {
            kind: DbKind::RdsInstance,
            id: id.into(),
        }
    }

    pub fn aurora(id: impl Into<String>) -> DbTarget {
        DbTarget {
            kind: DbKind::AuroraCluster,
            id: id.into(),
        }
    }

    pub fn elasticache(id: impl Into<String>) -> DbTarget {
        DbTarget {
            kind: DbKind::ElastiCacheGroup,
            id: id.into(),
        }
    }

    /// Its name in reports and the catalog: `rds:<id>`, `aurora:<id>`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.kind.prefix(), self.id)
    }

    /// The name of its copies' records in `region`: `rds:<id>@<region>`.
    pub fn replica_name(&self, region: &str) -> String {
        format!("{}@{region}", self.name())
    }

    /// Pure: the target a report or catalog name stands for (`None` for a table or bucket).
    pub fn parse(name: &str) -> Option<DbTarget> {
        let (prefix, id) = name.split_once(':')?;
        let kind = DbKind::ALL.into_iter().find(|k| k.prefix() == prefix)?;
        (!id.is_empty() && !id.contains('@')).then(|| DbTarget {
            kind,
            id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.noun(), self.id)
    }
}

/// Marks snapshot names Backstop made.
const NAME_MARK: &str = "-backstop-";

/// Pure: an identifier RDS accepts for an instance, cluster or snapshot: 1 to `max` letters,
/// digits and hyphens, a letter first, no hyphen last and no two hyphens in a row. RDS stores
/// identifiers in lower case, so upper case letters are refused here rather than changed.
pub fn check_identifier(id: &str, max: usize) -> Result<(), String> {
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if id.is_empty() || id.len() > max {
        return Err(format!("{id:?} must be 1 to {max} characters"));
    }
    if !ok_chars {
        return Err(format!(
            "{:?} may hold only lower case letters, digits and hyphens (RDS stores identifiers in lower case)",
            crate::report::clip(id, 80)
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) || id.ends_with('-') || id.contains("--") {
        return Err(format!(
            "{id:?} must start with a letter, and may not end with a hyphen or hold two in a row"
        ));
    }
    Ok(())
}

/// Pure: the slot's snapshot name for a database identifier, `<id>-backstop-<yyyymmddthhmmssz>`.
/// Identifiers are at most 63 characters, so the name (at most 89) always fits RDS's 255 and
/// keeps its rules (a letter first, no double or trailing hyphen).
pub fn snapshot_name(id: &str, slot: &ScheduleSlot) -> String {
    format!("{id}{NAME_MARK}{}", slot.compact().to_ascii_lowercase())
}

/// Pure: whether a snapshot name is one Backstop made (for any slot).
pub fn is_backstop_snapshot_name(name: &str) -> bool {
    name.rsplit_once(NAME_MARK)
        .is_some_and(|(head, slot)| !head.is_empty() && slot.len() == 16 && slot.ends_with('z'))
}

/// What Backstop records of a database with each snapshot (in the catalog's `table_shape`):
/// what a restore needs to rebuild it like the source, what a drill checks the restored copy
/// against, and what the guard compares the next time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbFacts {
    pub kind: Option<DbKind>,
    pub arn: Option<String>,
    /// The instance's resource id, which a snapshot of it carries.
    pub dbi_resource_id: Option<String>,
    pub status: Option<String>,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub instance_class: Option<String>,
    /// GiB.
    pub allocated_storage: Option<i32>,
    pub storage_type: Option<String>,
    pub multi_az: Option<bool>,
    pub port: Option<i32>,
    pub publicly_accessible: Option<bool>,
    pub subnet_group: Option<String>,
    pub parameter_group: Option<String>,
    pub option_group: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    /// Days of automated backups (0: automated backups are off).
    pub backup_retention_days: Option<i32>,
    pub backup_window: Option<String>,
    pub deletion_protection: Option<bool>,
    /// Where clients connect (`host:port`) when described (not recorded).
    #[serde(default, skip_serializing)]
    pub endpoint: Option<String>,
    /// The automated backups' latest restorable time when described (not recorded).
    #[serde(default, skip_serializing)]
    pub latest_restorable: Option<jiff::Timestamp>,
    /// An Aurora cluster it belongs to (then the cluster is what can be snapshotted).
    pub cluster: Option<String>,
    /// ElastiCache: how many clusters (nodes) the group has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_nodes: Option<i32>,
    /// ElastiCache: how many node groups (shards) the group has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_groups: Option<i32>,
    /// ElastiCache: whether cluster mode is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_mode: Option<bool>,
    /// ElastiCache: encryption in transit (TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption: Option<bool>,
    /// ElastiCache: whether clients must give an AUTH token (the token itself is never read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<bool>,
    /// ElastiCache: the RBAC user groups that control access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_groups: Vec<String>,
    /// ElastiCache: data tiering (r6gd nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_tiering: Option<bool>,
    /// ElastiCache: automatic failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_failover: Option<bool>,
}

/// What the guard expects of every selected database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardPolicy {
    /// Automated backups kept fewer days than this are reported (0 turns the check off).
    pub min_backup_retention_days: i32,
    /// Deletion protection off is reported.
    pub want_deletion_protection: bool,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            min_backup_retention_days: 7,
            want_deletion_protection: true,
        }
    }
}

/// Pure: the guard's warnings for a database's settings, against the policy and against the
/// settings recorded with its previous snapshot (`previous`, from the catalog): automated backup
/// retention, backup window and deletion protection. Like the PITR guard for tables, it warns
/// and never stops the snapshot.
pub fn guard(
    facts: &DbFacts,
    previous: Option<(&str, &DbFacts)>,
    policy: &GuardPolicy,
) -> Vec<String> {
    let mut out = Vec::new();
    let cache = facts.kind == Some(DbKind::ElastiCacheGroup);
    match facts.backup_retention_days {
        Some(0) if cache => out.push(
            "automatic backups are off (snapshot retention limit 0 days): only Backstop's snapshots remain".to_owned(),
        ),
        Some(0) => out.push(
            "automated backups are off (backup retention 0 days): there is no point-in-time recovery; only Backstop's snapshots remain".to_owned(),
        ),
        Some(d) if d < policy.min_backup_retention_days => out.push(format!(
            "automated backups are kept {d} days, fewer than the {} expected ({})",
            policy.min_backup_retention_days,
            crate::settings::ENV_RDS_MIN_BACKUP_RETENTION
        )),
        _ => {}
    }
    if policy.want_deletion_protection && facts.deletion_protection == Some(false) {
        out.push(
            "deletion protection is off: one call deletes the database (and its automated backups with it)".to_owned(),
        );
    }
    if let Some((slot, before)) = previous {
        let mut drift = |what: &str, was: Option<String>, now: Option<String>| {
            if was.is_some() && was != now {
                out.push(format!(
                    "{what} changed since the snapshot of {slot}: {} -> {}",
                    was.unwrap_or_default(),
                    now.as_deref().unwrap_or("unset")
                ));
            }
        };
        drift(
            "automated backup retention",
            before.backup_retention_days.map(|d| format!("{d} days")),
            facts.backup_retention_days.map(|d| format!("{d} days")),
        );
        drift(
            "backup window",
            before.backup_window.clone(),
            facts.backup_window.clone(),
        );
        drift(
            "deletion protection",
            before
                .deletion_protection
                .map(|d| if d { "on" } else { "off" }.to_owned()),
            facts
                .deletion_protection
                .map(|d| if d { "on" } else { "off" }.to_owned()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> ScheduleSlot {
        ScheduleSlot::parse("2026-11-22T02:00:00Z").unwrap()
    }

    #[test]
    fn target_names_round_trip_and_never_parse_tables_or_copies() {
        let t = DbTarget::rds("orders-db");
        assert_eq!(t.name(), "rds:orders-db");
        assert_eq!(DbTarget::parse(&t.name()), Some(t.clone()));
        assert_eq!(t.replica_name("eu-west-1"), "rds:orders-db@eu-west-1");
        assert_eq!(DbTarget::parse(&t.replica_name("eu-west-1")), None);
        assert_eq!(DbTarget::parse("Orders"), None);
        assert_eq!(DbTarget::parse("aurora:x"), Some(DbTarget::aurora("x")));
        assert_eq!(
            DbTarget::parse("elasticache:x"),
            Some(DbTarget::elasticache("x"))
        );
        assert_eq!(DbTarget::parse("memcached:x"), None);
        assert_eq!(DbTarget::parse("rds:"), None);
    }

    #[test]
    fn snapshot_names_show_the_slot_and_are_recognised() {
        let n = snapshot_name("orders-db", &slot());
        assert_eq!(n, "orders-db-backstop-20261122t020000z");
        assert!(is_backstop_snapshot_name(&n));
        assert!(check_identifier(&n, 255).is_ok());
        assert!(!is_backstop_snapshot_name("app-manual-20260130"));
        assert!(!is_backstop_snapshot_name("rds:orders-db-2026-11-22-02-05"));
    }

    #[test]
    fn identifiers_follow_the_rds_rules() {
        assert!(check_identifier("a", 63).is_ok());
        assert!(check_identifier("orders-db-1", 63).is_ok());
        for bad in ["", "1db", "-db", "db-", "db--x", "Orders", "db_x", "db.x"] {
            assert!(check_identifier(bad, 63).is_err(), "{bad}");
        }
        assert!(check_identifier(&"a".repeat(64), 63).is_err());
    }

    proptest::proptest! {
        #[test]
        fn every_valid_identifier_gives_a_valid_snapshot_name(id in "[a-z]([a-z0-9]|-[a-z0-9]){0,30}", secs in 0i64..4_000_000_000) {
            let slot = ScheduleSlot::new(jiff::Timestamp::from_second(secs).unwrap());
            proptest::prop_assume!(check_identifier(&id, 63).is_ok());
            let n = snapshot_name(&id, &slot);
            proptest::prop_assert!(check_identifier(&n, 255).is_ok(), "{}", n);
            proptest::prop_assert!(is_backstop_snapshot_name(&n));
        }
    }

    #[test]
    fn the_guard_reports_weak_settings_and_drift() {
        let policy = GuardPolicy::default();
        let good = DbFacts {
            backup_retention_days: Some(14),
            backup_window: Some("03:00-03:30".into()),
            deletion_protection: Some(true),
            ..DbFacts::default()
        };
        assert!(guard(&good, None, &policy).is_empty());
        assert!(guard(&good, Some(("s", &good)), &policy).is_empty());
        let weak = DbFacts {
            backup_retention_days: Some(1),
            backup_window: Some("05:00-05:30".into()),
            deletion_protection: Some(false),
            ..DbFacts::default()
        };
        let w = guard(&weak, Some(("2026-11-21T02:00:00Z", &good)), &policy);
        assert_eq!(w.len(), 5, "{w:#?}");
        assert!(w[0].contains("kept 1 days, fewer than the 7"), "{w:#?}");
        assert!(w[1].contains("deletion protection is off"));
        assert!(w[2].contains("14 days -> 1 days"));
        assert!(w[3].contains("03:00-03:30 -> 05:00-05:30"));
        assert!(w[4].contains("on -> off"));
        let off = DbFacts {
            backup_retention_days: Some(0),
            ..good.clone()
        };
        assert!(guard(&off, None, &policy)[0].contains("automated backups are off"));
        let lax = GuardPolicy {
            min_backup_retention_days: 0,
            want_deletion_protection: false,
        };
        assert!(guard(&weak, None, &lax).is_empty());
        // ElastiCache has no deletion protection to warn of, and says "automatic backups".
        let cache = DbFacts {
            kind: Some(DbKind::ElastiCacheGroup),
            backup_retention_days: Some(0),
            ..DbFacts::default()
        };
        let w = guard(&cache, None, &policy);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(w[0].contains("snapshot retention limit 0"), "{w:#?}");
    }
}
