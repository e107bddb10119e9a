//! The live view's HTTP side: `GET /live` (one page, embedded in the
//! binary), `GET /live/events` (server-sent events from the hub,
//! `live.rs`), the page's script and style, and the sign-in.
//!
//! Who may see it: nobody unless `ADMIN_TOKEN` is set (then 404). A request
//! is let in with `Authorization: Bearer <token>` (scripts, `curl -N`) or
//! with the cookie the sign-in sets (`POST /live` with the token as a form
//! field): `HttpOnly`, `SameSite=Strict`, scoped to `/live`, holding a
//! digest of the token rather than the token. Both are compared in constant
//! time over SHA-256 digests. Every answer forbids framing and caching and
//! carries a CSP that allows only the page's own script and style; none
//! carries CORS headers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderMap, HeaderValue, LOCATION, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio::time::{Duration, MissedTickBehavior, interval};

use crate::app::App;
use crate::body::{BodyHints, RequestBody, read_limited};
use crate::endpoints::{Body, Reply};
use crate::error::ApiError;
use crate::live::{Counts, Filter, Hub, frame, unix_millis};
use crate::metrics::StreamState;

const PAGE: &str = include_str!("page.html");
const SIGN_IN: &str = include_str!("sign-in.html");
const SCRIPT: &str = include_str!("live.js");
const STYLE: &str = include_str!("live.css");

/// The cookie the sign-in sets.
const COOKIE_NAME: &str = "gateway_live";
/// How long the cookie lasts: a working day.
const COOKIE_MAX_AGE: u32 = 12 * 3600;
/// The sign-in form's largest body.
const SIGN_IN_MAX_BYTES: usize = 4096;
/// How long the sign-in form's body may take.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a viewer gets the stream's state and the rates.
const STATE_EVERY: Duration = Duration::from_secs(1);

/// Allows the page's own script, style and stream, nothing else, and no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Every live path: the page, its stream, its script and its style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LivePath {
    /// `GET /live` (and `POST /live`, the sign-in).
    Page,
    /// `GET /live/events`.
    Events,
    /// `GET /live/live.js`.
    Script,
    /// `GET /live/live.css`.
    Style,
}

/// Answers a request for a live path.
pub(crate) async fn handle<B>(app: &Arc<App>, path: LivePath, request: Request<B>) -> Result<Reply, ApiError>
where
    B: RequestBody,
{
    let hub = app.live();
    let Some(token) = hub.config().admin_token.as_deref() else {
        return Err(ApiError::NotFound);
    };
    let keys = Keys::new(token);
    let signed_in = keys.admits(request.headers());
    let response = match (path, request.method()) {
        (LivePath::Script, _) => asset(SCRIPT, "text/javascript; charset=utf-8"),
        (LivePath::Style, _) => asset(STYLE, "text/css; charset=utf-8"),
        (LivePath::Page, &Method::POST) => sign_in(&keys, request).await?,
        (LivePath::Page, _) if signed_in => html(StatusCode::OK, PAGE.to_owned()),
        (LivePath::Page, _) => html(StatusCode::UNAUTHORIZED, SIGN_IN.replace("{{error}}", "")),
        (LivePath::Events, _) if signed_in => {
            return Ok(Reply::streaming(events(
                app,
                request.uri().query().unwrap_or_default(),
            )?));
        }
        (LivePath::Events, _) => return Err(ApiError::Unauthorized),
    };
    Ok(Reply::plain(guarded(response)))
}

/// The token's two forms a request may carry, as digests.
struct Keys {
    token: [u8; 32],
    cookie: String,
}

impl Keys {
    fn new(token: &str) -> Self {
        Keys {
            token: Sha256::digest(token.as_bytes()).into(),
            cookie: hex(&Sha256::digest(format!("clickstream-gateway live view\0{token}"))),
        }
    }

    fn is_token(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented.ct_eq(&self.token).into()
    }

    fn is_cookie(&self, presented: &str) -> bool {
        let (a, b) = (
            Sha256::digest(presented.as_bytes()),
            Sha256::digest(self.cookie.as_bytes()),
        );
        a.ct_eq(&b).into()
    }

    /// Whether the request carries the token (Bearer) or the cookie.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if bearer.is_some_and(|token| self.is_token(token)) {
            return true;
        }
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == COOKIE_NAME && self.is_cookie(value))
    }
}

