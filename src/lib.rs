//! A clickstream ingestion gateway: `POST /import` writes the request body as
//! one record to an Amazon Kinesis data stream and answers with the Kinesis
//! receipt (`ShardId`, `SequenceNumber`). A 2xx means the record is in the
//! stream; any other answer means it is not, and says whether to retry.
//!
//! # Layout
//! - [`config`]: environment variables into a typed [`config::Config`].
//! - [`server`]: accept loop, HTTP/1.1 + h2c, graceful shutdown ([`server::run`]).
//! - [`api`]: routing and the endpoints.
//! - [`body`]: reading a body within a byte limit and a deadline.
//! - [`encoding`]: `Content-Encoding` (gzip, deflate, zstd, br) decoded within the limit.
//! - [`access`]: API keys and CORS.
//! - [`partition_key`]: the client's key or a random one.
//! - [`error`]: [`error::ApiError`] and the one table from failure to HTTP status.
//! - [`app`]: shared state built at start-up ([`app::App`]).
//! - [`batcher`]: concurrent records coalesced into `PutRecords`, one receipt each.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`readiness`]: the cached `/readyz` answer.
//! - [`sink`]: where records go: [`sink::kinesis`] (the product) or [`sink::file`].
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod app;
pub mod batcher;
pub mod body;
pub mod config;
pub mod encoding;
pub mod error;
pub mod metrics;
pub mod partition_key;
pub mod readiness;
pub mod server;
pub mod sink;
