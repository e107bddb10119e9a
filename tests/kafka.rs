//! The Kafka sink against librdkafka's mock cluster (the Kafka protocol on
//! loopback ports, in-process, with fault injection): what each door answers,
//! every acknowledged record read back by partition and offset with its key
//! and bytes, and the faults a broker makes: down, retriable errors, a
//! message over the limit, leader changes, a fenced producer, a missing topic.
//! A real broker process (tansu) runs in `suites/kafka/run.sh`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use clickstream_gateway::config::Config;
use clickstream_gateway::sink::Sink;
use clickstream_gateway::sink::kafka::KafkaSink;
use clickstream_gateway::sink::kafka::{KafkaConfig, KafkaProperty};
use common::http;
use common::{TestServer, test_config};
use hyper::StatusCode;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

const TOPIC: &str = "clicks";

/// One message read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn kafka_config(bootstrap: &str, topic: &str) -> KafkaConfig {
    let Config { sink, .. } = Config::from_pairs([
        ("SINK".to_owned(), "kafka".to_owned()),
        ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap.to_owned()),
        ("KAFKA_TOPIC".to_owned(), topic.to_owned()),
        ("KAFKA_DELIVERY_TIMEOUT_MS".to_owned(), "3000".to_owned()),
    ])
    .expect("a valid kafka configuration");
    match sink {
        clickstream_gateway::sink::SinkConfig::Kafka(kafka) => kafka,
        other => panic!("{other:?}"),
    }
}

fn cluster(brokers: i32, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(brokers).expect("the mock cluster starts");
    cluster
        .create_topic(TOPIC, partitions, brokers.min(3))
        .expect("the topic is created");
    cluster
}

async fn gateway(kafka: &KafkaConfig, config: &Config) -> TestServer {
    TestServer::start_with(KafkaSink::new(kafka).expect("the producer is built"), config).await
}

/// Every message of the topic's `partitions`, read with `assign` (no
/// consumer group to join) from the beginning up to the high watermark.
async fn read_all(bootstrap: &str, partitions: i32) -> Vec<Stored> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "read-back")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let mut ends = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let (_, high) = consumer
                .fetch_watermarks(TOPIC, partition, Duration::from_secs(5))
                .expect("watermarks");
            ends.insert(partition, high);
            assignment
                .add_partition_offset(TOPIC, partition, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).expect("assign");
        let mut stored = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let done = |stored: &Vec<Stored>| {
            ends.iter()
                .all(|(p, high)| stored.iter().filter(|s| s.partition == *p).count() as i64 >= *high)
        };
        while !done(&stored) {
            assert!(std::time::Instant::now() < deadline, "read {} messages", stored.len());
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("a message");
                stored.push(Stored {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().unwrap_or_default().to_vec(),
                    value: message.payload().unwrap_or_default().to_vec(),
                });
            }
        }
        stored
    })
    .await
    .unwrap()
}

fn count(stored: &[Stored], value: &[u8]) -> usize {
    stored.iter().filter(|s| s.value == value).count()
}

