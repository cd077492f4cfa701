use std::path::Path;

/// A configuration error. `Display` names the key and, for syntax/type errors, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Syntax, type or unknown-key error; the toml crate reports line, column and key.
    #[error("{file}{message}")]
    Parse { file: String, message: String },
    /// A value that parses but is not acceptable.
    #[error("{file}invalid value for `{key}`: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn from_toml(e: toml::de::Error) -> Self {
        ConfigError::Parse {
            file: String::new(),
            message: e.to_string().trim_end().to_string(),
        }
    }

    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: String::new(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn in_file(self, path: &Path) -> Self {
        let prefix = format!("{}: ", path.display());
        match self {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                file: prefix,
                message,
            },
            ConfigError::Invalid { key, reason, .. } => ConfigError::Invalid {
                file: prefix,
                key,
                reason,
            },
            other => other,
        }
    }
}
