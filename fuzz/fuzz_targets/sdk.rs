//! The analytics SDKs' parsers (Segment, PostHog, Snowplow POST and GET) on
//! arbitrary bodies: a 4xx or records, never a panic; every record a JSON
//! object naming its protocol, within the record limit, with a Kinesis-valid
//! partition key; every event either a record or a rejection.
#![no_main]

use clickstream_gateway::endpoints::sdk::posthog::PostHog;
use clickstream_gateway::endpoints::sdk::segment::Segment;
use clickstream_gateway::endpoints::sdk::snowplow::Snowplow;
use clickstream_gateway::endpoints::sdk::{Context, Events, Protocol, Received};
use clickstream_gateway::sink::RecordRules;
use libfuzzer_sys::fuzz_target;

const MAX_RECORD: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let kinds = [Segment::BATCH, Segment::event("track"), Segment::event("page")];
    let protocol: &dyn Protocol = match selector % 4 {
        0 => &kinds[usize::from(selector / 4) % 3],
        1 => &PostHog,
        2 => &Snowplow { pixel: false },
        _ => &Snowplow { pixel: true },
    };
    let headers = hyper::HeaderMap::new();
    let query = String::from_utf8_lossy(body);
    let request = Received {
        query: &query,
        max_body: 64 * 1024,
        ..Received::body(body, &headers)
    };
    let context = Context::plain(protocol.name());
    let decoded = protocol.decode(&request, &context, 50, Events::new(RecordRules { max_bytes: MAX_RECORD, max_key_chars: 256 }));
    let Ok(decoded) = decoded else { return };
    let events = decoded.events;
    for record in events.records() {
        assert!(record.size() <= MAX_RECORD);
        let keys = record.partition_key.chars().count();
        assert!((1..=256).contains(&keys), "partition key of {keys} characters");
        let json: serde_json::Value = serde_json::from_slice(&record.data).expect("records are JSON");
        assert_eq!(json["_gateway"]["protocol"], protocol.name());
    }
    assert!(!events.records().is_empty() || !events.rejected().is_empty());
});
