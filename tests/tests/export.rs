//! The export job against moto: logical exports exact for every DynamoDB type, read back and
//! imported with ImportTable; interrupted and resumed; under faults; native exports' requests,
//! finalization from manifests in AWS's format, and chains; retention over exports.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue as A;
use backstop::aws::Clients;
use backstop::ddbjson::Item;
use backstop::event::JobRequest;
use backstop::export::logical::fingerprint_table;
use backstop::export::{reader, ExportMeta};
use backstop::jobs;
use backstop::report::{Outcome, RunReport};
use backstop::settings::{JobKind, Settings};
use backstop_tests::fault_proxy::{Chaos, Fault, FaultProxy};
use backstop_tests::{clients_through, place_native_manifests, put_every_type, Harness};
use jiff::Timestamp;
use serde_json::{json, Value};

async fn export_run(
    clients: &Clients,
    h: &Harness,
    env: &[(&str, String)],
    payload: Value,
    deadline: Option<Timestamp>,
) -> RunReport {
    let mut request = JobRequest::from_payload(&payload, Timestamp::now()).unwrap();
    request.deadline = deadline;
    // These tests make their history with fixed slots in the past, which Backstop refuses as
    // backfill by default: a wide window, unless the test sets its own (later pairs win).
    let mut pairs: Vec<(&str, &str)> = vec![(HISTORY_WINDOW.0, HISTORY_WINDOW.1)];
    pairs.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
    let settings = Settings::resolve(JobKind::Export, &h.env(&pairs), &request).unwrap();
    jobs::run(JobKind::Export, clients, &settings, &request).await
}

/// The backfill window of tests that make history with fixed past slots.
const HISTORY_WINDOW: (&str, &str) = ("BACKSTOP_BACKFILL_WINDOW", "3650d");

fn target<'a>(r: &'a RunReport, table: &str) -> &'a backstop::report::TargetReport {
    r.targets
        .iter()
        .find(|t| t.table == table)
        .unwrap_or_else(|| panic!("no target {table}: {r:#?}"))
}

fn meta_of(r: &RunReport, table: &str) -> ExportMeta {
    target(r, table).export.clone().expect("export meta")
}

async fn scan_items(clients: &Clients, table: &str) -> HashMap<String, Item> {
    let items: Vec<Item> = clients
        .dynamodb
        .scan()
        .table_name(table)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    items
        .into_iter()
        .map(|i| (i["id"].as_s().unwrap().clone(), i))
        .collect()
}

/// Reads an export back with Backstop's reader, refusing duplicate items.
async fn read_back(
    clients: &Clients,
    meta: &ExportMeta,
) -> (HashMap<String, Item>, reader::ReadBack) {
    let mut items = HashMap::new();
    let mut dups = Vec::new();
    let rb = reader::read_export(
        &clients.s3,
        &meta.bucket,
        meta.manifest_key.as_deref().expect("manifest key"),
        |item| {
            let id = item["id"].as_s().unwrap().clone();
            if items.insert(id.clone(), item).is_some() {
                dups.push(id);
            }
        },
    )
    .await
    .unwrap();
    assert!(dups.is_empty(), "duplicate items in the export: {dups:?}");
    (items, rb)
}

/// Items of every DynamoDB type, in maps and lists too, and one near the 400 KB limit.
/// `moto_import`: leave out what moto's ImportTable parser (py_partiql_parser) gets wrong on
/// valid JSON: escaped quotes and backslashes in strings, and empty maps (it drops the rest of
/// the file). AWS's ImportTable reads standard JSON; the read-back test covers these values.
#[tokio::test]
async fn a_logical_export_of_every_type_reads_back_exactly_imports_and_is_made_once() {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".into()));
    let table = h.name("Types");
    h.create_table(&table, 400, &[]).await;
    put_every_type(&h.clients, &table, false).await;
    let payload = json!({"tables": [table], "slot": "2026-11-22T03:00:00Z", "segments": 3});

    let r = export_run(&h.clients, &h, &env, payload.clone(), None).await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Created { .. }),
        "{r:#?}"
    );
    let meta = meta_of(&r, &table);
    assert_eq!(meta.bucket, bucket);
    assert_eq!(meta.root, format!("backstop/{table}/20261122T030000Z"));
    let fp = meta.fingerprint.expect("fingerprint");
    assert_eq!(fp.items, 402);

    // Read back: exactly the table's items, every type unchanged.
    let (exported, rb) = read_back(&h.clients, &meta).await;
    let scanned = scan_items(&h.clients, &table).await;
    assert_eq!(exported.len(), scanned.len());
    for (id, item) in &scanned {
        assert_eq!(exported.get(id), Some(item), "item {id} differs");
    }
    let of_table = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    assert!(
        rb.fingerprint.same_content(&of_table),
        "{} vs {}",
        rb.fingerprint,
        of_table
    );
    assert!(fp.same_content(&of_table));
    assert!(
        rb.files.len() >= 3,
        "one file per segment at least: {:?}",
        rb.files.len()
    );

    // The Backstop manifest sits beside AWS's, with the same fingerprint.
    let manifest = backstop::export::s3io::get(
        &h.clients.s3,
        &bucket,
        &backstop::export::backstop_manifest_key(&meta.root),
    )
    .await
    .unwrap()
    .expect("backstop-manifest.json");
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["fingerprint"], fp.to_string());
    assert_eq!(manifest["item_count"], 402);
    assert_eq!(manifest["segments"].as_array().unwrap().len(), 3);
    assert_eq!(
        manifest["key_schema"]["KeySchema"][0]["AttributeName"],
        "id"
    );

    // ImportTable takes the data prefix as it takes a native export's (a table of every type
    // but the two moto's import parser mangles, see put_every_type).
    let source = h.name("Importable");
    h.create_table(&source, 300, &[]).await;
    put_every_type(&h.clients, &source, true).await;
    let r = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [source], "slot": "2026-11-22T03:00:00Z", "segments": 3}),
        None,
    )
    .await;
    let source_meta = meta_of(&r, &source);
    let source_fp = fingerprint_table(&h.clients.dynamodb, &source)
        .await
        .unwrap();
    assert!(source_meta.fingerprint.unwrap().same_content(&source_fp));
    let imported = h.name("Imported");
    let dir = backstop::export::export_dir(&source_meta.root, &source_meta.export_id);
    let out = h
        .clients
        .dynamodb
        .import_table()
        .s3_bucket_source(
            aws_sdk_dynamodb::types::S3BucketSource::builder()
                .s3_bucket(&bucket)
                .s3_key_prefix(format!("{dir}/data/"))
                .build()
                .unwrap(),
        )
        .input_format(aws_sdk_dynamodb::types::InputFormat::DynamodbJson)
        .input_compression_type(aws_sdk_dynamodb::types::InputCompressionType::Gzip)
        .table_creation_parameters(
            aws_sdk_dynamodb::types::TableCreationParameters::builder()
                .table_name(&imported)
                .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
                .attribute_definitions(
                    aws_sdk_dynamodb::types::AttributeDefinition::builder()
                        .attribute_name("id")
                        .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                        .build()
                        .unwrap(),
                )
                .key_schema(
                    aws_sdk_dynamodb::types::KeySchemaElement::builder()
                        .attribute_name("id")
                        .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let arn = out.import_table_description.unwrap().import_arn.unwrap();
    let mut status = String::new();
    for _ in 0..100 {
        let d = h
            .clients
            .dynamodb
            .describe_import()
            .import_arn(&arn)
            .send()
            .await
            .unwrap();
        let d = d.import_table_description.unwrap();
        status = d
            .import_status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if status != "IN_PROGRESS" {
            assert_eq!(d.error_count, 0);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, "COMPLETED");
    let of_import = fingerprint_table(&h.clients.dynamodb, &imported)
        .await
        .unwrap();
    assert!(
        of_import.same_content(&source_fp),
        "imported {of_import} vs export {source_fp}"
    );
    assert_eq!(of_import.items, 302);

    // A redelivered event makes no second export: same report, no new object.
    let before = backstop::export::s3io::list(&h.clients.s3, &bucket, "backstop/")
        .await
        .unwrap();
    let again = export_run(&h.clients, &h, &env, payload, None).await;
    assert!(
        matches!(&target(&again, &table).outcome, Outcome::AlreadyDone { note, .. } if note.contains("already exported")),
        "{again:#?}"
    );
    let after = backstop::export::s3io::list(&h.clients.s3, &bucket, "backstop/")
        .await
        .unwrap();
    assert_eq!(before, after);
    let record = h.run_record(&again).await;
    assert_eq!(record["already_done"], A::N("1".into()), "{record:?}");
}

#[tokio::test]
async fn an_interrupted_export_resumes_to_the_same_items_and_fingerprint_without_duplicates() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_FILE_BYTES", "4096".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "40".to_owned()),
        ("BACKSTOP_EXPORT_SEGMENTS", "2".to_owned()),
    ]);
    let table = h.name("Long");
    h.create_table(&table, 900, &[]).await;

    // Uninterrupted, for one slot.
    let whole = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [table], "slot": "2026-11-15T03:00:00Z"}),
        None,
    )
    .await;
    assert!(
        matches!(target(&whole, &table).outcome, Outcome::Created { .. }),
        "{whole:#?}"
    );
    let whole_meta = meta_of(&whole, &table);
    // Recorded at its slot, so that the later slot below is not older than it.
    backdate(&h, &table, "2026-11-15T03:00:00Z").await;

    // Interrupted: every invocation has no time left, so each segment writes one data file,
    // checkpoints and hands off; the next invocation resumes.
    let payload = json!({"tables": [table], "slot": "2026-11-22T03:00:00Z"});
    let mut invocations = 0;
    let meta = loop {
        invocations += 1;
        assert!(invocations < 60, "the export never finished");
        let r = export_run(
            &h.clients,
            &h,
            &env,
            payload.clone(),
            Some(Timestamp::now()),
        )
        .await;
        match &target(&r, &table).outcome {
            Outcome::Started { note, .. } => assert!(note.contains("checkpointed"), "{note}"),
            Outcome::Created { .. } => break meta_of(&r, &table),
            other => panic!("unexpected {other:?}"),
        }
        // The catalog says where it stands: STARTED, claimable by the next invocation.
        let rec =
            backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table)
                .get(
                    JobKind::Export,
                    &table,
                    &backstop::event::ScheduleSlot::parse("2026-11-22T03:00:00Z").unwrap(),
                )
                .await
                .unwrap()
                .unwrap();
        assert_eq!(rec.status, backstop::catalog::TargetStatus::Started);
    };
    let (resumed, rb) = read_back(&h.clients, &meta).await;
    let (uninterrupted, _) = read_back(&h.clients, &whole_meta).await;
    assert!(
        invocations > 5,
        "it was interrupted: {invocations} invocations"
    );
    assert!(rb.files.len() > 5, "{} files", rb.files.len());
    assert_eq!(resumed, uninterrupted);
    assert_eq!(resumed.len(), 900);
    assert!(meta
        .fingerprint
        .unwrap()
        .same_content(&whole_meta.fingerprint.unwrap()));
    println!(
        "interrupted export: {invocations} invocations, {} data files, fingerprint {}",
        rb.files.len(),
        meta.fingerprint.unwrap()
    );
}

