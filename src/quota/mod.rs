//! Many sources on one gateway: each source's allowance, the sources the
//! operator blocked, and partition keys too hot for one shard.
//!
//! A source is the key a request came with: the write key, project token or
//! app id on the SDK doors, the presented API key on `/import` and
//! `/import/batch` (one shared source when `API_KEYS` is unset). What the
//! doors ask is [`Quotas::admit`], once per request, before anything is
//! stored: all of a request's events fit its source's allowance, or none is
//! taken and the request is refused whole (429 with `Retry-After`, 403 for a
//! blocked source, 413 for more events than the burst), so an SDK's retry
//! stores each event once. Then [`Quotas::cool`] gives a hot key's records
//! beyond its rate derived keys, or refuses them (`HOT_KEY_POLICY`).
//!
//! - [`bucket`]: one source's token bucket;
//! - [`file`]: `SOURCES_FILE`, per-source allowances and blocks, re-read live;
//! - [`shared`]: one allowance across replicas through Redis, reconciled in
//!   the background, never on a request's path;
//! - [`hot`]: hot partition keys, counted in fixed memory.
//!
//! Memory is bounded whatever keys clients invent: at most
//! `SOURCE_MAX_TRACKED` sources (plus those the file names) have a bucket
//! of their own; past that, new sources share one. Sources whose bucket is
//! full again are forgotten (a full bucket is what a new one would be).
//! Keys are never logged or shown in full: only `live::mask`ed.

mod bucket;
pub(crate) mod file;
pub(crate) mod hot;
mod shared;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bucket::Bucket;
use file::{Rule, Rules};
use hot::HotKeys;

use crate::config::{Allowance, HotKeyPolicy, QuotaConfig};
use crate::error::ApiError;
use crate::live::mask;
use crate::metrics::Metrics;
use crate::sink::{Record, RecordRules};

/// Sources with a metric label of their own (the busiest when a label
/// was free); the rest are counted as `other`.
pub(crate) const MAX_LABELS: usize = 16;

/// How long a full bucket is kept after its source's last request: while
/// Redis may still tell of what the source sent elsewhere.
const FORGET_AFTER_SECS: f64 = 10.0;

/// How often idle sources are forgotten and labels handed out.
const TIDY_EVERY: Duration = Duration::from_secs(1);

/// The outcomes counted per source (`gateway_source_events_total`).
pub(crate) mod outcome {
    /// Stored (or on its way).
    pub(crate) const ACCEPTED: &str = "accepted";
    /// Refused: the source was over its allowance (or a key over its rate).
    pub(crate) const RATE_LIMITED: &str = "rate_limited";
    /// Refused: the source is blocked.
    pub(crate) const BLOCKED: &str = "blocked";
    /// Stored under a derived key: its partition key was hot.
    pub(crate) const SPREAD: &str = "spread";
}

/// Per-source allowances, blocks and hot keys: one per gateway.
#[derive(Debug)]
pub(crate) struct Quotas {
    default: Option<Allowance>,
    per_source: bool,
    /// Whether `REDIS_URL` is set (what is taken is then counted for it).
    sharing: bool,
    max_tracked: usize,
    rules: RwLock<Arc<Rules>>,
    table: Mutex<Table>,
    clock: Instant,
    hot: Option<(HotKeys, HotKeyPolicy)>,
    metrics: Arc<Metrics>,
}

/// The sources being counted.
#[derive(Debug, Default)]
struct Table {
    sources: HashMap<Box<str>, Source>,
    /// What sources past `SOURCE_MAX_TRACKED` share.
    overflow: Source,
    /// The label each labelled source keeps for the process's life (so its
    /// counter never goes back), at most [`MAX_LABELS`].
    labels: HashMap<Box<str>, &'static str>,
}

/// One source's state.
#[derive(Debug, Clone)]
struct Source {
    /// The allowance it was last counted under, and its bucket; `None`:
    /// no limit applies (it is counted for metrics only).
    limit: Option<(Allowance, Bucket)>,
    /// Events taken here that the shared count has not heard of.
    unsynced: u64,
    /// The shared count when this replica last saw it.
    shared_seen: Option<i64>,
    /// When it last sent (seconds on the quota's clock).
    last: f64,
    /// Events since the labels were last handed out.
    recent: u64,
    label: &'static str,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            limit: None,
            unsynced: 0,
            shared_seen: None,
            last: 0.0,
            recent: 0,
            label: "other",
        }
    }
}

