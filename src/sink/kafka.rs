//! The Kafka sink: records go to one topic, through librdkafka (the
//! `rdkafka` crate, as Vector and PostHog capture use). Mechanism only: build
//! the producer, send, map librdkafka's errors to [`SinkError`]s.
//!
//! - The record's bytes are the message value, its partition key the message
//!   key (librdkafka's default partitioner hashes it, so one user's events
//!   stay in one partition, in order). No headers: the SDK protocol and
//!   source key are in the record itself (`_gateway`), as with Kinesis.
//! - `acks=all` and `enable.idempotence=true`, so a record is acknowledged
//!   only once every in-sync replica has it, and librdkafka's own retries
//!   never write it twice. librdkafka batches (`linger.ms`); each record still
//!   gets its own delivery report, which is its receipt: topic, partition,
//!   offset.
//! - A record's delivery report arrives within `KAFKA_DELIVERY_TIMEOUT_MS`
//!   (librdkafka's `message.timeout.ms`, retries included); the writer waits
//!   a little longer, so it never answers before librdkafka has decided. The
//!   writer does not retry: librdkafka did.
//! - An idempotent producer can get stuck for good: a fatal error (a
//!   sequence it cannot explain, fenced), or a broker restarted without its
//!   producer state that answers `UNKNOWN_PRODUCER_ID` to every retry until
//!   each record times out (tansu does). Either would fail every later
//!   record, so the producer is replaced by a new one (a new producer id):
//!   on a fatal error, and when records time out, at most once per delivery
//!   timeout (a broker that is really down gets a new producer every few
//!   seconds, no more). Records still in flight on the old producer are
//!   answered by their own delivery reports (delivered, or failed and so
//!   503, never both), then it is dropped.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{BuildError, Deadlines, Destination, Outcomes, Receipt, Record, Sink, SinkError, SinkLimits, Str};
use crate::lookup::Lookup;
use crate::lookup::error::{ConfigError, KAFKA_PROPERTY_PREFIX};

// Settings (`SINK=kafka`): read here, beside the sink.

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

impl KafkaConfig {
    /// Reads the Kafka variables (`SINK=kafka`; `properties`: every
    /// `KAFKA_PROPERTY_*` pair).
    pub(super) fn read<F: Fn(&str) -> Option<String>>(
        vars: &Lookup<'_, F>,
        properties: Vec<(String, String)>,
    ) -> Result<Self, ConfigError> {
        Ok(KafkaConfig {
            bootstrap_servers: vars.required("KAFKA_BOOTSTRAP_SERVERS", "SINK=kafka")?,
            topic: vars.required("KAFKA_TOPIC", "SINK=kafka")?,
            delivery_timeout: vars.millis("KAFKA_DELIVERY_TIMEOUT_MS", 5_000)?,
            max_message_bytes: vars.at_most("KAFKA_MAX_MESSAGE_BYTES", 1 << 20, 1_000_000_000)?.get(),
            properties: kafka_properties(properties)?,
        })
    }

