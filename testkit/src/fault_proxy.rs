//! A small fault-injecting HTTP proxy in front of moto, for the errors moto never returns
//! (access denied, throttling, backup in use) and for lost answers. Requests that match a fault
//! get AWS's error response; under chaos, a seeded share of requests fails at random: answered
//! with throttling or a 500 without reaching moto, or carried out by moto and then their answer
//! lost (the connection is dropped), as a timeout does to a real request. Every other request
//! goes to moto unchanged. Loopback only; it serves until dropped.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One injected fault: answer requests to `operation` (the X-Amz-Target suffix, such as
/// `CreateBackup`) whose body contains `body_contains`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub operation: String,
    pub body_contains: String,
    pub status: u16,
    /// The AWS error code, such as `AccessDeniedException`.
    pub code: String,
    pub message: String,
}

impl Fault {
    /// Answers `operation` requests whose body contains `body_contains` with `code`.
    pub fn new(operation: &str, body_contains: &str, status: u16, code: &str) -> Fault {
        Fault {
            operation: operation.into(),
            body_contains: body_contains.into(),
            status,
            code: code.into(),
            message: format!("injected {code}"),
        }
    }
}

/// Random faults: a share `rate` of the requests to `operations` (all when empty) fails; of the
/// failed ones a share `lost_share` is carried out by moto and then loses its answer, the rest
/// are answered with throttling or a 500 (alternately) without reaching moto.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub rate: f64,
    pub lost_share: f64,
    pub seed: u64,
    pub operations: Vec<String>,
}

/// What chaos did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosCounts {
    /// Requests that chaos could have touched.
    pub calls: usize,
    /// Requests failed (errors and lost answers).
    pub faults: usize,
    /// Of those, carried out by moto with the answer lost.
    pub lost_answers: usize,
}

#[derive(Default)]
struct State {
    /// Every request seen: (operation, body; S3 object bodies are left out).
    log: Vec<(String, String)>,
    faults: Vec<Fault>,
    /// (operation, body_contains) of requests held without an answer.
    stalls: Vec<(String, String)>,
    /// (operation, body_contains, how many more): requests carried out, their answers lost.
    losses: Vec<(String, String, usize)>,
    /// (operation, body_contains, how many more): answers passed on with one byte changed.
    damages: Vec<(String, String, usize)>,
    injected: usize,
    chaos: Option<(Chaos, StdRng)>,
    counts: ChaosCounts,
}

