//! The spill's files: numbered segments that one thread appends to with a
//! shared `fsync` (group commit), one reader that replays them oldest first,
//! and a ledger that remembers how far the reader got.
//!
//! Layout of `SPILL_DIR`: `00000000000000000001.seg`, ... (frames, see
//! `frame.rs`) and `ledger` (`<segment> <offset>`, replaced atomically
//! after each replayed chunk). A segment is sealed once the appender has
//! moved on to the next; the reader deletes a sealed segment when it has
//! replayed all of it. After a restart the appender always opens a new
//! segment, so a torn tail left by a crash is never appended to.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::frame::{self, Spilled};

/// Bytes read from a segment at a time.
const READ_WINDOW: usize = 8 << 20;

/// A place in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Position {
    /// The segment's number.
    pub segment: u64,
    /// Bytes into it.
    pub offset: u64,
}

/// What the appender and the reader share, changed together under one lock.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Records appended and not yet replayed.
    pub pending: u64,
    /// Bytes of segment files on disk.
    pub disk_bytes: u64,
    /// Bytes of records not yet replayed: what `SPILL_MAX_BYTES` caps. Disk
    /// use exceeds it by at most the replayed part of one segment.
    pub pending_bytes: u64,
    /// How far the log is durable: the reader never reads past it.
    pub durable: Position,
    /// When the oldest pending record was appended (Unix ms), while known.
    pub oldest_ms: Option<u64>,
    /// An append was refused for want of room, and none has fit since.
    pub full: bool,
    /// The last write or `fsync` failed, and none has succeeded since.
    pub failing: Option<String>,
    /// When replay last stored a chunk (Unix ms; 0: never).
    pub replayed_ms: u64,
}

/// The shared state, behind its lock.
#[derive(Debug, Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    /// Woken whenever replay stores a chunk.
    pub replayed: tokio::sync::Notify,
}

impl Shared {
    /// The state; a panic elsewhere leaves only numbers behind, so keep going.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

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
    pub frames: Vec<u8>,
    /// How many records they hold.
    pub records: u64,
    /// When they were framed (Unix ms).
    pub at_ms: u64,
    /// Told once the frames are durable, or why not.
    pub reply: oneshot::Sender<Result<(), AppendError>>,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Segment numbers in `dir`, ascending.
pub(super) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name();
            name.to_str()?.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Makes a new file's name durable: without it a crash can lose the file.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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

