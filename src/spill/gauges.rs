//! The spill's gauges, one slot per lane: each lane's records and oldest
//! age under its label, and the totals over every lane (`spill_records`,
//! `spill_bytes`, `spill_oldest_record_age_seconds`) summed from the slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::now_ms;
use super::state::Shared;
use crate::metrics::{LaneLabels, Metrics};

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
    pub(super) fn refresh(&self, shared: &Shared) {
        let (records, bytes, oldest) = shared.gauges();
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
