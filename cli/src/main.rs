//! `backstop`: run Backstop's jobs locally, list what the catalog holds, and run the local demo.
//! This file holds the arguments and the dispatch; each command lives in its own module.

mod backups;
mod bucket;
mod demo;
mod diff;
mod render;
mod restore;
mod retention;
mod run;
mod stack;
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use backstop::aws::emulator_config;
use backstop::report::RunReport;
use backstop::settings::{self, JobKind};
use backstop::Error;
use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "backstop",
    version,
    about = "Backstop: scheduled, verified backups of DynamoDB tables, run locally.",
    long_about = "Backstop backs up DynamoDB tables on a schedule, records every backup in a catalog, \
                  and reports each run by SNS and CloudWatch metrics. In AWS the same jobs run as \
                  Lambda functions; this command runs them locally, reads the catalog, and runs the \
                  demo on a local emulator.\n\n\
                  AWS access comes from the usual AWS environment (AWS_REGION, credentials, \
                  AWS_ENDPOINT_URL), or from --endpoint for a local emulator.",
    after_long_help = settings_help()
)]
struct Cli {
    /// Talk to an AWS emulator at this URL (dummy credentials, region us-east-1) instead of AWS.
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,

    /// A deployed Backstop stack: its outputs (the catalog, the topic, the buckets, the
    /// functions) stand in for BACKSTOP_* settings not set otherwise.
    #[arg(long, global = true, value_name = "NAME", env = "BACKSTOP_STACK")]
    stack: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job once, exactly as its Lambda function would, with settings from BACKSTOP_*.
    Run {
        /// Which job.
        job: Job,
        /// The payload: an EventBridge Scheduled Event or a manual payload (JSON file; - for stdin).
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Print the RunReport as JSON instead of a summary.
        #[arg(long)]
        json: bool,
        /// Behave as an invocation with this many seconds left before its deadline, as Lambda
        /// gives one (a drill, an export or a restore then stops in time and carries on in the
        /// next run); without it there is no deadline.
        #[arg(long, value_name = "SECONDS")]
        time_left: Option<u64>,
    },
    /// Invoke a deployed function (needs --stack) synchronously and print its report as `run`
    /// does; the exit status is `run`'s. No AWS CLI needed.
    Invoke {
        /// Which function.
        job: Job,
        /// Plan only: make, delete and publish nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only these tables (comma-separated), instead of the stack's selection.
        #[arg(long, value_name = "A,B")]
        tables: Option<String>,
        /// Send this payload (JSON file; - for stdin) instead.
        #[arg(long, value_name = "FILE")]
        payload: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read backups from the catalog.
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// S3 bucket backups: incremental, server-side, one complete manifest per slot (settings
    /// BACKSTOP_BUCKET_*; the bucket's lock lives in the catalog).
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Read exports from the catalog.
    Exports {
        #[command(subcommand)]
        command: ExportsCommand,
    },
    /// The local demo: start moto, create the stack and the three demo tables, run the daily
    /// cycle (snapshot, then retention), and print the report, the SNS message read from SQS
    /// and the metrics read back.
    Demo {
        /// Items per demo table.
        #[arg(long, default_value_t = 2000)]
        items: usize,
        /// Also print the RunReport as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The local stack on its own: start moto, create the stack and the demo tables, print the
    /// environment to use it from another shell, and wait for Ctrl-C.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Retention: see what the policy keeps and deletes, and why.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Restore into a new table: from a backup, from point-in-time recovery, or from an export.
    /// A target that exists, or that Backstop protects (BACKSTOP_TABLES, the catalog), is
    /// refused before anything is created. Each ends by reading the new table back (count and
    /// fingerprint) and comparing it with what the source recorded; exit 1 when they differ.
    Restore {
        #[command(subcommand)]
        command: RestoreCommand,
    },
    /// What differs between two copies of a table: each side a table, or `export:<id>`,
    /// `export:<table>@<slot>` or `export:<table>@latest`. Prints one JSON line per key only
    /// left, only right or changed (`--items` adds the items), and the counts on standard
    /// error; exit 1 when they differ. Memory holds one partition of one side (spilled to the
    /// temporary directory), not the tables.
    Diff {
        #[arg(long)]
        left: String,
        #[arg(long)]
        right: String,
        /// Print the items themselves, not only their keys.
        #[arg(long)]
        items: bool,
        /// The catalog table, for export sides (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
    },
    /// Put back into a live table what a restored copy (or an export) has and the live table
    /// lost. Every write is conditional: a deleted item is put back only while its key is still
    /// absent, a changed one overwritten only while it holds what the diff saw; items written
    /// meanwhile are skipped and named.
    Recover {
        /// The restored copy (a table, or an export as for `diff`).
        #[arg(long)]
        from: String,
        /// The live table to put items back into.
        #[arg(long)]
        into: String,
        /// Put back the items missing from the live table.
        #[arg(long)]
        deleted: bool,
        /// Overwrite items that changed in the live table with the restored copy's.
        #[arg(long)]
        changed: bool,
        /// Say what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The catalog table, for an export as --from (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where every selected table (BACKSTOP_TABLES, _TABLE_PATTERN, _TABLE_TAG) and bucket
    /// (BACKSTOP_BUCKETS, ...) stands: newest backup and its age, newest export, PITR and its
    /// restorable window (buckets: versioning), last drill with level and RTO, the last
    /// retention run, and a verdict held to the validate job's limits (BACKSTOP_BACKUP_MAX_AGE,
    /// _EXPORT_MAX_AGE, _PITR_MAX_LAG). Exit 0 when all are fresh, 1 when anything is stale or
    /// failed, so that it can gate a script.
    Status {
        /// Judge as of this time (RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A month's (--month 2026-11) or a day's (--day 2026-11-30) report from the catalog: per
    /// job and per table, runs, success rate, backups made and deleted, bytes, durations
    /// (median and max), failures with reasons, drills and RTO, exports and their verification.
    Report {
        /// The month, such as 2026-11.
        #[arg(long, conflicts_with = "day", required_unless_present = "day")]
        month: Option<String>,
        /// The day, such as 2026-11-30.
        #[arg(long)]
        day: Option<String>,
        /// text, markdown, json, or html (one self-contained file with charts).
        #[arg(long, value_enum, default_value = "text")]
        format: status::Format,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
    },
    /// Validation on demand: read exports back and check them.
    Validate {
        #[command(subcommand)]
        command: ValidateCommand,
    },
    /// One restore drill now: restore the table's newest complete backup into a drill table
    /// (BACKSTOP_DRILL_TABLE_PREFIX), compare it with the strongest evidence (an export of the
    /// backup's moment, else the recorded count and shape), delete the drill table, and say
    /// which level it reached (proven, consistent, failed). Takes on the table's open drill if
    /// there is one. Exit 0 proven or consistent, 1 failed or not finished in time.
    Drill {
        /// The table to drill, or a database target (rds:<id>, aurora:<id>, elasticache:<id>).
        #[arg(long)]
        table: String,
        /// Leave the drill table in place for inspection (delete it yourself afterwards).
        #[arg(long)]
        keep: bool,
        /// How long to wait for the restore, such as 30m or 2h.
        #[arg(long, default_value = "1h", value_parser = parse_wait)]
        wait: jiff::SignedDuration,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Print the drill's result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Via {
    Load,
    Import,
}

#[derive(Subcommand)]
enum RestoreCommand {
    /// Restore a bucket backup's slot into a bucket (server-side copies with the manifest's
    /// headers, metadata and tags; each read back). Refused, before any copy, when a key exists
    /// in the target, unless --overwrite (then each only if unchanged since the check).
    Bucket {
        /// The source bucket whose backup to restore.
        #[arg(long)]
        bucket: String,
        /// The slot, as `bucket list` shows it.
        #[arg(long)]
        slot: String,
        /// The bucket to restore into.
        #[arg(long)]
        to: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        overwrite: bool,
        /// Say what would be copied; copy nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restore one object onto its key (or --to another): a previous version (copied onto the
    /// key, it becomes current and every version stays) or its copy in a slot's backup. In a
    /// bucket without versioning an existing object is replaced only with --overwrite.
    #[command(group(clap::ArgGroup::new("from").required(true).args(["version", "slot"])))]
    Object {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        key: String,
        /// The version id to restore.
        #[arg(long)]
        version: Option<String>,
        /// The slot whose backup to restore it from.
        #[arg(long)]
        slot: Option<String>,
        /// The key to restore onto (default: --key).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        overwrite: bool,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restore an RDS DB instance into a new instance: from a snapshot (--snapshot), or to a
    /// point in time from its automated backups (--instance with --time or --latest). The new
    /// instance takes the source's subnet group, parameter and option groups and security
    /// groups (as recorded with the snapshot, else as the source has them now) unless given. An
    /// identifier in use is refused; nothing is ever restored over an existing instance.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["snapshot", "instance"])))]
    Rds {
        /// The DB snapshot (identifier or ARN).
        #[arg(long)]
        snapshot: Option<String>,
        /// The DB instance whose automated backups to restore from (with --time or --latest).
        #[arg(long)]
        instance: Option<String>,
        /// The moment, RFC 3339 (with --instance).
        #[arg(long, requires = "instance", conflicts_with = "latest")]
        time: Option<String>,
        /// The latest restorable time (with --instance).
        #[arg(long, requires = "instance")]
        latest: bool,
        /// The new instance's identifier (must not exist).
        #[arg(long)]
        to: String,
        #[arg(long)]
        instance_class: Option<String>,
        #[arg(long)]
        subnet_group: Option<String>,
        #[arg(long)]
        parameter_group: Option<String>,
        #[arg(long)]
        option_group: Option<String>,
        /// VPC security group ids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        security_groups: Vec<String>,
        /// Turn deletion protection on for the new instance.
        #[arg(long)]
        deletion_protection: bool,
        /// How long to wait for it to become available, such as 30m or 2h.
        #[arg(long, default_value = "2h", value_parser = parse_wait)]
        wait: jiff::SignedDuration,
        /// The catalog, for the facts recorded with a Backstop snapshot (default:
        /// BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore an Aurora DB cluster into a new cluster: from a cluster snapshot (--snapshot), or
    /// to a point in time (--cluster with --time or --latest). Shaped like the source (subnet
    /// group, cluster parameter group, security groups) unless given; an identifier in use is
    /// refused. The new cluster has no instances: add one to connect (the output says how).
    #[command(group(clap::ArgGroup::new("source").required(true).args(["snapshot", "cluster"])))]
    Aurora {
        /// The DB cluster snapshot (identifier or ARN).
        #[arg(long)]
        snapshot: Option<String>,
        /// The DB cluster whose automated backups to restore from (with --time or --latest).
        #[arg(long)]
        cluster: Option<String>,
        /// The moment, RFC 3339 (with --cluster).
        #[arg(long, requires = "cluster", conflicts_with = "latest")]
        time: Option<String>,
        /// The latest restorable time (with --cluster).
        #[arg(long, requires = "cluster")]
        latest: bool,
        /// The new cluster's identifier (must not exist).
        #[arg(long)]
        to: String,
        #[arg(long)]
        subnet_group: Option<String>,
        /// The DB cluster parameter group.
        #[arg(long)]
        parameter_group: Option<String>,
        /// VPC security group ids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        security_groups: Vec<String>,
        /// Turn deletion protection on for the new cluster.
        #[arg(long)]
        deletion_protection: bool,
        /// How long to wait for it to become available, such as 30m or 2h.
        #[arg(long, default_value = "2h", value_parser = parse_wait)]
        wait: jiff::SignedDuration,
        /// The catalog, for the facts recorded with a Backstop snapshot (default:
        /// BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore an ElastiCache replication group (Valkey or Redis OSS) from a snapshot into a
    /// new group, shaped like the source (engine version, node type, nodes and shards, subnet
    /// and parameter groups, security groups, encryption at rest and in transit, RBAC user
    /// groups) unless given. A source that asks for an AUTH token needs --auth-token-file or
    /// --user-groups: the copy is never left open. An identifier in use is refused.
    /// ElastiCache has no point-in-time restore.
    Elasticache {
        /// The snapshot's name (or ARN).
        #[arg(long)]
        snapshot: String,
        /// The new replication group's identifier (must not exist; at most 40 characters).
        #[arg(long)]
        to: String,
        /// The node type, such as cache.t4g.small.
        #[arg(long)]
        node_type: Option<String>,
        /// How many nodes (clusters) the new group has; with cluster mode, per all shards.
        #[arg(long)]
        nodes: Option<i32>,
        #[arg(long)]
        subnet_group: Option<String>,
        /// The cache parameter group.
        #[arg(long)]
        parameter_group: Option<String>,
        /// VPC security group ids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        security_groups: Vec<String>,
        /// A file holding the new group's AUTH token (16 to 128 printable characters; the
        /// token is never printed). Turns encryption in transit on.
        #[arg(long, conflicts_with = "user_groups")]
        auth_token_file: Option<std::path::PathBuf>,
        /// RBAC user group ids for the new group, comma-separated (default the source's).
        #[arg(long, value_delimiter = ',')]
        user_groups: Vec<String>,
        /// How long to wait for it to become available, such as 30m or 2h.
        #[arg(long, default_value = "2h", value_parser = parse_wait)]
        wait: jiff::SignedDuration,
        /// The catalog, for the facts recorded with a Backstop snapshot (default:
        /// BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore an on-demand backup: by ARN, or a table's backup of a slot, or its newest.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["backup", "slot", "latest"])))]
    Backup {
        /// The backup's ARN.
        #[arg(long, conflicts_with = "table")]
        backup: Option<String>,
        /// The table whose backup to restore (with --slot or --latest).
        #[arg(long)]
        table: Option<String>,
        /// The slot of the backup, as `backups list` shows it.
        #[arg(long, requires = "table")]
        slot: Option<String>,
        /// The table's newest complete backup.
        #[arg(long, requires = "table")]
        latest: bool,
        /// The new table to restore into (must not exist).
        #[arg(long)]
        to: String,
        /// Leave the source's settings (TTL, stream, PITR, deletion protection, tags) off the
        /// new table; by default they are re-applied as recorded at backup time.
        #[arg(long)]
        no_settings: bool,
        /// How long to wait for the table to become ACTIVE, such as 30m or 2h.
        #[arg(long, default_value = "2h", value_parser = parse_wait)]
        wait: jiff::SignedDuration,
        /// The catalog table, for --table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a table as of a point in time (PITR must be on; the time inside its window).
    #[command(group(clap::ArgGroup::new("when").required(true).args(["time", "hours_ago", "latest"])))]
    Pitr {
        /// The table to restore.
        #[arg(long)]
        table: String,
        /// The new table to restore into (must not exist).
        #[arg(long)]
        to: String,
        /// Leave the source's settings (TTL, stream, PITR, deletion protection, tags) off the
        /// new table; by default they are re-applied as recorded at backup time.
        #[arg(long)]
        no_settings: bool,
        /// The moment, RFC 3339 (such as 2026-11-20T03:00:00Z).
        #[arg(long)]
        time: Option<String>,
        /// The moment as hours before now (such as 2 or 0.5).
        #[arg(long)]
        hours_ago: Option<f64>,
        /// The latest restorable time (about five minutes ago).
        #[arg(long)]
        latest: bool,
        /// How long to wait for the table to become ACTIVE, such as 30m or 2h.
        #[arg(long, default_value = "2h", value_parser = parse_wait)]
        wait: jiff::SignedDuration,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a full export (logical or native) into a new table with Backstop's loader: the
    /// export is read whole and checked first, every item is written (unprocessed ones retried
    /// with backoff, or the command fails naming them), and the table's fingerprint is
    /// compared with the export's.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["export", "slot", "latest", "until"])))]
    Export {
        /// The export's id (or ARN), as `exports list` shows it.
        #[arg(long, conflicts_with = "table")]
        export: Option<String>,
        /// The table whose export to restore (with --slot or --latest).
        #[arg(long)]
        table: Option<String>,
        /// The slot of the export.
        #[arg(long, requires = "table")]
        slot: Option<String>,
        /// The table's newest finished full export.
        #[arg(long, requires = "table")]
        latest: bool,
        /// A native chain: the table's full export and its incrementals applied in order, up
        /// to the last link at or before this time (RFC 3339).
        #[arg(long, requires = "table")]
        until: Option<String>,
        /// The new table to load into (must not exist).
        #[arg(long)]
        to: String,
        /// Leave the source's settings (TTL, stream, PITR, deletion protection, tags) off the
        /// new table; by default they are re-applied as recorded at backup time.
        #[arg(long)]
        no_settings: bool,
        /// How: `load` (Backstop's loader, BatchWriteItem; any table) or `import` (AWS
        /// ImportTable of the export's data prefix: any size, no write capacity; a table with
        /// local secondary indexes is loaded instead, and the output says so).
        #[arg(long, value_enum, default_value_t = Via::Load)]
        via: Via,
        /// BatchWriteItem calls in flight at once (with --via load).
        #[arg(long, default_value_t = backstop::restore::DEFAULT_PARALLEL, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
        parallel: usize,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Back up buckets for one slot: copy (server-side) every object whose key, version and
    /// ETag is not stored yet, reference the rest, write the slot's manifest. Safe to repeat: a
    /// finished slot says "already done", an unfinished one goes on from its checkpoint.
    Backup {
        /// A source bucket (repeat for several; default: BACKSTOP_BUCKETS).
        #[arg(long = "bucket")]
        buckets: Vec<String>,
        /// The slot, RFC 3339 (default: now, to the second).
        #[arg(long)]
        slot: Option<String>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy one complete slot of a bucket's backups to the replica (BACKSTOP_REPLICA_BUCKET,
    /// BACKSTOP_REPLICA_REGION): the objects it lacks, the manifest, the summary last; then
    /// read the replica's manifest back and compare it with the original.
    Replicate {
        #[arg(long)]
        bucket: String,
        /// The slot, as `bucket list` shows it.
        #[arg(long)]
        slot: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List one bucket's backups (slots), complete or unfinished.
    List {
        #[arg(long)]
        bucket: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retention for one bucket's backups: delete the slots the policy
    /// (BACKSTOP_BUCKET_RETENTION_POLICY) no longer keeps, then every stored object no
    /// remaining slot references. Never while a backup of the bucket runs.
    Prune {
        #[arg(long)]
        bucket: String,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: Option<String>,
        /// Evaluate as of this RFC 3339 time instead of now.
        #[arg(long)]
        now: Option<String>,
        /// Plan and count; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ValidateCommand {
    /// Read every finished export back (all of them, verified before or not) and check it
    /// against its manifests and fingerprint; record the result where none is recorded yet.
    /// Exit 1 when any export fails.
    Exports {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Only the export of this slot (as `exports list` shows it).
        #[arg(long, requires = "table")]
        slot: Option<String>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

fn parse_wait(text: &str) -> Result<jiff::SignedDuration, String> {
    let span: jiff::Span = text
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30m or 2h"))?;
    span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Plan one table without deleting anything: every backup with its age, decision and reasons.
    Plan {
        /// The table whose backups to plan.
        #[arg(long)]
        table: String,
        /// The policy, such as keep_daily=30,keep_weekly=12 (default: BACKSTOP_RETENTION_POLICY,
        /// else daily 30, weekly 12, monthly 12, yearly 7).
        #[arg(long, env = settings::ENV_RETENTION_POLICY)]
        policy: Option<String>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Evaluate as of this RFC 3339 time instead of now.
        #[arg(long)]
        now: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BackupsCommand {
    /// List the backups the catalog records, oldest slot first.
    List {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ExportsCommand {
    /// List the exports the catalog records (finished, under way and failed), oldest slot first.
    List {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// The catalog table (default: BACKSTOP_CATALOG_TABLE).
        #[arg(long, env = settings::ENV_CATALOG_TABLE)]
        catalog: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Start the emulator and provision the stack; stop with Ctrl-C.
    Up {
        /// Items per demo table.
        #[arg(long, default_value_t = 2000)]
        items: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Job {
    /// On-demand DynamoDB backups of the selected tables, once per schedule slot.
    Snapshot,
    /// Native or logical exports of the selected tables to S3, once per schedule slot.
    Export,
    /// Delete the backups the retention policy no longer keeps (dry_run: only plan).
    Retention,
    /// Freshness, export verification and restore drills of the selected tables.
    Validate,
    /// Incremental server-side backups of the selected S3 buckets, once per schedule slot,
    /// with their replica and prune.
    Bucket,
    /// One invocation of the restore function: `{"restore": {...}}` started, or carried on and
    /// reported (run it again with the same payload until its state is DONE).
    Restore,
    /// The daily or monthly summary, published once to the topic:
    /// `{"summary": "daily", "slot": "2026-12-02T07:00:00Z"}` (or `"period": "2026-11"`).
    Summary,
}

impl Job {
    /// As the function is named (and its template output, `<Name>FunctionName`).
    fn name(self) -> &'static str {
        match self {
            Job::Snapshot => "snapshot",
            Job::Export => "export",
            Job::Retention => "retention",
            Job::Validate => "validate",
            Job::Bucket => "bucket",
            Job::Restore => "restore",
            Job::Summary => "summary",
        }
    }

    /// The scheduled job; `None` for the restore function, which is asked, not scheduled.
    fn kind(self) -> Option<JobKind> {
        match self {
            Job::Snapshot => Some(JobKind::Snapshot),
            Job::Export => Some(JobKind::Export),
            Job::Retention => Some(JobKind::Retention),
            Job::Validate => Some(JobKind::Validate),
            Job::Bucket => Some(JobKind::Bucket),
            Job::Restore | Job::Summary => None,
        }
    }
}

fn settings_help() -> String {
    let mut s = String::from("Settings (environment variables; a payload may override them):\n");
    for (name, what) in settings::ALL_ENV {
        s.push_str(&format!("  {name:<30} {what}\n"));
    }
    s.push_str(&format!(
        "\nThis command only:\n  {:<30} {}\n  {:<30} {}\n",
        "BACKSTOP_STACK",
        "a deployed stack (as --stack): its outputs fill in the catalog, topic and bucket settings",
        stack::ENV_LAMBDA_ENDPOINT,
        "optional; where `invoke` calls Lambda, when not where the rest of AWS is (tests: cargo lambda watch)"
    ));
    s.push_str("\nExit status: 0 when the run succeeded, 1 when any target failed (the report says which), 2 on bad input or settings, 3 when validate found problems (stale tables, a damaged export, a failed drill).");
    s
}

fn main() -> ExitCode {
    // A --stack's outputs become settings before the arguments are parsed (clap reads its env
    // defaults then), on a runtime of this thread alone, before any other thread starts.
    // (Lossy: an argument that is not UTF-8 must reach clap, which refuses it by name, rather
    // than panic here.)
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let (Some(name), endpoint) = stack::prescan(&args) {
        let fetched = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Local(e.to_string()))
            .and_then(|rt| {
                rt.block_on(async {
                    let config = aws_config_for(endpoint.as_deref()).await;
                    stack::Stack::describe(&config, &name).await
                })
            });
        match fetched {
            Ok(s) => {
                for (k, v) in s.settings(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty())) {
                    // SAFETY (edition 2021: safe): no other thread runs yet.
                    std::env::set_var(k, v);
                }
            }
            Err(e) => {
                eprintln!("error: --stack {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match backstop::runtime::build() {
        Ok(rt) => rt.block_on(async_main()),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn async_main() -> ExitCode {
    backstop::logging::init(
        std::io::stderr,
        std::env::var("RUST_LOG").ok().as_deref(),
        tracing_subscriber::filter::LevelFilter::WARN,
        false,
        false,
    );
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::Setting { .. } | Error::Payload(_) | Error::Refused { .. } => {
                    ExitCode::from(2)
                }
                _ => ExitCode::from(1),
            }
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let endpoint = cli.endpoint.as_deref();
    match cli.command {
        Command::Invoke {
            job,
            dry_run,
            tables,
            payload,
            json,
        } => {
            let Some(name) = cli.stack.as_deref() else {
                return Err(Error::refused(
                    "invoke",
                    "it needs the deployed stack",
                    "give --stack NAME or set BACKSTOP_STACK",
                ));
            };
            let config = aws_config_for(endpoint).await;
            let s = stack::Stack::describe(&config, name).await?;
            let payload = stack::payload(payload.as_deref(), dry_run, tables.as_deref())?;
            stack::invoke(&config, &s, job.name(), payload, json).await
        }
        Command::Run {
            job,
            event,
            json,
            time_left,
        } => {
            let deadline = time_left.map(|s| {
                jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(
                        s.min(i64::MAX as u64) as i64
                    ))
                    .unwrap_or(jiff::Timestamp::MAX)
            });
            match job.kind() {
                Some(kind) => run::run(endpoint, kind, &event, json, deadline).await,
                None if matches!(job, Job::Summary) => {
                    run::summary(endpoint, &event, json, deadline).await
                }
                None => run::restore(endpoint, &event, json, deadline).await,
            }
        }
        Command::Retention {
            command:
                RetentionCommand::Plan {
                    table,
                    policy,
                    catalog,
                    now,
                    json,
                },
        } => {
            retention::plan(
                endpoint,
                &table,
                policy.as_deref(),
                catalog,
                now.as_deref(),
                json,
            )
            .await
        }
        Command::Backups {
            command:
                BackupsCommand::List {
                    table,
                    catalog,
                    json,
                },
        } => backups::list(endpoint, table.as_deref(), catalog, json).await,
        Command::Exports {
            command:
                ExportsCommand::List {
                    table,
                    catalog,
                    json,
                },
        } => backups::list_exports(endpoint, table.as_deref(), catalog, json).await,
        Command::Status { now, json } => status::status(endpoint, now.as_deref(), json).await,
        Command::Report {
            month,
            day,
            format,
            output,
            catalog,
        } => {
            let period = month.or(day).unwrap_or_default();
            status::report(endpoint, &period, format, catalog, output.as_deref()).await
        }
        Command::Validate {
            command:
                ValidateCommand::Exports {
                    table,
                    slot,
                    catalog,
                    json,
                },
        } => validate::exports(endpoint, table.as_deref(), slot.as_deref(), catalog, json).await,
        Command::Drill {
            table,
            keep,
            wait,
            catalog,
            json,
        } => validate::drill(endpoint, &table, catalog, keep, wait, json).await,
        Command::Bucket { command } => match command {
            BucketCommand::Backup {
                buckets,
                slot,
                catalog,
                json,
            } => bucket::backup(endpoint, buckets, slot.as_deref(), catalog, json).await,
            BucketCommand::List { bucket, json } => bucket::list(endpoint, &bucket, json).await,
            BucketCommand::Replicate { bucket, slot, json } => {
                bucket::replicate(endpoint, &bucket, &slot, json).await
            }
            BucketCommand::Prune {
                bucket,
                catalog,
                now,
                dry_run,
                json,
            } => {
                bucket::prune_bucket(endpoint, &bucket, catalog, now.as_deref(), dry_run, json)
                    .await
            }
        },
        Command::Restore { command } => match command {
            RestoreCommand::Bucket {
                bucket,
                slot,
                to,
                prefix,
                overwrite,
                dry_run,
                json,
            } => {
                bucket::restore_bucket(
                    endpoint,
                    bucket::BucketRestoreArgs {
                        bucket,
                        slot,
                        to,
                        prefix,
                        overwrite,
                        dry_run,
                        json,
                    },
                )
                .await
            }
            RestoreCommand::Object {
                bucket,
                key,
                version,
                slot,
                to,
                overwrite,
                dry_run,
                json,
            } => {
                bucket::restore_object(
                    endpoint,
                    bucket::ObjectRestoreArgs {
                        bucket,
                        key,
                        version,
                        slot,
                        to,
                        overwrite,
                        dry_run,
                        json,
                    },
                )
                .await
            }
            RestoreCommand::Rds {
                snapshot,
                instance,
                time,
                latest,
                to,
                instance_class,
                subnet_group,
                parameter_group,
                option_group,
                security_groups,
                deletion_protection,
                wait,
                catalog,
                json,
            } => {
                restore::rds(
                    endpoint,
                    restore::RdsArgs {
                        kind: backstop::db::DbKind::RdsInstance,
                        snapshot,
                        source: instance,
                        time,
                        latest,
                        to,
                        shape: backstop::db::rds::RestoreShape {
                            instance_class,
                            subnet_group,
                            parameter_group,
                            option_group,
                            security_groups,
                            deletion_protection: Some(deletion_protection),
                            ..Default::default()
                        },
                        wait,
                        catalog,
                        json,
                    },
                )
                .await
            }
            RestoreCommand::Aurora {
                snapshot,
                cluster,
                time,
                latest,
                to,
                subnet_group,
                parameter_group,
                security_groups,
                deletion_protection,
                wait,
                catalog,
                json,
            } => {
                restore::rds(
                    endpoint,
                    restore::RdsArgs {
                        kind: backstop::db::DbKind::AuroraCluster,
                        snapshot,
                        source: cluster,
                        time,
                        latest,
                        to,
                        shape: backstop::db::rds::RestoreShape {
                            subnet_group,
                            parameter_group,
                            security_groups,
                            deletion_protection: Some(deletion_protection),
                            ..Default::default()
                        },
                        wait,
                        catalog,
                        json,
                    },
                )
                .await
            }
            RestoreCommand::Elasticache {
                snapshot,
                to,
                node_type,
                nodes,
                subnet_group,
                parameter_group,
                security_groups,
                auth_token_file,
                user_groups,
                wait,
                catalog,
                json,
            } => {
                let auth_token = match auth_token_file {
                    Some(path) => Some(restore::read_auth_token(&path)?),
                    None => None,
                };
                restore::rds(
                    endpoint,
                    restore::RdsArgs {
                        kind: backstop::db::DbKind::ElastiCacheGroup,
                        snapshot: Some(snapshot),
                        source: None,
                        time: None,
                        latest: false,
                        to,
                        shape: backstop::db::rds::RestoreShape {
                            instance_class: node_type,
                            cache_nodes: nodes,
                            subnet_group,
                            parameter_group,
                            security_groups,
                            auth_token,
                            user_groups,
                            ..Default::default()
                        },
                        wait,
                        catalog,
                        json,
                    },
                )
                .await
            }
            RestoreCommand::Backup {
                backup,
                table,
                slot,
                latest: _,
                to,
                no_settings,
                wait,
                catalog,
                json,
            } => {
                restore::backup(
                    endpoint,
                    restore::BackupArgs {
                        no_settings,
                        backup,
                        table,
                        slot,
                        catalog,
                        to,
                        wait,
                        json,
                    },
                )
                .await
            }
            RestoreCommand::Pitr {
                table,
                to,
                time,
                hours_ago,
                latest,
                no_settings,
                wait,
                json,
            } => {
                restore::pitr(
                    endpoint,
                    restore::PitrArgs {
                        no_settings,
                        table,
                        to,
                        time,
                        hours_ago,
                        latest,
                        wait,
                        json,
                    },
                )
                .await
            }
            RestoreCommand::Export {
                export,
                table,
                slot,
                latest: _,
                to,
                until,
                no_settings,
                via,
                parallel,
                catalog,
                json,
            } => {
                restore::export(
                    endpoint,
                    restore::ExportArgs {
                        until,
                        no_settings,
                        export,
                        table,
                        slot,
                        catalog,
                        to,
                        via: match via {
                            Via::Load => backstop::restore::Via::Load,
                            Via::Import => backstop::restore::Via::Import,
                        },
                        parallel,
                        json,
                    },
                )
                .await
            }
        },
        Command::Diff {
            left,
            right,
            items,
            catalog,
        } => diff::diff(endpoint, &left, &right, items, catalog.as_deref()).await,
        Command::Recover {
            from,
            into,
            deleted,
            changed,
            dry_run,
            catalog,
            json,
        } => {
            diff::recover(
                endpoint,
                diff::RecoverArgs {
                    from: &from,
                    into: &into,
                    deleted,
                    changed,
                    dry_run,
                    catalog: catalog.as_deref(),
                    json,
                },
            )
            .await
        }
        Command::Demo { items, json } => demo::demo(endpoint, items, json).await,
        Command::Local {
            command: LocalCommand::Up { items },
        } => demo::local_up(items).await,
    }
}

/// The SDK configuration: the emulator's when --endpoint is given, else the standard AWS chain
/// over HTTPS that trusts `BACKSTOP_TLS_ROOTS`: the machine's store unless it says `amazon`
/// (an operator's machine may sit behind a TLS-inspecting proxy the system store trusts).
async fn aws_config_for(endpoint: Option<&str>) -> aws_config::SdkConfig {
    use backstop::aws::TlsRoots;
    match endpoint {
        Some(url) => emulator_config(url).await,
        None => {
            let roots = backstop::settings::Environment::from_process()
                .tls_roots(TlsRoots::System)
                .unwrap_or_else(|e| {
                    eprintln!("warning: {e}; using the system's certificate store");
                    TlsRoots::System
                });
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(backstop::aws::https_client(roots))
                .load()
                .await
        }
    }
}

/// A run's exit status, next to the error statuses in `main`, so that the promise
/// `settings_help` prints is kept in this one file.
fn exit_for(report: &RunReport) -> ExitCode {
    if report.needs_retry() {
        ExitCode::from(1)
    } else if report.status == backstop::report::RunStatus::ProblemsFound {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
