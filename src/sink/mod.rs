//! Where accepted records go: the seam between the writer and storage.
//!
//! A [`Sink`] takes a batch of [`Record`]s in one upstream call and answers
//! with one outcome per record: a [`Receipt`] (the destination's own
//! acknowledgement) or a [`SinkError`] that says what kind of failure it was.
//! Sinks are mechanism only: batching, retries and deadlines live in
//! `writer/`, what each kind of failure is (retry, spill, readiness) is the
//! one table in [`failure`], and what it means to a client is `error.rs`'s.
//!
//! Four sinks exist: [`kinesis::KinesisSink`], [`kafka::KafkaSink`] (any
//! Kafka-compatible service), [`pubsub::PubSubSink`] (Google Cloud Pub/Sub)
//! and [`file::FileSink`] (a developer's machine with no cloud). Each is one
//! file implementing [`Sink`], with its settings and how they are read
//! beside it, plus one [`SinkConfig`] variant and its arms in `config.rs`
//! (read, build, the start-up line); what a destination takes at most
//! ([`SinkLimits`]) and how it names a receipt are asked of it.

mod config;
pub mod failure;
pub mod file;
pub mod kafka;
pub mod kinesis;
pub mod pubsub;

pub use config::{SinkConfig, build};

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
pub use bytes_utils::Str;
use serde::Serialize;

/// One record to store: opaque data and the key that picks its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The event's bytes, unchanged.
    pub data: Bytes,
    /// Partition key (1 to the sink's [`SinkLimits::max_key_chars`] Unicode characters).
    pub partition_key: String,
}

impl Record {
    /// The bytes counted against a record limit: data plus partition key
    /// (what Kinesis counts; a Kafka message's key counts too).
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// What every record must fit, whichever door made it: the one place a
/// record is built from an event, its key fitted to the sink and its size
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRules {
    /// The largest record (data + partition key), in bytes.
    pub max_bytes: usize,
    /// The longest partition key, in Unicode characters; a longer one is
    /// hashed to fit (`partition_key::shorten`).
    pub max_key_chars: usize,
}

impl RecordRules {
    /// A record of `data` under `key`, or `Err` with its size when it is
    /// over [`RecordRules::max_bytes`].
    pub fn record(&self, data: Bytes, key: String) -> Result<Record, usize> {
        // A key of at most that many bytes has at most that many characters.
        let partition_key = if key.len() <= self.max_key_chars {
            key
        } else {
            crate::partition_key::shorten(&key, self.max_key_chars)
        };
        let record = Record { data, partition_key };
        match record.size() {
            size if size > self.max_bytes => Err(size),
            _ => Ok(record),
        }
    }
}

/// The destination's acknowledgement of one stored record, in the
/// destination's own words: each sink names its fields (Kinesis says
/// `ShardId` and `SequenceNumber`), and clients get them as they are. The
/// seam itself only knows where the record went ([`Receipt::location`]: a
/// shard, a topic partition), for logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    location: Location,
    fields: Vec<(&'static str, Field)>,
}

/// A receipt field's value. Text is a [`Str`]: a slice of the answer it
/// came in shares that answer's buffer, where an owned `String` per field
/// cost three allocations per record on the batch doors (docs/benchmarks.md).
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Text(Str),
    /// Anything but a string (numbers: a Kafka partition and offset).
    Json(serde_json::Value),
}

/// Where a receipt says its record went: its own text, or one of its fields
/// (no copy per record for the common case, a shard id).
#[derive(Debug, Clone, PartialEq)]
enum Location {
    Text(String),
    Field(&'static str),
    /// Two fields' values joined by `/` (a topic and its partition), put
    /// together only when asked: most receipts are never asked.
    Fields(&'static str, &'static str),
}

impl Receipt {
    /// A receipt for a record stored at `location`, with no fields yet.
    pub fn new(location: impl Into<String>) -> Self {
        Receipt {
            location: Location::Text(location.into()),
            fields: Vec::new(),
        }
    }

    /// A receipt whose location is the text of its field `name` (added
    /// with [`Receipt::with`]).
    pub fn located_at(name: &'static str) -> Self {
        Receipt {
            location: Location::Field(name),
            fields: Vec::new(),
        }
    }

    /// A receipt whose location is its fields `first` and `second`, joined
    /// by `/` (`clicks/3`).
    pub fn located_at_both(first: &'static str, second: &'static str) -> Self {
        Receipt {
            location: Location::Fields(first, second),
            fields: Vec::new(),
        }
    }

    /// Adds a field of the answer clients get.
    pub fn with(self, name: &'static str, value: impl Into<serde_json::Value>) -> Self {
        match value.into() {
            serde_json::Value::String(text) => self.with_text(name, text.into()),
            value => self.push(name, Field::Json(value)),
        }
    }

    /// Adds a text field, kept as it is: a slice of the answer it came in
    /// is not copied.
    pub fn with_text(self, name: &'static str, text: Str) -> Self {
        self.push(name, Field::Text(text))
    }

    fn push(mut self, name: &'static str, value: Field) -> Self {
        self.fields.push((name, value));
        self
    }

    /// Where the record went: a shard, a topic partition.
    pub fn location(&self) -> Cow<'_, str> {
        match &self.location {
            Location::Text(text) => Cow::Borrowed(text),
            Location::Field(name) => Cow::Borrowed(self.field(name).unwrap_or_default()),
            Location::Fields(first, second) => Cow::Owned(format!("{}/{}", self.shown(first), self.shown(second))),
        }
    }

