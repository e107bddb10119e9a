//! The Amazon Kinesis sink: mechanism only.
//!
//! Builds the SDK client with the configured timeouts and retries, turns a
//! [`Record`] into `PutRecord` and records into `PutRecords` ([`put_records`]
//! writes its body and reads its answer), and sorts SDK failures into [`SinkError`] kinds
//! by the Kinesis error code ([`failure_for_code`], the one place codes are
//! read). Limits, partition keys and what a client is told are decided above.

use std::num::NonZeroU32;
use std::sync::PoisonError;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::StalledStreamProtectionConfig;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::StreamStatus;

use super::{Deadlines, Destination, Outcomes, Receipt, Record, Sink, SinkError, SinkLimits, Str};

/// Kinesis's limits: a record of 1 MiB (data + partition key) by default
/// (`MaxRecordSizeInKiB` may say more), keys of 256 characters, and
/// `PutRecords` calls of 500 records and 10 MiB.
pub const LIMITS: SinkLimits = SinkLimits {
    max_record_bytes: 1024 * 1024,
    max_key_chars: 256,
    max_batch_records: 500,
    max_batch_bytes: 10 * 1024 * 1024,
};
use crate::lookup::Lookup;
use crate::lookup::error::ConfigError;

mod put_records;

/// How long a `DescribeStreamSummary` may take when no attempt timeout is set.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

// Settings (`SINK=kinesis`): read here, beside the sink.

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

impl KinesisConfig {
    /// Reads the Kinesis variables (`SINK=kinesis`) for `stream_name`.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(
        vars: &Lookup<'_, F>,
        stream_name: String,
    ) -> Result<Self, ConfigError> {
        let d = KinesisConfig::for_stream(stream_name);
        let millis = |d: Duration| d.as_millis() as u64;
        Ok(KinesisConfig {
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

    /// The start-up log line.
    pub(super) fn log(&self) {
        tracing::info!(
            operation_timeout = ?self.operation_timeout,
            attempt_timeout = ?self.attempt_timeout,
            max_attempts = self.max_attempts.get(),
            retry_mode = ?self.retry_mode,
            "kinesis client"
        );
    }
}

/// Writes records to one Kinesis data stream.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: Client,
    stream_name: String,
    /// `DescribeStreamSummary` is limited to about 20 calls/s per account, and
    /// a readiness probe must answer quickly: one attempt, bounded by this.
    describe_timeout: Duration,
    operation_timeout: Duration,
    max_attempts: u32,
}

impl KinesisSink {
    /// Builds the client from shared AWS settings (region, credentials,
    /// endpoint: aws-config's default chain) and this gateway's timeouts and
    /// retry policy. The SDK has no operation timeout by default; we always set one.
    pub fn new(sdk: &aws_config::SdkConfig, config: &KinesisConfig) -> Self {
        let retry = match config.retry_mode {
            RetryMode::Standard => RetryConfig::standard(),
            RetryMode::Adaptive => RetryConfig::adaptive(),
        }
        .with_max_attempts(config.max_attempts.get());
        let mut timeouts = TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .operation_timeout(config.operation_timeout);
        if let Some(attempt) = config.attempt_timeout {
            timeouts = timeouts.operation_attempt_timeout(attempt);
        }
        let timeouts = timeouts.build();
        let client_config = aws_sdk_kinesis::config::Builder::from(sdk)
            .retry_config(retry)
            .timeout_config(timeouts)
            // The operation timeout already bounds a stalled upload or
            // download; the SDK's throughput monitor costs ~4% of CPU per call (perf).
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        KinesisSink {
            client: Client::from_conf(client_config),
            stream_name: config.stream_name.clone(),
            describe_timeout: config.attempt_timeout.unwrap_or(DESCRIBE_TIMEOUT),
            operation_timeout: config.operation_timeout,
            max_attempts: config.max_attempts.get(),
        }
    }

    /// The stream records go to.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }
}

#[async_trait]
impl Sink for KinesisSink {
    /// One `PutRecords` call for up to 500 records: the body written and the
    /// answer read by [`put_records`], the call made by the SDK.
    async fn put_batch(&self, records: &[Record]) -> Result<Outcomes, SinkError> {
        let (wire, answer) = put_records::Wire::new(put_records::body(&self.stream_name, records));
        self.client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(Vec::new()))
            .customize()
            .interceptor(wire)
            .send()
            .await
            .map_err(sdk_failure)?;
        let answer = answer.lock().unwrap_or_else(PoisonError::into_inner).take();
        match answer {
            Some(answer) => Ok(put_records::entry_outcomes(answer, records.len())),
            None => Err(SinkError::Unavailable("PutRecords succeeded without an answer".into())),
        }
    }

    fn limits(&self) -> SinkLimits {
        LIMITS
    }

    /// One `PutRecord`; returns once Kinesis has assigned a sequence number.
    async fn put_one(&self, record: &Record) -> Result<Receipt, SinkError> {
        let output = self
            .client
            .put_record()
            .stream_name(&self.stream_name)
            .partition_key(&record.partition_key)
            .data(Blob::new(record.data.clone()))
            .send()
            .await
            .map_err(sdk_failure)?;
        Ok(receipt(
            output.shard_id.into(),
            output.sequence_number.into(),
            output.encryption_type.map(|e| e.as_str().to_owned().into()),
        ))
    }

    /// `DescribeStreamSummary`, tried once: is the stream writable, and how
    /// large may a record be.
    async fn describe(&self) -> Result<Destination, SinkError> {
        let once = aws_sdk_kinesis::config::Builder::default()
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(self.describe_timeout)
                    .build(),
            );
        let output = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream_name)
            .customize()
            .config_override(once)
            .send()
            .await
            .map_err(sdk_failure)?;
        let Some(summary) = output.stream_description_summary else {
            return Err(SinkError::Unavailable(
                "DescribeStreamSummary returned no summary".into(),
            ));
        };
        let status = summary.stream_status;
        Ok(Destination {
            writable: matches!(status, StreamStatus::Active | StreamStatus::Updating),
            status: status.as_str().to_owned(),
            max_record_bytes: summary
                .max_record_size_in_kib
                .and_then(|kib| usize::try_from(kib).ok())
                .map(|kib| kib * 1024),
        })
    }

    /// The SDK's operation timeout bounds a record's life; its attempts are
    /// the retry budget for entries that fail alone too.
    fn deadlines(&self) -> Deadlines {
        Deadlines {
            record_timeout: self.operation_timeout,
            max_attempts: self.max_attempts,
        }
    }

    fn operation(&self, batch: bool) -> &'static str {
        if batch { "PutRecords" } else { "PutRecord" }
    }

    fn kind(&self) -> &'static str {
        "kinesis"
    }

    fn target(&self) -> String {
        self.stream_name.clone()
    }
}

