//! One call and its retries: a batch goes to the sink in one call, cut off
//! at the latest deadline of its records; entries that fail alone inside a
//! call the stream answered (throttled, an internal failure) are retried on
//! their own, with jittered exponential backoff, while their deadline and
//! the attempt budget allow; the others are answered at once. A call that
//! fails whole was already retried by the client library: every record
//! shares its fate. What each call says about the stream (its round trip,
//! back-pressure, a timeout) feeds the adaptive limit.

use tokio::time::{Duration, Instant, sleep};

use super::{Dispatcher, Waiter, measured_call, one_per_record};
use crate::concurrency::Signal;
use crate::sink::{Outcomes, Record, SinkError};

/// First retry delay for entries that failed alone; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest single retry delay.
const RETRY_CAP: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// One batch: a call, then retries of the entries that failed alone.
    pub(super) async fn call(&self, mut records: Vec<Record>, mut waiters: Vec<Waiter>) {
        for attempt in 1.. {
            let outcomes = match self.attempt(&records, &waiters).await {
                Ok(outcomes) => outcomes,
                Err(err) => {
                    for waiter in waiters {
                        waiter.reply.send(Err(err.clone()));
                    }
                    return;
                }
            };
            let delay = backoff(attempt);
            (records, waiters) = self.answer_or_keep(records, waiters, outcomes, attempt, Instant::now() + delay);
            if records.is_empty() {
                return;
            }
            self.metrics.records_retried(records.len());
            tracing::debug!(
                records = records.len(),
                attempt,
                ?delay,
                "retrying entries that failed alone"
            );
            sleep(delay).await;
        }
    }

    /// One call of `records`, measured and told to the limit: one outcome
    /// per record, or the failure of the whole call.
    async fn attempt(&self, records: &[Record], waiters: &[Waiter]) -> Result<Outcomes, SinkError> {
        let deadlines = waiters.iter().map(|w| w.deadline);
        let latest = deadlines.clone().max().expect("a batch is never empty");
        let earliest = deadlines.min().expect("a batch is never empty");
        let (result, took) = measured_call(self.sink.as_ref(), &self.metrics, records, latest).await;
        // A call that failed once its first record's deadline had come
        // ran into the deadline (the writer's or the client library's).
        let timed_out = result.is_err() && Instant::now() >= earliest;
        self.metrics.batch_sent(records.len());
        let signal = if timed_out { Signal::Timeout } else { signal(&result) };
        self.limit().observe(took, signal, Instant::now());
        one_per_record(result, records.len())
    }

    /// Answers each record whose outcome is final, and hands back the ones
    /// to retry at `retry_at` (transient, within the attempt budget and
    /// their deadline), in order.
    fn answer_or_keep(
        &self,
        records: Vec<Record>,
        waiters: Vec<Waiter>,
        outcomes: Outcomes,
        attempt: u32,
        retry_at: Instant,
    ) -> (Vec<Record>, Vec<Waiter>) {
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
                    waiter.reply.send(outcome);
                }
            }
        }
        (again_records, again_waiters)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
