//! Who may send events: optional API keys (in headers, or in an analytics
//! SDK's own form through [`Access::authorize_key`]), and CORS for browsers.
//!
//! Keys are compared in constant time over their SHA-256 digests, so neither
//! a key's content nor its length leaks through timing, and a refusal never
//! says which part was wrong.
//!
//! CORS has two policies, one per family of routes ([`Cors`]):
//! - The analytics SDKs' routes are **public by default**, as Segment's,
//!   RudderStack's, PostHog's and Snowplow's own collectors are: their keys
//!   sit in every page's source, so an origin check protects nothing, and a
//!   browser SDK must work at the defaults. The request's `Origin` is
//!   reflected (never `*`), with `Access-Control-Allow-Credentials: true`
//!   (Snowplow's tracker sends cookies, and `*` is refused for such
//!   requests), `Vary: Origin`, the headers the SDKs preflight, and a
//!   preflight cache. `CORS_ALLOWED_ORIGINS` narrows it to its list.
//!   Only a real origin is reflected (`scheme://host[:port]`): a request
//!   claiming `Origin: *` gets no CORS headers, and `Origin: null`
//!   (sandboxed iframes, `file://` pages) is answered `null` without
//!   credentials.
//! - `/import` and `/import/batch` are the gateway's own API, called by the
//!   operator's backends: no CORS until `CORS_ALLOWED_ORIGINS` names the
//!   pages that may call them (`*` for any), and no credentials. CORS only
//!   stops a page from *reading* an answer, not a browser from sending a
//!   simple request, so a request to these routes that carries an `Origin`
//!   they do not allow is refused (403) before its body is read: a page on
//!   another site cannot write to them. `API_KEYS` is what closes them.
use hyper::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    AUTHORIZATION, HeaderMap, HeaderValue, ORIGIN, VARY,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AccessConfig;
use crate::error::ApiError;

/// Request headers a browser may send to `/import`.
const ALLOWED_HEADERS: &str = "Content-Type, Content-Encoding, Authorization, X-Api-Key, X-Partition-Key, X-Request-Id";
/// Request headers the browser SDKs preflight: RudderStack's `AnonymousId`,
/// `SentAt` and retry headers, Snowplow's `SP-Anonymous`, PostHog's session
/// headers. Any other header a preflight asks for is allowed as well on
/// these public routes; this list is what is always answered.
const SDK_ALLOWED_HEADERS: &str = "Content-Type, Content-Encoding, Authorization, X-Api-Key, X-Request-Id, \
AnonymousId, SentAt, Rsa-Recovered, Rsa-Retry-Attempt, SP-Anonymous, \
X-POSTHOG-SESSION-ID, X-POSTHOG-WINDOW-ID, X-POSTHOG-DISTINCT-ID";
/// Response headers a page may read.
const EXPOSED_HEADERS: &str = "X-Request-Id, Retry-After";
/// How long a browser may reuse a preflight answer: Chromium's cap (2 hours).
const SDK_PREFLIGHT_MAX_AGE: &str = "7200";
/// The longest `Access-Control-Request-Headers` value echoed back.
const MAX_REQUESTED_HEADERS: usize = 1024;

/// Which CORS policy a route follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cors {
    /// Not callable from a web page: no CORS headers, `OPTIONS` is 405.
    Off,
    /// The gateway's own API: only the origins of `CORS_ALLOWED_ORIGINS`.
    Api,
    /// An analytics SDK's route: any origin unless `CORS_ALLOWED_ORIGINS`
    /// narrows it, with credentials.
    Sdk,
}

/// API keys and allowed origins.
#[derive(Debug, Default)]
pub struct Access {
    key_digests: Vec<[u8; 32]>,
    any_origin: bool,
    origins: Vec<String>,
}

impl Access {
    /// From the configured keys and origins.
    pub fn new(config: &AccessConfig) -> Self {
        Access {
            key_digests: config.api_keys.iter().map(|key| digest(key.as_bytes())).collect(),
            any_origin: config.cors_allowed_origins.iter().any(|o| o == "*"),
            origins: config.cors_allowed_origins.clone(),
        }
    }

