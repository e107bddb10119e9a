//! ferrokinesis, a Kinesis emulator nobody here wrote, as a process of its
//! own on a loopback port: the fault suite's `drain` check SIGKILLs the
//! gateway mid-drain, and needs an emulator that outlives it and keeps up
//! with eight lanes of 500-record calls plus live traffic (kinesis-local
//! spins at 100 % CPU under that load). Prints its endpoint, then serves
//! until killed.
//!
//!   cargo run --example ferrokinesis [PORT]

use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let options = ferrokinesis::store::StoreOptions {
        create_stream_ms: 0,
        delete_stream_ms: 0,
        shard_limit: 1000,
        ..Default::default()
    };
    let (router, _store) = ferrokinesis::create_app(options);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("http://{}", listener.local_addr()?);
    axum::serve(listener, router).await
}
