//! The durable spill with real faults: the upstream (a Kinesis-protocol
//! fake, read back entry by entry) stops and comes back, the spill fills,
//! a segment is corrupted, and the gateway binary is killed with SIGKILL in
//! the middle of a spill under load. Every event that got a 2xx must be in
//! the stream afterwards; nothing answered 503 may be.

mod common;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clickstream_gateway::config::{Config, HotKeyPolicy, QuotaConfig, SpillConfig};
use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::{TestServer, eventually, http, kinesis_config, sdk_config, test_config};
use hyper::StatusCode;

/// A fresh, empty directory for one test's spill.
fn spill_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-spill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One lane, so the tests that look at files find them in one place.
fn spill_config(dir: &Path, max_bytes: u64) -> Config {
    lanes_config(dir, max_bytes, 1, 0)
}

fn lanes_config(dir: &Path, max_bytes: u64, lanes: usize, replay_per_second: u32) -> Config {
    Config {
        spill: Some(SpillConfig {
            max_bytes,
            replay_per_second,
            lanes: std::num::NonZeroUsize::new(lanes).unwrap(),
            ..SpillConfig::in_dir(dir)
        }),
        ..test_config()
    }
}

/// Where a one-lane spill in `dir` keeps its files.
fn lane_dir(dir: &Path) -> PathBuf {
    dir.join("lanes-1").join("lane-0")
}

/// A gateway in front of `upstream` whose Kinesis client gives up quickly.
async fn gateway(upstream: &FaultUpstream, config: &Config) -> TestServer {
    let mut kinesis = kinesis_config("fake");
    kinesis.operation_timeout = Duration::from_millis(2500);
    kinesis.max_attempts = NonZeroU32::new(2).unwrap();
    let sdk = sdk_config(&upstream.endpoint()).await;
    TestServer::start_with(KinesisSink::new(&sdk, &kinesis), config).await
}

