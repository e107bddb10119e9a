//! One lane of the spill: its own segments, ledger, appender thread and
//! replay task in its own directory. [`Lane::open`] recovers what a
//! previous process left and starts both; the doors hand it records
//! ([`Lane::submit`]) and learn whether it holds any, can take more, or is
//! about to drain ([`Lane::handed_off`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::{oneshot, watch};

use super::appender::{Append, AppendError, Appender};
use super::gauges::Gauges;
use super::ledger::Position;
use super::reader::Reader;
use super::recovery::{self, Recovered};
use super::state::{Draining, Shared};
use super::{OpenError, frame, now_ms, replay};
use crate::metrics::Metrics;
use crate::sink::Record;
use crate::writer::Writer;

/// A lane holding at most this many records (one replay chunk) while its
/// replay keeps storing is about to drain: new records of its keys wait for
/// that (in memory, [`Lane::handed_off`]) instead of going in behind, or it
/// would never drain under steady traffic.
pub(crate) const HANDOFF: u64 = 500;

/// A file written, synced and removed at start-up: a directory the process
/// cannot write (read-only, another user's) stops start-up instead of
/// failing every request that would spill.
const WRITE_CHECK: &str = ".write-check";

/// One lane: cheap to share; its appender thread and replay task run until
/// it is dropped.
#[derive(Debug)]
pub(crate) struct Lane {
    appends: mpsc::Sender<Append>,
    pub(super) shared: Arc<Shared>,
    max_bytes: u64,
    gauges: Arc<Gauges>,
    _stop: oneshot::Sender<()>,
}

/// One lane's place: its directory, its share of the bytes, its replay's
/// rate, its gauges, and the gate its replay waits for (an older layout
/// replays first, `migration.rs`).
#[derive(Debug)]
pub(super) struct LaneSpec {
    /// The lane's directory.
    pub(super) dir: PathBuf,
    /// Its share of `SPILL_MAX_BYTES`.
    pub(super) max_bytes: u64,
    /// `SPILL_REPLAY_MAX_RECORDS_PER_SEC`.
    pub(super) replay_per_second: u32,
    /// Its gauges' label and slot.
    pub(super) gauges: Arc<Gauges>,
    /// Replay starts once this is true.
    pub(super) gate: watch::Receiver<bool>,
}

impl Lane {
    /// Opens `spec.dir`, recovers what a previous process left, and starts
    /// the appender thread and the replay task (through `writer`). Must run
    /// inside a tokio runtime.
    pub(super) fn open(spec: LaneSpec, writer: Writer, metrics: Arc<Metrics>) -> Result<Self, OpenError> {
        let failed = |source| OpenError {
            dir: spec.dir.display().to_string(),
            source,
        };
        let recovered = prepare(&spec.dir, &metrics).map_err(failed)?;
        let shared = Arc::new(Shared::default());
        let durable = Position {
            segment: recovered.next_segment,
            offset: 0,
        };
        shared.recovered(&recovered, durable);
        let (durable_tx, durable_rx) = watch::channel(durable);
        // Segments: an eighth of the cap (so deleting replayed segments frees
        // space steadily), from 1 MiB to 64 MiB.
        let segment_bytes = (spec.max_bytes / 8).clamp(1 << 20, 64 << 20);
        let appender = Appender::new(
            spec.dir.clone(),
            spec.max_bytes,
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
        let reader = Reader::new(spec.dir.clone(), recovered.position, shared.clone(), durable_rx);
        let replay = replay::Replay {
            reader: Some(reader),
            writer,
            shared: shared.clone(),
            metrics,
            gauges: spec.gauges.clone(),
            per_second: spec.replay_per_second,
        };
        let stop = replay.start(spec.gate);
        spec.gauges.refresh(&shared);
        Ok(Lane {
            appends,
            shared,
            max_bytes: spec.max_bytes,
            gauges: spec.gauges,
            _stop: stop,
        })
    }

    /// Whether records wait in the lane: new records must go behind them.
    pub(crate) fn holds_records(&self) -> bool {
        self.shared.pending() > 0
    }

    /// Why the lane cannot take records now, if it cannot.
    pub(crate) fn trouble(&self) -> Option<String> {
        self.shared.trouble(self.max_bytes)
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
            let woken = self.shared.next_replayed();
            let mut woken = std::pin::pin!(woken);
            // Registered before the check, so a chunk stored in between wakes it.
            woken.as_mut().enable();
            match self.shared.draining(HANDOFF, now_ms()) {
                Draining::Drained => return true,
                Draining::No => return false,
                Draining::Soon => {}
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return self.shared.pending() == 0;
            }
        }
    }

    /// Records in the lane, not yet replayed.
    pub(crate) fn pending(&self) -> u64 {
        self.shared.pending()
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
            lane: self,
            answer: sent.then_some(answer),
            records: records.len() as u64,
        }
    }
}

/// An append handed to the appender, not yet known durable.
#[derive(Debug)]
pub(crate) struct Submitted<'a> {
    lane: &'a Lane,
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
        self.lane.gauges.refresh(&self.lane.shared);
        outcome
    }
}

/// Makes `dir` ready and reads what a previous process left there, saying
/// so in the log (and counting a ledger not trusted).
fn prepare(dir: &Path, metrics: &Metrics) -> std::io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    check_writable(dir)?;
    let recovered = recovery::recover(dir)?;
    keep_serving_past_file_size_limits()?;
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
    Ok(recovered)
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

/// Creates, writes, syncs and removes a file in `dir`.
fn check_writable(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(WRITE_CHECK);
    let mut file = std::fs::File::create(&path)?;
    file.write_all(b"ok")?;
    file.sync_all()?;
    std::fs::remove_file(path)
}
