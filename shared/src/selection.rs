//! Which tables a run works on: an explicit list, a name glob, or a tag. Backstop's own tables
//! (the catalog, restore-drill tables) are never selected.

use aws_sdk_dynamodb::Client as DynamoDb;
use futures::{stream, StreamExt};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::settings::Settings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableSelection {
    /// Exactly these tables, in this order.
    Names(Vec<String>),
    /// Every table whose name matches the glob.
    Pattern(String),
    /// Every table carrying the tag `key` (with `value`, when given).
    Tag { key: String, value: Option<String> },
}

impl TableSelection {
    pub fn pattern(p: &str) -> std::result::Result<Self, String> {
        let p = p.trim();
        glob::Pattern::new(p).map_err(|e| format!("{p:?} is not a valid name glob: {e}"))?;
        Ok(TableSelection::Pattern(p.to_owned()))
    }

    /// `key=value` or a bare `key` (any value).
    pub fn tag(spec: &str) -> std::result::Result<Self, String> {
        let spec = spec.trim();
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (spec, None),
        };
        if key.is_empty() || key.len() > 128 {
            return Err(format!(
                "must be key=value (or key) with a key of 1 to 128 characters, got {spec:?}"
            ));
        }
        if value.as_ref().is_some_and(|v| v.len() > 256) {
            return Err("the tag value may be at most 256 characters".to_owned());
        }
        Ok(TableSelection::Tag {
            key: key.to_owned(),
            value,
        })
    }

    /// Pure: does a table name match a pattern selection?
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            TableSelection::Names(names) => names.iter().any(|n| n == name),
            TableSelection::Pattern(p) => glob::Pattern::new(p).is_ok_and(|g| g.matches(name)),
            TableSelection::Tag { .. } => true,
        }
    }

    pub fn describe(&self) -> String {
        self.describe_as("tables")
    }

    /// The names a list selection gives (none for a pattern or a tag).
    pub fn names(&self) -> &[String] {
        match self {
            TableSelection::Names(n) => n,
            _ => &[],
        }
    }

    /// In words, for `noun` ("tables", "buckets").
    pub fn describe_as(&self, noun: &str) -> String {
        match self {
            // Bounded: the description goes into every message and report.
            TableSelection::Names(n) if n.len() > 20 => {
                format!("{noun} {} and {} more", n[..20].join(", "), n.len() - 20)
            }
            TableSelection::Names(n) => format!("{noun} {}", n.join(", ")),
            TableSelection::Pattern(p) => format!("{noun} matching {p}"),
            TableSelection::Tag {
                key,
                value: Some(v),
            } => format!("{noun} tagged {key}={v}"),
            TableSelection::Tag { key, value: None } => format!("{noun} tagged {key}"),
        }
    }
}

/// A table left out of the run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    pub table: String,
    pub reason: String,
}

/// A table whose selection could not be decided (its description or tags could not be read).
/// It fails on its own; the other tables go ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unreadable {
    pub table: String,
    pub operation: String,
    pub error: String,
    pub retryable: bool,
}

/// The tables to work on, those named but left out, and those that could not be checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    pub tables: Vec<String>,
    pub excluded: Vec<Excluded>,
    #[serde(default)]
    pub unreadable: Vec<Unreadable>,
}

/// Resolves the selection against the account: ListTables (all pages) for patterns and tags,
/// ListTagsOfResource (all pages) for tags. An explicit list is taken as given; a missing table
/// then fails on its own, without stopping the others.
pub async fn resolve(ddb: &DynamoDb, settings: &Settings) -> Result<Selected> {
    let mut out = Selected::default();
    let candidates: Vec<String> = match &settings.selection {
        TableSelection::Names(names) => names.clone(),
        TableSelection::Pattern(_) => list_tables(ddb)
            .await?
            .into_iter()
            .filter(|t| settings.selection.matches_name(t))
            .collect(),
        TableSelection::Tag { key, value } => {
            let all: Vec<String> = list_tables(ddb)
                .await?
                .into_iter()
                .filter(|t| !settings.is_own_table(t))
                .collect();
            keep_tagged(ddb, settings, all, key, value.as_deref(), &mut out, None).await
        }
    };
    // A retention payload's list under a tag selection: only tables that carry the tag.
    let candidates = match &settings.within {
        Some(TableSelection::Tag { key, value }) => {
            let why = format!(
                "not in the configured selection ({}); a payload may only narrow it",
                settings
                    .within
                    .as_ref()
                    .map(TableSelection::describe)
                    .unwrap_or_default()
            );
            keep_tagged(
                ddb,
                settings,
                candidates,
                key,
                value.as_deref(),
                &mut out,
                Some(&why),
            )
            .await
        }
        _ => candidates,
    };
    for t in candidates {
        if settings.is_own_table(&t) {
            out.excluded.push(Excluded {
                table: t,
                reason:
                    "Backstop's own table (catalog or restore drill); never backed up by selection"
                        .to_owned(),
            });
        } else {
            out.tables.push(t);
        }
    }
    Ok(out)
}

