//! `[registrar]`: the mid-registrar of the edge (modes, expires policy, location store, NAT
//! keepalives). See `config/examples/edge.toml` for every key with its default.

use crate::{ConfigError, Validate};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// How REGISTERs from the access side reach the core registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistrarMode {
    /// Every REGISTER goes to the core; the local binding mirrors the core's 200 OK.
    #[default]
    Mirror,
    /// Contact throttling: each contact is registered at the core with `outgoing_expires`;
    /// refreshes in between are answered locally.
    Contact,
    /// AoR throttling: the core sees one binding (the edge) per AoR.
    Aor,
}

/// How mirror mode makes the core route calls through the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InsertionMode {
    /// Rewrite each Contact to `sip:<token>@<edge>`.
    #[default]
    Contact,
    /// Keep the Contacts and add a Path header (RFC 3327).
    Path,
}

/// What a NAT keepalive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NatPingMethod {
    /// A SIP OPTIONS request; a missing answer counts as a failure.
    #[default]
    Options,
    /// CRLFCRLF (RFC 5626 §4.4.1); no failure detection on UDP.
    Crlf,
    /// Four zero bytes, as some phones send; no failure detection.
    #[serde(rename = "4byte")]
    FourByte,
}

/// Per-domain override of the global mode (`[registrar.domains."example.com"]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarDomain {
    pub mode: Option<RegistrarMode>,
    pub insertion_mode: Option<InsertionMode>,
    pub outgoing_expires: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    pub mode: RegistrarMode,
    /// Mirror mode only: Contact rewrite or Path header.
    pub insertion_mode: InsertionMode,
    /// Contact/AoR throttling: expires the edge asks of the core (s).
    pub outgoing_expires: u32,
    /// Below this a REGISTER gets 423 Interval Too Brief with Min-Expires (s).
    pub min_expires: u32,
    /// Larger requested expires are lowered to this (s).
    pub max_expires: u32,
    /// Used when neither the Contact nor the request carries an expires (s).
    pub default_expires: u32,
    /// The expires sent to the core is lowered by a random 0..=N percent so refreshes toward
    /// the core do not synchronise after a restart or an outage.
    pub expires_deviation_percent: u8,
    /// Most bindings per AoR; a REGISTER adding one more is answered 403 locally.
    pub max_contacts_per_aor: usize,
    /// Most bindings in the whole location table; a REGISTER adding one more gets 503 with
    /// Retry-After (memory bound against REGISTER floods with ever new AoRs).
    pub max_bindings: usize,
    /// Most bindings registered from one source IP address (a NAT with many phones behind it
    /// counts as one source: size it for the largest site); one more gets 403.
    pub max_bindings_per_source: usize,
    /// Throttling modes: a REGISTER carrying Authorization/Proxy-Authorization is absorbed only
    /// when this is true (and it passes the flow/Call-ID/CSeq checks and no challenge is
    /// outstanding on its Call-ID); false sends every credentialed REGISTER to the core.
    pub absorb_authorized_refreshes: bool,
    /// Keepalive period for NATed bindings (s); 0 disables keepalives.
    pub natping_interval_s: u32,
    pub natping_method: NatPingMethod,
    /// Unanswered OPTIONS in a row before the binding is removed.
    pub natping_max_failures: u32,
    /// Append-only location log, reloaded at start.
    pub store_path: PathBuf,
    /// Per-domain overrides, keyed by the AoR's domain (lowercase).
    pub domains: HashMap<String, RegistrarDomain>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            mode: RegistrarMode::Mirror,
            insertion_mode: InsertionMode::Contact,
            outgoing_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            expires_deviation_percent: 10,
            max_contacts_per_aor: 10,
            max_bindings: 1_000_000,
            max_bindings_per_source: 1_000,
            absorb_authorized_refreshes: false,
            natping_interval_s: 30,
            natping_method: NatPingMethod::Options,
            natping_max_failures: 3,
            store_path: PathBuf::from("data/registrar/location.log"),
            domains: HashMap::new(),
        }
    }
}

/// The effective policy for one domain (global values with the domain's overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainPolicy {
    pub mode: RegistrarMode,
    pub insertion_mode: InsertionMode,
    pub outgoing_expires: u32,
}