    /// Field `name` as text: a string as it is, any other value as JSON.
    fn shown(&self, name: &str) -> Cow<'_, str> {
        match self.fields.iter().find(|(n, _)| *n == name) {
            Some((_, Field::Text(text))) => Cow::Borrowed(text),
            Some((_, Field::Json(value))) => Cow::Owned(value.to_string()),
            None => Cow::Borrowed(""),
        }
    }

    /// The text of field `name`, when it is a string.
    pub fn field(&self, name: &str) -> Option<&str> {
        match self.fields.iter().find(|(n, _)| *n == name) {
            Some((_, Field::Text(text))) => Some(text),
            _ => None,
        }
    }
}

impl Serialize for Receipt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, value) in &self.fields {
            match value {
                Field::Text(text) => map.serialize_entry(name, &**text)?,
                Field::Json(value) => map.serialize_entry(name, value)?,
            }
        }
        map.end()
    }
}

/// What the sink found out about its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Whether records can be written now (a Kinesis stream is ACTIVE or UPDATING).
    pub writable: bool,
    /// Human-readable state, shown in `/readyz`.
    pub status: String,
    /// The largest record (data + partition key, in bytes) the destination
    /// takes, when it says.
    pub max_record_bytes: Option<usize>,
}

/// What a destination takes at most. Asked of the sink, so the generic code
/// holds no destination's numbers: Kinesis's 256-character keys and 500
/// records per call are the Kinesis sink's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkLimits {
    /// The largest record (data + partition key, in bytes) until
    /// [`Sink::describe`] says otherwise.
    pub max_record_bytes: usize,
    /// The longest partition key, in Unicode characters.
    pub max_key_chars: usize,
    /// Records in one [`Sink::put_batch`] call.
    pub max_batch_records: usize,
    /// Bytes (data + partition keys) in one [`Sink::put_batch`] call.
    pub max_batch_bytes: usize,
}

/// How long a record may take from arrival to its answer, and how many
/// times an upstream call is tried: the writer's deadline and retry budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Arrival to answer, queueing, calls and retries included.
    pub record_timeout: Duration,
    /// Attempts per record, the first included.
    pub max_attempts: u32,
}

/// One outcome per record of a call, in the order the records were sent.
pub type Outcomes = Vec<Result<Receipt, SinkError>>;

/// A destination for records.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `records` in one upstream call. `Err` means the whole call
    /// failed; otherwise there is one outcome per record, in order, and some
    /// may have failed alone. Returns only once the destination has answered.
    async fn put_batch(&self, records: &[Record]) -> Result<Outcomes, SinkError>;

    /// Stores one record on its own (`BATCHING=false`). The default sends a
    /// batch of one; Kinesis uses its single-record call.
    async fn put_one(&self, record: &Record) -> Result<Receipt, SinkError> {
        let mut outcomes = self.put_batch(std::slice::from_ref(record)).await?;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(SinkError::Unavailable("the sink answered no outcome".into())))
    }

    /// Asks the destination whether it can take records, and its limits.
    async fn describe(&self) -> Result<Destination, SinkError>;

    /// The writer's deadline and retry budget for this destination.
    fn deadlines(&self) -> Deadlines;

    /// What the destination takes at most.
    fn limits(&self) -> SinkLimits;

    /// The metric label of one call: `batch` picks [`Sink::put_batch`]'s
    /// operation over [`Sink::put_one`]'s.
    fn operation(&self, batch: bool) -> &'static str;

    /// A short name for logs and `/readyz`: `kinesis`, `kafka`, `pubsub` or `file`.
    fn kind(&self) -> &'static str;

    /// The stream, topic or file path records go to.
    fn target(&self) -> String;

    /// A warning for `/readyz` when records do not reach a real stream.
    fn warning(&self) -> Option<&'static str> {
        None
    }

    /// Whether the sink's client gathers records into calls itself
    /// (librdkafka's `linger.ms`): the writer then hands each request's
    /// records straight to [`Sink::put_batch`], so the records wait for
    /// one batching layer, not two.
    fn batches_itself(&self) -> bool {
        false
    }
}

/// Why a record was not stored. Each variant is a kind of failure; what it
/// means (retry, spill, status, readiness, log level) is its row of the one
/// table in [`failure`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The gateway has more records waiting than it may queue: shed load now.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The destination asked us to slow down; retrying later will work.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The destination could not be reached or failed transiently (timeouts,
    /// connection errors, 5xx).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The destination refused this record's content.
    #[error("record rejected: {0}")]
    Rejected(String),
    /// The gateway is set up wrongly (missing stream, no permission, KMS key
    /// problems); retrying will not help until an operator acts.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
}

impl SinkError {
    /// The detail, for the one log line written where the failure is answered.
    pub fn detail(&self) -> &str {
        match self {
            SinkError::Overloaded(d)
            | SinkError::Throttled(d)
            | SinkError::Unavailable(d)
            | SinkError::Rejected(d)
            | SinkError::Misconfigured(d) => d,
        }
    }
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A Kafka setting librdkafka refuses.
    #[error("invalid configuration: {variable}: {reason}")]
    Kafka {
        /// The variable that set it.
        variable: String,
        /// What librdkafka said.
        reason: String,
    },
    /// The Pub/Sub client cannot be built.
    #[error("invalid configuration: {variable}: {reason}")]
    PubSub {
        /// The variable to look at.
        variable: &'static str,
        /// Why.
        reason: String,
    },
    /// The file sink's file cannot be opened.
    #[error("cannot open the file sink at {path}: {source}")]
    File {
        /// The configured path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}
