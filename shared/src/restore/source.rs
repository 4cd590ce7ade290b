//! What a restore restores from, found in the catalog: a backup (by ARN, by slot, the newest),
//! an export (by id, by slot, the newest full one), a native chain up to a time; and the
//! settings recorded for it. The CLI and the `restore` function resolve requests the same way.

use jiff::{SignedDuration, Timestamp};

use super::{ExportSource, PitrTime};
use crate::aws::Clients;
use crate::catalog::{Catalog, TargetRecord, TargetStatus};
use crate::error::{Error, Result};
use crate::export::{self, manifest::BackstopManifest, ExportMeta, Made};
use crate::settings::JobKind;
use crate::table_settings::TableSettings;

/// Tables a restore must never write into: the tables named for backup (`tables`, as
/// BACKSTOP_TABLES lists them), the catalog, and the source itself.
pub fn protected(tables: Option<&str>, catalog: Option<&str>, source: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = tables
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    names.extend(catalog.map(str::to_owned));
    names.extend(source.map(str::to_owned));
    names
}

/// The source table's name in a backup ARN (`arn:…:table/<name>/backup/<id>`).
pub fn table_of_backup_arn(arn: &str) -> Option<String> {
    let rest = arn.split_once(":table/")?.1;
    rest.split_once("/backup/").map(|(t, _)| t.to_owned())
}

/// Pure: the point in time asked for by exactly one of a time, hours ago, or "latest".
pub fn pitr_time(
    time: Option<&str>,
    hours_ago: Option<f64>,
    latest: bool,
    now: Timestamp,
) -> Result<PitrTime> {
    match (time, hours_ago, latest) {
        (Some(t), None, false) => t.parse::<Timestamp>().map(PitrTime::At).map_err(|e| {
            Error::Payload(format!(
                "time {t:?} is not an RFC 3339 time such as 2026-11-20T03:00:00Z: {e}"
            ))
        }),
        (None, Some(h), false) if h.is_finite() && (0.0..24.0 * 366.0).contains(&h) => {
            let back = SignedDuration::from_secs_f64(h * 3600.0);
            Ok(PitrTime::At(now.checked_sub(back).map_err(|e| {
                Error::Payload(format!("hours ago {h}: {e}"))
            })?))
        }
        (None, Some(h), false) => Err(Error::Payload(format!(
            "hours ago {h} is not a number of hours between 0 and 8784"
        ))),
        (None, None, true) => Ok(PitrTime::Latest),
        _ => Err(Error::Payload(
            "give exactly one of time, hours ago and latest".into(),
        )),
    }
}

/// The backup a restore reads: its ARN and, when the catalog records it, its record (count,
/// settings at backup time). By ARN, or a table's backup of `slot`, or its newest complete one.
pub async fn backup(
    clients: &Clients,
    catalog: Option<&str>,
    arn: Option<&str>,
    table: Option<&str>,
    slot: Option<&str>,
) -> Result<(String, Option<TargetRecord>)> {
    match (arn, table) {
        (Some(arn), _) => {
            // The catalog's record of this backup, when there is one: its count and settings.
            let record = match (catalog, table_of_backup_arn(arn)) {
                (Some(c), Some(t)) => Catalog::new((*clients.dynamodb).clone(), c)
                    .list_targets(JobKind::Snapshot, Some(&t))
                    .await
                    .ok()
                    .and_then(|rs| {
                        rs.into_iter()
                            .find(|r| r.backup_arn.as_deref() == Some(arn))
                    }),
                _ => None,
            };
            Ok((arn.to_owned(), record))
        }
        (None, Some(table)) => {
            let catalog = Catalog::new(
                (*clients.dynamodb).clone(),
                catalog.ok_or_else(|| {
                    Error::setting(
                        crate::settings::ENV_CATALOG_TABLE,
                        "a backup found by table needs the catalog: set BACKSTOP_CATALOG_TABLE (or --catalog)",
                    )
                })?,
            );
            let records = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
            let found = match slot {
                Some(slot) => records
                    .iter()
                    .find(|r| r.slot == slot && r.status == TargetStatus::Done),
                None => crate::drill::newest_backup(&records),
            };
            let r = found.cloned().ok_or_else(|| {
                Error::refused(
                    "restore backup",
                    format!(
                        "catalog {} records no complete backup of {table}{}",
                        catalog.table_name(),
                        slot.map(|s| format!(" at slot {s}")).unwrap_or_default()
                    ),
                    "list them with `backstop backups list --table T`",
                )
            })?;
            let arn = r.backup_arn.clone().ok_or_else(|| {
                Error::refused(
                    "restore backup",
                    format!("the record of {table} at {} holds no backup ARN", r.slot),
                    "restore by backup ARN",
                )
            })?;
            Ok((arn, Some(r)))
        }
        (None, None) => Err(Error::Payload(
            "name the backup: its ARN, or a table with a slot or latest".into(),
        )),
    }
}

