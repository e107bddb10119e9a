//! How deeply a JSON text nests: the one check every door that validates
//! JSON runs on each event before it becomes a record (`JSON_MAX_DEPTH`).
//!
//! The gateway itself never recurses into what it does not read (serde_json
//! skips unread values without recursion), so a deep value costs it
//! nothing; but every consumer of the stream parses the record, and most
//! stop long before 200,000 levels: Python's `json` near 1,000, Jackson at
//! 1,000, serde_json at 128, BigQuery's JSON type at 500. A record none of
//! them can read is refused at the door instead. `/import` stores its body
//! as raw bytes and does not look.

/// The default deepest nesting accepted: every common consumer reads it.
pub(crate) const DEFAULT_MAX_DEPTH: usize = 64;

/// Whether `text` (valid JSON) nests objects and arrays more than `max`
/// deep: `{}` is 1 deep, `{"a":[1]}` is 2.
pub(crate) fn too_deep(text: &[u8], max: usize) -> bool {
    // A text cannot nest deeper than it has openers, and counting them is
    // a loop the compiler vectorises: most events stop here.
    openers(text) > max && deeper_than(text, max)
}

/// How many `{` and `[` bytes `text` holds, strings included.
fn openers(text: &[u8]) -> usize {
    // `{` (0x7b) and `[` (0x5b) differ only in bit 0x20, so one compare finds
    // both; a `u8` count per chunk of 255 (it cannot overflow) lets the
    // compiler compare 16 bytes at a time. `filter().count()` into a `usize`
    // compiled to 4 bytes a step: 5.2 instructions per byte against 0.7,
    // by callgrind on bench/run.py's PostHog body.
    text.chunks(255)
        .map(|chunk| chunk.iter().fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{')) as usize)
        .sum()
}

/// The exact walk, outside strings.
fn deeper_than(text: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!(r#"{{"p":{}1{}}}"#, "[".repeat(depth - 1), "]".repeat(depth - 1))
    }

    #[test]
    fn depth_is_counted_at_the_limit_and_one_past_it() {
        for max in [1, 2, 64, 1000] {
            assert!(!too_deep(nested(max).as_bytes(), max), "{max} deep passes");
            assert!(too_deep(nested(max + 1).as_bytes(), max), "{} deep fails", max + 1);
        }
        assert!(too_deep(nested(200_000).as_bytes(), 64));
    }

    #[test]
    fn openers_are_counted_across_chunks() {
        let text: Vec<u8> = (0..2000u32).map(|i| b"{[]}a\"{"[i as usize % 7]).collect();
        let expected = text.iter().filter(|&&b| b == b'{' || b == b'[').count();
        assert_eq!(openers(&text), expected);
        assert_eq!(openers(&[b'{'; 600]), 600);
        assert_eq!(openers(b"{[{[ ;;"), 4);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(r#"{{"a":"{}","b":"\"[[","c":[{{}}]}}"#, "[{".repeat(100));
        assert!(!too_deep(text.as_bytes(), 3));
        assert!(too_deep(text.as_bytes(), 2));
        // Siblings are not depth: many objects side by side.
        let wide = format!("[{}{{}}]", "{},".repeat(1000));
        assert!(!too_deep(wide.as_bytes(), 2));
    }
}
