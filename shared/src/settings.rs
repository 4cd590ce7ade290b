//! Settings: read from the Lambda environment once, overridden per invocation by the payload, and
//! validated together so that every error names the setting and the rule it broke.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::JobRequest;
use crate::retention::RetentionPolicy;
use crate::selection::TableSelection;

pub const ENV_CATALOG_TABLE: &str = "BACKSTOP_CATALOG_TABLE";
pub const ENV_TOPIC_ARN: &str = "BACKSTOP_TOPIC_ARN";
pub const ENV_METRICS_NAMESPACE: &str = "BACKSTOP_METRICS_NAMESPACE";
pub const ENV_TABLES: &str = "BACKSTOP_TABLES";
pub const ENV_TABLE_PATTERN: &str = "BACKSTOP_TABLE_PATTERN";
pub const ENV_TABLE_TAG: &str = "BACKSTOP_TABLE_TAG";
pub const ENV_ENABLE_PITR: &str = "BACKSTOP_ENABLE_PITR";
pub const ENV_CONCURRENCY: &str = "BACKSTOP_CONCURRENCY";
pub const ENV_ANOMALY_THRESHOLD: &str = "BACKSTOP_ANOMALY_THRESHOLD";
pub const ENV_DRILL_TABLE_PREFIX: &str = "BACKSTOP_DRILL_TABLE_PREFIX";
pub const ENV_BACKFILL_WINDOW: &str = "BACKSTOP_BACKFILL_WINDOW";
pub const ENV_RETENTION_POLICY: &str = "BACKSTOP_RETENTION_POLICY";
pub const ENV_EXPORT_BUCKET: &str = "BACKSTOP_EXPORT_BUCKET";
pub const ENV_EXPORT_PREFIX: &str = "BACKSTOP_EXPORT_PREFIX";
pub const ENV_EXPORT_KMS_KEY: &str = "BACKSTOP_EXPORT_KMS_KEY";
pub const ENV_EXPORT_MODE: &str = "BACKSTOP_EXPORT_MODE";
pub const ENV_EXPORT_FULL_EVERY: &str = "BACKSTOP_EXPORT_FULL_EVERY";
pub const ENV_EXPORT_SEGMENTS: &str = "BACKSTOP_EXPORT_SEGMENTS";
pub const ENV_EXPORT_FAN_OUT: &str = "BACKSTOP_EXPORT_FAN_OUT";
pub const ENV_EXPORT_NATIVE_THRESHOLD: &str = "BACKSTOP_EXPORT_NATIVE_THRESHOLD";
pub const ENV_EXPORT_FILE_BYTES: &str = "BACKSTOP_EXPORT_FILE_BYTES";
pub const ENV_EXPORT_PAGE_ITEMS: &str = "BACKSTOP_EXPORT_PAGE_ITEMS";
pub const ENV_EXPORT_TIME_BUDGET: &str = "BACKSTOP_EXPORT_TIME_BUDGET";
pub const ENV_EXPORT_RETENTION_POLICY: &str = "BACKSTOP_EXPORT_RETENTION_POLICY";
pub const ENV_BACKUP_MAX_AGE: &str = "BACKSTOP_BACKUP_MAX_AGE";
pub const ENV_EXPORT_MAX_AGE: &str = "BACKSTOP_EXPORT_MAX_AGE";
pub const ENV_PITR_MAX_LAG: &str = "BACKSTOP_PITR_MAX_LAG";
pub const ENV_DRILL_EVERY: &str = "BACKSTOP_DRILL_EVERY";
pub const ENV_DRILLS_PER_RUN: &str = "BACKSTOP_DRILLS_PER_RUN";
pub const ENV_RESTORE_PREFIX: &str = "BACKSTOP_RESTORE_PREFIX";
pub const ENV_RESTORE_TIME_BUDGET: &str = "BACKSTOP_RESTORE_TIME_BUDGET";
pub const ENV_RESTORE_PARALLEL: &str = "BACKSTOP_RESTORE_PARALLEL";
pub const ENV_BUCKETS: &str = "BACKSTOP_BUCKETS";
pub const ENV_BUCKET_PATTERN: &str = "BACKSTOP_BUCKET_PATTERN";
pub const ENV_BUCKET_TAG: &str = "BACKSTOP_BUCKET_TAG";
pub const ENV_BUCKET_PRUNE: &str = "BACKSTOP_BUCKET_PRUNE";
pub const ENV_BUCKET_TIME_BUDGET: &str = "BACKSTOP_BUCKET_TIME_BUDGET";
pub const ENV_BUCKET_INVENTORY: &str = "BACKSTOP_BUCKET_INVENTORY";
pub const ENV_BUCKET_INVENTORY_MAX_AGE: &str = "BACKSTOP_BUCKET_INVENTORY_MAX_AGE";
pub const ENV_BUCKET_BACKUP_BUCKET: &str = "BACKSTOP_BUCKET_BACKUP_BUCKET";
pub const ENV_BUCKET_BACKUP_PREFIX: &str = "BACKSTOP_BUCKET_BACKUP_PREFIX";
pub const ENV_BUCKET_KMS_KEY: &str = "BACKSTOP_BUCKET_KMS_KEY";
pub const ENV_BUCKET_MULTIPART_THRESHOLD: &str = "BACKSTOP_BUCKET_MULTIPART_THRESHOLD";
pub const ENV_BUCKET_PART_SIZE: &str = "BACKSTOP_BUCKET_PART_SIZE";
pub const ENV_BUCKET_PARALLEL: &str = "BACKSTOP_BUCKET_PARALLEL";
pub const ENV_BUCKET_PAGE_SIZE: &str = "BACKSTOP_BUCKET_PAGE_SIZE";
pub const ENV_BUCKET_ENFORCE_GUARDS: &str = "BACKSTOP_BUCKET_ENFORCE_GUARDS";
pub const ENV_BUCKET_NONCURRENT_TRANSITION_DAYS: &str =
    "BACKSTOP_BUCKET_NONCURRENT_TRANSITION_DAYS";
pub const ENV_BUCKET_NONCURRENT_EXPIRATION_DAYS: &str =
    "BACKSTOP_BUCKET_NONCURRENT_EXPIRATION_DAYS";
pub const ENV_BUCKET_RETENTION_POLICY: &str = "BACKSTOP_BUCKET_RETENTION_POLICY";
pub const ENV_REPLICA_BUCKET: &str = "BACKSTOP_REPLICA_BUCKET";
pub const ENV_REPLICA_REGION: &str = "BACKSTOP_REPLICA_REGION";
pub const ENV_REPLICA_KMS_KEY: &str = "BACKSTOP_REPLICA_KMS_KEY";
pub const ENV_TLS_ROOTS: &str = "BACKSTOP_TLS_ROOTS";
pub const ENV_RDS_INSTANCES: &str = "BACKSTOP_RDS_INSTANCES";
pub const ENV_RDS_INSTANCE_PATTERN: &str = "BACKSTOP_RDS_INSTANCE_PATTERN";
pub const ENV_RDS_INSTANCE_TAG: &str = "BACKSTOP_RDS_INSTANCE_TAG";
pub const ENV_RDS_RETENTION_POLICY: &str = "BACKSTOP_RDS_RETENTION_POLICY";
pub const ENV_RDS_MIN_BACKUP_RETENTION: &str = "BACKSTOP_RDS_MIN_BACKUP_RETENTION";
pub const ENV_RDS_EXPECT_DELETION_PROTECTION: &str = "BACKSTOP_RDS_EXPECT_DELETION_PROTECTION";
pub const ENV_AURORA_CLUSTERS: &str = "BACKSTOP_AURORA_CLUSTERS";
pub const ENV_AURORA_CLUSTER_PATTERN: &str = "BACKSTOP_AURORA_CLUSTER_PATTERN";
pub const ENV_AURORA_CLUSTER_TAG: &str = "BACKSTOP_AURORA_CLUSTER_TAG";
pub const ENV_AURORA_RETENTION_POLICY: &str = "BACKSTOP_AURORA_RETENTION_POLICY";
pub const ENV_ELASTICACHE_GROUPS: &str = "BACKSTOP_ELASTICACHE_GROUPS";
pub const ENV_ELASTICACHE_GROUP_PATTERN: &str = "BACKSTOP_ELASTICACHE_GROUP_PATTERN";
pub const ENV_ELASTICACHE_GROUP_TAG: &str = "BACKSTOP_ELASTICACHE_GROUP_TAG";
pub const ENV_ELASTICACHE_RETENTION_POLICY: &str = "BACKSTOP_ELASTICACHE_RETENTION_POLICY";
pub const ENV_DB_REPLICA_REGION: &str = "BACKSTOP_DB_REPLICA_REGION";
pub const ENV_DB_REPLICA_KMS_KEY: &str = "BACKSTOP_DB_REPLICA_KMS_KEY";
pub const ENV_DB_REPLICA_RETENTION_POLICY: &str = "BACKSTOP_DB_REPLICA_RETENTION_POLICY";

pub const DEFAULT_METRICS_NAMESPACE: &str = "Backstop";
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 50;
pub const DEFAULT_DRILL_TABLE_PREFIX: &str = "backstop-drill-";
/// How far back a slot may lie when nothing of it exists yet: EventBridge retries a delivery
/// for up to 24 hours, and a little more covers a retry at the end of that.
pub const DEFAULT_BACKFILL_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(26);

