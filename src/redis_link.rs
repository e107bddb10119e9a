//! The one way the gateway opens a link to Redis (`REDIS_URL`): the quotas'
//! shared allowance and dedupe's marks each hold their own, with their own
//! timeouts, made here.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A link to `url`, connected lazily (a gateway starts while Redis is down),
/// each connect and answer bounded by `timeout`, `retries` reconnects per
/// command. `Err`: the URL does not parse or names nothing usable.
pub(crate) fn open(url: &str, timeout: Duration, retries: usize) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL does not parse ({:?})", e.kind()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(retries);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| format!("REDIS_URL cannot be used ({:?})", e.kind()))
}
