//! Prometheus metrics: one registry per [`App`](crate::app::App), rendered at
//! `GET /metrics` in the OpenMetrics text format, which Prometheus scrapes.
//!
//! Labels are low-cardinality by construction: routes are the route table's paths or
//! `other`, methods the usual verbs or `other`, outcomes and error codes come
//! from fixed lists. Nothing from a record (data, partition key) or a client
//! ever becomes a label, but for one bounded exception: the masked keys of
//! at most `quota::MAX_LABELS` busy sources (`source_events`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sink::SinkError;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label value: always one of a fixed set of `&'static str`s (the module
/// doc says why). Equal labels are nearly always the same static string, so
/// equality compares the pointer before the bytes: every request looks its
/// counters up by four labels, and comparing them byte by byte was about 1 %
/// of `POST /import`'s CPU in a profile (docs/benchmarks.md).
#[derive(Clone, Copy, Debug, Eq)]
struct Label(&'static str);

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for Label {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Label,
    method: Label,
    status_class: Label,
    /// The `error` code of the JSON error body; empty on success.
    error: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: Label,
    outcome: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    protocol: Label,
    reason: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    /// A masked source key (one of `quota::MAX_LABELS`) or `other`.
    source: Label,
    outcome: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: Label,
    git_sha: Label,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 0.5 ms to ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// One source's `source_events` counters, by outcome.
#[derive(Debug, Clone)]
pub(crate) struct SourceCounters {
    /// Stored (or on its way).
    pub(crate) accepted: Counter,
    /// Refused: over the allowance or the burst, or a hot key under `limit`.
    pub(crate) rate_limited: Counter,
    /// Refused: the source is blocked.
    pub(crate) blocked: Counter,
    /// Stored under a derived key: its partition key was hot.
    pub(crate) spread: Counter,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RouteLabels>,
    request_body_bytes: Histogram,
    requests_in_flight: Gauge,
    requests_shed: Counter,
    connections_open: Gauge,
    upstream_calls: Family<CallLabels, Counter>,
    upstream_duration: Histograms<OperationLabels>,
    upstream_in_flight: Gauge,
    records_per_call: Histogram,
    failed_records: Family<ErrorLabels, Counter>,
    record_retries: Counter,
    concurrency_limit: Gauge,
    records_not_sent: Counter,
    /// The spill's numbers (all zero when `SPILL_DIR` is unset).
    pub spill: SpillMetrics,
    log_lines_dropped: Counter,
    sdk_events_stored: Family<ProtocolLabels, Counter>,
    sdk_events_rejected: Family<RejectionLabels, Counter>,
    sdk_telemetry_discarded: Counter,
    source_events: Family<SourceLabels, Counter>,
    sources_tracked: Gauge,
    source_sharing: Gauge,
    source_sync_failures: Counter,
    dedupe_duplicates: Family<RouteLabels, Counter>,
    dedupe_in_flight: Counter,
    dedupe_store_errors: Counter,
    dedupe_ids: Gauge,
    /// Where dropped log lines are counted (the log writer's own counter),
    /// copied into `log_lines_dropped` at each scrape.
    dropped_source: std::sync::OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
    /// What copies counts kept elsewhere into the counters before a scrape
    /// (the sources' events, counted under their own lock).
    publishers: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(seconds_histogram),
            request_body_bytes: Histogram::new(exponential_buckets(64.0, 4.0, 10)),
            requests_in_flight: Gauge::default(),
            requests_shed: Counter::default(),
            connections_open: Gauge::default(),
            upstream_calls: Family::default(),
            upstream_duration: Family::new_with_constructor(seconds_histogram),
            upstream_in_flight: Gauge::default(),
            records_per_call: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            failed_records: Family::default(),
            record_retries: Counter::default(),
            concurrency_limit: Gauge::default(),
            records_not_sent: Counter::default(),
            spill: SpillMetrics::default(),
            log_lines_dropped: Counter::default(),
            sdk_events_stored: Family::default(),
            sdk_events_rejected: Family::default(),
            source_events: Family::default(),
            sources_tracked: Gauge::default(),
            source_sharing: Gauge::default(),
            source_sync_failures: Counter::default(),
            dedupe_duplicates: Family::default(),
            dedupe_in_flight: Counter::default(),
            dedupe_store_errors: Counter::default(),
            dedupe_ids: Gauge::default(),
            sdk_telemetry_discarded: Counter::default(),
            dropped_source: std::sync::OnceLock::new(),
            publishers: std::sync::Mutex::new(Vec::new()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("http_requests", "HTTP requests answered", metrics.requests.clone());
        r.register(
            "http_request_duration_seconds",
            "Time from request head to response",
            metrics.request_duration.clone(),
        );
        r.register(
            "http_request_body_bytes",
            "Sizes of decoded bodies received by the endpoints that take events",
            metrics.request_body_bytes.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "Requests being handled",
            metrics.requests_in_flight.clone(),
        );
        r.register(
            "http_requests_shed",
            "Requests refused with 503 overloaded",
            metrics.requests_shed.clone(),
        );
        r.register(
            "http_connections_open",
            "Client connections open",
            metrics.connections_open.clone(),
        );
        r.register(
            "upstream_calls",
            "Calls to the sink by operation and outcome",
            metrics.upstream_calls.clone(),
        );
        r.register(
            "upstream_call_duration_seconds",
            "Duration of sink calls, SDK retries included",
            metrics.upstream_duration.clone(),
        );
        r.register(
            "upstream_calls_in_flight",
            "Sink calls in flight",
            metrics.upstream_in_flight.clone(),
        );
        r.register(
            "upstream_records_per_call",
            "Records per PutRecords call",
            metrics.records_per_call.clone(),
        );
        r.register(
            "upstream_failed_records",
            "Records refused inside a PutRecords answer, by error code",
            metrics.failed_records.clone(),
        );
        r.register(
            "upstream_record_retries",
            "Records resent alone after failing inside a PutRecords answer",
            metrics.record_retries.clone(),
        );
        r.register(
            "upstream_concurrency_limit",
            "Sink calls allowed in flight now (adaptive between 1 and BATCH_MAX_CONCURRENT_CALLS)",
            metrics.concurrency_limit.clone(),
        );
        r.register(
            "upstream_records_not_sent",
            "Records answered 503 unsent: the stream would have answered after their deadline",
            metrics.records_not_sent.clone(),
        );
        metrics.spill.register(r);
        r.register(
            "sdk_events_stored",
            "Events of the analytics SDKs' protocols stored, by protocol",
            metrics.sdk_events_stored.clone(),
        );
        r.register(
            "sdk_events_rejected",
            "Events of the analytics SDKs' protocols rejected alone (the rest of their request stored), by reason",
            metrics.sdk_events_rejected.clone(),
        );
        r.register(
            "sdk_telemetry_discarded",
            "Telemetry requests of Segment's browser SDK (POST /v1/m), accepted and dropped",
            metrics.sdk_telemetry_discarded.clone(),
        );
        r.register(
            "source_events",
            "Events per source (the busiest sources by masked key, the rest as `other`) and outcome: accepted, rate_limited, blocked, spread (stored under a derived key: its partition key was hot)",
            metrics.source_events.clone(),
        );
        r.register(
            "sources_tracked",
            "Sources with an allowance of their own now (SOURCE_MAX_TRACKED at most, plus SOURCES_FILE's)",
            metrics.sources_tracked.clone(),
        );
        r.register(
            "source_sharing",
            "1 while REDIS_URL answers and the replicas share allowances, 0 while each limits alone",
            metrics.source_sharing.clone(),
        );
        r.register(
            "source_sync_failures",
            "Reconciliations with REDIS_URL that failed (each replica then limits alone)",
            metrics.source_sync_failures.clone(),
        );
        r.register(
            "dedupe_duplicates",
            "Events answered as stored and not written again: an earlier copy with the same id was stored (DEDUPE_WINDOW_SECONDS), by route",
            metrics.dedupe_duplicates.clone(),
        );
        r.register(
            "dedupe_in_flight",
            "Requests that met an earlier copy of one of their events still being written, and waited for its outcome",
            metrics.dedupe_in_flight.clone(),
        );
        r.register(
            "dedupe_store_errors",
            "Requests whose events' ids REDIS_URL did not answer for (their events were written unchecked: at least once), and marks it did not take",
            metrics.dedupe_store_errors.clone(),
        );
        r.register(
            "dedupe_ids",
            "Events' ids remembered in this process (DEDUPE_MAX_IDS at most; 0 with REDIS_URL)",
            metrics.dedupe_ids.clone(),
        );
        r.register(
            "log_lines_dropped",
            "Log lines dropped because the log writer's buffer was full",
            metrics.log_lines_dropped.clone(),
        );

        let started = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        started.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process, Unix seconds",
            started,
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: Label(env!("CARGO_PKG_VERSION")),
                git_sha: Label(env!("GATEWAY_GIT_SHA")),
            })
            .set(1);
        r.register("gateway_build_info", "Version and git commit of this build", build);
        Metrics { registry, ..metrics }
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        for publish in self.publishers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            publish();
        }
        if let Some(source) = self.dropped_source.get() {
            let (now, seen) = (source(), self.log_lines_dropped.get());
            self.log_lines_dropped.inc_by(now.saturating_sub(seen));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String");
        out
    }

    /// What the live view shows of the stream: calls in flight, the
    /// adaptive limit, the spill, and what was answered 503 (cumulative
    /// counters; the page turns them into rates).
    pub fn stream_state(&self) -> StreamState {
        StreamState {
            calls_in_flight: self.upstream_in_flight.get(),
            call_limit: self.concurrency_limit.get(),
            records_not_sent: self.records_not_sent.get(),
            requests_shed: self.requests_shed.get(),
            spill_bytes: self.spill.bytes.get(),
            spill_records: self.spill.records.get(),
            spill_oldest_age_seconds: self.spill.oldest_age_seconds.get(),
            spill_replayed: self.spill.replayed.get(),
            spill_replay_per_second: self.spill.replay_rate.get(),
        }
    }

    /// A request was answered.
    pub fn request_done(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        error: &'static str,
        shed: bool,
        took: Duration,
    ) {
        let status_class = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route: Label(route),
                method: Label(method),
                status_class: Label(status_class),
                error: Label(error),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route: Label(route) })
            .observe(took.as_secs_f64());
        if shed {
            self.requests_shed.inc();
        }
    }

    /// The decoded size of a body accepted by an endpoint that takes events.
    pub fn body_received(&self, bytes: usize) {
        self.request_body_bytes.observe(bytes as f64);
    }

    /// Requests being handled: +1 on arrival, -1 when answered.
    pub fn requests_in_flight(&self) -> &Gauge {
        &self.requests_in_flight
    }

    /// Open client connections: +1 on accept, -1 on close.
    pub fn connections_open(&self) -> &Gauge {
        &self.connections_open
    }

    /// Sink calls in flight.
    pub fn upstream_in_flight(&self) -> &Gauge {
        &self.upstream_in_flight
    }

    /// A sink call ended: `operation` is e.g. `PutRecords`, `failure` the
    /// whole call's error if it failed.
    pub fn upstream_call(&self, operation: &'static str, failure: Option<&SinkError>, took: Duration) {
        let outcome = failure.map_or("success", SinkError::label);
        self.upstream_calls
            .get_or_create(&CallLabels {
                operation: Label(operation),
                outcome: Label(outcome),
            })
            .inc();
        self.upstream_duration
            .get_or_create(&OperationLabels {
                operation: Label(operation),
            })
            .observe(took.as_secs_f64());
    }

    /// A `PutRecords` call carried `records` records.
    pub fn batch_sent(&self, records: usize) {
        self.records_per_call.observe(records as f64);
    }

    /// A record failed inside a successful `PutRecords` answer.
    pub fn record_failed(&self, error: &SinkError) {
        self.failed_records
            .get_or_create(&ErrorLabels {
                error: Label(error.label()),
            })
            .inc();
    }

    /// Counts dropped log lines from `source`, a running total read at each scrape.
    pub fn count_dropped_log_lines(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.dropped_source.set(Box::new(source));
    }

    /// `count` events of `protocol` stored.
    pub fn sdk_events_stored(&self, protocol: &'static str, count: usize) {
        self.sdk_events_stored
            .get_or_create(&ProtocolLabels {
                protocol: Label(protocol),
            })
            .inc_by(count as u64);
    }

    /// One event of `protocol` rejected for `reason` (a fixed code).
    pub fn sdk_event_rejected(&self, protocol: &'static str, reason: &'static str) {
        self.sdk_events_rejected
            .get_or_create(&RejectionLabels {
                protocol: Label(protocol),
                reason: Label(reason),
            })
            .inc();
    }

    /// Runs `publish` before each scrape: it copies counts kept elsewhere
    /// (where counting per request is cheaper) into their counters.
    pub(crate) fn publish_before_render(&self, publish: impl Fn() + Send + Sync + 'static) {
        self.publishers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(publish));
    }

    /// The counters of source `label` (a masked key or `other`), one per
    /// outcome: looked up once; what a source sends is counted beside its
    /// bucket and added to them at each scrape and each second.
    pub(crate) fn source_counters(&self, label: &'static str) -> SourceCounters {
        let counter = |outcome: &'static str| {
            self.source_events
                .get_or_create(&SourceLabels {
                    source: Label(label),
                    outcome: Label(outcome),
                })
                .clone()
        };
        SourceCounters {
            accepted: counter("accepted"),
            rate_limited: counter("rate_limited"),
            blocked: counter("blocked"),
            spread: counter("spread"),
        }
    }

    /// How many sources have an allowance of their own.
    pub(crate) fn sources_tracked(&self, count: usize) {
        self.sources_tracked.set(count as i64);
    }

    /// Whether the last reconciliation with `REDIS_URL` succeeded.
    pub(crate) fn source_sharing(&self, up: bool) {
        self.source_sharing.set(i64::from(up));
    }

    /// One reconciliation with `REDIS_URL` failed.
    pub(crate) fn source_sync_failed(&self) {
        self.source_sync_failures.inc();
    }

    /// `events` of a request at `route` were duplicates, not written again.
    pub(crate) fn dedupe_duplicates(&self, route: &'static str, events: usize) {
        self.dedupe_duplicates
            .get_or_create(&RouteLabels { route: Label(route) })
            .inc_by(events as u64);
    }

    /// A request met an earlier copy in flight.
    pub(crate) fn dedupe_in_flight(&self) {
        self.dedupe_in_flight.inc();
    }

    /// A round trip to the shared ids failed.
    pub(crate) fn dedupe_store_error(&self) {
        self.dedupe_store_errors.inc();
    }

    /// Ids held in this process grew (or shrank) by `delta`.
    pub(crate) fn dedupe_ids_changed(&self, delta: i64) {
        self.dedupe_ids.inc_by(delta);
    }

    /// One telemetry request of the browser SDK dropped.
    pub fn sdk_telemetry_discarded(&self) {
        self.sdk_telemetry_discarded.inc();
    }

    /// Records resent alone.
    pub fn records_retried(&self, records: usize) {
        self.record_retries.inc_by(records as u64);
    }

    /// The calls allowed in flight now.
    pub fn concurrency_limit(&self, limit: usize) {
        self.concurrency_limit.set(limit as i64);
    }

    /// Records answered without being sent, too close to their deadline.
    pub fn records_not_sent_late(&self, records: usize) {
        self.records_not_sent.inc_by(records as u64);
    }
}

