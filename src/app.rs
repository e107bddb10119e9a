//! The gateway's shared state: the sink, readiness, the record size limit and
//! the HTTP settings, built once at start-up from [`Config`].
//!
//! Start-up asks the destination about itself once: a stream that does not
//! exist or cannot be accessed stops start-up (fail fast, an operator must
//! act), while an unreachable one only makes the instance unready until it
//! answers, so a short outage at deploy time does not crash-loop the fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::access::Access;
use crate::batcher::Batcher;
use crate::config::{Config, HttpConfig, SinkConfig};
use crate::metrics::{GaugeGuard, Metrics};
use crate::readiness::{Readiness, Verdict};
use crate::sink::file::FileSink;
use crate::sink::kinesis::KinesisSink;
use crate::sink::{Destination, Receipt, Record, Sink, SinkError};

/// Kinesis's default maximum record size (data + partition key), used until
/// the stream says otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The file sink's file cannot be opened.
    #[error("cannot open the file sink at {path}: {source}")]
    FileSink {
        /// The configured path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The stream is missing or not accessible.
    #[error("stream {stream:?} cannot be used: {source}")]
    Stream {
        /// The configured stream name.
        stream: String,
        /// What Kinesis said.
        source: SinkError,
    },
}

/// State shared by every connection.
#[derive(Debug)]
pub struct App {
    sink: Arc<Sink>,
    /// Present when batching is on.
    batcher: Option<Batcher>,
    readiness: Readiness,
    max_record_bytes: AtomicUsize,
    /// HTTP server settings.
    pub http: HttpConfig,
    /// This instance's metrics.
    pub metrics: Arc<Metrics>,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// Whether `/metrics` is served on the public port (no `METRICS_ADDR`).
    pub public_metrics: bool,
    /// API keys and CORS.
    pub access: Access,
    /// One permit per `/import` request in flight (`MAX_IN_FLIGHT_REQUESTS`).
    pub request_slots: Arc<Semaphore>,
    /// One permit per body byte held by requests in flight (`MAX_IN_FLIGHT_BODY_BYTES`).
    pub body_budget: Arc<Semaphore>,
}

impl App {
    /// Wraps an already built sink with the HTTP, batching and readiness
    /// settings of `config` (its sink settings are not read). The record limit
    /// starts at Kinesis's default. Starts the batching task when enabled, so
    /// it must run inside a tokio runtime.
    pub fn new(sink: Sink, config: &Config) -> Self {
        let sink = Arc::new(sink);
        let metrics = Arc::new(Metrics::new());
        let batcher = config.batch.enabled.then(|| {
            let (record_timeout, max_attempts) = sink.deadline_and_attempts();
            Batcher::spawn(
                sink.clone(),
                metrics.clone(),
                config.batch,
                record_timeout,
                max_attempts,
            )
        });
        App {
            sink,
            batcher,
            readiness: Readiness::new(config.readiness_cache_ttl),
            max_record_bytes: AtomicUsize::new(DEFAULT_MAX_RECORD_BYTES),
            http: config.http,
            metrics,
            access_log: config.access_log,
            public_metrics: config.metrics_addr.is_none(),
            access: Access::new(&config.access),
            request_slots: Arc::new(Semaphore::new(config.http.max_in_flight_requests.get())),
            body_budget: Arc::new(Semaphore::new(config.http.max_in_flight_body_bytes.get())),
        }
    }

    /// Builds the sink from `config` (AWS settings from aws-config's default
    /// chain) and checks the destination once.
    pub async fn from_config(config: &Config) -> Result<Self, StartError> {
        let sink = match &config.sink {
            SinkConfig::Kinesis(kinesis) => {
                let sdk = aws_config::load_from_env().await;
                Sink::Kinesis(KinesisSink::new(&sdk, kinesis))
            }
            SinkConfig::File { path } => Sink::File(FileSink::open(path).map_err(|source| StartError::FileSink {
                path: path.display().to_string(),
                source,
            })?),
        };
        let app = App::new(sink, config);
        app.check_destination().await?;
        Ok(app)
    }

    /// Start-up check: learn the record limit, refuse to start on a missing or
    /// forbidden stream, and only warn when it cannot be reached yet.
    pub async fn check_destination(&self) -> Result<(), StartError> {
        match self.sink.describe().await {
            Ok(destination) => {
                self.apply(&destination);
                if !destination.writable {
                    tracing::warn!(status = %destination.status, "the stream is not writable yet; not ready");
                }
                Ok(())
            }
            Err(err @ (SinkError::Misconfigured(_) | SinkError::Rejected(_))) => Err(StartError::Stream {
                stream: self.sink.target(),
                source: err,
            }),
            Err(err) => {
                tracing::warn!(error = %err, "the stream cannot be reached yet; starting unready");
                Ok(())
            }
        }
    }

    /// Stores one record (through a shared `PutRecords` when batching is on,
    /// else its own `PutRecord`), keeping readiness up to date.
    pub async fn put(&self, record: Record) -> Result<Receipt, SinkError> {
        let result = match &self.batcher {
            Some(batcher) => batcher.put(record).await,
            None => {
                let _in_flight = GaugeGuard::inc(self.metrics.upstream_in_flight());
                let started = std::time::Instant::now();
                let result = self.sink.put(record).await;
                self.metrics
                    .upstream_call(self.sink.put_operation(), result.as_ref().err(), started.elapsed());
                result
            }
        };
        match &result {
            Ok(_) => self.readiness.record_stored(),
            Err(SinkError::Unavailable(_) | SinkError::Misconfigured(_)) => self.readiness.record_failed(),
            Err(SinkError::Throttled(_) | SinkError::Rejected(_) | SinkError::Overloaded(_)) => {}
        }
        result
    }

    /// The largest record (data + partition key) accepted, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.load(Ordering::Relaxed)
    }

    /// The readiness probe's answer.
    pub async fn readiness(&self) -> Verdict {
        self.readiness
            .check(&self.sink, |destination| self.apply(destination))
            .await
    }

    /// Readiness turns to "not ready" for good.
    pub fn begin_shutdown(&self) {
        self.readiness.begin_shutdown();
    }

    /// The sink, for logs and `/readyz`.
    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    fn apply(&self, destination: &Destination) {
        if let Some(limit) = destination.max_record_bytes {
            self.max_record_bytes.store(limit, Ordering::Relaxed);
        }
    }
}
