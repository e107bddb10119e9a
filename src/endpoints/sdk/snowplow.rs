//! The Snowplow tracker protocol, as its collector serves it.
//!
//! - `POST /com.snowplowanalytics.snowplow/tp2`: a self-describing
//!   `payload_data` JSON, `{"schema": "iglu:com.snowplowanalytics.snowplow/
//!   payload_data/jsonschema/1-0-*", "data": [event, ...]}`, each event a flat
//!   object of tracker parameters (`e`, `eid`, `duid`, `uid`, `aid`, ...).
//! - `GET /i?e=pv&...`: one event in the query string, answered with a
//!   1x1 transparent GIF, as a pixel in an `<img>` or an email needs.
//!
//! Each event is stored as that object, plus `eid` when missing,
//! `collector_tstamp` (the gateway's time, the collector's name for it), `ip`
//! when `CLIENT_IP` is on and the tracker set none, and `_gateway`. Its
//! partition key is the domain user id (`duid`), else the user id (`uid`),
//! else the event id.
//!
//! Trackers carry no credential: with `API_KEYS` set, a request passes with
//! a key in the headers (`Authorization: Bearer`, `X-Api-Key`), or when every
//! event's app id (`aid`) is one of the keys.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::context::{Context, GATEWAY_FIELD};
use super::events::{Events, Rejection, Viewed, view_array, view_one};
use super::json::{Id, Object, Present, Walk, id_text, without};
use super::{Decoded, MAX_SOURCE_KEY_BYTES, Protocol, Received, SourceKey};
use crate::error::{ApiError, json_response};

/// The schema prefix of a tracker's POST body.
const PAYLOAD_DATA: &str = "iglu:com.snowplowanalytics.snowplow/payload_data/";

/// Fields the gateway sets whatever the event says.
const OVERWRITTEN: &[&str] = &["collector_tstamp", GATEWAY_FIELD];

/// A 1x1 transparent GIF, what the collector answers `GET /i` with.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The tracker parameters the gateway reads.
#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    eid: Option<Id<'a>>,
    #[serde(borrow, default)]
    duid: Option<Id<'a>>,
    #[serde(borrow, default)]
    uid: Option<Id<'a>>,
    #[serde(borrow, default)]
    aid: Option<Cow<'a, str>>,
    #[serde(default)]
    ip: Present,
    #[serde(default)]
    collector_tstamp: Present,
    #[serde(rename = "_gateway", default)]
    gateway: Present,
}

fn parse(body: &[u8], max_events: usize) -> Result<Vec<Viewed<'_, View<'_>>>, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::BadSdkRequest(
            "the body must be a payload_data JSON object".into(),
        ));
    }
    let not_payload = |e| ApiError::BadSdkRequest(format!("the body is not a Snowplow payload_data: {e}"));
    let (mut schema, mut data) = (None, None);
    let mut walk = Walk::new(body).map_err(not_payload)?;
    walk.object(|walk, name| match &*name {
        "schema" => walk.once(&mut schema, "schema"),
        "data" if data.is_some() => Err(serde::de::Error::duplicate_field("data")),
        "data" => view_array(walk, max_events).map(|events| data = Some(events)),
        _ => walk.value::<IgnoredAny>().map(drop),
    })
    .and_then(|()| walk.end())
    .map_err(not_payload)?;
    let schema: Cow<str> = schema.ok_or_else(|| not_payload(serde::de::Error::missing_field("schema")))?;
    let data = data.ok_or_else(|| not_payload(serde::de::Error::missing_field("data")))?;
    if !schema.starts_with(PAYLOAD_DATA) {
        return Err(ApiError::BadSdkRequest(format!(
            "`schema` must be {PAYLOAD_DATA}jsonschema/1-0-*"
        )));
    }
    data.within(max_events)
}

/// The tracker protocol: `POST .../tp2` (`pixel` false) or `GET /i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snowplow {
    /// One event in the query string, answered with a GIF.
    pub pixel: bool,
}

impl Protocol for Snowplow {
    fn name(&self) -> &'static str {
        "snowplow"
    }

    fn body_limit(&self) -> &'static str {
        "SNOWPLOW_MAX_BODY_BYTES"
    }

    fn event_in_query(&self) -> bool {
        self.pixel
    }

    fn decode(
        &self,
        request: &Received<'_>,
        context: &Context,
        max_events: usize,
        events: Events,
    ) -> Result<Decoded, ApiError> {
        if self.pixel {
            decode_query(request.query, context, events)
        } else {
            Ok(build(parse(request.body, max_events)?, context, events))
        }
    }

    fn success(&self, rejected: &[Rejection]) -> Response<Full<Bytes>> {
        if self.pixel {
            return pixel_response();
        }
        json_response(StatusCode::OK, &Success { status: "ok", rejected })
    }
}

fn pixel_response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(PIXEL)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    response
}

/// Turns a `GET /i` query string into its one record.
fn decode_query(query: &str, context: &Context, events: Events) -> Result<Decoded, ApiError> {
    let event: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned().into()))
        .collect();
    if event.is_empty() {
        return Err(ApiError::BadSdkRequest(
            "the event goes in the query string: /i?e=pv&...".into(),
        ));
    }
    let text = serde_json::to_string(&event).expect("a map of strings serialises");
    let event = view_one(text.as_bytes()).expect("serde_json wrote valid JSON");
    Ok(build(vec![event], context, events))
}

