//! THE failure table: what each kind of [`SinkError`] means, written once.
//!
//! Every place that must decide something about a failed record asks this
//! table: the writer (retry the entry? is the stream pushing back?), the
//! spill (spill it?), readiness (unready? what does `/readyz` say?), the
//! doors (which status, code and `Retry-After` on which [`Family`] of
//! routes, what message, which failure of several is the request's answer,
//! was it shed?) and the log (at which level). Adding a kind of failure is
//! one variant and one row here.
//!
//! The rule the statuses encode: 4xx means "your request is wrong, do not
//! retry it as is"; 503 with `Retry-After` means "not stored, retry later";
//! 502 means "not stored, the gateway is misconfigured"; 429 with
//! `Retry-After` (the SDKs' doors only, whose SDKs all back off on it and
//! whose own collectors send it) means "throttled, retry later".

use hyper::StatusCode;

use super::SinkError;

/// A family of doors, each with its own answer to a sink failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/import` and `/import/batch`.
    Api,
    /// The analytics SDKs' protocols.
    Sdk,
}

/// How loudly a failure is logged where it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loudness {
    /// The client's or the load's doing: debug.
    Quiet,
    /// The stream's doing, transient: warn.
    Warn,
    /// An operator must act: error.
    Error,
}

/// What one kind of failure means, everywhere it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meaning {
    /// The metric label, log field and per-record `ErrorCode` of batch answers.
    pub label: &'static str,
    /// The same record may succeed later, unchanged: the writer retries the
    /// entry, the client is told to retry.
    pub transient: bool,
    /// An entry of an answered call that failed this way is the stream
    /// pushing back: the adaptive limit on calls falls. (A whole call that
    /// fails transiently always is.)
    pub back_pressure: bool,
    /// The stream refused the record itself: it is never retried, spilled
    /// or replayed (a client must hear about a bad record), and on the SDK
    /// doors it is the event's own rejection, not the request's failure.
    pub record_refused: bool,
    /// The destination itself is not working: the instance turns unready.
    pub makes_unready: bool,
    /// When a request's records failed in different ways, the lowest is its
    /// answer: an operator must act (0), retry later (1), the record itself
    /// was refused (2).
    pub gravity: u8,
    /// The request was refused for load (`http_requests_shed_total`).
    pub sheds: bool,
    /// Status and code on the gateway's own API.
    pub api: (StatusCode, &'static str),
    /// Status and code on the SDKs' doors.
    pub sdk: (StatusCode, &'static str),
    /// Whether the answer carries `Retry-After`.
    pub retry_after: bool,
    /// What a client is told; `None`: the stream's own detail (a refused
    /// record says why). 5xx messages are generic: the detail is logged.
    pub message: Option<&'static str>,
    /// What `/readyz` says when describing the destination failed this way
    /// (probe bodies are public: the kind, never the detail).
    pub readiness: &'static str,
    /// How the failure is logged where it is answered.
    pub loudness: Loudness,
}

const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// The table, one row per kind.
const OVERLOADED: Meaning = Meaning {
    label: "overloaded",
    transient: true,
    back_pressure: false,
    record_refused: false,
    makes_unready: false,
    gravity: 1,
    sheds: true,
    api: (UNAVAILABLE, "overloaded"),
    sdk: (UNAVAILABLE, "overloaded"),
    retry_after: true,
    message: Some("the gateway is at capacity; the record was not stored, retry later"),
    readiness: "the stream cannot be reached",
    loudness: Loudness::Quiet,
};
const THROTTLED: Meaning = Meaning {
    label: "throttled",
    transient: true,
    back_pressure: true,
    record_refused: false,
    makes_unready: false,
    gravity: 1,
    sheds: false,
    api: (UNAVAILABLE, "throttled"),
    sdk: (StatusCode::TOO_MANY_REQUESTS, "throttled"),
    retry_after: true,
    message: Some("the stream is over its write capacity; the record was not stored, retry later"),
    readiness: "the stream's control plane is throttling describe calls",
    loudness: Loudness::Warn,
};
const UNAVAILABLE_ROW: Meaning = Meaning {
    label: "unavailable",
    transient: true,
    back_pressure: false,
    record_refused: false,
    makes_unready: true,
    gravity: 1,
    sheds: false,
    api: (UNAVAILABLE, "unavailable"),
    sdk: (UNAVAILABLE, "unavailable"),
    retry_after: true,
    message: Some("the stream could not be reached; the record was not stored, retry later"),
    readiness: "the stream cannot be reached",
    loudness: Loudness::Warn,
};
const REJECTED: Meaning = Meaning {
    label: "rejected",
    transient: false,
    back_pressure: false,
    record_refused: true,
    makes_unready: false,
    gravity: 2,
    sheds: false,
    api: (StatusCode::BAD_REQUEST, "record_rejected"),
    sdk: (StatusCode::BAD_REQUEST, "record_rejected"),
    retry_after: false,
    message: None,
    readiness: "the stream is missing or not accessible with these credentials",
    loudness: Loudness::Quiet,
};
const MISCONFIGURED: Meaning = Meaning {
    label: "misconfigured",
    transient: false,
    back_pressure: false,
    record_refused: false,
    makes_unready: true,
    gravity: 0,
    sheds: false,
    api: (StatusCode::BAD_GATEWAY, "upstream_misconfigured"),
    sdk: (StatusCode::BAD_GATEWAY, "upstream_misconfigured"),
    retry_after: false,
    message: Some("the gateway cannot write to its stream; the record was not stored"),
    readiness: "the stream is missing or not accessible with these credentials",
    loudness: Loudness::Error,
};

impl SinkError {
    /// This failure's row of the table.
    pub fn meaning(&self) -> &'static Meaning {
        match self {
            SinkError::Overloaded(_) => &OVERLOADED,
            SinkError::Throttled(_) => &THROTTLED,
            SinkError::Unavailable(_) => &UNAVAILABLE_ROW,
            SinkError::Rejected(_) => &REJECTED,
            SinkError::Misconfigured(_) => &MISCONFIGURED,
        }
    }

    /// The fixed label of this kind of failure, for metrics, logs and the
    /// per-record `ErrorCode` of batch answers.
    pub fn label(&self) -> &'static str {
        self.meaning().label
    }

    /// Whether the same record may succeed later, unchanged.
    pub fn is_transient(&self) -> bool {
        self.meaning().transient
    }

    /// Whether the stream refused the record itself (never retried or spilled).
    pub fn is_record_refused(&self) -> bool {
        self.meaning().record_refused
    }

    /// Whether the failure says the destination itself is not working.
    pub fn makes_unready(&self) -> bool {
        self.meaning().makes_unready
    }

    /// Lower is graver: see [`Meaning::gravity`].
    pub fn gravity(&self) -> u8 {
        self.meaning().gravity
    }

    /// Status, code and whether to send `Retry-After`, on `family`'s doors.
    pub fn status(&self, family: Family) -> (StatusCode, &'static str, bool) {
        let meaning = self.meaning();
        let (status, code) = match family {
            Family::Api => meaning.api,
            Family::Sdk => meaning.sdk,
        };
        (status, code, meaning.retry_after)
    }

    /// What a client is told about a record that was not stored.
    pub fn message(&self) -> String {
        match self.meaning().message {
            Some(message) => message.to_owned(),
            None => format!("the stream refused the record: {}", self.detail()),
        }
    }

    /// Logs the failure once, where it is answered: `records` is how many
    /// records of the request failed this way.
    pub fn log(&self, request_id: &str, records: usize) {
        let (kind, error) = (self.label(), self.detail());
        match self.meaning().loudness {
            Loudness::Quiet => tracing::debug!(%request_id, kind, records, error, "records not stored"),
            Loudness::Warn => tracing::warn!(%request_id, kind, records, error, "records not stored"),
            Loudness::Error => {
                tracing::error!(%request_id, kind, records, error, "records not stored: gateway misconfigured")
            }
        }
    }
}

