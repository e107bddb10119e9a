//! `Content-Encoding` of request bodies: `gzip`, `deflate`, `zstd` and `br`
//! are decoded before the record is stored, so the stream always holds the
//! event itself.
//!
//! Decoding stops one byte past the record limit, so a zip bomb costs at most
//! that much memory and gets 413 without being inflated. An encoding we do
//! not know is 415; a stream that does not decode is 400.

use std::io::Read;

use bytes::Bytes;
use hyper::header::HeaderValue;

use crate::error::ApiError;

/// Decodes `body` as `encoding` says, refusing output over `limit` bytes.
pub fn decode(encoding: Option<&HeaderValue>, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let Some(encoding) = encoding else {
        return Ok(body);
    };
    let name = encoding.to_str().unwrap_or_default().trim().to_ascii_lowercase();
    let input = &body[..];
    match name.as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(input), limit, &name),
        "deflate" => inflate(flate2::read::ZlibDecoder::new(input), limit, &name),
        "br" => inflate(brotli_decompressor::Decompressor::new(input, 4096), limit, &name),
        "zstd" => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| ApiError::BadEncoding(format!("zstd: {e}")))?;
            inflate(decoder, limit, &name)
        }
        _ => Err(ApiError::UnsupportedEncoding(name)),
    }
}

fn inflate(decoder: impl Read, limit: usize, name: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadEncoding(format!("{name}: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(out))
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
        assert_eq!(decode(None, body.clone(), 10).unwrap(), body);
        assert_eq!(decode(Some(&header("identity")), body.clone(), 10).unwrap(), body);
    }

    #[test]
    fn gzip_and_deflate_decode() {
        let event = br#"{"event":"click"}"#;
        assert_eq!(&decode(Some(&header("gzip")), gzip(event), 100).unwrap()[..], event);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(event).unwrap();
        let deflated = Bytes::from(zlib.finish().unwrap());
        assert_eq!(&decode(Some(&header("deflate")), deflated, 100).unwrap()[..], event);
    }

    #[test]
    fn a_zip_bomb_is_413_without_inflating_it() {
        // 64 MiB of zeros compress to ~64 KiB; the limit stops decoding at 1 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let err = decode(Some(&header("gzip")), bomb, 1024).unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge { limit: 1024 }), "{err:?}");
    }

    #[test]
    fn unknown_encodings_are_415_and_corrupt_streams_400() {
        let err = decode(Some(&header("compress")), Bytes::from_static(b"x"), 10).unwrap_err();
        assert!(matches!(err, ApiError::UnsupportedEncoding(_)), "{err:?}");
        for encoding in ["gzip", "deflate", "br", "zstd"] {
            let err = decode(
                Some(&HeaderValue::from_static(encoding)),
                Bytes::from_static(b"not compressed"),
                100,
            );
            assert!(matches!(err, Err(ApiError::BadEncoding(_))), "{encoding}: {err:?}");
        }
    }
}
