//! The Google Cloud Pub/Sub sink: mechanism only.
//!
//! Publishes through Pub/Sub's REST API (`topics.publish`, JSON over
//! HTTP/1.1 with hyper and rustls, both already in the build for the AWS
//! SDK), with OAuth tokens from Application Default Credentials (`gcp_auth`:
//! `GOOGLE_APPLICATION_CREDENTIALS`, workload identity on GKE, the metadata
//! server on Cloud Run and GCE, gcloud's user credentials). With
//! `PUBSUB_EMULATOR_HOST` it talks plain HTTP to the emulator, with no
//! credentials, as Google's own clients do.
//!
//! - A record's bytes are the message's `data`, its partition key the
//!   message's `orderingKey`: subscribers that enable message ordering get
//!   one user's events in order. Nothing else goes into attributes: the
//!   stored bytes are the same as with Kinesis and Kafka, and the SDK doors
//!   already stamp the protocol and source key into the event (`_gateway`).
//! - A call is one `publish` of up to 1,000 messages. Pub/Sub assigns every
//!   message an id only when the whole publish succeeded, so outcomes are
//!   all or nothing per call.
//! - Google's client libraries pause an ordering key after a failed publish
//!   until the application resumes it. This REST client keeps no such state:
//!   every publish stands alone, so a failure for one key never refuses that
//!   key's later events (the failed request is answered 503 and its client
//!   sends it again).
//! - Failures by Pub/Sub's status: `RESOURCE_EXHAUSTED` is throttling;
//!   `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `ABORTED` and any 5xx are
//!   transient; `NOT_FOUND`, `PERMISSION_DENIED`, `UNAUTHENTICATED` are
//!   misconfiguration (502, and `/readyz` says why); `INVALID_ARGUMENT` is
//!   the record's fault.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::{BuildError, Deadlines, Destination, Outcomes, Receipt, Record, Sink, SinkError, SinkLimits};
use crate::lookup::Lookup;
use crate::lookup::error::ConfigError;

// Settings (`SINK=pubsub`): read here, beside the sink.

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
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
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

    /// The start-up log line.
    pub(super) fn log(&self) {
        tracing::info!(
            topic = %self.topic,
            emulator = self.emulator_host.as_deref().unwrap_or(""),
            timeout = ?self.timeout,
            "pubsub publisher"
        );
    }
}

/// Pub/Sub's limits as this REST client meets them: 1,000 messages per
/// publish, and a request of at most 10 MB. Data travels base64-encoded in
/// JSON (4 bytes per 3), so a publish carries at most 7 MiB of data to stay
/// under 10 MB on the wire, and so does one record. Ordering keys may be
/// 1,024 bytes; keys are fitted to 256 characters, as for the other sinks.
pub const LIMITS: SinkLimits = SinkLimits {
    max_record_bytes: 7 << 20,
    max_key_chars: 256,
    max_batch_records: 1_000,
    max_batch_bytes: 7 << 20,
};

/// The OAuth scope publishing needs.
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// Where Pub/Sub is when no emulator is named.
const ENDPOINT: &str = "https://pubsub.googleapis.com";
/// How long a readiness `topics.get` may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Publishes records to one Pub/Sub topic.
pub struct PubSubSink {
    client: HttpsClient,
    /// `https://pubsub.googleapis.com` or `http://<PUBSUB_EMULATOR_HOST>`.
    endpoint: String,
    /// `projects/{project}/topics/{topic}`.
    topic: String,
    /// Tokens from Application Default Credentials; none for the emulator.
    auth: Option<OnceCell<Arc<dyn gcp_auth::TokenProvider>>>,
    timeout: Duration,
    max_attempts: u32,
}

