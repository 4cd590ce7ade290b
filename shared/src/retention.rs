//! The retention planner: pure, no I/O. Given one stream of recovery points (the backups of one
//! table, or later the exports of one bucket), a policy and "now", it decides for every point
//! `Keep { reasons }` or `Delete { reason }`.
//!
//! Rules follow restic's `forget`:
//! - `keep_last n` keeps the n newest points.
//! - `keep_{hourly,daily,weekly,monthly,yearly} n`: for the last n periods that hold at least one
//!   point, keep the newest point of each. Periods are calendar buckets (hour, day, ISO week
//!   starting Monday, month, year) in the policy's time zone (default UTC).
//! - `keep_within d` keeps every point newer than (newest point - d);
//!   `keep_within_{hourly,daily,weekly,monthly,yearly} d` keeps the newest point of each period
//!   among those. `d` is a calendar duration such as `30d`, `12w`, `6mo`, `1y`, `48h`.
//! - A point may satisfy several rules; all its reasons are listed.
//! - When a count rule finds fewer periods than its n, the oldest point is kept too, marked so
//!   (borg and restic do the same).
//!
//! Safety floors, stronger than restic's:
//! - the newest `min_complete` complete points (default 3) are never deleted;
//! - nothing is deleted while the newest complete point is older than `freshness_limit`
//!   (default 48h): backups are failing, and the old ones are all that is left (pgBackRest);
//! - incomplete points are never deleted and never count toward a rule;
//! - points under legal hold are kept;
//! - points Backstop did not create are untouched unless the policy opts in (`include_unmanaged`).

use std::collections::HashSet;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use serde::{Deserialize, Serialize};

/// One recovery point: a backup, an export, anything that can be kept or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    /// The backup ARN (or another unique id).
    pub id: String,
    /// The table (or bucket) it is a copy of.
    pub source: String,
    /// When AWS says it was made (`BackupCreationDateTime`): the only time the planner trusts.
    pub created_at: Timestamp,
    /// False while it is still being made (CREATING).
    pub complete: bool,
    #[serde(default)]
    pub legal_hold: bool,
    /// Made by Backstop.
    pub managed: bool,
}

/// A retention policy as written in settings or a payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_hourly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_daily: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_weekly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_monthly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_yearly: Option<String>,
    /// IANA time zone of the calendar periods, default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Floor: the newest this many complete points are never deleted (default 3, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_complete: Option<u32>,
    /// Floor: delete nothing while the newest complete point is older than this (default 48h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_limit: Option<String>,
    /// Let the policy delete points Backstop did not make (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_unmanaged: Option<bool>,
}

pub const DEFAULT_MIN_COMPLETE: u32 = 3;
pub const DEFAULT_FRESHNESS_LIMIT: &str = "48h";

impl RetentionPolicy {
    /// The runbooks' policy: daily 30, weekly 12, monthly 12, yearly 7.
    pub fn runbook_default() -> RetentionPolicy {
        RetentionPolicy {
            keep_daily: Some(30),
            keep_weekly: Some(12),
            keep_monthly: Some(12),
            keep_yearly: Some(7),
            ..RetentionPolicy::default()
        }
    }

    /// The runbooks' export retention: weekly 13, monthly 12, yearly 7. Exports are weekly, so
    /// the freshness floor allows a newest export up to 8 days old (192 h).
    pub fn export_default() -> RetentionPolicy {
        RetentionPolicy {
            keep_weekly: Some(13),
            keep_monthly: Some(12),
            keep_yearly: Some(7),
            freshness_limit: Some("192h".into()),
            ..RetentionPolicy::default()
        }
    }

