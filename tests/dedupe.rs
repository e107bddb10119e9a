//! Each event once, over HTTP, read back from a real Kinesis emulator
//! (in-process `ferrokinesis`, or `KINESIS_TEST_ENDPOINT`): a Segment batch
//! sent three times, a repeated id inside one batch, one id under two write
//! keys, PostHog's `uuid`, Snowplow's `eid` and `/import`'s
//! `Idempotency-Key` each sent twice, one event sent 20 times at once, and
//! a spilled event's retry. Two gateways sharing `redis-server` and Redis
//! killed mid-run are `suites/dedupe` (real processes).

mod common;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use clickstream_gateway::config::{Config, DedupeConfig, SpillConfig};
use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::http;
use common::{Emulator, TestServer, kinesis_config, sdk_config, test_config};
use hyper::StatusCode;

fn dedupe_config() -> Config {
    Config {
        dedupe: DedupeConfig {
            window: Some(Duration::from_secs(600)),
            ..DedupeConfig::default()
        },
        ..test_config()
    }
}

/// How many records of the stream carry each value of `field`.
fn count_by(records: &[common::StoredRecord], field: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        let event: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
        let value = match &event[field] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *counts.entry(value).or_default() += 1;
    }
    counts
}

fn segment_batch(write_key: &str, ids: &[&str]) -> String {
    let events: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"type":"track","event":"e","userId":"u-{id}","messageId":"{id}"}}"#))
        .collect();
    format!(r#"{{"writeKey":"{write_key}","batch":[{}]}}"#, events.join(","))
}

#[tokio::test]
async fn retried_batches_repeated_ids_and_two_sources_store_each_event_once_per_source() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(2).await;
    let server = TestServer::start_with(emulator.sink(&stream), &dedupe_config()).await;
    let url = server.url("/v1/batch");

    // The same batch three times: each event once; every answer the 200 the SDK expects.
    for _ in 0..3 {
        let reply = http::post(&url, segment_batch("wk-1", &["a", "b", "c"])).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.json(), serde_json::json!({"success": true}));
    }
    // Partly new, partly stored, with one id twice inside the batch.
    let reply = http::post(&url, segment_batch("wk-1", &["c", "d", "d", "e"])).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // The same ids under another write key are another source's events.
    let reply = http::post(&url, segment_batch("wk-2", &["a", "b"])).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    let records = emulator.read_all(&stream).await;
    let by_id = count_by(&records, "messageId");
    let want: BTreeMap<String, usize> = [("a", 2), ("b", 2), ("c", 1), ("d", 1), ("e", 1)]
        .map(|(id, n)| (id.to_owned(), n))
        .into();
    assert_eq!(by_id, want);

    let metrics = String::from_utf8(http::get(&server.url("/metrics")).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("dedupe_duplicates_total{route=\"/v1/batch\"} 8"),
        "3 + 3 + 2 duplicates: {}",
        metrics
            .lines()
            .filter(|l| l.contains("dedupe"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn each_door_s_own_id_stores_its_event_once() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let server = TestServer::start_with(emulator.sink(&stream), &dedupe_config()).await;

    let posthog = r#"{"api_key":"phc_1","batch":[{"event":"e","distinct_id":"u","uuid":"0190-ph-1"}]}"#;
    let snowplow = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","eid":"sp-1","aid":"app","tv":"js-3","p":"web"}]}"#;
    let mut import_answers = Vec::new();
    for _ in 0..2 {
        let reply = http::post(&server.url("/batch"), posthog).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let reply = http::post(&server.url("/com.snowplowanalytics.snowplow/tp2"), snowplow).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let reply = http::post_with(
            &server.url("/import"),
            &[("Idempotency-Key", "\"order-1\"")],
            r#"{"order":1}"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        import_answers.push(reply.json());
    }
    assert_eq!(
        import_answers[0], import_answers[1],
        "a retry gets the first answer, receipt and all"
    );
    assert!(import_answers[0]["SequenceNumber"].is_string());

    // Another key is another event; an id over the limit is refused like
    // any oversized field.
    let reply = http::post_with(
        &server.url("/import"),
        &[("Idempotency-Key", "order-2")],
        r#"{"order":2}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let long = "k".repeat(201);
    let reply = http::post_with(&server.url("/import"), &[("Idempotency-Key", &long)], r#"{"order":3}"#).await;
    assert_eq!(
        (reply.status, reply.json()["code"].clone()),
        (StatusCode::BAD_REQUEST, "field_too_long".into())
    );

    let records = emulator.read_all(&stream).await;
    let events: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.data).unwrap())
        .collect();
    let count = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().filter(|e| pred(e)).count();
    assert_eq!(count(&|e| e["uuid"] == "0190-ph-1"), 1, "PostHog uuid");
    assert_eq!(count(&|e| e["eid"] == "sp-1"), 1, "Snowplow eid");
    assert_eq!(count(&|e| e["order"] == 1), 1, "Idempotency-Key");
    assert_eq!(count(&|e| e["order"] == 2), 1);
    assert_eq!(records.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_copies_at_once_store_one_event() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let server = TestServer::start_with(emulator.sink(&stream), &dedupe_config()).await;
    let url = server.url("/v1/batch");
    let body = segment_batch("wk", &["once"]);
    let copies: Vec<_> = (0..20)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { http::post(&url, body).await })
        })
        .collect();
    for copy in copies {
        let reply = copy.await.unwrap();
        let retryable = reply.status == StatusCode::SERVICE_UNAVAILABLE && reply.headers.contains_key("retry-after");
        assert!(
            reply.status == StatusCode::OK || retryable,
            "{:?} {:?}",
            reply.status,
            reply.body
        );
    }
    let records = emulator.read_all(&stream).await;
    assert_eq!(count_by(&records, "messageId").get("once"), Some(&1), "exactly once");
    assert_eq!(records.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilled_event_counts_as_stored_and_its_retry_is_recognised() {
    let upstream = FaultUpstream::start(Mode::InternalError).await;
    let dir = std::env::temp_dir().join(format!("dedupe-spill-{}", uuid::Uuid::new_v4()));
    let config = Config {
        spill: Some(SpillConfig {
            lanes: std::num::NonZeroUsize::new(1).unwrap(),
            ..SpillConfig::in_dir(&dir)
        }),
        ..dedupe_config()
    };
    let mut kinesis = kinesis_config("fake");
    kinesis.operation_timeout = Duration::from_millis(1500);
    kinesis.max_attempts = NonZeroU32::new(1).unwrap();
    let sdk = sdk_config(&upstream.endpoint()).await;
    let server = TestServer::start_with(KinesisSink::new(&sdk, &kinesis), &config).await;
    let url = server.url("/import");
    let send = || http::post_with(&url, &[("Idempotency-Key", "spilled-1")], r#"{"n":1}"#);

    let first = send().await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    assert_eq!(first.json(), serde_json::json!({"Spilled": true}));
    let retry = send().await;
    assert_eq!(
        retry.status,
        StatusCode::ACCEPTED,
        "answered as the first: {:?}",
        retry.body
    );
    assert_eq!(retry.json(), serde_json::json!({"Spilled": true}));

    upstream.set(Mode::Healthy);
    common::eventually("the spill is replayed", Duration::from_secs(30), || async {
        !upstream.stored().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send().await.status, StatusCode::ACCEPTED, "still the first answer");
    assert_eq!(upstream.stored().len(), 1, "in the stream once");
    let _ = std::fs::remove_dir_all(&dir);
}
