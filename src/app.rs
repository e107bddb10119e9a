//! The gateway's shared state, built once at start-up from [`Config`]: the
//! writer and sink, the store the doors put records into (the writer,
//! wrapped by the spill), readiness, the record size limit, and the doors'
//! own narrow context ([`Doors`]), which is all a door sees.
//!
//! Start-up asks the destination about itself once: a stream that does not
//! exist or cannot be accessed stops start-up (fail fast, an operator must
//! act), while an unreachable one only makes the instance unready until it
//! answers, so a short outage at deploy time does not crash-loop the fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::access::Access;
use crate::config::{BatchConfig, Config, ConfigError, HttpConfig};
use crate::dedupe::Dedupe;
use crate::doors::Doors;
use crate::in_flight::InFlight;
use crate::live::Hub;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::readiness::{Readiness, Verdict};
use crate::sink::{self, Destination, Sink, SinkError, SinkLimits};
use crate::spill::{Spill, SpillStore};
use crate::store::{Store, StreamStore};
use crate::writer::Writer;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The sink could not be built.
    #[error(transparent)]
    Sink(#[from] sink::BuildError),
    /// A setting asks for more than the sink takes.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The spill directory cannot be used.
    #[error(transparent)]
    Spill(#[from] crate::spill::OpenError),
    /// `SOURCES_FILE` or `REDIS_URL` cannot be used (for the quotas or for
    /// dedupe).
    #[error("{0}")]
    Sources(String),
    /// The stream is missing or not accessible.
    #[error("stream {stream:?} cannot be used: {source}")]
    Stream {
        /// The configured stream name.
        stream: String,
        /// What the sink said.
        source: SinkError,
    },
}

/// State shared by every connection: narrow handles, each layer's own.
#[derive(Debug)]
pub struct App {
    /// Where the doors put records: the stream, wrapped by the spill when
    /// `SPILL_DIR` is set. The doors reach it through [`Doors`]; readiness
    /// asks it here.
    store: Arc<dyn Store>,
    writer: Writer,
    readiness: Arc<Readiness>,
    /// The record limit, as the destination last said; the doors read it.
    max_record_bytes: Arc<AtomicUsize>,
    doors: Doors,
    http: HttpConfig,
    metrics: Arc<Metrics>,
    public_metrics: bool,
    spill: bool,
}

impl App {
    /// Wraps an already built sink with the HTTP, batching, spill and
    /// readiness settings of `config` (its sink settings are not read), after
    /// the start-up checks of the settings against the sink. The record
    /// limit starts at the sink's default. Starts the writer (and the
    /// spill), so it must run inside a tokio runtime.
    pub fn new(sink: Arc<dyn Sink>, config: &Config) -> Result<Self, StartError> {
        check_settings(config, sink.kind(), &sink.limits())?;
        let metrics = Arc::new(Metrics::new());
        let limits = sink.limits();
        let max_record_bytes = Arc::new(AtomicUsize::new(limits.max_record_bytes));
        let writer = Writer::new(sink, metrics.clone(), config.batch);
        let readiness = Arc::new(Readiness::new(config.readiness_cache_ttl));
        let stream: Arc<dyn Store> = Arc::new(StreamStore::new(writer.clone(), readiness.clone()));
        let store: Arc<dyn Store> = match &config.spill {
            Some(spill) => {
                let spill = Spill::open(spill, &writer, &metrics)?;
                Arc::new(SpillStore::new(stream, spill, metrics.clone()))
            }
            None => stream,
        };
        let quotas = Quotas::new(&config.quota, metrics.clone()).map_err(StartError::Sources)?;
        quotas.start(&config.quota).map_err(StartError::Sources)?;
        let dedupe = Dedupe::new(
            &config.dedupe,
            config.quota.redis_url.as_deref(),
            writer.sink().deadlines().record_timeout,
            metrics.clone(),
        )
        .map_err(StartError::Sources)?;
        let doors = Doors::new(
            config,
            store.clone(),
            max_record_bytes.clone(),
            limits.max_key_chars,
            metrics.clone(),
            quotas,
            dedupe,
        );
        Ok(App {
            store,
            writer,
            readiness,
            max_record_bytes,
            doors,
            http: config.http,
            metrics,
            public_metrics: config.metrics_addr.is_none(),
            spill: config.spill.is_some(),
        })
    }

    /// Builds the configured sink and checks the destination once.
    pub async fn from_config(config: &Config) -> Result<Self, StartError> {
        let app = App::new(sink::build(&config.sink).await?, config)?;
        app.check_destination().await?;
        Ok(app)
    }

    /// Start-up check: learn the record limit, refuse to start on a missing or
    /// forbidden stream, and only warn when it cannot be reached yet.
    pub async fn check_destination(&self) -> Result<(), StartError> {
        match self.sink().describe().await {
            Ok(destination) => {
                self.apply(&destination);
                if !destination.writable {
                    tracing::warn!(status = %destination.status, "the stream is not writable yet; not ready");
                }
                Ok(())
            }
            Err(err) if !err.is_transient() => Err(StartError::Stream {
                stream: self.sink().target(),
                source: err,
            }),
            Err(err) => {
                tracing::warn!(error = %err, "the stream cannot be reached yet; starting unready");
                Ok(())
            }
        }
    }

    /// What the doors that take events see of the gateway.
    pub(crate) fn doors(&self) -> &Doors {
        &self.doors
    }

    /// The in-flight caps and body deadline every door shares.
    pub fn in_flight(&self) -> &InFlight {
        self.doors.in_flight()
    }

    /// API keys and CORS.
    pub(crate) fn access(&self) -> &Access {
        self.doors.access()
    }

    /// The live view's hub: the doors tell it what arrives, `api.rs` what is
    /// refused.
    pub fn live(&self) -> &Arc<Hub> {
        self.doors.live()
    }

    /// Whether the durable spill is on (`SPILL_DIR`).
    pub fn has_spill(&self) -> bool {
        self.spill
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.readiness.is_shutting_down()
    }

    /// This instance's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The HTTP server's settings (timeouts, connection caps).
    pub fn http(&self) -> &HttpConfig {
        &self.http
    }

    /// Whether to log one line per request.
    pub(crate) fn access_log(&self) -> bool {
        self.doors.access_log()
    }

    /// Whether `/metrics` is served on the public port (no `METRICS_ADDR`).
    pub fn public_metrics(&self) -> bool {
        self.public_metrics
    }

    /// The largest record (data + partition key) accepted, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.load(Ordering::Relaxed)
    }

    /// The readiness probe's answer: the stream's, as the store sees it (a
    /// spill with room keeps the instance ready while the stream is away).
    /// Shutting down is final.
    pub async fn readiness(&self) -> Verdict {
        let verdict = self
            .readiness
            .check(self.sink().as_ref(), |destination| self.apply(destination))
            .await;
        if self.readiness.is_shutting_down() {
            return verdict;
        }
        self.store.verdict(verdict)
    }

    /// Readiness turns to "not ready" for good.
    pub fn begin_shutdown(&self) {
        self.readiness.begin_shutdown();
    }

    /// The sink, for logs and `/readyz`.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        self.writer.sink()
    }

    fn apply(&self, destination: &Destination) {
        if let Some(limit) = destination.max_record_bytes {
            self.max_record_bytes.store(limit, Ordering::Relaxed);
        }
    }
}

