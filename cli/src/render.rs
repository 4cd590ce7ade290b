//! Everything the commands print: run reports, retention plans, the backups table, the demo's
//! sections and the local stack's usage.

use std::collections::HashMap;
use std::time::Duration;

use backstop::catalog::TargetRecord;
use backstop::notify::{METRIC_FAILURE, METRIC_SUCCESS};
use backstop::report::{human_bytes, DeliveryState, Outcome, RunReport};
use backstop::retention::{Decision, RetentionPlan, RetentionPolicy};
use backstop::settings;
use backstop_testkit::local::{LocalStack, ReceivedNotification, DEMO_TABLES};

/// Takes the serialiser's result rather than the value: the crate does not depend on serde itself.
fn print_json(text: serde_json::Result<String>) {
    println!("{}", text.unwrap_or_default());
}

pub fn print_report(report: &RunReport, json: bool) {
    if json {
        print_json(serde_json::to_string_pretty(report));
        return;
    }
    print!("{}", report.email_body());
    println!();
    for (what, state) in [
        ("SNS message", &report.delivery.sns),
        ("CloudWatch metrics", &report.delivery.metrics),
        ("catalog run record", &report.delivery.catalog),
    ] {
        let line = match state {
            DeliveryState::Pending => "not attempted".to_owned(),
            DeliveryState::Sent { id: Some(id) } => format!("sent ({id})"),
            DeliveryState::Sent { id: None } => "sent".to_owned(),
            DeliveryState::Skipped { reason } => format!("skipped: {reason}"),
            DeliveryState::Failed { error } => format!("FAILED: {error}"),
        };
        println!("{what:<20} {line}");
    }
}

