//! Typed reading of variables through a lookup function, and the error
//! that names a variable whose value cannot be used ([`error`]). Below
//! `config/` and every sink: each reads its own settings with it (a sink's
//! settings live beside the sink), so none of them imports another's.

pub(crate) mod error;

use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use self::error::ConfigError;
use crate::partition_key::KeyFields;

/// Typed access to the lookup function; an empty value counts as unset.
pub(crate) struct Lookup<'a, F>(pub(crate) &'a F);

impl<F: Fn(&str) -> Option<String>> Lookup<'_, F> {
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub(crate) fn parse<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    pub(crate) fn optional<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        value.parse().map(Some).map_err(|e: T::Err| ConfigError {
            name,
            reason: e.to_string(),
            value,
        })
    }

    /// A value that must be set, because `when`.
    pub(crate) fn required(&self, name: &'static str, when: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError {
            name,
            value: String::new(),
            reason: format!("required when {when}"),
        })
    }

    /// A positive number of milliseconds, when set.
    pub(crate) fn optional_millis(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.millis(name, 1).map(Some),
        }
    }

    /// A positive number of milliseconds.
    pub(crate) fn millis(&self, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(name, default_ms)?;
        if ms == 0 {
            return Err(ConfigError {
                name,
                value: "0".into(),
                reason: "must be a positive number of milliseconds".into(),
            });
        }
        Ok(Duration::from_millis(ms))
    }

    /// A comma-separated list, blanks dropped.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A comma-separated list of JSON Pointers (RFC 6901: each starts with `/`).
    pub(crate) fn pointers(&self, name: &'static str) -> Result<KeyFields, ConfigError> {
        let pointers = self.list(name);
        if let Some(bad) = pointers.iter().find(|p| !p.starts_with('/')) {
            return Err(ConfigError {
                name,
                value: bad.clone(),
                reason: "each field is a JSON Pointer starting with `/`, e.g. /userId,/context/device/id".into(),
            });
        }
        Ok(KeyFields::new(pointers))
    }

    /// A count from 1 to `max`.
    pub(crate) fn at_most(&self, name: &'static str, default: usize, max: usize) -> Result<NonZeroUsize, ConfigError> {
        let n: usize = self.parse(name, default)?;
        match NonZeroUsize::new(n) {
            Some(n) if n.get() <= max => Ok(n),
            _ => Err(ConfigError {
                name,
                value: n.to_string(),
                reason: format!("must be from 1 to {max}"),
            }),
        }
    }

    /// A count from 1 to `max` when set; unset is `None`.
    pub(crate) fn optional_at_most(&self, name: &'static str, max: usize) -> Result<Option<NonZeroUsize>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.at_most(name, 1, max).map(Some),
        }
    }

    pub(crate) fn one_of<T: Copy>(
        &self,
        name: &'static str,
        choices: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        let found = choices.iter().find(|(key, _)| key.eq_ignore_ascii_case(&value));
        found.map(|(_, v)| *v).ok_or_else(|| ConfigError {
            name,
            reason: format!(
                "expected one of: {}",
                choices.iter().map(|(key, _)| *key).collect::<Vec<_>>().join(", ")
            ),
            value,
        })
    }
}
