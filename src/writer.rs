//! The writer: every record on its way to the sink goes through here, so
//! batching, per-record retries and deadlines live in one place.
//!
//! With batching on (the default), concurrent records share one
//! [`Sink::put_batch`] call and each still gets its own outcome. There is no
//! linger timer. When no call is in flight, the first waiting record goes out
//! at once with every other record already waiting, up to the call's limits
//! (`BATCH_MAX_RECORDS`, `BATCH_MAX_BYTES`): at low load latency equals one
//! call. While a call is in flight, arriving records gather for the next
//! call, which starts when a call finishes; a further call starts alongside
//! (up to `BATCH_MAX_CONCURRENT_CALLS`) only when a full batch is already
//! waiting. So calls per record fall as load rises, and concurrency grows
//! only when one call at a time cannot keep up. A request's records enter the
//! queue all together or not at all, and a request with more records than
//! one call takes is split across calls.
//!
//! Entries that fail alone inside a successful call (throttled, internal
//! failure) are retried on their own, with jittered exponential backoff,
//! while their deadline and the attempt budget allow; the others are answered
//! at once. With batching off, each record is one [`Sink::put_one`] call.
//!
//! Deadlines: a record gets [`Deadlines::record_timeout`] from arrival to
//! its answer. One whose deadline passes while queued is refused, never sent
//! late; a call still in flight at the latest deadline of its records is
//! abandoned, and a waiting request is answered at its deadline whatever the
//! call is doing.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant, sleep, timeout_at};

use crate::config::BatchConfig;
use crate::metrics::{GaugeGuard, Metrics};
use crate::sink::{Deadlines, Outcomes, Receipt, Record, Sink, SinkError};

/// First retry delay for entries that failed alone; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest single retry delay.
const RETRY_CAP: Duration = Duration::from_secs(1);

/// Writes records to the sink; cheap to share, the dispatcher task (when
/// batching) runs until the writer is dropped.
#[derive(Debug)]
pub struct Writer {
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    deadlines: Deadlines,
    /// The dispatcher's queue, when batching is on.
    queue: Option<mpsc::Sender<Pending>>,
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
    pub fn new(sink: Arc<dyn Sink>, metrics: Arc<Metrics>, config: BatchConfig) -> Self {
        let deadlines = sink.deadlines();
        let queue = config.enabled.then(|| {
            let (queue, waiting) = mpsc::channel(config.queue_capacity.get());
            let dispatcher = Dispatcher {
                sink: sink.clone(),
                metrics: metrics.clone(),
                config,
                max_attempts: deadlines.max_attempts,
            };
            tokio::spawn(dispatcher.run(waiting));
            queue
        });
        Writer {
            sink,
            metrics,
            deadlines,
            queue,
        }
    }

    /// The sink behind this writer.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    /// Stores `records` and returns one outcome per record, in order. When
    /// the queue cannot take them all, none is queued and every outcome is
    /// [`SinkError::Overloaded`].
    pub async fn put(&self, records: Vec<Record>) -> Outcomes {
        let deadline = Instant::now() + self.deadlines.record_timeout;
        match &self.queue {
            Some(queue) => self.put_batched(queue, records, deadline).await,
            None => self.put_direct(records, deadline).await,
        }
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
        let mut outcomes = Vec::with_capacity(count);
        for (permit, record) in permits.zip(records) {
            let (reply, outcome) = oneshot::channel();
            permit.send(Pending {
                record,
                waiter: Waiter { deadline, reply },
            });
            outcomes.push(outcome);
        }
        let mut answers = Vec::with_capacity(count);
        for outcome in outcomes {
            answers.push(match timeout_at(deadline, outcome).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(SinkError::Unavailable("the writer dropped the record".into())),
                Err(_) => Err(SinkError::Unavailable(
                    "no answer from the destination within the record deadline".into(),
                )),
            });
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

/// Forms batches from waiting records and starts a call for each.
struct Dispatcher {
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    config: BatchConfig,
    max_attempts: u32,
}

impl Dispatcher {
    async fn run(self, mut waiting: mpsc::Receiver<Pending>) {
        let this = Arc::new(self);
        let max_calls = this.config.max_concurrent_calls.get();
        let max_records = this.config.max_records.get();
        let slots = Arc::new(Semaphore::new(max_calls));
        let finished = Arc::new(Notify::new());
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
            // another call starts alongside only when a full batch is waiting.
            while slots.available_permits() < max_calls && waiting.len() + 1 < max_records {
                finished.notified().await;
            }
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let mut bytes = first.record.size();
            let mut batch = vec![first];
            while batch.len() < max_records {
                let Ok(next) = waiting.try_recv() else { break };
                if bytes + next.record.size() > this.config.max_bytes.get() {
                    carried = Some(next);
                    break;
                }
                bytes += next.record.size();
                batch.push(next);
            }
            let now = Instant::now();
            let (batch, expired): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| p.waiter.deadline > now);
            for pending in expired {
                let _ = pending.waiter.reply.send(Err(SinkError::Unavailable(
                    "waited past its deadline for a call".into(),
                )));
            }
            if batch.is_empty() {
                continue;
            }
            let (this, finished) = (this.clone(), finished.clone());
            tokio::spawn(async move {
                this.call(batch).await;
                drop(slot);
                finished.notify_one();
            });
        }
    }

    /// One batch: a call, then retries of the entries that failed alone.
    async fn call(&self, mut batch: Vec<Pending>) {
        for attempt in 1.. {
            let (records, waiters): (Vec<Record>, Vec<Waiter>) =
                batch.into_iter().map(|p| (p.record, p.waiter)).unzip();
            let latest = waiters
                .iter()
                .map(|w| w.deadline)
                .max()
                .expect("a batch is never empty");
            let started = std::time::Instant::now();
            let result = {
                let _in_flight = GaugeGuard::inc(self.metrics.upstream_in_flight());
                timeout_at(latest, self.sink.put_batch(&records))
                    .await
                    .unwrap_or_else(|_| Err(in_flight_past_deadline()))
            };
            let operation = self.sink.operation(true);
            self.metrics
                .upstream_call(operation, result.as_ref().err(), started.elapsed());
            self.metrics.batch_sent(records.len());
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
            let mut again = Vec::new();
            for ((record, waiter), outcome) in records.into_iter().zip(waiters).zip(outcomes) {
                if let Err(err) = &outcome {
                    self.metrics.record_failed(err);
                }
                match outcome {
                    Err(err) if err.is_transient() && attempt < self.max_attempts && retry_at < waiter.deadline => {
                        again.push(Pending { record, waiter });
                    }
                    outcome => {
                        let _ = waiter.reply.send(outcome);
                    }
                }
            }
            if again.is_empty() {
                return;
            }
            self.metrics.records_retried(again.len());
            tracing::debug!(
                records = again.len(),
                attempt,
                ?delay,
                "retrying entries that failed alone"
            );
            sleep(delay).await;
            batch = again;
        }
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
