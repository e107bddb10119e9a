//! `PutRecords` on the wire: the request body written and the answer read
//! here, the rest left to the SDK.
//!
//! The SDK's generic path builds a `PutRecordsRequestEntry` per record (a
//! copy of its bytes), serialises them into a growing string, and parses the
//! answer into an owned entry per record: about 8,500 instructions per event
//! on the batch doors, more than the gateway's own work (docs/benchmarks.md,
//! "The batch doors against their floor"). Here the body is written in one
//! pass into a buffer sized up front (base64 straight from the record's
//! bytes, by the SDK's own SIMD encoder), and the answer is read with serde, borrowing its strings.
//!
//! The SDK keeps what it is good at: credentials, SigV4 (over this body),
//! endpoints, retries, timeouts, and every answer but a 200, parsed and
//! classified by its own deserializer. Both swaps are made by an interceptor
//! of the call ([`Wire`]): the body, once, before the retry loop (signed per
//! attempt as the SDK's own), and a 200's body, kept for [`entry_outcomes`]
//! while the SDK's deserializer reads an answer of no entries.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use aws_sdk_kinesis::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde::Deserialize;

use super::{failure_for_code, receipt};
use crate::sink::{Receipt, Record, SinkError};

/// The `PutRecords` body for `records` to `stream`, as the SDK would write
/// it (`{"StreamName":..,"Records":[{"Data":..,"PartitionKey":..},..]}`).
pub(super) fn body(stream: &str, records: &[Record]) -> Bytes {
    // Base64 is 4 bytes per 3; a key escaped by JSON is at most 6 per byte
    // but is almost always plain: the rare longer one grows the buffer once.
    let size = 32
        + stream.len()
        + records
            .iter()
            .map(|r| r.data.len().div_ceil(3) * 4 + r.partition_key.len() + 32)
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(br#"{"StreamName":"#);
    json_string(&mut out, stream);
    out.extend_from_slice(br#","Records":["#);
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"Data":""#);
        base64_simd::STANDARD.encode_append(&record.data, &mut out);
        out.extend_from_slice(br#"","PartitionKey":"#);
        json_string(&mut out, &record.partition_key);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out.into()
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string serialises into a Vec");
}

/// The interceptor of one `PutRecords` call: puts [`body`]'s bytes in the
/// request and keeps a 200's answer in `answer`.
#[derive(Debug)]
pub(super) struct Wire {
    body: Bytes,
    answer: Answer,
}

/// Where a call's 200 answer is kept for [`entry_outcomes`].
pub(super) type Answer = Arc<Mutex<Option<Bytes>>>;

impl Wire {
    pub(super) fn new(body: Bytes) -> (Self, Answer) {
        let answer = Answer::default();
        (
            Wire {
                body,
                answer: answer.clone(),
            },
            answer,
        )
    }
}

impl Intercept for Wire {
    fn name(&self) -> &'static str {
        "PutRecordsWire"
    }

    /// Runs once per call, after the SDK serialised an empty `Records` and
    /// before the request is kept for its retries and signed per attempt.
    fn modify_before_retry_loop(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        *request.body_mut() = SdkBody::from(self.body.clone());
        request
            .headers_mut()
            .insert("content-length", self.body.len().to_string());
        Ok(())
    }

    /// A 200's body goes to `answer` as it is read; the SDK's deserializer
    /// reads an answer of no entries. Any other answer is left to the SDK.
    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        if response.status().as_u16() == 200 {
            let inner = std::mem::replace(response.body_mut(), SdkBody::taken());
            *response.body_mut() = SdkBody::from_body_1_x(Keep {
                inner,
                read: Vec::new(),
                answer: Some(self.answer.clone()),
            });
        }
        Ok(())
    }
}

/// A 200's body, kept whole in `answer` when it ends; what the SDK reads
/// instead is [`NO_ENTRIES`].
struct Keep {
    inner: SdkBody,
    read: Vec<u8>,
    answer: Option<Answer>,
}

/// The answer the SDK's deserializer parses in place of the real one.
const NO_ENTRIES: &[u8] = br#"{"FailedRecordCount":0,"Records":[]}"#;

impl Body for Keep {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.read.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    let Some(answer) = this.answer.take() else {
                        return Poll::Ready(None);
                    };
                    let read = std::mem::take(&mut this.read);
                    *answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(read.into());
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(NO_ENTRIES)))));
                }
            }
        }
    }
}

/// A `PutRecords` answer, its strings borrowed where they need no unescaping.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answered<'a> {
    #[serde(borrow)]
    records: Vec<Entry<'a>>,
    #[serde(borrow, default)]
    encryption_type: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    #[serde(borrow, default)]
    shard_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sequence_number: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error_message: Option<Cow<'a, str>>,
}

