//! The analytics SDKs' protocols end to end against a real Kinesis emulator
//! (and the fault fake for throttling): bodies shaped as the SDKs send them,
//! each event read back as its own record with its bytes, enrichment and
//! partition key. `suites/sdks/` runs the real SDKs; this pins the details.

mod common;

use std::io::Write;

use base64::Engine as _;
use bytes::Bytes;
use clickstream_gateway::config::{ClientIp, Config};
use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::http::{self, Reply};
use common::{Emulator, StoredRecord, TestServer, kinesis_config, sdk_config, test_config};
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

const SCHEMA: &str = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";

fn basic(write_key: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
    format!("Basic {encoded}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn parsed(record: &StoredRecord) -> Value {
    serde_json::from_slice(&record.data)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&record.data)))
}

/// The record whose JSON has `pointer` equal to `value`.
fn by<'a>(records: &'a [StoredRecord], pointer: &str, value: &str) -> &'a StoredRecord {
    let found: Vec<_> = records
        .iter()
        .filter(|r| parsed(r).pointer(pointer).and_then(Value::as_str) == Some(value))
        .collect();
    assert_eq!(found.len(), 1, "records with {pointer} = {value}");
    found[0]
}

/// The original event's text is the record's prefix: nothing was rewritten,
/// fields were only appended before the closing brace.
fn assert_appended_to(record: &StoredRecord, original: &str) {
    let prefix = &original.as_bytes()[..original.len() - 1];
    assert!(
        record.data.starts_with(prefix),
        "record {} does not start with {}",
        String::from_utf8_lossy(&record.data),
        original
    );
}

/// The gateway on a fresh one-shard stream (kinesis-local, which CI runs
/// these against too, allows 50 shards in all, and the suites share it).
async fn gateway(emulator: &Emulator, config: &Config) -> (TestServer, String) {
    let stream = emulator.create_stream(1).await;
    (TestServer::start_with(emulator.sink(&stream), config).await, stream)
}

async fn metrics(server: &TestServer) -> String {
    String::from_utf8(http::get(&server.url("/metrics")).await.body.to_vec()).unwrap()
}

