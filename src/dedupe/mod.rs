//! Each event once: an SDK's retried events dropped at the door, by the
//! event's own id (`DEDUPE_WINDOW_SECONDS`).
//!
//! An event's id is its protocol's (`messageId` on Segment and RudderStack,
//! `uuid` on PostHog, `eid` on Snowplow, the `Idempotency-Key` header on
//! `/import`), scoped to its protocol and source key: two sources that pick
//! the same id both keep their event. Ids are kept as [`Fingerprint`]s, 128
//! bits of a SHA-256 of protocol, source and id.
//!
//! What `Doors::put` asks, once per request with ids: [`Dedupe::claim`],
//! before anything is written, then [`Claim::settle`] with what the store
//! answered. The rules that keep a 2xx honest:
//! - an id is marked only once its record is in the stream or the spill:
//!   a failed write leaves no mark, so its retry is stored;
//! - while a copy is being written, its id is held (`pending`): a second
//!   copy on this replica waits for the first one's outcome (up to the
//!   record deadline) and then decides again: a duplicate if the first was
//!   stored, written if it failed. Past the deadline it is answered 503
//!   `in_flight` with `Retry-After`, never 409: every SDK drops a batch on
//!   a 4xx other than 429, and would lose the event if the first copy then
//!   failed. A request that must wait holds none of its ids meanwhile, so
//!   two requests sharing ids in any order cannot wait on each other;
//! - a repeated id inside one request is written once, and answered as the
//!   first copy is.
//!
//! Where marks live: [`marks`] in this process (bounded by
//! `DEDUPE_MAX_IDS`, oldest forgotten first, all forgotten on restart), or
//! [`shared`] in Redis with `REDIS_URL`, for every replica, at one
//! pipelined round trip per request before the write (and one after it,
//! off the answer's path). Redis down: events are written unchecked (at
//! least once, as without dedupe), counted in `dedupe_store_errors_total`.

mod marks;
mod shared;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use marks::{Marks, SHARDS};
use shared::{Found, Shared};

use crate::config::DedupeConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{Kept, Kepts};

/// The longest event id accepted while dedupe is on, in bytes: ids are
/// hashed, so this only keeps a client from making the gateway hash
/// megabytes per event. SDKs' ids are UUIDs (36) or a short prefix and one.
pub(crate) const MAX_EVENT_ID_BYTES: usize = 200;

/// How long a claim in Redis outlives the longest write: a replica that
/// died mid-write leaves its events' ids free again after it.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

/// How often a copy in flight on another replica is looked at again.
const POLL_ELSEWHERE: Duration = Duration::from_millis(50);

/// An id, scoped to its protocol and source: 128 bits of SHA-256.
pub(crate) type Fingerprint = [u64; 2];

/// The fingerprint of event `id` from `source` on `protocol`.
pub(crate) fn fingerprint(protocol: &str, source: &str, id: &str) -> Fingerprint {
    let mut hash = Sha256::new();
    hash.update(protocol.as_bytes());
    hash.update([0]);
    hash.update((source.len() as u64).to_le_bytes());
    hash.update(source.as_bytes());
    hash.update(id.as_bytes());
    let digest = hash.finalize();
    let half = |at: usize| u64::from_le_bytes(digest[at..at + 8].try_into().expect("8 bytes"));
    [half(0), half(8)]
}

/// A request's events' own ids, for dedupe: each record's fingerprint
/// when it has an id.
#[derive(Debug, Default)]
pub(crate) struct EventIds {
    each: Vec<Option<Fingerprint>>,
    /// Whether a duplicate is answered with the first copy's answer
    /// (`/import`), which is then kept with the id.
    replay: bool,
}

impl EventIds {
    /// No ids: every record is written.
    pub(crate) fn none() -> Self {
        EventIds::default()
    }

