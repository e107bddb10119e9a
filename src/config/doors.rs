//! The doors' settings: who may call them (API keys, CORS), the gateway's
//! own API's limits and partition keys, and the analytics SDKs' doors.

use std::str::FromStr;

use super::variables::{VARIABLES, Variable};
use super::{ConfigError, Lookup};
use crate::partition_key::KeyFields;

/// Who may call `/import`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessConfig {
    /// Accepted API keys (`API_KEYS`, comma-separated); empty: no key needed.
    pub api_keys: Vec<String>,
    /// Origins allowed to call from browsers (`CORS_ALLOWED_ORIGINS`,
    /// comma-separated, `*` for any); empty: no CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

/// What the endpoints that take events accept, and how records get keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportConfig {
    /// Records one `/import/batch` request may carry (`IMPORT_BATCH_MAX_RECORDS`).
    pub batch_max_records: usize,
    /// Decoded body bytes of one `/import/batch` request (`IMPORT_BATCH_MAX_BYTES`).
    pub batch_max_bytes: usize,
    /// How deeply an event's JSON may nest, on every door that validates
    /// JSON (`JSON_MAX_DEPTH`).
    pub max_depth: usize,
    /// JSON Pointers tried in order for a record's partition key when the
    /// request has no `X-Partition-Key` (`PARTITION_KEY_FIELDS`).
    pub key_fields: KeyFields,
}

/// The analytics SDKs' endpoints: body limits per protocol, events per
/// request, whether records carry the client's IP address, and the
/// gateway's public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkConfig {
    /// The URL browsers reach this gateway at (`PUBLIC_URL`), named in the
    /// documents the SDKs load (Segment's settings). Without it, those are
    /// built from the request's `Host` and only browsers may cache them.
    pub public_url: Option<PublicUrl>,
    /// Decoded body bytes of one request, per protocol (`*_MAX_BODY_BYTES`).
    pub body_limits: BodyLimits,
    /// Events one request may carry (`SDK_MAX_EVENTS`).
    pub max_events: usize,
    /// Where a record's client IP address comes from, if anywhere (`CLIENT_IP`).
    pub client_ip: ClientIp,
}

/// The analytics SDK protocols' body limits, raw and decoded. Each
/// protocol names the variable that sets its own (`Protocol::body_limit`,
/// beside the protocol), and that variable's default is the one list's
/// (`variables.rs`): a protocol adds a limit with one variable and no field
/// here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLimits(Vec<(&'static str, usize)>);

/// The most any body limit may be set to.
const MAX_BODY_LIMIT: usize = 256 << 20;

impl BodyLimits {
    /// The variables that set a protocol's body limit, in the one list.
    fn variables() -> impl Iterator<Item = &'static Variable> {
        VARIABLES.iter().filter(|v| v.name.ends_with("_MAX_BODY_BYTES"))
    }

    /// The limit `variable` sets. Every protocol's variable is in the list
    /// (a test in `routes.rs` walks every protocol's).
    pub fn get(&self, variable: &str) -> usize {
        self.0
            .iter()
            .find(|(name, _)| *name == variable)
            .map(|(_, bytes)| *bytes)
            .unwrap_or_else(|| panic!("{variable} is not in the list of variables"))
    }

    /// Sets the limit `variable` sets (for tests and embedders).
    pub fn set(&mut self, variable: &str, bytes: usize) {
        if let Some(limit) = self.0.iter_mut().find(|(name, _)| *name == variable) {
            limit.1 = bytes;
        }
    }

    fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = BodyLimits::default();
        let limits =
            d.0.iter()
                .map(|&(name, default)| Ok((name, vars.at_most(name, default, MAX_BODY_LIMIT)?.get())))
                .collect::<Result<_, ConfigError>>()?;
        Ok(BodyLimits(limits))
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits(
            BodyLimits::variables()
                .map(|v| {
                    let default = v.default.and_then(|d| d.parse().ok());
                    (v.name, default.expect("a body limit's default in the list is a number"))
                })
                .collect(),
        )
    }
}

/// An absolute `http` or `https` URL with no query, fragment or user
/// information, without a trailing `/`: where browsers reach the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    https: bool,
    /// Host, optional port and path: `events.example.com` or `example.com/collect`.
    authority_and_path: String,
}

impl PublicUrl {
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The URL without its scheme: `events.example.com:8443/collect`.
    pub fn authority_and_path(&self) -> &str {
        &self.authority_and_path
    }
}

impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = value.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = value.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("must start with https:// or http://".into());
        };
        let rest = rest.trim_end_matches('/');
        let host = rest.split('/').next().unwrap_or_default();
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~/:[]%".contains(&b);
        if host.is_empty() || !rest.bytes().all(allowed) {
            return Err("must be a URL like https://events.example.com, with no query, user or fragment".into());
        }
        Ok(PublicUrl {
            https,
            authority_and_path: rest.to_owned(),
        })
    }
}

/// Whether records carry the client's IP address, and whose (`CLIENT_IP`).
/// It is personal data, so the default is not to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// No IP address in records.
    Off,
    /// The TCP peer's address: right when clients connect directly.
    Socket,
    /// The last address of `X-Forwarded-For` (the one the operator's proxy
    /// appended), else the peer's: only behind a trusted proxy.
    Forwarded,
}

impl AccessConfig {
    /// Reads `API_KEYS` and `CORS_ALLOWED_ORIGINS`.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Self {
        AccessConfig {
            api_keys: vars.list("API_KEYS"),
            cors_allowed_origins: vars.list("CORS_ALLOWED_ORIGINS"),
        }
    }
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            batch_max_records: 500,
            batch_max_bytes: 5 * 1024 * 1024,
            max_depth: crate::nesting::DEFAULT_MAX_DEPTH,
            key_fields: KeyFields::default(),
        }
    }
}

impl ImportConfig {
    /// Reads the gateway's own doors' variables.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = ImportConfig::default();
        Ok(ImportConfig {
            batch_max_records: vars
                .at_most("IMPORT_BATCH_MAX_RECORDS", d.batch_max_records, 100_000)?
                .get(),
            batch_max_bytes: vars
                .at_most("IMPORT_BATCH_MAX_BYTES", d.batch_max_bytes, 256 << 20)?
                .get(),
            max_depth: vars.at_most("JSON_MAX_DEPTH", d.max_depth, 100_000)?.get(),
            key_fields: vars.pointers("PARTITION_KEY_FIELDS")?,
        })
    }
}

impl Default for SdkConfig {
    fn default() -> Self {
        SdkConfig {
            public_url: None,
            body_limits: BodyLimits::default(),
            max_events: 10_000,
            client_ip: ClientIp::Off,
        }
    }
}

impl SdkConfig {
    /// Reads the SDK doors' variables.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = SdkConfig::default();
        Ok(SdkConfig {
            public_url: vars.optional("PUBLIC_URL")?,
            body_limits: BodyLimits::read(vars)?,
            max_events: vars.at_most("SDK_MAX_EVENTS", d.max_events, 100_000)?.get(),
            client_ip: vars.one_of(
                "CLIENT_IP",
                &[
                    ("off", ClientIp::Off),
                    ("socket", ClientIp::Socket),
                    ("x-forwarded-for", ClientIp::Forwarded),
                ],
                d.client_ip,
            )?,
        })
    }
}