#[tokio::test]
async fn segment_batch_events_are_stored_as_sent_plus_what_segment_adds() {
    let emulator = Emulator::start().await;
    let (server, stream) = gateway(&emulator, &test_config()).await;
    let track = r#"{"type":"track","event":"Order Completed","userId":"u-1","messageId":"m-1","properties":{"note":"café ✓ \"q\"","price":12.5},"timestamp":"2026-11-23T10:00:00.000Z"}"#;
    let identify = r#"{ "type" : "identify", "anonymousId" : "anon-9", "messageId":"m-2", "traits" : {} , "sentAt":"2026-11-23T09:59:59Z" }"#;
    let page = r#"{"type":"page","userId":42,"name":"Home"}"#;
    let forged = r#"{"type":"track","event":"x","userId":"u-1","messageId":"m-4","receivedAt":"1999-01-01T00:00:00Z"}"#;
    let body = format!(
        r#"{{"batch":[{track},{identify},{page},{forged}],"sentAt":"2026-11-23T10:00:01.000Z","context":{{}}}}"#
    );
    let reply = http::post_with(
        &server.url("/v1/batch"),
        &[("Authorization", &basic("wk-1")), ("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.json(), json!({"success": true}));

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 4);
    let gateway_meta = json!({"protocol": "segment", "key": "wk-1"});

    let stored = by(&records, "/messageId", "m-1");
    assert_appended_to(stored, track);
    assert_eq!(stored.partition_key, "u-1");
    let json = parsed(stored);
    assert_eq!(json["properties"]["note"], "café ✓ \"q\"");
    assert_eq!(json["sentAt"], "2026-11-23T10:00:01.000Z", "the batch's sentAt");
    assert!(json["receivedAt"].as_str().unwrap().starts_with("20"));
    assert_eq!(json["_gateway"], gateway_meta);

    let stored = by(&records, "/messageId", "m-2");
    assert_appended_to(stored, identify);
    assert_eq!(stored.partition_key, "anon-9", "no userId: the anonymousId");
    assert_eq!(
        parsed(stored)["sentAt"],
        "2026-11-23T09:59:59Z",
        "the event's own sentAt is kept"
    );

    let stored = by(&records, "/name", "Home");
    assert_eq!(stored.partition_key, "42", "a numeric userId");
    let json = parsed(stored);
    assert_eq!(json["userId"], 42, "the id itself is untouched");
    assert_eq!(
        json["messageId"].as_str().unwrap().len(),
        36,
        "a messageId when missing"
    );

    let json = parsed(by(&records, "/messageId", "m-4"));
    assert_ne!(
        json["receivedAt"], "1999-01-01T00:00:00Z",
        "receivedAt is the gateway's"
    );
    assert_eq!(json["_gateway"], gateway_meta);
}

#[tokio::test]
async fn one_bad_event_is_rejected_alone_and_a_request_of_bad_events_is_400() {
    let emulator = Emulator::start().await;
    let (server, stream) = gateway(&emulator, &test_config()).await;
    let body = r#"{"batch":[
        {"type":"track","event":"ok","userId":"u"},
        {"type":"track","event":"no user"},
        {"type":"track","userId":"u"},
        "not an object",
        {"type":"teleport","userId":"u"},
        {"type":"track","event":"dup","userId":"a","userId":"b"}
    ],"writeKey":"wk-body"}"#;
    let reply = http::post(&server.url("/v1/batch"), body).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(json["success"], true);
    let rejected: Vec<(u64, &str)> = json["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "missing_user"),
            (2, "missing_event"),
            (3, "not_an_object"),
            (4, "unknown_type"),
            (5, "invalid_event")
        ]
    );
    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 1);
    assert_eq!(parsed(&records[0])["_gateway"]["key"], "wk-body", "the body's writeKey");

    let reply = http::post(&server.url("/v1/batch"), r#"{"batch":[{"type":"track","event":"x"}]}"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let json = reply.json();
    assert_eq!(
        (json["code"].as_str(), json["error"].as_str()),
        (Some("invalid_events"), Some("invalid_events"))
    );
    assert_eq!(json["rejected"][0]["code"], "missing_user");
    assert!(json["message"].is_string(), "RudderStack's SDK reads code and message");

    for unparseable in ["{\"batch\":[", "[]", "{\"batch\":{}}", "\u{0}", "{\"batch\":[]}"] {
        let reply = http::post(&server.url("/v1/batch"), unparseable).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{unparseable:?}");
        assert!(reply.json()["code"].is_string());
    }
    assert_eq!(emulator.read_all(&stream).await.len(), 1, "nothing more stored");
    let text = metrics(&server).await;
    for line in [
        r#"sdk_events_rejected_total{protocol="segment",reason="missing_user"} 2"#,
        r#"sdk_events_rejected_total{protocol="segment",reason="invalid_event"} 1"#,
        r#"sdk_events_stored_total{protocol="segment"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn single_event_paths_settings_telemetry_and_cors_serve_the_browser_sdk() {
    let emulator = Emulator::start().await;
    let mut config = test_config();
    config.access.cors_allowed_origins = vec!["http://shop.example".into()];
    let (server, stream) = gateway(&emulator, &config).await;

    let preflight = Request::options(server.url("/v1/t"))
        .header("Origin", "http://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization,content-type")
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = http::send(preflight).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.headers["access-control-allow-origin"], "http://shop.example");
    let allowed = reply.headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("Authorization"), "{allowed}");

    // As analytics-next sends it: text/plain, writeKey in the body, no type.
    let event = r#"{"event":"Clicked","userId":"u-7","anonymousId":"a-7","writeKey":"wk-web","sentAt":"2026-11-23T10:00:00.000Z","messageId":"ajs-next-1"}"#;
    let reply = http::post_with(
        &server.url("/v1/t"),
        &[("Content-Type", "text/plain"), ("Origin", "http://shop.example")],
        event,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["access-control-allow-origin"], "http://shop.example");
    let reply = http::post(
        &server.url("/v1/identify/"),
        r#"{"userId":"u-7","traits":{"plan":"pro"}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "with a trailing slash too");

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 2);
    let track = by(&records, "/messageId", "ajs-next-1");
    assert_appended_to(track, event);
    assert_eq!(parsed(track)["type"], "track", "the path's type");
    assert_eq!(parsed(track)["_gateway"]["key"], "wk-web");
    assert_eq!(parsed(by(&records, "/traits/plan", "pro"))["type"], "identify");
    assert!(records.iter().all(|r| r.partition_key == "u-7"));

    let settings = Request::get(server.url("/v1/projects/wk-web/settings"))
        .header("Host", "events.shop.example")
        .header("X-Forwarded-Proto", "https")
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = http::send(settings).await;
    assert_eq!(reply.status, StatusCode::OK);
    let segment_io = &reply.json()["integrations"]["Segment.io"];
    assert_eq!(segment_io["apiKey"], "wk-web");
    assert_eq!(segment_io["apiHost"], "events.shop.example/v1");
    assert_eq!(segment_io["protocol"], "https");

    let reply = http::post(
        &server.url("/v1/m"),
        r#"{"series":[{"type":"Counter","metric":"x","value":1}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(metrics(&server).await.contains("sdk_telemetry_discarded_total 1"));
    assert_eq!(emulator.read_all(&stream).await.len(), 2, "telemetry is not stored");
}

