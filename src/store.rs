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
//!
//! What the doors get back is [`Report`]: each record's outcome and one
//! [`Summary`] of them (how many are in the stream, spilled, refused, the
//! gravest failure, the first location), so each door family writes its
//! answer from the same fold.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use hyper::StatusCode;
use serde::Serialize;

use crate::readiness::{Readiness, Verdict};
use crate::sink::failure::gravest;
use crate::sink::{Receipt, Record, SinkError};
use crate::writer::Writer;

/// Where a record is kept once its outcome is known.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kept {
    /// In the stream, with the destination's receipt.
    InStream(Receipt),
    /// Durable in the spill, not yet in the stream: on its way.
    Spilled,
    /// Stored before, by an earlier copy with the same id (`dedupe`): not
    /// written again. The earlier answer's body, when its door replays it.
    Duplicate(Option<String>),
}

/// The body of a record's answer while it is in the spill.
const SPILLED_BODY: &str = r#"{"Spilled":true}"#;

impl Kept {
    /// Where the record went: a shard, a topic partition, or `spill`.
    pub(crate) fn location(&self) -> Cow<'_, str> {
        match self {
            Kept::InStream(receipt) => receipt.location(),
            Kept::Spilled => Cow::Borrowed("spill"),
            Kept::Duplicate(_) => Cow::Borrowed("duplicate"),
        }
    }

    /// Whether the record is in the spill rather than the stream.
    pub(crate) fn is_spilled(&self) -> bool {
        matches!(self, Kept::Spilled)
    }

    /// The answer's status for a request whose records are kept like this:
    /// 200 in the stream, 202 (accepted, on its way) in the spill; a
    /// duplicate as its first copy was answered.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Kept::InStream(_) => StatusCode::OK,
            Kept::Spilled => StatusCode::ACCEPTED,
            Kept::Duplicate(Some(first)) if first == SPILLED_BODY => StatusCode::ACCEPTED,
            Kept::Duplicate(_) => StatusCode::OK,
        }
    }

    /// Whether an earlier copy stored the record.
    pub(crate) fn is_duplicate(&self) -> bool {
        matches!(self, Kept::Duplicate(_))
    }
}

impl Serialize for Kept {
    /// The receipt's own fields, or `{"Spilled": true}`; a duplicate as its
    /// first copy's answer, else `{"Duplicate": true}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let flag = |serializer: S, name: &str| {
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(name, &true)?;
            map.end()
        };
        match self {
            Kept::InStream(receipt) => receipt.serialize(serializer),
            Kept::Spilled => flag(serializer, "Spilled"),
            Kept::Duplicate(Some(first)) => match serde_json::value::RawValue::from_string(first.clone()) {
                Ok(raw) => raw.serialize(serializer),
                Err(_) => flag(serializer, "Duplicate"),
            },
            Kept::Duplicate(None) => flag(serializer, "Duplicate"),
        }
    }
}

/// One outcome per record, in the order the records were handed over.
pub(crate) type Kepts = Vec<Result<Kept, SinkError>>;

/// A request's outcomes: each record's, in order, and their [`Summary`].
#[derive(Debug)]
pub(crate) struct Report {
    /// One per record, in the order the records were handed over.
    pub(crate) each: Kepts,
    /// Their fold.
    pub(crate) summary: Summary,
}

/// The one fold of a request's outcomes that every answer is written from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    /// Records in the stream.
    pub(crate) in_stream: usize,
    /// Records durable in the spill, not yet in the stream.
    pub(crate) spilled: usize,
    /// Records an earlier copy stored (not written again).
    pub(crate) duplicates: usize,
    /// Records that failed, in any way.
    pub(crate) failed: usize,
    /// The gravest failure (the first of the gravest kind) and how many
    /// records failed that way.
    pub(crate) gravest: Option<(SinkError, usize)>,
    /// The first kept record's index.
    first_kept: Option<usize>,
}

impl Report {
    /// Folds `each` once.
    pub(crate) fn new(each: Kepts) -> Self {
        let spilled = each.iter().filter(|o| o.as_ref().is_ok_and(Kept::is_spilled)).count();
        let duplicates = each.iter().filter(|o| o.as_ref().is_ok_and(Kept::is_duplicate)).count();
        let kept = each.iter().filter(|o| o.is_ok()).count();
        let summary = Summary {
            in_stream: kept - spilled - duplicates,
            spilled,
            duplicates,
            failed: each.len() - kept,
            gravest: gravest(&each).map(|(error, same)| (error.clone(), same)),
            first_kept: each.iter().position(Result::is_ok),
        };
        Report { each, summary }
    }

    /// Where the first kept record went: a shard, a partition, `spill`.
    pub(crate) fn location(&self) -> Option<Cow<'_, str>> {
        let kept = self.each.get(self.summary.first_kept?)?;
        kept.as_ref().ok().map(Kept::location)
    }
}

/// Where the doors put records.
#[async_trait]
pub(crate) trait Store: Send + Sync + std::fmt::Debug {
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
pub(crate) struct StreamStore {
    writer: Writer,
    readiness: Arc<Readiness>,
}

impl StreamStore {
    /// Records go through `writer`; what they meet updates `readiness`.
    pub(crate) fn new(writer: Writer, readiness: Arc<Readiness>) -> Self {
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
        outcomes.into_iter().map(|o| o.map(Kept::InStream)).collect()
    }
}
