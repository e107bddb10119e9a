//! Where a request's outcomes go: one place per request ([`Replies`]), a
//! slot per record, each answered ([`Reply::send`]) by whichever call
//! carried the record. A channel per record (tokio's `oneshot`) cost an
//! allocation and its atomics for every record of a batch, about 250
//! instructions per event on the batch doors (docs/benchmarks.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::sink::{Outcomes, Receipt, SinkError};

/// The request's side: waits until every record is answered.
pub(super) struct Replies {
    shared: Arc<Shared>,
}

/// One record's slot: answered once, by [`Reply::send`], or as dropped
/// when it goes unanswered.
pub(super) struct Reply {
    shared: Option<Arc<Shared>>,
    index: usize,
}

struct Shared {
    slots: Mutex<Vec<Option<Result<Receipt, SinkError>>>>,
    /// Slots not answered yet.
    left: AtomicUsize,
    /// Notified when `left` reaches zero (`notify_one` keeps a permit
    /// for a request not waiting yet).
    done: Notify,
}

impl Replies {
    /// Places for `count` outcomes, and the reply for each.
    pub(super) fn new(count: usize) -> (Self, impl Iterator<Item = Reply>) {
        let shared = Arc::new(Shared {
            slots: Mutex::new(vec![None; count]),
            left: AtomicUsize::new(count),
            done: Notify::new(),
        });
        let replies = (0..count).map({
            let shared = shared.clone();
            move |index| Reply {
                shared: Some(shared.clone()),
                index,
            }
        });
        (Replies { shared }, replies)
    }

    /// Every record's outcome, in order, once all are answered.
    pub(super) async fn outcomes(self) -> Outcomes {
        while self.shared.left.load(Ordering::Acquire) != 0 {
            self.shared.done.notified().await;
        }
        let slots = std::mem::take(&mut *self.shared.slots());
        slots.into_iter().map(|slot| slot.unwrap_or_else(dropped)).collect()
    }
}

impl Reply {
    /// Answers the record.
    pub(super) fn send(mut self, outcome: Result<Receipt, SinkError>) {
        if let Some(shared) = self.shared.take() {
            shared.answer(self.index, outcome);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.answer(self.index, dropped());
        }
    }
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<Result<Receipt, SinkError>>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answer(&self, index: usize, outcome: Result<Receipt, SinkError>) {
        self.slots()[index] = Some(outcome);
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

/// The outcome of a record whose reply was dropped unanswered.
fn dropped() -> Result<Receipt, SinkError> {
    Err(SinkError::Unavailable("the writer dropped the record".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_record_is_answered_in_its_place_or_as_dropped() {
        let (replies, each) = Replies::new(3);
        let mut each: Vec<Reply> = each.collect();
        let waiting = tokio::spawn(replies.outcomes());
        let last = each.pop().unwrap();
        let middle = each.pop().unwrap();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "two records are not answered yet");
        last.send(Err(SinkError::Throttled("slow".into())));
        drop(middle);
        each.pop().unwrap().send(Ok(Receipt::new("s")));
        let outcomes = waiting.await.unwrap();
        assert_eq!(outcomes[0], Ok(Receipt::new("s")));
        assert!(matches!(&outcomes[1], Err(SinkError::Unavailable(d)) if d.contains("dropped")));
        assert!(matches!(&outcomes[2], Err(SinkError::Throttled(_))));
    }
}
