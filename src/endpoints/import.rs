//! `POST /import`: the body, decoded, is one record; the answer is its
//! receipt, with Kinesis's field names (`ShardId`, `SequenceNumber`), or
//! 202 `{"Spilled":true}` when it went to the durable spill
//! ([`answer::import`]).

use hyper::Request;

use super::{answer, presented_key};
use crate::body::RequestBody;
use crate::doors::Doors;
use crate::endpoints::Reply;
use crate::error::ApiError;
use crate::ingest::{Limits, ingest};
use crate::live::Arrival;

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
    let arrival = || Arrival::import("/import", presented);
    let report = doors
        .put(arrival, &[(doors.api_source(presented), 1)], vec![record])
        .await?;
    answer::import(doors, report, bytes)
}
