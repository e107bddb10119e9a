//! Gateway configuration: one typed struct, read from environment variables.
//!
//! [`Config::from_lookup`] takes any `name -> value` function so tests pass a
//! map instead of touching the process environment; [`Config::from_env`] is the
//! one-line wrapper used by `main`. Every variable is documented once, with its
//! default, in `.env.example`. AWS settings (region, credentials, endpoint) are
//! not read here: aws-config's default chain owns them.
//!
//! An invalid value is a [`ConfigError`] naming the variable, the value and why,
//! so start-up fails loudly instead of running with a surprise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::concurrency;
use crate::partition_key::KeyFields;

/// Everything the gateway needs to start, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address the HTTP server binds (`HOST`, `PORT`).
    pub listen: SocketAddr,
    /// Where records go.
    pub sink: SinkConfig,
    /// HTTP server timeouts and shutdown behaviour.
    pub http: HttpConfig,
    /// How records are grouped into upstream calls.
    pub batch: BatchConfig,
    /// The durable spill, when `SPILL_DIR` is set.
    pub spill: Option<SpillConfig>,
    /// API keys and CORS.
    pub access: AccessConfig,
    /// Limits and partition keys of the endpoints that take events.
    pub import: ImportConfig,
    /// The analytics SDKs' endpoints (Segment, RudderStack, PostHog, Snowplow).
    pub sdk: SdkConfig,
    /// How long a `/readyz` answer may be reused before the stream is asked again.
    pub readiness_cache_ttl: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// One info line per request (`ACCESS_LOG`).
    pub access_log: bool,
    /// Serve `/metrics` on this separate address instead of the public port
    /// (`METRICS_ADDR`), so the public port can face browsers.
    pub metrics_addr: Option<SocketAddr>,
}

/// The record destination, chosen by `SINK` (default: `kinesis` when
/// `KINESIS_STREAM_NAME` is set, else `file`).
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// An Amazon Kinesis data stream, through the AWS SDK.
    Kinesis(KinesisConfig),
    /// A Kafka topic (or any Kafka-compatible service), through librdkafka.
    Kafka(KafkaConfig),
    /// A local NDJSON file, for a developer's machine with no AWS.
    File {
        /// The file records are appended to (`FILE_SINK_PATH`).
        path: PathBuf,
    },
}

/// Kinesis stream and SDK client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KinesisConfig {
    /// `KINESIS_STREAM_NAME`.
    pub stream_name: String,
    /// Upper bound for one SDK operation, retries included (`KINESIS_OPERATION_TIMEOUT_MS`).
    pub operation_timeout: Duration,
    /// Upper bound for one HTTP attempt (`KINESIS_ATTEMPT_TIMEOUT_MS`); unset
    /// by default, because an attempt cut off while Kinesis is still storing
    /// it is sent again, and its records are then stored twice.
    pub attempt_timeout: Option<Duration>,
    /// TCP/TLS connect timeout (`KINESIS_CONNECT_TIMEOUT_MS`).
    pub connect_timeout: Duration,
    /// Attempts per operation, the first included (`KINESIS_MAX_ATTEMPTS`).
    pub max_attempts: NonZeroU32,
    /// SDK retry strategy (`KINESIS_RETRY_MODE`).
    pub retry_mode: RetryMode,
}

/// The prefix of the variables that set any librdkafka property:
/// `KAFKA_PROPERTY_SASL_MECHANISM=PLAIN` sets `sasl.mechanism`.
pub const KAFKA_PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// Kafka topic and producer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`: `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// `KAFKA_TOPIC`.
    pub topic: String,
    /// Time librdkafka has to deliver a record, retries included
    /// (`KAFKA_DELIVERY_TIMEOUT_MS`, librdkafka's `message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// The largest message the producer sends (`KAFKA_MAX_MESSAGE_BYTES`,
    /// librdkafka's `message.max.bytes`); a topic's own smaller
    /// `max.message.bytes` wins when the broker says.
    pub max_message_bytes: usize,
    /// Any other librdkafka property, from `KAFKA_PROPERTY_*`: the name
    /// lower-cased with `_` as `.`, and the variable it came from.
    pub properties: Vec<KafkaProperty>,
}

