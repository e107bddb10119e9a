//! Graceful shutdown: a request in flight when shutdown starts still gets its
//! Kinesis answer; readiness turns 503 at once; new connections are refused.

mod common;

use std::time::Duration;

use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::{TestServer, http, kinesis_config, sdk_config};
use hyper::StatusCode;
use tokio::net::TcpStream;

#[tokio::test]
async fn in_flight_requests_finish_and_new_connections_are_refused() {
    let upstream = FaultUpstream::start(Mode::Healthy).await;
    let sdk = sdk_config(&upstream.endpoint()).await;
    let mut server = TestServer::start(KinesisSink::new(&sdk, &kinesis_config("fake"))).await;
    upstream.set(Mode::Slow(Duration::from_millis(600)));

    let url = server.url("/import");
    let in_flight = tokio::spawn(async move { http::post(&url, "in flight").await });
    // Let the request reach the (slow) upstream before shutting down.
    while upstream.calls() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert!(!server.app.readiness().await.ready, "not ready once shutdown began");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "new connections are refused"
    );

    let reply = in_flight.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the in-flight record was stored and acknowledged"
    );
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("drained promptly")
        .unwrap();
}
