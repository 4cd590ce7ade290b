//! Restores, each into a new table: from an on-demand backup, from point-in-time recovery, and
//! from an export loaded by Backstop's own loader (parallel BatchWriteItem, every unprocessed
//! item retried with backoff until written, or a failure that names the items not written).
//!
//! Nothing here writes into a table that existed before the command: a target that exists, or
//! that is one of the tables Backstop protects (the selection, the catalog), is refused before
//! anything is created. Every restore ends with the restored table's count and fingerprint, to
//! compare with the evidence the source left (the export's fingerprint, the backup's count).

pub mod request;
pub mod source;

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, LocalSecondaryIndex, Projection, ProjectionType, PutRequest,
    ScalarAttributeType, TableStatus, WriteRequest,
};
use aws_sdk_dynamodb::Client as Ddb;
use jiff::Timestamp;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::aws::Clients;
use crate::ddbjson::Item;
use crate::error::{Error, Result};
use crate::export::manifest::BackstopManifest;
use crate::export::reader::{self, Sink};
use crate::fingerprint::Fingerprint;

/// Items per BatchWriteItem call (DynamoDB's limit).
pub const BATCH: usize = 25;
/// BatchWriteItem calls in flight at once by default.
pub const DEFAULT_PARALLEL: usize = 8;
/// Calls per batch before the loader gives up on the items still unwritten.
pub const MAX_ATTEMPTS: u32 = 12;

/// Refuses a target that is not a new table: a bad name, a protected table (one Backstop backs
/// up, its catalog), or a table that exists. Nothing is created either way.
pub async fn check_target(ddb: &Ddb, to: &str, protected: &[String]) -> Result<()> {
    crate::settings::validate_table_name("--to", to).map_err(|e| {
        Error::refused(
            "restore",
            format!("{to:?} is not a table name DynamoDB accepts: {e}"),
            "choose another --to",
        )
    })?;
    if protected.iter().any(|p| p == to) {
        return Err(Error::refused(
            "restore",
            format!("{to} is a table Backstop protects (selected for backup, or its catalog)"),
            "restore into a new table and move data with `backstop recover`",
        ));
    }
    if table_status(ddb, to).await?.is_some() {
        return Err(Error::refused(
            "restore",
            format!("table {to} exists; a restore never writes into an existing table"),
            "choose a new name with --to, or delete the table first if it is yours to delete",
        ));
    }
    Ok(())
}

/// The table's status; `None` when it does not exist.
pub async fn table_status(ddb: &Ddb, table: &str) -> Result<Option<TableStatus>> {
    match ddb.describe_table().table_name(table).send().await {
        Ok(out) => Ok(Some(
            out.table
                .and_then(|t| t.table_status)
                .unwrap_or(TableStatus::Creating),
        )),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::aws("DescribeTable", format!("table {table}"), e)),
    }
}

