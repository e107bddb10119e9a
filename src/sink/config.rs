//! Which sink (`SINK`) and its settings, read by the sink's own file
//! (`kinesis.rs`, `kafka.rs`, `pubsub.rs`, `file.rs`); the sink built from
//! them ([`build`]), and the line each logs at start-up ([`SinkConfig::log`]).
//! A sink is one file and one arm in each of the three matches here.

use std::path::PathBuf;
use std::sync::Arc;

use super::kafka::{self, KafkaConfig};
use super::kinesis::{self, KinesisConfig};
use super::pubsub::{self, PubSubConfig};
use super::{BuildError, Sink, file};
use crate::lookup::Lookup;
use crate::lookup::error::ConfigError;

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

/// The file sink's default file.
const FILE_SINK_PATH: &str = "records.ndjson";

impl SinkConfig {
    /// Reads `SINK` and the chosen sink's variables (`properties`: every
    /// `KAFKA_PROPERTY_*` pair).
    pub(crate) fn read<F: Fn(&str) -> Option<String>>(
        vars: &Lookup<'_, F>,
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
                SinkConfig::Kinesis(KinesisConfig::read(vars, stream_name)?)
            }
            "kafka" => SinkConfig::Kafka(KafkaConfig::read(vars, properties)?),
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

    /// The start-up log line: the file sink warns, since its records reach
    /// no stream.
    pub fn log(&self) {
        match self {
            SinkConfig::Kinesis(kinesis) => kinesis.log(),
            SinkConfig::Kafka(kafka) => kafka.log(),
            SinkConfig::PubSub(pubsub) => pubsub.log(),
            SinkConfig::File { path } => tracing::warn!(
                path = %path.display(),
                "records are written to a local file, NOT to Kinesis; set KINESIS_STREAM_NAME to use a stream"
            ),
        }
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

/// Builds the configured sink; AWS settings come from aws-config's default chain.
pub async fn build(config: &SinkConfig) -> Result<Arc<dyn Sink>, BuildError> {
    Ok(match config {
        SinkConfig::Kinesis(kinesis) => {
            let sdk = aws_config::load_from_env().await;
            Arc::new(kinesis::KinesisSink::new(&sdk, kinesis))
        }
        SinkConfig::Kafka(kafka) => Arc::new(kafka::KafkaSink::new(kafka)?),
        SinkConfig::PubSub(pubsub) => Arc::new(pubsub::PubSubSink::new(pubsub)?),
        SinkConfig::File { path } => Arc::new(file::FileSink::open(path).map_err(|source| BuildError::File {
            path: path.display().to_string(),
            source,
        })?),
    })
}
