//! Faults moto never produces (access denied, throttling, a failing catalog), injected by a small
//! proxy in front of it.

use backstop::aws::{emulator_config, Clients};
use backstop::event::JobRequest;
use backstop::jobs::snapshot;
use backstop::report::{Outcome, RunReport};
use backstop::settings::{JobKind, Settings};
use backstop_tests::fault_proxy::{Fault, FaultProxy};
use backstop_tests::Harness;
use serde_json::{json, Value};

async fn run_via(clients: &Clients, h: &Harness, payload: Value) -> RunReport {
    let request = JobRequest::from_payload(&payload, jiff::Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Snapshot, &h.env(&[]), &request).unwrap();
    snapshot::run(clients, &settings, &request).await
}

fn outcome<'a>(r: &'a RunReport, table: &str) -> &'a Outcome {
    &r.targets.iter().find(|t| t.table == table).unwrap().outcome
}

/// A fault proxy in front of the test's emulator with one fault injected, and clients that
/// talk through it.
async fn through_proxy(h: &Harness, f: Fault) -> (FaultProxy, Clients) {
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    proxy.inject(f);
    let clients = Clients::from_config(&emulator_config(&proxy.endpoint).await);
    (proxy, clients)
}

#[tokio::test]
async fn access_denied_on_one_table_fails_it_alone_says_what_to_do_and_a_retry_redoes_only_it() {
    let h = Harness::new().await;
    let (open, locked) = (h.name("Open"), h.name("Locked"));
    h.create_table(&open, 3, &[]).await;
    h.create_table(&locked, 3, &[]).await;
    let (proxy, clients) = through_proxy(
        &h,
        Fault::new(
            "CreateBackup",
            &format!("\"{locked}\""),
            400,
            "AccessDeniedException",
        ),
    )
    .await;
    let payload = json!({"tables": [open, locked], "slot": "2026-11-21T02:00:00Z"});

    let r = run_via(&clients, &h, payload.clone()).await;
    assert!(
        matches!(outcome(&r, &open), Outcome::Created { .. }),
        "{r:#?}"
    );
    match outcome(&r, &locked) {
        Outcome::Failed {
            operation,
            error,
            retryable,
        } => {
            assert_eq!(operation, "CreateBackup");
            assert!(!retryable);
            assert!(
                error.contains(&format!(
                    "CreateBackup on table {locked} failed: injected AccessDeniedException"
                )),
                "{error}"
            );
            assert!(
                error.contains(&format!(
                    "grant CreateBackup on table {locked} to the function's role"
                )),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(r.needs_retry());
    assert!(h.backups_of(&locked).await.is_empty());
    assert_eq!(
        proxy.injected(),
        1,
        "access denied is not retried by the SDK"
    );

    // Permission granted: the retry of the slot backs up only the table that failed.
    proxy.clear();
    let retry = run_via(&clients, &h, payload).await;
    assert_eq!(retry.totals.created, 1, "{retry:#?}");
    assert_eq!(retry.totals.already_done, 1);
    assert!(matches!(outcome(&retry, &locked), Outcome::Created { .. }));
    assert_eq!(h.backups_of(&open).await.len(), 1);
    assert_eq!(h.backups_of(&locked).await.len(), 1);
}

#[tokio::test]
async fn throttling_past_the_sdk_retries_is_reported_as_retryable() {
    let h = Harness::new().await;
    let table = h.name("Throttled");
    h.create_table(&table, 3, &[]).await;
    let (proxy, clients) = through_proxy(
        &h,
        Fault::new(
            "CreateBackup",
            &format!("\"{table}\""),
            400,
            "ThrottlingException",
        ),
    )
    .await;

    let r = run_via(
        &clients,
        &h,
        json!({"tables": [table], "slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    match outcome(&r, &table) {
        Outcome::Failed {
            error, retryable, ..
        } => {
            assert!(retryable, "{error}");
            assert!(
                error.contains("ThrottlingException") || error.contains("injected"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        proxy.injected() >= 2,
        "the SDK retried throttling: {} attempts",
        proxy.injected()
    );
    assert!(h.backups_of(&table).await.is_empty());
}

#[tokio::test]
async fn without_a_working_catalog_no_backup_is_made() {
    let h = Harness::new().await;
    let table = h.name("NoCatalog");
    h.create_table(&table, 3, &[]).await;
    // The claim is an UpdateItem on the catalog; make it fail for good.
    let (_proxy, clients) = through_proxy(
        &h,
        Fault::new(
            "UpdateItem",
            &h.stack.catalog_table,
            400,
            "AccessDeniedException",
        ),
    )
    .await;

    let r = run_via(
        &clients,
        &h,
        json!({"tables": [table], "slot": "2026-11-21T02:00:00Z"}),
    )
    .await;
    match outcome(&r, &table) {
        Outcome::Failed {
            operation, error, ..
        } => {
            assert_eq!(operation, "UpdateItem (claim)");
            assert!(
                error.contains(&format!("catalog table {}", h.stack.catalog_table)),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Without the idempotency guard, Backstop does nothing rather than risk a duplicate.
    assert!(h.backups_of(&table).await.is_empty());
}
