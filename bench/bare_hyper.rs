//! The ceiling: a bare hyper server that reads the body and answers a canned
//! 200 JSON receipt, with no upstream. Whatever the gateway reaches is
//! compared with this, measured on the same machine in the same run.
//!
//! Usage: `bare_hyper [ADDR]` (default `127.0.0.1:4598`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const RECEIPT: &str = r#"{"ShardId":"shardId-000000000000","SequenceNumber":"49590338271490256608559692538361571095921575989136588898","EncryptionType":"NONE"}"#;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::from(RECEIPT));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4598".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("bare hyper listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(stream), service_fn(answer)).await;
        });
    }
}
