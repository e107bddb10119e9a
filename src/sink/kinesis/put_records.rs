//! `PutRecords` on the wire: the request body written and the answer read
//! here, the rest left to the SDK.
//!
//! The SDK's generic path builds a `PutRecordsRequestEntry` per record (a
//! copy of its bytes), serialises them into a growing string, and parses the
//! answer into an owned entry per record: about 8,500 instructions per event
//! on the batch doors, more than the gateway's own work (docs/benchmarks.md,
//! "The batch doors against their floor"). Here the body is written in one
//! pass into a buffer sized up front (base64 straight from the record's
//! bytes, by the SDK's own SIMD encoder), and the answer is read by a scan of
//! its own ([`Scan`]), with serde for any answer it does not expect.
//!
//! The SDK keeps what it is good at: credentials, SigV4 (over this body),
//! endpoints, retries, timeouts, and every answer but a 200, parsed and
//! classified by its own deserializer. Both swaps are made by an interceptor
//! of the call ([`Wire`]): the body, once, before the retry loop (signed per
//! attempt as the SDK's own), and a 200's body, kept for [`entry_outcomes`]
//! while the SDK's deserializer reads an answer of no entries.

use std::borrow::Cow;
use std::ops::Range;
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
use crate::sink::{Outcomes, Record, SinkError, Str};

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

/// `text` as a JSON string, as serde_json writes it.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Partition keys are short and almost always printable ASCII: written
    // as they are, without serde's formatter (about 240 instructions per
    // record, as much as a byte-by-byte check).
    if first_stop(text.as_bytes()).is_none() {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, text).expect("a string serialises into a Vec");
    }
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
pub(super) fn entry_outcomes(answer: Bytes, sent: usize) -> Outcomes {
    // Checked as UTF-8 once, so that each receipt's text is a slice of the
    // answer: an owned string per field was three allocations per record.
    // An answer that is not UTF-8 as a whole (serde still reads one whose
    // bad bytes are in a field it skips) is read by serde and copied.
    match Str::from_inner(answer) {
        Ok(text) => {
            let read = Scan::new(&text)
                .answered(sent)
                .map_or_else(|| serde_json::from_str(&text), Ok);
            outcomes(read, sent, |part| text.slice_ref(part))
        }
        Err(not_utf8) => {
            let answer = not_utf8.into_inner();
            outcomes(serde_json::from_slice(&answer), sent, |part| Str::from(part.to_owned()))
        }
    }
}

/// The outcomes of an answer `read`, its borrowed text made a [`Str`] by
/// `share`.
fn outcomes<'a>(
    read: Result<Answered<'a>, serde_json::Error>,
    sent: usize,
    share: impl Fn(&'a str) -> Str,
) -> Outcomes {
    let answered = match read {
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
    let text = |cow: Cow<'a, str>| match cow {
        Cow::Borrowed(part) => share(part),
        Cow::Owned(unescaped) => Str::from(unescaped),
    };
    let encryption_type = answered.encryption_type.map(text);
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
                (None, Some(shard_id), Some(sequence_number)) => {
                    Ok(receipt(text(shard_id), text(sequence_number), encryption_type.clone()))
                }
                (None, _, _) => Err(SinkError::Unavailable(
                    "PutRecords entry without a sequence number".into(),
                )),
            },
        )
        .collect()
}

