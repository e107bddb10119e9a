//! The live view's settings (`ADMIN_TOKEN` and friends).

use super::{ConfigError, Lookup};

/// The live view (`GET /live`): off unless `ADMIN_TOKEN` is set.
#[derive(Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// `ADMIN_TOKEN`: the token that opens `/live`; `None` turns it off.
    pub admin_token: Option<String>,
    /// `LIVE_PAYLOADS`: whether events' payloads are shown.
    pub payloads: bool,
    /// `LIVE_EVENTS_PER_SECOND`: the most events and refusals sent to one
    /// viewer per second; the rest are counted as skipped.
    pub events_per_second: u32,
}

impl std::fmt::Debug for LiveConfig {
    // The token is a credential: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("payloads", &self.payloads)
            .field("events_per_second", &self.events_per_second)
            .finish()
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            admin_token: None,
            payloads: true,
            events_per_second: 100,
        }
    }
}

/// The shortest token accepted: a guessable one would open personal data.
pub const MIN_TOKEN_CHARS: usize = 16;

impl LiveConfig {
    /// Reads the live view's variables.
    pub(super) fn read<F: Fn(&str) -> Option<String>>(vars: &Lookup<'_, F>) -> Result<Self, ConfigError> {
        let d = LiveConfig::default();
        let admin_token = vars.get("ADMIN_TOKEN");
        if let Some(token) = &admin_token
            && token.chars().count() < MIN_TOKEN_CHARS
        {
            return Err(ConfigError {
                name: "ADMIN_TOKEN",
                value: token.clone(),
                reason: format!("must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 24`)"),
            });
        }
        Ok(LiveConfig {
            admin_token,
            payloads: vars.parse("LIVE_PAYLOADS", d.payloads)?,
            events_per_second: vars
                .at_most("LIVE_EVENTS_PER_SECOND", d.events_per_second as usize, 10_000)?
                .get() as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn config(vars: &[(&str, &str)]) -> Result<Config, super::ConfigError> {
        Config::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn the_view_is_off_without_a_token_and_a_short_token_stops_start_up() {
        let off = config(&[]).unwrap();
        assert_eq!(off.live.admin_token, None);
        assert!(off.live.payloads);
        let err = config(&[("ADMIN_TOKEN", "hunter2")]).unwrap_err();
        assert_eq!(err.name, "ADMIN_TOKEN");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let on = config(&[
            ("ADMIN_TOKEN", "0123456789abcdef"),
            ("LIVE_PAYLOADS", "false"),
            ("LIVE_EVENTS_PER_SECOND", "20"),
        ])
        .unwrap();
        assert_eq!(on.live.admin_token.as_deref(), Some("0123456789abcdef"));
        assert!(!format!("{:?}", on.live).contains("0123456789abcdef"));
        assert_eq!((on.live.payloads, on.live.events_per_second), (false, 20));
        assert_eq!(
            config(&[("LIVE_EVENTS_PER_SECOND", "0")]).unwrap_err().name,
            "LIVE_EVENTS_PER_SECOND"
        );
    }
}
