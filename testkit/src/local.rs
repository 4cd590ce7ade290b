//! The local stack for the demo and the tests: moto in server mode on loopback, the catalog table,
//! the SNS topic with an SQS queue subscribed, and the three demo tables from the runbooks.
//! Compiled only with the `local` feature; never part of a Lambda binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, PutRequest, ScalarAttributeType, WriteRequest,
};
use serde::Serialize;

use backstop::catalog::create_catalog_table;
use backstop::error::{Error, Result};

/// The environment variable naming an already running emulator for the tests.
pub const ENV_TEST_ENDPOINT: &str = "BACKSTOP_TEST_ENDPOINT";

/// The launcher that starts moto's server after mending where moto 5.2.5 departs from
/// DynamoDB: a segmented Scan of a table with a binary hash key (HTTP 500 unmended) and the
/// billing mode of restored tables (dropped unmended). See the script's own notes.
pub const MOTO_MENDS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_mends.py");

/// The launcher's source, compiled in for a binary run away from the source tree.
pub const MOTO_MENDS_SOURCE: &str = include_str!("../moto_mends.py");

/// How the launcher's warnings begin (a mend not applied because moto's code is not as expected).
pub const MOTO_MENDS_WARNING: &str = "backstop moto mends: WARNING:";

/// A moto server on a loopback port, stopped when dropped (and killed by the kernel if this
/// process dies first).
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl Emulator {
    /// Starts moto's server (through the [`MOTO_MENDS_SCRIPT`] launcher, as `python3 -m
    /// moto.server` with two mends) on a free loopback port and waits until it answers.
    pub fn start() -> Result<Emulator> {
        Self::start_with_clock(None)
    }

    /// Like [`Emulator::start`], with moto's clock read from `clock_file` through libfaketime
    /// (Debian package `faketime`): write `YYYY-MM-DD hh:mm:ss` to the file to set the time that
    /// moto stamps on backups. Used to build long backup histories in tests.
    pub fn start_with_clock(clock_file: Option<&std::path::Path>) -> Result<Emulator> {
        Self::launch(clock_file, None)
    }

    /// Like [`Emulator::start`], serving HTTPS (`https://127.0.0.1:<port>`) with the PEM
    /// certificate and key given: for the tests of which authorities the SDK client trusts.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<Emulator> {
        Self::launch(None, Some((cert, key)))
    }

    fn launch(
        clock_file: Option<&std::path::Path>,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Emulator> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("backstop-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| {
            Error::Local(format!(
                "cannot create the emulator log {}: {e}",
                log.display()
            ))
        })?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| Error::Local(format!("cannot open the emulator log: {e}")))?;
        let mut cmd = Command::new("python3");
        // The launcher mends two departures of moto from DynamoDB, then runs moto's server as
        // `python3 -m moto.server` would. From the source tree when it is there, else (a CLI
        // installed elsewhere) from the copy compiled in.
        if std::path::Path::new(MOTO_MENDS_SCRIPT).is_file() {
            cmd.arg(MOTO_MENDS_SCRIPT);
        } else {
            cmd.arg("-c").arg(MOTO_MENDS_SOURCE);
        }
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        if let Some((cert, key)) = tls {
            cmd.arg("-c").arg(cert).arg("-k").arg(key);
        }
        if let Some(file) = clock_file {
            let lib = FAKETIME_LIBS
                .iter()
                .find(|p| std::path::Path::new(p).exists())
                .ok_or_else(|| {
                    Error::Local(
                        "libfaketime is not installed: apt-get install faketime (Debian package faketime)".into(),
                    )
                })?;
            // libfaketime reads the file's wall-clock time in the process's time zone; the
            // tests write UTC, so moto runs in UTC whatever the machine's zone.
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_NO_CACHE", "1")
                .env("TZ", "UTC");
        }
        // SAFETY: prctl is async-signal-safe; it asks the kernel to stop the emulator when the
        // thread that started it exits, so no emulator outlives a killed test run.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            Error::Local(format!(
                "cannot start python3 ({e}); install Python 3 and run: pip install -r requirements-dev.txt"
            ))
        })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut emulator = Emulator {
            child,
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
            log,
        };
        emulator.wait_ready(port, tls.is_some(), Duration::from_secs(60))?;
        // The launcher writes its warnings before moto serves, so they are in the log by now.
        for line in std::fs::read_to_string(&emulator.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(MOTO_MENDS_WARNING))
        {
            eprintln!("{line}");
        }
        Ok(emulator)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until moto answers over HTTP, or, serving HTTPS, until it listens (a plain probe
    /// cannot speak TLS; connections made after that queue until it serves them).
    fn wait_ready(&mut self, port: u16, tls: bool, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                let hint = if tail.contains("No module named") {
                    "moto is not installed: run pip install -r requirements-dev.txt"
                } else {
                    "see the log above"
                };
                return Err(Error::Local(format!(
                    "moto exited at start ({status}): {tail} ({hint})"
                )));
            }
            let ready = if tls {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                http_get(port, "/moto-api/").is_some()
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Local(format!(
                    "moto did not answer on port {port} within {} s; log: {}",
                    limit.as_secs(),
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

const FAKETIME_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Local(format!("cannot find a free loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Local(format!("cannot find a free loopback port: {e}")))
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.starts_with("HTTP/1.").then_some(buf)
}

/// One emulator for the whole test process, started on first use (or the one named by
/// `BACKSTOP_TEST_ENDPOINT`). It lives on a thread of its own that never ends, so the kernel
/// stops it only when the test process exits.
pub fn test_endpoint() -> Result<String> {
    static ENDPOINT: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    if let Ok(e) = std::env::var(ENV_TEST_ENDPOINT) {
        if !e.trim().is_empty() {
            return Ok(e);
        }
    }
    ENDPOINT
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("moto-emulator".into())
                .spawn(move || match Emulator::start() {
                    Ok(emulator) => {
                        // Never dropped, so its log would stay behind; it has served its
                        // purpose once moto answers.
                        let _ = std::fs::remove_file(&emulator.log);
                        let _ = tx.send(Ok(emulator.endpoint().to_owned()));
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                })
                .map_err(|e| format!("cannot start the emulator thread: {e}"))?;
            rx.recv().map_err(|e| format!("emulator thread: {e}"))?
        })
        .clone()
        .map_err(Error::Local)
}

/// Names of one local stack; tests give each stack its own prefix so they can run in parallel.
#[derive(Debug, Clone, Serialize)]
pub struct LocalStack {
    pub endpoint: String,
    pub catalog_table: String,
    pub topic_arn: String,
    pub queue_url: String,
}

/// Creates the catalog table, the topic and a queue subscribed to it. Safe to run twice.
pub async fn provision(config: &SdkConfig, endpoint: &str, prefix: &str) -> Result<LocalStack> {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    let sns = aws_sdk_sns::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let catalog_table = format!("{prefix}catalog");
    create_catalog_table(&ddb, &catalog_table).await?;
    let topic_name = format!("{prefix}notifications");
    let topic_arn = sns
        .create_topic()
        .name(&topic_name)
        .send()
        .await
        .map_err(|e| Error::aws("CreateTopic", format!("topic {topic_name}"), e))?
        .topic_arn
        .unwrap_or_default();
    let queue_name = format!("{prefix}inbox");
    let queue_url = sqs
        .create_queue()
        .queue_name(&queue_name)
        .send()
        .await
        .map_err(|e| Error::aws("CreateQueue", format!("queue {queue_name}"), e))?
        .queue_url
        .unwrap_or_default();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| Error::aws("GetQueueAttributes", format!("queue {queue_name}"), e))?
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap_or_default();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .send()
        .await
        .map_err(|e| Error::aws("Subscribe", format!("topic {topic_arn}"), e))?;
    Ok(LocalStack {
        endpoint: endpoint.to_owned(),
        catalog_table,
        topic_arn,
        queue_url,
    })
}

/// A notification as it arrived on the queue (the SNS envelope, unpacked).
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedNotification {
    pub subject: String,
    pub message: String,
    pub attributes: BTreeMap<String, String>,
}

/// Receives and deletes up to `max` notifications, waiting at most `wait` for the first.
pub async fn receive_notifications(
    config: &SdkConfig,
    queue_url: &str,
    max: usize,
    wait: Duration,
) -> Result<Vec<ReceivedNotification>> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while out.len() < max {
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| Error::aws("ReceiveMessage", format!("queue {queue_url}"), e))?;
        for m in got.messages() {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap_or("{}"))
                .map_err(|e| Error::Local(format!("queue message is not an SNS envelope: {e}")))?;
            let attributes = body["MessageAttributes"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v["Value"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ReceivedNotification {
                subject: body["Subject"].as_str().unwrap_or_default().to_owned(),
                message: body["Message"].as_str().unwrap_or_default().to_owned(),
                attributes,
            });
            if let Some(h) = m.receipt_handle() {
                let _ = sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(h)
                    .send()
                    .await;
            }
        }
        if got.messages().is_empty() && Instant::now() > deadline {
            break;
        }
    }
    Ok(out)
}

/// Reads one metric's sum over the last hour for a job and table, or for the job's run totals
/// when `table` is None (GetMetricStatistics).
pub async fn metric_sum(
    config: &SdkConfig,
    namespace: &str,
    metric: &str,
    job: &str,
    table: Option<&str>,
) -> Result<Option<f64>> {
    let cw = aws_sdk_cloudwatch::Client::new(config);
    let now = aws_smithy_types::DateTime::from_secs(jiff::Timestamp::now().as_second() + 60);
    let start = aws_smithy_types::DateTime::from_secs(jiff::Timestamp::now().as_second() - 3600);
    let dim = |n: &str, v: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(n)
            .value(v)
            .build()
    };
    let out = cw
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .set_dimensions(Some(
            std::iter::once(dim("Job", job))
                .chain(table.map(|t| dim("Table", t)))
                .collect(),
        ))
        .start_time(start)
        .end_time(now)
        .period(3600)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "GetMetricStatistics",
                format!("metric {namespace}/{metric}"),
                e,
            )
        })?;
    let points = out.datapoints();
    if points.is_empty() {
        return Ok(None);
    }
    Ok(Some(points.iter().filter_map(|p| p.sum()).sum()))
}

