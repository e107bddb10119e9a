//! `POST /import/batch`: many events in one body, each stored as its own
//! record, answered in request order in the shape of Kinesis's `PutRecords`
//! output.
//!
//! - `Content-Type: application/x-ndjson` (or `application/jsonl`,
//!   `application/x-jsonlines`): each non-blank line is one record, its bytes
//!   unchanged but for the `\n` or `\r\n` line end.
//! - Anything else (`application/json`, none, a browser's `text/plain`): the
//!   body is a JSON array, and each element is one record, its bytes exactly
//!   as sent (split without re-serialising: whitespace between elements
//!   belongs to no record).
//!
//! Validation is all or nothing, before anything is written. The answer is
//! [`answer::batch`]'s: 200 only when every record is stored, else the
//! status of the gravest failure, with every record's outcome listed.

use bytes::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Request};
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{answer, presented_key};
use crate::body::RequestBody;
use crate::dedupe::EventIds;
use crate::doors::Doors;
use crate::endpoints::Reply;
use crate::error::ApiError;
use crate::ingest::{Limits, ingest};
use crate::live::Arrival;
use crate::nesting;
use crate::sink::Record;

/// Stores every event of the body and answers with one entry per record.
pub(crate) async fn handle<B>(doors: &Doors, request: Request<B>, request_id: &str) -> Result<Reply, ApiError>
where
    B: RequestBody,
{
    let mut ingested = ingest(doors, request, Limits::events(doors.import().batch_max_bytes)).await?;
    let max_records = doors.import().batch_max_records;
    let events = match Format::of(ingested.headers()) {
        Format::Ndjson => split_ndjson(&ingested.body, max_records)?,
        Format::JsonArray => split_json_array(&ingested.body, max_records)?,
    };
    if events.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    let max = doors.import().max_depth;
    if let Some(index) = events.iter().position(|event| nesting::too_deep(event, max)) {
        return Err(ApiError::TooDeep { index, max });
    }
    let bytes = ingested.body.len();
    let batch = doors
        .records(events, ingested.partition_key.as_deref())
        .map_err(|o| ApiError::RecordTooLarge {
            index: o.index,
            limit: o.limit,
        })?;
    ingested.hold_records(bytes, batch.len(), batch.iter().map(Record::size).sum())?;
    let presented = presented_key(&ingested.head.headers);
    let arrival = || Arrival::import("/import/batch", presented);
    let events = batch.len() as u64;
    let report = doors
        .put(
            arrival,
            &[(doors.api_source(presented), events)],
            batch,
            EventIds::none(),
        )
        .await?;
    Ok(answer::batch(report, request_id, bytes, doors.access_log()))
}

/// The body's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonArray,
    Ndjson,
}

impl Format {
    fn of(headers: &HeaderMap) -> Self {
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        match media_type.as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines") => {
                Format::Ndjson
            }
            _ => Format::JsonArray,
        }
    }
}

/// Each element of a JSON array, as a view of `body`'s own bytes.
pub(crate) fn split_json_array(body: &Bytes, max_records: usize) -> Result<Vec<Bytes>, ApiError> {
    let starts_as_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !starts_as_array {
        return Err(ApiError::InvalidBatch {
            index: None,
            reason: "the body is not a JSON array; send [event, ...] or NDJSON with Content-Type: application/x-ndjson"
                .into(),
        });
    }
    let mut elements = Vec::new();
    let mut too_many = false;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let seed = Elements {
        out: &mut elements,
        max: max_records,
        too_many: &mut too_many,
    };
    let parsed = seed.deserialize(&mut deserializer);
    if too_many {
        return Err(ApiError::TooManyRecords { max: max_records });
    }
    if let Err(err) = parsed {
        return Err(ApiError::InvalidBatch {
            index: Some(elements.len()),
            reason: format!("record {} is not valid JSON: {err}", elements.len()),
        });
    }
    deserializer.end().map_err(|err| ApiError::InvalidBatch {
        index: None,
        reason: format!("unexpected data after the array: {err}"),
    })?;
    Ok(elements
        .into_iter()
        .map(|raw| body.slice_ref(raw.get().as_bytes()))
        .collect())
}