    /// Each record's id on `protocol` (`None`: it has none), with its source.
    pub(crate) fn of<'a>(protocol: &str, ids: impl IntoIterator<Item = Option<(&'a str, &'a str)>>) -> Self {
        let each = ids
            .into_iter()
            .map(|id| id.map(|(source, id)| fingerprint(protocol, source, id)))
            .collect();
        EventIds { each, replay: false }
    }

    /// A duplicate is answered with the first copy's answer.
    pub(crate) fn replayed(mut self) -> Self {
        self.replay = true;
        self
    }

    /// Whether any record has an id.
    pub(crate) fn any(&self) -> bool {
        self.each.iter().any(Option::is_some)
    }
}

/// What a request's event is, for dedupe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Written by this request (it has no id, or its id is new).
    New,
    /// Stored before within the window: not written again. The first
    /// answer, when its door keeps one to replay.
    Duplicate(Option<String>),
    /// The same id as this request's event at that index: written once.
    SameAs(usize),
}

/// Stored events' ids, and the ids being written now.
pub(crate) struct Dedupe {
    window: Duration,
    /// The longest a copy waits for an earlier one in flight: the record
    /// deadline, by which the earlier one has its outcome.
    wait: Duration,
    state: Mutex<State>,
    /// The in-process store, in shards; `None` with `REDIS_URL`.
    marks: Option<Box<[Mutex<Marks>]>>,
    shared: Option<Shared>,
    clock: std::time::Instant,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Dedupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedupe")
            .field("window", &self.window)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    /// Ids being written, each with what its writer's end closes.
    pending: HashMap<Fingerprint, watch::Receiver<()>>,
}