#[tokio::test]
async fn under_faults_on_scans_uploads_and_the_catalog_an_export_ends_exact_or_failed_never_short()
{
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "10".to_owned()),
    ]);
    let (small, big) = (h.name("Small"), h.name("Big"));
    h.create_table(&small, 300, &[]).await;
    h.create_table(&big, 0, &[]).await;
    // About 11 MB of data that does not compress: the data file goes up in multipart parts.
    let mut seed = 7u64;
    for i in 0..32 {
        let noise: String = (0..350_000)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (b'!' + ((seed >> 33) % 90) as u8) as char
            })
            .collect();
        h.clients
            .dynamodb
            .put_item()
            .table_name(&big)
            .item("id", A::S(format!("big-{i:02}")))
            .item("noise", A::S(noise))
            .send()
            .await
            .unwrap();
    }
    let expected_small = fingerprint_table(&h.clients.dynamodb, &small)
        .await
        .unwrap();
    let expected_big = fingerprint_table(&h.clients.dynamodb, &big).await.unwrap();

    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    let clients = clients_through(&proxy).await;
    // Fixed faults first: the first part upload is refused and the first checkpoint write
    // fails; the export retries within the run or fails precisely.
    proxy.inject(Fault::new("UploadPart", "", 503, "SlowDown"));
    let payload = json!({"tables": [small, big], "slot": "2026-11-22T03:00:00Z"});
    let first = export_run(&clients, &h, &env, payload.clone(), None).await;
    match &target(&first, &big).outcome {
        Outcome::Failed {
            operation, error, ..
        } => {
            assert_eq!(operation, "UploadPart", "{error}");
            assert!(
                error.contains("s3://") && error.contains("resumes"),
                "{error}"
            );
        }
        other => panic!("UploadPart refused every time must fail the export: {other:?}"),
    }
    proxy.clear();
    proxy.chaos(Chaos {
        rate: 0.3,
        lost_share: 0.3,
        seed: 11,
        operations: [
            "Scan",
            "UploadPart",
            "CreateMultipartUpload",
            "CompleteMultipartUpload",
            "PutObject",
            "UpdateItem",
            "PutItem",
            "Query",
            "GetItem",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    });
    let mut attempts = 0;
    let mut done = std::collections::BTreeMap::new();
    while done.len() < 2 {
        attempts += 1;
        assert!(attempts <= 40, "no convergence: {done:?}");
        let r = export_run(&clients, &h, &env, payload.clone(), None).await;
        for t in &r.targets {
            match &t.outcome {
                Outcome::Created { .. } | Outcome::AlreadyDone { .. } => {
                    if let Some(m) = &t.export {
                        done.insert(t.table.clone(), m.clone());
                    }
                }
                Outcome::Failed {
                    operation, error, ..
                } => {
                    println!("attempt {attempts}: {}: {operation}: {error}", t.table);
                    // Precise: the operation and the resource are named.
                    assert!(
                        !operation.is_empty()
                            && (error.contains("table")
                                || error.contains("s3://")
                                || error.contains("catalog")),
                        "{error}"
                    );
                }
                Outcome::InProgress { .. } | Outcome::Started { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let counts = proxy.counts();
    proxy.clear();
    for (table, expected) in [(&small, expected_small), (&big, expected_big)] {
        let meta = &done[table];
        let (_, rb) = read_back(&h.clients, meta).await;
        assert!(
            rb.fingerprint.same_content(&expected),
            "{table}: {} vs {expected}",
            rb.fingerprint
        );
        assert!(meta.fingerprint.unwrap().same_content(&expected));
    }
    println!(
        "chaos: {} calls, {} faults ({} lost answers), {attempts} attempts to converge",
        counts.calls, counts.faults, counts.lost_answers
    );
    assert!(counts.faults > 10, "{counts:?}");
}

/// The export reads Scan answers as DynamoDB sent them (backstop::wire): inside `capture` the
/// body is kept and the SDK parses nothing; outside it the client is as ever. An answer damaged
/// on the way, which the SDK would take as it is, fails its x-amz-crc32 check and is asked
/// again: the export stays exact.
#[tokio::test]
async fn scan_answers_are_read_as_sent_and_a_damaged_one_is_asked_again_never_written() {
    use backstop::fingerprint::Fingerprinter;
    use backstop::wire;
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "20".to_owned()),
    ]);
    let table = h.name("Wire");
    h.create_table(&table, 120, &[]).await;
    put_every_type(&h.clients, &table, false).await;
    let expected = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    let clients = clients_through(&proxy).await;
    let scan = || {
        clients
            .dynamodb
            .scan()
            .table_name(&table)
            .consistent_read(true)
            .send()
    };
    let of_page = |body: &[u8]| {
        let page = wire::Page::parse(body).unwrap();
        assert!(page.next.is_none(), "one page holds the table");
        let mut fp = Fingerprinter::default();
        for text in &page.items {
            fp.add_json(text).unwrap();
        }
        fp.fingerprint
    };

    let (out, body) = wire::capture(scan()).await;
    let out = out.unwrap();
    assert!(out.items().is_empty() && out.last_evaluated_key.is_none());
    let body = body.expect("the answer's body is kept inside capture");
    assert!(of_page(&body).same_content(&expected));
    let plain = scan().await.unwrap();
    assert_eq!(
        plain.items().len() as u64,
        expected.items,
        "outside capture"
    );

    // Damaged on the way: the SDK alone takes the changed item as it is...
    proxy.damage_answers("Scan", &table, 1);
    let taken = scan().await.unwrap();
    let taken = backstop::fingerprint::of_items(taken.items()).unwrap();
    assert_eq!(taken.items, expected.items);
    assert!(!taken.same_content(&expected), "the damage changed an item");
    // ...and inside capture the CRC32 check refuses it and the SDK asks again.
    let asked = proxy.requests("Scan").len();
    proxy.damage_answers("Scan", &table, 1);
    let (out, body) = wire::capture(scan()).await;
    out.unwrap();
    assert!(of_page(&body.unwrap()).same_content(&expected));
    assert_eq!(proxy.requests("Scan").len(), asked + 2, "asked again once");

    // A whole export with damaged answers among its pages: complete and exact.
    proxy.damage_answers("Scan", &table, 3);
    let r = export_run(
        &clients,
        &h,
        &env,
        json!({"tables": [table], "slot": "2026-11-22T03:00:00Z", "segments": 2}),
        None,
    )
    .await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Created { .. }),
        "{r:#?}"
    );
    assert_eq!(proxy.injected(), 5, "every damage was sent");
    let meta = meta_of(&r, &table);
    assert!(meta.fingerprint.unwrap().same_content(&expected));
    let (_, rb) = read_back(&h.clients, &meta).await;
    assert!(rb.fingerprint.same_content(&expected), "{}", rb.fingerprint);
}

fn epoch(s: &str) -> f64 {
    s.parse::<Timestamp>().unwrap().as_second() as f64
}

