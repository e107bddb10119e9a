//! The spill as a store wrapper ([`SpillStore`]): every spill policy lives
//! here, around whatever store keeps records in the stream.
//!
//! - **What spills**: every record the inner store could not keep, unless
//!   the stream refused the record itself (the failure table's
//!   `record_refused`): a client must hear about a bad record, not have it
//!   replayed forever.
//! - **Order**: while the spill holds records, every new record goes into
//!   it too, behind them, so one key's events reach the stream in order.
//! - **Answers**: a spilled record is [`Kept::Spilled`] once durable (the
//!   doors answer 202, or their protocol's 200); a spill that cannot take it
//!   answers what refused it last (full: `overloaded`, a failed write:
//!   `unavailable`), both 503 + `Retry-After`.
//! - **Readiness**: ready while the spill has room, whatever the stream
//!   says; not ready when new records must go behind spilled ones and the
//!   spill cannot take them.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AppendError, Spill};
use crate::metrics::Metrics;
use crate::readiness::Verdict;
use crate::sink::{Record, SinkError};
use crate::store::{Kept, Kepts, Store};

/// A store that spills what `inner` could not keep.
#[derive(Debug)]
pub struct SpillStore {
    inner: Arc<dyn Store>,
    spill: Spill,
    metrics: Arc<Metrics>,
}

impl SpillStore {
    /// Wraps `inner` with `spill`.
    pub fn new(inner: Arc<dyn Store>, spill: Spill, metrics: Arc<Metrics>) -> Self {
        SpillStore { inner, spill, metrics }
    }
}

#[async_trait]
impl Store for SpillStore {
    async fn put(&self, records: Vec<Record>) -> Kepts {
        if self.spill.holds_records() {
            let count = records.len();
            return match self.spill.append(&records, &self.metrics).await {
                Ok(()) => vec![Ok(Kept::Spilled); count],
                Err(err) => vec![Err(failure(err)); count],
            };
        }
        // The records are kept for the spill until the stream has answered
        // (cheap clones of the data; one new key string each).
        let mut outcomes = self.inner.put(records.clone()).await;
        let failed: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i].as_ref().is_err_and(|err| !err.is_record_refused()))
            .collect();
        if failed.is_empty() {
            return outcomes;
        }
        let spilled: Vec<Record> = failed.iter().map(|&i| records[i].clone()).collect();
        let appended = self.spill.append(&spilled, &self.metrics).await;
        if let Err(err) = &appended {
            tracing::error!(error = %err, records = spilled.len(), "could not spill records");
        }
        for i in failed {
            outcomes[i] = match &appended {
                Ok(()) => Ok(Kept::Spilled),
                Err(err) => Err(failure(err.clone())),
            };
        }
        outcomes
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
            // New records go behind spilled ones: a spill that cannot take
            // them refuses every request, whatever the stream says.
            Some(trouble) if stream.ready && self.spill.holds_records() => Verdict {
                ready: false,
                status: trouble,
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