/// What to do with one request.
enum Verdict {
    Answer(Fault),
    /// Held: neither forwarded nor answered, until the client goes away.
    Stall,
    Forward,
    ForwardAndLose,
    ForwardDamaged,
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (st, upstream) = (st.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &st).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            state,
            task,
        }
    }

    pub fn inject(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    /// Holds every request to `operation` whose body contains `body_contains`: not forwarded,
    /// never answered, as a process killed mid-call leaves it. The client sees nothing until
    /// it gives up or dies.
    pub fn stall(&self, operation: &str, body_contains: &str) {
        self.state
            .lock()
            .unwrap()
            .stalls
            .push((operation.into(), body_contains.into()));
    }

    /// The next `times` requests to `operation` whose body contains `body_contains` are carried
    /// out by moto and their answers lost (the connection dropped), as a timeout does to a real
    /// request: the call happened, the client cannot know.
    pub fn lose_answers(&self, operation: &str, body_contains: &str, times: usize) {
        self.state
            .lock()
            .unwrap()
            .losses
            .push((operation.into(), body_contains.into(), times));
    }

    /// The next `times` answers to `operation` requests whose body contains `body_contains`
    /// reach the client with one byte of a string value changed (still valid JSON, its headers,
    /// the CRC32 among them, unchanged), as a flipped bit on the way would.
    pub fn damage_answers(&self, operation: &str, body_contains: &str, times: usize) {
        self.state
            .lock()
            .unwrap()
            .damages
            .push((operation.into(), body_contains.into(), times));
    }

    pub fn clear(&self) {
        let mut st = self.state.lock().unwrap();
        st.faults.clear();
        st.stalls.clear();
        st.losses.clear();
        st.damages.clear();
        st.chaos = None;
    }

    /// Starts random faults (replacing any earlier chaos); the counts start from zero.
    pub fn chaos(&self, chaos: Chaos) {
        let mut st = self.state.lock().unwrap();
        let rng = StdRng::seed_from_u64(chaos.seed);
        st.chaos = Some((chaos, rng));
        st.counts = ChaosCounts::default();
    }

    pub fn counts(&self) -> ChaosCounts {
        self.state.lock().unwrap().counts
    }

    /// The bodies of the requests to `operation` seen so far, oldest first.
    pub fn requests(&self, operation: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// How many requests were answered with a fault so far.
    pub fn injected(&self) -> usize {
        self.state.lock().unwrap().injected
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves requests on one client connection until it closes.
async fn serve(mut conn: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut conn, &mut buf).await? else {
            return Ok(());
        };
        let head_text = String::from_utf8_lossy(&head).to_string();
        let body_text = String::from_utf8_lossy(&body).to_string();
        let (operation, json) = operation_of(&head_text, &body_text);
        let s3 = !json && !body_text.contains("Action=") && !head_text.contains("x-amz-target");
        {
            let logged = if s3 { String::new() } else { body_text.clone() };
            state.lock().unwrap().log.push((operation.clone(), logged));
        }
        // S3 faults match on the request line and headers (the key, the copy source), since
        // an S3 body is the object's bytes.
        let matched = if s3 { &head_text } else { &body_text };
        let verdict = decide(state, &operation, matched, json);
        let response = match verdict {
            Verdict::Answer(f) if s3 => s3_error_response(&f),
            Verdict::Answer(f) => error_response(&f, json),
            Verdict::Forward => forward(upstream, &head, &body).await?,
            Verdict::ForwardDamaged => {
                let mut response = forward(upstream, &head, &body).await?;
                // Counted only when a byte was changed, so that a test's count proves it.
                if damage(&mut response) {
                    state.lock().unwrap().injected += 1;
                }
                response
            }
            Verdict::Stall => {
                // Until the client closes the connection (or dies).
                let mut rest = [0u8; 1024];
                while conn.read(&mut rest).await? > 0 {}
                return Ok(());
            }
            Verdict::ForwardAndLose => {
                // Carried out, and then the answer is lost: the client sees the connection drop.
                let _ = forward(upstream, &head, &body).await?;
                return Ok(());
            }
        };
        conn.write_all(&response).await?;
    }
}

/// The operation a request calls, and whether its protocol is JSON (X-Amz-Target, DynamoDB) or
/// a query form (`Action=…`, SNS and CloudWatch's awsQuery).
fn operation_of(head: &str, body: &str) -> (String, bool) {
    if let Some(target) = header(head, "x-amz-target") {
        let op = target.rsplit('.').next().unwrap_or_default().to_owned();
        return (op, true);
    }
    if let Some(op) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return (op.to_owned(), false);
    }
    (s3_operation(head), false)
}

/// The S3 operation of a REST request, from its method and query.
fn s3_operation(head: &str) -> String {
    let line = head.split("\r\n").next().unwrap_or_default();
    let copy = header(head, "x-amz-copy-source").is_some();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let has = |k: &str| {
        query
            .split('&')
            .any(|kv| kv == k || kv.starts_with(&format!("{k}=")))
    };
    match method {
        "PUT" if has("partNumber") && copy => "UploadPartCopy",
        "PUT" if has("partNumber") => "UploadPart",
        "PUT" if copy => "CopyObject",
        "PUT" if has("tagging") => "PutObjectTagging",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        "GET" if has("list-type") => "ListObjectsV2",
        "GET" if has("versions") => "ListObjectVersions",
        "GET" if has("tagging") => "GetObjectTagging",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        _ => "",
    }
    .to_owned()
}

/// S3's error response (REST XML, no wrapper).
fn s3_error_response(f: &Fault) -> Vec<u8> {
    // A status of 200 is S3's "200 with an error in the body" (CopyObject, UploadPartCopy,
    // CompleteMultipartUpload can fail that way after the copy started).
    let (status, code) = match f.code.as_str() {
        _ if f.status == 200 => (200, f.code.as_str()),
        "Throttling" | "ThrottlingException" => (503, "SlowDown"),
        "InternalFailure" | "InternalServerError" => (500, "InternalError"),
        other => (f.status, other),
    };
    let payload = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message><RequestId>fault-proxy</RequestId></Error>",
        f.message
    );
    format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: application/xml\r\nx-amz-request-id: fault-proxy\r\nContent-Length: {}\r\n\r\n{}",
        payload.len(),
        payload
    )
    .into_bytes()
}

