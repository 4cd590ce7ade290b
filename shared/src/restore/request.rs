//! The `restore` function: a restore asked for by payload (`aws lambda invoke`), carried through
//! as many invocations as it needs, with its state in the catalog.
//!
//! Payload: `{"restore": {"kind": "pitr"|"backup"|"export", "to": "restored-…", …}}`. The first
//! invocation checks the request (the target must start with the restore prefix, must not
//! exist and must not be a protected table), records it in the catalog (item
//! `RESTORE#<to>`/`RESTORE`) and starts it. An invocation with the same request later reports
//! its state, and carries it on: a backup or PITR restore that AWS finished is read back
//! (count and fingerprint) and its settings re-applied; an export is checked and loaded one data
//! file at a time, its place saved in the catalog after each file, and when the invocation's
//! time runs low it invokes itself again (asynchronously) to continue, so a load is not bound by
//! Lambda's 15 minutes. A different request for a target already recorded is refused.
//!
//! Every step that writes runs under a lease on the catalog item (as the export's segments do):
//! two invocations never work on one restore at once, and one that died is taken over once its
//! lease has run out. Redoing a data file is harmless (its puts write the same items again), so
//! an invocation killed mid-file costs at most that file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TableStatus};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use super::{source, ExportSource, Loader, PitrTime, Restored, TableSpec};
use crate::aws::Clients;
use crate::catalog::{lease_until, Catalog};
use crate::error::{Error, Result};
use crate::export::{manifest::FileEntry, reader};
use crate::fingerprint::{Fingerprint, Fingerprinter};
use crate::settings::{self, Environment};
use crate::table_settings::TableSettings;

use crate::settings::{ENV_RESTORE_PARALLEL, ENV_RESTORE_PREFIX, ENV_RESTORE_TIME_BUDGET};

pub const DEFAULT_PREFIX: &str = "restored-";
/// Starts of an AWS restore (backup, PITR) whose table then cannot be found, before the
/// restore is failed.
const MAX_STARTS: u32 = 3;
/// How often the holder renews its lease while it works.
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// The tag a loaded table is created with: the restore's id, so that a table of that name made
/// by anybody else is never taken for this restore's.
pub const RESTORE_TAG: &str = "backstop:restore";

/// What the function is configured with (`BACKSTOP_*`).
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    pub catalog_table: String,
    /// Every target's name must start with it (the function's role may create only such
    /// tables).
    pub prefix: String,
    /// The tables selected for backup (BACKSTOP_TABLES), never a target.
    pub tables: Option<String>,
    /// The selection the function serves (BACKSTOP_TABLES, _PATTERN or _TAG): it restores only
    /// sources inside it, whoever invokes it.
    pub selection: crate::selection::TableSelection,
    /// Work per invocation before a continuation (default: up to the deadline's margin).
    pub time_budget: Option<Duration>,
    pub parallel: usize,
}

impl RestoreSettings {
    pub fn resolve(env: &Environment) -> Result<RestoreSettings> {
        let catalog_table = env.value(settings::ENV_CATALOG_TABLE).ok_or_else(|| {
            Error::setting(
                settings::ENV_CATALOG_TABLE,
                "the catalog table is required: it records each restore's state",
            )
        })?;
        let catalog_table =
            settings::validate_table_name(settings::ENV_CATALOG_TABLE, catalog_table)?;
        let prefix = env
            .value(ENV_RESTORE_PREFIX)
            .unwrap_or(DEFAULT_PREFIX)
            .to_owned();
        if prefix.len() < 3
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::setting(
                ENV_RESTORE_PREFIX,
                format!(
                    "{prefix:?} must be at least 3 characters of letters, digits, '_', '-' and '.'"
                ),
            ));
        }
        let time_budget = match env.value(ENV_RESTORE_TIME_BUDGET) {
            None => None,
            Some(v) => Some(Duration::from_secs(v.parse::<u64>().map_err(|_| {
                Error::setting(
                    ENV_RESTORE_TIME_BUDGET,
                    format!("{v:?} is not a number of seconds"),
                )
            })?)),
        };
        let parallel = match env.value(ENV_RESTORE_PARALLEL) {
            None => super::DEFAULT_PARALLEL,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    Error::setting(
                        ENV_RESTORE_PARALLEL,
                        format!("{v:?} is not a number from 1 to 64"),
                    )
                })?,
        };
        let selection = settings::configured_selection(env).map_err(|e| {
            Error::setting(
                "BACKSTOP_TABLES / BACKSTOP_TABLE_PATTERN / BACKSTOP_TABLE_TAG",
                format!("the restore function restores only tables of its selection, and none is configured ({e})"),
            )
        })?;
        Ok(RestoreSettings {
            catalog_table,
            prefix,
            selection,
            tables: env.value(settings::ENV_TABLES).map(str::to_owned),
            time_budget,
            parallel,
        })
    }
}

/// What to restore from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pitr,
    Backup,
    Export,
}

/// One restore, as the payload's `restore` object asks for it. Its JSON form is the request's
/// identity: an invocation with the same one carries the same restore on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub kind: Kind,
    /// The new table.
    pub to: String,
    /// The source table (pitr; backup or export by slot or latest; a chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// pitr: the time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// pitr: hours before the first invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_ago: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub latest: bool,
    /// export: a native chain up to this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// export: only "load" (Backstop's loader); ImportTable restores run from the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<super::Via>,
    /// Re-apply the source's settings (default true).
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub settings: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    restore: Request,
    #[serde(default)]
    continuation: u32,
    #[serde(default)]
    retry: bool,
}

/// How this invocation came: a continuation's number (0 for an operator's or a first
/// invocation), and whether a FAILED restore of the same request is to start anew.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Invocation {
    pub continuation: u32,
    pub retry: bool,
}