/// The one fold of a request's outcomes into its answer: the gravest
/// failure among them (the first of the gravest kind) and how many records
/// failed that way, or `None` when none failed.
pub fn gravest<'a, T: 'a>(
    outcomes: impl IntoIterator<Item = &'a Result<T, SinkError>>,
) -> Option<(&'a SinkError, usize)> {
    let mut found: Option<(&SinkError, usize)> = None;
    for err in outcomes.into_iter().filter_map(|o| o.as_ref().err()) {
        found = match found {
            Some((g, n)) if g.label() == err.label() => Some((g, n + 1)),
            Some((g, n)) if g.gravity() <= err.gravity() => Some((g, n)),
            _ => Some((err, 1)),
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> [SinkError; 5] {
        [
            SinkError::Overloaded("x".into()),
            SinkError::Throttled("x".into()),
            SinkError::Unavailable("x".into()),
            SinkError::Rejected("x".into()),
            SinkError::Misconfigured("x".into()),
        ]
    }

    #[test]
    fn transient_failures_are_503_or_429_with_retry_after_and_the_rest_are_not() {
        for err in all() {
            let (api, _, retry) = err.status(Family::Api);
            assert_eq!(retry, err.is_transient(), "{err:?}");
            assert_eq!(api == StatusCode::SERVICE_UNAVAILABLE, err.is_transient(), "{err:?}");
            let (sdk, _, _) = err.status(Family::Sdk);
            if matches!(err, SinkError::Throttled(_)) {
                assert_eq!(sdk, StatusCode::TOO_MANY_REQUESTS);
            } else {
                assert_eq!(sdk, api, "{err:?}");
            }
        }
    }

    #[test]
    fn labels_are_distinct_and_only_a_rejected_record_is_refused_for_good() {
        let labels: std::collections::HashSet<_> = all().iter().map(SinkError::label).collect();
        assert_eq!(labels.len(), 5);
        for err in all() {
            assert_eq!(
                err.meaning().record_refused,
                matches!(err, SinkError::Rejected(_)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn the_gravest_failure_answers_and_counts_its_kind() {
        let outcomes: Vec<Result<(), SinkError>> = vec![
            Ok(()),
            Err(SinkError::Rejected("r".into())),
            Err(SinkError::Throttled("t1".into())),
            Err(SinkError::Throttled("t2".into())),
        ];
        let (err, count) = gravest(&outcomes).unwrap();
        assert_eq!((err.detail(), count), ("t1", 2));
        let mut worse = outcomes;
        worse.push(Err(SinkError::Misconfigured("m".into())));
        assert_eq!(gravest(&worse).unwrap().0.label(), "misconfigured");
        assert!(gravest::<()>(&[Ok(())]).is_none());
    }
}
