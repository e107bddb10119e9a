//! The in-process store of stored events' ids (no `REDIS_URL`): a set of
//! fingerprints and the order they came in, bounded by `DEDUPE_MAX_IDS`.
//!
//! Every mark lives the same window, so the order marks came in is the
//! order they expire in: one queue serves both expiry (from its front, on
//! every visit) and eviction of the oldest when the store is full. Per id:
//! 16 bytes in the set (plus its control byte, at a load of 44 to 88 %)
//! and 24 in the queue, about 45 to 90 bytes as each grows by doubling.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use super::Fingerprint;

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
    /// An empty store of at most `max` ids.
    pub(super) fn new(max: usize) -> Self {
        Marks {
            ids: HashSet::new(),
            order: VecDeque::new(),
            answers: HashMap::new(),
            max,
        }
    }

    /// Forgets the ids whose window ended by second `now`.
    pub(super) fn expire(&mut self, now: u32) {
        while let Some(&(id, expires)) = self.order.front() {
            if expires > now {
                break;
            }
            self.forget_oldest(id);
        }
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
    /// forgets the oldest id when the store is full.
    pub(super) fn insert(&mut self, id: Fingerprint, answer: Option<Arc<str>>, expires: u32) {
        if !self.ids.insert(id) {
            return;
        }
        if self.order.len() == self.max
            && let Some(&(oldest, _)) = self.order.front()
        {
            self.forget_oldest(oldest);
        }
        self.order.push_back((id, expires));
        if let Some(answer) = answer {
            self.answers.insert(id, answer);
        }
    }

    /// Ids held now.
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
        marks.insert([1, 0], None, 10);
        marks.insert([2, 0], Some("{\"a\":1}".into()), 11);
        marks.insert([3, 0], None, 12);
        assert_eq!(marks.get(&[2, 0]), Some(Some("{\"a\":1}".into())));
        assert_eq!(marks.get(&[1, 0]), Some(None));
        marks.insert([4, 0], None, 13);
        assert_eq!(marks.get(&[1, 0]), None, "the oldest is forgotten when full");
        assert_eq!(marks.len(), 3);
        marks.expire(11);
        assert_eq!(marks.get(&[2, 0]), None, "expired at its second");
        assert_eq!(marks.get(&[3, 0]), Some(None));
        assert!(marks.answers.is_empty(), "an answer goes with its id");
        marks.insert([3, 0], None, 99);
        assert_eq!(marks.len(), 2, "marking twice keeps one");
    }
}
