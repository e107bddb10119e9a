//! Reading a request body within a byte limit and a deadline.
//!
//! Never buffers more than the limit: a declared `Content-Length` over it is
//! refused before reading, and a chunked body is cut off at the limit. Before
//! answering 413 the rest of an oversized body is read and thrown away (up to
//! [`DRAIN_MAX`] bytes, within the same deadline), because closing a socket
//! with unread data makes the kernel send a reset that can destroy the 413 on
//! its way to the client.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::time::{Duration, Instant, timeout_at};

use crate::error::ApiError;

/// How much of an oversized body is discarded so the client can read its 413.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// A request body the gateway can read: bytes, `Unpin`, and errors it can
/// log. Every handler takes its request's body through this one bound.
pub trait RequestBody: Body<Data = Bytes, Error: std::fmt::Display> + Unpin {}

impl<B> RequestBody for B
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
}

/// What the request head says about its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyHints {
    /// The client sent `Expect: 100-continue` and waits before sending the body.
    pub expects_continue: bool,
    /// The body is kept while the request waits (its bytes are the
    /// records'): a body that came in one chunk, a view into hyper's
    /// connection buffer, is then copied to its own size.
    pub kept: bool,
}

/// Reads `body` whole, failing with 413 past `limit` bytes and 408 past `timeout`.
pub async fn read_limited<B>(mut body: B, limit: usize, timeout: Duration, hints: BodyHints) -> Result<Bytes, ApiError>
where
    B: RequestBody,
{
    let deadline = Instant::now() + timeout;
    let declared = body.size_hint().exact();
    if declared.is_some_and(|len| len > limit as u64) {
        // A client waiting for `100 Continue` will not send the body at all.
        if !hints.expects_continue && declared.is_some_and(|len| len <= limit as u64 + DRAIN_MAX) {
            drain(&mut body, deadline).await;
        }
        return Err(ApiError::BodyTooLarge { limit });
    }

    let mut first: Option<Bytes> = None;
    // Sized by Content-Length when it is sent (within the limit, checked
    // above): a 45 KB batch in hyper's chunks grew by doubling otherwise,
    // ten reallocations and their copies per request.
    let mut joined = BytesMut::new();
    let mut reserve = declared.map_or(0, |len| len as usize);
    let mut len = 0usize;
    while let Some(frame) = next_frame(&mut body, deadline, timeout).await? {
        let Ok(chunk) = frame.into_data() else { continue };
        len += chunk.len();
        if len > limit {
            drain(&mut body, deadline).await;
            return Err(ApiError::BodyTooLarge { limit });
        }
        // One chunk is the common case: no joining needed.
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            previous => {
                joined.reserve(std::mem::take(&mut reserve));
                if let Some(previous) = previous {
                    joined.extend_from_slice(&previous);
                }
                joined.extend_from_slice(&chunk);
            }
        }
    }
    // A lone chunk is a view into hyper's connection read buffer; holding it
    // while the record waits for Kinesis would pin that whole buffer (8 KiB
    // or more) per request. A right-sized copy frees it at once. A body
    // read and dropped before the request waits (the SDK doors make their
    // records of copies) is not copied: about 1 instruction per byte, a
    // tenth of a PostHog event's floor (docs/benchmarks.md).
    Ok(match first {
        None => joined.freeze(),
        Some(chunk) if hints.kept => Bytes::copy_from_slice(&chunk),
        Some(chunk) => chunk,
    })
}

async fn next_frame<B>(
    body: &mut B,
    deadline: Instant,
    timeout: Duration,
) -> Result<Option<hyper::body::Frame<Bytes>>, ApiError>
where
    B: RequestBody,
{
    match timeout_at(deadline, body.frame()).await {
        Err(_) => Err(ApiError::BodyTimeout(timeout)),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => Err(ApiError::BodyRead(e.to_string())),
        Ok(Some(Ok(frame))) => Ok(Some(frame)),
    }
}

/// Reads and throws away a body whose declared length is at most `max`
/// bytes, for at most `wait`: after an answer given before the body was
/// read, this keeps a keep-alive connection usable. Bodies of unknown or
/// larger length are left alone (the connection then closes).
pub async fn discard<B>(body: &mut B, max: u64, wait: Duration)
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().exact().is_some_and(|len| len > 0 && len <= max) {
        drain(body, Instant::now() + wait).await;
    }
}

/// Reads and discards up to [`DRAIN_MAX`] bytes, until the body ends or the deadline.
async fn drain<B>(body: &mut B, deadline: Instant)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut drained = 0u64;
    while drained <= DRAIN_MAX {
        match timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => drained += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::stream;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;
    use std::convert::Infallible;

    const SECOND: Duration = Duration::from_secs(1);

    fn chunked(
        chunks: &[&'static [u8]],
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
        let frames: Vec<_> = chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c)))).collect();
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn joins_chunks_up_to_the_limit() {
        let body = read_limited(chunked(&[b"ab", b"cd", b"e"]), 5, SECOND, BodyHints::default())
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcde");
    }

    #[tokio::test]
    async fn a_lone_chunk_is_copied_only_when_the_body_is_kept() {
        static SENT: &[u8] = b"one chunk";
        let hints = |kept| BodyHints {
            kept,
            ..BodyHints::default()
        };
        let kept = read_limited(chunked(&[SENT]), 64, SECOND, hints(true)).await.unwrap();
        assert_eq!(&kept[..], SENT);
        assert_ne!(kept.as_ptr(), SENT.as_ptr(), "a kept body is its own copy");
        let read_and_dropped = read_limited(chunked(&[SENT]), 64, SECOND, hints(false)).await.unwrap();
        assert_eq!(read_and_dropped.as_ptr(), SENT.as_ptr(), "the chunk as it came");
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_413() {
        let err = read_limited(chunked(&[b"abc", b"def"]), 5, SECOND, BodyHints::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::BodyTooLarge { limit: 5 }), "{err:?}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_413() {
        let body = Full::new(Bytes::from_static(b"abcdef"));
        let err = read_limited(body, 5, SECOND, BodyHints::default()).await.unwrap_err();
        assert!(matches!(err, ApiError::BodyTooLarge { limit: 5 }), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let stalled = StreamBody::new(stream::pending::<Result<Frame<Bytes>, Infallible>>());
        let err = read_limited(stalled, 5, SECOND, BodyHints::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::BodyTimeout(_)), "{err:?}");
    }
}
