//! The route table: every path the public port serves, defined once, with
//! its methods, metric label, and whether it speaks CORS. `api.rs`
//! dispatches on it, `metrics.rs` labels by it, and the CORS checks read it,
//! so a new endpoint is one row here plus its handler. API keys are checked
//! by the doors that take events (`ingest.rs`, and each SDK protocol once
//! its key is read), not here: an SDK's key may be in its body.
//!
//! A path is exact, but for two things the SDKs need: a row may also match
//! with one trailing `/` (PostHog's SDKs add it), and a `{name}` segment
//! matches any one non-empty segment (Segment's settings path carries the
//! write key). The metric label is always the row's path, so labels stay a
//! fixed, known set.

use hyper::Method;

use crate::access::Cors;
use crate::endpoints::live::LivePath;
use crate::endpoints::sdk::posthog::{Flags, PostHog, RemoteConfig};
use crate::endpoints::sdk::rudderstack::SourceConfig;
use crate::endpoints::sdk::segment::{Segment, Settings, Telemetry};
use crate::endpoints::sdk::snowplow::Snowplow;
use crate::endpoints::sdk::{Document, Protocol};

/// What a route does; `api.rs` maps each to its handler.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
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
    /// The live view (`ADMIN_TOKEN`; on the public port only when no
    /// `METRICS_ADDR`, like `/metrics`).
    Live(LivePath),
    /// An analytics SDK's events, in its protocol.
    Events(&'static dyn Protocol),
    /// A document an analytics SDK loads (settings, source configuration,
    /// feature flags) or posts that is not events (telemetry).
    Document(&'static dyn Document),
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Route {
    /// The exact path.
    pub path: &'static str,
    /// The handler.
    pub endpoint: Endpoint,
    /// Methods served (besides `OPTIONS` for CORS routes, answered as a preflight).
    pub methods: &'static [Method],
    /// The `Allow` header of a 405.
    pub allow: &'static str,
    /// Whether and how browsers may call it: `OPTIONS` preflights and CORS headers.
    pub cors: Cors,
    /// Whether it is also served with one trailing `/`.
    pub slash: bool,
}

impl Route {
    /// Whether the route belongs on the admin port when `METRICS_ADDR` is set.
    pub(crate) fn is_admin(&self) -> bool {
        matches!(self.endpoint, Endpoint::Metrics | Endpoint::Live(_))
    }

    /// The metric label: the path itself (a fixed, known string).
    pub(crate) fn label(&self) -> &'static str {
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
const SIGN_IN: &[Method] = &[Method::GET, Method::HEAD, Method::POST];

/// A row of our own API.
const fn own(path: &'static str, endpoint: Endpoint, methods: &'static [Method], allow: &'static str) -> Route {
    let events = matches!(endpoint, Endpoint::Import | Endpoint::ImportBatch);
    Route {
        path,
        endpoint,
        methods,
        allow,
        cors: if events { Cors::Api } else { Cors::Off },
        slash: false,
    }
}

/// A row an analytics SDK calls: browsers may call it from any page (see
/// `access.rs`), and its key is checked by the endpoint in the SDK's own form.
const fn sdk(path: &'static str, endpoint: Endpoint, methods: &'static [Method], allow: &'static str) -> Route {
    Route {
        path,
        endpoint,
        methods,
        allow,
        cors: Cors::Sdk,
        slash: true,
    }
}

/// An SDK's events, posted.
const fn events(path: &'static str, protocol: &'static dyn Protocol) -> Route {
    sdk(path, Endpoint::Events(protocol), EVENTS, "POST, OPTIONS")
}

/// A document an SDK reads.
const fn read(path: &'static str, document: &'static dyn Document) -> Route {
    sdk(path, Endpoint::Document(document), READ, "GET, HEAD, OPTIONS")
}

/// A document an SDK posts for.
const fn post(path: &'static str, document: &'static dyn Document) -> Route {
    sdk(path, Endpoint::Document(document), EVENTS, "POST, OPTIONS")
}

/// Every route of the public port.
pub(crate) static ROUTES: &[Route] = &[
    own("/import", Endpoint::Import, EVENTS, "POST, OPTIONS"),
    own("/import/batch", Endpoint::ImportBatch, EVENTS, "POST, OPTIONS"),
    own("/healthz", Endpoint::Health, READ, "GET, HEAD"),
    own("/readyz", Endpoint::Ready, READ, "GET, HEAD"),
    own("/metrics", Endpoint::Metrics, READ, "GET, HEAD"),
    own("/live", Endpoint::Live(LivePath::Page), SIGN_IN, "GET, HEAD, POST"),
    own("/live/events", Endpoint::Live(LivePath::Events), READ, "GET, HEAD"),
    own("/live/live.js", Endpoint::Live(LivePath::Script), READ, "GET, HEAD"),
    own("/live/live.css", Endpoint::Live(LivePath::Style), READ, "GET, HEAD"),
    // Segment / RudderStack: server SDKs post to /v1/batch, Segment's
    // browser SDK to the one-letter paths, RudderStack's to the long ones.
    events("/v1/batch", &Segment::BATCH),
    events("/v1/b", &Segment::BATCH),
    events("/v1/track", &Segment::event("track")),
    events("/v1/t", &Segment::event("track")),
    events("/v1/identify", &Segment::event("identify")),
    events("/v1/i", &Segment::event("identify")),
    events("/v1/page", &Segment::event("page")),
    events("/v1/p", &Segment::event("page")),
    events("/v1/screen", &Segment::event("screen")),
    events("/v1/s", &Segment::event("screen")),
    events("/v1/group", &Segment::event("group")),
    events("/v1/g", &Segment::event("group")),
    events("/v1/alias", &Segment::event("alias")),
    events("/v1/a", &Segment::event("alias")),
    post("/v1/m", &Telemetry),
    read("/v1/projects/{writeKey}/settings", &Settings),
    // RudderStack's browser SDK: its source configuration, and its beacon.
    read("/sourceConfig", &SourceConfig),
    events("/beacon/v1/batch", &Segment::BATCH),
    // PostHog capture, and what posthog-js loads first.
    events("/batch", &PostHog),
    events("/capture", &PostHog),
    events("/e", &PostHog),
    events("/i/v0/e", &PostHog),
    post("/flags", &Flags),
    post("/decide", &Flags),
    read("/array/{token}/config", &RemoteConfig { script: false }),
    read("/array/{token}/config.js", &RemoteConfig { script: true }),
    // Snowplow collector.
    events("/com.snowplowanalytics.snowplow/tp2", &Snowplow { pixel: false }),
    sdk("/i", Endpoint::Events(&Snowplow { pixel: true }), PIXEL, "GET, OPTIONS"),
];

/// The route for `path`, if any.
pub(crate) fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.matches(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric label of `path`: its route's, or `other`.
    fn label(path: &str) -> &'static str {
        find(path).map_or("other", Route::label)
    }

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
    fn every_protocol_s_body_limit_is_a_listed_variable() {
        let limits = crate::config::BodyLimits::default();
        for route in ROUTES {
            if let Endpoint::Events(protocol) = route.endpoint {
                assert!(limits.get(protocol.body_limit()) > 0, "{}", route.path);
            }
        }
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
        let track = find("/v1/t").map(|r| format!("{:?}", r.endpoint));
        assert_eq!(track.as_deref(), Some(r#"Events(Segment { kind: Some("track") })"#));
        assert_eq!(label("/array/phc_1/config.js"), "/array/{token}/config.js");
        assert_eq!(label("/array/phc_1/config"), "/array/{token}/config");
        assert_eq!(label("/sourceConfig/"), "/sourceConfig");
        assert_eq!(label("/flags/"), "/flags");
    }
}