/// `(key, seq)` of every entry the upstream stored, in the order stored.
fn stored_events(upstream: &FaultUpstream) -> Vec<(String, u64)> {
    upstream
        .stored()
        .into_iter()
        .map(|(key, data)| {
            let event: serde_json::Value = serde_json::from_slice(&data).expect("a stored event is JSON");
            (key, event["seq"].as_u64().expect("seq"))
        })
        .collect()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_absorbed_then_replayed_once_each_in_order_per_key() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let dir = spill_dir("outage");
    let server = Arc::new(gateway(&upstream, &spill_config(&dir, 64 << 20)).await);
    upstream.halt().await;
    // Five clients, one key each, each sending ten batches of 20 events in turn.
    let mut clients = Vec::new();
    for client in 0..5 {
        let server = server.clone();
        clients.push(tokio::spawn(async move {
            let key = format!("user-{client}");
            let mut statuses = Vec::new();
            for batch in 0..10u64 {
                let events: Vec<String> = (0..20).map(|i| format!(r#"{{"seq":{}}}"#, batch * 20 + i)).collect();
                let body = format!("[{}]", events.join(","));
                let reply = http::post_keyed(&server.url("/import/batch"), &key, body).await;
                if reply.status == StatusCode::ACCEPTED {
                    assert_eq!(reply.json()["SpilledRecordCount"], 20, "{:?}", reply.json());
                }
                statuses.push(reply.status);
            }
            statuses
        }));
    }
    for client in clients {
        let statuses = client.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
            "every batch is durable in the spill: {statuses:?}"
        );
    }
    let ready = http::get(&server.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK, "ready while spilling: {:?}", ready.body);
    let text = http::get(&server.url("/metrics")).await.body;
    let text = String::from_utf8_lossy(&text);
    assert_eq!(metric(&text, "spill_records"), 1000.0);
    assert_eq!(metric(&text, "spill_appended_records_total"), 1000.0);
    assert!(metric(&text, "spill_bytes") > 20_000.0);
    assert!(upstream.stored().is_empty());

    upstream.restart().await;
    eventually("the spill is replayed", Duration::from_secs(30), || async {
        upstream.stored().len() >= 1000
    })
    .await;
    let stored = stored_events(&upstream);
    assert_eq!(stored.len(), 1000, "each event once");
    let mut last: HashMap<String, u64> = HashMap::new();
    for (key, seq) in &stored {
        if let Some(previous) = last.insert(key.clone(), *seq) {
            assert!(*seq > previous, "{key}: {seq} after {previous}");
        }
    }
    // Drained: new events go straight to the stream again (200, a receipt).
    eventually("the spill is empty", Duration::from_secs(10), || async {
        let text = http::get(&server.url("/metrics")).await.body;
        metric(&String::from_utf8_lossy(&text), "spill_records") == 0.0
    })
    .await;
    let reply = http::post(&server.url("/import"), r#"{"seq":5000}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(reply.json()["SequenceNumber"].is_string());
    let text = http::get(&server.url("/metrics")).await.body;
    assert_eq!(
        metric(&String::from_utf8_lossy(&text), "spill_replayed_records_total"),
        1000.0
    );
    assert!(
        std::fs::read_dir(lane_dir(&dir)).unwrap().count() <= 3,
        "replayed segments are deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_answers_503_and_never_a_2xx_it_did_not_keep() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let dir = spill_dir("full");
    // The smallest spill start-up accepts holds one largest record (1 MiB).
    let server = gateway(&upstream, &spill_config(&dir, 1_100_000)).await;
    upstream.halt().await;
    let mut accepted = HashSet::new();
    let mut refused = HashSet::new();
    for seq in 0..60u64 {
        let body = format!(r#"{{"seq":{seq},"pad":"{}"}}"#, "x".repeat(40_000));
        let reply = http::post(&server.url("/import"), body).await;
        match reply.status {
            StatusCode::ACCEPTED => assert!(accepted.insert(seq)),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(reply.headers["retry-after"], "1");
                refused.insert(seq);
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert!(
        (10..30).contains(&accepted.len()),
        "about 1.1 MB of ~40 KB records fit: {}",
        accepted.len()
    );
    assert!(refused.len() > 20);
    let text = http::get(&server.url("/metrics")).await.body;
    assert!(
        metric(
            &String::from_utf8_lossy(&text),
            "spill_append_failures_total{reason=\"full\"}"
        ) >= 1.0
    );
    let ready = http::get(&server.url("/readyz")).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a full spill is not ready"
    );

    // Space comes back as the spill drains.
    upstream.restart().await;
    eventually("the spill drains", Duration::from_secs(30), || async {
        let text = http::get(&server.url("/metrics")).await.body;
        metric(&String::from_utf8_lossy(&text), "spill_records") == 0.0
    })
    .await;
    let stored: HashSet<u64> = stored_events(&upstream).into_iter().map(|(_, seq)| seq).collect();
    assert_eq!(stored, accepted, "exactly the accepted events, none of the refused");
    let reply = http::post(&server.url("/import"), r#"{"seq":999}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // The spill has room again for the next outage.
    upstream.halt().await;
    let reply = http::post(&server.url("/import"), r#"{"seq":1000}"#).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let ready = http::get(&server.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_segment_loses_only_the_bad_records_and_counts_them() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let dir = spill_dir("corrupt");
    let config = spill_config(&dir, 64 << 20);
    let mut first = gateway(&upstream, &config).await;
    upstream.halt().await;
    for seq in 0..100u64 {
        let reply = http::post_keyed(&first.url("/import"), "k", format!(r#"{{"seq":{seq}}}"#)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    first.begin_shutdown().await.unwrap();
    drop(first);
    // Flip bytes in the middle of the segment: a record's data, then a length.
    // The largest segment: should the records span two segments, both flips
    // in a segment of one record would hit one frame (read_dir's order is
    // the file system's). One CI run stored 99 of 100; the cause is not known.
    let segment = std::fs::read_dir(lane_dir(&dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .expect("a segment with records");
    let mut bytes = std::fs::read(&segment).unwrap();
    let (middle, later) = (bytes.len() / 2, bytes.len() * 7 / 10);
    bytes[middle] ^= 0xFF;
    bytes[later] ^= 0xFF;
    std::fs::write(&segment, bytes).unwrap();

    upstream.restart().await;
    let second = gateway(&upstream, &config).await;
    eventually("the rest is replayed", Duration::from_secs(30), || async {
        let text = http::get(&second.url("/metrics")).await.body;
        metric(&String::from_utf8_lossy(&text), "spill_records") == 0.0
    })
    .await;
    let stored: Vec<u64> = stored_events(&upstream).into_iter().map(|(_, seq)| seq).collect();
    assert!(
        (95..=98).contains(&stored.len()),
        "two corrupt stretches lose a record or two each: {} stored: {stored:?}",
        stored.len()
    );
    assert!(stored.windows(2).all(|w| w[0] < w[1]), "in order: {stored:?}");
    let text = http::get(&second.url("/metrics")).await.body;
    assert_eq!(
        metric(&String::from_utf8_lossy(&text), "spill_corrupt_records_total"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_past_the_segments_is_counted_and_every_record_replayed() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let dir = spill_dir("ledger");
    let config = spill_config(&dir, 64 << 20);
    let mut first = gateway(&upstream, &config).await;
    upstream.halt().await;
    for seq in 0..9u64 {
        let reply = http::post_keyed(&first.url("/import"), "k", format!(r#"{{"seq":{seq}}}"#)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    first.begin_shutdown().await.unwrap();
    drop(first);
    // A ledger that claims more was replayed than the segments hold.
    std::fs::write(lane_dir(&dir).join("ledger"), "5 0").unwrap();

    upstream.restart().await;
    let second = gateway(&upstream, &config).await;
    eventually("the spill is replayed", Duration::from_secs(30), || async {
        let text = http::get(&second.url("/metrics")).await.body;
        metric(&String::from_utf8_lossy(&text), "spill_records") == 0.0
    })
    .await;
    // At least once: a replay call of the first process may still land
    // after the stream is back, so a record can arrive twice; first copies
    // in order, and none missing.
    let mut first_copies: Vec<u64> = Vec::new();
    for (_, seq) in stored_events(&upstream) {
        if !first_copies.contains(&seq) {
            first_copies.push(seq);
        }
    }
    assert_eq!(first_copies, (0..9).collect::<Vec<_>>(), "nothing acknowledged is lost");
    let text = http::get(&second.url("/metrics")).await.body;
    assert_eq!(
        metric(&String::from_utf8_lossy(&text), "spill_corrupt_records_total"),
        1.0,
        "the ledger is counted as corruption"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_doors_answer_their_own_200_while_spilling() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let dir = spill_dir("sdk");
    let server = gateway(&upstream, &spill_config(&dir, 64 << 20)).await;
    upstream.halt().await;
    let segment = r#"{"batch":[{"type":"track","event":"a","userId":"u1","properties":{"seq":1}},
        {"type":"track","event":"b","userId":"u1","properties":{"seq":2}}],"writeKey":"wk"}"#;
    let reply = http::post_with(
        &server.url("/v1/batch"),
        &[("Content-Type", "application/json")],
        segment,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json(), serde_json::json!({"success": true}));
    let posthog = r#"{"api_key":"phc","batch":[{"event":"$pageview","distinct_id":"d1","properties":{"seq":3}}]}"#;
    let reply = http::post_with(&server.url("/batch/"), &[("Content-Type", "application/json")], posthog).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json(), serde_json::json!({"status": 1}));
    assert!(upstream.stored().is_empty());

    upstream.restart().await;
    eventually("the SDK events are replayed", Duration::from_secs(30), || async {
        upstream.stored().len() >= 3
    })
    .await;
    let stored = upstream.stored();
    let keys: Vec<&str> = stored.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["u1", "u1", "phc:d1"], "in the order accepted, with their keys");
    let first: serde_json::Value = serde_json::from_slice(&stored[0].1).unwrap();
    assert_eq!(first["event"], "a");
    assert_eq!(first["_gateway"]["protocol"], "segment");
}

/// Two partition keys in different lanes of `lanes`.
fn keys_in_two_lanes(lanes: u32) -> (String, String) {
    let lane = |key: &str| crc32c::crc32c(key.as_bytes()) % lanes;
    let first = "user-0".to_owned();
    let other = (1..)
        .map(|i| format!("user-{i}"))
        .find(|key| lane(key) != lane(&first))
        .unwrap();
    (first, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_keys_of_a_lane_holding_records_wait_behind_them() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let dir = spill_dir("lanes");
    // Replay slowed to 200 records/s per lane, so the spilled lane holds
    // more than its last chunk for seconds after the stream is back (a lane
    // down to its last chunk is waited for instead: `Spill::handed_off`).
    // 1,500 records of one key in a second is a hot key: spreading it
    // (HOT_KEY_POLICY's default) would move most of them to other lanes.
    let config = Config {
        quota: QuotaConfig {
            hot_key_policy: HotKeyPolicy::Off,
            ..QuotaConfig::default()
        },
        ..lanes_config(&dir, 64 << 20, 4, 200)
    };
    let server = gateway(&upstream, &config).await;
    let (spilled, other) = keys_in_two_lanes(4);
    upstream.halt().await;
    for batch in 0..3u64 {
        let events: Vec<String> = (batch * 500..(batch + 1) * 500)
            .map(|seq| format!(r#"{{"seq":{seq}}}"#))
            .collect();
        let body = format!("[{}]", events.join(","));
        let reply = http::post_keyed(&server.url("/import/batch"), &spilled, body).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    upstream.restart().await;
    // The other lane holds nothing: its key goes straight to the stream.
    let reply = http::post_keyed(&server.url("/import"), &other, r#"{"seq":1000}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(reply.json()["SequenceNumber"].is_string());
    // The spilled key's new record goes behind its lane's records.
    let reply = http::post_keyed(&server.url("/import"), &spilled, r#"{"seq":1500}"#).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let text = String::from_utf8_lossy(&http::get(&server.url("/metrics")).await.body).into_owned();
    assert!(metric(&text, "spill_records") > 0.0);
    assert!(
        text.lines()
            .any(|l| l.starts_with("spill_lane_records{lane=\"") && !l.ends_with(" 0")),
        "per-lane gauges: {text}"
    );
    eventually("the lane drains", Duration::from_secs(30), || async {
        let text = http::get(&server.url("/metrics")).await.body;
        metric(&String::from_utf8_lossy(&text), "spill_records") == 0.0
    })
    .await;
    let of_spilled: Vec<u64> = stored_events(&upstream)
        .into_iter()
        .filter(|(key, _)| *key == spilled)
        .map(|(_, seq)| seq)
        .collect();
    assert_eq!(of_spilled, (0..=1500).collect::<Vec<_>>(), "once each, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_written_with_another_lane_count_replays_first_and_keeps_order() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let dir = spill_dir("relane");
    let first = gateway(&upstream, &lanes_config(&dir, 64 << 20, 1, 0)).await;
    let (a, b) = keys_in_two_lanes(4);
    upstream.halt().await;
    for seq in 0..50u64 {
        for key in [&a, &b] {
            let reply = http::post_keyed(&first.url("/import"), key, format!(r#"{{"seq":{seq}}}"#)).await;
            assert_eq!(reply.status, StatusCode::ACCEPTED);
        }
    }
    let mut first = first;
    first.begin_shutdown().await.unwrap();
    drop(first);
    // Restarted with four lanes (the old layout replays slowly: 10/s).
    let second = gateway(&upstream, &lanes_config(&dir, 64 << 20, 4, 10)).await;
    for key in [&a, &b] {
        let reply = http::post_keyed(&second.url("/import"), key, r#"{"seq":50}"#).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "waits behind the old layout");
    }
    upstream.restart().await;
    eventually("everything drains", Duration::from_secs(60), || async {
        let text = http::get(&second.url("/metrics")).await.body;
        metric(&String::from_utf8_lossy(&text), "spill_records") == 0.0
    })
    .await;
    // At least once: the first gateway's replay task lives on in this
    // process and may land a call after the stream is back (a real restart
    // has no such task); first copies in order, none missing.
    let stored = stored_events(&upstream);
    for key in [&a, &b] {
        let mut first_copies: Vec<u64> = Vec::new();
        for (_, seq) in stored.iter().filter(|(k, _)| k == key) {
            if !first_copies.contains(seq) {
                first_copies.push(*seq);
            }
        }
        assert_eq!(
            first_copies,
            (0..=50).collect::<Vec<_>>(),
            "{key}: in order, none missing"
        );
    }
    let reply = http::post_keyed(&second.url("/import"), &a, r#"{"seq":51}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "drained: straight to the stream");
}
