//! THE failure table of the sink layer: what each kind of [`SinkError`]
//! *is*, written once.
//!
//! Every place below the doors that must decide something about a failed
//! record asks this table: the writer (retry the entry? is the stream
//! pushing back?), the spill (spill it?), readiness (unready? what does
//! `/readyz` say?) and the doors' fold of a request's outcomes (which
//! failure of several is the request's answer). What a failure *means to a
//! client* (status, `Retry-After`, message, log level) is not the sink's
//! business: it is the one table in `error.rs`. Adding a kind of failure is
//! one variant, one row here and one arm there.

use super::SinkError;

/// What one kind of failure is, everywhere below the doors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meaning {
    /// The metric label, log field and per-record `ErrorCode` of batch answers.
    pub(crate) label: &'static str,
    /// The same record may succeed later, unchanged: the writer retries the
    /// entry, the client is told to retry.
    pub(crate) transient: bool,
    /// An entry of an answered call that failed this way is the stream
    /// pushing back: the adaptive limit on calls falls. (A whole call that
    /// fails transiently always is.)
    pub(crate) back_pressure: bool,
    /// The stream refused the record itself: it is never retried, spilled
    /// or replayed (a client must hear about a bad record), and on the SDK
    /// doors it is the event's own rejection, not the request's failure.
    pub(crate) record_refused: bool,
    /// The destination itself is not working: the instance turns unready.
    pub(crate) makes_unready: bool,
    /// When a request's records failed in different ways, the lowest is its
    /// answer: an operator must act (0), retry later (1), the record itself
    /// was refused (2).
    pub(crate) gravity: u8,
    /// What `/readyz` says when describing the destination failed this way
    /// (probe bodies are public: the kind, never the detail).
    pub(crate) readiness: &'static str,
}

/// The table, one row per kind.
const OVERLOADED: Meaning = Meaning {
    label: "overloaded",
    transient: true,
    back_pressure: false,
    record_refused: false,
    makes_unready: false,
    gravity: 1,
    readiness: "the stream cannot be reached",
};
const THROTTLED: Meaning = Meaning {
    label: "throttled",
    transient: true,
    back_pressure: true,
    record_refused: false,
    makes_unready: false,
    gravity: 1,
    readiness: "the stream's control plane is throttling describe calls",
};
const UNAVAILABLE: Meaning = Meaning {
    label: "unavailable",
    transient: true,
    back_pressure: false,
    record_refused: false,
    makes_unready: true,
    gravity: 1,
    readiness: "the stream cannot be reached",
};
const REJECTED: Meaning = Meaning {
    label: "rejected",
    transient: false,
    back_pressure: false,
    record_refused: true,
    makes_unready: false,
    gravity: 2,
    readiness: "the stream is missing or not accessible with these credentials",
};
const MISCONFIGURED: Meaning = Meaning {
    label: "misconfigured",
    transient: false,
    back_pressure: false,
    record_refused: false,
    makes_unready: true,
    gravity: 0,
    readiness: "the stream is missing or not accessible with these credentials",
};

impl SinkError {
    /// This failure's row of the table.
    pub(crate) fn meaning(&self) -> &'static Meaning {
        match self {
            SinkError::Overloaded(_) => &OVERLOADED,
            SinkError::Throttled(_) => &THROTTLED,
            SinkError::Unavailable(_) => &UNAVAILABLE,
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
    pub(crate) fn gravity(&self) -> u8 {
        self.meaning().gravity
    }
}

/// The one fold of a request's outcomes into its answer: the gravest
/// failure among them (the first of the gravest kind) and how many records
/// failed that way, or `None` when none failed.
pub(crate) fn gravest<'a, T: 'a>(
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
