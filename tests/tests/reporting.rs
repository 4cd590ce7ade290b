//! Reporting against moto: `backstop status` and its exit status, `backstop report` over a
//! month of catalog history (numbers checked), the HTML report as headless Chromium renders
//! it, the per-protocol SNS message (plain text on SQS, a Chatbot card that validates against
//! the documented schema), size anomalies with their metrics, and the daily summary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use backstop::notify::{METRIC_ANOMALY, METRIC_SIZE_CHANGE};
use backstop::period::{self, Period};
use backstop::report::{Outcome, RunStatus};
use backstop::settings::{self, JobKind};
use backstop_testkit::local;
use backstop_tests::{backstop_cmd, cli_binary, run_job, Harness};
use serde_json::{json, Value};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

async fn snapshot(h: &Harness, tables: &[&str], slot: &str) -> backstop::report::RunReport {
    run_job(
        h,
        JobKind::Snapshot,
        &[],
        json!({"tables": tables, "slot": slot}),
    )
    .await
}

async fn delete_items(h: &Harness, table: &str, n: usize) {
    for i in 0..n {
        h.clients
            .dynamodb
            .delete_item()
            .table_name(table)
            .key("id", s(&format!("item-{i:05}")))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn status_exits_zero_when_all_are_fresh_and_one_for_a_stale_table() {
    let h = Harness::new().await;
    let (fresh, never) = (h.name("Fresh"), h.name("Never"));
    h.create_table(&fresh, 5, &[]).await;
    h.create_table(&never, 5, &[]).await;
    let now = jiff::Timestamp::now();
    let slot = backstop::event::ScheduleSlot::new(now).to_string();
    let r = snapshot(&h, &[&fresh], &slot).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");

    let cli = cli_binary();
    let status = |tables: &str, extra: &[&str]| {
        let out = backstop_cmd(
            &cli,
            &h,
            &h.stack.endpoint,
            &[
                (settings::ENV_TABLES, tables.to_owned()),
                (settings::ENV_PITR_MAX_LAG, "off".to_owned()),
            ],
        )
        .arg("status")
        .args(extra)
        .output()
        .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = status(&fresh, &[]);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&fresh) && out.contains("fresh"), "{out}");
    assert!(out.contains("1 of 1 fresh"), "{out}");
    // Not a terminal: no colour codes.
    assert!(!out.contains('\x1b'), "{out:?}");

    // A table never backed up is stale, and the exit status says so.
    let (code, out, err) = status(&format!("{fresh},{never}"), &[]);
    println!("{out}");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("STALE"), "{out}");
    assert!(
        out.contains(&format!("table {never}: no complete backup at all")),
        "{out}"
    );

    // Three days on, the fresh one is stale too; --json says why, per table.
    let later = (now + jiff::SignedDuration::from_hours(72)).to_string();
    let (code, out, err) = status(&fresh, &["--json", "--now", &later]);
    assert_eq!(code, Some(1), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lines"][0]["name"], fresh.as_str());
    assert_eq!(v["lines"][0]["verdict"], "stale");
    assert_eq!(v["lines"][0]["pitr"]["state"], "off");
    let reason = v["lines"][0]["reasons"][0].as_str().unwrap();
    assert!(reason.contains("3.0 days old"), "{reason}");
}

/// A month of history made by real runs: two tables backed up on ten days of November, one
/// missing table failing on two of them, one December run (outside), an October backup that
/// retention deleted in November, and three drills.
async fn seed_november(h: &Harness) -> (String, String, String) {
    let (a, b, m) = (h.name("Alpha"), h.name("Beta"), h.name("Missing"));
    h.create_table(&a, 20, &[]).await;
    h.create_table(&b, 10, &[]).await;
    for day in 1..=10 {
        let slot = format!("2026-11-{day:02}T02:00:00Z");
        let tables: Vec<&str> = if day <= 2 {
            vec![&a, &b, &m]
        } else {
            vec![&a, &b]
        };
        snapshot(h, &tables, &slot).await;
    }
    snapshot(h, &[&a, &b], "2026-12-01T02:00:00Z").await;
    snapshot(h, &[&a], "2026-10-31T02:00:00Z").await;
    let catalog = &h.stack.catalog_table;
    h.clients
        .dynamodb
        .update_item()
        .table_name(catalog)
        .key("pk", s(&format!("TARGET#snapshot#{a}")))
        .key("sk", s("SLOT#2026-10-31T02:00:00Z"))
        .update_expression("SET #st = :d, deleted_at = :at")
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":d", s("DELETED"))
        .expression_attribute_values(":at", s("2026-11-15T04:00:00Z"))
        .send()
        .await
        .unwrap();
    // Drill history as the validate job keeps it (DRILL#<table> / AT#<start>).
    for (table, start, level, rto) in [
        (&a, "2026-11-03T05:00:00Z", "proven", 120.0),
        (&a, "2026-11-10T05:00:00Z", "proven", 240.0),
        (&b, "2026-11-04T05:00:00Z", "failed", 60.0),
    ] {
        let drill = json!({
            "table": table, "drill_table": format!("backstop-drill-{table}"),
            "backup_arn": "arn:aws:dynamodb:us-east-1:123456789012:table/x/backup/1",
            "backup_slot": "2026-11-03T02:00:00Z", "state": "cleaned",
            "started_at": start, "run_id": "r", "restore_s": rto, "level": level
        });
        h.clients
            .dynamodb
            .put_item()
            .table_name(catalog)
            .set_item(Some(HashMap::from([
                ("pk".to_owned(), s(&format!("DRILL#{table}"))),
                ("sk".to_owned(), s(&format!("AT#{start}"))),
                ("kind".to_owned(), s("drill")),
                ("state".to_owned(), s("cleaned")),
                ("drill".to_owned(), s(&drill.to_string())),
            ])))
            .send()
            .await
            .unwrap();
    }
    (a, b, m)
}

