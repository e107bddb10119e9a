//! What a client is told when a request fails: [`ApiError`], its one table
//! ([`ApiError::status`]) from failure to HTTP status, error code and
//! `Retry-After`, and the one writer of error bodies
//! ([`ApiError::into_response`]).
//!
//! The rule the table encodes: 4xx means "your request is wrong, do not
//! retry it as is"; 503 with `Retry-After` means "not stored, retry later";
//! 502 means "not stored, the gateway is misconfigured"; 429 with
//! `Retry-After` means "throttled, retry later": a source over its
//! allowance on any door (`quota`), a throttled stream on the SDKs' doors
//! only (whose SDKs all back off on it and whose own collectors send it).
//!
//! A sink failure is answered here too, per [`Family`] of doors: the
//! gateway's own API says 503 for every transient failure, while the
//! analytics SDKs' doors say 429 for throttling. What the failure *is*
//! (transient, refused, grave) is the sink layer's table
//! (`sink/failure.rs`); what it *means to a client* is this one.
//! 4xx bodies say what was wrong; 5xx bodies are generic, and the detail is
//! logged here, once. Every error body has `error` and `code` (the same
//! value) and `message`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONNECTION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use crate::partition_key::InvalidPartitionKey;
use crate::sink::SinkError;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// A family of doors, each with its own answer to a sink failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/import` and `/import/batch`.
    Api,
    /// The analytics SDKs' protocols.
    Sdk,
}

/// A request that did not end with a stored record.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such path.
    #[error("no such endpoint")]
    NotFound,
    /// Known path, wrong method; `allow` lists the right ones.
    #[error("method not allowed; use {allow}")]
    MethodNotAllowed {
        /// The value of the `Allow` header.
        allow: &'static str,
    },
    /// Nothing to store.
    #[error("the request body is empty; send the event as the body")]
    EmptyBody,
    /// A bad `X-Partition-Key`.
    #[error(transparent)]
    PartitionKey(#[from] InvalidPartitionKey),
    /// Data + partition key over the stream's record limit.
    #[error("the record is larger than {limit} bytes (body plus partition key); split it or send less")]
    PayloadTooLarge {
        /// The record limit in bytes.
        limit: usize,
    },
    /// A body over its endpoint's own limit (a batch's, an SDK protocol's),
    /// raw or decoded.
    #[error("the request body is larger than {limit} bytes, this endpoint's body limit; split it or send less")]
    BodyTooLarge {
        /// The endpoint's body limit in bytes.
        limit: usize,
    },
    /// A compressed body whose decoder would need more memory than its
    /// output may take: refused from the stream's header, before decoding.
    #[error("the {encoding} stream asks for a {window}-byte window; at most {max} is accepted here")]
    WindowTooLarge {
        /// The `Content-Encoding`.
        encoding: &'static str,
        /// The window the stream declares, in bytes.
        window: u64,
        /// The largest window accepted for this endpoint.
        max: usize,
    },
    /// A client-controlled string the gateway copies into every record (a
    /// write key, a project token, a send time) over its documented limit.
    #[error("`{field}` is longer than {max} bytes; it is copied into every event, so it must be short")]
    FieldTooLong {
        /// The field, as the protocol names it.
        field: &'static str,
        /// Its limit in bytes.
        max: usize,
    },
    /// A request whose records would be larger than its body allows (see
    /// `ingest::hold_records`): never expected of a real client.
    #[error(
        "the request's events would make {bytes} bytes of records; at most {max} are written for a body of its size"
    )]
    RecordsTooLarge {
        /// The records' bytes.
        bytes: usize,
        /// The most its body allows.
        max: usize,
    },
    /// The client did not send its whole body in time.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// The body stream broke (the client went away, malformed chunking).
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    /// The sink did not store the record, answered as `family` answers it.
    #[error("{error}")]
    Sink {
        /// The doors the request came through.
        family: Family,
        /// The (gravest) failure.
        error: SinkError,
        /// How many of the request's records failed this way (for the log).
        records: usize,
    },
    /// Too much in flight already: shed at once rather than queue.
    #[error("the gateway is at capacity ({0}); the record was not stored, retry later")]
    Overloaded(&'static str),
    /// API keys are configured and the request has none of them.
    #[error("a valid API key is required: send Authorization: Bearer <key> or X-Api-Key: <key>")]
    Unauthorized,
    /// A header the gateway acts on, sent more than once: a proxy in front
    /// may read the other copy, so the request means two things.
    #[error("the {0} header is sent more than once; send it once")]
    RepeatedHeader(&'static str),
    /// A browser preflight from an origin that is not allowed.
    #[error("this origin is not allowed to send events here")]
    OriginNotAllowed,
    /// A batch body that does not parse; `index` is the first record that
    /// does not, when there is one.
    #[error("{reason}")]
    InvalidBatch {
        /// The first offending record (0-based), when known.
        index: Option<usize>,
        /// What is wrong, for the client.
        reason: String,
    },
    /// A batch with no records.
    #[error("the batch has no records; send at least one")]
    EmptyBatch,
    /// More records than one request may carry.
    #[error("the batch has more than {max} records; split it (record {max} is the first over)")]
    TooManyRecords {
        /// `IMPORT_BATCH_MAX_RECORDS`.
        max: usize,
    },
    /// One record of a batch is over the stream's record limit.
    #[error("record {index} is larger than {limit} bytes (data plus partition key); nothing was stored")]
    RecordTooLarge {
        /// The offending record (0-based).
        index: usize,
        /// The record limit in bytes.
        limit: usize,
    },
    /// One record of a batch nests deeper than `JSON_MAX_DEPTH`: a record
    /// the stream's consumers could not parse.
    #[error("record {index} nests deeper than {max} levels of objects and arrays; nothing was stored")]
    TooDeep {
        /// The offending record (0-based).
        index: usize,
        /// `JSON_MAX_DEPTH`.
        max: usize,
    },
    /// A `Content-Encoding` we do not decode.
    #[error("unsupported Content-Encoding {0:?}; use gzip, deflate, zstd, br or none")]
    UnsupportedEncoding(String),
    /// A compressed body that does not decode.
    #[error("the body does not decode as its Content-Encoding says: {0}")]
    BadEncoding(String),
    /// An SDK's request that does not parse as its protocol.
    #[error("{0}")]
    BadSdkRequest(String),
    /// The request's source is over its allowance: nothing of it was stored.
    #[error("source {key} is over its allowance of events; nothing was stored, retry after {retry_after} s")]
    RateLimited {
        /// The source key, masked.
        key: String,
        /// Seconds until the request would fit.
        retry_after: u64,
    },
    /// A partition key over `HOT_KEY_EVENTS_PER_SECOND` under
    /// `HOT_KEY_POLICY=limit`: nothing of the request was stored.
    #[error(
        "partition key {key} sends more events per second than one shard should take; nothing was stored, retry later"
    )]
    HotKeyLimited {
        /// The partition key, masked.
        key: String,
    },
    /// The operator blocked the request's source (`SOURCES_FILE`).
    #[error("source {key} is blocked on this gateway; nothing was stored")]
    SourceBlocked {
        /// The source key, masked.
        key: String,
    },
    /// More events in one request than its source may send at once.
    #[error("the request has {events} events; its source may send at most {burst} at once, so split it")]
    OverBurst {
        /// The request's events (for its source).
        events: u64,
        /// The source's burst.
        burst: u64,
    },
    /// An earlier copy of one of the request's events (the same id) was
    /// still being written at the record deadline (`dedupe`).
    #[error(
        "an earlier copy of an event of this request (the same id) is still being stored; nothing was stored, retry later"
    )]
    StillInFlight,
    /// Every event of an SDK's request was rejected; `rejected` says why.
    #[error("no event of the request could be stored; see `rejected`")]
    NoValidEvents {
        /// Each event's index and reason.
        rejected: Vec<Rejection>,
    },
}

