//! The writer: every record on its way to the sink goes through here, so
//! batching, per-record retries and deadlines live in one place.
//!
//! With batching on (the default), concurrent records share one
//! [`Sink::put_batch`] call and each still gets its own outcome. There is no
//! linger timer. When no call is in flight, the first waiting record goes out
//! at once with every other record already waiting, up to the call's limits
//! (`BATCH_MAX_RECORDS`, `BATCH_MAX_BYTES`): at low load latency equals one
//! call. While one of its calls is in flight, arriving records gather for
//! the next call, which starts when a call finishes; a further call starts alongside
//! only when a full batch is already waiting and the limit on calls in
//! flight allows ([`crate::concurrency`]: adaptive, from 1 to
//! `BATCH_MAX_CONCURRENT_CALLS`, driven by the stream's latency and
//! back-pressure). So calls per record fall as load rises, concurrency grows
//! only when one call at a time cannot keep up, and a stream that slows down
//! gets fewer calls at once. A request's records enter the
//! queue all together or not at all, and a request with more records than
//! one call takes is split across calls.
//!
//! [`Writer::put_in_order`] sends a sequence (the spill's replay) as calls
//! of its own, one at a time, within the same limit: they never carry live
//! records, and live records do not gather behind them.
//!
//! Entries that fail alone inside a successful call (throttled, internal
//! failure) are retried on their own, with jittered exponential backoff,
//! while their deadline and the attempt budget allow; the others are answered
//! at once. With batching off, each record is one [`Sink::put_one`] call.
//!
//! Deadlines: a record gets [`Deadlines::record_timeout`] from arrival to
//! its answer. One whose deadline passes while queued is refused, never sent
//! late, and neither is one that the stream's recent round trip says would
//! be answered after it; a call still in flight at the latest deadline of
//! its records is abandoned, and a waiting request is answered at its
//! deadline whatever the call is doing. Nothing here resends a call that may
//! still succeed: a call is tried again only when the stream answered it
//! with an error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant, sleep, timeout_at};

use crate::concurrency::{Limit, Signal};
use crate::config::BatchConfig;
use crate::metrics::{GaugeGuard, Metrics};
use crate::sink::{Deadlines, Outcomes, Receipt, Record, Sink, SinkError};

/// Calls in flight the adaptive limit starts with.
const INITIAL_CALLS: usize = 16;
/// First retry delay for entries that failed alone; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest single retry delay.
const RETRY_CAP: Duration = Duration::from_secs(1);

/// Writes records to the sink; cheap to clone and share, the dispatcher
/// task (when batching) runs until every clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    deadlines: Deadlines,
    /// The dispatcher's queue, when batching is on.
    queue: Option<mpsc::Sender<Pending>>,
    /// The dispatcher itself, for calls of their own ([`Writer::put_in_order`]).
    dispatcher: Option<Arc<Dispatcher>>,
}

/// A record waiting for its call, and where its outcome goes.
struct Pending {
    record: Record,
    waiter: Waiter,
}

struct Waiter {
    deadline: Instant,
    reply: oneshot::Sender<Result<Receipt, SinkError>>,
}

impl Writer {
    /// A writer for `sink`; starts the dispatcher when batching is on, so it
    /// must run inside a tokio runtime.
    pub(crate) fn new(sink: Arc<dyn Sink>, metrics: Arc<Metrics>, config: BatchConfig) -> Self {
        let deadlines = sink.deadlines();
        let (queue, dispatcher) = if config.enabled {
            let (queue, waiting) = mpsc::channel(config.queue_capacity.get());
            let dispatcher = Arc::new(Dispatcher {
                sink: sink.clone(),
                metrics: metrics.clone(),
                config,
                max_attempts: deadlines.max_attempts,
                limit: Mutex::new(Limit::new(
                    config.concurrency,
                    INITIAL_CALLS,
                    config.max_concurrent_calls.get(),
                )),
                finished: Notify::new(),
                freed: Notify::new(),
                sequences_waiting: AtomicUsize::new(0),
                sequence_calls: AtomicUsize::new(0),
            });
            tokio::spawn(dispatcher.clone().run(waiting));
            (Some(queue), Some(dispatcher))
        } else {
            (None, None)
        };
        Writer {
            sink,
            metrics,
            deadlines,
            queue,
            dispatcher,
        }
    }

