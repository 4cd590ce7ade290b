//! Size anomalies (the runbooks' "alert on a backup size change above 20 %"): each new backup or
//! full export is compared with the median of the table's last complete ones. Pure: the history
//! comes from the catalog.

use serde::{Deserialize, Serialize};

use crate::catalog::{TargetRecord, TargetStatus};

/// How many earlier complete backups (or full exports) the baseline is the median of.
pub const BASELINE_LEN: usize = 7;

/// The default threshold: a change above this many percent, up or down, is an anomaly.
pub const DEFAULT_THRESHOLD_PCT: f64 = 20.0;

/// A run longer than this draws a warning (the runbooks' rule: "a backup taking over an hour").
pub const LONG_RUN_SECS: u64 = 3600;

/// The median of the table's last complete backups before this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// How many backups it is the median of (1 to [`BASELINE_LEN`]).
    pub samples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i64>,
}

/// What the comparison found for one new backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SizeCheck {
    /// The table has no earlier complete backup: nothing to compare with.
    NoBaseline,
    Compared {
        baseline: Baseline,
        /// Signed: -25.0 is a quarter smaller than the baseline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_change_pct: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item_change_pct: Option<f64>,
        threshold_pct: f64,
        /// Either change is above the threshold.
        anomaly: bool,
    },
}

impl SizeCheck {
    pub fn is_anomaly(&self) -> bool {
        matches!(self, SizeCheck::Compared { anomaly: true, .. })
    }

    /// The change the metric `BackupSizeChangePercent` carries: of the size's and the item
    /// count's, the larger (so that the metric and the anomaly agree).
    pub fn change_pct(&self) -> Option<f64> {
        match self {
            SizeCheck::NoBaseline => None,
            SizeCheck::Compared {
                size_change_pct,
                item_change_pct,
                ..
            } => [*size_change_pct, *item_change_pct]
                .into_iter()
                .flatten()
                .max_by(|a, b| a.abs().total_cmp(&b.abs())),
        }
    }

    /// One line for the report: the warning for an anomaly, otherwise what was compared.
    pub fn describe(&self, what: &str) -> String {
        match self {
            SizeCheck::NoBaseline => {
                format!("first {what} of this table: no baseline to compare its size with yet")
            }
            SizeCheck::Compared {
                baseline,
                size_change_pct,
                item_change_pct,
                threshold_pct,
                anomaly,
            } => {
                let mut parts = Vec::new();
                if let (Some(p), Some(b)) = (size_change_pct, baseline.size_bytes) {
                    parts.push(format!(
                        "size {} against a median of {}",
                        signed_pct(*p),
                        crate::report::human_bytes(b)
                    ));
                }
                if let (Some(p), Some(b)) = (item_change_pct, baseline.item_count) {
                    parts.push(format!(
                        "item count {} against a median of {b}",
                        signed_pct(*p)
                    ));
                }
                let basis = format!(
                    "the last {} complete {what}{}",
                    baseline.samples,
                    if baseline.samples == 1 { "" } else { "s" }
                );
                if *anomaly {
                    format!(
                        "{what} size anomaly: {} (of {basis}; threshold {threshold_pct}%)",
                        parts.join(", ")
                    )
                } else {
                    format!(
                        "{what} size as usual: {} (of {basis})",
                        if parts.is_empty() {
                            "nothing to compare".to_owned()
                        } else {
                            parts.join(", ")
                        }
                    )
                }
            }
        }
    }
}

fn signed_pct(p: f64) -> String {
    format!("{}{:.1}%", if p > 0.0 { "+" } else { "" }, p)
}

/// Pure: the baseline of a new backup from the table's records: the median size and item count
/// of the last [`BASELINE_LEN`] complete ones (done, or done and later deleted by retention)
/// with slots before `slot`. `keep` narrows which records count (for exports: full ones only).
/// `None` when there is none.
pub fn baseline(
    records: &[TargetRecord],
    slot: &str,
    keep: impl Fn(&TargetRecord) -> bool,
) -> Option<Baseline> {
    let mut earlier: Vec<&TargetRecord> = records
        .iter()
        .filter(|r| r.status.is_done() && r.status != TargetStatus::Claimed)
        .filter(|r| r.slot.as_str() < slot)
        .filter(|r| r.size_bytes.is_some() || r.item_count.is_some())
        .filter(|r| keep(r))
        .collect();
    earlier.sort_by(|a, b| a.slot.cmp(&b.slot));
    let last = &earlier[earlier.len().saturating_sub(BASELINE_LEN)..];
    if last.is_empty() {
        return None;
    }
    Some(Baseline {
        samples: last.len(),
        size_bytes: median(last.iter().filter_map(|r| r.size_bytes).collect()),
        item_count: median(last.iter().filter_map(|r| r.item_count).collect()),
    })
}

