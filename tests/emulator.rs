//! End to end against a real Kinesis emulator: requests over real sockets,
//! through the real AWS SDK, then every record read back from the stream and
//! compared byte for byte with what the client sent and was told.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::http::{self, Reply};
use common::{Emulator, TestServer, record_at};
use hyper::StatusCode;

/// Asserts a 200 receipt and returns (ShardId, SequenceNumber).
fn receipt(reply: &Reply) -> (String, String) {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "body: {:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.headers["content-type"], "application/json");
    let json = reply.json();
    let shard = json["ShardId"].as_str().expect("ShardId").to_owned();
    let sequence = json["SequenceNumber"].as_str().expect("SequenceNumber").to_owned();
    (shard, sequence)
}

#[tokio::test]
async fn bodies_arrive_byte_for_byte_at_the_returned_position() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(2).await;
    let server = TestServer::start(emulator.sink(&stream)).await;

    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"type":"page","url":"https://example.com/?q=1","anonymousId":"a-1"}"#.to_vec(),
        "{\"event\":\"Bestellung abgeschlossen\",\"emoji\":\"\u{1F680}\",\"name\":\"Zoë 日本\"}"
            .as_bytes()
            .to_vec(),
        all_bytes,
        b"x".to_vec(),
    ];
    let mut sent = Vec::new();
    for body in &bodies {
        let reply = http::post(&server.url("/import"), body.clone()).await;
        sent.push((receipt(&reply), body));
    }

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), bodies.len());
    for (position, body) in &sent {
        let record = record_at(&records, position);
        assert_eq!(&record.data, *body);
        assert_eq!(
            record.partition_key.len(),
            36,
            "a random UUID key: {}",
            record.partition_key
        );
    }
}

#[tokio::test]
async fn the_client_partition_key_is_used_and_validated() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let server = TestServer::start(emulator.sink(&stream)).await;

    let key = "user-42/séance";
    let position = receipt(&http::post_keyed(&server.url("/import"), key, "e1").await);
    let max_key = "k".repeat(256);
    receipt(&http::post_keyed(&server.url("/import"), &max_key, "e2").await);

    let too_long = http::post_keyed(&server.url("/import"), &"k".repeat(257), "e3").await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_long.json()["error"], "invalid_partition_key");

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 2, "the refused record must not be written");
    assert_eq!(record_at(&records, &position).partition_key, key);
    assert!(records.iter().any(|r| r.partition_key == max_key && r.data == b"e2"));
}

#[tokio::test]
async fn the_size_limit_counts_data_plus_key_and_refuses_before_writing() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let server = TestServer::start(emulator.sink(&stream)).await;
    let limit = server.app.max_record_bytes();
    assert_eq!(
        limit,
        1024 * 1024,
        "the default Kinesis record limit when the stream does not say"
    );

    let key = "session-7";
    let at_limit: Vec<u8> = (0..limit - key.len()).map(|i| (i % 251) as u8).collect();
    let position = receipt(&http::post_keyed(&server.url("/import"), key, at_limit.clone()).await);

    let mut over = at_limit.clone();
    over.push(b'!');
    let reply = http::post_keyed(&server.url("/import"), key, over).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "payload_too_large");

    // Without a key header the random 36-byte UUID counts too.
    let reply = http::post(&server.url("/import"), vec![b'a'; limit - 35]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let empty = http::post(&server.url("/import"), Vec::new()).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(empty.json()["error"], "empty_body");

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 1, "only the record at the limit is stored");
    assert_eq!(record_at(&records, &position).data, at_limit);
}

#[tokio::test]
async fn concurrent_requests_are_each_stored_exactly_once_batched() {
    concurrent_requests_are_each_stored_exactly_once(true, 500).await;
}

#[tokio::test]
async fn concurrent_requests_are_each_stored_exactly_once_unbatched() {
    concurrent_requests_are_each_stored_exactly_once(false, 200).await;
}

async fn concurrent_requests_are_each_stored_exactly_once(batching: bool, count: usize) {
    let emulator = Emulator::start().await;
    // One call per request to a ~150 calls/s emulator: keep that run short.
    let count = if emulator.is_external() && !batching {
        count.min(100)
    } else {
        count
    };
    let stream = emulator.create_stream(4).await;
    let mut config = common::test_config();
    config.batch.enabled = batching;
    let server = TestServer::start_with(emulator.sink(&stream), &config).await;
    let client = http::client();

    let requests = (0..count).map(|i| {
        let (client, url) = (client.clone(), server.url("/import"));
        tokio::spawn(async move {
            let body = format!(r#"{{"event":"click","n":{i}}}"#);
            let request = hyper::Request::post(url)
                .body(http_body_util::Full::from(body.clone()))
                .unwrap();
            (receipt(&http::send_with(&client, request).await), body)
        })
    });
    let mut sent = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        sent.push(request.await.unwrap());
    }

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), count);
    let positions: HashSet<_> = sent.iter().map(|(position, _)| position.clone()).collect();
    assert_eq!(positions.len(), count, "every receipt is distinct");
    for (position, body) in &sent {
        assert_eq!(record_at(&records, position).data, body.as_bytes());
    }
}

#[tokio::test]
async fn readiness_follows_the_stream() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let server = TestServer::start(emulator.sink(&stream)).await;

    let ready = http::get(&server.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.json());
    assert_eq!(ready.json()["sink"], "kinesis");
    assert_eq!(http::get(&server.url("/healthz")).await.status, StatusCode::OK);

    // The stream goes away: once the cached answer expires, the probe asks
    // the stream again and turns 503, while the process keeps serving.
    emulator
        .client
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
    let url = server.url("/readyz");
    common::eventually(
        "/readyz turns 503 without the stream",
        Duration::from_secs(20),
        || async { http::get(&url).await.status == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    let unready = http::get(&url).await.json();
    assert_eq!(unready["status"], "not_ready", "{unready}");
    assert_eq!(http::get(&server.url("/healthz")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_stream_stops_start_up() {
    let emulator = Emulator::start().await;
    let app = clickstream_gateway::app::App::new(
        std::sync::Arc::new(emulator.sink("no-such-stream")),
        &common::test_config(),
    )
    .expect("the app starts");
    let err = app
        .check_destination()
        .await
        .expect_err("a missing stream is a start-up error");
    assert!(err.to_string().contains("no-such-stream"), "{err}");
}