fn decide(state: &Mutex<State>, operation: &str, body: &str, json: bool) -> Verdict {
    let mut st = state.lock().unwrap();
    if st
        .stalls
        .iter()
        .any(|(op, part)| op == operation && body.contains(part.as_str()))
    {
        return Verdict::Stall;
    }
    if let Some(loss) = st
        .losses
        .iter_mut()
        .find(|(op, part, n)| *n > 0 && op == operation && body.contains(part.as_str()))
    {
        loss.2 -= 1;
        st.counts.lost_answers += 1;
        return Verdict::ForwardAndLose;
    }
    if let Some(d) = st
        .damages
        .iter_mut()
        .find(|(op, part, n)| *n > 0 && op == operation && body.contains(part.as_str()))
    {
        d.2 -= 1;
        return Verdict::ForwardDamaged;
    }
    let fixed = st
        .faults
        .iter()
        .find(|f| f.operation == operation && body.contains(&f.body_contains))
        .cloned();
    if let Some(f) = fixed {
        st.injected += 1;
        return Verdict::Answer(f);
    }
    let State { chaos, counts, .. } = &mut *st;
    let Some((c, rng)) = chaos.as_mut() else {
        return Verdict::Forward;
    };
    if !(c.operations.is_empty() || c.operations.iter().any(|o| o == operation)) {
        return Verdict::Forward;
    }
    counts.calls += 1;
    if rng.random::<f64>() >= c.rate {
        return Verdict::Forward;
    }
    counts.faults += 1;
    if rng.random::<f64>() < c.lost_share {
        counts.lost_answers += 1;
        return Verdict::ForwardAndLose;
    }
    let throttle = counts.faults % 2 == 0;
    let (status, code) = match (throttle, json) {
        (true, true) => (400, "ThrottlingException"),
        (true, false) => (400, "Throttling"),
        (false, true) => (500, "InternalServerError"),
        (false, false) => (500, "InternalFailure"),
    };
    Verdict::Answer(Fault {
        operation: operation.to_owned(),
        body_contains: String::new(),
        status,
        code: code.into(),
        message: format!("injected by chaos: {code}"),
    })
}

/// Changes the first letter or digit that starts a string value (`{"S": "…`) of the response
/// to another printable character: the body stays valid JSON of the same length. `false`, and
/// the response unchanged, when it holds no such value.
fn damage(response: &mut [u8]) -> bool {
    let body = find(response, b"\r\n\r\n").map_or(0, |i| i + 4);
    for pattern in [&b"{\"S\": \""[..], b"{\"S\":\""] {
        let mut from = body;
        while let Some(at) = find(&response[from..], pattern) {
            let i = from + at + pattern.len();
            if response[i].is_ascii_alphanumeric() {
                // Letters and digits stay printable and never become a quote or a backslash.
                response[i] ^= 1;
                return true;
            }
            from = i;
        }
    }
    false
}

/// AWS's error response for the request's protocol.
fn error_response(f: &Fault, json: bool) -> Vec<u8> {
    let (content_type, payload) = if json {
        (
            "application/x-amz-json-1.0",
            serde_json::json!({
                "__type": format!("com.amazonaws.dynamodb.v20120810#{}", f.code),
                "message": f.message,
            })
            .to_string(),
        )
    } else {
        let kind = if f.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>",
                f.code, f.message
            ),
        )
    };
    format!(
        "HTTP/1.1 {} Fault\r\nContent-Type: {content_type}\r\nx-amzn-RequestId: fault-proxy\r\nContent-Length: {}\r\n\r\n{}",
        f.status,
        payload.len(),
        payload
    )
    .into_bytes()
}

/// Reads one request (head and Content-Length body); None when the client closed.
async fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head: Vec<u8> = buf[..head_end].to_vec();
    let len: usize = header(&String::from_utf8_lossy(&head), "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Ok(Some((head, body)))
}

/// Sends one request upstream on a fresh connection and returns the whole response. The request
/// asks upstream to close, so the response ends at EOF.
async fn forward(upstream: &str, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    let text = String::from_utf8_lossy(head);
    let mut rewritten = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    up.write_all(rewritten.as_bytes()).await?;
    up.write_all(body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    // Passed back as is: moto's responses carry Content-Length, so the client knows where
    // each one ends on its connection to us.
    Ok(response)
}

fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