/// One librdkafka property set from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    /// The variable, for error messages (`KAFKA_PROPERTY_SASL_MECHANISM`).
    pub variable: String,
    /// The librdkafka name (`sasl.mechanism`).
    pub name: String,
    /// The value.
    pub value: String,
}

/// The SDK's retry strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// Exponential backoff with jitter and a client-side retry quota.
    Standard,
    /// Standard plus client-side rate limiting when throttled.
    Adaptive,
}

/// HTTP server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time a connection may take to send a complete request head (`HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// Time a request may take to send its whole body (`BODY_READ_TIMEOUT_MS`).
    pub body_read_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT (`SHUTDOWN_TIMEOUT_MS`).
    pub shutdown_timeout: Duration,
    /// Client connections open at once; beyond it a new connection gets a
    /// 503 and is closed (`MAX_CONNECTIONS`).
    pub max_connections: NonZeroUsize,
    /// `/import` requests handled at once; beyond it 503 (`MAX_IN_FLIGHT_REQUESTS`).
    pub max_in_flight_requests: NonZeroUsize,
    /// Body bytes held by in-flight requests; beyond it 503 (`MAX_IN_FLIGHT_BODY_BYTES`).
    pub max_in_flight_body_bytes: NonZeroUsize,
}

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

/// The durable spill's settings (`spill.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillConfig {
    /// `SPILL_DIR`: where segments live; created if missing.
    pub dir: PathBuf,
    /// `SPILL_MAX_BYTES`: segment bytes on disk at most; beyond it, 503.
    pub max_bytes: u64,
    /// `SPILL_REPLAY_MAX_RECORDS_PER_SEC`: the replay's rate cap (0: none
    /// beyond one call at a time).
    pub replay_per_second: u32,
}

/// Coalescing of concurrent records into one upstream call (`PutRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// `BATCHING`: on, records waiting together share a call; off, one
    /// `PutRecord` per request.
    pub enabled: bool,
    /// Records per call (`BATCH_MAX_RECORDS`), at most what the sink takes
    /// (Kinesis: 500), checked at start-up.
    pub max_records: NonZeroUsize,
    /// Data + partition key bytes per call (`BATCH_MAX_BYTES`), at most what
    /// the sink takes, checked at start-up: 5 MiB is
    /// Kinesis's classic `PutRecords` limit; streams on current Kinesis take 10 MiB.
    pub max_bytes: NonZeroUsize,
    /// The most upstream calls in flight at once (`BATCH_MAX_CONCURRENT_CALLS`);
    /// while all allowed are busy, arriving records gather for the next call.
    pub max_concurrent_calls: NonZeroUsize,
    /// `BATCH_ADAPTIVE_CONCURRENCY`: on, the calls allowed move between 1
    /// and the maximum with the stream's latency and back-pressure; off,
    /// always the maximum.
    pub concurrency: concurrency::Mode,
    /// Records waiting for a call at once (`BATCH_QUEUE_CAPACITY`); beyond
    /// it a request is refused at once with 503 instead of queueing.
    pub queue_capacity: NonZeroUsize,
}

/// Log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A variable whose value cannot be used. Its message shows the value,
/// unless the variable holds a credential ([`is_secret`]): then only its name.
#[derive(thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {name}={shown}: {reason}", shown = self.shown_value())]
pub struct ConfigError {
    /// The variable's name.
    pub name: &'static str,
    /// The value found (empty when the variable is missing).
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    /// The value as logs may show it: quoted, or `<redacted>` for a credential.
    fn shown_value(&self) -> String {
        if is_secret(self.name) || is_secret(&self.value) {
            "<redacted>".into()
        } else {
            format!("{:?}", self.value)
        }
    }
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigError")
            .field("name", &self.name)
            .field("value", &self.shown_value())
            .field("reason", &self.reason)
            .finish()
    }
}

