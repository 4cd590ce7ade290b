//! The validate job's parts against moto, as they are built (#11): freshness judged on what the
//! catalog and DescribeContinuousBackups really say.

use backstop::catalog::Catalog;
use backstop::event::JobRequest;
use backstop::freshness::{assess, Limits, Pitr, Violation};
use backstop::jobs::{self, validate::freshness_evidence};
use backstop::report::RunStatus;
use backstop::settings::{JobKind, Settings};
use backstop_tests::Harness;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

#[tokio::test]
async fn freshness_reads_the_catalog_and_pitr_never_backed_up_stale_and_fresh() {
    let h = Harness::new().await;
    let table = h.name("Fresh");
    h.create_table(&table, 10, &[]).await;
    let catalog = Catalog::new(h.clients.dynamodb.clone(), &h.stack.catalog_table);
    let limits = Limits {
        export: None,
        ..Limits::default()
    };

    // Nothing yet: never backed up, PITR off.
    let e = freshness_evidence(&h.clients, &catalog, &table)
        .await
        .unwrap();
    assert_eq!((e.newest_backup, e.newest_export), (None, None));
    assert_eq!(e.pitr, Pitr::Off);
    let f = assess(Timestamp::now(), &Limits::default(), &e);
    assert_eq!(
        f.violations,
        vec![
            Violation::NeverBackedUp,
            Violation::NeverExported,
            Violation::PitrOff
        ]
    );

    // A snapshot run that turns PITR on: fresh now, stale 27 hours later.
    let request = JobRequest::from_payload(&json!({"tables": [table]}), Timestamp::now()).unwrap();
    let settings = Settings::resolve(
        JobKind::Snapshot,
        &h.env(&[("BACKSTOP_ENABLE_PITR", "true")]),
        &request,
    )
    .unwrap();
    let r = jobs::run(JobKind::Snapshot, &h.clients, &settings, &request).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let e = freshness_evidence(&h.clients, &catalog, &table)
        .await
        .unwrap();
    let made = e.newest_backup.expect("the new backup is seen");
    assert!(
        (Timestamp::now() - SignedDuration::from_mins(5)) < made,
        "{made}"
    );
    assert!(matches!(e.pitr, Pitr::On { .. }), "{:?}", e.pitr);
    let mut e_known_lag = e.clone();
    e_known_lag.pitr = Pitr::On {
        latest_restorable: Some(Timestamp::now()),
    };
    assert!(assess(Timestamp::now(), &limits, &e_known_lag).is_fresh());
    let later = Timestamp::now() + SignedDuration::from_hours(27);
    let f = assess(later, &limits, &e_known_lag);
    assert!(
        matches!(f.violations[0], Violation::BackupStale { age_s, limit_s: 93_600 } if age_s >= 27 * 3600 - 5),
        "{f:?}"
    );
    // Whatever moto says of the latest restorable time, it is judged, never taken as fresh
    // when absent.
    let f = assess(Timestamp::now(), &limits, &e);
    if let Pitr::On {
        latest_restorable: None,
    } = e.pitr
    {
        assert!(!f.is_fresh());
    }

    // A catalog that cannot be read is an error, never "never backed up".
    let missing = Catalog::new(h.clients.dynamodb.clone(), "no-such-catalog");
    let err = freshness_evidence(&h.clients, &missing, &table)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-catalog"), "{err}");
}
