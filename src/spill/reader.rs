//! The reader: one per lane, it reads the lane's segments oldest first
//! from the ledger's position up to what the appender made durable, deletes
//! each sealed segment once it has read all of it, and moves the ledger
//! when replay has stored what it read.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::frame::{self, Spilled};
use super::ledger::{self, Position};
use super::segments;
use super::state::Shared;

/// Bytes read from a segment at a time.
const READ_WINDOW: usize = 8 << 20;

/// What the reader read: records to replay and how far they go.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    /// Intact records, oldest first.
    pub(super) records: Vec<Spilled>,
    /// Corrupt or torn stretches skipped.
    pub(super) corrupt: u64,
    /// Where the next read starts once these are stored.
    pub(super) next: Position,
    /// The reader moved to another segment (and deleted the finished one).
    pub(super) advanced: bool,
}

/// The replay side: reads from the ledger's position up to what is durable.
pub(super) struct Reader {
    dir: PathBuf,
    position: Position,
    shared: Arc<Shared>,
    durable: watch::Receiver<Position>,
}

impl Reader {
    /// A reader starting at `position`.
    pub(super) fn new(
        dir: PathBuf,
        position: Position,
        shared: Arc<Shared>,
        durable: watch::Receiver<Position>,
    ) -> Self {
        Reader {
            dir,
            position,
            shared,
            durable,
        }
    }

    /// Where the reader is.
    pub(super) fn position(&self) -> Position {
        self.position
    }

    /// Waits until more may be durable.
    pub(super) async fn wait(&mut self) {
        let _ = self.durable.changed().await;
    }

    /// Reads up to `max_records` records after the position (blocking I/O).
    pub(super) fn read(&mut self, max_records: usize) -> io::Result<Chunk> {
        let durable = *self.durable.borrow_and_update();
        let sealed = self.position.segment < durable.segment;
        let path = segments::path(&self.dir, self.position.segment);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound && sealed => return self.advance(0),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(self.empty()),
            Err(err) => return Err(err),
        };
        let end = if sealed { file.metadata()?.len() } else { durable.offset };
        if self.position.offset >= end {
            return if sealed { self.advance(end) } else { Ok(self.empty()) };
        }
        let mut window = READ_WINDOW as u64;
        loop {
            let until = end.min(self.position.offset + window);
            let mut bytes = vec![0; (until - self.position.offset) as usize];
            file.seek(SeekFrom::Start(self.position.offset))?;
            file.read_exact(&mut bytes)?;
            let complete = sealed && until == end;
            let parsed = frame::parse(&Bytes::from(bytes), complete, max_records);
            // A record larger than the window: read more at once.
            if parsed.consumed == 0 && !complete {
                window *= 2;
                continue;
            }
            return Ok(Chunk {
                records: parsed.records,
                corrupt: parsed.corrupt,
                next: Position {
                    segment: self.position.segment,
                    offset: self.position.offset + parsed.consumed as u64,
                },
                advanced: false,
            });
        }
    }

    fn empty(&self) -> Chunk {
        Chunk {
            next: self.position,
            ..Chunk::default()
        }
    }

    /// The current segment is sealed and replayed: delete it, move on.
    fn advance(&mut self, size: u64) -> io::Result<Chunk> {
        let done = self.position.segment;
        match fs::remove_file(segments::path(&self.dir, done)) {
            Ok(()) => self.shared.segment_deleted(size),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let durable = self.durable.borrow().segment;
        let next = segments::list(&self.dir)?
            .into_iter()
            .find(|&id| id > done)
            .unwrap_or(durable)
            .min(durable);
        self.position = Position {
            segment: next,
            offset: 0,
        };
        ledger::save(&self.dir, self.position)?;
        Ok(Chunk {
            next: self.position,
            advanced: true,
            ..Chunk::default()
        })
    }

    /// The records up to `next` are stored: remember it across restarts.
    pub(super) fn commit(&mut self, next: Position) -> io::Result<()> {
        if next.segment == self.position.segment {
            self.shared.read_past(next.offset.saturating_sub(self.position.offset));
        }
        self.position = next;
        ledger::save(&self.dir, next)
    }
}
