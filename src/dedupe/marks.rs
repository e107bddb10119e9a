//! The in-process store of stored events' ids (no `REDIS_URL`): a set of
//! fingerprints and the order they came in, bounded by `DEDUPE_MAX_IDS`.
//!
//! Every mark lives the same window, so the order marks came in is the
//! order they expire in: one queue serves both expiry (from its front, on
//! every visit) and eviction of the oldest when the store is full. The
//! store is [`SHARDS`] of these, by fingerprint, each under its own lock:
//! growing a table (a rehash, a queue copied) then stalls 1/16 of the ids
//! for 1/16 of the time, not every request at once. Per id:
//! 16 bytes in the set (plus its control byte, at a load of 44 to 88 %)
//! and 24 in the queue, about 45 to 90 bytes as each grows by doubling.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use super::Fingerprint;

/// The store's shards.
pub(super) const SHARDS: usize = 16;

/// Stored events' ids within the window.
#[derive(Debug)]
pub(super) struct Marks {
    ids: HashSet<Fingerprint>,
    /// Each id and the second (on the dedupe clock) it expires, oldest first.
    order: VecDeque<(Fingerprint, u32)>,
    /// The first answer of a request that asked for it to be replayed
    /// (`/import` with `Idempotency-Key`), by id.
    answers: HashMap<Fingerprint, Arc<str>>,
    max: usize,
}

impl Marks {
    /// An empty store of at most `max` ids, sized for all of them at once:
    /// growing a full table later would stall its lock (a rehash, a queue
    /// copied) in the middle of traffic. Only the set's control bytes (one
    /// per slot) are touched now; the slots take memory as ids come.
    pub(super) fn new(max: usize) -> Self {
        Marks {
            ids: HashSet::with_capacity(max),
            order: VecDeque::with_capacity(max),
            answers: HashMap::new(),
            max,
        }
    }

    /// Forgets the ids whose window ended by second `now`; how many.
    pub(super) fn expire(&mut self, now: u32) -> usize {
        let mut forgotten = 0;
        while let Some(&(id, expires)) = self.order.front() {
            if expires > now {
                break;
            }
            self.forget_oldest(id);
            forgotten += 1;
        }
        forgotten
    }

    fn forget_oldest(&mut self, id: Fingerprint) {
        self.order.pop_front();
        self.ids.remove(&id);
        if !self.answers.is_empty() {
            self.answers.remove(&id);
        }
    }

    /// Whether `id` is marked, and the answer kept with it.
    pub(super) fn get(&self, id: &Fingerprint) -> Option<Option<Arc<str>>> {
        self.ids.contains(id).then(|| self.answers.get(id).cloned())
    }

    /// Marks `id` until second `expires`, with the `answer` to replay;
    /// forgets the oldest id when the store is full. Whether it holds one
    /// id more.
    pub(super) fn insert(&mut self, id: Fingerprint, answer: Option<Arc<str>>, expires: u32) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        let full = self.order.len() == self.max;
        if full && let Some(&(oldest, _)) = self.order.front() {
            self.forget_oldest(oldest);
        }
        self.order.push_back((id, expires));
        if let Some(answer) = answer {
            self.answers.insert(id, answer);
        }
        !full
    }

    /// Ids held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_with_their_window_and_the_oldest_go_first_when_full() {
        let mut marks = Marks::new(3);
        assert!(marks.insert([1, 0], None, 10));
        marks.insert([2, 0], Some("{\"a\":1}".into()), 11);
        marks.insert([3, 0], None, 12);
        assert_eq!(marks.get(&[2, 0]), Some(Some("{\"a\":1}".into())));
        assert_eq!(marks.get(&[1, 0]), Some(None));
        assert!(!marks.insert([4, 0], None, 13), "full: one in, one out");
        assert_eq!(marks.get(&[1, 0]), None, "the oldest is forgotten when full");
        assert_eq!(marks.len(), 3);
        assert_eq!(marks.expire(11), 1);
        assert_eq!(marks.get(&[2, 0]), None, "expired at its second");
        assert_eq!(marks.get(&[3, 0]), Some(None));
        assert!(marks.answers.is_empty(), "an answer goes with its id");
        marks.insert([3, 0], None, 99);
        assert_eq!(marks.len(), 2, "marking twice keeps one");
    }
}
