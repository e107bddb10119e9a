//! The durable spill (`SPILL_DIR`): when the stream cannot take a request's
//! records, they are written to local disk and the request is answered only
//! once they are durable; a replay task sends them to the stream when it
//! answers again.
//!
//! [`SpillStore`] (`store.rs`) wraps the store that writes to the stream
//! (the writer: batching, retries and deadlines), not the bare sink,
//! because some of the failures it absorbs happen above the sink: the
//! writer's queue full, a record's deadline passed while it waited. It works
//! with every sink, and holds every spill policy: what spills, order, the
//! answers and readiness. This file is the mechanism.
//!
//! - **Durability**: appends from concurrent requests share one `write` and
//!   one `fsync` (group commit, `log.rs`). A full spill (`SPILL_MAX_BYTES`),
//!   a failed write or a failed `fsync` answers 503: never a 2xx that is not
//!   durable.
//! - **Replay** (`replay.rs`): oldest first, one chunk at a time through the
//!   writer, each stored before the next is read (so it shares the adaptive
//!   concurrency limit and backs off with the stream), and at most
//!   `SPILL_REPLAY_MAX_RECORDS_PER_SEC` when that is set.
//! - **Crash safety**: every record carries a CRC32C (`frame.rs`); on start
//!   the spill replays what a previous process left, skipping and counting
//!   torn or corrupt records.
//!
//! Compared with Vector's `disk_v2` buffer, the reference design: the same
//! segment files, checksum per record and reader position ledger; left out
//! are its memory-mapped ledger (a small text file replaced atomically per
//! replayed chunk costs one `fsync` per 500 records here) and its
//! record-id acknowledgement ranges (one reader, acknowledging in order).
//! Delivery is at least once: a record replayed just before a crash, before
//! the ledger moved, is replayed again.

mod frame;
mod lanes;
mod log;
mod replay;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, watch};

pub(crate) use self::lanes::Lanes;
pub(crate) use self::log::AppendError;
use self::log::{Append, Appender, Position, Reader, Shared};
pub(crate) use self::store::SpillStore;
use crate::metrics::{LaneLabels, Metrics};
use crate::sink::Record;
use crate::writer::Writer;

/// The spill: cheap to share; the appender thread and the replay task run
/// until it is dropped.
#[derive(Debug)]
pub(crate) struct Spill {
    appends: mpsc::Sender<Append>,
    shared: Arc<Shared>,
    max_bytes: u64,
    gauges: Arc<Gauges>,
    _stop: oneshot::Sender<()>,
}

/// One lane's place: its directory, its share of the bytes, its replay's
/// rate, its gauges, and the gate its replay waits for (an older layout
/// replays first, `lanes.rs`).
#[derive(Debug)]
pub(crate) struct LaneSpec {
    /// The lane's directory.
    pub dir: PathBuf,
    /// Its share of `SPILL_MAX_BYTES`.
    pub max_bytes: u64,
    /// `SPILL_REPLAY_MAX_RECORDS_PER_SEC`.
    pub replay_per_second: u32,
    /// Its gauges' label and slot.
    pub gauges: Arc<Gauges>,
    /// Replay starts once this is true.
    pub gate: watch::Receiver<bool>,
}

/// Why the spill could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: SPILL_DIR={dir:?} cannot be used as the spill directory: {source}")]
pub struct OpenError {
    dir: String,
    source: std::io::Error,
}

/// A lane holding at most this many records (one replay chunk) while its
/// replay keeps storing is about to drain: new records of its keys wait for
/// that (in memory, [`Spill::handed_off`]) instead of going in behind, or it
/// would never drain under steady traffic.
pub(crate) const HANDOFF: u64 = 500;

/// A file written, synced and removed at start-up: a directory the process
/// cannot write (read-only, another user's) stops start-up instead of
/// failing every request that would spill.
const WRITE_CHECK: &str = ".write-check";

