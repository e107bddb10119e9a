//! The durable spill's settings (`SPILL_DIR` and friends).

use std::path::PathBuf;

use super::{ConfigError, Lookup};

/// The durable spill's settings (`spill.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillConfig {
    /// `SPILL_DIR`: where segments live; created if missing.
    pub dir: PathBuf,
    /// `SPILL_MAX_BYTES`: segment bytes on disk at most; beyond it, 503.
    pub max_bytes: u64,
    /// `SPILL_REPLAY_MAX_RECORDS_PER_SEC`: the replay's rate cap (0: none
    /// beyond one call at a time per lane).
    pub replay_per_second: u32,
    /// `SPILL_LANES`: lanes by partition key, each replayed in order, in
    /// parallel; each holds at most `max_bytes / lanes`.
    pub lanes: std::num::NonZeroUsize,
}

/// Lanes unless `SPILL_LANES` says otherwise: 8, so a backlog drains at
/// eight round trips' worth of chunks at once (`bench/drain.py`) while
/// each lane still holds an eighth of `SPILL_MAX_BYTES`.
pub(super) const DEFAULT_LANES: usize = 8;

impl SpillConfig {
    /// The default spill in `dir`: 1 GiB, `DEFAULT_LANES` lanes, replay uncapped.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        SpillConfig {
            dir: dir.into(),
            max_bytes: 1 << 30,
            replay_per_second: 0,
            lanes: std::num::NonZeroUsize::new(DEFAULT_LANES).expect("> 0"),
        }
    }

    /// Reads the spill's variables: none without `SPILL_DIR`.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Option<Self>, ConfigError> {
        let Some(dir) = vars.get("SPILL_DIR") else {
            return Ok(None);
        };
        let d = SpillConfig::in_dir(dir);
        Ok(Some(SpillConfig {
            max_bytes: vars.at_most("SPILL_MAX_BYTES", d.max_bytes as usize, usize::MAX)?.get() as u64,
            replay_per_second: vars.parse("SPILL_REPLAY_MAX_RECORDS_PER_SEC", d.replay_per_second)?,
            lanes: vars.at_most("SPILL_LANES", d.lanes.get(), 256)?,
            ..d
        }))
    }
}
