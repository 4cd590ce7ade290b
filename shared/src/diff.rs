//! Differences between two copies of a table (a table or an export on each side), and putting
//! back what someone deleted or changed (the runbooks' "accidental deletion" scenario).
//!
//! A diff streams both sides once into partition files on disk (by a hash of each item's key;
//! a line per item: key hash, item hash, key, item), then compares one partition at a time, so
//! memory holds one partition of one side, not the tables. Items compare by their canonical
//! encoding (the fingerprint's), so the same data read from a table and from an export is equal.
//!
//! `recover` writes only with conditions: an item put back because it was deleted is written
//! only while the live table still has no item with its key; a changed item is overwritten
//! only while the live item still holds every attribute value the diff saw. A write that
//! happens meanwhile is never overwritten: that item is skipped and named.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client as Ddb;
use serde::Serialize;

use crate::aws::Clients;
use crate::ddbjson::{self, Item};
use crate::error::{Error, Result};
use crate::export::reader;
use crate::restore::ExportSource;

/// One side of a diff.
#[derive(Debug, Clone)]
pub enum Side {
    Table(String),
    Export {
        /// How the operator named it (for messages).
        name: String,
        source: ExportSource,
    },
}

impl Side {
    pub fn name(&self) -> &str {
        match self {
            Side::Table(t) => t,
            Side::Export { name, .. } => name,
        }
    }
}

/// What differs for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    OnlyLeft,
    OnlyRight,
    Changed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OnlyLeft => "only_left",
            Kind::OnlyRight => "only_right",
            Kind::Changed => "changed",
        }
    }
}

/// One difference: the key, and the items on each side (when asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub kind: Kind,
    pub key: Item,
    pub left: Option<Item>,
    pub right: Option<Item>,
}

impl Difference {
    /// One JSON line: `{"diff":"only_left","key":{…}}`, with `"left"`/`"right"` items when
    /// they were kept.
    pub fn json_line(&self) -> String {
        let json = |i: &Item| {
            ddbjson::item_to_json(i).unwrap_or_else(|e| format!("{{\"unprintable\":\"{e}\"}}"))
        };
        let mut line = format!(
            "{{\"diff\":\"{}\",\"key\":{}",
            self.kind.as_str(),
            json(&self.key)
        );
        if let Some(l) = &self.left {
            line.push_str(",\"left\":");
            line.push_str(&json(l));
        }
        if let Some(r) = &self.right {
            line.push_str(",\"right\":");
            line.push_str(&json(r));
        }
        line.push('}');
        line
    }
}

/// The counts of a diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub only_left: u64,
    pub only_right: u64,
    pub changed: u64,
    pub equal: u64,
}

impl Summary {
    pub fn differs(&self) -> bool {
        self.only_left + self.only_right + self.changed > 0
    }
}

/// Partition files of one diff in the temporary directory, removed when dropped.
struct Spill {
    dir: PathBuf,
    parts: usize,
}

impl Spill {
    /// A new directory only this user can read (the files hold items), made fresh: a name
    /// that exists already (someone else's directory or link) is an error, never reused.
    fn new(parts: usize) -> Result<Spill> {
        use std::os::unix::fs::DirBuilderExt;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nonce = blake3::hash(
            format!(
                "{}|{:?}|{}",
                std::process::id(),
                std::time::SystemTime::now(),
                SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
            .as_bytes(),
        );
        let dir = std::env::temp_dir().join(format!("backstop-diff-{}", &nonce.to_hex()[..24]));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| local(&dir, "create", e))?;
        Ok(Spill { dir, parts })
    }

