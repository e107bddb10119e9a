//! The route table: every path the public port serves, defined once, with
//! its methods, metric label, and whether it speaks CORS and needs an API key.
//! `api.rs` dispatches on it, `metrics.rs` labels by it, and the CORS and
//! auth checks read it, so a new endpoint is one row here plus its handler.
//!
//! A path is exact, but for two things the SDKs need: a row may also match
//! with one trailing `/` (PostHog's SDKs add it), and a `{name}` segment
//! matches any one non-empty segment (Segment's settings path carries the
//! write key). The metric label is always the row's path, so labels stay a
//! fixed, known set.

use hyper::Method;

/// What a route does; `api.rs` maps each to its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /import`: the body is one record.
    Import,
    /// `POST /import/batch`: the body is many records.
    ImportBatch,
    /// `GET /healthz`: the process serves.
    Health,
    /// `GET /readyz`: the destination is writable and we are not shutting down.
    Ready,
    /// `GET /metrics`: Prometheus metrics (only when no `METRICS_ADDR`).
    Metrics,
    /// Segment / RudderStack HTTP tracking API: `/v1/batch` and `/v1/b`
    /// (`None`), or one event of the given type (`/v1/track`, `/v1/t`, ...).
    Segment(Option<&'static str>),
    /// `GET /v1/projects/{writeKey}/settings`: the browser SDK's settings.
    SegmentSettings,
    /// `POST /v1/m`: the browser SDK's own telemetry, counted and dropped.
    SegmentTelemetry,
    /// PostHog capture: `/batch`, `/capture`, `/e`, `/i/v0/e`.
    PostHog,
    /// Snowplow: `POST /com.snowplowanalytics.snowplow/tp2`.
    SnowplowPost,
    /// Snowplow: `GET /i?...`, one event in the query, answered with a pixel.
    SnowplowPixel,
}

/// One row of the table.
#[derive(Debug)]
pub struct Route {
    /// The exact path.
    pub path: &'static str,
    /// The handler.
    pub endpoint: Endpoint,
    /// Methods served (besides `OPTIONS` for CORS routes, answered as a preflight).
    pub methods: &'static [Method],
    /// The `Allow` header of a 405.
    pub allow: &'static str,
    /// Whether browsers may call it: `OPTIONS` preflights and CORS headers.
    pub cors: bool,
    /// Whether `API_KEYS` guard it.
    pub auth: bool,
    /// Whether it is also served with one trailing `/`.
    pub slash: bool,
}

impl Route {
    /// The metric label: the path itself (a fixed, known string).
    pub fn label(&self) -> &'static str {
        self.path
    }

    fn matches(&self, path: &str) -> bool {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if self.slash && !trimmed.is_empty() => trimmed,
            _ => path,
        };
        if !self.path.contains('{') {
            return self.path == path;
        }
        let mut want = self.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    }
}

const EVENTS: &[Method] = &[Method::POST];
const READ: &[Method] = &[Method::GET, Method::HEAD];
const PIXEL: &[Method] = &[Method::GET];

/// A row of our own API.
const fn own(path: &'static str, endpoint: Endpoint, methods: &'static [Method], allow: &'static str) -> Route {
    let events = matches!(endpoint, Endpoint::Import | Endpoint::ImportBatch);
    Route {
        path,
        endpoint,
        methods,
        allow,
        cors: events,
        auth: events,
        slash: false,
    }
}

/// A row an analytics SDK posts to: browsers may call it, and its key is
/// checked by the endpoint in the SDK's own form.
const fn sdk(path: &'static str, endpoint: Endpoint) -> Route {
    let (methods, allow) = match endpoint {
        Endpoint::SegmentSettings => (READ, "GET, HEAD, OPTIONS"),
        Endpoint::SnowplowPixel => (PIXEL, "GET, OPTIONS"),
        _ => (EVENTS, "POST, OPTIONS"),
    };
    Route {
        path,
        endpoint,
        methods,
        allow,
        cors: true,
        auth: true,
        slash: true,
    }
}

