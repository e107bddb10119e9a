//! A Kinesis-compatible upstream that stores nothing: answers `PutRecord`,
//! `PutRecords` (one result entry per record sent) and
//! `DescribeStreamSummary` with well-formed JSON 1.1, and counts calls and
//! records. `GET /stats` returns the counts. For benchmarks only: real
//! emulators (kinesis-local ~150 req/s, kinesalite ~2.5k req/s) are far too
//! slow to be a benchmark's upstream.
//!
//! Usage: `null_kinesis [ADDR] [DELAY_MS]` (default `127.0.0.1:4599`, no
//! delay). A delay makes every put answer late, like a distant or saturated
//! stream, for overload tests.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use tokio::net::TcpListener;

#[derive(Default)]
struct Stats {
    put_record: AtomicU64,
    put_records: AtomicU64,
    records: AtomicU64,
    sequence: AtomicU64,
}

/// Only the number of entries matters; their content is skipped, not copied.
#[derive(serde::Deserialize)]
struct PutRecordsInput {
    #[serde(rename = "Records")]
    records: Vec<IgnoredAny>,
}

const DESCRIBE: &str = r#"{"StreamDescriptionSummary":{"StreamName":"bench","StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/bench","StreamStatus":"ACTIVE","RetentionPeriodHours":24,"StreamCreationTimestamp":1700000000,"EnhancedMonitoring":[],"OpenShardCount":1}}"#;

async fn answer(
    stats: Arc<Stats>,
    delay: Duration,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/stats" {
        let body = format!(
            r#"{{"put_record":{},"put_records":{},"records":{}}}"#,
            stats.put_record.load(Ordering::Relaxed),
            stats.put_records.load(Ordering::Relaxed),
            stats.records.load(Ordering::Relaxed)
        );
        return Ok(Response::new(Full::from(body)));
    }
    let target = request
        .headers()
        .get("x-amz-target")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !delay.is_zero() && (target.ends_with(b".PutRecord") || target.ends_with(b".PutRecords")) {
        tokio::time::sleep(delay).await;
    }
    let reply = if target.ends_with(b".PutRecords") {
        let count = serde_json::from_slice::<PutRecordsInput>(&body).map_or(0, |input| input.records.len());
        stats.put_records.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(count as u64, Ordering::Relaxed);
        let first = stats.sequence.fetch_add(count as u64, Ordering::Relaxed);
        let mut reply = String::with_capacity(40 + count * 100);
        reply.push_str(r#"{"FailedRecordCount":0,"EncryptionType":"NONE","Records":["#);
        for i in 0..count as u64 {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(
                reply,
                r#"{comma}{{"ShardId":"shardId-000000000000","SequenceNumber":"{:056}"}}"#,
                first + i
            );
        }
        reply.push_str("]}");
        reply
    } else if target.ends_with(b".PutRecord") {
        stats.put_record.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(1, Ordering::Relaxed);
        let sequence = stats.sequence.fetch_add(1, Ordering::Relaxed);
        format!(r#"{{"ShardId":"shardId-000000000000","SequenceNumber":"{sequence:056}","EncryptionType":"NONE"}}"#)
    } else {
        DESCRIBE.to_owned()
    };
    let mut response = Response::new(Full::from(reply));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4599".into());
    let delay = Duration::from_millis(std::env::args().nth(2).and_then(|ms| ms.parse().ok()).unwrap_or(0));
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("null kinesis listening on {}", listener.local_addr()?);
    let stats = Arc::new(Stats::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(stats.clone(), delay, request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
