//! PostHog capture: `POST /batch`, `/capture`, `/e` and `/i/v0/e`, each
//! with or without a trailing `/`.
//!
//! The body is `{"api_key": ..., "batch": [event, ...], "sent_at"?: ...}`
//! (the server SDKs), an array of events, or one event (`posthog-js`). It may
//! be gzip: by `Content-Encoding`, by `?compression=gzip-js`, or by its magic
//! bytes alone (posthog-js 1.4xx sends gzip as `text/plain` with no flag at
//! all). It may be base64 in a form, `data=<base64>` (posthog-js's
//! `sendBeacon` on unload, `?compression=base64`). The project key is the
//! body's `api_key` or `token`, else the events' own (`api_key`, `token`,
//! `properties.token`), which must then agree. `sent_at` is the body's, else
//! the query's `sent_at` or `_` (posthog-js's send time, in milliseconds).
//!
//! posthog-js also asks for its remote configuration (`GET
//! /array/{token}/config` and `config.js`) and feature flags (`POST /flags`,
//! `/decide` before 1.2xx): [`RemoteConfig`] and [`Flags`] answer "no flags,
//! nothing to load" (no recordings, surveys or site apps), so a site's
//! snippet works unchanged and no code is loaded from anywhere.
//!
//! Each event is stored as sent plus what capture adds: a `uuid` (v7) when
//! missing, `distinct_id` at the top when only `properties` has it, `now`
//! (the gateway's time), `sent_at` (the body's, or posthog-js's `_` query
//! milliseconds), `token`, `ip` when `CLIENT_IP` is on, and `_gateway`. Its
//! partition key is `<token>:<distinct_id>`, capture's own Kafka key.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::context::{Context, GATEWAY_FIELD, timestamp};
use super::events::{Events, Rejection, Viewed, view_array, view_one};
use super::json::{Id, IdField, Object, Present, Rendered, Text, Walk, id_text, without};
use super::{
    Caching, Decoded, Document, MAX_SENT_AT_BYTES, MAX_SOURCE_KEY_BYTES, Protocol, Received, SourceKey, copied_field,
    document, json_document,
};
use crate::doors::Doors;
use crate::encoding;
use crate::error::{ApiError, json_response};

/// Fields the gateway sets whatever the event says.
const OVERWRITTEN: &[&str] = &["now", GATEWAY_FIELD];

/// Feature-flag request bodies are small; the rest is not the SDK's.
const FLAGS_MAX_BYTES: usize = 1 << 20;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// The object forms: a batch envelope, or one event (whose own key and
/// `sent_at` are then read here too).
/// The fields of an event the gateway reads.
#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow, default)]
    event: Option<Text<'a>>,
    #[serde(borrow, default)]
    distinct_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
    #[serde(borrow, default)]
    api_key: Option<Text<'a>>,
    #[serde(borrow, default)]
    token: Option<Text<'a>>,
    #[serde(borrow, default)]
    uuid: IdField<'a>,
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
    token: Option<Text<'a>>,
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

/// Parses a body in one pass over its events ([`Walk`]): an array of
/// events, a batch envelope (`batch`, with `api_key` or `token` and
/// `sent_at`), or one event, whose own key and `sent_at` are then read too.
fn parse(body: &[u8], max_events: usize) -> Result<Parsed<'_>, ApiError> {
    fn bad(what: &'static str) -> impl Fn(serde_json::Error) -> ApiError + Copy {
        move |e| ApiError::BadSdkRequest(format!("{what}: {e}"))
    }
    match body.trim_ascii_start().first() {
        Some(b'[') => {
            let not_events = bad("the body is not a JSON array of events");
            let mut walk = Walk::new(body).map_err(not_events)?;
            let events = view_array(&mut walk, max_events)
                .and_then(|events| walk.end().map(|()| events))
                .map_err(not_events)?;
            Ok(Parsed {
                events: events.within(max_events)?,
                key: None,
                sent_at: None,
            })
        }
        Some(b'{') => {
            let not_posthog = bad("the body is not a PostHog batch or event");
            let (mut batch, mut api_key, mut token, mut sent_at) = (None, None, None, None);
            let mut walk = Walk::new(body).map_err(not_posthog)?;
            walk.object(|walk, name| match &*name {
                "batch" if batch.is_some() => Err(serde::de::Error::duplicate_field("batch")),
                "batch" if walk.peek() == Some(b'[') => view_array(walk, max_events).map(|e| batch = Some(Some(e))),
                // `null` is no batch: the body is one event.
                "batch" => walk.value::<()>().map(|_| batch = Some(None)),
                "api_key" => walk.once(&mut api_key, "api_key"),
                "token" => walk.once(&mut token, "token"),
                "sent_at" => walk.once(&mut sent_at, "sent_at"),
                _ => walk.value::<IgnoredAny>().map(drop),
            })
            .and_then(|()| walk.end())
            .map_err(not_posthog)?;
            let key = api_key.flatten().or(token.flatten());
            let sent_at = sent_at.flatten();
            let events = match batch.flatten() {
                Some(batch) => batch.within(max_events)?,
                None => vec![view_one(body).map_err(bad("the body is not JSON"))?],
            };
            Ok(Parsed { events, key, sent_at })
        }
        _ => Err(ApiError::BadSdkRequest(
            "the body must be a JSON object or array (gzip is detected and decoded)".into(),
        )),
    }
}

