//! A small fault-injecting HTTP proxy in front of moto, for the errors moto never returns
//! (access denied, throttling, backup in use). Requests that match a fault get AWS's JSON error
//! response; every other request goes to moto unchanged. Loopback only; it serves until dropped.

use std::sync::{Arc, Mutex};

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

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    injected: usize,
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

    pub fn clear(&self) {
        self.state.lock().unwrap().faults.clear();
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
        let target = header(&head_text, "x-amz-target").unwrap_or_default();
        let body_text = String::from_utf8_lossy(&body);
        let fault = {
            let mut st = state.lock().unwrap();
            let f = st
                .faults
                .iter()
                .find(|f| {
                    target.ends_with(&format!(".{}", f.operation))
                        && body_text.contains(&f.body_contains)
                })
                .cloned();
            if f.is_some() {
                st.injected += 1;
            }
            f
        };
        let response = match fault {
            Some(f) => {
                let payload = serde_json::json!({
                    "__type": format!("com.amazonaws.dynamodb.v20120810#{}", f.code),
                    "message": f.message,
                })
                .to_string();
                format!(
                    "HTTP/1.1 {} Fault\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: fault-proxy\r\nContent-Length: {}\r\n\r\n{}",
                    f.status,
                    payload.len(),
                    payload
                )
                .into_bytes()
            }
            None => forward(upstream, &head, &body).await?,
        };
        conn.write_all(&response).await?;
    }
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
