//! A request's events sorted into records to write and rejections: each
//! event is read through its protocol's view ([`view_one`], [`view_array`]), and
//! one that is not valid on its own (no user, over the record limit) is
//! rejected alone, so one bad event does not cost the batch's good ones.

use serde::Deserialize;
use serde::de::IgnoredAny;

pub use crate::error::Rejection;

use super::json::Walk;
use crate::dedupe::MAX_EVENT_ID_BYTES;
use crate::error::ApiError;
use crate::sink::{Record, RecordRules};

/// One event of a request: its text, and the fields the endpoint reads
/// from it or why they could not be read.
pub(crate) type Viewed<'a, V> = (&'a str, Result<V, Rejection>);

/// A body that is one event, read through its view in one pass
/// ([`view_array`] for each event of an array).
pub(crate) fn view_one<'a, V: Deserialize<'a>>(body: &'a [u8]) -> Result<Viewed<'a, V>, serde_json::Error> {
    let mut walk = Walk::new(body)?;
    let viewed = view_next(&mut walk, 0)?;
    walk.end()?;
    Ok(viewed)
}

/// Event `index`, the next value of `walk`, read through its view in one
/// pass: its text, and the fields the endpoint reads or why they cannot be
/// read (not a JSON object, since a struct would also take an array, or not
/// parseable as the view). An event that is not valid JSON fails the whole
/// request.
fn view_next<'a, V: Deserialize<'a>>(walk: &mut Walk<'a>, index: usize) -> Result<Viewed<'a, V>, serde_json::Error> {
    let failed = match walk.peek() {
        Some(b'{') => match walk.value::<V>() {
            Ok((view, raw)) => return Ok((raw, Ok(view))),
            Err(e) => Some(e),
        },
        _ => None,
    };
    // Not an object, or not the view: read it again as any JSON, to tell a
    // bad event (rejected alone) from a bad body.
    let (_, raw) = walk.value::<IgnoredAny>()?;
    let rejection = match failed {
        None => not_an_object(index),
        Some(e) => does_not_parse(index, &e),
    };
    Ok((raw, Err(rejection)))
}

/// The events of one JSON array, each read through its view where it is
/// found ([`view_next`]).
#[derive(Debug)]
pub(crate) struct ViewedArray<'a, V> {
    events: Vec<Viewed<'a, V>>,
    total: usize,
}

impl<'a, V> ViewedArray<'a, V> {
    /// The events, when there are some and at most `max`.
    pub(crate) fn within(self, max: usize) -> Result<Vec<Viewed<'a, V>>, ApiError> {
        match self.total {
            0 => Err(ApiError::EmptyBatch),
            n if n > max => Err(ApiError::TooManyRecords { max }),
            _ => Ok(self.events),
        }
    }
}

/// The smallest event size [`view_array`] plans for.
const MIN_EVENT_BYTES_GUESS: usize = 256;

/// The array that is the next value of `walk`, its events read in one pass.
/// Events past `max` are only checked and counted: a body of millions of
/// tiny elements holds no more than `max` views.
pub(crate) fn view_array<'a, V: Deserialize<'a>>(
    walk: &mut Walk<'a>,
    max: usize,
) -> Result<ViewedArray<'a, V>, serde_json::Error> {
    let mut array = ViewedArray {
        events: Vec::new(),
        total: 0,
    };
    walk.array(|walk| {
        array.total += 1;
        if array.total > max {
            return walk.value::<IgnoredAny>().map(drop);
        }
        let viewed = view_next(walk, array.total - 1)?;
        if array.total == 1 {
            // Sized by the first event: the rest of the array in events of
            // its size (at least 256 bytes, so a first tiny event does not
            // reserve much), where growing by doubling copied every view
            // five or six times in a batch of 100.
            let more = walk.remaining() / viewed.0.len().max(MIN_EVENT_BYTES_GUESS);
            array.events.reserve(1 + more.min(max - 1));
        }
        array.events.push(viewed);
        Ok(())
    })?;
    Ok(array)
}

fn not_an_object(index: usize) -> Rejection {
    Rejection {
        index,
        code: "not_an_object",
        message: "the event is not a JSON object".into(),
    }
}

fn does_not_parse(index: usize, e: &serde_json::Error) -> Rejection {
    Rejection {
        index,
        code: "invalid_event",
        message: format!("the event does not parse: {e}"),
    }
}

/// A request's events sorted into records to write and rejections.
#[derive(Debug)]
pub struct Events {
    /// The records to write, in request order.
    pub(super) records: Vec<Record>,
    /// Each record's event index.
    pub(super) positions: Vec<usize>,
    /// The events rejected so far.
    pub(super) rejected: Vec<Rejection>,
    /// Each record's own id (`messageId`, `uuid`, `eid`), when the ids are
    /// kept ([`Events::keep_ids`]); empty otherwise.
    pub(super) ids: Vec<Option<Box<str>>>,
    keep_ids: bool,
    rules: RecordRules,
    max_depth: usize,
    unwrapped: usize,
}

impl Events {
    /// None yet, each record to fit `rules` (the sink's limits).
    pub fn new(rules: RecordRules) -> Self {
        Events {
            records: Vec::new(),
            positions: Vec::new(),
            rejected: Vec::new(),
            ids: Vec::new(),
            keep_ids: false,
            rules,
            max_depth: crate::nesting::DEFAULT_MAX_DEPTH,
            unwrapped: 0,
        }
    }

