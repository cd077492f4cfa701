//! SIGHUP: which configuration keys can change in a running edge (pure; the shell applies
//! them). A reload re-reads the file *and* the command line's flags (flags still win), so the
//! effective configuration is the one a restart would give; the keys it cannot apply without a
//! restart are named in the log and keep their old value.

use config::EdgeConfig;

/// Keys applied at run time: routing (cores, priorities, trusted networks, health probes),
/// transaction and per-source limits, the per-source rate limit, proxy behaviour, the log
/// level, the relay set and weights, what to do when no relay answers, and the registrar's
/// modes (global and per domain), expiry policy and binding limits.
pub fn reloadable(key: &str) -> bool {
    const PREFIXES: [&str; 3] = ["routing.", "proxy.", "limits.source_"];
    const KEYS: [&str; 7] = [
        "limits.max_transactions",
        "limits.max_transactions_per_source",
        "limits.max_tracked_sources",
        "log.level",
        "media.on_relay_failure",
        "media.max_streams_per_sdp",
        "media.relays",
    ];
    const FIXED: [&str; 3] = [
        "registrar.store_path",
        "registrar.max_contacts_per_aor",
        "registrar.natping_",
    ];
    if key == "proxy.route_secret_file" || FIXED.iter().any(|f| key.starts_with(f)) {
        return false;
    }
    if key.starts_with("registrar.") {
        return true;
    }
    KEYS.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The outcome of comparing the running configuration with a newly loaded one.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the edge runs with after the reload: `old` with the reloadable sections of `new`.
    pub effective: EdgeConfig,
    pub applied: Vec<String>,
    pub need_restart: Vec<String>,
}

/// Decide a reload. Core entries given as domain names are resolved by background tasks keyed
/// by their position; a change to `routing.core` while either list holds a domain name needs a
/// restart.
pub fn plan(old: &EdgeConfig, new: &EdgeConfig) -> Plan {
    let changed = config::changed_keys(old, new);
    let domains = |c: &EdgeConfig| {
        c.routing
            .core_entries()
            .iter()
            .any(|e| matches!(e, config::CoreEntry::Domain(_)))
    };
    let routing_ok = !(domains(old) || domains(new)) || old.routing.core == new.routing.core;
    let (applied, need_restart): (Vec<String>, Vec<String>) = changed
        .into_iter()
        .partition(|k| reloadable(k) && (routing_ok || !k.starts_with("routing.")));
    let mut effective = old.clone();
    if applied.iter().any(|k| k.starts_with("routing.")) {
        effective.routing = new.routing.clone();
    }
    if applied.iter().any(|k| k.starts_with("proxy.")) {
        let secret = effective.proxy.route_secret_file.clone();
        effective.proxy = new.proxy.clone();
        effective.proxy.route_secret_file = secret;
    }
    let l = &mut effective.limits;
    l.max_transactions = new.limits.max_transactions;
    l.max_transactions_per_source = new.limits.max_transactions_per_source;
    l.max_tracked_sources = new.limits.max_tracked_sources;
    l.source_rate = new.limits.source_rate;
    l.source_burst = new.limits.source_burst;
    l.source_block_s = new.limits.source_block_s;
    l.source_overrides = new.limits.source_overrides.clone();
    effective.log.level = new.log.level.clone();
    effective.media.on_relay_failure = new.media.on_relay_failure;
    effective.media.max_streams_per_sdp = new.media.max_streams_per_sdp;
    effective.media.relays = new.media.relays.clone();
    let r = &mut effective.registrar;
    let (store, per_aor) = (r.store_path.clone(), r.max_contacts_per_aor);
    let (ping_s, ping_m, ping_f) = (
        r.natping_interval_s,
        r.natping_method,
        r.natping_max_failures,
    );
    *r = new.registrar.clone();
    r.store_path = store;
    r.max_contacts_per_aor = per_aor;
    r.natping_interval_s = ping_s;
    r.natping_method = ping_m;
    r.natping_max_failures = ping_f;
    Plan {
        effective,
        applied,
        need_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_and_limits_apply_listeners_need_a_restart() {
        let old = EdgeConfig::default();
        let mut new = old.clone();
        new.routing.core = vec!["udp:192.0.2.2:5060".into()];
        new.limits.source_rate = 9;
        new.sip.listen_udp = vec!["127.0.0.1:5099".parse().unwrap()];
        new.proxy.route_secret_file = "elsewhere".into();
        let p = plan(&old, &new);
        assert_eq!(p.applied, ["limits.source_rate", "routing.core"]);
        assert_eq!(
            p.need_restart,
            ["proxy.route_secret_file", "sip.listen_udp"]
        );
        assert_eq!(p.effective.routing.core, new.routing.core);
        assert_eq!(p.effective.limits.source_rate, 9);
        assert_eq!(p.effective.sip.listen_udp, old.sip.listen_udp);
        assert_eq!(
            p.effective.proxy.route_secret_file,
            old.proxy.route_secret_file
        );
        // Reloading the same file again reports only what still waits for a restart.
        let again = plan(&p.effective, &new);
        assert!(again.applied.is_empty());
        assert_eq!(again.need_restart, p.need_restart);
    }

    #[test]
    fn domain_cores_need_a_restart() {
        let mut old = EdgeConfig::default();
        old.routing.core = vec!["udp:core.example.net".into()];
        let mut new = old.clone();
        new.routing.core = vec!["udp:192.0.2.2:5060".into()];
        let p = plan(&old, &new);
        assert!(p.applied.is_empty());
        assert_eq!(p.need_restart, ["routing.core"]);
        assert_eq!(p.effective.routing.core, old.routing.core);
    }
}
