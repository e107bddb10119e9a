//! The doors' settings: who may call them (API keys, CORS), the gateway's
//! own API's limits and partition keys, and the analytics SDKs' doors.

use std::str::FromStr;

use super::{ConfigError, Vars};
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
    /// Decoded body bytes of a Segment / RudderStack request (`SEGMENT_MAX_BODY_BYTES`).
    pub segment_max_bytes: usize,
    /// Decoded body bytes of a PostHog request (`POSTHOG_MAX_BODY_BYTES`).
    pub posthog_max_bytes: usize,
    /// Decoded body bytes of a Snowplow request (`SNOWPLOW_MAX_BODY_BYTES`).
    pub snowplow_max_bytes: usize,
    /// Events one request may carry (`SDK_MAX_EVENTS`).
    pub max_events: usize,
    /// Where a record's client IP address comes from, if anywhere (`CLIENT_IP`).
    pub client_ip: ClientIp,
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
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Self {
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
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<Self, ConfigError> {
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
            segment_max_bytes: 8 << 20,
            posthog_max_bytes: 20 << 20,
            snowplow_max_bytes: 1 << 20,
            max_events: 10_000,
            client_ip: ClientIp::Off,
        }
    }
}

impl SdkConfig {
    /// Reads the SDK doors' variables.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<Self, ConfigError> {
        let d = SdkConfig::default();
        Ok(SdkConfig {
            public_url: vars.optional("PUBLIC_URL")?,
            segment_max_bytes: vars
                .at_most("SEGMENT_MAX_BODY_BYTES", d.segment_max_bytes, 256 << 20)?
                .get(),
            posthog_max_bytes: vars
                .at_most("POSTHOG_MAX_BODY_BYTES", d.posthog_max_bytes, 256 << 20)?
                .get(),
            snowplow_max_bytes: vars
                .at_most("SNOWPLOW_MAX_BODY_BYTES", d.snowplow_max_bytes, 256 << 20)?
                .get(),
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
