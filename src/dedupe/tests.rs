//! Claims, marks and waits in one process; Redis is exercised over the
//! network by `suites/dedupe/`.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::sink::{Receipt, SinkError};

fn dedupe(wait: Duration) -> Arc<Dedupe> {
    let config = DedupeConfig {
        window: Some(Duration::from_secs(60)),
        max_ids: 1000,
    };
    Dedupe::new(&config, None, wait, Arc::new(Metrics::new()))
        .unwrap()
        .expect("on")
}

fn ids(names: &[Option<&str>]) -> EventIds {
    EventIds::of("segment", names.iter().map(|id| id.map(|id| ("key", id))))
}

fn stored() -> Result<Kept, SinkError> {
    Ok(Kept::InStream(Receipt::new("shard-1").with("SequenceNumber", "7")))
}

fn failed() -> Result<Kept, SinkError> {
    Err(SinkError::Unavailable("down".into()))
}

#[test]
fn an_id_is_scoped_to_its_protocol_and_source() {
    let base = fingerprint("segment", "key", "id-1");
    assert_eq!(base, fingerprint("segment", "key", "id-1"));
    assert_ne!(base, fingerprint("segment", "other", "id-1"));
    assert_ne!(base, fingerprint("posthog", "key", "id-1"));
    // The source's length is hashed: "ke" + "yid-1" is not "key" + "id-1".
    assert_ne!(base, fingerprint("segment", "ke", "yid-1"));
}

#[tokio::test]
async fn an_id_is_marked_only_once_its_record_is_kept() {
    let dedupe = dedupe(Duration::from_secs(1));
    let first = dedupe.claim(ids(&[Some("a"), Some("b"), None])).await.unwrap();
    assert_eq!(first.seen(), [Seen::New, Seen::New, Seen::New]);
    let each = first.settle(vec![stored(), failed(), stored()]);
    assert!(each[1].is_err());

    let again = dedupe.claim(ids(&[Some("a"), Some("b"), None])).await.unwrap();
    assert_eq!(
        again.seen(),
        [Seen::Duplicate(None), Seen::New, Seen::New],
        "a is stored; b failed, so its retry is written; no id, always written"
    );
    let each = again.settle(vec![stored(), stored()]);
    assert_eq!(each[0], Ok(Kept::Duplicate(None)));
    assert_eq!(each[1], stored());
}

#[tokio::test]
async fn a_repeated_id_in_one_request_is_written_once_and_answered_as_its_first() {
    let dedupe = dedupe(Duration::from_secs(1));
    let claim = dedupe.claim(ids(&[Some("a"), Some("b"), Some("a")])).await.unwrap();
    assert_eq!(claim.seen(), [Seen::New, Seen::New, Seen::SameAs(0)]);
    let each = claim.settle(vec![failed(), stored()]);
    assert_eq!(each.len(), 3);
    assert!(each[2].is_err(), "the repeat is answered as its first copy");
}

#[tokio::test]
async fn a_replayed_answer_is_kept_with_its_id() {
    let dedupe = dedupe(Duration::from_secs(1));
    let one = || EventIds::of("import", [Some(("", "k1"))]).replayed();
    dedupe.claim(one()).await.unwrap().settle(vec![stored()]);
    let each = dedupe.claim(one()).await.unwrap().settle(vec![]);
    let Ok(Kept::Duplicate(Some(answer))) = &each[0] else {
        panic!("{each:?}")
    };
    assert_eq!(answer, &serde_json::to_string(&stored().unwrap()).unwrap());
    assert_eq!(
        serde_json::to_string(&each[0].as_ref().unwrap()).unwrap(),
        *answer,
        "served as the first body"
    );
}

#[tokio::test]
async fn a_copy_in_flight_waits_for_the_first_outcome_then_decides_again() {
    let dedupe = dedupe(Duration::from_secs(5));
    // The first copy fails: the waiting copy is then written.
    let first = dedupe.claim(ids(&[Some("a")])).await.unwrap();
    let waiting = tokio::spawn({
        let dedupe = dedupe.clone();
        async move { dedupe.claim(ids(&[Some("a")])).await.map(|c| c.seen().to_vec()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "it waits while the first is in flight");
    first.settle(vec![failed()]);
    assert_eq!(waiting.await.unwrap().unwrap(), [Seen::New]);

    // The first copy is stored: the waiting copy is a duplicate.
    let first = dedupe.claim(ids(&[Some("b")])).await.unwrap();
    let waiting = tokio::spawn({
        let dedupe = dedupe.clone();
        async move { dedupe.claim(ids(&[Some("b")])).await.map(|c| c.seen().to_vec()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.settle(vec![stored()]);
    assert_eq!(waiting.await.unwrap().unwrap(), [Seen::Duplicate(None)]);
}

#[tokio::test]
async fn a_copy_still_in_flight_at_the_deadline_is_refused_retryably() {
    let dedupe = dedupe(Duration::from_millis(100));
    let _first = dedupe.claim(ids(&[Some("a")])).await.unwrap();
    let error = dedupe.claim(ids(&[Some("a")])).await.unwrap_err();
    assert!(matches!(error, ApiError::StillInFlight));
    let (status, code, retry) = error.status();
    assert_eq!((status.as_u16(), code, retry), (503, "in_flight", true));
}

#[tokio::test]
async fn a_request_dropped_mid_write_holds_nothing() {
    let dedupe = dedupe(Duration::from_secs(5));
    let first = dedupe.claim(ids(&[Some("a")])).await.unwrap();
    drop(first);
    let again = dedupe.claim(ids(&[Some("a")])).await.unwrap();
    assert_eq!(again.seen(), [Seen::New], "not marked: its outcome is unknown");
}

#[tokio::test]
async fn a_waiting_request_holds_none_of_its_ids() {
    let dedupe = dedupe(Duration::from_secs(5));
    let holds_x = dedupe.claim(ids(&[Some("x")])).await.unwrap();
    // [y, x] waits on x; it must not hold y meanwhile, or [y] below (and
    // any request with y) would wait on it in turn.
    let waits = tokio::spawn({
        let dedupe = dedupe.clone();
        async move {
            dedupe
                .claim(ids(&[Some("y"), Some("x")]))
                .await
                .map(|c| c.seen().to_vec())
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let y = tokio::time::timeout(Duration::from_millis(500), dedupe.claim(ids(&[Some("y")])))
        .await
        .expect("y is free")
        .unwrap();
    y.settle(vec![stored()]);
    holds_x.settle(vec![stored()]);
    assert_eq!(
        waits.await.unwrap().unwrap(),
        [Seen::Duplicate(None), Seen::Duplicate(None)]
    );
}
