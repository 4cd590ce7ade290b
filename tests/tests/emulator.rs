//! The test kit's emulator against DynamoDB's behaviour where moto 5.2.5 departs from it, and the
//! mends the kit's launcher (`testkit/moto_mends.py`) applies when it starts moto (issue 36,
//! item 7): a segmented Scan of a table whose hash key is binary, and the billing mode of a
//! restored on-demand table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, ScalarAttributeType, TableDescription,
};
use backstop_testkit::local::{MOTO_MENDS_SCRIPT, MOTO_MENDS_WARNING};
use backstop_tests::Harness;
use serde_json::Value;

async fn create_on_demand_table(h: &Harness, name: &str, key_type: ScalarAttributeType) {
    h.clients
        .dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("k")
                .attribute_type(key_type)
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
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
}

fn billing_mode(d: &TableDescription) -> Option<BillingMode> {
    d.billing_mode_summary()
        .and_then(|s| s.billing_mode())
        .cloned()
}

async fn described_billing_mode(h: &Harness, table: &str) -> Option<BillingMode> {
    let d = h
        .clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {table}: {e:?}"))
        .table
        .unwrap();
    billing_mode(&d)
}

/// Unmended, moto 5.2.5 answers every segment of this Scan with HTTP 500: `is_within_segment`
/// calls `.encode("utf8")` on the key's `bytes` (shown without a server by
/// `moto_departs_unmended_and_the_launcher_mends_it`). DynamoDB, and the mended emulator, return
/// each item in exactly one segment.
#[tokio::test]
async fn segmented_scan_of_a_binary_hash_key_returns_every_item_once() {
    let h = Harness::new().await;
    let ddb = &h.clients.dynamodb;
    let table = h.name("BinaryKeyed");
    create_on_demand_table(&h, &table, ScalarAttributeType::B).await;
    // Keys that are not UTF-8 as well as some that are.
    let keys: BTreeSet<Vec<u8>> = (0u8..24)
        .map(|i| vec![i, 0xff - i, 0x80 | i, i.wrapping_mul(37)])
        .chain([b"plain".to_vec(), vec![0xc3, 0x28]])
        .collect();
    for key in &keys {
        ddb.put_item()
            .table_name(&table)
            .item("k", AttributeValue::B(Blob::new(key.clone())))
            .item("v", AttributeValue::N(key.len().to_string()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key:?}: {e:?}"));
    }

    let total_segments = 4;
    let mut seen: BTreeMap<Vec<u8>, Vec<i32>> = BTreeMap::new();
    let mut per_segment = Vec::new();
    for segment in 0..total_segments {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        let mut count = 0;
        loop {
            let page = ddb
                .scan()
                .table_name(&table)
                .segment(segment)
                .total_segments(total_segments)
                .limit(5)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!("segment {segment} of {total_segments} (HTTP 500 unmended): {e:?}")
                });
            for item in page.items() {
                let AttributeValue::B(key) = &item["k"] else {
                    panic!("key is not binary: {item:?}");
                };
                seen.entry(key.as_ref().to_vec()).or_default().push(segment);
                count += 1;
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        per_segment.push(count);
    }
    println!(
        "{} binary-keyed items; per segment of {total_segments}: {per_segment:?}",
        keys.len()
    );
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        keys,
        "every item, across the segments"
    );
    let twice: Vec<_> = seen.iter().filter(|(_, s)| s.len() != 1).collect();
    assert!(
        twice.is_empty(),
        "items in more than one segment: {twice:?}"
    );
    assert!(
        per_segment.iter().filter(|&&n| n > 0).count() > 1,
        "the items are spread over segments, not all in one: {per_segment:?}"
    );
}

/// Unmended, moto 5.2.5 restores an on-demand table with no billing mode (read as PROVISIONED):
/// `RestoredTable._parse_params_from_backup` copies schema, attributes and throughput only.
/// DynamoDB, and the mended emulator, keep the source's billing mode.
#[tokio::test]
async fn on_demand_table_restored_from_backup_stays_on_demand() {
    let h = Harness::new().await;
    let ddb = &h.clients.dynamodb;
    let source = h.name("OnDemand");
    create_on_demand_table(&h, &source, ScalarAttributeType::S).await;
    for i in 0..3 {
        ddb.put_item()
            .table_name(&source)
            .item("k", AttributeValue::S(format!("item-{i}")))
            .send()
            .await
            .unwrap();
    }
    let backup_arn = ddb
        .create_backup()
        .table_name(&source)
        .backup_name(format!("{source}-b1"))
        .send()
        .await
        .unwrap()
        .backup_details
        .unwrap()
        .backup_arn;
    let described = ddb
        .describe_backup()
        .backup_arn(&backup_arn)
        .send()
        .await
        .unwrap();
    let source_mode = described
        .backup_description()
        .and_then(|d| d.source_table_details())
        .and_then(|s| s.billing_mode())
        .cloned();
    // (DynamoDB names the mode in SourceTableDetails.BillingMode; moto 5.2.5 copies the table's
    // description there, with BillingModeSummary instead, so this reads None. Not mended: the
    // tests read the mode from the restored table.)

    let target = h.name("OnDemandRestored");
    let restored = ddb
        .restore_table_from_backup()
        .backup_arn(&backup_arn)
        .target_table_name(&target)
        .send()
        .await
        .unwrap()
        .table_description
        .unwrap();
    let answered = billing_mode(&restored);
    let described = described_billing_mode(&h, &target).await;
    println!(
        "DescribeBackup SourceTableDetails.BillingMode: {source_mode:?}; restored table answered {answered:?}, describes as {described:?}"
    );
    assert_eq!(answered, Some(BillingMode::PayPerRequest));
    assert_eq!(described, Some(BillingMode::PayPerRequest));
    let items = ddb.scan().table_name(&target).send().await.unwrap().count;
    assert_eq!(items, 3, "the restored items");
}