    /// Parses `keep_daily=30,keep_weekly=12,time_zone=Europe/Lisbon` (the environment's form) or
    /// a JSON object.
    pub fn parse(text: &str) -> Result<RetentionPolicy, String> {
        let text = text.trim();
        if text.starts_with('{') {
            return serde_json::from_str(text).map_err(|e| format!("policy JSON: {e}"));
        }
        let mut map = serde_json::Map::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!(
                    "{:?} is not name=value (such as keep_daily=30)",
                    crate::report::clip(part, 60)
                )
            })?;
            let (k, v) = (k.trim(), v.trim());
            let value =
                if k.starts_with("keep_within") || k == "time_zone" || k == "freshness_limit" {
                    serde_json::Value::String(v.to_owned())
                } else if k == "include_unmanaged" {
                    serde_json::Value::Bool(v.parse::<bool>().map_err(|_| {
                        format!("include_unmanaged must be true or false, got {v:?}")
                    })?)
                } else {
                    serde_json::Value::Number(
                        v.parse::<u32>()
                            .map_err(|_| {
                                format!(
                                    "{} must be a whole number, got {:?}",
                                    crate::report::clip(k, 40),
                                    crate::report::clip(v, 40)
                                )
                            })?
                            .into(),
                    )
                };
            map.insert(k.to_owned(), value);
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| format!("policy: {e}"))
    }

    /// Checks the policy and makes it ready to plan with.
    pub fn compile(&self) -> Result<CompiledPolicy, String> {
        let mut rules = Vec::new();
        let counts = [
            (Period::Last, self.keep_last, "keep_last"),
            (Period::Hour, self.keep_hourly, "keep_hourly"),
            (Period::Day, self.keep_daily, "keep_daily"),
            (Period::Week, self.keep_weekly, "keep_weekly"),
            (Period::Month, self.keep_monthly, "keep_monthly"),
            (Period::Year, self.keep_yearly, "keep_yearly"),
        ];
        for (period, n, name) in counts {
            if let Some(n) = n {
                if n == 0 {
                    return Err(format!(
                        "{name} must be at least 1 (leave it out to not use it)"
                    ));
                }
                rules.push(Rule {
                    name: format!("{name} {n}"),
                    period,
                    limit: Limit::Count(n),
                });
            }
        }
        let withins = [
            (Period::Last, &self.keep_within, "keep_within"),
            (Period::Hour, &self.keep_within_hourly, "keep_within_hourly"),
            (Period::Day, &self.keep_within_daily, "keep_within_daily"),
            (Period::Week, &self.keep_within_weekly, "keep_within_weekly"),
            (
                Period::Month,
                &self.keep_within_monthly,
                "keep_within_monthly",
            ),
            (Period::Year, &self.keep_within_yearly, "keep_within_yearly"),
        ];
        for (period, d, name) in withins {
            if let Some(d) = d {
                let span = parse_span(name, d)?;
                rules.push(Rule {
                    name: format!("{name} {d}"),
                    period,
                    limit: Limit::Within(span),
                });
            }
        }
        if rules.is_empty() {
            return Err(
                "the policy keeps nothing: set at least one keep_* rule (an empty policy would delete every backup)"
                    .into(),
            );
        }
        let tz_name = self.time_zone.as_deref().unwrap_or("UTC");
        let tz = TimeZone::get(tz_name).map_err(|e| {
            format!(
                "time_zone {:?} is not an IANA time zone ({e})",
                crate::report::clip(tz_name, 60)
            )
        })?;
        let min_complete = self.min_complete.unwrap_or(DEFAULT_MIN_COMPLETE);
        if min_complete == 0 {
            return Err(
                "min_complete must be at least 1: the newest complete backup is always kept".into(),
            );
        }
        let fresh_text = self
            .freshness_limit
            .as_deref()
            .unwrap_or(DEFAULT_FRESHNESS_LIMIT);
        let freshness = parse_span("freshness_limit", fresh_text)?;
        Ok(CompiledPolicy {
            rules,
            tz,
            tz_name: tz_name.to_owned(),
            min_complete: min_complete as usize,
            freshness,
            freshness_text: fresh_text.to_owned(),
            include_unmanaged: self.include_unmanaged.unwrap_or(false),
        })
    }
}