impl Spill {
    /// Opens `config.dir`, recovers what a previous process left, and starts
    /// the appender thread and the replay task (through `writer`). Must run
    /// inside a tokio runtime.
    pub(crate) fn open(config: LaneSpec, writer: Writer, metrics: Arc<Metrics>) -> Result<Self, OpenError> {
        let failed = |source| OpenError {
            dir: config.dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(failed)?;
        check_writable(&config.dir).map_err(failed)?;
        let recovered = log::recover(&config.dir).map_err(failed)?;
        keep_serving_past_file_size_limits().map_err(failed)?;
        if let Some(why) = &recovered.ledger_corrupt {
            tracing::error!(
                reason = %why,
                records = recovered.pending,
                "the spill's ledger disagrees with its segments; replaying every record from the first segment (some may be sent twice)"
            );
            metrics.spill.corrupt.inc();
        }
        if recovered.pending > 0 {
            tracing::warn!(
                records = recovered.pending,
                bytes = recovered.disk_bytes,
                "the spill holds records from an earlier run; replaying them"
            );
        }
        let shared = Arc::new(Shared::default());
        let durable = Position {
            segment: recovered.next_segment,
            offset: 0,
        };
        {
            let mut state = shared.lock();
            state.pending = recovered.pending;
            state.disk_bytes = recovered.disk_bytes;
            state.pending_bytes = recovered.pending_bytes;
            state.oldest_ms = recovered.oldest_ms;
            state.durable = durable;
        }
        let (durable_tx, durable_rx) = watch::channel(durable);
        // Segments: an eighth of the cap (so deleting replayed segments frees
        // space steadily), from 1 MiB to 64 MiB.
        let segment_bytes = (config.max_bytes / 8).clamp(1 << 20, 64 << 20);
        let appender = Appender::new(
            config.dir.clone(),
            config.max_bytes,
            segment_bytes,
            recovered.next_segment,
            shared.clone(),
            durable_tx,
        );
        let (appends, waiting) = mpsc::channel();
        std::thread::Builder::new()
            .name("spill-appender".into())
            .spawn(move || appender.run(waiting))
            .map_err(failed)?;
        let reader = Reader::new(config.dir.clone(), recovered.position, shared.clone(), durable_rx);
        let replay = replay::Replay {
            reader: Some(reader),
            writer,
            shared: shared.clone(),
            metrics,
            gauges: config.gauges.clone(),
            per_second: config.replay_per_second,
        };
        let mut gate = config.gate;
        // Replay stops when the spill is dropped (the sender goes with it).
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            tokio::select! {
                () = async {
                    // An older layout's records go first (`lanes.rs`).
                    let _ = gate.wait_for(|open| *open).await;
                    replay.run().await;
                } => {}
                _ = stopped => {}
            }
        });
        config.gauges.refresh(&shared);
        Ok(Spill {
            appends,
            shared,
            max_bytes: config.max_bytes,
            gauges: config.gauges,
            _stop: stop,
        })
    }

    /// Whether records wait in the spill: new records must go behind them.
    pub(crate) fn holds_records(&self) -> bool {
        self.shared.lock().pending > 0
    }

    /// Why the spill cannot take records now, if it cannot.
    pub(crate) fn trouble(&self) -> Option<String> {
        let state = self.shared.lock();
        if let Some(err) = &state.failing {
            return Some(format!("the spill's writes fail: {err}"));
        }
        (state.full || state.pending_bytes >= self.max_bytes).then(|| "the spill is full".into())
    }

    /// Waits, up to `within`, for a lane that is almost drained to drain:
    /// `true` once it holds nothing. Only when it holds at most `HANDOFF`
    /// records and its replay stored a chunk within the last two seconds
    /// (the stream takes them): otherwise `false` at once. Callers that wait
    /// append nothing meanwhile, so the lane's last chunk is the end of it,
    /// and their records then go straight to the stream behind it.
    pub(crate) async fn handed_off(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let woken = self.shared.replayed.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the check, so a chunk stored in between wakes it.
            woken.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.pending == 0 {
                    return true;
                }
                let live = now_ms().saturating_sub(state.replayed_ms) < 2000;
                if state.pending > HANDOFF || !live {
                    return false;
                }
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return self.shared.lock().pending == 0;
            }
        }
    }

    /// Records in the spill, not yet replayed.
    pub(crate) fn pending(&self) -> u64 {
        self.shared.lock().pending
    }

    /// Hands `records` to the appender; [`Submitted::wait`] returns once
    /// they are durable. Several lanes' appends run at once this way.
    pub(crate) fn submit(&self, records: &[Record]) -> Submitted<'_> {
        let at_ms = now_ms();
        let mut frames = Vec::with_capacity(records.iter().map(frame::size).sum());
        for record in records {
            frame::encode(record, at_ms, &mut frames);
        }
        let (reply, answer) = oneshot::channel();
        let append = Append {
            frames,
            records: records.len() as u64,
            at_ms,
            reply,
        };
        let sent = self.appends.send(append).is_ok();
        Submitted {
            spill: self,
            answer: sent.then_some(answer),
            records: records.len() as u64,
        }
    }
}

/// An append handed to the appender, not yet known durable.
#[derive(Debug)]
pub(crate) struct Submitted<'a> {
    spill: &'a Spill,
    answer: Option<oneshot::Receiver<Result<(), AppendError>>>,
    records: u64,
}

