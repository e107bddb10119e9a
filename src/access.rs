//! Who may send events: optional API keys (in headers, or in an analytics
//! SDK's own form through [`Access::authorize_key`]), and CORS for browsers.
//!
//! Keys are compared in constant time over their SHA-256 digests, so neither
//! a key's content nor its length leaks through timing, and a refusal never
//! says which part was wrong. CORS answers the preflight that `fetch` from a
//! web page needs; `navigator.sendBeacon` sends a simple request and only
//! needs `Access-Control-Allow-Origin` on the answer.

use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, AUTHORIZATION, HeaderMap, HeaderValue, ORIGIN, VARY,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AccessConfig;
use crate::error::ApiError;

/// Request headers a browser may send to `/import`.
const ALLOWED_HEADERS: &str = "Content-Type, Content-Encoding, Authorization, X-Api-Key, X-Partition-Key, X-Request-Id";
/// Response headers a page may read.
const EXPOSED_HEADERS: &str = "X-Request-Id, Retry-After";

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

    /// Adds `Access-Control-Allow-Origin` (and friends) when the request's
    /// origin is allowed.
    pub fn add_cors_headers(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Some(origin) = self.allowed_origin(request) {
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
        }
        if !self.origins.is_empty() {
            response.append(VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// Headers for an `OPTIONS /import` preflight, or `Err` when the origin
    /// is not allowed.
    pub fn preflight(&self, request: &HeaderMap, response: &mut HeaderMap) -> Result<(), ApiError> {
        if request.get(ORIGIN).is_some() && self.allowed_origin(request).is_none() {
            return Err(ApiError::OriginNotAllowed);
        }
        self.add_cors_headers(request, response);
        if response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            response.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            response.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
            response.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        Ok(())
    }

    fn allowed_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        let origin = request.get(ORIGIN)?;
        let allowed = self.any_origin || self.origins.iter().any(|o| o.as_bytes() == origin.as_bytes());
        allowed.then(|| origin.clone())
    }
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
        let mut response = HeaderMap::new();
        access.add_cors_headers(&headers(&[("origin", "https://shop.example")]), &mut response);
        assert_eq!(response[ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");

        let mut response = HeaderMap::new();
        let evil = headers(&[("origin", "https://evil.example")]);
        access.add_cors_headers(&evil, &mut response);
        assert!(!response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(matches!(
            access.preflight(&evil, &mut HeaderMap::new()),
            Err(ApiError::OriginNotAllowed)
        ));
    }
}