/// `POST /live`: the sign-in form. The right token sets the cookie and
/// sends the browser back to the page; a wrong one shows the form again.
async fn sign_in<B>(keys: &Keys, request: Request<B>) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: RequestBody,
{
    let body = read_limited(
        request.into_body(),
        SIGN_IN_MAX_BYTES,
        SIGN_IN_TIMEOUT,
        BodyHints::default(),
    )
    .await?;
    let token = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !keys.is_token(token.trim().as_bytes()) {
        let page = SIGN_IN.replace(
            "{{error}}",
            "<p class=\"error\" role=\"alert\">That is not the token.</p>",
        );
        return Ok(html(StatusCode::UNAUTHORIZED, page));
    }
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static("/live"));
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/live; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE}",
        keys.cookie
    );
    headers.insert(SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex and ASCII"));
    Ok(response)
}

/// `GET /live/events?door=&key=&q=&refused=1`: the viewer's stream.
fn events(app: &Arc<App>, query: &str) -> Result<Response<Body>, ApiError> {
    let filter = filter(query);
    let joined = app
        .live()
        .join(filter.clone())
        .map_err(|full| ApiError::Overloaded(full.reason()))?;
    // Its first frame says what it will get; the state follows every second.
    let hello = Hello {
        filter: FilterView::of(&filter),
        payloads: app.live().config().payloads,
        per_second: app.live().config().events_per_second,
    };
    let _ = joined.sender.try_send(frame("hello", &hello));
    tokio::spawn(report_state(app.clone(), joined.id, joined.sender));
    let stream = EventStream {
        frames: joined.frames,
        _viewer: Viewer {
            hub: app.live().clone(),
            id: joined.id,
        },
    };
    let mut response = Response::new(Full::default());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    // Proxies that buffer would hold the stream back (nginx reads this).
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(guarded(response).map(|_| Either::Right(stream)))
}

/// The viewer's filter from the stream's query.
fn filter(query: &str) -> Filter {
    let mut filter = Filter::default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.trim().to_owned();
        match &*name {
            "door" if !value.is_empty() => filter.door = Some(value),
            "key" if !value.is_empty() => filter.key = Some(value),
            "q" if !value.is_empty() => filter.text = Some(value),
            "refused" => filter.refused_only = value == "1" || value == "true",
            _ => {}
        }
    }
    filter
}

#[derive(Serialize)]
struct Hello<'a> {
    filter: FilterView<'a>,
    payloads: bool,
    per_second: u32,
}

#[derive(Serialize)]
struct FilterView<'a> {
    door: Option<&'a str>,
    key: Option<&'a str>,
    q: Option<&'a str>,
    refused: bool,
}

impl<'a> FilterView<'a> {
    fn of(filter: &'a Filter) -> Self {
        FilterView {
            door: filter.door.as_deref(),
            // The key filter may be a full key: not echoed.
            key: filter.key.as_ref().map(|_| "set"),
            q: filter.text.as_deref(),
            refused: filter.refused_only,
        }
    }
}

#[derive(Serialize)]
struct State<'a> {
    t: u64,
    viewers: usize,
    skipped: u64,
    counts: &'a Counts,
    sink: SinkView,
}

#[derive(Serialize)]
struct SinkView {
    kind: &'static str,
    target: String,
    ready: bool,
    status: String,
    spill: bool,
    #[serde(flatten)]
    numbers: StreamState,
}

/// Sends viewer `id` the stream's state and the traffic counts every
/// second, until it leaves, falls behind, or the gateway shuts down (the
/// stream then ends, so graceful shutdown is not held up by a viewer).
async fn report_state(app: Arc<App>, id: u64, sender: mpsc::Sender<Bytes>) {
    let hub = app.live();
    let mut tick = interval(STATE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if app.is_shutting_down() || !hub.is_watching(id) {
            break;
        }
        let verdict = app.readiness().await;
        let (counts, skipped) = hub.counts(id);
        let state = State {
            t: unix_millis(),
            viewers: hub.viewers(),
            skipped,
            counts: &counts,
            sink: SinkView {
                kind: app.sink().kind(),
                target: app.sink().target(),
                ready: verdict.ready,
                status: verdict.status,
                spill: app.has_spill(),
                numbers: app.metrics().stream_state(),
            },
        };
        if sender.try_send(frame("state", &state)).is_err() {
            break;
        }
    }
    hub.leave(id);
}

/// Leaves the hub when the viewer's stream is dropped (the client went away).
struct Viewer {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

/// The body of `/live/events`: the viewer's frames as they come.
pub struct EventStream {
    frames: mpsc::Receiver<Bytes>,
    _viewer: Viewer,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("viewer", &self._viewer.id).finish()
    }
}

impl HttpBody for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|data| Ok(Frame::data(data))))
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// What every live answer carries: no framing, no caching, no sniffing,
/// no referrer, and the CSP.
fn guarded(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