impl RegistrarConfig {
    /// Policy for an AoR domain; the lookup is case-insensitive.
    pub fn policy_for(&self, domain: &str) -> DomainPolicy {
        let d = self
            .domains
            .get(domain)
            .or_else(|| self.domains.get(&domain.to_ascii_lowercase()));
        DomainPolicy {
            mode: d.and_then(|d| d.mode).unwrap_or(self.mode),
            insertion_mode: d
                .and_then(|d| d.insertion_mode)
                .unwrap_or(self.insertion_mode),
            outgoing_expires: d
                .and_then(|d| d.outgoing_expires)
                .unwrap_or(self.outgoing_expires),
        }
    }
}

impl Validate for RegistrarConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.min_expires == 0 || self.min_expires > self.max_expires {
            return Err(ConfigError::invalid(
                "registrar.min_expires",
                "need 0 < min_expires <= max_expires",
            ));
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return Err(ConfigError::invalid(
                "registrar.default_expires",
                "must lie between min_expires and max_expires",
            ));
        }
        let outgoing = std::iter::once(("registrar.outgoing_expires", self.outgoing_expires))
            .chain(self.domains.values().filter_map(|d| {
                d.outgoing_expires
                    .map(|e| ("registrar.domains.*.outgoing_expires", e))
            }));
        for (key, e) in outgoing {
            if e < self.min_expires {
                return Err(ConfigError::invalid(key, "must be >= min_expires"));
            }
        }
        if self.expires_deviation_percent > 50 {
            return Err(ConfigError::invalid(
                "registrar.expires_deviation_percent",
                "must be 0..=50",
            ));
        }
        if self.max_bindings == 0 {
            return Err(ConfigError::invalid(
                "registrar.max_bindings",
                "must be >= 1",
            ));
        }
        if self.max_bindings_per_source == 0 {
            return Err(ConfigError::invalid(
                "registrar.max_bindings_per_source",
                "must be >= 1",
            ));
        }
        if self.max_contacts_per_aor == 0 {
            return Err(ConfigError::invalid(
                "registrar.max_contacts_per_aor",
                "must be >= 1",
            ));
        }
        if self.natping_max_failures == 0 {
            return Err(ConfigError::invalid(
                "registrar.natping_max_failures",
                "must be >= 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_domain_override() {
        let c: RegistrarConfig = toml::from_str(
            r#"
            mode = "contact"
            insertion_mode = "path"
            outgoing_expires = 1800
            min_expires = 30
            max_expires = 3600
            default_expires = 600
            expires_deviation_percent = 5
            max_contacts_per_aor = 4
            absorb_authorized_refreshes = true
            natping_interval_s = 20
            natping_method = "4byte"
            natping_max_failures = 2
            store_path = "/tmp/x.log"
            [domains."b.example"]
            mode = "aor"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.natping_method, NatPingMethod::FourByte);
        assert_eq!(c.policy_for("B.example").mode, RegistrarMode::Aor);
        assert_eq!(c.policy_for("B.example").outgoing_expires, 1800);
        assert_eq!(c.policy_for("a.example").mode, RegistrarMode::Contact);
        assert_eq!(
            c.policy_for("a.example").insertion_mode,
            InsertionMode::Path
        );
    }

    #[test]
    fn rejects_inconsistent_expires() {
        let c: RegistrarConfig = toml::from_str("min_expires = 100\ndefault_expires = 50").unwrap();
        assert!(c.validate().is_err());
        assert!(toml::from_str::<RegistrarConfig>("mode = \"bogus\"").is_err());
        RegistrarConfig::default().validate().unwrap();
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn example_file_parses_with_defaults() {
        let text = include_str!("../examples/edge.toml");
        let c: crate::EdgeConfig = crate::from_str(text).unwrap();
        let d = super::RegistrarConfig::default();
        assert_eq!(c.registrar.outgoing_expires, d.outgoing_expires);
        assert_eq!(c.registrar.store_path, d.store_path);
        assert_eq!(c.registrar.natping_method, d.natping_method);
    }
}