/// `names` maps backup ARNs to their names; a backup missing from it is shown by ARN.
pub fn print_plan(
    table: &str,
    plan: &RetentionPlan,
    names: &HashMap<&str, &str>,
    now: jiff::Timestamp,
    json: bool,
) {
    if json {
        print_json(serde_json::to_string_pretty(plan));
        return;
    }
    println!("Retention plan for {table} as of {now}");
    println!("Policy: {}", plan.policy);
    if let Some(b) = &plan.blocked {
        println!("Nothing will be deleted: {b}");
    }
    println!(
        "{} backups: {} kept, {} to delete\n",
        plan.points.len(),
        plan.keeps().count(),
        plan.deletes().count()
    );
    println!(
        "{:<48} {:<21} {:>9}  {:<8} REASONS",
        "BACKUP", "CREATED", "AGE", "DECISION"
    );
    for p in &plan.points {
        let name = names
            .get(p.point.id.as_str())
            .copied()
            .unwrap_or(p.point.id.as_str());
        let age = now.duration_since(p.point.created_at);
        let age = format!("{}d {:02}h", age.as_hours() / 24, age.as_hours() % 24);
        let (decision, reasons) = match &p.decision {
            Decision::Keep { reasons } => (
                "keep",
                reasons
                    .iter()
                    .map(|r| format!("{} ({})", r.rule, r.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Decision::Delete { reason } => ("DELETE", reason.clone()),
        };
        println!(
            "{:<48} {:<21} {:>9}  {:<8} {}",
            name,
            p.point
                .created_at
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            age,
            decision,
            reasons
        );
    }
}

pub fn print_backups(catalog_table: &str, records: &[TargetRecord], json: bool) {
    if json {
        print_json(serde_json::to_string_pretty(records));
    } else if records.is_empty() {
        println!("No backups recorded in catalog {catalog_table}.");
    } else {
        println!(
            "{:<24} {:<21} {:<8} {:>10} {:>8}  BACKUP",
            "TABLE", "SLOT", "STATUS", "SIZE", "ITEMS"
        );
        for r in records {
            println!(
                "{:<24} {:<21} {:<8} {:>10} {:>8}  {}",
                r.table,
                r.slot,
                r.status,
                r.size_bytes.map(human_bytes).unwrap_or_default(),
                r.item_count.map(|n| n.to_string()).unwrap_or_default(),
                r.backup_arn.as_deref().or(r.error.as_deref()).unwrap_or("")
            );
        }
    }
}

pub fn print_exports(catalog_table: &str, records: &[TargetRecord], json: bool) {
    if json {
        print_json(serde_json::to_string_pretty(records));
    } else if records.is_empty() {
        println!("No exports recorded in catalog {catalog_table}.");
    } else {
        println!(
            "{:<24} {:<21} {:<8} {:<8} {:<12} {:>10} {:>9}  WHERE / WHY",
            "TABLE", "SLOT", "STATUS", "MODE", "TYPE", "STORED", "ITEMS"
        );
        for r in records {
            let m = r.export.as_ref();
            println!(
                "{:<24} {:<21} {:<8} {:<8} {:<12} {:>10} {:>9}  {}",
                r.table,
                r.slot,
                r.status,
                m.map(|m| m.made.name()).unwrap_or("-"),
                m.map(|m| match m.export_type {
                    backstop::export::ExportType::FullExport => "full",
                    backstop::export::ExportType::IncrementalExport => "incremental",
                })
                .unwrap_or("-"),
                m.and_then(|m| m.stored_bytes)
                    .map(|b| human_bytes(b as i64))
                    .unwrap_or_default(),
                m.and_then(|m| m.item_count)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                match (r.status, m) {
                    (backstop::catalog::TargetStatus::Failed, _) => {
                        format!("FAILED: {}", r.error.as_deref().unwrap_or(""))
                    }
                    (_, Some(m)) => m.uri(),
                    (_, None) => String::new(),
                }
            );
        }
    }
}

fn report_is_export(b: &backstop::report::BackupInfo) -> bool {
    b.backup_arn.starts_with("s3://")
}

fn outcome_summary(o: &Outcome) -> String {
    match o {
        Outcome::Retained { kept, deleted, .. } => format!("kept {kept}, deleted {deleted}"),
        Outcome::Created { backup } if report_is_export(backup) => format!(
            "exported {} items ({} stored)",
            backup.item_count.unwrap_or(0),
            human_bytes(backup.size_bytes.unwrap_or(0))
        ),
        Outcome::Failed { error, .. } => format!("FAILED: {error}"),
        other => format!("{other:?}"),
    }
}

/// Demo section 1.
pub fn demo_report(report: &RunReport, json: bool) {
    println!("== 1. Run report ==\n");
    print_report(report, false);
    if json {
        println!();
        print_json(serde_json::to_string_pretty(report));
    }
}

/// Demo section 2, printed before the wait for the message so the wait has a heading.
pub fn demo_message_heading(queue_url: &str) {
    println!("\n== 2. SNS message, as read from SQS queue {queue_url} ==\n");
}

pub fn demo_message(received: Option<&ReceivedNotification>, waited: Duration) {
    match received {
        Some(n) => {
            println!("Subject: {}", n.subject);
            let attrs: Vec<String> = n
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!("Message attributes: {}\n", attrs.join(" "));
            println!("{}", n.message);
        }
        None => println!("(no message arrived within {} s)", waited.as_secs()),
    }
}

/// Demo section 3: the heading and column names; the rows follow one table at a time, as each
/// table's metrics are read back.
pub fn demo_metrics_heading(namespace: &str) {
    println!("== 3. CloudWatch metrics, read back with GetMetricStatistics (namespace {namespace}, Sum, last hour) ==\n");
    println!(
        "{:<16} {:>14} {:>14} {:>18} {:>16}",
        "Table", METRIC_SUCCESS, METRIC_FAILURE, "BackupDuration(s)", "BackupSize(B)"
    );
}

/// One table's sums of success, failure, duration and size; `-` where no data point came back.
pub fn demo_metrics_row(table: &str, sums: &[Option<f64>; 4]) {
    let cells = sums.map(|v| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()));
    println!(
        "{:<16} {:>14} {:>14} {:>18} {:>16}",
        table, cells[0], cells[1], cells[2], cells[3]
    );
}

/// Demo section 4.
pub fn demo_redelivery(again: &RunReport) {
    println!("\n== 4. The same event delivered again (EventBridge delivers at least once) ==\n");
    println!(
        "{} of {} tables already done for this slot; {} new backups made.",
        again.totals.already_done, again.totals.selected, again.totals.created
    );
}

/// Demo section 6: the export, and each export read back and compared with its table.
#[allow(clippy::type_complexity)]
pub fn demo_export(
    report: &RunReport,
    checks: &[(
        String,
        Result<
            (
                backstop::fingerprint::Fingerprint,
                backstop::fingerprint::Fingerprint,
            ),
            String,
        >,
    )],
) {
    println!("\n== 6. Export, the weekly job (logical: Backstop's own parallel scan) ==\n");
    for t in &report.targets {
        println!("- {}: {}", t.table, outcome_summary(&t.outcome));
        if let Some(m) = &t.export {
            println!("    at {}", m.uri());
            if let Some(fp) = &m.fingerprint {
                println!("    fingerprint {fp}");
            }
        }
    }
    println!();
    for (table, check) in checks {
        match check {
            Ok((export, of_table)) if export.same_content(of_table) => println!(
                "{table}: read back {} items from S3 (MD5 and counts checked against the manifests); fingerprint equals a fresh scan of the table",
                export.items
            ),
            Ok((export, of_table)) => println!(
                "{table}: MISMATCH: the export holds {export}, the table {of_table}"
            ),
            Err(e) => println!("{table}: could not verify: {e}"),
        }
    }
}

/// Demo section 5.
pub fn demo_retention(policy: Option<&RetentionPolicy>, pruned: &RunReport) {
    println!(
        "\n== 5. Retention, the second job of the daily cycle (policy: {}) ==\n",
        policy
            .and_then(|p| p.compile().ok())
            .map(|p| p.describe())
            .unwrap_or_default()
    );
    for t in &pruned.targets {
        // Decisions follow the plan, newest first.
        let reasons = t
            .decisions
            .first()
            .map(|d| match &d.decision {
                Decision::Keep { reasons } => reasons
                    .iter()
                    .map(|r| r.rule.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                Decision::Delete { reason } => reason.clone(),
            })
            .unwrap_or_default();
        println!(
            "- {}: {} (newest backup kept by: {reasons})",
            t.table,
            outcome_summary(&t.outcome)
        );
    }
}

/// `local up`: how to use the stack from another shell.
pub fn local_usage(stack: &LocalStack) {
    println!("\nUse it from another shell:\n");
    println!(
        "export AWS_ENDPOINT_URL={} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=backstop-local AWS_SECRET_ACCESS_KEY=backstop-local",
        stack.endpoint
    );
    println!(
        "export {}={} {}={} {}={}",
        settings::ENV_CATALOG_TABLE,
        stack.catalog_table,
        settings::ENV_TOPIC_ARN,
        stack.topic_arn,
        settings::ENV_TABLES,
        DEMO_TABLES.join(",")
    );
    println!("backstop run snapshot --event events/snapshot-manual.json");
    println!("\nPress Ctrl-C to stop the emulator.");
}
