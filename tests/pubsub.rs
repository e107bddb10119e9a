//! The Pub/Sub sink against Google's Pub/Sub emulator, started here on
//! 127.0.0.1 (a free port) and read back through a subscription with
//! message ordering: every door's events once each, the same bytes, the
//! partition key as ordering key, order per key; 413 before anything is
//! sent; a missing topic (502, `/readyz` says why); the emulator stopped and
//! started again under the gateway (503 while down, 200 after, that key's
//! next events delivered); and the spill through the outage.
//!
//! The emulator is a Java program from the `google-cloud-cli-pubsub-emulator`
//! package (`PUBSUB_EMULATOR_BIN` names another). Without it these tests
//! say so and pass, except under `CI=true`, where they fail.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clickstream_gateway::app::App;
use clickstream_gateway::config::{Config, SpillConfig};
use clickstream_gateway::sink::pubsub::PubSubConfig;
use clickstream_gateway::sink::pubsub::PubSubSink;
use common::{TestServer, eventually, http, test_config};
use hyper::StatusCode;

const DEFAULT_BIN: &str = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";
const PROJECT: &str = "gateway-test";

/// The emulator process, stopped on drop.
struct Emulator {
    child: Option<Child>,
    port: u16,
}

impl Emulator {
    /// Starts the emulator, or `None` (and says why) when it is not installed.
    async fn start() -> Option<Emulator> {
        let bin = std::env::var("PUBSUB_EMULATOR_BIN").unwrap_or_else(|_| DEFAULT_BIN.into());
        if !std::path::Path::new(&bin).exists() {
            assert!(
                std::env::var("CI").is_err(),
                "the Pub/Sub emulator is not installed at {bin}, and CI must run these tests"
            );
            eprintln!("skipping: no Pub/Sub emulator at {bin}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut emulator = Emulator { child: None, port };
        emulator.launch().await;
        Some(emulator)
    }

    async fn launch(&mut self) {
        let bin = std::env::var("PUBSUB_EMULATOR_BIN").unwrap_or_else(|_| DEFAULT_BIN.into());
        let child = Command::new(bin)
            .args(["--host=127.0.0.1", &format!("--port={}", self.port)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the emulator starts");
        self.child = Some(child);
        let url = self.url(&format!("/v1/projects/{PROJECT}/topics"));
        eventually("the emulator answers", Duration::from_secs(60), || async {
            let client = http::client();
            let request = hyper::Request::get(&url).body(Default::default()).unwrap();
            matches!(client.request(request).await, Ok(r) if r.status() == StatusCode::OK)
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    async fn put(&self, path: &str, body: serde_json::Value) -> http::Reply {
        let request = hyper::Request::put(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string().into())
            .unwrap();
        http::send(request).await
    }

    /// A topic and an ordered subscription to it; returns the topic's full name.
    async fn topic(&self, name: &str) -> String {
        let topic = format!("projects/{PROJECT}/topics/{name}");
        let reply = self.put(&format!("/v1/{topic}"), serde_json::json!({})).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let reply = self
            .put(
                &format!("/v1/projects/{PROJECT}/subscriptions/{name}-sub"),
                serde_json::json!({"topic": topic, "enableMessageOrdering": true}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        topic
    }

    /// Every message the subscription holds, acknowledged: (data, ordering key).
    async fn pull(&self, name: &str) -> Vec<(Vec<u8>, String)> {
        let mut all = Vec::new();
        let sub = format!("/v1/projects/{PROJECT}/subscriptions/{name}-sub");
        loop {
            let reply = http::post_with(
                &self.url(&format!("{sub}:pull")),
                &[("content-type", "application/json")],
                serde_json::json!({"maxMessages": 1000, "returnImmediately": true}).to_string(),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            let messages = reply.json()["receivedMessages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            let mut acks = Vec::new();
            for received in messages {
                let message = &received["message"];
                let data = base64::engine::general_purpose::STANDARD
                    .decode(message["data"].as_str().unwrap_or_default())
                    .unwrap();
                all.push((data, message["orderingKey"].as_str().unwrap_or_default().to_owned()));
                acks.push(received["ackId"].clone());
            }
            let reply = http::post_with(
                &self.url(&format!("{sub}:acknowledge")),
                &[("content-type", "application/json")],
                serde_json::json!({ "ackIds": acks }).to_string(),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK);
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP door between the gateway and the emulator. Shut, it refuses
/// connections as a stopped emulator does; it lets the test restart the
/// emulator and give it back its topic *and* subscription before the
/// gateway can reach it. Without it, a replay could publish between the two,
/// to a topic with no subscription yet, where Pub/Sub drops what it gets.
struct Gate {
    port: u16,
    target: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gate {
    /// Opens a gate on a free port in front of the emulator.
    fn before(emulator: &Emulator) -> Gate {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut gate = Gate {
            port,
            target: emulator.port,
            task: None,
        };
        gate.open();
        gate
    }

    fn open(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(([127, 0, 0, 1], self.port).into()).unwrap();
        let listener = socket.listen(64).unwrap();
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            // The connections live in this task's set, so shutting the gate
            // cuts them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    Ok((mut inbound, _)) = listener.accept() => {
                        connections.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        }));
    }

    /// Shuts the gate and waits until its port is closed, so `open` can
    /// bind it again.
    async fn shut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn sink(emulator: &Emulator, topic: &str) -> PubSubSink {
    sink_at(emulator.host(), topic)
}

fn sink_at(host: String, topic: &str) -> PubSubSink {
    PubSubSink::new(&PubSubConfig {
        topic: topic.to_owned(),
        emulator_host: Some(host),
        timeout: Duration::from_secs(3),
    })
    .expect("the sink builds")
}

/// Pulls until `count` messages have arrived (the emulator delivers soon
/// after the publish, not always at once).
async fn pull_all(emulator: &Emulator, name: &str, count: usize) -> Vec<(Vec<u8>, String)> {
    let mut got = Vec::new();
    for _ in 0..50 {
        got.extend(emulator.pull(name).await);
        if got.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_publishes_each_event_once_with_its_key_as_ordering_key() {
    let Some(emulator) = Emulator::start().await else {
        return;
    };
    let topic = emulator.topic("doors").await;
    let server = TestServer::start_with(sink(&emulator, &topic), &test_config()).await;

    let reply = http::post_keyed(&server.url("/import"), "user-1", r#"{"n":0}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let id = reply.json()["MessageId"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());

    let reply = http::post_keyed(&server.url("/import/batch"), "user-1", r#"[{"n":1},{"n":2},{"n":3}]"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let records = reply.json()["Records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r["MessageId"].is_string()), "{records:?}");

    let segment = r#"{"batch":[{"type":"track","event":"a","userId":"u-7","messageId":"m1"},{"type":"track","event":"b","userId":"u-7","messageId":"m2"}]}"#;
    let reply = http::post_with(
        &server.url("/v1/batch"),
        &[("content-type", "application/json")],
        segment,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    let got = pull_all(&emulator, "doors", 6).await;
    assert_eq!(got.len(), 6, "every 2xx'd event once: {got:?}");
    let user1: Vec<&[u8]> = got
        .iter()
        .filter(|(_, k)| k == "user-1")
        .map(|(d, _)| d.as_slice())
        .collect();
    assert_eq!(
        user1,
        [&b"{\"n\":0}"[..], b"{\"n\":1}", b"{\"n\":2}", b"{\"n\":3}"],
        "the same bytes, in order per key"
    );
    let segment_events: Vec<serde_json::Value> = got
        .iter()
        .filter(|(_, k)| k == "u-7")
        .map(|(d, _)| serde_json::from_slice(d).unwrap())
        .collect();
    assert_eq!(segment_events.len(), 2);
    assert_eq!(
        (segment_events[0]["event"].as_str(), segment_events[1]["event"].as_str()),
        (Some("a"), Some("b"))
    );
    assert_eq!(segment_events[0]["_gateway"]["protocol"], "segment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_is_413_before_anything_is_sent() {
    let Some(emulator) = Emulator::start().await else {
        return;
    };
    let topic = emulator.topic("large").await;
    let server = TestServer::start_with(sink(&emulator, &topic), &test_config()).await;
    let large = format!(r#"{{"pad":"{}"}}"#, "x".repeat(8 << 20));
    let reply = http::post(&server.url("/import"), large).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        pull_all(&emulator, "large", 1).await.is_empty(),
        "nothing was published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_502_and_readyz_says_why() {
    let Some(emulator) = Emulator::start().await else {
        return;
    };
    let missing = format!("projects/{PROJECT}/topics/missing");
    let app = App::new(Arc::new(sink(&emulator, &missing)), &test_config()).unwrap();
    let err = app
        .check_destination()
        .await
        .expect_err("start-up refuses a missing topic");
    assert!(err.to_string().contains("missing"), "{err}");
    let app = Arc::new(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(clickstream_gateway::server::run(listener, app, std::future::pending()));
    let reply = http::post(&format!("http://{addr}/import"), "{}").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{:?}", reply.body);
    let ready = http::get(&format!("http://{addr}/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.json()["detail"]
            .as_str()
            .unwrap()
            .contains("missing or not accessible"),
        "{:?}",
        ready.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_emulator_restart_the_gateway_answers_503_then_delivers_again() {
    let Some(mut emulator) = Emulator::start().await else {
        return;
    };
    let topic = emulator.topic("restart").await;
    let server = TestServer::start_with(sink(&emulator, &topic), &test_config()).await;
    let reply = http::post_keyed(&server.url("/import"), "k", r#"{"n":"before"}"#).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(pull_all(&emulator, "restart", 1).await.len(), 1);

    emulator.stop();
    let reply = http::post_keyed(&server.url("/import"), "k", r#"{"n":"down"}"#).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", reply.body);
    assert_eq!(reply.headers["retry-after"], "1");

    // The emulator keeps nothing across a restart: the topic is made again.
    emulator.launch().await;
    emulator.topic("restart").await;
    // The key that failed is not paused: its next events go through.
    let reply = http::post_keyed(&server.url("/import"), "k", r#"{"n":"after"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let got = pull_all(&emulator, "restart", 1).await;
    assert_eq!(got, vec![(b"{\"n\":\"after\"}".to_vec(), "k".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_spill_an_outage_is_absorbed_and_replayed_in_order() {
    let Some(mut emulator) = Emulator::start().await else {
        return;
    };
    let topic = emulator.topic("spill").await;
    let dir = std::env::temp_dir().join(format!("gateway-pubsub-spill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        spill: Some(SpillConfig::in_dir(&dir)),
        ..test_config()
    };
    let mut gate = Gate::before(&emulator);
    let server = TestServer::start_with(sink_at(gate.host(), &topic), &config).await;
    gate.shut().await;
    emulator.stop();
    for n in 0..20 {
        let reply = http::post_keyed(
            &server.url("/import"),
            &format!("k{}", n % 3),
            format!(r#"{{"n":{n}}}"#),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    }
    emulator.launch().await;
    emulator.topic("spill").await;
    gate.open();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spill was not replayed: {got:?}"
        );
        got.extend(emulator.pull("spill").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
    for (data, key) in &got {
        let event: serde_json::Value = serde_json::from_slice(data).unwrap();
        per_key
            .entry(key.clone())
            .or_default()
            .push(event["n"].as_u64().unwrap());
    }
    assert_eq!(
        per_key.values().map(Vec::len).sum::<usize>(),
        20,
        "each spilled event once: {per_key:?}"
    );
    for (key, seq) in &per_key {
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{key}: {seq:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
