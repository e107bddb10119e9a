//! Readiness: may a load balancer send this instance traffic?
//!
//! Ready means "not shutting down, and the destination is known writable":
//! either a record was stored within the cache TTL, or a `describe` call
//! within the TTL said so. Probes share one cached answer and at most one
//! `describe` call is in flight, so a fleet of probes never hammers the
//! Kinesis control plane (`DescribeStreamSummary` allows ~20 calls/s per
//! account).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use crate::sink::{Destination, Sink};

/// The answer given to a readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether to send traffic here.
    pub ready: bool,
    /// Why, in words.
    pub status: String,
}

/// Readiness state shared by all requests.
#[derive(Debug)]
pub(crate) struct Readiness {
    ttl: Duration,
    origin: Instant,
    shutting_down: AtomicBool,
    /// Milliseconds after `origin` of the last stored record, plus one; 0 = none.
    last_stored: AtomicU64,
    /// The last `describe` answer and when it was taken.
    cached: Mutex<Option<(Instant, Verdict)>>,
}

impl Readiness {
    /// Answers may be reused for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Readiness {
            ttl,
            origin: Instant::now(),
            shutting_down: AtomicBool::new(false),
            last_stored: AtomicU64::new(0),
            cached: Mutex::new(None),
        }
    }

    /// From now on, every probe answers "not ready".
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// A record was stored: the destination works.
    pub(crate) fn record_stored(&self) {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.last_stored.store(ms, Ordering::Relaxed);
    }

    /// A record failed for a reason that says the destination is not working.
    pub(crate) fn record_failed(&self) {
        self.last_stored.store(0, Ordering::Relaxed);
    }

    /// The probe answer. `on_destination` sees every fresh `describe` result, so
    /// the caller can pick up the stream's limits.
    pub(crate) async fn check(&self, sink: &dyn Sink, on_destination: impl FnOnce(&Destination)) -> Verdict {
        if self.is_shutting_down() {
            return Verdict {
                ready: false,
                status: "shutting down".into(),
            };
        }
        let stored = self.last_stored.load(Ordering::Relaxed);
        if stored > 0 && self.origin.elapsed().as_millis() as u64 + 1 - stored < self.ttl.as_millis() as u64 {
            return Verdict {
                ready: true,
                status: "a record was stored recently".into(),
            };
        }
        // Holding the lock across the call makes concurrent probes wait for
        // this one answer instead of sending their own.
        let mut cached = self.cached.lock().await;
        if let Some((at, verdict)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return verdict.clone();
        }
        let verdict = match sink.describe().await {
            Ok(destination) => {
                on_destination(&destination);
                Verdict {
                    ready: destination.writable,
                    status: destination.status,
                }
            }
            Err(err) => Verdict {
                ready: false,
                // Probe bodies are public: the kind of failure, not the SDK's detail.
                status: err.meaning().readiness.to_owned(),
            },
        };
        *cached = Some((Instant::now(), verdict.clone()));
        verdict
    }
}
