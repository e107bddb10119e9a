//! Stored events' ids in Redis (or Valkey), shared by every replica
//! (`REDIS_URL`): a retry that lands on another replica is still known.
//!
//! One key per id, named by the id's fingerprint (never the id or the
//! source in full). Before a request writes, one pipelined round trip
//! claims all its ids at once: `SET key c NX PX claim GET` sets a claim
//! where there is nothing and answers what was there: nothing (this
//! request writes the event), a mark `k` (stored before: a duplicate,
//! with the answer to replay after the `k`), or another replica's claim
//! `c` (in flight there). After the write, one more pipelined round trip,
//! off the answer's path, turns each stored event's claim into its mark
//! for the window and deletes the claims of events that failed (a retry
//! must be able to store them). A claim left by a replica that died
//! expires after the longest a write may take.
//!
//! Fail open: when Redis does not answer within [`TIMEOUT`], the request's
//! events are written unchecked (at least once, as without dedupe), the
//! failure is counted and logged once per outage, and for a second no
//! request waits on Redis again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::Fingerprint;

/// The most a request waits on Redis before its events go unchecked.
pub(super) const TIMEOUT: Duration = Duration::from_millis(250);

/// How long requests skip Redis after it failed to answer.
const BACK_OFF: Duration = Duration::from_secs(1);

/// The prefix of every key.
const PREFIX: &str = "clickstream-gateway:event:";

/// What Redis held for an id when this replica claimed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// Nothing: the claim is this request's.
    Claimed,
    /// The id's mark: stored before, with the answer to replay if any.
    Marked(Option<String>),
    /// Another replica's claim: in flight there.
    Elsewhere,
}

/// A replica's link to the shared marks.
pub(super) struct Shared {
    connection: ConnectionManager,
    /// Until when requests skip Redis (after a failure), and whether the
    /// outage was logged.
    outage: Mutex<(Option<Instant>, bool)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Why Redis could not be asked.
#[derive(Debug)]
pub(super) enum Unshared {
    /// It failed within the last second: not asked.
    BackingOff,
    /// It failed now (the reason is logged once per outage).
    Failed,
}

impl Shared {
    /// A link to `url`, connected lazily. `Err`: the URL does not parse.
    pub(super) fn new(url: &str) -> Result<Self, String> {
        Ok(Shared {
            connection: crate::redis_link::open(url, TIMEOUT, 0)?,
            outage: Mutex::new((None, false)),
        })
    }

    /// Claims `ids` for `claim` (the longest a write may take) in one round
    /// trip, answering what each held.
    pub(super) async fn claim(&self, ids: &[Fingerprint], claim: Duration) -> Result<Vec<Found>, Unshared> {
        if self.backing_off() {
            return Err(Unshared::BackingOff);
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("SET")
                .arg(key(id))
                .arg("c")
                .arg("NX")
                .arg("PX")
                .arg(claim.as_millis() as u64)
                .arg("GET");
        }
        let mut connection = self.connection.clone();
        let answer = tokio::time::timeout(TIMEOUT, pipe.query_async::<Vec<Option<Vec<u8>>>>(&mut connection)).await;
        let found = match answer {
            Ok(Ok(found)) if found.len() == ids.len() => found,
            Ok(Ok(_)) => return Err(self.failed("an answer of the wrong length".into())),
            Ok(Err(e)) => return Err(self.failed(e.to_string())),
            Err(_) => return Err(self.failed(format!("no answer within {TIMEOUT:?}"))),
        };
        self.answered();
        Ok(found
            .into_iter()
            .map(|held| match held.as_deref() {
                None => Found::Claimed,
                Some([b'k', answer @ ..]) => {
                    Found::Marked((!answer.is_empty()).then(|| String::from_utf8_lossy(answer).into_owned()))
                }
                Some(_) => Found::Elsewhere,
            })
            .collect())
    }

    /// Marks the `stored` ids for `window`, each with its answer to replay,
    /// and deletes the claims of `failed` ones: one round trip.
    pub(super) async fn settle(
        &self,
        stored: &[(Fingerprint, Option<&str>)],
        failed: &[Fingerprint],
        window: Duration,
    ) -> Result<(), Unshared> {
        if stored.is_empty() && failed.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (id, answer) in stored {
            let mut value = Vec::with_capacity(1 + answer.map_or(0, str::len));
            value.push(b'k');
            value.extend_from_slice(answer.unwrap_or_default().as_bytes());
            pipe.cmd("SET")
                .arg(key(id))
                .arg(value)
                .arg("PX")
                .arg(window.as_millis() as u64)
                .ignore();
        }
        for id in failed {
            pipe.cmd("DEL").arg(key(id)).ignore();
        }
        let mut connection = self.connection.clone();
        match tokio::time::timeout(TIMEOUT, pipe.query_async::<()>(&mut connection)).await {
            Ok(Ok(())) => {
                self.answered();
                Ok(())
            }
            Ok(Err(e)) => Err(self.failed(e.to_string())),
            Err(_) => Err(self.failed(format!("no answer within {TIMEOUT:?}"))),
        }
    }

    fn backing_off(&self) -> bool {
        let outage = self.outage.lock().expect("outage lock");
        outage.0.is_some_and(|until| Instant::now() < until)
    }

    /// Redis failed: requests skip it for a while; logged once per outage.
    fn failed(&self, reason: String) -> Unshared {
        let mut outage = self.outage.lock().expect("outage lock");
        outage.0 = Some(Instant::now() + BACK_OFF);
        if !std::mem::replace(&mut outage.1, true) {
            tracing::warn!(
                %reason,
                "REDIS_URL does not answer: events are stored without checking their ids (at least once) until it does"
            );
        }
        Unshared::Failed
    }

    /// Redis answered: the outage, if any, is over.
    fn answered(&self) {
        let mut outage = self.outage.lock().expect("outage lock");
        if outage.1 {
            tracing::info!("REDIS_URL answers again: events' ids are checked across replicas");
        }
        *outage = (None, false);
    }
}

/// The Redis key of an id.
fn key(id: &Fingerprint) -> String {
    format!("{PREFIX}{:016x}{:016x}", id[0], id[1])
}
