//! The retention planner: hand-computed cases (month ends, leap years, ISO week 53, time zones,
//! DST) and property tests on random histories. Pure: no emulator.

use std::collections::{BTreeSet, HashMap};

use backstop::retention::{plan, Decision, RecoveryPoint, RetentionPlan, RetentionPolicy};
use jiff::Timestamp;
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn point(id: &str, at: &str) -> RecoveryPoint {
    RecoveryPoint {
        id: id.into(),
        source: "T".into(),
        created_at: ts(at),
        complete: true,
        legal_hold: false,
        managed: true,
    }
}

/// Daily points at `hh:mm` UTC from `first` to `last` inclusive, named by date.
fn daily(first: &str, last: &str, at: &str) -> Vec<RecoveryPoint> {
    let mut d: jiff::civil::Date = first.parse().unwrap();
    let end: jiff::civil::Date = last.parse().unwrap();
    let mut out = Vec::new();
    while d <= end {
        out.push(point(&d.to_string(), &format!("{d}T{at}Z")));
        d = d.tomorrow().unwrap();
    }
    out
}

fn policy(text: &str) -> RetentionPolicy {
    RetentionPolicy::parse(text).unwrap()
}

fn kept_ids(p: &RetentionPlan) -> BTreeSet<String> {
    p.keeps().map(|k| k.point.id.clone()).collect()
}

