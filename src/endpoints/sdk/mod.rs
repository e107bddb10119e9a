//! The analytics SDKs' doors: Segment (and RudderStack, which speaks it),
//! PostHog and Snowplow, each a [`Protocol`] in its own file, all served by
//! one generic handler ([`handle`]); and the documents those SDKs load
//! before they send anything (settings, source configuration, feature
//! flags), each a [`Document`] served by [`serve`].
//!
//! A protocol says only what differs: the variable of its body limit, how it turns a body
//! into records and finds its source key, and its 200. What they share lives
//! here once: [`context`] (enrichment), [`json`] (splicing fields into the
//! event's own text) and [`events`] (records and per-event rejections);
//! the answer, and the one failure the SDK is told about, is the SDK
//! family's (`endpoints/answer.rs`). A fifth protocol is one file
//! implementing [`Protocol`] plus its route rows in `routes.rs`.
//!
//! Each event becomes one record: its own bytes as the SDK sent them, with
//! the fields its protocol's collector adds appended before the closing `}`,
//! so nothing the SDK wrote is re-serialised. An event that is not valid on
//! its own is rejected alone (SDKs drop a whole batch on any 4xx); a request
//! whose events are all rejected is 400. A failure to store is the whole
//! request's (429 or 503 with `Retry-After`, or 502); the SDK then sends the
//! batch again, so delivery is at least once and consumers dedupe on the
//! event's own id (`messageId`, `uuid`, `eid`).

pub(crate) mod context;
pub(crate) mod events;
pub(crate) mod json;
pub mod posthog;
pub(crate) mod rudderstack;
pub mod segment;
pub mod snowplow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, VARY};
use hyper::{Request, Response, StatusCode};

pub use context::Context;
pub use events::{Events, Rejection};

use crate::access::Access;
use crate::body::RequestBody;
use crate::dedupe::EventIds;
use crate::doors::Doors;
use crate::endpoints::{Reply, answer};
use crate::error::ApiError;
use crate::ingest::{Limits, ingest};
use crate::live::Arrival;

/// The longest source key (write key, project token, app id) accepted, in
/// bytes: it is copied into every event's `_gateway.key` (and PostHog's
/// `token`), so a long one would multiply a small request into large
/// records. Real keys are under 100 characters.
pub const MAX_SOURCE_KEY_BYTES: usize = 256;
/// The longest batch-level send time (`sentAt`, `sent_at`) accepted, in
/// bytes: it is copied into every event that has none. An RFC 3339
/// timestamp is at most 35.
pub const MAX_SENT_AT_BYTES: usize = 64;
/// `Err` when `value` of `field`, copied into every record, is over `max` bytes.
pub fn copied_field(field: &'static str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(value) if value.len() > max => Err(ApiError::FieldTooLong { field, max }),
        _ => Ok(()),
    }
}

/// What a protocol reads of a request: its head's parts and its body,
/// already read within the limit and decoded from its `Content-Encoding`.
#[derive(Clone, Copy)]
pub struct Received<'a> {
    /// The path (with the route's `{name}` segments filled in).
    pub path: &'a str,
    /// The query string, empty when there is none.
    pub query: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
    /// The protocol's body limit, for a body it decodes further (PostHog's
    /// unannounced gzip and base64).
    pub max_body: usize,
    /// Holds bytes more of the in-flight budget (503 when it has no room),
    /// for a body the protocol decodes further: told before it is decoded.
    pub hold: &'a dyn Fn(usize) -> Result<(), ApiError>,
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Received<'a> {
    /// A request's head and its (decoded) `body`, within `max_body`.
    fn new(
        head: &'a hyper::http::request::Parts,
        body: &'a [u8],
        max_body: usize,
        hold: &'a dyn Fn(usize) -> Result<(), ApiError>,
    ) -> Self {
        Received {
            path: head.uri.path(),
            query: head.uri.query().unwrap_or_default(),
            headers: &head.headers,
            body,
            max_body,
            hold,
        }
    }

    /// A request with only a body, for tests and the fuzzer.
    pub fn body(body: &'a [u8], headers: &'a HeaderMap) -> Self {
        Received {
            path: "/",
            query: "",
            headers,
            body,
            max_body: usize::MAX,
            hold: &|_| Ok(()),
        }
    }

    /// The value of query parameter `name`, when present.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// The key a request's events came with, checked against `API_KEYS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKey {
    /// One key for the whole request (a write key, a project key), if any.
    One(Option<String>),
    /// One per event (Snowplow's app ids): every one must be a key.
    PerEvent(Vec<Option<String>>),
}

