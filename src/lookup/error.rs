//! A variable whose value cannot be used, and which variables may hold a
//! credential (their values are never shown): every layer that reads its
//! own settings (`config/`, each sink) names its errors with it.

/// The prefix of the variables passed through to librdkafka as properties:
/// `KAFKA_PROPERTY_SASL_MECHANISM=PLAIN` sets `sasl.mechanism` (read by the
/// Kafka sink, `sink/kafka.rs`).
pub const KAFKA_PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// A variable whose value cannot be used. Its message shows the value,
/// unless the variable holds a credential ([`is_secret`]): then only its name.
#[derive(thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {name}={shown}: {reason}", shown = self.shown_value())]
pub struct ConfigError {
    /// The variable's name.
    pub name: &'static str,
    /// The value found (empty when the variable is missing).
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    /// The value as logs may show it: quoted, or `<redacted>` for a credential.
    fn shown_value(&self) -> String {
        if is_secret(self.name) || is_secret(&self.value) {
            "<redacted>".into()
        } else {
            format!("{:?}", self.value)
        }
    }
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigError")
            .field("name", &self.name)
            .field("value", &self.shown_value())
            .field("reason", &self.reason)
            .finish()
    }
}

/// Whether a variable (or property) named `name` may hold a credential, so
/// its value is never written to a log or an error: any `KAFKA_PROPERTY_*`
/// (librdkafka has dozens of secret properties, and a misspelled one is
/// still a secret), and any name with password, secret, key, token or
/// credential in it.
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with(&KAFKA_PROPERTY_PREFIX.to_ascii_lowercase())
        || ["passw", "secret", "key", "token", "credential"]
            .iter()
            .any(|word| name.contains(word))
}