/// Waits until `table` is ACTIVE, polling every `poll`, calling `on_poll` with its status;
/// fails when it disappears, ends in another state, or `until` passes.
pub async fn wait_active(
    ddb: &Ddb,
    table: &str,
    until: Timestamp,
    poll: Duration,
    mut on_poll: impl FnMut(&str),
) -> Result<()> {
    loop {
        match table_status(ddb, table).await? {
            Some(TableStatus::Active) => return Ok(()),
            Some(TableStatus::Creating) | Some(TableStatus::Updating) => {
                on_poll("CREATING");
            }
            Some(other) => {
                return Err(Error::Aws {
                    operation: "restore",
                    resource: format!("table {table}"),
                    code: None,
                    message: format!("the table is {} instead of becoming ACTIVE", other.as_str()),
                    retryable: false,
                    hint: "look at the table in the console; delete it and restore again".into(),
                })
            }
            None => {
                return Err(Error::Aws {
                    operation: "restore",
                    resource: format!("table {table}"),
                    code: None,
                    message: "the table disappeared while being restored".into(),
                    retryable: false,
                    hint: "restore again".into(),
                })
            }
        }
        if Timestamp::now() >= until {
            return Err(Error::Aws {
                operation: "restore",
                resource: format!("table {table}"),
                code: None,
                message: "the table is not ACTIVE yet".into(),
                retryable: true,
                hint: "AWS goes on restoring; wait longer (--wait) or check again later".into(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Starts a restore of `backup_arn` into the new table `to`.
pub async fn start_from_backup(ddb: &Ddb, backup_arn: &str, to: &str) -> Result<()> {
    ddb.restore_table_from_backup()
        .backup_arn(backup_arn)
        .target_table_name(to)
        .send()
        .await
        .map_err(|e| {
            // Not TableAlreadyExists: the target was checked just before, so that answer most
            // likely means the SDK sent the request again after a lost answer and AWS is
            // restoring into the table for us; refusing would say "nothing created".
            let missing = e
                .as_service_error()
                .is_some_and(|s| s.is_backup_not_found_exception());
            let err = Error::aws("RestoreTableFromBackup", format!("backup {backup_arn}"), e);
            if missing {
                Error::refused("restore backup", err.to_string(), "")
            } else {
                err
            }
        })?;
    Ok(())
}

/// The point in time to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PitrTime {
    Latest,
    At(Timestamp),
}

/// The window PITR can restore from: (earliest, latest) restorable times; `None` when PITR is
/// off for the table.
pub async fn pitr_window(ddb: &Ddb, table: &str) -> Result<Option<(Timestamp, Timestamp)>> {
    let out = ddb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeContinuousBackups", format!("table {table}"), e))?;
    let Some(p) = out
        .continuous_backups_description
        .and_then(|d| d.point_in_time_recovery_description)
    else {
        return Ok(None);
    };
    if p.point_in_time_recovery_status.as_ref().map(|s| s.as_str()) != Some("ENABLED") {
        return Ok(None);
    }
    let ts = |d: Option<&aws_smithy_types::DateTime>| {
        d.and_then(|d| Timestamp::new(d.secs(), d.subsec_nanos() as i32).ok())
    };
    match (
        ts(p.earliest_restorable_date_time.as_ref()),
        ts(p.latest_restorable_date_time.as_ref()),
    ) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        _ => Ok(None),
    }
}

/// Pure: whether `time` may be restored to from a PITR window, and the time to ask for.
pub fn pitr_target(
    table: &str,
    window: Option<(Timestamp, Timestamp)>,
    time: PitrTime,
) -> Result<PitrTime> {
    let Some((earliest, latest)) = window else {
        return Err(Error::refused(
            "restore pitr",
            format!("point-in-time recovery is off for table {table}"),
            "restore from a backup or an export instead; turn PITR on for the future",
        ));
    };
    match time {
        PitrTime::Latest => Ok(PitrTime::Latest),
        PitrTime::At(t) if t < earliest || t > latest => Err(Error::refused(
            "restore pitr",
            format!("{t} is outside table {table}'s PITR window ({earliest} to {latest})"),
            "pick a time inside the window, or restore from a backup or an export of that time",
        )),
        at => Ok(at),
    }
}

/// Starts a point-in-time restore of `table` into the new table `to`, after checking that
/// the time is inside the table's window. Returns the time asked for.
pub async fn start_from_pitr(ddb: &Ddb, table: &str, to: &str, time: PitrTime) -> Result<PitrTime> {
    let target = pitr_target(table, pitr_window(ddb, table).await?, time)?;
    let mut req = ddb
        .restore_table_to_point_in_time()
        .source_table_name(table)
        .target_table_name(to);
    req = match target {
        PitrTime::Latest => req.use_latest_restorable_time(true),
        PitrTime::At(t) => {
            req.restore_date_time(aws_smithy_types::DateTime::from_millis(t.as_millisecond()))
        }
    };
    req.send().await.map_err(|e| {
        Error::aws(
            "RestoreTableToPointInTime",
            format!("table {table} into {to}"),
            e,
        )
    })?;
    Ok(target)
}

/// A table's keys and indexes, read from AWS's JSON shapes (a Backstop manifest's
/// `key_schema`, the table shape the snapshot job records): what a restored table is created
/// with, by CreateTable or by ImportTable.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub key_schema: Vec<KeySchemaElement>,
    pub attributes: Vec<AttributeDefinition>,
    pub global: Vec<GlobalSecondaryIndex>,
    pub local: Vec<LocalSecondaryIndex>,
}

impl TableSpec {
    /// Pure: the spec in `schema`, or what in it cannot be read.
    pub fn from_json(schema: &Value) -> std::result::Result<TableSpec, String> {
        let keys = |v: &Value| -> std::result::Result<Vec<KeySchemaElement>, String> {
            v.as_array()
                .ok_or("KeySchema is not a list")?
                .iter()
                .map(|k| {
                    KeySchemaElement::builder()
                        .attribute_name(k["AttributeName"].as_str().ok_or("a key without a name")?)
                        .key_type(KeyType::from(
                            k["KeyType"].as_str().ok_or("a key without a type")?,
                        ))
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect()
        };
        let projection = |v: &Value| {
            let mut p = Projection::builder();
            if let Some(t) = v["ProjectionType"].as_str() {
                p = p.projection_type(ProjectionType::from(t));
            }
            for a in v["NonKeyAttributes"].as_array().into_iter().flatten() {
                if let Some(a) = a.as_str() {
                    p = p.non_key_attributes(a);
                }
            }
            p.build()
        };
        let list = |name: &str| schema[name].as_array().into_iter().flatten();
        let mut attributes = Vec::new();
        for a in schema["AttributeDefinitions"]
            .as_array()
            .ok_or("AttributeDefinitions is not a list")?
        {
            attributes.push(
                AttributeDefinition::builder()
                    .attribute_name(
                        a["AttributeName"]
                            .as_str()
                            .ok_or("an attribute without a name")?,
                    )
                    .attribute_type(ScalarAttributeType::from(
                        a["AttributeType"]
                            .as_str()
                            .ok_or("an attribute without a type")?,
                    ))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        let mut global = Vec::new();
        for g in list("GlobalSecondaryIndexes") {
            global.push(
                GlobalSecondaryIndex::builder()
                    .index_name(g["IndexName"].as_str().ok_or("an index without a name")?)
                    .set_key_schema(Some(keys(&g["KeySchema"])?))
                    .projection(projection(&g["Projection"]))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        let mut local = Vec::new();
        for l in list("LocalSecondaryIndexes") {
            local.push(
                LocalSecondaryIndex::builder()
                    .index_name(l["IndexName"].as_str().ok_or("an index without a name")?)
                    .set_key_schema(Some(keys(&l["KeySchema"])?))
                    .projection(projection(&l["Projection"]))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(TableSpec {
            key_schema: keys(&schema["KeySchema"])?,
            attributes,
            global,
            local,
        })
    }
}

/// A CreateTable request for `to` from `spec`, on demand (a load writes as fast as the table
/// takes; the source's capacity and other settings are re-applied afterwards).
pub fn create_request(
    ddb: &Ddb,
    to: &str,
    spec: &TableSpec,
) -> aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder {
    let mut req = ddb
        .create_table()
        .table_name(to)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(spec.key_schema.clone()))
        .set_attribute_definitions(Some(spec.attributes.clone()));
    if !spec.global.is_empty() {
        req = req.set_global_secondary_indexes(Some(spec.global.clone()));
    }
    if !spec.local.is_empty() {
        req = req.set_local_secondary_indexes(Some(spec.local.clone()));
    }
    req
}

/// The key attribute names of a schema (partition key first).
pub fn key_names(schema: &Value) -> Vec<String> {
    let mut keys: Vec<(bool, String)> = schema["KeySchema"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            Some((
                k["KeyType"].as_str()? != "HASH",
                k["AttributeName"].as_str()?.to_owned(),
            ))
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, n)| n).collect()
}

/// An item's key as one line of DynamoDB JSON, to name it in an error.
fn key_line(item: &Item, keys: &[String]) -> String {
    let key: Item = keys
        .iter()
        .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    crate::ddbjson::item_to_json(&key)
        .unwrap_or_else(|e| format!("(a key that cannot be shown: {e})"))
}

/// Writes items into a table with parallel BatchWriteItem calls; what DynamoDB leaves
/// unprocessed (or refuses with throttling) is sent again with exponential backoff, up to
/// [`MAX_ATTEMPTS`] calls per batch. A batch that still has unwritten items fails the load, and
/// the error names them: the loader never drops an item silently.
pub struct Loader {
    ddb: Ddb,
    table: String,
    keys: Vec<String>,
    parallel: usize,
    pending: Vec<Write>,
    running: JoinSet<std::result::Result<BatchDone, BatchFailed>>,
    /// Items written so far.
    pub written: u64,
    /// Calls sent again (unprocessed items, throttling).
    pub retries: u64,
    failed: Vec<BatchFailed>,
    on_written: Box<dyn FnMut(u64) + Send>,
}

struct BatchDone {
    items: u64,
    retries: u64,
}

#[derive(Debug)]
struct BatchFailed {
    /// The keys of the items this batch did not write.
    keys: Vec<String>,
    error: String,
}

impl Loader {
    pub fn new(ddb: Ddb, table: &str, keys: Vec<String>, parallel: usize) -> Loader {
        Loader {
            ddb,
            table: table.to_owned(),
            keys,
            parallel: parallel.max(1),
            pending: Vec::new(),
            running: JoinSet::new(),
            written: 0,
            retries: 0,
            failed: Vec::new(),
            on_written: Box::new(|_| {}),
        }
    }

    /// Calls `f` with the number of items written so far, after each batch.
    pub fn on_written(mut self, f: impl FnMut(u64) + Send + 'static) -> Loader {
        self.on_written = Box::new(f);
        self
    }

    fn launch(&mut self, batch: Vec<Write>) {
        let (ddb, table, keys) = (self.ddb.clone(), self.table.clone(), self.keys.clone());
        self.running
            .spawn(async move { write_batch(&ddb, &table, &keys, batch).await });
    }

    async fn join_one(&mut self) {
        match self.running.join_next().await {
            Some(Ok(Ok(done))) => {
                self.written += done.items;
                self.retries += done.retries;
                (self.on_written)(self.written);
            }
            Some(Ok(Err(failed))) => self.failed.push(failed),
            Some(Err(join)) => self.failed.push(BatchFailed {
                keys: Vec::new(),
                error: format!("a writer task ended abnormally: {join}"),
            }),
            None => {}
        }
    }

    /// Sends full batches, keeping at most `parallel` calls in flight.
    async fn send_full(&mut self) -> Result<()> {
        while self.pending.len() >= BATCH {
            let batch: Vec<Write> = self.pending.drain(..BATCH).collect();
            while self.running.len() >= self.parallel {
                self.join_one().await;
            }
            self.launch(batch);
        }
        self.stop_on_failure()
    }

    fn stop_on_failure(&self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        let keys: Vec<&String> = self.failed.iter().flat_map(|f| &f.keys).collect();
        let shown: Vec<&str> = keys.iter().take(20).map(|k| k.as_str()).collect();
        Err(Error::Aws {
            operation: "BatchWriteItem",
            resource: format!("table {}", self.table),
            code: None,
            message: format!(
                "{} items were not written ({}); the first of them: {}",
                keys.len(),
                self.failed[0].error,
                shown.join(" ")
            ),
            retryable: false,
            hint: format!(
                "the table {} holds only part of the data: delete it and load again",
                self.table
            ),
        })
    }

    /// Sends what is left and waits for every call; fails naming the items not written.
    pub async fn finish(&mut self) -> Result<u64> {
        let rest = std::mem::take(&mut self.pending);
        for batch in rest.chunks(BATCH) {
            while self.running.len() >= self.parallel {
                self.join_one().await;
            }
            self.launch(batch.to_vec());
        }
        while !self.running.is_empty() {
            self.join_one().await;
        }
        self.stop_on_failure()?;
        Ok(self.written)
    }
}

impl Sink for Loader {
    fn take(&mut self, item: Item) {
        self.pending.push(Write::Put(item));
    }
    /// An incremental export's change: its new image put, or its key deleted when it has none.
    /// A record without Keys fails the load (named at the next drain).
    fn change(&mut self, mut record: Item) {
        match (record.remove("NewImage"), record.remove("Keys")) {
            (Some(AttributeValue::M(image)), _) => self.pending.push(Write::Put(image)),
            (None, Some(AttributeValue::M(keys))) => self.pending.push(Write::Delete(keys)),
            _ => self.failed.push(BatchFailed {
                keys: Vec::new(),
                error: "a change record without Keys (or with a NewImage that is not a map)".into(),
            }),
        }
    }
    fn drain(&mut self) -> impl std::future::Future<Output = Result<()>> + Send {
        self.send_full()
    }
}

/// One write of a load: an item put, or a key deleted (an incremental export's removal).
#[derive(Debug, Clone)]
pub enum Write {
    Put(Item),
    Delete(Item),
}

/// One batch, with every unprocessed item sent again after a backoff (50 ms doubling to 5 s,
/// with jitter) until written or [`MAX_ATTEMPTS`] calls were made.
async fn write_batch(
    ddb: &Ddb,
    table: &str,
    keys: &[String],
    items: Vec<Write>,
) -> std::result::Result<BatchDone, BatchFailed> {
    let total = items.len() as u64;
    let mut todo = Vec::with_capacity(items.len());
    for w in items {
        let (key, built) = match w {
            Write::Put(item) => (
                key_line(&item, keys),
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build()),
            ),
            Write::Delete(key) => (
                key_line(&key, keys),
                DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map(|del| WriteRequest::builder().delete_request(del).build()),
            ),
        };
        match built {
            Ok(w) => todo.push(w),
            Err(e) => {
                return Err(BatchFailed {
                    keys: vec![key],
                    error: format!("the request could not be built: {e}"),
                })
            }
        }
    }
    let mut retries = 0u64;
    let mut last_error = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            retries += 1;
            let base = 50u64 << attempt.min(7);
            // Jitter from the clock, so that parallel batches do not retry in step.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::from(d.subsec_nanos()))
                .unwrap_or_default();
            let jitter = nanos % (base / 2 + 1);
            tokio::time::sleep(Duration::from_millis((base + jitter).min(5_000))).await;
        }
        match ddb
            .batch_write_item()
            .request_items(table, todo.clone())
            .send()
            .await
        {
            Ok(out) => {
                let left = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default();
                if left.is_empty() {
                    return Ok(BatchDone {
                        items: total,
                        retries,
                    });
                }
                last_error = format!("{} items left unprocessed", left.len());
                todo = left;
            }
            Err(e) => {
                let err = Error::aws("BatchWriteItem", format!("table {table}"), e);
                last_error = err.to_string();
                if !err.is_retryable() {
                    break;
                }
            }
        }
    }
    Err(BatchFailed {
        keys: todo
            .iter()
            .filter_map(|w| {
                w.put_request
                    .as_ref()
                    .map(|p| key_line(&p.item, keys))
                    .or_else(|| w.delete_request.as_ref().map(|d| key_line(&d.key, keys)))
            })
            .collect(),
        error: format!("after {} calls: {last_error}", retries + 1),
    })
}

/// What a restore produced, to print and compare.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub table: String,
    /// The restored table's count and fingerprint, read back with a consistent scan.
    pub fingerprint: Fingerprint,
    /// What the source says it should be (the export's fingerprint), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Fingerprint>,
    /// The count the source recorded (a backup's item count, which AWS updates about every six
    /// hours), when there is no fingerprint to compare with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_count: Option<u64>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Each setting re-applied to the new table (empty with --no-settings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<crate::table_settings::Applied>,
}

impl Restored {
    /// Re-applies the source's settings to the restored table: those recorded at backup time
    /// when there are any, else the source table's as it is now (and a note says so), else
    /// none (a note says why).
    pub async fn reapply_settings(
        &mut self,
        ddb: &Ddb,
        recorded: Option<&crate::table_settings::TableSettings>,
        source_table: Option<&str>,
    ) {
        use crate::table_settings;
        let settings = match (recorded, source_table) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(source)) => match table_settings::read(ddb, source).await {
                Ok(s) => {
                    self.notes.push(format!(
                        "no settings were recorded at backup time: {source}'s as they are now were applied"
                    ));
                    Some(s)
                }
                Err(e) => {
                    self.notes.push(format!(
                        "no settings were recorded at backup time and {source}'s cannot be read ({e}): none applied"
                    ));
                    None
                }
            },
            (None, None) => {
                self.notes
                    .push("no settings were recorded at backup time: none applied".into());
                None
            }
        };
        if let Some(s) = settings {
            let data_ok = self.matches() != Some(false);
            self.settings = table_settings::apply(ddb, &self.table, &s, data_ok).await;
            self.notes.push(table_settings::NOT_CARRIED.into());
        }
    }

    /// Whether a setting could not be re-applied.
    pub fn settings_failed(&self) -> bool {
        self.settings.iter().any(|a| a.failed())
    }

    /// Whether the restored table is what the source says: equal fingerprints, else an equal
    /// count; `None` when there is nothing to compare with.
    pub fn matches(&self) -> Option<bool> {
        match (&self.expected, self.expected_count) {
            (Some(e), _) => Some(*e == self.fingerprint),
            (None, Some(c)) => Some(c == self.fingerprint.items),
            (None, None) => None,
        }
    }

    pub fn line(&self) -> String {
        let got = format!(
            "{} items, fingerprint {}",
            self.fingerprint.items,
            self.fingerprint.digest()
        );
        match (self.matches(), &self.expected, self.expected_count) {
            (Some(true), Some(_), _) => format!("{}: {got}: equal to the source's", self.table),
            (Some(true), None, _) => {
                format!(
                    "{}: {got}: the count equals the source's record",
                    self.table
                )
            }
            (Some(false), Some(e), _) => format!(
                "{}: {got}: DIFFERS from the source's {} items, fingerprint {}",
                self.table,
                e.items,
                e.digest()
            ),
            (Some(false), None, Some(c)) => format!(
                "{}: {got}: DIFFERS from the {c} items the source's record says",
                self.table
            ),
            _ => format!("{}: {got}: nothing recorded to compare with", self.table),
        }
    }
}

/// Where an export is, and what Backstop recorded of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportSource {
    pub bucket: String,
    /// The export's `manifest-summary.json`.
    pub summary_key: String,
    /// Keys and indexes of the source table, in AWS's JSON shapes.
    pub schema: Value,
    /// The fingerprint recorded when it was written (logical) or first verified (native).
    pub fingerprint: Option<Fingerprint>,
}

impl ExportSource {
    /// From a Backstop manifest (`backstop-manifest.json` beside a logical export).
    pub fn from_manifest(bucket: &str, m: &BackstopManifest) -> ExportSource {
        ExportSource {
            bucket: bucket.to_owned(),
            summary_key: m.manifest_summary_key.clone(),
            schema: m.key_schema.clone(),
            fingerprint: m.fingerprint,
        }
    }
}

/// How an export is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Backstop's loader: parallel BatchWriteItem into a table it creates.
    #[default]
    Load,
    /// AWS ImportTable on the export's data prefix: AWS creates the table and loads it at any
    /// size, without write capacity; local secondary indexes cannot be created this way.
    Import,
}

/// Reads the export whole and checks it against what was recorded, before any table exists:
/// a damaged, changed or incremental export, or one without a usable key schema, is refused.
async fn check_export(
    clients: &Clients,
    source: &ExportSource,
    incremental: bool,
) -> Result<(reader::ReadBack, TableSpec)> {
    let checked = reader::read_export(&clients.s3, &source.bucket, &source.summary_key, |_| {})
        .await
        .map_err(|e| {
            Error::refused(
                "restore export",
                e.to_string(),
                "this export cannot be restored; pick another (backstop exports list)",
            )
        })?;
    if let Some(recorded) = &source.fingerprint {
        if *recorded != checked.fingerprint {
            return Err(Error::refused(
                "restore export",
                format!(
                    "s3://{}/{} reads as {} items, fingerprint {}; it was recorded as {} items, fingerprint {}",
                    source.bucket,
                    source.summary_key,
                    checked.fingerprint.items,
                    checked.fingerprint.digest(),
                    recorded.items,
                    recorded.digest()
                ),
                "the export changed since it was written; restore from another",
            ));
        }
    }
    let is_incremental = checked.summary.export_type.as_deref() == Some("INCREMENTAL_EXPORT");
    if is_incremental && !incremental {
        return Err(Error::refused(
            "restore export",
            format!(
                "s3://{}/{} is an incremental export (changes only)",
                source.bucket, source.summary_key
            ),
            "restore its chain with --until TIME",
        ));
    }
    if incremental && !is_incremental {
        return Err(Error::refused(
            "restore export",
            format!(
                "s3://{}/{} is recorded as an incremental link but its manifest says {}",
                source.bucket,
                source.summary_key,
                checked.summary.export_type.as_deref().unwrap_or("nothing")
            ),
            "the chain's records and its manifests disagree; restore from a full export",
        ));
    }
    if key_names(&source.schema).is_empty() {
        return Err(Error::refused(
            "restore export",
            "the export records no key schema for its table".to_owned(),
            "restore from a Backstop export or a backup",
        ));
    }
    let spec = TableSpec::from_json(&source.schema).map_err(|e| {
        Error::refused(
            "restore export",
            format!("the export's recorded key schema cannot be read: {e}"),
            "restore from another export or a backup",
        )
    })?;
    Ok((checked, spec))
}

/// Creates the new table `to` from `spec`, waits until it is ACTIVE, and returns a loader for
/// it.
async fn new_table_loader(
    clients: &Clients,
    to: &str,
    spec: &TableSpec,
    schema: &Value,
    parallel: usize,
) -> Result<Loader> {
    create_request(&clients.dynamodb, to, spec)
        .send()
        .await
        .map_err(|e| Error::aws("CreateTable", format!("table {to}"), e))?;
    wait_active(
        &clients.dynamodb,
        to,
        Timestamp::now() + jiff::SignedDuration::from_mins(30),
        Duration::from_millis(500),
        |_| {},
    )
    .await?;
    Ok(Loader::new(
        (*clients.dynamodb).clone(),
        to,
        key_names(schema),
        parallel,
    ))
}

/// The data loaded must be the data checked: an export rewritten in S3 between the check and
/// the load fails the restore (the new table then holds something else: delete it).
pub(crate) fn same_as_checked(
    source: &ExportSource,
    checked: &crate::fingerprint::Fingerprint,
    loaded: &crate::fingerprint::Fingerprint,
    to: &str,
) -> Result<()> {
    if checked.same_content(loaded) {
        return Ok(());
    }
    Err(Error::Aws {
        operation: "restore export",
        resource: format!("s3://{}/{}", source.bucket, source.summary_key),
        code: None,
        message: format!(
            "the export read as {} items, fingerprint {} when checked, and as {} items, fingerprint {} when loaded: it changed in between",
            checked.items,
            checked.digest(),
            loaded.items,
            loaded.digest()
        ),
        retryable: false,
        hint: format!("table {to} holds data that is not the export's: delete it, find out who writes to the export bucket, and restore again"),
    })
}

/// The prefix ImportTable reads: the `data/` folder beside the export's summary.
pub fn data_prefix(summary_key: &str) -> String {
    let dir = summary_key
        .strip_suffix("manifest-summary.json")
        .unwrap_or(summary_key);
    format!("{dir}data/")
}

/// Restores an export into the new table `to`: reads the export whole first (a damaged export
/// is refused before any table exists), then loads it (`via`; an import of a table with local
/// secondary indexes is loaded instead, and the result says so), then compares the table's
/// count and fingerprint with the export's.
pub async fn restore_export(
    clients: &Clients,
    source: &ExportSource,
    to: &str,
    via: Via,
    parallel: usize,
    on_written: impl FnMut(u64) + Send + 'static,
) -> Result<Restored> {
    let started = std::time::Instant::now();
    let (checked, spec) = check_export(clients, source, false).await?;
    let checked_s = started.elapsed().as_secs_f64();
    let mut notes = Vec::new();
    let via = if via == Via::Import && !spec.local.is_empty() {
        notes.push(format!(
            "ImportTable cannot create local secondary indexes ({}): loaded with Backstop's loader instead",
            spec.local
                .iter()
                .map(|l| l.index_name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Via::Load
    } else {
        via
    };
    match via {
        Via::Load => {
            let mut loader = new_table_loader(clients, to, &spec, &source.schema, parallel)
                .await?
                .on_written(on_written);
            let loaded = reader::read_export_into(
                &clients.s3,
                &source.bucket,
                &source.summary_key,
                &mut loader,
            )
            .await?;
            loader.finish().await?;
            same_as_checked(source, &checked.fingerprint, &loaded.fingerprint, to)?;
            notes.push(format!(
                "loaded on demand (PAY_PER_REQUEST); {} BatchWriteItem calls sent again",
                loader.retries
            ));
        }
        Via::Import => {
            let imported = import(clients, source, &spec, to).await?;
            notes.push(format!(
                "imported by ImportTable {imported} (on demand, PAY_PER_REQUEST)"
            ));
        }
    }
    let loaded_s = started.elapsed().as_secs_f64();
    let fingerprint = crate::export::logical::fingerprint_table(&clients.dynamodb, to).await?;
    notes.push(format!(
        "checked the export in {checked_s:.1} s, wrote it in {:.1} s, read the table back in {:.1} s",
        loaded_s - checked_s,
        started.elapsed().as_secs_f64() - loaded_s
    ));
    Ok(Restored {
        table: to.to_owned(),
        fingerprint,
        expected: Some(checked.fingerprint),
        expected_count: None,
        seconds: started.elapsed().as_secs_f64(),
        notes,
        settings: Vec::new(),
    })
}

/// Restores a native chain into the new table `to`: its full export loaded, then each
/// incremental applied in order (new images put, removed keys deleted; one link finished
/// before the next starts). Every link is read whole and checked first, so a damaged link is
/// refused before any table exists.
pub async fn restore_chain(
    clients: &Clients,
    links: &[ExportSource],
    restored_to: Timestamp,
    to: &str,
    parallel: usize,
    on_written: impl FnMut(u64) + Send + 'static,
) -> Result<Restored> {
    let started = std::time::Instant::now();
    let Some((full, increments)) = links.split_first() else {
        return Err(Error::refused(
            "restore export",
            "the chain has no links".to_owned(),
            "",
        ));
    };
    let (full_read, spec) = check_export(clients, full, false).await?;
    let mut checked = vec![full_read.fingerprint];
    let mut changes = 0u64;
    for link in increments {
        let f = check_export(clients, link, true).await?.0.fingerprint;
        changes += f.items;
        checked.push(f);
    }
    let mut loader = new_table_loader(clients, to, &spec, &full.schema, parallel)
        .await?
        .on_written(on_written);
    for (link, checked) in links.iter().zip(&checked) {
        let loaded =
            reader::read_export_into(&clients.s3, &link.bucket, &link.summary_key, &mut loader)
                .await?;
        loader.finish().await?;
        same_as_checked(link, checked, &loaded.fingerprint, to)?;
    }
    let fingerprint = crate::export::logical::fingerprint_table(&clients.dynamodb, to).await?;
    Ok(Restored {
        table: to.to_owned(),
        fingerprint,
        expected: None,
        expected_count: None,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec![
            format!("the table as of {restored_to}, the chain's last link"),
            format!(
                "a full export and {} incremental export(s) applied in order ({changes} change records); {} BatchWriteItem calls sent again",
                increments.len(),
                loader.retries
            ),
        ],
        settings: Vec::new(),
    })
}

/// ImportTable of the export's data prefix into the new table `to`, waited for until it
/// completes; an import that fails, is cancelled, or skipped any item is an error that says
/// so. Returns the import's ARN. The ClientToken comes from (target, export), so a request
/// sent again after a lost answer starts no second import.
async fn import(
    clients: &Clients,
    source: &ExportSource,
    spec: &TableSpec,
    to: &str,
) -> Result<String> {
    use aws_sdk_dynamodb::types::{
        ImportStatus, InputCompressionType, InputFormat, S3BucketSource, TableCreationParameters,
    };
    let prefix = data_prefix(&source.summary_key);
    let built = |e: aws_sdk_dynamodb::error::BuildError| {
        Error::refused(
            "restore export",
            format!("the import request cannot be built: {e}"),
            "",
        )
    };
    let mut table = TableCreationParameters::builder()
        .table_name(to)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(spec.key_schema.clone()))
        .set_attribute_definitions(Some(spec.attributes.clone()));
    if !spec.global.is_empty() {
        table = table.set_global_secondary_indexes(Some(spec.global.clone()));
    }
    let token = blake3::hash(
        format!(
            "backstop-import|{to}|{}|{}",
            source.bucket, source.summary_key
        )
        .as_bytes(),
    )
    .to_hex()[..32]
        .to_owned();
    let out = clients
        .dynamodb
        .import_table()
        .client_token(token)
        .s3_bucket_source(
            S3BucketSource::builder()
                .s3_bucket(&source.bucket)
                .s3_key_prefix(&prefix)
                .build()
                .map_err(built)?,
        )
        .input_format(InputFormat::DynamodbJson)
        .input_compression_type(InputCompressionType::Gzip)
        .table_creation_parameters(table.build().map_err(built)?)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "ImportTable",
                format!("s3://{}/{prefix} into table {to}", source.bucket),
                e,
            )
        })?;
    let arn = out
        .import_table_description
        .and_then(|d| d.import_arn)
        .ok_or_else(|| Error::Aws {
            operation: "ImportTable",
            resource: format!("table {to}"),
            code: None,
            message: "the answer names no import".into(),
            retryable: false,
            hint: "look for the import in the console".into(),
        })?;
    let until = Timestamp::now() + jiff::SignedDuration::from_hours(2);
    loop {
        let d = clients
            .dynamodb
            .describe_import()
            .import_arn(&arn)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeImport", format!("import {arn}"), e))?
            .import_table_description
            .unwrap_or_else(|| aws_sdk_dynamodb::types::ImportTableDescription::builder().build());
        let failed = |message: String| Error::Aws {
            operation: "ImportTable",
            resource: format!("import {arn} into table {to}"),
            code: d.failure_code.clone(),
            message,
            retryable: false,
            hint: format!(
                "the table {to} may hold part of the data: delete it, then restore with --via load"
            ),
        };
        match d.import_status {
            Some(ImportStatus::Completed) if d.error_count > 0 => {
                return Err(failed(format!(
                    "{} items could not be imported (AWS logs them to CloudWatch Logs)",
                    d.error_count
                )))
            }
            Some(ImportStatus::Completed) => break,
            Some(ImportStatus::InProgress) | None => {}
            Some(other) => {
                return Err(failed(format!(
                    "the import ended {}: {}",
                    other.as_str(),
                    d.failure_message.as_deref().unwrap_or("no reason given")
                )))
            }
        }
        if Timestamp::now() >= until {
            return Err(Error::Aws {
                operation: "ImportTable",
                resource: format!("import {arn} into table {to}"),
                code: None,
                message: "still in progress after two hours".into(),
                retryable: true,
                hint: "AWS goes on importing; check the table later and compare it with `backstop diff`".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_active(
        &clients.dynamodb,
        to,
        Timestamp::now() + jiff::SignedDuration::from_mins(30),
        Duration::from_millis(500),
        |_| {},
    )
    .await?;
    Ok(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn pitr_times_outside_the_window_or_without_pitr_are_refused() {
        let w = Some((t("2026-11-01T00:00:00Z"), t("2026-11-30T12:00:00Z")));
        let inside = PitrTime::At(t("2026-11-20T00:00:00Z"));
        assert_eq!(pitr_target("T", w, inside).unwrap(), inside);
        assert_eq!(
            pitr_target("T", w, PitrTime::Latest).unwrap(),
            PitrTime::Latest
        );
        for outside in ["2026-10-31T23:59:59Z", "2026-11-30T12:00:01Z"] {
            let e = pitr_target("T", w, PitrTime::At(t(outside))).unwrap_err();
            assert!(matches!(e, Error::Refused { .. }), "{e}");
            assert!(
                e.to_string().contains("outside table T's PITR window"),
                "{e}"
            );
        }
        let e = pitr_target("T", None, PitrTime::Latest).unwrap_err();
        assert!(
            e.to_string()
                .contains("point-in-time recovery is off for table T"),
            "{e}"
        );
    }

    #[test]
    fn key_names_put_the_partition_key_first() {
        let schema = serde_json::json!({"KeySchema": [
            {"AttributeName": "sk", "KeyType": "RANGE"},
            {"AttributeName": "pk", "KeyType": "HASH"},
        ]});
        assert_eq!(key_names(&schema), ["pk", "sk"]);
        assert!(key_names(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn a_table_spec_reads_keys_and_indexes_and_names_what_is_wrong() {
        let schema = serde_json::json!({
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}, {"AttributeName": "g", "AttributeType": "S"}],
            "GlobalSecondaryIndexes": [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}],
            "LocalSecondaryIndexes": [{"IndexName": "byPkG", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "g", "KeyType": "RANGE"}], "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        });
        let spec = TableSpec::from_json(&schema).unwrap();
        assert_eq!(spec.key_schema.len(), 2);
        assert_eq!(spec.attributes.len(), 3);
        assert_eq!(spec.global[0].index_name(), "byG");
        assert_eq!(spec.local[0].index_name(), "byPkG");
        let e = TableSpec::from_json(
            &serde_json::json!({"KeySchema": [{"KeyType": "HASH"}], "AttributeDefinitions": []}),
        )
        .unwrap_err();
        assert!(e.contains("a key without a name"), "{e}");
        assert!(TableSpec::from_json(&serde_json::json!({})).is_err());
    }

    #[test]
    fn the_import_prefix_is_the_data_folder_beside_the_summary() {
        assert_eq!(
            data_prefix("backstop/T/2026-11-22T03:00:00Z/AWSDynamoDB/abc/manifest-summary.json"),
            "backstop/T/2026-11-22T03:00:00Z/AWSDynamoDB/abc/data/"
        );
    }
}