impl SourceKey {
    /// The key the live view shows (masked there): the request's, or its
    /// first event's when each event has its own.
    pub fn shown(&self) -> Option<&str> {
        match self {
            SourceKey::One(key) => key.as_deref(),
            SourceKey::PerEvent(keys) => keys.iter().find_map(Option::as_deref),
        }
    }

    /// Each source of the records at `positions` (their events' places in
    /// the request) and how many records it sent; a request without a key
    /// is the one keyless source, `""`.
    pub fn sources(&self, positions: &[usize]) -> Vec<(&str, u64)> {
        match self {
            SourceKey::One(key) => vec![(key.as_deref().unwrap_or_default(), positions.len() as u64)],
            SourceKey::PerEvent(keys) => {
                let mut sources: Vec<(&str, u64)> = Vec::new();
                for &position in positions {
                    let key = keys.get(position).and_then(Option::as_deref).unwrap_or_default();
                    match sources.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, events)) => *events += 1,
                        None => sources.push((key, 1)),
                    }
                }
                sources
            }
        }
    }

    /// The source of the event at `position`: `""` when it came with no key.
    pub fn source_at(&self, position: usize) -> &str {
        match self {
            SourceKey::One(key) => key.as_deref(),
            SourceKey::PerEvent(keys) => keys.get(position).and_then(Option::as_deref),
        }
        .unwrap_or_default()
    }

    /// Ok when no keys are configured, the headers carry one, or the key
    /// (each key, per event) is one of them.
    pub fn authorize(&self, access: &Access, headers: &HeaderMap) -> Result<(), ApiError> {
        match self {
            SourceKey::One(key) => access.authorize_key(key.as_deref(), headers),
            SourceKey::PerEvent(keys) => {
                if !access.keys_required() || access.authorize(headers).is_ok() {
                    return Ok(());
                }
                keys.iter()
                    .try_for_each(|key| access.authorize_key(Some(key.as_deref().unwrap_or_default()), headers))
            }
        }
    }
}

/// A request's events as records, and the key they came with.
#[derive(Debug)]
pub struct Decoded {
    /// The source key.
    pub key: SourceKey,
    /// The records and rejections.
    pub events: Events,
}

/// What differs between the SDKs' event doors.
pub trait Protocol: std::fmt::Debug + Sync {
    /// The name in records (`_gateway.protocol`) and metric labels.
    fn name(&self) -> &'static str;

    /// The variable that sets the largest body, raw and decoded, in bytes
    /// (`SEGMENT_MAX_BODY_BYTES`): its default is the one list's
    /// (`config/variables.rs`), its value `SdkConfig::body_limits`'.
    fn body_limit(&self) -> &'static str;

    /// Whether the event comes in the query string, with no body (a pixel).
    fn event_in_query(&self) -> bool {
        false
    }

    /// Turns a request into records and finds its source key, without
    /// touching the network (the fuzzer calls it too). `Err` is a request
    /// that is not this protocol's shape, or has too many events.
    fn decode(
        &self,
        request: &Received<'_>,
        context: &Context,
        max_events: usize,
        events: Events,
    ) -> Result<Decoded, ApiError>;

    /// The 200 answer once every accepted event is stored.
    fn success(&self, rejected: &[Rejection]) -> Response<Full<Bytes>>;
}

