//! Many sources on one gateway: each source's allowance, the sources the
//! operator blocked, and partition keys too hot for one shard.
//!
//! A source is the key a request came with: the write key, project token or
//! app id on the SDK doors, the presented API key on `/import` and
//! `/import/batch` (one shared source when `API_KEYS` is unset). What the
//! doors ask (through `Doors::put`) is [`Quotas::hold`], once per request,
//! before anything is stored. It takes the request's events from its
//! source's allowance ([`Quotas::admit`]): all fit, or none is taken and the
//! request is refused whole (429 with `Retry-After`, 403 for a blocked
//! source, 413 for more events than the burst), so an SDK's retry stores
//! each event once. And it gives a hot key's records beyond its rate derived
//! keys, or refuses them (`HOT_KEY_POLICY`), in the order that takes nothing
//! from a request it refuses.
//!
//! The request path is one lock and one hash lookup (foldhash) per request,
//! and for each record a hash and two atomic adds (hot keys): about 630
//! instructions of `/import`'s 45,000 (`bench/callgrind.sh`).
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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bucket::Bucket;
use file::{Rule, Rules};
use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use hot::HotKeys;

use crate::config::{Allowance, HotKeyPolicy, QuotaConfig};
use crate::error::ApiError;
use crate::live::mask;
use crate::metrics::{Metrics, SourceCounters};
use crate::sink::{Record, RecordRules};

/// Sources with a metric label of their own (the busiest when a label
/// was free); the rest are counted as `other`.
pub(crate) const MAX_LABELS: usize = 16;

/// How long a full bucket is kept after its source's last request: while
/// Redis may still tell of what the source sent elsewhere.
const FORGET_AFTER_SECS: f64 = 10.0;

/// How often idle sources are forgotten and labels handed out.
const TIDY_EVERY: Duration = Duration::from_secs(1);

/// Per-source allowances, blocks and hot keys: one per gateway.
#[derive(Debug)]
pub(crate) struct Quotas {
    default: Option<Allowance>,
    per_source: bool,
    /// Whether `REDIS_URL` is set (what is taken is then counted for it).
    sharing: bool,
    max_tracked: usize,
    /// One lock for a request's one visit: sources and the file's rules.
    table: Mutex<Table>,
    clock: Instant,
    hot: Option<(HotKeys, HotKeyPolicy)>,
    /// `other`'s counters: every source without a label of its own.
    others: SourceCounters,
    metrics: Arc<Metrics>,
}

/// The sources being counted, and the file's rules.
#[derive(Debug)]
struct Table {
    /// A fast keyed hash (foldhash, seeded per process): a request looks
    /// its source up once, and SipHash was a visible share of that.
    sources: HashMap<String, Source>,
    /// What sources past `SOURCE_MAX_TRACKED` share.
    overflow: Source,
    /// The label each labelled source keeps for the process's life (so its
    /// counters never go back), at most [`MAX_LABELS`].
    labels: HashMap<String, SourceCounters>,
    rules: Rules,
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
    /// Whether it has a label of its own.
    labelled: bool,
    counters: SourceCounters,
    /// Events accepted and refused since they were last added to
    /// `counters`: counted here, on the line the bucket is on, rather than
    /// on a counter every request of every source would bounce between
    /// cores ([`Quotas::publish`]).
    accepted: u64,
    refused: u64,
}

impl Source {
    fn new(counters: SourceCounters, labelled: bool) -> Self {
        Source {
            limit: None,
            unsynced: 0,
            shared_seen: None,
            last: 0.0,
            recent: 0,
            labelled,
            counters,
            accepted: 0,
            refused: 0,
        }
    }

    /// Adds what it counted to its counters.
    fn publish(&mut self) {
        self.counters.accepted.inc_by(std::mem::take(&mut self.accepted));
        self.counters.rate_limited.inc_by(std::mem::take(&mut self.refused));
    }

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

/// Whether a request's events are taken, or only checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    Check,
    Take,
}

