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

/// Semantic checks that serde cannot express (ranges, orderings).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}