/// Every start-up check of the settings against the sink: the batch
/// settings ([`check_batch`]), and budgets that could never hold one record
/// (every request would then fail). Called by [`App::new`], the path the
/// binary takes, so none can be left unwired.
pub fn check_settings(config: &Config, kind: &str, limits: &SinkLimits) -> Result<(), ConfigError> {
    check_batch(&config.batch, kind, limits)?;
    let record = limits.max_record_bytes;
    let budget = config.http.max_in_flight_body_bytes.get();
    if budget < record {
        return Err(ConfigError {
            name: "MAX_IN_FLIGHT_BODY_BYTES",
            value: budget.to_string(),
            reason: format!("must hold at least one record: the {kind} sink's record limit is {record} bytes"),
        });
    }
    if let Some(spill) = &config.spill {
        let frame = crate::spill::frame_size(record, limits.max_key_chars);
        let lanes = spill.lanes.get() as u64;
        if spill.max_bytes / lanes < frame as u64 {
            return Err(ConfigError {
                name: "SPILL_MAX_BYTES",
                value: spill.max_bytes.to_string(),
                reason: format!(
                    "must hold at least one record per lane: {frame} bytes for the {kind} sink's largest, times SPILL_LANES={lanes}"
                ),
            });
        }
    }
    Ok(())
}

/// The batch settings against what the `kind` sink takes: more records or
/// bytes per call than it accepts would fail every full call, so start-up
/// refuses them, naming the variable.
pub fn check_batch(batch: &BatchConfig, kind: &str, limits: &SinkLimits) -> Result<(), ConfigError> {
    let over = |name, value: usize, max: usize, what| ConfigError {
        name,
        value: value.to_string(),
        reason: format!("the {kind} sink takes at most {max} {what} per call"),
    };
    if batch.max_records.get() > limits.max_batch_records {
        return Err(over(
            "BATCH_MAX_RECORDS",
            batch.max_records.get(),
            limits.max_batch_records,
            "records",
        ));
    }
    if batch.max_bytes.get() > limits.max_batch_bytes {
        return Err(over(
            "BATCH_MAX_BYTES",
            batch.max_bytes.get(),
            limits.max_batch_bytes,
            "bytes",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_settings_over_the_sinks_caps_stop_start_up() {
        let limits = crate::sink::kinesis::LIMITS;
        let defaults = BatchConfig::default();
        assert!(check_batch(&defaults, "kinesis", &limits).is_ok());
        let mut batch = defaults;
        batch.max_records = std::num::NonZeroUsize::new(501).unwrap();
        let err = check_batch(&batch, "kinesis", &limits).unwrap_err();
        assert_eq!(
            (err.name, err.value.as_str(), err.reason.as_str()),
            (
                "BATCH_MAX_RECORDS",
                "501",
                "the kinesis sink takes at most 500 records per call"
            )
        );
        let mut batch = defaults;
        batch.max_bytes = std::num::NonZeroUsize::new(10 * 1024 * 1024 + 1).unwrap();
        assert_eq!(
            check_batch(&batch, "kinesis", &limits).unwrap_err().name,
            "BATCH_MAX_BYTES"
        );
    }
}
