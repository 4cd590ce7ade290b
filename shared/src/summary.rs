//! The daily and monthly summaries (the `summary` function, on a schedule): the period's report
//! from the catalog, published once to the topic ("✅ 3 tables backed up, 3 exports verified, 1
//! drill proven in 4 m 12 s, 0 failures"), plain text for e-mail and SQS and a Chatbot card for
//! HTTPS. A redelivered event finds the period's marker in the catalog and sends nothing again.

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::aws::Clients;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::event::ScheduleSlot;
use crate::period::{self, Period, PeriodReport};
use crate::settings::{Environment, ENV_CATALOG_TABLE, ENV_TOPIC_ARN};

/// `{"summary": "daily" | "monthly", "slot": "<aws.scheduler.scheduled-time>"}`; or, by hand,
/// `{"summary": "monthly", "period": "2026-11"}` (`period`: a month or a day).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryRequest {
    pub summary: Kind,
    #[serde(default)]
    pub slot: Option<String>,
    #[serde(default)]
    pub period: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The 24 hours before the slot.
    Daily,
    /// The calendar month before the slot's.
    Monthly,
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryOutcome {
    pub period: String,
    pub headline: String,
    /// Sent now; `false` when an earlier delivery sent it already.
    pub published: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub report: PeriodReport,
}

impl SummaryRequest {
    pub fn parse(payload: &serde_json::Value) -> Result<SummaryRequest> {
        crate::event::from_value(payload.clone()).map_err(|e| {
            Error::Payload(format!(
                "a summary payload is a JSON object {{\"summary\": \"daily\" or \"monthly\", \"slot\": time, \"period\": \"2026-11\" (optional)}}: {e}"
            ))
        })
    }

    /// The period this request covers, at `now` when it names no slot.
    pub fn period(&self, now: Timestamp) -> Result<Period> {
        // A slot that is not a time is refused even beside a period, which it does not choose.
        let at = match &self.slot {
            Some(s) => s.parse::<Timestamp>().map_err(|e| {
                Error::Payload(format!(
                    "slot {:?} is not an RFC 3339 time: {e}",
                    crate::report::clip(s, 40)
                ))
            })?,
            None => now,
        };
        let period = match &self.period {
            Some(p) => Period::parse(p).map_err(|e| Error::Payload(format!("period: {e}")))?,
            None => match self.summary {
                Kind::Daily => Period::day_before(at),
                Kind::Monthly => Period::previous(at, true),
            },
        };
        // A summary of a period that has not ended would be marked sent, and the real one, sent
        // when the period is over, would then find the marker and never go out.
        if period.to > now {
            return Err(Error::Payload(format!(
                "the period {} has not ended yet (it ends at {}, the clock says {}): a summary is sent once per period, so an early one would stand in for the real one; name a period that is over",
                period.label(),
                period.to,
                ScheduleSlot::new(now)
            )));
        }
        Ok(period)
    }
}

/// The plain-text message: the headline, the failures, then the report's tables.
pub fn text_body(report: &PeriodReport) -> String {
    report.text()
}

