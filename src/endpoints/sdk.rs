//! What the analytics SDKs' endpoints (`segment.rs`, `posthog.rs`,
//! `snowplow.rs`) share: turning a protocol's events into records, and
//! storing them with the answers those SDKs understand.
//!
//! Each event becomes one record: its own bytes as the SDK sent them, with
//! the fields its protocol's collector adds appended before the closing `}`
//! ([`Object`]), so nothing the SDK wrote is re-serialised. Only when an
//! event already carries a field the gateway sets (a client's `receivedAt`)
//! is it parsed and written again without that field.
//!
//! An event that is not valid on its own (no user, over the record limit) is
//! rejected alone ([`Events::reject`]): the others are stored, and the 200
//! lists the rejected indexes. SDKs drop a whole batch on any 4xx, so one
//! bad event must not cost the 99 good ones. A request whose events are all
//! rejected is 400. A failure to store is the whole request's: 429 (the
//! stream is throttled) or 503, each with `Retry-After`, or 502; the SDK
//! then sends the batch again, so delivery is at least once and consumers
//! dedupe on the event's own id (`messageId`, `uuid`, `eid`).

use std::borrow::Cow;
use std::time::SystemTime;

use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use serde::de::{Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};

use crate::api::Peer;
use crate::app::App;
use crate::config::ClientIp;
use crate::error::{ApiError, log_sink_failure};
use crate::partition_key;
use crate::sink::{Record, SinkError};

/// The protocol an event arrived in, named in its record and in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Segment's HTTP tracking API, which RudderStack's SDKs speak too.
    Segment,
    /// PostHog capture.
    PostHog,
    /// The Snowplow tracker protocol.
    Snowplow,
}

impl Protocol {
    /// The name in records (`_gateway.protocol`) and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Segment => "segment",
            Protocol::PostHog => "posthog",
            Protocol::Snowplow => "snowplow",
        }
    }
}

/// The field every record gets, so a consumer can tell where it came from
/// without HTTP logs: `"_gateway": {"protocol": ..., "key": ...}`.
pub const GATEWAY_FIELD: &str = "_gateway";

#[derive(Serialize)]
struct GatewayMeta<'a> {
    protocol: &'static str,
    key: Option<&'a str>,
}

/// What every event of one request is enriched with.
#[derive(Debug)]
pub struct Context {
    /// The protocol.
    pub protocol: Protocol,
    /// When the gateway received the request, RFC 3339 UTC.
    pub received_at: String,
    /// The client's address, when `CLIENT_IP` asks for it.
    pub ip: Option<String>,
}

impl Context {
    /// A context with no IP address, received now: for tests and the fuzzer.
    pub fn plain(protocol: Protocol) -> Self {
        Context {
            protocol,
            received_at: timestamp(SystemTime::now()),
            ip: None,
        }
    }

    /// The context of a request in `protocol` from `head`.
    pub fn new(app: &App, protocol: Protocol, head: &Parts) -> Self {
        Context {
            protocol,
            received_at: timestamp(SystemTime::now()),
            ip: client_ip(app.sdk.client_ip, head),
        }
    }

    /// Appends `_gateway`, naming the protocol and `key`, the event's source
    /// key (write key, project key, app id) when it has one.
    pub fn mark(&self, object: &mut Object, key: Option<&str>) {
        object.field(
            GATEWAY_FIELD,
            &GatewayMeta {
                protocol: self.protocol.name(),
                key,
            },
        );
    }
}