#[tokio::test]
async fn native_exports_ask_once_per_slot_chain_incrementals_and_start_full_after_a_broken_link() {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    let key = "arn:aws:kms:us-east-1:123456789012:key/backstop-test";
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "native".to_owned()),
        ("BACKSTOP_EXPORT_KMS_KEY", key.to_owned()),
    ]);
    let table = h.name("Native");
    h.create_table(&table, 50, &[]).await;
    h.clients
        .dynamodb
        .update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    let clients = clients_through(&proxy).await;
    let run = |slot: &str| {
        export_run(
            &clients,
            &h,
            &env,
            json!({"tables": [table], "slot": slot}),
            None,
        )
    };
    let requests = || -> Vec<Value> {
        proxy
            .requests("ExportTableToPointInTime")
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    };

    // A full export at the slot: the request as the issue asks.
    let s1 = "2026-11-10T03:00:00Z";
    let r = run(s1).await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Started { .. }),
        "{r:#?}"
    );
    let req = &requests()[0];
    assert_eq!(req["ExportTime"].as_f64(), Some(epoch(s1)));
    assert_eq!(
        req["ClientToken"],
        backstop::export::client_token(&table, s1.parse().unwrap(), None)
    );
    assert_eq!(req["S3SseAlgorithm"], "KMS");
    assert_eq!(req["S3SseKmsKeyId"], key);
    assert_eq!(req["S3Bucket"], bucket.as_str());
    assert_eq!(
        req["S3Prefix"],
        format!("backstop/{table}/20261110T030000Z")
    );
    assert_eq!(req["ExportType"], "FULL_EXPORT");
    assert_eq!(req["ExportFormat"], "DYNAMODB_JSON");
    assert!(req.get("IncrementalExportSpecification").is_none());
    let meta = meta_of(&r, &table);
    let arn = meta.export_arn.clone().unwrap();

    // Redelivered while AWS still works on it: followed, never started again.
    let again = run(s1).await;
    assert!(
        matches!(target(&again, &table).outcome, Outcome::Started { .. }),
        "{again:#?}"
    );
    assert_eq!(requests().len(), 1);

    // AWS finishes and writes its manifests: the next run finalizes from them.
    let count = place_native_manifests(&h, &bucket, &meta.root, &arn, &table).await;
    assert_eq!(count, 50);
    let done = run(s1).await;
    match &target(&done, &table).outcome {
        Outcome::Created { backup } => assert_eq!(backup.item_count, Some(50)),
        other => panic!("{other:?}"),
    }
    assert_eq!(requests().len(), 1);
    assert!(matches!(
        target(&run(s1).await, &table).outcome,
        Outcome::AlreadyDone { .. }
    ));

    // The next day: an incremental from the last export's time to the slot.
    let s2 = "2026-11-11T03:00:00Z";
    let r2 = run(s2).await;
    assert!(
        matches!(target(&r2, &table).outcome, Outcome::Started { .. }),
        "{r2:#?}"
    );
    let req = &requests()[1];
    assert_eq!(req["ExportType"], "INCREMENTAL_EXPORT");
    assert!(req.get("ExportTime").is_none(), "{req}");
    let spec = &req["IncrementalExportSpecification"];
    assert_eq!(spec["ExportFromTime"].as_f64(), Some(epoch(s1)));
    assert_eq!(spec["ExportToTime"].as_f64(), Some(epoch(s2)));
    assert_eq!(spec["ExportViewType"], "NEW_AND_OLD_IMAGES");
    let m2 = meta_of(&r2, &table);
    assert_eq!(m2.base_slot.as_deref(), Some(s1));
    place_native_manifests(
        &h,
        &bucket,
        &m2.root,
        m2.export_arn.as_deref().unwrap(),
        &table,
    )
    .await;
    assert!(matches!(
        target(&run(s2).await, &table).outcome,
        Outcome::Created { .. }
    ));

    // A link fails: the chain is broken and the next export is full, saying why.
    proxy.inject(Fault::new(
        "ExportTableToPointInTime",
        "",
        400,
        "AccessDeniedException",
    ));
    let s3 = "2026-11-12T03:00:00Z";
    assert!(matches!(
        target(&run(s3).await, &table).outcome,
        Outcome::Failed { .. }
    ));
    proxy.clear();
    let s4 = "2026-11-13T03:00:00Z";
    let r4 = run(s4).await;
    let req = requests().last().cloned().unwrap();
    assert_eq!(req["ExportType"], "FULL_EXPORT", "{req}");
    assert_eq!(req["ExportTime"].as_f64(), Some(epoch(s4)));
    let t4 = target(&r4, &table);
    assert!(
        t4.warnings.iter().any(|w| w.contains("full export")
            && w.contains("2026-11-12T03:00:00Z")
            && w.contains("failed")),
        "{:?}",
        t4.warnings
    );
    assert!(t4
        .export
        .as_ref()
        .unwrap()
        .note
        .as_deref()
        .unwrap()
        .contains("broken chain"));
    let m4 = meta_of(&r4, &table);
    place_native_manifests(
        &h,
        &bucket,
        &m4.root,
        m4.export_arn.as_deref().unwrap(),
        &table,
    )
    .await;
    assert!(matches!(
        target(&run(s4).await, &table).outcome,
        Outcome::Created { .. }
    ));

    // The chain's full export disappears from S3 (the catalog still says DONE): the next export
    // is full, not an incremental on a base that is gone.
    let gone = format!("{}/", m4.root);
    let before_gone = requests().len();
    let enc_less = backstop::export::s3io::delete_prefix(&h.clients.s3, &bucket, &gone)
        .await
        .unwrap();
    assert!(enc_less > 0);
    let s4b = "2026-11-14T03:00:00Z";
    let r4b = run(s4b).await;
    let req = &requests()[before_gone];
    assert_eq!(req["ExportType"], "FULL_EXPORT", "{req}");
    assert!(
        target(&r4b, &table)
            .warnings
            .iter()
            .any(|w| w.contains("no longer in S3")),
        "{:?}",
        target(&r4b, &table).warnings
    );
    let m4 = meta_of(&r4b, &table);
    place_native_manifests(
        &h,
        &bucket,
        &m4.root,
        m4.export_arn.as_deref().unwrap(),
        &table,
    )
    .await;
    assert!(matches!(
        target(&run(s4b).await, &table).outcome,
        Outcome::Created { .. }
    ));
    let s4 = s4b;

    // 36 hours later: two windows of 18 hours (03:00 to 21:00 to 15:00 the day after), chained.
    let before = requests().len();
    let s5 = "2026-11-15T15:00:00Z";
    assert!(matches!(
        target(&run(s5).await, &table).outcome,
        Outcome::Started { .. }
    ));
    let new: Vec<Value> = requests()[before..].to_vec();
    assert_eq!(new.len(), 2, "{new:#?}");
    let w = |i: usize, k: &str| {
        new[i]["IncrementalExportSpecification"][k]
            .as_f64()
            .unwrap()
    };
    assert_eq!(w(0, "ExportFromTime"), epoch(s4));
    assert_eq!(w(0, "ExportToTime"), epoch("2026-11-14T21:00:00Z"));
    assert_eq!(w(1, "ExportFromTime"), epoch("2026-11-14T21:00:00Z"));
    assert_eq!(w(1, "ExportToTime"), epoch(s5));
}

#[tokio::test]
async fn retention_prunes_weekly_exports_to_the_policy_with_reasons_and_dry_run_deletes_nothing() {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Weekly");
    h.create_table(&table, 5, &[]).await;
    // Ten weekly exports, the newest last Sunday.
    let newest: Timestamp = "2026-11-22T03:00:00Z".parse().unwrap();
    let mut roots = Vec::new();
    for week in (0..10).rev() {
        let slot = newest - jiff::SignedDuration::from_hours(24 * 7 * week);
        let r = export_run(
            &h.clients,
            &h,
            &env,
            json!({"tables": [table], "slot": slot.to_string()}),
            None,
        )
        .await;
        assert!(
            matches!(target(&r, &table).outcome, Outcome::Created { .. }),
            "{r:#?}"
        );
        // Made now, recorded as made at its slot: the history this test needs.
        backdate(&h, &table, &slot.to_string()).await;
        roots.push(meta_of(&r, &table).root);
    }
    let retention = |dry_run: bool| retention_run(&h, &bucket, &table, dry_run);
    let objects = |root: String| objects_under(&h, &bucket, root);

    let plan = retention(true).await;
    let t = target(&plan, &table);
    let e = t.export_retention.clone().expect("export retention ran");
    assert_eq!((e.kept, e.deleted, e.to_delete), (10, 0, 6), "{t:#?}");
    for root in &roots {
        assert!(objects(root.clone()).await > 0);
    }

    let r = retention(false).await;
    let t = target(&r, &table);
    let e = t.export_retention.clone().unwrap();
    assert_eq!((e.kept, e.deleted, e.error.clone()), (4, 6, None), "{t:#?}");
    for (i, root) in roots.iter().enumerate() {
        let left = objects(root.clone()).await;
        if i < 6 {
            assert_eq!(left, 0, "{root} should be deleted");
        } else {
            assert!(left >= 4, "{root} should be kept whole: {left} objects");
        }
    }
    // Every export has its decision and reason.
    let exports: Vec<_> = t
        .decisions
        .iter()
        .filter(|d| d.backup_name.starts_with("export "))
        .collect();
    assert_eq!(exports.len(), 10);
    assert!(
        exports
            .iter()
            .filter(|d| d
                .result
                .as_deref()
                .is_some_and(|r| r.starts_with("deleted")))
            .count()
            == 6
    );
    assert!(
        r.email_body().contains("Exports:    4 kept, 6 deleted"),
        "{}",
        r.email_body()
    );
    // The catalog says DELETED for the six.
    let records =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table)
            .list_targets(JobKind::Export, Some(&table))
            .await
            .unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.status == backstop::catalog::TargetStatus::Deleted)
            .count(),
        6
    );
}