/// Whether a variable (or property) named `name` may hold a credential, so
/// its value is never written to a log or an error: any `KAFKA_PROPERTY_*`
/// (librdkafka has dozens of secret properties, and a misspelled one is
/// still a secret), and any name with password, secret, key, token or
/// credential in it.
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with(&KAFKA_PROPERTY_PREFIX.to_ascii_lowercase())
        || ["passw", "secret", "key", "token", "credential"]
            .iter()
            .any(|word| name.contains(word))
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_pairs(std::env::vars())
    }

    /// Reads the configuration from `name = value` pairs, applying defaults:
    /// what [`Config::from_env`] does with the environment.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: std::collections::BTreeMap<String, String> = pairs.into_iter().collect();
        let properties = vars
            .iter()
            .filter(|(name, _)| name.starts_with(KAFKA_PROPERTY_PREFIX))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Self::build(|name| vars.get(name).cloned(), properties)
    }

    /// Reads the configuration through `lookup`, applying defaults (no
    /// `KAFKA_PROPERTY_*`, which need the names listed: [`Config::from_pairs`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::build(lookup, Vec::new())
    }

    fn build(lookup: impl Fn(&str) -> Option<String>, properties: Vec<(String, String)>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let host: IpAddr = vars.parse("HOST", IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
        let port: u16 = vars.parse("PORT", 3000)?;
        let stream_name = vars.get("KINESIS_STREAM_NAME");

        let sink_kind = match vars.get("SINK") {
            None if stream_name.is_some() => "kinesis".to_owned(),
            None => "file".to_owned(),
            Some(kind) => kind,
        };
        let sink = match sink_kind.as_str() {
            "kinesis" => {
                let Some(stream_name) = stream_name else {
                    return Err(ConfigError {
                        name: "KINESIS_STREAM_NAME",
                        value: String::new(),
                        reason: "required when SINK=kinesis".into(),
                    });
                };
                SinkConfig::Kinesis(KinesisConfig {
                    stream_name,
                    operation_timeout: vars.millis("KINESIS_OPERATION_TIMEOUT_MS", 9_000)?,
                    attempt_timeout: vars.optional_millis("KINESIS_ATTEMPT_TIMEOUT_MS")?,
                    connect_timeout: vars.millis("KINESIS_CONNECT_TIMEOUT_MS", 1_000)?,
                    max_attempts: vars.parse("KINESIS_MAX_ATTEMPTS", NonZeroU32::new(3).expect("3 > 0"))?,
                    retry_mode: vars.one_of(
                        "KINESIS_RETRY_MODE",
                        &[("standard", RetryMode::Standard), ("adaptive", RetryMode::Adaptive)],
                        RetryMode::Standard,
                    )?,
                })
            }
            "kafka" => SinkConfig::Kafka(KafkaConfig {
                bootstrap_servers: vars.required("KAFKA_BOOTSTRAP_SERVERS", "SINK=kafka")?,
                topic: vars.required("KAFKA_TOPIC", "SINK=kafka")?,
                delivery_timeout: vars.millis("KAFKA_DELIVERY_TIMEOUT_MS", 5_000)?,
                max_message_bytes: vars.at_most("KAFKA_MAX_MESSAGE_BYTES", 1 << 20, 1_000_000_000)?.get(),
                properties: kafka_properties(properties)?,
            }),
            "file" => SinkConfig::File {
                path: vars
                    .get("FILE_SINK_PATH")
                    .unwrap_or_else(|| "records.ndjson".into())
                    .into(),
            },
            _ => {
                return Err(ConfigError {
                    name: "SINK",
                    value: sink_kind,
                    reason: "expected `kinesis`, `kafka` or `file`".into(),
                });
            }
        };

        Ok(Config {
            listen: SocketAddr::new(host, port),
            sink,
            http: HttpConfig {
                header_read_timeout: vars.millis("HEADER_READ_TIMEOUT_MS", 10_000)?,
                body_read_timeout: vars.millis("BODY_READ_TIMEOUT_MS", 15_000)?,
                shutdown_timeout: vars.millis("SHUTDOWN_TIMEOUT_MS", 25_000)?,
                max_connections: vars.at_most("MAX_CONNECTIONS", 10_000, 1_000_000)?,
                max_in_flight_requests: vars.at_most("MAX_IN_FLIGHT_REQUESTS", 4_096, 1_000_000)?,
                max_in_flight_body_bytes: vars.at_most("MAX_IN_FLIGHT_BODY_BYTES", 256 << 20, u32::MAX as usize)?,
            },
            access: AccessConfig {
                api_keys: vars.list("API_KEYS"),
                cors_allowed_origins: vars.list("CORS_ALLOWED_ORIGINS"),
            },
            import: ImportConfig {
                batch_max_records: vars.at_most("IMPORT_BATCH_MAX_RECORDS", 500, 100_000)?.get(),
                batch_max_bytes: vars
                    .at_most("IMPORT_BATCH_MAX_BYTES", 5 * 1024 * 1024, 256 << 20)?
                    .get(),
                key_fields: vars.pointers("PARTITION_KEY_FIELDS")?,
            },
            sdk: SdkConfig {
                public_url: vars.optional("PUBLIC_URL")?,
                segment_max_bytes: vars.at_most("SEGMENT_MAX_BODY_BYTES", 8 << 20, 256 << 20)?.get(),
                posthog_max_bytes: vars.at_most("POSTHOG_MAX_BODY_BYTES", 20 << 20, 256 << 20)?.get(),
                snowplow_max_bytes: vars.at_most("SNOWPLOW_MAX_BODY_BYTES", 1 << 20, 256 << 20)?.get(),
                max_events: vars.at_most("SDK_MAX_EVENTS", 10_000, 100_000)?.get(),
                client_ip: vars.one_of(
                    "CLIENT_IP",
                    &[
                        ("off", ClientIp::Off),
                        ("socket", ClientIp::Socket),
                        ("x-forwarded-for", ClientIp::Forwarded),
                    ],
                    ClientIp::Off,
                )?,
            },
            batch: BatchConfig {
                enabled: vars.parse("BATCHING", true)?,
                // The sink's own caps are checked at start-up (`app.rs`).
                max_records: vars.at_most("BATCH_MAX_RECORDS", 500, 1_000_000)?,
                max_bytes: vars.at_most("BATCH_MAX_BYTES", 5 * 1024 * 1024, 1 << 30)?,
                max_concurrent_calls: vars.at_most("BATCH_MAX_CONCURRENT_CALLS", 64, 1024)?,
                concurrency: if vars.parse("BATCH_ADAPTIVE_CONCURRENCY", true)? {
                    concurrency::Mode::Adaptive
                } else {
                    concurrency::Mode::Fixed
                },
                // Sized for batch requests (up to 500 records each): memory is bounded
                // by MAX_IN_FLIGHT_BODY_BYTES and waiting by the record deadline.
                queue_capacity: vars.at_most("BATCH_QUEUE_CAPACITY", 100_000, 1_000_000)?,
            },
            spill: match vars.get("SPILL_DIR") {
                None => None,
                Some(dir) => Some(SpillConfig {
                    dir: PathBuf::from(dir),
                    max_bytes: vars.at_most("SPILL_MAX_BYTES", 1 << 30, usize::MAX)?.get() as u64,
                    replay_per_second: vars.parse("SPILL_REPLAY_MAX_RECORDS_PER_SEC", 0)?,
                }),
            },
            readiness_cache_ttl: vars.millis("READINESS_CACHE_TTL_MS", 5_000)?,
            log_format: vars.one_of(
                "LOG_FORMAT",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                LogFormat::Text,
            )?,
            access_log: vars.parse("ACCESS_LOG", false)?,
            metrics_addr: vars.optional("METRICS_ADDR")?,
        })
    }
}