impl Quotas {
    /// The allowances `config` sets, counted into `metrics`; `Err` when
    /// `SOURCES_FILE` cannot be read or parsed at start-up (there is no
    /// last good one to keep).
    pub(crate) fn new(config: &QuotaConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, String> {
        let others = metrics.source_counters("other");
        let quotas = Arc::new(Quotas {
            default: config.default,
            per_source: config.per_source(),
            sharing: config.redis_url.is_some(),
            max_tracked: config.max_tracked,
            table: Mutex::new(Table {
                sources: HashMap::default(),
                overflow: Source::new(others.clone(), false),
                labels: HashMap::default(),
                rules: Rules::default(),
            }),
            clock: Instant::now(),
            hot: match config.hot_key_policy {
                HotKeyPolicy::Off => None,
                policy => Some((HotKeys::new(config.hot_key_per_second), policy)),
            },
            others,
            metrics,
        });
        if let Some(path) = &config.sources_file {
            file::load(&quotas, path).map_err(|reason| format!("SOURCES_FILE {}: {reason}", path.display()))?;
        }
        let weak = Arc::downgrade(&quotas);
        quotas.metrics.publish_before_render(move || {
            if let Some(quotas) = weak.upgrade() {
                quotas.publish();
            }
        });
        Ok(quotas)
    }

    /// Adds what each source counted to its counters (before a scrape).
    fn publish(&self) {
        self.lock().publish();
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
        self.lock().rules = rules;
    }

    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every change to the table is complete before any call that could
        // panic: a poisoned lock holds a consistent table.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a request to its sources' allowances and its records to the
    /// hot-key policy, before anything is stored: under `limit` a hot key
    /// refuses the request before any allowance is taken; under `spread`
    /// keys are derived only for a request its sources' allowances took.
    pub(crate) fn hold(
        &self,
        sources: &[(&str, u64)],
        records: &mut [Record],
        rules: RecordRules,
    ) -> Result<(), ApiError> {
        let source = sources.first().map_or("", |(key, _)| *key);
        let now = self.now();
        let limit = matches!(self.hot, Some((_, HotKeyPolicy::Limit)));
        if limit {
            self.cool(records, rules, source, now)?;
        }
        self.admit(sources, now)?;
        if !limit {
            self.cool(records, rules, source, now)?;
        }
        Ok(())
    }

    /// Takes `events` from each source's allowance (`sources`: each key a
    /// request's events came with, and how many), all or none. `Err` is the
    /// answer to the request: blocked, over the burst, or over the allowance
    /// with the seconds until it would fit. `now` is the quota's clock.
    pub(crate) fn admit(&self, sources: &[(&str, u64)], now: f64) -> Result<(), ApiError> {
        if !self.per_source {
            return Ok(());
        }
        let mut table = self.lock();
        if let [(key, events)] = sources {
            return table.visit(self, key, *events, now, Take::Take);
        }
        // Several sources (Snowplow's app ids, one per event): all checked,
        // then all taken, under the one lock.
        for &(key, events) in sources {
            table.visit(self, key, events, now, Take::Check)?;
        }
        for &(key, events) in sources {
            table.visit(self, key, events, now, Take::Take)?;
        }
        Ok(())
    }

    /// Applies `HOT_KEY_POLICY` to a request's records: under `spread`, a
    /// hot key's records beyond its rate get derived keys (when the record
    /// still fits `rules`); under `limit`, such a request is refused whole.
    /// `source` is the request's (its first), for the metric.
    fn cool(&self, records: &mut [Record], rules: RecordRules, source: &str, now: f64) -> Result<(), ApiError> {
        let Some((hot, policy)) = &self.hot else {
            return Ok(());
        };
        let second = now as u32;
        let total = records.len() as u64;
        let mut spread = 0;
        for record in records.iter_mut() {
            let Some(count) = hot.count(&record.partition_key, second) else {
                continue;
            };
            match policy {
                HotKeyPolicy::Limit => {
                    self.counters_of(source).rate_limited.inc_by(total);
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
            self.counters_of(source).spread.inc_by(spread);
        }
        Ok(())
    }

    /// The counters of source `key`: its label's, or `other`'s. Only for
    /// what is rare (a hot key): the request path counts under its lookup.
    fn counters_of(&self, key: &str) -> SourceCounters {
        if !self.per_source {
            return self.others.clone();
        }
        self.lock().labels.get(key).unwrap_or(&self.others).clone()
    }

    /// Forgets idle sources and gives the busiest unlabelled ones a label
    /// while labels are free.
    fn tidy(&self) {
        let now = self.now();
        let mut table = self.lock();
        // What the forgotten sources and those about to get a label counted
        // goes to the counters it was counted under.
        table.publish();
        table.sources.retain(|_, source| !source.is_idle(now));
        if table.labels.len() < MAX_LABELS {
            let mut busiest: Vec<(u64, String)> = table
                .sources
                .iter()
                .filter(|(_, s)| s.recent > 0 && !s.labelled)
                .map(|(key, s)| (s.recent, key.clone()))
                .collect();
            busiest.sort_unstable_by_key(|(recent, _)| std::cmp::Reverse(*recent));
            for (_, key) in busiest.into_iter().take(MAX_LABELS - table.labels.len()) {
                // At most MAX_LABELS strings for the process's life: a label
                // is a `&'static str`, as every other metric label is.
                let label: &'static str = Box::leak(mask(&key).into_boxed_str());
                let counters = self.metrics.source_counters(label);
                if let Some(source) = table.sources.get_mut(&key) {
                    (source.counters, source.labelled) = (counters.clone(), true);
                }
                table.labels.insert(key, counters);
            }
        }
        for source in table.sources.values_mut() {
            source.recent = 0;
        }
        self.metrics.sources_tracked(table.sources.len());
    }
}

impl Table {
    fn publish(&mut self) {
        self.overflow.publish();
        for source in self.sources.values_mut() {
            source.publish();
        }
    }

    /// Checks, or takes, `events` of source `key` at `now`; `Err` is the
    /// refusal (counted).
    fn visit(&mut self, quotas: &Quotas, key: &str, events: u64, now: f64, take: Take) -> Result<(), ApiError> {
        let rule = if self.rules.is_empty() {
            None
        } else {
            self.rules.get(key)
        };
        let allowance = match rule {
            Some(Rule::Blocked) => {
                self.labels.get(key).unwrap_or(&quotas.others).blocked.inc_by(events);
                return Err(ApiError::SourceBlocked { key: mask(key) });
            }
            Some(Rule::Allowed(allowance)) => Some(allowance),
            None => quotas.default,
        };
        let source = self.source(quotas, key, rule.is_some());
        source.last = now;
        let verdict = match source.limit_by(allowance, now) {
            Some((allowance, _)) if events > allowance.burst => Err(ApiError::OverBurst {
                events,
                burst: allowance.burst,
            }),
            Some((allowance, bucket)) => bucket
                .check(allowance, events, now)
                .map_err(|wait| ApiError::RateLimited {
                    key: mask(key),
                    // Whole seconds, rounded up: never "now".
                    retry_after: (wait.ceil() as u64).max(1),
                }),
            None => Ok(()),
        };
        if let Err(refused) = verdict {
            source.refused += events;
            return Err(refused);
        }
        if take == Take::Take {
            if let Some((_, bucket)) = &mut source.limit {
                bucket.take(events);
            }
            if quotas.sharing {
                source.unsynced += events;
            }
            source.recent += events;
            source.accepted += events;
        }
        Ok(())
    }

    /// `key`'s state, made when it is new: its own while fewer than
    /// `SOURCE_MAX_TRACKED` sources are (always for one the file names),
    /// else the one past the cap. One lookup for a known source.
    fn source(&mut self, quotas: &Quotas, key: &str, listed: bool) -> &mut Source {
        let full = self.sources.len() >= quotas.max_tracked;
        match self.sources.entry_ref(key) {
            EntryRef::Occupied(source) => source.into_mut(),
            EntryRef::Vacant(_) if full && !listed => &mut self.overflow,
            EntryRef::Vacant(place) => {
                let (counters, labelled) = match self.labels.get(key) {
                    Some(counters) => (counters.clone(), true),
                    None => (quotas.others.clone(), false),
                };
                place.insert(Source::new(counters, labelled))
            }
        }
    }
}

#[cfg(test)]
mod tests;
