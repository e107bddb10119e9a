//! The HTTP API: dispatch on the route table (`routes.rs`), plus what every
//! answer gets (request id, metrics, access log, CORS headers) and the small
//! endpoints that take no events (`/healthz`, `/readyz`, `/metrics`).
//!
//! The endpoints that take events live in `endpoints/`, one file each.
//! Unknown paths get 404; a known path with the wrong method gets 405 and
//! `Allow`; `OPTIONS` on a CORS route is its preflight.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::access::Cors;
use crate::app::App;
use crate::body::RequestBody;
use crate::endpoints::{self, Body, Reply};
use crate::error::{ApiError, json_response};
use crate::live::Refusal;
use crate::metrics::{self, GaugeGuard};
use crate::routes::{self, Endpoint, Route};

/// The header that carries a request's id, taken from the client when sane.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The headers whose meaning the gateway acts on. Each may come once: with
/// two, the gateway and a proxy in front of it could each read a different
/// one (two `Origin`s, one allowed), so such a request is refused whole.
const SINGLE_HEADERS: [&str; 8] = [
    "origin",
    "authorization",
    "x-api-key",
    "content-encoding",
    "content-type",
    crate::partition_key::HEADER,
    "idempotency-key",
    REQUEST_ID,
];

/// Answers one request. Never fails: every error becomes a response. Every
/// response carries `X-Request-Id`; metrics and the access log see every one.
pub(crate) async fn handle<B>(app: Arc<App>, request: Request<B>) -> Result<Response<Body>, Infallible>
where
    B: RequestBody,
{
    let route = routes::find(request.uri().path()).filter(|r| !r.is_admin() || app.public_metrics());
    answer(app, route, request).await
}

/// Answers a request for `route` (`None`: 404).
async fn answer<B>(
    app: Arc<App>,
    route: Option<&'static Route>,
    request: Request<B>,
) -> Result<Response<Body>, Infallible>
where
    B: RequestBody,
{
    let started = Instant::now();
    let _in_flight = GaugeGuard::inc(app.metrics().requests_in_flight());
    let repeated = repeated_header(request.headers());
    let request_id = request_id(request.headers().get(REQUEST_ID).filter(|_| repeated.is_none()));
    let origin = request.headers().get(ORIGIN).filter(|_| repeated.is_none()).cloned();
    let label = route.map_or("other", Route::label);
    let method = metrics::method_label(request.method());

    let result = match (route, repeated) {
        (None, _) => Err(ApiError::NotFound),
        (Some(_), Some(name)) => Err(ApiError::RepeatedHeader(name)),
        (Some(route), None) => dispatch(&app, route, request, &request_id).await,
    };
    let (reply, message, source) = match result {
        Ok(reply) => (reply, None, None),
        Err(err) => {
            let (_, error, _) = err.status();
            let (shed, message) = (err.is_shed(), err.message());
            let source = err.masked_source().map(str::to_owned);
            let mut reply = Reply::plain(err.into_response(&request_id));
            (reply.error, reply.shed) = (error, shed);
            (reply, Some(message), source)
        }
    };
    let status = reply.response.status().as_u16();
    let watched = app.live().watched() && route.is_some_and(|r| !matches!(r.endpoint, Endpoint::Live(_)));
    if watched && status >= 400 {
        // The one place the live view hears of refusals: an error, or a
        // batch whose answer lists each record's outcome.
        let message = message
            .as_deref()
            .unwrap_or("some records of the batch were not stored; the answer lists each record's outcome");
        app.live().refused(Refusal {
            door: label,
            method,
            status,
            code: reply.error,
            message,
            request_id: &request_id,
            key: source.as_deref(),
        });
    }
    let Reply {
        mut response,
        records,
        bytes,
        location,
        error,
        shed,
    } = reply;
    let took = started.elapsed();
    app.metrics().request_done(label, method, status, error, shed, took);
    if app.access_log() {
        tracing::info!(
            target: "access",
            request_id = %request_id,
            method,
            route = label,
            status,
            duration_ms = took.as_secs_f64() * 1000.0,
            records,
            bytes,
            location = location.as_deref().unwrap_or(""),
            error,
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if let Some(route) = route
        && let Some(origin) = origin
    {
        let request_headers = HeaderMap::from_iter([(ORIGIN, origin)]);
        app.access()
            .add_cors_headers(route.cors, &request_headers, response.headers_mut());
    }
    Ok(response)
}

async fn dispatch<B>(app: &Arc<App>, route: &Route, request: Request<B>, request_id: &str) -> Result<Reply, ApiError>
where
    B: RequestBody,
{
    let method = request.method();
    if !route.methods.contains(method) {
        return if route.cors != Cors::Off && method == Method::OPTIONS {
            preflight(app, route, request.headers())
        } else {
            Err(ApiError::MethodNotAllowed { allow: route.allow })
        };
    }
    if !app.access().admits(route.cors, request.headers()) {
        return Err(ApiError::OriginNotAllowed);
    }
    let doors = app.doors();
    match route.endpoint {
        Endpoint::Import => endpoints::import::handle(doors, request).await,
        Endpoint::ImportBatch => endpoints::batch::handle(doors, request, request_id).await,
        Endpoint::Health => Ok(Reply::plain(json_response(StatusCode::OK, &Status::ok()))),
        Endpoint::Ready => Ok(Reply::plain(readyz(app).await)),
        Endpoint::Metrics => Ok(Reply::plain(metrics_response(app))),
        Endpoint::Events(protocol) => endpoints::sdk::handle(doors, protocol, route.label(), request).await,
        Endpoint::Live(path) => endpoints::live::handle(app, path, request).await,
        Endpoint::Document(document) => endpoints::sdk::serve(doors, document, request).await,
    }
}

/// The first of [`SINGLE_HEADERS`] sent more than once, if any.
fn repeated_header(headers: &HeaderMap) -> Option<&'static str> {
    // Nearly every request repeats no header at all: one comparison.
    if headers.len() == headers.keys_len() {
        return None;
    }
    SINGLE_HEADERS
        .into_iter()
        .find(|name| headers.get_all(*name).iter().nth(1).is_some())
}

/// The client's `X-Request-Id` when it is short visible ASCII, else a new UUID.
fn request_id(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The admin port (`METRICS_ADDR`): `/metrics` and the live view, nothing else.
pub(crate) async fn admin<B>(app: Arc<App>, request: Request<B>) -> Result<Response<Body>, Infallible>
where
    B: RequestBody,
{
    let route = routes::find(request.uri().path()).filter(|r| r.is_admin());
    answer(app, route, request).await
}

fn metrics_response(app: &App) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(app.metrics().render())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    response
}

/// `OPTIONS` on a CORS route: the preflight.
fn preflight(app: &App, route: &Route, headers: &HeaderMap) -> Result<Reply, ApiError> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(route.allow));
    app.access()
        .preflight(route.cors, route.allow, headers, response.headers_mut())?;
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
        warning: sink.warning(),
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
