//! RudderStack's browser SDK (`@rudderstack/analytics-js` v3): before it
//! sends anything, it loads its source configuration from `configUrl`,
//! `GET /sourceConfig/?p=...&v=...&writeKey=...` with the write key as the
//! Basic user name. [`SourceConfig`] answers it: the source exists and is
//! enabled, and has no device-mode destinations, so the SDK loads no code
//! from anywhere and sends every event to its data plane, this gateway
//! (`/v1/track`, `/v1/page`, ... one per request, which `segment.rs` takes;
//! `/beacon/v1/batch` with `useBeacon`). Error reporting and metrics
//! collection are off, so it posts nothing else.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::json;

use super::segment::basic_user;
use super::{Caching, Document, Received, json_document};
use crate::doors::Doors;
use crate::error::ApiError;

/// `GET /sourceConfig/`: an enabled source with no destinations.
#[derive(Debug)]
pub(crate) struct SourceConfig;

impl Document for SourceConfig {
    fn answer(&self, doors: &Doors, request: &Received<'_>) -> Result<Response<Full<Bytes>>, ApiError> {
        let write_key = basic_user(request.headers).or_else(|| request.query_param("writeKey"));
        doors.access().authorize_key(write_key.as_deref(), request.headers)?;
        let write_key = write_key.unwrap_or_default();
        let config = json!({
            "isHosted": false,
            "source": {
                "id": format!("gateway-{write_key}"),
                "name": "clickstream-gateway",
                "writeKey": write_key,
                "workspaceId": "clickstream-gateway",
                "enabled": true,
                "config": {
                    "statsCollection": {
                        "errors": {"enabled": false},
                        "metrics": {"enabled": false},
                    },
                },
                "destinations": [],
            },
        });
        // The write key is in the query, so each key has its own cache entry.
        Ok(json_document(&config, Caching::Public))
    }
}