/// The stream's numbers the live view shows ([`Metrics::stream_state`]).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StreamState {
    /// Sink calls in flight.
    pub calls_in_flight: i64,
    /// The adaptive limit on them.
    pub call_limit: i64,
    /// Records answered 503 unsent (their deadline would pass), so far.
    pub records_not_sent: u64,
    /// Requests refused with 503 for load, so far.
    pub requests_shed: u64,
    /// Bytes of spill segments on disk.
    pub spill_bytes: i64,
    /// Records in the spill.
    pub spill_records: i64,
    /// Age of the oldest spilled record, in seconds.
    pub spill_oldest_age_seconds: f64,
    /// Records replayed from the spill, so far.
    pub spill_replayed: u64,
    /// Records replayed over the last second.
    pub spill_replay_per_second: f64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Label,
}

/// The spill's metrics: what it holds, how fast it drains, what it lost.
#[derive(Debug, Default)]
pub struct SpillMetrics {
    /// Bytes of spill segments on disk.
    pub bytes: Gauge,
    /// Records in the spill not yet stored in the stream.
    pub records: Gauge,
    /// Age of the oldest record not yet stored, in seconds.
    pub oldest_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Records written to the spill (durable).
    pub appended: Counter,
    /// Records replayed from the spill into the stream.
    pub replayed: Counter,
    /// Records skipped on reading because their checksum or framing was bad.
    pub corrupt: Counter,
    appends_failed: Family<ReasonLabels, Counter>,
    /// Records per lane (`SPILL_LANES`), not yet stored in the stream.
    pub lane_records: Family<LaneLabels, Gauge>,
    /// Age of each lane's oldest record not yet stored, in seconds.
    pub lane_oldest_age_seconds: Family<LaneLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Records replayed per second, over the last second.
    pub replay_rate: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// A spill lane's label: its number, or `old-N` for a layout being drained.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    /// The lane.
    pub lane: String,
}

