//! Table drills and the drill sweep against moto (#35, point 7): a drill tags the table it
//! restores, verifies and deletes only a table that is its own (one it restored, or one DynamoDB
//! says was restored from its backup: the drill tags are no proof), and the sweep deletes only
//! drill-prefix tables that carry the drill tag; a short drill prefix is refused at settings load.

use std::time::Duration;

use backstop::catalog::Catalog;
use backstop::drill::{DrillCtx, DrillLevel, DrillState};
use backstop::event::JobRequest;
use backstop::report::RunStatus;
use backstop::settings::{JobKind, Settings, ENV_DRILL_TABLE_PREFIX};
use backstop_testkit::fault_proxy::{Fault, FaultProxy};
use backstop_testkit::local;
use backstop_tests::{run_job, Harness};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

async fn table_exists(h: &Harness, table: &str) -> bool {
    h.clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .is_ok()
}

/// A table's tags as moto lists them.
async fn tags_of(h: &Harness, table: &str) -> Vec<(String, String)> {
    let arn = h
        .clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .table_arn
        .unwrap();
    h.clients
        .dynamodb
        .list_tags_of_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

fn has(tags: &[(String, String)], key: &str, value: &str) -> bool {
    tags.iter().any(|(k, v)| k == key && v == value)
}

/// A table with a complete backup in the catalog, to drill.
async fn backed_up(h: &Harness, base: &str) -> String {
    let table = h.name(base);
    h.create_table(&table, 12, &[]).await;
    let r = run_job(h, JobKind::Snapshot, &[], json!({"tables": [table]})).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    table
}

#[tokio::test]
async fn the_sweep_deletes_only_old_drill_prefix_tables_that_carry_the_drill_tag() {
    let h = Harness::new().await;
    // This test's own prefix: other tests' drill tables are not its to sweep.
    let prefix = format!("{}drill-", h.prefix);
    let drill = [("backstop:drill", "true")];
    let (tagged, plain, not_true, open, unreadable, outside) = (
        format!("{prefix}left-behind"),
        format!("{prefix}plain"),
        format!("{prefix}not-true"),
        format!("{prefix}open"),
        format!("{prefix}unreadable"),
        h.name("outside"),
    );
    h.create_table(&tagged, 1, &drill).await;
    h.create_table(&plain, 1, &[]).await;
    h.create_table(&not_true, 1, &[("backstop:drill", "false")])
        .await;
    h.create_table(&open, 1, &drill).await;
    h.create_table(&unreadable, 1, &drill).await;
    // The drill tag without the prefix: never the sweep's.
    h.create_table(&outside, 1, &drill).await;

    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    proxy.inject(Fault::new(
        "ListTagsOfResource",
        &unreadable,
        400,
        "AccessDeniedException",
    ));
    let clients = backstop_testkit::clients_through(&proxy).await;
    let catalog = Catalog::new((*clients.dynamodb).clone(), &h.stack.catalog_table);
    let ctx = DrillCtx {
        clients: &clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "sweep-test",
        witness_exports: None,
    };
    let open_drills = std::slice::from_ref(&open);

    // Younger than the age: nothing is judged, nothing deleted.
    let young = ctx
        .sweep(open_drills, SignedDuration::from_hours(1))
        .await
        .unwrap();
    assert_eq!(young, backstop::drill::Swept::default());

    // Older than the age (zero: moto's clock cannot be moved a day on): only the tagged table
    // left behind goes.
    let swept = ctx.sweep(open_drills, SignedDuration::ZERO).await.unwrap();
    println!("deleted: {:?}", swept.deleted);
    for l in &swept.left_alone {
        println!("left alone: {}: {}", l.table, l.reason);
    }
    assert_eq!(swept.deleted, vec![tagged.clone()], "{swept:#?}");
    assert!(!table_exists(&h, &tagged).await);
    for kept in [&plain, &not_true, &open, &unreadable, &outside] {
        assert!(table_exists(&h, kept).await, "{kept} was deleted");
    }
    let said = |table: &str, why: &str| {
        swept
            .left_alone
            .iter()
            .any(|l| l.table == table && l.reason.contains(why))
    };
    assert!(
        said(&plain, "not the tag backstop:drill=true"),
        "{swept:#?}"
    );
    assert!(
        said(&not_true, "not the tag backstop:drill=true"),
        "{swept:#?}"
    );
    assert!(
        said(&unreadable, "its tags could not be read") && said(&unreadable, "AccessDenied"),
        "{swept:#?}"
    );
    assert_eq!(swept.left_alone.len(), 3, "{swept:#?}");
    assert!(proxy
        .requests("DeleteTable")
        .iter()
        .all(|b| b.contains(&tagged)));
}

/// Creates an empty table, tagged with `tags`.
async fn create(clients: &backstop::aws::Clients, name: &str, tags: &[(&str, &str)]) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, Tag,
    };
    let mut req = clients
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        );
    for (k, v) in tags {
        req = req.tags(Tag::builder().key(*k).value(*v).build().unwrap());
    }
    req.send().await.unwrap();
}