/// The tables that carry the tag, in their order. A table whose tags cannot be read is recorded
/// as unreadable (it fails alone); one without the tag is dropped, or excluded with `why_not`.
async fn keep_tagged(
    ddb: &DynamoDb,
    settings: &Settings,
    tables: Vec<String>,
    key: &str,
    value: Option<&str>,
    out: &mut Selected,
    why_not: Option<&str>,
) -> Vec<String> {
    let checked: Vec<(String, Result<bool>)> = stream::iter(tables)
        .map(|t| async move {
            let has = table_has_tag(ddb, &t, key, value).await;
            (t, has)
        })
        .buffered(settings.concurrency)
        .collect()
        .await;
    let mut kept = Vec::new();
    for (table, has) in checked {
        match has {
            Ok(true) => kept.push(table),
            Ok(false) => {
                if let Some(why) = why_not {
                    out.excluded.push(Excluded {
                        table,
                        reason: why.to_owned(),
                    });
                }
            }
            Err(e) => out.unreadable.push(Unreadable {
                operation: match &e {
                    Error::Aws { operation, .. } => (*operation).to_owned(),
                    _ => "select".to_owned(),
                },
                error: format!("could not tell whether it is selected: {e}"),
                retryable: e.is_retryable(),
                table,
            }),
        }
    }
    kept
}

pub async fn list_tables(ddb: &DynamoDb) -> Result<Vec<String>> {
    ddb.list_tables()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::aws("ListTables", "this account and region", e))
}

pub async fn table_has_tag(
    ddb: &DynamoDb,
    table: &str,
    key: &str,
    value: Option<&str>,
) -> Result<bool> {
    let arn = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeTable", format!("table {table}"), e))?
        .table
        .and_then(|t| t.table_arn)
        .ok_or_else(|| Error::Aws {
            operation: "DescribeTable",
            resource: format!("table {table}"),
            code: None,
            message: "the response carried no table ARN".into(),
            retryable: true,
            hint: "a retry may succeed".into(),
        })?;
    let mut next: Option<String> = None;
    loop {
        let page = ddb
            .list_tags_of_resource()
            .resource_arn(&arn)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| Error::aws("ListTagsOfResource", format!("table {table}"), e))?;
        if page
            .tags()
            .iter()
            .any(|t| t.key() == key && value.is_none_or(|v| t.value() == v))
        {
            return Ok(true);
        }
        match page.next_token {
            Some(t) if !t.is_empty() => next = Some(t),
            _ => return Ok(false),
        }
    }
}

