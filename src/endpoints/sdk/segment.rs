//! Segment's HTTP tracking API, which RudderStack's SDKs speak as well.
//!
//! - `POST /v1/batch` (server SDKs) and `/v1/b` (the browser SDK, batching):
//!   `{"batch": [event, ...], "sentAt": ..., "writeKey"?: ...}`.
//! - `POST /v1/track` ... `/v1/alias`, and the browser SDK's `/v1/t` ...
//!   `/v1/a`: the body is one event; a missing `type` is the path's.
//! - `GET /v1/projects/{writeKey}/settings`: the settings the browser SDK
//!   loads at start, pointing it back at this gateway.
//! - `POST /v1/m`: the browser SDK's telemetry, counted and dropped.
//! - `POST /beacon/v1/batch?writeKey=...`: RudderStack's browser SDK's
//!   `sendBeacon` batches (`useBeacon: true`), which carry no header.
//!
//! The write key is the Basic-auth user name, else the body's `writeKey`,
//! else the query's, else the first event's. Each event is stored as sent, plus what
//! Segment's API adds: `receivedAt` (always the gateway's), `sentAt` from the
//! batch when the event has none, a `messageId` when missing, `context.ip`
//! when `CLIENT_IP` is on, and `_gateway`. Its partition key is `userId`,
//! else `anonymousId`, so one user's events stay in order on one shard.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, HOST, HeaderMap};
use hyper::{Response, StatusCode};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::context::{Context, GATEWAY_FIELD};
use super::events::{Events, Rejection, Viewed, view_array, view_one};
use super::json::{Id, IdField, Object, Present, Text, Walk, id_text, without};
use super::{
    Caching, Decoded, Document, MAX_SENT_AT_BYTES, MAX_SOURCE_KEY_BYTES, Protocol, Received, SourceKey, copied_field,
    json_document,
};
use crate::doors::Doors;
use crate::error::{ApiError, json_response};

/// The event types of the tracking API.
pub const TYPES: &[&str] = &["track", "identify", "page", "screen", "group", "alias"];

/// Fields the gateway sets whatever the event says.
const OVERWRITTEN: &[&str] = &["receivedAt", GATEWAY_FIELD];

/// The fields of an event the gateway reads; the rest pass through unread.
#[derive(Deserialize)]
struct View<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Text<'a>>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<Id<'a>>,
    #[serde(rename = "anonymousId", borrow, default)]
    anonymous_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    event: Option<Text<'a>>,
    #[serde(rename = "writeKey", borrow, default)]
    write_key: Option<Text<'a>>,
    #[serde(rename = "messageId", borrow, default)]
    message_id: IdField<'a>,
    #[serde(rename = "sentAt", default)]
    sent_at: Present,
    #[serde(rename = "receivedAt", default)]
    received_at: Present,
    #[serde(rename = "_gateway", default)]
    gateway: Present,
}

/// The request's events, parsed: each one's raw text and view, or why not.
struct Parsed<'a> {
    events: Vec<Viewed<'a, View<'a>>>,
    sent_at: Option<&'a RawValue>,
    write_key: Option<Cow<'a, str>>,
}

/// Parses a body: a batch when `kind` is `None`, else one event of `kind`.
fn parse<'a>(body: &'a [u8], kind: Option<&str>, max_events: usize) -> Result<Parsed<'a>, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::BadSdkRequest("the body must be a JSON object".into()));
    }
    if kind.is_none() {
        return parse_batch(body, max_events);
    }
    let event = view_one(body).map_err(|e| ApiError::BadSdkRequest(format!("the body is not valid JSON: {e}")))?;
    Ok(Parsed {
        events: vec![event],
        sent_at: None,
        write_key: None,
    })
}

/// `{"batch": [event, ...], "sentAt": ..., "writeKey": ...}` in one pass
/// ([`Walk`]): each event's view is read where the event is found. Events
/// past `max_events` are only checked and counted.
fn parse_batch(body: &[u8], max_events: usize) -> Result<Parsed<'_>, ApiError> {
    let (mut batch, mut sent_at, mut write_key) = (None, None, None);
    let mut walk = Walk::new(body).map_err(not_a_batch)?;
    walk.object(|walk, name| match &*name {
        "batch" if batch.is_some() => Err(serde::de::Error::duplicate_field("batch")),
        "batch" => view_array(walk, max_events).map(|events| batch = Some(events)),
        "sentAt" => walk.once(&mut sent_at, "sentAt"),
        "writeKey" => walk.once(&mut write_key, "writeKey"),
        _ => walk.value::<IgnoredAny>().map(drop),
    })
    .and_then(|()| walk.end())
    .map_err(not_a_batch)?;
    let batch = batch.ok_or_else(|| not_a_batch(serde::de::Error::missing_field("batch")))?;
    Ok(Parsed {
        events: batch.within(max_events)?,
        sent_at: sent_at.flatten(),
        write_key: write_key.flatten(),
    })
}

