//! Per-source allowances and hot partition keys (`SOURCE_EVENTS_PER_SECOND`
//! and friends): what `quota::Quotas` enforces.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Lookup};

/// An allowance: events per second, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    /// Events a source may send per second, on average.
    pub per_second: f64,
    /// Events it may send at once (the bucket's size); a request with more
    /// is refused with 413, since waiting would never make it fit.
    pub burst: u64,
}

/// What a partition key sending more than its share gets (`HOT_KEY_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotKeyPolicy {
    /// Its records beyond the rate go out under derived keys, over every
    /// shard or partition; that key's order is not kept past the rate.
    Spread,
    /// Requests carrying it beyond the rate are refused with 429.
    Limit,
    /// Nothing: the key keeps one shard, whatever it costs the others.
    Off,
}

/// Per-source allowances, blocks, the shared allowance and hot keys.
#[derive(Clone, PartialEq)]
pub struct QuotaConfig {
    /// `SOURCE_EVENTS_PER_SECOND` and `SOURCE_BURST_EVENTS`: every source's
    /// allowance unless `SOURCES_FILE` says otherwise; `None`: no limit.
    pub default: Option<Allowance>,
    /// `SOURCE_MAX_TRACKED`: the most sources with an allowance of their own.
    pub max_tracked: usize,
    /// `SOURCES_FILE`: per-source allowances and blocks, re-read on change.
    pub sources_file: Option<PathBuf>,
    /// `REDIS_URL`: where the replicas of a deployment share allowances.
    pub redis_url: Option<String>,
    /// `REDIS_SYNC_MS`: how often a replica reconciles with the others.
    pub sync_every: Duration,
    /// `HOT_KEY_EVENTS_PER_SECOND`: a partition key's share of its shard.
    pub hot_key_per_second: u32,
    /// `HOT_KEY_POLICY`.
    pub hot_key_policy: HotKeyPolicy,
}

impl std::fmt::Debug for QuotaConfig {
    // A Redis URL may hold a password: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaConfig")
            .field("default", &self.default)
            .field("max_tracked", &self.max_tracked)
            .field("sources_file", &self.sources_file)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("sync_every", &self.sync_every)
            .field("hot_key_per_second", &self.hot_key_per_second)
            .field("hot_key_policy", &self.hot_key_policy)
            .finish()
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            default: None,
            max_tracked: 10_000,
            sources_file: None,
            redis_url: None,
            sync_every: Duration::from_millis(200),
            hot_key_per_second: 500,
            hot_key_policy: HotKeyPolicy::Spread,
        }
    }
}

impl QuotaConfig {
    /// Whether anything is counted per source (a limit or a file).
    pub fn per_source(&self) -> bool {
        self.default.is_some() || self.sources_file.is_some()
    }

    /// Reads the quota variables.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = QuotaConfig::default();
        let rate: Option<f64> = vars.optional("SOURCE_EVENTS_PER_SECOND")?;
        let burst: Option<u64> = vars.optional("SOURCE_BURST_EVENTS")?;
        let default = match (rate, burst) {
            (None, None) => None,
            (None, Some(burst)) => {
                return Err(ConfigError {
                    name: "SOURCE_BURST_EVENTS",
                    value: burst.to_string(),
                    reason: "needs SOURCE_EVENTS_PER_SECOND (a burst alone is no limit)".into(),
                });
            }
            (Some(rate), burst) => Some(allowance("SOURCE_EVENTS_PER_SECOND", rate, burst)?),
        };
        Ok(QuotaConfig {
            default,
            max_tracked: vars.at_most("SOURCE_MAX_TRACKED", d.max_tracked, 1_000_000)?.get(),
            sources_file: vars.get("SOURCES_FILE").map(PathBuf::from),
            redis_url: vars.get("REDIS_URL"),
            sync_every: vars.millis("REDIS_SYNC_MS", d.sync_every.as_millis() as u64)?,
            hot_key_per_second: vars
                .at_most("HOT_KEY_EVENTS_PER_SECOND", d.hot_key_per_second as usize, 1_000_000)?
                .get() as u32,
            hot_key_policy: vars.one_of(
                "HOT_KEY_POLICY",
                &[
                    ("spread", HotKeyPolicy::Spread),
                    ("limit", HotKeyPolicy::Limit),
                    ("off", HotKeyPolicy::Off),
                ],
                d.hot_key_policy,
            )?,
        })
    }
}

/// An allowance of `rate` events per second and `burst` at once (default:
/// one second's worth), checked; `name` is the variable or file entry.
pub fn allowance(name: &'static str, rate: f64, burst: Option<u64>) -> Result<Allowance, ConfigError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(ConfigError {
            name,
            value: rate.to_string(),
            reason: "must be a number of events per second above 0".into(),
        });
    }
    let burst = burst.unwrap_or(rate.ceil() as u64);
    if burst == 0 {
        return Err(ConfigError {
            name,
            value: burst.to_string(),
            reason: "the burst must be at least 1 event".into(),
        });
    }
    Ok(Allowance {
        per_second: rate,
        burst,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn no_limit_unless_a_rate_is_set_and_the_burst_defaults_to_a_second() {
        let off = config(&[]).unwrap().quota;
        assert_eq!(off.default, None);
        assert!(!off.per_source());
        assert_eq!(off.hot_key_policy, HotKeyPolicy::Spread);
        let on = config(&[("SOURCE_EVENTS_PER_SECOND", "250")]).unwrap().quota;
        assert_eq!(
            on.default,
            Some(Allowance {
                per_second: 250.0,
                burst: 250
            })
        );
        let both = config(&[("SOURCE_EVENTS_PER_SECOND", "0.5"), ("SOURCE_BURST_EVENTS", "20")]).unwrap();
        assert_eq!(
            both.quota.default,
            Some(Allowance {
                per_second: 0.5,
                burst: 20
            })
        );
    }

    #[test]
    fn a_burst_alone_a_zero_rate_and_an_unknown_policy_stop_start_up() {
        assert_eq!(
            config(&[("SOURCE_BURST_EVENTS", "5")]).unwrap_err().name,
            "SOURCE_BURST_EVENTS"
        );
        assert_eq!(
            config(&[("SOURCE_EVENTS_PER_SECOND", "0")]).unwrap_err().name,
            "SOURCE_EVENTS_PER_SECOND"
        );
        assert_eq!(
            config(&[("HOT_KEY_POLICY", "shuffle")]).unwrap_err().name,
            "HOT_KEY_POLICY"
        );
    }

    #[test]
    fn the_redis_url_is_never_printed() {
        let quota = config(&[("REDIS_URL", "redis://:s3cret@127.0.0.1:6379")])
            .unwrap()
            .quota;
        assert!(!format!("{quota:?}").contains("s3cret"));
    }
}
