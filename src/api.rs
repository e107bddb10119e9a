//! The HTTP API: routing and the three endpoints.
//!
//! - `POST /import`: the body is one record; answers with the Kinesis receipt.
//! - `GET /healthz`: the process serves.
//! - `GET /readyz`: the destination is known writable and we are not shutting down.
//! - `GET /metrics`: Prometheus metrics, unless `METRICS_ADDR` moves them to an admin port.
//!
//! Unknown paths get 404; a known path with the wrong method gets 405 and `Allow`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, EXPECT, HeaderMap, HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use std::time::Instant;

use crate::app::App;
use crate::body::{BodyHints, read_limited};
use crate::encoding;
use crate::error::{ApiError, json_response};
use crate::metrics::{self, GaugeGuard};
use crate::partition_key;
use crate::sink::Record;

/// The header that carries a request's id, taken from the client when sane.
pub const REQUEST_ID: &str = "x-request-id";

/// Answers one request. Never fails: every error becomes a response. Every
/// response carries `X-Request-Id`; metrics and the access log see every one.
pub async fn handle<B>(app: Arc<App>, request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let started = Instant::now();
    let _in_flight = GaugeGuard::inc(app.metrics.requests_in_flight());
    let request_id = request_id(request.headers().get(REQUEST_ID));
    let origin = request.headers().get(ORIGIN).cloned();
    let route = metrics::route_label(request.uri().path());
    let method = metrics::method_label(request.method());

    let result = match (request.method(), request.uri().path()) {
        (&Method::POST, "/import") => import(&app, request).await,
        (&Method::OPTIONS, "/import") => preflight(&app, request.headers()),
        (_, "/import") => Err(ApiError::MethodNotAllowed { allow: "POST, OPTIONS" }),
        (&Method::GET | &Method::HEAD, "/healthz") => Ok(Reply::plain(json_response(StatusCode::OK, &Status::ok()))),
        (&Method::GET | &Method::HEAD, "/readyz") => Ok(Reply::plain(readyz(&app).await)),
        (&Method::GET | &Method::HEAD, "/metrics") if app.public_metrics => Ok(Reply::plain(metrics_response(&app))),
        (_, "/healthz" | "/readyz") => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        (_, "/metrics") if app.public_metrics => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        _ => Err(ApiError::NotFound),
    };
    let (mut response, error, reply) = match result {
        Ok(reply) => (reply.response, "", reply.log),
        Err(err) => {
            let code = err.status().1;
            (err.into_response(&request_id), code, ReplyLog::default())
        }
    };
    let status = response.status().as_u16();
    let took = started.elapsed();
    app.metrics.request_done(route, method, status, error, took);
    if app.access_log {
        tracing::info!(
            target: "access",
            request_id = %request_id,
            method,
            route,
            status,
            duration_ms = took.as_secs_f64() * 1000.0,
            bytes = reply.bytes,
            shard_id = reply.shard_id.as_deref().unwrap_or(""),
            error,
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if route == "/import"
        && let Some(origin) = origin
    {
        let request_headers = HeaderMap::from_iter([(ORIGIN, origin)]);
        app.access.add_cors_headers(&request_headers, response.headers_mut());
    }
    Ok(response)
}

/// A successful response and what the access log says about it.
struct Reply {
    response: Response<Full<Bytes>>,
    log: ReplyLog,
}

#[derive(Default)]
struct ReplyLog {
    bytes: usize,
    shard_id: Option<String>,
}

impl Reply {
    fn plain(response: Response<Full<Bytes>>) -> Self {
        Reply {
            response,
            log: ReplyLog::default(),
        }
    }
}

/// The client's `X-Request-Id` when it is short visible ASCII, else a new UUID.
fn request_id(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The admin port's one endpoint: `GET /metrics`.
pub fn admin<B>(app: &App, request: &Request<B>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => metrics_response(app),
        _ => ApiError::NotFound.into_response("admin"),
    }
}

fn metrics_response(app: &App) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(app.metrics.render())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    response
}

/// `POST /import`: validate, read within limits, store, answer with the receipt.
async fn import<B>(app: &App, request: Request<B>) -> Result<Reply, ApiError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    // Shed before doing any work: a queue that grows helps no one.
    let _slot = app
        .request_slots
        .try_acquire()
        .map_err(|_| ApiError::Overloaded("too many requests in flight"))?;
    let headers = request.headers();
    app.access.authorize(headers)?;
    let partition_key = partition_key::resolve(headers.get(partition_key::HEADER).map(|v| v.as_bytes()))?;
    let hints = BodyHints {
        expects_continue: headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
    };
    let encoding = headers.get(CONTENT_ENCODING).cloned();
    // Kinesis counts the partition key's bytes against the record limit too.
    let limit = app.max_record_bytes().saturating_sub(partition_key.len());
    // Reserve the declared length (or, for a chunked body, the whole limit)
    // from the in-flight byte budget before reading anything.
    let reserve = request
        .body()
        .size_hint()
        .exact()
        .map_or(limit, |len| (len as usize).min(limit + 1));
    let _bytes = u32::try_from(reserve)
        .ok()
        .and_then(|n| app.body_budget.try_acquire_many(n).ok())
        .ok_or(ApiError::Overloaded("too many body bytes in flight"))?;
    let body = read_limited(request.into_body(), limit, app.http.body_read_timeout, hints).await?;
    let data = encoding::decode(encoding.as_ref(), body, limit)?;
    if data.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let bytes = data.len();
    app.metrics.body_received(bytes);
    let receipt = app.put(Record { data, partition_key }).await?;
    Ok(Reply {
        response: json_response(StatusCode::OK, &receipt),
        log: ReplyLog {
            bytes,
            shard_id: Some(receipt.shard_id),
        },
    })
}

/// `OPTIONS /import`: the CORS preflight.
fn preflight(app: &App, headers: &HeaderMap) -> Result<Reply, ApiError> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    app.access.preflight(headers, response.headers_mut())?;
    Ok(Reply::plain(response))
}

/// `GET /readyz`: 200 or 503, with the reason and, for the file sink, a warning.
async fn readyz(app: &App) -> Response<Full<Bytes>> {
    let verdict = app.readiness().await;
    let sink = app.sink();
    let body = Status {
        status: if verdict.ready { "ready" } else { "not_ready" },
        detail: Some(verdict.status),
        sink: Some(sink.kind()),
        target: Some(sink.target()),
        warning: matches!(sink, crate::sink::Sink::File(_)).then_some("records are NOT going to Kinesis"),
    };
    let status = if verdict.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sink: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

impl Status {
    fn ok() -> Self {
        Status {
            status: "ok",
            detail: None,
            sink: None,
            target: None,
            warning: None,
        }
    }
}
