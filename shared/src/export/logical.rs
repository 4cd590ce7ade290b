//! The logical export: a parallel scan written as gzip DynamoDB JSON in the layout of a native
//! export, checkpointed per data file so that it continues in a later invocation, fingerprinted
//! as it goes. An item is never dropped: a page either lands whole in a completed data file, or
//! the file is redone from the checkpoint before it; the export is complete only when every
//! segment reached the end of its scan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::TableDescription;
use futures::{stream, StreamExt};
use jiff::Timestamp;
use tracing::{info, warn};

use super::checkpoint::{self, Segment};
use super::manifest::{self, BackstopManifest, SegmentFigures, Summary};
use super::s3io::{self, DataFile, Encryption};
use super::{export_dir, ExportMeta};
use crate::aws::Clients;
use crate::catalog::{lease_until, Catalog};
use crate::ddbjson::{self, Item};
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;
use crate::fingerprint::{Fingerprint, Fingerprinter};
use crate::settings::ExportSettings;
use crate::wire;

/// A new data file is not started with less than this left before the invocation's deadline.
pub const HANDOFF_MARGIN: Duration = Duration::from_secs(120);
/// Segments scanned at once by one invocation.
pub const SEGMENTS_AT_ONCE: usize = 8;
/// One segment per this many bytes of table (DescribeTable's TableSizeBytes), 1 to 64.
pub const BYTES_PER_SEGMENT: i64 = 1 << 30;
/// How often a writer renews its segment's lease while it writes a data file.
pub const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How often the main invocation looks again at segments its helpers hold.
pub const WAIT_FOR_HELPERS: Duration = Duration::from_secs(2);
/// Attempts at one Scan page (each after the SDK's own retries) before the segment fails.
pub const SCAN_ATTEMPTS: u32 = 8;

/// What the running export has done, for a progress bar (the CLI reads it).
#[derive(Debug, Default)]
pub struct Progress {
    pub items: AtomicU64,
    pub bytes: AtomicU64,
    pub segments_done: AtomicU64,
    pub segments_total: AtomicU64,
}

pub static PROGRESS: Progress = Progress {
    items: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    segments_done: AtomicU64::new(0),
    segments_total: AtomicU64::new(0),
};

/// One Scan page as it arrived: DynamoDB's answer's body, or (where the HTTP layer kept none)
/// the SDK's items and the key to go on from.
enum Answer {
    Wire(bytes::Bytes),
    Items(Vec<Item>, Option<Item>),
}

/// Where a logical export stands when an invocation stops working on it.
#[derive(Debug, Clone)]
pub enum Finished {
    /// Every segment is done and the manifests are written.
    Complete(Box<ExportMeta>),
    /// Time ran low (or other invocations hold segments): `left` segments remain.
    Unfinished { left: u32, note: String },
}

/// Scan segments for a table of `size_bytes`, unless set.
pub fn segments_for(size_bytes: i64, setting: Option<u32>) -> u32 {
    setting.unwrap_or_else(|| (size_bytes / BYTES_PER_SEGMENT + 1).clamp(1, 64) as u32)
}

fn data_key(dir: &str, segment: u32, file: u32) -> String {
    format!("{dir}/data/{segment:04}-{file:06}.json.gz")
}

