//! The `clickstream-gateway` binary: wiring only. Loads `.env`, reads the
//! configuration, starts logging, checks the destination, binds, and serves
//! until SIGTERM or SIGINT.
#![forbid(unsafe_code)]

use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::Context;
use clickstream_gateway::app::App;
use clickstream_gateway::config::{Config, LogFormat};
use tokio::net::TcpListener;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// mimalloc: per-thread free lists instead of glibc's arenas and
/// consolidation; a request's many small allocations cost less (A/B in
/// docs/benchmarks.md, "The hot path"). Its v2 (Cargo.toml): in v3, the
/// crate's default, an aligned allocation (Rust asks for nothing else) that
/// misses the fast path takes an over-allocating one unless its size is a
/// power of two: one allocation in five on the batch doors, at ten times
/// the cost (docs/benchmarks.md, "fourth pass").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck();
    }
    // Real environment variables win: dotenvy never overrides them.
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(e).context("reading .env"),
    }
    let config = Config::from_env()?;
    let (_flush_logs_at_exit, dropped_log_lines) = init_logging(config.log_format);
    let threads = worker_threads(config.worker_threads);
    runtime(threads)
        .context("starting the async runtime")?
        .block_on(serve(config, threads, dropped_log_lines))
}

/// Threads to run requests on: `WORKER_THREADS`, else one per CPU this
/// process may use (std reads its affinity mask and cgroup CPU quota).
fn worker_threads(configured: Option<NonZeroUsize>) -> NonZeroUsize {
    configured
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// tokio's scheduler for `threads`. One thread gets the current-thread
/// scheduler: the multi-thread one on a single worker still pays for work
/// stealing, its idle bookkeeping and its park/unpark protocol, about 7 % of
/// `/import`'s CPU on one core (docs/benchmarks.md). Nothing here blocks a
/// worker or calls `block_in_place`, so the two behave alike otherwise.
fn runtime(threads: NonZeroUsize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads.get() == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads.get());
        builder
    };
    builder.enable_all().build()
}

/// Serves until a shutdown signal, then drains.
async fn serve(config: Config, threads: NonZeroUsize, dropped_log_lines: ErrorCounter) -> anyhow::Result<()> {
    let app = Arc::new(App::from_config(&config).await?);
    app.metrics()
        .count_dropped_log_lines(move || dropped_log_lines.dropped_lines() as u64);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    if let Some(addr) = config.metrics_addr {
        let admin = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding METRICS_ADDR {addr}"))?;
        tracing::info!(%addr, "serving /metrics on the admin address only");
        tokio::spawn(clickstream_gateway::server::serve_metrics(admin, app.clone()));
    }
    log_start(&config, &app, listener.local_addr()?, threads);
    clickstream_gateway::server::run(listener, app, shutdown_signal()).await;
    Ok(())
}

/// Lines a log writer may hold before it drops new ones.
const LOG_BUFFER_LINES: usize = 64 * 1024;

/// Logs go to stdout through a background thread with a bounded buffer: a
/// slow terminal or log shipper never stalls a request; when the buffer is
/// full, lines are dropped and counted (`log_lines_dropped_total`). The guard
/// flushes what is buffered when `main` returns.
fn init_logging(format: LogFormat) -> (WorkerGuard, ErrorCounter) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("log-writer")
        .finish(std::io::stdout());
    let dropped = writer.error_counter();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    (guard, dropped)
}

/// One line with the effective configuration; AWS credentials are never read here.
fn log_start(config: &Config, app: &App, listen: std::net::SocketAddr, threads: NonZeroUsize) {
    let http = &config.http;
    let (sink, target) = (app.sink().kind(), app.sink().target());
    tracing::info!(
        %listen,
        sink,
        target = %target,
        max_record_bytes = app.max_record_bytes(),
        access_log = config.access_log,
        worker_threads = threads.get(),
        header_read_timeout = ?http.header_read_timeout,
        body_read_timeout = ?http.body_read_timeout,
        shutdown_timeout = ?http.shutdown_timeout,
        "listening"
    );
    config.sink.log();
    tracing::info!(
        max_concurrent_calls = config.batch.max_concurrent_calls.get(),
        concurrency = ?config.batch.concurrency,
        "upstream calls"
    );
    if let Some(spill) = &config.spill {
        tracing::info!(
            dir = %spill.dir.display(),
            max_bytes = spill.max_bytes,
            replay_per_second = spill.replay_per_second,
            "durable spill on: records the stream cannot take are fsynced here and replayed"
        );
    }
}

/// `clickstream-gateway healthcheck`: exits 0 when `GET /healthz` on this
/// machine's `PORT` answers 200. For container HEALTHCHECKs in images that
/// have no curl.
fn healthcheck() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let _ = dotenvy::dotenv();
    let port = Config::from_env()?.listen.port();
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    socket.read_to_string(&mut answer)?;
    anyhow::ensure!(
        answer.starts_with("HTTP/1.1 200"),
        "unhealthy: {}",
        answer.lines().next().unwrap_or("")
    );
    Ok(())
}

/// Resolves on the first SIGTERM (Kubernetes, Docker) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler works on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}
