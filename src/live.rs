//! The live view's hub: what the doors tell it (events arriving, requests
//! refused) reaches the people watching `/live`, sampled, and nothing else.
//!
//! Its cost when nobody watches is one relaxed atomic load per request
//! ([`Hub::watched`]): the doors call [`Hub::arrived`] and [`Hub::refused`]
//! only when it is true. With viewers, each gets its own bounded queue of
//! ready-made server-sent-event frames and its own per-second cap
//! (`LIVE_EVENTS_PER_SECOND` events, and as many refusals); what the cap
//! keeps out is counted as skipped, not queued. A viewer whose queue is full (it stopped
//! reading) is dropped, never waited for, so memory is bounded by
//! [`QUEUE_FRAMES`] frames of at most [`PREVIEW_BYTES`] of payload per
//! viewer and [`MAX_VIEWERS`] viewers, whatever the event rate.
//!
//! Personal data: source keys (write keys, project tokens, API keys) are
//! never sent in full ([`mask`]), and `LIVE_PAYLOADS=false` leaves payloads
//! out. The HTTP side (auth, the page, the stream) is `endpoints/live/`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::LiveConfig;
use crate::sink::Record;

/// Frames one viewer's queue holds; a viewer this far behind is dropped.
pub(crate) const QUEUE_FRAMES: usize = 512;
/// Payload bytes shown per event; longer payloads are cut (and say so).
pub(crate) const PREVIEW_BYTES: usize = 2048;
/// Viewers at once; one more is refused (503) rather than slowing the rest.
pub(crate) const MAX_VIEWERS: usize = 16;
/// Source keys counted apart in the rates; the rest are counted as `other`.
const MAX_COUNTED_KEYS: usize = 200;

/// What a viewer asked to see (`/live/events?door=&key=&q=&refused=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A route (`/v1/batch`) or a protocol (`segment`, `import`).
    pub door: Option<String>,
    /// A source key, in full or as shown ([`mask`]).
    pub key: Option<String>,
    /// Text the payload must contain.
    pub text: Option<String>,
    /// Refusals only.
    pub refused_only: bool,
}

impl Filter {
    fn admits_door(&self, door: &str, protocol: &str) -> bool {
        self.door.as_deref().is_none_or(|d| d == door || d == protocol)
    }

    fn admits_key(&self, masked: Option<&str>) -> bool {
        match (&self.key, masked) {
            (None, _) => true,
            (Some(want), Some(masked)) => want == masked || mask(want) == masked,
            (Some(_), None) => false,
        }
    }

    fn admits_payload(&self, data: &[u8]) -> bool {
        self.text
            .as_deref()
            .is_none_or(|text| memchr::memmem::find(data, text.as_bytes()).is_some())
    }
}

/// Requests of one door: what [`Hub::arrived`] is told.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    /// The route's label (`/import`, `/v1/batch`).
    pub door: &'static str,
    /// The protocol (`import`, `segment`, `posthog`, `snowplow`).
    pub protocol: &'static str,
    /// The source key the request came with (write key, token, API key).
    pub key: Option<&'a str>,
}

impl<'a> Arrival<'a> {
    /// A request of the gateway's own API at `door`, with its API key.
    pub fn import(door: &'static str, key: Option<&'a str>) -> Self {
        Arrival {
            door,
            protocol: "import",
            key,
        }
    }
}

/// A refused request, as its client was answered.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// The route's label, or `other`.
    pub door: &'static str,
    /// The HTTP method.
    pub method: &'static str,
    /// The status answered.
    pub status: u16,
    /// The error code in the body.
    pub code: &'static str,
    /// The message in the body.
    pub message: &'a str,
    /// The request's `X-Request-Id`.
    pub request_id: &'a str,
    /// The source (or hot key) a quota refusal names, already masked.
    pub key: Option<&'a str>,
}

/// What a viewer's per-second message reports of the traffic (cumulative
/// counts since the hub started counting; the viewer turns them into rates).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Events by route.
    pub doors: HashMap<&'static str, u64>,
    /// Events by protocol.
    pub protocols: HashMap<&'static str, u64>,
    /// Events by source key, masked; keys past the first 200 as `other`.
    pub keys: HashMap<String, u64>,
    /// Requests refused, and of them answered 503.
    pub refused: u64,
    /// Refused with 503.
    pub refused_503: u64,
    /// Events an earlier copy stored, not written again (`dedupe`); counted
    /// among the events above too, since they arrived.
    pub duplicates: u64,
}

