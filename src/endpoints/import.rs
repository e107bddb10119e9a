//! `POST /import`: the body, decoded, is one record; the answer is its
//! receipt, with Kinesis's field names (`ShardId`, `SequenceNumber`), or
//! 202 `{"Spilled":true}` when it went to the durable spill
//! ([`answer::import`]).

use hyper::{HeaderMap, Request};

use super::{answer, presented_key};
use crate::body::RequestBody;
use crate::dedupe::{EventIds, MAX_EVENT_ID_BYTES};
use crate::doors::Doors;
use crate::endpoints::Reply;
use crate::error::ApiError;
use crate::ingest::{Limits, ingest};
use crate::live::Arrival;

/// The header naming a request's one event, as the IETF httpapi draft
/// does: the same key from the same source within `DEDUPE_WINDOW_SECONDS`
/// is answered with the first answer and not stored again.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's `Idempotency-Key`: its value as sent, or the string of
/// a structured-field string (`"..."`, the draft's form). `Err` when it is
/// over [`MAX_EVENT_ID_BYTES`] (400 `field_too_long`) or not visible ASCII.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::BadSdkRequest("the Idempotency-Key header must be visible ASCII".into()))?;
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if text.len() > MAX_EVENT_ID_BYTES {
        return Err(ApiError::FieldTooLong {
            field: "Idempotency-Key",
            max: MAX_EVENT_ID_BYTES,
        });
    }
    Ok(Some(text).filter(|t| !t.is_empty()))
}

/// Stores the body as one record and answers with its receipt.
pub(crate) async fn handle<B>(doors: &Doors, request: Request<B>) -> Result<Reply, ApiError>
where
    B: RequestBody,
{
    let limits = Limits {
        key_counts: true,
        ..Limits::events(doors.record_rules().max_bytes)
    };
    let ingested = ingest(doors, request, limits).await?;
    let bytes = ingested.body.len();
    let record = doors
        .record(ingested.body.clone(), ingested.partition_key.as_deref())
        .map_err(|limit| ApiError::PayloadTooLarge { limit })?;
    let presented = presented_key(&ingested.head.headers);
    let source = doors.api_source(presented);
    // Read only while dedupe is on: otherwise the header means nothing here.
    let key = match doors.dedupes() {
        true => idempotency_key(&ingested.head.headers)?,
        false => None,
    };
    let ids = match key {
        Some(key) => EventIds::of("import", [Some((source, key))]).replayed(),
        None => EventIds::none(),
    };
    let arrival = || Arrival::import("/import", presented);
    let report = doors.put(arrival, &[(source, 1)], vec![record], ids).await?;
    answer::import(doors, report, bytes)
}
