//! What a request really holds, measured: a counting allocator around the
//! system's, and for each door, body form and shape of events (tiny, large,
//! mixed) the bytes the gateway allocated at the request's peak held against
//! the most it reserved from `MAX_IN_FLIGHT_BODY_BYTES` at once.
//!
//! Only the gateway's threads are counted: the fake stream and the client
//! run on threads marked uncounted. The stream answers after 300 ms, so every
//! call of a request is in flight at once (the most a request holds) and the
//! reservation can be read while the request waits.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Set on the threads of the test's own side (the fake stream, the client).
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    UNCOUNTED.try_with(|u| !u.get()).unwrap_or(true)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counted() {
            let size = layout.size() as isize;
            let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if counted() {
            CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clickstream_gateway::sink::kinesis::KinesisSink;
use common::fault::{FaultUpstream, Mode};
use common::{TestServer, kinesis_config, sdk_config, test_config};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `f` with this thread's allocations uncounted.
fn uncounted<T>(f: impl FnOnce() -> T) -> T {
    UNCOUNTED.set(true);
    let out = f();
    UNCOUNTED.set(false);
    out
}

/// The test's own side: the fake stream and the client.
fn outside() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(|| UNCOUNTED.set(true))
        .build()
        .unwrap()
}

/// Sends `raw` on a new connection; the status and the whole answer.
async fn send_raw(addr: SocketAddr, raw: Arc<Vec<u8>>) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&raw).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    (status, out)
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

/// A request to `path` with `body`, plain or gzipped.
fn request(path: &str, content_type: &str, body: &[u8], gzipped: bool) -> Vec<u8> {
    let body = if gzipped { gzip(body) } else { body.to_vec() };
    let encoding = if gzipped { "Content-Encoding: gzip\r\n" } else { "" };
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    raw
}

/// The shapes of events: how many, and each one's padding in bytes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// As many minimal events as the door takes.
    Tiny,
    /// Four events of ~400 KB (~150 KB where the door takes 1 MiB).
    Large,
    /// 1,000 events (500 on `/import/batch`), minimal and ~4 KB in turn
    /// (~1.5 KB where the door takes 1 MiB).
    Mixed,
    /// 100 events of ~1 KB, as the benchmark sends.
    Typical,
}

impl Shape {
    fn pads(self, door: &Door) -> Vec<usize> {
        let max_events = door.max_events;
        match self {
            Shape::Tiny => vec![0; max_events],
            Shape::Large => vec![door.large; 4],
            Shape::Mixed => (0..1000.min(max_events))
                .map(|i| if i % 2 == 0 { 0 } else { door.large / 100 })
                .collect(),
            Shape::Typical => vec![1000; 100],
        }
    }
}

fn pad(n: usize) -> Option<String> {
    (n > 0).then(|| "p".repeat(n))
}

/// A door and how its bodies are written.
struct Door {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    max_events: usize,
    /// The size of a large event: four fit in the door's body limit.
    large: usize,
    body: fn(&[usize]) -> Vec<u8>,
}

fn segment(pads: &[usize]) -> Vec<u8> {
    let events: Vec<_> = pads
        .iter()
        .map(|&n| match pad(n) {
            None => json!({"type": "track", "event": "e", "userId": "u"}),
            Some(p) => json!({"type": "track", "event": "e", "userId": "u", "properties": {"p": p}}),
        })
        .collect();
    serde_json::to_vec(&json!({"batch": events})).unwrap()
}

fn posthog(pads: &[usize]) -> Vec<u8> {
    let events: Vec<_> = pads
        .iter()
        .map(|&n| match pad(n) {
            None => json!({"event": "e", "distinct_id": "u"}),
            Some(p) => json!({"event": "e", "distinct_id": "u", "properties": {"p": p}}),
        })
        .collect();
    serde_json::to_vec(&json!({"api_key": "phc_memory", "batch": events})).unwrap()
}

fn snowplow(pads: &[usize]) -> Vec<u8> {
    let events: Vec<_> = pads
        .iter()
        .map(|&n| match pad(n) {
            None => json!({"e": "pv", "aid": "a"}),
            Some(p) => json!({"e": "pv", "aid": "a", "url": p}),
        })
        .collect();
    let schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";
    serde_json::to_vec(&json!({"schema": schema, "data": events})).unwrap()
}

fn import_events(pads: &[usize]) -> Vec<serde_json::Value> {
    pads.iter()
        .map(|&n| match pad(n) {
            None => json!({"a": 1}),
            Some(p) => json!({"a": 1, "p": p}),
        })
        .collect()
}