/// The three tables of the runbooks.
pub const DEMO_TABLES: [&str; 3] = ["SalesTable", "BuyersTable", "ProducersTable"];

/// Creates a demo table (with a GSI) and fills it with `items` realistic items.
pub async fn seed_demo_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    items: usize,
) -> Result<()> {
    let kind = DemoKind::of(table);
    create_demo_table(ddb, table, kind).await?;
    let mut rng = Lcg(0x5eed ^ table.len() as u64);
    let all: Vec<WriteRequest> = (0..items)
        .map(|i| {
            let item = kind.item(i, &mut rng);
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("item is set"),
                )
                .build()
        })
        .collect();
    for chunk in all.chunks(25) {
        batch_write_all(ddb, table, chunk.to_vec()).await?;
    }
    Ok(())
}

/// BatchWriteItem with retries of `UnprocessedItems`; an item that cannot be written is an error,
/// never a silent loss.
pub async fn batch_write_all(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<()> {
    let mut delay = Duration::from_millis(50);
    for _ in 0..8 {
        let out = ddb
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| Error::aws("BatchWriteItem", format!("table {table}"), e))?;
        requests = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(Error::Aws {
        operation: "BatchWriteItem",
        resource: format!("table {table}"),
        code: None,
        message: format!(
            "{} items still unprocessed after 8 attempts",
            requests.len()
        ),
        retryable: true,
        hint: "the table is throttled; retry later or raise its capacity".into(),
    })
}

#[derive(Debug, Clone, Copy)]
enum DemoKind {
    Sales,
    Buyers,
    Producers,
}

impl DemoKind {
    fn of(table: &str) -> DemoKind {
        if table.starts_with("Buyers") {
            DemoKind::Buyers
        } else if table.starts_with("Producers") {
            DemoKind::Producers
        } else {
            DemoKind::Sales
        }
    }

    /// (hash key, range key, GSI name, GSI hash key, GSI range key)
    fn schema(
        self,
    ) -> (
        &'static str,
        Option<&'static str>,
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            DemoKind::Sales => ("PK", Some("SK"), "byBuyer", "buyerId", "createdAt"),
            DemoKind::Buyers => ("buyerId", None, "byEmail", "email", "createdAt"),
            DemoKind::Producers => ("producerId", None, "byRegion", "region", "name"),
        }
    }

    fn item(self, i: usize, rng: &mut Lcg) -> std::collections::HashMap<String, AttributeValue> {
        let s = |v: String| AttributeValue::S(v);
        let n = |v: String| AttributeValue::N(v);
        const FIRST: [&str; 8] = [
            "Ana", "Bruno", "Carla", "Diego", "Elena", "Fabio", "Gloria", "Hugo",
        ];
        const LAST: [&str; 8] = [
            "Silva", "Costa", "Pereira", "Almeida", "Souza", "Lima", "Gomes", "Ribeiro",
        ];
        const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];
        const PRODUCTS: [&str; 6] = ["coffee", "cocoa", "honey", "cheese", "olive-oil", "wine"];
        let day = 1 + rng.next() % 28;
        let month = 1 + rng.next() % 12;
        let created = format!(
            "2026-{month:02}-{day:02}T{:02}:{:02}:00Z",
            rng.next() % 24,
            rng.next() % 60
        );
        let mut m = std::collections::HashMap::new();
        match self {
            DemoKind::Sales => {
                let sale = i / 4;
                let line = i % 4;
                m.insert("PK".into(), s(format!("SALE#{sale:06}")));
                m.insert(
                    "SK".into(),
                    s(if line == 0 {
                        "META".into()
                    } else {
                        format!("LINE#{line}")
                    }),
                );
                m.insert("buyerId".into(), s(format!("B{:05}", rng.next() % 500)));
                m.insert("createdAt".into(), s(created));
                m.insert(
                    "product".into(),
                    s(PRODUCTS[(rng.next() % 6) as usize].into()),
                );
                m.insert("quantity".into(), n((1 + rng.next() % 20).to_string()));
                m.insert(
                    "amountCents".into(),
                    n((100 + rng.next() % 50_000).to_string()),
                );
                m.insert(
                    "status".into(),
                    s(["PAID", "PENDING", "SHIPPED"][(rng.next() % 3) as usize].into()),
                );
            }
            DemoKind::Buyers => {
                let first = FIRST[(rng.next() % 8) as usize];
                let last = LAST[(rng.next() % 8) as usize];
                m.insert("buyerId".into(), s(format!("B{i:05}")));
                m.insert("name".into(), s(format!("{first} {last}")));
                m.insert(
                    "email".into(),
                    s(format!(
                        "{}.{}{i}@example.com",
                        first.to_lowercase(),
                        last.to_lowercase()
                    )),
                );
                m.insert("createdAt".into(), s(created));
                m.insert(
                    "region".into(),
                    s(REGIONS[(rng.next() % 5) as usize].into()),
                );
            }
            DemoKind::Producers => {
                m.insert("producerId".into(), s(format!("P{i:05}")));
                m.insert(
                    "name".into(),
                    s(format!(
                        "{} {} Farm",
                        LAST[(rng.next() % 8) as usize],
                        PRODUCTS[(rng.next() % 6) as usize]
                    )),
                );
                m.insert(
                    "region".into(),
                    s(REGIONS[(rng.next() % 5) as usize].into()),
                );
                m.insert(
                    "certified".into(),
                    AttributeValue::Bool(rng.next().is_multiple_of(2)),
                );
                m.insert("since".into(), s(created));
            }
        }
        m
    }
}

async fn create_demo_table(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    kind: DemoKind,
) -> Result<()> {
    let (hash, range, gsi, gsi_hash, gsi_range) = kind.schema();
    let def = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set")
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("name and type are set")
    };
    let mut req = ddb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def(hash))
        .key_schema(key(hash, KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(gsi)
                .key_schema(key(gsi_hash, KeyType::Hash))
                .key_schema(key(gsi_range, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index fields are set"),
        );
    let mut defined = vec![hash];
    if let Some(r) = range {
        req = req
            .attribute_definitions(def(r))
            .key_schema(key(r, KeyType::Range));
        defined.push(r);
    }
    for a in [gsi_hash, gsi_range] {
        if !defined.contains(&a) {
            req = req.attribute_definitions(def(a));
            defined.push(a);
        }
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(Error::aws("CreateTable", format!("table {table}"), e)),
    }
}

/// A tiny deterministic generator: the demo data is the same on every machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
