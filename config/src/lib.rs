//! Typed configuration for the edge SBC appliance.
//!
//! One TOML file per process ([`EdgeConfig`] for `edge`, [`RelayConfig`] for `rtprelay`). Every
//! key is optional and defaults to a setup that runs on loopback, so both binaries start with no
//! file at all. Unknown keys are rejected: a typo must not silently fall back to a default.
//! Errors name the key and the line ([`ConfigError`]). The example files under `config/examples/`
//! document every key once, with its default.

mod edge;
mod error;
mod media;
mod registrar;
mod relay;

pub use edge::*;
pub use error::ConfigError;
pub use ipnet::IpNet;
pub use media::*;
pub use registrar::*;
pub use relay::*;

use serde::de::DeserializeOwned;
use std::path::Path;

/// Parse a TOML document into a config type, then validate it.
pub fn from_str<T: DeserializeOwned + Validate>(text: &str) -> Result<T, ConfigError> {
    let value: T = toml::from_str(text).map_err(ConfigError::from_toml)?;
    value.validate()?;
    Ok(value)
}

/// Read and parse a config file; the error carries the file name.
pub fn from_file<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    from_str(&text).map_err(|e| e.in_file(path))
}

/// The effective configuration as TOML (every key, defaults filled in): what `--check-config`
/// prints. Reading it back gives the same configuration.
pub fn to_toml<T: serde::Serialize>(cfg: &T) -> Result<String, String> {
    toml::to_string(cfg).map_err(|e| format!("cannot print the configuration: {e}"))
}

/// The dotted keys (`routing.core`, `limits.source_rate` ...) whose values differ between two
/// configurations: what a reload logs, and how it tells the keys it can apply from those that
/// need a restart.
pub fn changed_keys<T: serde::Serialize>(old: &T, new: &T) -> Vec<String> {
    fn walk(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
        match (a, b) {
            (toml::Value::Table(ta), toml::Value::Table(tb)) => {
                let keys: std::collections::BTreeSet<&String> =
                    ta.keys().chain(tb.keys()).collect();
                for k in keys {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    match (ta.get(k), tb.get(k)) {
                        (Some(x), Some(y)) => walk(&path, x, y, out),
                        _ => out.push(path),
                    }
                }
            }
            _ if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let (Ok(a), Ok(b)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        return vec!["(unprintable configuration)".into()];
    };
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
}

/// Semantic checks that serde cannot express (ranges, orderings).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

#[cfg(test)]
mod print_tests {
    use super::*;

    /// `--check-config` prints every key; reading the print back gives the same config.
    #[test]
    fn effective_config_round_trips() {
        let edge = to_toml(&EdgeConfig::default()).unwrap();
        let back: EdgeConfig = from_str(&edge).unwrap();
        assert_eq!(to_toml(&back).unwrap(), edge);
        assert!(edge.contains("max_streams_per_sdp = 8"), "{edge}");
        let relay = to_toml(&RelayConfig::default()).unwrap();
        let back: RelayConfig = from_str(&relay).unwrap();
        assert_eq!(to_toml(&back).unwrap(), relay);
    }

    #[test]
    fn changed_keys_are_dotted_paths() {
        let old = EdgeConfig::default();
        let mut new = old.clone();
        new.routing.core = vec!["udp:192.0.2.1:5060".into()];
        new.limits.source_rate = 7;
        new.log.level = "debug".into();
        assert_eq!(
            changed_keys(&old, &new),
            ["limits.source_rate", "log.level", "routing.core"]
        );
        assert!(changed_keys(&old, &old).is_empty());
    }
}
