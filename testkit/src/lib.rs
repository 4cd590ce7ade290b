//! Backstop's test kit: the local emulator stack (moto, started on first use unless
//! BACKSTOP_TEST_ENDPOINT names one), the fault proxy, and a stack per test with unique names so
//! that tests run in parallel. The tests, the demo and `backstop local up` use it; no Lambda
//! binary does.

pub mod fault_proxy;
pub mod local;

use std::collections::{BTreeSet, HashMap};

use crate::local::LocalStack;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, Tag, WriteRequest,
};
use backstop::aws::{emulator_config, Clients};
use backstop::settings::{self, Environment};

/// Clients that talk to AWS through a fault proxy, with the SDK's standard retries (3 attempts)
/// but short backoffs, so that tests under many faults stay quick.
pub async fn clients_through(proxy: &fault_proxy::FaultProxy) -> Clients {
    let config = emulator_config(&proxy.endpoint)
        .await
        .into_builder()
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_initial_backoff(std::time::Duration::from_millis(20))
                .with_max_backoff(std::time::Duration::from_millis(200)),
        )
        .build();
    Clients::from_config(&config)
}

pub struct Harness {
    pub prefix: String,
    pub config: SdkConfig,
    pub clients: Clients,
    pub stack: LocalStack,
}

impl Harness {
    /// A fresh stack (catalog, topic, subscribed queue) with names unique to this test.
    pub async fn new() -> Harness {
        let endpoint = local::test_endpoint()
            .expect("the local emulator starts (pip install -r requirements-dev.txt)");
        let config = emulator_config(&endpoint).await;
        let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let stack = local::provision(&config, &endpoint, &prefix)
            .await
            .expect("provision the local stack");
        Harness {
            prefix,
            clients: Clients::from_config(&config),
            config,
            stack,
        }
    }

    /// An S3 bucket for this test's exports, with the environment that points the export job
    /// (and retention) at it.
    pub async fn export_bucket(&self) -> (String, Vec<(&'static str, String)>) {
        let bucket = format!("{}exports", self.prefix);
        self.clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
        let env = vec![
            (settings::ENV_EXPORT_BUCKET, bucket.clone()),
            (settings::ENV_EXPORT_PREFIX, "backstop".to_owned()),
        ];
        (bucket, env)
    }

    /// A table name unique to this test.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// The environment a deployed function would have for this stack.
    pub fn env(&self, extra: &[(&str, &str)]) -> Environment {
        let mut pairs: Vec<(String, String)> = vec![
            (
                settings::ENV_CATALOG_TABLE.into(),
                self.stack.catalog_table.clone(),
            ),
            (settings::ENV_TOPIC_ARN.into(), self.stack.topic_arn.clone()),
            (
                settings::ENV_METRICS_NAMESPACE.into(),
                format!("Backstop/{}", self.prefix.trim_end_matches('-')),
            ),
        ];
        // A deployed function always has a selection, and a payload may only narrow it: the
        // tables and buckets of this test (named with its prefix), unless the test sets its own.
        let sets = |names: &[&str]| extra.iter().any(|(k, _)| names.contains(k));
        // (A test of databases alone selects no tables, as a deployment of databases alone.)
        if !sets(&[
            settings::ENV_TABLES,
            settings::ENV_TABLE_PATTERN,
            settings::ENV_TABLE_TAG,
            settings::ENV_RDS_INSTANCES,
            settings::ENV_RDS_INSTANCE_PATTERN,
            settings::ENV_RDS_INSTANCE_TAG,
            settings::ENV_AURORA_CLUSTERS,
            settings::ENV_AURORA_CLUSTER_PATTERN,
            settings::ENV_AURORA_CLUSTER_TAG,
            settings::ENV_ELASTICACHE_GROUPS,
            settings::ENV_ELASTICACHE_GROUP_PATTERN,
            settings::ENV_ELASTICACHE_GROUP_TAG,
        ]) {
            pairs.push((
                settings::ENV_TABLE_PATTERN.into(),
                format!("{}*", self.prefix),
            ));
        }
        // (Buckets only where the test has a backup bucket: status reads bucket settings
        // whenever a bucket selection is set.)
        if sets(&[settings::ENV_BUCKET_BACKUP_BUCKET])
            && !sets(&[
                settings::ENV_BUCKETS,
                settings::ENV_BUCKET_PATTERN,
                settings::ENV_BUCKET_TAG,
            ])
        {
            pairs.push((
                settings::ENV_BUCKET_PATTERN.into(),
                format!("{}*", self.prefix),
            ));
        }
        // Tests make history at named past slots; the refusal of backfill is tested with the
        // window set (later pairs win).
        pairs.push((settings::ENV_BACKFILL_WINDOW.into(), "3650d".into()));
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Environment::from_pairs(pairs)
    }

    pub fn namespace(&self) -> String {
        format!("Backstop/{}", self.prefix.trim_end_matches('-'))
    }

    /// Creates a table keyed by `id` with `items` items, optionally tagged.
    pub async fn create_table(&self, name: &str, items: usize, tags: &[(&str, &str)]) {
        let ddb = &self.clients.dynamodb;
        let mut req = ddb
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
        req.send()
            .await
            .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
        let writes: Vec<WriteRequest> = (0..items)
            .map(|i| {
                let item = HashMap::from([
                    ("id".to_owned(), AttributeValue::S(format!("item-{i:05}"))),
                    ("n".to_owned(), AttributeValue::N(i.to_string())),
                    (
                        "note".to_owned(),
                        AttributeValue::S(format!("row {i} of {name}")),
                    ),
                ]);
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        for chunk in writes.chunks(25) {
            local::batch_write_all(ddb, name, chunk.to_vec())
                .await
                .unwrap();
        }
    }

    /// The backups DynamoDB lists for a table (every page), as (name, ARN).
    pub async fn backups_of(&self, table: &str) -> Vec<(String, String)> {
        backstop::backups::list(&self.clients.dynamodb, table, None)
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.name, b.arn))
            .collect()
    }

    /// The catalog's run record of one run, straight from DynamoDB.
    pub async fn run_record(
        &self,
        report: &backstop::report::RunReport,
    ) -> HashMap<String, AttributeValue> {
        let items = self
            .clients
            .dynamodb
            .query()
            .table_name(&self.stack.catalog_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("RUN#{}", report.job)))
            .send()
            .await
            .unwrap();
        items
            .items()
            .iter()
            .find(|i| i.get("run_id").and_then(|v| v.as_s().ok()) == Some(&report.run_id))
            .cloned()
            .expect("the run record")
    }