/// Stores a request's events in `protocol`: ingest, decode, authorise,
/// store, answer.
pub(crate) async fn handle<B>(
    doors: &Doors,
    protocol: &dyn Protocol,
    door: &'static str,
    request: Request<B>,
) -> Result<Reply, ApiError>
where
    B: RequestBody,
{
    let max_body = doors.sdk().body_limits.get(protocol.body_limit());
    let limits = Limits {
        // The key may be in the body: checked after decoding.
        header_auth: false,
        allow_empty: protocol.event_in_query(),
        // Records are made of copies: the body is dropped before the write.
        body_kept: false,
        ..Limits::events(max_body)
    };
    let mut ingested = ingest(doors, request, limits).await?;
    let (Decoded { events, key }, query_len) = {
        let head = &ingested.head;
        let held = ingested.held();
        let hold = |bytes| held.more(bytes);
        let incoming = Received::new(head, &ingested.body, max_body, &hold);
        let context = Context::new(protocol.name(), doors.sdk().client_ip, head);
        let events = Events::new(doors.record_rules())
            .max_depth(doors.import().max_depth)
            .keep_ids(doors.dedupes());
        let decoded = protocol.decode(&incoming, &context, doors.sdk().max_events, events)?;
        decoded.key.authorize(doors.access(), &head.headers)?;
        (decoded, incoming.query.len())
    };
    // What the records hold beside the body; an unwrapped PostHog form or
    // gzip counts as the body it unwrapped to.
    let bytes = ingested.body.len().max(query_len);
    ingested.hold_records(bytes.max(events.unwrapped_bytes()), events.len(), events.bytes())?;
    ingested.release_body();
    let Events {
        records,
        positions,
        rejected,
        ids,
        ..
    } = events;
    if records.is_empty() {
        return Err(answer::sdk_nothing_kept(doors, protocol.name(), rejected));
    }
    let arrival = || Arrival {
        door,
        protocol: protocol.name(),
        key: key.shown(),
    };
    let sources = key.sources(&positions);
    let ids = EventIds::of(
        protocol.name(),
        ids.iter()
            .zip(&positions)
            .map(|(id, &position)| Some((key.source_at(position), id.as_deref()?))),
    );
    let report = doors.put(arrival, &sources, records, ids).await?;
    let request = answer::SdkAccepted {
        protocol: protocol.name(),
        positions,
        rejected,
        bytes,
        success: |rejected: &[Rejection]| protocol.success(rejected),
    };
    answer::sdk(doors, report, request)
}

/// A document an SDK loads from its collector: settings, a source
/// configuration, feature flags. Never events.
pub(crate) trait Document: std::fmt::Debug + Sync {
    /// The body to read (and drop) first, when the SDK sends one.
    fn body_limit(&self) -> Option<usize> {
        None
    }

    /// The answer.
    fn answer(&self, doors: &Doors, request: &Received<'_>) -> Result<Response<Full<Bytes>>, ApiError>;
}

/// Answers a request for `document`.
pub(crate) async fn serve<B>(doors: &Doors, document: &dyn Document, request: Request<B>) -> Result<Reply, ApiError>
where
    B: RequestBody,
{
    let Some(limit) = document.body_limit() else {
        let (head, _) = request.into_parts();
        let incoming = Received::new(&head, &[], 0, &|_| Ok(()));
        return Ok(Reply::plain(document.answer(doors, &incoming)?));
    };
    let limits = Limits {
        header_auth: false,
        allow_empty: true,
        // Read, answered and dropped without a wait.
        body_kept: false,
        ..Limits::events(limit)
    };
    let ingested = ingest(doors, request, limits).await?;
    let incoming = Received::new(&ingested.head, &ingested.body, limit, &|_| Ok(()));
    Ok(Reply::plain(document.answer(doors, &incoming)?))
}

/// Who may keep a copy of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// The same for every visitor: browsers and shared caches may keep it.
    Public,
    /// Built from the request's `Host` (no `PUBLIC_URL`): only the browser
    /// may keep it, so no shared cache can hand a forged host's document to
    /// other visitors.
    PerHost,
}

/// A document response of `content_type` under `caching`.
pub fn document(body: impl Into<Bytes>, content_type: &'static str, caching: Caching) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A minute: the SDKs fetch these at every page load.
    let cache = match caching {
        Caching::Public => "public, max-age=60",
        Caching::PerHost => "private, max-age=60",
    };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if caching == Caching::PerHost {
        headers.append(VARY, HeaderValue::from_static("Host, X-Forwarded-Proto"));
    }
    response
}

/// A JSON document under `caching`.
pub fn json_document(body: &serde_json::Value, caching: Caching) -> Response<Full<Bytes>> {
    document(body.to_string(), "application/json", caching)
}
