//! What one lane's appender, reader, replay and the doors share: its counts
//! and flags, under one lock, changed only through the methods here (each
//! named for the event that changes them), so who changes what is read in
//! one place.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::ledger::Position;
use super::recovery::Recovered;

/// A lane's shared state, behind its lock.
#[derive(Debug, Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    /// Woken whenever replay stores a chunk.
    replayed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Records appended and not yet replayed.
    pending: u64,
    /// Bytes of segment files on disk.
    disk_bytes: u64,
    /// Bytes of records not yet replayed: what `SPILL_MAX_BYTES` caps. Disk
    /// use exceeds it by at most the replayed part of one segment.
    pending_bytes: u64,
    /// How far the log is durable: the reader never reads past it.
    durable: Position,
    /// When the oldest pending record was appended (Unix ms), while known.
    oldest_ms: Option<u64>,
    /// An append was refused for want of room, and none has fit since.
    full: bool,
    /// The last write or `fsync` failed, and none has succeeded since.
    failing: Option<String>,
    /// When replay last stored a chunk (Unix ms; 0: never).
    replayed_ms: u64,
}

/// Whether a lane that holds records is about to drain (see
/// `Lane::handed_off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Draining {
    /// It holds nothing.
    Drained,
    /// At most `max` records, and its replay stored a chunk lately.
    Soon,
    /// More, or its replay is stuck.
    No,
}

impl Shared {
    /// The state; a panic elsewhere leaves only numbers behind, so keep going.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// At start-up: what a previous process left, durable up to `durable`.
    pub(super) fn recovered(&self, recovered: &Recovered, durable: Position) {
        let mut state = self.lock();
        state.pending = recovered.pending;
        state.disk_bytes = recovered.disk_bytes;
        state.pending_bytes = recovered.pending_bytes;
        state.oldest_ms = recovered.oldest_ms;
        state.durable = durable;
    }

    /// Records in the lane, not yet replayed.
    pub(super) fn pending(&self) -> u64 {
        self.lock().pending
    }

    /// Bytes of records not yet replayed (what the cap counts).
    pub(super) fn pending_bytes(&self) -> u64 {
        self.lock().pending_bytes
    }

    /// The appender refused an append for want of room.
    pub(super) fn refused_for_room(&self) {
        self.lock().full = true;
    }

    /// A write or its `fsync` failed.
    pub(super) fn write_failed(&self, error: String) {
        self.lock().failing = Some(error);
    }

    /// A group commit made `records` (`bytes`, the first framed at
    /// `first_ms`) durable up to `durable`; `refused` tells whether the same
    /// group refused an append for want of room. Pending grows here, before
    /// the reader is told of `durable`.
    pub(super) fn appended(&self, records: u64, bytes: u64, first_ms: u64, durable: Position, refused: bool) {
        let mut state = self.lock();
        state.full = refused;
        state.failing = None;
        state.pending += records;
        state.disk_bytes += bytes;
        state.pending_bytes += bytes;
        state.oldest_ms.get_or_insert(first_ms);
        state.durable = durable;
    }

    /// The appender opened a new segment: durable up to its start.
    pub(super) fn rotated(&self, durable: Position) {
        self.lock().durable = durable;
    }

    /// The reader deleted a replayed segment of `size` bytes.
    pub(super) fn segment_deleted(&self, size: u64) {
        let mut state = self.lock();
        state.disk_bytes = state.disk_bytes.saturating_sub(size);
        state.full = false;
    }

    /// The reader moved `bytes` further in its segment.
    pub(super) fn read_past(&self, bytes: u64) {
        let mut state = self.lock();
        state.pending_bytes = state.pending_bytes.saturating_sub(bytes);
    }

    /// Replay holds a chunk whose first record was appended at `at_ms`.
    pub(super) fn replaying(&self, at_ms: u64) {
        self.lock().oldest_ms = Some(at_ms);
    }

    /// Replay stored `records` at `now_ms`; wakes whoever waits for a lane
    /// to drain.
    pub(super) fn replayed(&self, records: u64, now_ms: u64) {
        {
            let mut state = self.lock();
            state.pending = state.pending.saturating_sub(records);
            state.replayed_ms = now_ms;
        }
        self.replayed.notify_waiters();
    }

    /// Replay found nothing to read at `position`: when that is where the
    /// log is durable, the lane is empty, and a count left over (records
    /// lost to corruption) is reset. Answers the count reset.
    pub(super) fn idle_at(&self, position: Position) -> Option<u64> {
        let mut state = self.lock();
        if state.durable != position {
            return None;
        }
        state.oldest_ms = None;
        let drift = std::mem::take(&mut state.pending);
        (drift != 0).then_some(drift)
    }

    /// A future woken when replay next stores a chunk.
    pub(super) fn next_replayed(&self) -> Notified<'_> {
        self.replayed.notified()
    }

    /// Whether the lane drains soon: at most `max` records, and a chunk
    /// stored within the last two seconds before `now_ms`.
    pub(super) fn draining(&self, max: u64, now_ms: u64) -> Draining {
        let state = self.lock();
        let live = now_ms.saturating_sub(state.replayed_ms) < 2000;
        match state.pending {
            0 => Draining::Drained,
            n if n <= max && live => Draining::Soon,
            _ => Draining::No,
        }
    }

    /// Why the lane cannot take records now, if it cannot: its writes
    /// fail, or it is full (`max_bytes`).
    pub(super) fn trouble(&self, max_bytes: u64) -> Option<String> {
        let state = self.lock();
        if let Some(err) = &state.failing {
            return Some(format!("the spill's writes fail: {err}"));
        }
        (state.full || state.pending_bytes >= max_bytes).then(|| "the spill is full".into())
    }

    /// For the gauges: records, disk bytes, and the oldest pending
    /// record's Unix ms (0: none).
    pub(super) fn gauges(&self) -> (u64, u64, u64) {
        let state = self.lock();
        let oldest = state.oldest_ms.filter(|_| state.pending > 0).unwrap_or(0);
        (state.pending, state.disk_bytes, oldest)
    }
}