/// Resolves a bucket selection: a list as given; a pattern or a tag against ListBuckets (every
/// page), in `region` only (a bucket elsewhere is excluded, with the reason), never `own` (the
/// backup and replica buckets). A bucket whose tags cannot be read fails alone.
pub async fn resolve_buckets(
    s3: &aws_sdk_s3::Client,
    selection: &TableSelection,
    within: Option<&TableSelection>,
    region: Option<&str>,
    own: &[&str],
    concurrency: usize,
) -> Result<Selected> {
    let mut out = Selected::default();
    let candidates: Vec<String> = match selection {
        TableSelection::Names(names) => names.clone(),
        TableSelection::Pattern(_) | TableSelection::Tag { .. } => {
            // With max-buckets set, ListBuckets answers each bucket's BucketRegion.
            let mut pages = s3.list_buckets().max_buckets(1000).into_paginator().send();
            let mut all = Vec::new();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| Error::aws("ListBuckets", "the account's buckets", e))?;
                for b in page.buckets() {
                    let Some(name) = b.name() else { continue };
                    if !selection.matches_name(name) {
                        continue;
                    }
                    match (b.bucket_region(), region) {
                        (Some(r), Some(here)) if r != here => out.excluded.push(Excluded {
                            table: name.to_owned(),
                            reason: format!(
                                "in region {r}; this Backstop backs up buckets in {here} (deploy a stack in {r} for it)"
                            ),
                        }),
                        _ => all.push(name.to_owned()),
                    }
                }
            }
            all
        }
    };
    let candidates: Vec<String> = candidates
        .into_iter()
        .filter(|b| {
            if own.contains(&b.as_str()) {
                out.excluded.push(Excluded {
                    table: b.clone(),
                    reason:
                        "Backstop's own bucket (backups or replicas); never backed up by selection"
                            .to_owned(),
                });
                false
            } else {
                true
            }
        })
        .collect();
    // A tag selection, or a payload's list narrowed from one (`within`): each bucket must
    // carry the tag.
    let (key, value) = match (selection, within) {
        (TableSelection::Tag { key, value }, _) | (_, Some(TableSelection::Tag { key, value })) => {
            (key, value)
        }
        _ => {
            out.tables = candidates;
            return Ok(out);
        }
    };
    let narrowed = !matches!(selection, TableSelection::Tag { .. });
    let checked: Vec<(String, Result<bool>)> = stream::iter(candidates)
        .map(|b| async move {
            let has = bucket_has_tag(s3, &b, key, value.as_deref()).await;
            (b, has)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    for (bucket, has) in checked {
        match has {
            Ok(true) => out.tables.push(bucket),
            Ok(false) if narrowed => out.excluded.push(Excluded {
                table: bucket,
                reason: format!(
                    "not in the configured selection (buckets tagged {key}{}); a payload may only narrow it",
                    value.as_deref().map(|v| format!("={v}")).unwrap_or_default()
                ),
            }),
            Ok(false) => {}
            Err(e) => out.unreadable.push(Unreadable {
                table: bucket,
                operation: "GetBucketTagging".to_owned(),
                error: format!("could not tell whether it is selected: {e}"),
                retryable: e.is_retryable(),
            }),
        }
    }
    Ok(out)
}

/// Whether the bucket carries the tag; a bucket without tags (NoSuchTagSet) does not.
async fn bucket_has_tag(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    value: Option<&str>,
) -> Result<bool> {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .tag_set()
            .iter()
            .any(|t| t.key() == key && value.is_none_or(|v| t.value() == v))),
        Err(e) if e.code() == Some("NoSuchTagSet") => Ok(false),
        Err(e) => Err(Error::aws(
            "GetBucketTagging",
            format!("bucket {bucket}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_globs() {
        let s = TableSelection::pattern("*Table").unwrap();
        assert!(s.matches_name("SalesTable"));
        assert!(!s.matches_name("SalesTable-2"));
        let s = TableSelection::pattern("Sales?able").unwrap();
        assert!(s.matches_name("SalesTable"));
    }

    #[test]
    fn a_long_list_is_described_in_bounded_words() {
        let names: Vec<String> = (0..5000).map(|i| format!("Table{i:04}")).collect();
        let d = TableSelection::Names(names).describe();
        assert!(d.ends_with("and 4980 more") && d.len() < 300, "{d}");
    }

    #[test]
    fn bad_glob_is_refused() {
        assert!(TableSelection::pattern("Sales[")
            .unwrap_err()
            .contains("not a valid name glob"));
    }

    #[test]
    fn tag_spec_parses_key_and_optional_value() {
        assert_eq!(
            TableSelection::tag("backup:plan = daily").unwrap(),
            TableSelection::Tag {
                key: "backup:plan".into(),
                value: Some("daily".into())
            }
        );
        assert_eq!(
            TableSelection::tag("backup").unwrap(),
            TableSelection::Tag {
                key: "backup".into(),
                value: None
            }
        );
        assert!(TableSelection::tag("=x").is_err());
    }
}
