//! The batching writer against a Kinesis-protocol fake that logs every call:
//! limits per call, entries that fail alone, shedding, and batching off.

mod common;

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use clickstream_gateway::config::Config;
use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::{TestServer, http, kinesis_config, sdk_config, test_config};
use hyper::StatusCode;

async fn gateway(upstream: &FaultUpstream, config: &Config) -> TestServer {
    let mut kinesis = kinesis_config("fake");
    kinesis.max_attempts = NonZeroU32::new(3).unwrap();
    let sdk = sdk_config(&upstream.endpoint()).await;
    TestServer::start_with(KinesisSink::new(&sdk, &kinesis), config).await
}

/// Sends one request per (key, body) at once; returns the statuses in order.
async fn send_all(server: &TestServer, requests: Vec<(String, Vec<u8>)>) -> Vec<http::Reply> {
    let client = http::client();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(key, body)| {
            let (client, url) = (client.clone(), server.url("/import"));
            tokio::spawn(async move {
                let request = hyper::Request::post(url)
                    .header("X-Partition-Key", key)
                    .body(http_body_util::Full::from(body))
                    .unwrap();
                http::send_with(&client, request).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn count(replies: &[http::Reply], status: StatusCode) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

#[tokio::test]
async fn calls_respect_the_500_record_limit_and_records_gather_while_a_call_is_in_flight() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.batch.max_concurrent_calls = NonZeroUsize::new(1).unwrap();
    let server = gateway(&upstream, &config).await;
    upstream.set(Mode::Slow(Duration::from_millis(300)));

    let replies = send_all(&server, (0..1001).map(|i| (format!("k{i}"), b"{}".to_vec())).collect()).await;
    assert_eq!(count(&replies, StatusCode::OK), 1001);

    let writes = upstream.writes();
    assert!(
        writes.iter().all(|c| c.operation == "PutRecords" && c.records <= 500),
        "{writes:?}"
    );
    assert_eq!(writes.iter().map(|c| c.records).sum::<usize>(), 1001);
    assert!(
        writes.iter().any(|c| c.records > 1),
        "records must share calls: {writes:?}"
    );
    // Each request got its own receipt.
    let mut sequences: Vec<_> = replies.iter().map(|r| r.json()["SequenceNumber"].to_string()).collect();
    sequences.sort();
    sequences.dedup();
    assert_eq!(sequences.len(), 1001);
}

#[tokio::test]
async fn calls_respect_the_byte_limit() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.batch.max_concurrent_calls = NonZeroUsize::new(1).unwrap();
    config.batch.max_bytes = NonZeroUsize::new(8 * 1024).unwrap();
    let server = gateway(&upstream, &config).await;
    upstream.set(Mode::Slow(Duration::from_millis(200)));

    let replies = send_all(
        &server,
        (0..60).map(|i| (format!("key-{i:03}"), vec![b'x'; 1000])).collect(),
    )
    .await;
    assert_eq!(count(&replies, StatusCode::OK), 60);
    let writes = upstream.writes();
    assert!(writes.iter().all(|c| c.bytes <= 8 * 1024), "{writes:?}");
    assert!(
        writes.iter().any(|c| c.records == 8),
        "8 records of 1007 bytes fill a call: {writes:?}"
    );
    assert_eq!(writes.iter().map(|c| c.records).sum::<usize>(), 60);
}

#[tokio::test]
async fn entries_that_fail_alone_are_retried_alone() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream, &test_config()).await;

    let mut requests: Vec<_> = (0..20).map(|i| (format!("ok-{i}"), b"fine".to_vec())).collect();
    requests.push(("throttle-once-a".into(), b"second time lucky".to_vec()));
    requests.push(("throttle-always-b".into(), b"never".to_vec()));
    let replies = send_all(&server, requests).await;

    assert!(replies[..21].iter().all(|r| r.status == StatusCode::OK), "{replies:?}");
    let refused = &replies[21];
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.json()["error"], "throttled");

    // 22 first tries, then only the failed entries: 2, then 1 (3 attempts).
    let writes = upstream.writes();
    assert_eq!(
        writes.iter().map(|c| c.records).sum::<usize>(),
        22 + 2 + 1,
        "{writes:?}"
    );
}

#[tokio::test]
async fn a_throttled_call_fails_every_record_in_it() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream, &test_config()).await;
    upstream.set(Mode::Throttle);
    let replies = send_all(&server, (0..10).map(|i| (format!("k{i}"), b"x".to_vec())).collect()).await;
    assert_eq!(count(&replies, StatusCode::SERVICE_UNAVAILABLE), 10);
}

