//! Where accepted records go: the seam between the HTTP layer and storage.
//!
//! The HTTP layer hands a [`Record`] to a [`Sink`] and gets back a [`Receipt`]
//! (the stream's own acknowledgement) or a [`SinkError`] that says what kind of
//! failure happened. Which HTTP status a failure becomes is decided above, in
//! `error.rs`; the sinks only report.
//!
//! Two sinks exist: [`kinesis::KinesisSink`] (the product) and
//! [`file::FileSink`] (a developer's machine with no AWS). Batching of
//! concurrent records into fewer upstream calls belongs behind [`Sink::put`],
//! so the HTTP layer never changes when it arrives.

pub mod file;
pub mod kinesis;

use bytes::Bytes;
use serde::Serialize;

/// One record to store: opaque data and the key that picks its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The request body, unchanged.
    pub data: Bytes,
    /// Kinesis partition key (1 to 256 Unicode characters).
    pub partition_key: String,
}

/// The stream's acknowledgement of one stored record, serialised with
/// Kinesis's own field names, as `PutRecord` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The shard the record went to.
    #[serde(rename = "ShardId")]
    pub shard_id: String,
    /// The record's sequence number within its shard.
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: String,
    /// `NONE` or `KMS`, when the stream reports it.
    #[serde(rename = "EncryptionType", skip_serializing_if = "Option::is_none")]
    pub encryption_type: Option<String>,
}

/// What the sink found out about its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Whether records can be written now (a Kinesis stream is ACTIVE or UPDATING).
    pub writable: bool,
    /// Human-readable state, shown in `/readyz`.
    pub status: String,
    /// The largest record (data + partition key, in bytes) the destination takes,
    /// when it says.
    pub max_record_bytes: Option<usize>,
}

impl Record {
    /// The bytes Kinesis counts against its limits: data plus partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Why a record was not stored. Each variant is a kind of failure, not an HTTP
/// status: the mapping to what the client is told lives in `error.rs`.
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

/// The configured record destination.
#[derive(Debug)]
pub enum Sink {
    /// An Amazon Kinesis data stream.
    Kinesis(kinesis::KinesisSink),
    /// A local NDJSON file.
    File(file::FileSink),
}

impl Sink {
    /// Stores one record and returns the destination's receipt. Returns only
    /// once the destination has acknowledged the record.
    pub async fn put(&self, record: Record) -> Result<Receipt, SinkError> {
        match self {
            Sink::Kinesis(sink) => sink.put(record).await,
            Sink::File(sink) => sink.put_many(&[&record]).map(|mut receipts| receipts.remove(0)),
        }
    }

    /// Stores several records in one upstream call (`PutRecords`, one file
    /// write). `Err` means the whole call failed; otherwise there is one
    /// outcome per record, in order, and some may have failed alone.
    pub async fn put_many(&self, records: &[&Record]) -> Result<Vec<Result<Receipt, SinkError>>, SinkError> {
        match self {
            Sink::Kinesis(sink) => sink.put_records(records).await,
            Sink::File(sink) => sink
                .put_many(records)
                .map(|receipts| receipts.into_iter().map(Ok).collect()),
        }
    }

    /// Asks the destination whether it can take records, and its limits.
    pub async fn describe(&self) -> Result<Destination, SinkError> {
        match self {
            Sink::Kinesis(sink) => sink.describe().await,
            Sink::File(sink) => Ok(sink.describe()),
        }
    }

    /// How long a record may take from arrival to its answer, and how many
    /// attempts a call gets: the Kinesis client's settings, or the file's.
    pub fn deadline_and_attempts(&self) -> (std::time::Duration, u32) {
        match self {
            Sink::Kinesis(sink) => sink.deadline_and_attempts(),
            Sink::File(_) => (std::time::Duration::from_secs(5), 1),
        }
    }

    /// The operation label of [`Sink::put`] in metrics.
    pub fn put_operation(&self) -> &'static str {
        match self {
            Sink::Kinesis(_) => "PutRecord",
            Sink::File(_) => "FileAppend",
        }
    }

    /// The operation label of [`Sink::put_many`] in metrics.
    pub fn put_many_operation(&self) -> &'static str {
        match self {
            Sink::Kinesis(_) => "PutRecords",
            Sink::File(_) => "FileAppend",
        }
    }

    /// A short name for logs and `/readyz`: `kinesis` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::Kinesis(_) => "kinesis",
            Sink::File(_) => "file",
        }
    }

    /// The stream name or file path records go to.
    pub fn target(&self) -> String {
        match self {
            Sink::Kinesis(sink) => sink.stream_name().to_owned(),
            Sink::File(sink) => sink.path().display().to_string(),
        }
    }
}