struct Viewer {
    id: u64,
    queue: mpsc::Sender<Bytes>,
    filter: Filter,
    /// Events and refusals each have their own bucket, so a flood of
    /// events never hides a refusal.
    buckets: [Bucket; 2],
    skipped: u64,
}

/// Which of a viewer's two buckets a frame takes from.
#[derive(Clone, Copy)]
enum Kind {
    Event = 0,
    Refusal = 1,
}

/// A token bucket of `LIVE_EVENTS_PER_SECOND` per second holding a tenth of
/// a second's worth: the sample is spread over the second rather than
/// being its first events (which would all come from one request).
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_second: u32) -> Self {
        Bucket {
            tokens: burst(per_second),
            at: Instant::now(),
        }
    }
}

/// What a bucket holds at most: a tenth of a second's worth, at least one.
fn burst(per_second: u32) -> f64 {
    (f64::from(per_second) / 10.0).max(1.0)
}

impl Viewer {
    /// Whether the bucket of `kind` lets one more frame through now;
    /// counts a skip when it does not.
    fn take(&mut self, kind: Kind, now: Instant, per_second: u32) -> bool {
        let bucket = &mut self.buckets[kind as usize];
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(per_second)).min(burst(per_second));
        bucket.at = now;
        if bucket.tokens < 1.0 {
            self.skipped += 1;
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

#[derive(Default)]
struct State {
    viewers: Vec<Viewer>,
    counts: Counts,
}

/// The live view's hub, shared by every request.
pub struct Hub {
    config: LiveConfig,
    watchers: AtomicUsize,
    next_id: AtomicU64,
    state: Mutex<State>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .field("watchers", &self.watchers)
            .finish_non_exhaustive()
    }
}

/// Why a viewer could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_VIEWERS} viewers are watching already")]
pub struct NoRoom;

impl NoRoom {
    /// The refusal's reason, for the 503.
    pub fn reason(self) -> &'static str {
        "the live view has as many viewers as it takes; close one and retry"
    }
}

/// A viewer's place in the hub: its queue's receiving end, and its id to
/// leave with. Dropping it does not leave; [`Hub::leave`] does.
#[derive(Debug)]
pub struct Joined {
    /// The viewer's id.
    pub id: u64,
    /// Its frames.
    pub frames: mpsc::Receiver<Bytes>,
    /// A sender for the viewer's own messages (the per-second state).
    pub sender: mpsc::Sender<Bytes>,
}