fn not_a_batch(e: serde_json::Error) -> ApiError {
    ApiError::BadSdkRequest(format!("the body is not a tracking API batch: {e}"))
}

/// The tracking API: a batch (`kind` is `None`) or one event of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The path's event type, for the one-event paths.
    pub kind: Option<&'static str>,
}

impl Segment {
    /// `/v1/batch` and friends.
    pub const BATCH: Segment = Segment { kind: None };

    /// A one-event path whose type is `kind`.
    pub const fn event(kind: &'static str) -> Self {
        Segment { kind: Some(kind) }
    }
}

impl Protocol for Segment {
    fn name(&self) -> &'static str {
        "segment"
    }

    fn body_limit(&self) -> &'static str {
        "SEGMENT_MAX_BODY_BYTES"
    }

    fn decode(
        &self,
        request: &Received<'_>,
        context: &Context,
        max_events: usize,
        mut events: Events,
    ) -> Result<Decoded, ApiError> {
        let parsed = parse(request.body, self.kind, max_events)?;
        let first_event_key = || {
            parsed
                .events
                .iter()
                .find_map(|(_, view)| Some(view.as_ref().ok()?.write_key.as_deref()?.to_owned()))
        };
        let write_key = basic_user(request.headers)
            .or_else(|| parsed.write_key.as_deref().map(str::to_owned))
            .or_else(|| request.query_param("writeKey").filter(|k| !k.is_empty()))
            .or_else(first_event_key);
        copied_field("writeKey", write_key.as_deref(), MAX_SOURCE_KEY_BYTES)?;
        copied_field("sentAt", parsed.sent_at.map(RawValue::get), MAX_SENT_AT_BYTES)?;
        events.reserve(parsed.events.len());
        for (index, (raw, view)) in parsed.events.iter().enumerate() {
            let built = view.as_ref().map_err(Clone::clone).and_then(|view| {
                record(
                    context,
                    self.kind,
                    index,
                    raw,
                    view,
                    parsed.sent_at,
                    write_key.as_deref(),
                )
            });
            let id = view.as_ref().ok().and_then(|view| view.message_id.text());
            events.push(index, built, id);
        }
        Ok(Decoded {
            key: SourceKey::One(write_key),
            events,
        })
    }

    fn success(&self, rejected: &[Rejection]) -> Response<Full<Bytes>> {
        json_response(
            StatusCode::OK,
            &Success {
                success: true,
                rejected,
            },
        )
    }
}

/// One event's record text and partition key, or why it is rejected.
fn record(
    context: &Context,
    path_kind: Option<&'static str>,
    index: usize,
    raw: &str,
    view: &View,
    batch_sent_at: Option<&RawValue>,
    write_key: Option<&str>,
) -> Result<(Vec<u8>, String), Rejection> {
    let reject = |code, message: &str| Rejection {
        index,
        code,
        message: message.into(),
    };
    let kind = match (view.kind.as_deref(), path_kind) {
        (Some(kind), _) if TYPES.contains(&kind) => kind,
        (Some(_), _) => {
            return Err(reject(
                "unknown_type",
                "`type` is not one of track, identify, page, screen, group, alias",
            ));
        }
        (None, Some(kind)) => kind,
        (None, None) => return Err(reject("unknown_type", "the event has no `type`")),
    };
    if kind == "track" && view.event.as_deref().is_none_or(str::is_empty) {
        return Err(reject("missing_event", "a track event needs an `event` name"));
    }
    let Some(user) = id_text(&view.user_id).or_else(|| id_text(&view.anonymous_id)) else {
        return Err(reject("missing_user", "the event needs a `userId` or an `anonymousId`"));
    };
    let rewritten;
    let mut text = raw.as_bytes();
    if view.received_at.0 || view.gateway.0 || context.ip.is_some() {
        rewritten = rewrite(text, context.ip.as_deref())
            .map_err(|e| reject("invalid_event", &format!("the event does not parse: {e}")))?;
        text = &rewritten;
    }
    let mut object = Object::extend(text);
    if view.kind.is_none() {
        object.field("type", &kind);
    }
    if !view.message_id.present {
        object.field("messageId", &uuid::Uuid::new_v4().to_string());
    }
    if !view.sent_at.0
        && let Some(sent_at) = batch_sent_at
    {
        object.field("sentAt", &sent_at);
    }
    object.field("receivedAt", &context.received_at);
    context.mark(&mut object, write_key);
    Ok((object.finish(), user.to_owned()))
}

