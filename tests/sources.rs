//! Many sources on one gateway, over HTTP: a source over its allowance is
//! refused whole with 429 and `Retry-After` while another is untouched, a
//! request over the burst is 413, a blocked source 403; and a hot partition
//! key spread over the shards of a real Kinesis emulator (in-process
//! `ferrokinesis`, or `KINESIS_TEST_ENDPOINT`) with every other key on its
//! own shard and in order. Several gateways sharing Redis, Redis killed and
//! the file edited live are `suites/sources` (real processes).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use clickstream_gateway::config::{Allowance, Config, HotKeyPolicy, QuotaConfig};
use clickstream_gateway::sink::file::FileSink;
use common::http;
use common::{Emulator, TestServer, test_config};
use hyper::StatusCode;

fn batch(tag: &str, events: usize) -> String {
    let events: Vec<String> = (0..events).map(|n| format!(r#"{{"tag":"{tag}","n":{n}}}"#)).collect();
    format!("[{}]", events.join(","))
}

#[tokio::test]
async fn a_source_over_its_allowance_is_refused_whole_and_another_is_not() {
    let dir = std::env::temp_dir().join(format!("sources-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sources.toml");
    std::fs::write(&file, "[sources.\"key-blocked\"]\nblocked = true\n").unwrap();
    let mut config = Config {
        quota: QuotaConfig {
            default: Some(Allowance {
                per_second: 1.0,
                burst: 30,
            }),
            sources_file: Some(file),
            ..QuotaConfig::default()
        },
        ..test_config()
    };
    config.access.api_keys = vec!["key-flood".into(), "key-calm".into(), "key-blocked".into()];
    let records = dir.join("records.ndjson");
    let server = TestServer::start_with(FileSink::open(&records).unwrap(), &config).await;
    let post = |key: &'static str, body: String| {
        let url = server.url("/import/batch");
        async move { http::post_with(&url, &[("Authorization", &format!("Bearer {key}"))], body).await }
    };

    assert_eq!(post("key-flood", batch("a", 20)).await.status, StatusCode::OK);
    let refused = post("key-flood", batch("b", 20)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", refused.body);
    assert_eq!(refused.json()["code"], "rate_limited");
    let wait: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // Ten events short at one a second.
    assert!((9..=10).contains(&wait), "Retry-After {wait}");
    assert!(!String::from_utf8_lossy(&refused.body).contains("key-flood"));
    // What fits still goes in; the other source has its own allowance.
    assert_eq!(post("key-flood", batch("c", 10)).await.status, StatusCode::OK);
    assert_eq!(post("key-calm", batch("d", 30)).await.status, StatusCode::OK);
    let over = post("key-calm", batch("e", 31)).await;
    assert_eq!(
        (over.status, over.json()["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, "over_burst".into())
    );
    let blocked = post("key-blocked", batch("f", 1)).await;
    assert_eq!(
        (blocked.status, blocked.json()["code"].clone()),
        (StatusCode::FORBIDDEN, "source_blocked".into())
    );

    let stored = std::fs::read_to_string(&records).unwrap();
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for line in stored.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let data = base64_decode(record["Data"].as_str().unwrap());
        let event: serde_json::Value = serde_json::from_slice(&data).unwrap();
        *tags.entry(event["tag"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = [("a", 20), ("c", 10), ("d", 30)].map(|(t, n)| (t.to_owned(), n)).into();
    assert_eq!(tags, want, "no event of a refused request is stored");

    let metrics = String::from_utf8_lossy(&http::get(&server.url("/metrics")).await.body).into_owned();
    assert!(metrics.contains(r#"outcome="rate_limited"} 51"#), "{metrics}");
    let _ = std::fs::remove_dir_all(dir);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

#[tokio::test]
async fn a_hot_key_is_spread_over_the_shards_and_the_others_keep_their_shard_and_order() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(4).await;
    let config = Config {
        quota: QuotaConfig {
            hot_key_per_second: 50,
            hot_key_policy: HotKeyPolicy::Spread,
            ..QuotaConfig::default()
        },
        ..test_config()
    };
    let server = TestServer::start_with(emulator.sink(&stream), &config).await;
    let url = server.url("/import/batch");
    let hot = http::post_keyed(&url, "hot-user", batch("hot", 300)).await;
    assert_eq!(hot.status, StatusCode::OK, "{:?}", hot.body);
    for round in 0..4 {
        for user in 0..8 {
            let key = format!("user-{user}");
            let body = format!(r#"[{{"user":"{key}","round":{round}}}]"#);
            assert_eq!(http::post_keyed(&url, &key, body).await.status, StatusCode::OK);
        }
    }

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 300 + 32);
    let hot: Vec<_> = records
        .iter()
        .filter(|r| r.partition_key.starts_with("hot-user"))
        .collect();
    let under_its_key = hot.iter().filter(|r| r.partition_key == "hot-user").count();
    assert!(
        (50..300).contains(&under_its_key),
        "{under_its_key} under the hot key itself"
    );
    let spread_shards: BTreeSet<_> = hot
        .iter()
        .filter(|r| r.partition_key != "hot-user")
        .map(|r| r.shard_id.as_str())
        .collect();
    assert!(spread_shards.len() >= 3, "the rest spread over {spread_shards:?}");
    let mut hot_events: Vec<u64> = hot
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.data).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    hot_events.sort_unstable();
    assert_eq!(
        hot_events,
        (0..300).collect::<Vec<_>>(),
        "each hot event stored once, byte for byte"
    );

    for user in 0..8 {
        let key = format!("user-{user}");
        let mut mine: Vec<_> = records.iter().filter(|r| r.partition_key == key).collect();
        let shards: BTreeSet<_> = mine.iter().map(|r| r.shard_id.as_str()).collect();
        assert_eq!(shards.len(), 1, "{key} on {shards:?}");
        // Sequence numbers are decimal strings too long for any integer type.
        mine.sort_by_key(|r| (r.sequence_number.len(), r.sequence_number.clone()));
        let rounds: Vec<u64> = mine
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.data).unwrap()["round"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(rounds, [0, 1, 2, 3], "{key} in order");
    }
}