#[tokio::test]
async fn keys_are_checked_in_each_protocols_own_form() {
    let emulator = Emulator::start().await;
    let mut config = test_config();
    config.access.api_keys = vec!["wk-good".into(), "phc_good".into(), "app-good".into()];
    let (server, stream) = gateway(&emulator, &config).await;
    let segment = r#"{"batch":[{"type":"track","event":"e","userId":"u"}]}"#;
    let with_key = r#"{"batch":[{"type":"track","event":"e","userId":"u"}],"writeKey":"wk-good"}"#;
    let posthog = |key: &str| format!(r#"{{"api_key":"{key}","batch":[{{"event":"e","distinct_id":"d"}}]}}"#);
    let snowplow = |aid: &str| format!(r#"{{"schema":"{SCHEMA}","data":[{{"e":"pv","aid":"{aid}","eid":"1"}}]}}"#);
    let url = |path| server.url(path);

    // (path, headers, body, status wanted)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, String, StatusCode);
    let cases: Vec<Case> = vec![
        (
            "/v1/batch",
            vec![("Authorization", basic("wk-good"))],
            segment.into(),
            StatusCode::OK,
        ),
        ("/v1/batch", vec![], with_key.into(), StatusCode::OK),
        (
            "/v1/batch",
            vec![("Authorization", basic("wk-bad"))],
            segment.into(),
            StatusCode::UNAUTHORIZED,
        ),
        ("/v1/batch", vec![], segment.into(), StatusCode::UNAUTHORIZED),
        (
            "/v1/batch",
            vec![("X-Api-Key", "wk-good".into())],
            segment.into(),
            StatusCode::OK,
        ),
        ("/batch/", vec![], posthog("phc_good"), StatusCode::OK),
        ("/batch/", vec![], posthog("phc_bad"), StatusCode::UNAUTHORIZED),
        (
            "/com.snowplowanalytics.snowplow/tp2",
            vec![],
            snowplow("app-good"),
            StatusCode::OK,
        ),
        (
            "/com.snowplowanalytics.snowplow/tp2",
            vec![],
            snowplow("app-bad"),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    let mut stored = 0;
    for (path, headers, body, want) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = http::post_with(&url(path), &headers, body.clone()).await;
        assert_eq!(reply.status, want, "{path} {headers:?} {body}");
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(reply.json()["code"], "unauthorized");
        } else {
            stored += 1;
        }
    }
    let reply = http::get(&server.url("/i?e=pv&aid=app-bad")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = http::get(&server.url("/v1/projects/wk-bad/settings")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(emulator.read_all(&stream).await.len(), stored);
}

#[tokio::test]
async fn posthog_bodies_in_every_form_and_compression() {
    let emulator = Emulator::start().await;
    let (server, stream) = gateway(&emulator, &test_config()).await;

    // posthog-python: a batch envelope, gzip by header.
    let batch = r#"{"api_key":"phc_1","batch":[{"event":"order","distinct_id":"u-1","properties":{"$lib":"posthog-python","n":1},"uuid":"0190aaaa-0000-7000-8000-000000000001","timestamp":"2026-11-23T10:00:00Z"}],"sent_at":"2026-11-23T10:00:02Z"}"#;
    let reply = http::post_with(
        &server.url("/batch/"),
        &[("Content-Encoding", "gzip"), ("Content-Type", "application/json")],
        gzip(batch.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"status": 1}));

    // posthog-js: an array, gzip said only by the query, token in properties.
    let array =
        r#"[{"event":"$pageview","properties":{"distinct_id":"u-2","token":"phc_1","$current_url":"http://x/"}}]"#;
    let reply = http::post_with(
        &server.url("/e/?compression=gzip-js&ip=1&_=1795000000123&ver=1.200.0"),
        &[("Content-Type", "text/plain")],
        gzip(array.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    // One event, gzip found by its magic bytes, key as `token`.
    let single = r#"{"event":"signup","distinct_id":"u-3","token":"phc_1"}"#;
    let reply = http::post(&server.url("/i/v0/e"), gzip(single.as_bytes())).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = http::post(
        &server.url("/capture"),
        r#"{"event":"x","distinct_id":"u-4","api_key":"phc_1"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 4);
    let order = by(&records, "/event", "order");
    assert_eq!(order.partition_key, "phc_1:u-1", "capture's key: token and distinct id");
    let inner = &batch[batch.find("{\"event\"").unwrap()..batch.find("],\"sent_at\"").unwrap()];
    assert_appended_to(order, inner);
    let json = parsed(order);
    assert_eq!(json["sent_at"], "2026-11-23T10:00:02Z");
    assert_eq!(json["token"], "phc_1");
    assert_eq!(
        json["uuid"], "0190aaaa-0000-7000-8000-000000000001",
        "the SDK's uuid kept"
    );
    assert!(json["now"].is_string());
    assert_eq!(json["_gateway"], json!({"protocol": "posthog", "key": "phc_1"}));

    let pageview = by(&records, "/event", "$pageview");
    assert_eq!(pageview.partition_key, "phc_1:u-2");
    let json = parsed(pageview);
    assert_eq!(json["distinct_id"], "u-2", "lifted from properties");
    assert_eq!(json["sent_at"], "2026-11-18T11:06:40.123Z", "from posthog-js's `_`");
    assert_eq!(
        json["uuid"].as_str().unwrap().as_bytes()[14],
        b'7',
        "a v7 uuid when missing"
    );
    assert!(json.get("ip").is_none(), "no IP address unless CLIENT_IP says so");

    assert_eq!(by(&records, "/event", "signup").partition_key, "phc_1:u-3");
    assert_eq!(by(&records, "/event", "x").partition_key, "phc_1:u-4");

    let reply = http::post(
        &server.url("/batch"),
        r#"[{"event":"a","token":"k1","distinct_id":"d"},{"event":"b","token":"k2","distinct_id":"d"}]"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "two projects in one request");
    let reply = http::post(
        &server.url("/batch"),
        r#"[{"event":"a","distinct_id":"d"},{"event":"no id"}]"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["rejected"][0]["code"], "missing_distinct_id");
}

#[tokio::test]
async fn snowplow_post_and_pixel() {
    let emulator = Emulator::start().await;
    let (server, stream) = gateway(&emulator, &test_config()).await;
    let by_duid = r#"{"e":"se","se_ca":"shop","se_ac":"buy","eid":"e-1","duid":"d-1","uid":"u-1","aid":"shop","tv":"py-1.1.0","p":"srv"}"#;
    let by_uid = r#"{"e":"pv","url":"http://x/","eid":"e-2","uid":"u-2","aid":"shop"}"#;
    let by_nothing = r#"{"e":"pv","aid":"shop"}"#;
    let body = format!(r#"{{"schema":"{SCHEMA}","data":[{by_duid},{by_uid},{by_nothing},{{"no":"type"}}]}}"#);
    let reply = http::post_with(
        &server.url("/com.snowplowanalytics.snowplow/tp2"),
        &[("Content-Type", "application/json; charset=utf-8")],
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["rejected"][0]["code"], "missing_event_type");

    let reply =
        http::get(&server.url("/i?e=pv&url=http%3A%2F%2Fshop%2F%3Fq%3D1&eid=e-4&duid=d-4&aid=shop&cx=eyJhIjoxfQ"))
            .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "image/gif");
    assert!(reply.body.starts_with(b"GIF89a"));
    let reply = http::get(&server.url("/i")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "a pixel with no event");

    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 4);
    let first = by(&records, "/eid", "e-1");
    assert_appended_to(first, by_duid);
    assert_eq!(first.partition_key, "d-1", "the domain user id first");
    assert_eq!(
        parsed(first)["_gateway"],
        json!({"protocol": "snowplow", "key": "shop"})
    );
    assert!(parsed(first)["collector_tstamp"].is_string());
    assert_eq!(by(&records, "/eid", "e-2").partition_key, "u-2", "else the user id");
    let generated = records
        .iter()
        .find(|r| parsed(r)["url"].is_null() && parsed(r)["se_ca"].is_null())
        .unwrap();
    assert_eq!(
        generated.partition_key,
        parsed(generated)["eid"],
        "else the (generated) event id"
    );
    let pixel = parsed(by(&records, "/eid", "e-4"));
    assert_eq!(pixel["url"], "http://shop/?q=1", "query values decoded");
    assert_eq!(pixel["cx"], "eyJhIjoxfQ");
}

#[tokio::test]
async fn client_ip_is_added_only_when_configured() {
    let emulator = Emulator::start().await;
    let mut config = test_config();
    config.sdk.client_ip = ClientIp::Forwarded;
    let (server, stream) = gateway(&emulator, &config).await;
    let forwarded = [("X-Forwarded-For", "203.0.113.9, 198.51.100.7")];
    let segment = r#"{"batch":[{"type":"track","event":"e","userId":"u","context":{"library":{"name":"x"}}}]}"#;
    assert_eq!(
        http::post_with(&server.url("/v1/batch"), &forwarded, segment)
            .await
            .status,
        StatusCode::OK
    );
    let posthog = r#"{"api_key":"k","batch":[{"event":"e","distinct_id":"d"}]}"#;
    assert_eq!(
        http::post_with(&server.url("/batch"), &forwarded, posthog).await.status,
        StatusCode::OK
    );
    assert_eq!(http::get(&server.url("/i?e=pv&eid=p-1")).await.status, StatusCode::OK);

    let records = emulator.read_all(&stream).await;
    let segment = parsed(by(&records, "/userId", "u"));
    assert_eq!(segment["context"]["ip"], "198.51.100.7", "the proxy's hop");
    assert_eq!(segment["context"]["library"]["name"], "x");
    assert_eq!(parsed(by(&records, "/distinct_id", "d"))["ip"], "198.51.100.7");
    assert_eq!(
        parsed(by(&records, "/eid", "p-1"))["ip"],
        "127.0.0.1",
        "no header: the peer"
    );
}

#[tokio::test]
async fn limits_give_413_and_nothing_is_stored() {
    let emulator = Emulator::start().await;
    let mut config = test_config();
    config.sdk.body_limits.set("SEGMENT_MAX_BODY_BYTES", 1000);
    config.sdk.max_events = 3;
    let (server, stream) = gateway(&emulator, &config).await;
    let event = r#"{"type":"track","event":"e","userId":"u"}"#;
    let big = format!(
        r#"{{"batch":[{{"type":"track","event":"e","userId":"u","pad":"{}"}}]}}"#,
        "x".repeat(1000)
    );
    let reply = http::post(&server.url("/v1/batch"), big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let four = format!(r#"{{"batch":[{event},{event},{event},{event}]}}"#);
    let reply = http::post(&server.url("/v1/batch"), four).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["code"], "too_many_records");
    let three = format!(r#"{{"batch":[{event},{event},{event}]}}"#);
    assert_eq!(http::post(&server.url("/v1/batch"), three).await.status, StatusCode::OK);
    assert_eq!(emulator.read_all(&stream).await.len(), 3);
}

#[tokio::test]
async fn a_throttled_stream_is_429_with_retry_after_and_an_outage_503() {
    let upstream = FaultUpstream::start(Mode::Throttle).await;
    let mut kinesis = kinesis_config("fake");
    kinesis.max_attempts = std::num::NonZeroU32::new(1).unwrap();
    let sdk = sdk_config(&upstream.endpoint()).await;
    let server = TestServer::start(KinesisSink::new(&sdk, &kinesis)).await;
    let segment = r#"{"batch":[{"type":"track","event":"e","userId":"u"}]}"#;
    let posthog = r#"{"api_key":"k","batch":[{"event":"e","distinct_id":"d"}]}"#;
    for (path, body) in [("/v1/batch", segment), ("/batch/", posthog)] {
        let reply: Reply = http::post(&server.url(path), body).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(reply.headers["retry-after"], "1");
        assert_eq!(reply.json()["code"], "throttled");
    }
    upstream.set(Mode::InternalError);
    let reply = http::post(&server.url("/v1/batch"), segment).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(reply.json()["code"].is_string() && reply.json()["message"].is_string());
}

/// An `OPTIONS` preflight from `origin` asking for `headers`.
fn preflight(url: &str, origin: &str, headers: &str) -> Request<Full<Bytes>> {
    Request::options(url)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", headers)
        .body(Full::<Bytes>::default())
        .unwrap()
}

#[tokio::test]
async fn browsers_on_any_origin_reach_the_sdk_routes_at_the_defaults_and_not_the_import_api() {
    let emulator = Emulator::start().await;
    let config = test_config();
    assert!(config.access.cors_allowed_origins.is_empty(), "the defaults");
    let (server, stream) = gateway(&emulator, &config).await;
    let origin = "http://127.0.0.1:8123";

    // RudderStack's browser SDK preflights its own headers; Snowplow's sends
    // credentials, so the answer must name the origin and allow them.
    for (path, asked) in [
        ("/v1/track", "authorization,anonymousid,content-type,sentat"),
        ("/com.snowplowanalytics.snowplow/tp2", "content-type"),
        ("/e/", "content-type,x-posthog-session-id"),
    ] {
        let reply = http::send(preflight(&server.url(path), origin, asked)).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(reply.headers["access-control-allow-origin"], origin, "{path}");
        assert_eq!(reply.headers["access-control-allow-credentials"], "true", "{path}");
        assert_eq!(reply.headers["access-control-max-age"], "7200", "{path}");
        let allowed = reply.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for header in asked.split(',') {
            assert!(allowed.contains(header), "{path}: {header} in {allowed}");
        }
        let vary: Vec<_> = reply.headers.get_all("vary").iter().collect();
        assert!(vary.iter().any(|v| *v == "Origin"), "{path}: {vary:?}");
    }

    let event = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","eid":"cors-1","duid":"d"}]}"#;
    let reply = http::post_with(
        &server.url("/com.snowplowanalytics.snowplow/tp2"),
        &[("Origin", origin), ("Content-Type", "application/json")],
        event,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["access-control-allow-origin"], origin);
    assert_eq!(reply.headers["access-control-allow-credentials"], "true");
    // The pixel is fetched with credentials by the browser tracker too.
    let pixel = Request::get(server.url("/i?e=pv&eid=cors-2&duid=d"))
        .header("Origin", origin)
        .body(Full::<Bytes>::default())
        .unwrap();
    let reply = http::send(pixel).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["access-control-allow-origin"], origin);
    assert_eq!(reply.headers["access-control-allow-credentials"], "true");
    assert_eq!(emulator.read_all(&stream).await.len(), 2);

    // The gateway's own API stays closed to pages until an operator opens it.
    let reply = http::send(preflight(&server.url("/import"), origin, "content-type")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // CORS does not stop a simple request from being sent: the API refuses it.
    let reply = http::post_with(&server.url("/import"), &[("Origin", origin)], "{}").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "origin_not_allowed");
    assert!(!reply.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn cors_allowed_origins_narrows_the_sdk_routes() {
    let emulator = Emulator::start().await;
    let mut config = test_config();
    config.access.cors_allowed_origins = vec!["https://shop.example".into()];
    let (server, _) = gateway(&emulator, &config).await;
    let reply = http::send(preflight(&server.url("/v1/t"), "https://evil.example", "content-type")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = http::send(preflight(&server.url("/v1/t"), "https://shop.example", "content-type")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.headers["access-control-allow-origin"], "https://shop.example");
}

#[tokio::test]
async fn settings_documents_cannot_be_poisoned_through_the_host_header() {
    let emulator = Emulator::start().await;
    let settings = |server: &TestServer| {
        Request::get(server.url("/v1/projects/wk-web/settings"))
            .header("Host", "evil.example")
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // Without PUBLIC_URL the document follows Host, so no shared cache may keep it.
    let (server, _) = gateway(&emulator, &test_config()).await;
    let reply = http::send(settings(&server)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["integrations"]["Segment.io"]["apiHost"], "evil.example/v1");
    let cache = reply.headers["cache-control"].to_str().unwrap();
    assert!(cache.starts_with("private"), "{cache}");
    let vary: Vec<_> = reply
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(vary.iter().any(|v| v.contains("Host")), "{vary:?}");

    // With it, the Host header is not read at all.
    let mut config = test_config();
    config.sdk.public_url = Some("https://events.shop.example/collect/".parse().unwrap());
    let (server, _) = gateway(&emulator, &config).await;
    let reply = http::send(settings(&server)).await;
    let segment_io = &reply.json()["integrations"]["Segment.io"];
    assert_eq!(segment_io["apiHost"], "events.shop.example/collect/v1");
    assert_eq!(segment_io["protocol"], "https");
    assert_eq!(reply.headers["cache-control"], "public, max-age=60");
}

#[tokio::test]
async fn rudderstacks_browser_sdk_gets_its_source_config_and_its_beacon_is_stored() {
    let emulator = Emulator::start().await;
    let mut config = test_config();
    config.access.api_keys = vec!["wk-rs".into()];
    let (server, stream) = gateway(&emulator, &config).await;
    let source_config = |key: &str| {
        Request::get(server.url(&format!("/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey={key}")))
            .header("Authorization", basic(key))
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let reply = http::send(source_config("wk-rs")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let source = &reply.json()["source"];
    assert_eq!(source["enabled"], true);
    assert_eq!(source["writeKey"], "wk-rs");
    assert_eq!(source["destinations"], json!([]), "no device-mode code to load");
    assert!(source["id"].is_string() && source["config"].is_object());
    assert_eq!(
        http::send(source_config("wk-other")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // With `useBeacon`: a batch, text/plain, the key only in the query.
    let batch = r#"{"batch":[{"type":"track","event":"Clicked","userId":"u-rs","messageId":"rs-1"}],"sentAt":"2026-11-23T10:00:00.000Z"}"#;
    let reply = http::post_with(
        &server.url("/beacon/v1/batch?writeKey=wk-rs"),
        &[("Content-Type", "text/plain")],
        batch,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 1);
    assert_eq!(parsed(&records[0])["_gateway"]["key"], "wk-rs");
    assert_eq!(records[0].partition_key, "u-rs");
}

#[tokio::test]
async fn posthog_js_gets_no_flags_and_nothing_to_load_and_its_beacons_are_stored() {
    let emulator = Emulator::start().await;
    let (server, stream) = gateway(&emulator, &test_config()).await;

    let reply = http::get(&server.url("/array/phc_web/config.js")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/javascript");
    let script = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(script.contains("_POSTHOG_REMOTE_CONFIG"), "{script}");
    assert!(
        script.contains(r#"["phc_web"]"#) || script.contains(r#"c["phc_web"]"#),
        "{script}"
    );
    let reply = http::get(&server.url("/array/phc_web/config")).await;
    let config = reply.json();
    assert_eq!(config["sessionRecording"], false);
    assert_eq!(config["surveys"], false);
    assert_eq!(config["hasFeatureFlags"], false);
    assert_eq!(config["siteApps"], json!([]));
    // A token that tries to leave its string stays inside it.
    let reply = http::get(&server.url("/array/a%22%29%3Balert%281%29%2F%2F/config.js")).await;
    let script = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(!script.contains("\");alert"), "{script}");

    // /flags: gzip in text/plain, as posthog-js sends it.
    let flags = r#"{"token":"phc_web","distinct_id":"u-1","groups":{}}"#;
    let reply = http::post_with(
        &server.url("/flags/?v=2&config=true"),
        &[("Content-Type", "text/plain")],
        gzip(flags.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["flags"], json!({}));
    assert_eq!(reply.json()["featureFlags"], json!({}));
    assert_eq!(
        http::post(&server.url("/decide/?v=3"), flags).await.status,
        StatusCode::OK,
        "the older SDKs' path"
    );

    // sendBeacon on unload: base64 in a form, the send time in the query.
    let events = r#"[{"event":"$pageleave","properties":{"distinct_id":"u-b","token":"phc_web"}}]"#;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("data", &base64::engine::general_purpose::STANDARD.encode(events))
        .finish();
    let reply = http::post_with(
        &server.url("/e/?compression=base64&ver=1.449.2&sent_at=1795000000123"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let records = emulator.read_all(&stream).await;
    assert_eq!(records.len(), 1, "documents are not events");
    let json = parsed(&records[0]);
    assert_eq!(json["event"], "$pageleave");
    assert_eq!(json["sent_at"], "2026-11-18T11:06:40.123Z", "from the query's sent_at");
    assert_eq!(records[0].partition_key, "phc_web:u-b");
}