    fn path(&self, side: char, part: usize) -> PathBuf {
        self.dir.join(format!("{side}{part:04}"))
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn local(path: &std::path::Path, what: &str, e: std::io::Error) -> Error {
    Error::Local(format!(
        "diff: cannot {what} {}: {e} (the diff needs room in the temporary directory, about the size of both sides as JSON)",
        path.display()
    ))
}

/// Writes one side's items into its partition files.
struct Writer<'a> {
    spill: &'a Spill,
    side: char,
    keys: &'a [String],
    files: Vec<BufWriter<File>>,
    canon: Vec<u8>,
    error: Option<Error>,
    items: u64,
}

impl<'a> Writer<'a> {
    fn new(spill: &'a Spill, side: char, keys: &'a [String]) -> Result<Writer<'a>> {
        let mut files = Vec::with_capacity(spill.parts);
        for p in 0..spill.parts {
            let path = spill.path(side, p);
            files.push(BufWriter::with_capacity(
                16 * 1024,
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| local(&path, "create", e))?,
            ));
        }
        Ok(Writer {
            spill,
            side,
            keys,
            files,
            canon: Vec::new(),
            error: None,
            items: 0,
        })
    }

    fn add(&mut self, item: &Item) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write(item) {
            self.error = Some(e);
        }
    }

    fn write(&mut self, item: &Item) -> Result<()> {
        let key: Item = self
            .keys
            .iter()
            .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        if key.len() != self.keys.len() {
            return Err(Error::Local(format!(
                "diff: an item without its key attributes ({}) was read",
                self.keys.join(", ")
            )));
        }
        let bad =
            |e: ddbjson::FormatError| Error::Local(format!("diff: an item cannot be read: {e}"));
        self.canon.clear();
        crate::fingerprint::canonical(&mut self.canon, &key).map_err(bad)?;
        let key_hash = blake3::hash(&self.canon);
        self.canon.clear();
        crate::fingerprint::canonical(&mut self.canon, item).map_err(bad)?;
        let item_hash = blake3::hash(&self.canon);
        let part = (u16::from_le_bytes([key_hash.as_bytes()[0], key_hash.as_bytes()[1]]) as usize)
            % self.spill.parts;
        let line = format!(
            "{}\t{}\t{}\t{}\n",
            &key_hash.to_hex()[..32],
            &item_hash.to_hex()[..32],
            ddbjson::item_to_json(&key).map_err(bad)?,
            ddbjson::item_to_json(item).map_err(bad)?
        );
        let path = self.spill.path(self.side, part);
        self.files[part]
            .write_all(line.as_bytes())
            .map_err(|e| local(&path, "write", e))?;
        self.items += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for (p, f) in self.files.iter_mut().enumerate() {
            f.flush()
                .map_err(|e| local(&self.spill.path(self.side, p), "write", e))?;
        }
        Ok(self.items)
    }
}

impl reader::Sink for Writer<'_> {
    fn take(&mut self, item: Item) {
        self.add(&item);
    }
    fn change(&mut self, _record: Item) {
        if self.error.is_none() {
            self.error = Some(Error::refused(
                "diff",
                "an incremental export holds changes, not a table's items".to_owned(),
                "diff a full export, or restore the chain (restore export --until) and diff that",
            ));
        }
    }
    fn drain(&mut self) -> impl std::future::Future<Output = Result<()>> + Send {
        std::future::ready(match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        })
    }
}

/// The key attribute names of a table (partition key first) and its item count estimate.
pub async fn table_keys(ddb: &Ddb, table: &str) -> Result<(Vec<String>, Option<i64>)> {
    let t = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeTable", format!("table {table}"), e))?
        .table
        .ok_or_else(|| Error::Local(format!("DescribeTable gave nothing for table {table}")))?;
    let schema = crate::export::logical::schema_of(&t);
    Ok((crate::restore::key_names(&schema), t.item_count))
}

async fn side_keys(clients: &Clients, side: &Side) -> Result<(Vec<String>, Option<i64>)> {
    match side {
        Side::Table(t) => table_keys(&clients.dynamodb, t).await,
        Side::Export { source, .. } => Ok((
            crate::restore::key_names(&source.schema),
            source.fingerprint.map(|f| f.items as i64),
        )),
    }
}

