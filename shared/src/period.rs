//! Reports over a period (`backstop report --month 2026-11`, and the daily and monthly summary
//! messages): runs, success rates, backups made and deleted, bytes, durations, failures with
//! reasons, drills and RTO, exports and their verification. [`build`] is pure over catalog
//! records; [`read`] reads them.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::Serialize;

use crate::catalog::{Catalog, TargetRecord, TargetStatus};
use crate::drill::{Drill, DrillLevel};
use crate::error::{Error, Result};
use crate::settings::JobKind;

/// A calendar month or day, in UTC: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
    pub monthly: bool,
}

impl Period {
    /// `2026-11` (a month) or `2026-11-30` (a day).
    pub fn parse(s: &str) -> std::result::Result<Period, String> {
        let bad = || {
            format!(
                "{:?} is neither a month (2026-11) nor a day (2026-11-30)",
                crate::report::clip(s, 40)
            )
        };
        let s = s.trim();
        if s.len() == 7 {
            let d: Date = format!("{s}-01").parse().map_err(|_| bad())?;
            Ok(Period::month_of(d))
        } else if s.len() == 10 {
            let d: Date = s.parse().map_err(|_| bad())?;
            Ok(Period::day_of(d))
        } else {
            Err(bad())
        }
    }

    pub fn month_of(d: Date) -> Period {
        let first = d.first_of_month();
        let next = first.checked_add(1.month()).unwrap_or(first);
        Period {
            from: utc(first),
            to: utc(next),
            monthly: true,
        }
    }

    pub fn day_of(d: Date) -> Period {
        let next = d.tomorrow().unwrap_or(d);
        Period {
            from: utc(d),
            to: utc(next),
            monthly: false,
        }
    }

    /// The period before the one `now` is in: yesterday, or last month.
    pub fn previous(now: Timestamp, monthly: bool) -> Period {
        let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        if monthly {
            let last = today.first_of_month().yesterday().unwrap_or(today);
            Period::month_of(last)
        } else {
            Period::day_of(today.yesterday().unwrap_or(today))
        }
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }

    /// The 24 hours before `to` (the daily summary's: the night's runs, whenever they ran).
    pub fn day_before(to: Timestamp) -> Period {
        Period {
            from: to - jiff::SignedDuration::from_hours(24),
            to,
            monthly: false,
        }
    }

    /// `2026-11`, `2026-11-30`, or `<from> to <to>` for a window that is not a calendar day.
    pub fn label(&self) -> String {
        let z = self.from.to_zoned(jiff::tz::TimeZone::UTC);
        let d = z.date();
        if self.monthly {
            d.strftime("%Y-%m").to_string()
        } else if z.time() == jiff::civil::Time::midnight()
            && self.to.duration_since(self.from) == jiff::SignedDuration::from_hours(24)
        {
            d.strftime("%Y-%m-%d").to_string()
        } else {
            format!("{} to {}", self.from, self.to)
        }
    }

    /// The days of the period, in order.
    pub fn days(&self) -> Vec<Date> {
        let mut out = Vec::new();
        let mut d = self.from.to_zoned(jiff::tz::TimeZone::UTC).date();
        while utc(d) < self.to && out.len() < 32 {
            out.push(d);
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
        out
    }
}

fn utc(d: Date) -> Timestamp {
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A run record as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub job: String,
    pub slot: String,
    pub run_id: String,
    pub status: String,
    pub dry_run: bool,
    pub started_at: Option<Timestamp>,
    pub duration_ms: i64,
    pub errors: Vec<String>,
}

/// What the period holds, read from the catalog.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub runs: Vec<RunRecord>,
    pub targets: Vec<TargetRecord>,
    pub drills: Vec<Drill>,
}

/// One job's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    pub job: String,
    pub runs: usize,
    pub succeeded: usize,
    /// Runs that left something undone (partial failure or failure) or found problems.
    pub not_succeeded: usize,
    pub success_rate_pct: Option<f64>,
    pub duration_median_s: Option<f64>,
    pub duration_max_s: Option<f64>,
    /// Distinct run-level errors, at most 10.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One failure of a target, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub slot: String,
    pub reason: String,
}