async fn retention_run(h: &Harness, bucket: &str, table: &str, dry_run: bool) -> RunReport {
    // The day after the newest export, whatever the date the test runs on: the freshness floor
    // measures from the later of the slot and the time the request arrived.
    let slot = if dry_run {
        "2026-11-23T04:00:00Z"
    } else {
        "2026-11-23T05:00:00Z"
    };
    let request = JobRequest::from_payload(
        &json!({"dry_run": dry_run, "slot": slot}),
        slot.parse().unwrap(),
    )
    .unwrap();
    let env = h.env(&[
        ("BACKSTOP_TABLES", table),
        ("BACKSTOP_EXPORT_BUCKET", bucket),
        ("BACKSTOP_EXPORT_PREFIX", "backstop"),
        ("BACKSTOP_EXPORT_RETENTION_POLICY", "keep_weekly=4"),
    ]);
    let settings = Settings::resolve(JobKind::Retention, &env, &request).unwrap();
    jobs::run(JobKind::Retention, &h.clients, &settings, &request).await
}

async fn objects_under(h: &Harness, bucket: &str, root: String) -> usize {
    backstop::export::s3io::list(&h.clients.s3, bucket, &format!("{root}/"))
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fanned_out_export_shares_its_segments_between_invocations_and_stays_exact() {
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_FAN_OUT", "3".to_owned()),
        ("BACKSTOP_EXPORT_SEGMENTS", "6".to_owned()),
        ("BACKSTOP_EXPORT_FILE_BYTES", "2048".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "10".to_owned()),
    ]);
    let table = h.name("Wide");
    h.create_table(&table, 600, &[]).await;
    let slot = "2026-11-22T03:00:00Z";
    let main = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [table], "slot": slot}),
        None,
    );
    // The two helpers Lambda would start: the same payload with helper set.
    let helper = |delay_ms: u64| {
        let (h, env, table) = (&h, &env, &table);
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            export_run(
                &h.clients,
                h,
                env,
                json!({"tables": [table], "slot": slot, "continuation": 1, "helper": true}),
                None,
            )
            .await
        }
    };
    let (main, h1, h2) = tokio::join!(main, helper(400), helper(500));
    assert!(
        matches!(target(&main, &table).outcome, Outcome::Created { .. }),
        "{main:#?}"
    );
    for r in [&h1, &h2] {
        assert!(
            matches!(&target(r, &table).outcome, Outcome::Started { note, .. } if note.starts_with("helper:")),
            "{r:#?}"
        );
    }
    let meta = meta_of(&main, &table);
    let (items, _) = read_back(&h.clients, &meta).await;
    assert_eq!(items.len(), 600);
    let expected = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    assert!(meta.fingerprint.unwrap().same_content(&expected));
    // Segments were worked on by more than one invocation.
    let catalog =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let segments = backstop::export::checkpoint::load(
        &catalog,
        &table,
        &backstop::event::ScheduleSlot::parse(slot).unwrap(),
    )
    .await
    .unwrap();
    let owners: std::collections::BTreeSet<String> =
        segments.iter().filter_map(|s| s.owner.clone()).collect();
    let runs: std::collections::BTreeSet<String> =
        [&main, &h1, &h2].iter().map(|r| r.run_id.clone()).collect();
    assert!(
        owners.len() >= 2 && owners.is_subset(&runs),
        "owners {owners:?} of runs {runs:?}"
    );
    println!(
        "fan-out: {} segments worked by {} invocations",
        segments.len(),
        owners.len()
    );
}

#[tokio::test]
async fn checkpoints_written_halfway_and_a_data_file_replaced_behind_its_checkpoint_never_make_a_short_export(
) {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_SEGMENTS", "4".to_owned()),
        ("BACKSTOP_EXPORT_FILE_BYTES", "2048".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "10".to_owned()),
    ]);
    let table = h.name("Halfway");
    h.create_table(&table, 200, &[]).await;
    let expected = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    let clients = clients_through(&proxy).await;
    let payload = json!({"tables": [table], "slot": "2026-11-22T03:00:00Z"});

    // The third segment's checkpoint cannot be written: the run fails with two of four written.
    proxy.inject(Fault::new(
        "PutItem",
        "SEG#0002",
        400,
        "AccessDeniedException",
    ));
    let r = export_run(&clients, &h, &env, payload.clone(), None).await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Failed { .. }),
        "{r:#?}"
    );
    proxy.clear();

    // The next attempt writes the missing checkpoints first and exports every segment. It is
    // interrupted after each data file, and between two invocations a data file is replaced
    // behind its checkpoint (as a writer that lost its segment could do).
    let slot = backstop::event::ScheduleSlot::parse("2026-11-22T03:00:00Z").unwrap();
    let mut replaced = false;
    let mut caught = false;
    let mut attempts = 0;
    let meta = loop {
        attempts += 1;
        assert!(attempts < 80, "never finished");
        let r = export_run(&clients, &h, &env, payload.clone(), Some(Timestamp::now())).await;
        match &target(&r, &table).outcome {
            Outcome::Created { .. } => break meta_of(&r, &table),
            Outcome::Started { .. } if !replaced => {
                let m = meta_of(&r, &table);
                let key = format!(
                    "{}/data/0001-000000.json.gz",
                    backstop::export::export_dir(&m.root, &m.export_id)
                );
                let enc = backstop::export::s3io::Encryption { kms_key: None };
                backstop::export::s3io::put_small(
                    &h.clients.s3,
                    &bucket,
                    &key,
                    b"not the checkpointed file".to_vec(),
                    "application/gzip",
                    &enc,
                )
                .await
                .unwrap();
                replaced = true;
            }
            Outcome::Started { .. } => {}
            Outcome::Failed { error, .. } => {
                assert!(
                    error.contains("not the one its checkpoint recorded")
                        && error.contains("segment 1 starts over"),
                    "{error}"
                );
                caught = true;
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(
        replaced && caught,
        "the replaced file was found before the manifests were written"
    );
    let catalog =
        backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table);
    let segments = backstop::export::checkpoint::load(&catalog, &table, &slot)
        .await
        .unwrap();
    assert_eq!(backstop::export::checkpoint::whole(&segments), Ok(4));
    let (items, rb) = read_back(&h.clients, &meta).await;
    assert_eq!(items.len(), 200);
    assert!(rb.fingerprint.same_content(&expected));
    assert!(meta.fingerprint.unwrap().same_content(&expected));
}

#[tokio::test]
async fn a_stale_object_under_a_data_key_is_overwritten_even_when_the_file_comes_out_empty() {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_SEGMENTS", "1".to_owned()),
    ]);
    let table = h.name("Emptied");
    h.create_table(&table, 0, &[]).await;
    let slot = backstop::event::ScheduleSlot::parse("2026-11-22T03:00:00Z").unwrap();
    // What an attempt that died before its checkpoint would leave (the table had items then).
    let root = format!("backstop/{table}/{}", slot.compact());
    let key = format!(
        "{}/data/0000-000000.json.gz",
        backstop::export::export_dir(&root, &backstop::export::logical_export_id(&table, &slot))
    );
    let enc = backstop::export::s3io::Encryption { kms_key: None };
    let mut stale = Vec::new();
    {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(&mut stale, flate2::Compression::fast());
        gz.write_all(b"{\"Item\":{\"id\":{\"S\":\"gone\"}}}\n")
            .unwrap();
        gz.finish().unwrap();
    }
    backstop::export::s3io::put_small(
        &h.clients.s3,
        &bucket,
        &key,
        stale,
        "application/gzip",
        &enc,
    )
    .await
    .unwrap();
    let r = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [table], "slot": slot.to_string()}),
        None,
    )
    .await;
    let meta = meta_of(&r, &table);
    let (items, rb) = read_back(&h.clients, &meta).await;
    assert!(items.is_empty());
    assert_eq!(rb.files.len(), 1);
    assert_eq!(rb.files[0].item_count, 0);
    assert_eq!(rb.files[0].data_file_s3_key, key);
    // The object under the key is the empty file, not the stale one.
    let body = backstop::export::s3io::get(&h.clients.s3, &bucket, &key)
        .await
        .unwrap()
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&body[..]), &mut text)
        .unwrap();
    assert_eq!(text, "");
}