/// The event without the fields the gateway sets, and with `context.ip`
/// when there is an address and the event has none.
fn rewrite(raw: &[u8], ip: Option<&str>) -> Result<Vec<u8>, serde_json::Error> {
    let Some(ip) = ip else {
        return without(raw, OVERWRITTEN);
    };
    let mut event: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw)?;
    for name in OVERWRITTEN {
        event.remove(*name);
    }
    let context = event
        .entry("context")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if let Some(context) = context.as_object_mut() {
        context.entry("ip").or_insert_with(|| ip.into());
    }
    serde_json::to_vec(&event)
}

/// The user name of `Authorization: Basic`, which is how the SDKs send the
/// write key (with an empty password).
pub(super) fn basic_user(headers: &HeaderMap) -> Option<String> {
    let encoded = headers.get(AUTHORIZATION)?.as_bytes().strip_prefix(b"Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
    Some(user.to_owned()).filter(|u| !u.is_empty())
}

#[derive(Serialize)]
struct Success<'a> {
    success: bool,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    rejected: &'a [Rejection],
}

/// `GET /v1/projects/{writeKey}/settings`: what the browser SDK needs to
/// start and to send its events here (this gateway's `/v1`), and nothing
/// that would make it load code from elsewhere. The host is `PUBLIC_URL`'s;
/// without it, the request's `Host`, and then only the browser may cache
/// the answer.
#[derive(Debug)]
pub struct Settings;

impl Document for Settings {
    fn answer(&self, doors: &Doors, request: &Received<'_>) -> Result<Response<Full<Bytes>>, ApiError> {
        let write_key = request.path.trim_end_matches('/').split('/').nth(3).unwrap_or_default();
        doors.access().authorize_key(Some(write_key), request.headers)?;
        let (protocol, api_host, caching) = match &doors.sdk().public_url {
            Some(url) => (
                url.scheme(),
                format!("{}/v1", url.authority_and_path()),
                Caching::Public,
            ),
            None => {
                let (protocol, host) = request_host(request.headers)?;
                (protocol, format!("{host}/v1"), Caching::PerHost)
            }
        };
        let settings = serde_json::json!({
            "integrations": {
                "Segment.io": {
                    "apiKey": write_key,
                    "apiHost": api_host,
                    "protocol": protocol,
                    "unbundledIntegrations": [],
                    "addBundledMetadata": false,
                    "maybeBundledConfigIds": {},
                }
            },
            "plan": {"track": {"__default": {"enabled": true, "integrations": {}}}},
            "edgeFunction": {},
            "analyticsNextEnabled": true,
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "metrics": {"sampleRate": 0, "host": api_host},
            "legacyVideoPluginsEnabled": false,
            "remotePlugins": [],
        });
        Ok(json_document(&settings, caching))
    }
}

/// The scheme (`X-Forwarded-Proto: https`, else `http`) and `Host` of a
/// request, for a document that must name this gateway when no
/// `PUBLIC_URL` is set.
fn request_host(headers: &HeaderMap) -> Result<(&'static str, &str), ApiError> {
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
        .ok_or_else(|| ApiError::BadSdkRequest("the request needs a Host header".into()))?;
    let protocol = match headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
        Some(b"https") => "https",
        _ => "http",
    };
    Ok((protocol, host))
}

/// Telemetry bodies are small; anything bigger is not the SDK's.
const TELEMETRY_MAX_BYTES: usize = 64 * 1024;

/// `POST /v1/m`: the browser SDK's telemetry about itself. Not events:
/// read (so the connection stays usable), counted, dropped.
#[derive(Debug)]
pub struct Telemetry;

impl Document for Telemetry {
    fn body_limit(&self) -> Option<usize> {
        Some(TELEMETRY_MAX_BYTES)
    }

