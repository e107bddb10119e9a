//! `Content-Encoding` of request bodies: `gzip`, `deflate`, `zstd` and `br`
//! are decoded before the record is stored, so the stream always holds the
//! event itself.
//!
//! Decoding stops one byte past the record limit, so a zip bomb costs at most
//! that much memory and gets 413 without being inflated. An encoding we do
//! not know is 415; a stream that does not decode is 400.
//!
//! A decoder's own memory is bounded too, before it allocates
//! ([`working_memory`]): gzip and deflate keep a 32 KiB window; brotli at
//! most 16 MiB (its stream header says how much); a zstd frame declares its
//! window, up to 3.75 TiB, and the decoder allocates it up front, so a frame
//! whose window is over [`zstd_max_window`] is refused with 413 before any
//! decoding (zstd's own decoders refuse windows over 128 MiB unless told
//! otherwise). The ingest step reserves this memory from
//! `MAX_IN_FLIGHT_BODY_BYTES` while the body is decoded.

use std::io::Read;

use bytes::Bytes;
use hyper::header::HeaderValue;

use crate::error::ApiError;

/// The smallest zstd window always accepted: zstd's default for streamed
/// input at levels up to 19 (`windowLog` 23), so a client compressing with
/// a stock encoder is never refused for its window alone.
const ZSTD_WINDOW_FLOOR: usize = 8 << 20;
/// What a deflate decoder holds: its 32 KiB window and its tables.
const DEFLATE_MEMORY: usize = 64 << 10;
/// What a zstd or brotli decoder holds beside its window: a block (zstd's
/// are at most 128 KiB) and its tables.
const BLOCK_MEMORY: usize = 192 << 10;

/// The largest zstd window accepted for output of at most `limit` bytes: a
/// decoder never needs more history than the output it may produce, so a
/// larger declared window is only a way to make it allocate.
pub fn zstd_max_window(limit: usize) -> usize {
    limit.max(ZSTD_WINDOW_FLOOR)
}

/// A body's `Content-Encoding`, lower-cased; `None` for none or `identity`.
fn name(encoding: Option<&HeaderValue>) -> Option<String> {
    let name = encoding?.to_str().unwrap_or_default().trim().to_ascii_lowercase();
    (!name.is_empty() && name != "identity").then_some(name)
}

/// The bytes decoding `body` will hold besides its output, read from the
/// stream's header before any decoder exists: 0 for a body that is not
/// encoded. A zstd window over [`zstd_max_window`] of `limit` is 413; an
/// unknown encoding 415.
pub fn working_memory(encoding: Option<&HeaderValue>, body: &[u8], limit: usize) -> Result<usize, ApiError> {
    let Some(name) = name(encoding) else {
        return Ok(0);
    };
    match name.as_str() {
        "gzip" | "x-gzip" | "deflate" => Ok(DEFLATE_MEMORY),
        "br" => Ok(brotli_window(body) + BLOCK_MEMORY),
        "zstd" => {
            let window = zstd_window(body).map_err(|e| ApiError::BadEncoding(format!("zstd: {e}")))?;
            let max = zstd_max_window(limit);
            if window > max as u64 {
                return Err(ApiError::WindowTooLarge {
                    encoding: "zstd",
                    window,
                    max,
                });
            }
            Ok(window as usize + BLOCK_MEMORY)
        }
        _ => Err(ApiError::UnsupportedEncoding(name)),
    }
}

/// Decodes `body` as `encoding` says, refusing output over `limit` bytes
/// and (through [`working_memory`]) decoders that would allocate more than
/// the output needs. Before the output buffer grows, `hold` is told the
/// bytes it is about to add (the old and new buffers both, while the
/// output moves), so a caller can count them in its budget and stop a body
/// that does not fit before the memory is taken.
pub fn decode(
    encoding: Option<&HeaderValue>,
    body: Bytes,
    limit: usize,
    hold: &mut dyn FnMut(usize) -> Result<(), ApiError>,
) -> Result<Bytes, ApiError> {
    let Some(name) = name(encoding) else {
        return Ok(body);
    };
    working_memory(encoding, &body, limit)?;
    let input = &body[..];
    let output = Output {
        limit,
        name: &name,
        hold,
    };
    match name.as_str() {
        "gzip" | "x-gzip" => output.inflate(flate2::read::MultiGzDecoder::new(input)),
        "deflate" => output.inflate(flate2::read::ZlibDecoder::new(input)),
        "br" => output.inflate(brotli_decompressor::Decompressor::new(input, 4096)),
        "zstd" => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| ApiError::BadEncoding(format!("zstd: {e}")))?;
            output.inflate(decoder)
        }
        _ => Err(ApiError::UnsupportedEncoding(name)),
    }
}

