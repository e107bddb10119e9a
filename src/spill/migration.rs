//! An older layout: a spill written with another lane count, or by a
//! version without lanes (at the top of `SPILL_DIR`), would map keys to
//! other lanes. It is opened as it is and replayed first, and until it has
//! drained every new record waits behind it in the new lanes, whose replay
//! waits for it (the gate). So changing `SPILL_LANES` never reorders a key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::segments;
use super::state::Shared;
use crate::metrics::Metrics;

/// How often the gate looks whether the older layout has drained, and the
/// replay rate gauge is updated.
const TICK: Duration = Duration::from_secs(1);

/// Directories under `root` holding records of another layout than
/// `current`: the top level (a spill without lanes) and every other
/// `lanes-N/lane-I`.
pub(super) fn older_layouts(root: &Path, current: &Path) -> std::io::Result<Vec<PathBuf>> {
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
    Ok(!segments::list(dir)?.is_empty())
}

/// Opens the gate once every older layout has drained, and keeps the
/// replay rate gauge; stops when the spill is dropped.
pub(super) async fn watch_gate(older: Vec<Arc<Shared>>, gate: watch::Sender<bool>, metrics: Arc<Metrics>) {
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
        if !*gate.borrow() && older.iter().all(|shared| shared.pending() == 0) {
            tracing::info!("the older spill layout has drained; the lanes replay now");
            gate.send_replace(true);
        }
    }
}