    fn answer(&self, doors: &Doors, _request: &Received<'_>) -> Result<Response<Full<Bytes>>, ApiError> {
        doors.metrics().sdk_telemetry_discarded();
        Ok(Segment::BATCH.success(&[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str, kind: Option<&str>) -> Result<Vec<Result<(), &'static str>>, ApiError> {
        let parsed = parse(body.as_bytes(), kind, 6)?;
        Ok(parsed
            .events
            .into_iter()
            .map(|(_, view)| view.map(|_| ()).map_err(|r| r.code))
            .collect())
    }

    #[test]
    fn a_request_that_is_not_a_batch_is_400() {
        for body in [
            "",
            "[]",
            r#"[{"batch":[]}]"#,
            r#"{"batch":{}}"#,
            r#"{"batch":[1,2"#,
            "{\"batch\":[]}\u{0}",
            r#"{"batch":[{}], "batch":[{}]}"#,
        ] {
            let err = parsed(body, None).unwrap_err();
            assert!(
                matches!(err, ApiError::BadSdkRequest(_) | ApiError::EmptyBatch),
                "{body:?}: {err:?}"
            );
        }
        assert!(matches!(parsed(r#"{"batch":[]}"#, None), Err(ApiError::EmptyBatch)));
        assert!(matches!(
            parsed(r#"{"batch":[1,2,3,4,5,6,7]}"#, None),
            Err(ApiError::TooManyRecords { max: 6 })
        ));
        assert_eq!(parsed(r#"{"batch":[{},{},{},{},{},{}]}"#, None).unwrap().len(), 6);
        let bad_utf8 = b"{\"batch\":[{\"userId\":\"\xff\"}]}";
        assert!(parse(bad_utf8, None, 5).is_err());
    }

    #[test]
    fn the_batch_envelope_is_read_in_one_pass_whatever_its_order() {
        let body = br#"{"context":{"a":[1,{"batch":2}]},"writeKey":"wk","batch":[{"type":"track","event":"e","userId":"u"}],"sentAt":null,"x":1}"#;
        let parsed = parse(body, None, 6).unwrap();
        assert_eq!(parsed.write_key.as_deref(), Some("wk"));
        assert!(parsed.sent_at.is_none());
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].0, r#"{"type":"track","event":"e","userId":"u"}"#);

        let body = br#"{"sentAt":"2026-01-01T00:00:00Z","batch":[{"userId":1}]}"#;
        let parsed = parse(body, None, 6).unwrap();
        assert_eq!(parsed.sent_at.map(RawValue::get), Some(r#""2026-01-01T00:00:00Z""#));
        assert_eq!(parsed.events[0].1.as_ref().unwrap().user_id, Some(Id("1".into())));

        let message = |body: &str| match parse(body.as_bytes(), None, 2) {
            Err(ApiError::BadSdkRequest(message)) => message,
            other => panic!("{body}: {:?}", other.map(|p| p.events.len())),
        };
        assert_eq!(
            message(r#"{"sentAt":1,"sentAt":2,"batch":[{}]}"#),
            "the body is not a tracking API batch: duplicate field `sentAt`"
        );
        assert_eq!(
            message(r#"{"sentAt":1}"#),
            "the body is not a tracking API batch: missing field `batch`"
        );
        // A bad event past the events kept still makes the body bad, and the
        // error says where it is in the body, as serde_json would.
        let body = "{\"batch\":[{},\n {},\n {\"a\":tru}]}";
        let whole = serde_json::from_str::<IgnoredAny>(body).unwrap_err();
        assert_eq!(message(body), format!("the body is not a tracking API batch: {whole}"));
    }

    #[test]
    fn bad_events_are_rejected_one_by_one() {
        let got = parsed(
            r#"{"batch":[
                {"type":"track","event":"a","userId":"u"},
                [1],
                "str",
                {"type":"track","userId":{"nested":1}},
                {"type":"track","userId":"u","userId":"v"},
                {"type":"track","event":"a","userId":"u","x":"\u0000"}
            ]}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            got,
            [
                Ok(()),
                Err("not_an_object"),
                Err("not_an_object"),
                Err("invalid_event"),
                Err("invalid_event"),
                Ok(())
            ]
        );
    }

    #[test]
    fn deep_nesting_and_huge_arrays_cost_no_stack_and_no_unbounded_work() {
        // Unread fields are skipped without recursion: deep nesting is valid
        // JSON and is stored as sent.
        let deep = format!(
            r#"{{"batch":[{{"type":"track","event":"e","userId":"u","p":{}1{}}},{{"type":"track","event":"e","userId":"u"}}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let got = parse(deep.as_bytes(), None, 10).unwrap();
        let codes: Vec<_> = got
            .events
            .iter()
            .map(|(_, v)| v.as_ref().err().map(|r| r.code))
            .collect();
        assert_eq!(codes, [None, None]);
        let huge = format!(r#"{{"batch":[{}{{}}]}}"#, "{},".repeat(200_000));
        assert!(matches!(
            parse(huge.as_bytes(), None, 10_000),
            Err(ApiError::TooManyRecords { max: 10_000 })
        ));
    }

    #[test]
    fn basic_auth_user_is_the_write_key() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Basic d2stMTo=".parse().unwrap()); // "wk-1:"
        assert_eq!(basic_user(&headers).as_deref(), Some("wk-1"));
        headers.insert(AUTHORIZATION, "Basic d2stMQ==".parse().unwrap()); // "wk-1", no colon
        assert_eq!(basic_user(&headers).as_deref(), Some("wk-1"));
        headers.insert(AUTHORIZATION, "Basic Og==".parse().unwrap()); // ":"
        assert_eq!(basic_user(&headers), None);
        headers.insert(AUTHORIZATION, "Basic !!".parse().unwrap());
        assert_eq!(basic_user(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer d2stMTo=".parse().unwrap());
        assert_eq!(basic_user(&headers), None);
    }
}