    /// The sink behind this writer.
    pub(crate) fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    /// Stores `records` and returns one outcome per record, in order. When
    /// the queue cannot take them all, none is queued and every outcome is
    /// [`SinkError::Overloaded`].
    pub(crate) async fn put(&self, records: Vec<Record>) -> Outcomes {
        let deadline = Instant::now() + self.deadlines.record_timeout;
        match &self.queue {
            Some(queue) => self.put_batched(queue, records, deadline).await,
            None => self.put_direct(records, deadline).await,
        }
    }

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

    async fn put_batched(&self, queue: &mpsc::Sender<Pending>, records: Vec<Record>, deadline: Instant) -> Outcomes {
        let count = records.len();
        let permits = match queue.try_reserve_many(count) {
            Ok(permits) => permits,
            Err(mpsc::error::TrySendError::Full(())) => {
                return vec![Err(SinkError::Overloaded("the write queue is full".into())); count];
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                return vec![Err(SinkError::Unavailable("the writer has stopped".into())); count];
            }
        };
        // No timer per record: the dispatcher answers every record by its
        // batch's deadline (a call is cut off at the latest of its records'
        // deadlines, which arrived together), or as soon as it knows the
        // record would be late.
        let dropped = || Err(SinkError::Unavailable("the writer dropped the record".into()));
        let mut outcomes = Vec::with_capacity(count);
        for (permit, record) in permits.zip(records) {
            let (reply, outcome) = oneshot::channel();
            permit.send(Pending {
                record,
                waiter: Waiter { deadline, reply },
            });
            outcomes.push(outcome);
        }
        if count == 1 {
            let outcome = outcomes.pop().expect("one record, one outcome");
            return vec![outcome.await.unwrap_or_else(|_| dropped())];
        }
        let mut answers = Vec::with_capacity(count);
        for outcome in outcomes {
            answers.push(outcome.await.unwrap_or_else(|_| dropped()));
        }
        answers
    }

    /// One call per record, all at once.
    async fn put_direct(&self, records: Vec<Record>, deadline: Instant) -> Outcomes {
        let mut calls = JoinSet::new();
        for (index, record) in records.into_iter().enumerate() {
            let (sink, metrics) = (self.sink.clone(), self.metrics.clone());
            calls.spawn(async move {
                let _in_flight = GaugeGuard::inc(metrics.upstream_in_flight());
                let started = std::time::Instant::now();
                let outcome = timeout_at(deadline, sink.put_one(&record))
                    .await
                    .unwrap_or_else(|_| Err(in_flight_past_deadline()));
                metrics.upstream_call(sink.operation(false), outcome.as_ref().err(), started.elapsed());
                (index, outcome)
            });
        }
        let mut outcomes: Vec<Option<Result<Receipt, SinkError>>> = vec![None; calls.len()];
        while let Some(joined) = calls.join_next().await {
            if let Ok((index, outcome)) = joined {
                outcomes[index] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(SinkError::Unavailable("the write task failed".into()))))
            .collect()
    }
}

fn in_flight_past_deadline() -> SinkError {
    SinkError::Unavailable("the call was still in flight at the record deadline".into())
}

/// Forms batches from waiting records and starts a call for each, within
/// the adaptive limit on calls in flight.
#[derive(Debug)]
struct Dispatcher {
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    config: BatchConfig,
    max_attempts: u32,
    limit: Mutex<Limit>,
    /// Wakes the dispatcher when a call ends (`notify_one`: a permit is
    /// kept when it is not waiting, and nothing is locked on the way).
    finished: Notify,
    /// Wakes every sequence ([`Writer::put_in_order`]) waiting for a slot,
    /// when a call ends; notified only while `sequences_waiting` is not
    /// zero, so `/import`'s path pays nothing for it.
    freed: Notify,
    sequences_waiting: AtomicUsize,
    /// Calls of sequences ([`Writer::put_in_order`]) in flight. Records
    /// gather for the next call only while one of the dispatcher's own calls
    /// runs (the limit's calls in flight beyond these), or a spill's replay
    /// keeping a call in flight at all times would hold live records until
    /// their deadline. Only sequences write it: `/import`'s path reads it.
    sequence_calls: AtomicUsize,
}

