//! PostHog capture: `POST /batch`, `/capture`, `/e` and `/i/v0/e`, each
//! with or without a trailing `/`.
//!
//! The body is `{"api_key": ..., "batch": [event, ...], "sent_at"?: ...}`
//! (the server SDKs), an array of events, or one event (`posthog-js`). It may
//! be gzip: by `Content-Encoding`, by `?compression=gzip-js` (posthog-js,
//! which cannot set the header on a beacon), or by its magic bytes. The
//! project key is the body's `api_key` or `token`, else the events' own
//! (`api_key`, `token`, `properties.token`), which must then agree.
//!
//! Each event is stored as sent plus what capture adds: a `uuid` (v7) when
//! missing, `distinct_id` at the top when only `properties` has it, `now`
//! (the gateway's time), `sent_at` (the body's, or posthog-js's `_` query
//! milliseconds), `token`, `ip` when `CLIENT_IP` is on, and `_gateway`. Its
//! partition key is `<token>:<distinct_id>`, capture's own Kafka key.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Body;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::sdk::{
    Context, Events, Id, Object, Present, Protocol, RawEvents, Rejection, Viewed, id_text, store, timestamp, view,
    without,
};
use crate::api::Reply;
use crate::app::App;
use crate::encoding;
use crate::error::{ApiError, json_response};
use crate::ingest::{Limits, ingest};

/// Fields the gateway sets whatever the event says.
const OVERWRITTEN: &[&str] = &["now", super::sdk::GATEWAY_FIELD];

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// The object forms: a batch envelope, or one event (whose own key and
/// `sent_at` are then read here too).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<RawEvents<'a>>,
    #[serde(borrow, default)]
    api_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sent_at: Option<&'a RawValue>,
}

/// The fields of an event the gateway reads.
#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    distinct_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
    #[serde(borrow, default)]
    api_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(default)]
    uuid: Present,
    #[serde(default)]
    sent_at: Present,
    #[serde(default)]
    now: Present,
    #[serde(default)]
    ip: Present,
    #[serde(rename = "_gateway", default)]
    gateway: Present,
}

#[derive(Deserialize)]
struct Properties<'a> {
    #[serde(borrow, default)]
    distinct_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
}

impl View<'_> {
    fn key(&self) -> Option<&str> {
        let from_properties = self.properties.as_ref().and_then(|p| p.token.as_deref());
        self.api_key.as_deref().or(self.token.as_deref()).or(from_properties)
    }

    fn distinct_id(&self) -> Option<&str> {
        id_text(&self.distinct_id).or_else(|| self.properties.as_ref().and_then(|p| id_text(&p.distinct_id)))
    }
}

struct Parsed<'a> {
    events: Vec<Viewed<'a, View<'a>>>,
    key: Option<Cow<'a, str>>,
    sent_at: Option<&'a RawValue>,
}

fn parse(body: &[u8], max_events: usize) -> Result<Parsed<'_>, ApiError> {
    let bad = |what: &str, e: serde_json::Error| ApiError::BadSdkRequest(format!("{what}: {e}"));
    let (raw_events, key, sent_at) = match body.trim_ascii_start().first() {
        Some(b'[') => {
            let events: RawEvents =
                serde_json::from_slice(body).map_err(|e| bad("the body is not a JSON array of events", e))?;
            (events.within(max_events)?, None, None)
        }
        Some(b'{') => {
            let envelope: Envelope =
                serde_json::from_slice(body).map_err(|e| bad("the body is not a PostHog batch or event", e))?;
            let key = envelope.api_key.or(envelope.token);
            match envelope.batch {
                Some(batch) => (batch.within(max_events)?, key, envelope.sent_at),
                None => {
                    let event: &RawValue = serde_json::from_slice(body).map_err(|e| bad("the body is not JSON", e))?;
                    (vec![event], key, envelope.sent_at)
                }
            }
        }
        _ => {
            return Err(ApiError::BadSdkRequest(
                "the body must be a JSON object or array (gzip is detected and decoded)".into(),
            ));
        }
    };
    let events = raw_events
        .into_iter()
        .enumerate()
        .map(|(index, raw)| (raw, view(index, raw)))
        .collect();
    Ok(Parsed { events, key, sent_at })
}

/// Whether the query asks for gzip (`compression=gzip-js` or `gzip`).
fn gzip_by_query(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "compression" && (v == "gzip-js" || v == "gzip"))
}

/// posthog-js's `_` query parameter: when it sent, in Unix milliseconds.
fn sent_at_by_query(query: &str) -> Option<String> {
    let (_, millis) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "_")?;
    let millis: u64 = millis.parse().ok()?;
    Some(timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(millis)))
}

