//! The ingest step every endpoint that takes events shares: shed, authorise,
//! reserve the body's bytes, read within a limit and a deadline, decode.
//!
//! It owns no knowledge of what the body means: an endpoint calls [`ingest`]
//! with its own byte limit, then parses the [`Ingested`] body into records
//! and shapes its answer. The permits in [`Ingested`] hold the request's
//! place in the in-flight caps until the endpoint has answered.
//!
//! A request refused before its body was read (shed, no key, a bad header)
//! still has its body on the wire. A small declared body is read and thrown
//! away first, so a keep-alive client keeps its connection for the next
//! request instead of being cut off for a client error.

use std::cell::RefCell;

use bytes::Bytes;
use hyper::header::{CONTENT_ENCODING, EXPECT, HeaderMap};
use hyper::{Request, http::request::Parts};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Duration;

use crate::body::{BodyHints, RequestBody, discard, read_limited};
use crate::doors::Doors;
use crate::encoding;
use crate::error::ApiError;
use crate::in_flight::reserve;
use crate::partition_key;

/// Bytes a request holds per byte of its decoded body, counted against
/// `MAX_IN_FLIGHT_BODY_BYTES`: the raw body (until decoded), the decoded
/// body, the records and enriched copies made from it, and the upstream
/// call's encoding (base64 JSON for Kinesis). docs/faults.md "Memory" has the
/// figures measured with it (bench `manifest-*` runs).
pub(crate) const HELD_PER_BODY_BYTE: usize = 4;
/// Bytes a request holds per byte of the records it writes, beside its
/// body: the records themselves, the sink's copy of them and the upstream
/// call's encoding (base64 in JSON for Kinesis, about 1.4 bytes per byte,
/// in a buffer that doubles as it grows). Measured, with the next constant,
/// by `tests/memory.rs` for every door and shape of events.
pub(crate) const HELD_PER_RECORD_BYTE: usize = 7;
/// Bytes a request holds per record whatever its size: the record's own
/// place in the request and the writer's queue, its outcome and receipt,
/// the sink's entry for it in the call and in the stream's answer, and its
/// part of the client's answer. About 1 KiB, measured (`tests/memory.rs`):
/// for a tiny event it is most of what the event costs.
pub(crate) const HELD_PER_RECORD: usize = 1024;
/// The most a request's records may hold per byte of the body they came
/// from: an event is stored as sent, or re-serialised when the gateway
/// removes a field it sets itself, which can write a short number long
/// (`9e15` as `9000000000000000.0`).
pub(crate) const MAX_RECORD_BYTES_PER_BODY_BYTE: usize = 4;
/// What the gateway adds to one record at most, in bytes, beside the
/// event's own bytes: a partition key (at most 256 characters, 1 KiB of
/// UTF-8) and the SDK doors' fields (an id, the receive time, a send time of
/// at most 64 bytes, the client's address, `_gateway` with a source key of
/// at most 256 bytes).
pub(crate) const MAX_ADDED_PER_RECORD: usize = 2048;

/// Bodies up to this many declared bytes are drained after an early refusal;
/// larger ones cost more to read than a reconnect.
const DRAIN_SMALL: u64 = 64 * 1024;
/// How long an early refusal waits for a small body to arrive.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// A request whose body was read and decoded.
#[derive(Debug)]
pub(crate) struct Ingested<'a> {
    /// The request head.
    pub head: Parts,
    /// The decoded body; empty only when the endpoint allows it.
    pub body: Bytes,
    /// The `X-Partition-Key` header's key, checked, when sent.
    pub partition_key: Option<String>,
    _slot: SemaphorePermit<'a>,
    held: Held<'a>,
}

/// What a request holds of the in-flight budget; it only grows, until the
/// request is answered.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    budget: &'a Semaphore,
    permit: RefCell<SemaphorePermit<'a>>,
}

impl<'a> Held<'a> {
    fn new(budget: &'a Semaphore, permit: SemaphorePermit<'a>) -> Self {
        Held {
            budget,
            permit: RefCell::new(permit),
        }
    }

