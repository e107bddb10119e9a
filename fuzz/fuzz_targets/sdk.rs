//! The analytics SDKs' parsers (Segment, PostHog, Snowplow POST and GET) on
//! arbitrary bodies: a 4xx or records, never a panic; every record a JSON
//! object naming its protocol, within the record limit, with a Kinesis-valid
//! partition key; every event either a record or a rejection.
#![no_main]

use clickstream_gateway::endpoints::sdk::{Context, Events, Protocol};
use clickstream_gateway::endpoints::{posthog, segment, snowplow};
use libfuzzer_sys::fuzz_target;

const MAX_RECORD: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let events = Events::with_limit(MAX_RECORD);
    let (protocol, decoded) = match selector % 4 {
        0 => {
            let context = Context::plain(Protocol::Segment);
            let kind = [None, Some("track"), Some("page")][usize::from(selector / 4) % 3];
            (Protocol::Segment, segment::decode(body, kind, None, &context, 50, events).map(|d| d.events))
        }
        1 => {
            let context = Context::plain(Protocol::PostHog);
            (Protocol::PostHog, posthog::decode(body, None, &context, 50, events).map(|d| d.events))
        }
        2 => {
            let context = Context::plain(Protocol::Snowplow);
            (Protocol::Snowplow, snowplow::decode(body, &context, 50, events).map(|d| d.events))
        }
        _ => {
            let context = Context::plain(Protocol::Snowplow);
            let query = String::from_utf8_lossy(body);
            (Protocol::Snowplow, snowplow::decode_query(&query, &context, events).map(|d| d.events))
        }
    };
    let Ok(events) = decoded else { return };
    for record in events.records() {
        assert!(record.size() <= MAX_RECORD);
        let keys = record.partition_key.chars().count();
        assert!((1..=256).contains(&keys), "partition key of {keys} characters");
        let json: serde_json::Value = serde_json::from_slice(&record.data).expect("records are JSON");
        assert_eq!(json["_gateway"]["protocol"], protocol.name());
    }
    assert!(!events.records().is_empty() || !events.rejected().is_empty());
});