/// The export the arguments name, from the catalog: by id, by table and slot, or the table's
/// newest finished full export.
pub fn pick_export<'a>(
    records: &'a [TargetRecord],
    export_id: Option<&str>,
    slot: Option<&str>,
) -> Option<&'a TargetRecord> {
    let done = records.iter().filter(|r| {
        r.status == TargetStatus::Done
            && r.export
                .as_ref()
                .is_some_and(|m| m.export_type == export::ExportType::FullExport)
    });
    match (export_id, slot) {
        (Some(id), _) => records.iter().find(|r| {
            r.status == TargetStatus::Done
                && r.export
                    .as_ref()
                    .is_some_and(|m| m.export_id == id || m.export_arn.as_deref() == Some(id))
        }),
        (None, Some(s)) => records
            .iter()
            .find(|r| r.slot == s && r.status == TargetStatus::Done),
        (None, None) => done.max_by(|a, b| a.slot.cmp(&b.slot)),
    }
}

/// A native export's key schema (AWS's manifests do not carry it): the table's at its newest
/// backup, else the table's as it is now.
pub async fn native_schema(
    clients: &Clients,
    catalog: &Catalog,
    table: &str,
) -> Result<serde_json::Value> {
    let snapshots = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
    if let Some(shape) = crate::drill::newest_backup(&snapshots).and_then(|r| r.table_shape.clone())
    {
        return Ok(shape);
    }
    let d = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeTable", format!("table {table}"), e))?;
    Ok(d.table
        .as_ref()
        .map(crate::export::logical::schema_of)
        .unwrap_or_default())
}

/// Where a native export is read from: its manifest as finalized, the table's key schema, and
/// the fingerprint its first verification recorded.
pub fn native_source(
    record: &TargetRecord,
    meta: &ExportMeta,
    schema: serde_json::Value,
) -> Result<ExportSource> {
    let summary_key = meta.manifest_key.clone().ok_or_else(|| {
        Error::refused(
            "restore export",
            format!(
                "the native export at {} has no manifest recorded yet",
                meta.uri()
            ),
            "let validate finalize it, then restore",
        )
    })?;
    Ok(ExportSource {
        bucket: meta.bucket.clone(),
        summary_key,
        schema,
        fingerprint: record
            .verification
            .as_ref()
            .and_then(|v| v.fingerprint)
            .or(meta.fingerprint),
    })
}

/// The export the catalog records by id, or by table and slot, or a table's newest finished
/// full export: its record and where to read it.
pub async fn export(
    clients: &Clients,
    catalog: &Catalog,
    export_id: Option<&str>,
    table: Option<&str>,
    slot: Option<&str>,
) -> Result<(TargetRecord, ExportMeta, ExportSource)> {
    if export_id.is_none() && table.is_none() {
        return Err(Error::Payload(
            "name the export: its id, or a table with a slot or latest".into(),
        ));
    }
    let records = catalog.list_targets(JobKind::Export, table).await?;
    let record = pick_export(&records, export_id, slot).ok_or_else(|| {
        Error::refused(
            "restore export",
            format!(
                "catalog {} records no finished export{}{}{}",
                catalog.table_name(),
                export_id
                    .map(|e| format!(" with id {e}"))
                    .unwrap_or_default(),
                table.map(|t| format!(" of {t}")).unwrap_or_default(),
                slot.map(|s| format!(" at slot {s}")).unwrap_or_default(),
            ),
            "list them with `backstop exports list`",
        )
    })?;
    let meta = record.export.clone().ok_or_else(|| {
        Error::refused(
            "restore export",
            format!(
                "the record of {} at {} holds no export",
                record.table, record.slot
            ),
            "",
        )
    })?;
    let source = match meta.made {
        Made::Logical => logical_source(clients, &meta).await?,
        Made::Native => {
            let schema = native_schema(clients, catalog, &record.table).await?;
            native_source(record, &meta, schema)?
        }
    };
    Ok((record.clone(), meta, source))
}

