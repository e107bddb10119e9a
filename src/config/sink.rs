//! Where records go (`SINK`) and each sink's settings: Kinesis, Kafka (and
//! its pass-through `KAFKA_PROPERTY_*`), the local file.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use super::http::millis;
use super::{ConfigError, Vars};

/// The record destination, chosen by `SINK` (default: `kinesis` when
/// `KINESIS_STREAM_NAME` is set, else `file`).
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// An Amazon Kinesis data stream, through the AWS SDK.
    Kinesis(KinesisConfig),
    /// A Kafka topic (or any Kafka-compatible service), through librdkafka.
    Kafka(KafkaConfig),
    /// A Google Cloud Pub/Sub topic, through its REST API.
    PubSub(PubSubConfig),
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

/// Pub/Sub topic and client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubConfig {
    /// `projects/{project}/topics/{topic}`: `PUBSUB_TOPIC` in full, or a
    /// bare topic name in `GOOGLE_CLOUD_PROJECT`.
    pub topic: String,
    /// `PUBSUB_EMULATOR_HOST`: the emulator's `host:port`, spoken to in
    /// plain HTTP with no credentials.
    pub emulator_host: Option<String>,
    /// A publish's deadline, and a record's from arrival to answer (`PUBSUB_TIMEOUT_MS`).
    pub timeout: Duration,
}

impl PubSubConfig {
    /// Reads the Pub/Sub variables (`SINK=pubsub`).
    fn read<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<Self, ConfigError> {
        let topic = vars.required("PUBSUB_TOPIC", "SINK=pubsub")?;
        let topic = if topic.starts_with("projects/") {
            let parts: Vec<&str> = topic.split('/').collect();
            let valid = parts.len() == 4 && parts[2] == "topics" && !parts[1].is_empty() && parts[3].len() >= 3;
            if !valid {
                return Err(ConfigError {
                    name: "PUBSUB_TOPIC",
                    value: topic,
                    reason: "a full name is projects/{project}/topics/{topic} (a topic name has 3 or more characters)"
                        .into(),
                });
            }
            topic
        } else {
            if topic.contains('/') || topic.len() < 3 {
                return Err(ConfigError {
                    name: "PUBSUB_TOPIC",
                    value: topic,
                    reason: "a topic name (3 or more characters, no /) or projects/{project}/topics/{topic}".into(),
                });
            }
            let project = vars.required("GOOGLE_CLOUD_PROJECT", "PUBSUB_TOPIC is a bare topic name")?;
            format!("projects/{project}/topics/{topic}")
        };
        Ok(PubSubConfig {
            topic,
            emulator_host: vars.get("PUBSUB_EMULATOR_HOST"),
            timeout: vars.millis("PUBSUB_TIMEOUT_MS", 9_000)?,
        })
    }
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

impl KinesisConfig {
    /// The defaults for stream `stream_name`.
    pub fn for_stream(stream_name: impl Into<String>) -> Self {
        KinesisConfig {
            stream_name: stream_name.into(),
            operation_timeout: Duration::from_secs(9),
            attempt_timeout: None,
            connect_timeout: Duration::from_secs(1),
            max_attempts: NonZeroU32::new(3).expect("3 > 0"),
            retry_mode: RetryMode::Standard,
        }
    }
}

/// The file sink's default file.
const FILE_SINK_PATH: &str = "records.ndjson";

impl SinkConfig {
    /// Reads `SINK` and the chosen sink's variables (`properties`: every
    /// `KAFKA_PROPERTY_*` pair).
    pub(super) fn read<F: Fn(&str) -> Option<String>>(
        vars: &Vars<'_, F>,
        properties: Vec<(String, String)>,
    ) -> Result<Self, ConfigError> {
        let stream_name = vars.get("KINESIS_STREAM_NAME");
        let sink_kind = match vars.get("SINK") {
            None if stream_name.is_some() => "kinesis".to_owned(),
            None => "file".to_owned(),
            Some(kind) => kind,
        };
        Ok(match sink_kind.as_str() {
            "kinesis" => {
                let Some(stream_name) = stream_name else {
                    return Err(ConfigError {
                        name: "KINESIS_STREAM_NAME",
                        value: String::new(),
                        reason: "required when SINK=kinesis".into(),
                    });
                };
                let d = KinesisConfig::for_stream(stream_name);
                SinkConfig::Kinesis(KinesisConfig {
                    operation_timeout: vars.millis("KINESIS_OPERATION_TIMEOUT_MS", millis(d.operation_timeout))?,
                    attempt_timeout: vars.optional_millis("KINESIS_ATTEMPT_TIMEOUT_MS")?,
                    connect_timeout: vars.millis("KINESIS_CONNECT_TIMEOUT_MS", millis(d.connect_timeout))?,
                    max_attempts: vars.parse("KINESIS_MAX_ATTEMPTS", d.max_attempts)?,
                    retry_mode: vars.one_of(
                        "KINESIS_RETRY_MODE",
                        &[("standard", RetryMode::Standard), ("adaptive", RetryMode::Adaptive)],
                        d.retry_mode,
                    )?,
                    ..d
                })
            }
            "kafka" => SinkConfig::Kafka(KafkaConfig {
                bootstrap_servers: vars.required("KAFKA_BOOTSTRAP_SERVERS", "SINK=kafka")?,
                topic: vars.required("KAFKA_TOPIC", "SINK=kafka")?,
                delivery_timeout: vars.millis("KAFKA_DELIVERY_TIMEOUT_MS", 5_000)?,
                max_message_bytes: vars.at_most("KAFKA_MAX_MESSAGE_BYTES", 1 << 20, 1_000_000_000)?.get(),
                properties: kafka_properties(properties)?,
            }),
            "pubsub" => SinkConfig::PubSub(PubSubConfig::read(vars)?),
            "file" => SinkConfig::File {
                path: vars
                    .get("FILE_SINK_PATH")
                    .unwrap_or_else(|| FILE_SINK_PATH.into())
                    .into(),
            },
            _ => {
                return Err(ConfigError {
                    name: "SINK",
                    value: sink_kind,
                    reason: "expected `kinesis`, `kafka`, `pubsub` or `file`".into(),
                });
            }
        })
    }
}

impl Default for SinkConfig {
    /// The file sink at its default path: what no variables at all give.
    fn default() -> Self {
        SinkConfig::File {
            path: PathBuf::from(FILE_SINK_PATH),
        }
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