    /// Holds `bytes` more, or 503 (shed) when the budget has no room.
    pub(crate) fn more(&self, bytes: usize) -> Result<(), ApiError> {
        if bytes > 0 {
            let more = reserve(self.budget, bytes)?;
            self.permit.borrow_mut().merge(more);
        }
        Ok(())
    }

    /// Holds at least `bytes` in all.
    fn at_least(&self, bytes: usize) -> Result<(), ApiError> {
        let held = self.permit.borrow().num_permits();
        self.more(bytes.saturating_sub(held))
    }
}

impl<'a> Ingested<'a> {
    /// The request headers.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// Holds, in the in-flight budget, what the request's records take:
    /// `record_bytes` (data + partition keys) made from the body. A door that
    /// copies a field into every event makes records larger than its body;
    /// this counts them, so no request holds more than the budget says,
    /// whatever it amplifies to. Over the budget it is shed with 503.
    ///
    /// `source_bytes` is the body the records came from (larger than the
    /// decoded body when a protocol unwrapped it further): records over
    /// [`MAX_RECORD_BYTES_PER_BODY_BYTE`] times it plus
    /// [`MAX_ADDED_PER_RECORD`] per record are refused with 413, which is
    /// the bound the README states ("Hostile input").
    pub(crate) fn hold_records(
        &mut self,
        source_bytes: usize,
        records: usize,
        record_bytes: usize,
    ) -> Result<(), ApiError> {
        let max = source_bytes
            .saturating_mul(MAX_RECORD_BYTES_PER_BODY_BYTE)
            .saturating_add(records.saturating_mul(MAX_ADDED_PER_RECORD));
        if record_bytes > max {
            return Err(ApiError::RecordsTooLarge {
                bytes: record_bytes,
                max,
            });
        }
        let needed = record_bytes
            .saturating_mul(HELD_PER_RECORD_BYTE)
            .saturating_add(records.saturating_mul(HELD_PER_RECORD))
            .saturating_add(source_bytes.max(self.body.len()).saturating_mul(2))
            .max(self.body.len().saturating_mul(HELD_PER_BODY_BYTE));
        self.held.at_least(needed)
    }

    /// Drops the body, for a door whose records are copies of it (its
    /// [`Limits::body_kept`] false): it may be a view into hyper's
    /// connection buffer, which must not be pinned while the request waits.
    /// What the budget holds for it is unchanged.
    pub(crate) fn release_body(&mut self) {
        self.body = Bytes::new();
    }

    /// What the request holds of the budget, for a door that unwraps its
    /// body further and must hold the result first (PostHog's gzip and
    /// base64 forms).
    pub(crate) fn held(&self) -> &Held<'a> {
        &self.held
    }
}

/// An endpoint's own limits on its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest body, raw and decoded, in bytes.
    pub max_body: usize,
    /// Whether the header's partition key counts against `max_body` (a
    /// single record's limit is data + key).
    pub key_counts: bool,
    /// Whether `API_KEYS` are checked here, in the headers. The SDKs'
    /// endpoints check after parsing, since their key may be in the body.
    pub header_auth: bool,
    /// Whether an empty body is fine (a `GET` with its event in the query).
    pub allow_empty: bool,
    /// Whether the body is kept while the request waits (`/import`'s body
    /// is its record, `/import/batch`'s records are slices of it). A door
    /// that is not sets this false and drops the body
    /// ([`Ingested::release_body`]) before it waits.
    pub body_kept: bool,
}

impl Limits {
    /// A 413 that names the limit that applied: the record limit where the
    /// body is one record (the one place a body's limit is renamed), else
    /// the endpoint's body limit, as reading and decoding say.
    fn name_limit(&self, err: ApiError) -> ApiError {
        match err {
            ApiError::BodyTooLarge { limit } if self.key_counts => ApiError::PayloadTooLarge { limit },
            other => other,
        }
    }

    /// An endpoint whose body is events: headers authorise, empty is an error.
    pub(crate) fn events(max_body: usize) -> Self {
        Limits {
            max_body,
            key_counts: false,
            header_auth: true,
            allow_empty: false,
            body_kept: true,
        }
    }
}

