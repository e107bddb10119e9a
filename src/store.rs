//! The store layer: the one thing the doors hand records to and get
//! outcomes back from.
//!
//! A [`Store`] takes a request's records and answers one outcome per record,
//! in order: [`Kept`] (where the record is kept now) or the [`SinkError`]
//! that kept it out. Two stores exist, and one wraps the other:
//! - [`StreamStore`]: the writer (batching, retries, deadlines) in front of
//!   the sink, keeping readiness up to date with what the stream answers;
//! - `spill::SpillStore`: wraps any store and keeps on local disk what the
//!   inner one could not take (`SPILL_DIR`). Its policy (what spills, which
//!   records go behind spilled ones, readiness while spilling) lives there,
//!   as PostHog capture's fallback sink wraps its primary sink.
//!
//! A sink never spills: [`Kept::Spilled`] is this layer's word, not the
//! sink seam's.

use std::sync::Arc;

use async_trait::async_trait;
use hyper::StatusCode;
use serde::Serialize;

use crate::readiness::{Readiness, Verdict};
use crate::sink::{Receipt, Record, SinkError};
use crate::writer::Writer;

/// Where a record is kept once its outcome is known.
#[derive(Debug, Clone, PartialEq)]
pub enum Kept {
    /// In the stream, with the destination's receipt.
    Stored(Receipt),
    /// Durable in the spill, not yet in the stream: on its way.
    Spilled,
}

impl Kept {
    /// Where the record went: a shard, a topic partition, or `spill`.
    pub fn location(&self) -> &str {
        match self {
            Kept::Stored(receipt) => receipt.location(),
            Kept::Spilled => "spill",
        }
    }

    /// Whether the record is in the spill rather than the stream.
    pub fn is_spilled(&self) -> bool {
        matches!(self, Kept::Spilled)
    }

    /// The answer's status for a request whose records are kept like this:
    /// 200 in the stream, 202 (accepted, on its way) in the spill.
    pub fn status(&self) -> StatusCode {
        match self {
            Kept::Stored(_) => StatusCode::OK,
            Kept::Spilled => StatusCode::ACCEPTED,
        }
    }
}

impl Serialize for Kept {
    /// The receipt's own fields, or `{"Spilled": true}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Kept::Stored(receipt) => receipt.serialize(serializer),
            Kept::Spilled => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("Spilled", &true)?;
                map.end()
            }
        }
    }
}

/// One outcome per record, in the order the records were handed over.
pub type Kepts = Vec<Result<Kept, SinkError>>;

/// Where the doors put records.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Keeps `records` and answers one outcome per record, in order.
    async fn put(&self, records: Vec<Record>) -> Kepts;

    /// The instance's readiness, given what the stream says (`stream`): a
    /// store that can keep records while the stream is away may say ready.
    fn verdict(&self, stream: Verdict) -> Verdict {
        stream
    }
}

/// The writer in front of the sink, as a store: every outcome is the
/// stream's, and readiness learns from each.
#[derive(Debug)]
pub struct StreamStore {
    writer: Writer,
    readiness: Arc<Readiness>,
}

impl StreamStore {
    /// Records go through `writer`; what they meet updates `readiness`.
    pub fn new(writer: Writer, readiness: Arc<Readiness>) -> Self {
        StreamStore { writer, readiness }
    }
}

#[async_trait]
impl Store for StreamStore {
    async fn put(&self, records: Vec<Record>) -> Kepts {
        let outcomes = self.writer.put(records).await;
        if outcomes.iter().any(Result::is_ok) {
            self.readiness.record_stored();
        } else if outcomes.iter().any(|o| o.as_ref().is_err_and(SinkError::makes_unready)) {
            self.readiness.record_failed();
        }
        outcomes.into_iter().map(|o| o.map(Kept::Stored)).collect()
    }
}