#[tokio::test]
async fn a_month_of_history_gives_the_expected_counts_and_rates_and_the_html_renders() {
    let h = Harness::new().await;
    let (a, b, m) = seed_november(&h).await;
    let catalog =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let nov = Period::parse("2026-11").unwrap();
    let report = period::build(&nov, &period::read(&catalog, &nov).await.unwrap());
    println!("{}", report.text());

    let job = report.jobs.iter().find(|j| j.job == "snapshot").unwrap();
    assert_eq!((job.runs, job.succeeded, job.not_succeeded), (10, 8, 2));
    assert_eq!(job.success_rate_pct, Some(80.0));
    assert!(job.duration_max_s.unwrap() >= job.duration_median_s.unwrap());

    let t = |name: &str| {
        report
            .targets
            .iter()
            .find(|t| t.job == "snapshot" && t.name == name)
            .unwrap_or_else(|| panic!("{name} not in {:#?}", report.targets))
    };
    let alpha = t(&a);
    assert_eq!((alpha.slots, alpha.done, alpha.failed), (10, 10, 0));
    assert_eq!(alpha.success_rate_pct, Some(100.0));
    assert_eq!(alpha.deleted, 1, "the October backup deleted in November");
    assert_eq!(alpha.items, Some(20));
    let records = catalog
        .list_targets(JobKind::Snapshot, Some(&a))
        .await
        .unwrap();
    let nov_bytes: i64 = records
        .iter()
        .filter(|r| r.slot.starts_with("2026-11"))
        .filter_map(|r| r.size_bytes)
        .sum();
    assert_eq!(alpha.bytes, nov_bytes);
    assert!(alpha.duration_median_s.is_some(), "{alpha:?}");
    assert_eq!(t(&b).done, 10);
    let missing = t(&m);
    assert_eq!((missing.slots, missing.done, missing.failed), (2, 0, 2));
    assert_eq!(missing.success_rate_pct, Some(0.0));
    assert_eq!(missing.failures.len(), 2);
    assert!(
        missing.failures[0].reason.contains("DescribeTable"),
        "{:?}",
        missing.failures
    );

    let da = report.drills.iter().find(|d| d.table == a).unwrap();
    assert_eq!((da.drills, da.proven, da.failed), (2, 2, 0));
    assert_eq!((da.rto_median_s, da.rto_max_s), (Some(180.0), Some(240.0)));
    assert_eq!(
        report.drills.iter().find(|d| d.table == b).unwrap().failed,
        1
    );

    assert_eq!(report.days.len(), 30);
    let first = &report.days[0];
    assert_eq!((first.slots, first.done), (3, 2));
    assert_eq!(report.days[10].slots, 0, "nothing on November 11");
    assert_eq!(
        report.headline(),
        "❌ 2 tables backed up, 0 exports verified, 2 drills proven in 4 m 0 s, 3 failures, 2 runs not succeeded"
    );

    // The CLI writes the same report; the HTML form as a browser shows it.
    let cli = cli_binary();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&h.prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("report-2026-11.html");
    let out = backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
        .args(["report", "--month", "2026-11", "--format", "html", "-o"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = backstop_cmd(&cli, &h, &h.stack.endpoint, &[])
        .args(["report", "--month", "2026-11", "--format", "markdown"])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains(&format!("| snapshot | {m} | 2 | 0 | 2 | 0.0% |")),
        "{md}"
    );

    let dom = chromium(&["--dump-dom"], &html);
    assert!(
        dom.contains("id=\"chart-success\"") && dom.contains("id=\"chart-size\""),
        "{dom}"
    );
    assert_eq!(
        dom.matches("class=\"bar\"").count(),
        10,
        "one bar per day with slots"
    );
    assert_eq!(
        dom.matches("class=\"series\"").count(),
        2,
        "one line per table"
    );
    let png = dir.join("report-2026-11.png");
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1100,1300",
        ],
        &html,
    );
    let (green, red) = count_colours(&png);
    println!(
        "screenshot {}: {green} green and {red} red pixels",
        png.display()
    );
    // Days with every slot done are green bars (8 full ones), the two with the missing table
    // red (two-thirds high): the bars' colours appear nowhere else on the page.
    assert!(green > 4 * red && red > 500, "green {green}, red {red}");
}