fn reasons_of<'a>(p: &'a RetentionPlan, id: &str) -> Vec<&'a str> {
    match &p.points.iter().find(|x| x.point.id == id).unwrap().decision {
        Decision::Keep { reasons } => reasons.iter().map(|r| r.rule.as_str()).collect(),
        Decision::Delete { .. } => vec![],
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_empty_policy_is_refused() {
    let e = RetentionPolicy::default().compile().unwrap_err();
    assert!(e.contains("keeps nothing"), "{e}");
    assert!(policy("keep_daily=0")
        .compile()
        .unwrap_err()
        .contains("at least 1"));
    assert!(policy("keep_within=soon")
        .compile()
        .unwrap_err()
        .contains("not a duration"));
    assert!(policy("keep_daily=3,time_zone=Mars/Olympus")
        .compile()
        .unwrap_err()
        .contains("IANA"));
    assert!(policy("keep_daily=3,min_complete=0")
        .compile()
        .unwrap_err()
        .contains("at least 1"));
    assert!(RetentionPolicy::parse("keep_dayly=3")
        .unwrap_err()
        .contains("unknown field"));
}

#[test]
fn month_ends_and_a_leap_day_keep_the_last_day_of_each_month() {
    let pts = daily("2024-01-25", "2024-03-02", "02:00:00");
    let p = plan(
        &pts,
        &policy("keep_monthly=3,min_complete=1").compile().unwrap(),
        ts("2024-03-02T12:00:00Z"),
    );
    assert_eq!(
        kept_ids(&p),
        set(&["2024-03-02", "2024-02-29", "2024-01-31"])
    );
    assert_eq!(p.deletes().count(), pts.len() - 3);
}

#[test]
fn leap_years_and_year_ends_bucket_by_calendar_year() {
    let pts = vec![
        point("a", "2024-02-29T02:00:00Z"),
        point("b", "2024-12-31T23:59:59Z"),
        point("c", "2025-01-01T00:00:00Z"),
        point("d", "2025-06-30T02:00:00Z"),
    ];
    let p = plan(
        &pts,
        &policy("keep_yearly=2,min_complete=1").compile().unwrap(),
        ts("2025-07-01T00:00:00Z"),
    );
    assert_eq!(kept_ids(&p), set(&["d", "b"]));
}

#[test]
fn iso_week_53_is_its_own_week() {
    // 2020 has 53 ISO weeks: 2020-12-28 (Mon) to 2021-01-03 (Sun) is 2020-W53.
    let pts = daily("2020-12-20", "2021-01-05", "02:00:00");
    let p = plan(
        &pts,
        &policy("keep_weekly=3,min_complete=1").compile().unwrap(),
        ts("2021-01-05T12:00:00Z"),
    );
    assert_eq!(
        kept_ids(&p),
        set(&["2021-01-05", "2021-01-03", "2020-12-27"])
    );
    let detail = match &p
        .points
        .iter()
        .find(|x| x.point.id == "2021-01-03")
        .unwrap()
        .decision
    {
        Decision::Keep { reasons } => reasons[0].detail.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(detail, "newest of ISO week 2020-W53");
}

#[test]
fn days_are_calendar_days_in_the_policy_time_zone() {
    let pts = vec![
        point("late-21-ny", "2026-11-22T03:00:00Z"), // 22:00 on the 21st in New York
        point("early-21-ny", "2026-11-21T23:00:00Z"), // 18:00 on the 21st in New York
        point("late-20-ny", "2026-11-21T03:00:00Z"), // 22:00 on the 20th in New York
    ];
    let now = ts("2026-11-22T12:00:00Z");
    let utc = plan(
        &pts,
        &policy("keep_daily=2,min_complete=1").compile().unwrap(),
        now,
    );
    assert_eq!(kept_ids(&utc), set(&["late-21-ny", "early-21-ny"]));
    let ny = plan(
        &pts,
        &policy("keep_daily=2,min_complete=1,time_zone=America/New_York")
            .compile()
            .unwrap(),
        now,
    );
    assert_eq!(kept_ids(&ny), set(&["late-21-ny", "late-20-ny"]));
}

#[test]
fn dst_fall_back_hour_is_one_bucket_and_spring_forward_day_is_a_calendar_day() {
    // 2026-11-01 01:30 happens twice in New York: 05:30Z (EDT) and 06:30Z (EST).
    let pts = vec![
        point("second-0130", "2026-11-01T06:30:00Z"),
        point("first-0130", "2026-11-01T05:30:00Z"),
    ];
    let p = plan(
        &pts,
        &policy("keep_hourly=5,min_complete=1,time_zone=America/New_York")
            .compile()
            .unwrap(),
        ts("2026-11-01T07:00:00Z"),
    );
    assert_eq!(
        reasons_of(&p, "second-0130"),
        vec!["keep_hourly 5", "floor:newest_complete 1"]
    );
    // The first 01:30 is the same local hour, so the hourly rule does not keep it; it is kept
    // only as the oldest point of a rule that found fewer hours than it may keep.
    assert!(
        matches!(&p.points[1].decision, Decision::Keep { reasons } if reasons[0].detail.starts_with("oldest backup"))
    );

    // 2026-03-08 has 23 hours in New York. "1d" back from 2026-03-09 12:00 local is
    // 2026-03-08 12:00 local, which is 23 hours earlier, not 24.
    let pts = vec![
        point("latest", "2026-03-09T16:00:00Z"), // 12:00 EDT on the 9th
        point("inside", "2026-03-08T16:30:00Z"), // 12:30 EDT on the 8th
        point("outside", "2026-03-08T15:30:00Z"), // 11:30 EDT on the 8th: 24.5 h before, but outside 1d
    ];
    let p = plan(
        &pts,
        &policy("keep_within=1d,min_complete=1,time_zone=America/New_York")
            .compile()
            .unwrap(),
        ts("2026-03-09T17:00:00Z"),
    );
    assert_eq!(kept_ids(&p), set(&["latest", "inside"]));
}

#[test]
fn one_point_can_satisfy_several_rules_and_lists_them_all() {
    let pts = daily("2026-01-01", "2026-03-31", "02:00:00");
    let p = plan(
        &pts,
        &policy("keep_last=2,keep_daily=7,keep_weekly=4,keep_monthly=3,keep_yearly=1")
            .compile()
            .unwrap(),
        ts("2026-03-31T12:00:00Z"),
    );
    assert_eq!(
        reasons_of(&p, "2026-03-31"),
        vec![
            "keep_last 2",
            "keep_daily 7",
            "keep_weekly 4",
            "keep_monthly 3",
            "keep_yearly 1",
            "floor:newest_complete 3"
        ]
    );
    // Monthly: Mar 31, Feb 28, Jan 31. Weekly: newest of each of the last 4 ISO weeks.
    assert!(reasons_of(&p, "2026-02-28").contains(&"keep_monthly 3"));
    assert!(reasons_of(&p, "2026-01-31").contains(&"keep_monthly 3"));
    assert!(reasons_of(&p, "2026-03-22").contains(&"keep_weekly 4")); // a Sunday
    assert!(p
        .points
        .iter()
        .find(|x| x.point.id == "2026-03-20")
        .unwrap()
        .decision
        .is_delete());
}

#[test]
fn a_count_rule_that_runs_out_keeps_the_oldest_point() {
    let pts = daily("2026-11-01", "2026-11-10", "02:00:00");
    let p = plan(
        &pts,
        &policy("keep_weekly=12,min_complete=1").compile().unwrap(),
        ts("2026-11-10T12:00:00Z"),
    );
    // Weeks: 2026-W45 (Nov 2-8) and W46 (Nov 9-10), plus W44 (Nov 1): 3 weeks of 12.
    assert_eq!(
        kept_ids(&p),
        set(&["2026-11-10", "2026-11-08", "2026-11-01"])
    );
    let oldest = p
        .points
        .iter()
        .find(|x| x.point.id == "2026-11-01")
        .unwrap();
    // Nov 1 is the newest of its own week too; "oldest" is only added when not already kept.
    assert!(matches!(&oldest.decision, Decision::Keep { reasons } if reasons.len() == 1));
    let pts = daily("2026-11-02", "2026-11-10", "02:00:00");
    let p = plan(
        &pts,
        &policy("keep_weekly=12,min_complete=1").compile().unwrap(),
        ts("2026-11-10T12:00:00Z"),
    );
    let oldest = p
        .points
        .iter()
        .find(|x| x.point.id == "2026-11-02")
        .unwrap();
    match &oldest.decision {
        Decision::Keep { reasons } => {
            assert_eq!(
                reasons[0].detail,
                "oldest backup, kept because only 2 of 12 periods have one"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_newest_three_complete_points_are_never_deleted() {
    let pts = daily("2026-11-01", "2026-11-10", "02:00:00");
    let p = plan(
        &pts,
        &policy("keep_last=1").compile().unwrap(),
        ts("2026-11-10T12:00:00Z"),
    );
    assert_eq!(
        kept_ids(&p),
        set(&["2026-11-10", "2026-11-09", "2026-11-08"])
    );
    assert_eq!(
        reasons_of(&p, "2026-11-08"),
        vec!["floor:newest_complete 3"]
    );
}

#[test]
fn nothing_is_deleted_when_the_newest_complete_point_is_stale() {
    let pts = daily("2026-10-01", "2026-11-10", "02:00:00");
    let pol = policy("keep_daily=3").compile().unwrap();
    let fresh = plan(&pts, &pol, ts("2026-11-11T12:00:00Z"));
    assert!(fresh.blocked.is_none());
    assert_eq!(fresh.deletes().count(), pts.len() - 3);
    let stale = plan(&pts, &pol, ts("2026-11-13T12:00:00Z")); // newest is 3.4 days old
    assert_eq!(stale.deletes().count(), 0);
    let why = stale.blocked.as_deref().unwrap();
    assert!(
        why.contains("freshness limit 48h") && why.contains("nothing is deleted"),
        "{why}"
    );
    assert_eq!(reasons_of(&stale, "2026-10-01"), vec!["floor:freshness"]);
}

#[test]
fn incomplete_held_and_foreign_points_are_kept_and_do_not_count() {
    let mut pts = daily("2026-11-01", "2026-11-10", "02:00:00");
    let mut creating = point("creating", "2026-11-10T05:00:00Z");
    creating.complete = false;
    let mut foreign = point("manual", "2026-11-05T09:00:00Z");
    foreign.managed = false;
    pts[0].legal_hold = true; // 2026-11-01
    pts.extend([creating, foreign]);
    let p = plan(
        &pts,
        &policy("keep_last=1,min_complete=1").compile().unwrap(),
        ts("2026-11-10T12:00:00Z"),
    );
    assert_eq!(reasons_of(&p, "creating"), vec!["floor:incomplete"]);
    assert_eq!(reasons_of(&p, "manual"), vec!["floor:not_made_by_backstop"]);
    assert!(reasons_of(&p, "2026-11-01").contains(&"floor:legal_hold"));
    // The incomplete point is newer but does not count: keep_last 1 keeps the newest complete one.
    assert_eq!(
        reasons_of(&p, "2026-11-10"),
        vec!["keep_last 1", "floor:newest_complete 1"]
    );
    // Opting in lets the policy delete foreign points.
    let p = plan(
        &pts,
        &policy("keep_last=1,min_complete=1,include_unmanaged=true")
            .compile()
            .unwrap(),
        ts("2026-11-10T12:00:00Z"),
    );
    assert!(p
        .points
        .iter()
        .find(|x| x.point.id == "manual")
        .unwrap()
        .decision
        .is_delete());
}

// ---------- properties ----------

fn arb_points() -> impl Strategy<Value = Vec<RecoveryPoint>> {
    prop::collection::vec((0i64..800 * 24, 0u8..100, 0u8..100, 0u8..100), 0..60).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (hours, c, h, m))| RecoveryPoint {
                id: format!("p{i:03}"),
                source: "T".into(),
                created_at: Timestamp::from_second(
                    1_700_000_000 + hours * 3600 + (i as i64 % 7) * 60,
                )
                .unwrap(),
                complete: c < 92,
                legal_hold: h < 4,
                managed: m < 90,
            })
            .collect()
    })
}

fn arb_policy() -> impl Strategy<Value = RetentionPolicy> {
    let n = || prop::option::of(1u32..15);
    let d = || {
        prop::option::of(prop::sample::select(vec![
            "12h", "2d", "10d", "5w", "3mo", "1y",
        ]))
    };
    (
        (n(), n(), n(), n(), n(), n()),
        (d(), d(), d()),
        prop::sample::select(vec![
            "UTC",
            "America/New_York",
            "Europe/Lisbon",
            "Australia/Sydney",
        ]),
        1u32..5,
        prop::bool::ANY,
    )
        .prop_map(
            |((l, h, dd, w, m, y), (wi, wd, wm), tz, floor, unmanaged)| RetentionPolicy {
                keep_last: l,
                keep_hourly: h,
                keep_daily: dd,
                keep_weekly: w,
                keep_monthly: m,
                keep_yearly: y,
                keep_within: wi.map(String::from),
                keep_within_daily: wd.map(String::from),
                keep_within_monthly: wm.map(String::from),
                time_zone: Some(tz.into()),
                min_complete: Some(floor),
                include_unmanaged: Some(unmanaged),
                ..RetentionPolicy::default()
            },
        )
        .prop_filter("at least one rule", |p| p.compile().is_ok())
}

fn now_after(points: &[RecoveryPoint], extra_hours: i64) -> Timestamp {
    let newest = points
        .iter()
        .map(|p| p.created_at)
        .max()
        .unwrap_or(Timestamp::from_second(1_700_000_000).unwrap());
    newest
        .checked_add(jiff::SignedDuration::from_hours(extra_hours))
        .unwrap()
}

/// A policy with every count and window at least as large.
fn widen(p: &RetentionPolicy, by: u32) -> RetentionPolicy {
    let up = |n: Option<u32>| n.map(|n| n + by);
    let mut w = p.clone();
    w.keep_last = up(p.keep_last);
    w.keep_hourly = up(p.keep_hourly);
    w.keep_daily = up(p.keep_daily);
    w.keep_weekly = up(p.keep_weekly);
    w.keep_monthly = up(p.keep_monthly);
    w.keep_yearly = up(p.keep_yearly);
    let longer = |d: &Option<String>| {
        d.as_ref().map(|d| match d.as_str() {
            "12h" => "2d".to_string(),
            "2d" => "10d".into(),
            "10d" => "5w".into(),
            "5w" => "3mo".into(),
            _ => "1y".into(),
        })
    };
    w.keep_within = longer(&p.keep_within);
    w.keep_within_daily = longer(&p.keep_within_daily);
    w.keep_within_monthly = longer(&p.keep_within_monthly);
    w
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_point_gets_exactly_one_decision_with_a_reason(points in arb_points(), pol in arb_policy(), extra in 0i64..47) {
        let p = plan(&points, &pol.compile().unwrap(), now_after(&points, extra));
        prop_assert_eq!(p.points.len(), points.len());
        let ids: BTreeSet<&str> = p.points.iter().map(|x| x.point.id.as_str()).collect();
        prop_assert_eq!(ids.len(), points.len());
        for x in &p.points {
            match &x.decision {
                Decision::Keep { reasons } => prop_assert!(!reasons.is_empty() && reasons.iter().all(|r| !r.rule.is_empty() && !r.detail.is_empty())),
                Decision::Delete { reason } => prop_assert!(!reason.is_empty()),
            }
        }
    }

    #[test]
    fn the_newest_complete_point_is_always_kept(points in arb_points(), pol in arb_policy(), extra in 0i64..200) {
        let p = plan(&points, &pol.compile().unwrap(), now_after(&points, extra));
        if let Some(newest) = p.points.iter().filter(|x| x.point.complete).max_by_key(|x| x.point.created_at) {
            // Several points may share the newest instant; none of them is deleted.
            for x in p.points.iter().filter(|x| x.point.complete && x.point.created_at == newest.point.created_at) {
                prop_assert!(!x.decision.is_delete(), "{:?}", x);
            }
        }
    }

    #[test]
    fn protected_points_are_never_deleted(points in arb_points(), pol in arb_policy(), extra in 0i64..200) {
        let include = pol.include_unmanaged.unwrap_or(false);
        let p = plan(&points, &pol.compile().unwrap(), now_after(&points, extra));
        for x in p.deletes() {
            prop_assert!(x.point.complete && !x.point.legal_hold && (x.point.managed || include), "{:?}", x);
        }
    }

    #[test]
    fn planning_again_after_applying_a_plan_deletes_nothing(points in arb_points(), pol in arb_policy(), extra in 0i64..47) {
        let compiled = pol.compile().unwrap();
        let now = now_after(&points, extra);
        let first = plan(&points, &compiled, now);
        let remaining: Vec<RecoveryPoint> = first.keeps().map(|x| x.point.clone()).collect();
        let second = plan(&remaining, &compiled, now);
        let again: Vec<&str> = second.deletes().map(|x| x.point.id.as_str()).collect();
        prop_assert!(again.is_empty(), "second plan deletes {:?}", again);
    }

    #[test]
    fn a_wider_policy_keeps_everything_a_narrower_one_keeps(points in arb_points(), pol in arb_policy(), by in 1u32..10, extra in 0i64..47) {
        let now = now_after(&points, extra);
        let narrow = plan(&points, &pol.compile().unwrap(), now);
        let wide = plan(&points, &widen(&pol, by).compile().unwrap(), now);
        let wide_kept = kept_ids(&wide);
        for id in kept_ids(&narrow) {
            prop_assert!(wide_kept.contains(&id), "{} kept by the narrow policy but not the wide one", id);
        }
    }

    #[test]
    fn no_count_rule_keeps_more_than_its_n_plus_the_oldest(points in arb_points(), pol in arb_policy(), extra in 0i64..47) {
        let p = plan(&points, &pol.compile().unwrap(), now_after(&points, extra));
        let mut per_rule: HashMap<String, (u32, u32)> = HashMap::new();
        for x in &p.points {
            if let Decision::Keep { reasons } = &x.decision {
                for r in reasons {
                    let e = per_rule.entry(r.rule.clone()).or_default();
                    if r.detail.starts_with("oldest backup") { e.1 += 1 } else { e.0 += 1 }
                }
            }
        }
        for (rule, (regular, oldest)) in per_rule {
            prop_assert!(oldest <= 1, "{}: {} oldest", rule, oldest);
            if rule.starts_with("keep_") && !rule.starts_with("keep_within") {
                let n: u32 = rule.rsplit(' ').next().unwrap().parse().unwrap();
                prop_assert!(regular <= n, "{} kept {}", rule, regular);
            }
        }
    }

    /// The rule that lets a retention payload through: a policy that `keeps_less_than` finds
    /// nothing against keeps at least every point the configured one keeps.
    #[test]
    fn a_payload_policy_that_passes_the_check_keeps_a_superset(points in arb_points(), configured in arb_policy(), other in arb_policy(), by in 0u32..5, extra in 0i64..47) {
        // Widened, plus rules the configured policy lacks, with the configured floors and zone.
        let mut asked = widen(&configured, by);
        let fill = |mine: &mut Option<u32>, theirs: Option<u32>| if mine.is_none() { *mine = theirs };
        fill(&mut asked.keep_last, other.keep_last);
        fill(&mut asked.keep_weekly, other.keep_weekly);
        if asked.keep_within_daily.is_none() { asked.keep_within_daily = other.keep_within_daily.clone() }
        prop_assert_eq!(asked.keeps_less_than(&configured), None);
        let now = now_after(&points, extra);
        let base = kept_ids(&plan(&points, &configured.compile().unwrap(), now));
        let more = kept_ids(&plan(&points, &asked.compile().unwrap(), now));
        for id in &base {
            prop_assert!(more.contains(id), "{} kept by the configured policy only", id);
        }
        // And any random pair that passes the check keeps a superset too.
        let mut random = other.clone();
        random.min_complete = configured.min_complete;
        random.include_unmanaged = configured.include_unmanaged;
        if random.keeps_less_than(&configured).is_none() {
            let kept = kept_ids(&plan(&points, &random.compile().unwrap(), now));
            for id in &base {
                prop_assert!(kept.contains(id), "{} kept by the configured policy only", id);
            }
        }
    }
}

#[test]
fn keeps_less_than_names_the_rule_that_shrinks() {
    let configured = policy("keep_daily=30,keep_weekly=12,keep_within=3mo");
    assert_eq!(
        policy("keep_daily=30,keep_weekly=12,keep_within=13w").keeps_less_than(&configured),
        Some("keep_within 13w may keep less than keep_within 3mo".into()),
        "13 weeks is 91 days, shorter than some 3-month windows"
    );
    assert_eq!(
        policy("keep_daily=30,keep_weekly=12,keep_within=14w").keeps_less_than(&configured),
        None
    );
    assert_eq!(
        policy("keep_daily=30,keep_within=1y").keeps_less_than(&configured),
        Some("it has no keep_weekly, the configured policy has keep_weekly 12".into())
    );
    assert_eq!(
        policy("keep_daily=30,keep_weekly=12,keep_within=3mo,time_zone=Europe/Lisbon")
            .keeps_less_than(&configured)
            .map(|w| w.starts_with("time_zone Europe/Lisbon differs")),
        Some(true)
    );
}
