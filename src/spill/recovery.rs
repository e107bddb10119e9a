//! Recovery: what a previous process left in a lane's directory, read
//! once at start-up. Segments the ledger says are replayed are deleted; the
//! records left are counted (every frame read: a checksum failure is
//! counted when replay meets it, not here). A ledger that cannot be read
//! or disagrees with the segments is not trusted: replay starts at the
//! first segment (at least once beats lost).

use std::fs;
use std::io;
use std::path::Path;

use bytes::Bytes;

use super::frame;
use super::ledger::{self, Position};
use super::segments;

/// What a previous process left: where replay starts, what is pending.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// Where the reader starts.
    pub(super) position: Position,
    /// Intact records from there on.
    pub(super) pending: u64,
    /// Bytes of segment files kept.
    pub(super) disk_bytes: u64,
    /// Bytes of them not yet replayed.
    pub(super) pending_bytes: u64,
    /// When the first of them was appended.
    pub(super) oldest_ms: Option<u64>,
    /// The number the next segment gets.
    pub(super) next_segment: u64,
    /// Why the ledger was not trusted, when it was not.
    pub(super) ledger_corrupt: Option<String>,
}

/// Reads `dir` at start-up: deletes segments the ledger says are replayed,
/// counts the records left (reading every frame: a checksum failure is
/// counted when replay meets it, not here). A ledger that cannot be read
/// or disagrees with the segments is not trusted: replay starts at the
/// first segment (at least once beats lost) and `ledger_corrupt` says so.
pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
    let ids = segments::list(dir)?;
    let mut recovered = Recovered {
        next_segment: ids.last().map_or(1, |last| last + 1),
        ..Recovered::default()
    };
    let ledger = match (dir.join(ledger::LEDGER).exists(), ledger::load(dir)) {
        (false, _) => Position::default(),
        (true, Some(ledger)) if ledger::agrees(dir, ledger, &ids)? => ledger,
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
        let path = segments::path(dir, id);
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
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Arc;

    use tokio::sync::{oneshot, watch};

    use super::*;
    use crate::sink::Record;
    use crate::spill::appender::{Append, AppendError, Appender};
    use crate::spill::reader::Reader;
    use crate::spill::state::Shared;

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
        assert_eq!((shared.pending(), shared.pending_bytes()), (3, 3 * frame));
        assert_eq!(shared.trouble(u64::MAX).as_deref(), Some("the spill is full"));
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
            fs::write(dir.join(ledger::LEDGER), bad).unwrap();
            let recovered = recover(&dir).unwrap();
            assert!(recovered.ledger_corrupt.is_some(), "{bad}");
            assert_eq!(recovered.position, Position { segment: 1, offset: 0 }, "{bad}");
            assert_eq!(recovered.pending, 3, "{bad}: every record is kept");
            assert!(segments::path(&dir, 1).exists(), "{bad}");
        }
        // Just past the last segment: every record replayed, the file not yet deleted.
        fs::write(dir.join(ledger::LEDGER), "2 0").unwrap();
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
        ledger::save(
            &dir,
            Position {
                segment: 1,
                offset: one,
            },
        )
        .unwrap();
        // A crash in the middle of a write: half a frame at the end.
        let mut file = OpenOptions::new().append(true).open(segments::path(&dir, 1)).unwrap();
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
        assert!(!segments::path(&dir, 1).exists());
        assert_eq!(ledger::load(&dir), Some(Position { segment: 2, offset: 0 }));
    }
}