/// Every setting and its environment variable, for `--help` and the README.
pub const ALL_ENV: &[(&str, &str)] = &[
    (
        ENV_CATALOG_TABLE,
        "required; the DynamoDB table Backstop records runs and backups in",
    ),
    (
        ENV_TOPIC_ARN,
        "optional; SNS topic ARN that receives one message per run",
    ),
    (
        ENV_METRICS_NAMESPACE,
        "optional; CloudWatch namespace, default Backstop",
    ),
    (ENV_TABLES, "table selection: comma-separated table names"),
    (
        ENV_TABLE_PATTERN,
        "table selection: a name glob such as Sales* (? * [abc] [!abc])",
    ),
    (
        ENV_TABLE_TAG,
        "table selection: key=value of a table tag, such as backup:plan=daily",
    ),
    (
        ENV_ENABLE_PITR,
        "snapshot only; true to turn point-in-time recovery on where it is off, default false",
    ),
    (
        ENV_CONCURRENCY,
        "optional; tables worked on at once, 1 to 50, default 4",
    ),
    (
        ENV_ANOMALY_THRESHOLD,
        "snapshot, export; percent change of a backup's size or item count from the median of the table's last 7 complete ones that raises a warning and BackupAnomaly, 1 to 99, default 20",
    ),
    (
        ENV_BACKFILL_WINDOW,
        "export and bucket; how far in the past a slot may lie when nothing of it exists yet (a claim or checkpoint of it is always continued), such as 26h or 2d, default 26h: a backup made now stands for its own time, never an older one; dry runs are not refused",
    ),
    (
        ENV_DRILL_TABLE_PREFIX,
        "optional; name prefix of Backstop's restore-drill tables (and database drill copies), 8 to 100 of a-z A-Z 0-9 _ . -, not the start of the catalog's name nor overlapping the restore prefix, default backstop-drill-",
    ),
    (
        ENV_RESTORE_PREFIX,
        "restore function; every target table's name must start with it, default restored- (the function's role may create only such tables)",
    ),
    (
        ENV_RESTORE_TIME_BUDGET,
        "restore function; seconds of loading per invocation before it continues in a new one, default: until 2 minutes before the deadline (tests set it low)",
    ),
    (
        ENV_RESTORE_PARALLEL,
        "restore function; BatchWriteItem calls in flight while loading an export, 1 to 64, default 8",
    ),
    (
        ENV_RETENTION_POLICY,
        "retention only; keep_daily=30,keep_weekly=12,... and the floors min_complete, freshness_limit, include_unmanaged (default daily 30, weekly 12, monthly 12, yearly 7)",
    ),
    (
        ENV_EXPORT_BUCKET,
        "export: required; S3 bucket the exports go to. Retention: set it to prune exports too. Validate: export age checked, drills export the backup's moment there",
    ),
    (
        ENV_EXPORT_PREFIX,
        "export, retention and validate; key prefix in the bucket, default backstop (exports land in <prefix>/<table>/<slot>/, drills' exports in <prefix>/~drills/)",
    ),
    (
        ENV_EXPORT_KMS_KEY,
        "export and validate; KMS key ARN or alias for SSE-KMS, default SSE-S3 (AES256)",
    ),
    (
        ENV_EXPORT_MODE,
        "export only; native, logical or auto (native when PITR is on and for tables over the threshold), default auto",
    ),
    (
        ENV_EXPORT_FULL_EVERY,
        "export only; native: days between full exports, incrementals between them (0: always full), default 7",
    ),
    (
        ENV_EXPORT_SEGMENTS,
        "export only; logical: parallel scan segments, 1 to 1000, default one per GiB of table (at least 1, at most 64)",
    ),
    (
        ENV_EXPORT_FAN_OUT,
        "export only; logical: invocations that share a table's segments (the export invokes the others in Lambda), 1 to 20, default 1",
    ),
    (
        ENV_EXPORT_NATIVE_THRESHOLD,
        "export only; bytes above which auto prefers a native export, default 10000000000 (10 GB)",
    ),
    (
        ENV_EXPORT_FILE_BYTES,
        "export only; logical: uncompressed bytes per data file before a new one starts (and a checkpoint), default 16777216 (16 MiB), at least 1024",
    ),
    (
        ENV_EXPORT_PAGE_ITEMS,
        "export only; logical: items per Scan page (Limit), default unset (DynamoDB's 1 MB pages)",
    ),
    (
        ENV_EXPORT_TIME_BUDGET,
        "export only; logical: seconds of work after which an invocation starts no new data file and continues in a new invocation, default none (it stops 120 s before Lambda's deadline)",
    ),
    (
        ENV_EXPORT_RETENTION_POLICY,
        "retention only; the policy for exports, same form as the backup policy, default keep_weekly=13,keep_monthly=12,keep_yearly=7",
    ),
    (
        ENV_BACKUP_MAX_AGE,
        "validate only; the newest complete backup of each table may be at most this old (30m, 26h, 2d), default 26h",
    ),
    (
        ENV_EXPORT_MAX_AGE,
        "validate only; the newest complete export may be at most this old, or off, default 8d when BACKSTOP_EXPORT_BUCKET is set, off otherwise",
    ),
    (
        ENV_PITR_MAX_LAG,
        "validate only; PITR must be on with its latest restorable time at most this far behind now, or off (not checked), default 15m",
    ),
    (
        ENV_DRILL_EVERY,
        "validate only; each table gets a restore drill at least this often, or off, default 7d",
    ),
    (
        ENV_DRILLS_PER_RUN,
        "validate only; new drills one run starts at most (the others wait their turn), 0 to 50, default 1",
    ),
    (
        ENV_BUCKETS,
        "bucket backups; the source buckets, comma-separated (set one of this, BACKSTOP_BUCKET_PATTERN or BACKSTOP_BUCKET_TAG for the bucket job)",
    ),
    (
        ENV_BUCKET_PATTERN,
        "bucket job; back up every bucket in Backstop's region whose name matches this glob (e.g. prod-*), except the backup and replica buckets",
    ),
    (
        ENV_BUCKET_TAG,
        "bucket job; back up every bucket in Backstop's region carrying this tag (key=value, or key for any value), except the backup and replica buckets",
    ),
    (
        ENV_BUCKET_PRUNE,
        "bucket job; true: after a bucket's backup is complete, prune its backups (and the replica's) by BACKSTOP_BUCKET_RETENTION_POLICY, default true",
    ),
    (
        ENV_BUCKET_INVENTORY,
        "bucket backups; read each bucket's newest S3 Inventory report (CSV, all versions, with Size, LastModifiedDate and ETag) instead of listing it: s3://<inventory bucket>/<prefix>/{bucket}/<configuration id>, default unset (ListObjectVersions)",
    ),
    (
        ENV_BUCKET_INVENTORY_MAX_AGE,
        "bucket backups; an inventory report older than this is not used (the bucket is listed instead, with a warning), default 48h",
    ),
    (
        ENV_BUCKET_TIME_BUDGET,
        "bucket job; seconds of work after which an invocation stops at a checkpoint and continues in a new invocation, default none (it stops 120 s before Lambda's deadline)",
    ),
    (
        ENV_BUCKET_BACKUP_BUCKET,
        "bucket backups: required; the bucket that holds the copies and manifests",
    ),
    (
        ENV_BUCKET_BACKUP_PREFIX,
        "bucket backups; key prefix in the backup bucket, default buckets (each source under <prefix>/<bucket>/)",
    ),
    (
        ENV_BUCKET_KMS_KEY,
        "bucket backups; KMS key ARN or alias for SSE-KMS of the copies and manifests, default SSE-S3 (AES256)",
    ),
    (
        ENV_BUCKET_MULTIPART_THRESHOLD,
        "bucket backups and restores; bytes above which an object is copied in parts (UploadPartCopy), 5242880 to 5368709120, default 5368709120 (5 GiB, S3's CopyObject limit)",
    ),
    (
        ENV_BUCKET_PART_SIZE,
        "bucket backups and restores; bytes per UploadPartCopy part, 5242880 to 5368709120, default 536870912 (512 MiB; raised where an object would need over 10,000 parts)",
    ),
    (
        ENV_BUCKET_PARALLEL,
        "bucket backups and restores; copies in flight at once, 1 to 64, default 16",
    ),
    (
        ENV_BUCKET_PAGE_SIZE,
        "bucket backups; versions per ListObjectVersions page (one manifest part and one checkpoint each), 1 to 1000, default 1000",
    ),
    (
        ENV_BUCKET_ENFORCE_GUARDS,
        "bucket backups; true: turn versioning on and put Backstop's noncurrent-version lifecycle rule where they are off or drifted, default false (reported only)",
    ),
    (
        ENV_BUCKET_NONCURRENT_TRANSITION_DAYS,
        "bucket backups; the guard expects noncurrent versions to move to Glacier after this many days, or off, default 90",
    ),
    (
        ENV_BUCKET_NONCURRENT_EXPIRATION_DAYS,
        "bucket backups; the guard expects noncurrent versions to be deleted after this many days, or off, default 2555 (7 years)",
    ),
    (
        ENV_BUCKET_RETENTION_POLICY,
        "bucket prune; the policy for bucket backups (slots), same form as the backup policy, default keep_daily=30,keep_weekly=12,keep_monthly=12,keep_yearly=7",
    ),
    (
        ENV_REPLICA_BUCKET,
        "replicas; a bucket (in another region or account) that receives a copy of every complete export and bucket backup, under the same keys, default none",
    ),
    (
        ENV_REPLICA_REGION,
        "replicas; the replica bucket's region, default the region Backstop runs in",
    ),
    (
        ENV_REPLICA_KMS_KEY,
        "replicas; KMS key ARN or alias (in the replica's region) for SSE-KMS of the replica, default SSE-S3",
    ),
    (
        ENV_TLS_ROOTS,
        "the authorities trusted for HTTPS to AWS: amazon (Amazon Trust Services' roots, built in; the functions' default) or system (the machine's store; the CLI's default)",
    ),
    (
        ENV_RDS_INSTANCES,
        "RDS instance selection (snapshot, retention, validate): comma-separated DB instance identifiers (lower case); with a database selection the table selection may be left unset",
    ),
    (
        ENV_RDS_INSTANCE_PATTERN,
        "RDS instance selection: a glob over DB instance identifiers, such as app-*",
    ),
    (
        ENV_RDS_INSTANCE_TAG,
        "RDS instance selection: key=value (or key) of a DB instance tag",
    ),
    (
        ENV_RDS_RETENTION_POLICY,
        "retention; the policy for RDS instances' manual Backstop snapshots (by SnapshotCreateTime; automated snapshots are never touched), default the tables' policy",
    ),
    (
        ENV_RDS_MIN_BACKUP_RETENTION,
        "snapshot; the guard warns when an instance keeps automated backups fewer days than this, 0 to 35, default 7 (0: only when they are off)",
    ),
    (
        ENV_RDS_EXPECT_DELETION_PROTECTION,
        "snapshot; true (default) to warn when an instance's deletion protection is off",
    ),
    (
        ENV_AURORA_CLUSTERS,
        "Aurora cluster selection (snapshot, retention, validate): comma-separated DB cluster identifiers (lower case)",
    ),
    (
        ENV_AURORA_CLUSTER_PATTERN,
        "Aurora cluster selection: a glob over DB cluster identifiers",
    ),
    (
        ENV_AURORA_CLUSTER_TAG,
        "Aurora cluster selection: key=value (or key) of a DB cluster tag",
    ),
    (
        ENV_AURORA_RETENTION_POLICY,
        "retention; the policy for Aurora clusters' manual Backstop cluster snapshots, default the tables' policy",
    ),
    (
        ENV_ELASTICACHE_GROUPS,
        "ElastiCache selection (snapshot, retention, validate): comma-separated replication group identifiers (Valkey or Redis OSS; lower case)",
    ),
    (
        ENV_ELASTICACHE_GROUP_PATTERN,
        "ElastiCache selection: a glob over replication group identifiers",
    ),
    (
        ENV_ELASTICACHE_GROUP_TAG,
        "ElastiCache selection: key=value (or key) of a replication group tag",
    ),
    (
        ENV_ELASTICACHE_RETENTION_POLICY,
        "retention; the policy for ElastiCache groups' manual Backstop snapshots (automatic snapshots are never touched), default the tables' policy",
    ),
    (
        ENV_DB_REPLICA_REGION,
        "snapshot, retention; optional region every completed database snapshot is copied to",
    ),
    (
        ENV_DB_REPLICA_KMS_KEY,
        "snapshot; KMS key (id or ARN in the replica region) that encrypts the copies; required for encrypted snapshots",
    ),
    (
        ENV_DB_REPLICA_RETENTION_POLICY,
        "retention; the policy for the copies in the replica region, default the kind's policy",
    ),
];

/// The databases a run works on besides tables (see [`crate::db`]), and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DatabaseSettings {
    /// RDS instances (identifiers), when selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds: Option<TableSelection>,
    pub guard: crate::db::GuardPolicy,
    /// Retention only: the policy for RDS instances' snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds_policy: Option<RetentionPolicy>,
    /// Aurora clusters (identifiers), when selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aurora: Option<TableSelection>,
    /// Retention only: the policy for Aurora clusters' snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aurora_policy: Option<RetentionPolicy>,
    /// ElastiCache replication groups (identifiers), when selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticache: Option<TableSelection>,
    /// Retention only: the policy for ElastiCache groups' snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticache_policy: Option<RetentionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<DbReplica>,
}

impl DatabaseSettings {
    /// Whether any database is selected.
    pub fn any(&self) -> bool {
        self.rds.is_some() || self.aurora.is_some() || self.elasticache.is_some()
    }

    /// The selection of one kind.
    pub fn selection(&self, kind: crate::db::DbKind) -> Option<&TableSelection> {
        match kind {
            crate::db::DbKind::RdsInstance => self.rds.as_ref(),
            crate::db::DbKind::AuroraCluster => self.aurora.as_ref(),
            crate::db::DbKind::ElastiCacheGroup => self.elasticache.as_ref(),
        }
    }