#[tokio::test]
async fn every_door_lands_in_the_topic_with_its_key_its_bytes_and_its_order() {
    let cluster = cluster(3, 4);
    let bootstrap = cluster.bootstrap_servers();
    let server = gateway(&kafka_config(&bootstrap, TOPIC), &test_config()).await;

    // /import: the broker's receipt.
    let body = "{\"event\":\"one\",\"note\":\"caf\u{e9}\"}";
    let reply = http::post_keyed(&server.url("/import"), "user-1", body).await;
    assert_eq!(reply.status, StatusCode::OK);
    let receipt = reply.json();
    assert_eq!(receipt["Topic"], TOPIC);
    let (partition, offset) = (
        receipt["Partition"].as_i64().unwrap(),
        receipt["Offset"].as_i64().unwrap(),
    );

    // /import/batch: one key, so one partition, in request order.
    let batch: Vec<String> = (0..20).map(|i| format!(r#"{{"event":"b","seq":{i}}}"#)).collect();
    let reply = http::post_keyed(&server.url("/import/batch"), "user-2", format!("[{}]", batch.join(","))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let answer = reply.json();
    assert_eq!(answer["FailedRecordCount"], 0);
    assert_eq!(answer["Records"].as_array().unwrap().len(), 20);
    assert!(
        answer["Records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["Topic"] == TOPIC)
    );

    // An SDK: one record per event, the user's id as the key.
    let events: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"type":"track","event":"e","userId":"u-{}","messageId":"m-{i}","properties":{{"seq":{i}}}}}"#,
                i % 2
            )
        })
        .collect();
    let reply = http::post(
        &server.url("/v1/batch"),
        format!(r#"{{"batch":[{}]}}"#, events.join(",")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    let stored = read_all(&bootstrap, 4).await;
    assert_eq!(stored.len(), 1 + 20 + 10, "each event once");
    let one = stored
        .iter()
        .find(|s| s.value == body.as_bytes())
        .expect("the /import record");
    assert_eq!(
        (one.partition as i64, one.offset),
        (partition, offset),
        "where the receipt said"
    );
    assert_eq!(one.key, b"user-1");

    let mut batch_stored: Vec<&Stored> = stored.iter().filter(|s| s.key == b"user-2").collect();
    batch_stored.sort_by_key(|s| s.offset);
    let values: Vec<&[u8]> = batch_stored.iter().map(|s| s.value.as_slice()).collect();
    let sent: Vec<&[u8]> = batch.iter().map(|b| b.as_bytes()).collect();
    assert_eq!(values, sent, "the same bytes, in request order");

    for user in ["u-0", "u-1"] {
        let mut mine: Vec<&Stored> = stored.iter().filter(|s| s.key == user.as_bytes()).collect();
        assert_eq!(mine.len(), 5);
        assert!(
            mine.windows(2).all(|w| w[0].partition == w[1].partition),
            "one partition per user"
        );
        mine.sort_by_key(|s| s.offset);
        let seqs: Vec<i64> = mine
            .iter()
            .map(|s| {
                serde_json::from_slice::<Value>(&s.value).unwrap()["properties"]["seq"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "{user}: in order");
    }

    let ready = http::get(&server.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["sink"], "kafka");
    assert_eq!(ready.json()["target"], TOPIC);
}

#[tokio::test]
async fn retriable_broker_errors_are_retried_by_the_producer_and_stored_once() {
    let cluster = cluster(1, 1);
    let bootstrap = cluster.bootstrap_servers();
    let server = gateway(&kafka_config(&bootstrap, TOPIC), &test_config()).await;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    let reply = http::post(&server.url("/import"), "retried").await;
    assert_eq!(reply.status, StatusCode::OK);
    let stored = read_all(&bootstrap, 1).await;
    assert_eq!(count(&stored, b"retried"), 1, "{stored:?}");
}

#[tokio::test]
async fn throttling_is_503_to_retry_and_a_slow_broker_is_waited_for() {
    let cluster = cluster(1, 1);
    let bootstrap = cluster.bootstrap_servers();
    let server = gateway(&kafka_config(&bootstrap, TOPIC), &test_config()).await;
    // librdkafka does not retry a produce refused for quota: the client is
    // told to come back.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED],
    );
    let reply = http::post(&server.url("/import"), "throttled").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "throttled");
    assert_eq!(reply.headers["retry-after"], "1");
    let reply = http::post(&server.url("/v1/t"), r#"{"event":"e","userId":"u"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "the quota error was one response");
    // A broker that answers slowly (Kafka's own throttling delays answers).
    cluster.broker_round_trip_time(1, Duration::from_millis(800)).unwrap();
    let reply = http::post(&server.url("/import"), "slow").await;
    assert_eq!(reply.status, StatusCode::OK);
    let stored = read_all(&bootstrap, 1).await;
    assert_eq!(count(&stored, b"throttled"), 0, "{stored:?}");
    assert_eq!(count(&stored, b"slow"), 1);
}

#[tokio::test]
async fn a_broker_outage_is_503_and_service_returns_with_the_broker() {
    let cluster = cluster(1, 1);
    let bootstrap = cluster.bootstrap_servers();
    let server = gateway(&kafka_config(&bootstrap, TOPIC), &test_config()).await;
    assert_eq!(
        http::post(&server.url("/import"), "before").await.status,
        StatusCode::OK
    );

    cluster.broker_down(1).unwrap();
    let started = std::time::Instant::now();
    let reply = http::post(&server.url("/import"), "during").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", reply.body);
    assert!(reply.headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered within the delivery timeout"
    );

    cluster.broker_up(1).unwrap();
    let mut after = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..20 {
        after = http::post(&server.url("/import"), "after").await.status;
        if after == StatusCode::OK {
            break;
        }
    }
    assert_eq!(after, StatusCode::OK, "the gateway recovers without a restart");
    let stored = read_all(&bootstrap, 1).await;
    assert_eq!(count(&stored, b"before"), 1);
    assert!(count(&stored, b"after") >= 1);
}

#[tokio::test]
async fn a_message_over_the_limit_is_413_before_anything_is_sent() {
    let cluster = cluster(1, 1);
    let bootstrap = cluster.bootstrap_servers();
    let mut kafka = kafka_config(&bootstrap, TOPIC);
    kafka.max_message_bytes = 4096;
    let server = gateway(&kafka, &test_config()).await;
    let limit = server.app.max_record_bytes();
    assert!(limit < 4096, "the limit keeps room for the batch framing: {limit}");
    let reply = http::post(&server.url("/import"), vec![b'x'; 5000]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = http::post(&server.url("/import/batch"), format!(r#"["{}"]"#, "y".repeat(5000))).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(http::post(&server.url("/import"), "small").await.status, StatusCode::OK);
    let stored = read_all(&bootstrap, 1).await;
    assert_eq!(stored.len(), 1, "only the small one reached the broker");
}

#[tokio::test]
async fn leader_changes_under_load_lose_no_acknowledged_record() {
    let cluster = cluster(3, 3);
    let bootstrap = cluster.bootstrap_servers();
    let server = gateway(&kafka_config(&bootstrap, TOPIC), &test_config()).await;
    let url = server.url("/import");
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..300 {
        let url = url.clone();
        requests.spawn(async move {
            let body = format!(r#"{{"n":{i}}}"#);
            let status = http::post_keyed(&url, &format!("k-{}", i % 7), body.clone())
                .await
                .status;
            (body, status)
        });
        if i % 50 == 25 {
            for partition in 0..3 {
                cluster
                    .partition_leader(TOPIC, partition, Some(1 + (i / 50 + partition) % 3))
                    .unwrap();
            }
        }
    }
    let mut acknowledged = Vec::new();
    while let Some(done) = requests.join_next().await {
        let (body, status) = done.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
        if status == StatusCode::OK {
            acknowledged.push(body);
        }
    }
    assert!(
        acknowledged.len() > 250,
        "most requests got through: {}",
        acknowledged.len()
    );
    let stored = read_all(&bootstrap, 3).await;
    for body in &acknowledged {
        assert_eq!(count(&stored, body.as_bytes()), 1, "{body}");
    }
}

#[tokio::test]
async fn a_producer_failed_for_good_is_replaced_and_the_gateway_keeps_serving() {
    let cluster = cluster(1, 1);
    let bootstrap = cluster.bootstrap_servers();
    let server = gateway(&kafka_config(&bootstrap, TOPIC), &test_config()).await;
    assert_eq!(http::post(&server.url("/import"), "first").await.status, StatusCode::OK);
    // A sequence gap the idempotent producer cannot explain (as after a
    // broker restart lost its state): fatal for librdkafka, and without a
    // new producer every later record would fail (checked: they all do).
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let fenced = http::post(&server.url("/import"), "sequence-gap").await;
    assert_eq!(fenced.status, StatusCode::SERVICE_UNAVAILABLE);
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(http::post(&server.url("/import"), format!("later-{i}")).await.status);
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let stored = read_all(&bootstrap, 1).await;
    assert_eq!(count(&stored, b"first"), 1);
    assert_eq!(count(&stored, b"later-4"), 1);
}

#[tokio::test]
async fn a_missing_topic_is_misconfiguration() {
    let cluster = cluster(1, 1);
    let bootstrap = cluster.bootstrap_servers();
    cluster
        .topic_error("nowhere", RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        .unwrap();
    let sink = KafkaSink::new(&kafka_config(&bootstrap, "nowhere")).unwrap();
    let err = sink.describe().await.unwrap_err();
    assert_eq!(err.label(), "misconfigured", "{err}");
}

#[test]
fn an_invalid_property_names_its_variable() {
    let mut kafka = kafka_config("127.0.0.1:1", TOPIC);
    kafka.properties.push(KafkaProperty {
        variable: "KAFKA_PROPERTY_COMPRESSION_TYPE".into(),
        name: "compression.type".into(),
        value: "zip".into(),
    });
    let err = KafkaSink::new(&kafka).unwrap_err().to_string();
    assert!(err.contains("KAFKA_PROPERTY_COMPRESSION_TYPE"), "{err}");
    let mut kafka = kafka_config("127.0.0.1:1", TOPIC);
    kafka.properties.push(KafkaProperty {
        variable: "KAFKA_PROPERTY_NO_SUCH_THING".into(),
        name: "no.such.thing".into(),
        value: "1".into(),
    });
    let err = KafkaSink::new(&kafka).unwrap_err().to_string();
    assert!(err.contains("KAFKA_PROPERTY_NO_SUCH_THING"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_spill_a_broker_outage_is_202_and_replayed_once_it_is_back() {
    let cluster = cluster(1, 1);
    let bootstrap = cluster.bootstrap_servers();
    let dir = std::env::temp_dir().join(format!("gateway-kafka-spill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        spill: Some(clickstream_gateway::config::SpillConfig {
            max_bytes: 64 << 20,
            ..clickstream_gateway::config::SpillConfig::in_dir(dir)
        }),
        ..test_config()
    };
    let server = gateway(&kafka_config(&bootstrap, TOPIC), &config).await;
    assert_eq!(
        http::post(&server.url("/import"), "before").await.status,
        StatusCode::OK
    );
    cluster.broker_down(1).unwrap();
    for i in 0..5 {
        // One key: the spill keeps order per key (its lanes replay
        // different keys in parallel).
        let reply = http::post_keyed(&server.url("/import"), "user-1", format!("during-{i}")).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
        assert_eq!(reply.json(), serde_json::json!({"Spilled": true}));
    }
    cluster.broker_up(1).unwrap();
    common::eventually("the spill is replayed", Duration::from_secs(60), || async {
        let text = http::get(&server.url("/metrics")).await.body;
        String::from_utf8_lossy(&text).contains("\nspill_records 0\n")
    })
    .await;
    let stored = read_all(&bootstrap, 1).await;
    for i in 0..5 {
        assert_eq!(count(&stored, format!("during-{i}").as_bytes()), 1, "during-{i}");
    }
    let during: Vec<&[u8]> = stored
        .iter()
        .map(|s| s.value.as_slice())
        .filter(|v| v.starts_with(b"during-"))
        .collect();
    assert_eq!(
        during,
        [&b"during-0"[..], b"during-1", b"during-2", b"during-3", b"during-4"]
    );
}
