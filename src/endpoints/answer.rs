//! One answer per door family, each written from a request's [`Report`]
//! (the store's one fold of them, `store.rs`):
//!
//! - [`import`] (`/import`): the record's receipt, 200 in the stream or 202
//!   `{"Spilled":true}` in the spill; a failure is the request's error.
//! - [`batch`] (`/import/batch`): the shape of Kinesis's `PutRecords`
//!   output, an entry per record in request order, under the status of the
//!   gravest failure (502 misconfigured, else 503 + `Retry-After` when any
//!   failure is transient, else 400), so a client can resend only the failed
//!   records.
//! - [`sdk`] (the analytics SDKs): the protocol's own 200 once every
//!   accepted event is kept; else the one failure the SDK is told about,
//!   the gravest, under the SDK family's statuses. A record the stream
//!   refused for good is its event's own rejection, not the request's
//!   failure: SDKs drop a whole batch on any 4xx.
//!
//! What a failure means to a client (status, code, `Retry-After`, message,
//! log level) is `error.rs`'s one table, and every error body is written by
//! [`ApiError::into_response`].

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::Reply;
use crate::doors::Doors;
use crate::error::{ApiError, Family, Rejection, add_retry_after, json_response, sink_message};
use crate::sink::SinkError;
use crate::store::{Kept, Report};

/// The request's failure when any record failed: its gravest, answered as
/// `family` answers it.
fn failure(report: &mut Report, family: Family) -> Option<ApiError> {
    let (error, records) = report.summary.gravest.take()?;
    Some(ApiError::Sink { family, error, records })
}

/// Where the first kept record went, for the access log only (no copy per
/// request otherwise).
fn location(report: &Report, wanted: bool) -> Option<String> {
    wanted.then(|| report.location().map(Cow::into_owned)).flatten()
}

/// `/import`: one record's receipt, or its failure.
pub(crate) fn import(doors: &Doors, mut report: Report, bytes: usize) -> Result<Reply, ApiError> {
    if let Some(failure) = failure(&mut report, Family::Api) {
        return Err(failure);
    }
    let location = location(&report, doors.access_log());
    let kept = report
        .each
        .into_iter()
        .find_map(Result::ok)
        .expect("a request with no failure kept its record");
    Ok(Reply {
        records: 1,
        bytes,
        location,
        // In the spill, durable, not yet in the stream: 202, no sequence number.
        ..Reply::plain(json_response(kept.status(), &kept))
    })
}

/// The batch answer, in the shape of `PutRecords` output.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchAnswer {
    failed_record_count: usize,
    /// Records in the durable spill, not yet in the stream (only when any).
    #[serde(skip_serializing_if = "is_zero")]
    spilled_record_count: usize,
    records: Vec<Entry>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize)]
#[serde(untagged)]
enum Entry {
    Kept(Kept),
    Failed {
        #[serde(rename = "ErrorCode")]
        error_code: &'static str,
        #[serde(rename = "ErrorMessage")]
        error_message: String,
    },
}

impl From<Result<Kept, SinkError>> for Entry {
    fn from(outcome: Result<Kept, SinkError>) -> Self {
        match outcome {
            Ok(kept) => Entry::Kept(kept),
            Err(err) => Entry::Failed {
                error_code: err.label(),
                error_message: sink_message(&err),
            },
        }
    }
}

/// `/import/batch`: 200 when every record is in the stream, 202 when every
/// record is kept and some are in the spill (`SPILL_DIR`); else the status
/// of the gravest failure, with every record's outcome in the body.
pub(crate) fn batch(mut report: Report, request_id: &str, bytes: usize, wants_location: bool) -> Reply {
    let location = location(&report, wants_location);
    let failure = failure(&mut report, Family::Api);
    let Report { each, summary } = report;
    let count = each.len();
    let body = BatchAnswer {
        failed_record_count: summary.failed,
        spilled_record_count: summary.spilled,
        records: each.into_iter().map(Entry::from).collect(),
    };
    let kept = if summary.spilled > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let (status, error, retry) = failure.as_ref().map_or((kept, "", false), ApiError::status);
    if let Some(failure) = &failure {
        failure.log(request_id);
    }
    let mut response = json_response(status, &body);
    if retry {
        add_retry_after(response.headers_mut());
    }
    Reply {
        records: count,
        bytes,
        location,
        error,
        shed: failure.as_ref().is_some_and(ApiError::is_shed),
        ..Reply::plain(response)
    }
}