impl RetentionPolicy {
    /// Why this policy may keep fewer points than `base`, or `None` when it keeps at least
    /// everything `base` keeps: each rule of `base` has a rule of the same kind here with at
    /// least its count or span, in the same time zone. (Rules act on the same eligible points
    /// independently, so a larger count or window keeps a superset.) Floors are not compared.
    pub fn keeps_less_than(&self, base: &RetentionPolicy) -> Option<String> {
        let counts = [
            ("keep_last", self.keep_last, base.keep_last),
            ("keep_hourly", self.keep_hourly, base.keep_hourly),
            ("keep_daily", self.keep_daily, base.keep_daily),
            ("keep_weekly", self.keep_weekly, base.keep_weekly),
            ("keep_monthly", self.keep_monthly, base.keep_monthly),
            ("keep_yearly", self.keep_yearly, base.keep_yearly),
        ];
        for (name, mine, theirs) in counts {
            match (mine, theirs) {
                (_, None) => {}
                (None, Some(n)) => {
                    return Some(format!(
                        "it has no {name}, the configured policy has {name} {n}"
                    ))
                }
                (Some(m), Some(n)) if m < n => {
                    return Some(format!("{name} {m} keeps less than {name} {n}"))
                }
                _ => {}
            }
        }
        let withins = [
            ("keep_within", &self.keep_within, &base.keep_within),
            (
                "keep_within_hourly",
                &self.keep_within_hourly,
                &base.keep_within_hourly,
            ),
            (
                "keep_within_daily",
                &self.keep_within_daily,
                &base.keep_within_daily,
            ),
            (
                "keep_within_weekly",
                &self.keep_within_weekly,
                &base.keep_within_weekly,
            ),
            (
                "keep_within_monthly",
                &self.keep_within_monthly,
                &base.keep_within_monthly,
            ),
            (
                "keep_within_yearly",
                &self.keep_within_yearly,
                &base.keep_within_yearly,
            ),
        ];
        for (name, mine, theirs) in withins {
            let Some(theirs) = theirs else { continue };
            let Some(mine) = mine else {
                return Some(format!(
                    "it has no {name}, the configured policy has {name} {theirs}"
                ));
            };
            let at_least = match (parse_span(name, mine), parse_span(name, theirs)) {
                (Ok(a), Ok(b)) => span_at_least(&a, &b),
                _ => false,
            };
            if !at_least {
                return Some(format!(
                    "{name} {} may keep less than {name} {theirs}",
                    crate::report::clip(mine, 40)
                ));
            }
        }
        let tz = |p: &RetentionPolicy| p.time_zone.clone().unwrap_or_else(|| "UTC".into());
        if tz(self) != tz(base) {
            return Some(format!(
                "time_zone {} differs from the configured {} (other calendar periods keep other backups)",
                crate::report::clip(&tz(self), 40),
                tz(base)
            ));
        }
        None
    }
}

/// Whether span `a` is at least `b` from any starting date: either no unit of `a` is smaller
/// than `b`'s, or `a` at its shortest (28-day months, 365-day years, an hour lost to DST) still
/// reaches `b` at its longest (31-day months, 366-day years, an hour gained).
fn span_at_least(a: &Span, b: &Span) -> bool {
    let units = |s: &Span| {
        [
            i64::from(s.get_years()),
            i64::from(s.get_months()),
            i64::from(s.get_weeks()),
            i64::from(s.get_days()),
            i64::from(s.get_hours()),
            s.get_minutes(),
            s.get_seconds(),
            s.get_milliseconds(),
            s.get_microseconds(),
            s.get_nanoseconds(),
        ]
    };
    if units(a).iter().zip(units(b)).all(|(x, y)| *x >= y) {
        return true;
    }
    const DAY: f64 = 86_400.0;
    const SHORT: [f64; 7] = [365.0 * DAY, 28.0 * DAY, 7.0 * DAY, DAY, 3600.0, 60.0, 1.0];
    const LONG: [f64; 7] = [366.0 * DAY, 31.0 * DAY, 7.0 * DAY, DAY, 3600.0, 60.0, 1.0];
    let secs = |s: &Span, per: &[f64; 7]| -> f64 {
        let u = units(s);
        let whole: f64 = u.iter().take(7).zip(per).map(|(n, p)| *n as f64 * p).sum();
        whole + u[7] as f64 / 1e3 + u[8] as f64 / 1e6 + u[9] as f64 / 1e9
    };
    secs(a, &SHORT) - 3600.0 >= secs(b, &LONG) + 3600.0
}

