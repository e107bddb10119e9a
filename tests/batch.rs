//! `POST /import/batch` end to end against a real Kinesis emulator: every
//! event is its own record, read back from every shard and compared byte for
//! byte, key for key and position for position with the answer.

mod common;

use std::collections::{HashMap, HashSet};

use clickstream_gateway::partition_key::{KeyFields, shorten};
use common::http::{self, Reply};
use common::{Emulator, TestServer, record_at, test_config};
use hyper::StatusCode;
use serde_json::Value;

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

/// The (ShardId, SequenceNumber) of every entry of a 200 batch answer.
fn positions(reply: &Reply, expected: usize) -> Vec<(String, String)> {
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let json = reply.json();
    assert_eq!(json["FailedRecordCount"], 0);
    let records = json["Records"].as_array().expect("Records");
    assert_eq!(records.len(), expected);
    records
        .iter()
        .map(|r| {
            let shard = r["ShardId"].as_str().expect("ShardId").to_owned();
            (shard, r["SequenceNumber"].as_str().expect("SequenceNumber").to_owned())
        })
        .collect()
}

/// 100 elements of every JSON kind, each followed by varied whitespace.
fn mixed_elements() -> Vec<String> {
    (0..100)
        .map(|i| match i % 7 {
            0 => format!(r#"{{"event":"Bestellung abgeschlossen","n":{i},"emoji":"🚀","name":"Zoë 日本"}}"#),
            1 => format!(r#""line\nbreak \"quoted\" \u00e9 \\ {i}""#),
            2 => format!("{i}.{i}e-3"),
            3 => format!(r#"[1, [2, [3, {{"deep": [{i}]}}]], "x"]"#),
            4 => "null".to_owned(),
            5 => format!(r#"{{ "spaced" : true ,  "i" : {i} }}"#),
            _ => format!(r#"{{"type":"track","properties":{{"price":-{i}.5,"tags":["a","b"],"ok":false}}}}"#),
        })
        .collect()
}

#[tokio::test]
async fn array_elements_are_stored_as_sent_at_the_answered_positions() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(3).await;
    let server = TestServer::start(emulator.sink(&stream)).await;

    let elements = mixed_elements();
    let separators = ["", " ", "\n", "\r\n\t", "  "];
    let mut body = String::from(" [\n");
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            body.push_str(separators[i % separators.len()]);
            body.push(',');
        }
        body.push_str(separators[(i + 2) % separators.len()]);
        body.push_str(element);
    }
    body.push_str("\n] ");
    let reply = http::post_with(
        &server.url("/import/batch"),
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    let answered = positions(&reply, elements.len());

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), elements.len());
    for (position, element) in answered.iter().zip(&elements) {
        let record = record_at(&records, position);
        assert_eq!(String::from_utf8_lossy(&record.data), *element);
        assert_eq!(record.partition_key.len(), 36, "a random UUID per record");
    }
    let keys: HashSet<_> = records.iter().map(|r| &r.partition_key).collect();
    assert_eq!(keys.len(), elements.len(), "one key per record");
}

#[tokio::test]
async fn ndjson_lines_are_records_without_their_line_ends() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(2).await;
    let server = TestServer::start(emulator.sink(&stream)).await;

    let lines = [r#"{"a":1}"#, r#"  {"b" : "é"}"#, "[1,2]", r#""text""#];
    let body = format!("{}\r\n{}\n\r\n{}\r\n\n{}", lines[0], lines[1], lines[2], lines[3]);
    let reply = http::post_with(
        &server.url("/import/batch"),
        &[NDJSON, ("X-Partition-Key", "one-key")],
        body,
    )
    .await;
    let answered = positions(&reply, lines.len());

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), lines.len());
    for (position, line) in answered.iter().zip(lines) {
        let record = record_at(&records, position);
        assert_eq!(record.data, line.as_bytes());
        assert_eq!(
            record.partition_key, "one-key",
            "the header key applies to every record"
        );
    }
    // One key, one shard, in request order.
    // Sequence numbers are decimal and longer than any integer type: compare
    // by length, then digits.
    let sequences: Vec<(usize, &str)> = answered.iter().map(|(_, s)| (s.len(), s.as_str())).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
}