/// Pure: when an invocation stops starting new data files: `HANDOFF_MARGIN` before its
/// deadline, or after `budget` of work (BACKSTOP_EXPORT_TIME_BUDGET), whichever comes first.
pub fn work_until(
    started: Timestamp,
    deadline: Option<Timestamp>,
    budget: Option<Duration>,
) -> Option<Timestamp> {
    let by_deadline = deadline.map(|d| d - HANDOFF_MARGIN);
    let by_budget = budget.map(|b| started + b);
    match (by_deadline, by_budget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn time_low(until: Option<Timestamp>) -> bool {
    until.is_some_and(|u| Timestamp::now() >= u)
}

/// The inputs of one invocation's work on one table's logical export.
pub struct Logical<'a> {
    pub clients: &'a Clients,
    pub catalog: &'a Catalog,
    pub settings: &'a ExportSettings,
    pub table: &'a str,
    pub description: &'a TableDescription,
    pub slot: &'a ScheduleSlot,
    pub run_id: &'a str,
    pub deadline: Option<Timestamp>,
    /// What the catalog records of this export (root, id, start time).
    pub meta: ExportMeta,
    pub started_at: Timestamp,
    /// A fan-out helper: works on free segments only, writes no manifest, holds no table claim.
    pub helper: bool,
    /// No new data file is started after this (see [`work_until`]).
    pub work_until: Option<Timestamp>,
}

impl Logical<'_> {
    fn enc(&self) -> Encryption {
        Encryption {
            kms_key: self.settings.kms_key.clone(),
        }
    }

    /// Works on the export until it is complete or time runs low. The main invocation (the
    /// holder of the table's claim) waits for segments that helpers hold, takes over those whose
    /// lease ran out, and writes the manifests; a helper only works on free segments.
    pub async fn run(&self) -> Result<Finished> {
        let mut segments = checkpoint::load(self.catalog, self.table, self.slot).await?;
        if segments.is_empty() && self.helper {
            return Ok(Finished::Unfinished {
                left: 0,
                note: "no checkpoints yet: nothing to help with".into(),
            });
        }
        // Every segment's checkpoint must exist before any is trusted: an earlier attempt may
        // have stopped halfway through writing them (creating them again is safe).
        if checkpoint::whole(&segments).is_err() {
            let total = match segments.first() {
                Some(s) => s.total,
                None => segments_for(
                    self.description.table_size_bytes.unwrap_or(0),
                    self.settings.segments,
                )
                .max(if self.settings.segments.is_none() {
                    self.settings.fan_out
                } else {
                    1
                }),
            };
            checkpoint::create_all(self.catalog, self.table, self.slot, total).await?;
            segments = checkpoint::load(self.catalog, self.table, self.slot).await?;
            checkpoint::whole(&segments).map_err(|why| self.bad_checkpoints(&why))?;
        }
        PROGRESS
            .segments_total
            .fetch_add(segments.len() as u64, Ordering::Relaxed);
        PROGRESS.segments_done.fetch_add(
            segments.iter().filter(|s| s.done).count() as u64,
            Ordering::Relaxed,
        );
        loop {
            let pending: Vec<Segment> = segments.iter().filter(|s| !s.done).cloned().collect();
            // With a fan-out, each invocation takes its share at a time and leaves the rest free
            // for the others; segments are claimed only as this invocation gets to them.
            let fan_out = self.settings.fan_out.max(1) as usize;
            let at_once = segments.len().div_ceil(fan_out).clamp(1, SEGMENTS_AT_ONCE);
            let results: Vec<Result<bool>> = stream::iter(pending)
                .map(|seg| self.segment(seg))
                .buffer_unordered(at_once)
                .collect()
                .await;
            // The first error, after every segment stopped: checkpoints already written stay.
            if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                return Err(self.incomplete(e));
            }
            segments = checkpoint::load(self.catalog, self.table, self.slot).await?;
            let left = segments.iter().filter(|s| !s.done).count() as u32;
            if left == 0 {
                if self.helper {
                    return Ok(Finished::Unfinished {
                        left: 0,
                        note: "every segment is done; the main invocation writes the manifests"
                            .into(),
                    });
                }
                return self
                    .write_manifests(&segments)
                    .await
                    .map(|m| Finished::Complete(Box::new(m)));
            }
            let now = Timestamp::now();
            let held = segments
                .iter()
                .filter(|s| {
                    !s.done
                        && s.owner.as_deref().is_some_and(|o| o != self.run_id)
                        && s.lease_until.is_some_and(|l| l >= now.as_second())
                })
                .count();
            if self.helper || time_low(self.work_until) {
                return Ok(Finished::Unfinished {
                    left,
                    note: if held > 0 {
                        format!(
                            "{left} of {} segments left ({held} held by other invocations)",
                            segments.len()
                        )
                    } else {
                        format!(
                            "{left} of {} segments left when the invocation's time ran low",
                            segments.len()
                        )
                    },
                });
            }
            // Helpers hold the rest: wait for them (or for their leases to run out), keeping
            // this invocation's claim on the table alive.
            tokio::time::sleep(WAIT_FOR_HELPERS).await;
            let lease = lease_until(Timestamp::now(), self.deadline);
            if !self
                .catalog
                .renew(
                    crate::settings::JobKind::Export,
                    self.table,
                    self.slot,
                    self.run_id,
                    lease,
                )
                .await?
            {
                return Err(self.taken_over());
            }
        }
    }

    fn incomplete(&self, e: Error) -> Error {
        Error::Aws {
            operation: match &e {
                Error::Aws { operation, .. } => operation,
                _ => "logical export",
            },
            resource: match &e {
                Error::Aws { resource, .. } => resource.clone(),
                _ => format!("table {}", self.table),
            },
            code: e.code().map(str::to_owned),
            message: format!(
                "{}; the export is incomplete and is not used: completed data files are kept and the next attempt resumes from the last checkpoint",
                match &e {
                    Error::Aws { message, hint, .. } if !hint.is_empty() => format!("{message} ({hint})"),
                    Error::Aws { message, .. } => message.clone(),
                    other => other.to_string(),
                }
            ),
            retryable: e.is_retryable(),
            hint: String::new(),
        }
    }

    fn segment_taken(&self, segment: u32) -> Error {
        Error::Aws {
            operation: "UpdateItem (renew export segment)",
            resource: format!("catalog table {}", self.catalog.table_name()),
            code: Some("ConditionalCheckFailedException".into()),
            message: format!(
                "segment {segment} of the export of {} at {} was taken over after its lease ran out; this invocation's unfinished file is dropped",
                self.table, self.slot
            ),
            retryable: true,
            hint: "the other invocation carries it on".into(),
        }
    }

    fn bad_checkpoints(&self, why: &str) -> Error {
        Error::Aws {
            operation: "read export checkpoint",
            resource: format!(
                "catalog table {} (export checkpoints of {} at {})",
                self.catalog.table_name(),
                self.table,
                self.slot
            ),
            code: None,
            message: why.to_owned(),
            retryable: false,
            hint: "delete the EXPORT# items of this slot to start the export over".into(),
        }
    }

    fn taken_over(&self) -> Error {
        Error::Aws {
            operation: "UpdateItem (renew claim)",
            resource: format!("catalog table {}", self.catalog.table_name()),
            code: Some("ConditionalCheckFailedException".into()),
            message: format!(
                "the export of {} at {} was taken over by another run",
                self.table, self.slot
            ),
            retryable: true,
            hint: "the other run carries it on".into(),
        }
    }

    /// Works on one segment; `Ok(true)` when it is done.
    async fn segment(&self, seg: Segment) -> Result<bool> {
        let now = Timestamp::now();
        let lease = lease_until(now, self.deadline);
        if !checkpoint::claim(
            self.catalog,
            self.table,
            self.slot,
            seg.segment,
            self.run_id,
            now,
            lease,
        )
        .await?
        {
            info!(segment = seg.segment, "segment held by another invocation");
            return Ok(false);
        }
        let number = seg.segment;
        let result = self.write_segment(seg).await;
        if result.is_err() {
            // Let go, so that the next attempt takes the segment at once.
            checkpoint::release(self.catalog, self.table, self.slot, number, self.run_id).await;
        }
        result
    }

    /// The holder's work on a segment, one data file and checkpoint at a time.
    async fn write_segment(&self, mut seg: Segment) -> Result<bool> {
        let dir = export_dir(&self.meta.root, &self.meta.export_id);
        let enc = self.enc();
        loop {
            let previous = seg.next_file;
            let mut file = DataFile::new(
                &self.clients.s3,
                &self.meta.bucket,
                data_key(&dir, seg.segment, previous),
                &enc,
            )?;
            let mut fp = Fingerprinter::default();
            let mut resume_at = seg.resume_at.clone();
            let mut lines = Vec::with_capacity(1 << 20);
            let mut end = false;
            let mut renewed = std::time::Instant::now();
            let written = async {
                loop {
                    // The segment's lease is kept alive while the file is written, so that nobody
                    // takes the segment over from a live writer; losing it ends the file unwritten.
                    if renewed.elapsed() >= RENEW_EVERY {
                        let lease = lease_until(Timestamp::now(), self.deadline);
                        if !checkpoint::renew(
                            self.catalog,
                            self.table,
                            self.slot,
                            seg.segment,
                            self.run_id,
                            lease,
                        )
                        .await?
                        {
                            return Err(self.segment_taken(seg.segment));
                        }
                        renewed = std::time::Instant::now();
                    }
                    let answer = self.scan_page(&seg, resume_at.clone()).await?;
                    lines.clear();
                    let (count, next) = match answer {
                        // The answer's own text: each item written as it came and fingerprinted
                        // from that text, never parsed into the SDK's values.
                        Answer::Wire(body) => {
                            let page =
                                wire::Page::parse(&body).map_err(|e| self.page_error(&seg, &e))?;
                            for text in &page.items {
                                // Checked (fingerprinted) before it is written: the line is the text as it
                                // came, so only DynamoDB JSON may reach it.
                                fp.add_json(text)
                                    .map_err(|e| self.item_error("fingerprint", &e))?;
                                ddbjson::write_text_item_line(&mut lines, text);
                            }
                            (page.items.len(), page.next)
                        }
                        Answer::Items(items, next) => {
                            for item in &items {
                                ddbjson::write_item_line(&mut lines, item)
                                    .map_err(|e| self.item_error("write", &e))?;
                                fp.add(item)
                                    .map_err(|e| self.item_error("fingerprint", &e))?;
                            }
                            (items.len(), next)
                        }
                    };
                    file.write(&lines, count as u64).await?;
                    PROGRESS.items.fetch_add(count as u64, Ordering::Relaxed);
                    PROGRESS
                        .bytes
                        .fetch_add(lines.len() as u64, Ordering::Relaxed);
                    resume_at = next;
                    if resume_at.is_none() {
                        end = true;
                        break;
                    }
                    // A file ends at its size, or early when time runs low (a checkpoint is
                    // worth more than a bigger file).
                    if file.bytes >= self.settings.file_bytes || time_low(self.work_until) {
                        break;
                    }
                }
                Ok::<(), Error>(())
            }
            .await;
            if let Err(e) = written {
                file.abandon().await;
                return Err(e);
            }
            let (file_items, file_bytes) = (file.items, file.bytes);
            // Written even when empty: an earlier attempt may have left an object under this
            // key (its checkpoint never written), and ImportTable reads every object of the
            // data prefix, so the key must hold exactly what the manifest says.
            let entry = file.finish().await?;
            seg.files.push(entry);
            seg.next_file += 1;
            seg.items += file_items;
            seg.bytes += file_bytes;
            seg.fingerprint.merge(&fp.fingerprint);
            seg.resume_at = resume_at;
            seg.done = end;
            let lease = lease_until(Timestamp::now(), self.deadline);
            checkpoint::save(
                self.catalog,
                self.table,
                self.slot,
                &seg,
                previous,
                self.run_id,
                lease,
            )
            .await?;
            // The main invocation renews the table's claim with each checkpoint; losing it
            // stops the work. (A helper holds no table claim, only its segments.)
            if !self.helper
                && !self
                    .catalog
                    .renew(
                        crate::settings::JobKind::Export,
                        self.table,
                        self.slot,
                        self.run_id,
                        lease,
                    )
                    .await?
            {
                return Err(self.taken_over());
            }
            if seg.done {
                PROGRESS.segments_done.fetch_add(1, Ordering::Relaxed);
                info!(
                    segment = seg.segment,
                    items = seg.items,
                    files = seg.files.len(),
                    "segment done"
                );
                return Ok(true);
            }
            if time_low(self.work_until) {
                checkpoint::release(
                    self.catalog,
                    self.table,
                    self.slot,
                    seg.segment,
                    self.run_id,
                )
                .await;
                info!(
                    segment = seg.segment,
                    next_file = seg.next_file,
                    "time low: segment checkpointed"
                );
                return Ok(false);
            }
        }
    }

    fn item_error(&self, what: &str, e: &crate::ddbjson::FormatError) -> Error {
        // The problem, not the attribute path: map keys can be data.
        Error::Aws {
            operation: "Scan",
            resource: format!("table {}", self.table),
            code: None,
            message: format!("an item could not be {what}n: {}", e.problem),
            retryable: false,
            hint: "report this: Backstop reads every DynamoDB type".into(),
        }
    }

    fn page_error(&self, seg: &Segment, e: &crate::ddbjson::FormatError) -> Error {
        Error::Aws {
            operation: "Scan",
            resource: format!(
                "table {} segment {} of {}",
                self.table, seg.segment, seg.total
            ),
            code: None,
            // The problem only: a path could name the key's attributes.
            message: format!("the answer could not be read: {}", e.problem),
            retryable: false,
            hint: "report this: DynamoDB's answer was not the Scan answer it documents".into(),
        }
    }

    /// One Scan page, retried with backoff beyond the SDK's own retries for throttling and
    /// server errors. Consistent reads: the export holds every write acknowledged before it.
    /// The answer comes as its body where the client kept it ([`wire::capture`]), else as the
    /// SDK's items.
    async fn scan_page(&self, seg: &Segment, start: Option<Item>) -> Result<Answer> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (result, body) = wire::capture(
                self.clients
                    .dynamodb
                    .scan()
                    .table_name(self.table)
                    .consistent_read(true)
                    .segment(seg.segment as i32)
                    .total_segments(seg.total as i32)
                    .set_limit(self.settings.page_items.map(|n| n as i32))
                    .set_exclusive_start_key(start.clone())
                    .send(),
            )
            .await;
            match (result, body) {
                (Ok(_), Some(body)) => return Ok(Answer::Wire(body)),
                (Ok(out), None) => {
                    let next = out.last_evaluated_key.filter(|k| !k.is_empty());
                    return Ok(Answer::Items(out.items.unwrap_or_default(), next));
                }
                (Err(e), _) => {
                    let err = Error::aws(
                        "Scan",
                        format!(
                            "table {} segment {} of {}",
                            self.table, seg.segment, seg.total
                        ),
                        e,
                    );
                    if !err.is_retryable() || attempt >= SCAN_ATTEMPTS {
                        return Err(err);
                    }
                    let wait = Duration::from_millis(100 * (1 << attempt.min(6)));
                    warn!(segment = seg.segment, attempt, error = %err, "scan page failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Writes manifest-files.json, manifest-summary.json and then backstop-manifest.json (last:
    /// its presence says the export is whole).
    async fn write_manifests(&self, segments: &[Segment]) -> Result<ExportMeta> {
        let dir = export_dir(&self.meta.root, &self.meta.export_id);
        let enc = self.enc();
        let s3 = &self.clients.s3;
        let bucket = &self.meta.bucket;
        let mut sorted: Vec<&Segment> = segments.iter().collect();
        sorted.sort_by_key(|s| s.segment);
        let files: Vec<manifest::FileEntry> = sorted.iter().flat_map(|s| s.files.clone()).collect();
        let mut fingerprint = Fingerprint::default();
        for s in &sorted {
            fingerprint.merge(&s.fingerprint);
        }
        let items: u64 = sorted.iter().map(|s| s.items).sum();
        let bytes: u64 = sorted.iter().map(|s| s.bytes).sum();
        let files_key = format!("{dir}/manifest-files.json");
        let summary_key = format!("{dir}/manifest-summary.json");
        // Every data file must be the one its checkpoint recorded (same ETag): a file rewritten
        // by a writer that had lost its segment would not be. Its segment starts over.
        checkpoint::whole(segments).map_err(|why| self.bad_checkpoints(&why))?;
        let listed = s3io::list_with_etags(s3, bucket, &format!("{dir}/data/")).await?;
        let mut stored = 0u64;
        for seg in &sorted {
            for f in &seg.files {
                match listed.iter().find(|(k, _, _)| *k == f.data_file_s3_key) {
                    Some((_, size, etag)) if *etag == f.etag => stored += *size as u64,
                    found => {
                        checkpoint::reset(
                            self.catalog,
                            self.table,
                            self.slot,
                            seg.segment,
                            seg.total,
                        )
                        .await?;
                        return Err(Error::Aws {
                            operation: "verify export data files",
                            resource: format!("s3://{bucket}/{}", f.data_file_s3_key),
                            code: None,
                            message: format!(
                                "{}; segment {} starts over on the next attempt",
                                match found {
                                    None => "the data file is missing",
                                    Some(_) => "the data file is not the one its checkpoint recorded (another writer replaced it)",
                                },
                                seg.segment
                            ),
                            retryable: true,
                            hint: String::new(),
                        });
                    }
                }
            }
        }
        s3io::put_small(
            s3,
            bucket,
            &files_key,
            manifest::files_text(&files).into_bytes(),
            "application/json",
            &enc,
        )
        .await?;
        let table_arn = self.description.table_arn.clone().unwrap_or_default();
        let now = Timestamp::now();
        let export_arn = format!("{table_arn}/export/{}", self.meta.export_id);
        let summary = Summary {
            version: "2020-06-30".into(),
            export_arn,
            start_time: self.meta.export_time.to_string(),
            end_time: now.to_string(),
            table_arn: table_arn.clone(),
            table_id: self.description.table_id.clone(),
            // The time of the data: the scan's start as the catalog recorded it when the export
            // was planned (never the slot, which only names the export).
            export_time: Some(self.meta.export_time.to_string()),
            export_from_time: None,
            export_to_time: None,
            export_view_type: None,
            s3_bucket: bucket.clone(),
            s3_prefix: Some(self.meta.root.clone()),
            s3_sse_algorithm: Some(enc.algorithm_name().into()),
            s3_sse_kms_key_id: enc.kms_key.clone(),
            manifest_files_s3_key: files_key,
            billed_size_bytes: Some(0),
            item_count: items,
            output_format: "DYNAMODB_JSON".into(),
            export_type: Some("FULL_EXPORT".into()),
        };
        s3io::put_small(
            s3,
            bucket,
            &summary_key,
            serde_json::to_vec(&summary).expect("plain struct"),
            "application/json",
            &enc,
        )
        .await?;
        let backstop = BackstopManifest {
            format: 1,
            table: self.table.to_owned(),
            table_arn,
            slot: self.slot.to_string(),
            mode: super::Made::Logical,
            export_type: super::ExportType::FullExport,
            export_id: self.meta.export_id.clone(),
            export_arn: None,
            manifest_summary_key: summary_key.clone(),
            key_schema: schema_of(self.description),
            item_count: items,
            bytes,
            stored_bytes: stored,
            fingerprint: Some(fingerprint),
            segments: sorted
                .iter()
                .map(|s| SegmentFigures {
                    segment: s.segment,
                    items: s.items,
                    bytes: s.bytes,
                    files: s.files.len() as u32,
                    fingerprint: s.fingerprint,
                })
                .collect(),
            started_at: self.meta.export_time.to_string(),
            finished_at: now.to_string(),
        };
        s3io::put_small(
            s3,
            bucket,
            &super::backstop_manifest_key(&self.meta.root),
            serde_json::to_vec_pretty(&backstop).expect("plain struct"),
            "application/json",
            &enc,
        )
        .await?;
        Ok(ExportMeta {
            manifest_key: Some(summary_key),
            fingerprint: Some(fingerprint),
            item_count: Some(items),
            stored_bytes: Some(stored),
            ..self.meta.clone()
        })
    }
}

/// The table's keys and indexes in AWS's JSON shapes, for restores (ImportTable, CreateTable).
pub fn schema_of(d: &TableDescription) -> serde_json::Value {
    use serde_json::json;
    let keys = |ks: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        ks.iter()
            .map(|k| json!({"AttributeName": k.attribute_name(), "KeyType": k.key_type().as_str()}))
            .collect::<Vec<_>>()
    };
    let projection = |p: Option<&aws_sdk_dynamodb::types::Projection>| {
        json!({
            "ProjectionType": p.and_then(|p| p.projection_type()).map(|t| t.as_str()),
            "NonKeyAttributes": p.map(|p| p.non_key_attributes()).unwrap_or_default(),
        })
    };
    json!({
        "KeySchema": keys(d.key_schema()),
        "AttributeDefinitions": d.attribute_definitions().iter().map(|a| json!({
            "AttributeName": a.attribute_name(),
            "AttributeType": a.attribute_type().as_str(),
        })).collect::<Vec<_>>(),
        "GlobalSecondaryIndexes": d.global_secondary_indexes().iter().map(|g| json!({
            "IndexName": g.index_name(),
            "KeySchema": keys(g.key_schema()),
            "Projection": projection(g.projection()),
        })).collect::<Vec<_>>(),
        "LocalSecondaryIndexes": d.local_secondary_indexes().iter().map(|l| json!({
            "IndexName": l.index_name(),
            "KeySchema": keys(l.key_schema()),
            "Projection": projection(l.projection()),
        })).collect::<Vec<_>>(),
        "BillingMode": d.billing_mode_summary().and_then(|b| b.billing_mode()).map(|m| m.as_str()),
    })
}

/// The fingerprint of a table as a scan reads it now (every segment, consistent reads): what an
/// export of a table nobody writes to must match.
pub async fn fingerprint_table(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<Fingerprint> {
    let mut fp = Fingerprinter::default();
    let mut pages = ddb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| Error::aws("Scan", format!("table {table}"), e))?;
        fp.add(&item)
            .map_err(|e| Error::Local(format!("table {table}: {e}")))?;
    }
    Ok(fp.fingerprint)
}