#[tokio::test]
async fn a_full_queue_sheds_at_once_and_loses_nothing_accepted() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.batch.max_concurrent_calls = NonZeroUsize::new(1).unwrap();
    config.batch.queue_capacity = NonZeroUsize::new(5).unwrap();
    let server = gateway(&upstream, &config).await;
    upstream.set(Mode::Slow(Duration::from_millis(300)));

    let replies = send_all(&server, (0..100).map(|i| (format!("k{i}"), b"x".to_vec())).collect()).await;
    let (ok, shed) = (
        count(&replies, StatusCode::OK),
        count(&replies, StatusCode::SERVICE_UNAVAILABLE),
    );
    assert_eq!(ok + shed, 100);
    assert!(shed > 0 && ok > 0, "ok {ok}, shed {shed}");
    assert!(
        replies
            .iter()
            .filter(|r| r.status != StatusCode::OK)
            .all(|r| r.json()["error"] == "overloaded")
    );
    assert_eq!(
        upstream.writes().iter().map(|c| c.records).sum::<usize>(),
        ok,
        "every 200 was written, nothing else"
    );
}

#[tokio::test]
async fn batching_off_sends_one_put_record_per_request() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.batch.enabled = false;
    let server = gateway(&upstream, &config).await;
    let replies = send_all(&server, (0..30).map(|i| (format!("k{i}"), b"x".to_vec())).collect()).await;
    assert_eq!(count(&replies, StatusCode::OK), 30);
    let writes = upstream.writes();
    assert_eq!(writes.len(), 30);
    assert!(
        writes.iter().all(|c| c.operation == "PutRecord" && c.records == 1),
        "{writes:?}"
    );
}

#[tokio::test]
async fn a_batch_with_entries_throttled_past_their_retries_is_503_naming_exactly_those() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.import.key_fields = clickstream_gateway::partition_key::KeyFields::new(vec!["/key".into()]);
    let server = gateway(&upstream, &config).await;

    let keys: Vec<String> = (0..20)
        .map(|i| match i {
            3 | 11 => format!("throttle-always-{i}"),
            7 => format!("throttle-once-{i}"),
            _ => format!("user-{i}"),
        })
        .collect();
    let body = format!(
        "[{}]",
        keys.iter()
            .map(|k| format!(r#"{{"key":"{k}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let reply = http::post(&server.url("/import/batch"), body).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", reply.json());
    assert_eq!(reply.headers["retry-after"], "1");
    let json = reply.json();
    assert_eq!(json["FailedRecordCount"], 2);
    let entries = json["Records"].as_array().unwrap();
    assert_eq!(entries.len(), 20);
    for (i, entry) in entries.iter().enumerate() {
        if i == 3 || i == 11 {
            assert_eq!(entry["ErrorCode"], "throttled", "{i}: {entry}");
            assert!(entry["ErrorMessage"].as_str().unwrap().contains("retry later"));
            assert!(entry.get("SequenceNumber").is_none());
        } else {
            assert!(entry["SequenceNumber"].is_string(), "{i}: {entry}");
        }
    }
    // Every other record stored exactly once (the throttled-once one on its retry).
    let mut stored: Vec<String> = upstream.stored().into_iter().map(|(key, _)| key).collect();
    stored.sort();
    let mut expected: Vec<String> = keys
        .iter()
        .filter(|k| !k.starts_with("throttle-always"))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn under_load_several_calls_run_at_once_and_every_record_is_stored_once() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.batch.max_concurrent_calls = NonZeroUsize::new(4).unwrap();
    let server = gateway(&upstream, &config).await;
    upstream.set(Mode::Slow(Duration::from_millis(150)));

    // 8 requests of 500 records arrive at once: full batches wait, so calls overlap.
    let client = http::client();
    let tasks: Vec<_> = (0..8)
        .map(|r| {
            let (client, url) = (client.clone(), server.url("/import/batch"));
            tokio::spawn(async move {
                let body = format!(
                    "[{}]",
                    (0..500).map(|i| format!("\"{r}-{i}\"")).collect::<Vec<_>>().join(",")
                );
                let request = hyper::Request::post(url)
                    .body(http_body_util::Full::from(body))
                    .unwrap();
                http::send_with(&client, request).await
            })
        })
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    }
    assert!(
        upstream.max_in_flight() > 1,
        "more than one PutRecords at once: {}",
        upstream.max_in_flight()
    );
    assert!(upstream.max_in_flight() <= 4, "never more than the limit");
    let writes = upstream.writes();
    assert!(writes.iter().all(|c| c.records <= 500), "{writes:?}");
    let mut stored: Vec<Vec<u8>> = upstream.stored().into_iter().map(|(_, data)| data).collect();
    assert_eq!(stored.len(), 4000);
    stored.sort();
    stored.dedup();
    assert_eq!(stored.len(), 4000, "no record twice");
}