/// Pure: the payload's request and how it was invoked, or what is wrong with it.
pub fn parse(payload: &Value) -> Result<(Request, Invocation)> {
    let e: Envelope = crate::event::from_value(payload.clone()).map_err(|e| {
        Error::Payload(format!(
            "not a restore request ({e}); expected {{\"restore\": {{\"kind\": \"pitr\"|\"backup\"|\"export\", \"to\": \"restored-…\", …}}}}"
        ))
    })?;
    let r = &e.restore;
    let has = |v: &Option<String>| v.is_some();
    let stray = |names: &[(&str, bool)]| -> Result<()> {
        match names.iter().find(|(_, set)| *set) {
            Some((n, _)) => Err(Error::Payload(format!(
                "a {} restore takes no {n:?}",
                serde_json::to_string(&r.kind)
                    .unwrap_or_default()
                    .trim_matches('"')
            ))),
            None => Ok(()),
        }
    };
    match r.kind {
        Kind::Pitr => {
            stray(&[
                ("backup_arn", has(&r.backup_arn)),
                ("export_id", has(&r.export_id)),
                ("slot", has(&r.slot)),
                ("until", has(&r.until)),
                ("via", r.via.is_some()),
            ])?;
            if r.table.is_none() {
                return Err(Error::Payload("a pitr restore needs \"table\"".into()));
            }
            source::pitr_time(r.time.as_deref(), r.hours_ago, r.latest, Timestamp::now())?;
        }
        Kind::Backup => {
            stray(&[
                ("export_id", has(&r.export_id)),
                ("time", has(&r.time)),
                ("hours_ago", r.hours_ago.is_some()),
                ("until", has(&r.until)),
            ])?;
            stray(&[("via", r.via.is_some())])?;
            let by_arn =
                r.backup_arn.is_some() && r.table.is_none() && r.slot.is_none() && !r.latest;
            let by_table =
                r.backup_arn.is_none() && r.table.is_some() && (r.slot.is_some() != r.latest);
            if !(by_arn || by_table) {
                return Err(Error::Payload(
                    "a backup restore needs \"backup_arn\", or \"table\" with \"slot\" or \"latest\": true".into(),
                ));
            }
        }
        Kind::Export => {
            stray(&[
                ("backup_arn", has(&r.backup_arn)),
                ("time", has(&r.time)),
                ("hours_ago", r.hours_ago.is_some()),
            ])?;
            if r.via == Some(super::Via::Import) {
                return Err(Error::Payload(
                    "the function loads exports with Backstop's loader (\"via\": \"load\"); an ImportTable restore runs from the CLI: backstop restore export --via import".into(),
                ));
            }
            let ok = match (&r.export_id, &r.table, &r.until) {
                (Some(_), None, None) => r.slot.is_none() && !r.latest,
                (None, Some(_), None) => r.slot.is_some() != r.latest,
                (None, Some(_), Some(u)) => {
                    u.parse::<Timestamp>().map_err(|e| {
                        Error::Payload(format!("until {u:?} is not an RFC 3339 time: {e}"))
                    })?;
                    r.slot.is_none() && !r.latest
                }
                _ => false,
            };
            if !ok {
                return Err(Error::Payload(
                    "an export restore needs \"export_id\", or \"table\" with \"slot\", \"latest\": true or \"until\"".into(),
                ));
            }
        }
    }
    settings::validate_table_name("to", &r.to)
        .map_err(|e| Error::Payload(format!("\"to\": {e}")))?;
    Ok((
        e.restore,
        Invocation {
            continuation: e.continuation,
            retry: e.retry,
        },
    ))
}

/// Where a restore stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// AWS is restoring (backup, PITR).
    Restoring,
    /// The export is being read and checked, before any table exists.
    Checking,
    /// The table exists and the export is being written into it.
    Loading,
    /// Reading the table back (count and fingerprint) and re-applying settings.
    Verifying,
    Done,
    Failed,
}

/// What the restore was resolved to on its first invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    /// In words, for the answer.
    what: String,
    source_table: Option<String>,
    backup_arn: Option<String>,
    pitr_time: Option<Timestamp>,
    /// The links to load, full export first (one for a single export).
    links: Vec<ExportSource>,
    restored_to: Option<Timestamp>,
    chain_until: Option<Timestamp>,
    /// A backup's item count as DynamoDB recorded it.
    expected_count: Option<u64>,
    /// The settings recorded at backup time, when there are any.
    settings: Option<TableSettings>,
}

/// Where a load stands: the phase's next file, and what the files before it added up to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    link: usize,
    file: usize,
    /// This link's files so far, in this phase.
    partial: Fingerprint,
    /// Each finished link's fingerprint when checked.
    checked: Vec<Fingerprint>,
    written: u64,
    files_total: usize,
    files_done: usize,
    /// The read-back scan: where it stands (LastEvaluatedKey, DynamoDB JSON) and what the
    /// pages before it added up to.
    #[serde(default)]
    scan_from: Option<String>,
    #[serde(default)]
    scanned: Fingerprint,
    #[serde(default)]
    scan_pages: u64,
}

/// The catalog's record of one restore.
#[derive(Debug, Clone)]
struct Record {
    request: String,
    state: State,
    plan: Option<Plan>,
    progress: Progress,
    result: Option<Value>,
    error: Option<String>,
    started_at: String,
    starts: u32,
}

/// The answer of one invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub to: String,
    pub state: State,
    /// One line: where the restore stands and what happens next.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_done: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_total: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_written: Option<u64>,
    /// When done: the restored table's count and fingerprint, the comparison, the settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the restore goes on (a continuation invoked), when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(to: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(format!("RESTORE#{to}"))),
        ("sk".to_owned(), s("RESTORE")),
    ])
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Local(format!("encoding a restore record: {e}")))
}

/// The catalog item of one restore, read and written under its lease.
struct Store<'a> {
    catalog: &'a Catalog,
    to: &'a str,
    holder: String,
}

