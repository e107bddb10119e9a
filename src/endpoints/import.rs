//! `POST /import`: the body, decoded, is one record; the answer is its
//! receipt, with Kinesis's field names (`ShardId`, `SequenceNumber`), or
//! 202 `{"Spilled":true}` when it went to the durable spill.

use hyper::Request;

use super::{presented_key, record};
use crate::app::App;
use crate::body::RequestBody;
use crate::endpoints::Reply;
use crate::error::{ApiError, json_response};
use crate::ingest::{Limits, ingest};
use crate::live::Arrival;

/// Stores the body as one record and answers with its receipt.
pub async fn handle<B>(app: &App, request: Request<B>) -> Result<Reply, ApiError>
where
    B: RequestBody,
{
    let limits = Limits {
        key_counts: true,
        ..Limits::events(app.max_record_bytes())
    };
    let ingested = ingest(app, request, limits).await?;
    let bytes = ingested.body.len();
    let record = record(app, ingested.body.clone(), ingested.partition_key.as_deref())
        .map_err(|limit| ApiError::PayloadTooLarge { limit })?;
    if app.live().watched() {
        let key = presented_key(ingested.headers());
        app.live()
            .arrived(Arrival::import("/import", key), std::slice::from_ref(&record));
    }
    let outcome = app.put(vec![record]).await.pop().expect("one outcome per record");
    let kept = outcome?;
    Ok(Reply {
        records: 1,
        bytes,
        // Only the access log reads it: no copy per request otherwise.
        location: app.access_log().then(|| kept.location().to_owned()),
        // In the spill, durable, not yet in the stream: 202, no sequence number.
        ..Reply::plain(json_response(kept.status(), &kept))
    })
}