impl std::fmt::Debug for PubSubSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubSink")
            .field("endpoint", &self.endpoint)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl PubSubSink {
    /// A publisher for `config`'s topic. Credentials are looked up at the
    /// first call, so a missing one is a 502 with its reason, not a crash.
    pub fn new(config: &PubSubConfig) -> Result<Self, BuildError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| BuildError::PubSub {
                variable: "PUBSUB_TOPIC",
                reason: format!("no TLS roots: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let (endpoint, auth) = match &config.emulator_host {
            Some(host) => (format!("http://{host}"), None),
            None => (ENDPOINT.to_owned(), Some(OnceCell::new())),
        };
        Ok(PubSubSink {
            client,
            endpoint,
            topic: config.topic.clone(),
            auth,
            timeout: config.timeout,
            max_attempts: 1,
        })
    }

    /// `Authorization: Bearer <token>`, or nothing for the emulator.
    async fn bearer(&self) -> Result<Option<String>, SinkError> {
        let Some(cell) = &self.auth else {
            return Ok(None);
        };
        let provider = cell
            .get_or_try_init(gcp_auth::provider)
            .await
            .map_err(|e| SinkError::Misconfigured(format!("no Google credentials: {e}")))?;
        let token = provider
            .token(&[SCOPE])
            .await
            .map_err(|e| SinkError::Unavailable(format!("getting a Google access token: {e}")))?;
        Ok(Some(format!("Bearer {}", token.as_str())))
    }

    /// One request to the REST API, within `timeout`: the status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), SinkError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}/v1/{path}", self.endpoint))
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(bearer) = self.bearer().await? {
            request = request.header(hyper::header::AUTHORIZATION, bearer);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SinkError::Misconfigured(format!("building the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| SinkError::Unavailable(format!("Pub/Sub could not be reached: {e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| SinkError::Unavailable(format!("reading Pub/Sub's answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| {
            Err(SinkError::Unavailable(format!(
                "no answer from Pub/Sub within {timeout:?}"
            )))
        })
    }
}

#[derive(Serialize)]
struct Publish<'a> {
    messages: Vec<Message<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    data: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    ordering_key: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Published {
    #[serde(default)]
    message_ids: Vec<String>,
}

#[async_trait]
impl Sink for PubSubSink {
    /// One `topics.publish` of every record, answered once Pub/Sub has
    /// assigned each a message id.
    async fn put_batch(&self, records: &[Record]) -> Result<Outcomes, SinkError> {
        let engine = base64::engine::general_purpose::STANDARD;
        let publish = Publish {
            messages: records
                .iter()
                .map(|record| Message {
                    data: engine.encode(&record.data),
                    ordering_key: &record.partition_key,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&publish).expect("a publish request serialises");
        let (status, answer) = self
            .call(
                Method::POST,
                &format!("{}:publish", self.topic),
                body.into(),
                self.timeout,
            )
            .await?;
        if !status.is_success() {
            return Err(failure(status, &answer));
        }
        let published: Published = serde_json::from_slice(&answer)
            .map_err(|e| SinkError::Unavailable(format!("Pub/Sub's answer does not parse: {e}")))?;
        if published.message_ids.len() != records.len() {
            return Err(SinkError::Unavailable(format!(
                "Pub/Sub answered {} message ids for {} messages",
                published.message_ids.len(),
                records.len()
            )));
        }
        Ok(published
            .message_ids
            .into_iter()
            .map(|id| Ok(Receipt::located_at("MessageId").with("MessageId", id)))
            .collect())
    }

    /// `topics.get`: the topic exists and these credentials may see it.
    async fn describe(&self) -> Result<Destination, SinkError> {
        let (status, answer) = self
            .call(Method::GET, &self.topic, Bytes::new(), DESCRIBE_TIMEOUT)
            .await?;
        if !status.is_success() {
            return Err(failure(status, &answer));
        }
        Ok(Destination {
            writable: true,
            status: "topic found".into(),
            max_record_bytes: None,
        })
    }

    fn deadlines(&self) -> Deadlines {
        Deadlines {
            record_timeout: self.timeout,
            max_attempts: self.max_attempts,
        }
    }

    fn limits(&self) -> SinkLimits {
        LIMITS
    }

    fn operation(&self, _batch: bool) -> &'static str {
        "Publish"
    }

    fn kind(&self) -> &'static str {
        "pubsub"
    }

    fn target(&self) -> String {
        self.topic.clone()
    }
}

/// The error body of Google's APIs: `{"error": {"code", "message", "status"}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// A failed call as a [`SinkError`] kind, by Pub/Sub's status name when it
/// gives one, else by the HTTP status.
pub fn failure(http: StatusCode, body: &[u8]) -> SinkError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let detail = format!("{} {}: {}", http.as_u16(), parsed.error.status, parsed.error.message);
    match (parsed.error.status.as_str(), http.as_u16()) {
        ("RESOURCE_EXHAUSTED", _) | (_, 429) => SinkError::Throttled(detail),
        ("NOT_FOUND" | "PERMISSION_DENIED" | "UNAUTHENTICATED" | "FAILED_PRECONDITION", _) | (_, 401 | 403 | 404) => {
            SinkError::Misconfigured(detail)
        }
        ("INVALID_ARGUMENT", _) | (_, 400 | 413) => SinkError::Rejected(detail),
        _ => SinkError::Unavailable(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_failure_kinds() {
        let kind = |status: u16, body: &str| failure(StatusCode::from_u16(status).unwrap(), body.as_bytes()).label();
        assert_eq!(kind(429, r#"{"error":{"status":"RESOURCE_EXHAUSTED"}}"#), "throttled");
        assert_eq!(kind(503, r#"{"error":{"status":"UNAVAILABLE"}}"#), "unavailable");
        assert_eq!(kind(504, ""), "unavailable");
        assert_eq!(kind(500, "not json"), "unavailable");
        assert_eq!(
            kind(404, r#"{"error":{"status":"NOT_FOUND","message":"Topic not found"}}"#),
            "misconfigured"
        );
        assert_eq!(kind(403, ""), "misconfigured");
        assert_eq!(kind(400, r#"{"error":{"status":"INVALID_ARGUMENT"}}"#), "rejected");
    }

    #[test]
    fn a_publish_carries_data_in_base64_and_the_key_as_ordering_key() {
        let records = [Record {
            data: Bytes::from_static(b"{\"a\":1}"),
            partition_key: "user-1".into(),
        }];
        let publish = Publish {
            messages: records
                .iter()
                .map(|r| Message {
                    data: base64::engine::general_purpose::STANDARD.encode(&r.data),
                    ordering_key: &r.partition_key,
                })
                .collect(),
        };
        assert_eq!(
            serde_json::to_string(&publish).unwrap(),
            r#"{"messages":[{"data":"eyJhIjoxfQ==","orderingKey":"user-1"}]}"#
        );
    }
}
