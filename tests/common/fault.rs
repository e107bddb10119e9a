//! A Kinesis-protocol fake (JSON 1.1 over HTTP/1.1) for faults an emulator
//! cannot make: throttling, 500s, a stall, a dropped connection, a missing
//! stream. It speaks raw TCP so it can misbehave at any point, and counts the
//! calls it receives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The fake upstream; stops serving when dropped.
pub struct FaultUpstream {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl FaultUpstream {
    pub async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::new(Mutex::new(mode)), Arc::new(AtomicUsize::new(0)))
    }

    fn serve(listener: TcpListener, mode: Arc<Mutex<Mode>>, calls: Arc<AtomicUsize>) -> Self {
        let addr = listener.local_addr().unwrap();
        let (task_mode, task_calls) = (mode.clone(), calls.clone());
        let task = tokio::spawn(async move {
            // Connections live in the set, so aborting this task cuts them all.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(connection(stream, task_mode.clone(), task_calls.clone()));
            }
        });
        FaultUpstream {
            addr,
            mode,
            calls,
            task: Some(task),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Kinesis calls received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Stops listening: new connections are refused (open ones are cut too).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let listener = TcpListener::bind(self.addr).await.expect("rebinding the same port");
        let restarted = Self::serve(listener, self.mode.clone(), self.calls.clone());
        *self = restarted;
    }
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connection(mut stream: TcpStream, mode: Arc<Mutex<Mode>>, calls: Arc<AtomicUsize>) {
    while let Some(target) = read_request(&mut stream).await {
        calls.fetch_add(1, Ordering::SeqCst);
        let current = *mode.lock().unwrap();
        let (status, body) = match current {
            Mode::Healthy => success(&target),
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                success(&target)
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

fn success(target: &str) -> (u16, String) {
    let body = if target.ends_with("describestreamsummary") {
        r#"{"StreamDescriptionSummary":{"StreamName":"fake","StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/fake","StreamStatus":"ACTIVE","RetentionPeriodHours":24,"StreamCreationTimestamp":1700000000,"EnhancedMonitoring":[],"OpenShardCount":1}}"#.to_owned()
    } else {
        r#"{"ShardId":"shardId-000000000000","SequenceNumber":"49590338271490256608559692538361571095921575989136588898","EncryptionType":"NONE"}"#.to_owned()
    };
    (200, body)
}

fn error_body(code: &str, message: &str) -> String {
    format!(r#"{{"__type":"{code}","message":"{message}"}}"#)
}

/// Reads one request (head and Content-Length body); returns its X-Amz-Target.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
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
    Some(target)
}