#[tokio::test]
async fn the_validate_run_sweeps_a_tagged_drill_table_a_day_old_and_reports_an_untagged_one() {
    // moto of this test's own, its clock two days back while the tables are made: they are
    // older than the sweep's day when validate runs.
    let clock =
        std::env::temp_dir().join(format!("backstop-clock-{}", uuid::Uuid::new_v4().simple()));
    let then = Timestamp::now() - SignedDuration::from_hours(48);
    std::fs::write(&clock, format!("{}\n", then.strftime("%Y-%m-%d %H:%M:%S"))).unwrap();
    let emulator = local::Emulator::start_with_clock(Some(&clock))
        .expect("moto under libfaketime (apt-get install faketime)");
    let config = backstop::aws::emulator_config(emulator.endpoint()).await;
    let stack = local::provision(&config, emulator.endpoint(), "s-")
        .await
        .unwrap();
    let clients = backstop::aws::Clients::from_config(&config);
    let prefix = "s-drill-tables-";
    let (source, left, plain) = (
        "s-Source".to_owned(),
        format!("{prefix}left-behind"),
        format!("{prefix}plain"),
    );
    create(&clients, &source, &[]).await;
    create(&clients, &left, &[("backstop:drill", "true")]).await;
    create(&clients, &plain, &[]).await;
    std::fs::write(
        &clock,
        format!("{}\n", Timestamp::now().strftime("%Y-%m-%d %H:%M:%S")),
    )
    .unwrap();

    let env = backstop::settings::Environment::from_pairs([
        (
            backstop::settings::ENV_CATALOG_TABLE,
            stack.catalog_table.as_str(),
        ),
        (backstop::settings::ENV_TOPIC_ARN, stack.topic_arn.as_str()),
        (backstop::settings::ENV_TABLES, source.as_str()),
        (ENV_DRILL_TABLE_PREFIX, prefix),
        ("BACKSTOP_PITR_MAX_LAG", "off"),
    ]);
    let request = JobRequest::from_payload(&json!({}), Timestamp::now()).unwrap();
    let settings = Settings::resolve(JobKind::Validate, &env, &request).unwrap();
    let r = backstop::jobs::run(JobKind::Validate, &clients, &settings, &request).await;
    let exists = |table: String| {
        let ddb = clients.dynamodb.clone();
        async move { ddb.describe_table().table_name(table).send().await.is_ok() }
    };
    assert!(!exists(left.clone()).await, "{left} is left: {r:#?}");
    assert!(exists(plain.clone()).await, "{plain} was deleted");
    let listed = r
        .excluded
        .iter()
        .find(|e| e.table == plain)
        .unwrap_or_else(|| panic!("{plain} is not in the report: {r:#?}"));
    println!("{}: {}", listed.table, listed.reason);
    assert!(
        listed.reason.contains("not the tag backstop:drill=true"),
        "{}",
        listed.reason
    );
    assert!(r.excluded.iter().all(|e| e.table != left), "{r:#?}");
    let body = r.email_body();
    assert!(body.contains(&plain), "{body}");
    let _ = std::fs::remove_file(&clock);
}

