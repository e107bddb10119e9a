//! `Content-Encoding` decoding: any bytes under any supported encoding decode
//! within the limit or are refused; never a panic, never more than the limit.
#![no_main]

use bytes::Bytes;
use clickstream_gateway::encoding::decode;
use clickstream_gateway::error::ApiError;
use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;
const ENCODINGS: [&str; 6] = ["gzip", "deflate", "br", "zstd", "identity", "x-unknown"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let encoding = HeaderValue::from_static(ENCODINGS[selector as usize % ENCODINGS.len()]);
    match decode(Some(&encoding), Bytes::copy_from_slice(body), LIMIT, &mut |_| Ok(())) {
        Ok(decoded) => assert!(decoded.len() <= LIMIT || encoding == "identity"),
        Err(ApiError::BodyTooLarge { .. } | ApiError::BadEncoding(_) | ApiError::UnsupportedEncoding(_)) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
