//! What the doors that take events use of the gateway, and nothing else:
//! the in-flight caps, API keys and CORS, the store, the rules every record
//! must fit, the live view, and each door family's settings.
//!
//! [`crate::app::App`] builds it once and owns everything else (the writer,
//! readiness, the sink's start-up check, metrics rendering), as mini-redis's
//! `Handler` holds only the `Db` and connection it uses. A door writes in
//! one way only, [`Doors::put`], which holds each source to its allowance
//! (`quota`), tells the live view what arrived and folds the outcomes into
//! one [`Report`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::access::Access;
use crate::config::{Config, ImportConfig, SdkConfig};
use crate::dedupe::{Dedupe, EventIds, Seen};
use crate::error::ApiError;
use crate::in_flight::InFlight;
use crate::live::{Arrival, Hub};
use crate::metrics::Metrics;
use crate::partition_key;
use crate::quota::Quotas;
use crate::sink::{Record, RecordRules};
use crate::store::{Report, Store};

/// The doors' narrow context.
#[derive(Debug)]
pub(crate) struct Doors {
    in_flight: InFlight,
    access: Access,
    store: Arc<dyn Store>,
    /// The record limit as the destination last said (shared with `App`,
    /// which learns it at start-up and from readiness checks).
    max_record_bytes: Arc<AtomicUsize>,
    max_key_chars: usize,
    live: Arc<Hub>,
    import: ImportConfig,
    sdk: SdkConfig,
    metrics: Arc<Metrics>,
    access_log: bool,
    quotas: Arc<Quotas>,
    dedupe: Option<Arc<Dedupe>>,
}

/// A record over the stream's limit: which one, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Oversized {
    /// The offending record (0-based).
    pub(crate) index: usize,
    /// The record limit (data + partition key), in bytes.
    pub(crate) limit: usize,
}

impl Doors {
    /// The doors' context from `config` (its in-flight caps, access, live view and
    /// door settings) and what start-up built: the store, the record limit
    /// `App` keeps current, the sink's longest key, the metrics, the
    /// sources' allowances, the events' ids when dedupe is on.
    pub(crate) fn new(
        config: &Config,
        store: Arc<dyn Store>,
        max_record_bytes: Arc<AtomicUsize>,
        max_key_chars: usize,
        metrics: Arc<Metrics>,
        quotas: Arc<Quotas>,
        dedupe: Option<Arc<Dedupe>>,
    ) -> Self {
        Doors {
            in_flight: InFlight::new(&config.http),
            access: Access::new(&config.access),
            store,
            max_record_bytes,
            max_key_chars,
            live: Arc::new(Hub::new(config.live.clone())),
            import: config.import.clone(),
            sdk: config.sdk.clone(),
            metrics,
            access_log: config.access_log,
            quotas,
            dedupe,
        }
    }

    /// The in-flight caps and body deadline every door shares.
    pub(crate) fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// API keys and CORS.
    pub(crate) fn access(&self) -> &Access {
        &self.access
    }

    /// The live view's hub (the doors tell it of arrivals only through
    /// [`Doors::put`]).
    pub(crate) fn live(&self) -> &Arc<Hub> {
        &self.live
    }

    /// Limits and partition keys of the gateway's own doors.
    pub(crate) fn import(&self) -> &ImportConfig {
        &self.import
    }

    /// Limits and client-IP policy of the analytics SDKs' doors.
    pub(crate) fn sdk(&self) -> &SdkConfig {
        &self.sdk
    }

    /// Counters the doors keep (bodies received, SDK events).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether events are deduplicated by their own ids
    /// (`DEDUPE_WINDOW_SECONDS`): the doors then read the ids.
    pub(crate) fn dedupes(&self) -> bool {
        self.dedupe.is_some()
    }

    /// Whether one line is logged per request (only it reads a request's
    /// location: no copy per request otherwise).
    pub(crate) fn access_log(&self) -> bool {
        self.access_log
    }

    /// What every record must fit now: the sink's limits, the record size
    /// as the destination last said.
    pub(crate) fn record_rules(&self) -> RecordRules {
        RecordRules {
            max_bytes: self.max_record_bytes.load(Ordering::Relaxed),
            max_key_chars: self.max_key_chars,
        }
    }

    /// A record from event `data`, with its partition key (the header's,
    /// else `PARTITION_KEY_FIELDS`, else random), built and checked by
    /// [`RecordRules`]; `Err` with the record limit when it is over.
    pub(crate) fn record(&self, data: Bytes, header_key: Option<&str>) -> Result<Record, usize> {
        let rules = self.record_rules();
        let partition_key = match header_key {
            Some(key) => key.to_owned(),
            None => self
                .import
                .key_fields
                .key_of(&data, rules.max_key_chars)
                .unwrap_or_else(partition_key::random),
        };
        rules.record(data, partition_key).map_err(|_| rules.max_bytes)
    }

    /// Records from a request's events, each made by [`Doors::record`]. All
    /// or nothing: the first record over the limit fails the request before
    /// anything is written.
    pub(crate) fn records(&self, events: Vec<Bytes>, header_key: Option<&str>) -> Result<Vec<Record>, Oversized> {
        events
            .into_iter()
            .enumerate()
            .map(|(index, data)| {
                self.record(data, header_key)
                    .map_err(|limit| Oversized { index, limit })
            })
            .collect()
    }

    /// The source of a request to the gateway's own doors: the API key it
    /// presented, or one shared source when `API_KEYS` is unset (any key
    /// is then as good as none).
    pub(crate) fn api_source<'h>(&self, presented: Option<&'h str>) -> &'h str {
        match presented {
            Some(key) if self.access.keys_required() => key,
            _ => "",
        }
    }

    /// The one way a door writes: takes the records' events from their
    /// sources' allowances (`sources`: each key and how many events came
    /// with it; all or nothing, `Err` refuses the request whole), applies
    /// the hot-key policy, drops the events an earlier copy stored (`ids`:
    /// each record's own id, when dedupe is on), tells the live view what
    /// arrived (when anyone watches; `arrival` is not even built
    /// otherwise), keeps the records, and folds their outcomes.
    pub(crate) async fn put<'a>(
        &self,
        arrival: impl Fn() -> Arrival<'a>,
        sources: &[(&str, u64)],
        mut records: Vec<Record>,
        ids: EventIds,
    ) -> Result<Report, ApiError> {
        self.quotas.hold(sources, &mut records, self.record_rules())?;
        let claim = match &self.dedupe {
            Some(dedupe) if ids.any() => dedupe.claim(ids).await?,
            _ => {
                if self.live.watched() {
                    self.live.arrived(arrival(), &records, false);
                }
                return Ok(Report::new(self.store.put(records).await));
            }
        };
        let (fresh, repeated): (Vec<_>, Vec<_>) = records
            .into_iter()
            .zip(claim.seen())
            .partition(|(_, seen)| **seen == Seen::New);
        let fresh: Vec<Record> = fresh.into_iter().map(|(record, _)| record).collect();
        if !repeated.is_empty() {
            self.metrics.dedupe_duplicates(arrival().door, repeated.len());
        }
        if self.live.watched() {
            self.live.arrived(arrival(), &fresh, false);
            let repeated: Vec<Record> = repeated.into_iter().map(|(record, _)| record).collect();
            self.live.arrived(arrival(), &repeated, true);
        }
        let written = if fresh.is_empty() {
            Vec::new()
        } else {
            self.store.put(fresh).await
        };
        Ok(Report::new(claim.settle(written)))
    }
}