/// `time` as RFC 3339 UTC, to the microsecond at most (`2026-11-23T10:00:00.5Z`).
pub fn timestamp(time: SystemTime) -> String {
    DateTime::from(time)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// The client's address as `CLIENT_IP` says: none, the peer's, or the last
/// `X-Forwarded-For` entry (the one the trusted proxy appended).
fn client_ip(policy: ClientIp, head: &Parts) -> Option<String> {
    let peer = || head.extensions.get::<Peer>().map(|p| p.0.ip().to_string());
    match policy {
        ClientIp::Off => None,
        ClientIp::Socket => peer(),
        ClientIp::Forwarded => forwarded_for(&head.headers).or_else(peer),
    }
}

fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

/// A JSON object being extended with fields before its closing `}`.
#[derive(Debug)]
pub struct Object {
    out: Vec<u8>,
    empty: bool,
}

impl Object {
    /// Starts from `raw`, the text of a JSON object (already validated).
    pub fn extend(raw: &[u8]) -> Self {
        let raw = raw.trim_ascii();
        let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
        let mut out = Vec::with_capacity(raw.len() + 256);
        out.extend_from_slice(&raw[..raw.len().saturating_sub(1)]);
        Object {
            out,
            empty: inner.trim_ascii().is_empty(),
        }
    }

    /// Appends `"name": value`.
    pub fn field(&mut self, name: &str, value: &impl Serialize) -> &mut Self {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        // Writing plain values to a Vec cannot fail.
        serde_json::to_writer(&mut self.out, name).expect("a string serialises");
        self.out.push(b':');
        serde_json::to_writer(&mut self.out, value).expect("plain values serialise");
        self
    }

    /// The object's text.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// `raw` (a JSON object) written again without the fields in `names`, for
/// the rare event that already carries a field the gateway sets.
pub fn without(raw: &[u8], names: &[&str]) -> Result<Vec<u8>, serde_json::Error> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw)?;
    for name in names {
        object.remove(*name);
    }
    serde_json::to_vec(&object)
}

/// Whether a field is in an event, whatever its value (`null` included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// A user or event id: a string, or a number as the SDKs allow, as text.
/// An empty string is no id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

impl Id<'_> {
    /// The id, unless it is empty.
    pub fn text(&self) -> Option<&str> {
        Some(self.0.as_ref()).filter(|s| !s.is_empty())
    }
}

/// The text of an id field, if it is there and not empty.
pub fn id_text<'a>(id: &'a Option<Id<'_>>) -> Option<&'a str> {
    id.as_ref().and_then(Id::text)
}

/// Elements kept of one array of events; `SDK_MAX_EVENTS` can be at most
/// this many, so keeping one more is enough to know a request is over it.
const KEEP_EVENTS: usize = 100_001;

/// A JSON array of events, each kept as its raw text, but never more than
/// [`KEEP_EVENTS`] of them: the rest are counted and skipped, so a body of
/// millions of tiny elements costs no memory beyond its own bytes.
#[derive(Debug, Default)]
pub struct RawEvents<'a> {
    /// The first elements.
    pub kept: Vec<&'a serde_json::value::RawValue>,
    /// How many elements the array has.
    pub total: usize,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawEvents<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor;
        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = RawEvents<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawEvents<'de>, A::Error> {
                let mut events = RawEvents::default();
                while events.kept.len() < KEEP_EVENTS {
                    match seq.next_element()? {
                        Some(raw) => events.kept.push(raw),
                        None => {
                            events.total = events.kept.len();
                            return Ok(events);
                        }
                    }
                }
                events.total = events.kept.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    events.total += 1;
                }
                Ok(events)
            }
        }
        deserializer.deserialize_seq(ArrayVisitor)
    }
}

impl<'a> RawEvents<'a> {
    /// The events, when there are some and at most `max`.
    pub fn within(self, max: usize) -> Result<Vec<&'a serde_json::value::RawValue>, ApiError> {
        if self.total == 0 {
            return Err(ApiError::EmptyBatch);
        }
        if self.total > max {
            return Err(ApiError::TooManyRecords { max });
        }
        Ok(self.kept)
    }
}

/// One event of a request: its text, and the fields the endpoint reads
/// from it or why they could not be read.
pub type Viewed<'a, V> = (&'a serde_json::value::RawValue, Result<V, Rejection>);

/// The fields an endpoint reads from event `index`, or why they cannot be
/// read: not a JSON object (a struct would also take an array), or not
/// parseable as the view.
pub fn view<'a, V: Deserialize<'a>>(index: usize, raw: &'a serde_json::value::RawValue) -> Result<V, Rejection> {
    let reject = |code, message: String| Rejection { index, code, message };
    if !raw.get().starts_with('{') {
        return Err(reject("not_an_object", "the event is not a JSON object".into()));
    }
    serde_json::from_str(raw.get()).map_err(|e| reject("invalid_event", format!("the event does not parse: {e}")))
}

/// An event that was not stored, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// The event's position in the request (0-based).
    pub index: usize,
    /// A fixed code, also the metric label.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