/// Each non-blank line, without its line end, as a view of `body`'s bytes.
pub(crate) fn split_ndjson(body: &Bytes, max_records: usize) -> Result<Vec<Bytes>, ApiError> {
    let mut lines = Vec::new();
    for (number, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if lines.len() == max_records {
            return Err(ApiError::TooManyRecords { max: max_records });
        }
        if let Err(err) = serde_json::from_slice::<&RawValue>(line) {
            return Err(ApiError::InvalidBatch {
                index: Some(lines.len()),
                reason: format!("record {} (line {}) is not valid JSON: {err}", lines.len(), number + 1),
            });
        }
        lines.push(body.slice_ref(line));
    }
    Ok(lines)
}

/// Collects a JSON array's elements as raw slices, stopping past `max`.
struct Elements<'v, 'de> {
    out: &'v mut Vec<&'de RawValue>,
    max: usize,
    too_many: &'v mut bool,
}

impl<'de> DeserializeSeed<'de> for Elements<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if self.out.len() == self.max {
                *self.too_many = true;
                return Err(A::Error::custom("too many records"));
            }
            self.out.push(element);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &'static str) -> Result<Vec<String>, ApiError> {
        split_json_array(&Bytes::from_static(body.as_bytes()), 5)
            .map(|v| v.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect())
    }

    fn ndjson(body: &'static [u8]) -> Result<Vec<Vec<u8>>, ApiError> {
        split_ndjson(&Bytes::from_static(body), 5).map(|v| v.iter().map(|b| b.to_vec()).collect())
    }

    #[test]
    fn array_elements_keep_their_bytes_and_drop_the_whitespace_between() {
        let got = json(" [ {\"a\" : 1} ,\n\"\\u00e9t\u{e9}\",1.50e2, [ ], null ] ").unwrap();
        assert_eq!(got, ["{\"a\" : 1}", "\"\\u00e9t\u{e9}\"", "1.50e2", "[ ]", "null"]);
    }

    #[test]
    fn array_errors_name_the_first_offending_record() {
        let err = json(r#"[{"a":1}, {"b":}]"#).unwrap_err();
        assert!(matches!(err, ApiError::InvalidBatch { index: Some(1), .. }), "{err:?}");
        let err = json(r#"{"not":"an array"}"#).unwrap_err();
        assert!(matches!(err, ApiError::InvalidBatch { index: None, .. }), "{err:?}");
        let err = json(r#"[1,2] 3"#).unwrap_err();
        assert!(matches!(err, ApiError::InvalidBatch { index: None, .. }), "{err:?}");
        let err = json("[1,2,3,4,5,6]").unwrap_err();
        assert!(matches!(err, ApiError::TooManyRecords { max: 5 }), "{err:?}");
        assert_eq!(json("[1,2,3,4,5]").unwrap().len(), 5, "exactly the limit is fine");
        assert_eq!(json("[]").unwrap().len(), 0);
        // Raw elements are skipped without recursion: deep nesting is valid
        // JSON and costs no stack.
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep = Bytes::from(format!("[1,{nested}]"));
        assert_eq!(split_json_array(&deep, 5).unwrap()[1], nested.as_bytes());
        let unclosed = Bytes::from(format!("[1,{}]", "[".repeat(100_000)));
        let err = split_json_array(&unclosed, 5).unwrap_err();
        assert!(matches!(err, ApiError::InvalidBatch { index: Some(1), .. }), "{err:?}");
        let err = split_json_array(&Bytes::from_static(b"[\"\xff\"]"), 5).unwrap_err();
        assert!(matches!(err, ApiError::InvalidBatch { index: Some(0), .. }), "{err:?}");
    }

    #[test]
    fn ndjson_lines_lose_only_their_line_ends() {
        let got = ndjson(b"{\"a\":1}\r\n\n  \r\n {\"b\" :2} \n3").unwrap();
        assert_eq!(got, [b"{\"a\":1}".to_vec(), b" {\"b\" :2} ".to_vec(), b"3".to_vec()]);
        let err = ndjson(b"1\n2\n{oops\n").unwrap_err();
        assert!(matches!(err, ApiError::InvalidBatch { index: Some(2), .. }), "{err:?}");
        let err = ndjson(b"1 2\n").unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidBatch { index: Some(0), .. }),
            "two values on a line: {err:?}"
        );
        let err = ndjson(b"1\n2\n3\n4\n5\n6\n").unwrap_err();
        assert!(matches!(err, ApiError::TooManyRecords { max: 5 }), "{err:?}");
    }
}