/// Each way an export can be damaged, applied to a good one (and undone before the next): the
/// reader refuses it and says which object and what is wrong; with the manifests made to agree
/// with the damage (MD5 and ETag rewritten), the deeper checks (gzip, lines, counts) still
/// catch it, and a changed item shows in the fingerprint.
#[tokio::test]
async fn a_damaged_export_is_never_read_as_whole_and_the_error_says_where() {
    use std::io::{Read, Write};

    use base64::Engine;
    use md5::{Digest, Md5};

    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Damaged");
    h.create_table(&table, 40, &[]).await;
    let r = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [table], "slot": "2026-11-22T03:00:00Z"}),
        None,
    )
    .await;
    let meta = meta_of(&r, &table);
    let (_, good) = read_back(&h.clients, &meta).await;
    let summary_key = meta.manifest_key.clone().unwrap();
    let files_key = good.summary.manifest_files_s3_key.clone();
    let data_key = good.files[0].data_file_s3_key.clone();
    let s3 = &h.clients.s3;
    let bucket = &meta.bucket;
    let get = |key: String| async move {
        backstop::export::s3io::get(s3, bucket, &key)
            .await
            .unwrap()
            .unwrap()
    };
    let put = |key: String, body: Vec<u8>| async move {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    };
    let originals = [
        (summary_key.clone(), get(summary_key.clone()).await),
        (files_key.clone(), get(files_key.clone()).await),
        (data_key.clone(), get(data_key.clone()).await),
    ];
    let gunzip = |bytes: &[u8]| {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let gzip = |text: &str| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    };
    // Rewrites the data file and, when `agree`, its MD5 in the file manifest (ETag left out, as
    // in a manifest that never recorded one), so that only the deeper checks can tell.
    let damage_data = |body: Vec<u8>, agree: bool| {
        let files_key = files_key.clone();
        let data_key = data_key.clone();
        let files = good.files.clone();
        async move {
            if agree {
                let mut files = files;
                files[0].md5_checksum =
                    base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
                files[0].etag = String::new();
                put(
                    files_key,
                    backstop::export::manifest::files_text(&files).into_bytes(),
                )
                .await;
            }
            put(data_key, body).await;
        }
    };
    let read = || async {
        let mut seen = 0u64;
        let result = reader::read_export(s3, bucket, &summary_key, |_| seen += 1).await;
        result.map(|rb| rb.fingerprint).map_err(|e| e.to_string())
    };
    let restore = || async {
        for (k, v) in originals.clone() {
            put(k, v).await;
        }
        assert!(read().await.unwrap().same_content(&good.fingerprint));
    };

    let text = gunzip(&originals[2].1);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 40, "one data file with every item");
    let changed = text.replacen(r#""id":{"S":"item-"#, r#""id":{"S":"ITEM-"#, 1);
    assert_ne!(changed, text);
    let dropped = lines[1..].join("\n") + "\n";
    let mut cases: Vec<(&str, Vec<u8>, bool, String)> = vec![
        (
            "one item changed",
            gzip(&changed),
            false,
            format!("s3://{bucket}/{data_key} failed: ETag is"),
        ),
        ("one line dropped", gzip(&dropped), false, "ETag is".into()),
        (
            "one line dropped, manifests agreeing",
            gzip(&dropped),
            true,
            "holds 39 items, the manifest says 40".into(),
        ),
        (
            "not an item on line 3, manifests agreeing",
            gzip(&text.replacen(lines[2], "{\"Item\": 42}", 1)),
            true,
            "line 3:".into(),
        ),
    ];
    let whole = gzip(&text);
    cases.push((
        "truncated gzip, manifests agreeing",
        whole[..whole.len() - 10].to_vec(),
        true,
        "ends early".into(),
    ));
    for (what, body, agree, expected) in cases {
        damage_data(body, agree).await;
        let e = read().await.expect_err(what);
        assert!(
            e.contains(&expected) && e.contains(&data_key),
            "{what}: {e}"
        );
        restore().await;
    }

    // A changed item whose manifests agree reads whole, but not as the same content, and
    // verification against the fingerprint recorded at export time says so.
    let verify = || backstop::export::verify::verify(s3, bucket, &meta.root);
    let ok = verify().await.unwrap();
    assert_eq!((ok.items, ok.files), (40, 1));
    assert!(ok.fingerprint.same_content(&good.fingerprint));
    damage_data(gzip(&changed), true).await;
    let fp = read().await.unwrap();
    assert!(!fp.same_content(&good.fingerprint));
    assert_eq!(fp.items, good.fingerprint.items);
    let e = verify().await.unwrap_err().to_string();
    assert!(
        e.contains("backstop-manifest.json failed: the data's fingerprint is v2:40:")
            && e.contains("the items differ from the ones exported"),
        "{e}"
    );
    restore().await;

    // A missing data file, a wrong MD5, a summary count off by one.
    s3.delete_object()
        .bucket(bucket)
        .key(&data_key)
        .send()
        .await
        .unwrap();
    let e = read().await.unwrap_err();
    assert!(e.contains("missing") && e.contains(&data_key), "{e}");
    restore().await;
    let mut files = good.files.clone();
    files[0].md5_checksum = "AAAAAAAAAAAAAAAAAAAAAA==".into();
    put(
        files_key.clone(),
        backstop::export::manifest::files_text(&files).into_bytes(),
    )
    .await;
    let e = read().await.unwrap_err();
    assert!(
        e.contains("the manifest says AAAAAAAAAAAAAAAAAAAAAA=="),
        "{e}"
    );
    restore().await;
    let summary = String::from_utf8(originals[0].1.clone()).unwrap();
    let off_by_one = summary.replace("\"itemCount\":40", "\"itemCount\":41");
    assert_ne!(off_by_one, summary);
    put(summary_key.clone(), off_by_one.into_bytes()).await;
    let e = read().await.unwrap_err();
    assert!(
        e.contains("the files hold 40 items by their manifest, the summary says 41"),
        "{e}"
    );
    restore().await;
}