/// The same departure and mend for RestoreTableToPointInTime
/// (`RestoredPITTable._parse_params_from_table` in moto 5.2.5).
#[tokio::test]
async fn on_demand_table_restored_to_a_point_in_time_stays_on_demand() {
    let h = Harness::new().await;
    let ddb = &h.clients.dynamodb;
    let source = h.name("OnDemandPitr");
    create_on_demand_table(&h, &source, ScalarAttributeType::S).await;
    ddb.update_continuous_backups()
        .table_name(&source)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let target = h.name("OnDemandPitrRestored");
    let restored = ddb
        .restore_table_to_point_in_time()
        .source_table_name(&source)
        .target_table_name(&target)
        .use_latest_restorable_time(true)
        .send()
        .await
        .unwrap()
        .table_description
        .unwrap();
    let answered = billing_mode(&restored);
    let described = described_billing_mode(&h, &target).await;
    println!("point-in-time restore answered {answered:?}, describes as {described:?}");
    assert_eq!(answered, Some(BillingMode::PayPerRequest));
    assert_eq!(described, Some(BillingMode::PayPerRequest));
}

/// The check of moto's own code, without a server: with the installed moto's models, the
/// unmended functions fail a binary key (AttributeError) and restore an on-demand table with no
/// billing mode; after the launcher's `apply()`, the same calls succeed and keep
/// PAY_PER_REQUEST. If moto ever fixes either, this test says so (the mend could go). And with a
/// function missing, `apply()` warns (with the prefix the kit echoes) instead of failing.
#[test]
fn moto_departs_unmended_and_the_launcher_mends_it() {
    const CHECK: &str = r#"
import importlib.util, json, sys
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Backup, RestoredPITTable, RestoredTable, Table

def segment_of_binary_key():
    item = Item(hash_key=DynamoType({"B": b"\xff\x00key"}), range_key=None, attrs={})
    try:
        return [s for s in range(4) if item.is_within_segment((s, 4))]
    except Exception as e:
        return f"{type(e).__name__}: {e}"

def restored_modes():
    source = Table("source", "123456789012", "us-east-1",
        schema=[{"AttributeName": "k", "KeyType": "HASH"}],
        attr=[{"AttributeName": "k", "AttributeType": "S"}],
        billing_mode="PAY_PER_REQUEST")
    backup = Backup("123456789012", "us-east-1", "b1", source)
    from_backup = RestoredTable("r1", "123456789012", "us-east-1", backup)
    to_point = RestoredPITTable("r2", "123456789012", "us-east-1", source)
    return [from_backup.billing_mode, to_point.billing_mode]

spec = importlib.util.spec_from_file_location("moto_mends", sys.argv[1])
mends = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mends)
out = {"prefix": mends.WARNING_PREFIX, "target": mends.TARGET_MOTO_VERSION}
out["unmended"] = {"segments": segment_of_binary_key(), "restored": restored_modes()}
out["apply"] = mends.apply()
out["mended"] = {"segments": segment_of_binary_key(), "restored": restored_modes()}
del Item.is_within_segment
out["missing"] = mends.mend_binary_segment_hash()
print(json.dumps(out))
"#;
    let run = Command::new("python3")
        .args(["-c", CHECK, MOTO_MENDS_SCRIPT])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    assert_eq!(
        out["prefix"], MOTO_MENDS_WARNING,
        "the kit echoes this prefix"
    );

    // The departures, unmended.
    let segments = out["unmended"]["segments"]
        .as_str()
        .unwrap_or_else(|| panic!("moto hashes binary keys unmended now; the mend may go: {out}"));
    assert!(
        segments.starts_with("AttributeError") && segments.contains("encode"),
        "{segments}"
    );
    assert_eq!(
        out["unmended"]["restored"],
        serde_json::json!([null, null]),
        "unmended restores drop the billing mode"
    );

    // The mends.
    assert_eq!(out["apply"], serde_json::json!([]), "no warnings: {out}");
    let mended = out["mended"]["segments"]
        .as_array()
        .expect("a segment list");
    assert_eq!(mended.len(), 1, "a binary key is in exactly one segment");
    assert_eq!(
        out["mended"]["restored"],
        serde_json::json!(["PAY_PER_REQUEST", "PAY_PER_REQUEST"])
    );

    // A function missing: a warning, no failure.
    let missing = out["missing"].as_str().unwrap_or_default();
    assert!(missing.contains("is_within_segment is missing"), "{out}");
}

/// The launcher keeps moto's command line: a function missing, it warns and still serves.
#[test]
fn launcher_warns_and_serves_unmended_when_moto_differs() {
    // Python's -c with the launcher's main after removing the function it mends.
    const RUN: &str = r#"
import importlib.util, sys
from moto.dynamodb.models.dynamo_type import Item
del Item.is_within_segment
spec = importlib.util.spec_from_file_location("moto_mends", sys.argv.pop(1))
mends = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mends)
mends.main()
"#;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("python3")
        .args(["-c", RUN, MOTO_MENDS_SCRIPT, "-H", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let served = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break true;
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let run = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.starts_with(MOTO_MENDS_WARNING))
        .unwrap_or_default()
        .to_owned();
    println!("served: {served}; {warning}");
    assert!(served, "moto serves unmended: {stderr}");
    assert!(warning.contains("is_within_segment is missing"), "{stderr}");
}
