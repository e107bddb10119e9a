//! HTTP server settings: timeouts and the in-flight caps.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::{ConfigError, Lookup};

/// HTTP server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time a connection may take to send a complete request head (`HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// Time a request may take to send its whole body (`BODY_READ_TIMEOUT_MS`).
    pub body_read_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT (`SHUTDOWN_TIMEOUT_MS`).
    pub shutdown_timeout: Duration,
    /// Client connections open at once; beyond it a new connection gets a
    /// 503 and is closed (`MAX_CONNECTIONS`).
    pub max_connections: NonZeroUsize,
    /// `/import` requests handled at once; beyond it 503 (`MAX_IN_FLIGHT_REQUESTS`).
    pub max_in_flight_requests: NonZeroUsize,
    /// Body bytes held by in-flight requests; beyond it 503 (`MAX_IN_FLIGHT_BODY_BYTES`).
    pub max_in_flight_body_bytes: NonZeroUsize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(25),
            max_connections: NonZeroUsize::new(10_000).expect("> 0"),
            max_in_flight_requests: NonZeroUsize::new(4_096).expect("> 0"),
            max_in_flight_body_bytes: NonZeroUsize::new(256 << 20).expect("> 0"),
        }
    }
}

impl HttpConfig {
    /// Reads the HTTP variables, defaults from [`HttpConfig::default`].
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = HttpConfig::default();
        Ok(HttpConfig {
            header_read_timeout: vars.millis("HEADER_READ_TIMEOUT_MS", millis(d.header_read_timeout))?,
            body_read_timeout: vars.millis("BODY_READ_TIMEOUT_MS", millis(d.body_read_timeout))?,
            shutdown_timeout: vars.millis("SHUTDOWN_TIMEOUT_MS", millis(d.shutdown_timeout))?,
            max_connections: vars.at_most("MAX_CONNECTIONS", d.max_connections.get(), 1_000_000)?,
            max_in_flight_requests: vars.at_most(
                "MAX_IN_FLIGHT_REQUESTS",
                d.max_in_flight_requests.get(),
                1_000_000,
            )?,
            max_in_flight_body_bytes: vars.at_most(
                "MAX_IN_FLIGHT_BODY_BYTES",
                d.max_in_flight_body_bytes.get(),
                u32::MAX as usize,
            )?,
        })
    }
}

/// A default duration as the milliseconds its variable is written in.
pub(super) fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}