/// A Kinesis receipt: the shard and sequence number (and encryption type,
/// when Kinesis says), with Kinesis's own field names.
pub fn receipt(shard_id: Str, sequence_number: Str, encryption_type: Option<Str>) -> Receipt {
    let receipt = Receipt::located_at("ShardId")
        .with_text("ShardId", shard_id)
        .with_text("SequenceNumber", sequence_number);
    match encryption_type {
        Some(encryption) => receipt.with_text("EncryptionType", encryption),
        None => receipt,
    }
}

/// Sorts an SDK failure into a [`SinkError`] kind, keeping the SDK's full
/// error chain as the detail for the log line written where it is mapped.
fn sdk_failure<E>(err: SdkError<E>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(context) => failure_for_code(err.code(), context.raw().status().as_u16(), detail),
        // The SDK gave up after its attempt/operation timeouts or retries.
        SdkError::TimeoutError(_) => SinkError::Unavailable(detail),
        // No (complete) answer: connection refused or reset, TLS, a truncated body.
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => SinkError::Unavailable(detail),
        // The request could not even be built: no region, no credentials.
        SdkError::ConstructionFailure(_) => SinkError::Misconfigured(detail),
        _ => SinkError::Unavailable(detail),
    }
}

/// The table of Kinesis error codes: which kind of failure each one is.
/// Unknown codes fall back on the HTTP status: 5xx is transient, anything else
/// means Kinesis refused a request the gateway built, so an operator must look.
pub fn failure_for_code(code: Option<&str>, http_status: u16, detail: String) -> SinkError {
    match code.unwrap_or_default() {
        "ProvisionedThroughputExceededException"
        | "KMSThrottlingException"
        | "ThrottlingException"
        | "LimitExceededException"
        | "RequestLimitExceeded" => SinkError::Throttled(detail),
        "InvalidArgumentException" | "ValidationException" | "SerializationException" => SinkError::Rejected(detail),
        "ResourceNotFoundException"
        | "ResourceInUseException"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException"
        | "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSNotFoundException"
        | "KMSOptInRequired" => SinkError::Misconfigured(detail),
        "InternalFailure" | "InternalFailureException" | "ServiceUnavailable" => SinkError::Unavailable(detail),
        _ if http_status >= 500 => SinkError::Unavailable(detail),
        _ if http_status == 429 => SinkError::Throttled(detail),
        _ => SinkError::Misconfigured(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: Option<&str>, status: u16) -> &'static str {
        failure_for_code(code, status, String::new()).label()
    }

    #[test]
    fn throttling_codes_are_throttled() {
        assert_eq!(kind(Some("ProvisionedThroughputExceededException"), 400), "throttled");
        assert_eq!(kind(Some("KMSThrottlingException"), 400), "throttled");
        assert_eq!(kind(Some("LimitExceededException"), 400), "throttled");
        assert_eq!(kind(None, 429), "throttled");
    }

    #[test]
    fn bad_records_are_rejected() {
        assert_eq!(kind(Some("InvalidArgumentException"), 400), "rejected");
        assert_eq!(kind(Some("ValidationException"), 400), "rejected");
    }

    #[test]
    fn setup_problems_are_misconfiguration() {
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "KMSDisabledException",
            "KMSOptInRequired",
        ] {
            assert_eq!(kind(Some(code), 400), "misconfigured", "{code}");
        }
        assert_eq!(kind(Some("SomethingNew"), 400), "misconfigured");
    }

    #[test]
    fn server_side_failures_are_transient() {
        assert_eq!(kind(Some("InternalFailure"), 500), "unavailable");
        assert_eq!(kind(Some("SomethingNew"), 503), "unavailable");
        assert_eq!(kind(None, 502), "unavailable");
    }
}