impl Submitted<'_> {
    /// Waits until the records are durable (or refused), and counts them.
    pub(crate) async fn wait(self, metrics: &Metrics) -> Result<(), AppendError> {
        let stopped = || AppendError::Io("the spill appender has stopped".into());
        let outcome = match self.answer {
            Some(answer) => answer.await.unwrap_or_else(|_| Err(stopped())),
            None => Err(stopped()),
        };
        match &outcome {
            Ok(()) => {
                metrics.spill.appended.inc_by(self.records);
            }
            Err(AppendError::Full) => metrics.spill.append_failed("full"),
            Err(AppendError::Io(_)) => metrics.spill.append_failed("io"),
        }
        self.spill.gauges.refresh(&self.spill.shared);
        outcome
    }
}

/// A spill write past `ulimit -f` raises SIGXFSZ, whose default action ends
/// the process. With a handler installed, the write fails with EFBIG
/// instead: that request gets 503 and the gateway keeps serving.
fn keep_serving_past_file_size_limits() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::signal::unix::{SignalKind, signal};
        static INSTALLED: AtomicBool = AtomicBool::new(false);
        if INSTALLED.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // SIGXFSZ is 25 on Linux (every architecture it runs on here).
        let mut file_size = signal(SignalKind::from_raw(25))?;
        tokio::spawn(async move {
            while file_size.recv().await.is_some() {
                tracing::warn!("a spill write went past the process's file size limit (ulimit -f)");
            }
        });
    }
    Ok(())
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

/// Creates, writes, syncs and removes a file in `dir`.
fn check_writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(WRITE_CHECK);
    let mut file = std::fs::File::create(&path)?;
    file.write_all(b"ok")?;
    file.sync_all()?;
    std::fs::remove_file(path)
}

/// Unix time in ms.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The spill's gauges, one slot per lane: each lane's records and oldest
/// age under its label, and the totals over every lane (`spill_records`,
/// `spill_bytes`, `spill_oldest_record_age_seconds`) summed from the slots.
#[derive(Debug)]
pub(crate) struct Board {
    metrics: Arc<Metrics>,
    /// Per slot: records, disk bytes, oldest record's Unix ms (0: none).
    slots: Vec<[AtomicU64; 3]>,
}

impl Board {
    /// A board of `slots` lanes.
    pub(crate) fn new(metrics: Arc<Metrics>, slots: usize) -> Arc<Self> {
        Arc::new(Board {
            metrics,
            slots: (0..slots).map(|_| Default::default()).collect(),
        })
    }

    /// Lane `slot`'s gauges, labelled `label`.
    pub(crate) fn lane(self: &Arc<Self>, slot: usize, label: String) -> Arc<Gauges> {
        Arc::new(Gauges {
            board: self.clone(),
            slot,
            label: LaneLabels { lane: label },
        })
    }
}

/// One lane's gauges.
#[derive(Debug)]
pub(crate) struct Gauges {
    board: Arc<Board>,
    slot: usize,
    label: LaneLabels,
}

impl Gauges {
    /// Copies the lane's state into its gauges and the totals.
    fn refresh(&self, shared: &Shared) {
        let (records, bytes, oldest) = {
            let state = shared.lock();
            let oldest = state.oldest_ms.filter(|_| state.pending > 0).unwrap_or(0);
            (state.pending, state.disk_bytes, oldest)
        };
        let board = &self.board;
        let slot = &board.slots[self.slot];
        slot[0].store(records, Ordering::Relaxed);
        slot[1].store(bytes, Ordering::Relaxed);
        slot[2].store(oldest, Ordering::Relaxed);
        let now = now_ms();
        let age = |oldest: u64| {
            if oldest == 0 {
                0.0
            } else {
                now.saturating_sub(oldest) as f64 / 1000.0
            }
        };
        let spill = &board.metrics.spill;
        spill.lane_records.get_or_create(&self.label).set(records as i64);
        spill
            .lane_oldest_age_seconds
            .get_or_create(&self.label)
            .set(age(oldest));
        let sum = |i: usize| board.slots.iter().map(|s| s[i].load(Ordering::Relaxed)).sum::<u64>();
        spill.records.set(sum(0) as i64);
        spill.bytes.set(sum(1) as i64);
        let oldest = board
            .slots
            .iter()
            .map(|s| s[2].load(Ordering::Relaxed))
            .filter(|&ms| ms > 0)
            .min()
            .unwrap_or(0);
        spill.oldest_age_seconds.set(age(oldest));
    }
}
