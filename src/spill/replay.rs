//! Replay of one lane: its records go to the stream oldest first, one
//! chunk at a time, each chunk stored in full before the next is read, so
//! one key's records keep their order (but for entries that fail alone and
//! are resent, as on the live path). Lanes replay in parallel, each its own
//! task.
//!
//! A chunk goes through the writer as calls of its own, one at a time
//! ([`Writer::put_in_order`]: never split across concurrent calls, where
//! a part that failed would be resent after the rest had landed), so
//! replay shares the adaptive limit on calls in flight and its deadlines,
//! but no call with live records; the entries it could not store are
//! resent after a backoff that doubles up to [`BACKOFF_CAP`], for as long
//! as it takes: the spill holds them until the stream has them. A record
//! the stream refuses for good is logged and dropped (it cannot ever be
//! stored). The rate is capped at `SPILL_REPLAY_MAX_RECORDS_PER_SEC`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until, timeout};

use tokio::sync::{oneshot, watch};

use super::gauges::Gauges;
use super::reader::{Chunk, Reader};
use super::state::Shared;
use crate::metrics::Metrics;
use crate::sink::Record;
use crate::writer::Writer;

/// Records per chunk: one full `PutRecords` call.
const CHUNK_RECORDS: usize = 500;
/// First wait after a chunk could not be stored; doubles per failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between tries.
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How often the gauges move while nothing happens.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// The replay task's parts.
pub(super) struct Replay {
    /// `None` only while a read runs on the blocking pool.
    pub(super) reader: Option<Reader>,
    pub(super) writer: Writer,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) gauges: Arc<Gauges>,
    pub(super) per_second: u32,
}

impl Replay {
    /// Starts the task once `gate` opens (an older layout's records go
    /// first, `migration.rs`); it stops when the sender it answers is
    /// dropped, with its lane.
    pub(super) fn start(self, mut gate: watch::Receiver<bool>) -> oneshot::Sender<()> {
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            tokio::select! {
                () = async {
                    let _ = gate.wait_for(|open| *open).await;
                    self.run().await;
                } => {}
                _ = stopped => {}
            }
        });
        stop
    }

    /// Replays until the writer stops.
    async fn run(mut self) {
        loop {
            let chunk = match self.read().await {
                Ok(chunk) => chunk,
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the spill; trying again");
                    sleep(BACKOFF_CAP).await;
                    continue;
                }
            };
            if chunk.corrupt > 0 {
                tracing::warn!(
                    stretches = chunk.corrupt,
                    segment = chunk.next.segment,
                    "skipped torn or corrupt records in the spill"
                );
                self.metrics.spill.corrupt.inc_by(chunk.corrupt);
            }
            if chunk.advanced {
                continue;
            }
            if chunk.records.is_empty() {
                if chunk.next != self.reader().position() {
                    // Only corruption in this stretch: move past it.
                    self.commit(chunk, 0);
                    continue;
                }
                self.idle();
                let _ = timeout(IDLE_TICK, self.reader_mut().wait()).await;
                continue;
            }
            let started = Instant::now();
            self.shared.replaying(chunk.records[0].at_ms);
            self.gauges.refresh(&self.shared);
            let records: Vec<Record> = chunk.records.iter().map(|s| s.record.clone()).collect();
            let count = records.len();
            self.store(records).await;
            self.commit(chunk, count);
            if self.per_second > 0 {
                let pace = Duration::from_secs_f64(count as f64 / f64::from(self.per_second));
                sleep_until(started + pace).await;
            }
        }
    }

    async fn read(&mut self) -> std::io::Result<Chunk> {
        // The reader moves into the blocking pool and back.
        let mut reader = self.reader.take().expect("no read is running");
        let (reader, chunk) = tokio::task::spawn_blocking(move || {
            let chunk = reader.read(CHUNK_RECORDS);
            (reader, chunk)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.reader = Some(reader);
        chunk
    }

    /// Sends `records` until the stream has every one it does not refuse.
    async fn store(&self, mut records: Vec<Record>) {
        let mut backoff = BACKOFF_START;
        loop {
            let outcomes = self.writer.put_in_order(records.clone()).await;
            let mut again = Vec::new();
            let mut last_error = None;
            for (record, outcome) in records.into_iter().zip(outcomes) {
                match outcome {
                    Ok(_) => {}
                    Err(err) if err.is_record_refused() => {
                        tracing::error!(detail = %err.detail(), key = %record.partition_key, "the stream refused a spilled record; dropped");
                    }
                    Err(err) => {
                        last_error = Some(err);
                        again.push(record);
                    }
                }
            }
            let Some(err) = last_error else { return };
            tracing::warn!(records = again.len(), error = %err, ?backoff, "replay could not store records; trying again");
            records = again;
            sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    }

    /// The chunk is stored: move the ledger, count it.
    fn commit(&mut self, chunk: Chunk, count: usize) {
        if let Err(err) = self.reader_mut().commit(chunk.next) {
            // The records are stored; only a restart would replay them again.
            tracing::error!(error = %err, "cannot save the spill ledger");
        }
        self.shared.replayed(count as u64, super::now_ms());
        self.metrics.spill.replayed.inc_by(count as u64);
        self.gauges.refresh(&self.shared);
    }

    fn reader(&self) -> &Reader {
        self.reader.as_ref().expect("no read is running")
    }

    fn reader_mut(&mut self) -> &mut Reader {
        self.reader.as_mut().expect("no read is running")
    }

    /// Nothing left to read: the spill is empty unless appends are racing in.
    fn idle(&self) {
        if let Some(pending) = self.shared.idle_at(self.reader().position()) {
            tracing::warn!(pending, "spill count drifted (records lost to corruption); resetting");
        }
        self.gauges.refresh(&self.shared);
    }
}