    /// The start-up log line (property names only: their values may be
    /// credentials).
    pub(super) fn log(&self) {
        tracing::info!(
            bootstrap_servers = %self.bootstrap_servers,
            delivery_timeout = ?self.delivery_timeout,
            max_message_bytes = self.max_message_bytes,
            properties = ?self.properties.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            "kafka producer"
        );
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

/// Bytes a message needs beyond its key and value inside a record batch
/// (batch header, record framing, varints): kept free under the limit.
const MESSAGE_OVERHEAD: usize = 512;
/// How long a metadata or config request to the brokers may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than librdkafka's delivery timeout the writer waits.
const REPORT_MARGIN: Duration = Duration::from_secs(2);

/// The producer in use, and when it was made (it is replaced when stuck).
struct Current {
    producer: FutureProducer<Redacting>,
    born: Instant,
}

/// Writes records to a Kafka topic.
pub struct KafkaSink {
    /// Shared by every receipt (one topic, no copy per record).
    topic: Str,
    /// The producer's settings, kept to build a replacement.
    client: ClientConfig,
    /// The live producer; replaced when it is stuck.
    producer: RwLock<Arc<Current>>,
    admin: AdminClient<Redacting>,
    /// What every client of this sink logs through.
    context: Redacting,
    delivery_timeout: Duration,
    max_message_bytes: usize,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A producer for `config`'s topic. Every property is checked by
    /// librdkafka here: a bad one fails start-up, naming its variable.
    pub fn new(config: &KafkaConfig) -> Result<Self, BuildError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", config.delivery_timeout.as_millis().to_string())
            .set("message.max.bytes", config.max_message_bytes.to_string())
            // librdkafka backs off up to 10 s between reconnects by default:
            // a restarted broker would wait that long for the gateway.
            .set("reconnect.backoff.max.ms", "1000");
        // The operator's properties win over these defaults.
        for property in &config.properties {
            client.set(&property.name, &property.value);
        }
        let invalid = |err: KafkaError| {
            let variable = match &err {
                KafkaError::ClientConfig(_, _, key, _) => config
                    .properties
                    .iter()
                    .find(|p| &p.name == key)
                    .map_or_else(|| own_variable(key).to_owned(), |p| p.variable.clone()),
                _ => "KAFKA_*".to_owned(),
            };
            BuildError::Kafka {
                variable,
                reason: redacted(&err, config),
            }
        };
        let context = Redacting::new(config);
        let producer: FutureProducer<Redacting> = client.create_with_context(context.clone()).map_err(invalid)?;
        // The admin client only reads the topic's settings: no producer id.
        let mut admin_config = client.clone();
        admin_config.set("enable.idempotence", "false");
        let admin: AdminClient<Redacting> = admin_config.create_with_context(context.clone()).map_err(invalid)?;
        Ok(KafkaSink {
            topic: Str::from(config.topic.clone()),
            client,
            producer: RwLock::new(Arc::new(Current {
                producer,
                born: Instant::now(),
            })),
            admin,
            context,
            delivery_timeout: config.delivery_timeout,
            max_message_bytes: config.max_message_bytes,
        })
    }

    /// The live producer, replaced first if it has failed for good.
    fn live(&self) -> Arc<Current> {
        let live = self.producer.read().unwrap_or_else(|p| p.into_inner()).clone();
        if live.producer.client().fatal_error().is_some() {
            self.replace(&live, "fatal error");
            return self.producer.read().unwrap_or_else(|p| p.into_inner()).clone();
        }
        live
    }

    /// Replaces `stuck` (unless another request already did) with a new
    /// producer of the same settings.
    fn replace(&self, stuck: &Arc<Current>, why: &str) {
        let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&current, stuck) {
            return;
        }
        let fatal = stuck
            .producer
            .client()
            .fatal_error()
            .map(|(code, text)| format!("{code:?}: {text}"));
        match self
            .client
            .create_with_context::<_, FutureProducer<Redacting>>(self.context.clone())
        {
            Ok(fresh) => {
                let old = std::mem::replace(
                    &mut *current,
                    Arc::new(Current {
                        producer: fresh,
                        born: Instant::now(),
                    }),
                );
                tracing::warn!(topic = %self.topic, why, fatal = fatal.as_deref().unwrap_or(""), "kafka producer replaced");
                // Dropping a producer waits for its purged messages: not on
                // a request's thread.
                std::thread::spawn(move || drop(old));
            }
            Err(err) => tracing::error!(topic = %self.topic, error = %err, "a new kafka producer could not be built"),
        }
    }

    /// The topic's own `max.message.bytes`, when the brokers say.
    async fn topic_max_message_bytes(&self) -> Option<usize> {
        let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
        let resource = ResourceSpecifier::Topic(&self.topic);
        let results = self.admin.describe_configs([&resource], &options).await.ok()?;
        let config = results.into_iter().next()?.ok()?;
        config.get("max.message.bytes")?.value.as_deref()?.parse().ok()
    }
}

/// The topic's partitions and how many have no leader, from `metadata`.
fn partitions(metadata: &rdkafka::metadata::Metadata, topic: &str) -> Result<(usize, usize), SinkError> {
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(SinkError::Misconfigured(format!(
            "topic {topic} is not in the metadata"
        )));
    };
    if let Some(err) = found.error() {
        return Err(failure(&KafkaError::MetadataFetch(err.into())));
    }
    if found.partitions().is_empty() {
        return Err(SinkError::Misconfigured(format!("topic {topic} has no partitions")));
    }
    let leaderless = found.partitions().iter().filter(|p| p.leader() < 0).count();
    Ok((found.partitions().len(), leaderless))
}

