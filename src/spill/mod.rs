//! The durable spill (`SPILL_DIR`): when the stream cannot take a request's
//! records, they are written to local disk and the request is answered only
//! once they are durable; replay sends them to the stream when it answers
//! again.
//!
//! [`SpillStore`] (`store.rs`) wraps the store that writes to the stream
//! (the writer: batching, retries and deadlines), not the bare sink,
//! because some of the failures it absorbs happen above the sink: the
//! writer's queue full, a record's deadline passed while it waited. It works
//! with every sink, and holds every spill policy: what spills, order, the
//! answers and readiness. The rest is mechanism, a concept per file:
//!
//! - here, [`Spill`]: the lanes (`SPILL_LANES`). A record's lane is a hash
//!   of its partition key, so one key lives in one lane; lanes replay in
//!   parallel, each in order, all through the writer and so within the
//!   adaptive limit on calls. While a lane holds records, its keys' new
//!   records go behind them ([`Spill::waits`]); a drained lane lets its
//!   keys' records go straight to the stream again. RudderStack's router
//!   does the same with its workers keyed by user and a barrier per key.
//! - `lane.rs`: one lane (its directory, appender thread, replay task);
//!   `state.rs`: what its parts share, changed only through its methods.
//! - `appender.rs`: appends from concurrent requests share one `write` and
//!   one `fsync` (group commit). A full lane (its share of
//!   `SPILL_MAX_BYTES`), a failed write or a failed `fsync` answers 503:
//!   never a 2xx that is not durable.
//! - `reader.rs`, `replay.rs`: oldest first, one chunk at a time through
//!   the writer, each stored before the next is read (so it shares the
//!   adaptive concurrency limit and backs off with the stream), and at most
//!   `SPILL_REPLAY_MAX_RECORDS_PER_SEC` when that is set.
//! - `segments.rs`, `frame.rs`, `ledger.rs`: the files. Every record carries
//!   a CRC32C; the ledger remembers how far the reader got.
//! - `recovery.rs`: on start the spill replays what a previous process
//!   left, skipping and counting torn or corrupt records; `migration.rs`:
//!   a layout written with another lane count replays first.
//! - `gauges.rs`: each lane's gauges and the totals.
//!
//! Compared with Vector's `disk_v2` buffer, the reference design: the same
//! segment files, checksum per record and reader position ledger, in files
//! of their own as there (`ledger`, `reader`, and its writer, here
//! `appender` since `writer` names the crate's writer); left out are its
//! memory-mapped ledger and its record-id acknowledgement ranges (one
//! reader, acknowledging in order). Delivery is at least once: a record
//! replayed just before a crash, before the ledger moved, is replayed again.

mod appender;
mod frame;
mod gauges;
mod lane;
mod ledger;
mod migration;
mod reader;
mod recovery;
mod replay;
mod segments;
mod state;
mod store;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

pub(crate) use self::appender::AppendError;
use self::gauges::Board;
use self::lane::{Lane, LaneSpec};
pub(crate) use self::store::SpillStore;
use crate::config::SpillConfig;
use crate::metrics::Metrics;
use crate::sink::Record;
use crate::writer::Writer;
use std::sync::Arc;

/// Why the spill could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: SPILL_DIR={dir:?} cannot be used as the spill directory: {source}")]
pub struct OpenError {
    dir: String,
    source: std::io::Error,
}

/// The spill: its lanes, and any older layout being drained first.
#[derive(Debug)]
pub(crate) struct Spill {
    lanes: Vec<Lane>,
    older: Vec<Lane>,
    gate: watch::Receiver<bool>,
}