impl Source {
    /// Puts `allowance` in force (the file may have changed it), keeping
    /// the bucket's tokens when it stays limited.
    fn limit_by(&mut self, allowance: Option<Allowance>, now: f64) -> Option<(&Allowance, &mut Bucket)> {
        match (allowance, &mut self.limit) {
            (None, limit) => *limit = None,
            (Some(new), Some((old, _))) => *old = new,
            (Some(new), limit @ None) => *limit = Some((new, Bucket::full(&new, now))),
        }
        self.limit.as_mut().map(|(a, b)| (&*a, b))
    }

    /// Whether it holds nothing a new one would not.
    fn is_idle(&mut self, now: f64) -> bool {
        let full = match &mut self.limit {
            Some((allowance, bucket)) => bucket.is_full(allowance, now),
            None => true,
        };
        full && self.unsynced == 0 && now - self.last > FORGET_AFTER_SECS
    }
}

impl Quotas {
    /// The allowances `config` sets, counted into `metrics`; `Err` when
    /// `SOURCES_FILE` cannot be read or parsed at start-up (there is no
    /// last good one to keep).
    pub(crate) fn new(config: &QuotaConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, String> {
        let quotas = Arc::new(Quotas {
            default: config.default,
            per_source: config.per_source(),
            sharing: config.redis_url.is_some(),
            max_tracked: config.max_tracked,
            rules: RwLock::new(Arc::new(Rules::default())),
            table: Mutex::new(Table::default()),
            clock: Instant::now(),
            hot: match config.hot_key_policy {
                HotKeyPolicy::Off => None,
                policy => Some((HotKeys::new(config.hot_key_per_second), policy)),
            },
            metrics,
        });
        if let Some(path) = &config.sources_file {
            file::load(&quotas, path).map_err(|reason| format!("SOURCES_FILE {}: {reason}", path.display()))?;
        }
        Ok(quotas)
    }

    /// Starts what runs beside requests: re-reading `SOURCES_FILE`,
    /// forgetting idle sources, and sharing allowances through `REDIS_URL`.
    /// Needs a Tokio runtime.
    pub(crate) fn start(self: &Arc<Self>, config: &QuotaConfig) -> Result<(), String> {
        if !self.per_source {
            return Ok(());
        }
        if let Some(path) = &config.sources_file {
            file::watch(Arc::clone(self), path.clone());
        }
        let shared = match &config.redis_url {
            Some(url) => Some(shared::Shared::new(url)?),
            None => None,
        };
        let quotas = Arc::clone(self);
        let every = config.sync_every;
        tokio::spawn(async move {
            let mut shared = shared;
            let mut tidied = Instant::now();
            let tick = shared.as_ref().map_or(TIDY_EVERY, |_| every.min(TIDY_EVERY));
            loop {
                tokio::time::sleep(tick).await;
                if let Some(shared) = shared.as_mut() {
                    shared.sync(&quotas).await;
                }
                if tidied.elapsed() >= TIDY_EVERY {
                    tidied = Instant::now();
                    quotas.tidy();
                }
            }
        });
        Ok(())
    }

    /// `SOURCE_EVENTS_PER_SECOND`'s allowance, if set.
    pub(crate) fn default(&self) -> Option<Allowance> {
        self.default
    }

    /// Puts the rules of a newly read `SOURCES_FILE` in force.
    pub(crate) fn set_rules(&self, rules: Rules) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
    }

    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every change to the table is complete before any call that could
        // panic: a poisoned lock holds a consistent table.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `events` from each source's allowance (`sources`: each key a
    /// request's events came with, and how many), all or none. `Err` is the
    /// answer to the request: blocked, over the burst, or over the allowance
    /// with the seconds until it would fit.
    pub(crate) fn admit(&self, sources: &[(&str, u64)]) -> Result<(), ApiError> {
        if !self.per_source {
            return Ok(());
        }
        let rules = Arc::clone(&self.rules.read().unwrap_or_else(|p| p.into_inner()));
        let now = self.now();
        let mut table = self.lock();
        for &(key, events) in sources {
            let rule = rules.get(key);
            let allowance = match rule {
                Some(Rule::Blocked) => {
                    let label = table.label_of(key);
                    self.metrics.source_events(label, outcome::BLOCKED, events);
                    return Err(ApiError::SourceBlocked { key: mask(key) });
                }
                Some(Rule::Allowed(allowance)) => Some(allowance),
                None => self.default,
            };
            let (label, verdict) = {
                let source = table.source(key, rule.is_some(), self.max_tracked);
                source.last = now;
                let verdict = match source.limit_by(allowance, now) {
                    Some((allowance, _)) if events > allowance.burst => Err(ApiError::OverBurst {
                        events,
                        burst: allowance.burst,
                    }),
                    Some((allowance, bucket)) => bucket.check(allowance, events, now).map_err(|wait| {
                        ApiError::RateLimited {
                            key: mask(key),
                            // Whole seconds, rounded up: never "now".
                            retry_after: (wait.ceil() as u64).max(1),
                        }
                    }),
                    None => Ok(()),
                };
                (source.label, verdict)
            };
            if let Err(refused) = verdict {
                self.metrics.source_events(label, outcome::RATE_LIMITED, events);
                return Err(refused);
            }
        }
        for &(key, events) in sources {
            let source = table.source(key, rules.get(key).is_some(), self.max_tracked);
            if let Some((_, bucket)) = &mut source.limit {
                bucket.take(events);
            }
            if self.sharing {
                source.unsynced += events;
            }
            source.recent += events;
            self.metrics.source_events(source.label, outcome::ACCEPTED, events);
        }
        Ok(())
    }

