//! The HTTP server: accepts connections on a bound listener, serves HTTP/1.1
//! (keep-alive) and cleartext HTTP/2 on the same port, and shuts down
//! gracefully.
//!
//! Shutdown, once the `shutdown` future resolves: readiness turns 503, the
//! listener is closed (new connections are refused), in-flight requests run to
//! completion (their calls to the stream included) while idle keep-alive
//! connections are closed, and after `SHUTDOWN_TIMEOUT_MS` whatever is left is
//! abandoned so the process can exit.
//!
//! Past `MAX_CONNECTIONS` open connections, a new one is answered 503 and
//! closed. `HEADER_READ_TIMEOUT_MS` also closes idle keep-alive connections:
//! hyper runs that timer whenever a connection waits for a request head.

use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Duration, sleep, timeout};

use crate::api;
use crate::app::App;
use crate::config::ClientIp;
use crate::metrics::GaugeGuard;

/// The most bytes one HTTP/1 connection buffers before its handler reads them.
const CONNECTION_BUFFER: usize = 64 * 1024;

/// HTTP/2 streams one connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Serves `listener` until `shutdown` resolves, then drains within the deadline.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.http().header_read_timeout)
        // Bytes a connection reads ahead of its handler: hyper's default
        // (~400 KiB) lets each of thousands of connections buffer a large
        // body outside MAX_IN_FLIGHT_BODY_BYTES.
        .max_buf_size(CONNECTION_BUFFER)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let graceful = GracefulShutdown::new();
    let connection_slots = Arc::new(Semaphore::new(app.http().max_connections.get()));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let Ok(slot) = connection_slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let service_app = app.clone();
        // The peer's address, for records only when `CLIENT_IP` asks for it:
        // the first extension costs every request a map allocation.
        let wants_peer = app.doors().sdk().client_ip != ClientIp::Off;
        let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            if wants_peer {
                request.extensions_mut().insert(crate::endpoints::Peer(peer));
            }
            api::handle(service_app.clone(), request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = GaugeGuard::inc(app.metrics().connections_open());
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }

    app.begin_shutdown();
    drop(listener);
    tracing::info!(deadline = ?app.http().shutdown_timeout, "shutting down: draining in-flight requests");
    match timeout(app.http().shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown deadline passed; abandoning the connections still open"),
    }
}

/// Answers a connection over `MAX_CONNECTIONS` with a 503 and closes it.
/// What the client already sent is read first (briefly), so the close does
/// not reset the connection under the answer.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = r#"{"error":"overloaded","code":"overloaded","message":"the gateway has too many connections open; retry later"}"#;
    let mut scratch = [0u8; 4096];
    let _ = timeout(Duration::from_millis(100), stream.read(&mut scratch)).await;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves `/metrics` and the live view (and nothing else) on a separate
/// admin listener, for `METRICS_ADDR`. Runs until the process exits.
pub async fn serve_metrics(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        let service =
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| api::admin(app.clone(), request));
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    }
}