/// One (job, table or bucket) over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSummary {
    pub job: String,
    pub name: String,
    /// Slots of the period with a record.
    pub slots: usize,
    /// Of them, backed up (and possibly deleted since).
    pub done: usize,
    /// Of them, left failed.
    pub failed: usize,
    /// Attempts over those slots (retries included).
    pub attempts: i64,
    pub success_rate_pct: Option<f64>,
    /// Backups (or exports) of this target that retention deleted within the period.
    pub deleted: usize,
    /// Bytes of the backups made in the period.
    pub bytes: i64,
    /// The newest backup's item count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<i64>,
    /// From the claim to the completion of each backup (its last attempt).
    pub duration_median_s: Option<f64>,
    pub duration_max_s: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// Exports: read back and verified / failed verification / not verified yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationCounts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct VerificationCounts {
    pub verified: usize,
    pub failed: usize,
    pub unverified: usize,
}

/// A table's drills over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillSummary {
    pub table: String,
    pub drills: usize,
    pub proven: usize,
    pub consistent: usize,
    pub failed: usize,
    pub rto_median_s: Option<f64>,
    pub rto_max_s: Option<f64>,
}

/// One day of the period, for the charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub date: String,
    /// Target slots of the day (every job) and how many of them are done.
    pub slots: usize,
    pub done: usize,
    pub success_rate_pct: Option<f64>,
    /// Per table: the snapshot's size that day.
    pub sizes: BTreeMap<String, i64>,
}

/// One table of the report, as every format shows it.
struct Section {
    title: &'static str,
    /// The HTML table's id.
    id: &'static str,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodReport {
    pub period: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub jobs: Vec<JobSummary>,
    pub targets: Vec<TargetSummary>,
    pub drills: Vec<DrillSummary>,
    pub days: Vec<Day>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

fn rate(good: usize, all: usize) -> Option<f64> {
    (all > 0).then(|| good as f64 * 100.0 / all as f64)
}

fn slot_time(slot: &str) -> Option<Timestamp> {
    crate::event::ScheduleSlot::parse(slot)
        .ok()
        .map(|s| s.timestamp())
}

fn parse_ts(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| s.parse().ok())
}

/// Seconds from a record's claim to its completion.
fn duration_s(r: &TargetRecord) -> Option<f64> {
    let done = parse_ts(r.completed_at.as_deref())?;
    let claimed = Timestamp::from_second(r.claimed_at?).ok()?;
    Some(done.duration_since(claimed).as_secs_f64().max(0.0))
}

