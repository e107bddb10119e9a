//! A clickstream ingestion gateway: web and mobile SDKs post events, and
//! each event is written as a record to a stream (Amazon Kinesis, Kafka,
//! Google Pub/Sub, or a local file) and answered with the stream's own
//! receipt. `POST /import` takes the body as one record, `POST /import/batch`
//! many, and the analytics SDKs' doors speak Segment's, RudderStack's,
//! PostHog's and Snowplow's protocols. A 2xx means every event of the
//! request is in the stream (or, with the spill on, durable on local disk
//! and on its way); any other answer says whether to retry.
//!
//! # Layout
//! A request flows `server` -> `api` (route table, the one place the live
//! view hears of refusals) -> `endpoints::*` (each door: `ingest`, parse
//! the body into records, `Doors::put`, its family's answer) -> `store`
//! (the spill wrapping the stream) -> `writer` -> `sink`.
//! - [`config`]: environment variables into a typed [`config::Config`];
//!   `lookup`: typed reading of one variable and `ConfigError`, below
//!   `config/` and every sink, each of which reads its own settings.
//! - [`server`]: accept loop, HTTP/1.1 + h2c, graceful shutdown ([`server::run`]).
//! - `routes`: the route table, defined once.
//! - `api`: dispatch, request ids, metrics and access log per request, the
//!   probe and metrics endpoints.
//! - [`endpoints`]: the doors: one answer per door family (`endpoints::answer`), the gateway's own
//!   API (a file per endpoint), and the analytics SDKs' protocols
//!   ([`endpoints::sdk`]: one generic handler and a file per protocol).
//! - `ingest`: shed, authorise, reserve, read, decode: the shared step;
//!   `in_flight`: the caps it holds a place in; `doors`: the doors' narrow
//!   context (`doors::Doors`), built by `app`.
//! - [`body`]: reading a body within a byte limit and a deadline.
//! - [`encoding`]: `Content-Encoding` (gzip, deflate, zstd, br) decoded within the limit.
//! - `access`: API keys and CORS (public on the SDK routes, opt-in on the API).
//! - `nesting`: how deeply a JSON event nests (`JSON_MAX_DEPTH`).
//! - [`partition_key`]: the client's key, a key from the record's fields, or a random one.
//! - [`error`]: [`error::ApiError`], the one table from failure to HTTP
//!   status, and the one writer of error bodies.
//! - [`app`]: shared state built at start-up ([`app::App`]).
//! - `store`: the one thing the doors write to, and the one summary of a
//!   request's outcomes.
//! - `writer`: batching, per-record retries and deadlines, one outcome per
//!   record, a concept per file; `concurrency`: the adaptive limit on
//!   upstream calls in flight.
//! - `quota`: many sources on one gateway: each source's allowance
//!   (shared across replicas through Redis), blocked sources, hot
//!   partition keys.
//! - `dedupe`: each event once: retried events dropped by their own id,
//!   held honestly while a first copy is in flight (shared across replicas
//!   through Redis).
//! - `spill`: the durable spill on local disk (`SPILL_DIR`) and its replay.
//! - `metrics`: the Prometheus registry behind `/metrics`.
//! - `readiness`: the cached `/readyz` answer.
//! - `live`: the live view's hub (`/live`): what arrives and what is
//!   refused, sampled to its viewers; its HTTP side is `endpoints/live/`.
//! - [`sink`]: the [`sink::Sink`] seam, what a failure is
//!   ([`sink::failure`]), and where records go, a file per sink with its
//!   settings: [`sink::kinesis`], [`sink::kafka`], [`sink::pubsub`],
//!   [`sink::file`].
//!
//! Modules nothing outside the crate uses are `pub(crate)`
//! (`unreachable_pub` warns on a `pub` item no one outside can reach).
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub(crate) mod access;
pub(crate) mod api;
pub mod app;
pub mod body;
pub(crate) mod concurrency;
pub mod config;
pub(crate) mod dedupe;
pub(crate) mod doors;
pub mod encoding;
pub mod endpoints;
pub mod error;
pub(crate) mod in_flight;
pub(crate) mod ingest;
pub(crate) mod live;
pub(crate) mod lookup;
pub(crate) mod metrics;
pub(crate) mod nesting;
pub mod partition_key;
pub(crate) mod quota;
pub(crate) mod readiness;
pub(crate) mod redis_link;
pub(crate) mod routes;
pub mod server;
pub mod sink;
pub(crate) mod spill;
pub(crate) mod store;
pub(crate) mod writer;