/// Runs headless Chromium on a file and returns its standard output.
fn chromium(args: &[&str], file: &Path) -> String {
    let bin = std::env::var("BACKSTOP_CHROMIUM").unwrap_or_else(|_| {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| {
                std::process::Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok()
            })
            .expect("headless Chromium is installed (make deps: apt-get install chromium)")
            .to_owned()
    });
    let out = std::process::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pixels near the report's green (#2e7d32) and red (#c62828) in a PNG screenshot.
fn count_colours(png: &Path) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let near = |p: &[u8], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) < 12);
    let (mut green, mut red) = (0, 0);
    for p in buf[..info.buffer_size()].chunks(step) {
        if near(&p[..3], [0x2e, 0x7d, 0x32]) {
            green += 1;
        } else if near(&p[..3], [0xc6, 0x28, 0x28]) {
            red += 1;
        }
    }
    (green, red)
}

#[tokio::test]
async fn a_partial_failure_reads_as_plain_text_on_sqs_and_as_a_chatbot_card_failed_first() {
    let h = Harness::new().await;
    let (good, missing) = (h.name("Good"), h.name("Gone"));
    h.create_table(&good, 3, &[]).await;
    let r = snapshot(&h, &[&good, &missing], "2026-11-21T02:00:00Z").await;
    assert_eq!(r.status, RunStatus::PartiallyFailed);
    assert!(
        matches!(r.delivery.sns, backstop::report::DeliveryState::Sent { .. }),
        "{r:#?}"
    );

    // SQS (like e-mail) gets the plain text, not the JSON of every protocol.
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(got.len(), 1);
    let text = &got[0].message;
    println!("--- SQS / e-mail body ---\n{text}");
    assert!(
        text.starts_with("Backstop snapshot run PARTIAL FAILURE"),
        "{text}"
    );
    assert!(text.contains(&format!("- {missing}: FAILED")), "{text}");
    assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
    assert_eq!(
        got[0].attributes.get("severity").map(String::as_str),
        Some("error")
    );

    // The HTTPS body (what AWS Chatbot gets) is a custom notification.
    let structured: Value = serde_json::from_str(&backstop::chat::structured_message(&r)).unwrap();
    assert_eq!(
        structured["default"].as_str(),
        Some(r.email_body().as_str())
    );
    let card: Value = serde_json::from_str(structured["https"].as_str().unwrap()).unwrap();
    println!(
        "--- Chatbot card ---\n{}",
        serde_json::to_string_pretty(&card).unwrap()
    );
    let schema: Value = serde_json::from_str(include_str!(
        "../fixtures/chatbot-custom-notification.schema.json"
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let limits = jsonschema::validator_for(&schema["$defs"]["reportedLimits"]).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&card)
        .chain(limits.iter_errors(&card))
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // A card that breaks the schema is refused by the same validator (the check can fail).
    let mut broken = card.clone();
    broken["version"] = json!("2.0");
    assert!(!validator.is_valid(&broken));

    let description = card["content"]["description"].as_str().unwrap();
    let at_missing = description.find(&missing).unwrap();
    let at_good = description.find(&good).unwrap();
    assert!(at_missing < at_good, "failed tables first:\n{description}");
    assert!(
        description.contains("*FAILED* in `DescribeTable`"),
        "{description}"
    );
    assert_eq!(card["metadata"]["relatedResources"][0], missing.as_str());
    assert!(card["content"]["title"]
        .as_str()
        .unwrap()
        .starts_with("❌ Backstop snapshot PARTIAL FAILURE"));
    assert!(card["content"]["nextSteps"][0]
        .as_str()
        .unwrap()
        .contains("retries"));
}

#[tokio::test]
async fn a_quarter_smaller_backup_is_an_anomaly_a_tenth_is_not_and_a_first_has_no_baseline() {
    let h = Harness::new().await;
    let (shrunk, steady, first) = (h.name("Shrunk"), h.name("Steady"), h.name("First"));
    h.create_table(&shrunk, 100, &[]).await;
    h.create_table(&steady, 100, &[]).await;
    h.create_table(&first, 10, &[]).await;
    for day in 1..=7 {
        let r = snapshot(
            &h,
            &[&shrunk, &steady],
            &format!("2026-11-{day:02}T02:00:00Z"),
        )
        .await;
        assert_eq!(r.totals.anomalies, 0, "{r:#?}");
    }
    delete_items(&h, &shrunk, 25).await;
    delete_items(&h, &steady, 10).await;
    let r = snapshot(&h, &[&shrunk, &steady, &first], "2026-11-08T02:00:00Z").await;
    let target = |t: &str| r.targets.iter().find(|x| x.table == t).unwrap();
    assert!(matches!(target(&shrunk).outcome, Outcome::Created { .. }));
    let check = |t: &str| target(t).size_check.clone().unwrap();
    assert!(check(&shrunk).is_anomaly(), "{:?}", check(&shrunk));
    assert_eq!(check(&shrunk).change_pct(), Some(-25.0));
    assert!(!check(&steady).is_anomaly(), "{:?}", check(&steady));
    assert_eq!(check(&steady).change_pct(), Some(-10.0));
    assert_eq!(check(&first), backstop::anomaly::SizeCheck::NoBaseline);
    assert_eq!(r.totals.anomalies, 1);
    assert_eq!(r.severity(), "warning");

    let body = r.email_body();
    println!("{body}");
    assert!(body.contains("warning: backup size anomaly"), "{body}");
    assert!(body.contains("last 7 complete backups"), "{body}");
    assert!(
        body.contains("first backup of this table: no baseline"),
        "{body}"
    );
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 10, Duration::from_secs(5))
            .await
            .unwrap();
    let last = got.last().unwrap();
    assert_eq!(
        last.attributes.get("severity").map(String::as_str),
        Some("warning")
    );

    // The metrics, read back from CloudWatch: over all eight runs, one anomaly for the shrunk
    // table and its -25 %, none for the others.
    assert_eq!(h.metric(METRIC_ANOMALY, &shrunk).await, Some(1.0));
    assert_eq!(h.metric(METRIC_SIZE_CHANGE, &shrunk).await, Some(-25.0));
    assert_eq!(h.metric(METRIC_ANOMALY, &steady).await, Some(0.0));
    assert_eq!(h.metric(METRIC_SIZE_CHANGE, &steady).await, Some(-10.0));
    assert_eq!(h.metric(METRIC_ANOMALY, &first).await, Some(0.0));
    assert_eq!(h.metric(METRIC_SIZE_CHANGE, &first).await, None);
    // The run total (Job alone, what the alarm watches): moto's sum for Job=snapshot also
    // counts the per-table data points, so 1 (the shrunk table's) + 1 (the total).
    assert_eq!(h.metric_of(METRIC_ANOMALY, None).await, Some(2.0));
}

