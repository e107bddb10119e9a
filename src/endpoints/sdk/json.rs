//! JSON pieces the SDK protocols share: splicing fields into an event's own
//! text ([`Object`]), reading fields without copying them ([`Present`],
//! [`Id`]), and a body read one value at a time with each value's text
//! kept ([`Walk`]).

use std::borrow::Cow;

use serde::de::{Deserializer, Error as _, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};

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
        self.separate();
        write_field(&mut self.out, name, value);
        self
    }

    /// Appends a field rendered once for many events.
    pub fn rendered(&mut self, field: &Rendered) -> &mut Self {
        self.separate();
        self.out.extend_from_slice(&field.0);
        self
    }

    fn separate(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    /// The object's text.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// A `"name":value` pair rendered once, for a field every event of a
/// request gets the same (the time received, the source key): a copy per
/// event instead of serialising it again (two escaped strings or more each).
#[derive(Debug, Clone)]
pub struct Rendered(Vec<u8>);

impl Rendered {
    pub fn new(name: &str, value: &impl Serialize) -> Self {
        let mut out = Vec::new();
        write_field(&mut out, name, value);
        Rendered(out)
    }
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    // Writing plain values to a Vec cannot fail.
    serde_json::to_writer(&mut *out, name).expect("a string serialises");
    out.push(b':');
    serde_json::to_writer(out, value).expect("plain values serialise");
}

/// `raw` (a JSON object) written again without the fields in `names`, for
/// the rare event that already carries a field the gateway sets.
pub(crate) fn without(raw: &[u8], names: &[&str]) -> Result<Vec<u8>, serde_json::Error> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw)?;
    for name in names {
        object.remove(*name);
    }
    serde_json::to_vec(&object)
}

/// Whether a field is in an event, whatever its value (`null` included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present(true))
    }
}

/// A string field of an event, borrowed from the body unless it has
/// escapes. serde's `borrow` borrows a `Cow<str>` field, but an
/// `Option<Cow<str>>` it always copies: an allocation per event and field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// A user or event id: a string, or a number as the SDKs allow, as text.
/// An empty string is no id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Id<'a>(pub Cow<'a, str>);

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
    pub(crate) fn text(&self) -> Option<&str> {
        Some(self.0.as_ref()).filter(|s| !s.is_empty())
    }
}

/// A field that names the event itself (`messageId`, `uuid`): whether the
/// event has it at all (`null` included: the gateway then adds none), and
/// its text when it is a string or a number. Read in the event's one pass,
/// without copying.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct IdField<'a> {
    /// The field is in the event, whatever its value.
    pub(crate) present: bool,
    /// Its value, when it is a string or a number.
    pub(crate) id: Option<Id<'a>>,
}

