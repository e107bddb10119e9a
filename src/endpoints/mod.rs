//! The doors that take events. Each runs the shared ingest step
//! (`ingest.rs`), parses its body into events, turns them into records
//! (`Doors::records`), writes them through `Doors::put`, and hands the
//! outcomes to its family's one answer ([`answer`]). A door sees only its
//! narrow context, `Doors` (`doors.rs`), never the whole `App`.
//!
//! - [`import`]: `POST /import`, the body is one record.
//! - [`batch`]: `POST /import/batch`, a JSON array or NDJSON of records.
//! - [`sdk`]: Segment / RudderStack, PostHog and Snowplow, one record per event.
//! - [`live`]: the live view (`/live`): no events taken, the ones above
//!   shown. An admin page, it reaches the whole `App` (readiness, metrics).

pub(crate) mod answer;
pub(crate) mod batch;
pub(crate) mod import;
pub(crate) mod live;
pub mod sdk;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::Response;

/// The TCP peer of a request's connection, set by the server as a request
/// extension (absent when a test calls `api::handle` directly).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// A response body: a whole one, or the live view's stream.
pub type Body = Either<Full<Bytes>, live::EventStream>;

/// A successful answer and what metrics and the access log say about it.
#[derive(Debug)]
pub struct Reply {
    /// The response to send.
    pub response: Response<Body>,
    /// Records the request carried.
    pub records: usize,
    /// Decoded body bytes.
    pub bytes: usize,
    /// Where the (first) stored record went: a shard, a partition.
    pub location: Option<String>,
    /// The error code when some records were not stored; empty otherwise.
    pub error: &'static str,
    /// Whether the request was refused for load (`http_requests_shed_total`).
    pub shed: bool,
}

impl Reply {
    /// An answer that keeps no records.
    pub fn plain(response: Response<Full<Bytes>>) -> Self {
        Reply::streaming(response.map(Either::Left))
    }

    /// An answer whose body may be a stream.
    pub fn streaming(response: Response<Body>) -> Self {
        Reply {
            response,
            records: 0,
            bytes: 0,
            location: None,
            error: "",
            shed: false,
        }
    }
}

/// The API key a request of the gateway's own API carries, if any
/// (`Authorization: Bearer`, `X-Api-Key`): its source key in the live view.
pub fn presented_key(headers: &hyper::HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}
