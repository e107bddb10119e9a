//! The ledger: how far a lane's reader got, remembered across restarts in
//! a small text file (`<segment> <offset>`), replaced atomically after each
//! replayed chunk. Compared with Vector's `disk_v2`, whose ledger is memory
//! mapped: a file replaced per chunk costs one `fsync` per 500 records here.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::segments;

/// The ledger's file name in a lane's directory.
pub(super) const LEDGER: &str = "ledger";

/// A place in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Position {
    /// The segment's number.
    pub(super) segment: u64,
    /// Bytes into it.
    pub(super) offset: u64,
}

/// Replaces the ledger atomically: write a new file, `fsync`, rename.
pub(super) fn save(dir: &Path, position: Position) -> io::Result<()> {
    let temporary = dir.join("ledger.tmp");
    let mut file = File::create(&temporary)?;
    writeln!(file, "{} {}", position.segment, position.offset)?;
    file.sync_data()?;
    fs::rename(temporary, dir.join(LEDGER))
}

/// The ledger's position, when there is a readable one.
pub(super) fn load(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(LEDGER)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

/// Whether the ledger can be believed against the segments on disk. It
/// may point into a segment (within its length), at the start of any
/// segment, or just past the last one (every segment replayed, the last
/// not yet deleted when the process stopped), or anywhere when there are
/// none. Anything else is corruption: trusting it would delete records
/// never replayed.
pub(super) fn agrees(dir: &Path, ledger: Position, ids: &[u64]) -> io::Result<bool> {
    let Some(&last) = ids.last() else {
        return Ok(true);
    };
    if ids.contains(&ledger.segment) {
        let len = fs::metadata(segments::path(dir, ledger.segment))?.len();
        return Ok(ledger.offset <= len);
    }
    Ok(ledger.offset == 0 && ledger.segment <= last + 1)
}