/// Every route of the public port.
pub static ROUTES: &[Route] = &[
    own("/import", Endpoint::Import, EVENTS, "POST, OPTIONS"),
    own("/import/batch", Endpoint::ImportBatch, EVENTS, "POST, OPTIONS"),
    own("/healthz", Endpoint::Health, READ, "GET, HEAD"),
    own("/readyz", Endpoint::Ready, READ, "GET, HEAD"),
    own("/metrics", Endpoint::Metrics, READ, "GET, HEAD"),
    // Segment / RudderStack: server SDKs post to /v1/batch, the browser SDK
    // to the one-letter paths.
    sdk("/v1/batch", Endpoint::Segment(None)),
    sdk("/v1/b", Endpoint::Segment(None)),
    sdk("/v1/track", Endpoint::Segment(Some("track"))),
    sdk("/v1/t", Endpoint::Segment(Some("track"))),
    sdk("/v1/identify", Endpoint::Segment(Some("identify"))),
    sdk("/v1/i", Endpoint::Segment(Some("identify"))),
    sdk("/v1/page", Endpoint::Segment(Some("page"))),
    sdk("/v1/p", Endpoint::Segment(Some("page"))),
    sdk("/v1/screen", Endpoint::Segment(Some("screen"))),
    sdk("/v1/s", Endpoint::Segment(Some("screen"))),
    sdk("/v1/group", Endpoint::Segment(Some("group"))),
    sdk("/v1/g", Endpoint::Segment(Some("group"))),
    sdk("/v1/alias", Endpoint::Segment(Some("alias"))),
    sdk("/v1/a", Endpoint::Segment(Some("alias"))),
    sdk("/v1/m", Endpoint::SegmentTelemetry),
    sdk("/v1/projects/{writeKey}/settings", Endpoint::SegmentSettings),
    // PostHog capture.
    sdk("/batch", Endpoint::PostHog),
    sdk("/capture", Endpoint::PostHog),
    sdk("/e", Endpoint::PostHog),
    sdk("/i/v0/e", Endpoint::PostHog),
    // Snowplow collector.
    sdk("/com.snowplowanalytics.snowplow/tp2", Endpoint::SnowplowPost),
    sdk("/i", Endpoint::SnowplowPixel),
];

/// The route for `path`, if any.
pub fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.matches(path))
}

/// The metric label of `path`: its route's, or `other`.
pub fn label(path: &str) -> &'static str {
    find(path).map_or("other", Route::label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_listed_once_and_labels_are_bounded() {
        for route in ROUTES {
            assert_eq!(
                ROUTES.iter().filter(|r| r.path == route.path).count(),
                1,
                "{}",
                route.path
            );
            for method in route.methods {
                assert!(route.allow.contains(method.as_str()), "{}: {method}", route.path);
            }
        }
        assert_eq!(label("/import/batch"), "/import/batch");
        assert_eq!(label("/import/batch/"), "other");
        assert_eq!(label("/anything?x"), "other");
    }

    #[test]
    fn sdk_paths_match_with_a_slash_and_with_their_key() {
        assert_eq!(label("/batch/"), "/batch");
        assert_eq!(label("/i/v0/e/"), "/i/v0/e");
        assert_eq!(label("/e"), "/e");
        assert_eq!(label("/e//"), "other");
        assert_eq!(label("/v1/projects/wk-1/settings"), "/v1/projects/{writeKey}/settings");
        assert_eq!(label("/v1/projects//settings"), "other");
        assert_eq!(label("/v1/projects/a/b/settings"), "other");
        assert_eq!(label("/v1/projects/wk/settings/x"), "other");
        assert_eq!(label("/"), "other");
        assert_eq!(
            find("/v1/t").map(|r| r.endpoint),
            Some(Endpoint::Segment(Some("track")))
        );
    }
}
