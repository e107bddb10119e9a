//! Every variable the gateway reads (and the few its libraries read), with
//! its default and what it does: the one list. `.env.example` and
//! `docs/configuration.md` are rendered from it ([`env_example`],
//! [`reference`]); `tests/configuration.rs` fails when either file is out of
//! step (`UPDATE_DOCS=1 cargo test --test configuration` rewrites them) and
//! when the code reads a variable that is not here, or has another default.

/// Who reads a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// This crate's `Config`.
    Gateway,
    /// aws-config's default chain (region, credentials, endpoint).
    AwsConfig,
    /// tracing-subscriber's filter.
    Tracing,
    /// Google's Application Default Credentials (`gcp_auth`).
    GoogleAuth,
}

/// One variable (or, for `KAFKA_PROPERTY_*`, one family of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// The name; `KAFKA_PROPERTY_*` for the pass-through family.
    pub name: &'static str,
    /// The heading it is listed under.
    pub section: &'static str,
    /// The value when unset, as written; `None`: unset means off or none.
    pub default: Option<&'static str>,
    /// An example value for one with no default (for the family:
    /// `SUFFIX=value` pairs separated by `;`).
    pub example: &'static str,
    /// Who reads it.
    pub reader: Reader,
    /// What it does; empty when it shares the previous variable's text.
    pub doc: &'static str,
}

