//! Natural batching: concurrent records share one `PutRecords` call, and each
//! request still gets its own receipt.
//!
//! There is no linger timer. When no call is in flight, the first waiting
//! record goes out at once with every other record already waiting, up to the
//! call's limits (500 records, `BATCH_MAX_BYTES`): at low load latency equals
//! one call. While a call is in flight, arriving records gather for the next
//! call, which starts when a call finishes; a further call starts alongside
//! (up to `BATCH_MAX_CONCURRENT_CALLS`) only when a full batch is already
//! waiting. So calls per record fall as load rises, and concurrency grows only
//! when one call at a time cannot keep up.
//!
//! Entries that fail alone inside a successful call (throttled or internal
//! failure) are retried on their own, with jittered exponential backoff, while
//! their deadline allows; the others are answered at once. A record that
//! cannot be queued (the queue is full) or whose deadline passes while queued
//! is refused, never sent late.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::{Duration, Instant, sleep};

use crate::config::BatchConfig;
use crate::metrics::{GaugeGuard, Metrics};
use crate::sink::{Receipt, Record, Sink, SinkError};

/// First retry delay for entries that failed alone; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest single retry delay.
const RETRY_CAP: Duration = Duration::from_secs(1);

/// A record waiting for its call, and where its outcome goes.
struct Pending {
    record: Record,
    deadline: Instant,
    reply: oneshot::Sender<Result<Receipt, SinkError>>,
}

/// The handle requests use; the dispatcher task runs until every handle is dropped.
#[derive(Debug, Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
    record_timeout: Duration,
}

/// Retry policy for entries that fail alone.
#[derive(Debug, Clone, Copy)]
struct Retry {
    max_attempts: u32,
}

impl Batcher {
    /// Starts the dispatcher. A record gets `record_timeout` from arrival to
    /// its answer (queueing and retries included); calls try `max_attempts` times.
    pub fn spawn(
        sink: Arc<Sink>,
        metrics: Arc<Metrics>,
        config: BatchConfig,
        record_timeout: Duration,
        max_attempts: u32,
    ) -> Self {
        let (queue, waiting) = mpsc::channel(config.queue_capacity.get());
        tokio::spawn(dispatch(waiting, sink, metrics, config, Retry { max_attempts }));
        Batcher { queue, record_timeout }
    }

    /// Stores one record through a shared call and returns its own receipt.
    pub async fn put(&self, record: Record) -> Result<Receipt, SinkError> {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            record,
            deadline: Instant::now() + self.record_timeout,
            reply,
        };
        self.queue.try_send(pending).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => SinkError::Overloaded("the write queue is full".into()),
            mpsc::error::TrySendError::Closed(_) => SinkError::Unavailable("the writer has stopped".into()),
        })?;
        outcome
            .await
            .unwrap_or_else(|_| Err(SinkError::Unavailable("the writer dropped the record".into())))
    }
}

/// Forms batches from waiting records and starts a call for each.
async fn dispatch(
    mut waiting: mpsc::Receiver<Pending>,
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    config: BatchConfig,
    retry: Retry,
) {
    let max_calls = config.max_concurrent_calls.get();
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
        // While a call is in flight, records gather for the next call; another
        // call starts alongside only when a full batch is already waiting.
        while slots.available_permits() < max_calls && waiting.len() + 1 < config.max_records.get() {
            finished.notified().await;
        }
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut bytes = first.record.size();
        let mut batch = vec![first];
        while batch.len() < config.max_records.get() {
            let Ok(next) = waiting.try_recv() else { break };
            if bytes + next.record.size() > config.max_bytes.get() {
                carried = Some(next);
                break;
            }
            bytes += next.record.size();
            batch.push(next);
        }
        let now = Instant::now();
        let (batch, expired): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| p.deadline > now);
        for pending in expired {
            let _ = pending.reply.send(Err(SinkError::Unavailable(
                "waited past its deadline for a call".into(),
            )));
        }
        if batch.is_empty() {
            continue;
        }
        let (sink, metrics, finished) = (sink.clone(), metrics.clone(), finished.clone());
        tokio::spawn(async move {
            call(&sink, &metrics, batch, retry).await;
            drop(slot);
            finished.notify_one();
        });
    }
}

/// One batch: a call, then retries of the entries that failed alone.
async fn call(sink: &Sink, metrics: &Metrics, mut batch: Vec<Pending>, retry: Retry) {
    for attempt in 1.. {
        let records: Vec<&Record> = batch.iter().map(|p| &p.record).collect();
        let started = std::time::Instant::now();
        let result = {
            let _in_flight = GaugeGuard::inc(metrics.upstream_in_flight());
            sink.put_many(&records).await
        };
        metrics.upstream_call(sink.put_many_operation(), result.as_ref().err(), started.elapsed());
        metrics.batch_sent(records.len());
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            // The SDK already retried the whole call: every record shares its fate.
            Err(err) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(err.clone()));
                }
                return;
            }
        };
        let delay = backoff(attempt);
        let retry_at = Instant::now() + delay;
        let mut again = Vec::new();
        for (pending, outcome) in batch.into_iter().zip(outcomes) {
            if let Err(err) = &outcome {
                metrics.record_failed(err);
            }
            match outcome {
                Err(SinkError::Throttled(_) | SinkError::Unavailable(_))
                    if attempt < retry.max_attempts && retry_at < pending.deadline =>
                {
                    again.push(pending);
                }
                outcome => {
                    let _ = pending.reply.send(outcome);
                }
            }
        }
        if again.is_empty() {
            return;
        }
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

/// "Full jitter" exponential backoff: a random delay up to base * 2^(attempt-1), capped.
fn backoff(attempt: u32) -> Duration {
    let ceiling = RETRY_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRY_CAP);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..100 {
            assert!(backoff(1) <= RETRY_BASE);
            assert!(backoff(3) <= RETRY_BASE * 4);
            assert!(backoff(30) <= RETRY_CAP);
        }
    }
}