    /// Retention only: the policy of one kind.
    pub fn policy(&self, kind: crate::db::DbKind) -> Option<&RetentionPolicy> {
        match kind {
            crate::db::DbKind::RdsInstance => self.rds_policy.as_ref(),
            crate::db::DbKind::AuroraCluster => self.aurora_policy.as_ref(),
            crate::db::DbKind::ElastiCacheGroup => self.elasticache_policy.as_ref(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.any()
    }
}

/// Where completed database snapshots are copied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbReplica {
    pub region: String,
    pub kms_key: Option<String>,
    /// Retention only: the copies' policy (default: the kind's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RetentionPolicy>,
}

/// The database settings from the environment. A payload that selects tables selects only
/// them: no database is part of that run.
fn resolve_databases(
    env: &Environment,
    job: JobKind,
    o: &Overrides,
    table_policy: Option<&RetentionPolicy>,
) -> Result<DatabaseSettings> {
    let mut out = DatabaseSettings::default();
    if matches!(job, JobKind::Export | JobKind::Bucket) || payload_selects(o) {
        return Ok(out);
    }
    out.rds = db_selection(
        env,
        [
            ENV_RDS_INSTANCES,
            ENV_RDS_INSTANCE_PATTERN,
            ENV_RDS_INSTANCE_TAG,
        ],
        "RDS instance",
        63,
    )?;
    out.aurora = db_selection(
        env,
        [
            ENV_AURORA_CLUSTERS,
            ENV_AURORA_CLUSTER_PATTERN,
            ENV_AURORA_CLUSTER_TAG,
        ],
        "Aurora cluster",
        63,
    )?;
    out.elasticache = db_selection(
        env,
        [
            ENV_ELASTICACHE_GROUPS,
            ENV_ELASTICACHE_GROUP_PATTERN,
            ENV_ELASTICACHE_GROUP_TAG,
        ],
        "ElastiCache replication group",
        crate::db::elasticache::MAX_ID,
    )?;
    if !out.any() {
        // The rest applies to selected databases only.
        return Ok(out);
    }
    out.guard = crate::db::GuardPolicy {
        min_backup_retention_days: match env.get(ENV_RDS_MIN_BACKUP_RETENTION) {
            Some(v) => number(ENV_RDS_MIN_BACKUP_RETENTION, v, 0..=35)?,
            None => 7,
        },
        want_deletion_protection: match env.get(ENV_RDS_EXPECT_DELETION_PROTECTION) {
            Some(v) => parse_bool(ENV_RDS_EXPECT_DELETION_PROTECTION, v)?,
            None => true,
        },
    };
    let kind_policy = |name: &str| -> Result<RetentionPolicy> {
        Ok(match env.get(name) {
            Some(v) => check_policy(name, RetentionPolicy::parse(v))?,
            None => table_policy
                .cloned()
                .unwrap_or_else(RetentionPolicy::runbook_default),
        })
    };
    if job == JobKind::Retention && out.rds.is_some() {
        out.rds_policy = Some(kind_policy(ENV_RDS_RETENTION_POLICY)?);
    }
    if job == JobKind::Retention && out.aurora.is_some() {
        out.aurora_policy = Some(kind_policy(ENV_AURORA_RETENTION_POLICY)?);
    }
    if job == JobKind::Retention && out.elasticache.is_some() {
        out.elasticache_policy = Some(kind_policy(ENV_ELASTICACHE_RETENTION_POLICY)?);
    }
    if let Some(region) = env.get(ENV_DB_REPLICA_REGION) {
        let region = region.trim();
        let ok = region.len() <= 32
            && region.split('-').count() >= 3
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(Error::setting(
                ENV_DB_REPLICA_REGION,
                format!(
                    "{:?} is not a region name such as eu-west-1",
                    truncate_for_message(region)
                ),
            ));
        }
        if env.get("AWS_REGION").or(env.get("AWS_DEFAULT_REGION")) == Some(region) {
            return Err(Error::setting(
                ENV_DB_REPLICA_REGION,
                format!("{region} is the region the databases are in: a replica must be in another region"),
            ));
        }
        out.replica = Some(DbReplica {
            region: region.to_owned(),
            kms_key: env.get(ENV_DB_REPLICA_KMS_KEY).map(str::to_owned),
            policy: match (job, env.get(ENV_DB_REPLICA_RETENTION_POLICY)) {
                (JobKind::Retention, Some(v)) => Some(check_policy(
                    ENV_DB_REPLICA_RETENTION_POLICY,
                    RetentionPolicy::parse(v),
                )?),
                // None: each kind's copies follow that kind's policy.
                (JobKind::Retention, None) => None,
                _ => None,
            },
        });
    }
    Ok(out)
}

/// Where copies of complete backups go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaSettings {
    pub bucket: String,
    pub region: Option<String>,
    pub kms_key: Option<String>,
}

/// The settings of bucket backups, restores and prunes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketSettings {
    pub buckets: Vec<String>,
    pub backup_bucket: String,
    pub prefix: String,
    pub kms_key: Option<String>,
    pub options: crate::bucket::backup::BackupOptions,
    pub policy: RetentionPolicy,
    pub replica: Option<ReplicaSettings>,
    /// The bucket job prunes each bucket's backups after its backup is complete.
    pub prune: bool,
    /// Work per invocation before a continuation (default: up to the deadline's margin).
    pub time_budget: Option<std::time::Duration>,
    /// Set by a continuation payload: how many invocations came before this one.
    pub continuation: u32,
}

impl BucketSettings {
    /// The store the settings name.
    pub fn store(&self) -> crate::bucket::Store {
        crate::bucket::Store::new(&self.backup_bucket, &self.prefix, self.kms_key.clone())
    }

    /// The replica's store (same prefix as the original), if one is configured.
    pub fn replica_store(&self) -> Option<crate::bucket::Store> {
        self.replica
            .as_ref()
            .map(|r| crate::bucket::Store::new(&r.bucket, &self.prefix, r.kms_key.clone()))
    }

    pub fn copy_options(&self) -> crate::bucket::restore::CopyOptions {
        crate::bucket::restore::CopyOptions {
            multipart_threshold: self.options.multipart_threshold,
            part_size: self.options.part_size,
            parallel: self.options.parallel,
        }
    }

    /// Reads and checks every bucket setting.
    pub fn resolve(env: &Environment) -> Result<BucketSettings> {
        use crate::bucket::backup::{BackupOptions, GuardPolicy};
        use crate::bucket::check_bucket_name;
        let buckets = env
            .get(ENV_BUCKETS)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|b| !b.is_empty())
                    .map(|b| {
                        check_bucket_name(b)
                            .map(|()| b.to_owned())
                            .map_err(|rule| Error::setting(ENV_BUCKETS, rule))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        let backup_bucket = env.get(ENV_BUCKET_BACKUP_BUCKET).ok_or_else(|| {
            Error::setting(
                ENV_BUCKET_BACKUP_BUCKET,
                "required: the bucket that holds bucket backups",
            )
        })?;
        check_bucket_name(backup_bucket)
            .map_err(|rule| Error::setting(ENV_BUCKET_BACKUP_BUCKET, rule))?;
        if buckets.iter().any(|b| b == backup_bucket) {
            return Err(Error::setting(
                ENV_BUCKETS,
                format!("{backup_bucket} is the backup bucket itself: a bucket cannot hold its own backups"),
            ));
        }
        const MIB5: i64 = 5 * 1024 * 1024;
        const GIB5: i64 = 5 * 1024 * 1024 * 1024;
        let bytes = |name: &str, default: i64| match env.get(name) {
            Some(v) => number(name, v, MIB5..=GIB5),
            None => Ok(default),
        };
        let days = |name: &str, default: i32| match env.get(name) {
            Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
            Some(v) => number(name, v, 1..=36_500).map(Some),
            None => Ok(Some(default)),
        };
        let defaults = BackupOptions::default();
        let options = BackupOptions {
            multipart_threshold: bytes(
                ENV_BUCKET_MULTIPART_THRESHOLD,
                defaults.multipart_threshold,
            )?,
            part_size: bytes(ENV_BUCKET_PART_SIZE, defaults.part_size)?,
            page_size: match env.get(ENV_BUCKET_PAGE_SIZE) {
                Some(v) => number(ENV_BUCKET_PAGE_SIZE, v, 1..=1000)?,
                None => defaults.page_size,
            },
            parallel: match env.get(ENV_BUCKET_PARALLEL) {
                Some(v) => number(ENV_BUCKET_PARALLEL, v, 1..=64)?,
                None => defaults.parallel,
            },
            guards: GuardPolicy {
                enforce: match env.get(ENV_BUCKET_ENFORCE_GUARDS) {
                    Some(v) => parse_bool(ENV_BUCKET_ENFORCE_GUARDS, v)?,
                    None => false,
                },
                noncurrent_transition_days: days(ENV_BUCKET_NONCURRENT_TRANSITION_DAYS, 90)?,
                noncurrent_expiration_days: days(ENV_BUCKET_NONCURRENT_EXPIRATION_DAYS, 2555)?,
            },
            inventory: match env.get(ENV_BUCKET_INVENTORY) {
                None => None,
                Some(v) => {
                    let max_age = match env.get(ENV_BUCKET_INVENTORY_MAX_AGE) {
                        Some(a) => parse_duration_setting(ENV_BUCKET_INVENTORY_MAX_AGE, a, false)?
                            .unwrap_or(jiff::SignedDuration::from_hours(48)),
                        None => jiff::SignedDuration::from_hours(48),
                    };
                    Some(
                        crate::bucket::inventory::InventorySource::parse(v, max_age)
                            .map_err(|rule| Error::setting(ENV_BUCKET_INVENTORY, rule))?,
                    )
                }
            },
            backfill_window: backfill_window(env)?,
        };
        let policy = match env.get(ENV_BUCKET_RETENTION_POLICY) {
            Some(v) => check_policy(ENV_BUCKET_RETENTION_POLICY, RetentionPolicy::parse(v))?,
            None => RetentionPolicy::runbook_default(),
        };
        Ok(BucketSettings {
            buckets,
            backup_bucket: backup_bucket.to_owned(),
            prefix: env
                .get(ENV_BUCKET_BACKUP_PREFIX)
                .unwrap_or("buckets")
                .trim_matches('/')
                .to_owned(),
            kms_key: env.get(ENV_BUCKET_KMS_KEY).map(str::to_owned),
            options,
            policy,
            prune: match env.get(ENV_BUCKET_PRUNE) {
                Some(v) => parse_bool(ENV_BUCKET_PRUNE, v)?,
                None => true,
            },
            time_budget: match env.get(ENV_BUCKET_TIME_BUDGET) {
                Some(v) => Some(std::time::Duration::from_secs(number(
                    ENV_BUCKET_TIME_BUDGET,
                    v,
                    0..=900,
                )?)),
                None => None,
            },
            continuation: 0,
            replica: resolve_replica(env, backup_bucket)?,
        })
    }
}

/// The replica setting (`BACKSTOP_REPLICA_*`), which must name another bucket than `original`.
pub fn resolve_replica(env: &Environment, original: &str) -> Result<Option<ReplicaSettings>> {
    let Some(b) = env.get(ENV_REPLICA_BUCKET) else {
        return Ok(None);
    };
    crate::bucket::check_bucket_name(b).map_err(|rule| Error::setting(ENV_REPLICA_BUCKET, rule))?;
    if b == original {
        return Err(Error::setting(
            ENV_REPLICA_BUCKET,
            format!("is {original}, the bucket it would be a replica of: a replica must be another bucket"),
        ));
    }
    Ok(Some(ReplicaSettings {
        bucket: b.to_owned(),
        region: env.get(ENV_REPLICA_REGION).map(str::to_owned),
        kms_key: env.get(ENV_REPLICA_KMS_KEY).map(str::to_owned),
    }))
}

/// The job a function runs. Each job validates only the settings it uses, so that a typo in one
/// job's setting never stops another job. Code that differs per job matches on it without a
/// wildcard, so a new job does not compile until each of those places says what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Snapshot,
    Export,
    Retention,
    Validate,
    Bucket,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::Snapshot,
        JobKind::Export,
        JobKind::Retention,
        JobKind::Validate,
        JobKind::Bucket,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JobKind::Snapshot => "snapshot",
            JobKind::Export => "export",
            JobKind::Retention => "retention",
            JobKind::Validate => "validate",
            JobKind::Bucket => "bucket",
        }
    }
}

impl std::str::FromStr for JobKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        JobKind::ALL
            .into_iter()
            .find(|j| j.name() == s)
            .ok_or_else(|| format!("{:?} is not a Backstop job", truncate_for_message(s)))
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The settings of one run, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub catalog_table: String,
    pub topic_arn: Option<String>,
    pub metrics_namespace: String,
    pub selection: TableSelection,
    /// Set when a retention payload narrowed a tag selection to a list: each listed table must
    /// still carry this tag, checked when the selection is resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<TableSelection>,
    pub concurrency: usize,
    /// A backup whose size or item count differs from its baseline by more than this many
    /// percent is an anomaly (see [`crate::anomaly`]).
    pub anomaly_threshold_pct: f64,
    pub drill_table_prefix: String,
    /// How far in the past a new slot may lie (exports and bucket backups); see
    /// [`crate::event::check_backfill`].
    #[serde(serialize_with = "ser_duration")]
    pub backfill_window: jiff::SignedDuration,
    /// Databases (RDS instances) the snapshot and retention jobs work on besides tables.
    #[serde(default, skip_serializing_if = "DatabaseSettings::is_empty")]
    pub databases: DatabaseSettings,
    /// The settings only this job reads.
    pub job: JobSettings,
}

/// The settings each job owns. Resolved only for the job that runs, so a broken setting of one
/// job never stops another.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum JobSettings {
    Snapshot {
        /// Turn point-in-time recovery on where it is off.
        enable_pitr: bool,
    },
    Export(Box<ExportSettings>),
    Retention {
        /// Checked: it compiles (see [`RetentionPolicy::compile`]). Boxed: it is large.
        policy: Box<RetentionPolicy>,
        /// Set when an export bucket is configured: retention prunes exports too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exports: Option<Box<ExportRetention>>,
    },
    Validate(Box<ValidateSettings>),
    Bucket(Box<BucketSettings>),
}

/// The validate job's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidateSettings {
    /// Newest complete backup at most this old.
    #[serde(serialize_with = "ser_duration")]
    pub backup_max_age: jiff::SignedDuration,
    /// Newest complete export at most this old (`None`: exports not checked).
    #[serde(serialize_with = "ser_opt_duration")]
    pub export_max_age: Option<jiff::SignedDuration>,
    /// PITR on and at most this far behind (`None`: PITR not checked).
    #[serde(serialize_with = "ser_opt_duration")]
    pub pitr_max_lag: Option<jiff::SignedDuration>,
    /// Each table is drilled at least this often (`None`: no drills).
    #[serde(serialize_with = "ser_opt_duration")]
    pub drill_every: Option<jiff::SignedDuration>,
    /// New drills started per run at most.
    pub drills_per_run: usize,
    /// Where a drill has AWS export the source table at the backup's moment (under
    /// `<prefix>/~drills/`), to prove the restore against; `None` without an export bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness_exports: Option<ExportLocation>,
    /// SSE-KMS key for those exports (default SSE-S3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_kms_key: Option<String>,
}

