//! Overload, connection and access limits, compressed bodies and idle
//! connections, over real sockets.

mod common;

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use clickstream_gateway::config::Config;
use clickstream_gateway::sink::file::FileSink;
use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::{TestServer, http, kinesis_config, sdk_config, test_config};
use http_body_util::Full;
use hyper::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn file_server(config: &Config) -> (TestServer, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("gateway-hardening-{}.ndjson", uuid::Uuid::new_v4()));
    let server = TestServer::start_with(FileSink::open(&path).unwrap(), config).await;
    (server, path)
}

fn stored(path: &std::path::Path) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            base64::engine::general_purpose::STANDARD
                .decode(line["Data"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

fn post(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut request = Request::post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(body.into())).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn api_keys_guard_import_only() {
    let mut config = test_config();
    config.access.api_keys = vec!["s3cret".into()];
    let (server, path) = file_server(&config).await;
    let url = server.url("/import");

    let refused = http::send(post(&url, &[], "e")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers["www-authenticate"], "Bearer");
    assert_eq!(refused.json()["error"], "unauthorized");
    let wrong = http::send(post(&url, &[("Authorization", "Bearer s3cre")], "e")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        http::send(post(&url, &[("Authorization", "Bearer s3cret")], "a"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        http::send(post(&url, &[("X-Api-Key", "s3cret")], "b")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http::get(&server.url("/healthz")).await.status,
        StatusCode::OK,
        "probes need no key"
    );
    assert_eq!(stored(&path), [b"a".to_vec(), b"b".to_vec()]);
}

#[tokio::test]
async fn cors_preflight_and_simple_requests() {
    let mut config = test_config();
    config.access.cors_allowed_origins = vec!["https://shop.example".into()];
    let (server, _) = file_server(&config).await;
    let url = server.url("/import");

    let preflight = Request::options(&url)
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type, x-partition-key")
        .body(Full::default())
        .unwrap();
    let reply = http::send(preflight).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.headers["access-control-allow-origin"], "https://shop.example");
    assert_eq!(reply.headers["access-control-allow-methods"], "POST");
    assert!(
        reply.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("X-Partition-Key")
    );

    let foreign = Request::options(&url)
        .header("Origin", "https://evil.example")
        .body(Full::default())
        .unwrap();
    assert_eq!(http::send(foreign).await.status, StatusCode::FORBIDDEN);

    // sendBeacon: a simple POST, text/plain, no preflight.
    let beacon = post(
        &url,
        &[("Origin", "https://shop.example"), ("Content-Type", "text/plain")],
        "{}",
    );
    let reply = http::send(beacon).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["access-control-allow-origin"], "https://shop.example");
    assert!(
        reply.headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("X-Request-Id")
    );
}

#[tokio::test]
async fn compressed_bodies_are_stored_decoded() {
    let (server, path) = file_server(&test_config()).await;
    let url = server.url("/import");
    let event = br#"{"type":"track","event":"Signed Up"}"#;

    let reply = http::send(post(&url, &[("Content-Encoding", "gzip")], gzip(event))).await;
    assert_eq!(reply.status, StatusCode::OK);

    let bomb = gzip(&vec![b'a'; 64 << 20]);
    let reply = http::send(post(&url, &[("Content-Encoding", "gzip")], bomb)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    let reply = http::send(post(&url, &[("Content-Encoding", "lz4")], "x")).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let reply = http::send(post(&url, &[("Content-Encoding", "gzip")], "not gzip")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "bad_encoding");

    assert_eq!(stored(&path), [event.to_vec()], "only the decoded event is stored");
}

#[tokio::test]
async fn over_the_in_flight_cap_requests_are_shed_at_once() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.http.max_in_flight_requests = NonZeroUsize::new(3).unwrap();
    let sdk = sdk_config(&upstream.endpoint()).await;
    let server = TestServer::start_with(KinesisSink::new(&sdk, &kinesis_config("fake")), &config).await;
    upstream.set(Mode::Slow(Duration::from_millis(500)));

    let client = http::client();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (client, url) = (client.clone(), server.url("/import"));
            tokio::spawn(async move { http::send_with(&client, post(&url, &[], format!("e{i}"))).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    let shed: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(ok + shed.len(), 30);
    assert!(ok >= 3 && !shed.is_empty(), "ok {ok}, shed {}", shed.len());
    assert!(
        shed.iter()
            .all(|r| r.json()["error"] == "overloaded" && r.headers["retry-after"] == "1")
    );
    let written: usize = upstream.writes().iter().map(|c| c.records).sum();
    assert_eq!(written, ok, "every 200 was written, no shed record was");
}

#[tokio::test]
async fn the_in_flight_byte_budget_counts_what_a_decoded_body_holds() {
    // 1 MiB of budget: a 200 KB event fits once decoded (4 x 200 KB held);
    // the same event 1 MB decoded does not, however small it travels.
    let mut config = test_config();
    config.http.max_in_flight_body_bytes = NonZeroUsize::new(1 << 20).unwrap();
    let (server, path) = file_server(&config).await;
    let url = server.url("/import");
    let small = format!(r#"{{"pad":"{}"}}"#, "a".repeat(200_000));
    let reply = http::send(post(&url, &[("Content-Encoding", "gzip")], gzip(small.as_bytes()))).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let large = format!(r#"{{"pad":"{}"}}"#, "a".repeat(1_000_000));
    let compressed = gzip(large.as_bytes());
    assert!(compressed.len() < 10_000, "it travels small");
    let reply = http::send(post(&url, &[("Content-Encoding", "gzip")], compressed)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", reply.body);
    assert_eq!(reply.json()["error"], "overloaded");
    assert_eq!(stored(&path).len(), 1, "only the event that fit was stored");
    // The budget is whole again: a request that fits still passes.
    let reply = http::send(post(&url, &[("Content-Encoding", "gzip")], gzip(small.as_bytes()))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn the_budget_counts_the_records_a_request_makes_not_only_its_body() {
    // 1 MiB of budget. A 100 KB Segment batch (4 x 100 KB held for its body)
    // whose 2,000 events each carry a copy of a 256-byte write key and the
    // gateway's fields makes about 1 MB of records: three times that does
    // not fit, so it is shed before anything is written.
    let mut config = test_config();
    config.http.max_in_flight_body_bytes = NonZeroUsize::new(1 << 20).unwrap();
    let (server, path) = file_server(&config).await;
    let batch = |events: usize| {
        let events: Vec<_> = (0..events)
            .map(|i| serde_json::json!({"type": "track", "event": "e", "userId": format!("u{i}")}))
            .collect();
        serde_json::json!({"writeKey": "w".repeat(256), "batch": events}).to_string()
    };
    let big = batch(2000);
    assert!(big.len() < 120_000, "{}", big.len());
    let url = server.url("/v1/batch");
    let reply = http::send(post(&url, &[("Content-Type", "application/json")], big)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", reply.body);
    assert_eq!(reply.json()["code"], "overloaded");
    assert!(stored(&path).is_empty(), "nothing of it was written");
    let reply = http::send(post(&url, &[("Content-Type", "application/json")], batch(100))).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(stored(&path).len(), 100);
    // A write key past its limit is refused, whatever the budget.
    let long =
        serde_json::json!({"writeKey": "w".repeat(257), "batch": [{"type": "track", "event": "e", "userId": "u"}]});
    let reply = http::send(post(&url, &[("Content-Type", "application/json")], long.to_string())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["code"], "field_too_long");
}

#[tokio::test]
async fn a_zstd_frame_asking_for_a_huge_window_is_413_from_its_header() {
    let (server, path) = file_server(&test_config()).await;
    // windowLog 31 (2 GiB), then data the decoder never gets to.
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, (31 - 10) << 3];
    frame.extend_from_slice(&[0u8; 1024]);
    let reply = http::send(post(&server.url("/import"), &[("Content-Encoding", "zstd")], frame)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["code"], "window_too_large");
    assert!(stored(&path).is_empty());
}

#[tokio::test]
async fn over_the_connection_cap_a_connection_gets_503() {
    let mut config = test_config();
    config.http.max_connections = NonZeroUsize::new(2).unwrap();
    let (server, _) = file_server(&config).await;
    let _held: Vec<_> = [
        TcpStream::connect(server.addr).await.unwrap(),
        TcpStream::connect(server.addr).await.unwrap(),
    ]
    .into_iter()
    .collect();
    let app = server.app.clone();
    common::eventually("both connections accepted", Duration::from_secs(10), || {
        let open = app.metrics().render().contains("http_connections_open 2\n");
        async move { open }
    })
    .await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"overloaded\""), "{answer}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (server, _) = file_server(&test_config()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The test header timeout is 2 s; the idle connection must be closed by then.
    let closed = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
        .await
        .expect("closed");
    assert_eq!(closed.unwrap(), 0);
}

#[tokio::test]
async fn a_header_the_gateway_acts_on_sent_twice_is_400_and_nothing_is_stored() {
    let mut config = test_config();
    config.access.cors_allowed_origins = vec!["https://allowed.example".into()];
    let (server, path) = file_server(&config).await;
    let url = server.url("/import");
    let (allowed, evil) = (
        ("Origin", "https://allowed.example"),
        ("Origin", "https://evil.example"),
    );
    for origins in [[allowed, evil], [evil, allowed]] {
        let reply = http::send(post(&url, &origins, "{}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{origins:?}");
        assert_eq!(reply.json()["code"], "repeated_header");
        assert!(reply.json()["message"].as_str().unwrap().contains("origin"));
        assert!(reply.headers.get("access-control-allow-origin").is_none());
    }
    let twice = [
        ("Authorization", "Bearer a"),
        ("X-Api-Key", "a"),
        ("Content-Encoding", "identity"),
        ("Content-Type", "application/json"),
        ("X-Partition-Key", "a"),
        ("Idempotency-Key", "a"),
    ];
    for (name, value) in twice {
        for path in ["/import", "/import/batch", "/v1/batch", "/batch/"] {
            let body = r#"{"batch":[{"type":"track","event":"e","userId":"u","distinct_id":"u"}]}"#;
            let reply = http::send(post(&server.url(path), &[(name, value), (name, value)], body)).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name} twice on {path}");
            assert_eq!(reply.json()["code"], "repeated_header", "{name} twice on {path}");
        }
    }
    // A preflight with two origins is refused too.
    let preflight = Request::options(&url)
        .header("Origin", "https://allowed.example")
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .body(Full::default())
        .unwrap();
    assert_eq!(http::send(preflight).await.status, StatusCode::BAD_REQUEST);
    assert!(stored(&path).is_empty(), "nothing was stored");
    // Headers the gateway does not act on may repeat; one Origin is fine.
    let reply = http::send(post(&url, &[allowed, ("X-Other", "1"), ("X-Other", "2")], "{}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(stored(&path).len(), 1);
}

/// A door, its content type, how it wraps one event (given Snowplow's
/// schema), and the fields an event there needs.
type JsonDoor = (&'static str, &'static str, fn(&str, String) -> String, &'static str);

/// An event whose `x` nests `depth` deep counting the event itself.
fn nested_event(fields: &str, depth: usize) -> String {
    format!(
        r#"{{{fields},"x":{}1{}}}"#,
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    )
}

#[tokio::test]
async fn json_nested_past_the_limit_is_refused_on_every_door_that_reads_json() {
    let (server, path) = file_server(&test_config()).await;
    let segment = r#""type":"track","event":"e","userId":"u""#;
    let posthog = r#""event":"e","distinct_id":"u""#;
    let snowplow = r#""e":"pv","aid":"a""#;
    let schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";
    let doors: [JsonDoor; 7] = [
        ("/import/batch", "application/json", |_, e| format!("[{e}]"), r#""a":1"#),
        (
            "/import/batch",
            "application/x-ndjson",
            |_, e| format!("{e}\n"),
            r#""a":1"#,
        ),
        (
            "/v1/batch",
            "application/json",
            |_, e| format!(r#"{{"batch":[{e}]}}"#),
            segment,
        ),
        ("/v1/track", "application/json", |_, e| e, segment),
        (
            "/batch/",
            "application/json",
            |_, e| format!(r#"{{"api_key":"k","batch":[{e}]}}"#),
            posthog,
        ),
        (
            "/e/",
            "application/json",
            |_, e| e.replacen('{', r#"{"api_key":"k","#, 1),
            posthog,
        ),
        (
            "/com.snowplowanalytics.snowplow/tp2",
            "application/json",
            |s, e| format!(r#"{{"schema":"{s}","data":[{e}]}}"#),
            snowplow,
        ),
    ];
    let mut expected = 0;
    for (door, content_type, wrap, fields) in doors {
        let headers = [("Content-Type", content_type)];
        let at = wrap(schema, nested_event(fields, 64));
        let reply = http::send(post(&server.url(door), &headers, at)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{door} {content_type} at 64: {:?}",
            reply.body
        );
        expected += 1;
        for depth in [65, 200_000] {
            let past = wrap(schema, nested_event(fields, depth));
            let reply = http::send(post(&server.url(door), &headers, past)).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{door} {content_type} at {depth}"
            );
            assert!(
                String::from_utf8_lossy(&reply.body).contains("too_deep"),
                "{door} at {depth}: {:?}",
                reply.body
            );
        }
    }
    assert_eq!(stored(&path).len(), expected, "nothing past the limit was stored");
    // /import stores raw bytes and does not look.
    let reply = http::post(&server.url("/import"), nested_event(r#""a":1"#, 200_000)).await;
    assert_eq!(reply.status, StatusCode::OK);

    // JSON_MAX_DEPTH raises (or lowers) it.
    let mut config = test_config();
    config.import.max_depth = 1000;
    let (server, _) = file_server(&config).await;
    let body = format!("[{}]", nested_event(r#""a":1"#, 1000));
    assert_eq!(
        http::post(&server.url("/import/batch"), body).await.status,
        StatusCode::OK
    );
    let body = format!(r#"{{"batch":[{}]}}"#, nested_event(segment, 1001));
    assert_eq!(
        http::post(&server.url("/v1/batch"), body).await.status,
        StatusCode::BAD_REQUEST
    );
}