/// Stores a request's events and answers `{"status": 1}`.
pub async fn handle<B>(app: &App, request: Request<B>, request_id: &str) -> Result<Reply, ApiError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let limit = app.sdk.posthog_max_bytes;
    let limits = Limits {
        header_auth: false,
        ..Limits::events(limit)
    };
    let ingested = ingest(app, request, limits).await?;
    let query = ingested.head.uri.query().unwrap_or_default();
    // A JSON body never starts with 0x1f: if it does, it is gzip the
    // headers did not announce.
    let body = if gzip_by_query(query) || ingested.body.starts_with(GZIP_MAGIC) {
        encoding::decode(Some(&HeaderValue::from_static("gzip")), ingested.body.clone(), limit)?
    } else {
        ingested.body.clone()
    };
    let context = Context::new(app, Protocol::PostHog, &ingested.head);
    let sent_at = sent_at_by_query(query);
    let Decoded { key, events } = decode(
        &body,
        sent_at.as_deref(),
        &context,
        app.sdk.max_events,
        Events::new(app),
    )?;
    app.access.authorize_key(key.as_deref(), ingested.headers())?;
    let stored = store(app, Protocol::PostHog, events, request_id).await?;
    let response = json_response(
        StatusCode::OK,
        &Success {
            status: 1,
            rejected: &stored.rejected,
        },
    );
    Ok(Reply::stored(response, stored.records, body.len(), stored.shard_id))
}

/// A request's events as records, and the project key they came with.
#[derive(Debug)]
pub struct Decoded {
    /// The body's `api_key` / `token`, else the one the events agree on.
    pub key: Option<String>,
    /// The records and rejections.
    pub events: Events,
}

/// Turns a decompressed body into records (`query_sent_at`: posthog-js's
/// `_`, as a timestamp), without touching the network: what the handler and
/// the fuzzer share.
pub fn decode(
    body: &[u8],
    query_sent_at: Option<&str>,
    context: &Context,
    max_events: usize,
    mut events: Events,
) -> Result<Decoded, ApiError> {
    let parsed = parse(body, max_events)?;
    let key = match parsed.key.as_deref() {
        Some(key) => Some(key),
        None => events_key(&parsed.events)?,
    };
    let sent_at = match (parsed.sent_at, query_sent_at) {
        (Some(raw), _) => Some(SentAt::Raw(raw)),
        (None, Some(text)) => Some(SentAt::Text(text)),
        (None, None) => None,
    };
    for (index, (raw, view)) in parsed.events.iter().enumerate() {
        let built = view
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|view| record(context, index, raw, view, sent_at.as_ref(), key));
        events.push(index, built);
    }
    Ok(Decoded {
        key: key.map(str::to_owned),
        events,
    })
}

/// The key the events carry when the body has none: all must agree.
fn events_key<'a>(events: &'a [Viewed<View>]) -> Result<Option<&'a str>, ApiError> {
    let mut keys = events.iter().filter_map(|(_, view)| view.as_ref().ok()?.key());
    let first = keys.next();
    if keys.any(|key| Some(key) != first) {
        return Err(ApiError::BadSdkRequest(
            "the events carry different project keys; send one project's events per request".into(),
        ));
    }
    Ok(first)
}