fn ser_duration<S: serde::Serializer>(
    d: &jiff::SignedDuration,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{d:#}"))
}

fn ser_opt_duration<S: serde::Serializer>(
    d: &Option<jiff::SignedDuration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format!("{d:#}")),
        None => s.serialize_str("off"),
    }
}

pub const DEFAULT_BACKUP_MAX_AGE: jiff::SignedDuration = jiff::SignedDuration::from_hours(26);
pub const DEFAULT_EXPORT_MAX_AGE: jiff::SignedDuration = jiff::SignedDuration::from_hours(8 * 24);
pub const DEFAULT_PITR_MAX_LAG: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);
pub const DEFAULT_DRILL_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);
pub const MAX_DRILLS_PER_RUN: usize = 50;

impl ValidateSettings {
    /// The freshness limits these settings hold each table to.
    pub fn limits(&self) -> crate::freshness::Limits {
        crate::freshness::Limits {
            backup: self.backup_max_age,
            export: self.export_max_age,
            pitr_lag: self.pitr_max_lag,
        }
    }
}

/// A duration setting such as `30m`, `26h`, `8d` (a day is 24 hours here), or `off` when
/// `off_allowed`.
/// `BACKSTOP_BACKFILL_WINDOW`: a minute to ten years (a longer one would be no window at all).
fn backfill_window(env: &Environment) -> Result<jiff::SignedDuration> {
    let Some(v) = env.get(ENV_BACKFILL_WINDOW) else {
        return Ok(DEFAULT_BACKFILL_WINDOW);
    };
    let d =
        parse_duration_setting(ENV_BACKFILL_WINDOW, v, false)?.unwrap_or(DEFAULT_BACKFILL_WINDOW);
    if d < jiff::SignedDuration::from_mins(1) || d > jiff::SignedDuration::from_hours(24 * 3650) {
        return Err(Error::setting(
            ENV_BACKFILL_WINDOW,
            format!(
                "must be from 1m to 3650d, got {:?}",
                truncate_for_message(v)
            ),
        ));
    }
    Ok(d)
}

fn parse_duration_setting(
    name: &str,
    text: &str,
    off_allowed: bool,
) -> Result<Option<jiff::SignedDuration>> {
    let t = text.trim();
    if off_allowed && t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || {
        Error::setting(
            name,
            format!(
                "must be a duration such as 30m, 26h or 8d{}, got {:?}",
                if off_allowed { ", or off" } else { "" },
                truncate_for_message(t)
            ),
        )
    };
    let span: jiff::Span = t.parse().map_err(|_| bad())?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    if d.is_negative() || d.is_zero() {
        return Err(Error::setting(
            name,
            format!("must be a positive duration, got {t:?}"),
        ));
    }
    Ok(Some(d))
}

fn resolve_validate(env: &Environment) -> Result<ValidateSettings> {
    let get = |name: &str, default: Option<jiff::SignedDuration>, off: bool| match env.get(name) {
        Some(v) => parse_duration_setting(name, v, off),
        None => Ok(default),
    };
    let backup_max_age = get(ENV_BACKUP_MAX_AGE, Some(DEFAULT_BACKUP_MAX_AGE), false)?
        .unwrap_or(DEFAULT_BACKUP_MAX_AGE);
    let export_default = env.get(ENV_EXPORT_BUCKET).map(|_| DEFAULT_EXPORT_MAX_AGE);
    let drills_per_run = match env.get(ENV_DRILLS_PER_RUN) {
        None => 1,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n <= MAX_DRILLS_PER_RUN => n,
            _ => {
                return Err(Error::setting(
                    ENV_DRILLS_PER_RUN,
                    format!(
                        "must be a whole number from 0 to {MAX_DRILLS_PER_RUN}, got {:?}",
                        truncate_for_message(v)
                    ),
                ))
            }
        },
    };
    Ok(ValidateSettings {
        backup_max_age,
        export_max_age: get(ENV_EXPORT_MAX_AGE, export_default, true)?,
        pitr_max_lag: get(ENV_PITR_MAX_LAG, Some(DEFAULT_PITR_MAX_LAG), true)?,
        drill_every: get(ENV_DRILL_EVERY, Some(DEFAULT_DRILL_EVERY), true)?,
        drills_per_run,
        witness_exports: resolve_location(env)?,
        export_kms_key: env.get(ENV_EXPORT_KMS_KEY).map(str::to_owned),
    })
}

/// How a table is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportMode {
    /// `ExportTableToPointInTime`: AWS writes the export; needs PITR.
    Native,
    /// Backstop scans the table and writes the same layout itself.
    Logical,
    /// Native when PITR is on or the table is over the threshold, logical otherwise.
    Auto,
}

impl std::str::FromStr for ExportMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "native" => Ok(ExportMode::Native),
            "logical" => Ok(ExportMode::Logical),
            "auto" => Ok(ExportMode::Auto),
            other => Err(format!(
                "must be native, logical or auto, got {:?}",
                truncate_for_message(other)
            )),
        }
    }
}

/// Where exports live: the bucket and the key prefix under which `<table>/<slot>/` sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportLocation {
    pub bucket: String,
    pub prefix: String,
}

/// The export job's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSettings {
    pub location: ExportLocation,
    pub kms_key: Option<String>,
    pub mode: ExportMode,
    /// Days between native full exports (0: every export is full).
    pub full_every_days: u32,
    /// Scan segments (None: from the table's size).
    pub segments: Option<u32>,
    pub fan_out: u32,
    pub native_threshold: u64,
    pub file_bytes: u64,
    pub page_items: Option<u32>,
    /// Set by a continuation payload: how many invocations came before this one.
    pub continuation: u32,
    /// Work per invocation before a continuation (default: up to the deadline's margin).
    pub time_budget: Option<std::time::Duration>,
    /// Set on the invocations a fanned-out export starts: they work on free segments of a
    /// table whose export another invocation holds, and nothing else.
    pub helper: bool,
    /// Where every complete export is copied (same keys), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaSettings>,
}

/// What retention needs to prune exports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRetention {
    pub location: ExportLocation,
    pub policy: RetentionPolicy,
}

pub const DEFAULT_EXPORT_PREFIX: &str = "backstop";
pub const DEFAULT_FULL_EVERY_DAYS: u32 = 7;
pub const DEFAULT_NATIVE_THRESHOLD: u64 = 10_000_000_000;
pub const DEFAULT_FILE_BYTES: u64 = 16 * 1024 * 1024;
pub const MAX_SEGMENTS: u32 = 1000;
pub const MAX_FAN_OUT: u32 = 20;
/// A continuation chain longer than this stops with an error instead of invoking itself again.
pub const MAX_CONTINUATIONS: u32 = 200;

impl Settings {
    /// The snapshot's PITR switch (false for any other job).
    pub fn enable_pitr(&self) -> bool {
        matches!(self.job, JobSettings::Snapshot { enable_pitr: true })
    }

    /// The retention policy (`None` for any other job).
    pub fn retention_policy(&self) -> Option<&RetentionPolicy> {
        match &self.job {
            JobSettings::Retention { policy, .. } => Some(policy.as_ref()),
            _ => None,
        }
    }

    /// The export settings (`None` for any other job).
    pub fn export(&self) -> Option<&ExportSettings> {
        match &self.job {
            JobSettings::Export(e) => Some(e.as_ref()),
            _ => None,
        }
    }

    /// The validate settings (`None` for any other job).
    pub fn validate(&self) -> Option<&ValidateSettings> {
        match &self.job {
            JobSettings::Validate(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The bucket job's settings (`None` for any other job).
    pub fn bucket(&self) -> Option<&BucketSettings> {
        match &self.job {
            JobSettings::Bucket(b) => Some(b.as_ref()),
            _ => None,
        }
    }

    /// Export pruning, when the retention job is configured for it.
    pub fn export_retention(&self) -> Option<&ExportRetention> {
        match &self.job {
            JobSettings::Retention { exports, .. } => exports.as_deref(),
            _ => None,
        }
    }
}

/// Settings a payload may override. Unknown fields are refused so that a typo never silently
/// falls back to the environment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_tag: Option<String>,
    /// Bucket job: the buckets, a glob or a tag (instead of BACKSTOP_BUCKET_*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_pitr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// The retention policy: an object, or the compact `keep_daily=30,…` form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
    /// Export: `native`, `logical` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Export: scan segments for a logical export that has not started yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<u32>,
    /// Export: set by the export itself when it continues in a new invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<u32>,
    /// Export: set by the export on the helper invocations of a fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<bool>,
}

/// The environment as read once at start-up (only the `BACKSTOP_*` variables are kept).
#[derive(Debug, Clone, Default)]
pub struct Environment(BTreeMap<String, String>);

impl Environment {
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(k, _)| k.starts_with("BACKSTOP_"))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The setting's value, trimmed; `None` when unset or blank.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    /// This environment with `name` set to `value` (for the CLI, whose flags are the operator's
    /// configuration, not a payload).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    /// This environment without `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.0.remove(name);
        self
    }

    /// `BACKSTOP_TLS_ROOTS`, `default` when unset.
    pub fn tls_roots(&self, default: crate::aws::TlsRoots) -> Result<crate::aws::TlsRoots> {
        self.get(ENV_TLS_ROOTS)
            .map(crate::aws::TlsRoots::parse)
            .transpose()
            .map(|r| r.unwrap_or(default))
            .map_err(|rule| Error::setting(ENV_TLS_ROOTS, rule))
    }
}

