//! Freshness (the RPO watch of the validate job): per table, how old the newest complete backup
//! and export are, and how far PITR's latest restorable time lags, against limits. Pure: the
//! evidence is gathered elsewhere (catalog, DescribeContinuousBackups).

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::catalog::{TargetRecord, TargetStatus};

/// The limits a table is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Newest complete backup at most this old (default 26 h: a daily schedule and slack).
    pub backup: SignedDuration,
    /// Newest complete export at most this old (default 8 days: weekly and slack); `None` when
    /// exports are not configured for the table.
    pub export: Option<SignedDuration>,
    /// PITR on, with its latest restorable time at most this far behind now (default 15 min);
    /// `None` when PITR is not required.
    pub pitr_lag: Option<SignedDuration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            backup: SignedDuration::from_hours(26),
            export: Some(SignedDuration::from_hours(24 * 8)),
            pitr_lag: Some(SignedDuration::from_mins(15)),
        }
    }
}

/// Point-in-time recovery as DescribeContinuousBackups reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pitr {
    Off,
    On {
        latest_restorable: Option<Timestamp>,
    },
    /// The state could not be read (the reason); counted as a violation, never as fresh.
    Unknown(String),
}

/// What is known of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub newest_backup: Option<Timestamp>,
    pub newest_export: Option<Timestamp>,
    pub pitr: Pitr,
}

/// One way a table is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    NeverBackedUp,
    BackupStale { age_s: i64, limit_s: i64 },
    NeverExported,
    ExportStale { age_s: i64, limit_s: i64 },
    PitrOff,
    PitrLag { lag_s: i64, limit_s: i64 },
    PitrUnknown { reason: String },
}

/// A duration in seconds as a person reads it: 45 s, 12 min, 3.5 h, 8.0 days.
pub fn human(secs: i64) -> String {
    match secs.abs() {
        s if s >= 2 * 86_400 => format!("{:.1} days", secs as f64 / 86_400.0),
        s if s >= 3_600 => format!("{:.1} h", secs as f64 / 3_600.0),
        s if s >= 60 => format!("{} min", secs / 60),
        _ => format!("{secs} s"),
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NeverBackedUp => write!(f, "no complete backup at all"),
            Violation::BackupStale { age_s, limit_s } => write!(
                f,
                "newest complete backup is {} old (limit {})",
                human(*age_s),
                human(*limit_s)
            ),
            Violation::NeverExported => write!(f, "no complete export at all"),
            Violation::ExportStale { age_s, limit_s } => write!(
                f,
                "newest complete export is {} old (limit {})",
                human(*age_s),
                human(*limit_s)
            ),
            Violation::PitrOff => write!(f, "point-in-time recovery is off"),
            Violation::PitrLag { lag_s, limit_s } => write!(
                f,
                "point-in-time recovery's latest restorable time is {} behind (limit {})",
                human(*lag_s),
                human(*limit_s)
            ),
            Violation::PitrUnknown { reason } => {
                write!(f, "point-in-time recovery's state is unknown: {reason}")
            }
        }
    }
}

/// The verdict for one table: the ages (seconds; `None` when there is nothing to age) for the
/// metrics, and every violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freshness {
    pub backup_age_s: Option<i64>,
    pub export_age_s: Option<i64>,
    pub pitr_lag_s: Option<i64>,
    pub violations: Vec<Violation>,
}

