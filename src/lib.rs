//! A clickstream ingestion gateway: `POST /import` writes the request body as
//! one record to an Amazon Kinesis data stream, `POST /import/batch` writes
//! each event of the body as its own record, and both answer with the
//! Kinesis receipts (`ShardId`, `SequenceNumber`). A 2xx means every record
//! is in the stream; any other answer means it is not, and says whether to
//! retry.
//!
//! # Layout
//! A request flows `server` -> `api` (route table) -> `endpoints::*` (parse
//! the body into records, shape the answer) -> `ingest` (shared by every
//! endpoint that takes events) -> `app` -> `writer` -> `sink`.
//! - [`config`]: environment variables into a typed [`config::Config`].
//! - [`server`]: accept loop, HTTP/1.1 + h2c, graceful shutdown ([`server::run`]).
//! - [`routes`]: the route table, defined once.
//! - [`api`]: dispatch, request ids, metrics and access log per request, the
//!   probe and metrics endpoints.
//! - [`endpoints`]: the doors that take events: the gateway's own API, a file
//!   per endpoint, and the analytics SDKs' protocols ([`endpoints::sdk`]),
//!   one generic handler and a file per protocol.
//! - [`ingest`]: shed, authorise, reserve, read, decode: the shared step.
//! - [`body`]: reading a body within a byte limit and a deadline.
//! - [`encoding`]: `Content-Encoding` (gzip, deflate, zstd, br) decoded within the limit.
//! - [`access`]: API keys and CORS (public on the SDK routes, opt-in on the API).
//! - [`nesting`]: how deeply a JSON event nests (`JSON_MAX_DEPTH`).
//! - [`partition_key`]: the client's key, a key from the record's fields, or a random one.
//! - [`error`]: [`error::ApiError`] and the one table from failure to HTTP status.
//! - [`app`]: shared state built at start-up ([`app::App`]).
//! - [`writer`]: batching, per-record retries and deadlines, one outcome per record.
//! - [`concurrency`]: the adaptive limit on upstream calls in flight.
//! - [`spill`]: the durable spill on local disk (`SPILL_DIR`) and its replay.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`readiness`]: the cached `/readyz` answer.
//! - [`live`]: the live view's hub (`/live`): what arrives and what is
//!   refused, sampled to its viewers; its HTTP side is `endpoints::live`.
//! - [`sink`]: the [`sink::Sink`] seam and where records go: [`sink::kinesis`]
//!   (the product) or [`sink::file`].
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub(crate) mod access;
pub(crate) mod api;
pub mod app;
pub mod body;
pub(crate) mod concurrency;
pub mod config;
pub mod encoding;
pub mod endpoints;
pub mod error;
pub(crate) mod ingest;
pub(crate) mod intake;
pub(crate) mod live;
pub(crate) mod metrics;
pub(crate) mod nesting;
pub mod partition_key;
pub(crate) mod readiness;
pub(crate) mod routes;
pub mod server;
pub mod sink;
pub(crate) mod spill;
pub(crate) mod store;
pub(crate) mod writer;