    /// Every item of a table, as sorted JSON-ish strings, for comparing contents.
    pub async fn scan_all(&self, table: &str) -> BTreeSet<String> {
        let items: Vec<HashMap<String, AttributeValue>> = self
            .clients
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
            .map(|item| {
                let mut fields: Vec<String> =
                    item.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                fields.sort();
                fields.join(",")
            })
            .collect()
    }

    /// A metric's sum for one table, or for the run totals (Job dimension alone) with `None`.
    pub async fn metric_of(&self, metric: &str, table: Option<&str>) -> Option<f64> {
        local::metric_sum(&self.config, &self.namespace(), metric, "snapshot", table)
            .await
            .unwrap()
    }

    pub async fn metric(&self, metric: &str, table: &str) -> Option<f64> {
        local::metric_sum(
            &self.config,
            &self.namespace(),
            metric,
            "snapshot",
            Some(table),
        )
        .await
        .unwrap()
    }
}

/// Puts two items into `table` that hold every DynamoDB type between them (escapes, 38-digit
/// and extreme numbers, every byte, empty strings and containers, sets, nesting) and one near
/// the 400 KB item limit. `moto_import` leaves out what moto's ImportTable parser mangles.
pub async fn put_every_type(clients: &Clients, table: &str, moto_import: bool) {
    let big: String = (0..350_000)
        .map(|i| (b'a' + (i * 7 % 26) as u8) as char)
        .collect();
    let nested = HashMap::from([
        (
            "bin".to_owned(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![
                0u8, 255, 1, 254,
            ])),
        ),
        (
            "empty_map".to_owned(),
            if moto_import {
                AttributeValue::L(vec![])
            } else {
                AttributeValue::M(HashMap::new())
            },
        ),
        ("empty_list".to_owned(), AttributeValue::L(vec![])),
        (
            "bs".to_owned(),
            AttributeValue::Bs(vec![
                aws_sdk_dynamodb::primitives::Blob::new(vec![9]),
                aws_sdk_dynamodb::primitives::Blob::new(vec![0, 0]),
            ]),
        ),
    ]);
    let items = vec![
        HashMap::from([
            ("id".to_owned(), AttributeValue::S("all-types".into())),
            (
                "s".to_owned(),
                AttributeValue::S(if moto_import {
                    "unicode é 🦀".into()
                } else {
                    "quote \" backslash \\ newline \n tab \t unicode é 🦀".into()
                }),
            ),
            ("empty_s".to_owned(), AttributeValue::S(String::new())),
            (
                "n38".to_owned(),
                AttributeValue::N("12345678901234567890123456789012345678".into()),
            ),
            (
                "n_small".to_owned(),
                AttributeValue::N("-0.00000000000000000000000000000000000123".into()),
            ),
            (
                "n_big".to_owned(),
                AttributeValue::N("9.9999999999999999999999999999999999999E+125".into()),
            ),
            (
                "b".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(
                    (0u8..=255).collect::<Vec<u8>>(),
                )),
            ),
            (
                "ss".to_owned(),
                AttributeValue::Ss(vec!["x".into(), "y".into(), "z".into()]),
            ),
            (
                "ns".to_owned(),
                AttributeValue::Ns(vec!["1".into(), "2.5".into(), "-3E10".into()]),
            ),
            (
                "bs".to_owned(),
                AttributeValue::Bs(vec![
                    aws_sdk_dynamodb::primitives::Blob::new(vec![1, 2]),
                    aws_sdk_dynamodb::primitives::Blob::new(vec![3]),
                ]),
            ),
            ("m".to_owned(), AttributeValue::M(nested.clone())),
            (
                "l".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![7, 7])),
                    AttributeValue::M(nested),
                    AttributeValue::L(vec![
                        AttributeValue::Null(true),
                        AttributeValue::Bool(true),
                        AttributeValue::Bool(false),
                    ]),
                    AttributeValue::Ns(vec!["0.1".into()]),
                ]),
            ),
            ("null".to_owned(), AttributeValue::Null(true)),
            ("t".to_owned(), AttributeValue::Bool(true)),
        ]),
        HashMap::from([
            ("id".to_owned(), AttributeValue::S("near-400kb".into())),
            ("payload".to_owned(), AttributeValue::S(big)),
            (
                "b".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![42; 20_000])),
            ),
        ]),
    ];
    for item in items {
        clients
            .dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
}
