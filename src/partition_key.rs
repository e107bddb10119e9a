//! Partition keys: a client's own from `X-Partition-Key`, or a random one.
//!
//! Kinesis hashes the key to pick a shard. A random UUID per record spreads
//! load evenly over shards; a client that needs ordering for a user or session
//! sends its own key, and records with one key keep their order in one shard.

/// The request header that sets a record's partition key.
pub const HEADER: &str = "x-partition-key";

/// Kinesis's limit on a partition key, in Unicode characters.
pub const MAX_CHARS: usize = 256;

/// Why a client's partition key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPartitionKey {
    /// The header is present but empty.
    #[error("X-Partition-Key is empty; send 1 to 256 characters or omit the header")]
    Empty,
    /// Longer than Kinesis allows.
    #[error("X-Partition-Key has {0} characters; the limit is 256")]
    TooLong(usize),
    /// Not UTF-8 text.
    #[error("X-Partition-Key is not valid UTF-8")]
    NotUtf8,
}

/// The key for one record: the header's value when given, else a random UUID.
pub fn resolve(header: Option<&[u8]>) -> Result<String, InvalidPartitionKey> {
    let Some(raw) = header else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let key = std::str::from_utf8(raw).map_err(|_| InvalidPartitionKey::NotUtf8)?;
    match key.chars().count() {
        0 => Err(InvalidPartitionKey::Empty),
        n if n > MAX_CHARS => Err(InvalidPartitionKey::TooLong(n)),
        _ => Ok(key.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_header_gets_a_fresh_uuid() {
        let a = resolve(None).unwrap();
        let b = resolve(None).unwrap();
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
    }

    #[test]
    fn limit_counts_characters_not_bytes() {
        let at_limit = "é".repeat(MAX_CHARS); // 512 bytes, 256 characters
        assert_eq!(resolve(Some(at_limit.as_bytes())).unwrap(), at_limit);
        let over = "a".repeat(MAX_CHARS + 1);
        assert_eq!(resolve(Some(over.as_bytes())), Err(InvalidPartitionKey::TooLong(257)));
    }

    #[test]
    fn empty_and_non_utf8_are_refused() {
        assert_eq!(resolve(Some(b"")), Err(InvalidPartitionKey::Empty));
        assert_eq!(resolve(Some(b"\xff\xfe")), Err(InvalidPartitionKey::NotUtf8));
        assert_eq!(resolve(Some(b"user-42")).unwrap(), "user-42");
    }
}