    /// Ok when no keys are configured, or the request carries one in
    /// `Authorization: Bearer` or `X-Api-Key`.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.authorize_key(None, headers)
    }

    /// Ok when no keys are configured, or `key` (the key in an SDK's own
    /// form: a Basic user name, a body field) is one of them, or the headers
    /// carry one as [`Access::authorize`] reads them.
    pub fn authorize_key(&self, key: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.key_digests.is_empty() || key.is_some_and(|key| self.is_key(key.as_bytes())) {
            return Ok(());
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        let presented = bearer.or_else(|| headers.get("x-api-key").map(HeaderValue::as_bytes));
        if self.is_key(presented.unwrap_or_default()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// Whether keys are configured at all.
    pub fn keys_required(&self) -> bool {
        !self.key_digests.is_empty()
    }

    /// Whether `presented` is a configured key, compared with every key
    /// without stopping early.
    fn is_key(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let matched = self
            .key_digests
            .iter()
            .fold(0u8, |acc, key| acc | key.ct_eq(&presented).unwrap_u8());
        matched == 1
    }

    /// Adds `Access-Control-Allow-Origin` (and friends) to the answer of a
    /// route under `policy` when the request's origin is allowed.
    pub fn add_cors_headers(&self, policy: Cors, request: &HeaderMap, response: &mut HeaderMap) {
        if policy == Cors::Off {
            return;
        }
        if let Some(origin) = self.allowed_origin(policy, request) {
            // An opaque origin is many pages at once: never with credentials.
            let opaque = origin.as_bytes() == b"null";
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
            if policy == Cors::Sdk && !opaque {
                response.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
        }
        // The answer depends on the Origin whenever an origin can be refused
        // or is reflected: a shared cache must not hand one page's answer to
        // another.
        if policy == Cors::Sdk || !self.origins.is_empty() {
            response.append(VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// Headers for the `OPTIONS` preflight of a route under `policy` that
    /// serves `methods`, or `Err` when the origin is not allowed.
    pub fn preflight(
        &self,
        policy: Cors,
        methods: &'static str,
        request: &HeaderMap,
        response: &mut HeaderMap,
    ) -> Result<(), ApiError> {
        if request.get(ORIGIN).is_some() && self.allowed_origin(policy, request).is_none() {
            return Err(ApiError::OriginNotAllowed);
        }
        self.add_cors_headers(policy, request, response);
        if !response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            return Ok(());
        }
        let (methods, headers, max_age) = match policy {
            Cors::Sdk => (methods, sdk_allowed_headers(request), SDK_PREFLIGHT_MAX_AGE),
            // `/import` and `/import/batch` take only POST.
            Cors::Api | Cors::Off => ("POST", HeaderValue::from_static(ALLOWED_HEADERS), "600"),
        };
        response.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
        response.insert(ACCESS_CONTROL_ALLOW_HEADERS, headers);
        response.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(max_age));
        response.append(VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
        Ok(())
    }

    /// Whether a request from a browser (one with an `Origin`) may use a
    /// route under `policy` at all: on the gateway's own API only the
    /// allowed origins may, since a simple request is sent whatever CORS
    /// says. Requests without `Origin` (servers, SDKs outside browsers) may.
    pub fn admits(&self, policy: Cors, request: &HeaderMap) -> bool {
        policy != Cors::Api || !request.contains_key(ORIGIN) || self.allowed_origin(policy, request).is_some()
    }

    fn allowed_origin(&self, policy: Cors, request: &HeaderMap) -> Option<HeaderValue> {
        let origin = request.get(ORIGIN).filter(|o| is_origin(o.as_bytes()))?;
        let allowed = match policy {
            Cors::Off => false,
            Cors::Api => self.any_origin || self.lists(origin),
            Cors::Sdk => self.origins.is_empty() || self.any_origin || self.lists(origin),
        };
        allowed.then(|| origin.clone())
    }

    fn lists(&self, origin: &HeaderValue) -> bool {
        self.origins.iter().any(|o| o.as_bytes() == origin.as_bytes())
    }
}

/// Whether `value` is an origin as a browser serialises it (RFC 6454):
/// `null`, or `scheme://host[:port]` with nothing after (`capacitor://localhost`
/// and `chrome-extension://id` included). `*`, paths and spaces are not.
fn is_origin(value: &[u8]) -> bool {
    if value == b"null" {
        return true;
    }
    let Some(at) = value.windows(3).position(|w| w == b"://") else {
        return false;
    };
    let (scheme, authority) = (&value[..at], &value[at + 3..]);
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b));
    let authority_ok = !authority.is_empty()
        && authority
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(b));
    scheme_ok && authority_ok
}

/// The SDK headers, plus whatever else the preflight asks for when it is a
/// plain list of header names (a browser only ever sends such a list).
fn sdk_allowed_headers(request: &HeaderMap) -> HeaderValue {
    let requested = request
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_REQUESTED_HEADERS)
        .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b)));
    let known = SDK_ALLOWED_HEADERS.to_ascii_lowercase();
    let known: Vec<&str> = known.split(", ").collect();
    let extra: Vec<&str> = requested
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty() && !known.contains(&h.to_ascii_lowercase().as_str()))
        .collect();
    if extra.is_empty() {
        return HeaderValue::from_static(SDK_ALLOWED_HEADERS);
    }
    let value = format!("{SDK_ALLOWED_HEADERS}, {}", extra.join(", "));
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(SDK_ALLOWED_HEADERS))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(keys: &[&str], origins: &[&str]) -> Access {
        Access::new(&AccessConfig {
            api_keys: keys.iter().map(|k| k.to_string()).collect(),
            cors_allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (hyper::header::HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn without_keys_everyone_may_import() {
        assert!(access(&[], &[]).authorize(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn a_configured_key_is_required_in_either_header() {
        let access = access(&["k-one", "k-two"], &[]);
        assert!(access.authorize(&headers(&[("authorization", "Bearer k-two")])).is_ok());
        assert!(access.authorize(&headers(&[("x-api-key", "k-one")])).is_ok());
        for refused in [
            headers(&[]),
            headers(&[("x-api-key", "k-on")]),
            headers(&[("authorization", "k-one")]),
        ] {
            assert!(matches!(access.authorize(&refused), Err(ApiError::Unauthorized)));
        }
    }

    #[test]
    fn an_sdk_key_counts_as_well_as_the_headers() {
        let gate = access(&["wk"], &[]);
        assert!(gate.authorize_key(Some("wk"), &HeaderMap::new()).is_ok());
        assert!(
            gate.authorize_key(Some("nope"), &headers(&[("x-api-key", "wk")]))
                .is_ok()
        );
        for key in [Some("nope"), Some(""), None] {
            assert!(matches!(
                gate.authorize_key(key, &HeaderMap::new()),
                Err(ApiError::Unauthorized)
            ));
        }
        assert!(access(&[], &[]).authorize_key(Some("any"), &HeaderMap::new()).is_ok());
    }

    #[test]
    fn cors_echoes_only_allowed_origins() {
        let access = access(&[], &["https://shop.example"]);
        for policy in [Cors::Api, Cors::Sdk] {
            let mut response = HeaderMap::new();
            access.add_cors_headers(policy, &headers(&[("origin", "https://shop.example")]), &mut response);
            assert_eq!(response[ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");

            let mut response = HeaderMap::new();
            let evil = headers(&[("origin", "https://evil.example")]);
            access.add_cors_headers(policy, &evil, &mut response);
            assert!(!response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
            assert_eq!(response[VARY], "Origin");
            assert!(matches!(
                access.preflight(policy, "POST", &evil, &mut HeaderMap::new()),
                Err(ApiError::OriginNotAllowed)
            ));
        }
    }

    #[test]
    fn sdk_routes_reflect_any_origin_with_credentials_by_default_and_the_api_does_not() {
        let access = access(&[], &[]);
        let page = headers(&[("origin", "http://127.0.0.1:8080")]);
        let mut response = HeaderMap::new();
        access.add_cors_headers(Cors::Sdk, &page, &mut response);
        assert_eq!(response[ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:8080");
        assert_eq!(response[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(response[VARY], "Origin");

        let mut response = HeaderMap::new();
        access.add_cors_headers(Cors::Api, &page, &mut response);
        assert!(response.is_empty(), "{response:?}");
        assert!(matches!(
            access.preflight(Cors::Api, "POST", &page, &mut HeaderMap::new()),
            Err(ApiError::OriginNotAllowed)
        ));
        let mut response = HeaderMap::new();
        access.add_cors_headers(Cors::Off, &page, &mut response);
        assert!(response.is_empty());
    }

    #[test]
    fn only_real_origins_are_reflected_and_null_never_with_credentials() {
        let access = access(&[], &[]);
        for bad in [
            "*",
            "https://shop.example/path",
            "https://a b",
            "shop.example",
            "://x",
            "",
        ] {
            let mut request = HeaderMap::new();
            request.insert(ORIGIN, HeaderValue::from_str(bad).unwrap());
            let mut response = HeaderMap::new();
            access.add_cors_headers(Cors::Sdk, &request, &mut response);
            assert!(
                !response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN),
                "{bad:?}: {response:?}"
            );
            assert!(!response.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS), "{bad:?}");
        }
        let mut response = HeaderMap::new();
        access.add_cors_headers(Cors::Sdk, &headers(&[("origin", "null")]), &mut response);
        assert_eq!(response[ACCESS_CONTROL_ALLOW_ORIGIN], "null");
        assert!(!response.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS), "{response:?}");
        for good in [
            "capacitor://localhost",
            "http://[::1]:8080",
            "chrome-extension://abcdef",
        ] {
            let mut request = HeaderMap::new();
            request.insert(ORIGIN, HeaderValue::from_str(good).unwrap());
            let mut response = HeaderMap::new();
            access.add_cors_headers(Cors::Sdk, &request, &mut response);
            assert_eq!(response[ACCESS_CONTROL_ALLOW_ORIGIN], good);
        }
    }

    #[test]
    fn the_api_admits_pages_only_from_allowed_origins() {
        let page = headers(&[("origin", "https://evil.example")]);
        let server = HeaderMap::new();
        let closed = access(&[], &[]);
        assert!(!closed.admits(Cors::Api, &page));
        assert!(closed.admits(Cors::Api, &server), "no Origin: not a browser");
        assert!(closed.admits(Cors::Sdk, &page));
        let open = access(&[], &["https://evil.example"]);
        assert!(open.admits(Cors::Api, &page));
        assert!(access(&[], &["*"]).admits(Cors::Api, &page));
        assert!(!access(&[], &["*"]).admits(Cors::Api, &headers(&[("origin", "*")])));
    }

    #[test]
    fn sdk_preflights_allow_the_sdk_headers_and_any_header_list_asked_for() {
        let access = access(&[], &[]);
        let mut request = headers(&[("origin", "http://shop.example")]);
        request.insert(
            ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("authorization,anonymousid,content-type,x-custom-thing"),
        );
        let mut response = HeaderMap::new();
        access
            .preflight(Cors::Sdk, "POST, OPTIONS", &request, &mut response)
            .unwrap();
        let allowed = response[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        assert!(allowed.starts_with(SDK_ALLOWED_HEADERS), "{allowed}");
        assert!(allowed.ends_with(", x-custom-thing"), "{allowed}");
        assert_eq!(response[ACCESS_CONTROL_MAX_AGE], SDK_PREFLIGHT_MAX_AGE);
        assert_eq!(response[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(response[ACCESS_CONTROL_ALLOW_METHODS], "POST, OPTIONS");

        request.insert(ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_static("a\"b"));
        let mut response = HeaderMap::new();
        access.preflight(Cors::Sdk, "POST", &request, &mut response).unwrap();
        assert_eq!(
            response[ACCESS_CONTROL_ALLOW_HEADERS], SDK_ALLOWED_HEADERS,
            "junk is not echoed"
        );
    }
}