/// With a replica configured, each complete export is copied to the same keys in a bucket in
/// another region, its manifests last, and checked there: the replica reads back whole to the
/// same fingerprint. A replica whose manifest cannot be copied fails the table (the export
/// stays done) and is never left looking complete; the retry completes it.
#[tokio::test]
async fn a_complete_export_is_replicated_to_another_region_manifests_last_and_read_back_whole() {
    use backstop::export::verify;
    let h = Harness::new().await;
    let (_, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".into()));
    let west_config = h
        .config
        .clone()
        .into_builder()
        .region(aws_config::Region::new("us-west-2"))
        .build();
    let west = (*Clients::from_config(&west_config).s3).clone();
    let replica = h.name("export-replica");
    west.create_bucket()
        .bucket(&replica)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.push(("BACKSTOP_REPLICA_BUCKET", replica.clone()));
    env.push(("BACKSTOP_REPLICA_REGION", "us-west-2".into()));
    env.push(("BACKSTOP_EXPORT_FILE_BYTES", "4096".into()));
    let table = h.name("Replicated");
    h.create_table(&table, 300, &[]).await;
    let payload = json!({"tables": [table], "slot": "2026-11-22T03:00:00Z", "segments": 2});

    let r = export_run(&h.clients, &h, &env, payload.clone(), None).await;
    assert!(!r.needs_retry(), "{r:#?}");
    // Recorded at its slot, so that the next slot below is not older than it.
    backdate(&h, &table, "2026-11-22T03:00:00Z").await;
    let t = target(&r, &table);
    let rep = t.replica.as_ref().expect("replica state");
    assert!(rep.ok, "{rep:?}");
    assert_eq!(rep.lag_s, Some(0));
    let meta = meta_of(&r, &table);
    let files = backstop::export::s3io::list(&h.clients.s3, &meta.bucket, &meta.root)
        .await
        .unwrap();
    assert!(files.len() > 4, "several data files: {files:?}");
    assert_eq!(rep.copied, files.len() as u64);
    let copies = backstop::export::s3io::list(&west, &replica, &meta.root)
        .await
        .unwrap();
    assert_eq!(copies, files, "same keys and sizes");
    let original = verify::verify(&h.clients.s3, &meta.bucket, &meta.root)
        .await
        .unwrap();
    let copy = verify::verify(&west, &replica, &meta.root).await.unwrap();
    assert_eq!(copy.items, 300);
    assert!(copy.fingerprint.same_content(&original.fingerprint));
    assert_eq!(
        local_metric(&h, "ReplicaFailure").await,
        Some(0.0),
        "the run's ReplicaFailure total"
    );

    // A redelivery copies nothing again.
    let again = export_run(&h.clients, &h, &env, payload, None).await;
    let rep = target(&again, &table).replica.clone().unwrap();
    assert!(rep.ok && rep.copied == 0, "{rep:?}");

    // The next slot, with the replica refusing its Backstop manifest: the table fails on the
    // replica, the replica has no backstop-manifest.json (so it is never read as whole), and
    // the retry finishes it.
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    let faulty = clients_through(&proxy).await;
    proxy.inject(Fault::new(
        "CopyObject",
        &format!("{replica}/backstop/{table}/20261123T030000Z/backstop-manifest.json"),
        403,
        "AccessDenied",
    ));
    let next = json!({"tables": [table], "slot": "2026-11-23T03:00:00Z", "segments": 2});
    let r = export_run(&faulty, &h, &env, next.clone(), None).await;
    let t = target(&r, &table);
    match &t.outcome {
        Outcome::Failed {
            operation, error, ..
        } => {
            assert_eq!(operation, "replicate");
            assert!(
                error.contains("the export is complete but its replica is not"),
                "{error}"
            );
            assert!(error.contains("backstop-manifest.json"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(proxy.injected() > 0);
    let meta2 = t.export.clone().unwrap();
    assert!(verify::verify(&west, &replica, &meta2.root).await.is_err());
    assert!(verify::verify(&h.clients.s3, &meta2.bucket, &meta2.root)
        .await
        .is_ok());
    proxy.clear();
    let r = export_run(&faulty, &h, &env, next, None).await;
    assert!(!r.needs_retry(), "{r:#?}");
    let t = target(&r, &table);
    assert!(matches!(t.outcome, Outcome::AlreadyDone { .. }), "{t:#?}");
    assert!(t.replica.as_ref().unwrap().ok);
    assert!(verify::verify(&west, &replica, &meta2.root).await.is_ok());
}

/// The export job's run total of `metric` over the last hour.
async fn local_metric(h: &Harness, metric: &str) -> Option<f64> {
    backstop_testkit::local::metric_sum(&h.config, &h.namespace(), metric, "export", None)
        .await
        .unwrap()
}

fn catalog_of(h: &Harness) -> backstop::catalog::Catalog {
    backstop::catalog::Catalog::new((*h.clients.dynamodb).clone(), &h.stack.catalog_table)
}

fn slot_of(s: &str) -> backstop::event::ScheduleSlot {
    backstop::event::ScheduleSlot::parse(s).unwrap()
}

/// Rewrites the catalog's record of an export made now as if it had been made at its slot (its
/// `export_time` and creation time): how these tests build a history of weeks in a minute.
async fn backdate(h: &Harness, table: &str, slot: &str) {
    let key = backstop::catalog::target_key(JobKind::Export, table, &slot_of(slot));
    let item = h
        .clients
        .dynamodb
        .get_item()
        .table_name(&h.stack.catalog_table)
        .set_key(Some(key.clone()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("no record of {table} at {slot}"));
    let mut meta: ExportMeta = serde_json::from_str(item["export"].as_s().unwrap()).unwrap();
    meta.export_time = slot.parse().unwrap();
    h.clients
        .dynamodb
        .update_item()
        .table_name(&h.stack.catalog_table)
        .set_key(Some(key))
        .update_expression("SET #e = :e, backup_created_at = :c")
        .expression_attribute_names("#e", "export")
        .expression_attribute_values(":e", A::S(serde_json::to_string(&meta).unwrap()))
        .expression_attribute_values(":c", A::S(slot.to_owned()))
        .send()
        .await
        .unwrap();
}

/// A plain PutObject, as someone allowed only that on the export bucket would write.
async fn forge(h: &Harness, bucket: &str, key: &str, body: &[u8]) {
    h.clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("forge {key}: {e:?}"));
}

/// The slot string of `t`, to the second.
fn slot_at(t: Timestamp) -> String {
    backstop::event::ScheduleSlot::new(t).to_string()
}

/// The summary key of the export `meta` (logical: under its own id).
fn summary_key_of(meta: &ExportMeta) -> String {
    format!(
        "{}/manifest-summary.json",
        backstop::export::export_dir(&meta.root, &meta.export_id)
    )
}

/// Issue #35, acceptance 1: a logical export records the time of its data, the moment its scan
/// started, never the slot it was asked for (the slot only names it). The time is taken when
/// the export is planned, recorded before the scan, and kept by every later invocation that
/// resumes it, even when the slot has since fallen out of the backfill window (a slot that
/// exists is continued, never refused).
#[tokio::test]
async fn a_logical_exports_time_is_its_scans_start_not_the_slot_and_resumes_keep_it() {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_FILE_BYTES", "1024".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "5".to_owned()),
        ("BACKSTOP_EXPORT_SEGMENTS", "2".to_owned()),
        ("BACKSTOP_BACKFILL_WINDOW", "26h".to_owned()),
    ]);
    let table = h.name("DataTime");
    h.create_table(&table, 30, &[]).await;
    // An hour ago: within the window, a slot Backstop accepts.
    let slot = slot_at(Timestamp::now() - jiff::SignedDuration::from_hours(1));
    let payload = json!({"tables": [table], "slot": slot, "mode": "logical"});
    let catalog = catalog_of(&h);

    let before = Timestamp::now();
    let first = export_run(
        &h.clients,
        &h,
        &env,
        payload.clone(),
        Some(Timestamp::now()),
    )
    .await;
    let after = Timestamp::now();
    assert!(
        matches!(target(&first, &table).outcome, Outcome::Started { .. }),
        "interrupted after its first data files: {first:#?}"
    );
    let recorded = catalog
        .get(JobKind::Export, &table, &slot_of(&slot))
        .await
        .unwrap()
        .unwrap()
        .export
        .unwrap()
        .export_time;
    assert!(
        recorded >= before && recorded <= after,
        "export_time {recorded} is the scan's start (between {before} and {after}), not the slot {slot}"
    );
    assert_ne!(recorded.to_string(), slot);

    // The slot falls out of the window (a window of a minute now); the export that exists is
    // continued to the end all the same, and its time stays the one recorded first.
    env.push(("BACKSTOP_BACKFILL_WINDOW", "1m".to_owned()));
    let mut invocations = 1;
    let meta = loop {
        invocations += 1;
        assert!(invocations < 40, "the export never finished");
        let r = export_run(
            &h.clients,
            &h,
            &env,
            payload.clone(),
            Some(Timestamp::now()),
        )
        .await;
        match &target(&r, &table).outcome {
            Outcome::Started { .. } => {
                assert_eq!(meta_of(&r, &table).export_time, recorded);
            }
            Outcome::Created { backup } => {
                assert_eq!(backup.created_at, Some(recorded));
                break meta_of(&r, &table);
            }
            other => panic!("a slot that exists is continued, never refused: {other:?}"),
        }
    };
    assert!(invocations > 2, "it was resumed: {invocations} invocations");
    assert_eq!(meta.export_time, recorded);
    let (items, _) = read_back(&h.clients, &meta).await;
    assert_eq!(items.len(), 30);
    // The summary it wrote says the same time.
    let summary =
        backstop::export::reader::read_summary(&h.clients.s3, &bucket, &summary_key_of(&meta))
            .await
            .unwrap();
    assert_eq!(
        summary
            .export_time
            .as_deref()
            .map(|t| t.parse::<Timestamp>().unwrap()),
        Some(recorded)
    );
    let done = catalog
        .get(JobKind::Export, &table, &slot_of(&slot))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.export.unwrap().export_time, recorded);
    assert_eq!(done.backup_created_at, Some(recorded.to_string()));
    // Still keyed by its slot: a redelivery finds it done.
    let again = export_run(&h.clients, &h, &env, payload, None).await;
    assert!(
        matches!(target(&again, &table).outcome, Outcome::AlreadyDone { .. }),
        "{again:#?}"
    );
    // A new slot an hour ago, with the window at a minute: refused, nothing recorded.
    let fresh = slot_at(Timestamp::now() - jiff::SignedDuration::from_hours(1));
    assert_ne!(fresh, slot);
    let refused = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [table], "slot": fresh, "mode": "logical"}),
        None,
    )
    .await;
    assert!(
        matches!(&target(&refused, &table).outcome, Outcome::Failed { error, retryable: false, .. } if error.contains(&fresh)),
        "{refused:#?}"
    );
    println!(
        "slot {slot}: export_time {recorded} (the scan's start), kept through {invocations} invocations"
    );
}

