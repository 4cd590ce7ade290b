//! `backstop status` (where every selected table and bucket stands) and `backstop report`
//! (a month or a day from the catalog, as text, markdown, JSON or one HTML file).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use backstop::aws::Clients;
use backstop::catalog::Catalog;
use backstop::freshness::human;
use backstop::period::{self, Period};
use backstop::settings::Environment;
use backstop::status::{self, Status, Verdict};
use backstop::Error;
use jiff::Timestamp;

use crate::aws_config_for;

/// Exit 0 when every line is fresh, 1 when anything is stale or failed or could not be read.
pub async fn status(
    endpoint: Option<&str>,
    now: Option<&str>,
    json: bool,
) -> Result<ExitCode, Error> {
    let now = match now {
        Some(t) => t
            .parse::<Timestamp>()
            .map_err(|e| Error::Payload(format!("--now {t:?} is not an RFC 3339 time: {e}")))?,
        None => Timestamp::now(),
    };
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let st = status::for_environment(&clients, &Environment::from_process(), now).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&st).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", render(&st, colour));
    }
    Ok(if st.all_fresh() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn ago(secs: Option<i64>) -> String {
    secs.map(|s| format!("{} ago", human(s)))
        .unwrap_or_else(|| "never".into())
}

/// The status as a compact table (with colour on a terminal), then the reasons.
pub fn render(st: &Status, colour: bool) -> String {
    let paint = |v: Verdict| {
        let label = v.label();
        if !colour {
            return label.to_owned();
        }
        let code = match v {
            Verdict::Fresh => "32",
            Verdict::Stale => "33",
            Verdict::Failed => "31",
        };
        format!("\x1b[{code}m{label}\x1b[0m")
    };
    let head = [
        "kind",
        "name",
        "backup",
        "export",
        "pitr",
        "last drill",
        "verdict",
    ];
    let rows: Vec<[String; 7]> = st
        .lines
        .iter()
        .map(|l| {
            let pitr = match (&l.pitr, &l.versioning) {
                (Some(p), _) if p.state == "on" => format!(
                    "on {}..{}",
                    p.earliest
                        .map(|t| t.strftime("%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "?".into()),
                    p.latest
                        .map(|t| t.strftime("%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "?".into())
                ),
                (Some(p), _) => p.state.clone(),
                (None, Some(v)) => format!("versioning {v}"),
                (None, None) => "-".into(),
            };
            let drill = l
                .last_drill
                .as_ref()
                .map(|d| {
                    format!(
                        "{} {}{}",
                        d.started_at.strftime("%m-%d"),
                        d.level,
                        d.rto_s.map(|s| format!(" RTO {s:.0}s")).unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "-".into());
            [
                l.kind.to_owned(),
                l.name.clone(),
                ago(l.backup_age_s),
                if l.kind == "table" {
                    ago(l.export_age_s)
                } else {
                    "-".into()
                },
                pitr,
                drill,
                l.verdict.label().to_owned(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, last: String| {
        let mut s: String = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}  ", w = widths[i]))
            .collect();
        s.push_str(&last);
        s.push('\n');
        s
    };
    out.push_str(&line(
        head[..6].iter().map(|s| s.to_string()).collect(),
        head[6].to_owned(),
    ));
    for (r, l) in rows.iter().zip(&st.lines) {
        out.push_str(&line(r[..6].to_vec(), paint(l.verdict)));
    }
    if st.lines.is_empty() {
        out.push_str("(nothing selected: set BACKSTOP_TABLES, _TABLE_PATTERN or _TABLE_TAG, or BACKSTOP_RDS_INSTANCES, _PATTERN or _TAG)\n");
    }
    match &st.last_retention {
        Some(r) => out.push_str(&format!(
            "\nLast retention run: slot {}, {}\n",
            r.slot, r.status
        )),
        None => out.push_str("\nLast retention run: none recorded\n"),
    }
    for l in st.lines.iter().filter(|l| !l.reasons.is_empty()) {
        for r in &l.reasons {
            out.push_str(&format!("{} {}: {r}\n", l.kind, l.name));
        }
    }
    for e in &st.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    let bad = st
        .lines
        .iter()
        .filter(|l| l.verdict != Verdict::Fresh)
        .count();
    out.push_str(&format!(
        "{} of {} fresh (catalog {}, at {})\n",
        st.lines.len() - bad,
        st.lines.len(),
        st.catalog,
        st.at.strftime("%Y-%m-%dT%H:%M:%SZ")
    ));
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Html,
}

/// One month's or one day's report from the catalog.
pub async fn report(
    endpoint: Option<&str>,
    period: &str,
    format: Format,
    catalog: String,
    output: Option<&Path>,
) -> Result<ExitCode, Error> {
    let period = Period::parse(period).map_err(Error::Payload)?;
    let clients = Clients::from_config(&aws_config_for(endpoint).await);
    let catalog = Catalog::new((*clients.dynamodb).clone(), catalog);
    let history = period::read(&catalog, &period).await?;
    let report = period::build(&period, &history);
    let text = match format {
        Format::Text => report.text(),
        Format::Markdown => report.markdown(),
        Format::Json => serde_json::to_string_pretty(&report)
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
        Format::Html => report.html(),
    };
    match output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| {
                Error::Local(format!("writing the report to {}: {e}", path.display()))
            })?;
            eprintln!("wrote {} ({} bytes)", path.display(), text.len());
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