#[tokio::test]
async fn partition_key_fields_pick_each_records_key() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(4).await;
    let mut config = test_config();
    config.import.key_fields = KeyFields::new(vec![
        "/userId".into(),
        "/anonymousId".into(),
        "/context/device/id".into(),
    ]);
    let server = TestServer::start_with(emulator.sink(&stream), &config).await;

    let long_user = "u".repeat(300);
    let events = [
        (
            r#"{"userId":"alice","anonymousId":"x"}"#.to_owned(),
            Some("alice".to_owned()),
        ),
        (r#"{"anonymousId":"anon-7"}"#.to_owned(), Some("anon-7".to_owned())),
        (
            r#"{"userId":"","context":{"device":{"id":"dev-9"}}}"#.to_owned(),
            Some("dev-9".to_owned()),
        ),
        (r#"{"userId":12345}"#.to_owned(), Some("12345".to_owned())),
        (format!(r#"{{"userId":"{long_user}"}}"#), Some(shorten(&long_user, 256))),
        (r#"{"event":"no identifier"}"#.to_owned(), None),
        (r#""not an object""#.to_owned(), None),
    ];
    let body = format!(
        "[{}]",
        events.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>().join(",")
    );
    let answered = positions(&http::post(&server.url("/import/batch"), body).await, events.len());
    // The same fields apply to /import.
    let single = http::post(&server.url("/import"), r#"{"userId":"alice","n":2}"#).await;
    assert_eq!(single.status, StatusCode::OK);

    let records = emulator.read_all(&stream).await;
    for (position, (event, key)) in answered.iter().zip(&events) {
        let record = record_at(&records, position);
        assert_eq!(record.data, event.as_bytes());
        match key {
            Some(key) => assert_eq!(&record.partition_key, key, "{event}"),
            None => assert_eq!(record.partition_key.len(), 36, "falls back to a random key: {event}"),
        }
    }
    let alice: Vec<_> = records.iter().filter(|r| r.partition_key == "alice").collect();
    assert_eq!(alice.len(), 2);
    assert_eq!(alice[0].shard_id, alice[1].shard_id, "one user, one shard");
}

#[tokio::test]
async fn invalid_batches_are_refused_whole_and_nothing_is_stored() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let mut config = test_config();
    config.import.batch_max_bytes = 2 * 1024 * 1024;
    let server = TestServer::start_with(emulator.sink(&stream), &config).await;
    let url = server.url("/import/batch");
    let limit = server.app.max_record_bytes();

    // Record 37 is one byte over the record limit once its 36-byte key counts.
    let mut elements: Vec<String> = (0..60).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    elements[37] = format!("\"{}\"", "a".repeat(limit - 36 - 2 + 1));
    let reply = http::post(&url, format!("[{}]", elements.join(","))).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "record_too_large");
    assert_eq!(reply.json()["index"], 37);
    // At the limit it is fine (checked below, after the refusals).
    elements[37] = format!("\"{}\"", "a".repeat(limit - 36 - 2));
    let at_limit = format!("[{}]", elements.join(","));

    let too_many = format!("[{}]", vec!["1"; 501].join(","));
    let reply = http::post(&url, too_many).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "too_many_records");
    assert_eq!(reply.json()["index"], 500);

    let over_bytes = format!("[\"{}\"]", "b".repeat(2 * 1024 * 1024));
    let reply = http::post(&url, over_bytes).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "payload_too_large");

    let reply = http::post(&url, "[ ]").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "empty_batch");

    let reply = http::post(&url, r#"[{"ok":1},{"ok":2},{"broken":]"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_batch");
    assert_eq!(reply.json()["index"], 2);

    let reply = http::post(&url, r#"{"batch":[]}"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_batch");

    let reply = http::post_with(&url, &[NDJSON], "{\"a\":1}\nnot json\n").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["index"], 1);

    assert!(
        emulator.read_all(&stream).await.is_empty(),
        "a refused batch writes nothing"
    );

    let answered = positions(&http::post(&url, at_limit).await, 60);
    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 60);
    assert_eq!(record_at(&records, &answered[37]).data.len() + 36, limit);
}

#[tokio::test]
async fn concurrent_batches_are_each_stored_exactly_once() {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(4).await;
    let server = TestServer::start(emulator.sink(&stream)).await;
    let client = http::client();

    let (requests, per_request) = (200, 50);
    let tasks: Vec<_> = (0..requests)
        .map(|r| {
            let (client, url) = (client.clone(), server.url("/import/batch"));
            tokio::spawn(async move {
                let events: Vec<String> = (0..per_request).map(|i| format!(r#"{{"r":{r},"i":{i}}}"#)).collect();
                let request = hyper::Request::post(url)
                    .body(http_body_util::Full::from(format!("[{}]", events.join(","))))
                    .unwrap();
                let reply = http::send_with(&client, request).await;
                positions(&reply, per_request)
                    .into_iter()
                    .zip(events)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), requests * per_request, "every record once, nothing else");
    let by_position: HashMap<_, _> = records
        .iter()
        .map(|r| ((r.shard_id.clone(), r.sequence_number.clone()), r))
        .collect();
    assert_eq!(by_position.len(), records.len());
    for (position, event) in &sent {
        assert_eq!(by_position[position].data, event.as_bytes());
    }
}

#[tokio::test]
async fn gzip_batches_are_decoded_and_compared_after_decoding() {
    use std::io::Write;
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let server = TestServer::start(emulator.sink(&stream)).await;
    let body = r#"[{"type":"track","event":"A"},{"type":"track","event":"B"}]"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let reply = http::post_with(
        &server.url("/import/batch"),
        &[("Content-Encoding", "gzip")],
        gz.finish().unwrap(),
    )
    .await;
    let answered = positions(&reply, 2);
    let records = emulator.read_all(&stream).await;
    let data: Vec<Value> = answered
        .iter()
        .map(|p| serde_json::from_slice(&record_at(&records, p).data).unwrap())
        .collect();
    assert_eq!(data[0]["event"], "A");
    assert_eq!(data[1]["event"], "B");
}