fn parse_span(name: &str, text: &str) -> Result<Span, String> {
    let span: Span = text.trim().parse().map_err(|_| {
        format!(
            "{name} {:?} is not a duration such as 30d, 12w, 6mo, 1y or 48h",
            crate::report::clip(text, 40)
        )
    })?;
    if span.is_negative() || span.is_zero() {
        return Err(format!("{name} must be a positive duration, got {text:?}"));
    }
    Ok(span)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

#[derive(Debug, Clone)]
enum Limit {
    Count(u32),
    Within(Span),
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    period: Period,
    limit: Limit,
}

/// A checked policy.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    rules: Vec<Rule>,
    tz: TimeZone,
    tz_name: String,
    min_complete: usize,
    freshness: Span,
    freshness_text: String,
    include_unmanaged: bool,
}

impl CompiledPolicy {
    /// Whether the policy may delete backups Backstop did not make.
    pub fn includes_unmanaged(&self) -> bool {
        self.include_unmanaged
    }

    /// The rules in words, for reports: `keep_daily 30, keep_weekly 12`.
    pub fn describe(&self) -> String {
        let rules: Vec<&str> = self.rules.iter().map(|r| r.name.as_str()).collect();
        format!("{} (time zone {})", rules.join(", "), self.tz_name)
    }
}

/// Why a point is kept: the rule (or floor) and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Keep { reasons: Vec<Reason> },
    Delete { reason: String },
}