/// PostHog capture, in every body form its SDKs send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostHog;

impl Protocol for PostHog {
    fn name(&self) -> &'static str {
        "posthog"
    }

    fn body_limit(&self) -> &'static str {
        "POSTHOG_MAX_BODY_BYTES"
    }

    fn decode(
        &self,
        request: &Received<'_>,
        context: &Context,
        max_events: usize,
        mut events: Events,
    ) -> Result<Decoded, ApiError> {
        let body = unwrap_body(request)?;
        events.unwrapped(body.len());
        let sent_at = request
            .query_param("sent_at")
            .or_else(|| request.query_param("_"))
            .and_then(|millis| millis_timestamp(&millis));
        decode(&body, sent_at.as_deref(), context, max_events, events)
    }

    fn success(&self, rejected: &[Rejection]) -> Response<Full<Bytes>> {
        json_response(StatusCode::OK, &Success { status: 1, rejected })
    }
}

/// The JSON inside a body: base64 in a form (`data=`), gzip (announced or
/// not), or plain, each decoded within the body limit.
fn unwrap_body<'a>(request: &Received<'a>) -> Result<Cow<'a, [u8]>, ApiError> {
    // Borrowed as received (a plain JSON body, the common case): no copy.
    let mut body = Cow::Borrowed(request.body);
    if is_form(request) {
        let data = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "data")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| ApiError::BadSdkRequest("a form body needs its events in `data`".into()))?;
        if data.len() / 4 * 3 > request.max_body {
            return Err(ApiError::BodyTooLarge {
                limit: request.max_body,
            });
        }
        (request.hold)(data.len() / 4 * 3)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| ApiError::BadSdkRequest(format!("`data` is not base64: {e}")))?;
        body = Cow::Owned(decoded);
    }
    // A JSON body never starts with 0x1f: if it does, it is gzip.
    let announced = matches!(request.query_param("compression").as_deref(), Some("gzip-js" | "gzip"));
    if announced || body.starts_with(GZIP_MAGIC) {
        let mut hold = |bytes| (request.hold)(bytes);
        let compressed = match body {
            Cow::Borrowed(bytes) => Bytes::copy_from_slice(bytes),
            Cow::Owned(bytes) => Bytes::from(bytes),
        };
        let decoded = encoding::decode(
            Some(&HeaderValue::from_static("gzip")),
            compressed,
            request.max_body,
            &mut hold,
        )?;
        body = Cow::Owned(decoded.into());
    }
    Ok(body)
}

/// Whether the body is a form (`data=<base64>`): announced by the query or
/// the content type, or plainly not JSON and starting with `data=`.
fn is_form(request: &Received<'_>) -> bool {
    let form_type = request
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    request.query_param("compression").as_deref() == Some("base64") || form_type || request.body.starts_with(b"data=")
}

/// posthog-js's send time, Unix milliseconds, as a timestamp.
fn millis_timestamp(millis: &str) -> Option<String> {
    let millis: u64 = millis.parse().ok()?;
    Some(timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(millis)))
}

