//! Ordered sequences: the spill's replay sends its records in calls of
//! their own, one at a time, within the same limit on calls in flight.
//! They never carry live records, and live records do not gather behind
//! them ([`super::Dispatcher`]'s `sequence_calls`). A sequence stops at the
//! first call that did not store every record, so whoever sends the rest
//! again sends them in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::{Instant, timeout_at};

use super::{Dispatcher, Replies, Waiter, Writer};
use crate::sink::{Outcomes, Record, SinkError};

impl Writer {
    /// Stores `records` in calls of their own, in order, one call at a
    /// time (within the limit on calls in flight, sharing no call with other
    /// records), and stops at the first call that did not store every
    /// record: the records after it are answered unavailable, unsent. So
    /// whoever sends them again sends them in order, and no later record of
    /// a key lands before an earlier one that failed (but for entries that
    /// fail alone inside a call and are retried, as the stream's own
    /// `PutRecords` allows). The spill's replay uses this: [`Writer::put`]
    /// may split a chunk across concurrent calls, and a part that fails
    /// would be resent after the rest had landed. With batching off it is
    /// [`Writer::put`].
    pub(crate) async fn put_in_order(&self, records: Vec<Record>) -> Outcomes {
        let Some(dispatcher) = &self.dispatcher else {
            return self.put(records).await;
        };
        let deadline = Instant::now() + self.deadlines.record_timeout;
        let (max_records, max_bytes) = (dispatcher.config.max_records.get(), dispatcher.config.max_bytes.get());
        let mut outcomes = Vec::with_capacity(records.len());
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut call = Vec::new();
            let mut bytes = 0;
            while let Some(next) =
                records.next_if(|r| call.is_empty() || (call.len() < max_records && bytes + r.size() <= max_bytes))
            {
                bytes += next.size();
                call.push(next);
            }
            let answered = dispatcher.clone().call_alone(call, deadline).await;
            let stored = answered.iter().all(Result::is_ok);
            outcomes.extend(answered);
            if !stored {
                let unsent = records.len();
                let err = SinkError::Unavailable("an earlier call of the same sequence failed".into());
                outcomes.extend(std::iter::repeat_n(Err(err), unsent));
                break;
            }
        }
        outcomes
    }
}

impl Dispatcher {
    /// One call of `records` alone, once the limit has a slot for it; every
    /// record is answered, by `deadline` at the latest.
    async fn call_alone(self: Arc<Self>, records: Vec<Record>, deadline: Instant) -> Outcomes {
        let count = records.len();
        let Some(current) = self.sequence_slot(deadline).await else {
            let err = SinkError::Unavailable("no call could start before the record deadline".into());
            return vec![Err(err); count];
        };
        self.metrics.concurrency_limit(current);
        let (replies, each) = Replies::new(count);
        let waiters = each.map(|reply| Waiter { deadline, reply }).collect();
        // A task of its own, like the dispatcher's calls: the slot is freed
        // even if the caller stops waiting.
        let this = self.clone();
        tokio::spawn(async move {
            this.call(records, waiters).await;
            {
                let mut limit = this.limit();
                this.sequence_calls.fetch_sub(1, Ordering::AcqRel);
                limit.release();
            }
            this.wake();
        });
        replies.outcomes().await
    }

    /// A slot in the limit for a sequence's call, counted among the
    /// sequences' calls; `None` when none frees up before `deadline`.
    /// Answers the limit then.
    async fn sequence_slot(&self, deadline: Instant) -> Option<usize> {
        let _waiting = Waiting::count(&self.sequences_waiting);
        loop {
            // Registered before the look at the limit, so a call that ends
            // in between still wakes this loop.
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            {
                let mut limit = self.limit();
                // Counted under the lock the dispatcher reads both under.
                if limit.try_start() {
                    self.sequence_calls.fetch_add(1, Ordering::AcqRel);
                    return Some(limit.current());
                }
            }
            if timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }
}

/// One sequence counted in `Dispatcher::sequences_waiting` while it
/// lives: un-counted when it gets a slot, gives up, or its caller drops it
/// mid-wait, so `wake` stops notifying for a waiter that is gone.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
