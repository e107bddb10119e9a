//! The allowances as a door meets them: refusals, blocks, the file, the
//! cap on tracked sources, the labels.

use std::sync::Arc;

use super::*;
use crate::config::QuotaConfig;

fn quotas(config: QuotaConfig) -> (Arc<Quotas>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (Quotas::new(&config, metrics.clone()).unwrap(), metrics)
}

fn limited(per_second: f64, burst: u64) -> QuotaConfig {
    QuotaConfig {
        default: Some(Allowance { per_second, burst }),
        ..QuotaConfig::default()
    }
}

fn code<T>(result: Result<T, ApiError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(err) => err.status().1,
    }
}

#[test]
fn without_limits_nothing_is_counted() {
    let (quotas, _) = quotas(QuotaConfig::default());
    for _ in 0..1000 {
        assert_eq!(code(quotas.admit(&[("wk", 1_000_000)], quotas.now())), "ok");
    }
    assert!(quotas.lock().sources.is_empty());
}

#[test]
fn one_source_over_its_allowance_leaves_another_untouched() {
    let (quotas, metrics) = quotas(limited(1.0, 10));
    assert_eq!(code(quotas.admit(&[("flood", 6)], quotas.now())), "ok");
    assert_eq!(code(quotas.admit(&[("flood", 4)], quotas.now())), "ok");
    let refused = quotas.admit(&[("flood", 3)], quotas.now()).unwrap_err();
    assert_eq!(refused.status().1, "rate_limited");
    // Three events at one a second: about three seconds away.
    let ApiError::RateLimited { key, retry_after } = &refused else {
        panic!("{refused:?}")
    };
    assert!((2..=3).contains(retry_after), "{retry_after}");
    assert_eq!(key, &mask("flood"));
    assert_eq!(code(quotas.admit(&[("calm", 10)], quotas.now())), "ok");
    // More at once than the burst can never fit: 413, not a 429 forever.
    assert_eq!(code(quotas.admit(&[("calm", 11)], quotas.now())), "over_burst");
    let text = metrics.render();
    assert!(
        text.contains(r#"source_events_total{source="other",outcome="accepted"} 20"#),
        "{text}"
    );
    // Refused: the three over the allowance and the eleven over the burst.
    assert!(
        text.contains(r#"source_events_total{source="other",outcome="rate_limited"} 14"#),
        "{text}"
    );
}

#[test]
fn a_request_from_many_sources_is_taken_from_all_or_none() {
    let (quotas, _) = quotas(limited(1.0, 5));
    assert_eq!(code(quotas.admit(&[("a", 5)], quotas.now())), "ok");
    assert_eq!(code(quotas.admit(&[("b", 2), ("a", 1)], quotas.now())), "rate_limited");
    // b's two were not taken: its whole burst is still there.
    assert_eq!(code(quotas.admit(&[("b", 5)], quotas.now())), "ok");
}

#[test]
fn the_file_blocks_and_overrides_and_a_bad_one_keeps_the_last_good() {
    let dir = tempfile_dir();
    let path = dir.join("sources.toml");
    std::fs::write(
        &path,
        "[sources.\"bad\"]\nblocked = true\n[sources.\"big\"]\nevents_per_second = 100\n",
    )
    .unwrap();
    let config = QuotaConfig {
        sources_file: Some(path.clone()),
        ..limited(1.0, 2)
    };
    let (quotas, metrics) = quotas(config);
    assert_eq!(code(quotas.admit(&[("bad", 1)], quotas.now())), "source_blocked");
    assert_eq!(code(quotas.admit(&[("big", 100)], quotas.now())), "ok");
    assert_eq!(code(quotas.admit(&[("small", 3)], quotas.now())), "over_burst");
    std::fs::write(&path, "[sources.\"bad\"\n").unwrap();
    assert!(file::load(&quotas, &path).is_err());
    assert_eq!(code(quotas.admit(&[("bad", 1)], quotas.now())), "source_blocked");
    std::fs::write(&path, "").unwrap();
    assert_eq!(file::load(&quotas, &path), Ok(0));
    assert_eq!(code(quotas.admit(&[("bad", 1)], quotas.now())), "ok");
    assert!(metrics.render().contains(r#"outcome="blocked"} 2"#));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sources_past_the_cap_share_one_allowance_and_idle_ones_are_forgotten() {
    let config = QuotaConfig {
        max_tracked: 3,
        ..limited(1.0, 4)
    };
    let (quotas, _) = quotas(config);
    for key in ["a", "b", "c"] {
        assert_eq!(code(quotas.admit(&[(key, 1)], quotas.now())), "ok");
    }
    // Invented keys: the fourth and later share one bucket of four.
    for n in 0..4 {
        assert_eq!(code(quotas.admit(&[(&format!("invented-{n}"), 1)], quotas.now())), "ok");
    }
    assert_eq!(code(quotas.admit(&[("invented-99", 1)], quotas.now())), "rate_limited");
    assert_eq!(quotas.lock().sources.len(), 3);
    // Full and quiet for long enough: forgotten, and a new key has room.
    for source in quotas.lock().sources.values_mut() {
        source.last -= FORGET_AFTER_SECS + 10.0;
        if let Some((_, bucket)) = &mut source.limit {
            *bucket = Bucket::full(
                &Allowance {
                    per_second: 1.0,
                    burst: 4,
                },
                0.0,
            );
        }
    }
    quotas.tidy();
    assert!(quotas.lock().sources.is_empty());
    assert_eq!(code(quotas.admit(&[("new", 4)], quotas.now())), "ok");
}

#[test]
fn only_the_busiest_sources_get_a_label_of_their_own() {
    let (quotas, metrics) = quotas(limited(1000.0, 100_000));
    let send = |events: &dyn Fn(u64) -> u64| {
        for n in 0..40u64 {
            let key = format!("source-{n:02}-key");
            assert_eq!(code(quotas.admit(&[(&key, events(n))], quotas.now())), "ok");
        }
    };
    let accepted = |text: &str, label: &str| -> Option<u64> {
        let line = format!(r#"source_events_total{{source="{label}",outcome="accepted"}} "#);
        text.lines().find_map(|l| l.strip_prefix(line.as_str())?.parse().ok())
    };
    send(&|n| n + 1);
    quotas.tidy();
    let text = metrics.render();
    // What was sent before the labels were handed out stays `other`'s.
    assert_eq!(accepted(&text, "other"), Some((1..=40).sum()), "{text}");
    send(&|_| 1);
    let text = metrics.render();
    let sources: std::collections::HashSet<_> = text
        .lines()
        .filter_map(|l| l.strip_prefix("source_events_total{source=\""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert_eq!(sources.len(), MAX_LABELS + 1, "{sources:?}");
    // The busiest (source-39) is labelled by its masked key, never in full;
    // the 24 quietest are still `other`.
    assert_eq!(accepted(&text, &mask("source-39-key")), Some(1), "{text}");
    assert!(!text.contains("source-39-key"), "{text}");
    assert_eq!(accepted(&text, "other"), Some(820 + 24), "{text}");
}

#[test]
fn hot_keys_are_spread_limited_or_left_alone() {
    let rules = RecordRules {
        max_bytes: 1024,
        max_key_chars: 256,
    };
    let records = |n: usize| -> Vec<Record> {
        (0..n)
            .map(|_| Record {
                data: bytes::Bytes::from_static(b"{}"),
                partition_key: "user-1".into(),
            })
            .collect()
    };
    let hot = |policy| QuotaConfig {
        hot_key_per_second: 10,
        hot_key_policy: policy,
        ..QuotaConfig::default()
    };
    let (spread, metrics) = quotas(hot(HotKeyPolicy::Spread));
    let mut batch = records(30);
    spread.cool(&mut batch, rules, "", 0.0).unwrap();
    let keys: std::collections::HashSet<_> = batch.iter().map(|r| r.partition_key.as_str()).collect();
    assert!(batch[..10].iter().all(|r| r.partition_key == "user-1"));
    assert_eq!(keys.len(), 21, "{keys:?}");
    assert!(metrics.render().contains(r#"outcome="spread"} 20"#));

    let (limit, _) = quotas(hot(HotKeyPolicy::Limit));
    limit.cool(&mut records(10), rules, "", 0.0).unwrap();
    assert_eq!(code(limit.cool(&mut records(1), rules, "", 0.0)), "rate_limited");

    let (off, _) = quotas(hot(HotKeyPolicy::Off));
    let mut batch = records(30);
    off.cool(&mut batch, rules, "", 0.0).unwrap();
    assert!(batch.iter().all(|r| r.partition_key == "user-1"));
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quota-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keyed(key: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|_| Record {
            data: bytes::Bytes::from_static(b"{}"),
            partition_key: key.into(),
        })
        .collect()
}

#[test]
fn a_request_refused_for_a_hot_key_takes_nothing_from_its_source() {
    let rules = RecordRules {
        max_bytes: 1024,
        max_key_chars: 256,
    };
    let config = QuotaConfig {
        hot_key_per_second: 3,
        hot_key_policy: HotKeyPolicy::Limit,
        ..limited(1.0, 4)
    };
    let (quotas, _) = quotas(config);
    // The fourth record of one key in a second is one too many.
    assert_eq!(
        code(quotas.hold(&[("src", 4)], &mut keyed("hot", 4), rules)),
        "rate_limited"
    );
    // The source's four events are all still there for other keys.
    let mut four: Vec<Record> = ["a", "b", "c", "d"].iter().flat_map(|k| keyed(k, 1)).collect();
    assert_eq!(code(quotas.hold(&[("src", 4)], &mut four, rules)), "ok");
    assert_eq!(
        code(quotas.hold(&[("src", 1)], &mut keyed("e", 1), rules)),
        "rate_limited"
    );
}