/// A logical export's source: its Backstop manifest, checked to be its own, with the catalog's
/// fingerprint (written when the export finished) as the one to compare with.
async fn logical_source(clients: &Clients, meta: &ExportMeta) -> Result<ExportSource> {
    let key = export::backstop_manifest_key(&meta.root);
    let bytes = export::s3io::get(&clients.s3, &meta.bucket, &key)
        .await?
        .ok_or_else(|| {
            Error::refused(
                "restore export",
                format!("s3://{}/{key} is missing", meta.bucket),
                "the export is incomplete; restore from another",
            )
        })?;
    let m: BackstopManifest = serde_json::from_slice(&bytes).map_err(|e| {
        Error::refused(
            "restore export",
            format!("s3://{}/{key} is not a Backstop manifest: {e}", meta.bucket),
            "restore from another export",
        )
    })?;
    // The manifest lives beside the data, so whoever can rewrite the one can rewrite the other:
    // the catalog's record is what the data is checked against, and the summary must be this
    // export's own.
    if !m
        .manifest_summary_key
        .starts_with(&format!("{}/", meta.root))
    {
        return Err(Error::refused(
            "restore export",
            format!(
                "s3://{}/{key} points at {}, outside the export's own prefix {}/",
                meta.bucket, m.manifest_summary_key, meta.root
            ),
            "the export's manifest was changed; restore from another export",
        ));
    }
    let mut source = ExportSource::from_manifest(&meta.bucket, &m);
    if meta.fingerprint.is_some() {
        source.fingerprint = meta.fingerprint;
    }
    Ok(source)
}

/// A table's native chain up to `until`: the links to apply in order (full first) and the
/// moment the last one restores to.
pub async fn chain(
    clients: &Clients,
    catalog: &Catalog,
    table: &str,
    until: Timestamp,
) -> Result<(Vec<ExportSource>, Timestamp)> {
    let records = catalog.list_targets(JobKind::Export, Some(table)).await?;
    let chain = export::native::chain_until(&records, until).map_err(|why| {
        Error::refused(
            "restore export",
            format!(
                "catalog {} holds no whole chain of {table}: {why}",
                catalog.table_name()
            ),
            "restore from a full export (latest) or a backup",
        )
    })?;
    let schema = native_schema(clients, catalog, table).await?;
    let mut links = Vec::with_capacity(chain.len());
    for r in &chain {
        let Some(meta) = &r.export else { continue };
        links.push(native_source(r, meta, schema.clone())?);
    }
    let restored_to = chain
        .last()
        .and_then(|r| r.export.as_ref())
        .map(|m| m.export_time)
        .ok_or_else(|| {
            Error::refused(
                "restore export",
                format!("the chain of {table} has no links"),
                "",
            )
        })?;
    Ok((links, restored_to))
}

/// A note when a chain stops before the time asked for.
pub fn chain_short_note(restored_to: Timestamp, until: Timestamp) -> Option<String> {
    (restored_to < until).then(|| {
        format!(
            "that is {} before {until}: no finished link is newer",
            (until - restored_to)
                .round(
                    jiff::SpanRound::new()
                        .largest(jiff::Unit::Hour)
                        .smallest(jiff::Unit::Minute)
                )
                .map(|s| format!("{s:#}"))
                .unwrap_or_else(|_| "some time".into())
        )
    })
}

/// The settings of `table`'s newest complete backup at or before `slot`, as the snapshot job
/// recorded them.
pub async fn settings_before(
    catalog: &Catalog,
    table: &str,
    slot: &str,
) -> Result<Option<TableSettings>> {
    let snapshots = catalog.list_targets(JobKind::Snapshot, Some(table)).await?;
    Ok(snapshots
        .iter()
        .filter(|r| r.status == TargetStatus::Done && r.slot.as_str() <= slot)
        .filter(|r| r.table_settings.is_some())
        .max_by(|x, y| x.slot.cmp(&y.slot))
        .and_then(|r| r.table_settings.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_arn_names_its_table() {
        assert_eq!(
            table_of_backup_arn(
                "arn:aws:dynamodb:us-east-1:123456789012:table/Sales/backup/01700000000000-deadbeef"
            )
            .as_deref(),
            Some("Sales")
        );
        assert_eq!(table_of_backup_arn("nonsense"), None);
    }

    #[test]
    fn pitr_time_takes_exactly_one_way_of_saying_when() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            pitr_time(None, Some(2.5), false, now).unwrap(),
            PitrTime::At("2026-12-01T09:30:00Z".parse().unwrap())
        );
        assert_eq!(pitr_time(None, None, true, now).unwrap(), PitrTime::Latest);
        assert_eq!(
            pitr_time(Some("2026-11-20T03:00:00Z"), None, false, now).unwrap(),
            PitrTime::At("2026-11-20T03:00:00Z".parse().unwrap())
        );
        for (t, h, l) in [
            (None, None, false),
            (Some("2026-11-20T03:00:00Z"), None, true),
            (Some("yesterday"), None, false),
            (None, Some(-1.0), false),
            (None, Some(f64::NAN), false),
        ] {
            assert!(pitr_time(t, h, l, now).is_err(), "{t:?} {h:?} {l}");
        }
    }

    #[test]
    fn protected_tables_are_the_selection_the_catalog_and_the_source() {
        assert_eq!(
            protected(Some(" A, B ,,"), Some("cat"), Some("src")),
            ["A", "B", "cat", "src"]
        );
        assert!(protected(None, None, None).is_empty());
    }
}