/// The window a zstd frame declares (RFC 8878 3.1.1.1): the
/// `Window_Descriptor`, or for a single-segment frame its content size.
/// Only the first frame matters: the decoder stops after it.
fn zstd_window(body: &[u8]) -> Result<u64, &'static str> {
    const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
    let [m0, m1, m2, m3, descriptor, rest @ ..] = body else {
        return Err("the frame header is cut short");
    };
    if [*m0, *m1, *m2, *m3] != MAGIC {
        return Err("not a zstd frame");
    }
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let window_descriptor = *rest.first().ok_or("the frame header is cut short")?;
        let log = 10 + u32::from(window_descriptor >> 3);
        let base = 1u64 << log;
        return Ok(base + base / 8 * u64::from(window_descriptor & 7));
    }
    let dictionary_bytes = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let size_bytes = [1, 2, 4, 8][usize::from(descriptor >> 6)];
    let field = rest
        .get(dictionary_bytes..dictionary_bytes + size_bytes)
        .ok_or("the frame header is cut short")?;
    let mut le = [0u8; 8];
    le[..size_bytes].copy_from_slice(field);
    let size = u64::from_le_bytes(le);
    // A two-byte size is stored minus 256 (RFC 8878 3.1.1.1.4).
    Ok(if size_bytes == 2 { size + 256 } else { size })
}

/// The window a brotli stream declares in its first bits (RFC 7932 9.1):
/// `(1 << WBITS) - 16`, at most 16 MiB. A stream that does not start like
/// brotli is left to the decoder to refuse.
fn brotli_window(body: &[u8]) -> usize {
    let bits = u16::from_le_bytes([body.first().copied().unwrap_or(0), body.get(1).copied().unwrap_or(0)]);
    let wbits = if bits & 1 == 0 {
        16
    } else if (bits >> 1) & 7 != 0 {
        17 + ((bits >> 1) & 7)
    } else {
        match (bits >> 4) & 7 {
            0 => 17,
            // 1 is the large-window extension, which the decoder refuses.
            n => 8 + n,
        }
    };
    (1usize << wbits.min(24)) - 16
}

/// The first size of a decoded body's buffer; it doubles from there.
const FIRST_OUTPUT: usize = 16 * 1024;

/// Where a decoder's output goes: at most `limit` bytes, every growth of
/// the buffer told to `hold` first.
struct Output<'a> {
    limit: usize,
    name: &'a str,
    hold: &'a mut dyn FnMut(usize) -> Result<(), ApiError>,
}