impl SpillMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("spill_bytes", "Bytes of spill segments on disk", self.bytes.clone());
        r.register(
            "spill_records",
            "Records in the spill not yet stored in the stream",
            self.records.clone(),
        );
        r.register(
            "spill_oldest_record_age_seconds",
            "Age of the oldest spilled record not yet stored in the stream",
            self.oldest_age_seconds.clone(),
        );
        r.register(
            "spill_appended_records",
            "Records written (and fsynced) to the spill",
            self.appended.clone(),
        );
        r.register(
            "spill_replayed_records",
            "Records replayed from the spill into the stream",
            self.replayed.clone(),
        );
        r.register(
            "spill_corrupt_records",
            "Torn or corrupted spill records skipped on reading",
            self.corrupt.clone(),
        );
        r.register(
            "spill_lane_records",
            "Records in each spill lane not yet stored in the stream (they sum to spill_records)",
            self.lane_records.clone(),
        );
        r.register(
            "spill_lane_oldest_record_age_seconds",
            "Age of each spill lane's oldest record not yet stored",
            self.lane_oldest_age_seconds.clone(),
        );
        r.register(
            "spill_replay_records_per_second",
            "Records replayed from the spill into the stream over the last second",
            self.replay_rate.clone(),
        );
        r.register(
            "spill_append_failures",
            "Spill writes refused (503), by reason: full or io",
            self.appends_failed.clone(),
        );
    }

    /// A spill write of some records was refused for `reason` (`full`, `io`).
    pub fn append_failed(&self, reason: &'static str) {
        self.appends_failed
            .get_or_create(&ReasonLabels { reason: Label(reason) })
            .inc();
    }
}

/// Holds a gauge one higher for as long as it lives, so a request or call
/// that is cancelled still brings the gauge back down.
#[derive(Debug)]
pub(crate) struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    /// Increments `gauge` until the guard is dropped.
    pub(crate) fn inc(gauge: &'a Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method label: a usual verb, or `other`.
pub(crate) fn method_label(method: &hyper::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn labels_with_the_same_text_are_equal_and_hash_alike_wherever_the_text_lives() {
        // The same text at another address: equality must not stop at the pointer.
        let elsewhere: &'static str = Box::leak(String::from("/import").into_boxed_str());
        let (here, there) = (Label("/import"), Label(elsewhere));
        assert!(!std::ptr::eq(here.0, there.0));
        assert_eq!(here, there);
        let hasher = std::collections::hash_map::RandomState::new();
        assert_eq!(hasher.hash_one(here), hasher.hash_one(there));
        assert_ne!(here, Label("/import/batch"));
        assert_ne!(
            Label(&elsewhere[..4]),
            here,
            "a prefix at the same address is another label"
        );
    }
}