impl Settings {
    /// Merges the environment with a request's overrides for one job and validates the result.
    ///
    /// A retention request that deletes (not a dry run) may loosen nothing: its policy must keep
    /// at least as much as the configured one, the safety floors come from the environment alone,
    /// its selection may only narrow the configured one, and the catalog cannot be swapped.
    pub fn resolve(job: JobKind, env: &Environment, request: &JobRequest) -> Result<Settings> {
        let overrides = &request.overrides;
        let guarded = job == JobKind::Retention && !request.dry_run;
        // The export's claims and checkpoints live in the catalog: another catalog would let a
        // payload export a slot again over a finished export.
        if job == JobKind::Export && !request.dry_run && overrides.catalog_table.is_some() {
            return Err(Error::setting(
                "catalog_table",
                format!(
                    "an export payload may not name another catalog unless dry_run is true: the catalog is what keeps one export per slot (set {ENV_CATALOG_TABLE} instead)"
                ),
            ));
        }
        if guarded && overrides.catalog_table.is_some() {
            return Err(Error::setting(
                "catalog_table",
                format!(
                    "a retention payload may not name another catalog unless dry_run is true: the catalog decides which backups are Backstop's and which are on legal hold (set {ENV_CATALOG_TABLE} instead)"
                ),
            ));
        }
        // Where the report of a deleting run goes is not the caller's to change either.
        for (field, set) in [
            ("topic_arn", overrides.topic_arn.is_some()),
            ("metrics_namespace", overrides.metrics_namespace.is_some()),
        ] {
            if guarded && set {
                return Err(Error::setting(
                    field,
                    "a retention payload may not redirect the report of a run that deletes unless dry_run is true",
                ));
            }
        }
        // No job lets the one who invokes it choose where it records, reports or counts: the
        // catalog decides what is done and what is held, the topic and the metrics are how people
        // learn what happened (a forged "all fresh" report to the real topic, the real report
        // sent elsewhere). A dry run may look elsewhere.
        if !request.dry_run {
            for (field, set, env_name) in [
                (
                    "catalog_table",
                    overrides.catalog_table.is_some(),
                    ENV_CATALOG_TABLE,
                ),
                ("topic_arn", overrides.topic_arn.is_some(), ENV_TOPIC_ARN),
                (
                    "metrics_namespace",
                    overrides.metrics_namespace.is_some(),
                    ENV_METRICS_NAMESPACE,
                ),
            ] {
                if set {
                    return Err(Error::setting(
                        field,
                        format!(
                            "{} payload may not choose where the job records or reports unless dry_run is true (set {env_name} instead)",
                            a_job(job)
                        ),
                    ));
                }
            }
        }
        let catalog_table = match (&overrides.catalog_table, env.get(ENV_CATALOG_TABLE)) {
            (Some(v), _) => validate_table_name("catalog_table", v)?,
            (None, Some(v)) => validate_table_name(ENV_CATALOG_TABLE, v)?,
            (None, None) => {
                return Err(Error::setting(
                    ENV_CATALOG_TABLE,
                    "is required: name the DynamoDB table Backstop records its runs in",
                ))
            }
        };

        let topic_arn = match (&overrides.topic_arn, env.get(ENV_TOPIC_ARN)) {
            (Some(v), _) => Some(validate_topic_arn("topic_arn", v)?),
            (None, Some(v)) => Some(validate_topic_arn(ENV_TOPIC_ARN, v)?),
            (None, None) => None,
        };

        let metrics_namespace = match (&overrides.metrics_namespace, env.get(ENV_METRICS_NAMESPACE))
        {
            (Some(v), _) => validate_namespace("metrics_namespace", v)?,
            (None, Some(v)) => validate_namespace(ENV_METRICS_NAMESPACE, v)?,
            (None, None) => DEFAULT_METRICS_NAMESPACE.to_owned(),
        };

        let bucket_selects = overrides.buckets.is_some()
            || overrides.bucket_pattern.is_some()
            || overrides.bucket_tag.is_some();
        if job == JobKind::Bucket && payload_selects(overrides) {
            return Err(Error::setting(
                "tables / table_pattern / table_tag",
                "the bucket job selects buckets: use buckets, bucket_pattern or bucket_tag",
            ));
        }
        if job != JobKind::Bucket && bucket_selects {
            return Err(Error::setting(
                "buckets / bucket_pattern / bucket_tag",
                format!(
                    "select buckets for the bucket job; the {} job selects tables (tables, table_pattern, table_tag)",
                    job.name()
                ),
            ));
        }
        // An unset table selection is an error only when no database is selected either
        // (decided once the databases are resolved, below).
        // A payload that acts (not a dry run) may only narrow the configured selection, in
        // every job: it never reaches a table or bucket the deployment did not select.
        let narrowing = !request.dry_run;
        let (selection, within) = if job == JobKind::Bucket {
            if narrowing && bucket_selects {
                let (s, w) = narrowed_bucket_selection(env, overrides, job)?;
                (Ok(s), w)
            } else {
                (Ok(resolve_bucket_selection(env, overrides)?), None)
            }
        } else if narrowing && payload_selects(overrides) {
            let (s, w) = narrowed_selection(env, overrides, job)?;
            (Ok(s), w)
        } else {
            (resolve_selection(env, overrides), None)
        };

        let concurrency = match (overrides.concurrency, env.get(ENV_CONCURRENCY)) {
            (Some(v), _) => check_concurrency("concurrency", v)?,
            (None, Some(v)) => {
                let n = v.parse::<usize>().map_err(|_| {
                    Error::setting(
                        ENV_CONCURRENCY,
                        format!("must be a whole number from 1 to {MAX_CONCURRENCY}, got {v:?}"),
                    )
                })?;
                check_concurrency(ENV_CONCURRENCY, n)?
            }
            (None, None) => DEFAULT_CONCURRENCY,
        };

        let anomaly_threshold_pct = match env.get(ENV_ANOMALY_THRESHOLD) {
            None => crate::anomaly::DEFAULT_THRESHOLD_PCT,
            Some(v) => match v.trim().trim_end_matches('%').parse::<f64>() {
                // Below 100: a table emptied (-100 %) must stay an anomaly.
                Ok(p) if (1.0..=99.0).contains(&p) => p,
                _ => {
                    return Err(Error::setting(
                        ENV_ANOMALY_THRESHOLD,
                        format!(
                            "must be a percentage from 1 to 99 (a table emptied is -100 %), such as 20, got {:?}",
                            truncate_for_message(v)
                        ),
                    ))
                }
            },
        };

        let drill_table_prefix = env
            .get(ENV_DRILL_TABLE_PREFIX)
            .unwrap_or(DEFAULT_DRILL_TABLE_PREFIX)
            .to_owned();
        // At least 8 characters, and neither the catalog's nor the restore function's prefix.
        crate::drill::check_table_prefix(
            &drill_table_prefix,
            &catalog_table,
            env.get(ENV_RESTORE_PREFIX)
                .unwrap_or(crate::restore::request::DEFAULT_PREFIX),
        )?;

        // Each job resolves its own settings and refuses those of another job by name.
        let foreign = |field: &str, owner: JobKind| {
            Error::setting(
                field,
                format!(
                    "is a {owner} setting; the {} job does not take it",
                    job.name()
                ),
            )
        };
        let export_fields = [
            ("mode", overrides.mode.is_some()),
            ("segments", overrides.segments.is_some()),
            ("continuation", overrides.continuation.is_some()),
            ("helper", overrides.helper.is_some()),
        ];
        if job != JobKind::Export {
            if let Some((field, _)) = export_fields
                .iter()
                .filter(|(f, _)| !(job == JobKind::Bucket && *f == "continuation"))
                .find(|(_, set)| *set)
            {
                return Err(foreign(field, JobKind::Export));
            }
        }
        let job_settings = match job {
            JobKind::Export => {
                if overrides.policy.is_some() {
                    return Err(foreign("policy", JobKind::Retention));
                }
                if overrides.enable_pitr.is_some() {
                    return Err(foreign("enable_pitr", JobKind::Snapshot));
                }
                JobSettings::Export(Box::new(resolve_export(env, overrides)?))
            }
            JobKind::Snapshot => {
                if overrides.policy.is_some() {
                    return Err(foreign("policy", JobKind::Retention));
                }
                JobSettings::Snapshot {
                    enable_pitr: match (overrides.enable_pitr, env.get(ENV_ENABLE_PITR)) {
                        (Some(v), _) => v,
                        (None, Some(v)) => parse_bool(ENV_ENABLE_PITR, v)?,
                        (None, None) => false,
                    },
                }
            }
            JobKind::Retention => {
                if overrides.enable_pitr.is_some() {
                    return Err(foreign("enable_pitr", JobKind::Snapshot));
                }
                JobSettings::Retention {
                    policy: Box::new(resolve_policy(env, overrides, guarded)?),
                    exports: resolve_export_retention(env)?.map(Box::new),
                }
            }
            JobKind::Validate => {
                if overrides.policy.is_some() {
                    return Err(foreign("policy", JobKind::Retention));
                }
                if overrides.enable_pitr.is_some() {
                    return Err(foreign("enable_pitr", JobKind::Snapshot));
                }
                JobSettings::Validate(Box::new(resolve_validate(env)?))
            }
            JobKind::Bucket => {
                if overrides.policy.is_some() {
                    return Err(foreign("policy", JobKind::Retention));
                }
                if overrides.enable_pitr.is_some() {
                    return Err(foreign("enable_pitr", JobKind::Snapshot));
                }
                let mut b = BucketSettings::resolve(env)?;
                if let Some(n) = overrides.continuation {
                    b.continuation = number("continuation", &n.to_string(), 1..=MAX_CONTINUATIONS)?;
                }
                let names = selection.as_ref().map(|s| s.names()).unwrap_or(&[]);
                for name in names {
                    if *name == b.backup_bucket
                        || b.replica.as_ref().is_some_and(|r| r.bucket == *name)
                    {
                        return Err(Error::setting(
                            "buckets",
                            format!("{name} holds Backstop's bucket backups (the backup or replica bucket): a bucket cannot hold its own backups"),
                        ));
                    }
                }
                JobSettings::Bucket(Box::new(b))
            }
        };

        let table_policy = match &job_settings {
            JobSettings::Retention { policy, .. } => Some(policy.as_ref()),
            _ => None,
        };
        let databases = resolve_databases(env, job, overrides, table_policy)?;
        let selection = match selection {
            Ok(s) => s,
            // Databases alone: no table is selected.
            Err(_) if databases.any() && !table_selection_given(env) => {
                TableSelection::Names(vec![])
            }
            Err(e) => return Err(e),
        };
        let backfill_window = backfill_window(env)?;

        Ok(Settings {
            catalog_table,
            topic_arn,
            metrics_namespace,
            selection,
            within,
            concurrency,
            anomaly_threshold_pct,
            drill_table_prefix,
            backfill_window,
            databases,
            job: job_settings,
        })
    }

    /// Whether `table` is one of Backstop's own tables, which are never backed up by selection.
    pub fn is_own_table(&self, table: &str) -> bool {
        table == self.catalog_table || table.starts_with(&self.drill_table_prefix)
    }
}

fn resolve_location(env: &Environment) -> Result<Option<ExportLocation>> {
    let Some(bucket) = env.get(ENV_EXPORT_BUCKET) else {
        return Ok(None);
    };
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
    if !ok {
        return Err(Error::setting(
            ENV_EXPORT_BUCKET,
            format!(
                "must be an S3 bucket name (3 to 63 lowercase letters, digits, '-' and '.'), got {:?}",
                truncate_for_message(bucket)
            ),
        ));
    }
    let prefix = env
        .get(ENV_EXPORT_PREFIX)
        .unwrap_or(DEFAULT_EXPORT_PREFIX)
        .trim_matches('/')
        .to_owned();
    if prefix.is_empty() || prefix.len() > 200 || prefix.contains("//") {
        return Err(Error::setting(
            ENV_EXPORT_PREFIX,
            "must be 1 to 200 characters, without empty path segments",
        ));
    }
    Ok(Some(ExportLocation {
        bucket: bucket.to_owned(),
        prefix,
    }))
}

fn resolve_export_retention(env: &Environment) -> Result<Option<ExportRetention>> {
    let Some(location) = resolve_location(env)? else {
        return Ok(None);
    };
    let policy = match env.get(ENV_EXPORT_RETENTION_POLICY) {
        Some(v) => check_policy(ENV_EXPORT_RETENTION_POLICY, RetentionPolicy::parse(v))?,
        None => RetentionPolicy::export_default(),
    };
    Ok(Some(ExportRetention { location, policy }))
}

fn number<T>(name: &str, v: &str, range: std::ops::RangeInclusive<T>) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match v.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(Error::setting(
            name,
            format!(
                "must be a whole number from {} to {}, got {:?}",
                range.start(),
                range.end(),
                truncate_for_message(v)
            ),
        )),
    }
}

fn resolve_export(env: &Environment, o: &Overrides) -> Result<ExportSettings> {
    let location = resolve_location(env)?.ok_or_else(|| {
        Error::setting(
            ENV_EXPORT_BUCKET,
            "is required for the export job: name the S3 bucket exports go to",
        )
    })?;
    let mode = match (&o.mode, env.get(ENV_EXPORT_MODE)) {
        (Some(m), _) => m.parse().map_err(|rule| Error::setting("mode", rule))?,
        (None, Some(m)) => m
            .parse()
            .map_err(|rule| Error::setting(ENV_EXPORT_MODE, rule))?,
        (None, None) => ExportMode::Auto,
    };
    let full_every_days = match env.get(ENV_EXPORT_FULL_EVERY) {
        Some(v) => number(ENV_EXPORT_FULL_EVERY, v.trim_end_matches('d'), 0..=35)?,
        None => DEFAULT_FULL_EVERY_DAYS,
    };
    let segments = match (o.segments, env.get(ENV_EXPORT_SEGMENTS)) {
        (Some(n), _) => Some(number("segments", &n.to_string(), 1..=MAX_SEGMENTS)?),
        (None, Some(v)) => Some(number(ENV_EXPORT_SEGMENTS, v, 1..=MAX_SEGMENTS)?),
        (None, None) => None,
    };
    let fan_out = match env.get(ENV_EXPORT_FAN_OUT) {
        Some(v) => number(ENV_EXPORT_FAN_OUT, v, 1..=MAX_FAN_OUT)?,
        None => 1,
    };
    let helper = o.helper.unwrap_or(false);
    if helper && o.continuation.is_none() {
        return Err(Error::setting(
            "helper",
            "is set by the export itself on the invocations it fans out to, together with continuation",
        ));
    }
    let native_threshold = match env.get(ENV_EXPORT_NATIVE_THRESHOLD) {
        Some(v) => number(ENV_EXPORT_NATIVE_THRESHOLD, v, 1..=u64::MAX)?,
        None => DEFAULT_NATIVE_THRESHOLD,
    };
    let file_bytes = match env.get(ENV_EXPORT_FILE_BYTES) {
        Some(v) => number(ENV_EXPORT_FILE_BYTES, v, 1024..=(4u64 << 30))?,
        None => DEFAULT_FILE_BYTES,
    };
    let page_items = match env.get(ENV_EXPORT_PAGE_ITEMS) {
        Some(v) => Some(number(ENV_EXPORT_PAGE_ITEMS, v, 1..=100_000)?),
        None => None,
    };
    let continuation = match o.continuation {
        Some(n) => number("continuation", &n.to_string(), 1..=MAX_CONTINUATIONS)?,
        None => 0,
    };
    let replica = resolve_replica(env, &location.bucket)?;
    Ok(ExportSettings {
        replica,
        location,
        kms_key: env.get(ENV_EXPORT_KMS_KEY).map(str::to_owned),
        mode,
        full_every_days,
        segments,
        fan_out,
        native_threshold,
        file_bytes,
        page_items,
        continuation,
        helper,
        time_budget: match env.get(ENV_EXPORT_TIME_BUDGET) {
            Some(v) => Some(std::time::Duration::from_secs(number(
                ENV_EXPORT_TIME_BUDGET,
                v,
                0..=900,
            )?)),
            None => None,
        },
    })
}

