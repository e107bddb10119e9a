//! Reading a body in arbitrary chunks: the result is the chunks joined when
//! they fit the limit, 413 when they do not; never a panic.
#![no_main]

use bytes::Bytes;
use clickstream_gateway::body::{BodyHints, read_limited};
use clickstream_gateway::error::ApiError;
use http_body_util::StreamBody;
use hyper::body::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else { return };
    let limit = limit as usize * 4;
    // Chunk sizes come from the input itself: each chunk is led by its length byte.
    let mut chunks = Vec::new();
    let mut input = rest;
    while let Some((&len, tail)) = input.split_first() {
        let (chunk, tail) = tail.split_at((len as usize).min(tail.len()));
        chunks.push(Ok::<_, std::convert::Infallible>(Frame::data(Bytes::copy_from_slice(chunk))));
        input = tail;
    }
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.as_ref().unwrap().data_ref().unwrap().to_vec()).collect();
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let timeout = std::time::Duration::from_secs(5);
    match runtime.block_on(read_limited(body, limit, timeout, BodyHints::default())) {
        Ok(read) => assert_eq!(&read[..], &expected[..]),
        Err(ApiError::BodyTooLarge { .. }) => assert!(expected.len() > limit),
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
