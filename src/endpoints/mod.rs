//! The doors that take events. The gateway's own API is a file per
//! endpoint: it runs the shared ingest step (`ingest.rs`), parses its body
//! into events, turns them into records here ([`records`]), writes them
//! through [`App::put`], and shapes its own answer. The analytics SDKs'
//! protocols are one layer, [`sdk`], with a file per protocol.
//!
//! - [`import`]: `POST /import`, the body is one record.
//! - [`batch`]: `POST /import/batch`, a JSON array or NDJSON of records.
//! - [`sdk`]: Segment / RudderStack, PostHog and Snowplow, one record per event.
//! - [`live`]: the live view (`/live`): no events taken, the ones above shown.

pub mod batch;
pub mod import;
pub mod live;
pub mod sdk;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::Response;

use crate::app::App;
use crate::partition_key;
use crate::sink::Record;

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
    /// The answer to a request whose `records` (from `bytes` of body) are stored.
    pub fn stored(response: Response<Full<Bytes>>, records: usize, bytes: usize, location: Option<String>) -> Self {
        Reply {
            records,
            bytes,
            location,
            ..Reply::plain(response)
        }
    }

    /// An answer that stores nothing.
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

/// A record over the stream's limit: which one, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// The offending record (0-based).
    pub index: usize,
    /// The record limit (data + partition key), in bytes.
    pub limit: usize,
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

/// A record from event `data`, with its partition key (the header's, else
/// `PARTITION_KEY_FIELDS`, else random), built and checked by the sink's
/// [`crate::sink::RecordRules`]; `Err` with the record limit when it is over.
pub fn record(app: &App, data: Bytes, header_key: Option<&str>) -> Result<Record, usize> {
    let rules = app.record_rules();
    let partition_key = match header_key {
        Some(key) => key.to_owned(),
        None => app
            .import()
            .key_fields
            .key_of(&data, rules.max_key_chars)
            .unwrap_or_else(partition_key::random),
    };
    rules.record(data, partition_key).map_err(|_| rules.max_bytes)
}

/// Records from a request's events, each made by [`record`]. All or
/// nothing: the first record over the limit fails the request before
/// anything is written.
pub fn records(app: &App, events: Vec<Bytes>, header_key: Option<&str>) -> Result<Vec<Record>, Oversized> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, data)| record(app, data, header_key).map_err(|limit| Oversized { index, limit }))
        .collect()
}