impl Dispatcher {
    async fn run(self: Arc<Self>, mut waiting: mpsc::Receiver<Pending>) {
        let this = self;
        let max_records = this.config.max_records.get();
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
            // While a call is in flight, records gather for the next call;
            // another call starts alongside only when a full batch is waiting
            // and the limit allows one more.
            // The limit's lock is taken once per step: when the call starts
            // it also hands back the figures the batch needs.
            //
            // Gathering stops when the oldest record could no longer wait for
            // a call in flight to finish and still be answered in time (two
            // round trips before its deadline): it then takes a free slot,
            // full batch or not, rather than miss its deadline unsent.
            let (expected, current) = loop {
                let (started, urgent_at) = {
                    let mut limit = this.limit();
                    let expected = limit.mean_rtt().unwrap_or_default();
                    let urgent_at = first
                        .waiter
                        .deadline
                        .checked_sub(expected * 2)
                        .unwrap_or(first.waiter.deadline);
                    let urgent = Instant::now() >= urgent_at;
                    let own = limit.in_flight() > this.sequence_calls.load(Ordering::Acquire);
                    let gather = own && waiting.len() + 1 < max_records && !urgent;
                    let started = (!gather && limit.try_start()).then(|| (expected, limit.current()));
                    (started, (!urgent).then_some(urgent_at))
                };
                if let Some(figures) = started {
                    break figures;
                }
                match urgent_at {
                    Some(at) => {
                        tokio::select! {
                            () = this.finished.notified() => {}
                            () = tokio::time::sleep_until(at) => {}
                        }
                    }
                    None => this.finished.notified().await,
                }
            };
            // Records and their waiters in two lists from the start: the call
            // needs the records as one slice, and nothing is rebuilt per call.
            let mut bytes = first.record.size();
            let mut records = Vec::with_capacity(waiting.len().min(max_records - 1) + 1);
            let mut waiters = Vec::with_capacity(records.capacity());
            records.push(first.record);
            waiters.push(first.waiter);
            while records.len() < max_records {
                let Ok(next) = waiting.try_recv() else { break };
                if bytes + next.record.size() > this.config.max_bytes.get() {
                    carried = Some(next);
                    break;
                }
                bytes += next.record.size();
                records.push(next.record);
                waiters.push(next.waiter);
            }
            // A record that would be answered after its deadline is not
            // sent: the client hears 503 and retries, and a late success
            // would store the event twice.
            let cutoff = Instant::now() + expected;
            if waiters.iter().any(|w| w.deadline <= cutoff) {
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
                    let _ = waiter.reply.send(Err(SinkError::Unavailable(
                        "the stream would not answer before the record deadline".into(),
                    )));
                }
                (records, waiters) = (kept_records, kept_waiters);
                this.metrics.records_not_sent_late(late);
                this.limit().deadline_missed(Instant::now());
            }
            if records.is_empty() {
                this.release();
                continue;
            }
            this.metrics.concurrency_limit(current);
            let this = this.clone();
            tokio::spawn(async move {
                this.call(records, waiters).await;
                this.release();
            });
        }
    }

    /// Frees a call's slot and wakes whoever waits for one.
    fn release(&self) {
        self.limit().release();
        self.wake();
    }

    /// Wakes whoever waits for a slot.
    fn wake(&self) {
        self.finished.notify_one();
        if self.sequences_waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// One call of `records` alone, once the limit has a slot for it; every
    /// record is answered, by `deadline` at the latest.
    async fn call_alone(self: Arc<Self>, records: Vec<Record>, deadline: Instant) -> Outcomes {
        let count = records.len();
        let waiting = Waiting::count(&self.sequences_waiting);
        let started = loop {
            // Registered before the look at the limit, so a call that ends
            // in between still wakes this loop.
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            let started = {
                let mut limit = self.limit();
                // Counted under the lock the dispatcher reads both under.
                let started = limit.try_start();
                if started {
                    self.sequence_calls.fetch_add(1, Ordering::AcqRel);
                }
                started.then(|| limit.current())
            };
            if let Some(current) = started {
                break Some(current);
            }
            if timeout_at(deadline, freed).await.is_err() {
                break None;
            }
        };
        drop(waiting);
        let Some(current) = started else {
            let err = SinkError::Unavailable("no call could start before the record deadline".into());
            return vec![Err(err); count];
        };
        self.metrics.concurrency_limit(current);
        let (waiters, answers): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| {
                let (reply, answer) = oneshot::channel();
                (Waiter { deadline, reply }, answer)
            })
            .unzip();
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
        let mut outcomes = Vec::with_capacity(count);
        for answer in answers {
            let dropped = || Err(SinkError::Unavailable("the writer dropped the record".into()));
            outcomes.push(answer.await.unwrap_or_else(|_| dropped()));
        }
        outcomes
    }

    fn limit(&self) -> std::sync::MutexGuard<'_, Limit> {
        // A panic while holding the lock leaves only numbers behind: keep going.
        self.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One batch: a call, then retries of the entries that failed alone.
    async fn call(&self, mut records: Vec<Record>, mut waiters: Vec<Waiter>) {
        for attempt in 1.. {
            let latest = waiters
                .iter()
                .map(|w| w.deadline)
                .max()
                .expect("a batch is never empty");
            let earliest = waiters
                .iter()
                .map(|w| w.deadline)
                .min()
                .expect("a batch is never empty");
            let started = std::time::Instant::now();
            let result = {
                let _in_flight = GaugeGuard::inc(self.metrics.upstream_in_flight());
                timeout_at(latest, self.sink.put_batch(&records))
                    .await
                    .unwrap_or_else(|_| Err(in_flight_past_deadline()))
            };
            // A call that failed once its first record's deadline had come
            // ran into the deadline (the writer's or the client library's).
            let timed_out = result.is_err() && Instant::now() >= earliest;
            let took = started.elapsed();
            let operation = self.sink.operation(true);
            self.metrics.upstream_call(operation, result.as_ref().err(), took);
            self.metrics.batch_sent(records.len());
            let signal = if timed_out { Signal::Timeout } else { signal(&result) };
            self.limit().observe(took, signal, Instant::now());
            let outcomes = match result {
                Ok(outcomes) if outcomes.len() == records.len() => outcomes,
                Ok(outcomes) => {
                    let detail = format!(
                        "the sink answered {} outcomes for {} records",
                        outcomes.len(),
                        records.len()
                    );
                    vec![Err(SinkError::Unavailable(detail)); records.len()]
                }
                // The client library already retried the whole call: every
                // record shares its fate.
                Err(err) => {
                    for waiter in waiters {
                        let _ = waiter.reply.send(Err(err.clone()));
                    }
                    return;
                }
            };
            let delay = backoff(attempt);
            let retry_at = Instant::now() + delay;
            let (mut again_records, mut again_waiters) = (Vec::new(), Vec::new());
            for ((record, waiter), outcome) in records.into_iter().zip(waiters).zip(outcomes) {
                if let Err(err) = &outcome {
                    self.metrics.record_failed(err);
                }
                match outcome {
                    Err(err) if err.is_transient() && attempt < self.max_attempts && retry_at < waiter.deadline => {
                        again_records.push(record);
                        again_waiters.push(waiter);
                    }
                    outcome => {
                        let _ = waiter.reply.send(outcome);
                    }
                }
            }
            if again_records.is_empty() {
                return;
            }
            self.metrics.records_retried(again_records.len());
            tracing::debug!(
                records = again_records.len(),
                attempt,
                ?delay,
                "retrying entries that failed alone"
            );
            sleep(delay).await;
            (records, waiters) = (again_records, again_waiters);
        }
    }
}

