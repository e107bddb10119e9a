//! Writing an SDK request's accepted events and deciding its fate: `Ok` when
//! every accepted event is in the stream (the protocol answers 200), else
//! the one failure the SDK is told about, the gravest of its records'
//! ([`crate::sink::failure::gravest`]), answered under the SDK family's policy
//! (`error.rs`). A record the stream refuses for good is the event's own
//! fault: it joins the rejections instead of failing the request.

use super::events::{Events, Rejection};
use crate::app::App;
use crate::error::{ApiError, Family};
use crate::sink::failure::gravest;

/// What [`store`] wrote: enough for the protocol's 200 and the access log.
#[derive(Debug)]
pub struct Stored {
    /// Events stored.
    pub records: usize,
    /// Events rejected, in request order.
    pub rejected: Vec<Rejection>,
    /// Where the first stored record went (a shard, a partition).
    pub location: Option<String>,
}

/// Writes `events` (of `protocol`) and decides the request's fate.
pub async fn store(app: &App, protocol: &'static str, events: Events) -> Result<Stored, ApiError> {
    let Events {
        records,
        positions,
        mut rejected,
        ..
    } = events;
    let count_rejections = |rejected: &[Rejection]| {
        for rejection in rejected {
            app.metrics().sdk_event_rejected(protocol, rejection.code);
        }
    };
    if records.is_empty() {
        count_rejections(&rejected);
        return Err(ApiError::NoValidEvents { rejected });
    }
    let outcomes = app.put(records).await;
    // A record the stream refused is its event's fault, not the request's.
    let failure = gravest(
        outcomes
            .iter()
            .filter(|o| o.as_ref().is_err_and(|e| !e.is_record_refused())),
    );
    if let Some((error, _)) = failure {
        return Err(ApiError::Sink {
            family: Family::Sdk,
            error: error.clone(),
        });
    }
    let mut location = None;
    let mut stored = 0;
    for (outcome, index) in outcomes.into_iter().zip(positions) {
        match outcome {
            Ok(receipt) => {
                stored += 1;
                location.get_or_insert_with(|| receipt.location().to_owned());
            }
            Err(err) => rejected.push(Rejection {
                index,
                code: "refused_by_stream",
                message: format!("the stream refused the event: {}", err.detail()),
            }),
        }
    }
    rejected.sort_by_key(|r| r.index);
    count_rejections(&rejected);
    app.metrics().sdk_events_stored(protocol, stored);
    if stored == 0 {
        return Err(ApiError::NoValidEvents { rejected });
    }
    Ok(Stored {
        records: stored,
        rejected,
        location,
    })
}