/// `KAFKA_PROPERTY_SASL_MECHANISM=PLAIN` as `sasl.mechanism=PLAIN`. A
/// property the gateway sets itself (`bootstrap.servers`, ...) must come
/// from its own variable; librdkafka checks the rest when the producer is
/// built.
fn kafka_properties(pairs: Vec<(String, String)>) -> Result<Vec<KafkaProperty>, ConfigError> {
    const OWN: &[(&str, &str)] = &[
        ("bootstrap.servers", "KAFKA_BOOTSTRAP_SERVERS"),
        ("message.timeout.ms", "KAFKA_DELIVERY_TIMEOUT_MS"),
        ("delivery.timeout.ms", "KAFKA_DELIVERY_TIMEOUT_MS"),
        ("message.max.bytes", "KAFKA_MAX_MESSAGE_BYTES"),
    ];
    pairs
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(variable, value)| {
            let name = variable[KAFKA_PROPERTY_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            if name.is_empty() {
                return Err(ConfigError {
                    name: "KAFKA_PROPERTY_*",
                    value: variable,
                    reason: "name a librdkafka property, e.g. KAFKA_PROPERTY_SASL_MECHANISM".into(),
                });
            }
            if let Some((_, own)) = OWN.iter().find(|(property, _)| *property == name) {
                return Err(ConfigError {
                    name: "KAFKA_PROPERTY_*",
                    value: variable,
                    reason: format!("{name} is set by {own}"),
                });
            }
            Ok(KafkaProperty {
                variable,
                name,
                value: value.trim().to_owned(),
            })
        })
        .collect()
}

