//! JSON pieces the SDK protocols share: splicing fields into an event's own
//! text ([`Object`]), reading fields without copying them ([`Present`],
//! [`Id`]), and an array of events that keeps at most a bounded number of
//! raw elements ([`RawEvents`]).

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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
}