#[tokio::test]
async fn the_daily_summary_is_published_once_per_period() {
    let h = Harness::new().await;
    let table = h.name("Daily");
    h.create_table(&table, 3, &[]).await;
    snapshot(&h, &[&table], "2026-12-01T02:00:00Z").await;
    // The snapshot's own message, out of the way.
    let run_message =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(run_message.len(), 1);
    let env = h.env(&[]);
    let event = json!({"summary": "daily", "slot": "2026-12-01T07:00:00Z"});
    let now = jiff::Timestamp::now();
    let out = backstop::summary::handle(&h.clients, &env, &event, now, None)
        .await
        .unwrap();
    assert!(out.published);
    assert_eq!(
        out.headline,
        "✅ 1 table backed up, 0 exports verified, 0 drills proven, 0 failures"
    );
    let again = backstop::summary::handle(&h.clients, &env, &event, now, None)
        .await
        .unwrap();
    assert!(!again.published, "a redelivery sends nothing again");
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 10, Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    println!("{}", got[0].message);
    assert!(
        got[0]
            .message
            .starts_with("Backstop report 2026-11-30T07:00:00Z to 2026-12-01T07:00:00Z"),
        "{}",
        got[0].message
    );
    assert!(got[0].message.contains(&table));
    assert_eq!(
        got[0].attributes.get("job").map(String::as_str),
        Some("summary")
    );

    // A marker another invocation holds (SENDING, before its deadline) fails this one for a
    // retry, and says why; once that deadline passed, the retry takes it over and sends.
    let next = json!({"summary": "daily", "slot": "2026-12-02T07:00:00Z"});
    let marker = |until: i64| {
        h.clients
            .dynamodb
            .put_item()
            .table_name(&h.stack.catalog_table)
            .item("pk", s("SUMMARY#daily"))
            .item("sk", s("2026-12-01T07:00:00Z to 2026-12-02T07:00:00Z"))
            .item("kind", s("summary"))
            .item("state", s("SENDING"))
            .item("at", s("2026-12-02T07:00:01Z"))
            .item("until", AttributeValue::N(until.to_string()))
            .send()
    };
    marker(now.as_second() + 600).await.unwrap();
    let held = backstop::summary::handle(&h.clients, &env, &next, now, None)
        .await
        .unwrap_err();
    assert!(held.is_retryable(), "{held}");
    assert!(
        held.to_string().contains("another invocation is sending"),
        "{held}"
    );
    marker(now.as_second() - 1).await.unwrap();
    let taken = backstop::summary::handle(&h.clients, &env, &next, now, None)
        .await
        .unwrap();
    assert!(taken.published);
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");

    // Bad payloads fail with what is wrong.
    let e = backstop::summary::handle(&h.clients, &env, &json!({"summary": "weekly"}), now, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("summary"), "{e}");
}