#[tokio::test]
async fn a_drill_tags_the_table_it_restores_and_deletes_it_at_its_end() {
    let h = Harness::new().await;
    let table = backed_up(&h, "Tagged").await;
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let prefix = format!("{}drill-", h.prefix);
    let ctx = DrillCtx {
        clients: &h.clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "tags-test",
        witness_exports: None,
    };
    let d = ctx
        .begin(&table, false, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    let d = ctx.step(&d).await.unwrap();
    assert_eq!(d.state, DrillState::Active, "{d:#?}");
    assert!(d.made, "{d:#?}");
    let tags = tags_of(&h, &d.drill_table).await;
    println!("{}: {tags:?}", d.drill_table);
    assert!(has(&tags, "backstop:drill", "true"), "{tags:?}");
    assert!(has(&tags, "backstop:drill-of", &table), "{tags:?}");
    let d = ctx
        .drive(
            d,
            Timestamp::now() + SignedDuration::from_secs(60),
            Duration::from_millis(200),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(d.state, DrillState::Cleaned, "{d:#?}");
    assert!(!table_exists(&h, &d.drill_table).await);
}

#[tokio::test]
async fn a_drill_whose_table_name_is_taken_by_a_table_not_its_own_fails_and_leaves_it() {
    let h = Harness::new().await;
    let table = backed_up(&h, "Taken").await;
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let prefix = format!("{}drill-", h.prefix);
    let ctx = DrillCtx {
        clients: &h.clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "taken-test",
        witness_exports: None,
    };
    let other = h.name("Other");
    // Someone's table under the drill's name: no tags; then one tagged as a drill of another
    // table. Neither is adopted, neither deleted.
    for (i, tags) in [
        vec![],
        vec![
            ("backstop:drill", "true"),
            ("backstop:drill-of", other.as_str()),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let d = ctx
            .begin(
                &table,
                false,
                Timestamp::now() + SignedDuration::from_secs(i as i64),
            )
            .await
            .unwrap()
            .unwrap();
        h.create_table(&d.drill_table, 3, &tags).await;
        let d = ctx.step(&d).await.unwrap();
        println!("{}", d.detail);
        assert_eq!(d.state, DrillState::Verified, "{d:#?}");
        assert_eq!(d.level, Some(DrillLevel::Failed), "{d:#?}");
        assert!(!d.made, "{d:#?}");
        assert!(
            d.detail
                .contains("is taken by a table that is not this drill's"),
            "{}",
            d.detail
        );
        let d = ctx.step(&d).await.unwrap();
        assert_eq!(d.state, DrillState::Cleaned, "{d:#?}");
        assert!(
            table_exists(&h, &d.drill_table).await,
            "{} was deleted",
            d.drill_table
        );
        let count = h
            .clients
            .dynamodb
            .scan()
            .table_name(&d.drill_table)
            .send()
            .await
            .unwrap()
            .count;
        assert_eq!(count, 3, "the table is left as it was");
    }
}

#[tokio::test]
async fn a_table_made_under_the_drill_name_with_the_drill_tags_is_neither_verified_nor_deleted() {
    let h = Harness::new().await;
    let table = backed_up(&h, "Forged").await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let catalog = Catalog::new((*clients.dynamodb).clone(), &h.stack.catalog_table);
    let prefix = format!("{}drill-", h.prefix);
    let ctx = DrillCtx {
        clients: &clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "forged-test",
        witness_exports: None,
    };
    let d = ctx
        .begin(&table, false, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    // Someone allowed to create tables makes one under the drill's predictable name, carrying
    // the drill's own tags, with the source's schema and item count: were tags proof, the drill
    // would verify it as its restore and then delete it.
    h.create_table(
        &d.drill_table,
        12,
        &[
            ("backstop:drill", "true"),
            ("backstop:drill-of", table.as_str()),
        ],
    )
    .await;
    let d = ctx.step(&d).await.unwrap();
    println!("{}", d.detail);
    assert_eq!(d.state, DrillState::Verified, "{d:#?}");
    assert_eq!(d.level, Some(DrillLevel::Failed), "{d:#?}");
    assert!(!d.made, "{d:#?}");
    assert!(d.verify_s.is_none() && d.restore_s.is_none(), "{d:#?}");
    assert!(
        d.detail.contains(&format!(
            "the drill table's name {} is taken by a table that is not this drill's",
            d.drill_table
        )),
        "{}",
        d.detail
    );
    assert!(
        d.detail.contains(&format!(
            "does not say it was restored from this drill's backup {}",
            d.backup_arn
        )) && d.detail.contains("do not make it the drill's"),
        "{}",
        d.detail
    );
    let d = ctx
        .drive(
            d,
            Timestamp::now() + SignedDuration::from_secs(60),
            Duration::from_millis(200),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(d.state, DrillState::Cleaned, "{d:#?}");
    assert_eq!(d.level, Some(DrillLevel::Failed), "{d:#?}");
    println!("{}", d.detail);
    assert!(d.detail.contains("left alone, not deleted"), "{}", d.detail);
    assert!(
        table_exists(&h, &d.drill_table).await,
        "{} was deleted",
        d.drill_table
    );
    // Neither scanned (verified) nor deleted by the drill.
    for op in ["Scan", "DeleteTable"] {
        let asked = proxy.requests(op);
        assert!(
            asked.iter().all(|b| !b.contains(&d.drill_table)),
            "{op} on {}: {asked:?}",
            d.drill_table
        );
    }
    let count = h
        .clients
        .dynamodb
        .scan()
        .table_name(&d.drill_table)
        .send()
        .await
        .unwrap()
        .count;
    assert_eq!(count, 12, "the table is left as it was");
}

#[tokio::test]
async fn a_drill_whose_restore_answer_is_lost_takes_its_table_on_by_its_backup_and_tags_it() {
    let h = Harness::new().await;
    let table = backed_up(&h, "Lost").await;
    let proxy = FaultProxy::start(&local::test_endpoint().unwrap()).await;
    let clients = backstop_testkit::clients_through(&proxy).await;
    let catalog = Catalog::new((*clients.dynamodb).clone(), &h.stack.catalog_table);
    let prefix = format!("{}drill-", h.prefix);
    let ctx = DrillCtx {
        clients: &clients,
        catalog: &catalog,
        prefix: &prefix,
        run_id: "lost-test",
        witness_exports: None,
    };
    let d = ctx
        .begin(&table, false, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    // The restore is carried out, its answer lost: the drill never sees the table's ARN, so it
    // cannot tag it then; the name is found taken, by a table restored from the drill's backup.
    proxy.lose_answers("RestoreTableFromBackup", &d.drill_table, 1);
    let mut d = d;
    for _ in 0..3 {
        match ctx.step(&d).await {
            Ok(next) => {
                d = next;
                break;
            }
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    // The SDK asked again and was told the name is taken: the drill took it on by its backup.
    let restores = proxy.requests("RestoreTableFromBackup").len();
    println!("RestoreTableFromBackup asked {restores} times");
    assert!(restores >= 2, "{restores}");
    assert_eq!(d.state, DrillState::Active, "{d:#?}");
    assert!(d.made, "{d:#?}");
    let tags = tags_of(&h, &d.drill_table).await;
    assert!(
        has(&tags, "backstop:drill", "true") && has(&tags, "backstop:drill-of", &table),
        "{tags:?}"
    );
    let d = ctx
        .drive(
            d,
            Timestamp::now() + SignedDuration::from_secs(60),
            Duration::from_millis(200),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(d.state, DrillState::Cleaned, "{d:#?}");
    assert!(!table_exists(&h, &d.drill_table).await);
}

#[tokio::test]
async fn a_drill_prefix_too_short_or_starting_the_catalogs_name_is_refused_at_settings_load() {
    let h = Harness::new().await;
    let request =
        JobRequest::from_payload(&json!({"tables": [h.name("Any")]}), Timestamp::now()).unwrap();
    let resolve = |prefix: &str| {
        Settings::resolve(
            JobKind::Validate,
            &h.env(&[(ENV_DRILL_TABLE_PREFIX, prefix)]),
            &request,
        )
    };
    let ours = format!("{}drill-", h.prefix);
    assert_eq!(resolve(&ours).unwrap().drill_table_prefix, ours);
    for (prefix, says) in [
        ("bd-", "must be 8 to 100 characters"),
        ("drill-0", "must be 8 to 100 characters"),
        // The harness's catalog is <prefix>catalog.
        (h.prefix.as_str(), "begins the name of the catalog table"),
        ("restored-drill-", "overlaps the restore prefix"),
    ] {
        let e = resolve(prefix).unwrap_err().to_string();
        println!("{prefix}: {e}");
        assert!(
            e.starts_with(&format!("setting {ENV_DRILL_TABLE_PREFIX}: ")) && e.contains(says),
            "{e}"
        );
    }
    // Every job loads the same settings: the snapshot job refuses it too.
    assert!(Settings::resolve(
        JobKind::Snapshot,
        &h.env(&[(ENV_DRILL_TABLE_PREFIX, "bd-")]),
        &request
    )
    .is_err());
}
