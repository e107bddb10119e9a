//! The appender: one thread per lane owns the open segment and writes
//! every waiting append with one `write` per append and one `fsync` for
//! all of them (group commit), then answers each. A group that would take
//! the lane past its share of `SPILL_MAX_BYTES` refuses the appends that do
//! not fit; a failed write or `fsync` answers every append of the group with
//! the error and abandons the segment.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::ledger::Position;
use super::segments;
use super::state::Shared;

/// Why an append was not made durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AppendError {
    /// `SPILL_MAX_BYTES` would be exceeded.
    #[error("the spill is full")]
    Full,
    /// The write or its `fsync` failed.
    #[error("the spill write failed: {0}")]
    Io(String),
}

/// One request's records, framed, waiting for the next group commit.
pub(super) struct Append {
    /// The frames, back to back.
    pub(super) frames: Vec<u8>,
    /// How many records they hold.
    pub(super) records: u64,
    /// When they were framed (Unix ms).
    pub(super) at_ms: u64,
    /// Told once the frames are durable, or why not.
    pub(super) reply: oneshot::Sender<Result<(), AppendError>>,
}

/// The appender: owns the open segment; run on its own thread.
pub(super) struct Appender {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    file: Option<File>,
    id: u64,
    size: u64,
    shared: Arc<Shared>,
    durable: watch::Sender<Position>,
}

impl Appender {
    /// An appender whose first segment is `first_id`.
    pub(super) fn new(
        dir: PathBuf,
        max_bytes: u64,
        segment_bytes: u64,
        first_id: u64,
        shared: Arc<Shared>,
        durable: watch::Sender<Position>,
    ) -> Self {
        Appender {
            dir,
            max_bytes,
            segment_bytes,
            file: None,
            id: first_id.saturating_sub(1),
            size: 0,
            shared,
            durable,
        }
    }

    /// Appends until every sender is gone: each turn takes every append
    /// waiting, writes them with one `write` and one `fsync`, then answers all.
    pub(super) fn run(mut self, appends: std::sync::mpsc::Receiver<Append>) {
        while let Ok(first) = appends.recv() {
            let mut group = vec![first];
            group.extend(appends.try_iter());
            self.commit(group);
        }
    }

    /// One group commit.
    pub(super) fn commit(&mut self, group: Vec<Append>) {
        let mut bytes = 0;
        let mut accepted = Vec::new();
        let pending_bytes = self.shared.pending_bytes();
        let mut refused = false;
        for append in group {
            if pending_bytes + (bytes + append.frames.len()) as u64 > self.max_bytes {
                refused = true;
                let _ = append.reply.send(Err(AppendError::Full));
                continue;
            }
            bytes += append.frames.len();
            accepted.push(append);
        }
        if refused {
            self.shared.refused_for_room();
        }
        if accepted.is_empty() {
            return;
        }
        let outcome = self.write(&accepted, bytes as u64);
        if let Err(err) = &outcome {
            tracing::error!(error = %err, segment = self.id, "spill write failed; answering 503 and starting a new segment");
            self.shared.write_failed(err.to_string());
            self.abandon();
        } else {
            let records = accepted.iter().map(|a| a.records).sum::<u64>();
            let durable = Position {
                segment: self.id,
                offset: self.size,
            };
            // Pending grows before the reader may see the records.
            self.shared
                .appended(records, bytes as u64, accepted[0].at_ms, durable, refused);
            self.durable.send_replace(durable);
        }
        let reply = outcome.map_err(|err| AppendError::Io(err.to_string()));
        for append in accepted {
            let _ = append.reply.send(reply.clone());
        }
    }

    /// Every append's frames, written in turn (no copy into one buffer),
    /// then one `fsync` for all of them.
    fn write(&mut self, appends: &[Append], bytes: u64) -> io::Result<()> {
        // A segment replayed to its end is sealed, so the reader deletes it.
        let drained = self.size > 0 && self.shared.pending() == 0;
        if self.file.is_none() || self.size >= self.segment_bytes || drained {
            self.rotate()?;
        }
        let file = self.file.as_mut().expect("rotate opened a segment");
        for append in appends {
            file.write_all(&append.frames)?;
        }
        file.sync_data()?;
        self.size += bytes;
        Ok(())
    }

    /// Seals the open segment and opens the next.
    fn rotate(&mut self) -> io::Result<()> {
        let mut id = self.id + 1;
        // A number taken by a file an earlier failed rotation left behind is
        // skipped; the reader deletes that file as an empty sealed segment.
        let file = loop {
            match OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(segments::path(&self.dir, id))
            {
                Ok(file) => break file,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => id += 1,
                Err(err) => return Err(err),
            }
        };
        segments::sync_dir(&self.dir)?;
        self.file = Some(file);
        self.id = id;
        self.size = 0;
        let durable = Position { segment: id, offset: 0 };
        self.shared.rotated(durable);
        self.durable.send_replace(durable);
        Ok(())
    }

    /// After a failed write or `fsync` the file's state is unknown (a retried
    /// `fsync` may report success for lost pages): cut it back to what was
    /// durable and never write to it again.
    fn abandon(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = file.set_len(self.size);
            let _ = file.sync_all();
        }
        // The next write opens a new segment; until then nothing is pending
        // past `size`, which the reader already knows as durable.
        self.size = self.segment_bytes;
    }
}
