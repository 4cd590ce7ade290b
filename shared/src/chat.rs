//! The per-protocol bodies of a run's SNS message (`MessageStructure=json`): plain text for
//! e-mail, SQS and anything else (`default`), and an AWS Chatbot (Amazon Q Developer in chat
//! applications) custom notification for HTTPS subscriptions, which is how Chatbot subscribes,
//! so that Slack and Microsoft Teams show a formatted card with the failed targets first.
//!
//! The custom notification schema: <https://docs.aws.amazon.com/chatbot/latest/adminguide/custom-notifs.html>
//! (`version` "1.0", `source` "custom", `content` with `textType` "client-markdown", `title`,
//! `description`, `nextSteps`, `keywords`; `metadata` with `summary`, `eventType`,
//! `relatedResources`, `additionalContext`). Pure.

use serde_json::{json, Value};

use crate::report::{clip, Outcome, RunReport, RunStatus, TargetReport};

/// SNS takes messages up to 256 KiB, all protocols' bodies and the attributes together.
pub const MAX_SNS_MESSAGE_BYTES: usize = 256 * 1024;

/// Within the limits reported for the custom notification's fields (title 250, description 8,000,
/// a next step 350 and a keyword 75 characters); the counts are our own choice (none documented).
const MAX_TITLE: usize = 250;
const MAX_DESCRIPTION: usize = 8000;
const MAX_NEXT_STEPS: usize = 5;
const MAX_KEYWORDS: usize = 10;
const MAX_KEYWORD: usize = 75;
const MAX_RELATED: usize = 20;

/// The emoji a card's title starts with.
fn mark(report: &RunReport) -> &'static str {
    match report.status {
        RunStatus::Succeeded if report.severity() == "warning" => "⚠️",
        RunStatus::Succeeded => "✅",
        RunStatus::NothingSelected => "⚠️",
        RunStatus::PartiallyFailed | RunStatus::Failed | RunStatus::ProblemsFound => "❌",
    }
}

/// Markdown's special characters in a name made harmless (names come from AWS and can hold
/// `_`, `*`, `.`, `-`; Slack would otherwise turn `_a_` into italics).
fn code(name: &str) -> String {
    format!("`{}`", clip(name, 255).replace('`', "'"))
}

/// Free text (an error, a reason, which may hold an S3 object key anyone who can write the bucket
/// chose) made inert for chat markdown: in a code span, with the characters that could end it or
/// start a mention or a link (`` ` ``, `<`, `>`) replaced, and line breaks made spaces.
pub fn literal(text: &str, max: usize) -> String {
    let t: String = clip(text, max)
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '<' => '‹',
            '>' => '›',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("`{t}`")
}

/// Where a target stands, as a short markdown line.
fn target_line(t: &TargetReport) -> String {
    let what = match &t.outcome {
        Outcome::Failed {
            operation, error, ..
        } => format!(
            "*FAILED* in {}: {}",
            literal(operation, 100),
            literal(error, 400)
        ),
        Outcome::InProgress { note, .. } => format!("*not done*: {}", literal(note, 300)),
        Outcome::Created { .. } => "done".to_owned(),
        Outcome::AlreadyDone { .. } => "already done for this slot".to_owned(),
        Outcome::Planned { .. } => "planned (dry run)".to_owned(),
        Outcome::Started { .. } => "under way".to_owned(),
        Outcome::Validated { problems } if *problems > 0 => {
            format!(
                "*{problems} problem{}*",
                if *problems == 1 { "" } else { "s" }
            )
        }
        Outcome::Validated { .. } => "checked, all well".to_owned(),
        Outcome::Retained { kept, deleted, .. } => format!("kept {kept}, deleted {deleted}"),
    };
    format!("• {}: {what}", code(&t.table))
}

/// Whether a target is among the ones a person must look at first.
fn needs_attention(t: &TargetReport) -> bool {
    !t.outcome.is_done()
        || matches!(t.outcome, Outcome::Validated { problems } if problems > 0)
        || t.size_check.as_ref().is_some_and(|c| c.is_anomaly())
}