impl Freshness {
    pub fn is_fresh(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Judges `evidence` at `now`. A time in the future (a clock ahead of this one) counts as age 0.
pub fn assess(now: Timestamp, limits: &Limits, evidence: &Evidence) -> Freshness {
    let age = |t: Timestamp| now.duration_since(t).as_secs().max(0);
    let mut violations = Vec::new();
    let backup_age_s = evidence.newest_backup.map(age);
    match backup_age_s {
        None => violations.push(Violation::NeverBackedUp),
        Some(a) if a > limits.backup.as_secs() => violations.push(Violation::BackupStale {
            age_s: a,
            limit_s: limits.backup.as_secs(),
        }),
        Some(_) => {}
    }
    let export_age_s = evidence.newest_export.map(age);
    if let Some(limit) = limits.export {
        match export_age_s {
            None => violations.push(Violation::NeverExported),
            Some(a) if a > limit.as_secs() => violations.push(Violation::ExportStale {
                age_s: a,
                limit_s: limit.as_secs(),
            }),
            Some(_) => {}
        }
    }
    let mut pitr_lag_s = None;
    match (&evidence.pitr, limits.pitr_lag) {
        (Pitr::On { latest_restorable }, limit) => {
            let lag = latest_restorable.map(age);
            pitr_lag_s = lag;
            match (lag, limit) {
                (None, Some(_)) => violations.push(Violation::PitrUnknown {
                    reason: "no latest restorable time reported".into(),
                }),
                (Some(l), Some(limit)) if l > limit.as_secs() => {
                    violations.push(Violation::PitrLag {
                        lag_s: l,
                        limit_s: limit.as_secs(),
                    })
                }
                _ => {}
            }
        }
        // PITR not required: its state is reported, never a violation.
        (_, None) => {}
        (Pitr::Off, Some(_)) => violations.push(Violation::PitrOff),
        (Pitr::Unknown(reason), Some(_)) => violations.push(Violation::PitrUnknown {
            reason: reason.clone(),
        }),
    }
    Freshness {
        backup_age_s,
        export_age_s,
        pitr_lag_s,
        violations,
    }
}

/// The creation time of the newest complete backup among a table's snapshot records (done,
/// not deleted). A record without a readable creation time counts from its slot.
pub fn newest_backup(records: &[TargetRecord]) -> Option<Timestamp> {
    records
        .iter()
        .filter(|r| r.status == TargetStatus::Done && r.backup_arn.is_some())
        .filter_map(|r| {
            r.backup_created_at
                .as_deref()
                .and_then(|t| t.parse().ok())
                .or_else(|| {
                    crate::event::ScheduleSlot::parse(&r.slot)
                        .ok()
                        .map(|s| s.timestamp())
                })
        })
        .max()
}

/// The moment exported by the newest complete export among a table's export records (for an
/// incremental, its window's end).
pub fn newest_export(records: &[TargetRecord]) -> Option<Timestamp> {
    records
        .iter()
        .filter(|r| r.status == TargetStatus::Done)
        .filter_map(|r| r.export.as_ref().map(|m| m.export_time))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-12-01T08:00:00Z";

    fn fresh() -> Evidence {
        Evidence {
            newest_backup: Some(t("2026-12-01T02:00:00Z")),
            newest_export: Some(t("2026-11-29T03:00:00Z")),
            pitr: Pitr::On {
                latest_restorable: Some(t("2026-12-01T07:55:00Z")),
            },
        }
    }

    #[test]
    fn a_table_within_every_limit_is_fresh_and_its_ages_are_reported() {
        let f = assess(t(NOW), &Limits::default(), &fresh());
        assert!(f.is_fresh(), "{f:?}");
        assert_eq!(f.backup_age_s, Some(6 * 3600));
        assert_eq!(f.export_age_s, Some(2 * 86_400 + 5 * 3600));
        assert_eq!(f.pitr_lag_s, Some(300));
    }

    #[test]
    fn each_stale_part_is_named_with_its_age_and_limit() {
        let limits = Limits::default();
        let mut e = fresh();
        e.newest_backup = Some(t("2026-11-30T05:59:59Z")); // 26 h and 1 s
        let f = assess(t(NOW), &limits, &e);
        assert_eq!(
            f.violations,
            vec![Violation::BackupStale {
                age_s: 26 * 3600 + 1,
                limit_s: 26 * 3600
            }]
        );
        assert_eq!(
            f.violations[0].to_string(),
            "newest complete backup is 26.0 h old (limit 26.0 h)"
        );
        // Exactly at the limit is still fresh.
        e.newest_backup = Some(t("2026-11-30T06:00:00Z"));
        assert!(assess(t(NOW), &limits, &e).is_fresh());

        let mut e = fresh();
        e.newest_export = Some(t("2026-11-20T03:00:00Z"));
        e.pitr = Pitr::On {
            latest_restorable: Some(t("2026-12-01T07:00:00Z")),
        };
        let f = assess(t(NOW), &limits, &e);
        let text: Vec<String> = f.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            text,
            [
                "newest complete export is 11.2 days old (limit 8.0 days)",
                "point-in-time recovery's latest restorable time is 1.0 h behind (limit 15 min)"
            ]
        );
    }

    #[test]
    fn never_backed_up_pitr_off_or_unreadable_are_violations_never_fresh() {
        let e = Evidence {
            newest_backup: None,
            newest_export: None,
            pitr: Pitr::Off,
        };
        let f = assess(t(NOW), &Limits::default(), &e);
        assert_eq!(
            f.violations,
            vec![
                Violation::NeverBackedUp,
                Violation::NeverExported,
                Violation::PitrOff
            ]
        );
        let no_exports = Limits {
            export: None,
            ..Limits::default()
        };
        let e = Evidence {
            newest_backup: Some(t(NOW)),
            newest_export: None,
            pitr: Pitr::Unknown("AccessDenied on DescribeContinuousBackups".into()),
        };
        let f = assess(t(NOW), &no_exports, &e);
        assert_eq!(f.violations.len(), 1);
        assert!(f.violations[0].to_string().contains("AccessDenied"));
        let e = Evidence {
            pitr: Pitr::On {
                latest_restorable: None,
            },
            ..e
        };
        assert!(!assess(t(NOW), &no_exports, &e).is_fresh());
    }

    #[test]
    fn a_backup_stamped_in_the_future_counts_as_age_zero() {
        let mut e = fresh();
        e.newest_backup = Some(t("2026-12-01T09:00:00Z"));
        let f = assess(t(NOW), &Limits::default(), &e);
        assert_eq!(f.backup_age_s, Some(0));
        assert!(f.is_fresh());
    }

    fn record(job: &str, slot: &str, status: &str, extra: serde_json::Value) -> TargetRecord {
        let mut v = serde_json::json!({
            "job": job, "table": "T", "slot": slot, "status": status,
            "run_id": "r", "attempts": 1
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_complete_backups_and_exports_count_as_the_newest() {
        use serde_json::json;
        let arn = |n: &str| json!({"backup_arn": format!("arn:{n}")});
        let backups = [
            record("snapshot", "2026-11-28T02:00:00Z", "DONE", arn("a")),
            // Newer, but deleted, failed, or still claimed: none counts.
            record("snapshot", "2026-11-29T02:00:00Z", "DELETED", arn("b")),
            record("snapshot", "2026-11-30T02:00:00Z", "FAILED", json!({})),
            record("snapshot", "2026-12-01T02:00:00Z", "CLAIMED", json!({})),
            // Its creation time, when recorded, is the age's start, not the slot.
            record(
                "snapshot",
                "2026-11-27T02:00:00Z",
                "DONE",
                json!({"backup_arn": "arn:c", "backup_created_at": "2026-11-28T05:00:00Z"}),
            ),
        ];
        assert_eq!(newest_backup(&backups), Some(t("2026-11-28T05:00:00Z")));
        assert_eq!(newest_backup(&backups[1..4]), None);

        let export = |slot: &str, status: &str, at: &str| {
            record(
                "export",
                slot,
                status,
                json!({"export": {"made": "logical", "export_type": "FULL_EXPORT",
                    "export_id": "x", "bucket": "b", "root": "p", "export_time": at}}),
            )
        };
        let exports = [
            export("2026-11-22T03:00:00Z", "DONE", "2026-11-22T03:00:00Z"),
            export("2026-11-29T03:00:00Z", "STARTED", "2026-11-29T03:00:00Z"),
        ];
        assert_eq!(newest_export(&exports), Some(t("2026-11-22T03:00:00Z")));
        assert_eq!(newest_export(&exports[1..]), None);
    }
}
