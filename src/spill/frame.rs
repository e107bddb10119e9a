//! How one spilled record is laid out on disk, and how a segment's bytes are
//! read back, corrupt parts included.
//!
//! A frame is `magic (4) | length (4) | crc32c (4) | payload`, little-endian,
//! where the payload is `appended-at ms (8) | key length (2) | key | data`
//! and the CRC32C covers the length and the payload. The magic lets a reader
//! find the next frame after a corrupt one (a flipped length would otherwise
//! lose the rest of the segment); the checksum covering the length means a
//! flipped length is caught, not trusted.

use bytes::Bytes;

use crate::sink::Record;

/// Starts every frame: "CGS1" (clickstream gateway spill, version 1).
const MAGIC: [u8; 4] = *b"CGS1";
/// Magic, length and checksum.
pub(super) const HEADER: usize = 12;
/// Appended-at time and key length, before the key.
const PAYLOAD_HEADER: usize = 10;
/// No record is this large (sinks take at most a few MiB): a longer length
/// is corruption, not a frame to wait for.
const MAX_PAYLOAD: usize = 64 << 20;

/// Appends `record`'s frame, appended at `at_ms` (Unix ms), to `out`.
pub(super) fn encode(record: &Record, at_ms: u64, out: &mut Vec<u8>) {
    let key = record.partition_key.as_bytes();
    // Keys are at most a few hundred bytes (the sinks' limits); a longer one
    // is cut rather than written with a wrong length.
    let key = &key[..key.len().min(u16::MAX as usize)];
    let length = PAYLOAD_HEADER + key.len() + record.data.len();
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&at_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&record.data);
    let crc = checksum(&out[start + 4..start + 8], &out[start + HEADER..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// The bytes `record`'s frame takes.
pub(super) fn size(record: &Record) -> usize {
    HEADER + PAYLOAD_HEADER + record.partition_key.len().min(u16::MAX as usize) + record.data.len()
}

fn checksum(length: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(length), payload)
}

/// A record read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spilled {
    /// The record, as it was appended.
    pub record: Record,
    /// When it was appended, Unix ms.
    pub at_ms: u64,
}

/// What [`parse`] found in a run of bytes.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// Whole, intact records, in order.
    pub records: Vec<Spilled>,
    /// Corrupt or torn stretches skipped (each may have held several records).
    pub corrupt: u64,
    /// Bytes consumed: the next read starts here.
    pub consumed: usize,
}

/// Reads frames from `bytes`. With `complete`, `bytes` runs to the end of the
/// segment and a partial frame at its end is a torn write, skipped and
/// counted; otherwise reading stops before it, to be read with more bytes.
/// Stops after `max_records` records.
pub(super) fn parse(bytes: &Bytes, complete: bool, max_records: usize) -> Parsed {
    let mut parsed = Parsed::default();
    let mut at = 0;
    // Whether the bytes since the last good frame are already counted.
    let mut in_corruption = false;
    while at < bytes.len() && parsed.records.len() < max_records {
        match frame_at(bytes, at) {
            Frame::Good { end, spilled } => {
                parsed.records.push(spilled);
                at = end;
                in_corruption = false;
            }
            Frame::Short if !complete => break,
            Frame::Short | Frame::Bad => {
                if !in_corruption {
                    parsed.corrupt += 1;
                    in_corruption = true;
                }
                // Look for the next frame after this byte.
                at = match find_magic(&bytes[at + 1..]) {
                    Some(offset) => at + 1 + offset,
                    None if complete => bytes.len(),
                    // The next magic may be in bytes not read yet: resume
                    // near the end, where a partial magic could start.
                    None => bytes.len().saturating_sub(MAGIC.len() - 1).max(at + 1),
                };
            }
        }
    }
    parsed.consumed = at;
    parsed
}

enum Frame {
    Good {
        end: usize,
        spilled: Spilled,
    },
    /// The frame runs past the bytes given.
    Short,
    Bad,
}

