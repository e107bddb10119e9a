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
    common::eventually("the request reaches the upstream", Duration::from_secs(10), || {
        let calls = upstream.calls();
        async move { calls >= 2 }
    })
    .await;
    let stopped = server.begin_shutdown();
    let app = server.app.clone();
    common::eventually("readiness turns to not ready", Duration::from_secs(5), || {
        let app = app.clone();
        async move { !app.readiness().await.ready }
    })
    .await;
    let addr = server.addr;
    common::eventually("new connections are refused", Duration::from_secs(5), || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;

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