/// Splits a `PutRecords` answer into one outcome per record sent: a receipt,
/// or the entry's own error sorted by [`failure_for_code`]. An answer that
/// does not parse or does not match the request (wrong count, an entry with
/// neither a sequence number nor an error) fails every record rather than
/// guess.
pub(super) fn entry_outcomes(answer: &[u8], sent: usize) -> Vec<Result<Receipt, SinkError>> {
    let answered: Answered<'_> = match serde_json::from_slice(answer) {
        Ok(answered) => answered,
        Err(err) => {
            let detail = format!("PutRecords answered what does not parse: {err}");
            return vec![Err(SinkError::Unavailable(detail)); sent];
        }
    };
    if answered.records.len() != sent {
        let detail = format!(
            "PutRecords answered {} entries for {sent} records",
            answered.records.len()
        );
        return vec![Err(SinkError::Unavailable(detail)); sent];
    }
    let encryption_type = answered.encryption_type.map(Cow::into_owned);
    answered
        .records
        .into_iter()
        .map(
            |entry| match (entry.error_code, entry.shard_id, entry.sequence_number) {
                (Some(code), _, _) => {
                    let detail = format!("{code}: {}", entry.error_message.unwrap_or_default());
                    // Entry errors carry no HTTP status; throttling and internal
                    // failures are the ones Kinesis documents, both transient.
                    Err(failure_for_code(Some(&code), 500, detail))
                }
                (None, Some(shard_id), Some(sequence_number)) => Ok(receipt(
                    shard_id.into_owned(),
                    sequence_number.into_owned(),
                    encryption_type.clone(),
                )),
                (None, _, _) => Err(SinkError::Unavailable(
                    "PutRecords entry without a sequence number".into(),
                )),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8], key: &str) -> Record {
        Record {
            data: Bytes::copy_from_slice(data),
            partition_key: key.into(),
        }
    }

    #[test]
    fn the_body_is_what_the_sdk_would_send() {
        let records = [
            record(b"{\"a\":1}", "user-1"),
            record(&[0, 255, 7], "k\u{e9}\"y"),
            record(b"", "z"),
        ];
        let body = body("clicks", &records);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "StreamName": "clicks",
                "Records": [
                    {"Data": "eyJhIjoxfQ==", "PartitionKey": "user-1"},
                    {"Data": "AP8H", "PartitionKey": "k\u{e9}\"y"},
                    {"Data": "", "PartitionKey": "z"},
                ]
            })
        );
    }

    #[test]
    fn entry_outcomes_keep_request_order_and_sort_failures() {
        let answer = br#"{"FailedRecordCount":2,"EncryptionType":"KMS","Records":[
            {"ShardId":"shardId-000000000001","SequenceNumber":"111"},
            {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded"},
            {"ShardId":"shardId-000000000000","SequenceNumber":"222"},
            {"ErrorCode":"InternalFailure","ErrorMessage":"Internal service failure."}]}"#;
        let outcomes = entry_outcomes(answer, 4);
        assert_eq!(
            outcomes[0],
            Ok(receipt("shardId-000000000001".into(), "111".into(), Some("KMS".into())))
        );
        assert!(matches!(&outcomes[1], Err(SinkError::Throttled(d)) if d.contains("Rate exceeded")));
        assert_eq!(outcomes[2].as_ref().unwrap().field("SequenceNumber"), Some("222"));
        assert!(matches!(outcomes[3], Err(SinkError::Unavailable(_))));
    }

    #[test]
    fn escaped_strings_are_read_too() {
        let answer = br#"{"Records":[{"ShardId":"shard\u002d1","SequenceNumber":"1"}]}"#;
        assert_eq!(
            entry_outcomes(answer, 1)[0].as_ref().unwrap().field("ShardId"),
            Some("shard-1")
        );
    }

    #[test]
    fn a_mismatched_or_unreadable_answer_fails_every_record() {
        for answer in [
            &br#"{"Records":[{"ShardId":"s","SequenceNumber":"1"}]}"#[..],
            b"{\"Records\":",
            b"<html>",
        ] {
            let outcomes = entry_outcomes(answer, 2);
            assert_eq!(outcomes.len(), 2);
            assert!(outcomes.iter().all(|o| matches!(o, Err(SinkError::Unavailable(_)))));
        }
        let outcomes = entry_outcomes(br#"{"Records":[{"ShardId":"s"}]}"#, 1);
        assert!(matches!(&outcomes[0], Err(SinkError::Unavailable(d)) if d.contains("without a sequence number")));
    }
}
