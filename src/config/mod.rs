//! Gateway configuration: one typed struct, read from environment variables,
//! one file per subsystem, each with its `Default`: [`http`] (timeouts, the
//! in-flight caps), [`doors`]
//! (keys, CORS, the doors' limits), [`batch`] (upstream calls), [`spill`],
//! [`live`] (the live view), [`quota`] (per-source allowances, hot keys).
//! The list of every variable with its default is [`VARIABLES`] (`variables.rs`):
//! a test keeps `.env.example` and `docs/configuration.md` in step with it,
//! and it with what this code reads.
//!
//! [`Config::from_lookup`] takes any `name -> value` function so tests pass a
//! map instead of touching the process environment; [`Config::from_env`] is the
//! one-line wrapper used by `main`. Every variable is documented once, with its
//! default, in `.env.example`. AWS settings (region, credentials, endpoint) are
//! not read here: aws-config's default chain owns them.
//!
//! An invalid value is a [`ConfigError`] naming the variable, the value and why,
//! so start-up fails loudly instead of running with a surprise.

mod batch;
mod dedupe;
mod doors;
mod http;
mod live;
mod quota;
mod spill;
mod variables;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::lookup::Lookup;
pub use crate::lookup::error::{ConfigError, KAFKA_PROPERTY_PREFIX, is_secret};
pub use batch::BatchConfig;
pub use dedupe::DedupeConfig;
pub use doors::{AccessConfig, BodyLimits, ClientIp, ImportConfig, PublicUrl, SdkConfig};
pub use http::HttpConfig;
pub use live::{LiveConfig, MIN_TOKEN_CHARS};
pub use quota::{Allowance, HotKeyPolicy, QuotaConfig, allowance};
pub use spill::SpillConfig;
pub use variables::{Reader, VARIABLES, Variable, env_example, reference};

use crate::sink::SinkConfig;

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
    /// The live view in the browser (`ADMIN_TOKEN`).
    pub live: LiveConfig,
    /// Per-source allowances, blocks and hot partition keys.
    pub quota: QuotaConfig,
    /// Each event once: retried events dropped by their own id.
    pub dedupe: DedupeConfig,
    /// Threads that run requests (`WORKER_THREADS`); `None`: one per CPU
    /// this process may use.
    pub worker_threads: Option<NonZeroUsize>,
}

/// The most `WORKER_THREADS` taken.
pub const MAX_WORKER_THREADS: usize = 1024;

/// Log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
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
        let vars = Lookup(&lookup);
        let d = Config::default();
        let host: IpAddr = vars.parse("HOST", d.listen.ip())?;
        let port: u16 = vars.parse("PORT", d.listen.port())?;
        Ok(Config {
            listen: SocketAddr::new(host, port),
            sink: SinkConfig::read(&vars, properties)?,
            http: HttpConfig::read(&vars)?,
            access: AccessConfig::read(&vars),
            import: ImportConfig::read(&vars)?,
            sdk: SdkConfig::read(&vars)?,
            batch: BatchConfig::read(&vars)?,
            spill: SpillConfig::read(&vars)?,
            readiness_cache_ttl: vars.millis("READINESS_CACHE_TTL_MS", http::millis(d.readiness_cache_ttl))?,
            log_format: vars.one_of(
                "LOG_FORMAT",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                d.log_format,
            )?,
            access_log: vars.parse("ACCESS_LOG", d.access_log)?,
            metrics_addr: vars.optional("METRICS_ADDR")?,
            live: LiveConfig::read(&vars)?,
            quota: QuotaConfig::read(&vars)?,
            dedupe: DedupeConfig::read(&vars)?,
            worker_threads: vars.optional_at_most("WORKER_THREADS", MAX_WORKER_THREADS)?,
        })
    }
}

impl Default for Config {
    /// What no variables at all give: the file sink on port 3000, every
    /// subsystem at its own default.
    fn default() -> Self {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3000),
            sink: SinkConfig::default(),
            http: HttpConfig::default(),
            batch: BatchConfig::default(),
            spill: None,
            access: AccessConfig::default(),
            import: ImportConfig::default(),
            sdk: SdkConfig::default(),
            readiness_cache_ttl: Duration::from_secs(5),
            log_format: LogFormat::Text,
            access_log: false,
            metrics_addr: None,
            live: LiveConfig::default(),
            quota: QuotaConfig::default(),
            dedupe: DedupeConfig::default(),
            worker_threads: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concurrency;
    use crate::partition_key::KeyFields;
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
        assert_eq!(kinesis.retry_mode, crate::sink::kinesis::RetryMode::Standard);
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
                lanes: std::num::NonZeroUsize::new(8).unwrap(),
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
    fn pubsub_needs_a_topic_full_or_with_its_project_naming_the_variable() {
        let full = config(&[("SINK", "pubsub"), ("PUBSUB_TOPIC", "projects/p/topics/clicks")]).unwrap();
        let SinkConfig::PubSub(pubsub) = full.sink else {
            panic!("expected the Pub/Sub sink, got {:?}", full.sink);
        };
        assert_eq!(pubsub.topic, "projects/p/topics/clicks");
        assert_eq!((pubsub.emulator_host, pubsub.timeout), (None, Duration::from_secs(9)));
        let bare = config(&[
            ("SINK", "pubsub"),
            ("PUBSUB_TOPIC", "clicks"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
        ])
        .unwrap();
        assert!(
            matches!(&bare.sink, SinkConfig::PubSub(p) if p.topic == "projects/p/topics/clicks"
            && p.emulator_host.as_deref() == Some("127.0.0.1:8085"))
        );
        for (vars, name) in [
            (vec![("SINK", "pubsub")], "PUBSUB_TOPIC"),
            (
                vec![("SINK", "pubsub"), ("PUBSUB_TOPIC", "clicks")],
                "GOOGLE_CLOUD_PROJECT",
            ),
            (
                vec![("SINK", "pubsub"), ("PUBSUB_TOPIC", "projects/p/subs/x")],
                "PUBSUB_TOPIC",
            ),
            (
                vec![
                    ("SINK", "pubsub"),
                    ("PUBSUB_TOPIC", "ab"),
                    ("GOOGLE_CLOUD_PROJECT", "p"),
                ],
                "PUBSUB_TOPIC",
            ),
        ] {
            assert_eq!(config(&vars).unwrap_err().name, name, "{vars:?}");
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

    #[test]
    fn worker_threads_are_the_cpus_unless_set_from_1_to_1024() {
        assert_eq!(config(&[]).unwrap().worker_threads, None);
        assert_eq!(
            config(&[("WORKER_THREADS", "1")]).unwrap().worker_threads,
            NonZeroUsize::new(1)
        );
        for bad in ["0", "1025", "many"] {
            let err = config(&[("WORKER_THREADS", bad)]).unwrap_err();
            assert_eq!(err.name, "WORKER_THREADS", "{bad}");
        }
    }
}
