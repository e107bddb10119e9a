//! `/metrics` after known traffic: exact counter values, valid exposition
//! format, request ids.

mod common;

use std::collections::HashMap;

use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::{TestServer, http, kinesis_config, sdk_config, test_config};
use hyper::{Request, StatusCode};

async fn gateway(upstream: &FaultUpstream, batching: bool) -> TestServer {
    let mut config = test_config();
    config.batch.enabled = batching;
    let mut kinesis = kinesis_config("fake");
    kinesis.max_attempts = std::num::NonZeroU32::new(1).unwrap();
    let sdk = sdk_config(&upstream.endpoint()).await;
    TestServer::start_with(KinesisSink::new(&sdk, &kinesis), &config).await
}

/// Scrapes `/metrics`, checks it parses, and returns `name{labels}` -> value.
async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let reply = http::get(&server.url("/metrics")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics output ends with # EOF");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    let mut samples = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<_> = sample.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        samples.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    samples
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        let mut known: Vec<_> = samples.keys().collect();
        known.sort();
        panic!("no sample {key}; have:\n{known:#?}")
    })
}

#[tokio::test]
async fn counters_match_the_traffic_sent() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream, true).await;
    for _ in 0..3 {
        assert_eq!(http::post(&server.url("/import"), "event").await.status, StatusCode::OK);
    }
    assert_eq!(
        http::post(&server.url("/import"), "").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(http::get(&server.url("/nope")).await.status, StatusCode::NOT_FOUND);
    upstream.set(Mode::Throttle);
    assert_eq!(
        http::post(&server.url("/import"), "event").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let m = scrape(&server).await;
    let requests = |labels: &str| value(&m, &format!("http_requests_total{{{labels}}}"));
    assert_eq!(
        requests(r#"error="",method="POST",route="/import",status_class="2xx""#),
        3.0
    );
    assert_eq!(
        requests(r#"error="empty_body",method="POST",route="/import",status_class="4xx""#),
        1.0
    );
    assert_eq!(
        requests(r#"error="not_found",method="GET",route="other",status_class="4xx""#),
        1.0
    );
    assert_eq!(
        requests(r#"error="throttled",method="POST",route="/import",status_class="5xx""#),
        1.0
    );
    assert_eq!(
        value(&m, r#"upstream_calls_total{operation="PutRecords",outcome="success"}"#),
        3.0
    );
    assert_eq!(
        value(
            &m,
            r#"upstream_calls_total{operation="PutRecords",outcome="throttled"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, "upstream_records_per_call_count{}"), 4.0);
    assert_eq!(value(&m, "http_request_body_bytes_count{}"), 4.0);
    assert_eq!(value(&m, "upstream_calls_in_flight{}"), 0.0);
    // The scrape itself is in flight while the registry is rendered.
    assert_eq!(value(&m, "http_requests_in_flight{}"), 1.0);
    assert!(m.keys().any(|k| k.starts_with("gateway_build_info{")));
    assert!(value(&m, "process_start_time_seconds{}") > 1.7e9);
}

#[tokio::test]
async fn unbatched_calls_are_counted_as_put_record() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream, false).await;
    for _ in 0..2 {
        assert_eq!(http::post(&server.url("/import"), "event").await.status, StatusCode::OK);
    }
    let m = scrape(&server).await;
    assert_eq!(
        value(&m, r#"upstream_calls_total{operation="PutRecord",outcome="success"}"#),
        2.0
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream, true).await;
    let generated = http::post(&server.url("/import"), "event").await;
    assert_eq!(generated.headers["x-request-id"].len(), 36);
    let request = Request::get(server.url("/nope"))
        .header("X-Request-Id", "abc-123")
        .body(Default::default());
    let echoed = http::send(request.unwrap()).await;
    assert_eq!(echoed.headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn metrics_addr_moves_metrics_off_the_public_port() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let mut config = test_config();
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let sdk = sdk_config(&upstream.endpoint()).await;
    let server = TestServer::start_with(KinesisSink::new(&sdk, &kinesis_config("fake")), &config).await;
    assert_eq!(http::get(&server.url("/metrics")).await.status, StatusCode::NOT_FOUND);

    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(clickstream_gateway::server::serve_metrics(admin, server.app.clone()));
    assert_eq!(http::post(&server.url("/import"), "event").await.status, StatusCode::OK);
    let scraped = http::get(&format!("http://{admin_addr}/metrics")).await;
    assert_eq!(scraped.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&scraped.body);
    assert!(
        text.contains(r#"http_requests_total{route="/import",method="POST",status_class="2xx",error=""} 1"#),
        "{text}"
    );
    assert_eq!(
        http::get(&format!("http://{admin_addr}/import")).await.status,
        StatusCode::NOT_FOUND
    );
}
