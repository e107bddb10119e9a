//! The HTTP surface over real sockets, with the local file sink: routing,
//! error bodies, HTTP/2, chunked bodies and clients that stall.

mod common;

use std::time::Duration;

use bytes::Bytes;
use clickstream_gateway::sink::file::FileSink;
use common::TestServer;
use common::http;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn file_server() -> (TestServer, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("gateway-http-test-{}.ndjson", uuid::Uuid::new_v4()));
    let server = TestServer::start(FileSink::open(&path).unwrap()).await;
    (server, path)
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn routing_answers_404_405_and_health() {
    let (server, _) = file_server().await;
    let missing = http::get(&server.url("/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"], "not_found");

    let wrong = http::get(&server.url("/import")).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers["allow"], "POST, OPTIONS");
    assert_eq!(wrong.json()["error"], "method_not_allowed");

    let wrong = http::post(&server.url("/healthz"), "x").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers["allow"], "GET, HEAD");

    assert_eq!(http::get(&server.url("/healthz")).await.status, StatusCode::OK);
    let ready = http::get(&server.url("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["warning"], "records are NOT going to Kinesis");
}

#[tokio::test]
async fn the_file_sink_answers_like_kinesis() {
    let (server, path) = file_server().await;
    let reply = http::post(&server.url("/import"), "hello").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["ShardId"], "shardId-000000000000");
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
    assert_eq!(line["SequenceNumber"], reply.json()["SequenceNumber"]);
    assert_eq!(line["Data"], "aGVsbG8=");
}

#[tokio::test]
async fn cleartext_http2_works_on_the_same_port() {
    let (server, _) = file_server().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = Request::post(server.url("/import")).body(Full::from("h2")).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_and_not_stored() {
    let (server, path) = file_server().await;
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let frames = (0..20).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone())));
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let response = client
        .request(Request::post(server.url("/import")).body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(lines(&path), 0);
}

/// Writes `bytes` on a raw connection, then waits for the server to answer or close.
async fn raw_exchange(server: &TestServer, bytes: &[u8]) -> String {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("the server must close a stalled connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_cut_off() {
    let (server, path) = file_server().await;
    // A head sent in two parts, the second well within the timeout, is served:
    // the server waits for a head rather than closing early.
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(b"POST /import HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    tokio::task::yield_now().await;
    socket
        .write_all(b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
        .await
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A head that never completes is cut off (the 2 s header timeout here).
    let answer = raw_exchange(&server, b"POST /import HTTP/1.1\r\nHost: x\r\n").await;
    // hyper answers 408 or just closes; either way the connection is released.
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(lines(&path), 1, "only the complete request was stored");
}

#[tokio::test]
async fn a_client_that_stalls_in_its_body_gets_408_and_nothing_is_stored() {
    let (server, path) = file_server().await;
    let answer = raw_exchange(
        &server,
        b"POST /import HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"half\":",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(lines(&path), 0);
}

#[tokio::test]
async fn the_server_keeps_serving_while_clients_stall() {
    let (server, path) = file_server().await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket
            .write_all(b"POST /import HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
            .await
            .unwrap();
        stalled.push(socket);
    }
    // The stalled requests hold request slots, yet a complete one is served
    // and stored while they wait.
    let app = server.app.clone();
    common::eventually("all 50 stalled requests are in flight", Duration::from_secs(10), || {
        let text = app.metrics().render();
        async move { text.contains("http_requests_in_flight 50\n") }
    })
    .await;
    assert_eq!(http::post(&server.url("/import"), "ok").await.status, StatusCode::OK);
    assert_eq!(lines(&path), 1);
    // Then every stalled one gets its 408 and nothing of theirs is stored.
    for mut socket in stalled {
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut answer))
            .await
            .expect("a stalled body is answered, not held forever")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert_eq!(lines(&path), 1);
}

#[tokio::test]
async fn a_client_error_before_the_body_keeps_a_keep_alive_connection() {
    let (server, path) = file_server().await;
    // Two pipelined requests: the first is refused for its empty
    // X-Partition-Key before its body is read; the second must still be served
    // on the same connection.
    // The body follows the head in a later segment, as a client that writes
    // head and body separately sends it, so it is not yet buffered when the
    // answer is ready.
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"POST /import HTTP/1.1\r\nHost: x\r\nX-Partition-Key: \r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket
        .write_all(b"firstPOST /import HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    // Bodies have no trailing newline: find each status line where it starts.
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| answer[at..].lines().next().unwrap())
        .collect();
    assert_eq!(statuses, ["HTTP/1.1 400 Bad Request", "HTTP/1.1 200 OK"], "{answer}");
    assert!(answer.contains("invalid_partition_key"), "{answer}");
    assert_eq!(lines(&path), 1, "only the second request was stored");
}
