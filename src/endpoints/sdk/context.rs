//! What every event of one SDK request is enriched with: the protocol, the
//! time the gateway received it, and (when `CLIENT_IP` asks) the client's
//! address. [`Context::mark`] appends the `_gateway` field every record gets.

use std::time::SystemTime;

use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use serde::Serialize;

use super::json::{Object, Rendered};
use crate::config::ClientIp;
use crate::endpoints::Peer;

/// The field every record gets, so a consumer can tell where it came from
/// without HTTP logs: `"_gateway": {"protocol": ..., "key": ...}`.
pub(crate) const GATEWAY_FIELD: &str = "_gateway";

#[derive(Serialize)]
struct GatewayMeta<'a> {
    protocol: &'static str,
    key: Option<&'a str>,
}

/// What every event of one request is enriched with.
#[derive(Debug)]
pub struct Context {
    /// The protocol's name (`segment`, `posthog`, `snowplow`).
    pub protocol: &'static str,
    /// When the gateway received the request, RFC 3339 UTC.
    pub received_at: String,
    /// The client's address, when `CLIENT_IP` asks for it.
    pub ip: Option<String>,
}

impl Context {
    /// A context with no IP address, received now: for tests and the fuzzer.
    pub fn plain(protocol: &'static str) -> Self {
        Context {
            protocol,
            received_at: timestamp(SystemTime::now()),
            ip: None,
        }
    }

    /// The context of a request in `protocol` from `head`, under `policy`.
    pub fn new(protocol: &'static str, policy: ClientIp, head: &Parts) -> Self {
        Context {
            protocol,
            received_at: timestamp(SystemTime::now()),
            ip: client_ip(policy, head),
        }
    }

    /// Appends `_gateway`, naming the protocol and `key`, the event's source
    /// key (write key, project key, app id) when it has one.
    pub fn mark(&self, object: &mut Object, key: Option<&str>) {
        object.field(GATEWAY_FIELD, &self.meta(key));
    }

    /// The `_gateway` field for `key`, rendered once for many events.
    pub fn marked(&self, key: Option<&str>) -> Rendered {
        Rendered::new(GATEWAY_FIELD, &self.meta(key))
    }

    fn meta<'a>(&self, key: Option<&'a str>) -> GatewayMeta<'a> {
        GatewayMeta {
            protocol: self.protocol,
            key,
        }
    }
}

/// `at` as RFC 3339 UTC, to the microsecond at most (`2026-11-23T10:00:00.5Z`).
pub(crate) fn timestamp(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let micros = at.nanosecond() / 1_000 * 1_000;
    at.replace_nanosecond(micros)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// The client's address as `CLIENT_IP` says: none, the peer's, or the last
/// `X-Forwarded-For` entry (the one the trusted proxy appended).
fn client_ip(policy: ClientIp, head: &Parts) -> Option<String> {
    let peer = || head.extensions.get::<Peer>().map(|p| p.0.ip().to_string());
    match policy {
        ClientIp::Off => None,
        ClientIp::Socket => peer(),
        ClientIp::Forwarded => forwarded_for(&head.headers).or_else(peer),
    }
}

fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_takes_the_last_hop() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        headers.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(forwarded_for(&headers).as_deref(), Some("198.51.100.7"));
        headers.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(forwarded_for(&headers), None);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40.123Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_795_000_000_123_456_789);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40.123456Z", "to the microsecond");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40Z");
    }
}