/// One kind's database selection from its three settings (list, pattern, tag); at most one.
fn db_selection(
    env: &Environment,
    names: [&str; 3],
    noun: &str,
    max_id: usize,
) -> Result<Option<TableSelection>> {
    let given: Vec<(&str, &str)> = names
        .into_iter()
        .filter_map(|n| env.get(n).map(|v| (n, v)))
        .collect();
    match given.as_slice() {
        [] => Ok(None),
        [(name, v)] if *name == names[0] => {
            let mut ids: Vec<String> = Vec::new();
            for id in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                crate::db::check_identifier(id, max_id)
                    .map_err(|rule| Error::setting(*name, rule))?;
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_owned());
                }
            }
            if ids.is_empty() {
                return Err(Error::setting(*name, format!("the {noun} list is empty")));
            }
            Ok(Some(TableSelection::Names(ids)))
        }
        [(name, v)] if *name == names[1] => Ok(Some(
            TableSelection::pattern(v).map_err(|r| Error::setting(*name, r))?,
        )),
        [(name, v)] => Ok(Some(
            TableSelection::tag(v).map_err(|r| Error::setting(*name, r))?,
        )),
        several => Err(Error::setting(
            several
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" + "),
            format!("set only one {noun} selection (list, pattern or tag), not several"),
        )),
    }
}

/// Whether the environment names a table selection at all.
fn table_selection_given(env: &Environment) -> bool {
    [ENV_TABLES, ENV_TABLE_PATTERN, ENV_TABLE_TAG]
        .iter()
        .any(|n| env.get(n).is_some())
}

fn payload_selects(o: &Overrides) -> bool {
    o.tables.is_some() || o.table_pattern.is_some() || o.table_tag.is_some()
}

/// The configured policy, and for a deleting retention request the payload's policy when it
/// keeps at least as much, with the floors of the configured one.
fn resolve_policy(env: &Environment, o: &Overrides, guarded: bool) -> Result<RetentionPolicy> {
    let configured = match env.get(ENV_RETENTION_POLICY) {
        Some(v) => check_policy(ENV_RETENTION_POLICY, RetentionPolicy::parse(v))?,
        None => RetentionPolicy::runbook_default(),
    };
    let Some(v) = &o.policy else {
        return Ok(configured);
    };
    let asked = check_policy("policy", policy_from_value(v))?;
    if !guarded {
        return Ok(asked);
    }
    for (floor, set) in [
        ("min_complete", asked.min_complete.is_some()),
        ("freshness_limit", asked.freshness_limit.is_some()),
        ("include_unmanaged", asked.include_unmanaged.is_some()),
    ] {
        if set {
            return Err(Error::setting(
                "policy",
                format!(
                    "{floor} is a safety floor and comes from {ENV_RETENTION_POLICY} alone; a payload may set it only with dry_run true"
                ),
            ));
        }
    }
    if let Some(why) = asked.keeps_less_than(&configured) {
        return Err(Error::setting(
            "policy",
            format!(
                "{why}; a retention payload may only keep more than the configured policy ({ENV_RETENTION_POLICY}) unless dry_run is true"
            ),
        ));
    }
    Ok(RetentionPolicy {
        min_complete: configured.min_complete,
        freshness_limit: configured.freshness_limit.clone(),
        include_unmanaged: configured.include_unmanaged,
        ..asked
    })
}

/// A deleting retention request may name a list of tables, each within the configured
/// selection; it may not widen the selection with a pattern or a tag of its own.
fn narrowed_selection(
    env: &Environment,
    o: &Overrides,
    job: JobKind,
) -> Result<(TableSelection, Option<TableSelection>)> {
    let why = format!(
        "{} payload may only narrow the configured selection to a list of its tables unless dry_run is true",
        a_job(job)
    );
    for (field, set) in [
        ("table_pattern", o.table_pattern.is_some()),
        ("table_tag", o.table_tag.is_some()),
    ] {
        if set {
            return Err(Error::setting(field, why));
        }
    }
    let configured = resolve_selection(env, &Overrides::default())
        .map_err(|e| Error::setting("tables", format!("{why}, and none is configured ({e})")))?;
    let TableSelection::Names(asked) = resolve_selection(env, o)? else {
        return Err(Error::setting("tables", why));
    };
    narrow_names(asked, configured, "tables", "table", &why)
}

/// "a snapshot", "an export": the job's name with its article.
fn a_job(job: JobKind) -> String {
    let name = job.name();
    if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {name}")
    } else {
        format!("a {name}")
    }
}

/// The bucket job's [`narrowed_selection`]: a payload's `buckets`, each inside the configured
/// bucket selection (a tag selection is checked against each bucket's tags when resolved).
fn narrowed_bucket_selection(
    env: &Environment,
    o: &Overrides,
    job: JobKind,
) -> Result<(TableSelection, Option<TableSelection>)> {
    let why = format!(
        "{} payload may only narrow the configured bucket selection to a list of its buckets unless dry_run is true",
        a_job(job)
    );
    for (field, set) in [
        ("bucket_pattern", o.bucket_pattern.is_some()),
        ("bucket_tag", o.bucket_tag.is_some()),
    ] {
        if set {
            return Err(Error::setting(field, why));
        }
    }
    let configured = resolve_bucket_selection(env, &Overrides::default())
        .map_err(|e| Error::setting("buckets", format!("{why}, and none is configured ({e})")))?;
    let TableSelection::Names(asked) = resolve_bucket_selection(env, o)? else {
        return Err(Error::setting("buckets", why));
    };
    narrow_names(asked, configured, "buckets", "bucket", &why)
}

/// Each name asked must lie inside the configured selection; under a tag selection the tag is
/// checked when the selection is resolved (`within`).
fn narrow_names(
    asked: Vec<String>,
    configured: TableSelection,
    field: &str,
    what: &str,
    why: &str,
) -> Result<(TableSelection, Option<TableSelection>)> {
    for t in &asked {
        let inside = match &configured {
            TableSelection::Tag { .. } => true, // checked against the tags when resolved
            other => other.matches_name(t),
        };
        if !inside {
            return Err(Error::setting(
                field,
                format!(
                    "{what} {:?} is not in the configured selection ({}); {why}",
                    truncate_for_message(t),
                    configured.describe_as(field)
                ),
            ));
        }
    }
    let within = matches!(configured, TableSelection::Tag { .. }).then_some(configured);
    Ok((TableSelection::Names(asked), within))
}

/// The bucket job's selection: a payload's buckets / bucket_pattern / bucket_tag, or else
/// BACKSTOP_BUCKETS / BACKSTOP_BUCKET_PATTERN / BACKSTOP_BUCKET_TAG; exactly one of them.
fn resolve_bucket_selection(env: &Environment, o: &Overrides) -> Result<TableSelection> {
    let from_payload = o.buckets.is_some() || o.bucket_pattern.is_some() || o.bucket_tag.is_some();
    let (list, pattern, tag, names) = if from_payload {
        (
            o.buckets.clone(),
            o.bucket_pattern.clone(),
            o.bucket_tag.clone(),
            ["buckets", "bucket_pattern", "bucket_tag"],
        )
    } else {
        (
            env.get(ENV_BUCKETS).map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            }),
            env.get(ENV_BUCKET_PATTERN).map(str::to_owned),
            env.get(ENV_BUCKET_TAG).map(str::to_owned),
            [ENV_BUCKETS, ENV_BUCKET_PATTERN, ENV_BUCKET_TAG],
        )
    };
    let given = [list.is_some(), pattern.is_some(), tag.is_some()];
    match given.iter().filter(|g| **g).count() {
        0 => Err(Error::setting(
            names.join(" / "),
            "no buckets selected: set exactly one of a bucket list, a name pattern or a tag",
        )),
        1 => {
            if let Some(list) = list {
                if list.is_empty() {
                    return Err(Error::setting(names[0], "the bucket list is empty"));
                }
                let mut out: Vec<String> = Vec::with_capacity(list.len());
                for b in list {
                    let b = b.trim().to_owned();
                    crate::bucket::check_bucket_name(&b)
                        .map_err(|rule| Error::setting(names[0], rule))?;
                    if !out.contains(&b) {
                        out.push(b);
                    }
                }
                Ok(TableSelection::Names(out))
            } else if let Some(p) = pattern {
                TableSelection::pattern(&p).map_err(|rule| Error::setting(names[1], rule))
            } else {
                TableSelection::tag(&tag.unwrap_or_default())
                    .map_err(|rule| Error::setting(names[2], rule))
            }
        }
        _ => {
            let set: Vec<&str> = names
                .iter()
                .zip(given)
                .filter(|(_, g)| *g)
                .map(|(n, _)| *n)
                .collect();
            Err(Error::setting(
                set.join(" + "),
                "set only one bucket selection (list, pattern or tag), not several",
            ))
        }
    }
}

/// The table selection the environment configures (no payload), for jobs outside
/// [`Settings::resolve`] such as the restore function.
pub fn configured_selection(env: &Environment) -> Result<TableSelection> {
    resolve_selection(env, &Overrides::default())
}

fn resolve_selection(env: &Environment, o: &Overrides) -> Result<TableSelection> {
    // A payload that names any selection replaces the environment's selection entirely.
    let from_payload = o.tables.is_some() || o.table_pattern.is_some() || o.table_tag.is_some();
    let (tables, pattern, tag, names) = if from_payload {
        (
            o.tables.clone(),
            o.table_pattern.clone(),
            o.table_tag.clone(),
            ["tables", "table_pattern", "table_tag"],
        )
    } else {
        (
            env.get(ENV_TABLES).map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            env.get(ENV_TABLE_PATTERN).map(str::to_owned),
            env.get(ENV_TABLE_TAG).map(str::to_owned),
            [ENV_TABLES, ENV_TABLE_PATTERN, ENV_TABLE_TAG],
        )
    };
    let given = [tables.is_some(), pattern.is_some(), tag.is_some()];
    match given.iter().filter(|g| **g).count() {
        0 => Err(Error::setting(
            names.join(" / "),
            "no tables selected: set exactly one of a table list, a name pattern or a tag",
        )),
        1 => {
            if let Some(list) = tables {
                if list.is_empty() {
                    return Err(Error::setting(names[0], "the table list is empty"));
                }
                // Linear in the list's length, whatever its length.
                let mut seen = std::collections::HashSet::with_capacity(list.len());
                let mut out: Vec<String> = Vec::with_capacity(list.len());
                for t in &list {
                    let t = validate_table_name(names[0], t)?;
                    if seen.insert(t.clone()) {
                        out.push(t);
                    }
                }
                Ok(TableSelection::Names(out))
            } else if let Some(p) = pattern {
                TableSelection::pattern(&p).map_err(|rule| Error::setting(names[1], rule))
            } else {
                let t = tag.unwrap_or_default();
                TableSelection::tag(&t).map_err(|rule| Error::setting(names[2], rule))
            }
        }
        _ => {
            let set: Vec<&str> = names
                .iter()
                .zip(given)
                .filter(|(_, g)| *g)
                .map(|(n, _)| *n)
                .collect();
            Err(Error::setting(
                set.join(" + "),
                "set only one table selection (list, pattern or tag), not several",
            ))
        }
    }
}

/// DynamoDB table names: 3 to 255 characters of `a-z A-Z 0-9 _ - .`.
pub fn validate_table_name(setting: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.len() < 3 || name.len() > 255 {
        return Err(Error::setting(
            setting,
            format!(
                "table name {:?} must be 3 to 255 characters long, it has {}",
                truncate_for_message(name),
                name.chars().count()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(Error::setting(
            setting,
            format!(
                "table name {:?} may hold only letters, digits, '_', '-' and '.', not {bad:?}",
                truncate_for_message(name)
            ),
        ));
    }
    Ok(name.to_owned())
}

fn validate_topic_arn(setting: &str, arn: &str) -> Result<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && !parts[5].is_empty();
    if ok {
        Ok(arn.to_owned())
    } else {
        Err(Error::setting(
            setting,
            format!(
                "must be an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:backstop, got {:?}",
                truncate_for_message(arn)
            ),
        ))
    }
}

fn validate_namespace(setting: &str, ns: &str) -> Result<String> {
    let ok_chars = ns
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#' | ':' | ' '));
    if ns.is_empty() || ns.len() > 255 || !ok_chars || ns.starts_with(':') {
        return Err(Error::setting(
            setting,
            format!(
                "must be 1 to 255 characters of letters, digits and . - _ / # : or space, not starting with ':', got {:?}",
                truncate_for_message(ns)
            ),
        ));
    }
    if ns.starts_with("AWS/") {
        return Err(Error::setting(
            setting,
            "must not start with AWS/ (reserved for AWS services)",
        ));
    }
    Ok(ns.to_owned())
}

fn policy_from_value(v: &serde_json::Value) -> std::result::Result<RetentionPolicy, String> {
    match v {
        serde_json::Value::String(s) => RetentionPolicy::parse(s),
        other => serde_json::from_value(other.clone()).map_err(|e| format!("policy: {e}")),
    }
}

fn check_policy(
    setting: &str,
    parsed: std::result::Result<RetentionPolicy, String>,
) -> Result<RetentionPolicy> {
    let policy = parsed.map_err(|rule| Error::setting(setting, rule))?;
    policy
        .compile()
        .map_err(|rule| Error::setting(setting, rule))?;
    Ok(policy)
}

fn parse_bool(setting: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::setting(
            setting,
            format!("must be true or false, got {v:?}"),
        )),
    }
}

