//! The writer's behaviour against a fake sink that answers late, hangs,
//! throttles entries once or fails whole calls: deadlines, retries,
//! admission and ordered sequences.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::{Duration, Instant, sleep};

use super::*;
use crate::sink::{Destination, Receipt};

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
    /// Says it batches itself, as Kafka's sink does.
    batches_itself: bool,
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

    fn batches_itself(&self) -> bool {
        self.batches_itself
    }
}

fn writer(behaviour: Behaviour, max_calls: usize) -> (Writer, Arc<FakeSink>, Arc<Metrics>) {
    writer_with(behaviour, max_calls, 500)
}

fn writer_with(behaviour: Behaviour, max_calls: usize, max_records: usize) -> (Writer, Arc<FakeSink>, Arc<Metrics>) {
    writer_of(behaviour, max_calls, max_records, false)
}

fn writer_of(
    behaviour: Behaviour,
    max_calls: usize,
    max_records: usize,
    batches_itself: bool,
) -> (Writer, Arc<FakeSink>, Arc<Metrics>) {
    let sink = Arc::new(FakeSink {
        behaviour,
        calls: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
        batches: Mutex::new(Vec::new()),
        batches_itself,
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
        batches_itself: false,
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

#[tokio::test(start_paused = true)]
async fn a_sink_that_batches_itself_gets_each_request_in_one_call_of_its_own() {
    let answer = Behaviour::Answer {
        delay: Duration::from_millis(100),
    };
    let (writer, sink, _) = writer_of(answer, 1, 500, true);
    // Two requests at once, with one call allowed in flight: nothing gathers
    // them, nothing makes the second wait for the first.
    let started = Instant::now();
    let (a, b) = tokio::join!(
        writer.put(vec![record("a1"), record("a2")]),
        writer.put(vec![record("b1")])
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "one call's time, not two"
    );
    assert!(a.iter().chain(&b).all(Result::is_ok), "{a:?} {b:?}");
    let mut batches = sink.batches.lock().unwrap().clone();
    batches.sort();
    assert_eq!(batches, [vec!["a1", "a2"], vec!["b1"]]);

    // The record deadline still holds.
    let (writer, _, _) = writer_of(Behaviour::Hang, 1, 500, true);
    let started = Instant::now();
    let outcomes = writer.put(vec![record("c")]).await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(matches!(outcomes[0], Err(SinkError::Unavailable(_))), "{outcomes:?}");
}