fn frame_at(bytes: &Bytes, at: usize) -> Frame {
    let rest = &bytes[at..];
    if rest.len() < MAGIC.len() {
        return if MAGIC.starts_with(rest) {
            Frame::Short
        } else {
            Frame::Bad
        };
    }
    if rest[..4] != MAGIC {
        return Frame::Bad;
    }
    if rest.len() < HEADER {
        return Frame::Short;
    }
    let length = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
    if !(PAYLOAD_HEADER..=MAX_PAYLOAD).contains(&length) {
        return Frame::Bad;
    }
    if rest.len() < HEADER + length {
        return Frame::Short;
    }
    let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
    let payload = &rest[HEADER..HEADER + length];
    if checksum(&rest[4..8], payload) != crc {
        return Frame::Bad;
    }
    let at_ms = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    let key_length = u16::from_le_bytes(payload[8..10].try_into().expect("2 bytes")) as usize;
    let Some(key) = payload.get(PAYLOAD_HEADER..PAYLOAD_HEADER + key_length) else {
        return Frame::Bad;
    };
    let Ok(key) = std::str::from_utf8(key) else {
        return Frame::Bad;
    };
    let data_start = at + HEADER + PAYLOAD_HEADER + key_length;
    let end = at + HEADER + length;
    Frame::Good {
        end,
        spilled: Spilled {
            record: Record {
                data: bytes.slice(data_start..end),
                partition_key: key.to_owned(),
            },
            at_ms,
        },
    }
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes.windows(MAGIC.len()).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, data: &str) -> Record {
        Record {
            data: Bytes::copy_from_slice(data.as_bytes()),
            partition_key: key.into(),
        }
    }

    fn segment(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            encode(r, 1_000 + i as u64, &mut out);
        }
        out
    }

    fn keys(parsed: &Parsed) -> Vec<&str> {
        parsed.records.iter().map(|s| s.record.partition_key.as_str()).collect()
    }

    #[test]
    fn records_come_back_as_they_went_in() {
        let records = [
            record("a", "{\"n\":1}"),
            record("é", ""),
            record("c", "CGS1 inside data"),
        ];
        let bytes = Bytes::from(segment(&records));
        assert_eq!(bytes.len(), records.iter().map(size).sum::<usize>());
        let parsed = parse(&bytes, true, usize::MAX);
        let back: Vec<Record> = parsed.records.iter().map(|s| s.record.clone()).collect();
        assert_eq!(back, records);
        assert_eq!(parsed.records[2].at_ms, 1_002);
        assert_eq!((parsed.corrupt, parsed.consumed), (0, bytes.len()));
    }

    #[test]
    fn a_flipped_byte_loses_its_record_only() {
        let records: Vec<Record> = (0..10).map(|i| record(&format!("k{i}"), "{\"event\":\"x\"}")).collect();
        let clean = segment(&records);
        let frame = size(&records[0]);
        // In a record's data, in its length, in its magic.
        for offset in [4 * frame + HEADER + 15, 6 * frame + 5, 2 * frame] {
            let mut bytes = clean.clone();
            bytes[offset] ^= 0x40;
            let parsed = parse(&Bytes::from(bytes), true, usize::MAX);
            assert_eq!(parsed.corrupt, 1, "offset {offset}");
            assert_eq!(parsed.records.len(), 9, "offset {offset}: {:?}", keys(&parsed));
        }
    }

    #[test]
    fn a_torn_tail_is_waited_for_while_open_and_counted_once_complete() {
        let records = [record("a", "1"), record("b", "2")];
        let full = segment(&records);
        let torn = Bytes::copy_from_slice(&full[..full.len() - 3]);
        let open = parse(&torn, false, usize::MAX);
        assert_eq!(
            (keys(&open), open.corrupt, open.consumed),
            (vec!["a"], 0, size(&records[0]))
        );
        let sealed = parse(&torn, true, usize::MAX);
        assert_eq!(
            (keys(&sealed), sealed.corrupt, sealed.consumed),
            (vec!["a"], 1, torn.len())
        );
    }

    #[test]
    fn garbage_between_frames_is_one_corrupt_stretch_and_reading_resumes() {
        let mut bytes = segment(&[record("a", "1")]);
        bytes.extend_from_slice(&[0xAB; 100]);
        bytes.extend_from_slice(&segment(&[record("b", "2"), record("c", "3")]));
        let parsed = parse(&Bytes::from(bytes), true, usize::MAX);
        assert_eq!((keys(&parsed), parsed.corrupt), (vec!["a", "b", "c"], 1));
    }

    #[test]
    fn reading_stops_at_the_record_count_and_says_where() {
        let records = [record("a", "1"), record("b", "2"), record("c", "3")];
        let bytes = Bytes::from(segment(&records));
        let first = parse(&bytes, true, 2);
        assert_eq!(keys(&first), ["a", "b"]);
        let rest = parse(&bytes.slice(first.consumed..), true, 2);
        assert_eq!(keys(&rest), ["c"]);
    }
}