fn check_concurrency(setting: &str, n: usize) -> Result<usize> {
    if (1..=MAX_CONCURRENCY).contains(&n) {
        Ok(n)
    } else {
        Err(Error::setting(
            setting,
            format!("must be a whole number from 1 to {MAX_CONCURRENCY}, got {n}"),
        ))
    }
}

/// Values from users are echoed in errors, but never at unbounded length.
pub(crate) fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn req(o: &Overrides, dry_run: bool) -> JobRequest {
        JobRequest {
            trigger: crate::event::Trigger::Manual,
            slot: crate::event::ScheduleSlot::parse("2026-11-22T02:00:00Z").unwrap(),
            dry_run,
            overrides: o.clone(),
            received_at: "2026-11-22T02:00:00Z".parse().unwrap(),
            deadline: None,
        }
    }

    fn snap(e: &Environment, o: &Overrides) -> Result<Settings> {
        Settings::resolve(JobKind::Snapshot, e, &req(o, false))
    }

    fn retention(e: &Environment, o: &Overrides, dry_run: bool) -> Result<Settings> {
        Settings::resolve(JobKind::Retention, e, &req(o, dry_run))
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (ENV_CATALOG_TABLE, "backstop-catalog"),
            (ENV_TABLES, "SalesTable, BuyersTable"),
        ]
    }

    fn err_of(pairs: &[(&str, &str)], o: &Overrides) -> String {
        snap(&env(pairs), o).unwrap_err().to_string()
    }

    fn bucket_job(pairs: &[(&str, &str)], o: &Overrides) -> Result<Settings> {
        let mut all = vec![
            (ENV_CATALOG_TABLE, "backstop-catalog"),
            (ENV_BUCKET_BACKUP_BUCKET, "acme-backups"),
        ];
        all.extend_from_slice(pairs);
        Settings::resolve(JobKind::Bucket, &env(&all), &req(o, false))
    }

    #[test]
    fn the_bucket_job_selects_buckets_by_list_pattern_or_tag_and_never_its_own() {
        let s = bucket_job(
            &[(ENV_BUCKETS, "a-one, a-two,a-one")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            s.selection,
            TableSelection::Names(vec!["a-one".into(), "a-two".into()])
        );
        assert_eq!(s.selection.describe_as("buckets"), "buckets a-one, a-two");
        let b = s.bucket().unwrap();
        assert!(b.prune);
        assert_eq!(b.continuation, 0);
        let s = bucket_job(&[(ENV_BUCKET_PATTERN, "prod-*")], &Overrides::default()).unwrap();
        assert_eq!(s.selection, TableSelection::Pattern("prod-*".into()));
        let s = bucket_job(&[(ENV_BUCKET_TAG, "backup=daily")], &Overrides::default()).unwrap();
        assert!(matches!(s.selection, TableSelection::Tag { .. }));
        // A payload's list narrows the environment's selection, and a continuation is counted.
        let o = Overrides {
            buckets: Some(vec!["prod-x".into()]),
            continuation: Some(3),
            ..Overrides::default()
        };
        let s = bucket_job(&[(ENV_BUCKET_PATTERN, "prod-*")], &o).unwrap();
        assert_eq!(s.selection, TableSelection::Names(vec!["prod-x".into()]));
        assert_eq!(s.within, None);
        assert_eq!(s.bucket().unwrap().continuation, 3);
        // Under a tag selection the list is kept, and each bucket's tag checked when resolved.
        let s = bucket_job(&[(ENV_BUCKET_TAG, "backup=daily")], &o).unwrap();
        assert_eq!(s.selection, TableSelection::Names(vec!["prod-x".into()]));
        assert!(matches!(s.within, Some(TableSelection::Tag { .. })));
        // A payload never widens it: another bucket, or a pattern or tag of its own.
        let wide = Overrides {
            buckets: Some(vec!["b-x".into()]),
            ..Overrides::default()
        };
        let e = bucket_job(&[(ENV_BUCKET_PATTERN, "prod-*")], &wide)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"b-x\" is not in the configured selection (buckets matching prod-*)"),
            "{e}"
        );
        for o in [
            Overrides {
                bucket_pattern: Some("*".into()),
                ..Overrides::default()
            },
            Overrides {
                bucket_tag: Some("any".into()),
                ..Overrides::default()
            },
        ] {
            let e = bucket_job(&[(ENV_BUCKET_PATTERN, "prod-*")], &o)
                .unwrap_err()
                .to_string();
            assert!(e.contains("may only narrow"), "{e}");
        }
        for (pairs, o, want) in [
            (vec![], Overrides::default(), "no buckets selected"),
            (
                vec![(ENV_BUCKETS, "a-one"), (ENV_BUCKET_TAG, "k")],
                Overrides::default(),
                "only one bucket selection",
            ),
            (
                vec![(ENV_BUCKETS, "Not_A_Bucket")],
                Overrides::default(),
                ENV_BUCKETS,
            ),
            (
                vec![(ENV_BUCKET_PATTERN, "*")],
                Overrides {
                    buckets: Some(vec!["acme-backups".into()]),
                    ..Overrides::default()
                },
                "holds Backstop's bucket backups",
            ),
            (
                vec![(ENV_BUCKET_PATTERN, "*")],
                Overrides {
                    tables: Some(vec!["T".into()]),
                    ..Overrides::default()
                },
                "the bucket job selects buckets",
            ),
            (
                vec![(ENV_BUCKET_PATTERN, "*"), (ENV_BUCKET_PRUNE, "maybe")],
                Overrides::default(),
                ENV_BUCKET_PRUNE,
            ),
            (
                vec![(ENV_BUCKET_PATTERN, "*")],
                Overrides {
                    policy: Some(serde_json::json!("keep_daily=1")),
                    ..Overrides::default()
                },
                "retention setting",
            ),
        ] {
            let e = bucket_job(&pairs, &o).unwrap_err().to_string();
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
        // A table job refuses a bucket selection by name.
        let o = Overrides {
            buckets: Some(vec!["a-one".into()]),
            ..Overrides::default()
        };
        let e = snap(&env(&base()), &o).unwrap_err().to_string();
        assert!(e.contains("select buckets for the bucket job"), "{e}");
    }

    #[test]
    fn minimal_environment_gives_documented_defaults() {
        let s = snap(&env(&base()), &Overrides::default()).unwrap();
        assert_eq!(s.catalog_table, "backstop-catalog");
        assert_eq!(s.metrics_namespace, "Backstop");
        assert_eq!(s.concurrency, 4);
        assert!(!s.enable_pitr());
        assert_eq!(s.topic_arn, None);
        assert_eq!(
            s.selection,
            TableSelection::Names(vec!["SalesTable".into(), "BuyersTable".into()])
        );
    }

    #[test]
    fn missing_catalog_names_the_variable() {
        let e = err_of(&[(ENV_TABLES, "A12")], &Overrides::default());
        assert!(
            e.contains("BACKSTOP_CATALOG_TABLE") && e.contains("required"),
            "{e}"
        );
    }

    #[test]
    fn bad_table_name_names_setting_and_rule() {
        let e = err_of(
            &[
                (ENV_CATALOG_TABLE, "cat"),
                (ENV_TABLES, "ok-table,bad/table"),
            ],
            &Overrides::default(),
        );
        assert!(e.contains("BACKSTOP_TABLES") && e.contains("'/'"), "{e}");
        let e = err_of(
            &[(ENV_CATALOG_TABLE, "x"), (ENV_TABLES, "abc")],
            &Overrides::default(),
        );
        assert!(
            e.contains("BACKSTOP_CATALOG_TABLE") && e.contains("3 to 255"),
            "{e}"
        );
    }

    #[test]
    fn bad_booleans_numbers_and_arns_are_refused_with_the_rule() {
        let mut p = base();
        p.push((ENV_ENABLE_PITR, "maybe"));
        assert!(err_of(&p, &Overrides::default())
            .contains("BACKSTOP_ENABLE_PITR: must be true or false"));
        let mut p = base();
        p.push((ENV_CONCURRENCY, "0"));
        assert!(err_of(&p, &Overrides::default()).contains("from 1 to 50"));
        let mut p = base();
        p.push((ENV_CONCURRENCY, "lots"));
        assert!(err_of(&p, &Overrides::default()).contains("BACKSTOP_CONCURRENCY"));
        let mut p = base();
        p.push((ENV_TOPIC_ARN, "arn:aws:sqs:us-east-1:1:q"));
        assert!(err_of(&p, &Overrides::default()).contains("SNS topic ARN"));
        let mut p = base();
        p.push((ENV_METRICS_NAMESPACE, "AWS/DynamoDB"));
        assert!(err_of(&p, &Overrides::default()).contains("reserved"));
    }

    #[test]
    fn no_selection_and_two_selections_are_refused() {
        let e = err_of(&[(ENV_CATALOG_TABLE, "cat")], &Overrides::default());
        assert!(e.contains("no tables selected"), "{e}");
        let e = err_of(
            &[
                (ENV_CATALOG_TABLE, "cat"),
                (ENV_TABLES, "abc"),
                (ENV_TABLE_TAG, "backup=yes"),
            ],
            &Overrides::default(),
        );
        assert!(
            e.contains("BACKSTOP_TABLES + BACKSTOP_TABLE_TAG") && e.contains("only one"),
            "{e}"
        );
    }

    #[test]
    fn payload_overrides_the_environment() {
        let o = Overrides {
            table_tag: Some("backup:plan=daily".into()),
            enable_pitr: Some(true),
            concurrency: Some(10),
            metrics_namespace: Some("Custom/NS".into()),
            ..Default::default()
        };
        // A dry run may look at another selection and count elsewhere.
        let s = Settings::resolve(JobKind::Snapshot, &env(&base()), &req(&o, true)).unwrap();
        assert_eq!(
            s.selection,
            TableSelection::Tag {
                key: "backup:plan".into(),
                value: Some("daily".into())
            }
        );
        assert!(s.enable_pitr());
        assert_eq!(s.concurrency, 10);
        assert_eq!(s.metrics_namespace, "Custom/NS");
        // A run that acts may narrow and tune, never widen or redirect.
        let o = Overrides {
            tables: Some(vec!["SalesTable".into()]),
            enable_pitr: Some(true),
            concurrency: Some(10),
            ..Default::default()
        };
        let s = snap(&env(&base()), &o).unwrap();
        assert_eq!(
            s.selection,
            TableSelection::Names(vec!["SalesTable".into()])
        );
        assert_eq!(s.concurrency, 10);
    }

    #[test]
    fn no_payload_that_acts_widens_the_selection_or_redirects_a_job() {
        let e = env(&[
            (ENV_CATALOG_TABLE, "backstop-catalog"),
            (ENV_TABLES, "SalesTable, BuyersTable"),
            (ENV_EXPORT_BUCKET, "acme-exports"),
        ]);
        for job in [
            JobKind::Snapshot,
            JobKind::Export,
            JobKind::Validate,
            JobKind::Retention,
        ] {
            for (o, field) in [
                (
                    Overrides {
                        tables: Some(vec!["PayrollTable".into()]),
                        ..Default::default()
                    },
                    "setting tables:",
                ),
                (
                    Overrides {
                        table_pattern: Some("*".into()),
                        ..Default::default()
                    },
                    "setting table_pattern:",
                ),
                (
                    Overrides {
                        table_tag: Some("any".into()),
                        ..Default::default()
                    },
                    "setting table_tag:",
                ),
                (
                    Overrides {
                        catalog_table: Some("forged-catalog".into()),
                        ..Default::default()
                    },
                    "setting catalog_table:",
                ),
                (
                    Overrides {
                        topic_arn: Some("arn:aws:sns:us-east-1:123456789012:elsewhere".into()),
                        ..Default::default()
                    },
                    "setting topic_arn:",
                ),
                (
                    Overrides {
                        metrics_namespace: Some("Elsewhere".into()),
                        ..Default::default()
                    },
                    "setting metrics_namespace:",
                ),
            ] {
                let got = Settings::resolve(job, &e, &req(&o, false))
                    .map(|_| ())
                    .unwrap_err()
                    .to_string();
                assert!(got.starts_with(field), "{job:?} {o:?}: {got}");
                // A dry run only looks: it may.
                assert!(
                    Settings::resolve(job, &e, &req(&o, true)).is_ok(),
                    "{job:?} {o:?} dry run"
                );
            }
        }
    }

    #[test]
    fn payload_errors_name_the_payload_field() {
        let o = Overrides {
            tables: Some(vec![]),
            ..Default::default()
        };
        assert!(err_of(&base(), &o).contains("setting tables: the table list is empty"));
        let o = Overrides {
            table_pattern: Some("Sales[".into()),
            ..Default::default()
        };
        assert!(err_of(&base(), &o).starts_with("setting table_pattern:"));
    }

    #[test]
    fn retention_policy_defaults_to_the_runbook_and_bad_policies_name_the_setting() {
        let policy = |s: Settings| s.retention_policy().cloned().unwrap();
        let s = retention(&env(&base()), &Overrides::default(), false).unwrap();
        assert_eq!(policy(s), RetentionPolicy::runbook_default());
        let mut p = base();
        p.push((ENV_RETENTION_POLICY, "keep_daily=7,keep_weekly=4"));
        let s = retention(&env(&p), &Overrides::default(), false).unwrap();
        assert_eq!(policy(s).keep_daily, Some(7));
        let mut p = base();
        p.push((ENV_RETENTION_POLICY, "time_zone=UTC"));
        let e = retention(&env(&p), &Overrides::default(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("BACKSTOP_RETENTION_POLICY") && e.contains("keeps nothing"),
            "{e}"
        );
        let o = Overrides {
            policy: Some(serde_json::json!({"keep_last": 2})),
            ..Default::default()
        };
        let s = retention(&env(&base()), &o, true).unwrap();
        assert_eq!(policy(s).keep_last, Some(2));
        let o = Overrides {
            policy: Some(serde_json::json!({"keep_lots": 2})),
            ..Default::default()
        };
        assert!(retention(&env(&base()), &o, true)
            .unwrap_err()
            .to_string()
            .starts_with("setting policy: policy: unknown field `keep_lots`"));
    }

    #[test]
    fn snapshot_ignores_a_broken_retention_policy_and_refuses_retention_fields() {
        let mut p = base();
        p.push((ENV_RETENTION_POLICY, "keep_dialy=30,,garbage"));
        let s = snap(&env(&p), &Overrides::default()).unwrap();
        assert_eq!(s.retention_policy(), None);
        let o = Overrides {
            policy: Some(serde_json::json!("keep_last=1")),
            ..Default::default()
        };
        let e = snap(&env(&base()), &o).unwrap_err().to_string();
        assert!(
            e.starts_with("setting policy: is a retention setting"),
            "{e}"
        );
        // And retention ignores a broken snapshot setting.
        let mut p = base();
        p.push((ENV_ENABLE_PITR, "perhaps"));
        assert!(retention(&env(&p), &Overrides::default(), false).is_ok());
    }

    fn destructive() -> Overrides {
        serde_json::from_value(serde_json::json!({
            "table_pattern": "*",
            "policy": {"keep_last": 1, "min_complete": 1, "include_unmanaged": true, "freshness_limit": "100y"}
        }))
        .unwrap()
    }

    #[test]
    fn a_deleting_retention_payload_may_loosen_nothing() {
        let e = retention(&env(&base()), &destructive(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("setting table_pattern:") && e.contains("only narrow"),
            "{e}"
        );
        let floor_only: Overrides = serde_json::from_value(serde_json::json!({
            "policy": "keep_daily=30,keep_weekly=12,keep_monthly=12,keep_yearly=7,min_complete=1"
        }))
        .unwrap();
        let e = retention(&env(&base()), &floor_only, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("setting policy: min_complete is a safety floor")
                && e.contains("BACKSTOP_RETENTION_POLICY alone"),
            "{e}"
        );
        let fewer: Overrides = serde_json::from_value(serde_json::json!({
            "policy": "keep_daily=7,keep_weekly=12,keep_monthly=12,keep_yearly=7"
        }))
        .unwrap();
        let e = retention(&env(&base()), &fewer, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("keep_daily 7 keeps less than keep_daily 30"),
            "{e}"
        );
        let elsewhere = Overrides {
            topic_arn: Some("arn:aws:sns:us-east-1:123456789012:somewhere-else".into()),
            ..Default::default()
        };
        let e = retention(&env(&base()), &elsewhere, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("setting topic_arn:"), "{e}");
        let other_catalog = Overrides {
            catalog_table: Some("forged-catalog".into()),
            ..Default::default()
        };
        let e = retention(&env(&base()), &other_catalog, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("setting catalog_table:"), "{e}");
        let wider = Overrides {
            tables: Some(vec!["SalesTable".into(), "Payroll".into()]),
            ..Default::default()
        };
        let e = retention(&env(&base()), &wider, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("table \"Payroll\" is not in the configured selection"),
            "{e}"
        );
        // The same payloads plan freely in a dry run.
        for o in [destructive(), floor_only, fewer, other_catalog, wider] {
            retention(&env(&base()), &o, true).unwrap();
        }
    }

    #[test]
    fn a_deleting_retention_payload_may_keep_more_and_narrow() {
        let more: Overrides = serde_json::from_value(serde_json::json!({
            "tables": ["BuyersTable"],
            "policy": {"keep_daily": 60, "keep_weekly": 12, "keep_monthly": 24, "keep_yearly": 7, "keep_last": 5}
        }))
        .unwrap();
        let mut p = base();
        p.push((ENV_RETENTION_POLICY, "keep_daily=30,keep_weekly=12,keep_monthly=12,keep_yearly=7,min_complete=5,freshness_limit=72h"));
        let s = retention(&env(&p), &more, false).unwrap();
        let policy = s.retention_policy().cloned().unwrap();
        assert_eq!(policy.keep_daily, Some(60));
        assert_eq!(policy.min_complete, Some(5), "floors from the environment");
        assert_eq!(policy.freshness_limit.as_deref(), Some("72h"));
        assert_eq!(
            s.selection,
            TableSelection::Names(vec!["BuyersTable".into()])
        );
        // Under a tag selection, the list is checked against the tag when resolved.
        let tagged = env(&[
            (ENV_CATALOG_TABLE, "cat"),
            (ENV_TABLE_TAG, "backup:plan=daily"),
        ]);
        let o = Overrides {
            tables: Some(vec!["AnyTable".into()]),
            ..Default::default()
        };
        let s = retention(&tagged, &o, false).unwrap();
        assert_eq!(
            s.within,
            Some(TableSelection::Tag {
                key: "backup:plan".into(),
                value: Some("daily".into())
            })
        );
    }

    #[test]
    fn duplicate_tables_are_selected_once() {
        let s = snap(
            &env(&[(ENV_CATALOG_TABLE, "cat"), (ENV_TABLES, "abc,abc, abd")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            s.selection,
            TableSelection::Names(vec!["abc".into(), "abd".into()])
        );
    }

    #[test]
    fn a_long_table_list_is_deduplicated_keeping_the_first_of_each() {
        // 200,000 names, each twice: linear work (a quadratic scan would take minutes here).
        let names: Vec<String> = (0..200_000)
            .map(|i| format!("Table{:06}", i % 100_000))
            .collect();
        let o = Overrides {
            tables: Some(names),
            ..Default::default()
        };
        let s = snap(
            &env(&[
                (ENV_CATALOG_TABLE, "backstop-catalog"),
                (ENV_TABLE_PATTERN, "Table*"),
            ]),
            &o,
        )
        .unwrap();
        let TableSelection::Names(got) = s.selection else {
            panic!()
        };
        assert_eq!(got.len(), 100_000);
        assert_eq!(got[0], "Table000000");
        assert_eq!(got[99_999], "Table099999");
    }

    #[test]
    fn tls_roots_default_per_caller_and_a_bad_value_names_the_setting() {
        use crate::aws::TlsRoots;
        let unset = Environment::from_pairs(Vec::<(&str, &str)>::new());
        assert_eq!(unset.tls_roots(TlsRoots::Amazon).unwrap(), TlsRoots::Amazon);
        assert_eq!(unset.tls_roots(TlsRoots::System).unwrap(), TlsRoots::System);
        let system = Environment::from_pairs([(ENV_TLS_ROOTS, "SYSTEM")]);
        assert_eq!(
            system.tls_roots(TlsRoots::Amazon).unwrap(),
            TlsRoots::System
        );
        let bad = Environment::from_pairs([(ENV_TLS_ROOTS, "insecure")]);
        let err = bad.tls_roots(TlsRoots::Amazon).unwrap_err().to_string();
        assert!(
            err.contains(ENV_TLS_ROOTS) && err.contains("insecure"),
            "{err}"
        );
    }

    #[test]
    fn every_setting_is_in_help_and_in_the_readme() {
        let source = include_str!("settings.rs");
        let readme = include_str!("../../README.md");
        let names: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub const ENV_"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert!(names.len() >= 10, "{names:?}");
        for name in names {
            assert!(
                ALL_ENV.iter().any(|(n, _)| *n == name),
                "{name} is missing from ALL_ENV (backstop --help)"
            );
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} is missing from the README's settings"
            );
        }
    }

    #[test]
    fn own_tables_are_recognised() {
        let s = snap(&env(&base()), &Overrides::default()).unwrap();
        assert!(s.is_own_table("backstop-catalog"));
        assert!(s.is_own_table("backstop-drill-SalesTable-1"));
        assert!(!s.is_own_table("SalesTable"));
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let long = "x".repeat(300);
        let e = err_of(
            &[(ENV_CATALOG_TABLE, &long), (ENV_TABLES, "abc")],
            &Overrides::default(),
        );
        assert!(e.len() < 250, "{e}");
    }

    #[test]
    fn export_settings_name_what_is_wrong_and_keep_the_catalog() {
        let export = |pairs: &[(&str, &str)], o: &Overrides, dry_run: bool| {
            let mut all = base();
            all.extend_from_slice(pairs);
            Settings::resolve(JobKind::Export, &env(&all), &req(o, dry_run))
        };
        let e = export(&[], &Overrides::default(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(ENV_EXPORT_BUCKET) && e.contains("required"),
            "{e}"
        );
        let ok = export(
            &[(ENV_EXPORT_BUCKET, "my-exports")],
            &Overrides::default(),
            false,
        )
        .unwrap();
        let x = ok.export().unwrap();
        assert_eq!(
            (x.mode, x.full_every_days, x.fan_out, x.file_bytes),
            (ExportMode::Auto, 7, 1, 16 << 20)
        );
        assert_eq!(x.location.prefix, "backstop");
        for (pairs, want) in [
            (vec![(ENV_EXPORT_BUCKET, "My_Bucket")], "S3 bucket name"),
            (
                vec![(ENV_EXPORT_BUCKET, "b-x"), (ENV_EXPORT_MODE, "fast")],
                "native, logical or auto",
            ),
            (
                vec![(ENV_EXPORT_BUCKET, "b-x"), (ENV_EXPORT_FAN_OUT, "21")],
                "1 to 20",
            ),
            (
                vec![(ENV_EXPORT_BUCKET, "b-x"), (ENV_EXPORT_FILE_BYTES, "10")],
                "1024",
            ),
            (
                vec![(ENV_EXPORT_BUCKET, "b-x"), (ENV_EXPORT_FULL_EVERY, "36d")],
                "0 to 35",
            ),
        ] {
            let e = export(&pairs, &Overrides::default(), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
        assert_eq!(
            export(
                &[(ENV_EXPORT_BUCKET, "b-x"), (ENV_EXPORT_FULL_EVERY, "14d")],
                &Overrides::default(),
                false
            )
            .unwrap()
            .export()
            .unwrap()
            .full_every_days,
            14
        );
        // A payload may not swap the catalog (unless dry run), nor claim to be a helper alone.
        let other_catalog = Overrides {
            catalog_table: Some("other-catalog".into()),
            ..Overrides::default()
        };
        let e = export(&[(ENV_EXPORT_BUCKET, "b-x")], &other_catalog, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("catalog_table") && e.contains("one export per slot"),
            "{e}"
        );
        assert!(export(&[(ENV_EXPORT_BUCKET, "b-x")], &other_catalog, true).is_ok());
        let helper = Overrides {
            helper: Some(true),
            ..Overrides::default()
        };
        assert!(export(&[(ENV_EXPORT_BUCKET, "b-x")], &helper, false)
            .unwrap_err()
            .to_string()
            .contains("continuation"));
        // Export fields are refused by the other jobs, by name.
        let mode = Overrides {
            mode: Some("logical".into()),
            ..Overrides::default()
        };
        let e = snap(&env(&base()), &mode).unwrap_err().to_string();
        assert!(e.contains("mode") && e.contains("export setting"), "{e}");
    }
}