/// An event that was not stored, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejection {
    /// The event's position in the request (0-based).
    pub index: usize,
    /// A fixed code, also the metric label.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl From<SinkError> for ApiError {
    /// A failure on the gateway's own API.
    fn from(error: SinkError) -> Self {
        ApiError::Sink {
            family: Family::Api,
            error,
            records: 1,
        }
    }
}

impl ApiError {
    /// THE table: status, machine-readable code, and whether to send `Retry-After`.
    pub fn status(&self) -> (StatusCode, &'static str, bool) {
        match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", false),
            ApiError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", false),
            ApiError::EmptyBody => (StatusCode::BAD_REQUEST, "empty_body", false),
            ApiError::PartitionKey(_) => (StatusCode::BAD_REQUEST, "invalid_partition_key", false),
            ApiError::PayloadTooLarge { .. } | ApiError::BodyTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", false)
            }
            ApiError::WindowTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "window_too_large", false),
            ApiError::FieldTooLong { .. } => (StatusCode::BAD_REQUEST, "field_too_long", false),
            ApiError::RecordsTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "records_too_large", false),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout", false),
            ApiError::BodyRead(_) => (StatusCode::BAD_REQUEST, "bad_body", false),
            ApiError::BadEncoding(_) => (StatusCode::BAD_REQUEST, "bad_encoding", false),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", false),
            ApiError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed", false),
            ApiError::RepeatedHeader(_) => (StatusCode::BAD_REQUEST, "repeated_header", false),
            ApiError::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding", false),
            ApiError::InvalidBatch { .. } => (StatusCode::BAD_REQUEST, "invalid_batch", false),
            ApiError::EmptyBatch => (StatusCode::BAD_REQUEST, "empty_batch", false),
            ApiError::TooManyRecords { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_records", false),
            ApiError::RecordTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "record_too_large", false),
            ApiError::TooDeep { .. } => (StatusCode::BAD_REQUEST, "too_deep", false),
            ApiError::BadSdkRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", false),
            ApiError::NoValidEvents { .. } => (StatusCode::BAD_REQUEST, "invalid_events", false),
            ApiError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", true),
            // 503, not 409: every SDK drops a batch on a 4xx other than 429,
            // and would lose the event if the earlier copy then failed.
            ApiError::StillInFlight => (StatusCode::SERVICE_UNAVAILABLE, "in_flight", true),
            ApiError::RateLimited { .. } | ApiError::HotKeyLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", true)
            }
            ApiError::SourceBlocked { .. } => (StatusCode::FORBIDDEN, "source_blocked", false),
            ApiError::OverBurst { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "over_burst", false),
            ApiError::Sink { family, error, .. } => match (error, family) {
                (SinkError::Overloaded(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", true),
                (SinkError::Throttled(_), Family::Api) => (StatusCode::SERVICE_UNAVAILABLE, "throttled", true),
                (SinkError::Throttled(_), Family::Sdk) => (StatusCode::TOO_MANY_REQUESTS, "throttled", true),
                (SinkError::Unavailable(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", true),
                (SinkError::Rejected(_), _) => (StatusCode::BAD_REQUEST, "record_rejected", false),
                (SinkError::Misconfigured(_), _) => (StatusCode::BAD_GATEWAY, "upstream_misconfigured", false),
            },
        }
    }

    /// Whether the request was shed for load (counted apart in metrics).
    pub fn is_shed(&self) -> bool {
        matches!(
            self,
            ApiError::Overloaded(_)
                | ApiError::Sink {
                    error: SinkError::Overloaded(_),
                    ..
                }
        )
    }

    /// The masked source (or hot key) a quota refusal names, for the live view.
    pub fn masked_source(&self) -> Option<&str> {
        match self {
            ApiError::RateLimited { key, .. } | ApiError::SourceBlocked { key } | ApiError::HotKeyLimited { key } => {
                Some(key)
            }
            _ => None,
        }
    }

    /// The seconds `Retry-After` says, when the table says to send it.
    fn retry_after(&self) -> u64 {
        match self {
            ApiError::RateLimited { retry_after, .. } => *retry_after,
            _ => RETRY_AFTER_SECS,
        }
    }

    /// The first offending record of a batch, for the error body.
    fn index(&self) -> Option<usize> {
        match self {
            ApiError::InvalidBatch { index, .. } => *index,
            ApiError::TooManyRecords { max } => Some(*max),
            ApiError::RecordTooLarge { index, .. } | ApiError::TooDeep { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The message the client is answered with.
    pub fn message(&self) -> String {
        match self {
            ApiError::Sink { error, .. } => sink_message(error),
            other => other.to_string(),
        }
    }

    /// Logs a sink failure once, where it is answered, at the level its
    /// kind deserves: the client's or the load's doing is debug, the
    /// stream's transient doing warn, what an operator must mend error.
    pub(crate) fn log(&self, request_id: &str) {
        let ApiError::Sink { error, records, .. } = self else {
            return;
        };
        let (kind, error, records) = (error.label(), error.detail(), *records);
        match self {
            ApiError::Sink {
                error: SinkError::Overloaded(_) | SinkError::Rejected(_),
                ..
            } => tracing::debug!(%request_id, kind, records, error, "records not stored"),
            ApiError::Sink {
                error: SinkError::Misconfigured(_),
                ..
            } => tracing::error!(%request_id, kind, records, error, "records not stored: gateway misconfigured"),
            _ => tracing::warn!(%request_id, kind, records, error, "records not stored"),
        }
    }

    /// The JSON error response, logging sink failures once, with the
    /// request's id.
    pub fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let (status, code, retry) = self.status();
        self.log(request_id);
        let message = self.message();
        let rejected = match &self {
            ApiError::NoValidEvents { rejected } => Some(rejected.as_slice()),
            _ => None,
        };
        let mut response = json_response(
            status,
            &ErrorBody {
                error: code,
                code,
                message: &message,
                index: self.index(),
                rejected,
            },
        );
        let headers = response.headers_mut();
        if retry {
            headers.insert(RETRY_AFTER, HeaderValue::from(self.retry_after()));
        }
        match self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of the body may still be on the wire: do not read it as
            // the next request.
            ApiError::PayloadTooLarge { .. }
            | ApiError::BodyTooLarge { .. }
            | ApiError::BodyTimeout(_)
            | ApiError::BodyRead(_) => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// What a client is told about a record the sink did not store. 5xx
/// messages are generic (the detail is logged); a refused record says why.
pub(crate) fn sink_message(error: &SinkError) -> String {
    let generic = match error {
        SinkError::Overloaded(_) => "the gateway is at capacity; the record was not stored, retry later",
        SinkError::Throttled(_) => "the stream is over its write capacity; the record was not stored, retry later",
        SinkError::Unavailable(_) => "the stream could not be reached; the record was not stored, retry later",
        SinkError::Misconfigured(_) => "the gateway cannot write to its stream; the record was not stored",
        SinkError::Rejected(detail) => return format!("the stream refused the record: {detail}"),
    };
    generic.to_owned()
}

/// Adds `Retry-After` (seconds, as RFC 9110 defines it).
pub fn add_retry_after(headers: &mut hyper::HeaderMap) {
    headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    /// `error` again, under the name Segment's and RudderStack's SDKs read
    /// (RudderStack's Python SDK fails on a 4xx body without it).
    code: &'a str,
    message: &'a str,
    /// The first offending record of a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    /// An SDK request's rejected events.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a [Rejection]>,
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // Serialising our own plain structs cannot fail.
    let bytes = serde_json::to_vec(body).expect("response bodies are plain structs");
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_allowance_is_told_when_to_come_back() {
        let limited = ApiError::RateLimited {
            key: "wk_b…abcdef".into(),
            retry_after: 7,
        }
        .into_response("test");
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[RETRY_AFTER], "7");
        let blocked = ApiError::SourceBlocked { key: "k".into() }.into_response("test");
        assert_eq!(blocked.status(), StatusCode::FORBIDDEN);
        assert!(blocked.headers().get(RETRY_AFTER).is_none());
        let over = ApiError::OverBurst { events: 11, burst: 10 }.into_response("test");
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(over.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn retryable_failures_are_503_with_retry_after() {
        for err in [SinkError::Throttled("x".into()), SinkError::Unavailable("x".into())] {
            let response = ApiError::from(err).into_response("test");
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], "1");
        }
    }

    fn on(family: Family, error: &SinkError) -> (StatusCode, &'static str, bool) {
        let records = 1;
        let error = error.clone();
        ApiError::Sink { family, error, records }.status()
    }

    fn every_kind() -> [SinkError; 5] {
        [
            SinkError::Overloaded("x".into()),
            SinkError::Throttled("x".into()),
            SinkError::Unavailable("x".into()),
            SinkError::Rejected("x".into()),
            SinkError::Misconfigured("x".into()),
        ]
    }

    #[test]
    fn the_sdk_family_says_429_for_throttling_and_agrees_on_the_rest() {
        let throttled = SinkError::Throttled("x".into());
        assert_eq!(on(Family::Sdk, &throttled).0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(on(Family::Api, &throttled).0, StatusCode::SERVICE_UNAVAILABLE);
        for err in every_kind()
            .into_iter()
            .filter(|e| !matches!(e, SinkError::Throttled(_)))
        {
            assert_eq!(on(Family::Sdk, &err), on(Family::Api, &err), "{err:?}");
        }
    }

    #[test]
    fn transient_failures_are_503_or_429_with_retry_after_and_the_rest_are_not() {
        for err in every_kind() {
            let (api, _, retry) = on(Family::Api, &err);
            assert_eq!(retry, err.is_transient(), "{err:?}");
            assert_eq!(api == StatusCode::SERVICE_UNAVAILABLE, err.is_transient(), "{err:?}");
            let (sdk, _, _) = on(Family::Sdk, &err);
            if matches!(err, SinkError::Throttled(_)) {
                assert_eq!(sdk, StatusCode::TOO_MANY_REQUESTS);
            } else {
                assert_eq!(sdk, api, "{err:?}");
            }
        }
    }

    #[test]
    fn misconfiguration_is_502_without_retry_after_or_detail() {
        let response = ApiError::from(SinkError::Misconfigured("secret arn".into())).into_response("test");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert!(!response.headers().contains_key(RETRY_AFTER));
        let body = format!("{:?}", response.body());
        assert!(!body.contains("secret arn"), "5xx bodies must not leak details: {body}");
    }

    #[test]
    fn client_errors_are_4xx() {
        assert_eq!(ApiError::EmptyBody.status().0, StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::from(SinkError::Rejected("x".into())).status().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::PartitionKey(InvalidPartitionKey::Empty).status().0,
            StatusCode::BAD_REQUEST
        );
        let too_large = ApiError::PayloadTooLarge { limit: 10 }.into_response("test");
        assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_large.headers()[CONNECTION], "close");
        let wrong_method = ApiError::MethodNotAllowed { allow: "POST" }.into_response("test");
        assert_eq!(wrong_method.headers()[ALLOW], "POST");
    }
}
