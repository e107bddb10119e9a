//! Upstream faults an emulator cannot make, from a Kinesis-protocol fake:
//! every failure is a non-2xx that says whether to retry, never a hang.

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::http;
use common::{TestServer, kinesis_config, sdk_config};
use hyper::StatusCode;

/// A gateway whose Kinesis client has short attempts and two of them; the
/// operation timeout leaves room for the SDK's backoff (up to 1 s) between them.
async fn gateway(upstream: &FaultUpstream) -> TestServer {
    let mut config = kinesis_config("fake");
    config.attempt_timeout = Some(Duration::from_millis(300));
    config.operation_timeout = Duration::from_millis(2500);
    config.max_attempts = NonZeroU32::new(2).unwrap();
    let sdk = sdk_config(&upstream.endpoint()).await;
    TestServer::start(KinesisSink::new(&sdk, &config)).await
}

async fn import(server: &TestServer) -> http::Reply {
    http::post(&server.url("/import"), r#"{"event":"x"}"#).await
}

fn assert_retry_later(reply: &http::Reply, code: &str) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", reply.json());
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(reply.json()["error"], code);
}

#[tokio::test]
async fn throttling_is_retried_then_503_with_retry_after() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream).await;
    upstream.set(Mode::Throttle);
    let before = upstream.calls();
    assert_retry_later(&import(&server).await, "throttled");
    assert_eq!(upstream.calls() - before, 2, "KINESIS_MAX_ATTEMPTS=2 attempts");
}

#[tokio::test]
async fn kinesis_500s_are_503() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream).await;
    upstream.set(Mode::InternalError);
    assert_retry_later(&import(&server).await, "unavailable");
}

#[tokio::test]
async fn a_stalled_upstream_answers_503_within_the_operation_timeout() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream).await;
    upstream.set(Mode::Stall);
    // The upstream never answers; only the gateway's 2.5 s operation timeout
    // (the SDK has none by default) can end the request before this guard.
    let reply = tokio::time::timeout(Duration::from_secs(20), import(&server))
        .await
        .expect("the operation timeout must end a stalled call");
    assert_retry_later(&reply, "unavailable");
}

#[tokio::test]
async fn a_dropped_connection_is_503_never_2xx() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream).await;
    upstream.set(Mode::Drop);
    assert_retry_later(&import(&server).await, "unavailable");
}

#[tokio::test]
async fn a_missing_stream_is_502_and_a_refused_record_400() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream).await;
    upstream.set(Mode::StreamMissing);
    let reply = import(&server).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(!reply.headers.contains_key("retry-after"));
    upstream.set(Mode::InvalidArgument);
    let reply = import(&server).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "record_rejected");
}

#[tokio::test]
async fn an_outage_is_503_and_unready_then_recovers() {
    let mut upstream = FaultUpstream::start(Mode::Healthy).await;
    let server = gateway(&upstream).await;
    assert_eq!(import(&server).await.status, StatusCode::OK);
    assert_eq!(http::get(&server.url("/readyz")).await.status, StatusCode::OK);

    upstream.stop();
    assert_retry_later(&import(&server).await, "unavailable");
    // The failed put clears "recently stored"; the probe then asks the stream
    // (once the 200 ms cache has expired) and finds it unreachable.
    let url = server.url("/readyz");
    common::eventually("/readyz turns 503", Duration::from_secs(10), || async {
        http::get(&url).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(
        http::get(&server.url("/healthz")).await.status,
        StatusCode::OK,
        "the process keeps serving"
    );

    upstream.restart().await;
    assert_eq!(import(&server).await.status, StatusCode::OK);
    let ready = http::get(&server.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK, "a stored record makes it ready at once");
}