    fn commit(&mut self, group: Vec<Append>) {
        let mut bytes = 0;
        let mut accepted = Vec::new();
        let pending_bytes = self.shared.lock().pending_bytes;
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
            self.shared.lock().full = true;
        }
        if accepted.is_empty() {
            return;
        }
        let outcome = self.write(&accepted, bytes as u64);
        if let Err(err) = &outcome {
            tracing::error!(error = %err, segment = self.id, "spill write failed; answering 503 and starting a new segment");
            self.shared.lock().failing = Some(err.to_string());
            self.abandon();
        } else {
            let mut state = self.shared.lock();
            state.full = refused;
            state.failing = None;
            // Pending grows before the reader may see the records.
            state.pending += accepted.iter().map(|a| a.records).sum::<u64>();
            state.disk_bytes += bytes as u64;
            state.pending_bytes += bytes as u64;
            state.oldest_ms.get_or_insert(accepted[0].at_ms);
            state.durable = Position {
                segment: self.id,
                offset: self.size,
            };
            self.durable.send_replace(state.durable);
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
        let drained = self.size > 0 && self.shared.lock().pending == 0;
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
                .open(segment_path(&self.dir, id))
            {
                Ok(file) => break file,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => id += 1,
                Err(err) => return Err(err),
            }
        };
        sync_dir(&self.dir)?;
        self.file = Some(file);
        self.id = id;
        self.size = 0;
        let mut state = self.shared.lock();
        state.durable = Position { segment: id, offset: 0 };
        self.durable.send_replace(state.durable);
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

/// What the reader read: records to replay and how far they go.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    /// Intact records, oldest first.
    pub records: Vec<Spilled>,
    /// Corrupt or torn stretches skipped.
    pub corrupt: u64,
    /// Where the next read starts once these are stored.
    pub next: Position,
    /// The reader moved to another segment (and deleted the finished one).
    pub advanced: bool,
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
        let path = segment_path(&self.dir, self.position.segment);
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
        match fs::remove_file(segment_path(&self.dir, done)) {
            Ok(()) => {
                let mut state = self.shared.lock();
                state.disk_bytes = state.disk_bytes.saturating_sub(size);
                state.full = false;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let durable = self.durable.borrow().segment;
        let next = segments(&self.dir)?
            .into_iter()
            .find(|&id| id > done)
            .unwrap_or(durable)
            .min(durable);
        self.position = Position {
            segment: next,
            offset: 0,
        };
        save_ledger(&self.dir, self.position)?;
        Ok(Chunk {
            next: self.position,
            advanced: true,
            ..Chunk::default()
        })
    }

    /// The records up to `next` are stored: remember it across restarts.
    pub(super) fn commit(&mut self, next: Position) -> io::Result<()> {
        if next.segment == self.position.segment {
            let mut state = self.shared.lock();
            state.pending_bytes = state
                .pending_bytes
                .saturating_sub(next.offset.saturating_sub(self.position.offset));
        }
        self.position = next;
        save_ledger(&self.dir, next)
    }
}

const LEDGER: &str = "ledger";

/// Replaces the ledger atomically: write a new file, `fsync`, rename.
fn save_ledger(dir: &Path, position: Position) -> io::Result<()> {
    let temporary = dir.join("ledger.tmp");
    let mut file = File::create(&temporary)?;
    writeln!(file, "{} {}", position.segment, position.offset)?;
    file.sync_data()?;
    fs::rename(temporary, dir.join(LEDGER))
}

/// The ledger's position, when there is a readable one.
pub(super) fn load_ledger(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(LEDGER)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

/// What a previous process left: where replay starts, what is pending.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// Where the reader starts.
    pub position: Position,
    /// Intact records from there on.
    pub pending: u64,
    /// Bytes of segment files kept.
    pub disk_bytes: u64,
    /// Bytes of them not yet replayed.
    pub pending_bytes: u64,
    /// When the first of them was appended.
    pub oldest_ms: Option<u64>,
    /// The number the next segment gets.
    pub next_segment: u64,
    /// Why the ledger was not trusted, when it was not.
    pub ledger_corrupt: Option<String>,
}

/// Whether the ledger can be believed against the segments on disk. It
/// may point into a segment (within its length), at the start of any
/// segment, or just past the last one (every segment replayed, the last
/// not yet deleted when the process stopped), or anywhere when there are
/// none. Anything else is corruption: trusting it would delete records
/// never replayed.
fn ledger_agrees(dir: &Path, ledger: Position, ids: &[u64]) -> io::Result<bool> {
    let Some(&last) = ids.last() else {
        return Ok(true);
    };
    if ids.contains(&ledger.segment) {
        let len = fs::metadata(segment_path(dir, ledger.segment))?.len();
        return Ok(ledger.offset <= len);
    }
    Ok(ledger.offset == 0 && ledger.segment <= last + 1)
}

/// Reads `dir` at start-up: deletes segments the ledger says are replayed,
/// counts the records left (reading every frame: a checksum failure is
/// counted when replay meets it, not here). A ledger that cannot be read
/// or disagrees with the segments is not trusted: replay starts at the
/// first segment (at least once beats lost) and `ledger_corrupt` says so.
pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
    let ids = segments(dir)?;
    let mut recovered = Recovered {
        next_segment: ids.last().map_or(1, |last| last + 1),
        ..Recovered::default()
    };
    let ledger = match (dir.join(LEDGER).exists(), load_ledger(dir)) {
        (false, _) => Position::default(),
        (true, Some(ledger)) if ledger_agrees(dir, ledger, &ids)? => ledger,
        (true, found) => {
            recovered.ledger_corrupt = Some(match found {
                Some(ledger) => format!(
                    "the ledger points at segment {} offset {}, past the segments on disk ({:?})",
                    ledger.segment, ledger.offset, ids
                ),
                None => "the ledger does not parse".into(),
            });
            Position::default()
        }
    };
    let first = ids.iter().copied().find(|&id| id >= ledger.segment);
    recovered.position = match first {
        Some(id) if id == ledger.segment => ledger,
        Some(id) => Position { segment: id, offset: 0 },
        None => Position {
            segment: recovered.next_segment,
            offset: 0,
        },
    };
    for id in ids {
        let path = segment_path(dir, id);
        if id < recovered.position.segment {
            fs::remove_file(path)?;
            continue;
        }
        let bytes = Bytes::from(fs::read(&path)?);
        recovered.disk_bytes += bytes.len() as u64;
        let from = if id == recovered.position.segment {
            (recovered.position.offset as usize).min(bytes.len())
        } else {
            0
        };
        let parsed = frame::parse(&bytes.slice(from..), true, usize::MAX);
        recovered.pending += parsed.records.len() as u64;
        recovered.pending_bytes += (bytes.len() - from) as u64;
        if let Some(first) = parsed.records.first() {
            recovered.oldest_ms.get_or_insert(first.at_ms);
        }
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Record;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spill-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn append(appender: &mut Appender, keys: &[&str]) -> Vec<Result<(), AppendError>> {
        let mut answers = Vec::new();
        let group = keys
            .iter()
            .map(|key| {
                let mut frames = Vec::new();
                let record = Record {
                    data: Bytes::from_static(b"{}"),
                    partition_key: (*key).into(),
                };
                frame::encode(&record, 7, &mut frames);
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Append {
                    frames,
                    records: 1,
                    at_ms: 7,
                    reply,
                }
            })
            .collect();
        appender.commit(group);
        answers.into_iter().map(|mut a| a.try_recv().unwrap()).collect()
    }

    fn appender(dir: &Path, max_bytes: u64, shared: &Arc<Shared>) -> (Appender, watch::Receiver<Position>) {
        let (durable, watching) = watch::channel(Position::default());
        let appender = Appender::new(dir.to_owned(), max_bytes, 1 << 20, 1, shared.clone(), durable);
        (appender, watching)
    }

    #[test]
    fn one_group_is_one_durable_write_and_the_cap_refuses_what_does_not_fit() {
        let dir = dir("group");
        let shared = Arc::new(Shared::default());
        let frame = frame::size(&Record {
            data: Bytes::from_static(b"{}"),
            partition_key: "a".into(),
        }) as u64;
        let (mut appender, durable) = appender(&dir, 3 * frame, &shared);
        let answers = append(&mut appender, &["a", "b", "c", "d"]);
        assert_eq!(answers[..3], [Ok(()), Ok(()), Ok(())]);
        assert_eq!(answers[3], Err(AppendError::Full));
        let state = shared.lock();
        assert_eq!((state.pending, state.pending_bytes, state.full), (3, 3 * frame, true));
        assert_eq!(
            *durable.borrow(),
            Position {
                segment: 1,
                offset: 3 * frame
            }
        );
    }

    #[test]
    fn a_ledger_past_the_segments_is_corruption_and_replay_starts_at_the_first() {
        let dir = dir("ledger-past");
        let shared = Arc::new(Shared::default());
        let (mut appender, _) = appender(&dir, 1 << 20, &shared);
        append(&mut appender, &["a", "b", "c"]);
        drop(appender);
        for bad in ["5 0", "1 999999", "garbage"] {
            fs::write(dir.join(LEDGER), bad).unwrap();
            let recovered = recover(&dir).unwrap();
            assert!(recovered.ledger_corrupt.is_some(), "{bad}");
            assert_eq!(recovered.position, Position { segment: 1, offset: 0 }, "{bad}");
            assert_eq!(recovered.pending, 3, "{bad}: every record is kept");
            assert!(segment_path(&dir, 1).exists(), "{bad}");
        }
        // Just past the last segment: every record replayed, the file not yet deleted.
        fs::write(dir.join(LEDGER), "2 0").unwrap();
        let recovered = recover(&dir).unwrap();
        assert_eq!((recovered.ledger_corrupt, recovered.pending), (None, 0));
    }

    #[test]
    fn recovery_starts_at_the_ledger_and_a_torn_tail_is_read_as_corrupt() {
        let dir = dir("recover");
        let shared = Arc::new(Shared::default());
        let (mut appender, _) = appender(&dir, 1 << 20, &shared);
        append(&mut appender, &["a", "b", "c"]);
        drop(appender);
        let one = frame::size(&Record {
            data: Bytes::from_static(b"{}"),
            partition_key: "a".into(),
        }) as u64;
        save_ledger(
            &dir,
            Position {
                segment: 1,
                offset: one,
            },
        )
        .unwrap();
        // A crash in the middle of a write: half a frame at the end.
        let mut file = OpenOptions::new().append(true).open(segment_path(&dir, 1)).unwrap();
        file.write_all(&b"CGS1\x40\x00\x00\x00"[..]).unwrap();
        let recovered = recover(&dir).unwrap();
        assert_eq!(
            recovered.position,
            Position {
                segment: 1,
                offset: one
            }
        );
        assert_eq!((recovered.pending, recovered.next_segment), (2, 2));
        // The old segment is sealed: the new process appends to segment 2.
        let (_, durable) = watch::channel(Position { segment: 2, offset: 0 });
        let mut reader = Reader::new(dir.clone(), recovered.position, shared, durable);
        let chunk = reader.read(100).unwrap();
        let keys: Vec<&str> = chunk.records.iter().map(|s| s.record.partition_key.as_str()).collect();
        assert_eq!((keys, chunk.corrupt), (vec!["b", "c"], 1));
        reader.commit(chunk.next).unwrap();
        let next = reader.read(100).unwrap();
        assert!(next.advanced, "the replayed segment is deleted");
        assert!(!segment_path(&dir, 1).exists());
        assert_eq!(load_ledger(&dir), Some(Position { segment: 2, offset: 0 }));
    }
}