impl Dedupe {
    /// Dedupe by `config`, marks shared through `redis_url` when set;
    /// `wait` is the record deadline. `None` when it is off. `Err`: the URL
    /// cannot be used.
    pub(crate) fn new(
        config: &DedupeConfig,
        redis_url: Option<&str>,
        wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Self>>, String> {
        let Some(window) = config.window else {
            return Ok(None);
        };
        let shared = redis_url.map(Shared::new).transpose()?;
        let per_shard = config.max_ids.div_ceil(SHARDS);
        let marks = shared
            .is_none()
            .then(|| (0..SHARDS).map(|_| Mutex::new(Marks::new(per_shard))).collect());
        Ok(Some(Arc::new(Dedupe {
            window,
            wait,
            state: Mutex::new(State {
                pending: HashMap::new(),
            }),
            marks,
            shared,
            clock: std::time::Instant::now(),
            metrics,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("dedupe lock")
    }

    /// The shard of the in-process store that holds `id`.
    fn shard(&self, id: &Fingerprint) -> Option<MutexGuard<'_, Marks>> {
        let shards = self.marks.as_ref()?;
        let mut shard = shards[id[0] as usize % SHARDS].lock().expect("marks lock");
        let forgotten = shard.expire(self.now());
        if forgotten > 0 {
            self.metrics.dedupe_ids_changed(-(forgotten as i64));
        }
        Some(shard)
    }

    /// Seconds on this store's clock.
    fn now(&self) -> u32 {
        self.clock.elapsed().as_secs() as u32
    }

    /// Decides, for each of a request's records (`ids`: each one's id, if
    /// any), whether it is written, and holds the ids of those that are
    /// until [`Claim::settle`]. Waits while an earlier copy of any of them
    /// is in flight; `Err` (503 `in_flight`) when it still is at the record
    /// deadline.
    pub(crate) async fn claim(self: &Arc<Self>, ids: EventIds) -> Result<Claim, ApiError> {
        let EventIds { each: ids, replay } = ids;
        let deadline = Instant::now() + self.wait;
        let repeats = repeats(&ids);
        let mut collided = false;
        loop {
            let seen = repeats.clone();
            let (done, watched) = watch::channel(());
            let mut waits = Vec::new();
            let mut held = Vec::new();
            {
                // Held first, then looked up in the marks: a first copy marks
                // its id before letting it go, so an id held here is either
                // marked already or written by this request alone.
                let mut state = self.lock();
                for (seen, id) in seen.iter().zip(&ids) {
                    if let (Seen::New, Some(id)) = (seen, id)
                        && let Some(writer) = state.pending.get(id)
                    {
                        waits.push(writer.clone());
                    }
                }
                if waits.is_empty() {
                    for (index, (seen, id)) in seen.iter().zip(&ids).enumerate() {
                        if let (Seen::New, Some(id)) = (seen, id) {
                            state.pending.insert(*id, watched.clone());
                            held.push((index, *id));
                        }
                    }
                }
            }
            if !waits.is_empty() {
                collided = collided || self.collided();
                for mut writer in waits {
                    // The writer's end closing is its outcome being known.
                    if tokio::time::timeout_at(deadline, writer.changed()).await.is_err() {
                        return Err(ApiError::StillInFlight);
                    }
                }
                continue;
            }
            let mut claim = Claim {
                seen,
                ids: ids.clone(),
                replay,
                hold: Hold {
                    dedupe: self.clone(),
                    held,
                    done: Some(done),
                },
            };
            let Some(shared) = &self.shared else {
                for (index, id) in &claim.hold.held {
                    if let Some(answer) = self.shard(id).and_then(|shard| shard.get(id)) {
                        claim.seen[*index] = Seen::Duplicate(answer.map(|a| a.to_string()));
                    }
                }
                return Ok(claim);
            };
            if claim.hold.held.is_empty() {
                return Ok(claim);
            }
            let held: Vec<Fingerprint> = claim.hold.held.iter().map(|(_, id)| *id).collect();
            let found = match shared.claim(&held, self.wait + CLAIM_MARGIN).await {
                Ok(found) => found,
                Err(_) => {
                    // Fail open: written unchecked, at least once.
                    self.metrics.dedupe_store_error();
                    return Ok(claim);
                }
            };
            let mut elsewhere = false;
            let mut claimed = Vec::new();
            for ((index, id), found) in claim.hold.held.iter().zip(found) {
                match found {
                    Found::Claimed => claimed.push(*id),
                    Found::Marked(answer) => claim.seen[*index] = Seen::Duplicate(answer),
                    Found::Elsewhere => elsewhere = true,
                }
            }
            if !elsewhere {
                return Ok(claim);
            }
            // In flight on another replica: give back what this request
            // claimed (so that replica never waits on it) and look again.
            collided = collided || self.collided();
            if shared.settle(&[], &claimed, self.window).await.is_err() {
                self.metrics.dedupe_store_error();
            }
            drop(claim);
            if Instant::now() + POLL_ELSEWHERE >= deadline {
                return Err(ApiError::StillInFlight);
            }
            tokio::time::sleep(POLL_ELSEWHERE).await;
        }
    }

    /// Counts a request that met a copy in flight (once per request).
    fn collided(&self) -> bool {
        self.metrics.dedupe_in_flight();
        true
    }
}

/// Each record's verdict from in-request repeats alone.
fn repeats(ids: &[Option<Fingerprint>]) -> Vec<Seen> {
    if ids.len() < 2 {
        return vec![Seen::New; ids.len()];
    }
    let mut first: HashMap<Fingerprint, usize> = HashMap::with_capacity(ids.len());
    ids.iter()
        .enumerate()
        .map(|(index, id)| match id.map(|id| first.entry(id)) {
            Some(Entry::Occupied(earlier)) => Seen::SameAs(*earlier.get()),
            Some(Entry::Vacant(entry)) => {
                entry.insert(index);
                Seen::New
            }
            None => Seen::New,
        })
        .collect()
}

/// A request's verdicts, and the ids it holds while it writes.
#[derive(Debug)]
pub(crate) struct Claim {
    seen: Vec<Seen>,
    ids: Vec<Option<Fingerprint>>,
    replay: bool,
    hold: Hold,
}

impl Claim {
    /// Each record's verdict, in request order.
    pub(crate) fn seen(&self) -> &[Seen] {
        &self.seen
    }

    /// Marks the ids of the records `written` kept (the outcomes of the
    /// [`Seen::New`] records, in order), with their answer when the door
    /// replays it, frees the rest, and answers every record's outcome in
    /// request order: a duplicate as [`Kept::Duplicate`], a repeat as its
    /// first copy.
    pub(crate) fn settle(self, written: Kepts) -> Kepts {
        let Claim {
            seen,
            ids,
            replay,
            hold,
        } = self;
        let mut written = written.into_iter();
        let mut each: Kepts = Vec::with_capacity(seen.len());
        let mut stored: Vec<(Fingerprint, Option<String>)> = Vec::new();
        let mut failed: Vec<Fingerprint> = Vec::new();
        for (seen, id) in seen.into_iter().zip(ids) {
            let outcome = match seen {
                Seen::New => {
                    let outcome = written.next().expect("an outcome per record written");
                    if let Some(id) = id {
                        match &outcome {
                            Ok(kept) => stored.push((id, replay.then(|| answer(kept)))),
                            Err(_) => failed.push(id),
                        }
                    }
                    outcome
                }
                Seen::Duplicate(answer) => Ok(Kept::Duplicate(answer)),
                Seen::SameAs(first) => each[first].clone(),
            };
            each.push(outcome);
        }
        hold.finish(stored, failed);
        each
    }
}

/// The answer `/import` replays for a duplicate: the first one's body.
fn answer(kept: &Kept) -> String {
    serde_json::to_string(kept).expect("a receipt serialises")
}

/// The ids a request holds while it writes; let go (its waiters woken)
/// when finished or dropped, so a request cancelled mid-write holds
/// nothing.
#[derive(Debug)]
struct Hold {
    dedupe: Arc<Dedupe>,
    /// Each held id, with its record's index.
    held: Vec<(usize, Fingerprint)>,
    /// Closed when the outcome is known: wakes the waiters.
    done: Option<watch::Sender<()>>,
}

impl Hold {
    /// Marks `stored` (in this process, or in Redis before letting go),
    /// frees `failed`, then lets go.
    fn finish(self, stored: Vec<(Fingerprint, Option<String>)>, failed: Vec<Fingerprint>) {
        let dedupe = self.dedupe.clone();
        if dedupe.shared.is_none() {
            let expires = dedupe.now().saturating_add(dedupe.window.as_secs() as u32);
            let mut added = 0;
            for (id, answer) in stored {
                if let Some(mut shard) = dedupe.shard(&id) {
                    added += i64::from(shard.insert(id, answer.map(Arc::from), expires));
                }
            }
            dedupe.metrics.dedupe_ids_changed(added);
            // Marked before let go (the drop): a copy that held back sees
            // the mark.
            drop(self);
            return;
        }
        if stored.is_empty() && failed.is_empty() {
            return;
        }
        // Off the answer's path: the answer does not wait on Redis again,
        // and this request's ids stay held here until their marks are
        // there, so no copy on this replica slips between.
        tokio::spawn(async move {
            let shared = dedupe.shared.as_ref().expect("shared");
            let stored: Vec<(Fingerprint, Option<&str>)> =
                stored.iter().map(|(id, answer)| (*id, answer.as_deref())).collect();
            if shared.settle(&stored, &failed, dedupe.window).await.is_err() {
                dedupe.metrics.dedupe_store_error();
            }
            drop(self);
        });
    }
}

/// Letting go frees the held ids and wakes their waiters: after `finish`,
/// and for a request cancelled mid-write (its ids stay unmarked).
impl Drop for Hold {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut state = self.dedupe.lock();
        for (_, id) in self.held.drain(..) {
            state.pending.remove(&id);
        }
        self.done.take();
    }
}
