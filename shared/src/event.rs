//! The two payloads a job accepts, and the schedule slot they name.
//!
//! - The EventBridge "Scheduled Event" envelope: its `time` is the slot; its `detail` may carry
//!   the same overrides as the manual payload (normally `{}`).
//! - A manual payload for `aws lambda invoke` or EventBridge Scheduler:
//!   `{"tables": [...], "slot": "<optional RFC 3339>", "dry_run": false, ...overrides}`.

use std::fmt;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::settings::{truncate_for_message, Overrides};

/// The schedule slot a run belongs to: the instant the schedule fired, to the second, in UTC.
/// Work is done at most once per (job, target, slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScheduleSlot(Timestamp);

impl ScheduleSlot {
    pub fn new(ts: Timestamp) -> Self {
        // Whole seconds: redeliveries of one schedule carry the same second, and sub-second
        // digits would only make two names for one slot.
        ScheduleSlot(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
    }

    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        s.trim()
            .parse::<Timestamp>()
            .map(ScheduleSlot::new)
            .map_err(|e| {
                format!(
                    "slot {:?} is not an RFC 3339 time such as 2026-11-22T02:00:00Z ({e})",
                    truncate_for_message(s)
                )
            })
    }

    pub fn timestamp(&self) -> Timestamp {
        self.0
    }

    /// The instant safety checks measure from: the later of the slot and `received_at`.
    pub fn later_of(&self, received_at: Timestamp) -> Timestamp {
        self.0.max(received_at)
    }

    /// `20261122T020000Z`: for names, where ':' is not allowed.
    pub fn compact(&self) -> String {
        self.0.strftime("%Y%m%dT%H%M%SZ").to_string()
    }
}

impl fmt::Display for ScheduleSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl Serialize for ScheduleSlot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScheduleSlot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ScheduleSlot::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
}

/// A parsed, not yet validated, request to run a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub trigger: Trigger,
    pub slot: ScheduleSlot,
    pub dry_run: bool,
    pub overrides: Overrides,
    /// When the request arrived (the clock of the process, never the payload): safety checks
    /// measure from the later of this and the slot, so an old slot cannot switch them off.
    pub received_at: Timestamp,
    /// When the invocation must end (Lambda's deadline); `None` outside Lambda. A claim on a
    /// slot never outlives it.
    pub deadline: Option<Timestamp>,
}

/// How far ahead of the clock a slot may be (clock skew). A later slot would mark work done for
/// a time that has not come: the real run of that slot would then find it "already done".
pub const MAX_SLOT_AHEAD_SECS: i64 = 60;

/// Refuses a slot in the future, unless the request only looks (dry run).
fn check_not_ahead(slot: ScheduleSlot, dry_run: bool, now: Timestamp) -> Result<()> {
    if !dry_run && slot.timestamp().as_second() > now.as_second() + MAX_SLOT_AHEAD_SECS {
        return Err(Error::Payload(format!(
            "slot {slot} is in the future (the clock says {}): a backup made now would stand for a time that has not come, and the real run of that slot would find it done; name a slot that has passed, or use dry_run",
            ScheduleSlot::new(now)
        )));
    }
    Ok(())
}

/// Refuses a slot that would put a new recovery point into the past (outside a dry run): one
/// older than `window` before `now`, or older than the target's newest complete recovery point.
/// A backup made now holds today's data; recorded under an old slot it would stand in for a
/// period it never saw, and retention would then delete the real points of that period. The
/// caller checks this only when nothing of the slot exists yet: a claim or checkpoint that
/// exists is always continued. Returns why, naming the slot.
pub fn check_backfill(
    slot: ScheduleSlot,
    now: Timestamp,
    window: jiff::SignedDuration,
    newest_complete: Option<Timestamp>,
) -> std::result::Result<(), String> {
    let t = slot.timestamp();
    if t < now - window {
        return Err(format!(
            "slot {slot} is more than {} h in the past (the clock says {}) and nothing of it exists yet: a backup made now would hold today's data under an old time, and retention would take it for that period's; backfill is refused (BACKSTOP_BACKFILL_WINDOW sets the window; a dry run only looks)",
            window.as_secs() / 3600,
            ScheduleSlot::new(now)
        ));
    }
    if let Some(newest) = newest_complete {
        if t < newest {
            return Err(format!(
                "slot {slot} is older than the newest complete recovery point ({}) and nothing of it exists yet: a backup made now cannot stand for a time before it; backfill is refused",
                ScheduleSlot::new(newest)
            ));
        }
    }
    Ok(())
}