/// Turns a decompressed body into records (`query_sent_at`: posthog-js's
/// send time from the query, as a timestamp). The key is the body's
/// `api_key` / `token`, else the one the events agree on.
fn decode(
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
    copied_field("api_key", key, MAX_SOURCE_KEY_BYTES)?;
    copied_field("sent_at", parsed.sent_at.map(RawValue::get), MAX_SENT_AT_BYTES)?;
    let sent_at = match (parsed.sent_at, query_sent_at) {
        (Some(raw), _) => Some(SentAt::Raw(raw)),
        (None, Some(text)) => Some(SentAt::Text(text)),
        (None, None) => None,
    };
    let shared = Shared::new(context, sent_at.as_ref(), key);
    events.reserve(parsed.events.len());
    for (index, (raw, view)) in parsed.events.iter().enumerate() {
        let built = view
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|view| record(&shared, index, raw, view, key));
        let id = view.as_ref().ok().and_then(|view| view.uuid.text());
        events.push(index, built, id);
    }
    Ok(Decoded {
        key: SourceKey::One(key.map(str::to_owned)),
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

/// The fields the gateway adds that are the same for every event of a
/// request, rendered once.
struct Shared {
    now: Rendered,
    sent_at: Option<Rendered>,
    token: Option<Rendered>,
    ip: Option<Rendered>,
    mark: Rendered,
}

impl Shared {
    fn new(context: &Context, sent_at: Option<&SentAt>, key: Option<&str>) -> Self {
        Shared {
            now: Rendered::new("now", &context.received_at),
            sent_at: sent_at.map(|sent_at| Rendered::new("sent_at", sent_at)),
            token: key.map(|key| Rendered::new("token", &key)),
            ip: context.ip.as_ref().map(|ip| Rendered::new("ip", ip)),
            mark: context.marked(key),
        }
    }
}

fn record(
    shared: &Shared,
    index: usize,
    raw: &str,
    view: &View,
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
    let mut text = raw.as_bytes();
    if view.now.0 || view.gateway.0 {
        rewritten = without(text, OVERWRITTEN).map_err(|e| reject("invalid_event", &e.to_string()))?;
        text = &rewritten;
    }
    let mut object = Object::extend(text);
    if !view.uuid.present {
        object.field("uuid", &uuid::Uuid::now_v7().to_string());
    }
    if view.distinct_id.is_none() {
        object.field("distinct_id", &distinct_id);
    }
    object.rendered(&shared.now);
    if !view.sent_at.0
        && let Some(sent_at) = &shared.sent_at
    {
        object.rendered(sent_at);
    }
    if view.token.is_none()
        && let Some(token) = &shared.token
    {
        object.rendered(token);
    }
    if !view.ip.0
        && let Some(ip) = &shared.ip
    {
        object.rendered(ip);
    }
    object.rendered(&shared.mark);
    Ok((object.finish(), partition_key(key.unwrap_or_default(), distinct_id)))
}

/// `<token>:<distinct_id>`, capture's own Kafka key.
fn partition_key(token: &str, distinct_id: &str) -> String {
    // Not `format!`: its machinery costs more than the copy, once per event.
    let mut key = String::with_capacity(token.len() + 1 + distinct_id.len());
    key.push_str(token);
    key.push(':');
    key.push_str(distinct_id);
    key
}

#[derive(Serialize)]
struct Success<'a> {
    status: u8,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    rejected: &'a [Rejection],
}

/// What posthog-js reads from its remote configuration: nothing to load
/// (no recordings, surveys, heatmaps, site apps or feature flags) and gzip
/// bodies, which capture here decodes.
fn remote_config(token: &str) -> serde_json::Value {
    json!({
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": false,
        "autocapture_opt_out": false,
        "autocaptureExceptions": false,
        "errorTracking": {"autocaptureExceptions": false, "suppressionRules": []},
        "captureDeadClicks": false,
        "capturePerformance": false,
        "elementsChainAsString": true,
        "sessionRecording": false,
        "heatmaps": false,
        "surveys": false,
        "productTours": false,
        "defaultIdentifiedOnly": true,
        "siteApps": [],
    })
}

/// `GET /array/{token}/config` (JSON) and `/array/{token}/config.js` (the
/// script the snippet's full bundle loads): the remote configuration.
#[derive(Debug)]
pub struct RemoteConfig {
    /// The script form: it sets `window._POSTHOG_REMOTE_CONFIG[token]`.
    pub script: bool,
}

impl Document for RemoteConfig {
    fn answer(&self, doors: &Doors, request: &Received<'_>) -> Result<Response<Full<Bytes>>, ApiError> {
        let token = request.path.split('/').nth(2).unwrap_or_default();
        doors.access().authorize_key(Some(token), request.headers)?;
        let config = remote_config(token);
        if !self.script {
            return Ok(json_document(&config, Caching::Public));
        }
        // Both values are JSON, which is valid JavaScript: the token cannot
        // break out of its string.
        let script = format!(
            "(function(){{var c=window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{{}};c[{}]={};}})();\n",
            serde_json::Value::from(token),
            json!({"config": config, "siteApps": []}),
        );
        Ok(document(script, "application/javascript", Caching::Public))
    }
}

/// `POST /flags` (and `/decide`, its name before posthog-js 1.2xx): no
/// feature flags, and the remote configuration for SDKs that ask for it
/// here (`config=true`).
#[derive(Debug)]
pub struct Flags;

#[derive(Deserialize)]
struct FlagsRequest<'a> {
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    api_key: Option<Cow<'a, str>>,
}