/// Typed access to the lookup function; an empty value counts as unset.
struct Vars<'a, F>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn parse<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    fn optional<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
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
    fn required(&self, name: &'static str, when: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError {
            name,
            value: String::new(),
            reason: format!("required when {when}"),
        })
    }

    /// A positive number of milliseconds, when set.
    fn optional_millis(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.millis(name, 1).map(Some),
        }
    }

    /// A positive number of milliseconds.
    fn millis(&self, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
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
    fn list(&self, name: &str) -> Vec<String> {
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
    fn pointers(&self, name: &'static str) -> Result<KeyFields, ConfigError> {
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
    fn at_most(&self, name: &'static str, default: usize, max: usize) -> Result<NonZeroUsize, ConfigError> {
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

    fn one_of<T: Copy>(&self, name: &'static str, choices: &[(&str, T)], default: T) -> Result<T, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_use_the_file_sink_on_port_3000() {
        let config = config(&[]).unwrap();
        assert_eq!(config.listen, "0.0.0.0:3000".parse().unwrap());
        assert_eq!(
            config.sink,
            SinkConfig::File {
                path: "records.ndjson".into()
            }
        );
        assert_eq!(config.http.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.batch.enabled);
        assert_eq!(config.batch.max_records.get(), 500);
        assert_eq!(config.batch.max_bytes.get(), 5 * 1024 * 1024);
        assert_eq!(config.batch.queue_capacity.get(), 100_000);
        assert!(!config.access_log, "no line per request unless asked for");
        assert_eq!(config.import.batch_max_records, 500);
        assert_eq!(config.import.batch_max_bytes, 5 * 1024 * 1024);
        assert!(config.import.key_fields.is_empty());
    }

    #[test]
    fn partition_key_fields_are_json_pointers() {
        let fields = config(&[("PARTITION_KEY_FIELDS", "/userId, /context/device/id")]).unwrap();
        assert_eq!(
            fields.import.key_fields,
            KeyFields::new(vec!["/userId".into(), "/context/device/id".into()])
        );
        let err = config(&[("PARTITION_KEY_FIELDS", "/userId,userId")]).unwrap_err();
        assert_eq!((err.name, err.value.as_str()), ("PARTITION_KEY_FIELDS", "userId"));
    }

    #[test]
    fn a_stream_name_selects_kinesis_with_sdk_defaults() {
        let config = config(&[("KINESIS_STREAM_NAME", "clicks"), ("HOST", "::1"), ("PORT", "8080")]).unwrap();
        assert_eq!(config.listen, "[::1]:8080".parse().unwrap());
        let SinkConfig::Kinesis(kinesis) = config.sink else {
            panic!("expected the Kinesis sink, got {:?}", config.sink);
        };
        assert_eq!(kinesis.stream_name, "clicks");
        assert_eq!(kinesis.operation_timeout, Duration::from_secs(9));
        assert_eq!(kinesis.attempt_timeout, None, "no attempt is cut off and resent");
        assert_eq!(kinesis.max_attempts.get(), 3);
        assert_eq!(kinesis.retry_mode, RetryMode::Standard);
    }

    #[test]
    fn sink_kinesis_without_a_stream_fails_naming_the_variable() {
        let err = config(&[("SINK", "kinesis")]).unwrap_err();
        assert_eq!(err.name, "KINESIS_STREAM_NAME");
    }

    #[test]
    fn sink_file_wins_over_a_stream_name() {
        let config = config(&[
            ("SINK", "file"),
            ("KINESIS_STREAM_NAME", "s"),
            ("FILE_SINK_PATH", "/tmp/x"),
        ])
        .unwrap();
        assert_eq!(config.sink, SinkConfig::File { path: "/tmp/x".into() });
    }

    #[test]
    fn invalid_values_name_variable_value_and_reason() {
        let err = config(&[("PORT", "70000")]).unwrap_err();
        assert_eq!((err.name, err.value.as_str()), ("PORT", "70000"));
        assert!(err.to_string().contains("PORT=\"70000\""), "{err}");

        let err = config(&[("HOST", "example.com")]).unwrap_err();
        assert_eq!(err.name, "HOST");

        let err = config(&[("BODY_READ_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(err.name, "BODY_READ_TIMEOUT_MS");

        let err = config(&[("KINESIS_STREAM_NAME", "s"), ("KINESIS_RETRY_MODE", "sometimes")]).unwrap_err();
        assert_eq!(err.name, "KINESIS_RETRY_MODE");
        assert!(err.reason.contains("standard, adaptive"), "{}", err.reason);

        let err = config(&[("BATCH_MAX_RECORDS", "0")]).unwrap_err();
        assert_eq!(
            (err.name, err.reason.as_str()),
            ("BATCH_MAX_RECORDS", "must be from 1 to 1000000")
        );

        let err = config(&[("METRICS_ADDR", "9090")]).unwrap_err();
        assert_eq!(err.name, "METRICS_ADDR");

        let err = config(&[("BATCHING", "yes")]).unwrap_err();
        assert_eq!(err.name, "BATCHING");

        let err = config(&[("SINK", "s3")]).unwrap_err();
        assert_eq!(err.name, "SINK");

        let err = config(&[("KINESIS_STREAM_NAME", "s"), ("KINESIS_MAX_ATTEMPTS", "0")]).unwrap_err();
        assert_eq!(err.name, "KINESIS_MAX_ATTEMPTS");
    }

    #[test]
    fn the_spill_is_off_unless_a_directory_is_set() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.spill, None);
        assert_eq!(defaults.batch.concurrency, concurrency::Mode::Adaptive);
        assert_eq!(defaults.batch.max_concurrent_calls.get(), 64);
        let spill = config(&[("SPILL_DIR", "/var/spill"), ("SPILL_MAX_BYTES", "1000")])
            .unwrap()
            .spill
            .unwrap();
        assert_eq!(
            spill,
            SpillConfig {
                dir: "/var/spill".into(),
                max_bytes: 1000,
                replay_per_second: 0,
            }
        );
        assert_eq!(
            config(&[("SPILL_DIR", "/s"), ("SPILL_MAX_BYTES", "0")])
                .unwrap_err()
                .name,
            "SPILL_MAX_BYTES"
        );
        let fixed = config(&[("BATCH_ADAPTIVE_CONCURRENCY", "false")]).unwrap();
        assert_eq!(fixed.batch.concurrency, concurrency::Mode::Fixed);
    }

    #[test]
    fn lists_are_comma_separated() {
        let config = config(&[
            ("API_KEYS", " k1, k2 ,,"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example"),
        ])
        .unwrap();
        assert_eq!(config.access.api_keys, ["k1", "k2"]);
        assert_eq!(config.access.cors_allowed_origins, ["https://a.example"]);
        assert!(Config::from_lookup(|_| None).unwrap().access.api_keys.is_empty());
    }

    #[test]
    fn choices_ignore_case_and_empty_means_unset() {
        let config = config(&[("LOG_FORMAT", "JSON"), ("PORT", "")]).unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.listen.port(), 3000);
    }

    #[test]
    fn public_url_is_an_absolute_http_url_without_query_or_trailing_slash() {
        let url = |value: &str| config(&[("PUBLIC_URL", value)]).map(|c| c.sdk.public_url);
        assert_eq!(url("").unwrap(), None);
        let https = url("https://events.example.com/").unwrap().unwrap();
        assert_eq!(
            (https.scheme(), https.authority_and_path()),
            ("https", "events.example.com")
        );
        let path = url("http://127.0.0.1:3000/collect").unwrap().unwrap();
        assert_eq!(
            (path.scheme(), path.authority_and_path()),
            ("http", "127.0.0.1:3000/collect")
        );
        for bad in [
            "events.example.com",
            "ftp://x",
            "https://",
            "https://a.example/?x=1",
            "https://user@a.example",
            "https://a.example/#f",
            "https://a.example/\"x",
        ] {
            let err = url(bad).unwrap_err();
            assert_eq!(err.name, "PUBLIC_URL", "{bad}");
        }
    }

    #[test]
    fn kafka_needs_its_servers_and_topic_and_takes_any_librdkafka_property() {
        let pairs =
            |vars: &[(&str, &str)]| Config::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let err = pairs(&[("SINK", "kafka"), ("KAFKA_TOPIC", "t")]).unwrap_err();
        assert_eq!(
            (err.name, err.reason.as_str()),
            ("KAFKA_BOOTSTRAP_SERVERS", "required when SINK=kafka")
        );
        let err = pairs(&[("SINK", "kafka"), ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")]).unwrap_err();
        assert_eq!(err.name, "KAFKA_TOPIC");
        let config = pairs(&[
            ("SINK", "kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ("KAFKA_TOPIC", "clicks"),
            ("KAFKA_PROPERTY_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_PROPERTY_COMPRESSION_TYPE", " lz4 "),
            ("KAFKA_PROPERTY_LINGER_MS", ""),
        ])
        .unwrap();
        let SinkConfig::Kafka(kafka) = config.sink else {
            panic!("{:?}", config.sink)
        };
        assert_eq!(kafka.topic, "clicks");
        assert_eq!(kafka.delivery_timeout, Duration::from_secs(5));
        assert_eq!(kafka.max_message_bytes, 1 << 20);
        let properties: Vec<_> = kafka
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(properties, [("compression.type", "lz4"), ("sasl.mechanism", "PLAIN")]);
        let err = pairs(&[
            ("SINK", "kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", "b:9092"),
            ("KAFKA_TOPIC", "t"),
            ("KAFKA_PROPERTY_BOOTSTRAP_SERVERS", "elsewhere:9092"),
        ])
        .unwrap_err();
        assert_eq!(err.value, "KAFKA_PROPERTY_BOOTSTRAP_SERVERS");
        assert!(err.reason.contains("KAFKA_BOOTSTRAP_SERVERS"), "{}", err.reason);
    }
}