async fn stream_side(clients: &Clients, side: &Side, w: &mut Writer<'_>) -> Result<()> {
    match side {
        Side::Table(table) => {
            let mut pages = clients
                .dynamodb
                .scan()
                .table_name(table)
                .consistent_read(true)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(|e| Error::aws("Scan", format!("table {table}"), e))?;
                w.write(&item)?;
            }
            Ok(())
        }
        Side::Export { source, .. } => {
            reader::read_export_into(&clients.s3, &source.bucket, &source.summary_key, w)
                .await
                .map(|_| ())
        }
    }
}

fn torn(path: &std::path::Path) -> Error {
    Error::Local(format!(
        "diff: {} holds a line that is not as written (is something else writing there?)",
        path.display()
    ))
}

/// One partition line.
struct Line {
    item_hash: String,
    key: String,
    item: String,
}

fn parse_line(text: &str) -> Option<(String, Line)> {
    let mut parts = text.splitn(4, '\t');
    let key_hash = parts.next()?.to_owned();
    let item_hash = parts.next()?.to_owned();
    let key = parts.next()?.to_owned();
    let item = parts.next()?.to_owned();
    Some((
        key_hash,
        Line {
            item_hash,
            key,
            item,
        },
    ))
}

/// Compares `left` with `right`, calling `each` for every difference (with both items when
/// `items` is set), and returns the counts. Both sides must have the same key attributes.
pub async fn diff(
    clients: &Clients,
    left: &Side,
    right: &Side,
    items: bool,
    mut each: impl FnMut(Difference) -> Result<()>,
) -> Result<Summary> {
    let (keys, left_count) = side_keys(clients, left).await?;
    let (right_keys, right_count) = side_keys(clients, right).await?;
    if keys.is_empty() || keys != right_keys {
        return Err(Error::refused(
            "diff",
            format!(
                "{} has the key ({}) and {} has ({}): only copies of one table can be compared",
                left.name(),
                keys.join(", "),
                right.name(),
                right_keys.join(", ")
            ),
            "compare a restored copy with its source table or one of its exports",
        ));
    }
    // About 50,000 items a partition: what one partition's map holds in memory.
    let largest = left_count.max(right_count).unwrap_or(0).max(0) as usize;
    let spill = Spill::new((largest / 50_000 + 1).next_power_of_two().min(256))?;
    for (side, tag) in [(left, 'l'), (right, 'r')] {
        let mut w = Writer::new(&spill, tag, &keys)?;
        stream_side(clients, side, &mut w).await?;
        w.finish()?;
    }

    let mut summary = Summary::default();
    let parse_item = |text: &str| {
        ddbjson::item_from_json(text)
            .map_err(|e| Error::Local(format!("diff: a spilled item cannot be read back: {e}")))
    };
    for p in 0..spill.parts {
        let path = spill.path('l', p);
        let mut seen: HashMap<String, Line> = HashMap::new();
        for l in BufReader::new(File::open(&path).map_err(|e| local(&path, "open", e))?).lines() {
            let l = l.map_err(|e| local(&path, "read", e))?;
            let (k, line) = parse_line(&l).ok_or_else(|| torn(&path))?;
            if let Some(earlier) = seen.insert(k, line) {
                return Err(Error::Local(format!(
                    "diff: {} holds the key {} twice",
                    left.name(),
                    earlier.key
                )));
            }
        }
        let path = spill.path('r', p);
        for r in BufReader::new(File::open(&path).map_err(|e| local(&path, "open", e))?).lines() {
            let r = r.map_err(|e| local(&path, "read", e))?;
            let (k, right_line) = parse_line(&r).ok_or_else(|| torn(&path))?;
            match seen.remove(&k) {
                Some(left_line) if left_line.item_hash == right_line.item_hash => {
                    summary.equal += 1
                }
                Some(left_line) => {
                    summary.changed += 1;
                    each(Difference {
                        kind: Kind::Changed,
                        key: parse_item(&right_line.key)?,
                        left: items.then(|| parse_item(&left_line.item)).transpose()?,
                        right: items.then(|| parse_item(&right_line.item)).transpose()?,
                    })?;
                }
                None => {
                    summary.only_right += 1;
                    each(Difference {
                        kind: Kind::OnlyRight,
                        key: parse_item(&right_line.key)?,
                        left: None,
                        right: items.then(|| parse_item(&right_line.item)).transpose()?,
                    })?;
                }
            }
        }
        // What is left of the left side has no counterpart on the right. In key-hash order,
        // so that a run prints the same lines in the same order.
        let mut rest: Vec<(String, Line)> = seen.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, left_line) in rest {
            summary.only_left += 1;
            each(Difference {
                kind: Kind::OnlyLeft,
                key: parse_item(&left_line.key)?,
                left: items.then(|| parse_item(&left_line.item)).transpose()?,
                right: None,
            })?;
        }
    }
    Ok(summary)
}