impl<'a> IdField<'a> {
    /// The id, unless the field is missing, not a string or number, or empty.
    pub(crate) fn text(&self) -> Option<&str> {
        self.id.as_ref().and_then(Id::text)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for IdField<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = IdField<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<IdField<'de>, E> {
                Ok(found(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<IdField<'de>, E> {
                Ok(found(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<IdField<'de>, E> {
                Ok(found(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<IdField<'de>, E> {
                Ok(found(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<IdField<'de>, E> {
                Ok(found(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<IdField<'de>, E> {
                Ok(no_id())
            }
            fn visit_unit<E>(self) -> Result<IdField<'de>, E> {
                Ok(no_id())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<IdField<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(no_id())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<IdField<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(no_id())
            }
        }
        fn found(id: Cow<'_, str>) -> IdField<'_> {
            IdField {
                present: true,
                id: Some(Id(id)),
            }
        }
        fn no_id<'a>() -> IdField<'a> {
            IdField {
                present: true,
                id: None,
            }
        }
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// The text of an id field, if it is there and not empty.
pub(crate) fn id_text<'a>(id: &'a Option<Id<'_>>) -> Option<&'a str> {
    id.as_ref().and_then(Id::text)
}

/// A JSON text read one value at a time, each value's own text kept, so a
/// door reads an event's fields and finds where the event ends in one pass.
/// Deserialising each event as `&RawValue` and then its fields reads every
/// byte twice: on `/v1/batch` that was a third of the instructions per event
/// outside SHA-256. serde_json parses, and so validates, every value; this
/// only steps over the punctuation between them.
#[derive(Debug)]
pub(crate) struct Walk<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Walk<'a> {
    /// Starts at the beginning of `body`, which must be UTF-8 (as JSON is).
    pub(crate) fn new(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        let text = std::str::from_utf8(body)
            .map_err(|e| serde_json::Error::custom(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
        Ok(Walk { text, pos: 0 })
    }

    /// The bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.text.len() - self.pos
    }

    /// The next byte after any whitespace, which is skipped; not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        let rest = &self.text.as_bytes()[self.pos..];
        let blank = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
            .count();
        self.pos += blank;
        rest.get(blank).copied()
    }

    /// The next value as `T`, and its text. On an error nothing is consumed,
    /// so the caller may read the same value again as another type.
    pub(crate) fn value<T: Deserialize<'a>>(&mut self) -> Result<(T, &'a str), serde_json::Error> {
        self.peek();
        let rest = &self.text[self.pos..];
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        match stream.next() {
            Some(Ok(value)) => {
                let end = stream.byte_offset();
                self.pos += end;
                Ok((value, &rest[..end]))
            }
            Some(Err(e)) => Err(self.locate(e)),
            None => Err(self.expected("a value")),
        }
    }

    /// Steps through an object: `field` gets each name and must read its value.
    pub(crate) fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        self.enter(b'{', "an object")?;
        if self.close(b'}') {
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.expected("a field name"));
            }
            let (name, _) = self.value()?;
            if self.peek() != Some(b':') {
                return Err(self.expected("`:`"));
            }
            self.pos += 1;
            field(self, name)?;
            if !self.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    /// Steps through an array: `element` must read each element.
    pub(crate) fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        self.enter(b'[', "an array")?;
        if self.close(b']') {
            return Ok(());
        }
        loop {
            element(self)?;
            if !self.next_or_close(b']')? {
                return Ok(());
            }
        }
    }

    /// Reads the value of field `name` into `slot`, unless the object had
    /// the field already: as serde's derive does, a field appears once.
    pub(crate) fn once<T: Deserialize<'a>>(
        &mut self,
        slot: &mut Option<T>,
        name: &'static str,
    ) -> Result<(), serde_json::Error> {
        if slot.is_some() {
            return Err(serde_json::Error::duplicate_field(name));
        }
        *slot = Some(self.value()?.0);
        Ok(())
    }

    /// Fails unless only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), serde_json::Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.expected("the end of the text")),
        }
    }

    fn enter(&mut self, open: u8, what: &str) -> Result<(), serde_json::Error> {
        if self.peek() != Some(open) {
            return Err(self.expected(what));
        }
        self.pos += 1;
        Ok(())
    }

    /// Consumes `close` if it is next.
    fn close(&mut self, close: u8) -> bool {
        let closed = self.peek() == Some(close);
        self.pos += usize::from(closed);
        closed
    }

    /// After a member: `true` past a `,` (another follows), `false` past `close`.
    fn next_or_close(&mut self, close: u8) -> Result<bool, serde_json::Error> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.expected(&format!("`,` or `{}`", char::from(close)))),
        }
    }

    fn expected(&self, what: &str) -> serde_json::Error {
        serde_json::Error::custom(format!("expected {what} at {}", self.position(self.pos)))
    }

