//! Partition keys: which shard a record goes to, and so which records keep
//! their order together.
//!
//! In order of precedence, for every endpoint that takes events:
//! 1. `X-Partition-Key` (1 to the sink's key limit in Unicode characters:
//!    256 for Kinesis) applies to every record of the request;
//! 2. else, with `PARTITION_KEY_FIELDS` set, the first JSON Pointer that
//!    resolves to a non-empty string or a number in the record is its key, so
//!    one user's events stay in one shard, in order;
//! 3. else a random UUID per record, which spreads load evenly over shards.
//!
//! A key taken from a record that is longer than the sink allows is replaced
//! by [`shorten`]: `sha256:` and the hex SHA-256 of the key (71 characters),
//! stable across instances and restarts, so the same user still maps to the
//! same shard.

use sha2::{Digest, Sha256};

/// The request header that sets every record's partition key.
pub const HEADER: &str = "x-partition-key";

/// Why a client's partition key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPartitionKey {
    /// The header is present but empty.
    #[error("X-Partition-Key is empty; send at least one character or omit the header")]
    Empty,
    /// Longer than the sink allows.
    #[error("X-Partition-Key has {chars} characters; the limit is {max}")]
    TooLong {
        /// The key's length in characters.
        chars: usize,
        /// The sink's limit.
        max: usize,
    },
    /// Not UTF-8 text.
    #[error("X-Partition-Key is not valid UTF-8")]
    NotUtf8,
}

/// The `X-Partition-Key` header's key, checked against the sink's
/// `max_chars`; `None` when absent.
pub fn from_header(header: Option<&[u8]>, max_chars: usize) -> Result<Option<String>, InvalidPartitionKey> {
    let Some(raw) = header else { return Ok(None) };
    let key = std::str::from_utf8(raw).map_err(|_| InvalidPartitionKey::NotUtf8)?;
    match key.chars().count() {
        0 => Err(InvalidPartitionKey::Empty),
        chars if chars > max_chars => Err(InvalidPartitionKey::TooLong { chars, max: max_chars }),
        _ => Ok(Some(key.to_owned())),
    }
}

/// The key for one record of an `/import` request: the header's value when
/// given, else a random UUID. (Kept for the fuzz target and callers that have
/// no record fields to look at.)
pub fn resolve(header: Option<&[u8]>, max_chars: usize) -> Result<String, InvalidPartitionKey> {
    Ok(from_header(header, max_chars)?.unwrap_or_else(random))
}

/// A fresh random key.
pub fn random() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `key` itself when it has at most `max_chars` characters, else its
/// stable hashed form.
pub fn shorten(key: &str, max_chars: usize) -> String {
    if key.chars().count() <= max_chars {
        return key.to_owned();
    }
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().fold(String::from("sha256:"), |mut out, byte| {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}"); // writing to a String cannot fail
        out
    })
}

/// The JSON Pointers of `PARTITION_KEY_FIELDS`, tried in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFields {
    pointers: Vec<String>,
}

impl KeyFields {
    /// From pointers such as `/userId` or `/context/device/id` (RFC 6901).
    pub fn new(pointers: Vec<String>) -> Self {
        KeyFields { pointers }
    }

    /// Whether any pointer is configured.
    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty()
    }

    /// The key for one record, from its JSON: the first pointer that
    /// resolves to a non-empty string or a number, shortened when over
    /// `max_chars`; `None` when the record is not JSON or none resolves.
    pub fn key_of(&self, data: &[u8], max_chars: usize) -> Option<String> {
        if self.pointers.is_empty() {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(data).ok()?;
        self.pointers.iter().find_map(|pointer| match value.pointer(pointer)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(shorten(s, max_chars)),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinesis's limit, the one these tests use.
    const MAX_CHARS: usize = 256;

    #[test]
    fn missing_header_gets_a_fresh_uuid() {
        let a = resolve(None, MAX_CHARS).unwrap();
        let b = resolve(None, MAX_CHARS).unwrap();
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
    }

    #[test]
    fn limit_counts_characters_not_bytes() {
        let at_limit = "é".repeat(MAX_CHARS); // 512 bytes, 256 characters
        assert_eq!(resolve(Some(at_limit.as_bytes()), MAX_CHARS).unwrap(), at_limit);
        let over = "a".repeat(MAX_CHARS + 1);
        assert_eq!(
            resolve(Some(over.as_bytes()), MAX_CHARS),
            Err(InvalidPartitionKey::TooLong { chars: 257, max: 256 })
        );
    }

    #[test]
    fn empty_and_non_utf8_are_refused() {
        assert_eq!(resolve(Some(b""), MAX_CHARS), Err(InvalidPartitionKey::Empty));
        assert_eq!(resolve(Some(b"\xff\xfe"), MAX_CHARS), Err(InvalidPartitionKey::NotUtf8));
        assert_eq!(resolve(Some(b"user-42"), MAX_CHARS).unwrap(), "user-42");
    }

    fn fields(pointers: &[&str]) -> KeyFields {
        KeyFields::new(pointers.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn the_first_pointer_that_resolves_wins() {
        let f = fields(&["/userId", "/anonymousId", "/context/device/id"]);
        assert_eq!(
            f.key_of(br#"{"userId":"u1","anonymousId":"a1"}"#, MAX_CHARS).as_deref(),
            Some("u1")
        );
        assert_eq!(
            f.key_of(br#"{"userId":"","anonymousId":"a1"}"#, MAX_CHARS).as_deref(),
            Some("a1")
        );
        assert_eq!(
            f.key_of(br#"{"userId":null,"context":{"device":{"id":"d"}}}"#, MAX_CHARS)
                .as_deref(),
            Some("d")
        );
        assert_eq!(f.key_of(br#"{"userId":42}"#, MAX_CHARS).as_deref(), Some("42"));
        assert_eq!(f.key_of(br#"{"userId":1.5e3}"#, MAX_CHARS).as_deref(), Some("1500.0"));
        assert_eq!(
            f.key_of(br#"{"userId":{"nested":1}}"#, MAX_CHARS),
            None,
            "objects are not keys"
        );
        assert_eq!(f.key_of(b"not json", MAX_CHARS), None);
        assert_eq!(fields(&[]).key_of(br#"{"userId":"u"}"#, MAX_CHARS), None);
    }

    #[test]
    fn long_keys_are_hashed_stably() {
        let long = "u".repeat(MAX_CHARS + 1);
        let hashed = shorten(&long, MAX_CHARS);
        assert_eq!(hashed.len(), 71);
        assert!(hashed.starts_with("sha256:"));
        assert_eq!(hashed, shorten(&long, MAX_CHARS), "stable");
        assert_ne!(hashed, shorten(&"u".repeat(MAX_CHARS + 2), MAX_CHARS));
        let at_limit = "é".repeat(MAX_CHARS);
        assert_eq!(
            shorten(&at_limit, MAX_CHARS),
            at_limit,
            "256 characters are kept as they are"
        );
        let record = format!(r#"{{"userId":"{long}"}}"#);
        assert_eq!(fields(&["/userId"]).key_of(record.as_bytes(), MAX_CHARS), Some(hashed));
    }
}