impl Output<'_> {
    fn inflate(self, mut decoder: impl Read) -> Result<Bytes, ApiError> {
        let Output { limit, name, hold } = self;
        let mut out = Vec::new();
        let mut held = 0;
        loop {
            // Doubling, as a Vec would, but never past one byte over the
            // limit (the byte that says the body is too large).
            let next = (out.capacity() * 2).max(FIRST_OUTPUT).min(limit + 1);
            // While the buffer moves, the old one and the new one are both held.
            let needed = out.capacity() + next;
            if needed > held {
                hold(needed - held)?;
                held = needed;
            }
            out.reserve_exact(next - out.len());
            let room = (out.capacity() - out.len()) as u64;
            let read = (&mut decoder)
                .take(room)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadEncoding(format!("{name}: {e}")))?;
            if out.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            if (read as u64) < room {
                return Ok(Bytes::from(out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header(value: &'static str) -> HeaderValue {
        HeaderValue::from_static(value)
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    #[test]
    fn identity_and_no_header_pass_through() {
        let body = Bytes::from_static(b"{}");
        assert_eq!(decode(None, body.clone(), 10, &mut |_| Ok(())).unwrap(), body);
        assert_eq!(
            decode(Some(&header("identity")), body.clone(), 10, &mut |_| Ok(())).unwrap(),
            body
        );
    }

    #[test]
    fn gzip_and_deflate_decode() {
        let event = br#"{"event":"click"}"#;
        assert_eq!(
            &decode(Some(&header("gzip")), gzip(event), 100, &mut |_| Ok(())).unwrap()[..],
            event
        );
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(event).unwrap();
        let deflated = Bytes::from(zlib.finish().unwrap());
        assert_eq!(
            &decode(Some(&header("deflate")), deflated, 100, &mut |_| Ok(())).unwrap()[..],
            event
        );
    }

    #[test]
    fn a_zip_bomb_is_413_without_inflating_it() {
        // 64 MiB of zeros compress to ~64 KiB; the limit stops decoding at 1 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let err = decode(Some(&header("gzip")), bomb, 1024, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, ApiError::BodyTooLarge { limit: 1024 }), "{err:?}");
    }

    #[test]
    fn a_zstd_frame_with_a_window_past_the_limit_is_413_before_decoding() {
        // A frame header asking for a 2 GiB window (windowLog 31), then junk:
        // refused from its header alone.
        let mut bomb = 0xFD2F_B528u32.to_le_bytes().to_vec();
        bomb.extend_from_slice(&[0x00, (31 - 10) << 3]);
        bomb.extend_from_slice(&[0u8; 64]);
        let err = decode(Some(&header("zstd")), Bytes::from(bomb), 1 << 20, &mut |_| Ok(())).unwrap_err();
        assert!(
            matches!(err, ApiError::WindowTooLarge { window, .. } if window == 1 << 31),
            "{err:?}"
        );
        // A single-segment frame's window is its declared content size.
        let mut declared = 0xFD2F_B528u32.to_le_bytes().to_vec();
        declared.extend_from_slice(&[0xE0]);
        declared.extend_from_slice(&(1u64 << 30).to_le_bytes());
        assert_eq!(zstd_window(&declared), Ok(1 << 30));
        assert!(matches!(
            working_memory(Some(&header("zstd")), &declared, 1 << 20),
            Err(ApiError::WindowTooLarge { .. })
        ));
    }

    #[test]
    fn a_zstd_frame_from_a_stock_encoder_decodes() {
        // `zstd -3` of `{"event":"click"}` from a file: a single-segment frame.
        let frame = [
            0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x11, 0x89, 0x00, 0x00, 0x7b, 0x22, 0x65, 0x76, 0x65, 0x6e, 0x74, 0x22, 0x3a,
            0x22, 0x63, 0x6c, 0x69, 0x63, 0x6b, 0x22, 0x7d, 0x79, 0xf2, 0x8b, 0x06,
        ];
        assert_eq!(zstd_window(&frame), Ok(17));
        let decoded = decode(Some(&header("zstd")), Bytes::copy_from_slice(&frame), 100, &mut |_| {
            Ok(())
        })
        .unwrap();
        assert_eq!(&decoded[..], br#"{"event":"click"}"#);
        // The same from a pipe: no content size, a 2 MiB window (windowLog 21).
        let mut streamed = frame;
        streamed[4..6].copy_from_slice(&[0x04, 0x58]);
        assert_eq!(zstd_window(&streamed), Ok(1 << 21));
    }

    #[test]
    fn brotli_windows_are_read_from_the_stream_header() {
        assert_eq!(brotli_window(&[0b0000_0000]), (1 << 16) - 16);
        // WBITS 22 (quality 11's default): 1 + (5 << 1).
        assert_eq!(brotli_window(&[0b0000_1011]), (1 << 22) - 16);
        // WBITS 24, the largest a standard stream declares.
        assert_eq!(brotli_window(&[0b0000_1111]), (1 << 24) - 16);
        assert_eq!(brotli_window(&[0b0000_0001]), (1 << 17) - 16);
    }

    #[test]
    fn the_output_buffer_is_held_before_it_grows() {
        let body = vec![b'x'; 100_000];
        let mut told = 0;
        let decoded = decode(Some(&header("gzip")), gzip(&body), 1 << 20, &mut |n| {
            told += n;
            Ok(())
        })
        .unwrap();
        assert_eq!(&decoded[..], &body[..]);
        // 16, 32, 64 and 128 KiB buffers, each moved into the next.
        assert!((128 * 1024..=4 * 128 * 1024).contains(&told), "{told}");

        let mut left: usize = 40 * 1024;
        let err = decode(Some(&header("gzip")), gzip(&body), 1 << 20, &mut |n| {
            left = left.checked_sub(n).ok_or(ApiError::Overloaded("no room"))?;
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(err, ApiError::Overloaded(_)),
            "stopped before it grew: {err:?}"
        );
    }

    #[test]
    fn unknown_encodings_are_415_and_corrupt_streams_400() {
        let err = decode(Some(&header("compress")), Bytes::from_static(b"x"), 10, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, ApiError::UnsupportedEncoding(_)), "{err:?}");
        for encoding in ["gzip", "deflate", "br", "zstd"] {
            let err = decode(
                Some(&HeaderValue::from_static(encoding)),
                Bytes::from_static(b"not compressed"),
                100,
                &mut |_| Ok(()),
            );
            assert!(matches!(err, Err(ApiError::BadEncoding(_))), "{encoding}: {err:?}");
        }
    }
}