/// The records, and each event's app id (`aid`) as its source key: with
/// `API_KEYS` set, every event's must be a key unless the headers carry one.
fn build(parsed: Vec<Viewed<'_, View<'_>>>, context: &Context, mut events: Events) -> Decoded {
    let mut app_ids = Vec::with_capacity(parsed.len());
    for (index, (raw, view)) in parsed.into_iter().enumerate() {
        app_ids.push(view.as_ref().ok().and_then(|v| v.aid.as_deref().map(str::to_owned)));
        let id = view.as_ref().ok().and_then(|v| v.eid.as_ref()).and_then(Id::text);
        let built = view
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|view| record(context, index, raw, view));
        events.push(index, built, id);
    }
    Decoded {
        key: SourceKey::PerEvent(app_ids),
        events,
    }
}

fn record(context: &Context, index: usize, raw: &str, view: &View) -> Result<(Vec<u8>, String), Rejection> {
    let reject = |code, message: &str| Rejection {
        index,
        code,
        message: message.into(),
    };
    if view.e.as_deref().is_none_or(str::is_empty) {
        return Err(reject("missing_event_type", "the event needs `e`, its type"));
    }
    if view.aid.as_deref().is_some_and(|aid| aid.len() > MAX_SOURCE_KEY_BYTES) {
        return Err(reject(
            "field_too_long",
            &format!(
                "`aid` is longer than {MAX_SOURCE_KEY_BYTES} bytes; it is copied into the record, so it must be short"
            ),
        ));
    }
    let rewritten;
    let mut text = raw.as_bytes();
    if view.collector_tstamp.0 || view.gateway.0 {
        rewritten = without(text, OVERWRITTEN).map_err(|e| reject("invalid_event", &e.to_string()))?;
        text = &rewritten;
    }
    let mut object = Object::extend(text);
    let generated;
    let eid = match view.eid.as_ref().and_then(Id::text) {
        Some(eid) => eid,
        None => {
            generated = uuid::Uuid::new_v4().to_string();
            object.field("eid", &generated);
            &generated
        }
    };
    object.field("collector_tstamp", &context.received_at);
    if !view.ip.0
        && let Some(ip) = &context.ip
    {
        object.field("ip", ip);
    }
    context.mark(&mut object, view.aid.as_deref());
    let key = id_text(&view.duid).or_else(|| id_text(&view.uid)).unwrap_or(eid);
    Ok((object.finish(), key.to_owned()))
}

#[derive(Serialize)]
struct Success<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    rejected: &'a [Rejection],
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4";

    #[test]
    fn payload_data_parses_and_bad_events_are_rejected_alone() {
        let body = format!(r#"{{"schema":"{SCHEMA}","data":[{{"e":"pv","eid":"1"}},[],{{"e":1}}]}}"#);
        let events = parse(body.as_bytes(), 5).unwrap();
        let codes: Vec<_> = events
            .iter()
            .map(|(_, v)| v.as_ref().map(|_| ()).map_err(|r| r.code))
            .collect();
        assert_eq!(codes, [Ok(()), Err("not_an_object"), Err("invalid_event")]);
    }

    #[test]
    fn other_bodies_are_400() {
        for body in [
            String::new(),
            "[]".into(),
            r#"{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":[{"e":"pv"}]}"#.into(),
            format!(r#"{{"schema":"{SCHEMA}","data":{{}}}}"#),
            format!(r#"{{"schema":"{SCHEMA}"}}"#),
            format!(r#"{{"schema":"{SCHEMA}","data":[]}}"#),
        ] {
            assert!(parse(body.as_bytes(), 5).is_err(), "{body}");
        }
        let six = format!(r#"{{"schema":"{SCHEMA}","data":[{{}},{{}},{{}},{{}},{{}},{{}}]}}"#);
        assert!(matches!(
            parse(six.as_bytes(), 5),
            Err(ApiError::TooManyRecords { max: 5 })
        ));
    }

    #[test]
    fn odd_queries_make_one_event_or_a_400() {
        let context = Context::plain("snowplow");
        let decoded = decode_query(
            "e=pv&e=se&%FF=%00&eid=x",
            &context,
            Events::new(crate::sink::RecordRules {
                max_bytes: 1000,
                max_key_chars: 256,
            }),
        )
        .unwrap();
        assert_eq!(decoded.events.records().len(), 1, "a repeated parameter: the last wins");
        let text = String::from_utf8(decoded.events.records()[0].data.to_vec()).unwrap();
        assert!(
            text.contains(r#""e":"se""#) && text.contains("\"\u{fffd}\":\"\\u0000\""),
            "{text}"
        );
        for query in ["", "&&", "="] {
            let decoded = decode_query(
                query,
                &context,
                Events::new(crate::sink::RecordRules {
                    max_bytes: 1000,
                    max_key_chars: 256,
                }),
            );
            assert!(
                decoded.is_err() || decoded.unwrap().events.records().is_empty(),
                "{query:?}"
            );
        }
    }

    #[test]
    fn the_pixel_is_a_gif() {
        assert!(PIXEL.starts_with(b"GIF89a"));
        assert_eq!(PIXEL.last(), Some(&0x3b));
    }
}