impl Hub {
    /// A hub with no viewers.
    pub fn new(config: LiveConfig) -> Self {
        Hub {
            config,
            watchers: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State::default()),
        }
    }

    /// The live view's settings.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// Whether anyone watches: the only cost the request path pays otherwise.
    #[inline]
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) != 0
    }

    /// Viewers watching now.
    pub fn viewers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// A new viewer with `filter`.
    pub fn join(&self, filter: Filter) -> Result<Joined, NoRoom> {
        let mut state = self.lock();
        if state.viewers.len() >= MAX_VIEWERS {
            return Err(NoRoom);
        }
        let (sender, frames) = mpsc::channel(QUEUE_FRAMES);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        state.viewers.push(Viewer {
            id,
            queue: sender.clone(),
            filter,
            buckets: [Bucket::full(self.config.events_per_second); 2],
            skipped: 0,
        });
        self.watchers.store(state.viewers.len(), Ordering::Relaxed);
        Ok(Joined { id, frames, sender })
    }

    /// Viewer `id` leaves (its stream ended, or it fell behind).
    pub fn leave(&self, id: u64) {
        let mut state = self.lock();
        state.viewers.retain(|v| v.id != id);
        self.watchers.store(state.viewers.len(), Ordering::Relaxed);
        if state.viewers.is_empty() {
            // Counting stops with nobody watching: start afresh next time.
            state.counts = Counts::default();
        }
    }

    /// Whether viewer `id` is still in the hub.
    pub fn is_watching(&self, id: u64) -> bool {
        self.lock().viewers.iter().any(|v| v.id == id)
    }

    /// The traffic counted so far, and how many frames viewer `id` skipped.
    pub fn counts(&self, id: u64) -> (Counts, u64) {
        let state = self.lock();
        let skipped = state.viewers.iter().find(|v| v.id == id).map_or(0, |v| v.skipped);
        (state.counts.clone(), skipped)
    }

    /// A request's `records` arrived at a door: counted, and shown to the
    /// viewers whose filter and cap admit them; `duplicate`: an earlier
    /// copy stored them, so they are not written again, and shown so.
    pub fn arrived(&self, arrival: Arrival<'_>, records: &[Record], duplicate: bool) {
        if records.is_empty() {
            return;
        }
        let masked = arrival.key.map(mask);
        let now = Instant::now();
        let mut state = self.lock();
        let State { viewers, counts } = &mut *state;
        count(counts, &arrival, masked.as_deref(), records.len() as u64);
        if duplicate {
            counts.duplicates += records.len() as u64;
        }
        let mut dropped = Vec::new();
        for viewer in viewers.iter_mut() {
            let filter = &viewer.filter;
            if filter.refused_only || !filter.admits_door(arrival.door, arrival.protocol) {
                continue;
            }
            if !filter.admits_key(masked.as_deref()) {
                continue;
            }
            for record in records {
                if !viewer.filter.admits_payload(&record.data)
                    || !viewer.take(Kind::Event, now, self.config.events_per_second)
                {
                    continue;
                }
                let frame = event_frame(&arrival, masked.as_deref(), record, self.config.payloads, duplicate);
                if viewer.queue.try_send(frame).is_err() {
                    dropped.push(viewer.id);
                    break;
                }
            }
        }
        self.drop_viewers(&mut state, &dropped);
    }

    /// A request was refused: counted, and shown to the viewers whose
    /// filter and cap admit it.
    pub fn refused(&self, refusal: Refusal<'_>) {
        let now = Instant::now();
        let mut state = self.lock();
        let State { viewers, counts } = &mut *state;
        counts.refused += 1;
        counts.refused_503 += u64::from(refusal.status == 503);
        let mut frame = None;
        let mut dropped = Vec::new();
        for viewer in viewers.iter_mut() {
            let filter = &viewer.filter;
            // A refusal has no payload to match: a text filter hides it; a key
            // filter shows the refusals that name that source (quota refusals).
            if filter.text.is_some() || !filter.admits_door(refusal.door, "") {
                continue;
            }
            if filter.key.is_some() && !filter.admits_key(refusal.key) {
                continue;
            }
            if !viewer.take(Kind::Refusal, now, self.config.events_per_second) {
                continue;
            }
            let frame = frame.get_or_insert_with(|| refused_frame(&refusal)).clone();
            if viewer.queue.try_send(frame).is_err() {
                dropped.push(viewer.id);
            }
        }
        self.drop_viewers(&mut state, &dropped);
    }

    fn drop_viewers(&self, state: &mut State, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        tracing::info!(viewers = ids.len(), "live view: dropped a viewer that stopped reading");
        state.viewers.retain(|v| !ids.contains(&v.id));
        self.watchers.store(state.viewers.len(), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves counts at worst off by one request.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn count(counts: &mut Counts, arrival: &Arrival<'_>, masked: Option<&str>, events: u64) {
    *counts.doors.entry(arrival.door).or_default() += events;
    *counts.protocols.entry(arrival.protocol).or_default() += events;
    let key = masked.unwrap_or("none");
    let room = counts.keys.len() < MAX_COUNTED_KEYS;
    match counts.keys.get_mut(key) {
        Some(n) => *n += events,
        None if room => {
            counts.keys.insert(key.to_owned(), events);
        }
        None => *counts.keys.entry("other".to_owned()).or_default() += events,
    }
}

/// How a source key is shown: never in full. Its first four characters
/// when it is long enough that they say little, then a short digest, so
/// two keys can be told apart and a known key can be found.
pub(crate) fn mask(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let short: String = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
    let head: String = if key.chars().count() >= 12 {
        key.chars().take(4).collect()
    } else {
        String::new()
    };
    format!("{head}…{short}")
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One server-sent event: `event: kind`, `data: json`.
pub(crate) fn frame(kind: &str, body: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {kind}\ndata: {json}\n\n"))
}

#[derive(Serialize)]
struct EventView<'a> {
    t: u64,
    door: &'static str,
    protocol: &'static str,
    key: Option<&'a str>,
    partition_key: &'a str,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    truncated: bool,
    /// An earlier copy stored it: not written again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

fn event_frame(arrival: &Arrival<'_>, masked: Option<&str>, record: &Record, payloads: bool, duplicate: bool) -> Bytes {
    let data = &record.data[..];
    frame(
        "event",
        &EventView {
            t: unix_millis(),
            door: arrival.door,
            protocol: arrival.protocol,
            key: masked,
            partition_key: &record.partition_key,
            bytes: data.len(),
            payload: payloads.then(|| preview(data, arrival.key.zip(masked))),
            truncated: payloads && data.len() > PREVIEW_BYTES,
            duplicate,
        },
    )
}

/// The first [`PREVIEW_BYTES`] of `data` as text, cut on a character
/// boundary (a binary body shows as replacement characters), with the
/// source key replaced by its masked form wherever the event carries it
/// (the SDK doors copy it into `_gateway.key`, PostHog events hold it as
/// `api_key`).
fn preview(data: &[u8], key: Option<(&str, &str)>) -> String {
    // Room for a key that straddles the cut, so no part of it is left.
    let room = key.map_or(0, |(key, _)| key.len());
    let window = &data[..data.len().min(PREVIEW_BYTES + room)];
    let mut text = String::from_utf8_lossy(window).into_owned();
    if let Some((key, masked)) = key.filter(|(key, _)| !key.is_empty()) {
        text = text.replace(key, masked);
    }
    if text.len() > PREVIEW_BYTES {
        let mut cut = PREVIEW_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[derive(Serialize)]
struct RefusalView<'a> {
    t: u64,
    door: &'static str,
    method: &'static str,
    status: u16,
    code: &'static str,
    message: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

fn refused_frame(refusal: &Refusal<'_>) -> Bytes {
    frame(
        "refused",
        &RefusalView {
            t: unix_millis(),
            door: refusal.door,
            method: refusal.method,
            status: refusal.status,
            code: refusal.code,
            message: refusal.message,
            request_id: refusal.request_id,
            key: refusal.key,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(per_second: u32) -> Hub {
        Hub::new(LiveConfig {
            admin_token: Some("t".repeat(16)),
            payloads: true,
            events_per_second: per_second,
        })
    }

    fn record(data: &str) -> Record {
        Record {
            data: Bytes::from(data.to_owned()),
            partition_key: "user-1".into(),
        }
    }

    const SEGMENT: Arrival<'static> = Arrival {
        door: "/v1/batch",
        protocol: "segment",
        key: Some("wk_live_0123456789"),
    };

    #[test]
    fn keys_are_masked_and_found_by_their_full_value() {
        let shown = mask("wk_live_0123456789");
        assert!(shown.starts_with("wk_l…") && !shown.contains("0123456789"), "{shown}");
        assert!(mask("short").starts_with('…'));
        let filter = Filter {
            key: Some("wk_live_0123456789".into()),
            ..Filter::default()
        };
        assert!(filter.admits_key(Some(&shown)));
        assert!(!filter.admits_key(Some(&mask("another key"))));
    }

    #[test]
    fn nobody_watching_costs_nothing_and_counts_nothing() {
        let hub = hub(10);
        assert!(!hub.watched());
        let joined = hub.join(Filter::default()).unwrap();
        assert!(hub.watched());
        hub.leave(joined.id);
        assert!(!hub.watched());
    }

    #[test]
    fn the_cap_samples_and_counts_what_it_skips() {
        let hub = hub(3);
        let mut joined = hub.join(Filter::default()).unwrap();
        let records: Vec<Record> = (0..10).map(|i| record(&format!("{{\"n\":{i}}}"))).collect();
        hub.arrived(SEGMENT, &records, false);
        let (counts, skipped) = hub.counts(joined.id);
        assert_eq!(counts.doors["/v1/batch"], 10);
        assert_eq!(counts.keys[&mask("wk_live_0123456789")], 10);
        // A bucket of 3 per second holds one frame: the first goes, the rest
        // of the same instant are skipped.
        let mut sent = 0;
        while let Ok(frame) = joined.frames.try_recv() {
            let text = std::str::from_utf8(&frame).unwrap().to_owned();
            assert!(text.starts_with("event: event\ndata: {"), "{text}");
            assert!(!text.contains("0123456789"), "the key is never sent in full: {text}");
            sent += 1;
        }
        assert_eq!(sent + skipped, 10);
        assert!((1..=2).contains(&sent), "{sent}");
    }

    #[test]
    fn a_duplicate_is_shown_and_counted_as_such() {
        let hub = hub(1000);
        let mut joined = hub.join(Filter::default()).unwrap();
        hub.arrived(SEGMENT, &[record(r#"{"n":1}"#)], false);
        hub.arrived(SEGMENT, &[record(r#"{"n":1}"#)], true);
        let (counts, _) = hub.counts(joined.id);
        assert_eq!((counts.doors["/v1/batch"], counts.duplicates), (2, 1));
        let first = String::from_utf8(joined.frames.try_recv().unwrap().to_vec()).unwrap();
        let again = String::from_utf8(joined.frames.try_recv().unwrap().to_vec()).unwrap();
        assert!(!first.contains("duplicate"), "{first}");
        assert!(again.contains(r#""duplicate":true"#), "{again}");
    }

    #[test]
    fn filters_pick_door_key_text_and_refusals() {
        let hub = hub(1000);
        let by_text = hub
            .join(Filter {
                text: Some("needle".into()),
                ..Filter::default()
            })
            .unwrap();
        let by_key = hub
            .join(Filter {
                key: Some("wk_flooding_source".into()),
                ..Filter::default()
            })
            .unwrap();
        let by_door = hub
            .join(Filter {
                door: Some("/import".into()),
                ..Filter::default()
            })
            .unwrap();
        let refused = hub
            .join(Filter {
                refused_only: true,
                ..Filter::default()
            })
            .unwrap();
        hub.arrived(SEGMENT, &[record(r#"{"a":"hay"}"#), record(r#"{"a":"needle"}"#)], false);
        hub.refused(Refusal {
            door: "/import/batch",
            method: "POST",
            status: 400,
            code: "invalid_batch",
            message: "record 0 is not valid JSON",
            request_id: "r1",
            key: None,
        });
        let masked = mask("wk_flooding_source");
        hub.refused(Refusal {
            door: "/v1/batch",
            method: "POST",
            status: 429,
            code: "rate_limited",
            message: "over its allowance",
            request_id: "r2",
            key: Some(&masked),
        });
        let drain = |mut joined: Joined| {
            let mut out = Vec::new();
            while let Ok(frame) = joined.frames.try_recv() {
                out.push(String::from_utf8(frame.to_vec()).unwrap());
            }
            out
        };
        let texts = drain(by_text);
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains("needle"));
        assert!(drain(by_door).is_empty());
        let refusals = drain(refused);
        assert_eq!(refusals.len(), 2);
        assert!(refusals[0].starts_with("event: refused\n") && refusals[0].contains("invalid_batch"));
        assert!(refusals[1].contains(&format!(r#""key":"{masked}""#)), "{}", refusals[1]);
        assert!(!refusals[1].contains("wk_flooding_source"));
        // A viewer of one source sees that source's refusals, not the others'.
        let keyed = drain(by_key);
        assert_eq!(keyed.len(), 1, "{keyed:?}");
        assert!(keyed[0].contains("rate_limited"));
    }

    #[test]
    fn a_viewer_that_stops_reading_is_dropped_not_waited_for() {
        let hub = hub(10_000);
        let joined = hub.join(Filter::default()).unwrap();
        let records: Vec<Record> = (0..QUEUE_FRAMES + 10).map(|_| record("{}")).collect();
        hub.arrived(SEGMENT, &records, false);
        assert!(!hub.is_watching(joined.id));
        assert!(!hub.watched());
        assert_eq!(joined.frames.len(), QUEUE_FRAMES, "what it held stays bounded");
    }

    #[test]
    fn the_source_key_is_masked_inside_payloads_too() {
        let key = "wk_live_0123456789";
        let data = format!(r#"{{"a":1,"_gateway":{{"key":"{key}"}}}}"#);
        let frame = event_frame(&SEGMENT, Some(&mask(key)), &record(&data), true, false);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(!text.contains("0123456789") && text.contains(&mask(key)), "{text}");
        // Straddling the cut: no part of it is left either.
        let data = format!("{}{key}", "a".repeat(PREVIEW_BYTES - 5));
        assert!(!preview(data.as_bytes(), Some((key, "…"))).contains("wk_l"));
    }

    #[test]
    fn payloads_are_cut_and_can_be_left_out() {
        let long = format!("{{\"x\":\"{}é\"}}", "a".repeat(PREVIEW_BYTES - 9));
        let frame = event_frame(&SEGMENT, None, &record(&long), true, false);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.contains("\"truncated\":true"), "{text}");
        let frame = event_frame(&SEGMENT, None, &record(&long), false, false);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(!text.contains("payload") && text.contains("\"bytes\":"), "{text}");
    }
}