    /// Applies `HOT_KEY_POLICY` to a request's records: under `spread`, a
    /// hot key's records beyond its rate get derived keys (when the record
    /// still fits `rules`); under `limit`, such a request is refused whole.
    /// `source` is the request's, for the metric.
    pub(crate) fn cool(&self, records: &mut [Record], rules: RecordRules, source: &str) -> Result<(), ApiError> {
        let Some((hot, policy)) = &self.hot else {
            return Ok(());
        };
        let second = self.clock.elapsed().as_secs() as u32;
        let mut spread = 0;
        for record in records.iter_mut() {
            let Some(count) = hot.count(&record.partition_key, second) else {
                continue;
            };
            match policy {
                HotKeyPolicy::Limit => {
                    return Err(ApiError::HotKeyLimited {
                        key: mask(&record.partition_key),
                    });
                }
                HotKeyPolicy::Spread => {
                    let key = hot::spread_key(&record.partition_key, count, rules.max_key_chars);
                    if record.data.len() + key.len() <= rules.max_bytes {
                        record.partition_key = key;
                        spread += 1;
                    }
                }
                HotKeyPolicy::Off => {}
            }
        }
        if spread > 0 {
            let label = if self.per_source {
                self.lock().label_of(source)
            } else {
                "other"
            };
            self.metrics.source_events(label, outcome::SPREAD, spread);
        }
        Ok(())
    }

    /// Forgets idle sources and gives the busiest unlabelled ones a label
    /// while labels are free.
    fn tidy(&self) {
        let now = self.now();
        let mut table = self.lock();
        table.sources.retain(|_, source| !source.is_idle(now));
        if table.labels.len() < MAX_LABELS {
            let mut busiest: Vec<(u64, Box<str>)> = table
                .sources
                .iter()
                .filter(|(_, s)| s.recent > 0 && s.label == "other")
                .map(|(key, s)| (s.recent, key.clone()))
                .collect();
            busiest.sort_unstable_by_key(|(recent, _)| std::cmp::Reverse(*recent));
            for (_, key) in busiest.into_iter().take(MAX_LABELS - table.labels.len()) {
                // At most MAX_LABELS strings for the process's life: a label
                // is a `&'static str`, as every other metric label is.
                let label: &'static str = Box::leak(mask(&key).into_boxed_str());
                if let Some(source) = table.sources.get_mut(&key) {
                    source.label = label;
                }
                table.labels.insert(key, label);
            }
        }
        for source in table.sources.values_mut() {
            source.recent = 0;
        }
        self.metrics.sources_tracked(table.sources.len());
    }
}

impl Table {
    /// `key`'s state, made when it is new: its own while fewer than
    /// `max_tracked` sources are (always for one the file names), else the
    /// one past the cap.
    fn source(&mut self, key: &str, listed: bool, max_tracked: usize) -> &mut Source {
        if !self.sources.contains_key(key) {
            if !listed && self.sources.len() >= max_tracked {
                return &mut self.overflow;
            }
            let label = self.labels.get(key).copied().unwrap_or("other");
            self.sources.insert(
                key.into(),
                Source {
                    label,
                    ..Source::default()
                },
            );
        }
        self.sources.get_mut(key).expect("inserted above")
    }

    fn label_of(&self, key: &str) -> &'static str {
        self.labels.get(key).copied().unwrap_or("other")
    }
}

#[cfg(test)]
mod tests;