/// The median (the lower middle of an even count, so that it is always a value seen).
fn median(mut v: Vec<i64>) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[(v.len() - 1) / 2])
}

/// Pure: the change from `base` to `now` in percent. From 0 to anything more is +100 %.
fn change_pct(base: i64, now: i64) -> f64 {
    if base == 0 {
        return if now == 0 { 0.0 } else { 100.0 };
    }
    (now - base) as f64 * 100.0 / base as f64
}

/// Pure: compares a new backup's size and item count with its baseline.
pub fn check(
    baseline: Option<Baseline>,
    size_bytes: Option<i64>,
    item_count: Option<i64>,
    threshold_pct: f64,
) -> SizeCheck {
    let Some(baseline) = baseline else {
        return SizeCheck::NoBaseline;
    };
    let size_change_pct = baseline
        .size_bytes
        .zip(size_bytes)
        .map(|(b, n)| change_pct(b, n));
    let item_change_pct = baseline
        .item_count
        .zip(item_count)
        .map(|(b, n)| change_pct(b, n));
    let anomaly = [size_change_pct, item_change_pct]
        .into_iter()
        .flatten()
        .any(|p| p.abs() > threshold_pct);
    SizeCheck::Compared {
        baseline,
        size_change_pct,
        item_change_pct,
        threshold_pct,
        anomaly,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::JobKind;

    fn rec(slot: &str, status: TargetStatus, size: i64, items: i64) -> TargetRecord {
        TargetRecord {
            job: JobKind::Snapshot,
            table: "T".into(),
            slot: slot.into(),
            status,
            run_id: "r".into(),
            attempts: 1,
            backup_arn: Some("arn".into()),
            backup_name: None,
            backup_created_at: None,
            size_bytes: Some(size),
            item_count: Some(items),
            table_shape: None,
            table_settings: None,
            error: None,
            claimed_at: None,
            updated_at: None,
            completed_at: None,
            deleted_at: None,
            legal_hold: false,
            legal_hold_unreadable: None,
            lease_until: None,
            export: None,
            verification: None,
        }
    }

    fn history() -> Vec<TargetRecord> {
        // Seven complete backups around 1,000 bytes / 100 items (one deleted by retention,
        // which still counts), plus records that never count: a failed one, a claimed one.
        let mut v: Vec<TargetRecord> = [990, 1000, 1010, 1000, 995, 1005, 1000]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let status = if i == 0 {
                    TargetStatus::Deleted
                } else {
                    TargetStatus::Done
                };
                rec(&format!("2026-11-0{}T02:00:00Z", i + 1), status, *s, 100)
            })
            .collect();
        v.push(rec("2026-11-08T01:00:00Z", TargetStatus::Failed, 1, 1));
        v.push(rec("2026-11-08T01:30:00Z", TargetStatus::Claimed, 1, 1));
        v
    }

    #[test]
    fn a_quarter_smaller_is_an_anomaly_a_tenth_is_not_and_a_first_backup_has_no_baseline() {
        let h = history();
        let slot = "2026-11-08T02:00:00Z";
        let b = baseline(&h, slot, |_| true).unwrap();
        assert_eq!(b.samples, 7);
        assert_eq!(b.size_bytes, Some(1000));
        assert_eq!(b.item_count, Some(100));

        let smaller = check(Some(b.clone()), Some(750), Some(75), 20.0);
        assert!(smaller.is_anomaly(), "{smaller:?}");
        assert_eq!(smaller.change_pct(), Some(-25.0));
        let text = smaller.describe("backup");
        assert!(
            text.contains("anomaly") && text.contains("-25.0%"),
            "{text}"
        );
        assert!(text.contains("last 7 complete backups"), "{text}");

        let usual = check(Some(b.clone()), Some(900), Some(90), 20.0);
        assert!(!usual.is_anomaly(), "{usual:?}");
        assert_eq!(usual.change_pct(), Some(-10.0));

        // The item count alone can be the anomaly, and the metric's change is then its.
        let items = check(Some(b), Some(1000), Some(130), 20.0);
        assert!(items.is_anomaly());
        assert_eq!(items.change_pct(), Some(30.0));

        let first = check(baseline(&[], slot, |_| true), Some(10), Some(1), 20.0);
        assert_eq!(first, SizeCheck::NoBaseline);
        assert!(!first.is_anomaly());
        assert!(first.describe("backup").contains("no baseline"));
    }

    #[test]
    fn records_that_must_not_count_would_move_the_median_if_they_did() {
        // Seven good ones at 1000 right before the slot; around them, enough records of the
        // kinds that must not count to move the median to their own value if they did: seven
        // older ones (the first seven are not the last), four at or after the slot, four
        // failed and three claimed ones in between.
        let mut h: Vec<TargetRecord> = (1..=7)
            .map(|d| {
                rec(
                    &format!("2026-10-0{d}T02:00:00Z"),
                    TargetStatus::Done,
                    10,
                    1,
                )
            })
            .collect();
        h.extend((1..=7).map(|d| {
            rec(
                &format!("2026-11-0{d}T02:00:00Z"),
                TargetStatus::Done,
                1000,
                100,
            )
        }));
        h.extend((8..=9).map(|d| {
            rec(
                &format!("2026-11-0{d}T02:00:00Z"),
                TargetStatus::Done,
                5000,
                500,
            )
        }));
        h.extend((10..=11).map(|d| {
            rec(
                &format!("2026-11-{d}T02:00:00Z"),
                TargetStatus::Done,
                5000,
                500,
            )
        }));
        for m in ["10", "20", "30", "40"] {
            h.push(rec(
                &format!("2026-11-07T03:{m}:00Z"),
                TargetStatus::Failed,
                1,
                1,
            ));
        }
        for m in ["11", "21", "31"] {
            h.push(rec(
                &format!("2026-11-07T04:{m}:00Z"),
                TargetStatus::Claimed,
                1,
                1,
            ));
        }
        let b = baseline(&h, "2026-11-08T02:00:00Z", |_| true).unwrap();
        assert_eq!(
            (b.samples, b.size_bytes, b.item_count),
            (7, Some(1000), Some(100))
        );
        // The lower middle of an even count: of 10, 20, 30, 40 the median is 20.
        assert_eq!(median(vec![40, 10, 30, 20]), Some(20));
    }

    #[test]
    fn the_baseline_is_the_last_seven_before_the_slot_only() {
        let mut h = history();
        // Older ones beyond the seven, and one at or after the slot, do not count.
        h.push(rec("2026-10-01T02:00:00Z", TargetStatus::Done, 1, 1));
        h.push(rec("2026-11-08T02:00:00Z", TargetStatus::Done, 50, 5));
        h.push(rec("2026-11-09T02:00:00Z", TargetStatus::Done, 50, 5));
        let b = baseline(&h, "2026-11-08T02:00:00Z", |_| true).unwrap();
        assert_eq!((b.samples, b.size_bytes), (7, Some(1000)));
        // Fewer than seven: the median of what there is.
        let b = baseline(&h[..3], "2026-11-08T02:00:00Z", |_| true).unwrap();
        assert_eq!((b.samples, b.size_bytes), (3, Some(1000)));
        // A filter (exports: full ones only) that keeps none: no baseline.
        assert!(baseline(&h, "2026-11-08T02:00:00Z", |_| false).is_none());
    }

    #[test]
    fn from_nothing_to_something_is_a_change_and_the_threshold_is_exclusive() {
        let b = Baseline {
            samples: 3,
            size_bytes: Some(0),
            item_count: None,
        };
        assert!(check(Some(b.clone()), Some(5), None, 20.0).is_anomaly());
        assert!(!check(Some(b), Some(0), None, 20.0).is_anomaly());
        let b = Baseline {
            samples: 7,
            size_bytes: Some(100),
            item_count: None,
        };
        assert!(!check(Some(b.clone()), Some(120), None, 20.0).is_anomaly());
        assert!(check(Some(b), Some(121), None, 20.0).is_anomaly());
    }
}
