//! The `backstop` command as a user runs it.

use std::process::{Command, Output};

use backstop::aws::emulator_config;
use backstop_testkit::local;

fn backstop(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backstop"));
    cmd.args(args);
    cmd.env_remove("BACKSTOP_CATALOG_TABLE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    // A deployment always configures a selection, which a payload may only narrow; these tests
    // name their tables in the payload. They also make history at named past slots.
    // (Not beside a database selection: those tests select databases alone.)
    if !env.iter().any(|(k, _)| {
        [
            "BACKSTOP_TABLE",
            "BACKSTOP_RDS",
            "BACKSTOP_AURORA",
            "BACKSTOP_ELASTICACHE",
        ]
        .iter()
        .any(|p| k.starts_with(p))
    }) {
        cmd.env("BACKSTOP_TABLE_PATTERN", "*");
    }
    cmd.env("BACKSTOP_BACKFILL_WINDOW", "3650d");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run backstop")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A stack on the shared test emulator and one demo-shaped table; returns the endpoint, the SDK
/// configuration, the stack, the table's name and a scratch folder for event files.
async fn stack_with_table(
    letter: &str,
    base: &str,
    items: usize,
) -> (
    String,
    aws_config::SdkConfig,
    local::LocalStack,
    String,
    std::path::PathBuf,
) {
    let endpoint = local::test_endpoint().unwrap();
    let config = emulator_config(&endpoint).await;
    let prefix = format!("{letter}{}-", std::process::id());
    let stack = local::provision(&config, &endpoint, &prefix).await.unwrap();
    let table = format!("{prefix}{base}");
    local::seed_demo_table(&aws_sdk_dynamodb::Client::new(&config), &table, items)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("backstop-cli-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    (endpoint, config, stack, table, dir)
}

#[test]
fn demo_backs_up_three_tables_and_shows_the_message_and_the_metrics() {
    // The demo starts and stops its own emulator; a small table size keeps the test quick.
    let out = backstop(&["demo", "--items", "50"], &[]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(
            "Targets:    3 selected, 3 backed up now, 0 already done for this slot, 0 failed"
        ),
        "{all}"
    );
    for t in ["SalesTable", "BuyersTable", "ProducersTable"] {
        assert!(
            all.contains(&format!("- {t}: backed up as {t}-backstop-")),
            "{all}"
        );
    }
    // The SNS message as read from the queue.
    assert!(
        all.contains("== 2. SNS message, as read from SQS queue"),
        "{all}"
    );
    assert!(
        all.contains("Subject: Backstop snapshot OK: 3 done, 0 failed of 3"),
        "{all}"
    );
    assert!(
        all.contains("Message attributes: job=snapshot severity=info"),
        "{all}"
    );
    // The metrics read back: success 1 and failure 0 for each table.
    for t in ["SalesTable", "BuyersTable", "ProducersTable"] {
        let row = all
            .lines()
            .find(|l| l.starts_with(t) && l.contains("1.000"))
            .unwrap_or_else(|| panic!("no metrics row for {t}: {all}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "1.000", "{row}");
        assert_eq!(cells[2], "0.000", "{row}");
    }
    assert!(
        all.contains("3 of 3 tables already done for this slot; 0 new backups made."),
        "{all}"
    );
    // The weekly export, each read back from S3 and compared with its table.
    assert!(all.contains("== 6. Export, the weekly job"), "{all}");
    for t in ["SalesTable", "BuyersTable", "ProducersTable"] {
        assert!(
            all.contains(&format!("- {t}: exported 50 items (")),
            "{all}"
        );
        assert!(
            all.contains(&format!("{t}: read back 50 items from S3 (MD5 and counts checked against the manifests); fingerprint equals a fresh scan of the table")),
            "{all}"
        );
    }
    assert!(all.contains("Stopped the emulator it started."), "{all}");
}

#[test]
fn help_explains_every_command_and_setting() {
    let out = backstop(&["--help"], &[]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for cmd in ["run", "backups", "demo", "local"] {
        assert!(all.contains(&format!("  {cmd} ")), "{cmd}: {all}");
    }
    for (name, _) in backstop::settings::ALL_ENV {
        assert!(all.contains(name), "{name}: {all}");
    }
    let out = backstop(&["run", "--help"], &[]);
    assert!(text(&out).contains("--event <FILE>"));
    let out = backstop(&["backups", "list", "--help"], &[]);
    assert!(text(&out).contains("--table <TABLE>"));
}

#[test]
fn a_bad_event_file_exits_2_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("backstop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"tables\": [\"ok-table\"], \"slot\": \"tomorrow\"}").unwrap();
    let out = backstop(
        &["run", "snapshot", "--event", bad.to_str().unwrap()],
        &[
            ("BACKSTOP_CATALOG_TABLE", "cat"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("error: payload: slot \"tomorrow\" is not an RFC 3339 time"),
        "{}",
        text(&out)
    );

    let out = backstop(
        &["run", "snapshot", "--event", "/nonexistent/event.json"],
        &[("AWS_REGION", "us-east-1")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("cannot read /nonexistent/event.json"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn run_snapshot_prints_a_summary_or_json_and_backups_list_reads_the_catalog() {
    let (endpoint, _config, stack, table, dir) = stack_with_table("c", "Ledger", 10).await;
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        serde_json::json!({"tables": [table], "slot": "2026-11-21T02:00:00Z"}).to_string(),
    )
    .unwrap();
    let env = [
        ("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str()),
        ("BACKSTOP_TOPIC_ARN", stack.topic_arn.as_str()),
    ];

    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "run",
            "snapshot",
            "--event",
            event.to_str().unwrap(),
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!(
            "- {table}: backed up as {table}-backstop-20261121T020000Z"
        )),
        "{all}"
    );
    assert!(all.contains("SNS message          sent"), "{all}");

    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "run",
            "snapshot",
            "--event",
            event.to_str().unwrap(),
            "--json",
        ],
        &env,
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["totals"]["already_done"], 1);
    assert_eq!(report["targets"][0]["outcome"]["status"], "already_done");

    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "backups",
            "list",
            "--table",
            &table,
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let row = all
        .lines()
        .find(|l| l.starts_with(&table))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        row.contains("2026-11-21T02:00:00Z") && row.contains("DONE") && row.contains("/backup/"),
        "{row}"
    );

    let out = backstop(
        &["--endpoint", &endpoint, "backups", "list", "--json"],
        &env,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn a_failed_table_makes_the_run_exit_1() {
    let endpoint = local::test_endpoint().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stack = rt.block_on(async {
        let config = emulator_config(&endpoint).await;
        local::provision(&config, &endpoint, &format!("f{}-", std::process::id()))
            .await
            .unwrap()
    });
    let dir = std::env::temp_dir().join(format!("backstop-cli-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let event = dir.join("event.json");
    std::fs::write(&event, r#"{"tables": ["NoSuchTable"]}"#).unwrap();
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "run",
            "snapshot",
            "--event",
            event.to_str().unwrap(),
        ],
        &[("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str())],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("- NoSuchTable: FAILED: DescribeTable on table NoSuchTable failed"),
        "{all}"
    );
}

#[tokio::test]
async fn retention_plan_prints_every_backup_with_age_decision_and_reasons() {
    let (endpoint, config, stack, table, dir) = stack_with_table("p", "Plans", 5).await;
    let env = [("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str())];
    for day in 1..=4 {
        let event = dir.join(format!("day{day}.json"));
        std::fs::write(
            &event,
            serde_json::json!({"tables": [table], "slot": format!("2026-11-0{day}T02:00:00Z")})
                .to_string(),
        )
        .unwrap();
        let out = backstop(
            &[
                "--endpoint",
                &endpoint,
                "run",
                "snapshot",
                "--event",
                event.to_str().unwrap(),
            ],
            &env,
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "retention",
            "plan",
            "--table",
            &table,
            "--policy",
            "keep_last=1,min_complete=1",
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("4 backups: 1 kept, 3 to delete"), "{all}");
    assert!(all.contains("Policy: keep_last 1 (time zone UTC)"), "{all}");
    let keep_rows: Vec<&str> = all.lines().filter(|l| l.contains("  keep     ")).collect();
    assert_eq!(keep_rows.len(), 1, "{all}");
    assert!(
        keep_rows[0].contains("keep_last 1 (one of the newest)"),
        "{all}"
    );
    assert_eq!(
        all.lines().filter(|l| l.contains(" DELETE ")).count(),
        3,
        "{all}"
    );
    assert!(
        all.contains(&format!("{table}-backstop-20261104T020000Z")),
        "{all}"
    );
    assert!(
        all.contains("0d 00h") || all.contains("0d 01h"),
        "ages are shown: {all}"
    );

    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "retention",
            "plan",
            "--table",
            &table,
            "--policy",
            "keep_last=1,min_complete=1",
            "--json",
        ],
        &env,
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["points"].as_array().map(Vec::len), Some(4));
    assert_eq!(plan["points"][3]["decision"]["decision"], "delete");

    // Planning deleted nothing.
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let listed = ddb.list_backups().table_name(&table).send().await.unwrap();
    assert_eq!(listed.backup_summaries().len(), 4);

    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "retention",
            "plan",
            "--table",
            &table,
            "--policy",
            "keep_daily=0",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("setting --policy: keep_daily must be at least 1"),
        "{}",
        text(&out)
    );
}

#[test]
fn local_up_starts_the_stack_prints_how_to_use_it_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["local", "up", "--items", "20"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run backstop local up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let all = seen.join("\n");
    assert!(all.contains("Started moto at http://127.0.0.1:"), "{all}");
    assert!(
        all.contains("Created catalog table backstop-catalog"),
        "{all}"
    );
    assert!(
        all.contains("Created SalesTable, BuyersTable, ProducersTable with 20 items each"),
        "{all}"
    );
    let export = seen
        .iter()
        .find(|l| l.starts_with("export AWS_ENDPOINT_URL="))
        .unwrap_or_else(|| panic!("{all}"));
    let endpoint = export
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("AWS_ENDPOINT_URL=");
    // The stack answers while it runs: the printed environment works for the CLI.
    let out = backstop(
        &[
            "--endpoint",
            endpoint,
            "backups",
            "list",
            "--catalog",
            "backstop-catalog",
        ],
        &[],
    );
    assert!(
        text(&out).contains("No backups recorded in catalog backstop-catalog."),
        "{}",
        text(&out)
    );

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(
        rest.iter().any(|l| l == "Stopped the emulator."),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_export_shows_progress_and_the_fingerprint_and_exports_list_reads_the_catalog() {
    let (endpoint, config, stack, table, dir) = stack_with_table("x", "Orders", 40).await;
    let bucket = format!("x{}-exports", std::process::id());
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    )
    .create_bucket()
    .bucket(&bucket)
    .send()
    .await
    .unwrap();
    let event = dir.join("export.json");
    std::fs::write(
        &event,
        serde_json::json!({"tables": [table], "slot": "2026-11-22T03:00:00Z"}).to_string(),
    )
    .unwrap();
    let env = [
        ("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str()),
        ("BACKSTOP_EXPORT_BUCKET", bucket.as_str()),
    ];
    let args = [
        "--endpoint",
        &endpoint,
        "run",
        "export",
        "--event",
        event.to_str().unwrap(),
    ];
    let out = backstop(&args, &env);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    // PITR is off on the table, so auto exports it by scan; the progress line is on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("export: 40 items,") && stderr.contains("1/1 segments done"),
        "{stderr}"
    );
    assert!(all.contains("fingerprint v2:40:"), "{all}");
    assert!(
        all.contains(&format!(
            "at s3://{bucket}/backstop/{table}/20261122T030000Z/"
        )),
        "{all}"
    );

    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "exports",
            "list",
            "--table",
            &table,
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let row = all
        .lines()
        .find(|l| l.starts_with(&table))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        row.contains("DONE")
            && row.contains("logical")
            && row.contains("full")
            && row.contains(" 40 "),
        "{row}"
    );
    let out = backstop(
        &["--endpoint", &endpoint, "exports", "list", "--json"],
        &env,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["export"]["item_count"], 40, "{list}");
}

#[tokio::test]
async fn an_rds_instance_is_snapshotted_by_run_and_restored_into_a_new_instance_only() {
    let endpoint = local::test_endpoint().unwrap();
    let config = emulator_config(&endpoint).await;
    let prefix = format!("r{}-", std::process::id());
    let stack = local::provision(&config, &endpoint, &prefix).await.unwrap();
    let rds = aws_sdk_rds::Client::new(&config);
    let id = format!("{prefix}billing");
    rds.create_db_instance()
        .db_instance_identifier(&id)
        .engine("postgres")
        .engine_version("16.3")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("backstop")
        .master_user_password("not-a-real-secret-1")
        .backup_retention_period(7)
        .send()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("backstop-cli-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let event = dir.join("event.json");
    std::fs::write(&event, r#"{"slot": "2026-11-21T02:00:00Z"}"#).unwrap();
    let env = [
        ("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str()),
        ("BACKSTOP_RDS_INSTANCES", id.as_str()),
    ];
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "run",
            "snapshot",
            "--event",
            event.to_str().unwrap(),
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let snapshot = format!("{id}-backstop-20261121t020000z");
    assert!(
        all.contains(&format!("- rds:{id}: backed up as {snapshot}")),
        "{all}"
    );

    // status and report list the instance beside any table.
    let out = backstop(&["--endpoint", &endpoint, "status", "--json"], &env);
    let st: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let line = st["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == format!("rds:{id}"))
        .unwrap_or_else(|| panic!("{st:#}"));
    assert_eq!(line["kind"], "database", "{line:#}");
    assert_eq!(line["pitr"]["state"], "on", "{line:#}");
    assert!(
        line["backup_age_s"].as_i64().is_some_and(|a| a < 3600),
        "{line:#}"
    );
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "report",
            "--month",
            "2026-11",
            "--catalog",
            &stack.catalog_table,
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains(&format!("rds:{id}")), "{all}");
    assert!(
        all.contains("0 tables backed up, 1 database backed up"),
        "{all}"
    );

    let to = format!("{prefix}billing-restored");
    let restore = |to: &str| {
        backstop(
            &[
                "--endpoint",
                &endpoint,
                "restore",
                "rds",
                "--snapshot",
                &snapshot,
                "--to",
                to,
            ],
            &env,
        )
    };
    let out = restore(&to);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!(
            "restored rds:{to} from snapshot {snapshot}: postgres 16.3, 20 GiB, available"
        )),
        "{all}"
    );
    assert!(
        all.contains("note: shaped like the source as recorded with the snapshot"),
        "{all}"
    );
    let made = rds
        .describe_db_instances()
        .db_instance_identifier(&to)
        .send()
        .await
        .unwrap();
    assert_eq!(
        made.db_instances()[0].db_instance_class(),
        Some("db.t3.micro")
    );

    // Into an existing instance (the one just made, or the source itself): refused, nothing
    // asked of RDS.
    for existing in [to.as_str(), id.as_str()] {
        let out = restore(existing);
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(
            all.contains("a restore creates a new instance only"),
            "{all}"
        );
    }
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "restore",
            "rds",
            "--instance",
            &id,
            "--latest",
            "--to",
            &format!("{prefix}billing-pitr"),
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!("from {id} at its latest restorable time")),
        "{all}"
    );
}

#[tokio::test]
async fn an_aurora_cluster_is_restored_from_its_snapshot_into_a_new_cluster_only() {
    let endpoint = local::test_endpoint().unwrap();
    let config = emulator_config(&endpoint).await;
    let prefix = format!("a{}-", std::process::id());
    let stack = local::provision(&config, &endpoint, &prefix).await.unwrap();
    let rds = aws_sdk_rds::Client::new(&config);
    let id = format!("{prefix}orders");
    rds.create_db_cluster()
        .db_cluster_identifier(&id)
        .engine("aurora-postgresql")
        .engine_version("16.4")
        .master_username("backstop")
        .master_user_password("not-a-real-secret-1")
        .backup_retention_period(7)
        .send()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("backstop-cli-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let event = dir.join("event.json");
    std::fs::write(&event, r#"{"slot": "2026-11-21T02:00:00Z"}"#).unwrap();
    let env = [
        ("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str()),
        ("BACKSTOP_AURORA_CLUSTERS", id.as_str()),
    ];
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "run",
            "snapshot",
            "--event",
            event.to_str().unwrap(),
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let snapshot = format!("{id}-backstop-20261121t020000z");
    assert!(
        all.contains(&format!("- aurora:{id}: backed up as {snapshot}")),
        "{all}"
    );
    let to = format!("{prefix}orders-restored");
    let restore = |to: &str| {
        backstop(
            &[
                "--endpoint",
                &endpoint,
                "restore",
                "aurora",
                "--snapshot",
                &snapshot,
                "--to",
                to,
            ],
            &env,
        )
    };
    let out = restore(&to);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!(
            "restored aurora:{to} from snapshot {snapshot}: aurora-postgresql 16.4"
        )),
        "{all}"
    );
    assert!(
        all.contains("has no instances: add one to connect"),
        "{all}"
    );
    // moto would silently replace an existing cluster; Backstop refuses before asking.
    for existing in [to.as_str(), id.as_str()] {
        let out = restore(existing);
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(
            all.contains("a restore creates a new cluster only"),
            "{all}"
        );
    }
    let out = backstop(&["--endpoint", &endpoint, "status", "--json"], &env);
    let st: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert!(
        st["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == format!("aurora:{id}") && l["kind"] == "database"),
        "{st:#}"
    );
}

#[tokio::test]
async fn an_elasticache_group_is_restored_from_its_snapshot_into_a_new_group_only() {
    let endpoint = local::test_endpoint().unwrap();
    let config = emulator_config(&endpoint).await;
    let prefix = format!("e{}-", std::process::id());
    let stack = local::provision(&config, &endpoint, &prefix).await.unwrap();
    let ec = aws_sdk_elasticache::Client::new(&config);
    let id = format!("{prefix}sessions");
    ec.create_replication_group()
        .replication_group_id(&id)
        .replication_group_description("sessions")
        .engine("redis")
        .cache_node_type("cache.t4g.small")
        .snapshot_retention_limit(7)
        .send()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("backstop-cli-{prefix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let event = dir.join("event.json");
    std::fs::write(&event, r#"{"slot": "2026-11-21T06:00:00Z"}"#).unwrap();
    let env = [
        ("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str()),
        ("BACKSTOP_ELASTICACHE_GROUPS", id.as_str()),
    ];
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "run",
            "snapshot",
            "--event",
            event.to_str().unwrap(),
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let snapshot = format!("{id}-backstop-20261121t060000z");
    assert!(
        all.contains(&format!("- elasticache:{id}: backed up as {snapshot}")),
        "{all}"
    );
    // A drill now, from the command line: restored, checked, measured, deleted.
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "drill",
            "--table",
            &format!("elasticache:{id}"),
        ],
        &env,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!("drill of elasticache:{id}: CONSISTENT")),
        "{all}"
    );
    assert!(all.contains("cache.t4g.small, available"), "{all}");
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "drill",
            "--table",
            &format!("elasticache:{id}"),
            "--keep",
        ],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--keep is for tables"),
        "{}",
        text(&out)
    );
    let to = format!("{prefix}sessions-r");
    let restore = |to: &str| {
        backstop(
            &[
                "--endpoint",
                &endpoint,
                "restore",
                "elasticache",
                "--snapshot",
                &snapshot,
                "--to",
                to,
            ],
            &env,
        )
    };
    let out = restore(&to);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!(
            "restored elasticache:{to} from snapshot {snapshot}: redis"
        )),
        "{all}"
    );
    assert!(!all.contains("GiB"), "{all}");
    // The new group is shaped like the source (its node type), seeded from the snapshot.
    let g = ec
        .describe_replication_groups()
        .replication_group_id(&to)
        .send()
        .await
        .unwrap();
    assert_eq!(
        g.replication_groups()[0].cache_node_type(),
        Some("cache.t4g.small")
    );
    // An identifier in use (the new group, the source) is refused before anything is asked.
    for existing in [to.as_str(), id.as_str()] {
        let out = restore(existing);
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(
            all.contains("a restore creates a new replication group only"),
            "{all}"
        );
    }
    // A name over ElastiCache's 40 characters is refused.
    let out = restore(&"a".repeat(41));
    assert!(!out.status.success());
    assert!(text(&out).contains("1 to 40 characters"), "{}", text(&out));
    let out = backstop(&["--endpoint", &endpoint, "status", "--json"], &env);
    let st: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert!(
        st["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == format!("elasticache:{id}") && l["kind"] == "database"),
        "{st:#}"
    );

    // A source that asks for an AUTH token is never restored into an open group: without a
    // token (or user groups) the restore is refused before anything is made.
    let vault = format!("{prefix}vault");
    ec.create_replication_group()
        .replication_group_id(&vault)
        .replication_group_description("vault")
        .engine("redis")
        .cache_node_type("cache.t4g.small")
        .transit_encryption_enabled(true)
        .at_rest_encryption_enabled(true)
        .auth_token("the-sources-token-0123456789")
        .send()
        .await
        .unwrap();
    let venv = [
        ("BACKSTOP_CATALOG_TABLE", stack.catalog_table.as_str()),
        ("BACKSTOP_ELASTICACHE_GROUPS", vault.as_str()),
    ];
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "run",
            "snapshot",
            "--event",
            event.to_str().unwrap(),
        ],
        &venv,
    );
    assert!(out.status.success(), "{}", text(&out));
    let vsnap = format!("{vault}-backstop-20261121t060000z");
    let vto = format!("{prefix}vault-r");
    let restore_vault = |extra: &[&str]| {
        let mut args = vec![
            "--endpoint",
            &endpoint,
            "restore",
            "elasticache",
            "--snapshot",
            &vsnap,
            "--to",
            &vto,
        ];
        args.extend_from_slice(extra);
        backstop(&args, &venv)
    };
    let out = restore_vault(&[]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("asks clients for an AUTH token"), "{all}");
    assert!(all.contains("--auth-token-file"), "{all}");
    let none = ec
        .describe_replication_groups()
        .replication_group_id(&vto)
        .send()
        .await;
    assert!(none.is_err(), "{none:?}");
    let short = dir.join("short-token");
    std::fs::write(&short, "tooshort\n").unwrap();
    let out = restore_vault(&["--auth-token-file", short.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("16 to 128"), "{}", text(&out));
    assert!(!text(&out).contains("tooshort"), "{}", text(&out));
    let token = "the-restored-groups-own-token-42";
    let good = dir.join("token");
    std::fs::write(&good, format!("{token}\n")).unwrap();
    // Even at trace level (where the SDK logs whole requests) the token is not written.
    let traced = [venv[0], venv[1], ("RUST_LOG", "trace")];
    let out = backstop(
        &[
            "--endpoint",
            &endpoint,
            "restore",
            "elasticache",
            "--snapshot",
            &vsnap,
            "--to",
            &vto,
            "--auth-token-file",
            good.to_str().unwrap(),
        ],
        &traced,
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("DEBUG"), "{all}");
    assert!(!all.contains(token), "{all}");
    let g = ec
        .describe_replication_groups()
        .replication_group_id(&vto)
        .send()
        .await
        .unwrap();
    let g = &g.replication_groups()[0];
    assert_eq!(g.auth_token_enabled(), Some(true), "{g:?}");
    assert_eq!(g.transit_encryption_enabled(), Some(true), "{g:?}");
    assert_eq!(g.at_rest_encryption_enabled(), Some(true), "{g:?}");
}