impl Store<'_> {
    fn resource(&self) -> String {
        format!(
            "catalog table {} (restore record of {})",
            self.catalog.table_name(),
            self.to
        )
    }

    async fn get(&self) -> Result<Option<Record>> {
        let out = self
            .catalog
            .client()
            .get_item()
            .table_name(self.catalog.table_name())
            .set_key(Some(key(self.to)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("GetItem", self.resource(), e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let bad = |what: &str, e: String| Error::Aws {
            operation: "read restore record",
            resource: self.resource(),
            code: None,
            message: format!("its {what} cannot be read: {e}"),
            retryable: false,
            hint: "restore into another name, and report this".into(),
        };
        let state = text("state").unwrap_or_default();
        let state: State = serde_json::from_value(Value::String(state.clone()))
            .map_err(|e| bad("state", e.to_string()))?;
        let plan = match text("plan") {
            Some(p) => Some(serde_json::from_str(&p).map_err(|e| bad("plan", e.to_string()))?),
            None => None,
        };
        let progress = match text("progress") {
            Some(p) => serde_json::from_str(&p).map_err(|e| bad("progress", e.to_string()))?,
            None => Progress::default(),
        };
        let result = match text("result") {
            Some(p) => Some(serde_json::from_str(&p).map_err(|e| bad("result", e.to_string()))?),
            None => None,
        };
        Ok(Some(Record {
            request: text("request").unwrap_or_default(),
            state,
            plan,
            progress,
            result,
            error: text("error"),
            started_at: text("started_at").unwrap_or_default(),
            starts: item
                .get("starts")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// Records a new restore, held by this invocation until `lease`; `false` when another
    /// invocation recorded it first.
    async fn create(
        &self,
        request: &str,
        state: State,
        plan: &Plan,
        progress: &Progress,
        lease: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let mut item = key(self.to);
        item.extend([
            ("kind".to_owned(), s("restore")),
            ("table".to_owned(), s(self.to)),
            ("request".to_owned(), s(request)),
            ("state".to_owned(), s(state_name(state))),
            ("plan".to_owned(), s(json(plan)?)),
            ("progress".to_owned(), s(json(progress)?)),
            ("holder".to_owned(), s(&self.holder)),
            ("lease_until".to_owned(), n(lease.as_second())),
            ("started_at".to_owned(), s(now.to_string())),
            ("updated_at".to_owned(), s(now.to_string())),
            ("starts".to_owned(), n(0)),
        ]);
        match self
            .catalog
            .client()
            .put_item()
            .table_name(self.catalog.table_name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::aws("PutItem (record restore)", self.resource(), e)),
        }
    }

    /// Takes the lease when nobody holds it (or the holder's ran out); `false` when it is held.
    async fn claim(&self, state: State, lease: Timestamp, now: Timestamp) -> Result<bool> {
        match self
            .catalog
            .client()
            .update_item()
            .table_name(self.catalog.table_name())
            .set_key(Some(key(self.to)))
            .update_expression("SET holder = :me, lease_until = :lease")
            .condition_expression(
                "attribute_exists(pk) AND #state = :state AND (lease_until < :now OR holder = :me)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state_name(state)))
            .expression_attribute_values(":me", s(&self.holder))
            .expression_attribute_values(":lease", n(lease.as_second()))
            .expression_attribute_values(":now", n(now.as_second()))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::aws(
                "UpdateItem (take restore lease)",
                self.resource(),
                e,
            )),
        }
    }

    /// Writes the record's state (and whatever else is given) while this invocation holds it.
    async fn save(&self, state: State, fields: &[(&str, AttributeValue)]) -> Result<()> {
        let mut expr = "SET #state = :state, updated_at = :now".to_owned();
        let mut req = self
            .catalog
            .client()
            .update_item()
            .table_name(self.catalog.table_name())
            .set_key(Some(key(self.to)))
            .condition_expression("holder = :me")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":me", s(&self.holder))
            .expression_attribute_values(":state", s(state_name(state)))
            .expression_attribute_values(":now", s(Timestamp::now().to_string()));
        for (i, (name, value)) in fields.iter().enumerate() {
            expr.push_str(&format!(", #f{i} = :f{i}"));
            req = req
                .expression_attribute_names(format!("#f{i}"), *name)
                .expression_attribute_values(format!(":f{i}"), value.clone());
        }
        req.update_expression(expr).send().await.map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception())
            {
                Error::Aws {
                    operation: "UpdateItem (save restore)",
                    resource: self.resource(),
                    code: None,
                    message: "another invocation took the restore over (this one's lease ran out)".into(),
                    retryable: false,
                    hint: "nothing to do: the other invocation carries it on; invoke again to see its state".into(),
                }
            } else {
                Error::aws("UpdateItem (save restore)", self.resource(), e)
            }
        })?;
        Ok(())
    }

    /// Renews the lease; ends it when `until` is `None`.
    async fn lease(&self, until: Option<Timestamp>) -> Result<()> {
        let at = until.map(|t| t.as_second()).unwrap_or(0);
        self.catalog
            .client()
            .update_item()
            .table_name(self.catalog.table_name())
            .set_key(Some(key(self.to)))
            .update_expression("SET lease_until = :lease")
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", s(&self.holder))
            .expression_attribute_values(":lease", n(at))
            .send()
            .await
            .map_err(|e| Error::aws("UpdateItem (restore lease)", self.resource(), e))?;
        Ok(())
    }

    /// Forgets a restore that failed before creating anything, so that the same request can
    /// start again.
    async fn forget(&self) -> Result<()> {
        self.catalog
            .client()
            .delete_item()
            .table_name(self.catalog.table_name())
            .set_key(Some(key(self.to)))
            .condition_expression("#state = :failed")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":failed", s("FAILED"))
            .send()
            .await
            .map_err(|e| Error::aws("DeleteItem (forget failed restore)", self.resource(), e))?;
        Ok(())
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Restoring => "RESTORING",
        State::Checking => "CHECKING",
        State::Loading => "LOADING",
        State::Verifying => "VERIFYING",
        State::Done => "DONE",
        State::Failed => "FAILED",
    }
}

/// One invocation's work on a restore.
struct Work<'a> {
    clients: &'a Clients,
    settings: &'a RestoreSettings,
    request: &'a Request,
    store: Store<'a>,
    /// When to stop starting new data files.
    until: Option<Timestamp>,
    deadline: Option<Timestamp>,
    how: Invocation,
    /// Set when the lease could not be renewed: another invocation may hold it now, so this
    /// one stops before its next data file.
    lost: Arc<AtomicBool>,
}

/// Pure: the id of a restore, from its request and when it was recorded: the value of
/// [`RESTORE_TAG`] on the tables it loads.
pub fn restore_id(identity: &str, started_at: &str) -> String {
    blake3::hash(format!("{identity}|{started_at}").as_bytes()).to_hex()[..20].to_owned()
}