/// A request's events sorted into records to write and rejections.
#[derive(Debug)]
pub struct Events {
    records: Vec<Record>,
    positions: Vec<usize>,
    rejected: Vec<Rejection>,
    max_record: usize,
}

impl Events {
    /// None yet, each record to be at most the stream's record limit.
    pub fn new(app: &App) -> Self {
        Self::with_limit(app.max_record_bytes())
    }

    /// None yet, each record to be at most `max_record` bytes.
    pub fn with_limit(max_record: usize) -> Self {
        Events {
            records: Vec::new(),
            positions: Vec::new(),
            rejected: Vec::new(),
            max_record,
        }
    }

    /// The records, in the order they will be written.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The rejections so far.
    pub fn rejected(&self) -> &[Rejection] {
        &self.rejected
    }

    /// Event `index` as a record, unless it is over the record limit. A key
    /// over Kinesis's 256 characters is hashed, as for `PARTITION_KEY_FIELDS`.
    pub fn accept(&mut self, index: usize, data: Vec<u8>, key: &str) {
        let partition_key = if key.chars().count() > partition_key::MAX_CHARS {
            partition_key::shorten(key)
        } else {
            key.to_owned()
        };
        let record = Record {
            data: data.into(),
            partition_key,
        };
        if record.size() > self.max_record {
            let message = format!(
                "the event is {} bytes with its partition key and enrichment; the limit is {}",
                record.size(),
                self.max_record
            );
            return self.reject(index, "too_large", message);
        }
        self.records.push(record);
        self.positions.push(index);
    }

    /// Event `index` as built: its record text and partition key, or why not.
    pub fn push(&mut self, index: usize, built: Result<(Vec<u8>, String), Rejection>) {
        match built {
            Ok((data, key)) => self.accept(index, data, &key),
            Err(rejection) => self.rejected.push(rejection),
        }
    }

    /// Event `index` is not stored: `code` says why.
    pub fn reject(&mut self, index: usize, code: &'static str, message: impl Into<String>) {
        self.rejected.push(Rejection {
            index,
            code,
            message: message.into(),
        });
    }

