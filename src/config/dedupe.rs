//! Each event once (`DEDUPE_WINDOW_SECONDS`, `DEDUPE_MAX_IDS`): what
//! `dedupe::Dedupe` enforces. Where the marks are shared is `REDIS_URL`,
//! the one the per-source quotas use.

use std::time::Duration;

use super::ConfigError;
use crate::lookup::Lookup;

/// The longest window: a week (SDKs keep events queued for days at most).
pub(super) const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// The most ids the in-process store may hold.
pub(super) const MAX_IDS_LIMIT: usize = 100_000_000;

/// Dropping an SDK's retried events by the event's own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeConfig {
    /// `DEDUPE_WINDOW_SECONDS`: how long a stored event's id is remembered;
    /// `None`: off (every copy is stored, as without this feature).
    pub window: Option<Duration>,
    /// `DEDUPE_MAX_IDS`: the most ids the in-process store holds (the
    /// oldest are forgotten first); unused with `REDIS_URL`.
    pub max_ids: usize,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            window: None,
            max_ids: 1_000_000,
        }
    }
}

impl DedupeConfig {
    /// Reads the dedupe variables.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = DedupeConfig::default();
        let window = vars
            .optional_at_most("DEDUPE_WINDOW_SECONDS", MAX_WINDOW_SECS as usize)?
            .map(|secs| Duration::from_secs(secs.get() as u64));
        Ok(DedupeConfig {
            window,
            max_ids: vars.at_most("DEDUPE_MAX_IDS", d.max_ids, MAX_IDS_LIMIT)?.get(),
        })
    }
}