#[derive(Serialize)]
#[serde(untagged)]
enum SentAt<'a> {
    Raw(&'a RawValue),
    Text(&'a str),
}

fn record(
    context: &Context,
    index: usize,
    raw: &RawValue,
    view: &View,
    sent_at: Option<&SentAt>,
    key: Option<&str>,
) -> Result<(Vec<u8>, String), Rejection> {
    let reject = |code, message: &str| Rejection {
        index,
        code,
        message: message.into(),
    };
    if view.event.as_deref().is_none_or(str::is_empty) {
        return Err(reject("missing_event", "the event needs an `event` name"));
    }
    let Some(distinct_id) = view.distinct_id() else {
        return Err(reject(
            "missing_distinct_id",
            "the event needs a `distinct_id` (or `properties.distinct_id`)",
        ));
    };
    let rewritten;
    let mut text = raw.get().as_bytes();
    if view.now.0 || view.gateway.0 {
        rewritten = without(text, OVERWRITTEN).map_err(|e| reject("invalid_event", &e.to_string()))?;
        text = &rewritten;
    }
    let mut object = Object::extend(text);
    if !view.uuid.0 {
        object.field("uuid", &uuid::Uuid::now_v7().to_string());
    }
    if view.distinct_id.is_none() {
        object.field("distinct_id", &distinct_id);
    }
    object.field("now", &context.received_at);
    if !view.sent_at.0
        && let Some(sent_at) = sent_at
    {
        object.field("sent_at", sent_at);
    }
    if view.token.is_none()
        && let Some(key) = key
    {
        object.field("token", &key);
    }
    if !view.ip.0
        && let Some(ip) = &context.ip
    {
        object.field("ip", ip);
    }
    context.mark(&mut object, key);
    Ok((object.finish(), format!("{}:{distinct_id}", key.unwrap_or_default())))
}

#[derive(Serialize)]
struct Success<'a> {
    status: u8,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    rejected: &'a [Rejection],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(body: &str) -> Result<Vec<Result<(), &'static str>>, ApiError> {
        let parsed = parse(body.as_bytes(), 5)?;
        Ok(parsed
            .events
            .into_iter()
            .map(|(_, view)| view.map(|_| ()).map_err(|r| r.code))
            .collect())
    }

    #[test]
    fn three_body_forms_parse() {
        let batch = parse(
            br#"{"api_key":"phc_1","batch":[{"event":"a"},{"event":"b"}],"sent_at":"t"}"#,
            5,
        )
        .unwrap();
        assert_eq!((batch.events.len(), batch.key.as_deref()), (2, Some("phc_1")));
        assert_eq!(batch.sent_at.unwrap().get(), "\"t\"");
        let array = parse(br#" [{"event":"a","properties":{"token":"phc_2"}}]"#, 5).unwrap();
        assert_eq!((array.events.len(), array.key.as_deref()), (1, None));
        let one = parse(br#"{"event":"a","token":"phc_3","distinct_id":7}"#, 5).unwrap();
        assert_eq!((one.events.len(), one.key.as_deref()), (1, Some("phc_3")));
        assert_eq!(one.events[0].1.as_ref().unwrap().distinct_id(), Some("7"));
    }

    #[test]
    fn unparseable_bodies_are_400_and_bad_events_rejected_alone() {
        for body in ["", "x", "{", r#"{"batch":{}}"#, "[1,", r#"{"batch":[]}"#, "[]"] {
            assert!(codes(body).is_err(), "{body:?}");
        }
        assert!(matches!(
            codes("[{},{},{},{},{},{}]"),
            Err(ApiError::TooManyRecords { max: 5 })
        ));
        assert_eq!(
            codes(r#"[{"event":"a"}, 1, {"properties":"no"}, {"event":"a","event":"b"}]"#).unwrap(),
            [Ok(()), Err("not_an_object"), Err("invalid_event"), Err("invalid_event")]
        );
    }

    #[test]
    fn deep_nesting_invalid_utf8_and_nul_bytes_are_refused_without_a_panic() {
        let deep = format!(
            r#"[{{"event":"a","distinct_id":"d","properties":{{"x":{}0{}}}}}]"#,
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        assert_eq!(
            codes(&deep).unwrap(),
            [Ok(())],
            "skipped without recursion, stored as sent"
        );
        assert!(parse(b"[{\"event\":\"\xc3\x28\"}]", 5).is_err(), "invalid UTF-8");
        assert!(parse(b"[{\"event\":\"a\"}]\0", 5).is_err(), "a NUL after the JSON");
        let escaped = parse(br#"[{"event":"a\u0000b","distinct_id":0}]"#, 5).unwrap();
        assert_eq!(
            escaped.events[0].1.as_ref().unwrap().distinct_id(),
            Some("0"),
            "numeric ids"
        );
    }

    #[test]
    fn events_must_agree_on_their_key() {
        let parsed = parse(
            br#"[{"event":"a","token":"k1"},{"event":"b","properties":{"token":"k1"}}]"#,
            5,
        )
        .unwrap();
        assert_eq!(events_key(&parsed.events).unwrap(), Some("k1"));
        let parsed = parse(br#"[{"event":"a","token":"k1"},{"event":"b","api_key":"k2"}]"#, 5).unwrap();
        assert!(matches!(events_key(&parsed.events), Err(ApiError::BadSdkRequest(_))));
    }

    #[test]
    fn query_says_gzip_and_when_it_was_sent() {
        assert!(gzip_by_query("ip=1&compression=gzip-js&_=1"));
        assert!(!gzip_by_query("compression=base64"));
        assert_eq!(
            sent_at_by_query("_=1795000000123&ver=1").as_deref(),
            Some("2026-11-18T11:06:40.123Z")
        );
        assert_eq!(sent_at_by_query("_=soon"), None);
    }
}