/// An SDK request whose every event was rejected before anything was
/// written: 400 listing each, counted under `protocol`.
pub(crate) fn sdk_nothing_kept(doors: &Doors, protocol: &'static str, rejected: Vec<Rejection>) -> ApiError {
    for rejection in &rejected {
        doors.metrics().sdk_event_rejected(protocol, rejection.code);
    }
    ApiError::NoValidEvents { rejected }
}

/// What an SDK request's answer is written from, beside its [`Report`].
pub(crate) struct SdkAccepted<F> {
    /// The protocol's name, for metrics.
    pub(crate) protocol: &'static str,
    /// Each written record's event index in the request.
    pub(crate) positions: Vec<usize>,
    /// The events rejected before anything was written.
    pub(crate) rejected: Vec<Rejection>,
    /// Decoded body bytes.
    pub(crate) bytes: usize,
    /// The protocol's 200, listing the rejected events.
    pub(crate) success: F,
}

/// An SDK request's answer once its accepted events were written: the
/// protocol's 200 listing the rejected ones, or the gravest failure.
pub(crate) fn sdk<F>(doors: &Doors, mut report: Report, request: SdkAccepted<F>) -> Result<Reply, ApiError>
where
    F: FnOnce(&[Rejection]) -> Response<Full<Bytes>>,
{
    let SdkAccepted {
        protocol,
        positions,
        mut rejected,
        bytes,
        success,
    } = request;
    // A record the stream refused is its event's fault, not the request's;
    // it is the least grave kind, so the gravest is another whenever any is.
    let refused_only = report
        .summary
        .gravest
        .as_ref()
        .is_none_or(|(error, _)| error.is_record_refused());
    if !refused_only && let Some(failure) = failure(&mut report, Family::Sdk) {
        return Err(failure);
    }
    let location = location(&report, doors.access_log());
    let stored = report.summary.in_stream + report.summary.spilled;
    // An earlier copy's event is answered as stored: the SDK's retry is done.
    let kept = stored + report.summary.duplicates;
    for (outcome, index) in report.each.into_iter().zip(positions) {
        if let Err(err) = outcome {
            rejected.push(Rejection {
                index,
                code: "refused_by_stream",
                message: format!("the stream refused the event: {}", err.detail()),
            });
        }
    }
    rejected.sort_by_key(|r| r.index);
    if kept == 0 {
        return Err(sdk_nothing_kept(doors, protocol, rejected));
    }
    for rejection in &rejected {
        doors.metrics().sdk_event_rejected(protocol, rejection.code);
    }
    doors.metrics().sdk_events_stored(protocol, stored);
    Ok(Reply {
        records: kept,
        bytes,
        location,
        ..Reply::plain(success(&rejected))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Receipt;

    fn answer(each: Vec<Result<Kept, SinkError>>) -> Reply {
        batch(Report::new(each), "t", 0, false)
    }

    #[test]
    fn the_batch_status_is_the_gravest_failure() {
        let ok = || Ok(Kept::InStream(Receipt::new("s").with("Position", "1")));
        assert_eq!(answer(vec![ok(), ok()]).response.status(), StatusCode::OK);
        let partial = answer(vec![ok(), Err(SinkError::Throttled("x".into()))]);
        assert_eq!(partial.response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(partial.response.headers()["retry-after"], "1");
        let mixed = answer(vec![
            Err(SinkError::Rejected("r".into())),
            Err(SinkError::Misconfigured("m".into())),
        ]);
        assert_eq!(mixed.response.status(), StatusCode::BAD_GATEWAY);
        let refused = answer(vec![ok(), Err(SinkError::Rejected("r".into()))]);
        assert_eq!(refused.response.status(), StatusCode::BAD_REQUEST);
        let spilled = answer(vec![ok(), Ok(Kept::Spilled)]);
        assert_eq!(spilled.response.status(), StatusCode::ACCEPTED);
        let partial = answer(vec![Ok(Kept::Spilled), Err(SinkError::Throttled("x".into()))]);
        assert_eq!(partial.response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