/// The last second of each of the periods before `now` that retention keeps a point of: the
/// last three ISO weeks, the last two months, the last year (UTC).
fn ends_of_past_periods(now: Timestamp) -> Vec<String> {
    use jiff::tz::TimeZone;
    let today = now.to_zoned(TimeZone::UTC).date();
    let end_before = |d: jiff::civil::Date| {
        slot_at(d.to_zoned(TimeZone::UTC).unwrap().timestamp() - jiff::SignedDuration::from_secs(1))
    };
    let monday = today
        .checked_sub(jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
        .unwrap();
    let first = today.first_of_month();
    let mut ends = std::collections::BTreeSet::new();
    for w in 0..3 {
        ends.insert(end_before(
            monday.checked_sub(jiff::Span::new().weeks(w)).unwrap(),
        ));
    }
    ends.insert(end_before(first));
    ends.insert(end_before(
        first.checked_sub(jiff::Span::new().months(1)).unwrap(),
    ));
    ends.insert(end_before(jiff::civil::date(today.year(), 1, 1)));
    ends.into_iter().collect()
}

async fn retention_now(h: &Harness, bucket: &str, table: &str) -> RunReport {
    let now = Timestamp::now();
    let request = JobRequest::from_payload(
        &json!({"slot": slot_at(now - jiff::SignedDuration::from_secs(1))}),
        now,
    )
    .unwrap();
    let env = h.env(&[
        ("BACKSTOP_TABLES", table),
        ("BACKSTOP_EXPORT_BUCKET", bucket),
        ("BACKSTOP_EXPORT_PREFIX", "backstop"),
        ("BACKSTOP_EXPORT_RETENTION_POLICY", "keep_weekly=4"),
    ]);
    let settings = Settings::resolve(JobKind::Retention, &env, &request).unwrap();
    jobs::run(JobKind::Retention, &h.clients, &settings, &request).await
}

/// Issue #35, acceptance 2 (exports): the backfill attack. With real weekly exports and one made
/// just now, an invoker sends logical-mode payloads for the last second of past weeks, months
/// and the year. Each is refused, naming its slot, in the target and in the run's message;
/// nothing is claimed or written for it (no catalog record, no object); a dry run says what the
/// real run would refuse. The next export retention, run with `{}` forged as `pruning.json` and
/// a forged manifest in every export's prefix, deletes nothing real.
#[tokio::test]
async fn backfilled_slots_are_refused_naming_each_and_retention_then_deletes_nothing_real() {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".to_owned()));
    let table = h.name("Backfill");
    h.create_table(&table, 5, &[]).await;
    let catalog = catalog_of(&h);
    let now = Timestamp::now();

    // History: a real export each of the last three weeks (made in the test with a wide
    // window, then recorded at its time), and one made now, with the default window.
    let mut real = Vec::new();
    for weeks in [3, 2, 1] {
        let slot = slot_at(now - jiff::SignedDuration::from_hours(24 * 7 * weeks));
        let r = export_run(
            &h.clients,
            &h,
            &env,
            json!({"tables": [table], "slot": slot}),
            None,
        )
        .await;
        assert!(
            matches!(target(&r, &table).outcome, Outcome::Created { .. }),
            "{r:#?}"
        );
        backdate(&h, &table, &slot).await;
        real.push((slot, meta_of(&r, &table).root));
    }
    env.push(("BACKSTOP_BACKFILL_WINDOW", "26h".to_owned()));
    let current = slot_at(now - jiff::SignedDuration::from_secs(60));
    let r = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [table], "slot": current}),
        None,
    )
    .await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Created { .. }),
        "{r:#?}"
    );
    real.push((current.clone(), meta_of(&r, &table).root));

    let attack = ends_of_past_periods(now);
    assert!(attack.len() >= 4, "{attack:?}");
    // A dry run only looks, and says so.
    let dry = export_run(
        &h.clients,
        &h,
        &env,
        json!({"tables": [table], "slot": attack[0], "mode": "logical", "dry_run": true}),
        None,
    )
    .await;
    let t = target(&dry, &table);
    assert!(matches!(t.outcome, Outcome::Planned { .. }), "{t:#?}");
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("would be refused") && w.contains(&attack[0])),
        "{:?}",
        t.warnings
    );
    for slot in &attack {
        let r = export_run(
            &h.clients,
            &h,
            &env,
            json!({"tables": [table], "slot": slot, "mode": "logical"}),
            None,
        )
        .await;
        match &target(&r, &table).outcome {
            Outcome::Failed {
                error, retryable, ..
            } => {
                assert!(error.contains(slot.as_str()), "{error}");
                assert!(error.contains("backfill is refused"), "{error}");
                assert!(!retryable, "a refusal is not retried");
            }
            other => panic!("slot {slot} was not refused: {other:?}"),
        }
        assert!(r.email_body().contains(slot.as_str()), "{}", r.email_body());
        assert!(
            catalog
                .get(JobKind::Export, &table, &slot_of(slot))
                .await
                .unwrap()
                .is_none(),
            "nothing claimed for {slot}"
        );
        let root = format!("backstop/{table}/{}", slot_of(slot).compact());
        assert_eq!(
            objects_under(&h, &bucket, root).await,
            0,
            "nothing written for {slot}"
        );
    }
    let records = catalog
        .list_targets(JobKind::Export, Some(&table))
        .await
        .unwrap();
    assert_eq!(records.len(), real.len(), "{records:#?}");

    // A control file nobody proved: `{}` as pruning.json in every export.
    for (_, root) in &real {
        forge(&h, &bucket, &format!("{root}/pruning.json"), b"{}").await;
    }
    let r = retention_now(&h, &bucket, &table).await;
    let t = target(&r, &table);
    let e = t.export_retention.clone().expect("export retention ran");
    assert_eq!(
        (e.deleted, e.to_delete, e.error.clone()),
        (0, 0, None),
        "{t:#?}"
    );
    for (slot, root) in &real {
        assert!(
            objects_under(&h, &bucket, root.clone()).await >= 4,
            "{slot} kept whole"
        );
    }
    let records = catalog
        .list_targets(JobKind::Export, Some(&table))
        .await
        .unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.status == backstop::catalog::TargetStatus::Done),
        "{records:#?}"
    );
    println!(
        "refused {} backfilled slots: {attack:?}; retention deleted nothing",
        attack.len()
    );
}