    /// Events nesting deeper than `max` are rejected (`JSON_MAX_DEPTH`;
    /// [`crate::nesting::DEFAULT_MAX_DEPTH`] unless told).
    pub fn max_depth(mut self, max: usize) -> Self {
        self.max_depth = max;
        self
    }

    /// Keeps each record's own id, for dedupe (`DEDUPE_WINDOW_SECONDS`); an
    /// id over [`MAX_EVENT_ID_BYTES`] then rejects its event.
    pub fn keep_ids(mut self, keep: bool) -> Self {
        self.keep_ids = keep;
        self
    }

    /// The protocol unwrapped the request's body further than its
    /// `Content-Encoding` (PostHog's base64 forms and unannounced gzip) into
    /// `bytes`: the records are measured against that.
    pub fn unwrapped(&mut self, bytes: usize) {
        self.unwrapped = bytes;
    }

    /// Room for `events` more records, once a protocol knows how many it
    /// read: the lists are sized once instead of grown.
    pub fn reserve(&mut self, events: usize) {
        self.records.reserve(events);
        self.positions.reserve(events);
        if self.keep_ids {
            self.ids.reserve(events);
        }
    }

    /// The size of the body the events came from, when the protocol
    /// unwrapped it ([`Events::unwrapped`]); 0 otherwise.
    pub fn unwrapped_bytes(&self) -> usize {
        self.unwrapped
    }

    /// Bytes of the records to write: data plus partition keys.
    pub fn bytes(&self) -> usize {
        self.records.iter().map(Record::size).sum()
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
    /// over the sink's limit is hashed, as for `PARTITION_KEY_FIELDS`.
    pub fn accept(&mut self, index: usize, data: Vec<u8>, key: String) {
        if crate::nesting::too_deep(&data, self.max_depth) {
            let message = format!(
                "the event nests deeper than {} levels of objects and arrays, which its consumers could not parse",
                self.max_depth
            );
            return self.reject(index, "too_deep", message);
        }
        match self.rules.record(data.into(), key) {
            Ok(record) => {
                self.records.push(record);
                self.positions.push(index);
                if self.keep_ids {
                    self.ids.push(None);
                }
            }
            Err(size) => {
                let message = format!(
                    "the event is {size} bytes with its partition key and enrichment; the limit is {}",
                    self.rules.max_bytes
                );
                self.reject(index, "too_large", message);
            }
        }
    }

    /// Event `index` as built: its record text and partition key, or why
    /// not; `id` is the event's own id, when it has one.
    pub fn push(&mut self, index: usize, built: Result<(Vec<u8>, String), Rejection>, id: Option<&str>) {
        let (data, key) = match built {
            Ok(built) => built,
            Err(rejection) => return self.rejected.push(rejection),
        };
        if !self.keep_ids {
            return self.accept(index, data, key);
        }
        if let Some(id) = id.filter(|id| id.len() > MAX_EVENT_ID_BYTES) {
            let message = format!(
                "the event's id is {} bytes; ids are at most {MAX_EVENT_ID_BYTES} bytes",
                id.len()
            );
            return self.reject(index, "id_too_long", message);
        }
        let before = self.records.len();
        self.accept(index, data, key);
        if self.records.len() > before
            && let Some(last) = self.ids.last_mut()
        {
            *last = id.map(Box::from);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Any {}

    fn array(text: &str, max: usize) -> Result<ViewedArray<'_, Any>, serde_json::Error> {
        view_array(&mut Walk::new(text.as_bytes())?, max)
    }

    #[test]
    fn an_array_holds_at_most_max_views_and_counts_the_rest() {
        let huge = format!("[{}{{}}]", "{},".repeat(200_000));
        let viewed = array(&huge, 10).unwrap();
        assert_eq!((viewed.events.len(), viewed.total), (10, 200_001));
        assert!(matches!(viewed.within(10), Err(ApiError::TooManyRecords { max: 10 })));
        assert!(
            array(&format!("[{}{{]", "{},".repeat(20)), 10).is_err(),
            "checked past max"
        );
        assert!(matches!(array("[]", 10).unwrap().within(10), Err(ApiError::EmptyBatch)));

        let events = array(r#"[1, {"a": [2]}, {"b":3} ]"#, 3).unwrap().within(3).unwrap();
        let texts: Vec<_> = events.iter().map(|(text, _)| *text).collect();
        assert_eq!(texts, ["1", r#"{"a": [2]}"#, r#"{"b":3}"#]);
        let codes: Vec<_> = events
            .iter()
            .map(|(_, v)| v.as_ref().err().map(|r| (r.index, r.code)))
            .collect();
        assert_eq!(codes, [Some((0, "not_an_object")), None, None]);
    }

    #[test]
    fn an_event_of_exactly_the_record_limit_is_kept_and_one_byte_more_rejected() {
        let mut events = Events::new(RecordRules {
            max_bytes: 100,
            max_key_chars: 256,
        });
        events.accept(0, vec![b'x'; 96], "user".into());
        events.accept(1, vec![b'x'; 97], "user".into());
        let long_key = "k".repeat(300);
        // A long key is hashed to 71 characters first, as Kinesis needs.
        events.accept(2, vec![b'x'; 29], long_key.clone());
        assert_eq!(events.positions, [0, 2]);
        assert_eq!(
            events.records[1].partition_key,
            crate::partition_key::shorten(&long_key, 256)
        );
        assert_eq!(events.records[1].partition_key.len(), 71);
        assert_eq!(events.rejected.len(), 1);
        assert_eq!((events.rejected[0].index, events.rejected[0].code), (1, "too_large"));
    }
}
