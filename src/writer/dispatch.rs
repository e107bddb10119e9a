//! The dispatcher: one task that takes waiting records off the queue,
//! gathers them into calls and starts each call within the adaptive limit
//! on calls in flight.
//!
//! While a call is in flight, records gather for the next call; another
//! call starts alongside only when a full batch is waiting and the limit
//! allows one more. Gathering stops when the oldest record could no longer
//! wait for a call in flight to finish and still be answered in time (two
//! round trips before its deadline): it then takes a free slot, full batch
//! or not, rather than miss its deadline unsent. A record the stream's
//! recent round trip says would be answered after its deadline is not sent
//! at all: the client hears 503 and retries, where a late success would
//! store the event twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use super::{Dispatcher, Pending, Waiter};
use crate::concurrency::Limit;
use crate::sink::{Record, SinkError};

impl Dispatcher {
    /// Runs until every [`super::Writer`] is dropped (the queue closes).
    pub(super) async fn run(self: Arc<Self>, mut waiting: mpsc::Receiver<Pending>) {
        // A record that did not fit in the previous batch opens the next one.
        let mut carried: Option<Pending> = None;
        loop {
            let first = match carried.take() {
                Some(pending) => pending,
                None => match waiting.recv().await {
                    Some(pending) => pending,
                    None => return,
                },
            };
            let (expected, current) = self.slot_for(&first, &waiting).await;
            let (records, waiters, next) = self.gather(first, &mut waiting);
            carried = next;
            let (records, waiters) = self.drop_late(records, waiters, expected);
            if records.is_empty() {
                self.release();
                continue;
            }
            self.metrics.concurrency_limit(current);
            let this = self.clone();
            tokio::spawn(async move {
                this.call(records, waiters).await;
                this.release();
            });
        }
    }

    /// Waits until a call may start with `first` at its head, and starts
    /// it in the limit: at once when none of the dispatcher's own calls is
    /// in flight, a full batch waits, or `first` is urgent; else when a call
    /// ends. Answers the stream's expected round trip and the limit then,
    /// read under the limit's one lock.
    async fn slot_for(&self, first: &Pending, waiting: &mpsc::Receiver<Pending>) -> (Duration, usize) {
        let max_records = self.config.max_records.get();
        loop {
            let (started, urgent_at) = {
                let mut limit = self.limit();
                let expected = limit.mean_rtt().unwrap_or_default();
                let deadline = first.waiter.deadline;
                let urgent_at = deadline.checked_sub(expected * 2).unwrap_or(deadline);
                let urgent = Instant::now() >= urgent_at;
                let own = limit.in_flight() > self.sequence_calls.load(Ordering::Acquire);
                let gather = own && waiting.len() + 1 < max_records && !urgent;
                let started = (!gather && limit.try_start()).then(|| (expected, limit.current()));
                (started, (!urgent).then_some(urgent_at))
            };
            if let Some(figures) = started {
                return figures;
            }
            match urgent_at {
                Some(at) => {
                    tokio::select! {
                        () = self.finished.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.finished.notified().await,
            }
        }
    }

    /// `first` and the records already waiting, up to a call's limits
    /// (`BATCH_MAX_RECORDS`, `BATCH_MAX_BYTES`), as records and their
    /// waiters in two lists from the start: the call needs the records as
    /// one slice, and nothing is rebuilt per call. A record that does not
    /// fit is handed back to open the next call.
    fn gather(
        &self,
        first: Pending,
        waiting: &mut mpsc::Receiver<Pending>,
    ) -> (Vec<Record>, Vec<Waiter>, Option<Pending>) {
        let max_records = self.config.max_records.get();
        let mut bytes = first.record.size();
        let mut records = Vec::with_capacity(waiting.len().min(max_records - 1) + 1);
        let mut waiters = Vec::with_capacity(records.capacity());
        records.push(first.record);
        waiters.push(first.waiter);
        while records.len() < max_records {
            let Ok(next) = waiting.try_recv() else { break };
            if bytes + next.record.size() > self.config.max_bytes.get() {
                return (records, waiters, Some(next));
            }
            bytes += next.record.size();
            records.push(next.record);
            waiters.push(next.waiter);
        }
        (records, waiters, None)
    }

    /// Answers, unsent, each record that a call taking `expected` would
    /// answer after its deadline; keeps the rest in order.
    fn drop_late(&self, records: Vec<Record>, waiters: Vec<Waiter>, expected: Duration) -> (Vec<Record>, Vec<Waiter>) {
        let cutoff = Instant::now() + expected;
        if waiters.iter().all(|w| w.deadline > cutoff) {
            return (records, waiters);
        }
        // Rare: rebuilt in order (a call keeps the request order).
        let mut late = 0;
        let (mut kept_records, mut kept_waiters) = (Vec::new(), Vec::new());
        for (record, waiter) in records.into_iter().zip(waiters) {
            if waiter.deadline > cutoff {
                kept_records.push(record);
                kept_waiters.push(waiter);
                continue;
            }
            late += 1;
            waiter.reply.send(Err(SinkError::Unavailable(
                "the stream would not answer before the record deadline".into(),
            )));
        }
        self.metrics.records_not_sent_late(late);
        self.limit().deadline_missed(Instant::now());
        (kept_records, kept_waiters)
    }

    /// Frees a call's slot and wakes whoever waits for one.
    pub(super) fn release(&self) {
        self.limit().release();
        self.wake();
    }

    /// Wakes whoever waits for a slot.
    pub(super) fn wake(&self) {
        self.finished.notify_one();
        if self.sequences_waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// The limit on calls in flight, locked.
    pub(super) fn limit(&self) -> std::sync::MutexGuard<'_, Limit> {
        // A panic while holding the lock leaves only numbers behind: keep going.
        self.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