/// Fields both payloads may carry besides the overrides.
const OWN_FIELDS: &[&str] = &["slot", "dry_run"];

impl JobRequest {
    /// Parses either payload. `now` is the slot of a manual run that names none.
    pub fn from_payload(payload: &Value, now: Timestamp) -> Result<JobRequest> {
        let Some(obj) = payload.as_object() else {
            return Err(Error::Payload(format!(
                "expected a JSON object (an EventBridge Scheduled Event or {{\"tables\": [...], \"slot\": ..., \"dry_run\": ...}}), got {}",
                kind_of(payload)
            )));
        };
        if obj.contains_key("detail-type") || obj.contains_key("source") {
            return Self::from_eventbridge(payload, now);
        }
        let (slot, dry_run, overrides) = split_fields(obj, "manual payload")?;
        let slot = match slot {
            Some(s) => ScheduleSlot::parse(&s).map_err(Error::Payload)?,
            None => ScheduleSlot::new(now),
        };
        check_not_ahead(slot, dry_run, now)?;
        Ok(JobRequest {
            trigger: Trigger::Manual,
            slot,
            dry_run,
            overrides,
            received_at: now,
            deadline: None,
        })
    }

    fn from_eventbridge(payload: &Value, now: Timestamp) -> Result<JobRequest> {
        let event: EventBridgeEvent<Value> = from_value(payload.clone())
            .map_err(|e| Error::Payload(format!("EventBridge event: {e}")))?;
        if event.detail_type != "Scheduled Event" {
            return Err(Error::Payload(format!(
                "EventBridge event of type {:?} from {:?} is not a Scheduled Event; route only schedules to Backstop",
                truncate_for_message(&event.detail_type),
                truncate_for_message(&event.source)
            )));
        }
        let time = event.time.ok_or_else(|| {
            Error::Payload(
                "Scheduled Event has no `time`; it is the schedule slot and is required".into(),
            )
        })?;
        let ts = Timestamp::new(time.timestamp(), 0)
            .map_err(|e| Error::Payload(format!("Scheduled Event `time` is out of range: {e}")))?;
        let (slot, dry_run, overrides) = match &event.detail {
            Value::Null => (None, false, Overrides::default()),
            Value::Object(map) => split_fields(map, "Scheduled Event detail")?,
            other => {
                return Err(Error::Payload(format!(
                    "Scheduled Event detail must be an object, got {}",
                    kind_of(other)
                )))
            }
        };
        if slot.is_some() {
            return Err(Error::Payload(
                "Scheduled Event detail must not carry a slot: the event's `time` is the slot"
                    .into(),
            ));
        }
        check_not_ahead(ScheduleSlot::new(ts), dry_run, now)?;
        Ok(JobRequest {
            trigger: Trigger::Schedule,
            slot: ScheduleSlot::new(ts),
            dry_run,
            overrides,
            received_at: now,
            deadline: None,
        })
    }
}

/// Splits an object into `slot`, `dry_run` and the settings overrides, refusing unknown fields.
fn split_fields(
    obj: &serde_json::Map<String, Value>,
    what: &str,
) -> Result<(Option<String>, bool, Overrides)> {
    let mut rest = obj.clone();
    let slot = match rest.remove("slot") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(Error::Payload(format!(
                "{what}: slot must be an RFC 3339 string, got {}",
                kind_of(&other)
            )))
        }
    };
    let dry_run = match rest.remove("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(Error::Payload(format!(
                "{what}: dry_run must be true or false, got {}",
                kind_of(&other)
            )))
        }
    };
    let overrides: Overrides = from_value(Value::Object(rest)).map_err(|e| {
        Error::Payload(format!(
            "{what}: {e} (besides the settings it also takes {})",
            OWN_FIELDS.join(", ")
        ))
    })?;
    Ok((slot, dry_run, overrides))
}

