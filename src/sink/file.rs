//! The local file sink: records appended to an NDJSON file, for a developer's
//! machine with no AWS. It is not Kinesis and says so loudly (at start-up and
//! in `/readyz`); containers should insist on `SINK=kinesis`.
//!
//! Each line carries the fields of a Kinesis `GetRecords` record
//! (`SequenceNumber`, `ApproximateArrivalTimestamp`, base64 `Data`,
//! `PartitionKey`) plus the `ShardId`, so tools can read it like a stream.
//! A batch is written with one `write` on an append-mode file before the
//! receipts are returned: a 2xx means the lines reached the operating system.
//! The lines are encoded where the call runs, and only the write goes to
//! tokio's blocking pool, one at a time: a slow disk stalls only the records
//! waiting for it, and no pool thread keeps an encoding buffer of its own
//! (an idle thread's allocator heap is never trimmed, so a pool thread per
//! call held some 140 MiB under a stream of tiny events: issue 36).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex as AsyncMutex;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use super::{Deadlines, Destination, Outcomes, Receipt, Record, Sink, SinkError, SinkLimits, Str, kinesis};

/// The one "shard" of the file sink.
const SHARD_ID: &str = "shardId-000000000000";

/// Appends records to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    /// The next sequence number, held from numbering a call's lines until
    /// they are written, so that the order of lines is the order of
    /// sequence numbers.
    next: AsyncMutex<u64>,
    /// The file, lent to the blocking task that writes.
    file: Arc<Mutex<File>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Line<'a> {
    shard_id: &'a str,
    sequence_number: &'a str,
    approximate_arrival_timestamp: f64,
    partition_key: &'a str,
    data: String,
}

impl FileSink {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // Sequence numbers start at the wall clock in nanoseconds, so they keep
        // increasing across restarts that append to the same file.
        let first = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(FileSink {
            path,
            next: AsyncMutex::new(first),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file records go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lines of `records`, numbered from `next`, and their receipts.
    fn encode(next: u64, records: &[Record]) -> Result<(Vec<u8>, Vec<Receipt>), SinkError> {
        let arrival = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as f64
            / 1000.0;
        let mut lines = Vec::new();
        let mut receipts = Vec::with_capacity(records.len());
        for (offset, record) in records.iter().enumerate() {
            // Fixed width, so sequence numbers sort as text the way they sort as numbers.
            let sequence_number = format!("{:020}", next + offset as u64);
            let line = Line {
                shard_id: SHARD_ID,
                sequence_number: &sequence_number,
                approximate_arrival_timestamp: arrival,
                partition_key: &record.partition_key,
                data: BASE64.encode(&record.data),
            };
            serde_json::to_writer(&mut lines, &line)
                .map_err(|e| SinkError::Unavailable(format!("encoding a record line: {e}")))?;
            lines.push(b'\n');
            receipts.push(kinesis::receipt(
                Str::from_static(SHARD_ID),
                sequence_number.into(),
                Some(Str::from_static("NONE")),
            ));
        }
        Ok((lines, receipts))
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn put_batch(&self, records: &[Record]) -> Result<Outcomes, SinkError> {
        let mut next = self.next.lock().await;
        let (lines, receipts) = FileSink::encode(*next, records)?;
        // Numbers are used up before the write: a write that fails, or is
        // abandoned at its deadline and lands later, leaves a gap (as
        // Kinesis's own sequence numbers have), never a number twice. The
        // lock is held until the write is done, so lines land in order.
        *next += records.len() as u64;
        let (file, path) = (self.file.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            file.write_all(&lines)
                .map_err(|e| SinkError::Unavailable(format!("writing {}: {e}", path.display())))
        })
        .await
        .map_err(|e| SinkError::Unavailable(format!("the file writer failed: {e}")))??;
        drop(next);
        Ok(receipts.into_iter().map(Ok).collect())
    }

    /// Always writable; the warning that this is not Kinesis travels in the status.
    async fn describe(&self) -> Result<Destination, SinkError> {
        Ok(Destination {
            writable: true,
            status: format!(
                "records are written to the local file {}, NOT to Kinesis",
                self.path.display()
            ),
            max_record_bytes: Some(kinesis::LIMITS.max_record_bytes),
        })
    }

    /// Kinesis's, since the file imitates a one-shard stream.
    fn limits(&self) -> SinkLimits {
        kinesis::LIMITS
    }

    /// A local write takes no retries; five seconds covers a busy disk.
    fn deadlines(&self) -> Deadlines {
        Deadlines {
            record_timeout: Duration::from_secs(5),
            max_attempts: 1,
        }
    }

    fn operation(&self, _batch: bool) -> &'static str {
        "FileAppend"
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn warning(&self) -> Option<&'static str> {
        Some("records are NOT going to Kinesis")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn lines_round_trip_with_increasing_sequence_numbers() {
        let dir = std::env::temp_dir().join(format!("file-sink-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let sink = FileSink::open(dir.join("records.ndjson")).unwrap();
        let first = Record {
            data: Bytes::from_static(b"\x00\xffhi"),
            partition_key: "k1".into(),
        };
        let second = Record {
            data: Bytes::from_static(b"{}"),
            partition_key: "k2".into(),
        };
        let outcomes = sink.put_batch(&[first, second]).await.unwrap();
        let (first, second) = (outcomes[0].as_ref().unwrap(), outcomes[1].as_ref().unwrap());
        assert!(second.field("SequenceNumber") > first.field("SequenceNumber"));

        let text = std::fs::read_to_string(sink.path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["PartitionKey"], "k1");
        assert_eq!(
            BASE64.decode(lines[0]["Data"].as_str().unwrap()).unwrap(),
            b"\x00\xffhi"
        );
        assert_eq!(lines[1]["SequenceNumber"].as_str(), second.field("SequenceNumber"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