impl Decision {
    pub fn is_delete(&self) -> bool {
        matches!(self, Decision::Delete { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPoint {
    pub point: RecoveryPoint,
    pub decision: Decision,
}

/// The plan for one stream of points, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPlan {
    pub now: Timestamp,
    pub policy: String,
    pub points: Vec<PlannedPoint>,
    /// Set when a floor stopped all deletion, with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

impl RetentionPlan {
    pub fn deletes(&self) -> impl Iterator<Item = &PlannedPoint> {
        self.points.iter().filter(|p| p.decision.is_delete())
    }

    pub fn keeps(&self) -> impl Iterator<Item = &PlannedPoint> {
        self.points.iter().filter(|p| !p.decision.is_delete())
    }
}

pub const RULE_INCOMPLETE: &str = "floor:incomplete";
pub const RULE_UNMANAGED: &str = "floor:not_made_by_backstop";
pub const RULE_LEGAL_HOLD: &str = "floor:legal_hold";
pub const RULE_NEWEST_COMPLETE: &str = "floor:newest_complete";
pub const RULE_FRESHNESS: &str = "floor:freshness";

/// Plans one stream of points.
pub fn plan(points: &[RecoveryPoint], policy: &CompiledPolicy, now: Timestamp) -> RetentionPlan {
    let mut sorted: Vec<RecoveryPoint> = points.to_vec();
    sorted.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); sorted.len()];

    // Points no rule may touch.
    let mut eligible: Vec<usize> = Vec::new();
    for (i, p) in sorted.iter().enumerate() {
        if !p.complete {
            reasons[i].push(Reason {
                rule: RULE_INCOMPLETE.into(),
                detail: "still being made; never deleted and never counted".into(),
            });
        } else if !p.managed && !policy.include_unmanaged {
            reasons[i].push(Reason {
                rule: RULE_UNMANAGED.into(),
                detail: "not made by Backstop; untouched unless the policy sets include_unmanaged"
                    .into(),
            });
        } else {
            eligible.push(i);
        }
        if p.legal_hold {
            reasons[i].push(Reason {
                rule: RULE_LEGAL_HOLD.into(),
                detail: "under legal hold".into(),
            });
        }
    }

    if let Some(&newest) = eligible.first() {
        let latest = sorted[newest].created_at.to_zoned(policy.tz.clone());
        for rule in &policy.rules {
            apply_rule(rule, &policy.tz, &latest, &sorted, &eligible, &mut reasons);
        }
        for (rank, &i) in eligible.iter().take(policy.min_complete).enumerate() {
            reasons[i].push(Reason {
                rule: format!("{RULE_NEWEST_COMPLETE} {}", policy.min_complete),
                detail: format!("number {} of the newest complete backups", rank + 1),
            });
        }
    }

    // Freshness: when the newest complete point is too old, backups are failing; keep everything.
    let blocked = eligible.first().and_then(|&newest| {
        let created = sorted[newest].created_at.to_zoned(policy.tz.clone());
        let limit_ago = now.to_zoned(policy.tz.clone()).checked_sub(policy.freshness).ok()?;
        (created < limit_ago).then(|| {
            format!(
                "the newest complete backup is from {} (older than the freshness limit {}); nothing is deleted while backups are failing",
                sorted[newest].created_at, policy.freshness_text
            )
        })
    });

    let rules_text = policy.describe();
    let planned = sorted
        .into_iter()
        .zip(reasons)
        .map(|(point, mut reasons)| {
            let decision = if !reasons.is_empty() {
                Decision::Keep { reasons }
            } else if let Some(why) = &blocked {
                reasons.push(Reason {
                    rule: RULE_FRESHNESS.into(),
                    detail: why.clone(),
                });
                Decision::Keep { reasons }
            } else {
                Decision::Delete {
                    reason: format!("matched no keep rule of the policy: {rules_text}"),
                }
            };
            PlannedPoint { point, decision }
        })
        .collect();
    RetentionPlan {
        now,
        policy: rules_text,
        points: planned,
        blocked,
    }
}

fn apply_rule(
    rule: &Rule,
    tz: &TimeZone,
    latest: &Zoned,
    points: &[RecoveryPoint],
    eligible: &[usize],
    reasons: &mut [Vec<Reason>],
) {
    let cutoff = match &rule.limit {
        Limit::Within(span) => match latest.checked_sub(*span) {
            Ok(z) => Some(z.timestamp()),
            // A span reaching before the representable past keeps everything.
            Err(_) => Some(Timestamp::MIN),
        },
        Limit::Count(_) => None,
    };
    let mut remaining = match rule.limit {
        Limit::Count(n) => n as usize,
        Limit::Within(_) => usize::MAX,
    };
    let mut last_bucket: Option<String> = None;
    let mut kept_by_rule: HashSet<usize> = HashSet::new();
    for &i in eligible {
        if remaining == 0 {
            break;
        }
        let p = &points[i];
        if let Some(c) = cutoff {
            if p.created_at <= c {
                break; // newest first: every later point is older still
            }
        }
        let bucket = bucket_of(rule.period, tz, p, i);
        if last_bucket.as_deref() == Some(bucket.as_str()) {
            continue;
        }
        let detail = match (rule.period, &rule.limit) {
            (Period::Last, Limit::Count(_)) => "one of the newest".to_owned(),
            (Period::Last, Limit::Within(_)) => {
                "within the window before the newest backup".to_owned()
            }
            (_, Limit::Count(_)) => format!("newest of {bucket}"),
            (_, Limit::Within(_)) => {
                format!("newest of {bucket}, within the window before the newest backup")
            }
        };
        reasons[i].push(Reason {
            rule: rule.name.clone(),
            detail,
        });
        kept_by_rule.insert(i);
        last_bucket = Some(bucket);
        remaining -= 1;
    }
    // A count rule that found fewer periods than it may keep also keeps the oldest point.
    if let Limit::Count(n) = rule.limit {
        if remaining > 0 && rule.period != Period::Last {
            if let Some(&oldest) = eligible.last() {
                if !kept_by_rule.contains(&oldest) {
                    reasons[oldest].push(Reason {
                        rule: rule.name.clone(),
                        detail: format!(
                            "oldest backup, kept because only {} of {n} periods have one",
                            n as usize - remaining
                        ),
                    });
                }
            }
        }
    }
}

fn bucket_of(period: Period, tz: &TimeZone, p: &RecoveryPoint, index: usize) -> String {
    let z = p.created_at.to_zoned(tz.clone());
    match period {
        Period::Last => format!("#{index}"),
        Period::Hour => format!("hour {}", z.strftime("%Y-%m-%d %H:00")),
        Period::Day => format!("day {}", z.strftime("%Y-%m-%d")),
        Period::Week => {
            let w = z.date().iso_week_date();
            format!("ISO week {}-W{:02}", w.year(), w.week())
        }
        Period::Month => format!("month {}", z.strftime("%Y-%m")),
        Period::Year => format!("year {}", z.strftime("%Y")),
    }
}
