//! One allowance across the replicas of a deployment, through Redis (or
//! Valkey), never on a request's path.
//!
//! Each replica decides locally, from its own bucket per source, and every
//! `REDIS_SYNC_MS` tells Redis what its sources sent since and learns what
//! the others' did: one pipelined round trip, `INCRBY` on one counter per
//! source (the sum of what every replica let through, ever). What the
//! counter grew by beyond this replica's own share was spent elsewhere, and
//! is taken from the local bucket ([`super::bucket::Bucket::spend_elsewhere`]).
//! So every replica's bucket drains at the deployment's rate, and together
//! they let through one allowance, overshooting by at most what the others
//! sent within one sync. This is PostHog capture's choice for its global
//! limiter (a local estimate, reconciled with a count in Redis in the
//! background) rather than GCRA state in Redis, which would need a round
//! trip per decision.
//!
//! Counters are named by a SHA-256 of the source key (no key in full ever
//! reaches Redis) and expire an hour after their last change. If Redis
//! cannot be reached, each replica limits alone (fail open: the warning is
//! logged once, `gateway_source_sharing` is 0, `/readyz` is unaffected), and
//! sharing resumes when it answers again, from a fresh baseline.
//!
//! The client is the `redis` crate's `ConnectionManager`: the maintained
//! Rust client, reconnecting on its own; `fred` does as much, with more
//! than this needs (clusters, pools, a 20-odd crate tree of its own).

use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use super::Quotas;

/// A counter's life after its last change.
const EXPIRE_SECS: u64 = 3600;

/// The most one sync may take before it counts as failed.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1);

/// The prefix of every counter's name.
const PREFIX: &str = "clickstream-gateway:source:";

/// A replica's link to the shared counts.
pub(super) struct Shared {
    connection: ConnectionManager,
    /// Whether the last sync reached Redis (`None` before the first).
    up: Option<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("up", &self.up).finish_non_exhaustive()
    }
}

impl Shared {
    /// A link to `url`, connected lazily (a Redis down at start-up is the
    /// same as one that goes down later). `Err`: the URL does not parse.
    pub(super) fn new(url: &str) -> Result<Self, String> {
        // Reconnecting is the next sync's job: one try per sync.
        let connection = crate::redis_link::open(url, SYNC_TIMEOUT, 1)?;
        Ok(Shared { connection, up: None })
    }

    /// One reconciliation: what this replica's sources sent since the last
    /// one goes to Redis, what the others' sent comes back.
    pub(super) async fn sync(&mut self, quotas: &Quotas) {
        let now = quotas.now();
        let batch: Vec<(String, String, u64)> = {
            let mut table = quotas.lock();
            table
                .sources
                .iter_mut()
                .filter(|(_, s)| s.limit.is_some() && (s.unsynced > 0 || now - s.last < super::FORGET_AFTER_SECS))
                .map(|(key, source)| {
                    let sent = std::mem::take(&mut source.unsynced);
                    (key.clone(), counter_name(key), sent)
                })
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (_, name, sent) in &batch {
            pipe.cmd("INCRBY").arg(name).arg(*sent);
            pipe.cmd("EXPIRE").arg(name).arg(EXPIRE_SECS).ignore();
        }
        let answer = tokio::time::timeout(SYNC_TIMEOUT, pipe.query_async::<Vec<i64>>(&mut self.connection)).await;
        match answer {
            Ok(Ok(totals)) if totals.len() == batch.len() => {
                let now = quotas.now();
                let mut table = quotas.lock();
                for ((key, _, sent), total) in batch.iter().zip(totals) {
                    let Some(source) = table.sources.get_mut(key) else {
                        continue;
                    };
                    if let (Some(seen), Some((allowance, bucket))) = (source.shared_seen, &mut source.limit) {
                        let elsewhere = total - seen - *sent as i64;
                        if elsewhere > 0 {
                            bucket.spend_elsewhere(allowance, elsewhere as u64, now);
                        }
                    }
                    source.shared_seen = Some(total);
                }
                drop(table);
                self.mark(true, quotas, "");
            }
            failed => {
                let reason = match failed {
                    Ok(Ok(_)) => "an answer of the wrong length".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {SYNC_TIMEOUT:?}"),
                };
                // What was sent meanwhile is another baseline's business.
                for source in quotas.lock().sources.values_mut() {
                    source.shared_seen = None;
                }
                self.mark(false, quotas, &reason);
            }
        }
    }

    /// Logs a change of state once, and keeps the gauge.
    fn mark(&mut self, up: bool, quotas: &Quotas, reason: &str) {
        if self.up != Some(up) {
            if up {
                tracing::info!("REDIS_URL answers: the replicas share each source's allowance");
            } else {
                tracing::warn!(
                    %reason,
                    "REDIS_URL cannot be reached: each replica limits its sources alone until it answers"
                );
            }
        }
        if !up {
            quotas.metrics.source_sync_failed();
        }
        self.up = Some(up);
        quotas.metrics.source_sharing(up);
    }
}

/// The shared counter of source `key`: no key in full reaches Redis.
fn counter_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}
