//! One source's allowance as a token bucket: `burst` tokens, refilled at
//! `per_second`, one token per event.
//!
//! Written here rather than taken from `governor` (which PostHog capture
//! uses): the shared allowance needs to take away what *other* replicas
//! spent ([`Bucket::spend_elsewhere`]), and one gateway holds a different
//! allowance per source (`SOURCES_FILE`); `governor`'s keyed limiter has one
//! quota for every key and no way to charge a key from outside.

use crate::config::Allowance;

/// Tokens, and when they were last counted (seconds on the quota's clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    tokens: f64,
    at: f64,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn full(allowance: &Allowance, now: f64) -> Self {
        Bucket {
            tokens: allowance.burst as f64,
            at: now,
        }
    }

    fn refill(&mut self, allowance: &Allowance, now: f64) {
        let elapsed = (now - self.at).max(0.0);
        self.tokens = (self.tokens + elapsed * allowance.per_second).min(allowance.burst as f64);
        self.at = now;
    }

    /// Whether `events` fit now; `Err` with the seconds until they would.
    pub(crate) fn check(&mut self, allowance: &Allowance, events: u64, now: f64) -> Result<(), f64> {
        self.refill(allowance, now);
        let missing = events as f64 - self.tokens;
        if missing <= 0.0 {
            Ok(())
        } else {
            Err(missing / allowance.per_second)
        }
    }

    /// Takes `events` (checked first with [`Bucket::check`]).
    pub(crate) fn take(&mut self, events: u64) {
        self.tokens -= events as f64;
    }

    /// Takes what other replicas let through for this source: the bucket
    /// may go below zero, down to one burst owed, so a replica that learns
    /// late still pays for what the others spent.
    pub(crate) fn spend_elsewhere(&mut self, allowance: &Allowance, events: u64, now: f64) {
        self.refill(allowance, now);
        self.tokens = (self.tokens - events as f64).max(-(allowance.burst as f64));
    }

    /// Whether the bucket is full again at `now`: it then holds nothing a
    /// fresh one would not, and may be forgotten.
    pub(crate) fn is_full(&mut self, allowance: &Allowance, now: f64) -> bool {
        self.refill(allowance, now);
        self.tokens >= allowance.burst as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Allowance = Allowance {
        per_second: 10.0,
        burst: 20,
    };

    #[test]
    fn a_burst_at_once_then_the_rate() {
        let mut bucket = Bucket::full(&TEN, 0.0);
        assert_eq!(bucket.check(&TEN, 20, 0.0), Ok(()));
        bucket.take(20);
        // Empty: one event is a tenth of a second away, five half a second.
        assert_eq!(bucket.check(&TEN, 1, 0.0), Err(0.1));
        assert_eq!(bucket.check(&TEN, 5, 0.0), Err(0.5));
        assert_eq!(bucket.check(&TEN, 5, 0.5), Ok(()));
        bucket.take(5);
        // Never more than the burst, however long it rests.
        assert!(bucket.is_full(&TEN, 100.0));
        assert_eq!(bucket.check(&TEN, 21, 100.0), Err(0.1));
    }

    #[test]
    fn what_others_spent_is_owed_down_to_one_burst() {
        let mut bucket = Bucket::full(&TEN, 0.0);
        bucket.spend_elsewhere(&TEN, 30, 0.0);
        assert_eq!(bucket.check(&TEN, 1, 0.0), Err(1.1));
        bucket.spend_elsewhere(&TEN, 1000, 0.0);
        assert_eq!(bucket.check(&TEN, 1, 0.0), Err(2.1));
    }
}