/// Pure: when an invocation stops starting new data files: two minutes before its deadline
/// (a quarter of its time when it has less than eight minutes), or after `budget` of work.
pub fn work_until(
    started: Timestamp,
    deadline: Option<Timestamp>,
    budget: Option<Duration>,
) -> Option<Timestamp> {
    let by_deadline = deadline.map(|d| {
        let margin = crate::export::logical::HANDOFF_MARGIN
            .min(Duration::try_from(d.duration_since(started) / 4).unwrap_or_default());
        d - margin
    });
    let by_budget = budget.map(|b| started + b);
    match (by_deadline, by_budget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Handles one invocation of the `restore` function: see the module's documentation.
pub async fn handle(
    clients: &Clients,
    settings: &RestoreSettings,
    payload: &Value,
    deadline: Option<Timestamp>,
) -> Result<Status> {
    let started = Timestamp::now();
    let (request, how) = parse(payload)?;
    if !request.to.starts_with(&settings.prefix) {
        return Err(Error::refused(
            "restore",
            format!(
                "{} does not start with the restore prefix {:?}",
                request.to, settings.prefix
            ),
            format!(
                "name the new table {}…; the function may create only such tables (BACKSTOP_RESTORE_PREFIX)",
                settings.prefix
            ),
        ));
    }
    let catalog = Catalog::new((*clients.dynamodb).clone(), &settings.catalog_table);
    let work = Work {
        clients,
        settings,
        request: &request,
        store: Store {
            catalog: &catalog,
            to: &request.to,
            holder: uuid::Uuid::new_v4().to_string(),
        },
        until: work_until(started, deadline, settings.time_budget),
        deadline,
        how,
        lost: Arc::new(AtomicBool::new(false)),
    };
    let mut status = work.run().await?;
    if status.continuation.is_some() {
        status.continuation = work.continue_elsewhere(how.continuation + 1).await?;
    }
    Ok(status)
}

impl Work<'_> {
    fn identity(&self) -> Result<String> {
        json(self.request)
    }

    async fn run(&self) -> Result<Status> {
        let identity = self.identity()?;
        let now = Timestamp::now();
        let lease = lease_until(now, self.deadline);
        let record = match self.store.get().await? {
            Some(r) if r.request != identity => {
                return Err(Error::refused(
                    "restore",
                    format!(
                        "{} is the target of another restore, started {} (request {})",
                        self.request.to,
                        r.started_at,
                        crate::report::clip(&r.request, 300)
                    ),
                    "invoke with that same request to see its state, or restore into another name",
                ))
            }
            Some(r) if r.state == State::Failed => {
                let left = super::table_status(&self.clients.dynamodb, &self.request.to)
                    .await?
                    .is_some();
                if !self.how.retry || left {
                    let then = if left {
                        format!("table {} exists: if it is this restore's, delete it, then invoke with \"retry\": true to restore anew (if it is not, restore into another name)", self.request.to)
                    } else {
                        "invoke with \"retry\": true to restore anew".to_owned()
                    };
                    return Ok(self.status(
                        &r,
                        format!(
                            "the restore FAILED: {}; {then}",
                            r.error.as_deref().unwrap_or("no reason recorded")
                        ),
                    ));
                }
                // Asked to, and nothing was left behind: start anew.
                self.store.forget().await?;
                return Box::pin(self.run()).await;
            }
            Some(r) if r.state == State::Done => {
                return Ok(self.status(&r, "restored".into()));
            }
            Some(r) => {
                if !self.store.claim(r.state, lease, now).await? {
                    if self.how.continuation > 0 {
                        // A continuation (or Lambda's retry of one) must not end the chain
                        // because a dying holder's lease has not run out yet: fail, so that
                        // Lambda tries it again later.
                        return Err(Error::Aws {
                            operation: "restore",
                            resource: format!("table {}", self.request.to),
                            code: None,
                            message: "another invocation holds the restore's lease".into(),
                            retryable: true,
                            hint: "Lambda retries this continuation; or invoke again later".into(),
                        });
                    }
                    return Ok(self.status(
                        &r,
                        "another invocation is working on it; invoke again later to see its state"
                            .into(),
                    ));
                }
                // Read again under the lease: the record as the last holder left it.
                match self.store.get().await? {
                    Some(fresh) if fresh.request == identity => fresh,
                    _ => {
                        return Err(Error::Local(format!(
                            "the restore record of {} changed while it was claimed",
                            self.request.to
                        )))
                    }
                }
            }
            None => {
                self.start_fresh(&identity, lease, now).await?;
                match self.store.get().await? {
                    Some(r) => r,
                    None => {
                        return Err(Error::Local(format!(
                            "the restore record of {} vanished",
                            self.request.to
                        )))
                    }
                }
            }
        };
        let renewer = self.renew_in_background();
        let result = self.carry_on(record).await;
        drop(renewer);
        match result {
            Ok(status) => {
                if status.state != State::Done && status.state != State::Failed {
                    // Let the next invocation take it at once.
                    if let Err(e) = self.store.lease(None).await {
                        warn!(error = %e, "ending the restore lease");
                    }
                }
                Ok(status)
            }
            Err(e) if e.is_retryable() => {
                let _ = self.store.lease(None).await;
                Err(e)
            }
            Err(e) => {
                let failed = self
                    .store
                    .save(State::Failed, &[("error", s(e.to_string()))])
                    .await;
                if let Err(f) = failed {
                    warn!(error = %f, "recording the failed restore");
                }
                Err(e)
            }
        }
    }

    /// Checks a new request and records it: the target must be a new table, not protected,
    /// and the source must be found.
    async fn start_fresh(&self, identity: &str, lease: Timestamp, now: Timestamp) -> Result<()> {
        let r = self.request;
        // Whose data may be restored is the deployment's to say, not the invoker's: the source
        // is checked before anything is read from it.
        self.check_in_selection(r.table.as_deref()).await?;
        if let Some(arn) = r.backup_arn.as_deref() {
            self.check_in_selection(Some(
                source::table_of_backup_arn(arn).as_deref().unwrap_or(""),
            ))
            .await?;
        }
        let plan = self.plan().await?;
        self.check_in_selection(plan.source_table.as_deref())
            .await?;
        super::check_target(
            &self.clients.dynamodb,
            &r.to,
            &source::protected(
                self.settings.tables.as_deref(),
                Some(&self.settings.catalog_table),
                plan.source_table.as_deref(),
            ),
        )
        .await?;
        let state = if plan.links.is_empty() {
            State::Restoring
        } else {
            State::Checking
        };
        let progress = Progress {
            files_total: self.count_files(&plan).await?,
            ..Progress::default()
        };
        if !self
            .store
            .create(identity, state, &plan, &progress, lease, now)
            .await?
        {
            // Another invocation recorded it a moment ago: it carries it on.
            return Err(Error::Aws {
                operation: "restore",
                resource: format!("table {}", r.to),
                code: None,
                message: "another invocation started this restore at the same moment".into(),
                retryable: true,
                hint: "invoke again to see its state".into(),
            });
        }
        info!(to = %r.to, what = %plan.what, "restore recorded");
        Ok(())
    }

    /// Refuses a source outside the function's selection: by name for a list or a pattern; for
    /// a tag, the table carries it now, or (a table deleted since) the catalog records backups
    /// or exports of it, which Backstop makes only of selected tables.
    async fn check_in_selection(&self, table: Option<&str>) -> Result<()> {
        use crate::selection::TableSelection;
        let Some(table) = table else { return Ok(()) };
        let selection = &self.settings.selection;
        let refused = || {
            Error::refused(
                "restore",
                format!(
                    "table {:?} is not in this function's selection ({}): the restore function restores only the tables it serves",
                    crate::report::clip(table, 255),
                    selection.describe()
                ),
                "restore it with the backstop CLI and your own credentials, or add it to the stack's selection",
            )
        };
        if table.is_empty() {
            return Err(refused());
        }
        let inside = match selection {
            TableSelection::Tag { key, value } => {
                match crate::selection::table_has_tag(
                    &self.clients.dynamodb,
                    table,
                    key,
                    value.as_deref(),
                )
                .await
                {
                    Ok(has) => has,
                    // A table deleted since (the reason to restore it): the catalog's records say
                    // whether Backstop served it. Any other error is an error, never a yes.
                    Err(Error::Aws { code: Some(c), .. }) if c == "ResourceNotFoundException" => {
                        let catalog = Catalog::new(
                            (*self.clients.dynamodb).clone(),
                            &self.settings.catalog_table,
                        );
                        let mut recorded = false;
                        for job in [settings::JobKind::Snapshot, settings::JobKind::Export] {
                            recorded |= !catalog.list_targets(job, Some(table)).await?.is_empty();
                        }
                        recorded
                    }
                    Err(e) => return Err(e),
                }
            }
            other => other.matches_name(table),
        };
        if inside {
            Ok(())
        } else {
            Err(refused())
        }
    }

    /// Resolves the request against the catalog and the source: what exactly is restored.
    async fn plan(&self) -> Result<Plan> {
        let r = self.request;
        let catalog = Catalog::new(
            (*self.clients.dynamodb).clone(),
            &self.settings.catalog_table,
        );
        let mut plan = Plan {
            what: String::new(),
            source_table: r.table.clone(),
            backup_arn: None,
            pitr_time: None,
            links: Vec::new(),
            restored_to: None,
            chain_until: None,
            expected_count: None,
            settings: None,
        };
        match r.kind {
            Kind::Pitr => {
                let table = r.table.clone().unwrap_or_default();
                let time =
                    source::pitr_time(r.time.as_deref(), r.hours_ago, r.latest, Timestamp::now())?;
                let window = super::pitr_window(&self.clients.dynamodb, &table).await?;
                let time = match super::pitr_target(&table, window, time)? {
                    // "Latest" is fixed now, so that a later start asks for the same moment.
                    PitrTime::Latest => window.map(|(_, l)| l).unwrap_or_else(Timestamp::now),
                    PitrTime::At(t) => t,
                };
                plan.what = format!("point-in-time recovery of {table} as of {time}");
                plan.pitr_time = Some(time);
            }
            Kind::Backup => {
                let (arn, record) = source::backup(
                    self.clients,
                    Some(&self.settings.catalog_table),
                    r.backup_arn.as_deref(),
                    r.table.as_deref(),
                    r.slot.as_deref(),
                )
                .await?;
                plan.source_table = r
                    .table
                    .clone()
                    .or_else(|| source::table_of_backup_arn(&arn));
                plan.what = format!("backup {arn}");
                plan.expected_count = record
                    .as_ref()
                    .and_then(|r| r.item_count)
                    .and_then(|c| u64::try_from(c).ok());
                plan.settings = record.and_then(|r| r.table_settings);
                plan.backup_arn = Some(arn);
            }
            Kind::Export => match &r.until {
                Some(until) => {
                    let table = r.table.clone().unwrap_or_default();
                    let until: Timestamp = until
                        .parse()
                        .map_err(|e| Error::Payload(format!("until {until:?}: {e}")))?;
                    let (links, restored_to) =
                        source::chain(self.clients, &catalog, &table, until).await?;
                    plan.what = format!(
                        "{table}'s native chain of {} exports, as of {restored_to}",
                        links.len()
                    );
                    plan.links = links;
                    plan.restored_to = Some(restored_to);
                    plan.chain_until = Some(until);
                }
                None => {
                    let (record, meta, src) = source::export(
                        self.clients,
                        &catalog,
                        r.export_id.as_deref(),
                        r.table.as_deref(),
                        r.slot.as_deref(),
                    )
                    .await?;
                    plan.source_table = Some(record.table.clone());
                    plan.what = format!(
                        "the {} export of {} at {} ({})",
                        meta.made.name(),
                        record.table,
                        record.slot,
                        meta.uri()
                    );
                    plan.settings =
                        source::settings_before(&catalog, &record.table, &record.slot).await?;
                    plan.links = vec![src];
                }
            },
        }
        // Each link must be what its place in the chain says, and the table's keys known,
        // before anything is created.
        for (i, link) in plan.links.iter().enumerate() {
            let summary = reader::read_summary(&self.clients.s3, &link.bucket, &link.summary_key)
                .await
                .map_err(|e| {
                    Error::refused(
                        "restore export",
                        e.to_string(),
                        "restore from another export",
                    )
                })?;
            let incremental = summary.export_type.as_deref() == Some("INCREMENTAL_EXPORT");
            if incremental != (i > 0) {
                return Err(Error::refused(
                    "restore export",
                    format!(
                        "s3://{}/{} is {} export, where the restore needs {}",
                        link.bucket,
                        link.summary_key,
                        if incremental {
                            "an incremental"
                        } else {
                            "a full"
                        },
                        if i > 0 {
                            "an incremental link"
                        } else {
                            "a full one"
                        }
                    ),
                    "restore an incremental export's chain with \"until\"",
                ));
            }
        }
        if let Some(first) = plan.links.first() {
            if super::key_names(&first.schema).is_empty() {
                return Err(Error::refused(
                    "restore export",
                    "the export records no key schema for its table".to_owned(),
                    "restore from a Backstop export or a backup",
                ));
            }
            TableSpec::from_json(&first.schema).map_err(|e| {
                Error::refused(
                    "restore export",
                    format!("the export's key schema cannot be read: {e}"),
                    "restore from another export or a backup",
                )
            })?;
        }
        Ok(plan)
    }

    async fn count_files(&self, plan: &Plan) -> Result<usize> {
        let mut total = 0;
        for link in &plan.links {
            total += self.files_of(link).await?.len();
        }
        Ok(total)
    }

    async fn files_of(&self, link: &ExportSource) -> Result<Vec<FileEntry>> {
        let summary =
            reader::read_summary(&self.clients.s3, &link.bucket, &link.summary_key).await?;
        reader::read_files(&self.clients.s3, &link.bucket, &link.summary_key, &summary).await
    }

    fn status(&self, r: &Record, message: String) -> Status {
        let loads = r.plan.as_ref().is_some_and(|p| !p.links.is_empty());
        Status {
            to: self.request.to.clone(),
            state: r.state,
            message,
            source: r.plan.as_ref().map(|p| p.what.clone()),
            started_at: Some(r.started_at.clone()).filter(|s| !s.is_empty()),
            files_done: loads.then_some(r.progress.files_done),
            files_total: loads.then_some(r.progress.files_total),
            items_written: loads.then_some(r.progress.written),
            result: r.result.clone(),
            error: r.error.clone(),
            continuation: None,
        }
    }

    /// Renews the lease every [`RENEW_EVERY`] until dropped (or the invocation's deadline).
    fn renew_in_background(&self) -> AbortOnDrop {
        let client = self.store.catalog.client().clone();
        let table = self.store.catalog.table_name().to_owned();
        let to = self.request.to.clone();
        let holder = self.store.holder.clone();
        let deadline = self.deadline;
        let lost = self.lost.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if deadline.is_some_and(|d| Timestamp::now() >= d) {
                    return;
                }
                let catalog = Catalog::new(client.clone(), &table);
                let store = Store {
                    catalog: &catalog,
                    to: &to,
                    holder: holder.clone(),
                };
                if let Err(e) = store
                    .lease(Some(lease_until(Timestamp::now(), deadline)))
                    .await
                {
                    warn!(error = %e, "renewing the restore lease");
                    lost.store(true, Ordering::Relaxed);
                }
            }
        }))
    }

    fn time_low(&self) -> bool {
        self.until.is_some_and(|u| Timestamp::now() >= u)
    }

    /// Carries the restore on from where its record says, as far as this invocation's time
    /// allows.
    async fn carry_on(&self, mut r: Record) -> Result<Status> {
        let plan = r
            .plan
            .clone()
            .ok_or_else(|| Error::Local("a restore record without a plan".into()))?;
        let id = restore_id(&r.request, &r.started_at);
        loop {
            match r.state {
                State::Restoring => {
                    let status =
                        super::table_status(&self.clients.dynamodb, &self.request.to).await?;
                    if status.is_some() {
                        // A table of that name: this restore's only when it was started and
                        // AWS says it restored it from this source.
                        if r.starts == 0 {
                            return Err(self.not_ours("the restore was never started"));
                        }
                        self.check_ours(&plan, &id).await?;
                    }
                    match status {
                        Some(TableStatus::Active) => {
                            r.state = State::Verifying;
                            r.progress.scan_from = None;
                            r.progress.scanned = Fingerprint::default();
                            r.progress.scan_pages = 0;
                        }
                        Some(TableStatus::Creating) | Some(TableStatus::Updating) => {
                            return Ok(self.status(
                                &r,
                                "AWS is restoring the table; invoke again later".into(),
                            ));
                        }
                        Some(other) => {
                            return Err(Error::Aws {
                                operation: "restore",
                                resource: format!("table {}", self.request.to),
                                code: None,
                                message: format!(
                                    "the table is {} instead of becoming ACTIVE",
                                    other.as_str()
                                ),
                                retryable: false,
                                hint:
                                    "look at the table in the console; delete it and invoke again with \"retry\": true"
                                        .into(),
                            });
                        }
                        None => {
                            // Not started yet (or its start was lost): start it, counting the
                            // start first, so that a table found later is known to be one.
                            if r.starts >= MAX_STARTS {
                                return Err(Error::Aws {
                                    operation: "restore",
                                    resource: format!("table {}", self.request.to),
                                    code: None,
                                    message: format!("started {} times, and the table still does not exist", r.starts),
                                    retryable: false,
                                    hint: "look for a failed restore in the console (and CloudTrail), then invoke again with \"retry\": true".into(),
                                });
                            }
                            r.starts += 1;
                            self.store
                                .save(State::Restoring, &[("starts", n(i64::from(r.starts)))])
                                .await?;
                            match self.start_aws(&plan).await {
                                Ok(()) => {}
                                // A start sent again after a lost answer: AWS is restoring;
                                // the next invocation checks that the table is this one's.
                                Err(e) if e.code() == Some("TableAlreadyExistsException") => {}
                                Err(e) => return Err(e),
                            }
                            return Ok(self.status(
                                &r,
                                format!("started the restore of {}; invoke again with the same request to see its state and to apply its settings", plan.what),
                            ));
                        }
                    }
                }
                State::Checking | State::Loading => {
                    if !self.pass(&plan, &mut r, &id).await? {
                        let mut st = self.status(
                            &r,
                            format!(
                                "{} file {} of {}; it continues in a new invocation",
                                if r.state == State::Checking {
                                    "checking"
                                } else {
                                    "loading"
                                },
                                r.progress.files_done,
                                r.progress.files_total
                            ),
                        );
                        st.continuation = Some("continue".into());
                        return Ok(st);
                    }
                    if self.time_low() {
                        let mut st = self.status(
                            &r,
                            "loaded; reading the table back continues in a new invocation".into(),
                        );
                        st.continuation = Some("continue".into());
                        return Ok(st);
                    }
                }
                State::Verifying => {
                    self.check_ours(&plan, &id).await?;
                    let Some(fingerprint) = self.scan_back(&mut r).await? else {
                        let mut st = self.status(
                            &r,
                            format!(
                                "reading the table back ({} pages so far); it continues in a new invocation",
                                r.progress.scan_pages
                            ),
                        );
                        st.continuation = Some("continue".into());
                        return Ok(st);
                    };
                    let restored = self.verify(&plan, &r, fingerprint).await;
                    let value = serde_json::to_value(&restored)
                        .map_err(|e| Error::Local(format!("encoding the result: {e}")))?;
                    let line = restored.line();
                    // The final state is decided before it is written, in one write: a table
                    // that differs is never left recorded as DONE.
                    if restored.matches() == Some(false) {
                        let err = Error::Aws {
                            operation: "restore",
                            resource: format!("table {}", self.request.to),
                            code: None,
                            message: line,
                            retryable: false,
                            hint: "the restored table is not what the source recorded: do not use it; compare with `backstop diff`".into(),
                        };
                        self.store
                            .save(
                                State::Failed,
                                &[
                                    ("result", s(value.to_string())),
                                    ("error", s(err.to_string())),
                                    ("lease_until", n(0)),
                                ],
                            )
                            .await?;
                        return Err(err);
                    }
                    let mut done = r.clone();
                    done.state = State::Done;
                    done.result = Some(value.clone());
                    self.store
                        .save(
                            State::Done,
                            &[("result", s(value.to_string())), ("lease_until", n(0))],
                        )
                        .await?;
                    info!(to = %self.request.to, result = %line, "restored");
                    let mut message = format!("restored {line}");
                    if restored.settings_failed() {
                        message
                            .push_str("; a setting FAILED (see result.settings): set it by hand");
                    }
                    return Ok(self.status(&done, message));
                }
                State::Done | State::Failed => return Ok(self.status(&r, "restored".into())),
            }
        }
    }

    fn not_ours(&self, why: &str) -> Error {
        Error::refused(
            "restore",
            format!(
                "table {} exists and is not this restore's ({why}); nothing was written to it",
                self.request.to
            ),
            "restore into another name; the table is somebody else's",
        )
    }

    /// Whether the table `to` is this restore's: a loaded table carries [`RESTORE_TAG`] with
    /// the restore's id; a table AWS restored names this restore's backup (or PITR source) in
    /// its RestoreSummary.
    async fn check_ours(&self, plan: &Plan, id: &str) -> Result<()> {
        let to = &self.request.to;
        let table = self
            .clients
            .dynamodb
            .describe_table()
            .table_name(to)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeTable", format!("table {to}"), e))?
            .table
            .ok_or_else(|| Error::Local(format!("DescribeTable of {to} answered no table")))?;
        if !plan.links.is_empty() {
            let arn = table.table_arn.clone().unwrap_or_default();
            let tags = self
                .clients
                .dynamodb
                .list_tags_of_resource()
                .resource_arn(&arn)
                .send()
                .await
                .map_err(|e| Error::aws("ListTagsOfResource", format!("table {to}"), e))?
                .tags
                .unwrap_or_default();
            if tags.iter().any(|t| t.key == RESTORE_TAG && t.value == id) {
                return Ok(());
            }
            return Err(self.not_ours(&format!("it has no tag {RESTORE_TAG}={id}")));
        }
        let summary = table.restore_summary;
        let from_backup = summary
            .as_ref()
            .and_then(|s| s.source_backup_arn.as_deref());
        let from_table = summary.as_ref().and_then(|s| s.source_table_arn.as_deref());
        let ours = match (&plan.backup_arn, &plan.source_table) {
            (Some(arn), _) => from_backup == Some(arn.as_str()),
            (None, Some(source)) => {
                from_backup.is_none()
                    && from_table.is_some_and(|t| t.ends_with(&format!(":table/{source}")))
            }
            _ => false,
        };
        if ours {
            Ok(())
        } else {
            Err(self.not_ours(&format!(
                "AWS restored it from {}",
                from_backup
                    .or(from_table)
                    .unwrap_or("nothing: it was not restored")
            )))
        }
    }

    /// The read-back: a consistent Scan of the table, its place saved after each page so that
    /// a big table is read across invocations; `None` when time ran low first.
    async fn scan_back(&self, r: &mut Record) -> Result<Option<Fingerprint>> {
        let to = &self.request.to;
        // Pages read and no next key: the scan finished, and the save of its last page was
        // carried out though its answer was lost (every reset sets scan_pages to 0 with
        // scan_from). Scanning again would add the table to its own sums (found under chaos:
        // 15 items read back as 30, a good restore failed).
        if r.progress.scan_pages > 0 && r.progress.scan_from.is_none() {
            return Ok(Some(r.progress.scanned));
        }
        let mut did_one = false;
        loop {
            if did_one && self.time_low() {
                return Ok(None);
            }
            if self.lost.load(Ordering::Relaxed) {
                return Err(self.lease_lost());
            }
            let start = match &r.progress.scan_from {
                Some(k) => Some(crate::ddbjson::item_from_json(k).map_err(|e| {
                    Error::Local(format!(
                        "the saved scan position of {to} cannot be read: {e}"
                    ))
                })?),
                None => None,
            };
            let page = self
                .clients
                .dynamodb
                .scan()
                .table_name(to)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| Error::aws("Scan", format!("table {to}"), e))?;
            let mut fp = Fingerprinter::default();
            for item in page.items.unwrap_or_default() {
                fp.add(&item)
                    .map_err(|e| Error::Local(format!("table {to}: {e}")))?;
            }
            r.progress.scanned.merge(&fp.fingerprint);
            r.progress.scan_pages += 1;
            did_one = true;
            r.progress.scan_from = match page.last_evaluated_key {
                Some(k) if !k.is_empty() => Some(
                    crate::ddbjson::item_to_json(&k)
                        .map_err(|e| Error::Local(format!("table {to}: {e}")))?,
                ),
                _ => None,
            };
            self.store
                .save(State::Verifying, &[("progress", s(json(&r.progress)?))])
                .await?;
            if r.progress.scan_from.is_none() {
                return Ok(Some(r.progress.scanned));
            }
        }
    }

    fn lease_lost(&self) -> Error {
        Error::Aws {
            operation: "restore",
            resource: format!("table {}", self.request.to),
            code: None,
            message: "this invocation could not renew its lease; another may hold the restore now"
                .into(),
            retryable: true,
            hint: "nothing to do: the holder carries it on; invoke again to see its state".into(),
        }
    }

    async fn start_aws(&self, plan: &Plan) -> Result<()> {
        let to = &self.request.to;
        match (&plan.backup_arn, plan.pitr_time, &plan.source_table) {
            (Some(arn), _, _) => super::start_from_backup(&self.clients.dynamodb, arn, to).await,
            (None, Some(t), Some(table)) => {
                super::start_from_pitr(&self.clients.dynamodb, table, to, PitrTime::At(t))
                    .await
                    .map(|_| ())
            }
            _ => Err(Error::Local(
                "a restore plan with nothing to restore".into(),
            )),
        }
    }

    /// One pass (check, then load) over every link's files from the saved place, a file at a
    /// time with the place saved after each; `false` when time ran low first (at least one file
    /// is done per invocation, so a restore always moves on).
    async fn pass(&self, plan: &Plan, r: &mut Record, id: &str) -> Result<bool> {
        let loading = r.state == State::Loading;
        if loading {
            // Never write into a table that is not this restore's own.
            self.check_ours(plan, id).await?;
        }
        let spec = TableSpec::from_json(&plan.links[0].schema)
            .map_err(|e| Error::refused("restore export", e, ""))?;
        let mut loader = if loading {
            Some(Loader::new(
                (*self.clients.dynamodb).clone(),
                &self.request.to,
                super::key_names(&plan.links[0].schema),
                self.settings.parallel,
            ))
        } else {
            None
        };
        let mut did_one = false;
        while r.progress.link < plan.links.len() {
            let link = &plan.links[r.progress.link];
            let files = self.files_of(link).await?;
            let changes = r.progress.link > 0;
            while r.progress.file < files.len() {
                if did_one && self.time_low() {
                    return Ok(false);
                }
                if self.lost.load(Ordering::Relaxed) {
                    return Err(self.lease_lost());
                }
                let f = &files[r.progress.file];
                let mut fp = Fingerprinter::default();
                match &mut loader {
                    Some(l) => {
                        reader::read_file_into(
                            &self.clients.s3,
                            &link.bucket,
                            f,
                            changes,
                            &mut fp,
                            l,
                        )
                        .await?;
                        l.finish().await?;
                        r.progress.written = r.progress.written.saturating_add(f.item_count);
                    }
                    None => {
                        let mut skip = Skip;
                        reader::read_file_into(&self.clients.s3, &link.bucket, f, changes, &mut fp, &mut skip)
                            .await
                            .map_err(|e| {
                                // A damaged file refuses the export; a hiccup is tried again.
                                if e.is_retryable() {
                                    e
                                } else {
                                    Error::refused("restore export", e.to_string(), "this export cannot be restored; pick another (backstop exports list)")
                                }
                            })?;
                    }
                }
                r.progress.partial.merge(&fp.fingerprint);
                r.progress.file += 1;
                r.progress.files_done += 1;
                did_one = true;
                self.store
                    .save(r.state, &[("progress", s(json(&r.progress)?))])
                    .await?;
            }
            // The link is read whole: it must be what was recorded (checking), and what was
            // checked (loading).
            let read = std::mem::take(&mut r.progress.partial);
            if loading {
                let checked = r
                    .progress
                    .checked
                    .get(r.progress.link)
                    .copied()
                    .unwrap_or_default();
                super::same_as_checked(link, &checked, &read, &self.request.to)?;
            } else {
                if let Some(recorded) = &link.fingerprint {
                    if *recorded != read {
                        return Err(Error::refused(
                            "restore export",
                            format!(
                                "s3://{}/{} reads as {} items, fingerprint {}; it was recorded as {} items, fingerprint {}",
                                link.bucket, link.summary_key, read.items, read.digest(), recorded.items, recorded.digest()
                            ),
                            "the export changed since it was written; restore from another",
                        ));
                    }
                }
                r.progress.checked.push(read);
            }
            r.progress.link += 1;
            r.progress.file = 0;
            self.store
                .save(r.state, &[("progress", s(json(&r.progress)?))])
                .await?;
        }
        // The pass is over: checking goes on to create the table and load, loading to verify.
        if loading {
            r.state = State::Verifying;
            r.progress.scan_from = None;
            r.progress.scanned = Fingerprint::default();
            r.progress.scan_pages = 0;
            self.store
                .save(State::Verifying, &[("progress", s(json(&r.progress)?))])
                .await?;
        } else {
            // Created with the restore's id as a tag: a table of that name found later is
            // this restore's only if it carries it.
            let tag = aws_sdk_dynamodb::types::Tag::builder()
                .key(RESTORE_TAG)
                .value(id)
                .build()
                .map_err(|e| Error::Local(format!("the restore tag: {e}")))?;
            let req =
                super::create_request(&self.clients.dynamodb, &self.request.to, &spec).tags(tag);
            if let Err(e) = req.send().await {
                let exists = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception());
                if !exists {
                    return Err(Error::aws(
                        "CreateTable",
                        format!("table {}", self.request.to),
                        e,
                    ));
                }
                // A CreateTable sent again after a lost answer finds the table made by this
                // restore; any other table of that name is refused.
                self.check_ours(plan, id).await?;
            }
            super::wait_active(
                &self.clients.dynamodb,
                &self.request.to,
                Timestamp::now() + jiff::SignedDuration::from_mins(10),
                Duration::from_millis(500),
                |_| {},
            )
            .await?;
            r.state = State::Loading;
            r.progress.link = 0;
            r.progress.file = 0;
            r.progress.files_done = 0;
            self.store
                .save(State::Loading, &[("progress", s(json(&r.progress)?))])
                .await?;
            if self.time_low() {
                return Ok(false);
            }
            return Box::pin(self.pass(plan, r, id)).await;
        }
        Ok(true)
    }

    /// The result of the table read back as `fingerprint`, with the settings re-applied.
    async fn verify(&self, plan: &Plan, r: &Record, fingerprint: Fingerprint) -> Restored {
        let started = std::time::Instant::now();
        let single_export = plan.links.len() == 1;
        let mut restored = Restored {
            table: self.request.to.clone(),
            fingerprint,
            expected: if single_export {
                r.progress.checked.first().copied()
            } else {
                None
            },
            expected_count: if plan.links.is_empty() {
                plan.expected_count
            } else {
                None
            },
            seconds: started.elapsed().as_secs_f64(),
            notes: vec![format!("restored from {}", plan.what)],
            settings: Vec::new(),
        };
        if restored.expected_count.is_some() {
            restored.notes.push(
                "the count compared is the backup's as DynamoDB reported it at backup time".into(),
            );
        }
        if let (Some(to), Some(until)) = (plan.restored_to, plan.chain_until) {
            restored.notes.extend(source::chain_short_note(to, until));
        }
        if self.request.settings {
            restored
                .reapply_settings(
                    &self.clients.dynamodb,
                    plan.settings.as_ref(),
                    plan.source_table.as_deref(),
                )
                .await;
        }
        restored.seconds = started.elapsed().as_secs_f64();
        restored
    }

    /// Invokes this function again (asynchronously) with the same request. Outside Lambda
    /// there is none: invoking again (or `backstop run restore`) carries the restore on.
    async fn continue_elsewhere(&self, next: u32) -> Result<Option<String>> {
        let Ok(function) = std::env::var(crate::jobs::export::ENV_FUNCTION_NAME) else {
            return Ok(None);
        };
        if next > settings::MAX_CONTINUATIONS {
            return Err(Error::Local(format!(
                "{next} invocations in a row did not finish the restore of {}; stopping the chain (raise the memory or BACKSTOP_RESTORE_PARALLEL), invoke again to go on",
                self.request.to
            )));
        }
        let payload = serde_json::json!({ "restore": self.request, "continuation": next });
        self.clients
            .invoke_async("Invoke (continuation)", &function, &payload)
            .await?;
        Ok(Some(format!("invoked {function} (continuation {next})")))
    }
}