impl Document for Flags {
    fn body_limit(&self) -> Option<usize> {
        Some(FLAGS_MAX_BYTES)
    }

    fn answer(&self, doors: &Doors, request: &Received<'_>) -> Result<Response<Full<Bytes>>, ApiError> {
        let body = unwrap_body(request)?;
        let parsed: Option<FlagsRequest> = serde_json::from_slice(&body).ok();
        let token = parsed
            .as_ref()
            .and_then(|r| r.token.as_deref().or(r.api_key.as_deref()));
        doors.access().authorize_key(token, request.headers)?;
        let mut answer = remote_config(token.unwrap_or_default());
        let extra = json!({
            "flags": {},
            "featureFlags": {},
            "featureFlagPayloads": {},
            "errorsWhileComputingFlags": false,
            "quotaLimited": [],
            "requestId": uuid::Uuid::new_v4().to_string(),
            "config": {"enable_collect_everything": true},
        });
        if let (Some(answer), Some(extra)) = (answer.as_object_mut(), extra.as_object()) {
            answer.extend(extra.clone());
        }
        Ok(json_response(StatusCode::OK, &answer))
    }
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
    fn the_envelope_is_read_in_one_pass_whatever_its_order() {
        let batch = parse(
            br#"{"sent_at":null,"x":{"batch":1},"batch":[{"event":"a"}],"token":"phc_t","api_key":"phc_k"}"#,
            5,
        )
        .unwrap();
        assert_eq!(batch.events[0].0, r#"{"event":"a"}"#);
        assert_eq!((batch.key.as_deref(), batch.sent_at.is_none()), (Some("phc_k"), true));
        let one = parse(br#"{"batch":null,"event":"a","api_key":"phc_1"}"#, 5).unwrap();
        assert_eq!((one.events.len(), one.key.as_deref()), (1, Some("phc_1")));
        assert_eq!(one.events[0].0, r#"{"batch":null,"event":"a","api_key":"phc_1"}"#);
        for (body, error) in [
            (
                r#"{"api_key":"a","api_key":"b","batch":[{}]}"#,
                "duplicate field `api_key`",
            ),
            (r#"{"batch":[{}],"batch":[{}]}"#, "duplicate field `batch`"),
        ] {
            match parse(body.as_bytes(), 5) {
                Err(ApiError::BadSdkRequest(message)) => assert!(message.ends_with(error), "{message}"),
                other => panic!("{body}: {:?}", other.map(|p| p.events.len())),
            }
        }
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
    fn send_times_are_milliseconds() {
        assert_eq!(
            millis_timestamp("1795000000123").as_deref(),
            Some("2026-11-18T11:06:40.123Z")
        );
        assert_eq!(millis_timestamp("soon"), None);
    }

    fn unwrapped(query: &str, content_type: Option<&'static str>, body: &[u8]) -> Result<String, ApiError> {
        let mut headers = hyper::HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let request = Received {
            query,
            max_body: 1000,
            ..Received::body(body, &headers)
        };
        unwrap_body(&request).map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn bodies_are_unwrapped_from_base64_forms_and_gzip() {
        let json = r#"[{"event":"a"}]"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, json.as_bytes()).unwrap();
        let gzipped = gz.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", &b64)
            .finish();
        assert_eq!(unwrapped("", None, json.as_bytes()).unwrap(), json);
        assert_eq!(
            unwrapped("", Some("text/plain"), &gzipped).unwrap(),
            json,
            "unannounced gzip"
        );
        assert_eq!(unwrapped("compression=gzip-js", None, &gzipped).unwrap(), json);
        assert_eq!(unwrapped("compression=base64", None, form.as_bytes()).unwrap(), json);
        assert_eq!(
            unwrapped("", Some("application/x-www-form-urlencoded"), form.as_bytes()).unwrap(),
            json
        );
        assert_eq!(unwrapped("", None, form.as_bytes()).unwrap(), json, "a bare data= form");
        assert!(matches!(
            unwrapped("compression=base64", None, b"data=%%%"),
            Err(ApiError::BadSdkRequest(_))
        ));
        assert!(matches!(
            unwrapped("compression=base64", None, b"other=1"),
            Err(ApiError::BadSdkRequest(_))
        ));
        let huge = format!("data={}", "A".repeat(4000));
        assert!(matches!(
            unwrapped("compression=base64", None, huge.as_bytes()),
            Err(ApiError::BodyTooLarge { .. })
        ));
    }
}
