//! The spill as a store wrapper ([`SpillStore`]): every spill policy lives
//! here, around whatever store keeps records in the stream.
//!
//! - **What spills**: every record the inner store could not keep, unless
//!   the stream refused the record itself (the failure table's
//!   `record_refused`): a client must hear about a bad record, not have it
//!   replayed forever.
//! - **Order**: a record's lane is a hash of its partition key
//!   ([`Spill`], `spill/mod.rs`); while its lane holds records, a new record goes into it
//!   too, behind them, so one key's events reach the stream in order. The
//!   records of lanes that hold nothing go straight to the stream.
//!   A lane down to its last chunk, while its replay stores, is waited
//!   for (briefly, in memory) rather than appended to: under steady
//!   traffic it would otherwise never be empty, and its keys would pay an
//!   `fsync` and the replay's delay for good.
//! - **Answers**: a spilled record is [`Kept::Spilled`] once durable (the
//!   doors answer 202, or their protocol's 200); a spill that cannot take it
//!   answers what refused it last (full: `overloaded`, a failed write:
//!   `unavailable`), both 503 + `Retry-After`.
//! - **Readiness**: ready while the spill has room, whatever the stream
//!   says; not ready when new records must go behind spilled ones and their
//!   lane cannot take them.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AppendError, Spill};
use crate::metrics::Metrics;
use crate::readiness::Verdict;
use crate::sink::{Record, SinkError};
use crate::store::{Kept, Kepts, Store};

/// The longest a request waits for an almost drained lane to drain before
/// its records go in behind: a few round trips of a slow stream.
const HANDOFF_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A store that spills what `inner` could not keep.
#[derive(Debug)]
pub(crate) struct SpillStore {
    inner: Arc<dyn Store>,
    spill: Spill,
    metrics: Arc<Metrics>,
}

impl SpillStore {
    /// Wraps `inner` with the spill's lanes.
    pub(crate) fn new(inner: Arc<dyn Store>, spill: Spill, metrics: Arc<Metrics>) -> Self {
        SpillStore { inner, spill, metrics }
    }

    /// Appends records `indices` of `records`, each to its lane (the lanes
    /// at once), and answers each one's outcome into `outcomes`.
    async fn spill(
        &self,
        records: &[Record],
        lanes: &[usize],
        indices: Vec<usize>,
        outcomes: &mut [Option<Result<Kept, SinkError>>],
    ) {
        let mut by_lane: Vec<(usize, Vec<usize>)> = Vec::new();
        for i in indices {
            match by_lane.iter_mut().find(|(lane, _)| *lane == lanes[i]) {
                Some((_, members)) => members.push(i),
                None => by_lane.push((lanes[i], vec![i])),
            }
        }
        let submitted: Vec<_> = by_lane
            .iter()
            .map(|(lane, members)| {
                let batch: Vec<Record> = members.iter().map(|&i| records[i].clone()).collect();
                self.spill.lane(*lane).submit(&batch)
            })
            .collect();
        for ((lane, members), submitted) in by_lane.iter().zip(submitted) {
            let appended = submitted.wait(&self.metrics).await;
            if let Err(err) = &appended {
                tracing::error!(error = %err, lane, records = members.len(), "could not spill records");
            }
            for &i in members {
                outcomes[i] = Some(match &appended {
                    Ok(()) => Ok(Kept::Spilled),
                    Err(err) => Err(failure(err.clone())),
                });
            }
        }
    }
}

#[async_trait]
impl Store for SpillStore {
    async fn put(&self, records: Vec<Record>) -> Kepts {
        let lanes: Vec<usize> = records.iter().map(|r| self.spill.lane_of(r)).collect();
        // A lane about to drain is waited for, not appended to (see
        // `Lane::handed_off`): its keys then go straight to the stream.
        let mut waited = Vec::new();
        for &lane in &lanes {
            if !waited.contains(&lane) && self.spill.waits(lane) {
                waited.push(lane);
                self.spill.lane(lane).handed_off(HANDOFF_WAIT).await;
            }
        }
        let (waiting, direct): (Vec<usize>, Vec<usize>) = (0..records.len()).partition(|&i| self.spill.waits(lanes[i]));
        let mut outcomes: Vec<Option<Result<Kept, SinkError>>> = vec![None; records.len()];
        let mut to_spill = waiting;
        if !direct.is_empty() {
            // Kept for the spill until the stream has answered (cheap
            // clones of the data; one new key string each).
            let sent: Vec<Record> = direct.iter().map(|&i| records[i].clone()).collect();
            let answered = self.inner.put(sent).await;
            for (&i, outcome) in direct.iter().zip(answered) {
                match outcome {
                    Err(err) if !err.is_record_refused() => to_spill.push(i),
                    outcome => outcomes[i] = Some(outcome),
                }
            }
        }
        if !to_spill.is_empty() {
            to_spill.sort_unstable();
            self.spill(&records, &lanes, to_spill, &mut outcomes).await;
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every record has an outcome"))
            .collect()
    }

    fn verdict(&self, stream: Verdict) -> Verdict {
        let stream = self.inner.verdict(stream);
        match self.spill.trouble() {
            None if !stream.ready => Verdict {
                ready: true,
                status: format!(
                    "spilling to disk ({} records waiting): {}",
                    self.spill.pending(),
                    stream.status
                ),
            },
            // New records go behind spilled ones: a lane that cannot take
            // them refuses its keys, whatever the stream says.
            Some(_) if stream.ready && self.spill.refuses_waiting_keys().is_some() => Verdict {
                ready: false,
                status: self.spill.refuses_waiting_keys().unwrap_or_default(),
            },
            Some(trouble) if !stream.ready => Verdict {
                ready: false,
                status: format!("{}; {trouble}", stream.status),
            },
            _ => stream,
        }
    }
}

/// A spill that could not take records: full is overload (503, retry
/// later), a failed write the disk being unavailable.
fn failure(err: AppendError) -> SinkError {
    match err {
        AppendError::Full => SinkError::Overloaded("the spill is full".into()),
        AppendError::Io(detail) => SinkError::Unavailable(format!("the spill write failed: {detail}")),
    }
}