/// A task stopped when its owner is dropped (an invocation cut short stops renewing).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A sink that keeps nothing: checking reads and fingerprints only.
struct Skip;

impl reader::Sink for Skip {
    fn take(&mut self, _item: crate::ddbjson::Item) {}
    fn drain(&mut self) -> impl std::future::Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_parsed_with_every_mistake_named() {
        let (r, c) = parse(
            &json!({"restore": {"kind": "pitr", "table": "T", "to": "restored-T", "hours_ago": 2}}),
        )
        .unwrap();
        assert_eq!(
            (r.kind, c, r.settings),
            (Kind::Pitr, Invocation::default(), true)
        );
        let (r, c) = parse(&json!({"restore": {"kind": "export", "table": "T", "latest": true, "to": "restored-T", "settings": false}, "continuation": 3, "retry": true})).unwrap();
        assert_eq!(
            (r.kind, c, r.settings),
            (
                Kind::Export,
                Invocation {
                    continuation: 3,
                    retry: true
                },
                false
            )
        );
        parse(&json!({"restore": {"kind": "backup", "backup_arn": "arn:aws:dynamodb:us-east-1:1:table/T/backup/1", "to": "restored-T"}})).unwrap();
        parse(&json!({"restore": {"kind": "export", "table": "T", "until": "2026-12-01T00:00:00Z", "to": "restored-T"}})).unwrap();
        for (bad, says) in [
            (
                json!({"restore": {"kind": "pitr", "to": "restored-T", "latest": true}}),
                "needs \"table\"",
            ),
            (
                json!({"restore": {"kind": "pitr", "table": "T", "to": "restored-T"}}),
                "exactly one of",
            ),
            (
                json!({"restore": {"kind": "pitr", "table": "T", "to": "restored-T", "latest": true, "slot": "x"}}),
                "takes no \"slot\"",
            ),
            (
                json!({"restore": {"kind": "backup", "table": "T", "to": "restored-T"}}),
                "\"slot\" or \"latest\"",
            ),
            (
                json!({"restore": {"kind": "backup", "backup_arn": "a", "table": "T", "latest": true, "to": "restored-T"}}),
                "\"slot\" or \"latest\"",
            ),
            (
                json!({"restore": {"kind": "export", "to": "restored-T"}}),
                "export_id",
            ),
            (
                json!({"restore": {"kind": "export", "table": "T", "until": "yesterday", "to": "restored-T"}}),
                "RFC 3339",
            ),
            (
                json!({"restore": {"kind": "disk", "to": "restored-T"}}),
                "not a restore request",
            ),
            (
                json!({"restore": {"kind": "export", "table": "T", "latest": true, "via": "import", "to": "restored-T"}}),
                "--via import",
            ),
            (
                json!({"restore": {"kind": "pitr", "table": "T", "latest": true, "to": "restored-T", "tabel": 1}}),
                "tabel",
            ),
            (
                json!({"restore": {"kind": "pitr", "table": "T", "latest": true, "to": "a b"}}),
                "\"to\"",
            ),
            (
                json!({"slot": "2026-12-01T00:00:00Z"}),
                "not a restore request",
            ),
        ] {
            let e = parse(&bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_request_is_the_same_request_when_its_json_is() {
        let a = parse(
            &json!({"restore": {"to": "restored-T", "kind": "pitr", "table": "T", "hours_ago": 2}}),
        )
        .unwrap()
        .0;
        let b = parse(&json!({"restore": {"kind": "pitr", "table": "T", "hours_ago": 2.0, "to": "restored-T", "settings": true}})).unwrap().0;
        assert_eq!(json(&a).unwrap(), json(&b).unwrap());
        let c = parse(
            &json!({"restore": {"kind": "pitr", "table": "T", "hours_ago": 3, "to": "restored-T"}}),
        )
        .unwrap()
        .0;
        assert_ne!(json(&a).unwrap(), json(&c).unwrap());
    }

    #[test]
    fn work_stops_two_minutes_before_the_deadline_or_at_three_quarters_of_a_short_one() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let start = t("2026-12-01T00:00:00Z");
        assert_eq!(
            work_until(start, Some(t("2026-12-01T00:15:00Z")), None),
            Some(t("2026-12-01T00:13:00Z"))
        );
        assert_eq!(
            work_until(start, Some(t("2026-12-01T00:00:08Z")), None),
            Some(t("2026-12-01T00:00:06Z"))
        );
        assert_eq!(
            work_until(
                start,
                Some(t("2026-12-01T00:15:00Z")),
                Some(Duration::from_secs(60))
            ),
            Some(t("2026-12-01T00:01:00Z"))
        );
        assert_eq!(work_until(start, None, None), None);
    }

    #[test]
    fn settings_need_a_catalog_a_selection_and_a_usable_prefix() {
        let env = |pairs: &[(&str, &str)]| {
            Environment::from_pairs(
                [("BACKSTOP_TABLE_TAG", "backup:plan=daily")]
                    .into_iter()
                    .chain(pairs.iter().copied()),
            )
        };
        let ok = RestoreSettings::resolve(&env(&[("BACKSTOP_CATALOG_TABLE", "cat")])).unwrap();
        assert_eq!(
            (ok.prefix.as_str(), ok.parallel, ok.time_budget),
            ("restored-", 8, None)
        );
        // Without a selection it would restore any table: refused.
        let e = RestoreSettings::resolve(&Environment::from_pairs([(
            "BACKSTOP_CATALOG_TABLE",
            "cat",
        )]))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("restores only tables of its selection"),
            "{e}"
        );
        assert!(RestoreSettings::resolve(&env(&[]))
            .unwrap_err()
            .to_string()
            .contains("BACKSTOP_CATALOG_TABLE"));
        for bad in ["r", "re store-"] {
            let e = RestoreSettings::resolve(&env(&[
                ("BACKSTOP_CATALOG_TABLE", "cat"),
                (ENV_RESTORE_PREFIX, bad),
            ]))
            .unwrap_err();
            assert!(e.to_string().contains(ENV_RESTORE_PREFIX), "{e}");
        }
        let e = RestoreSettings::resolve(&env(&[
            ("BACKSTOP_CATALOG_TABLE", "cat"),
            (ENV_RESTORE_PARALLEL, "0"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains(ENV_RESTORE_PARALLEL), "{e}");
    }
}
