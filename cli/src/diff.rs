//! `backstop diff` and `backstop recover`: what differs between two copies of a table, and
//! putting back what the live table lost, with conditional writes only.

use std::io::Write;
use std::process::ExitCode;

use backstop::aws::Clients;
use backstop::catalog::Catalog;
use backstop::diff::{self, Side};
use backstop::settings;
use backstop::Error;

use crate::aws_config_for;

/// A side as the operator names it: a table, or `export:<id or ARN>`, or
/// `export:<table>@<slot>` / `export:<table>@latest` (from the catalog).
async fn side(clients: &Clients, catalog: Option<&str>, text: &str) -> Result<Side, Error> {
    let Some(which) = text.strip_prefix("export:") else {
        return Ok(Side::Table(text.to_owned()));
    };
    let catalog = catalog.ok_or_else(|| {
        Error::setting(
            settings::ENV_CATALOG_TABLE,
            "an export side needs the catalog: give --catalog or set BACKSTOP_CATALOG_TABLE",
        )
    })?;
    let catalog = Catalog::new((*clients.dynamodb).clone(), catalog);
    let (id, table, slot) = match which.rsplit_once('@') {
        Some((t, "latest")) => (None, Some(t), None),
        Some((t, s)) => (None, Some(t), Some(s)),
        None => (Some(which), None, None),
    };
    let (_, _, source) =
        backstop::restore::source::export(clients, &catalog, id, table, slot).await?;
    Ok(Side::Export {
        name: text.to_owned(),
        source,
    })
}

pub async fn diff(
    endpoint: Option<&str>,
    left: &str,
    right: &str,
    items: bool,
    catalog: Option<&str>,
) -> Result<ExitCode, Error> {
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let l = side(&clients, catalog, left).await?;
    let r = side(&clients, catalog, right).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = match diff::diff(&clients, &l, &r, items, |d| {
        writeln!(out, "{}", d.json_line())
            .map_err(|e| Error::Local(format!("diff: cannot write to standard output: {e}")))
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            // As diff(1): 2 for trouble, so that a partial output is never taken for a result.
            let _ = out.flush();
            eprintln!("error: {e}");
            eprintln!("error: the diff did not finish; what it printed is incomplete");
            return Ok(ExitCode::from(2));
        }
    };
    out.flush()
        .map_err(|e| Error::Local(format!("diff: cannot write to standard output: {e}")))?;
    eprintln!(
        "diff: {} only in {left}, {} only in {right}, {} changed, {} equal",
        summary.only_left, summary.only_right, summary.changed, summary.equal
    );
    // As diff(1): 1 when they differ.
    Ok(if summary.differs() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub struct RecoverArgs<'a> {
    pub from: &'a str,
    pub into: &'a str,
    pub deleted: bool,
    pub changed: bool,
    pub dry_run: bool,
    pub catalog: Option<&'a str>,
    pub json: bool,
}

pub async fn recover(endpoint: Option<&str>, a: RecoverArgs<'_>) -> Result<ExitCode, Error> {
    if !a.deleted && !a.changed {
        return Err(Error::Payload(
            "say what to put back: --deleted, --changed, or both".into(),
        ));
    }
    if a.from == a.into {
        return Err(Error::Payload(
            "--from and --into name the same table".into(),
        ));
    }
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let from = side(&clients, a.catalog, a.from).await?;
    let r = diff::recover(&clients, &from, a.into, a.deleted, a.changed, a.dry_run).await?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        let would = if r.dry_run { "would be " } else { "" };
        println!(
            "diff: {} only in {}, {} only in {}, {} changed, {} equal",
            r.diff.only_left, a.from, r.diff.only_right, a.into, r.diff.changed, r.diff.equal
        );
        println!(
            "{} items {would}put back (deleted from {})",
            r.put_back, a.into
        );
        if a.changed {
            println!(
                "{} items {would}overwritten (changed in {})",
                r.overwritten, a.into
            );
        }
        println!(
            "{} items skipped: {} changed them after the diff",
            r.skipped.len(),
            a.into
        );
        for k in &r.skipped {
            println!("  skipped {k}");
        }
        if let Some(e) = &r.error {
            println!("STOPPED: {e}");
            println!(
                "  the counts above were written; run recover again to carry on (it diffs anew)"
            );
        }
    }
    // 1 when anything was left undone: a skipped item or a write that failed.
    Ok(if r.error.is_some() || !r.skipped.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