/// The variables, in the order `.env.example` lists them.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "HOST",
        section: "HTTP server",
        default: Some(r#"0.0.0.0"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Address and port to listen on."#,
    },
    Variable {
        name: "PORT",
        section: "HTTP server",
        default: Some(r#"3000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#""#,
    },
    Variable {
        name: "HEADER_READ_TIMEOUT_MS",
        section: "HTTP server",
        default: Some(r#"10000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"A client must send its complete request head within this many ms; an idle keep-alive connection is closed after the same time."#,
    },
    Variable {
        name: "BODY_READ_TIMEOUT_MS",
        section: "HTTP server",
        default: Some(r#"15000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"A client must send its complete body within this many ms (else 408)."#,
    },
    Variable {
        name: "SHUTDOWN_TIMEOUT_MS",
        section: "HTTP server",
        default: Some(r#"25000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"After SIGTERM/SIGINT, in-flight requests get this long to finish (keep it below Kubernetes' terminationGracePeriodSeconds, 30 s by default)."#,
    },
    Variable {
        name: "WORKER_THREADS",
        section: "HTTP server",
        default: None,
        example: r#"1"#,
        reader: Reader::Gateway,
        doc: r#"Threads that serve requests, 1 to 1024. Unset: one per CPU this process may use (its CPU affinity and container CPU quota count). With one, the gateway runs on a single-threaded scheduler: no work stealing and no wake-ups across threads: about 7 % less CPU per /import request on one core (docs/benchmarks.md, "One CPU, one thread")."#,
    },
    Variable {
        name: "READINESS_CACHE_TTL_MS",
        section: "HTTP server",
        default: Some(r#"5000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"/readyz reuses its answer (and a recent successful write) for this long, so probes never hammer the Kinesis control plane."#,
    },
    Variable {
        name: "MAX_CONNECTIONS",
        section: "Load shedding and access",
        default: Some(r#"10000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Client connections open at once; a further one is answered 503 and closed."#,
    },
    Variable {
        name: "MAX_IN_FLIGHT_REQUESTS",
        section: "Load shedding and access",
        default: Some(r#"4096"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Event requests (/import, /import/batch) handled at once; beyond it 503 overloaded at once."#,
    },
    Variable {
        name: "MAX_IN_FLIGHT_BODY_BYTES",
        section: "Load shedding and access",
        default: Some(r#"268435456"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Bytes held by requests in flight; beyond it 503 overloaded. A request reserves its declared length (or its limit, for chunked bodies) before reading, a compressed body's output as it grows, then 4 bytes per decoded body byte; once its records exist, twice its body plus 7 bytes per record byte and 1 KiB per record (measured by tests/memory.rs), and a decoder's window while it decodes. Peak memory stays near this plus a fixed base (docs/faults.md, "Memory"). At least one record (1 MiB for Kinesis): less stops start-up."#,
    },
    Variable {
        name: "API_KEYS",
        section: "Load shedding and access",
        default: None,
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Comma-separated API keys; when set, /import and /import/batch need `Authorization: Bearer <key>` or `X-Api-Key: <key>`, and the analytics SDKs' endpoints need one in their own form: the Segment/RudderStack write key (Basic user name or the body's writeKey), the PostHog project key (api_key / token), the Snowplow app id (aid) of every event. Unset: every key is accepted. A wrong key: 401."#,
    },
    Variable {
        name: "CORS_ALLOWED_ORIGINS",
        section: "Load shedding and access",
        default: None,
        example: r#"https://www.example.com"#,
        reader: Reader::Gateway,
        doc: r#"Comma-separated origins (or *) allowed to call /import and /import/batch from browsers; unset: no page may (they are your backends' API), and a request to them carrying any other Origin is refused with 403 (CORS alone would not stop a page from sending one). The analytics SDKs' endpoints answer any origin by default, as those SDKs' own collectors do; when this is set, it narrows them to the list too."#,
    },
    Variable {
        name: "PUBLIC_URL",
        section: "Load shedding and access",
        default: None,
        example: r#"https://events.example.com"#,
        reader: Reader::Gateway,
        doc: r#"The URL browsers reach the gateway at, named in the documents the browser SDKs load (Segment's settings send events to its /v1). Unset: the request's Host header (https when X-Forwarded-Proto says so), and those documents are answered Cache-Control: private so no shared cache keeps one built for a forged Host. Set it behind a CDN."#,
    },
    Variable {
        name: "SINK",
        section: "Where records go",
        default: None,
        example: r#"kinesis"#,
        reader: Reader::Gateway,
        doc: r#"`kinesis`, `kafka`, `pubsub` or `file`. Default: `kinesis` when KINESIS_STREAM_NAME is set, otherwise `file`. Set SINK=kinesis in containers so a missing stream name fails start-up instead of silently writing to a local file."#,
    },
    Variable {
        name: "KINESIS_STREAM_NAME",
        section: "Where records go",
        default: None,
        example: r#"clickstream"#,
        reader: Reader::Gateway,
        doc: r#"The Kinesis data stream to write to."#,
    },
    Variable {
        name: "FILE_SINK_PATH",
        section: "Where records go",
        default: Some(r#"records.ndjson"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"The file sink's NDJSON file (only with SINK=file). NOT Kinesis: for a developer's machine."#,
    },
    Variable {
        name: "KAFKA_BOOTSTRAP_SERVERS",
        section: "Kafka (SINK=kafka)",
        default: None,
        example: r#"127.0.0.1:9092"#,
        reader: Reader::Gateway,
        doc: r#"Required with SINK=kafka: the brokers (host:port, comma-separated) and the topic."#,
    },
    Variable {
        name: "KAFKA_TOPIC",
        section: "Kafka (SINK=kafka)",
        default: None,
        example: r#"clickstream"#,
        reader: Reader::Gateway,
        doc: r#""#,
    },
    Variable {
        name: "KAFKA_DELIVERY_TIMEOUT_MS",
        section: "Kafka (SINK=kafka)",
        default: Some(r#"5000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Time librdkafka has to deliver a record, retries included (its message.timeout.ms); past it the request gets 503."#,
    },
    Variable {
        name: "KAFKA_MAX_MESSAGE_BYTES",
        section: "Kafka (SINK=kafka)",
        default: Some(r#"1048576"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"The largest message sent (message.max.bytes); the topic's own max.message.bytes wins when smaller. Records over it get 413."#,
    },
    Variable {
        name: "KAFKA_PROPERTY_*",
        section: "Kafka (SINK=kafka)",
        default: None,
        example: r#"SECURITY_PROTOCOL=SASL_SSL;SASL_MECHANISM=PLAIN;SASL_USERNAME=;SASL_PASSWORD=;COMPRESSION_TYPE=lz4"#,
        reader: Reader::Gateway,
        doc: r#"Any other librdkafka property: KAFKA_PROPERTY_ and the name upper-cased with `.` as `_`. They win over the gateway's defaults (acks=all, enable.idempotence=true, reconnect.backoff.max.ms=1000). Quote values with a `$` in single quotes (Event Hubs' '$ConnectionString')."#,
    },
    Variable {
        name: "PUBSUB_TOPIC",
        section: "Google Cloud Pub/Sub (SINK=pubsub)",
        default: None,
        example: r#"projects/my-project/topics/clickstream"#,
        reader: Reader::Gateway,
        doc: r#"Required with SINK=pubsub: the topic, as projects/{project}/topics/{topic}, or a bare topic name with GOOGLE_CLOUD_PROJECT. Each record is one message: its bytes the data, its partition key the ordering key. The /import receipt is {"MessageId": "..."}."#,
    },
    Variable {
        name: "GOOGLE_CLOUD_PROJECT",
        section: "Google Cloud Pub/Sub (SINK=pubsub)",
        default: None,
        example: r#"my-project"#,
        reader: Reader::Gateway,
        doc: r#"The project of a bare PUBSUB_TOPIC."#,
    },
    Variable {
        name: "PUBSUB_EMULATOR_HOST",
        section: "Google Cloud Pub/Sub (SINK=pubsub)",
        default: None,
        example: r#"127.0.0.1:8085"#,
        reader: Reader::Gateway,
        doc: r#"The Pub/Sub emulator's host:port, as Google's own clients read it: plain HTTP, no credentials. Unset: pubsub.googleapis.com with Application Default Credentials."#,
    },
    Variable {
        name: "PUBSUB_TIMEOUT_MS",
        section: "Google Cloud Pub/Sub (SINK=pubsub)",
        default: Some(r#"9000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"A publish's deadline, and a record's from arrival to answer: past it the request gets 503 (the events may still be published: a retry may duplicate them)."#,
    },
    Variable {
        name: "GOOGLE_APPLICATION_CREDENTIALS",
        section: "Google Cloud Pub/Sub (SINK=pubsub)",
        default: None,
        example: r#"/var/secrets/google/key.json"#,
        reader: Reader::GoogleAuth,
        doc: r#"A service account key file. Leave unset on GKE with workload identity, Cloud Run and GCE: the metadata server gives the credentials."#,
    },
    Variable {
        name: "IMPORT_BATCH_MAX_RECORDS",
        section: "Events per request and partition keys",
        default: Some(r#"500"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Records one POST /import/batch request may carry (else 413 too_many_records)."#,
    },
    Variable {
        name: "IMPORT_BATCH_MAX_BYTES",
        section: "Events per request and partition keys",
        default: Some(r#"5242880"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Decoded body bytes of one POST /import/batch request (else 413). Not the size of upstream calls: BATCH_MAX_* below set those."#,
    },
    Variable {
        name: "JSON_MAX_DEPTH",
        section: "Events per request and partition keys",
        default: Some(r#"64"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"How deeply an event's JSON may nest (objects and arrays; {} is 1 deep) on every door that validates JSON: /import/batch (the request is 400 too_deep) and the SDK doors (the event is rejected alone with too_deep; a request with no other event is 400). Most consumers stop near 1,000 levels or less (serde_json 128, BigQuery 500). /import stores raw bytes and does not look."#,
    },
    Variable {
        name: "PARTITION_KEY_FIELDS",
        section: "Events per request and partition keys",
        default: None,
        example: r#"/userId,/anonymousId,/context/device/id"#,
        reader: Reader::Gateway,
        doc: r#"Comma-separated JSON Pointers tried in order for a record's partition key when the request has no X-Partition-Key: the first that resolves to a non-empty string or a number is the key (over 256 characters: "sha256:" + its hex SHA-256). Unset: a random UUID per record."#,
    },
    Variable {
        name: "SEGMENT_MAX_BODY_BYTES",
        section: "The analytics SDKs' endpoints",
        default: Some(r#"8388608"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Decoded body bytes of one request per protocol (else 413). Each is above its SDKs' largest batch: Segment ~500 KB, RudderStack over 4 MB, PostHog 5 MB (its capture takes 20 MB), Snowplow's collector default 1 MB."#,
    },
    Variable {
        name: "POSTHOG_MAX_BODY_BYTES",
        section: "The analytics SDKs' endpoints",
        default: Some(r#"20971520"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#""#,
    },
    Variable {
        name: "SNOWPLOW_MAX_BODY_BYTES",
        section: "The analytics SDKs' endpoints",
        default: Some(r#"1048576"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#""#,
    },
    Variable {
        name: "SDK_MAX_EVENTS",
        section: "The analytics SDKs' endpoints",
        default: Some(r#"10000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Events one SDK request may carry (else 413 too_many_records)."#,
    },
    Variable {
        name: "CLIENT_IP",
        section: "The analytics SDKs' endpoints",
        default: Some(r#"off"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"The client's IP address is personal data: records carry none unless this says where it comes from. `off`; `socket` (the TCP peer: clients connect directly); `x-forwarded-for` (the last address of X-Forwarded-For, which the operator's proxy appended, else the peer: ONLY behind a trusted proxy, since clients can send the header themselves). It goes where each protocol's collector puts it: context.ip (Segment), ip (PostHog), ip (Snowplow), unless the event already has one."#,
    },
    Variable {
        name: "BATCHING",
        section: "Batching",
        default: Some(r#"true"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"true: concurrent records share PutRecords calls, each request still gets its own receipt. false: exactly one PutRecord per request."#,
    },
    Variable {
        name: "BATCH_MAX_RECORDS",
        section: "Batching",
        default: Some(r#"500"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Records per PutRecords call: at most what the sink takes (Kinesis: 500); more stops start-up, naming this variable."#,
    },
    Variable {
        name: "BATCH_MAX_BYTES",
        section: "Batching",
        default: Some(r#"5242880"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Data + partition key bytes per call: 5 MiB is Kinesis's classic PutRecords limit; current Kinesis accepts up to 10 MiB (10485760)."#,
    },
    Variable {
        name: "BATCH_MAX_CONCURRENT_CALLS",
        section: "Batching",
        default: Some(r#"64"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"The most upstream calls in flight at once. A further call starts only when a full batch is already waiting and the adaptive limit allows it."#,
    },
    Variable {
        name: "BATCH_ADAPTIVE_CONCURRENCY",
        section: "Batching",
        default: Some(r#"true"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"true: the calls allowed move between 1 and BATCH_MAX_CONCURRENT_CALLS (starting at 16) with the stream's latency and back-pressure (Vector's adaptive request concurrency): a slow or throttling stream gets fewer calls at once, not more. false: always BATCH_MAX_CONCURRENT_CALLS."#,
    },
    Variable {
        name: "BATCH_QUEUE_CAPACITY",
        section: "Batching",
        default: Some(r#"100000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Records waiting for a call before new requests get 503 overloaded. Room for a few hundred batch requests at once; memory is bounded by MAX_IN_FLIGHT_BODY_BYTES and waiting by KINESIS_OPERATION_TIMEOUT_MS."#,
    },
    Variable {
        name: "SPILL_DIR",
        section: "Durable spill (off unless SPILL_DIR is set)",
        default: None,
        example: r#"/var/lib/clickstream-gateway/spill"#,
        reader: Reader::Gateway,
        doc: r#"A directory on local disk: when the stream cannot take records (down, throttled past retries, the write queue full, the deadline passed), they are appended there and the request is answered once they are fsynced: 202 {"Spilled":true} on /import and /import/batch, 200 on the SDK routes. They are replayed to the stream, oldest first, when it answers again; while the spill holds records, new records go behind them (order per key). Use a persistent volume per instance: events live there until replayed. Start-up creates it and checks it can write there, else it stops naming SPILL_DIR."#,
    },
    Variable {
        name: "SPILL_MAX_BYTES",
        section: "Durable spill (off unless SPILL_DIR is set)",
        default: Some(r#"1073741824"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Bytes of records waiting in the spill at most, shared evenly by its lanes (each holds SPILL_MAX_BYTES / SPILL_LANES); beyond a lane's share, its keys get 503. Disk use exceeds it by at most one segment per lane (an eighth of a lane's share, 1-64 MiB). At least one record per lane (about 1 MiB each): less stops start-up."#,
    },
    Variable {
        name: "SPILL_REPLAY_MAX_RECORDS_PER_SEC",
        section: "Durable spill (off unless SPILL_DIR is set)",
        default: Some(r#"0"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Replay rate cap per lane, records per second. 0 (the default): each lane sends one call (500 records) at a time, each waiting for the stream's answer, through the adaptive limit that backs off when the stream pushes back. A cap must stay above your peak event rate per lane: while a lane holds records, its keys' new records go into it too, so it drains only as replay outpaces them."#,
    },
    Variable {
        name: "SPILL_LANES",
        section: "Durable spill (off unless SPILL_DIR is set)",
        default: Some(r#"8"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Lanes of the spill (1 to 256): a record's lane is a hash of its partition key; each lane replays in order, the lanes in parallel (within the adaptive limit on calls), and while a lane holds records only its keys' new records go behind them; the others go straight to the stream. Each lane holds at most SPILL_MAX_BYTES / SPILL_LANES. Changing it while the spill holds records is safe: the old layout replays first, and every new record waits behind it. Each lane sends its chunks as calls of their own, one at a time, so a key's order holds across lanes running in parallel. 1 replays everything in one line, as earlier versions did."#,
    },
    Variable {
        name: "KINESIS_OPERATION_TIMEOUT_MS",
        section: "Kinesis client",
        default: Some(r#"9000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Upper bound for one call, retries included (ms), and a record's deadline from arrival to answer: past it the request gets 503 (the events may still be stored: a retry may duplicate them). Below the SDKs' own 10-15 s timeouts, so they hear the answer. The SDK has no default: without it a stalled connection could hold a request forever."#,
    },
    Variable {
        name: "KINESIS_ATTEMPT_TIMEOUT_MS",
        section: "Kinesis client",
        default: None,
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Upper bound for one HTTP attempt (ms), after which the SDK sends the call again. Unset (the default): an attempt is never cut off, because Kinesis may still store the one cut off, and the resend stores its records twice."#,
    },
    Variable {
        name: "KINESIS_CONNECT_TIMEOUT_MS",
        section: "Kinesis client",
        default: Some(r#"1000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"TCP/TLS connect timeout (ms)."#,
    },
    Variable {
        name: "KINESIS_MAX_ATTEMPTS",
        section: "Kinesis client",
        default: Some(r#"3"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Attempts per call, the first included. Used instead of AWS_MAX_ATTEMPTS."#,
    },
    Variable {
        name: "KINESIS_RETRY_MODE",
        section: "Kinesis client",
        default: Some(r#"standard"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"`standard` or `adaptive` (client-side rate limiting when throttled). Used instead of AWS_RETRY_MODE."#,
    },
    Variable {
        name: "AWS_REGION",
        section: "AWS (read by aws-config's default chain, not by the gateway)",
        default: None,
        example: r#"us-east-1"#,
        reader: Reader::AwsConfig,
        doc: r#"Leave these unset on AWS with an IAM role (ECS task role, EKS IRSA or pod identity, EC2 instance profile); AWS_PROFILE selects an SSO/shared profile."#,
    },
    Variable {
        name: "AWS_ACCESS_KEY_ID",
        section: "AWS (read by aws-config's default chain, not by the gateway)",
        default: None,
        example: r#""#,
        reader: Reader::AwsConfig,
        doc: r#""#,
    },
    Variable {
        name: "AWS_SECRET_ACCESS_KEY",
        section: "AWS (read by aws-config's default chain, not by the gateway)",
        default: None,
        example: r#""#,
        reader: Reader::AwsConfig,
        doc: r#""#,
    },
    Variable {
        name: "AWS_SESSION_TOKEN",
        section: "AWS (read by aws-config's default chain, not by the gateway)",
        default: None,
        example: r#""#,
        reader: Reader::AwsConfig,
        doc: r#""#,
    },
    Variable {
        name: "AWS_PROFILE",
        section: "AWS (read by aws-config's default chain, not by the gateway)",
        default: None,
        example: r#""#,
        reader: Reader::AwsConfig,
        doc: r#""#,
    },
    Variable {
        name: "AWS_ENDPOINT_URL_KINESIS",
        section: "AWS (read by aws-config's default chain, not by the gateway)",
        default: None,
        example: r#"http://127.0.0.1:4567"#,
        reader: Reader::AwsConfig,
        doc: r#"A Kinesis-compatible endpoint: an emulator or LocalStack."#,
    },
    Variable {
        name: "LOG_FORMAT",
        section: "Logs",
        default: Some(r#"text"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"`text` or `json` (one JSON object per line)."#,
    },
    Variable {
        name: "RUST_LOG",
        section: "Logs",
        default: Some(r#"info"#),
        example: r#""#,
        reader: Reader::Tracing,
        doc: r#"tracing filter, e.g. `info`, `debug`, `clickstream_gateway=debug,info`."#,
    },
    Variable {
        name: "ACCESS_LOG",
        section: "Logs",
        default: Some(r#"false"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"One info line per request (target `access`): true or false. Off by default: the metrics count every request, and a line per request costs CPU and log storage. Lines go through a bounded non-blocking writer; dropped ones are counted in log_lines_dropped_total."#,
    },
    Variable {
        name: "METRICS_ADDR",
        section: "Metrics",
        default: None,
        example: r#"127.0.0.1:9090"#,
        reader: Reader::Gateway,
        doc: r#"Serve /metrics only on this admin address (e.g. 127.0.0.1:9090) instead of the public port, so the public port can face browsers. Unset: /metrics is on the public port."#,
    },
    Variable {
        name: "ADMIN_TOKEN",
        section: "Live view",
        default: None,
        example: r#"change-me-to-a-long-random-token"#,
        reader: Reader::Gateway,
        doc: r#"Turns on the live view (GET /live: events, refusals and the stream's state, in the browser) and is the token that opens it, as `Authorization: Bearer` or through the page's sign-in (a cookie). At least 16 characters. Unset: /live is 404. With METRICS_ADDR, /live is served there and not on the public port."#,
    },
    Variable {
        name: "LIVE_PAYLOADS",
        section: "Live view",
        default: Some(r#"true"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Whether the live view shows events' payloads (false: everything but payloads). Source keys are always masked."#,
    },
    Variable {
        name: "LIVE_EVENTS_PER_SECOND",
        section: "Live view",
        default: Some(r#"100"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"The most events and refusals sent to one viewer per second (1 to 10000); the rest are counted and shown as skipped, so the page keeps up at any rate."#,
    },
    Variable {
        name: "SOURCE_EVENTS_PER_SECOND",
        section: "Sources: quotas, blocks, hot keys",
        default: None,
        example: r#"1000"#,
        reader: Reader::Gateway,
        doc: r#"Each source's allowance, in events per second (a source is a write key, project token or app id on the SDK doors, the presented API key on /import and /import/batch, or one shared source when API_KEYS is unset). A request that would take a source past it is refused whole with 429 `rate_limited` and a Retry-After; nothing of it is stored. Unset: no limit (SOURCES_FILE may still set some). docs/sources.md says how to size it from the stream's shards."#,
    },
    Variable {
        name: "SOURCE_BURST_EVENTS",
        section: "Sources: quotas, blocks, hot keys",
        default: None,
        example: r#"5000"#,
        reader: Reader::Gateway,
        doc: r#"The most events a source may send at once (default: one second's worth). A request with more is 413 `over_burst`, since waiting would never make it fit."#,
    },
    Variable {
        name: "SOURCE_MAX_TRACKED",
        section: "Sources: quotas, blocks, hot keys",
        default: Some(r#"10000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"The most sources with an allowance of their own at once (1 to 1000000); sources idle for a while are forgotten. Past it, new sources (not in SOURCES_FILE) share one allowance, so keys a client invents cannot grow memory."#,
    },
    Variable {
        name: "SOURCES_FILE",
        section: "Sources: quotas, blocks, hot keys",
        default: None,
        example: r#"/etc/clickstream-gateway/sources.toml"#,
        reader: Reader::Gateway,
        doc: r#"A TOML file of per-source allowances and blocks (`[sources."KEY"]` with `events_per_second`, `burst`, `blocked = true`: 403 `source_blocked`). Re-read when it changes and on SIGHUP; a file that does not parse keeps the last good one. Format in docs/sources.md."#,
    },
    Variable {
        name: "REDIS_URL",
        section: "Sources: quotas, blocks, hot keys",
        default: None,
        example: r#"redis://127.0.0.1:6379"#,
        reader: Reader::Gateway,
        doc: r#"Redis or Valkey where the replicas of one deployment share each source's allowance (never on a request's path: each replica decides locally and reconciles every REDIS_SYNC_MS). Unreachable: each replica limits alone until it is back. Unset: one replica's own allowance."#,
    },
    Variable {
        name: "REDIS_SYNC_MS",
        section: "Sources: quotas, blocks, hot keys",
        default: Some(r#"200"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"How often a replica tells Redis what its sources sent and learns what the others' did; the most the replicas together may overshoot an allowance is about this long at its rate, per replica."#,
    },
    Variable {
        name: "HOT_KEY_EVENTS_PER_SECOND",
        section: "Sources: quotas, blocks, hot keys",
        default: Some(r#"500"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"A partition key sending more than this is hot (the default keeps one key at half a Kinesis shard's 1,000 records/s, leaving the rest to the shard's other keys)."#,
    },
    Variable {
        name: "HOT_KEY_POLICY",
        section: "Sources: quotas, blocks, hot keys",
        default: Some(r#"spread"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"What a hot key's records beyond the rate get: `spread` (sent under derived keys, over every shard, partition or ordering key; that key's order is not kept past the rate), `limit` (429 `rate_limited`, as a source over its allowance) or `off` (nothing)."#,
    },
    Variable {
        name: "DEDUPE_WINDOW_SECONDS",
        section: "Each event once",
        default: None,
        example: r#"86400"#,
        reader: Reader::Gateway,
        doc: r#"How long (1 s to a week) an event's own id is remembered once the event is stored (in the stream or the spill): a copy from the same source within it (an SDK's retry) is answered as stored and not written again. The id: `messageId` (Segment, RudderStack), `uuid` (PostHog), `eid` (Snowplow), the `Idempotency-Key` header on /import; /import/batch uses none. Unset: every copy is stored, as before. See docs/dedupe.md."#,
    },
    Variable {
        name: "DEDUPE_MAX_IDS",
        section: "Each event once",
        default: Some(r#"1000000"#),
        example: r#""#,
        reader: Reader::Gateway,
        doc: r#"Without REDIS_URL: the most ids the gateway remembers in its own memory (45 to 75 bytes each, about 61 MB at the default; the oldest are forgotten first, and a restart forgets them all). With REDIS_URL the ids live in Redis, shared by every replica, and this is unused."#,
    },
];

/// `.env.example`, rendered from [`VARIABLES`].
pub fn env_example() -> String {
    let mut out = String::from(ENV_HEADER);
    let mut section = "";
    for var in VARIABLES {
        if var.section != section {
            section = var.section;
            let title = format!("# --- {section} ");
            out.push_str(&format!(
                "\n{title}{}\n",
                "-".repeat(76usize.saturating_sub(title.len()))
            ));
        }
        for line in wrap(var.doc, 76) {
            out.push_str(&format!("# {line}\n"));
        }
        match (var.default, var.name.strip_suffix('*')) {
            (_, Some(prefix)) => {
                for example in var.example.split(';') {
                    out.push_str(&format!("# {prefix}{example}\n"));
                }
            }
            (Some(default), None) => out.push_str(&format!("{}={default}\n", var.name)),
            (None, None) => out.push_str(&format!("# {}={}\n", var.name, var.example)),
        }
    }
    out
}

/// `docs/configuration.md`, rendered from [`VARIABLES`].
pub fn reference() -> String {
    let mut out = String::from(REFERENCE_HEADER);
    let mut section = "";
    for var in VARIABLES {
        if var.section != section {
            section = var.section;
            out.push_str(&format!(
                "\n## {section}\n\n| Variable | Default | What it does |\n|---|---|---|\n"
            ));
        }
        let default = match (var.default, var.example) {
            (Some(default), _) => format!("`{default}`"),
            (None, "") => "unset".to_owned(),
            (None, example) if var.name.ends_with('*') => format!("unset (e.g. `{}`)", example.replace(';', "`, `")),
            (None, example) => format!("unset (e.g. `{example}`)"),
        };
        let reader = match var.reader {
            Reader::Gateway => "",
            Reader::AwsConfig => " Read by aws-config, not by the gateway.",
            Reader::Tracing => " Read by the log filter.",
            Reader::GoogleAuth => " Read by Google's Application Default Credentials, not by the gateway.",
        };
        let doc = if var.doc.is_empty() { "As above." } else { var.doc };
        out.push_str(&format!(
            "| `{}` | {default} | {}{reader} |\n",
            var.name,
            doc.replace('|', "\\|")
        ));
    }
    out
}

const ENV_HEADER: &str = "# clickstream-gateway configuration. Copy to .env and edit; real environment
# variables win over this file. Every variable is optional: with none set the
# gateway listens on 0.0.0.0:3000 and writes records to ./records.ndjson.
# Rendered from src/config/variables.rs (UPDATE_DOCS=1 cargo test --test configuration).
";

const REFERENCE_HEADER: &str = "# Configuration reference

Every variable the gateway reads, its default and what it does. Rendered
from `src/config/variables.rs`, the one list (`UPDATE_DOCS=1 cargo test --test
configuration` rewrites this file and `.env.example`; the test fails when
they are out of step). Variables come from the environment, and from a
`.env` file in the working directory (real environment variables win). An
invalid value stops start-up with a message naming the variable, its value
(never for a credential) and why.
";

/// `text` cut into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