/// Pure: the report of `period` from the catalog's records (any records outside the period are
/// left out here, except deletions, which count in the period they happened in).
pub fn build(period: &Period, history: &History) -> PeriodReport {
    // Runs per job (dry runs left out: they change nothing).
    let mut by_job: BTreeMap<String, Vec<&RunRecord>> = BTreeMap::new();
    for r in &history.runs {
        let in_period = slot_time(&r.slot)
            .or(r.started_at)
            .is_some_and(|t| period.contains(t));
        if in_period && !r.dry_run {
            by_job.entry(r.job.clone()).or_default().push(r);
        }
    }
    let jobs = by_job
        .into_iter()
        .map(|(job, runs)| {
            let succeeded = runs.iter().filter(|r| r.status == "Succeeded").count();
            let durations: Vec<f64> = runs.iter().map(|r| r.duration_ms as f64 / 1000.0).collect();
            let mut errors: Vec<String> = Vec::new();
            for e in runs.iter().flat_map(|r| r.errors.iter()) {
                let e = crate::report::clip(e, 300);
                if !errors.contains(&e) && errors.len() < 10 {
                    errors.push(e);
                }
            }
            JobSummary {
                job,
                runs: runs.len(),
                succeeded,
                not_succeeded: runs.len() - succeeded,
                success_rate_pct: rate(succeeded, runs.len()),
                duration_median_s: median(durations.clone()),
                duration_max_s: max(&durations),
                errors,
            }
        })
        .collect();

    // Per (job, target).
    let mut by_target: BTreeMap<(String, String), Vec<&TargetRecord>> = BTreeMap::new();
    let mut deleted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &history.targets {
        let key = (r.job.name().to_owned(), r.table.clone());
        if parse_ts(r.deleted_at.as_deref()).is_some_and(|t| period.contains(t)) {
            *deleted.entry(key.clone()).or_default() += 1;
        }
        if slot_time(&r.slot).is_some_and(|t| period.contains(t)) {
            by_target.entry(key).or_default().push(r);
        } else {
            deleted.entry(key).or_default();
        }
    }
    let mut targets = Vec::new();
    let keys: BTreeSet<(String, String)> =
        by_target.keys().chain(deleted.keys()).cloned().collect();
    for key in keys {
        let recs = by_target.get(&key).cloned().unwrap_or_default();
        let deleted_n = deleted.get(&key).copied().unwrap_or(0);
        if recs.is_empty() && deleted_n == 0 {
            continue;
        }
        // Claimed and started slots are still in the works: neither done nor failed.
        let done: Vec<&&TargetRecord> = recs.iter().filter(|r| r.status.is_done()).collect();
        let failed: Vec<&&TargetRecord> = recs
            .iter()
            .filter(|r| r.status == TargetStatus::Failed)
            .collect();
        let durations: Vec<f64> = done.iter().filter_map(|r| duration_s(r)).collect();
        let is_export = key.0 == JobKind::Export.name();
        let verification = is_export.then(|| {
            let mut c = VerificationCounts::default();
            for r in &done {
                match &r.verification {
                    Some(v) if v.ok => c.verified += 1,
                    Some(_) => c.failed += 1,
                    None => c.unverified += 1,
                }
            }
            c
        });
        targets.push(TargetSummary {
            job: key.0.clone(),
            name: key.1.clone(),
            slots: recs.len(),
            done: done.len(),
            failed: failed.len(),
            attempts: recs.iter().map(|r| r.attempts).sum(),
            success_rate_pct: rate(done.len(), done.len() + failed.len()),
            deleted: deleted_n,
            bytes: done.iter().filter_map(|r| r.size_bytes).sum(),
            items: done
                .iter()
                .max_by(|a, b| a.slot.cmp(&b.slot))
                .and_then(|r| r.item_count),
            duration_median_s: median(durations.clone()),
            duration_max_s: max(&durations),
            failures: failed
                .iter()
                .map(|r| Failure {
                    slot: r.slot.clone(),
                    reason: crate::report::clip(
                        r.error.as_deref().unwrap_or("no reason recorded"),
                        500,
                    ),
                })
                .collect(),
            verification,
        });
    }

    // Drills that started in the period.
    let mut by_table: BTreeMap<String, Vec<&Drill>> = BTreeMap::new();
    for d in &history.drills {
        if period.contains(d.started_at) {
            by_table.entry(d.table.clone()).or_default().push(d);
        }
    }
    let drills = by_table
        .into_iter()
        .map(|(table, ds)| {
            let rto: Vec<f64> = ds.iter().filter_map(|d| d.restore_s).collect();
            let level = |l: DrillLevel| ds.iter().filter(|d| d.level == Some(l)).count();
            DrillSummary {
                table,
                drills: ds.len(),
                proven: level(DrillLevel::Proven),
                consistent: level(DrillLevel::Consistent),
                failed: level(DrillLevel::Failed),
                rto_median_s: median(rto.clone()),
                rto_max_s: max(&rto),
            }
        })
        .collect();

    // Per day, for the charts.
    let days = period
        .days()
        .into_iter()
        .map(|d| {
            let day = Period::day_of(d);
            let recs: Vec<&TargetRecord> = history
                .targets
                .iter()
                .filter(|r| slot_time(&r.slot).is_some_and(|t| day.contains(t)))
                .filter(|r| r.status.is_done() || r.status == TargetStatus::Failed)
                .collect();
            let done = recs.iter().filter(|r| r.status.is_done()).count();
            let mut sizes = BTreeMap::new();
            for r in recs
                .iter()
                .filter(|r| r.job == JobKind::Snapshot && r.status.is_done())
            {
                if let Some(b) = r.size_bytes {
                    sizes.insert(r.table.clone(), b);
                }
            }
            Day {
                date: d.strftime("%Y-%m-%d").to_string(),
                slots: recs.len(),
                done,
                success_rate_pct: rate(done, recs.len()),
                sizes,
            }
        })
        .collect();

    PeriodReport {
        period: period.label(),
        from: period.from,
        to: period.to,
        jobs,
        targets,
        drills,
        days,
    }
}