/// The card's description: what happened, the targets that need attention first (with the
/// reason), then the rest, cut to fit with a count of what was left out.
fn description(report: &RunReport) -> String {
    let t = &report.totals;
    let mut head = format!(
        "*Slot* {} · *run* `{}` · {:.1} s\n{} selected: {} done, {} not done{}{}\n",
        report.slot,
        report.run_id,
        report.duration_ms as f64 / 1000.0,
        t.selected,
        t.created + t.already_done + t.planned + t.retained + t.validated,
        t.failed + t.in_progress,
        if t.anomalies > 0 {
            format!(
                ", {} size anomal{}",
                t.anomalies,
                if t.anomalies == 1 { "y" } else { "ies" }
            )
        } else {
            String::new()
        },
        if report.dry_run { " (dry run)" } else { "" },
    );
    for w in report.warnings.iter().take(3) {
        head.push_str(&format!("⚠️ {}\n", literal(w, 300)));
    }
    for e in report.errors.iter().take(3) {
        head.push_str(&format!("❌ {}\n", literal(e, 400)));
    }
    let (first, rest): (Vec<&TargetReport>, Vec<&TargetReport>) =
        report.targets.iter().partition(|t| needs_attention(t));
    let mut lines: Vec<String> = Vec::new();
    for t in &first {
        lines.push(target_line(t));
        if let Some(c) = t.size_check.as_ref().filter(|c| c.is_anomaly()) {
            let what = if t.export.is_some() {
                "export"
            } else {
                "backup"
            };
            lines.push(format!("   ⚠️ {}", c.describe(what)));
        }
    }
    lines.extend(rest.iter().map(|t| target_line(t)));
    let mut out = head;
    let mut left = 0usize;
    for (i, l) in lines.iter().enumerate() {
        // Room for the "and N more" line.
        if out.len() + l.len() + 1 + 80 > MAX_DESCRIPTION {
            left = lines.len() - i;
            break;
        }
        out.push_str(l);
        out.push('\n');
    }
    if left > 0 {
        out.push_str(&format!(
            "… and {left} more lines; the e-mail and the function's response have them all\n"
        ));
    }
    clip(out.trim_end(), MAX_DESCRIPTION)
}

fn next_steps(report: &RunReport) -> Vec<String> {
    let mut steps = Vec::new();
    if report.needs_retry() {
        steps.push(
            "Lambda retries the run; the retry redoes only what is not done. If it fails again, fix the cause named above and invoke the function with the same slot.".to_owned(),
        );
    }
    if report.status == RunStatus::ProblemsFound {
        steps.push(
            "Read the problems above; `backstop status` shows where every table stands.".to_owned(),
        );
    }
    if report.totals.anomalies > 0 {
        steps.push(
            "Check whether the size change is expected (a purge, a migration); if not, compare the newest backup with the previous one (`backstop diff`).".to_owned(),
        );
    }
    if report.status == RunStatus::NothingSelected {
        steps.push("Check the selection settings: no target matched.".to_owned());
    }
    steps.truncate(MAX_NEXT_STEPS);
    steps
}

fn keywords(report: &RunReport) -> Vec<String> {
    let mut k = vec![
        "Backstop".to_owned(),
        report.job.name().to_owned(),
        report.status.label().to_owned(),
    ];
    if report.totals.anomalies > 0 {
        k.push("size anomaly".to_owned());
    }
    for t in report.targets.iter().filter(|t| !t.outcome.is_done()) {
        if k.len() >= MAX_KEYWORDS {
            break;
        }
        k.push(clip(&t.table, MAX_KEYWORD));
    }
    k.truncate(MAX_KEYWORDS);
    k
}

/// The AWS Chatbot custom notification of a run.
pub fn chatbot_notification(report: &RunReport) -> Value {
    let mut related: Vec<String> = report
        .targets
        .iter()
        .filter(|t| needs_attention(t))
        .chain(report.targets.iter().filter(|t| !needs_attention(t)))
        .map(|t| clip(&t.table, 255))
        .collect();
    related.truncate(MAX_RELATED);
    let title = format!("{} {}", mark(report), report.subject());
    let mut content = json!({
        "textType": "client-markdown",
        "title": clip(&title, MAX_TITLE),
        "description": description(report),
        "keywords": keywords(report),
    });
    let steps = next_steps(report);
    if !steps.is_empty() {
        content["nextSteps"] = json!(steps);
    }
    json!({
        "version": "1.0",
        "source": "custom",
        "id": report.run_id,
        "content": content,
        "metadata": {
            "summary": report.subject(),
            "eventType": format!("Backstop{}Run", capitalised(report.job.name())),
            "relatedResources": related,
            "additionalContext": {
                "job": report.job.name(),
                "slot": report.slot.to_string(),
                "run_id": report.run_id,
                "status": format!("{:?}", report.status),
                "severity": report.severity(),
            }
        }
    })
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The `Message` of a `MessageStructure=json` publish: `default` (the plain text every protocol
/// without its own key gets: e-mail, SQS, SMS...) and `https` (the Chatbot card), under SNS's
/// 256 KiB with room for the subject and attributes: the plain text is cut (targets not done
/// kept first) when both would not fit.
pub fn structured_message(report: &RunReport) -> String {
    let card = chatbot_notification(report).to_string();
    let mut budget = crate::report::MAX_EMAIL_BYTES;
    loop {
        let body = report.email_body_within(budget);
        let message = json!({ "default": body, "https": card }).to_string();
        if message.len() + 4096 <= MAX_SNS_MESSAGE_BYTES || budget < 8 * 1024 {
            return message;
        }
        budget = budget * 3 / 4;
    }
}
