//! `X-Partition-Key` handling: any header bytes either give a key of 1 to 256
//! characters or a clean refusal, never a panic.
#![no_main]

use clickstream_gateway::partition_key::resolve;

/// Kinesis's limit.
const MAX_CHARS: usize = 256;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = resolve(Some(data), MAX_CHARS) {
        let chars = key.chars().count();
        assert!((1..=MAX_CHARS).contains(&chars));
        assert_eq!(key.as_bytes(), data);
    }
});