    /// `e`, from parsing the value that starts here, placed in the whole text.
    fn locate(&self, e: serde_json::Error) -> serde_json::Error {
        if e.line() == 0 {
            return e;
        }
        let rest = &self.text.as_bytes()[self.pos..];
        let line_start = match e.line() {
            1 => 0,
            line => rest
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(line - 2)
                .map_or(rest.len(), |(i, _)| i + 1),
        };
        let at = (self.pos + line_start + e.column().saturating_sub(1)).min(self.text.len());
        let message = e.to_string();
        let bare = message
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&message);
        serde_json::Error::custom(format!("{bare} at {}", self.position(at)))
    }

    /// `at` as serde_json says where it is: line and column, from 1.
    fn position(&self, at: usize) -> String {
        let before = &self.text.as_bytes()[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = at - before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) + 1;
        format!("line {line} column {column}")
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

    /// Each element of `text`'s array as (what `T` read, its text), or the error.
    fn walked<'a, T: Deserialize<'a>>(text: &'a str) -> Result<Vec<(T, &'a str)>, String> {
        let mut walk = Walk::new(text.as_bytes()).map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        walk.array(|walk| walk.value().map(|v| got.push(v)))
            .and_then(|()| walk.end())
            .map_err(|e| e.to_string())?;
        Ok(got)
    }

    #[test]
    fn a_walk_keeps_each_values_own_text() {
        let got = walked::<IgnoredAny>(" [ 1 ,{\"a\" : [2, \"]\"]}\n,\"x\"  ,null,-0.5e3,[] ] ").unwrap();
        let texts: Vec<_> = got.iter().map(|(_, text)| *text).collect();
        assert_eq!(texts, ["1", "{\"a\" : [2, \"]\"]}", "\"x\"", "null", "-0.5e3", "[]"]);
        assert_eq!(walked::<IgnoredAny>("[]").unwrap().len(), 0);

        let mut walk = Walk::new(br#"{"\u0062atch": [true], "n": {"b": 1}, "": 2}"#).unwrap();
        let mut fields = Vec::new();
        walk.object(|walk, name| {
            let (_, text) = walk.value::<IgnoredAny>()?;
            fields.push((name.into_owned(), text));
            Ok(())
        })
        .unwrap();
        walk.end().unwrap();
        assert_eq!(
            fields,
            [
                ("batch".into(), "[true]"),
                ("n".into(), r#"{"b": 1}"#),
                (String::new(), "2")
            ]
        );
    }

    #[test]
    fn a_walk_refuses_what_is_not_json_and_says_where_as_serde_json_does() {
        // The position of each error is where serde_json, reading the whole
        // text at once, finds the same fault.
        for (text, error) in [
            ("[1,]", "expected value"),
            ("[1 2]", "expected `,` or `]`"),
            ("[1x]", "trailing characters"),
            ("[1] 2", "expected the end of the text"),
            ("[{\"a\":\n  tru}]", "expected ident"),
            ("\n  [{},\n {\"\\q\"}]", "invalid escape"),
            ("[{\"a\":1,\n\n\"b\" 2}]", "expected `:`"),
        ] {
            let whole = serde_json::from_str::<IgnoredAny>(text).unwrap_err();
            let at = format!(" at line {} column {}", whole.line(), whole.column());
            assert_eq!(
                walked::<IgnoredAny>(text).unwrap_err(),
                format!("{error}{at}"),
                "{text:?}"
            );
        }
        assert_eq!(
            walked::<IgnoredAny>("{}").unwrap_err(),
            "expected an array at line 1 column 1"
        );
        assert_eq!(
            walked::<IgnoredAny>("[1").unwrap_err(),
            "expected `,` or `]` at line 1 column 3"
        );
        assert!(Walk::new(b"[\"\xff\"]").is_err());
    }

    #[test]
    fn a_value_that_is_not_the_type_asked_is_not_consumed() {
        let mut walk = Walk::new(br#"["x", 2]"#).unwrap();
        let mut got = Vec::new();
        walk.array(|walk| {
            let number = walk.value::<u32>();
            assert!(number.is_ok() || walk.value::<u32>().is_err(), "nothing was consumed");
            let (_, text) = match number {
                Ok((n, text)) => (n.to_string(), text),
                Err(_) => walk.value::<String>()?,
            };
            got.push(text);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, ["\"x\"", "2"]);
    }
}
