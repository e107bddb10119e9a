//! Hot partition keys: a key sending more than `HOT_KEY_EVENTS_PER_SECOND`
//! would push its one Kinesis shard (or Kafka partition, or Pub/Sub
//! ordering key) past what it takes, and the retries that follow slow every
//! record sharing those calls.
//!
//! Keys are counted without a map: two rows of counters, each key landing
//! in one counter per row by a keyed hash, each counter holding this
//! second's count (a count-min sketch over one-second windows). A key's
//! count is the smaller of its two: never less than the truth, more only
//! when both of its counters are shared with other busy keys. Memory is
//! fixed whatever keys clients invent, and counting is two atomic adds,
//! with no lock on the request path. PostHog capture keeps a `governor`
//! limiter per key instead, in a map it prunes.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters per row: ample for the keys a gateway sees in one second (a
/// key is taken for hot only if both its counters are over the rate).
const WIDTH: usize = 4096;

/// Records of a hot key beyond the rate go out under this many derived keys.
pub(crate) const SPREAD_KEYS: u64 = 64;

/// This second's count per counter.
#[derive(Debug)]
pub(crate) struct HotKeys {
    per_second: u32,
    hasher: hashbrown::DefaultHashBuilder,
    rows: [Box<[AtomicU64]>; 2],
}

impl HotKeys {
    /// Counters for keys allowed `per_second` records each.
    pub(crate) fn new(per_second: u32) -> Self {
        let row = || (0..WIDTH).map(|_| AtomicU64::new(0)).collect();
        HotKeys {
            per_second,
            // Seeded per process (foldhash), so a client cannot choose keys
            // that collide with another's to make it hot; several times
            // faster than SipHash on a request's every record.
            hasher: hashbrown::DefaultHashBuilder::default(),
            rows: [row(), row()],
        }
    }

    /// Counts one record of `key` in `second`; `Some(n)` when the key is
    /// over its rate, `n` being its count this second (to pick a derived key).
    pub(crate) fn count(&self, key: &str, second: u32) -> Option<u64> {
        let hash = self.hasher.hash_one(key);
        let first = add(&self.rows[0][(hash as usize) % WIDTH], second);
        let other = add(&self.rows[1][((hash >> 32) as usize) % WIDTH], second);
        let count = first.min(other);
        (count > u64::from(self.per_second)).then_some(count)
    }
}

/// Adds one to a counter holding `second << 32 | count`, starting it over
/// when the second has moved on; the count after adding.
fn add(counter: &AtomicU64, second: u32) -> u64 {
    let mut current = counter.load(Ordering::Relaxed);
    loop {
        let next = if (current >> 32) as u32 == second {
            current + 1
        } else {
            (u64::from(second) << 32) | 1
        };
        match counter.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next & u64::from(u32::MAX),
            Err(seen) => current = seen,
        }
    }
}

/// The key a hot key's record beyond the rate goes out under: the key
/// with `~hot` and one of [`SPREAD_KEYS`] numbers, cut so that it fits
/// `max_chars`.
pub(crate) fn spread_key(key: &str, count: u64, max_chars: usize) -> String {
    // One allocation, and no walk over the characters of a key that fits
    // (every record of a hot key beyond its rate comes here).
    const SUFFIX_MAX: usize = "~hot63".len();
    let n = (count % SPREAD_KEYS) as u8;
    let mut spread = String::with_capacity(key.len() + SUFFIX_MAX);
    if key.len() + SUFFIX_MAX <= max_chars {
        spread.push_str(key);
    } else {
        let suffix_chars = if n < 10 { 5 } else { 6 };
        spread.extend(key.chars().take(max_chars.saturating_sub(suffix_chars)));
    }
    // The digits by hand: `write!` cost more than the rest of the key's
    // making (about 150 instructions per record).
    spread.push_str("~hot");
    if n >= 10 {
        spread.push(char::from(b'0' + n / 10));
    }
    spread.push(char::from(b'0' + n % 10));
    spread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_hot_past_its_rate_and_cools_the_next_second() {
        let hot = HotKeys::new(10);
        let over: Vec<_> = (0..15).map(|_| hot.count("user-1", 7)).collect();
        assert!(over[..10].iter().all(Option::is_none));
        assert_eq!(over[10..], [Some(11), Some(12), Some(13), Some(14), Some(15)]);
        assert_eq!(hot.count("user-1", 8), None);
        // Other keys, busy but under the rate, never turn hot beside it.
        for user in 0..1000 {
            for _ in 0..2 {
                assert_eq!(hot.count(&format!("other-{user}"), 7), None);
            }
        }
    }

    #[test]
    fn spread_keys_fit_the_sink_and_take_many_values() {
        assert_eq!(spread_key("user-1", 65, 256), "user-1~hot1");
        let long = "k".repeat(300);
        assert_eq!(spread_key(&long, 3, 256).chars().count(), 256);
        assert_eq!(spread_key(&long, 42, 256).chars().count(), 256);
        assert_eq!(spread_key("u", 10, 256), "u~hot10");
        assert_eq!(spread_key("u", 63, 256), "u~hot63");
        let keys: std::collections::HashSet<_> = (0..1000).map(|n| spread_key("u", n, 256)).collect();
        assert_eq!(keys.len() as u64, SPREAD_KEYS);
    }
}