/// librdkafka's log lines and errors, into the gateway's log without the
/// value of any `KAFKA_PROPERTY_*`: librdkafka quotes values in its
/// configuration warnings (`sasl.mechanism set to ...`), and any of them
/// may be a credential.
#[derive(Clone)]
struct Redacting {
    values: Arc<Vec<String>>,
}

impl Redacting {
    fn new(config: &KafkaConfig) -> Self {
        let values = config
            .properties
            .iter()
            .map(|p| p.value.clone())
            .filter(|v| !v.is_empty())
            .collect();
        Redacting {
            values: Arc::new(values),
        }
    }

    fn clean(&self, text: &str) -> String {
        self.values.iter().fold(text.to_owned(), |text, value| {
            text.replace(value.as_str(), "<redacted>")
        })
    }
}

impl ClientContext for Redacting {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let message = self.clean(message);
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let (error, reason) = (self.clean(&error.to_string()), self.clean(reason));
        tracing::error!(target: "librdkafka", %error, "{reason}");
    }
}

/// What librdkafka said about a setting, without any property's value:
/// its message for a bad value quotes the value, which may be a password.
fn redacted(err: &KafkaError, config: &KafkaConfig) -> String {
    let mut reason = match err {
        KafkaError::ClientConfig(_, description, key, _) => format!("{key}: {description}"),
        other => other.to_string(),
    };
    for property in &config.properties {
        if !property.value.is_empty() {
            reason = reason.replace(&property.value, "<redacted>");
        }
    }
    reason
}

/// The variable that sets one of the properties the gateway sets itself.
fn own_variable(property: &str) -> &'static str {
    match property {
        "bootstrap.servers" => "KAFKA_BOOTSTRAP_SERVERS",
        "message.timeout.ms" => "KAFKA_DELIVERY_TIMEOUT_MS",
        "message.max.bytes" => "KAFKA_MAX_MESSAGE_BYTES",
        _ => "KAFKA_*",
    }
}

#[async_trait]
impl Sink for KafkaSink {
    /// Queues every record at once, then waits for each delivery report.
    async fn put_batch(&self, records: &[Record]) -> Result<Outcomes, SinkError> {
        let live = self.live();
        let producer = &live.producer;
        let queued: Vec<_> = records
            .iter()
            .map(|record| {
                let message = FutureRecord::to(&self.topic)
                    .payload(&record.data[..])
                    .key(record.partition_key.as_bytes());
                producer.send_result(message).map_err(|(err, _)| failure(&err))
            })
            .collect();
        let mut outcomes = Vec::with_capacity(records.len());
        let mut timed_out = false;
        for delivery in queued {
            outcomes.push(match delivery {
                Err(err) => Err(err),
                Ok(report) => match report.await {
                    Ok(Ok(delivered)) => Ok(Receipt::located_at_both("Topic", "Partition")
                        .with_text("Topic", self.topic.clone())
                        .with("Partition", delivered.partition)
                        .with("Offset", delivered.offset)),
                    Ok(Err((err, _))) => {
                        timed_out |= err.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
                        Err(failure(&err))
                    }
                    Err(_) => Err(SinkError::Unavailable(
                        "the producer stopped before it reported the delivery".into(),
                    )),
                },
            });
        }
        if producer.client().fatal_error().is_some() {
            self.replace(&live, "fatal error");
        } else if timed_out && live.born.elapsed() >= self.delivery_timeout {
            self.replace(&live, "records timed out");
        }
        Ok(outcomes)
    }