/// The `MessageStructure=json` message within `max` bytes: the plain text cut at a character
/// boundary (the failures come first, so they stay) when both bodies would not fit.
pub fn message_within(report: &PeriodReport, kind: Kind, max: usize) -> String {
    let card = chatbot_card(report, kind).to_string();
    let mut text = text_body(report);
    loop {
        let message = json!({ "default": text, "https": card }).to_string();
        if message.len() <= max || text.len() < 1024 {
            return message;
        }
        let mut cut = text.len() * 3 / 4;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n... (cut to fit SNS's 256 KiB; `backstop report` has it all)");
    }
}

/// The Chatbot card: the headline as title, the jobs and failures (first) as markdown.
pub fn chatbot_card(report: &PeriodReport, kind: Kind) -> serde_json::Value {
    let mut d = String::new();
    let failures: Vec<String> = report
        .targets
        .iter()
        .flat_map(|t| {
            t.failures.iter().map(move |f| {
                format!(
                    "• `{}` {} at {}: {}",
                    t.name.replace('`', "'"),
                    t.job,
                    f.slot,
                    crate::chat::literal(&f.reason, 300)
                )
            })
        })
        .collect();
    if !failures.is_empty() {
        d.push_str("*Failures*\n");
        for f in failures.iter().take(20) {
            d.push_str(f);
            d.push('\n');
        }
        if failures.len() > 20 {
            d.push_str(&format!("… and {} more\n", failures.len() - 20));
        }
    }
    d.push_str("*Runs*\n");
    for j in &report.jobs {
        d.push_str(&format!(
            "• {}: {} runs, {} succeeded{}\n",
            j.job,
            j.runs,
            j.succeeded,
            j.success_rate_pct
                .map(|p| format!(" ({p:.0}%)"))
                .unwrap_or_default()
        ));
    }
    if report.jobs.is_empty() {
        d.push_str("• no runs recorded in this period\n");
    }
    let title = format!(
        "Backstop {} summary {}: {}",
        match kind {
            Kind::Daily => "daily",
            Kind::Monthly => "monthly",
        },
        report.period,
        report.headline()
    );
    json!({
        "version": "1.0",
        "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": crate::report::clip(&title, 250),
            "description": crate::report::clip(d.trim_end(), 8000),
            "keywords": ["Backstop", "summary", report.period],
        },
        "metadata": {
            "summary": crate::report::clip(&title, 250),
            "eventType": "BackstopSummary",
            "additionalContext": { "period": report.period },
        }
    })
}

fn marker_key(kind: Kind, period: &Period) -> std::collections::HashMap<String, AttributeValue> {
    std::collections::HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(format!(
                "SUMMARY#{}",
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )),
        ),
        ("sk".to_owned(), AttributeValue::S(period.label())),
    ])
}

