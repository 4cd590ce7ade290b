//! Retention when the listing fails: an error partway through pagination, and throttling past
//! the SDK's retries. The faults come from aws-smithy-mocks rules on the same client that talks
//! to moto (every other request passes through), because moto never pages ListBackups or
//! throttles.

use aws_sdk_dynamodb::operation::list_backups::{ListBackupsError, ListBackupsOutput};
use aws_sdk_dynamodb::types::error::InternalServerError;
use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};
use backstop::aws::Clients;
use backstop::event::JobRequest;
use backstop::jobs::{retention, snapshot};
use backstop::report::{Outcome, RunReport};
use backstop::settings::{self, JobKind, Settings};
use backstop_tests::Harness;
use serde_json::json;

/// Five backups of `table`, one per slot, made by the snapshot job.
async fn history(h: &Harness, table: &str) {
    h.create_table(table, 2, &[]).await;
    for day in 1..=5 {
        let request = JobRequest::from_payload(
            &json!({"tables": [table], "slot": format!("2026-11-0{day}T02:00:00Z")}),
            jiff::Timestamp::now(),
        )
        .unwrap();
        let settings = Settings::resolve(JobKind::Snapshot, &h.env(&[]), &request).unwrap();
        assert_eq!(
            snapshot::run(&h.clients, &settings, &request)
                .await
                .totals
                .created,
            1
        );
    }
}

fn with_rules(h: &Harness, rules: &[&Rule]) -> Clients {
    let mut interceptor = MockResponseInterceptor::new()
        .rule_mode(RuleMode::MatchAny)
        .allow_passthrough();
    for r in rules {
        interceptor = interceptor.with_rule(r);
    }
    let conf = aws_sdk_dynamodb::config::Builder::from(&h.config)
        .interceptor(interceptor)
        .build();
    Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(conf).into(),
        ..h.clients.clone()
    }
}

/// Retention of `tables` with the policy keep_last=1,min_complete=1, configured as a deployed
/// function would be (a payload may not loosen the policy).
async fn prune(h: &Harness, clients: &Clients, tables: &[&str]) -> RunReport {
    let list = tables.join(",");
    let env = h.env(&[
        (settings::ENV_TABLES, &list),
        (settings::ENV_RETENTION_POLICY, "keep_last=1,min_complete=1"),
    ]);
    let request = JobRequest::from_payload(&json!({}), jiff::Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Retention, &env, &request).unwrap();
    retention::run(clients, &settings, &request).await
}

fn outcome<'a>(r: &'a RunReport, table: &str) -> &'a Outcome {
    &r.targets.iter().find(|t| t.table == table).unwrap().outcome
}

#[tokio::test]
async fn an_error_partway_through_pagination_deletes_nothing_for_that_table_only() {
    let h = Harness::new().await;
    let (paged, healthy) = (h.name("Paged"), h.name("Healthy"));
    history(&h, &paged).await;
    history(&h, &healthy).await;
    // Page 1: two real summaries and a pointer to more. Page 2: a server error.
    let real = h
        .clients
        .dynamodb
        .list_backups()
        .table_name(&paged)
        .send()
        .await
        .unwrap();
    let first_page: Vec<_> = real.backup_summaries()[..2].to_vec();
    let next = first_page[1].backup_arn().unwrap().to_owned();
    let t = paged.clone();
    let page_one = mock!(aws_sdk_dynamodb::Client::list_backups)
        .match_requests(move |r| {
            r.table_name() == Some(t.as_str()) && r.exclusive_start_backup_arn().is_none()
        })
        .then_output(move || {
            ListBackupsOutput::builder()
                .set_backup_summaries(Some(first_page.clone()))
                .last_evaluated_backup_arn(next.clone())
                .build()
        });
    let page_two = mock!(aws_sdk_dynamodb::Client::list_backups)
        .match_requests(|r| r.exclusive_start_backup_arn().is_some())
        .then_error(|| {
            ListBackupsError::InternalServerError(
                InternalServerError::builder().message("injected").build(),
            )
        });
    let clients = with_rules(&h, &[&page_one, &page_two]);

    let r = prune(&h, &clients, &[&paged, &healthy]).await;
    match outcome(&r, &paged) {
        Outcome::Failed {
            operation, error, ..
        } => {
            assert_eq!(operation, "ListBackups");
            assert!(
                error.starts_with("nothing deleted: the listing is incomplete"),
                "{error}"
            );
            assert!(error.contains("on page 2"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(page_two.num_calls() >= 1);
    assert_eq!(
        h.backups_of(&paged).await.len(),
        5,
        "nothing deleted on an incomplete view"
    );
    assert!(
        matches!(outcome(&r, &healthy), Outcome::Retained { deleted: 4, .. }),
        "{r:#?}"
    );
    assert_eq!(h.backups_of(&healthy).await.len(), 1);
    assert!(r.needs_retry());
    assert!(r.email_body().contains("the listing is incomplete"));

    // The run record keeps retention's own counters.
    let record = h.run_record(&r).await;
    let number = |k: &str| record.get(k).and_then(|v| v.as_n().ok()).cloned();
    assert_eq!(number("deleted").as_deref(), Some("4"));
    assert_eq!(
        number("kept").as_deref(),
        Some(r.totals.kept.to_string().as_str())
    );
    assert_eq!(number("failed").as_deref(), Some("1"));
}

#[tokio::test]
async fn throttling_past_the_retries_deletes_nothing_and_is_retryable() {
    let h = Harness::new().await;
    let table = h.name("Throttled");
    history(&h, &table).await;
    let t = table.clone();
    let throttled = mock!(aws_sdk_dynamodb::Client::list_backups)
        .match_requests(move |r| r.table_name() == Some(t.as_str()))
        .then_error(|| {
            ListBackupsError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate of requests exceeds the allowed throughput.")
                    .build(),
            )
        });
    let clients = with_rules(&h, &[&throttled]);

    let r = prune(&h, &clients, &[&table]).await;
    match outcome(&r, &table) {
        Outcome::Failed {
            error, retryable, ..
        } => {
            assert!(*retryable, "{error}");
            assert!(
                error.contains("ThrottlingException") || error.contains("Rate of requests"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        throttled.num_calls() >= 3,
        "the SDK retried: {} calls",
        throttled.num_calls()
    );
    assert_eq!(h.backups_of(&table).await.len(), 5);
}