/// What `recover` did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovered {
    pub diff: Summary,
    /// Items put back (deleted from the live table) or overwritten (changed there).
    pub put_back: u64,
    pub overwritten: u64,
    /// Items left alone because the live table changed after the diff: their keys.
    pub skipped: Vec<String>,
    pub dry_run: bool,
    /// The write that stopped it, when one failed: what is counted above was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `recover` will write: the diff of `from` against the live table `into`, and the
/// differences to write back (items deleted from `into`, and with `changed` items changed
/// there), with both sides' items.
pub async fn plan_recovery(
    clients: &Clients,
    from: &Side,
    into: &str,
    deleted: bool,
    changed: bool,
) -> Result<(Summary, Vec<Difference>)> {
    let mut todo: Vec<Difference> = Vec::new();
    let summary = diff(clients, from, &Side::Table(into.to_owned()), true, |d| {
        if (d.kind == Kind::OnlyLeft && deleted) || (d.kind == Kind::Changed && changed) {
            todo.push(d);
        }
        Ok(())
    })
    .await?;
    Ok((summary, todo))
}

/// Writes a plan into `into`, each item under [`condition`]: one the live table changed since
/// the diff is skipped and named. In a dry run, counts only.
pub async fn apply_recovery(
    ddb: &Ddb,
    into: &str,
    summary: Summary,
    todo: Vec<Difference>,
    dry_run: bool,
) -> Result<Recovered> {
    let mut out = Recovered {
        diff: summary,
        dry_run,
        ..Recovered::default()
    };
    for d in todo {
        let done = if dry_run {
            true
        } else {
            match put_if_unchanged(ddb, into, &d).await {
                Ok(done) => done,
                Err(e) => {
                    out.error = Some(e.to_string());
                    return Ok(out);
                }
            }
        };
        match (done, d.kind) {
            (true, Kind::OnlyLeft) => out.put_back += 1,
            (true, _) => out.overwritten += 1,
            (false, _) => out
                .skipped
                .push(ddbjson::item_to_json(&d.key).unwrap_or_default()),
        }
    }
    Ok(out)
}

/// Puts back into `into` what `from` (a restored copy) has and `into` lost: items deleted
/// (`deleted`) and, with `changed`, items changed since ([`plan_recovery`], then
/// [`apply_recovery`]).
pub async fn recover(
    clients: &Clients,
    from: &Side,
    into: &str,
    deleted: bool,
    changed: bool,
    dry_run: bool,
) -> Result<Recovered> {
    let (summary, todo) = plan_recovery(clients, from, into, deleted, changed).await?;
    apply_recovery(&clients.dynamodb, into, summary, todo, dry_run).await
}