fn human_s(s: f64) -> String {
    if s >= 59.5 {
        let whole = s.round() as i64;
        format!("{} m {} s", whole / 60, whole % 60)
    } else {
        format!("{s:.1} s")
    }
}

fn opt_s(s: Option<f64>) -> String {
    s.map(human_s).unwrap_or_else(|| "-".into())
}

fn verified(v: Option<VerificationCounts>) -> String {
    v.map(|v| {
        format!(
            "{} ok, {} failed, {} not yet",
            v.verified, v.failed, v.unverified
        )
    })
    .unwrap_or_else(|| "-".into())
}

fn opt_pct(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into())
}

impl PeriodReport {
    fn count(&self, job: JobKind, f: impl Fn(&TargetSummary) -> usize) -> usize {
        self.targets
            .iter()
            .filter(|t| t.job == job.name())
            .map(f)
            .sum()
    }

    /// Failures over the period (target slots left failed, every job).
    pub fn failures(&self) -> usize {
        self.targets.iter().map(|t| t.failed).sum()
    }

    /// One line for a chat message: "✅ 3 tables backed up, 3 exports verified, 1 drill proven
    /// in 4 m 12 s, 0 failures".
    pub fn headline(&self) -> String {
        let snapshotted: BTreeSet<&str> = self
            .targets
            .iter()
            .filter(|t| t.job == JobKind::Snapshot.name() && t.done > 0)
            .map(|t| t.name.as_str())
            .collect();
        // Database targets (`rds:<id>`) are counted apart; their copies (`…@<region>`) not at all.
        let (databases, backed): (BTreeSet<&str>, BTreeSet<&str>) = snapshotted
            .into_iter()
            .filter(|n| !(n.contains(':') && n.contains('@')))
            .partition(|n| crate::db::DbTarget::parse(n).is_some());
        let verified = self.count(JobKind::Export, |t| {
            t.verification.map(|v| v.verified).unwrap_or(0)
        });
        let buckets = self.count(JobKind::Bucket, |t| usize::from(t.done > 0));
        let proven: usize = self.drills.iter().map(|d| d.proven).sum();
        let rto = max(&self
            .drills
            .iter()
            .filter_map(|d| d.rto_max_s)
            .collect::<Vec<_>>());
        let failures = self.failures()
            + self.drills.iter().map(|d| d.failed).sum::<usize>()
            + self.count(JobKind::Export, |t| {
                t.verification.map(|v| v.failed).unwrap_or(0)
            });
        let runs_bad: usize = self.jobs.iter().map(|j| j.not_succeeded).sum();
        // Failed runs can leave no target record (a selection that failed, a missing
        // permission): they count too. No run at all is no good news either.
        let mark = if failures > 0 || runs_bad > 0 {
            "❌"
        } else if self.jobs.is_empty() {
            "⚠️"
        } else {
            "✅"
        };
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = vec![format!(
            "{} backed up",
            plural(backed.len(), "table", "tables")
        )];
        if !databases.is_empty() {
            parts.push(format!(
                "{} backed up",
                plural(databases.len(), "database", "databases")
            ));
        }
        if buckets > 0 {
            parts.push(format!(
                "{} backed up",
                plural(buckets, "bucket", "buckets")
            ));
        }
        parts.push(format!(
            "{} verified",
            plural(verified, "export", "exports")
        ));
        parts.push(match rto {
            Some(r) if proven > 0 => format!(
                "{} proven in {}",
                plural(proven, "drill", "drills"),
                human_s(r)
            ),
            _ => format!("{} proven", plural(proven, "drill", "drills")),
        });
        parts.push(plural(failures, "failure", "failures"));
        if runs_bad > 0 {
            parts.push(format!("{} not succeeded", plural(runs_bad, "run", "runs")));
        }
        if self.jobs.is_empty() {
            parts.push("no runs recorded".to_owned());
        }
        format!("{mark} {}", parts.join(", "))
    }

