//! `SOURCES_FILE`: per-source allowances and blocks, in TOML, re-read when
//! the file changes and on SIGHUP, without a restart:
//!
//! ```toml
//! [sources."wk_big_customer"]
//! events_per_second = 5000
//! burst = 20000
//!
//! [sources."wk_runaway_app"]
//! blocked = true
//! ```
//!
//! A file that does not parse (or names an unknown field) is logged and
//! ignored: the last good one stays in force, so a typo never lifts a block.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::Quotas;
use crate::config::{Allowance, allowance};

/// How often the file's modification time and size are looked at.
const POLL: Duration = Duration::from_secs(1);

/// What the file says of one source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule {
    /// Refused with 403 `source_blocked`.
    Blocked,
    /// Its own allowance.
    Allowed(Allowance),
}

/// The rules of the file last read that parsed; empty without a file.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Rules {
    sources: HashMap<Box<str>, Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Format {
    #[serde(default)]
    sources: HashMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    events_per_second: Option<f64>,
    burst: Option<u64>,
    #[serde(default)]
    blocked: bool,
}

impl Rules {
    /// The rules in `text`; `default` is the allowance a source's `burst`
    /// alone refines. `Err` says what is wrong, never a key in full.
    pub(crate) fn parse(text: &str, default: Option<Allowance>) -> Result<Self, String> {
        let format: Format = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut sources = HashMap::with_capacity(format.sources.len());
        for (key, entry) in format.sources {
            let shown = crate::live::mask(&key);
            let rule = if entry.blocked {
                Rule::Blocked
            } else {
                let allowed = match (entry.events_per_second, entry.burst, default) {
                    (Some(rate), burst, _) => allowance("events_per_second", rate, burst),
                    (None, Some(burst), Some(d)) => allowance("burst", d.per_second, Some(burst)),
                    (None, Some(_), None) => {
                        return Err(format!(
                            "source {shown}: `burst` without `events_per_second` needs SOURCE_EVENTS_PER_SECOND"
                        ));
                    }
                    (None, None, _) => {
                        return Err(format!(
                            "source {shown}: say `events_per_second`, `burst` or `blocked = true`"
                        ));
                    }
                };
                Rule::Allowed(allowed.map_err(|e| format!("source {shown}: `{}` {}", e.name, e.reason))?)
            };
            sources.insert(key.into_boxed_str(), rule);
        }
        Ok(Rules { sources })
    }

    /// What the file says of `key`, if anything.
    pub(crate) fn get(&self, key: &str) -> Option<Rule> {
        self.sources.get(key).copied()
    }

    /// How many sources the file names.
    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether the file names no source (or there is no file).
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// Reads `path` into `quotas` now, and again whenever it changes or the
/// process gets SIGHUP, until the runtime stops.
pub(crate) fn watch(quotas: Arc<Quotas>, path: PathBuf) {
    let mut seen = stamp(&path);
    tokio::spawn(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let asked = tokio::select! {
                _ = tokio::time::sleep(POLL) => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
            };
            let now = stamp(&path);
            if asked || now != seen {
                seen = now;
                // A bad file is logged there; the last good rules stay.
                let _ = load(&quotas, &path);
            }
        }
    });
}

/// Reads the file and puts its rules in force, or logs why not and keeps
/// the last good ones. `Ok` with how many sources it names.
pub(crate) fn load(quotas: &Quotas, path: &Path) -> Result<usize, String> {
    let read = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"));
    match read.and_then(|text| Rules::parse(&text, quotas.default())) {
        Ok(rules) => {
            let count = rules.len();
            quotas.set_rules(rules);
            tracing::info!(path = %path.display(), sources = count, "SOURCES_FILE read");
            Ok(count)
        }
        Err(reason) => {
            tracing::error!(path = %path.display(), %reason, "SOURCES_FILE not used; the last good one stays in force");
            Err(reason)
        }
    }
}

/// What tells a changed file apart: its modification time and length.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Allowance = Allowance {
        per_second: 100.0,
        burst: 100,
    };

    #[test]
    fn overrides_blocks_and_a_burst_alone() {
        let rules = Rules::parse(
            r#"
            [sources."wk_big"]
            events_per_second = 5000
            burst = 20000
            [sources."wk_bad"]
            blocked = true
            [sources."wk_bursty"]
            burst = 1000
            "#,
            Some(DEFAULT),
        )
        .unwrap();
        assert_eq!(
            rules.get("wk_big"),
            Some(Rule::Allowed(Allowance {
                per_second: 5000.0,
                burst: 20000
            }))
        );
        assert_eq!(rules.get("wk_bad"), Some(Rule::Blocked));
        assert_eq!(
            rules.get("wk_bursty"),
            Some(Rule::Allowed(Allowance {
                per_second: 100.0,
                burst: 1000
            }))
        );
        assert_eq!(rules.get("wk_other"), None);
    }

    #[test]
    fn a_bad_file_says_why_without_the_key() {
        let secret = "wk_0123456789abcdef";
        for text in [
            format!("[sources.\"{secret}\"]\nevents_per_second = 0"),
            format!("[sources.\"{secret}\"]\nrate = 5"),
            format!("[sources.\"{secret}\"]\nburst = 5"),
            format!("[sources.\"{secret}\"]\n"),
            "[sources.\"x\"\nblocked = true".to_owned(),
        ] {
            let err = Rules::parse(&text, None).unwrap_err();
            assert!(!err.contains(secret), "{err}");
        }
        assert_eq!(Rules::parse("", None).unwrap(), Rules::default());
    }
}