impl Spill {
    /// Opens the lanes of `config` (and any older layout) under its
    /// directory, starting their appenders and replays through `writer`.
    /// Must run inside a tokio runtime.
    pub(crate) fn open(config: &SpillConfig, writer: &Writer, metrics: &Arc<Metrics>) -> Result<Self, OpenError> {
        let failed = |dir: &Path, source| OpenError {
            dir: dir.display().to_string(),
            source,
        };
        let root = &config.dir;
        std::fs::create_dir_all(root).map_err(|e| failed(root, e))?;
        let count = config.lanes.get();
        let current = root.join(format!("lanes-{count}"));
        let older = migration::older_layouts(root, &current).map_err(|e| failed(root, e))?;
        let board = Board::new(metrics.clone(), count + older.len());
        let (open_gate, gate) = watch::channel(older.is_empty());
        let share = (config.max_bytes / count as u64).max(1);
        let spec = |dir: PathBuf, slot: usize, label: String, gate: watch::Receiver<bool>| LaneSpec {
            dir,
            max_bytes: share,
            replay_per_second: config.replay_per_second,
            gauges: board.lane(slot, label),
            gate,
        };
        let (_, always) = watch::channel(true);
        let older = older
            .into_iter()
            .enumerate()
            .map(|(i, dir)| {
                let label = format!("old-{i}");
                Lane::open(
                    spec(dir, count + i, label, always.clone()),
                    writer.clone(),
                    metrics.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !older.is_empty() {
            let waiting: u64 = older.iter().map(Lane::pending).sum();
            tracing::warn!(
                records = waiting,
                layouts = older.len(),
                lanes = count,
                "the spill holds records written with another lane count; they replay first, and new records wait behind them"
            );
        }
        let lanes = (0..count)
            .map(|i| {
                let dir = current.join(format!("lane-{i}"));
                Lane::open(
                    spec(dir, i, i.to_string(), gate.clone()),
                    writer.clone(),
                    metrics.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let watched: Vec<_> = older.iter().map(|s| s.shared.clone()).collect();
        tokio::spawn(migration::watch_gate(watched, open_gate, metrics.clone()));
        Ok(Spill { lanes, older, gate })
    }

    /// The lane of `record`: a hash of its partition key.
    pub(crate) fn lane_of(&self, record: &Record) -> usize {
        crc32c::crc32c(record.partition_key.as_bytes()) as usize % self.lanes.len()
    }

    /// Whether records of `lane` must go behind spilled ones: the lane holds
    /// records, or an older layout has not drained yet.
    pub(crate) fn waits(&self, lane: usize) -> bool {
        !*self.gate.borrow() || self.lanes[lane].holds_records()
    }

    /// Lane `lane`.
    pub(crate) fn lane(&self, lane: usize) -> &Lane {
        &self.lanes[lane]
    }

    /// Records waiting in every lane.
    pub(crate) fn pending(&self) -> u64 {
        self.all().map(Lane::pending).sum()
    }

    /// Why some lane cannot take records now, if one cannot.
    pub(crate) fn trouble(&self) -> Option<String> {
        self.lanes.iter().enumerate().find_map(|(i, lane)| {
            lane.trouble().map(|why| match self.lanes.len() {
                1 => why,
                _ => format!("{why} (lane {i})"),
            })
        })
    }

    /// Whether a lane that holds records cannot take more: its keys are refused.
    pub(crate) fn refuses_waiting_keys(&self) -> Option<String> {
        self.lanes
            .iter()
            .enumerate()
            .find(|(_, lane)| lane.holds_records() && lane.trouble().is_some())
            .and_then(|(i, lane)| lane.trouble().map(|why| format!("{why} (lane {i})")))
            .filter(|_| *self.gate.borrow())
            .or_else(|| (!*self.gate.borrow()).then(|| self.trouble()).flatten())
    }

    fn all(&self) -> impl Iterator<Item = &Lane> {
        self.lanes.iter().chain(&self.older)
    }
}

/// The bytes one record of `data_bytes` with a key of `key_chars`
/// characters takes in the spill, at most.
pub(crate) fn frame_size(data_bytes: usize, key_chars: usize) -> usize {
    frame::size(&Record {
        data: bytes::Bytes::new(),
        partition_key: String::new(),
    }) + data_bytes
        + key_chars * 4
}

/// Unix time in ms.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