    /// The topic's metadata: it exists and has partitions with leaders; and
    /// its message size limit.
    async fn describe(&self) -> Result<Destination, SinkError> {
        let live = self.live();
        let topic = self.topic.clone();
        let metadata =
            tokio::task::spawn_blocking(move || live.producer.client().fetch_metadata(Some(&topic), METADATA_TIMEOUT))
                .await
                .map_err(|e| SinkError::Unavailable(format!("the metadata request failed: {e}")))?
                .map_err(|e| failure(&e))?;
        let (partitions, leaderless) = partitions(&metadata, &self.topic)?;
        let limit = match self.topic_max_message_bytes().await {
            Some(topic_limit) => topic_limit.min(self.max_message_bytes),
            None => self.max_message_bytes,
        };
        Ok(Destination {
            writable: leaderless == 0,
            status: format!(
                "topic {}: {partitions} partitions, {leaderless} without a leader",
                self.topic
            ),
            max_record_bytes: Some(limit.saturating_sub(MESSAGE_OVERHEAD)),
        })
    }

    /// librdkafka lingers and batches per partition: gathering records in
    /// the writer first only made each record wait twice.
    fn batches_itself(&self) -> bool {
        true
    }

    fn deadlines(&self) -> Deadlines {
        Deadlines {
            record_timeout: self.delivery_timeout + REPORT_MARGIN,
            // librdkafka retries within the delivery timeout; a retry by the
            // writer would be a second message.
            max_attempts: 1,
        }
    }

    fn limits(&self) -> SinkLimits {
        SinkLimits {
            max_record_bytes: self.max_message_bytes.saturating_sub(MESSAGE_OVERHEAD),
            // Kafka keys have no limit of their own; longer ones are hashed.
            max_key_chars: 1024,
            // librdkafka batches itself; a call only queues.
            max_batch_records: 100_000,
            max_batch_bytes: 1 << 30,
        }
    }

    fn operation(&self, _batch: bool) -> &'static str {
        "Produce"
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn target(&self) -> String {
        self.topic.to_string()
    }
}

/// What a librdkafka error means for the record: the policy of what the
/// client is told lives in `error.rs`; this only says what kind it was.
pub fn failure(err: &KafkaError) -> SinkError {
    use RDKafkaErrorCode as Code;
    let detail = err.to_string();
    match err.rdkafka_error_code() {
        Some(Code::QueueFull) => SinkError::Overloaded(detail),
        Some(Code::ThrottlingQuotaExceeded) => SinkError::Throttled(detail),
        Some(
            Code::MessageSizeTooLarge
            | Code::InvalidMessageSize
            | Code::InvalidRecord
            | Code::InvalidMessage
            | Code::PolicyViolation,
        ) => SinkError::Rejected(detail),
        Some(
            Code::UnknownTopicOrPartition
            | Code::UnknownTopic
            | Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::Authentication
            | Code::InvalidRequiredAcks,
        ) => SinkError::Misconfigured(detail),
        // Timeouts, brokers down, leader changes, a fenced or unknown
        // producer (replaced): the same record may go through later.
        _ => SinkError::Unavailable(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_errors_map_to_what_a_client_should_do() {
        let produce = |code| failure(&KafkaError::MessageProduction(code));
        assert!(matches!(produce(RDKafkaErrorCode::QueueFull), SinkError::Overloaded(_)));
        assert!(matches!(
            produce(RDKafkaErrorCode::MessageTimedOut),
            SinkError::Unavailable(_)
        ));
        assert!(matches!(
            produce(RDKafkaErrorCode::AllBrokersDown),
            SinkError::Unavailable(_)
        ));
        assert!(matches!(
            produce(RDKafkaErrorCode::NotLeaderForPartition),
            SinkError::Unavailable(_)
        ));
        assert!(matches!(
            produce(RDKafkaErrorCode::ProducerFenced),
            SinkError::Unavailable(_)
        ));
        assert!(matches!(
            produce(RDKafkaErrorCode::MessageSizeTooLarge),
            SinkError::Rejected(_)
        ));
        assert!(matches!(
            produce(RDKafkaErrorCode::ThrottlingQuotaExceeded),
            SinkError::Throttled(_)
        ));
        assert!(matches!(
            produce(RDKafkaErrorCode::UnknownTopicOrPartition),
            SinkError::Misconfigured(_)
        ));
        assert!(matches!(
            produce(RDKafkaErrorCode::SaslAuthenticationFailed),
            SinkError::Misconfigured(_)
        ));
    }
}
