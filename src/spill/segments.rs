//! The spill's segment files: `00000000000000000001.seg`, ... in a lane's
//! directory, frames back to back (`frame.rs`). A segment is sealed once
//! the appender has moved on to the next; the reader deletes a sealed
//! segment when it has replayed all of it. After a restart the appender
//! always opens a new segment, so a torn tail left by a crash is never
//! appended to.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The path of segment `id` in `dir`.
pub(super) fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Segment numbers in `dir`, ascending.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
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
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