/// Runs the shared step for a request within the endpoint's `limits`.
pub(crate) async fn ingest<B>(doors: &Doors, request: Request<B>, limits: Limits) -> Result<Ingested<'_>, ApiError>
where
    B: RequestBody,
{
    let (head, mut body) = request.into_parts();
    let hints = BodyHints {
        expects_continue: expects_continue(&head.headers),
        kept: limits.body_kept,
    };
    let admitted = admit(doors, &head.headers, limits, body.size_hint().exact());
    let Admitted {
        slot,
        bytes,
        partition_key,
        limit,
    } = match admitted {
        Ok(admitted) => admitted,
        Err(err) => {
            // A client waiting for `100 Continue` sends no body to drain.
            if !hints.expects_continue {
                discard(&mut body, DRAIN_SMALL, DRAIN_WAIT).await;
            }
            return Err(err);
        }
    };
    let raw = read_limited(body, limit, doors.in_flight().body_read_timeout(), hints)
        .await
        .map_err(|e| limits.name_limit(e))?;
    let held = Held::new(doors.in_flight().budget(), bytes);
    let body = decode(doors, &head.headers, raw, limit, &held).map_err(|e| limits.name_limit(e))?;
    if body.is_empty() && !limits.allow_empty {
        return Err(ApiError::EmptyBody);
    }
    // What the request will hold, not only its body: reserve the rest now,
    // or shed it before it costs memory.
    held.at_least(body.len().saturating_mul(HELD_PER_BODY_BYTE))?;
    doors.metrics().body_received(body.len());
    Ok(Ingested {
        head,
        body,
        partition_key,
        _slot: slot,
        held,
    })
}

/// Decodes `raw` as its `Content-Encoding` says, within `limit`, holding
/// the decoder's own memory (its window) in the in-flight budget while it
/// runs, and its output as it grows: a request that would take more than
/// the budget has is shed before the memory is taken.
fn decode(doors: &Doors, headers: &HeaderMap, raw: Bytes, limit: usize, held: &Held<'_>) -> Result<Bytes, ApiError> {
    let encoding = headers.get(CONTENT_ENCODING);
    let working = encoding::working_memory(encoding, &raw, limit)?;
    let _decoder = match working {
        0 => None,
        n => Some(reserve(doors.in_flight().budget(), n)?),
    };
    encoding::decode(encoding, raw, limit, &mut |bytes| held.more(bytes))
}

/// What the head alone earned the request: its place in the in-flight
/// caps, the header's key, and the body limit once that key is counted.
struct Admitted<'a> {
    slot: SemaphorePermit<'a>,
    bytes: SemaphorePermit<'a>,
    partition_key: Option<String>,
    limit: usize,
}

/// Everything decided from the head: a request slot (shed first: a queue
/// that grows helps no one), the key check, the header key, and the body's
/// bytes reserved from the in-flight budget before anything is read (the
/// declared length, or the whole limit for a chunked body).
fn admit<'a>(
    doors: &'a Doors,
    headers: &HeaderMap,
    limits: Limits,
    declared: Option<u64>,
) -> Result<Admitted<'a>, ApiError> {
    let slot = doors.in_flight().slot()?;
    if limits.header_auth {
        doors.access().authorize(headers)?;
    }
    let header = headers.get(partition_key::HEADER).map(|v| v.as_bytes());
    let partition_key = partition_key::from_header(header, doors.record_rules().max_key_chars)?;
    let limit = match (&partition_key, limits.key_counts) {
        // The partition key's bytes count against the record limit too.
        (Some(key), true) => limits.max_body.saturating_sub(key.len()),
        _ => limits.max_body,
    };
    // A body that is not encoded decodes to its declared length: everything
    // it will hold is reserved now, in one step. Otherwise the declared
    // length (or the limit) now, the rest once decoded.
    let reserve_bytes = match declared {
        Some(len) if len <= limit as u64 && !headers.contains_key(CONTENT_ENCODING) => {
            (len as usize).saturating_mul(HELD_PER_BODY_BYTE)
        }
        Some(len) => (len as usize).min(limit + 1),
        None => limit,
    };
    let bytes = reserve(doors.in_flight().budget(), reserve_bytes)?;
    Ok(Admitted {
        slot,
        bytes,
        partition_key,
        limit,
    })
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}