    /// Records to write.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What [`store`] wrote: enough for the endpoint's 200 and its access log.
#[derive(Debug)]
pub struct Stored {
    /// Events stored.
    pub records: usize,
    /// Events rejected, in request order.
    pub rejected: Vec<Rejection>,
    /// The shard of the first stored record.
    pub shard_id: Option<String>,
}

/// Writes the accepted events and decides the request's fate: `Ok` when
/// every accepted event is in the stream (the endpoint answers 200),
/// else the error the SDK should see.
pub async fn store(app: &App, protocol: Protocol, events: Events, request_id: &str) -> Result<Stored, ApiError> {
    let Events {
        records,
        positions,
        mut rejected,
        ..
    } = events;
    let count_rejections = |rejected: &[Rejection]| {
        for rejection in rejected {
            app.metrics.sdk_event_rejected(protocol.name(), rejection.code);
        }
    };
    if records.is_empty() {
        count_rejections(&rejected);
        return Err(ApiError::NoValidEvents { rejected });
    }
    let outcomes = app.put(records).await;
    let mut failure: Option<(SinkError, usize)> = None;
    let mut shard_id = None;
    let mut stored = 0;
    for (outcome, index) in outcomes.into_iter().zip(positions) {
        match outcome {
            Ok(receipt) => {
                stored += 1;
                shard_id.get_or_insert(receipt.shard_id);
            }
            // The stream refused this record for good: the event's own fault.
            Err(SinkError::Rejected(detail)) => rejected.push(Rejection {
                index,
                code: "refused_by_stream",
                message: format!("the stream refused the event: {detail}"),
            }),
            Err(err) => match &mut failure {
                Some((gravest, same)) => {
                    if gravity(&err) < gravity(gravest) {
                        *gravest = err;
                        *same = 1;
                    } else if err.label() == gravest.label() {
                        *same += 1;
                    }
                }
                None => failure = Some((err, 1)),
            },
        }
    }
    if let Some((err, same)) = failure {
        // `ApiError::Sink` logs itself when answered; 429 is ours to log.
        return Err(match err {
            SinkError::Throttled(_) => {
                log_sink_failure(request_id, &err, same);
                ApiError::RateLimited
            }
            other => ApiError::Sink(other),
        });
    }
    rejected.sort_by_key(|r| r.index);
    count_rejections(&rejected);
    app.metrics.sdk_events_stored(protocol.name(), stored);
    if stored == 0 {
        return Err(ApiError::NoValidEvents { rejected });
    }
    Ok(Stored {
        records: stored,
        rejected,
        shard_id,
    })
}

/// Lower is graver: an operator must act, then retry later.
fn gravity(err: &SinkError) -> u8 {
    match err {
        SinkError::Misconfigured(_) => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extended(raw: &str) -> String {
        let mut object = Object::extend(raw.as_bytes());
        object.field("a", &1).field("b", &"x\"y");
        String::from_utf8(object.finish()).unwrap()
    }

    #[test]
    fn fields_go_before_the_closing_brace_and_keep_the_rest() {
        assert_eq!(extended(r#"{"k" : [1, {}] }"#), r#"{"k" : [1, {}] ,"a":1,"b":"x\"y"}"#);
        assert_eq!(extended("{}"), r#"{"a":1,"b":"x\"y"}"#);
        assert_eq!(
            extended(" {  \n } "),
            r#"{  
 "a":1,"b":"x\"y"}"#
        );
        let value: serde_json::Value = serde_json::from_str(&extended(r#"{"k":"}"}"#)).unwrap();
        assert_eq!(value["k"], "}");
        assert_eq!(value["b"], "x\"y");
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        let id = |json: &str| {
            serde_json::from_str::<Option<Id>>(json).map(|id| id.and_then(|i| i.text().map(str::to_owned)))
        };
        assert_eq!(id(r#""u-1""#).unwrap().as_deref(), Some("u-1"));
        assert_eq!(id("42").unwrap().as_deref(), Some("42"));
        assert_eq!(id("-7").unwrap().as_deref(), Some("-7"));
        assert_eq!(id("1.5").unwrap().as_deref(), Some("1.5"));
        assert_eq!(id(r#""""#).unwrap(), None);
        assert_eq!(id("null").unwrap(), None);
        assert!(id("{}").is_err());
        assert!(id("[1]").is_err());
        assert!(id("true").is_err());
    }

    #[test]
    fn forwarded_for_takes_the_last_hop() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        headers.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(forwarded_for(&headers).as_deref(), Some("198.51.100.7"));
        headers.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(forwarded_for(&headers), None);
    }

    #[test]
    fn an_event_of_exactly_the_record_limit_is_kept_and_one_byte_more_rejected() {
        let mut events = Events::with_limit(100);
        events.accept(0, vec![b'x'; 96], "user");
        events.accept(1, vec![b'x'; 97], "user");
        let long_key = "k".repeat(300);
        // A long key is hashed to 71 characters first, as Kinesis needs.
        events.accept(2, vec![b'x'; 29], &long_key);
        assert_eq!(events.positions, [0, 2]);
        assert_eq!(events.records[1].partition_key, partition_key::shorten(&long_key));
        assert_eq!(events.records[1].partition_key.len(), 71);
        assert_eq!(events.rejected.len(), 1);
        assert_eq!((events.rejected[0].index, events.rejected[0].code), (1, "too_large"));
    }

    #[test]
    fn a_huge_array_keeps_a_bounded_number_of_events() {
        let body = format!("[{}{{}}]", "{},".repeat(KEEP_EVENTS + 5));
        let events: RawEvents = serde_json::from_str(&body).unwrap();
        assert_eq!((events.kept.len(), events.total), (KEEP_EVENTS, KEEP_EVENTS + 6));
        assert!(matches!(
            events.within(100_000),
            Err(ApiError::TooManyRecords { max: 100_000 })
        ));
        let events: RawEvents = serde_json::from_str("[1, {\"a\": [2]}]").unwrap();
        assert_eq!(
            events.within(2).unwrap().iter().map(|r| r.get()).collect::<Vec<_>>(),
            ["1", "{\"a\": [2]}"]
        );
        let empty: RawEvents = serde_json::from_str("[]").unwrap();
        assert!(matches!(empty.within(2), Err(ApiError::EmptyBatch)));
        assert!(serde_json::from_str::<RawEvents>("[1,").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40.123Z");
    }
}