/// Deserializes a payload, naming the field at fault (`` `tables`: invalid type: boolean
/// `false`, expected a sequence ``): serde alone names the type it wanted, not where.
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = crate::report::clip(&e.path().to_string(), 120);
        // serde quotes the value it could not take, whatever its size: clipped.
        let inner = crate::report::clip(&e.into_inner().to_string(), 300);
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("`{path}`: {inner}")
        }
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    /// Every sample payload in events/ parses, and resolves for the job its name starts with.
    #[test]
    fn every_sample_event_is_a_valid_payload_for_its_job() {
        use crate::settings::{Environment, JobKind, Settings};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        let env = Environment::from_pairs([
            ("BACKSTOP_CATALOG_TABLE", "backstop-catalog"),
            ("BACKSTOP_EXPORT_BUCKET", "backstop-exports"),
            ("BACKSTOP_TABLE_TAG", "backup:plan=daily"),
            ("BACKSTOP_BUCKET_TAG", "backup:plan=daily"),
            ("BACKSTOP_BUCKET_BACKUP_BUCKET", "backstop-bucket-backups"),
        ]);
        let mut seen = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let payload: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            // The restore function's samples are requests, not job payloads.
            if name.starts_with("restore-") {
                let (r, _) = crate::restore::request::parse(&payload)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    r.to.starts_with(crate::restore::request::DEFAULT_PREFIX),
                    "{name}"
                );
                continue;
            }
            // The summary function's samples name their period.
            if name.starts_with("summary-") {
                let r = crate::summary::SummaryRequest::parse(&payload)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                r.period(jiff::Timestamp::now())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                continue;
            }
            let job: JobKind = name.split('-').next().unwrap().parse().unwrap();
            let request = JobRequest::from_payload(&payload, jiff::Timestamp::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            Settings::resolve(job, &env, &request).unwrap_or_else(|e| panic!("{name}: {e}"));
            seen.insert(job);
        }
        assert_eq!(
            seen.len(),
            JobKind::ALL.len(),
            "a sample for every job: {seen:?}"
        );
    }

    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-22T10:11:12.345Z".parse().unwrap()
    }

    fn scheduled(time: &str) -> Value {
        json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time,
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/backstop-daily"],
            "detail": {}
        })
    }

    #[test]
    fn scheduled_event_time_is_the_slot() {
        let r = JobRequest::from_payload(&scheduled("2026-11-22T02:00:00Z"), now()).unwrap();
        assert_eq!(r.trigger, Trigger::Schedule);
        assert_eq!(r.slot.to_string(), "2026-11-22T02:00:00Z");
        assert_eq!(r.slot.compact(), "20261122T020000Z");
        assert!(!r.dry_run);
        assert_eq!(r.overrides, Overrides::default());
    }

    #[test]
    fn manual_payload_with_tables_slot_and_dry_run() {
        let p =
            json!({"tables": ["SalesTable"], "slot": "2026-11-22T03:00:00+01:00", "dry_run": true});
        let r = JobRequest::from_payload(&p, now()).unwrap();
        assert_eq!(r.trigger, Trigger::Manual);
        assert_eq!(r.slot.to_string(), "2026-11-22T02:00:00Z");
        assert!(r.dry_run);
        assert_eq!(r.overrides.tables, Some(vec!["SalesTable".to_owned()]));
    }

    #[test]
    fn manual_payload_without_slot_uses_now_to_the_second() {
        let r = JobRequest::from_payload(&json!({}), now()).unwrap();
        assert_eq!(r.slot.to_string(), "2026-11-22T10:11:12Z");
    }

    #[test]
    fn a_slot_in_the_future_is_refused_unless_dry_run() {
        let e = JobRequest::from_payload(&json!({"slot": "2026-11-23T02:00:00Z"}), now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is in the future"), "{e}");
        let e = JobRequest::from_payload(&scheduled("2026-11-23T02:00:00Z"), now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is in the future"), "{e}");
        let r = JobRequest::from_payload(
            &json!({"slot": "2026-11-23T02:00:00Z", "dry_run": true}),
            now(),
        )
        .unwrap();
        assert!(r.dry_run);
        // Clock skew of up to a minute is fine.
        JobRequest::from_payload(&json!({"slot": "2026-11-22T10:12:00Z"}), now()).unwrap();
    }

    #[test]
    fn unknown_manual_field_is_refused_by_name() {
        let e = JobRequest::from_payload(&json!({"tabels": ["x"]}), now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `tabels`"), "{e}");
    }

    #[test]
    fn wrong_types_give_clear_errors() {
        let e = JobRequest::from_payload(&json!({"tables": "SalesTable"}), now())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("payload: manual payload:"), "{e}");
        let e = JobRequest::from_payload(&json!({"slot": "yesterday"}), now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an RFC 3339 time"), "{e}");
        let e = JobRequest::from_payload(&json!([1, 2]), now())
            .unwrap_err()
            .to_string();
        assert!(e.contains("got an array"), "{e}");
    }

    #[test]
    fn non_schedule_eventbridge_events_are_refused() {
        let mut e = scheduled("2026-11-22T02:00:00Z");
        e["detail-type"] = json!("EC2 Instance State-change Notification");
        let err = JobRequest::from_payload(&e, now()).unwrap_err().to_string();
        assert!(err.contains("not a Scheduled Event"), "{err}");
    }

    #[test]
    fn scheduled_event_detail_can_override_and_dry_run() {
        let mut e = scheduled("2026-11-22T02:00:00Z");
        e["detail"] = json!({"table_tag": "backup=daily", "dry_run": true});
        let r = JobRequest::from_payload(&e, now()).unwrap();
        assert!(r.dry_run);
        assert_eq!(r.overrides.table_tag.as_deref(), Some("backup=daily"));
        e["detail"] = json!({"nonsense": 1});
        assert!(JobRequest::from_payload(&e, now()).is_err());
    }

    #[test]
    fn sample_events_in_the_repository_parse() {
        for f in [
            "snapshot-scheduled.json",
            "snapshot-manual.json",
            "snapshot-dry-run.json",
        ] {
            let path = format!("{}/../events/{f}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let v: Value = serde_json::from_str(&text).unwrap();
            JobRequest::from_payload(&v, now()).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_json_never_panics(s in "\\PC{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = JobRequest::from_payload(&v, now());
            }
        }

        #[test]
        fn arbitrary_objects_never_panic(keys in proptest::collection::vec("[a-z_-]{1,12}", 0..6), n in 0i64..5_000_000_000) {
            let mut m = serde_json::Map::new();
            for (i, k) in keys.iter().enumerate() {
                m.insert(k.clone(), if i % 2 == 0 { json!(n) } else { json!(k) });
            }
            let _ = JobRequest::from_payload(&Value::Object(m), now());
        }
    }
}

#[cfg(test)]
mod backfill_tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_new_slot_in_the_past_is_refused_past_the_window_or_before_the_newest_point() {
        let now = t("2026-12-08T03:00:00Z");
        let day = jiff::SignedDuration::from_hours(26);
        let slot = |s: &str| ScheduleSlot::new(t(s));
        // Tonight's slot, and yesterday's retried within the window.
        assert!(check_backfill(slot("2026-12-08T02:00:00Z"), now, day, None).is_ok());
        assert!(check_backfill(slot("2026-12-07T02:00:00Z"), now, day, None).is_ok());
        // The last second of an old month: refused, naming the slot.
        let e = check_backfill(slot("2026-10-31T23:59:59Z"), now, day, None).unwrap_err();
        assert!(e.contains("2026-10-31T23:59:59Z"), "{e}");
        assert!(e.contains("backfill is refused"), "{e}");
        // Inside the window but older than the newest complete point.
        let newest = Some(t("2026-12-08T02:00:00Z"));
        let e = check_backfill(slot("2026-12-07T23:59:59Z"), now, day, newest).unwrap_err();
        assert!(
            e.contains("older than the newest complete recovery point"),
            "{e}"
        );
        assert!(check_backfill(slot("2026-12-08T02:00:00Z"), now, day, newest).is_ok());
    }
}
