//! The gateway's shared state: the writer (and the sink behind it),
//! readiness, the record size limit and the HTTP settings, built once at
//! start-up from [`Config`].
//!
//! Start-up asks the destination about itself once: a stream that does not
//! exist or cannot be accessed stops start-up (fail fast, an operator must
//! act), while an unreachable one only makes the instance unready until it
//! answers, so a short outage at deploy time does not crash-loop the fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::access::Access;
use crate::config::{BatchConfig, Config, ConfigError, HttpConfig, ImportConfig, SdkConfig};
use crate::metrics::Metrics;
use crate::readiness::{Readiness, Verdict};
use crate::sink::{self, Destination, Outcomes, Receipt, Record, Sink, SinkError, SinkLimits};
use crate::spill::{AppendError, Spill};
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
    /// The stream is missing or not accessible.
    #[error("stream {stream:?} cannot be used: {source}")]
    Stream {
        /// The configured stream name.
        stream: String,
        /// What the sink said.
        source: SinkError,
    },
}

/// State shared by every connection.
#[derive(Debug)]
pub struct App {
    writer: Writer,
    /// The durable spill, when `SPILL_DIR` is set.
    spill: Option<Spill>,
    readiness: Readiness,
    max_record_bytes: AtomicUsize,
    /// HTTP server settings.
    pub http: HttpConfig,
    /// Limits and partition keys of the endpoints that take events.
    pub import: ImportConfig,
    /// Limits and client-IP policy of the analytics SDKs' endpoints.
    pub sdk: SdkConfig,
    /// This instance's metrics.
    pub metrics: Arc<Metrics>,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// Whether `/metrics` is served on the public port (no `METRICS_ADDR`).
    pub public_metrics: bool,
    /// API keys and CORS.
    pub access: Access,
    /// One permit per event request in flight (`MAX_IN_FLIGHT_REQUESTS`).
    pub request_slots: Semaphore,
    /// One permit per body byte held by requests in flight (`MAX_IN_FLIGHT_BODY_BYTES`).
    pub body_budget: Semaphore,
}

impl App {
    /// Wraps an already built sink with the HTTP, batching, spill and
    /// readiness settings of `config` (its sink settings are not read). The
    /// record limit starts at the sink's default. Starts the writer (and the
    /// spill), so it must run inside a tokio runtime.
    pub fn new(sink: Arc<dyn Sink>, config: &Config) -> Result<Self, StartError> {
        check_settings(config, sink.kind(), &sink.limits())?;
        let metrics = Arc::new(Metrics::new());
        let max_record_bytes = sink.limits().max_record_bytes;
        let writer = Writer::new(sink, metrics.clone(), config.batch);
        let spill = match &config.spill {
            Some(spill) => Some(Spill::open(spill, writer.clone(), metrics.clone())?),
            None => None,
        };
        Ok(App {
            writer,
            spill,
            readiness: Readiness::new(config.readiness_cache_ttl),
            max_record_bytes: AtomicUsize::new(max_record_bytes),
            http: config.http,
            import: config.import.clone(),
            sdk: config.sdk.clone(),
            metrics,
            access_log: config.access_log,
            public_metrics: config.metrics_addr.is_none(),
            access: Access::new(&config.access),
            request_slots: Semaphore::new(config.http.max_in_flight_requests.get()),
            body_budget: Semaphore::new(config.http.max_in_flight_body_bytes.get()),
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

    /// Stores `records` (through shared calls when batching is on) and
    /// returns one outcome per record, in order, keeping readiness up to
    /// date. With the spill on, a record the stream could not take (for any
    /// reason but refusing the record itself) is spilled instead, and so is
    /// every record while the spill holds any: its outcome is then a
    /// [`Receipt::spilled`] once it is durable.
    pub async fn put(&self, records: Vec<Record>) -> Outcomes {
        let Some(spill) = &self.spill else {
            return self.put_to_stream(records).await;
        };
        if spill.holds_records() {
            let count = records.len();
            return match spill.append(&records, &self.metrics).await {
                Ok(()) => vec![Ok(Receipt::spilled()); count],
                Err(err) => vec![Err(spill_failure(err)); count],
            };
        }
        let mut outcomes = self.put_to_stream(records.clone()).await;
        let failed: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i].as_ref().is_err_and(|err| !err.is_record_refused()))
            .collect();
        if failed.is_empty() {
            return outcomes;
        }
        let spilled: Vec<Record> = failed.iter().map(|&i| records[i].clone()).collect();
        let spilled_count = spilled.len();
        let appended = spill.append(&spilled, &self.metrics).await;
        if let Err(err) = &appended {
            tracing::error!(error = %err, records = spilled_count, "could not spill records");
        }
        for i in failed {
            // A full spill is overload (`overloaded`), whichever way the
            // record came to it: the client is told what refused it last.
            outcomes[i] = match &appended {
                Ok(()) => Ok(Receipt::spilled()),
                Err(err) => Err(spill_failure(err.clone())),
            };
        }
        outcomes
    }

    async fn put_to_stream(&self, records: Vec<Record>) -> Outcomes {
        let outcomes = self.writer.put(records).await;
        if outcomes.iter().any(Result::is_ok) {
            self.readiness.record_stored();
        } else if outcomes.iter().any(|o| o.as_ref().is_err_and(SinkError::makes_unready)) {
            self.readiness.record_failed();
        }
        outcomes
    }

    /// The longest partition key the sink takes, in characters.
    pub fn max_key_chars(&self) -> usize {
        self.sink().limits().max_key_chars
    }

    /// The largest record (data + partition key) accepted, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.load(Ordering::Relaxed)
    }

    /// The readiness probe's answer. With the spill on and room in it, the
    /// instance stays ready while the stream is away: it still answers 2xx.
    pub async fn readiness(&self) -> Verdict {
        let verdict = self
            .readiness
            .check(self.sink().as_ref(), |destination| self.apply(destination))
            .await;
        let Some(spill) = &self.spill else {
            return verdict;
        };
        match spill.trouble() {
            None if !verdict.ready && !self.readiness.is_shutting_down() => Verdict {
                ready: true,
                status: format!(
                    "spilling to disk ({} records waiting): {}",
                    spill.pending(),
                    verdict.status
                ),
            },
            // New records go behind spilled ones: a spill that cannot take
            // them refuses every request, whatever the stream says.
            Some(trouble) if verdict.ready && spill.holds_records() => Verdict {
                ready: false,
                status: trouble,
            },
            Some(trouble) if !verdict.ready => Verdict {
                ready: false,
                status: format!("{}; {trouble}", verdict.status),
            },
            _ => verdict,
        }
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

/// A spill that could not take records: full is overload (503, retry
/// later), a failed write the disk being unavailable.
fn spill_failure(err: AppendError) -> SinkError {
    match err {
        AppendError::Full => SinkError::Overloaded("the spill is full".into()),
        AppendError::Io(detail) => SinkError::Unavailable(format!("the spill write failed: {detail}")),
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
        if spill.max_bytes < frame as u64 {
            return Err(ConfigError {
                name: "SPILL_MAX_BYTES",
                value: spill.max_bytes.to_string(),
                reason: format!("must hold at least one record: {frame} bytes for the {kind} sink's largest"),
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
        let defaults = Config::from_lookup(|_| None).unwrap().batch;
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
