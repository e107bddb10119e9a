//! The writer: every record on its way to the sink goes through here, so
//! batching, per-record retries and deadlines live in one place.
//!
//! One concept per file:
//! - here: the [`Writer`] handle, and admission: a request's records enter
//!   the queue all together or not at all ([`Writer::put`]);
//! - `dispatch.rs`: the dispatcher, which gathers waiting records into
//!   calls within the adaptive limit on calls in flight, and drops records
//!   that would be answered late;
//! - `call.rs`: one call, then retries of the entries that failed alone,
//!   with jittered exponential backoff;
//! - `sequence.rs`: ordered sequences for the spill's replay
//!   ([`Writer::put_in_order`]), in calls of their own;
//! - `direct.rs`: the unbatched path (`BATCH_ENABLED=false`);
//! - `reply.rs`: where a request's outcomes go, a slot per record.
//!
//! With batching on (the default), concurrent records share one
//! [`Sink::put_batch`] call and each still gets its own outcome. There is no
//! linger timer. When no call is in flight, the first waiting record goes out
//! at once with every other record already waiting, up to the call's limits
//! (`BATCH_MAX_RECORDS`, `BATCH_MAX_BYTES`): at low load latency equals one
//! call. While one of its calls is in flight, arriving records gather for
//! the next call, which starts when a call finishes; a further call starts
//! alongside only when a full batch is already waiting and the limit on
//! calls in flight allows ([`crate::concurrency`]: adaptive, from 1 to
//! `BATCH_MAX_CONCURRENT_CALLS`, driven by the stream's latency and
//! back-pressure). So calls per record fall as load rises, concurrency grows
//! only when one call at a time cannot keep up, and a stream that slows down
//! gets fewer calls at once. A request with more records than one call
//! takes is split across calls.
//!
//! A sink whose client batches itself (Kafka: librdkafka lingers and
//! batches per partition) gets each request's records straight, in one
//! call ([`Writer::put_through`]): gathering them here first made every
//! record wait for two batching layers in series.
//!
//! Deadlines: a record gets [`Deadlines::record_timeout`] from arrival to
//! its answer. One whose deadline passes while queued is refused, never sent
//! late, and neither is one that the stream's recent round trip says would
//! be answered after it; a call still in flight at the latest deadline of
//! its records is abandoned, and a waiting request is answered at its
//! deadline whatever the call is doing. Nothing here resends a call that may
//! still succeed: a call is tried again only when the stream answered it
//! with an error.

mod call;
mod direct;
mod dispatch;
mod reply;
mod sequence;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, timeout_at};

use crate::concurrency::Limit;
use crate::config::BatchConfig;
use crate::metrics::{GaugeGuard, Metrics};
use crate::sink::{Deadlines, Outcomes, Record, Sink, SinkError};
use reply::{Replies, Reply};

/// Calls in flight the adaptive limit starts with.
const INITIAL_CALLS: usize = 16;

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
    /// The sink batches itself (Kafka): each request's records go straight
    /// to it in one call ([`Writer::put_through`]); the dispatcher serves
    /// only sequences (the spill's replay).
    through: bool,
}

/// A record waiting for its call, and where its outcome goes.
struct Pending {
    record: Record,
    waiter: Waiter,
}

/// Where one record's outcome goes, and by when.
struct Waiter {
    deadline: Instant,
    reply: Reply,
}

/// Forms batches from waiting records and starts a call for each, within
/// the adaptive limit on calls in flight (`dispatch.rs`); makes the calls
/// (`call.rs`) and the calls of ordered sequences (`sequence.rs`).
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
            through: config.enabled && sink.batches_itself(),
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
        if self.through {
            return self.put_through(records, deadline).await;
        }
        match &self.queue {
            Some(queue) => self.put_batched(queue, records, deadline).await,
            None => self.put_direct(records, deadline).await,
        }
    }

    /// Admission: all of `records` enter the queue, or none does.
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
        let (replies, each) = Replies::new(count);
        for ((permit, record), reply) in permits.zip(records).zip(each) {
            permit.send(Pending {
                record,
                waiter: Waiter { deadline, reply },
            });
        }
        replies.outcomes().await
    }
}

/// The outcome of a call abandoned at its records' deadline.
fn in_flight_past_deadline() -> SinkError {
    SinkError::Unavailable("the call was still in flight at the record deadline".into())
}

/// One [`Sink::put_batch`] call of `records`, abandoned at `until`, counted
/// in the calls-in-flight gauge and the call metrics: the sink's result as
/// it answered, and how long the call took. Both paths that send batches
/// (the dispatcher's calls and [`Writer::put_through`]) make it this way.
async fn measured_call(
    sink: &dyn Sink,
    metrics: &Metrics,
    records: &[Record],
    until: Instant,
) -> (Result<Outcomes, SinkError>, std::time::Duration) {
    let started = std::time::Instant::now();
    let result = {
        let _in_flight = GaugeGuard::inc(metrics.upstream_in_flight());
        timeout_at(until, sink.put_batch(records))
            .await
            .unwrap_or_else(|_| Err(in_flight_past_deadline()))
    };
    let took = started.elapsed();
    metrics.upstream_call(sink.operation(true), result.as_ref().err(), took);
    (result, took)
}

/// A call's result with one outcome per record sent: a sink that answered
/// another number of outcomes fails every record rather than guess.
fn one_per_record(result: Result<Outcomes, SinkError>, sent: usize) -> Result<Outcomes, SinkError> {
    match result {
        Ok(outcomes) if outcomes.len() != sent => {
            let detail = format!("the sink answered {} outcomes for {sent} records", outcomes.len());
            Ok(vec![Err(SinkError::Unavailable(detail)); sent])
        }
        other => other,
    }
}