/// A forged but self-consistent "empty" export over a real one: manifest-files.json with no
/// file, a summary of 0 items, a Backstop manifest of 0 items and the empty fingerprint.
async fn forge_empty_export(h: &Harness, bucket: &str, meta: &ExportMeta) {
    let dir = backstop::export::export_dir(&meta.root, &meta.export_id);
    let files_key = format!("{dir}/manifest-files.json");
    let summary_key = summary_key_of(meta);
    forge(h, bucket, &files_key, b"").await;
    let summary = json!({
        "version": "2020-06-30", "exportArn": "arn:forged", "startTime": "2026-01-01T00:00:00Z",
        "endTime": "2026-01-01T00:00:00Z", "tableArn": "arn:forged", "s3Bucket": bucket,
        "manifestFilesS3Key": files_key, "itemCount": 0, "outputFormat": "DYNAMODB_JSON",
        "exportType": "FULL_EXPORT",
    });
    forge(h, bucket, &summary_key, summary.to_string().as_bytes()).await;
    let manifest = backstop::export::manifest::BackstopManifest {
        format: 1,
        table: "forged".into(),
        table_arn: String::new(),
        slot: String::new(),
        mode: backstop::export::Made::Logical,
        export_type: backstop::export::ExportType::FullExport,
        export_id: meta.export_id.clone(),
        export_arn: None,
        manifest_summary_key: summary_key,
        key_schema: Value::Null,
        item_count: 0,
        bytes: 0,
        stored_bytes: 0,
        fingerprint: Some(backstop::fingerprint::Fingerprint::default()),
        segments: vec![],
        started_at: String::new(),
        finished_at: String::new(),
    };
    forge(
        h,
        bucket,
        &backstop::export::backstop_manifest_key(&meta.root),
        &serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
}

/// Issue #35, acceptance 3 (exports): control files in the export bucket prove nothing.
/// - A logical export's checkpoints live only in the catalog (`EXPORT#<table>#<slot>`,
///   export/checkpoint.rs): a `checkpoint.json`, a finished-looking Backstop manifest and an
///   empty summary forged under an export under way change nothing; it resumes from the
///   catalog and ends exact, its own manifests over the forged ones.
/// - A forged, self-consistent "empty" export over a finished one passes a check of the
///   manifest alone, but validate holds it to the catalog's record (count, fingerprint,
///   summary): reported, not ok. The replica is not given the forgery: the table fails on the
///   replica, whose manifest stays the real one.
#[tokio::test]
async fn forged_export_control_files_are_ignored_reported_and_never_replicated() {
    use backstop::export::verify;
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    let west_config = h
        .config
        .clone()
        .into_builder()
        .region(aws_config::Region::new("us-west-2"))
        .build();
    let west = (*Clients::from_config(&west_config).s3).clone();
    let replica = h.name("forged-replica");
    west.create_bucket()
        .bucket(&replica)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_FILE_BYTES", "1024".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "5".to_owned()),
        ("BACKSTOP_EXPORT_SEGMENTS", "2".to_owned()),
        ("BACKSTOP_REPLICA_BUCKET", replica.clone()),
        ("BACKSTOP_REPLICA_REGION", "us-west-2".to_owned()),
    ]);
    let table = h.name("Forged");
    h.create_table(&table, 30, &[]).await;
    let expected = fingerprint_table(&h.clients.dynamodb, &table)
        .await
        .unwrap();
    let payload = json!({"tables": [table], "slot": "2026-11-22T03:00:00Z"});

    // Under way: forge a past-the-end checkpoint, a "complete, empty" export and `{}` markers.
    let first = export_run(
        &h.clients,
        &h,
        &env,
        payload.clone(),
        Some(Timestamp::now()),
    )
    .await;
    assert!(
        matches!(target(&first, &table).outcome, Outcome::Started { .. }),
        "{first:#?}"
    );
    let under_way = meta_of(&first, &table);
    let root = under_way.root.clone();
    forge(
        &h,
        &bucket,
        &format!("{root}/checkpoint.json"),
        br#"{"segment":0,"total":2,"next_file":999,"done":true,"resume_at":null,"items":0}"#,
    )
    .await;
    forge(&h, &bucket, &format!("{root}/pruning.json"), b"{}").await;
    forge_empty_export(&h, &bucket, &under_way).await;
    let mut invocations = 1;
    let meta = loop {
        invocations += 1;
        assert!(invocations < 40, "never finished");
        let r = export_run(
            &h.clients,
            &h,
            &env,
            payload.clone(),
            Some(Timestamp::now()),
        )
        .await;
        match &target(&r, &table).outcome {
            Outcome::Started { .. } => {}
            Outcome::Created { .. } => {
                assert!(target(&r, &table).replica.as_ref().unwrap().ok, "{r:#?}");
                break meta_of(&r, &table);
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(invocations > 2, "resumed after the forgery: {invocations}");
    assert_eq!(meta.item_count, Some(30));
    assert!(meta.fingerprint.unwrap().same_content(&expected));
    let (items, _) = read_back(&h.clients, &meta).await;
    assert_eq!(items.len(), 30);
    let record = catalog_of(&h)
        .get(JobKind::Export, &table, &slot_of("2026-11-22T03:00:00Z"))
        .await
        .unwrap()
        .unwrap();
    let check = jobs::validate::verify_export(&h.clients, &catalog_of(&h), &record, false)
        .await
        .unwrap();
    assert!(check.ok && check.items == Some(30), "{check:?}");
    let manifest_key = backstop::export::backstop_manifest_key(&root);
    let real_manifest = backstop::export::s3io::get(&west, &replica, &manifest_key)
        .await
        .unwrap()
        .expect("replicated");

    // Finished: the same forgery over it. On its own it reads as a whole export of 0 items...
    forge_empty_export(&h, &bucket, &meta).await;
    let alone = verify::verify(&h.clients.s3, &bucket, &root).await.unwrap();
    assert_eq!(alone.items, 0, "the forgery is self-consistent");
    // ...but validate holds it to the catalog, and reports it.
    let check = jobs::validate::verify_export(&h.clients, &catalog_of(&h), &record, false)
        .await
        .unwrap();
    assert!(!check.ok, "{check:?}");
    assert!(
        check.detail.contains("the catalog's record wins")
            && check.detail.contains("records 0 items, the catalog 30"),
        "{}",
        check.detail
    );
    // A redelivery replicates the newest export: the forged manifest is refused, not copied.
    let again = export_run(&h.clients, &h, &env, payload, None).await;
    let t = target(&again, &table);
    match &t.outcome {
        Outcome::Failed {
            operation, error, ..
        } => {
            assert_eq!(operation, "replicate");
            assert!(error.contains("the catalog's record wins"), "{error}");
        }
        other => panic!("the forged manifest was replicated: {other:?}"),
    }
    let there = backstop::export::s3io::get(&west, &replica, &manifest_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(there, real_manifest, "the replica keeps the real manifest");
    let copy = verify::verify(&west, &replica, &root).await.unwrap();
    assert!(copy.fingerprint.same_content(&expected));
    println!(
        "forged control files: resumed from the catalog in {invocations} invocations; validate: {}",
        check.detail
    );
}

/// Issue #35, acceptance 3 (native exports): the summary AWS wrote lies in the export bucket.
/// Forged (0 items, no file) before the export job finalizes the export, it is refused by
/// DescribeExport's own ItemCount: the export is not recorded finished, the next one starts
/// anew, and that one records the ExportTime asked (the time of its data, moto reporting none).
#[tokio::test]
async fn a_native_summary_forged_before_finalization_is_refused_by_awss_own_count() {
    let h = Harness::new().await;
    let (bucket, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "native".to_owned()));
    let table = h.name("NativeForged");
    h.create_table(&table, 20, &[]).await;
    h.clients
        .dynamodb
        .update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(
            aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let slot = "2026-11-10T03:00:00Z";
    let run = || {
        export_run(
            &h.clients,
            &h,
            &env,
            json!({"tables": [table], "slot": slot}),
            None,
        )
    };
    let r = run().await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Started { .. }),
        "{r:#?}"
    );
    let meta = meta_of(&r, &table);
    let arn = meta.export_arn.clone().unwrap();
    assert_eq!(
        place_native_manifests(&h, &bucket, &meta.root, &arn, &table).await,
        20
    );
    let summary_key =
        backstop::export::s3io::list(&h.clients.s3, &bucket, &format!("{}/", meta.root))
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .find(|k| k.ends_with("/manifest-summary.json"))
            .unwrap();
    let files_key = summary_key.replace("manifest-summary.json", "manifest-files.json");
    let text = backstop::export::s3io::get(&h.clients.s3, &bucket, &summary_key)
        .await
        .unwrap()
        .unwrap();
    let mut summary: Value = serde_json::from_slice(&text).unwrap();
    summary["itemCount"] = json!(0);
    forge(&h, &bucket, &files_key, b"").await;
    forge(&h, &bucket, &summary_key, summary.to_string().as_bytes()).await;

    let r = run().await;
    match &target(&r, &table).outcome {
        Outcome::Failed { error, .. } => {
            assert!(
                error.contains("says 0 items") && error.contains("AWS exported 20"),
                "{error}"
            );
        }
        other => panic!("a forged empty summary was taken: {other:?}"),
    }
    let record = catalog_of(&h)
        .get(JobKind::Export, &table, &slot_of(slot))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, backstop::catalog::TargetStatus::Failed);

    // The next attempt asks AWS for a new export and finalizes it from AWS's own manifests.
    let r = run().await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Started { .. }),
        "{r:#?}"
    );
    let again = meta_of(&r, &table);
    assert_ne!(again.export_arn, Some(arn));
    place_native_manifests(
        &h,
        &bucket,
        &again.root,
        again.export_arn.as_deref().unwrap(),
        &table,
    )
    .await;
    let r = run().await;
    match &target(&r, &table).outcome {
        Outcome::Created { backup } => {
            assert_eq!(backup.item_count, Some(20));
            assert_eq!(backup.created_at, Some(slot.parse().unwrap()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        meta_of(&r, &table).export_time,
        slot.parse::<Timestamp>().unwrap()
    );
}

/// Issue #35 (review): a logical export begun longer ago than the backfill window is not carried
/// on by a later invocation: the rest of the table would be read then and recorded at the old
/// time. The slot stays unfinished, and is never a recovery point.
#[tokio::test]
async fn a_logical_export_begun_before_the_window_is_not_carried_on() {
    let h = Harness::new().await;
    let (_bucket, mut env) = h.export_bucket().await;
    env.extend([
        ("BACKSTOP_EXPORT_MODE", "logical".to_owned()),
        ("BACKSTOP_EXPORT_FILE_BYTES", "1024".to_owned()),
        ("BACKSTOP_EXPORT_PAGE_ITEMS", "5".to_owned()),
        ("BACKSTOP_BACKFILL_WINDOW", "26h".to_owned()),
    ]);
    let table = h.name("Stalled");
    h.create_table(&table, 30, &[]).await;
    let slot = slot_at(Timestamp::now() - jiff::SignedDuration::from_hours(2));
    let payload = json!({"tables": [table], "slot": slot, "mode": "logical"});
    let first = export_run(
        &h.clients,
        &h,
        &env,
        payload.clone(),
        Some(Timestamp::now()),
    )
    .await;
    assert!(
        matches!(target(&first, &table).outcome, Outcome::Started { .. }),
        "{first:#?}"
    );
    // Its scan began two hours ago (the record says so); the window is an hour now.
    backdate(&h, &table, &slot).await;
    env.push(("BACKSTOP_BACKFILL_WINDOW", "1h".to_owned()));
    let r = export_run(&h.clients, &h, &env, payload, None).await;
    match &target(&r, &table).outcome {
        Outcome::Failed {
            error, retryable, ..
        } => {
            assert!(error.contains("is not carried on"), "{error}");
            assert!(!retryable, "{error}");
        }
        other => panic!("{other:?}"),
    }
    let record = catalog_of(&h)
        .get(JobKind::Export, &table, &slot_of(&slot))
        .await
        .unwrap()
        .unwrap();
    assert!(!record.status.is_done(), "{record:?}");
}

/// Issue 36 item 7: the tables users have. An on-demand table whose hash key is binary (moto
/// answered a segmented Scan of one with HTTP 500 until the test kit's mend) exports by
/// segments and reads back to the table's own fingerprint, every key (not valid UTF-8 among
/// them) once.
#[tokio::test]
async fn an_on_demand_binary_keyed_table_exports_by_segments_and_reads_back_exactly() {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let h = Harness::new().await;
    let (_bucket, mut env) = h.export_bucket().await;
    env.push(("BACKSTOP_EXPORT_MODE", "logical".into()));
    let table = h.name("Blobs");
    let ddb = &h.clients.dynamodb;
    ddb.create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("k")
                .attribute_type(ScalarAttributeType::B)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("k")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for i in 0u8..60 {
        // Half of the keys are not valid UTF-8.
        let key = if i % 2 == 0 {
            vec![0xff, 0xfe, i, 0x80]
        } else {
            format!("key-{i}").into_bytes()
        };
        ddb.put_item()
            .table_name(&table)
            .item("k", A::B(Blob::new(key)))
            .item("n", A::N(i.to_string()))
            .send()
            .await
            .unwrap();
    }
    let slot = slot_at(Timestamp::now() - jiff::SignedDuration::from_hours(1));
    let payload = json!({"tables": [table], "slot": slot, "segments": 4});
    let r = export_run(&h.clients, &h, &env, payload, None).await;
    assert!(
        matches!(target(&r, &table).outcome, Outcome::Created { .. }),
        "{r:#?}"
    );
    let meta = meta_of(&r, &table);
    assert_eq!(meta.fingerprint.as_ref().map(|f| f.items), Some(60));
    // Read back by the binary key: every key once.
    let mut keys = std::collections::HashSet::new();
    let mut dups = 0;
    let rb = reader::read_export(
        &h.clients.s3,
        &meta.bucket,
        meta.manifest_key.as_deref().expect("manifest key"),
        |item| {
            let k = item["k"].as_b().unwrap().as_ref().to_vec();
            if !keys.insert(k) {
                dups += 1;
            }
        },
    )
    .await
    .unwrap();
    assert_eq!((keys.len(), dups), (60, 0));
    let of_table = fingerprint_table(ddb, &table).await.unwrap();
    assert!(
        rb.fingerprint.same_content(&of_table),
        "{} vs {}",
        rb.fingerprint,
        of_table
    );
}
