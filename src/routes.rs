//! The route table: every path the public port serves, defined once, with
//! its methods, metric label, and whether it speaks CORS and needs an API key.
//! `api.rs` dispatches on it, `metrics.rs` labels by it, and the CORS and
//! auth checks read it, so a new endpoint is one row here plus its handler.

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
}

impl Route {
    /// The metric label: the path itself (a fixed, known string).
    pub fn label(&self) -> &'static str {
        self.path
    }
}

const EVENTS: &[Method] = &[Method::POST];
const READ: &[Method] = &[Method::GET, Method::HEAD];

/// Every route of the public port.
pub static ROUTES: &[Route] = &[
    Route {
        path: "/import",
        endpoint: Endpoint::Import,
        methods: EVENTS,
        allow: "POST, OPTIONS",
        cors: true,
        auth: true,
    },
    Route {
        path: "/import/batch",
        endpoint: Endpoint::ImportBatch,
        methods: EVENTS,
        allow: "POST, OPTIONS",
        cors: true,
        auth: true,
    },
    Route {
        path: "/healthz",
        endpoint: Endpoint::Health,
        methods: READ,
        allow: "GET, HEAD",
        cors: false,
        auth: false,
    },
    Route {
        path: "/readyz",
        endpoint: Endpoint::Ready,
        methods: READ,
        allow: "GET, HEAD",
        cors: false,
        auth: false,
    },
    Route {
        path: "/metrics",
        endpoint: Endpoint::Metrics,
        methods: READ,
        allow: "GET, HEAD",
        cors: false,
        auth: false,
    },
];

/// The route for `path`, if any.
pub fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.path == path)
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
}