/// What a call's result says to the concurrency limit: a failed or
/// abandoned call, or throttled entries, are the stream pushing back.
fn signal(result: &Result<Outcomes, SinkError>) -> Signal {
    match result {
        Err(err) if err.is_transient() => Signal::BackPressure,
        Ok(outcomes)
            if outcomes
                .iter()
                .any(|o| o.as_ref().is_err_and(|e| e.meaning().back_pressure)) =>
        {
            Signal::BackPressure
        }
        _ => Signal::Answered,
    }
}

/// The longest delay before retry `attempt` (1-based): base * 2^(attempt-1), capped.
fn backoff_ceiling(attempt: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRY_CAP)
}

/// "Full jitter" exponential backoff: a random delay up to the ceiling.
fn backoff(attempt: u32) -> Duration {
    backoff_ceiling(attempt).mul_f64(fastrand::f64())
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

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::sink::Destination;

    #[test]
    fn backoff_ceilings_double_then_cap() {
        let ceilings: Vec<u64> = (1..=7).map(|a| backoff_ceiling(a).as_millis() as u64).collect();
        assert_eq!(ceilings, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_ceiling(40), RETRY_CAP);
    }

    #[test]
    fn backoff_is_jittered_over_the_whole_range() {
        let delays: Vec<Duration> = (0..2000).map(|_| backoff(3)).collect();
        assert!(delays.iter().all(|d| *d <= backoff_ceiling(3)));
        // Full jitter: both halves of [0, 200 ms] are used.
        assert!(delays.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(100)));
    }

    /// What the fake sink does with each call.
    #[derive(Debug, Clone, Copy)]
    enum Behaviour {
        /// Answers after `delay`; keys starting `throttle-once` fail their first time.
        Answer { delay: Duration },
        /// Never answers.
        Hang,
    }

    #[derive(Debug)]
    struct FakeSink {
        behaviour: Behaviour,
        calls: AtomicUsize,
        seen: Mutex<Vec<String>>,
        /// Each call's keys, in the order the calls started.
        batches: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl Sink for FakeSink {
        async fn put_batch(&self, records: &[Record]) -> Result<Outcomes, SinkError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<String> = records.iter().map(|r| r.partition_key.clone()).collect();
            self.batches.lock().unwrap().push(keys.clone());
            let delay = match self.behaviour {
                Behaviour::Answer { delay } => delay,
                Behaviour::Hang => Duration::from_secs(3600),
            };
            sleep(delay).await;
            if keys.iter().any(|k| k.starts_with("down")) {
                return Err(SinkError::Unavailable("the stream is down".into()));
            }
            let mut seen = self.seen.lock().unwrap();
            Ok(records
                .iter()
                .map(|r| {
                    let first_time = !seen.contains(&r.partition_key);
                    seen.push(r.partition_key.clone());
                    if r.partition_key.starts_with("throttle-once") && first_time {
                        Err(SinkError::Throttled("slow down".into()))
                    } else {
                        Ok(Receipt::new("shard").with("Position", seen.len()))
                    }
                })
                .collect())
        }

        async fn describe(&self) -> Result<Destination, SinkError> {
            unreachable!("the writer never describes")
        }

        fn deadlines(&self) -> Deadlines {
            Deadlines {
                record_timeout: Duration::from_secs(1),
                max_attempts: 3,
            }
        }

        fn limits(&self) -> crate::sink::SinkLimits {
            crate::sink::kinesis::LIMITS
        }

        fn operation(&self, _batch: bool) -> &'static str {
            "Fake"
        }

        fn kind(&self) -> &'static str {
            "fake"
        }

        fn target(&self) -> String {
            "fake".into()
        }
    }

    fn writer(behaviour: Behaviour, max_calls: usize) -> (Writer, Arc<FakeSink>, Arc<Metrics>) {
        writer_with(behaviour, max_calls, 500)
    }

    fn writer_with(
        behaviour: Behaviour,
        max_calls: usize,
        max_records: usize,
    ) -> (Writer, Arc<FakeSink>, Arc<Metrics>) {
        let sink = Arc::new(FakeSink {
            behaviour,
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            batches: Mutex::new(Vec::new()),
        });
        let metrics = Arc::new(Metrics::new());
        let config = crate::config::BatchConfig {
            max_concurrent_calls: NonZeroUsize::new(max_calls).unwrap(),
            max_records: NonZeroUsize::new(max_records).unwrap(),
            ..Default::default()
        };
        (Writer::new(sink.clone(), metrics.clone(), config), sink, metrics)
    }

    fn record(key: &str) -> Record {
        Record {
            data: Bytes::from_static(b"{}"),
            partition_key: key.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_still_in_flight_at_the_deadline_is_answered_unavailable() {
        let (writer, sink, _) = writer(Behaviour::Hang, 4);
        let started = Instant::now();
        let outcomes = writer.put(vec![record("a"), record("b")]).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "answered at the record deadline"
        );
        assert!(
            outcomes.iter().all(|o| matches!(o, Err(SinkError::Unavailable(_)))),
            "{outcomes:?}"
        );
        assert_eq!(sink.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn records_that_wait_past_their_deadline_are_never_sent() {
        // One call at a time, and the first takes longer than a record may wait.
        let (writer, sink, _) = writer(
            Behaviour::Answer {
                delay: Duration::from_millis(1500),
            },
            1,
        );
        let writer = Arc::new(writer);
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.put(vec![record("first")]).await }
        });
        // Let the first call start before the second record queues behind it.
        while sink.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let second = writer.put(vec![record("second")]).await;
        assert!(matches!(&second[0], Err(SinkError::Unavailable(_))), "{second:?}");
        assert!(matches!(&first.await.unwrap()[0], Err(SinkError::Unavailable(_))));
        // The dispatcher drops the expired record when the slot frees up.
        sleep(Duration::from_secs(2)).await;
        assert_eq!(
            sink.calls.load(Ordering::SeqCst),
            1,
            "the expired record was not sent late"
        );
        assert!(
            sink.seen.lock().unwrap().is_empty(),
            "the first call was abandoned at its deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_that_fail_alone_are_retried_and_counted() {
        let (writer, sink, metrics) = writer(
            Behaviour::Answer {
                delay: Duration::from_millis(5),
            },
            4,
        );
        let outcomes = writer
            .put(vec![record("ok"), record("throttle-once-1"), record("throttle-once-2")])
            .await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(
            sink.calls.load(Ordering::SeqCst),
            2,
            "one call, then one retry of the two"
        );
        let text = metrics.render();
        assert!(text.contains("upstream_record_retries_total 2\n"), "{text}");
        assert!(
            text.contains("upstream_failed_records_total{error=\"throttled\"} 2\n"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_the_whole_request() {
        let sink = Arc::new(FakeSink {
            behaviour: Behaviour::Hang,
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            batches: Mutex::new(Vec::new()),
        });
        let config = crate::config::BatchConfig {
            queue_capacity: NonZeroUsize::new(3).unwrap(),
            ..Default::default()
        };
        let writer = Writer::new(sink.clone(), Arc::new(Metrics::new()), config);
        let outcomes = writer.put((0..4).map(|i| record(&i.to_string())).collect()).await;
        assert!(
            outcomes.iter().all(|o| matches!(o, Err(SinkError::Overloaded(_)))),
            "{outcomes:?}"
        );
        tokio::task::yield_now().await;
        assert_eq!(
            sink.calls.load(Ordering::SeqCst),
            0,
            "nothing of the request was queued"
        );
    }

    fn keys(records: &[&str]) -> Vec<Record> {
        records.iter().map(|k| record(k)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_sequence_goes_in_calls_of_its_own_and_stops_at_the_first_failed_call() {
        let (writer, sink, _) = writer_with(
            Behaviour::Answer {
                delay: Duration::from_millis(5),
            },
            8,
            2,
        );
        let writer = Arc::new(writer);
        // Live records queue while the sequence runs: they never share its calls.
        let live = tokio::spawn({
            let writer = writer.clone();
            async move { writer.put(keys(&["live-1", "live-2", "live-3"])).await }
        });
        let outcomes = writer.put_in_order(keys(&["a", "b", "down", "c", "d"])).await;
        assert!(live.await.unwrap().iter().all(Result::is_ok));
        let kinds: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
        assert_eq!(kinds, [true, true, false, false, false], "{outcomes:?}");
        let batches = sink.batches.lock().unwrap().clone();
        let sequence: Vec<&Vec<String>> = batches.iter().filter(|b| !b[0].starts_with("live")).collect();
        assert_eq!(
            sequence,
            [
                &vec!["a".to_string(), "b".into()],
                &vec!["down".to_string(), "c".into()]
            ],
            "one call at a time, and \"d\" is never sent after the failed call"
        );
        assert!(
            batches
                .iter()
                .all(|b| b.iter().all(|k| k.starts_with("live")) || b.iter().all(|k| !k.starts_with("live"))),
            "{batches:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sequence_dropped_while_it_waits_for_a_slot_is_no_longer_counted() {
        let (writer, sink, _) = writer(Behaviour::Hang, 1);
        let writer = Arc::new(writer);
        // A live call takes the only slot and never ends.
        let live = tokio::spawn({
            let writer = writer.clone();
            async move { writer.put(keys(&["live"])).await }
        });
        while sink.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let dispatcher = writer.dispatcher.clone().unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(50), writer.put_in_order(keys(&["replayed"]))).await;
        assert!(waited.is_err(), "no slot was free, so the sequence was still waiting");
        assert_eq!(dispatcher.sequences_waiting.load(Ordering::Acquire), 0);
        live.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn live_records_do_not_wait_behind_a_sequence_in_flight() {
        let (writer, sink, _) = writer(
            Behaviour::Answer {
                delay: Duration::from_millis(300),
            },
            8,
        );
        let writer = Arc::new(writer);
        let sequence = tokio::spawn({
            let writer = writer.clone();
            async move { writer.put_in_order(keys(&["replayed"])).await }
        });
        while sink.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let live = writer.put(keys(&["live"])).await;
        assert!(live[0].is_ok(), "{live:?}");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(300),
            "the live record went out at once, beside the sequence's call"
        );
        assert!(sequence.await.unwrap()[0].is_ok());
    }
}