/// The answers Kinesis sends, read without serde: serde's field matching
/// cost about 2,000 instructions per entry, more than the event's base64
/// (docs/benchmarks.md). Only the shapes [`Answered`] describes, with strings
/// that need no unescaping; anything else (an escape, a control character,
/// a field it does not know or sees twice, a number with a fraction, a
/// malformed text) gives `None` and serde reads the answer instead, so this
/// reads nothing serde would read differently.
struct Scan<'a> {
    whole: &'a str,
    text: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(whole: &'a str) -> Self {
        Scan {
            whole,
            text: whole.as_bytes(),
            at: 0,
        }
    }

    /// The answer, its entries' list sized for the `sent` records.
    fn answered(mut self, sent: usize) -> Option<Answered<'a>> {
        let (mut records, mut encryption_type, mut failed) = (None, None, false);
        self.open(b'{', b'}', |scan| {
            match scan.key()? {
                b"Records" if records.is_none() => {
                    let mut entries = Vec::with_capacity(sent);
                    scan.open(b'[', b']', |scan| {
                        entries.push(scan.entry()?);
                        Some(())
                    })?;
                    records = Some(entries);
                }
                b"EncryptionType" if encryption_type.is_none() => encryption_type = Some(scan.text_or_null()?),
                b"FailedRecordCount" if !failed => {
                    failed = true;
                    scan.count()?;
                }
                _ => return None,
            }
            Some(())
        })?;
        self.skip_space();
        (self.at == self.text.len()).then_some(())?;
        Some(Answered {
            records: records?,
            encryption_type: encryption_type.flatten().map(Cow::Borrowed),
        })
    }

    fn entry(&mut self) -> Option<Entry<'a>> {
        let start = self.at;
        if let Some(stored) = self.compact_entry() {
            return Some(stored);
        }
        self.at = start;
        let mut fields: [Option<Option<&'a str>>; 4] = [None; 4];
        self.open(b'{', b'}', |scan| {
            let slot = match scan.key()? {
                b"ShardId" => 0,
                b"SequenceNumber" => 1,
                b"ErrorCode" => 2,
                b"ErrorMessage" => 3,
                _ => return None,
            };
            fields[slot].is_none().then_some(())?;
            fields[slot] = Some(scan.text_or_null()?);
            Some(())
        })?;
        let [shard_id, sequence_number, error_code, error_message] = fields.map(|f| f.flatten().map(Cow::Borrowed));
        Some(Entry {
            shard_id,
            sequence_number,
            error_code,
            error_message,
        })
    }

    /// A stored record's entry as Kinesis writes it, compact with its two
    /// fields in either order (`{"ShardId":"..","SequenceNumber":".."}`),
    /// read as a few literals: the field-by-field loop cost about 900
    /// instructions per entry. Anything else is left to that loop.
    fn compact_entry(&mut self) -> Option<Entry<'a>> {
        const SHARD: &[u8] = br#"{"ShardId":""#;
        const SEQUENCE: &[u8] = br#"{"SequenceNumber":""#;
        let shard_first = self.text[self.at..].starts_with(SHARD);
        let (first, then) = match shard_first {
            true => (SHARD, &br#","SequenceNumber":"#[..]),
            false => (SEQUENCE, &br#","ShardId":"#[..]),
        };
        self.literal(&first[..first.len() - 1])?;
        let one = self.text()?;
        self.literal(then)?;
        let other = self.text()?;
        self.literal(b"}")?;
        let (shard_id, sequence_number) = if shard_first { (one, other) } else { (other, one) };
        Some(Entry {
            shard_id: Some(Cow::Borrowed(shard_id)),
            sequence_number: Some(Cow::Borrowed(sequence_number)),
            error_code: None,
            error_message: None,
        })
    }

    /// `bytes` exactly, next.
    fn literal(&mut self, bytes: &[u8]) -> Option<()> {
        self.text[self.at..].starts_with(bytes).then(|| self.at += bytes.len())
    }

    /// `open` .. `close` around members separated by commas, each read by
    /// `member`; empty allowed, a trailing comma not.
    fn open(&mut self, open: u8, close: u8, mut member: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.byte(open)?;
        self.skip_space();
        if self.text.get(self.at) == Some(&close) {
            self.at += 1;
            return Some(());
        }
        loop {
            member(self)?;
            self.skip_space();
            match self.text.get(self.at)? {
                b',' => self.at += 1,
                b if *b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn key(&mut self) -> Option<&'a [u8]> {
        let key = &self.text[self.plain()?];
        self.byte(b':')?;
        Some(key)
    }

    fn text_or_null(&mut self) -> Option<Option<&'a str>> {
        self.skip_space();
        if self.text[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        self.text().map(Some)
    }

    /// A string of printable ASCII with nothing to unescape: a slice of
    /// the text, checked as UTF-8 once as a whole.
    fn text(&mut self) -> Option<&'a str> {
        let plain = self.plain()?;
        self.whole.get(plain)
    }

    /// Where the next string's bytes are, if it is printable ASCII with
    /// nothing to unescape.
    fn plain(&mut self) -> Option<Range<usize>> {
        self.byte(b'"')?;
        let start = self.at;
        let len = plain_len(&self.text[start..])?;
        self.at += len + 1;
        Some(start..start + len)
    }

    /// A non-negative integer.
    fn count(&mut self) -> Option<()> {
        self.skip_space();
        let digits = self.text[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        self.at += digits;
        let next = self.text.get(self.at).copied().unwrap_or(b' ');
        (digits > 0 && !matches!(next, b'.' | b'e' | b'E')).then_some(())
    }

    fn byte(&mut self, byte: u8) -> Option<()> {
        self.skip_space();
        (self.text.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    fn skip_space(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }
}

/// Where the string starting `rest` (after its `"`) ends, if every byte
/// before its closing `"` is printable ASCII other than `\`.
fn plain_len(rest: &[u8]) -> Option<usize> {
    first_stop(rest).filter(|&at| rest[at] == b'"')
}

/// The first byte of `text` that is not printable ASCII or is `"` or `\`:
/// eight bytes a step, as serde_json's own scan does (bit tricks on a
/// `u64`), since a byte-by-byte loop cost as much as serde's whole read.
fn first_stop(text: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // A byte's high bit set where it is zero: exact for the lowest such
    // byte, which is the only one read.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut at = 0;
    while let Some(chunk) = text.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().ok()?);
        let stop = (x
            | x.wrapping_sub(ONES * 0x20)
            | zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\'))))
            & HIGH;
        if stop != 0 {
            return Some(at + (stop.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = text[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b))?;
    Some(at + tail)
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
            record(b"1", "tab\there \\ \u{1}"),
            record(b"2", "caf\u{e9}~hot3"),
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
                    {"Data": "MQ==", "PartitionKey": "tab\there \\ \u{1}"},
                    {"Data": "Mg==", "PartitionKey": "caf\u{e9}~hot3"},
                ]
            })
        );
    }

    #[test]
    fn keys_are_written_as_serde_writes_them() {
        for key in [
            "user-1",
            "",
            "caf\u{e9}",
            "k\"y",
            "a\\b",
            "tab\t",
            "\u{1f}",
            "\u{7f}",
            "~hot63",
        ] {
            let mut ours = Vec::new();
            json_string(&mut ours, key);
            assert_eq!(ours, serde_json::to_vec(key).unwrap(), "{key:?}");
        }
    }

    #[test]
    fn entry_outcomes_keep_request_order_and_sort_failures() {
        let answer = br#"{"FailedRecordCount":2,"EncryptionType":"KMS","Records":[
            {"ShardId":"shardId-000000000001","SequenceNumber":"111"},
            {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded"},
            {"ShardId":"shardId-000000000000","SequenceNumber":"222"},
            {"ErrorCode":"InternalFailure","ErrorMessage":"Internal service failure."}]}"#;
        let outcomes = entry_outcomes(Bytes::from_static(answer), 4);
        assert_eq!(
            outcomes[0],
            Ok(receipt("shardId-000000000001".into(), "111".into(), Some("KMS".into())))
        );
        assert!(matches!(&outcomes[1], Err(SinkError::Throttled(d)) if d.contains("Rate exceeded")));
        assert_eq!(outcomes[2].as_ref().unwrap().field("SequenceNumber"), Some("222"));
        assert!(matches!(outcomes[3], Err(SinkError::Unavailable(_))));
    }

    #[test]
    fn receipts_share_the_answer_and_an_answer_not_utf8_is_still_read() {
        let answer = Bytes::from_static(br#"{"Records":[{"ShardId":"s","SequenceNumber":"12"}]}"#);
        let outcomes = entry_outcomes(answer.clone(), 1);
        let sequence = outcomes[0].as_ref().unwrap().field("SequenceNumber").unwrap();
        assert_eq!(sequence, "12");
        // A slice of the answer, not a copy.
        assert!(answer.as_ptr_range().contains(&sequence.as_ptr()));
        // Bytes that are not UTF-8 in a field serde skips: serde reads it, as before.
        let answer =
            Bytes::from_static(b"{\"Records\":[{\"ShardId\":\"s\",\"SequenceNumber\":\"1\"}],\"Later\":\"\xff\"}");
        let outcomes = entry_outcomes(answer, 1);
        assert_eq!(outcomes[0].as_ref().unwrap().field("ShardId"), Some("s"));
    }

    #[test]
    fn escaped_strings_are_read_too() {
        let answer = br#"{"Records":[{"ShardId":"shard\u002d1","SequenceNumber":"1"}]}"#;
        assert_eq!(
            entry_outcomes(Bytes::from_static(answer), 1)[0]
                .as_ref()
                .unwrap()
                .field("ShardId"),
            Some("shard-1")
        );
    }

    type Read<'a> = (Vec<[Option<String>; 4]>, Option<String>);

    fn seen(answered: Answered<'_>) -> Read<'_> {
        let entries = answered
            .records
            .into_iter()
            .map(|e| [e.shard_id, e.sequence_number, e.error_code, e.error_message].map(|f| f.map(Cow::into_owned)));
        (entries.collect(), answered.encryption_type.map(Cow::into_owned))
    }

    #[test]
    fn the_scan_reads_what_serde_reads_or_leaves_it_to_serde() {
        let scanned = [
            r#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000001"}]}"#,
            r#" { "Records" : [ { "ShardId" : "s" , "SequenceNumber" : "2" } , {} ] ,"EncryptionType":null } "#,
            r#"{"Records":[],"FailedRecordCount":0,"EncryptionType":"KMS"}"#,
            r#"{"Records":[{"ErrorCode":"InternalFailure","ErrorMessage":"Internal service failure.","ShardId":null}]}"#,
            r#"{"Records":[{"ShardId":"s","SequenceNumber":"1"},{"SequenceNumber":"2","ShardId":"t"}]}"#,
            r#"{"Records":[{"ShardId":"s","SequenceNumber":"1","ErrorCode":null},{"ShardId":"s","SequenceNumber":"3" }]}"#,
        ];
        for answer in scanned {
            let by_scan = Scan::new(answer).answered(2).map(seen);
            let by_serde = serde_json::from_str::<Answered>(answer).map(seen).unwrap();
            assert_eq!(by_scan, Some(by_serde), "{answer}");
        }
        let left_to_serde = [
            r#"{"Records":[{"ShardId":"shard\u002d1","SequenceNumber":"1"}]}"#,
            r#"{"Records":[{"ShardId":"s","SequenceNumber":"1","Extra":true}]}"#,
            r#"{"Records":[{"ShardId":"s","ShardId":"t"}]}"#,
            r#"{"Records":[{"ShardId":"s","SequenceNumber":"1","ShardId":"t"}]}"#,
            r#"{"Records":[{"SequenceNumber":"1","ShardId":"s\u0021"}]}"#,
            r#"{"Records":[],"Records":[]}"#,
            r#"{"FailedRecordCount":1.5,"Records":[]}"#,
            "{\"Records\":[{\"ShardId\":\"a\tb\"}]}",
            r#"{"Records":[{"ShardId":"s"},]}"#,
            r#"{"Records":[{"ShardId":"s"}]} x"#,
            r#"{"FailedRecordCount":0}"#,
            r#"{"Records":[{"ShardId":5}]}"#,
            r#"{"Records":["#,
        ];
        for answer in left_to_serde {
            assert!(Scan::new(answer).answered(1).is_none(), "{answer}");
        }
    }

    #[test]
    fn plain_strings_end_at_their_quote_and_nothing_else_passes() {
        for len in 0..40 {
            let plain = "7".repeat(len);
            assert_eq!(plain_len(format!("{plain}\"tail").as_bytes()), Some(len));
            for stop in ["\\", "\n", "\u{1f}", "\u{e9}"] {
                assert_eq!(plain_len(format!("{plain}{stop}\"").as_bytes()), None, "{len} {stop:?}");
            }
            assert_eq!(plain_len(plain.as_bytes()), None, "no closing quote");
        }
        // Bytes just above a stop byte do not hide it.
        assert_eq!(plain_len(b"\x1f!\"aaaaaaaa"), None);
        assert_eq!(plain_len(b"a \"\x01aaaaaaa"), Some(2));
    }

    #[test]
    fn a_mismatched_or_unreadable_answer_fails_every_record() {
        for answer in [
            &br#"{"Records":[{"ShardId":"s","SequenceNumber":"1"}]}"#[..],
            b"{\"Records\":",
            b"<html>",
        ] {
            let outcomes = entry_outcomes(Bytes::from_static(answer), 2);
            assert_eq!(outcomes.len(), 2);
            assert!(outcomes.iter().all(|o| matches!(o, Err(SinkError::Unavailable(_)))));
        }
        let outcomes = entry_outcomes(Bytes::from_static(br#"{"Records":[{"ShardId":"s"}]}"#), 1);
        assert!(matches!(&outcomes[0], Err(SinkError::Unavailable(d)) if d.contains("without a sequence number")));
    }
}