/// Builds the period's summary and publishes it once: a marker in the catalog
/// (`SUMMARY#<kind>` / `<period>`) is taken first with a conditional write, and given back when
/// the publish fails, so that Lambda's retry sends it.
/// `deadline` is the invocation's (Lambda's); the marker is held at most until then (5 minutes
/// outside Lambda), after which a retry takes it over.
pub async fn handle(
    clients: &Clients,
    env: &Environment,
    payload: &serde_json::Value,
    now: Timestamp,
    deadline: Option<Timestamp>,
) -> Result<SummaryOutcome> {
    let request = SummaryRequest::parse(payload)?;
    let period = request.period(now)?;
    let catalog_table = env.value(ENV_CATALOG_TABLE).ok_or_else(|| {
        Error::setting(
            ENV_CATALOG_TABLE,
            "is required: the catalog the summary reads",
        )
    })?;
    let topic = env.value(ENV_TOPIC_ARN).ok_or_else(|| {
        Error::setting(ENV_TOPIC_ARN, "is required: the topic the summary goes to")
    })?;
    let catalog = Catalog::new((*clients.dynamodb).clone(), catalog_table);
    let history = period::read(&catalog, &period).await?;
    let report = period::build(&period, &history);
    let headline = report.headline();
    let resource = format!("catalog table {catalog_table}");

    // The marker: SENDING until this invocation's deadline, then SENT. A marker left SENDING
    // by an invocation that died before it published is taken over once its deadline passed.
    let until = deadline.unwrap_or(now + jiff::SignedDuration::from_mins(5));
    let token = uuid::Uuid::new_v4().to_string();
    let mut item = marker_key(request.summary, &period);
    item.insert("kind".into(), AttributeValue::S("summary".into()));
    item.insert("state".into(), AttributeValue::S("SENDING".into()));
    item.insert("at".into(), AttributeValue::S(now.to_string()));
    item.insert(
        "until".into(),
        AttributeValue::N(until.as_second().to_string()),
    );
    item.insert("token".into(), AttributeValue::S(token.clone()));
    let taken = clients
        .dynamodb
        .put_item()
        .table_name(catalog_table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk) OR (#state = :sending AND #until < :now)")
        .expression_attribute_names("#state", "state")
        .expression_attribute_names("#until", "until")
        .expression_attribute_values(":sending", AttributeValue::S("SENDING".into()))
        .expression_attribute_values(":now", AttributeValue::N(now.as_second().to_string()))
        .send()
        .await;
    match taken {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            let old = clients
                .dynamodb
                .get_item()
                .table_name(catalog_table)
                .set_key(Some(marker_key(request.summary, &period)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| Error::aws("GetItem (summary marker)", resource.clone(), e))?
                .item
                .unwrap_or_default();
            let get = |k: &str| old.get(k).and_then(|v| v.as_s().ok()).cloned();
            let state = get("state").unwrap_or_default();
            if state == "SENT" {
                return Ok(SummaryOutcome {
                    period: report.period.clone(),
                    headline,
                    published: false,
                    message_id: get("message_id"),
                    report,
                });
            }
            // Another invocation is sending it now: fail, so that a retry (after it has
            // finished or died) sends it if that one did not; never say it was sent.
            return Err(Error::Aws {
                operation: "PutItem (summary marker)",
                resource: format!("{resource} item SUMMARY {}", period.label()),
                code: Some("ConditionalCheckFailedException".into()),
                message: format!(
                    "another invocation is sending this summary (marker {state:?} since {})",
                    get("at").unwrap_or_else(|| "?".into())
                ),
                retryable: true,
                hint: "a retry after that invocation's deadline sends it if it did not".into(),
            });
        }
        Err(e) => return Err(Error::aws("PutItem (summary marker)", resource, e)),
    }

    let message = message_within(
        &report,
        request.summary,
        crate::chat::MAX_SNS_MESSAGE_BYTES - 4096,
    );
    let subject: String = format!("Backstop summary {}", report.period)
        .chars()
        .take(99)
        .collect();
    let severity = if headline.starts_with('✅') {
        "info"
    } else if headline.starts_with('❌') {
        "error"
    } else {
        "warning"
    };
    let attr = |v: &str| {
        aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .map_err(|e| Error::Local(format!("could not build a message attribute: {e}")))
    };
    let sent = clients
        .sns
        .publish()
        .topic_arn(topic)
        .subject(subject)
        .message_structure("json")
        .message(message)
        .message_attributes("severity", attr(severity)?)
        .message_attributes("job", attr("summary")?)
        .message_attributes(
            "status",
            attr(if severity == "info" {
                "Succeeded"
            } else {
                "FailuresInPeriod"
            })?,
        )
        .send()
        .await;
    match sent {
        Ok(out) => {
            let id = out.message_id.unwrap_or_default();
            let _ = clients
                .dynamodb
                .update_item()
                .table_name(catalog_table)
                .set_key(Some(marker_key(request.summary, &period)))
                .update_expression("SET #state = :sent, message_id = :id")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":sent", AttributeValue::S("SENT".into()))
                .expression_attribute_values(":id", AttributeValue::S(id.clone()))
                .send()
                .await;
            Ok(SummaryOutcome {
                period: report.period.clone(),
                headline,
                published: true,
                message_id: Some(id),
                report,
            })
        }
        Err(e) => {
            // Give the marker back (if it is still this invocation's), so that the retry sends
            // the summary. Should this fail too, a retry takes it over after the deadline.
            let _ = clients
                .dynamodb
                .delete_item()
                .table_name(catalog_table)
                .set_key(Some(marker_key(request.summary, &period)))
                .condition_expression("#token = :token")
                .expression_attribute_names("#token", "token")
                .expression_attribute_values(":token", AttributeValue::S(token))
                .send()
                .await;
            Err(Error::aws("Publish (summary)", format!("topic {topic}"), e))
        }
    }
}
