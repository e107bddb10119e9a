//! The live view over real sockets, with records going to a Kinesis
//! emulator: who may open it, what a viewer sees of events and refusals,
//! a viewer that stops reading, `METRICS_ADDR`, and shutdown with a viewer
//! open. (The page itself is driven in headless Chromium by
//! `suites/live/live.mjs`.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Emulator, TestServer, eventually, http, test_config};
use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "live-view-token-0123456789";

async fn gateway(configure: impl FnOnce(&mut clickstream_gateway::config::Config)) -> (TestServer, Emulator) {
    let emulator = Emulator::start().await;
    let stream = emulator.create_stream(1).await;
    let mut config = test_config();
    config.live.admin_token = Some(TOKEN.into());
    configure(&mut config);
    let server = TestServer::start_with(emulator.sink(&stream), &config).await;
    (server, emulator)
}

/// A viewer of `/live/events` on a raw socket, reading frames as they come.
struct Viewer {
    socket: TcpStream,
    buffer: Vec<u8>,
}

impl Viewer {
    async fn open(addr: std::net::SocketAddr, query: &str) -> Self {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /live/events{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nOrigin: https://evil.example\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut viewer = Viewer {
            socket,
            buffer: Vec::new(),
        };
        let head = viewer.until(b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(
            !head.contains("access-control-allow"),
            "no CORS on the live view: {head}"
        );
        viewer
    }

    async fn until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buffer.windows(end.len()).position(|w| w == end) {
                let rest = self.buffer.split_off(at + end.len());
                return std::mem::replace(&mut self.buffer, rest);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), self.socket.read(&mut chunk))
                .await
                .expect("a frame within 10 s")
                .unwrap();
            assert!(n > 0, "the stream ended");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame of `kind` (chunked framing lines are skipped).
    async fn next(&mut self, kind: &str) -> Value {
        loop {
            let frame = String::from_utf8(self.until(b"\n\n").await).unwrap();
            let mut lines = frame
                .lines()
                .filter(|l| l.starts_with("event: ") || l.starts_with("data: "));
            let (Some(event), Some(data)) = (lines.next(), lines.next()) else {
                continue;
            };
            if event == format!("event: {kind}") {
                return serde_json::from_str(&data["data: ".len()..]).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn without_an_admin_token_the_view_is_off() {
    let (server, _emulator) = gateway(|config| config.live.admin_token = None).await;
    for path in ["/live", "/live/events", "/live/live.js"] {
        assert_eq!(
            http::get(&server.url(path)).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn only_the_token_or_the_sign_in_cookie_opens_it() {
    let (server, _emulator) = gateway(|_| {}).await;
    let page = http::get(&server.url("/live")).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&page.body).contains("<form method=\"post\" action=\"/live\">"));
    assert_eq!(
        http::get(&server.url("/live/events")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = [("authorization", "Bearer live-view-token-012345678")];
    assert_eq!(
        http::send(get_with(&server.url("/live/events"), &wrong)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let refused = http::post_with(&server.url("/live"), &form, "token=guess").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.headers.get("set-cookie").is_none());

    let signed_in = http::post_with(&server.url("/live"), &form, format!("token={TOKEN}")).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let cookie = signed_in.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["Path=/live", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds a digest, not the token: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let opened = http::send(get_with(
        &server.url("/live"),
        &[("cookie", pair), ("origin", "https://evil.example")],
    ))
    .await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&opened.body).contains("<script src=\"/live/live.js\""));
    assert_eq!(opened.headers["x-frame-options"], "DENY");
    let csp = opened.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(opened.headers.get("access-control-allow-origin").is_none());
    let tampered = pair.replace(|c: char| c.is_ascii_digit(), "0");
    let refused = http::send(get_with(&server.url("/live"), &[("cookie", &tampered)])).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

fn get_with(url: &str, headers: &[(&str, &str)]) -> hyper::Request<http_body_util::Full<Bytes>> {
    let mut request = hyper::Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(http_body_util::Full::default()).unwrap()
}

#[tokio::test]
async fn a_viewer_sees_events_and_refusals_as_they_were_sent_and_answered() {
    let (server, _emulator) = gateway(|_| {}).await;
    let mut viewer = Viewer::open(server.addr, "").await;
    let hello = viewer.next("hello").await;
    assert_eq!(hello["payloads"], true);

    let sent = r#"{"event":"Order Completed","userId":"u-42"}"#;
    let stored = http::post_with(&server.url("/import"), &[("x-api-key", "api-key-0123456789")], sent).await;
    assert_eq!(stored.status, StatusCode::OK);
    let event = viewer.next("event").await;
    assert_eq!(event["door"], "/import");
    assert_eq!(event["payload"], sent);
    assert_eq!(event["bytes"], sent.len());
    let key = event["key"].as_str().unwrap();
    assert!(key.starts_with("api-…") && !key.contains("0123456789"), "{key}");

    let segment = r#"{"writeKey":"wk_live_secret_key","batch":[{"type":"track","event":"Viewed","userId":"u-7","messageId":"m-1"}]}"#;
    let reply = http::post_with(
        &server.url("/v1/batch"),
        &[("content-type", "application/json")],
        segment,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let event = viewer.next("event").await;
    assert_eq!(
        (event["door"].as_str(), event["protocol"].as_str()),
        (Some("/v1/batch"), Some("segment"))
    );
    assert_eq!(event["partition_key"], "u-7");
    let payload: Value = serde_json::from_str(event["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["messageId"], "m-1");
    assert!(!event.to_string().contains("wk_live_secret_key"), "{event}");

    let bad = http::post(&server.url("/import/batch"), r#"[{"a":1},{bad"#).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let refused = viewer.next("refused").await;
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["code"], bad.json()["code"]);
    assert_eq!(refused["message"], bad.json()["message"]);
    assert_eq!(refused["door"], "/import/batch");

    let state = viewer.next("state").await;
    assert_eq!(state["counts"]["doors"]["/import"], 1);
    assert_eq!(state["counts"]["protocols"]["segment"], 1);
    assert_eq!(state["counts"]["refused"], 1);
    assert_eq!(state["sink"]["kind"], "kinesis");
    assert_eq!(state["sink"]["ready"], true);
}

#[tokio::test]
async fn filters_are_applied_before_sampling() {
    let (server, _emulator) = gateway(|_| {}).await;
    let mut viewer = Viewer::open(server.addr, "?door=%2Fimport&q=needle").await;
    viewer.next("hello").await;
    for body in [r#"{"a":"hay"}"#, r#"{"a":"needle"}"#] {
        assert_eq!(http::post(&server.url("/import"), body).await.status, StatusCode::OK);
    }
    let batch = http::post(&server.url("/import/batch"), r#"[{"a":"needle in a batch"}]"#).await;
    assert_eq!(batch.status, StatusCode::OK);
    assert_eq!(
        http::post(&server.url("/import"), r#"{"a":"needle 2"}"#).await.status,
        StatusCode::OK
    );
    assert_eq!(viewer.next("event").await["payload"], r#"{"a":"needle"}"#);
    assert_eq!(viewer.next("event").await["payload"], r#"{"a":"needle 2"}"#);
}

#[tokio::test]
async fn a_viewer_that_stops_reading_is_dropped_and_the_gateway_keeps_serving() {
    let (server, _emulator) = gateway(|config| config.live.events_per_second = 10_000).await;
    // Opened, then never read again: the kernel's buffers fill, then its queue.
    let _stalled = Viewer::open(server.addr, "").await;
    eventually("the viewer joined", Duration::from_secs(5), || async {
        server.app.live().viewers() == 1
    })
    .await;
    let event = format!("{{\"pad\":\"{}\"}}", "x".repeat(1900));
    let batch = format!("[{}]", vec![event; 400].join(","));
    let mut sent = 0;
    while server.app.live().viewers() > 0 {
        assert!(sent < 200, "still watching after {sent} batches of 400 events");
        let reply = http::post(&server.url("/import/batch"), batch.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
        sent += 1;
    }
    assert!(!server.app.live().watched());
    // Another viewer can join and is served.
    let mut fresh = Viewer::open(server.addr, "").await;
    fresh.next("hello").await;
    assert_eq!(http::post(&server.url("/import"), "{}").await.status, StatusCode::OK);
    assert_eq!(fresh.next("event").await["payload"], "{}");
}

#[tokio::test]
async fn metrics_addr_moves_the_view_to_the_admin_port() {
    let (server, _emulator) = gateway(|config| config.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let bearer = format!("Bearer {TOKEN}");
    let headers = [("authorization", bearer.as_str())];
    assert_eq!(
        http::send(get_with(&server.url("/live"), &headers)).await.status,
        StatusCode::NOT_FOUND
    );
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(clickstream_gateway::server::serve_metrics(admin, server.app.clone()));
    let page = http::send(get_with(&format!("http://{admin_addr}/live"), &headers)).await;
    assert_eq!(page.status, StatusCode::OK);
    let mut viewer = Viewer::open(admin_addr, "").await;
    viewer.next("hello").await;
    assert_eq!(
        http::post(&server.url("/import"), "{\"on\":\"public\"}").await.status,
        StatusCode::OK
    );
    assert_eq!(viewer.next("event").await["payload"], "{\"on\":\"public\"}");
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_an_open_viewer() {
    let (mut server, _emulator) = gateway(|_| {}).await;
    let mut viewer = Viewer::open(server.addr, "").await;
    viewer.next("hello").await;
    let started = std::time::Instant::now();
    let stopped = server.begin_shutdown();
    // The shutdown deadline is 10 s in tests; the stream ends within a second or two.
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("the server stops before its shutdown deadline")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}
