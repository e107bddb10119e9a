//! A Kinesis-protocol fake (JSON 1.1 over HTTP/1.1) for faults an emulator
//! cannot make: throttling, 500s, a stall, a dropped connection, a missing
//! stream. It speaks raw TCP so it can misbehave at any point, and counts the
//! calls it receives.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the fake answers the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Well-formed success answers.
    Healthy,
    /// Success, after a delay.
    Slow(Duration),
    /// 400 ProvisionedThroughputExceededException.
    Throttle,
    /// 500 InternalFailure.
    InternalError,
    /// 400 ResourceNotFoundException.
    StreamMissing,
    /// 400 InvalidArgumentException.
    InvalidArgument,
    /// Reads the request, never answers.
    Stall,
    /// Reads the request, closes the connection without a word.
    Drop,
}

/// One PutRecord/PutRecords call as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The operation, e.g. `PutRecords`.
    pub operation: String,
    /// Records in the call.
    pub records: usize,
    /// Data (decoded) + partition key bytes in the call.
    pub bytes: usize,
}

#[derive(Default)]
struct Shared {
    calls: AtomicUsize,
    log: Mutex<Vec<Call>>,
    /// Partition keys seen, for `throttle-once-*` entries.
    seen: Mutex<HashSet<String>>,
    sequence: AtomicUsize,
    /// Write calls being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// (partition key, data) of every entry answered with a sequence number.
    stored: Mutex<Vec<(String, Vec<u8>)>>,
}

/// The fake upstream; stops serving when dropped.
///
/// In `PutRecords`, entries are failed by partition key, whatever the mode:
/// a key starting with `throttle-always` is always throttled, one starting
/// with `throttle-once` only the first time it is seen.
pub struct FaultUpstream {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl FaultUpstream {
    pub async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::new(Mutex::new(mode)), Arc::default())
    }

    fn serve(listener: TcpListener, mode: Arc<Mutex<Mode>>, shared: Arc<Shared>) -> Self {
        let addr = listener.local_addr().unwrap();
        let (task_mode, task_shared) = (mode.clone(), shared.clone());
        let task = tokio::spawn(async move {
            // Connections live in the set, so aborting this task cuts them all.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(connection(stream, task_mode.clone(), task_shared.clone()));
            }
        });
        FaultUpstream {
            addr,
            mode,
            shared,
            task: Some(task),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Kinesis calls received so far, of any operation.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// The PutRecord/PutRecords calls received so far.
    pub fn writes(&self) -> Vec<Call> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The most write calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// (partition key, data) of every entry the fake stored, in order.
    pub fn stored(&self) -> Vec<(String, Vec<u8>)> {
        self.shared.stored.lock().unwrap().clone()
    }

    /// Stops listening: new connections are refused (open ones are cut too).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// [`FaultUpstream::stop`], returning once the listener and every
    /// connection are gone: no request is answered after it.
    pub async fn halt(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.halt().await;
        let listener = TcpListener::bind(self.addr).await.expect("rebinding the same port");
        let restarted = Self::serve(listener, self.mode.clone(), self.shared.clone());
        *self = restarted;
    }
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connection(mut stream: TcpStream, mode: Arc<Mutex<Mode>>, shared: Arc<Shared>) {
    while let Some((target, body)) = read_request(&mut stream).await {
        shared.calls.fetch_add(1, Ordering::SeqCst);
        let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
        let current = *mode.lock().unwrap();
        let _in_flight = InFlight::enter(&shared, &operation);
        let (status, body) = match current {
            Mode::Healthy => success(&operation, &body, &shared),
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                success(&operation, &body, &shared)
            }
            Mode::Throttle => (
                400,
                error_body("ProvisionedThroughputExceededException", "Rate exceeded for shard"),
            ),
            Mode::InternalError => (500, error_body("InternalFailure", "internal failure")),
            Mode::StreamMissing => (400, error_body("ResourceNotFoundException", "Stream not found")),
            Mode::InvalidArgument => (400, error_body("InvalidArgumentException", "bad record")),
            Mode::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::Drop => return,
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Counts a write call as in flight while it lives.
struct InFlight<'a>(Option<&'a Shared>);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared, operation: &str) -> Self {
        if !operation.starts_with("put") {
            return InFlight(None);
        }
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Some(shared))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn success(operation: &str, request: &[u8], shared: &Shared) -> (u16, String) {
    let request: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let next_sequence = || format!("{:056}", shared.sequence.fetch_add(1, Ordering::SeqCst) + 1);
    let body = match operation {
        "describestreamsummary" => json!({"StreamDescriptionSummary": {
            "StreamName": "fake", "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/fake",
            "StreamStatus": "ACTIVE", "RetentionPeriodHours": 24, "StreamCreationTimestamp": 1700000000,
            "EnhancedMonitoring": [], "OpenShardCount": 1}}),
        "putrecords" => {
            let entries = request["Records"].as_array().cloned().unwrap_or_default();
            log(shared, "PutRecords", &entries);
            let mut failed = 0;
            let results: Vec<Value> = entries
                .iter()
                .map(|entry| {
                    let key = entry["PartitionKey"].as_str().unwrap_or_default();
                    let first_time = shared.seen.lock().unwrap().insert(key.to_owned());
                    if key.starts_with("throttle-always") || key.starts_with("throttle-once") && first_time {
                        failed += 1;
                        json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
                    } else {
                        store(shared, entry);
                        json!({"ShardId": "shardId-000000000000", "SequenceNumber": next_sequence()})
                    }
                })
                .collect();
            json!({"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"})
        }
        _ => {
            log(shared, "PutRecord", std::slice::from_ref(&request));
            store(shared, &request);
            json!({"ShardId": "shardId-000000000000", "SequenceNumber": next_sequence(), "EncryptionType": "NONE"})
        }
    };
    (200, body.to_string())
}

fn log(shared: &Shared, operation: &str, entries: &[Value]) {
    let bytes = entries
        .iter()
        .map(|e| {
            let data = BASE64
                .decode(e["Data"].as_str().unwrap_or_default())
                .map_or(0, |d| d.len());
            data + e["PartitionKey"].as_str().map_or(0, str::len)
        })
        .sum();
    let call = Call {
        operation: operation.into(),
        records: entries.len(),
        bytes,
    };
    shared.log.lock().unwrap().push(call);
}

fn store(shared: &Shared, entry: &Value) {
    let key = entry["PartitionKey"].as_str().unwrap_or_default().to_owned();
    let data = BASE64
        .decode(entry["Data"].as_str().unwrap_or_default())
        .unwrap_or_default();
    shared.stored.lock().unwrap().push((key, data));
}

fn error_body(code: &str, message: &str) -> String {
    json!({"__type": code, "message": message}).to_string()
}

/// Reads one request (head and Content-Length body); returns its lower-case
/// X-Amz-Target and its body.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            line.strip_prefix(name)
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let target = header("x-amz-target").unwrap_or_default();
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((target, buf[head_end..head_end + length].to_vec()))
}