    /// The report's tables, the same for every format: runs per job, per table and job, and
    /// the drills (when there were any).
    fn sections(&self) -> Vec<Section> {
        let mut out = vec![
            Section {
                title: "Runs per job",
                id: "jobs",
                head: vec![
                    "job",
                    "runs",
                    "succeeded",
                    "not succeeded",
                    "success rate",
                    "median",
                    "max",
                ],
                rows: self
                    .jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.job.clone(),
                            j.runs.to_string(),
                            j.succeeded.to_string(),
                            j.not_succeeded.to_string(),
                            opt_pct(j.success_rate_pct),
                            opt_s(j.duration_median_s),
                            opt_s(j.duration_max_s),
                        ]
                    })
                    .collect(),
            },
            Section {
                title: "Per table and job",
                id: "targets",
                head: vec![
                    "job",
                    "target",
                    "slots",
                    "done",
                    "failed",
                    "success rate",
                    "deleted",
                    "bytes",
                    "items",
                    "median",
                    "max",
                    "verified",
                ],
                rows: self
                    .targets
                    .iter()
                    .map(|t| {
                        vec![
                            t.job.clone(),
                            t.name.clone(),
                            t.slots.to_string(),
                            t.done.to_string(),
                            t.failed.to_string(),
                            opt_pct(t.success_rate_pct),
                            t.deleted.to_string(),
                            crate::report::human_bytes(t.bytes),
                            t.items.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                            opt_s(t.duration_median_s),
                            opt_s(t.duration_max_s),
                            verified(t.verification),
                        ]
                    })
                    .collect(),
            },
        ];
        if !self.drills.is_empty() {
            out.push(Section {
                title: "Restore drills",
                id: "drills",
                head: vec![
                    "table",
                    "drills",
                    "proven",
                    "consistent",
                    "failed",
                    "RTO median",
                    "RTO max",
                ],
                rows: self
                    .drills
                    .iter()
                    .map(|d| {
                        vec![
                            d.table.clone(),
                            d.drills.to_string(),
                            d.proven.to_string(),
                            d.consistent.to_string(),
                            d.failed.to_string(),
                            opt_s(d.rto_median_s),
                            opt_s(d.rto_max_s),
                        ]
                    })
                    .collect(),
            });
        }
        out
    }

    /// Plain text (a terminal, an e-mail).
    pub fn text(&self) -> String {
        self.tables(false)
    }

    /// Markdown (a wiki page, a ticket).
    pub fn markdown(&self) -> String {
        self.tables(true)
    }

    fn tables(&self, md: bool) -> String {
        let mut out = String::new();
        let title = format!(
            "Backstop report {} ({} to {})",
            self.period, self.from, self.to
        );
        if md {
            out.push_str(&format!("# {title}\n\n{}\n\n", self.headline()));
        } else {
            out.push_str(&format!("{title}\n{}\n\n", self.headline()));
        }
        let table = |out: &mut String, head: &[&str], rows: Vec<Vec<String>>| {
            if md {
                out.push_str(&format!("| {} |\n", head.join(" | ")));
                out.push_str(&format!("|{}\n", "---|".repeat(head.len())));
                for r in rows {
                    out.push_str(&format!("| {} |\n", r.join(" | ")));
                }
            } else {
                let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
                for r in &rows {
                    for (i, c) in r.iter().enumerate() {
                        widths[i] = widths[i].max(c.chars().count());
                    }
                }
                let line = |cells: Vec<String>| {
                    cells
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                        .collect::<Vec<_>>()
                        .join("  ")
                        .trim_end()
                        .to_owned()
                };
                out.push_str(&line(head.iter().map(|s| s.to_string()).collect()));
                out.push('\n');
                for r in rows {
                    out.push_str(&line(r));
                    out.push('\n');
                }
            }
            out.push('\n');
        };
        let h = |s: &str| {
            if md {
                format!("## {s}\n\n")
            } else {
                format!("{s}\n")
            }
        };

        let failures: Vec<(&TargetSummary, &Failure)> = self
            .targets
            .iter()
            .flat_map(|t| t.failures.iter().map(move |f| (t, f)))
            .collect();
        out.push_str(&h("Failures"));
        if failures.is_empty() {
            out.push_str("None.\n");
        }
        for (t, f) in failures {
            let reason = if md {
                f.reason.replace('|', "\\|")
            } else {
                f.reason.clone()
            };
            out.push_str(&format!("- {} {} at {}: {reason}\n", t.job, t.name, f.slot));
        }
        for j in self.jobs.iter().filter(|j| !j.errors.is_empty()) {
            for e in &j.errors {
                out.push_str(&format!("- {} run: {e}\n", j.job));
            }
        }
        out.push('\n');
        for sec in self.sections() {
            out.push_str(&h(sec.title));
            table(&mut out, &sec.head, sec.rows);
        }
        out
    }

    /// One self-contained HTML page with two small charts (success rate per day, snapshot size
    /// per table per day) as inline SVG: nothing to download, fine to attach.
    pub fn html(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let headline = self.headline();
        let ok = headline.starts_with('✅');
        let mut body = String::new();
        body.push_str(&format!(
            "<h1>Backstop report {}</h1>\n<p class=\"headline\"><span class=\"badge {}\">{}</span> {}</p>\n",
            esc(&self.period),
            if ok { "ok" } else { "bad" },
            if ok { "OK" } else { "FAILURES" },
            esc(headline.trim_start_matches(['✅', '❌']).trim_start())
        ));
        body.push_str("<div class=\"charts\">\n");
        body.push_str(&self.success_chart());
        body.push_str(&self.size_chart());
        body.push_str("</div>\n");
        let table = |head: &[&str], rows: Vec<Vec<String>>, id: &str| {
            let mut t = format!("<table id=\"{id}\"><thead><tr>");
            for h in head {
                t.push_str(&format!("<th>{}</th>", esc(h)));
            }
            t.push_str("</tr></thead><tbody>\n");
            for r in rows {
                t.push_str("<tr>");
                for c in r {
                    t.push_str(&format!("<td>{}</td>", esc(&c)));
                }
                t.push_str("</tr>\n");
            }
            t.push_str("</tbody></table>\n");
            t
        };
        for sec in self.sections() {
            body.push_str(&format!("<h2>{}</h2>\n", esc(sec.title)));
            body.push_str(&table(&sec.head, sec.rows, sec.id));
        }
        body.push_str("<h2>Failures</h2>\n<ul id=\"failures\">\n");
        let mut any = false;
        for t in &self.targets {
            for f in &t.failures {
                any = true;
                body.push_str(&format!(
                    "<li><b>{} {}</b> at {}: {}</li>\n",
                    esc(&t.job),
                    esc(&t.name),
                    esc(&f.slot),
                    esc(&f.reason)
                ));
            }
        }
        if !any {
            body.push_str("<li>None.</li>\n");
        }
        body.push_str("</ul>\n");
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Backstop report {}</title>\n<style>\n\
             body{{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}}\n\
             h1{{font-size:22px}} h2{{font-size:17px;margin-top:24px}}\n\
             .headline{{font-size:16px}}\n\
             .charts{{display:flex;gap:24px;flex-wrap:wrap}}\n\
             figure{{margin:0}} figcaption{{font-size:13px;color:#555}}\n\
             table{{border-collapse:collapse;font-size:13px}} th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}\n\
             th{{background:#f3f3f3}}\n\
             .badge{{color:#fff;border-radius:4px;padding:1px 6px;font-size:13px;font-weight:600}}\n\
             .badge.ok{{background:#1b5e20}} .badge.bad{{background:#8e0000}}\n\
             .legend{{list-style:none;padding:0;margin:4px 0}} .legend li{{display:inline-block;margin-right:12px}}\n\
             .swatch{{display:inline-block;width:10px;height:10px;margin-right:4px}}\n\
             </style></head>\n<body>\n{body}</body></html>\n",
            esc(&self.period)
        )
    }

    fn success_chart(&self) -> String {
        let (w, h, pad) = (420.0, 180.0, 28.0);
        let n = self.days.len().max(1) as f64;
        let bw = (w - 2.0 * pad) / n;
        let mut svg = format!(
            "<figure><svg id=\"chart-success\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Success rate per day\">\
             <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
             <text x=\"2\" y=\"{}\" font-size=\"10\">100%</text><text x=\"8\" y=\"{}\" font-size=\"10\">0%</text>",
            h - pad,
            w - pad,
            h - pad,
            pad + 4.0,
            h - pad
        );
        for (i, d) in self.days.iter().enumerate() {
            let x = pad + i as f64 * bw;
            if let Some(p) = d.success_rate_pct {
                let bh = (h - 2.0 * pad) * p / 100.0;
                let colour = if p >= 100.0 { "#2e7d32" } else { "#c62828" };
                svg.push_str(&format!(
                        "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {:.0}% of {} slots</title></rect>",
                        x + 1.0,
                        h - pad - bh,
                        (bw - 2.0).max(1.0),
                        bh,
                        d.date,
                        p,
                        d.slots
                    ));
            }
        }
        if let (Some(first), Some(last)) = (self.days.first(), self.days.last()) {
            svg.push_str(&format!(
                "<text x=\"{pad}\" y=\"{}\" font-size=\"10\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
                h - 10.0,
                first.date,
                w - pad,
                h - 10.0,
                last.date
            ));
        }
        svg.push_str("</svg><figcaption>Success rate per day (every job's target slots)</figcaption></figure>\n");
        svg
    }

    fn size_chart(&self) -> String {
        const COLOURS: [&str; 6] = [
            "#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#558b2f", "#ad1457",
        ];
        let (w, h, pad) = (420.0, 180.0, 28.0);
        let tables: BTreeSet<&String> = self.days.iter().flat_map(|d| d.sizes.keys()).collect();
        let top = self
            .days
            .iter()
            .flat_map(|d| d.sizes.values())
            .copied()
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let n = self.days.len().max(2) as f64;
        let x_of = |i: usize| pad + i as f64 * (w - 2.0 * pad) / (n - 1.0);
        let mut svg = format!(
            "<figure><svg id=\"chart-size\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Backup size per table\">\
             <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
             <text x=\"2\" y=\"{}\" font-size=\"10\">{}</text>",
            h - pad,
            w - pad,
            h - pad,
            pad - 6.0,
            crate::report::human_bytes(top as i64)
        );
        let mut legend = String::new();
        for (k, t) in tables.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let points: Vec<String> = self
                .days
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    d.sizes.get(*t).map(|b| {
                        format!(
                            "{:.1},{:.1}",
                            x_of(i),
                            h - pad - (h - 2.0 * pad) * *b as f64 / top
                        )
                    })
                })
                .collect();
            let esc = t.replace('&', "&amp;").replace('<', "&lt;");
            svg.push_str(&format!(
                "<polyline class=\"series\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{esc}</title></polyline>",
                points.join(" ")
            ));
            legend.push_str(&format!(
                "<li><span class=\"swatch\" style=\"background:{colour}\"></span>{esc}</li>"
            ));
        }
        svg.push_str(&format!(
            "</svg><figcaption>Snapshot size per table per day<ul class=\"legend\">{legend}</ul></figcaption></figure>\n"
        ));
        svg
    }
}

/// Reads what `period` needs from the catalog: every job's run records of the period (by
/// slot), every target record (deletions of older backups count too) and the drills.
pub async fn read(catalog: &Catalog, period: &Period) -> Result<History> {
    let mut history = History::default();
    for job in JobKind::ALL {
        history.runs.extend(runs(catalog, job, period).await?);
        history
            .targets
            .extend(catalog.list_targets(job, None).await?);
    }
    history.drills = crate::drill::history(catalog).await?;
    Ok(history)
}

/// The run records of `job` whose slot falls in the period.
async fn runs(catalog: &Catalog, job: JobKind, period: &Period) -> Result<Vec<RunRecord>> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let s = |v: String| A::S(v);
    let pages = catalog
        .client()
        .query()
        .table_name(catalog.table_name())
        .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
        .expression_attribute_values(":pk", s(format!("RUN#{job}")))
        .expression_attribute_values(
            ":from",
            s(crate::event::ScheduleSlot::new(period.from).to_string()),
        )
        .expression_attribute_values(
            ":to",
            s(format!("{}~", crate::event::ScheduleSlot::new(period.to))),
        )
        .into_paginator()
        .items()
        .send();
    let items: Vec<_> = pages.try_collect().await.map_err(|e| {
        Error::aws(
            "Query (run records)",
            format!("catalog table {}", catalog.table_name()),
            e,
        )
    })?;
    Ok(items
        .iter()
        .map(|item| {
            let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            RunRecord {
                job: get("job").unwrap_or_else(|| job.name().to_owned()),
                slot: get("slot").unwrap_or_default(),
                run_id: get("run_id").unwrap_or_default(),
                status: get("status").unwrap_or_default(),
                dry_run: item
                    .get("dry_run")
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false),
                started_at: get("started_at").and_then(|t| t.parse().ok()),
                duration_ms: item
                    .get("duration_ms")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                errors: item
                    .get("errors")
                    .and_then(|v| v.as_ss().ok())
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_cover_what_they_say() {
        let nov = Period::parse("2026-11").unwrap();
        assert_eq!(nov.from.to_string(), "2026-11-01T00:00:00Z");
        assert_eq!(nov.to.to_string(), "2026-12-01T00:00:00Z");
        assert_eq!((nov.label(), nov.days().len()), ("2026-11".to_owned(), 30));
        let day = Period::parse("2026-02-28").unwrap();
        assert_eq!(day.to.to_string(), "2026-03-01T00:00:00Z");
        assert_eq!(day.label(), "2026-02-28");
        for bad in ["2026-13", "2026-1", "november", "", "2026-02-30"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        let now: Timestamp = "2026-12-01T07:00:00Z".parse().unwrap();
        assert_eq!(Period::previous(now, true).label(), "2026-11");
        assert_eq!(Period::previous(now, false).label(), "2026-11-30");
        let window = Period::day_before(now);
        assert_eq!(
            window.label(),
            "2026-11-30T07:00:00Z to 2026-12-01T07:00:00Z"
        );
        assert!(window.contains("2026-12-01T02:00:00Z".parse().unwrap()));
        assert!(!window.contains(now));
    }

    #[test]
    fn an_empty_period_reports_nothing_and_says_so() {
        let p = Period::parse("2026-11").unwrap();
        let r = build(&p, &History::default());
        assert!(r.jobs.is_empty() && r.targets.is_empty());
        assert_eq!(
            r.headline(),
            "⚠️ 0 tables backed up, 0 exports verified, 0 drills proven, 0 failures, no runs recorded"
        );
        assert!(r.text().contains("Failures\nNone."), "{}", r.text());
        let html = r.html();
        assert!(html.contains("id=\"chart-success\"") && html.contains("id=\"chart-size\""));
    }
}