fn import_array(pads: &[usize]) -> Vec<u8> {
    serde_json::to_vec(&import_events(pads)).unwrap()
}

fn import_ndjson(pads: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in import_events(pads) {
        serde_json::to_writer(&mut out, &event).unwrap();
        out.push(b'\n');
    }
    out
}

const DOORS: &[Door] = &[
    Door {
        name: "/import/batch (array)",
        path: "/import/batch",
        content_type: "application/json",
        max_events: 500,
        large: 400_000,
        body: import_array,
    },
    Door {
        name: "/import/batch (NDJSON)",
        path: "/import/batch",
        content_type: "application/x-ndjson",
        max_events: 500,
        large: 400_000,
        body: import_ndjson,
    },
    Door {
        name: "Segment /v1/batch",
        path: "/v1/batch",
        content_type: "application/json",
        max_events: 10_000,
        large: 400_000,
        body: segment,
    },
    Door {
        name: "PostHog /batch/",
        path: "/batch/",
        content_type: "application/json",
        max_events: 10_000,
        large: 400_000,
        body: posthog,
    },
    Door {
        name: "Snowplow tp2",
        path: "/com.snowplowanalytics.snowplow/tp2",
        content_type: "application/json",
        max_events: 10_000,
        large: 150_000,
        body: snowplow,
    },
];

/// What one request cost: the most it reserved, and the most the gateway
/// allocated beyond what it held before the request.
struct Measured {
    status: u16,
    reserved: usize,
    allocated: usize,
}

fn measure(server: &TestServer, out: &tokio::runtime::Runtime, raw: Arc<Vec<u8>>) -> Measured {
    let budget = server.app.http().max_in_flight_body_bytes.get();
    let app = server.app.clone();
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let done = Arc::new(AtomicBool::new(false));
    let watching = done.clone();
    // Polls the budget while the request runs: the most it held at once.
    let watcher = std::thread::spawn(move || {
        UNCOUNTED.set(true);
        let mut most = 0;
        while !watching.load(Ordering::SeqCst) {
            most = most.max(budget - app.in_flight().budget().available_permits());
            std::thread::sleep(Duration::from_micros(200));
        }
        most
    });
    let (status, _) = uncounted(|| out.block_on(send_raw(server.addr, raw)));
    done.store(true, Ordering::SeqCst);
    let reserved = watcher.join().unwrap();
    let allocated = (PEAK.load(Ordering::SeqCst) - before).max(0) as usize;
    Measured {
        status,
        reserved,
        allocated,
    }
}

/// For each door, body form and shape, the reservation covers what the
/// gateway allocated at the request's peak.
#[test]
fn every_request_reserves_at_least_what_it_holds_at_its_peak() {
    let out = outside();
    let upstream = uncounted(|| out.block_on(FaultUpstream::start(Mode::Slow(Duration::from_millis(300)))));
    let gateway = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = upstream.endpoint();
    let server = gateway.block_on(async move {
        let sdk = sdk_config(&endpoint).await;
        TestServer::start_with(KinesisSink::new(&sdk, &kinesis_config("memory")), &test_config()).await
    });
    // Warm the connection pool and the runtime's lazy state first.
    let warm = request("/import/batch", "application/json", &import_array(&[0; 500]), false);
    let _ = measure(&server, &out, Arc::new(warm));

    let mut failures = Vec::new();
    println!("| door | shape | body | status | reserved | allocated at peak | ratio |");
    for door in DOORS {
        for shape in [Shape::Tiny, Shape::Large, Shape::Mixed, Shape::Typical] {
            for gzipped in [false, true] {
                let body = (door.body)(&shape.pads(door));
                let raw = Arc::new(request(door.path, door.content_type, &body, gzipped));
                let m = measure(&server, &out, raw);
                let form = if gzipped { "gzip" } else { "plain" };
                println!(
                    "| {} | {shape:?} | {form} | {} | {} | {} | {:.2} |",
                    door.name,
                    m.status,
                    m.reserved,
                    m.allocated,
                    m.allocated as f64 / m.reserved.max(1) as f64
                );
                if m.status != 200 || m.allocated > m.reserved {
                    failures.push(format!(
                        "{} {shape:?} {form}: status {}, reserved {} < allocated {}",
                        door.name, m.status, m.reserved, m.allocated
                    ));
                }
            }
        }
    }
    drop(server);
    assert!(failures.is_empty(), "{failures:#?}");
}