/// Pure: the condition under which `d`'s left item may be written over the live table: no item
/// with its key (deleted), or the live item exactly as the diff saw it (changed: every
/// attribute equal, and none of the restored item's other attributes present).
pub fn condition(
    d: &Difference,
) -> (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut parts = Vec::new();
    match (d.kind, &d.right) {
        (Kind::Changed, Some(live)) => {
            let mut attrs: Vec<&String> = live.keys().collect();
            attrs.sort();
            for (i, a) in attrs.into_iter().enumerate() {
                names.insert(format!("#a{i}"), a.clone());
                values.insert(format!(":v{i}"), live[a].clone());
                parts.push(format!("#a{i} = :v{i}"));
            }
            if let Some(left) = &d.left {
                let mut extra: Vec<&String> =
                    left.keys().filter(|a| !live.contains_key(*a)).collect();
                extra.sort();
                for (i, a) in extra.into_iter().enumerate() {
                    names.insert(format!("#x{i}"), a.clone());
                    parts.push(format!("attribute_not_exists(#x{i})"));
                }
            }
        }
        _ => {
            let mut attrs: Vec<&String> = d.key.keys().collect();
            attrs.sort();
            for (i, a) in attrs.into_iter().enumerate() {
                names.insert(format!("#k{i}"), a.clone());
                parts.push(format!("attribute_not_exists(#k{i})"));
            }
        }
    }
    (parts.join(" AND "), names, values)
}

/// Writes `d`'s left item under [`condition`]; `false` when the condition failed because the
/// live item changed. A write whose answer was lost and that the SDK sent again fails its
/// condition on its own effect: the live item is then read, and equal to ours is a success.
async fn put_if_unchanged(ddb: &Ddb, table: &str, d: &Difference) -> Result<bool> {
    let Some(item) = d.left.clone() else {
        return Ok(false);
    };
    let (expr, names, values) = condition(d);
    let mut req = ddb
        .put_item()
        .table_name(table)
        .set_item(Some(item.clone()))
        .condition_expression(expr)
        .set_expression_attribute_names(Some(names));
    if !values.is_empty() {
        req = req.set_expression_attribute_values(Some(values));
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            let now = ddb
                .get_item()
                .table_name(table)
                .set_key(Some(d.key.clone()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| Error::aws("GetItem", format!("table {table}"), e))?
                .item;
            Ok(now.as_ref().is_some_and(|n| same_item(n, &item)))
        }
        Err(e) => Err(Error::aws(
            "PutItem (conditional)",
            format!("table {table}"),
            e,
        )),
    }
}

fn same_item(a: &Item, b: &Item) -> bool {
    let mut x = Vec::new();
    let mut y = Vec::new();
    crate::fingerprint::canonical(&mut x, a).is_ok()
        && crate::fingerprint::canonical(&mut y, b).is_ok()
        && x == y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn a_deleted_item_is_put_back_only_while_its_key_is_absent() {
        let d = Difference {
            kind: Kind::OnlyLeft,
            key: Item::from([("id".into(), s("a"))]),
            left: Some(Item::from([("id".into(), s("a")), ("x".into(), s("1"))])),
            right: None,
        };
        let (expr, names, values) = condition(&d);
        assert_eq!(expr, "attribute_not_exists(#k0)");
        assert_eq!(names["#k0"], "id");
        assert!(values.is_empty());
    }

    #[test]
    fn a_changed_item_is_overwritten_only_while_it_holds_what_the_diff_saw() {
        let d = Difference {
            kind: Kind::Changed,
            key: Item::from([("id".into(), s("a"))]),
            left: Some(Item::from([
                ("id".into(), s("a")),
                ("x".into(), s("old")),
                ("gone".into(), s("g")),
            ])),
            right: Some(Item::from([("id".into(), s("a")), ("x".into(), s("new"))])),
        };
        let (expr, names, values) = condition(&d);
        assert_eq!(
            expr,
            "#a0 = :v0 AND #a1 = :v1 AND attribute_not_exists(#x0)"
        );
        assert_eq!(
            (names["#a1"].as_str(), names["#x0"].as_str()),
            ("x", "gone")
        );
        assert_eq!(values[":v1"], s("new"));
    }

    #[test]
    fn a_difference_prints_as_one_json_line() {
        let d = Difference {
            kind: Kind::OnlyRight,
            key: Item::from([("id".into(), s("a\"b"))]),
            left: None,
            right: None,
        };
        assert_eq!(
            d.json_line(),
            r#"{"diff":"only_right","key":{"id":{"S":"a\"b"}}}"#
        );
    }
}