#[tokio::test]
async fn a_summary_of_a_period_that_has_not_ended_is_refused_and_the_real_one_is_still_sent() {
    let h = Harness::new().await;
    let env = h.env(&[]);
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    // Mid-December: neither December nor a day ending tomorrow is over.
    let early = t("2026-12-15T12:00:00Z");
    for event in [
        json!({"summary": "monthly", "period": "2026-12"}),
        json!({"summary": "daily", "period": "2026-12-15"}),
        json!({"summary": "daily", "slot": "2026-12-16T07:00:00Z"}),
    ] {
        let e = backstop::summary::handle(&h.clients, &env, &event, early, None)
            .await
            .unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("has not ended yet"), "{event}: {e}");
    }
    // Nothing was published, and no marker stands in for the real summaries.
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 10, Duration::from_secs(3))
            .await
            .unwrap();
    assert!(got.is_empty(), "{got:?}");
    let markers = h
        .clients
        .dynamodb
        .query()
        .table_name(&h.stack.catalog_table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s("SUMMARY#monthly"))
        .send()
        .await
        .unwrap();
    assert_eq!(markers.count(), 0);

    // Once December is over, its summary goes out.
    let after = t("2027-01-01T01:00:00Z");
    let out = backstop::summary::handle(
        &h.clients,
        &env,
        &json!({"summary": "monthly", "period": "2026-12"}),
        after,
        None,
    )
    .await
    .unwrap();
    assert!(out.published);
    let got =
        local::receive_notifications(&h.config, &h.stack.queue_url, 1, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].message.contains("2026-12"), "{}", got[0].message);
}
