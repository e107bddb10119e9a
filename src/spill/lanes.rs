//! The spill's lanes (`SPILL_LANES`): a record's lane is a hash of its
//! partition key, so one key lives in one lane. Each lane is a [`Spill`] of
//! its own (segments, ledger, appender thread, replay task) in
//! `SPILL_DIR/lanes-N/lane-I`; lanes replay in parallel, each in order, all
//! through the writer and so within the adaptive limit on calls. While a
//! lane holds records, its keys' new records go behind them
//! ([`Lanes::waits`]); a drained lane lets its keys' records go straight to
//! the stream again. RudderStack's router does the same with its workers
//! keyed by user and a barrier per key.
//!
//! **An older layout** (a spill written with another lane count, or by a
//! version without lanes, at the top of `SPILL_DIR`) would map keys to
//! other lanes: it is opened as it is and replayed first, and until it has
//! drained every new record waits behind it in the new lanes, whose replay
//! waits for it (the gate). So changing `SPILL_LANES` never reorders a key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Board, LaneSpec, OpenError, Spill};
use crate::config::SpillConfig;
use crate::metrics::Metrics;
use crate::sink::Record;
use crate::writer::Writer;

/// How often the gate looks whether the older layout has drained, and the
/// replay rate gauge is updated.
const TICK: Duration = Duration::from_secs(1);

/// The lanes, and any older layout being drained first.
#[derive(Debug)]
pub(crate) struct Lanes {
    lanes: Vec<Spill>,
    older: Vec<Spill>,
    gate: watch::Receiver<bool>,
}

impl Lanes {
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
        let older = older_layouts(root, &current).map_err(|e| failed(root, e))?;
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
                Spill::open(
                    spec(dir, count + i, label, always.clone()),
                    writer.clone(),
                    metrics.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !older.is_empty() {
            let waiting: u64 = older.iter().map(Spill::pending).sum();
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
                Spill::open(
                    spec(dir, i, i.to_string(), gate.clone()),
                    writer.clone(),
                    metrics.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let watched: Vec<_> = older.iter().map(|s| s.shared.clone()).collect();
        tokio::spawn(watch_gate(watched, open_gate, metrics.clone()));
        Ok(Lanes { lanes, older, gate })
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
    pub(crate) fn lane(&self, lane: usize) -> &Spill {
        &self.lanes[lane]
    }

    /// Records waiting in every lane.
    pub(crate) fn pending(&self) -> u64 {
        self.all().map(Spill::pending).sum()
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

    fn all(&self) -> impl Iterator<Item = &Spill> {
        self.lanes.iter().chain(&self.older)
    }
}

/// Directories under `root` holding records of another layout than
/// `current`: the top level (a spill without lanes) and every other
/// `lanes-N/lane-I`.
fn older_layouts(root: &Path, current: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if has_segments(root)? {
        found.push(root.to_owned());
    }
    let mut layouts: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir() && path != current)
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("lanes-"))
        })
        .collect();
    layouts.sort();
    for layout in layouts {
        let mut lanes: Vec<PathBuf> = std::fs::read_dir(&layout)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .collect();
        lanes.sort();
        for lane in lanes {
            if has_segments(&lane)? {
                found.push(lane);
            }
        }
    }
    Ok(found)
}

fn has_segments(dir: &Path) -> std::io::Result<bool> {
    Ok(!super::log::segments(dir)?.is_empty())
}

/// Opens the gate once every older layout has drained, and keeps the
/// replay rate gauge; stops when the lanes are dropped.
async fn watch_gate(older: Vec<Arc<super::log::Shared>>, gate: watch::Sender<bool>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(TICK);
    let mut replayed = metrics.spill.replayed.get();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = gate.closed() => return,
        }
        let now = metrics.spill.replayed.get();
        metrics
            .spill
            .replay_rate
            .set((now - replayed) as f64 / TICK.as_secs_f64());
        replayed = now;
        if !*gate.borrow() && older.iter().all(|shared| shared.lock().pending == 0) {
            tracing::info!("the older spill layout has drained; the lanes replay now");
            gate.send_replace(true);
        }
    }
}
