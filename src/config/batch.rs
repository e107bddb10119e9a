//! How records are grouped into upstream calls, and how many calls fly at once.

use std::num::NonZeroUsize;

use super::{ConfigError, Lookup};
use crate::concurrency;

/// Coalescing of concurrent records into one upstream call (`PutRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// `BATCHING`: on, records waiting together share a call; off, one
    /// `PutRecord` per request.
    pub enabled: bool,
    /// Records per call (`BATCH_MAX_RECORDS`), at most what the sink takes
    /// (Kinesis: 500), checked at start-up.
    pub max_records: NonZeroUsize,
    /// Data + partition key bytes per call (`BATCH_MAX_BYTES`), at most what
    /// the sink takes, checked at start-up: 5 MiB is
    /// Kinesis's classic `PutRecords` limit; streams on current Kinesis take 10 MiB.
    pub max_bytes: NonZeroUsize,
    /// The most upstream calls in flight at once (`BATCH_MAX_CONCURRENT_CALLS`);
    /// while all allowed are busy, arriving records gather for the next call.
    pub max_concurrent_calls: NonZeroUsize,
    /// `BATCH_ADAPTIVE_CONCURRENCY`: on, the calls allowed move between 1
    /// and the maximum with the stream's latency and back-pressure; off,
    /// always the maximum.
    pub concurrency: concurrency::Mode,
    /// Records waiting for a call at once (`BATCH_QUEUE_CAPACITY`); beyond
    /// it a request is refused at once with 503 instead of queueing.
    pub queue_capacity: NonZeroUsize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            enabled: true,
            max_records: NonZeroUsize::new(500).expect("> 0"),
            max_bytes: NonZeroUsize::new(5 * 1024 * 1024).expect("> 0"),
            max_concurrent_calls: NonZeroUsize::new(64).expect("> 0"),
            concurrency: concurrency::Mode::Adaptive,
            // Sized for batch requests (up to 500 records each): memory is bounded
            // by MAX_IN_FLIGHT_BODY_BYTES and waiting by the record deadline.
            queue_capacity: NonZeroUsize::new(100_000).expect("> 0"),
        }
    }
}

impl BatchConfig {
    /// Reads the batching variables; the sink's own caps are checked at
    /// start-up (`app::check_settings`).
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = BatchConfig::default();
        let adaptive = d.concurrency == concurrency::Mode::Adaptive;
        Ok(BatchConfig {
            enabled: vars.parse("BATCHING", d.enabled)?,
            max_records: vars.at_most("BATCH_MAX_RECORDS", d.max_records.get(), 1_000_000)?,
            max_bytes: vars.at_most("BATCH_MAX_BYTES", d.max_bytes.get(), 1 << 30)?,
            max_concurrent_calls: vars.at_most("BATCH_MAX_CONCURRENT_CALLS", d.max_concurrent_calls.get(), 1024)?,
            concurrency: if vars.parse("BATCH_ADAPTIVE_CONCURRENCY", adaptive)? {
                concurrency::Mode::Adaptive
            } else {
                concurrency::Mode::Fixed
            },
            queue_capacity: vars.at_most("BATCH_QUEUE_CAPACITY", d.queue_capacity.get(), 1_000_000)?,
        })
    }
}
