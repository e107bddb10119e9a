//! The HTTP API: routing and the three endpoints.
//!
//! - `POST /import`: the body is one record; answers with the Kinesis receipt.
//! - `GET /healthz`: the process serves.
//! - `GET /readyz`: the destination is known writable and we are not shutting down.
//!
//! Unknown paths get 404; a known path with the wrong method gets 405 and `Allow`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::EXPECT;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::app::App;
use crate::body::{BodyHints, read_limited};
use crate::error::{ApiError, json_response};
use crate::partition_key;
use crate::sink::Record;

/// Answers one request. Never fails: every error becomes a response.
pub async fn handle<B>(app: Arc<App>, request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let result = match (request.method(), request.uri().path()) {
        (&Method::POST, "/import") => import(&app, request).await,
        (_, "/import") => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (&Method::GET | &Method::HEAD, "/healthz") => Ok(json_response(StatusCode::OK, &Status::ok())),
        (&Method::GET | &Method::HEAD, "/readyz") => Ok(readyz(&app).await),
        (_, "/healthz" | "/readyz") => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        _ => Err(ApiError::NotFound),
    };
    Ok(result.unwrap_or_else(ApiError::into_response))
}

/// `POST /import`: validate, read within limits, store, answer with the receipt.
async fn import<B>(app: &App, request: Request<B>) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let headers = request.headers();
    let partition_key = partition_key::resolve(headers.get(partition_key::HEADER).map(|v| v.as_bytes()))?;
    let hints = BodyHints {
        expects_continue: headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
    };
    // Kinesis counts the partition key's bytes against the record limit too.
    let limit = app.max_record_bytes().saturating_sub(partition_key.len());
    let data = read_limited(request.into_body(), limit, app.http.body_read_timeout, hints).await?;
    if data.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let receipt = app.put(Record { data, partition_key }).await?;
    Ok(json_response(StatusCode::OK, &receipt))
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
