//! Test tools shared by the end-to-end suites:
//! - [`TestServer`]: the gateway on `127.0.0.1:0`, stopped on drop.
//! - [`Emulator`]: a real Kinesis emulator, in-process `ferrokinesis` by
//!   default, or the one at `KINESIS_TEST_ENDPOINT` (CI runs `kinesis-local`
//!   there), with a read-back of every record in a stream.
//! - [`FaultUpstream`] (in `fault.rs`): a Kinesis-protocol fake that throttles,
//!   fails, stalls or drops connections on demand.
//! - [`http`]: a small HTTP client.
#![allow(dead_code)] // each test binary uses a different part

pub mod fault;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use bytes::Bytes;
use clickstream_gateway::app::App;
use clickstream_gateway::config::{Config, HttpConfig};
use clickstream_gateway::sink::Sink;
use clickstream_gateway::sink::kinesis::KinesisSink;
use clickstream_gateway::sink::kinesis::{KinesisConfig, RetryMode};
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// HTTP settings for tests: short enough that slow-client tests finish quickly.
pub fn http_config() -> HttpConfig {
    HttpConfig {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(10),
        ..HttpConfig::default()
    }
}

/// The default configuration with test-sized timeouts (batching on).
pub fn test_config() -> Config {
    Config {
        http: http_config(),
        readiness_cache_ttl: Duration::from_millis(200),
        ..Config::default()
    }
}

/// The gateway, serving on a loopback port until dropped or shut down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(sink: impl Sink) -> Self {
        Self::start_with(sink, &test_config()).await
    }

    pub async fn start_with(sink: impl Sink, config: &Config) -> Self {
        let app = Arc::new(App::new(Arc::new(sink), config).expect("the app starts"));
        app.check_destination().await.expect("destination usable");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(clickstream_gateway::server::run(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            app,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts graceful shutdown and returns the task that finishes with it.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        let _ = self.stop.take().map(|stop| stop.send(()));
        self.task.take().expect("shut down once")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
    }
}

/// Polls `check` every 20 ms until it returns true; panics naming `what`
/// when `within` passes first, so a condition that never comes fails the
/// test instead of hanging it.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tiny HTTP/1.1 client.
pub mod http {
    use super::*;

    /// A finished response.
    #[derive(Debug)]
    pub struct Reply {
        pub status: StatusCode,
        pub headers: HeaderMap,
        pub body: Bytes,
    }

    impl Reply {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
        }
    }

    pub fn client() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    pub async fn send(request: Request<Full<Bytes>>) -> Reply {
        send_with(&client(), request).await
    }

    pub async fn send_with(client: &Client<HttpConnector, Full<Bytes>>, request: Request<Full<Bytes>>) -> Reply {
        let response = client.request(request).await.expect("request sent");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn post(url: &str, body: impl Into<Bytes>) -> Reply {
        send(Request::post(url).body(Full::new(body.into())).unwrap()).await
    }

    pub async fn post_keyed(url: &str, key: &str, body: impl Into<Bytes>) -> Reply {
        let request = Request::post(url)
            .header("X-Partition-Key", key)
            .body(Full::new(body.into()))
            .unwrap();
        send(request).await
    }

    /// POSTs `body` with `headers`.
    pub async fn post_with(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        let mut request = Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request.body(Full::new(body.into())).unwrap()).await
    }

    pub async fn get(url: &str) -> Reply {
        send(Request::get(url).body(Full::default()).unwrap()).await
    }
}

/// Shared AWS settings pointing at `endpoint` with dummy credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Kinesis client settings with test-sized timeouts.
pub fn kinesis_config(stream_name: &str) -> KinesisConfig {
    KinesisConfig {
        stream_name: stream_name.to_owned(),
        operation_timeout: Duration::from_secs(5),
        attempt_timeout: None,
        connect_timeout: Duration::from_millis(500),
        max_attempts: NonZeroU32::new(3).unwrap(),
        retry_mode: RetryMode::Standard,
    }
}

/// One record as read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// The one record at `(shard, sequence)`; fails unless there is exactly one.
pub fn record_at<'a>(records: &'a [StoredRecord], (shard, sequence): &(String, String)) -> &'a StoredRecord {
    let found: Vec<_> = records
        .iter()
        .filter(|r| &r.shard_id == shard && &r.sequence_number == sequence)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one record at {shard}/{sequence}");
    found[0]
}

/// A real Kinesis emulator that nobody here wrote.
pub struct Emulator {
    pub endpoint: String,
    pub sdk: SdkConfig,
    pub client: aws_sdk_kinesis::Client,
    _server: Option<JoinHandle<()>>,
}

impl Emulator {
    /// `ferrokinesis` in-process on a loopback port, unless `KINESIS_TEST_ENDPOINT` names another.
    pub async fn start() -> Self {
        let (endpoint, server) = match std::env::var("KINESIS_TEST_ENDPOINT") {
            Ok(endpoint) if !endpoint.is_empty() => (endpoint, None),
            _ => {
                let options = ferrokinesis::store::StoreOptions {
                    create_stream_ms: 0,
                    shard_limit: 1000,
                    ..Default::default()
                };
                let (router, _store) = ferrokinesis::create_app(options);
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let endpoint = format!("http://{}", listener.local_addr().unwrap());
                let server = tokio::spawn(async move {
                    axum::serve(listener, router).await.unwrap();
                });
                (endpoint, Some(server))
            }
        };
        let sdk = sdk_config(&endpoint).await;
        let client = aws_sdk_kinesis::Client::new(&sdk);
        Emulator {
            endpoint,
            sdk,
            client,
            _server: server,
        }
    }

    /// Creates a stream with a random name and waits until it is ACTIVE.
    pub async fn create_stream(&self, shards: i32) -> String {
        let name = format!("test-{}", uuid::Uuid::new_v4());
        self.client
            .create_stream()
            .stream_name(&name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        for _ in 0..200 {
            let summary = self
                .client
                .describe_stream_summary()
                .stream_name(&name)
                .send()
                .await
                .expect("Describe");
            if summary.stream_description_summary.map(|s| s.stream_status) == Some(StreamStatus::Active) {
                return name;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("stream {name} did not become ACTIVE");
    }

    /// A gateway sink writing to `stream`. Timeouts are generous: these
    /// tests check what is stored, and kinesis-local serves ~150 calls/s.
    pub fn sink(&self, stream: &str) -> KinesisSink {
        let mut config = kinesis_config(stream);
        config.operation_timeout = Duration::from_secs(60);
        config.attempt_timeout = None;
        KinesisSink::new(&self.sdk, &config)
    }

    /// Whether this is an emulator outside the test process (slower).
    pub fn is_external(&self) -> bool {
        self._server.is_none()
    }

    /// Every record in `stream`, read from the start of every shard.
    pub async fn read_all(&self, stream: &str) -> Vec<StoredRecord> {
        let shards = self
            .client
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        let mut records = Vec::new();
        for shard in shards.shards.unwrap_or_default() {
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(&shard.shard_id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator");
            let mut iterator = iterator.shard_iterator;
            while let Some(current) = iterator {
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(current)
                    .send()
                    .await
                    .expect("GetRecords");
                let empty = page.records.is_empty();
                records.extend(page.records.into_iter().map(|r| StoredRecord {
                    shard_id: shard.shard_id.clone(),
                    sequence_number: r.sequence_number,
                    partition_key: r.partition_key,
                    data: r.data.into_inner(),
                }));
                if empty || page.millis_behind_latest == Some(0) && page.next_shard_iterator.is_none() {
                    break;
                }
                iterator = page.next_shard_iterator;
            }
        }
        records
    }
}
