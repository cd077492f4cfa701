//! DNS for `routing.core` entries given as domain names (RFC 3263 §4.2/§4.4): the async shell
//! around the sans-IO policy. For `name` without a port: SRV `_sip._udp.name` (or `_sip._tcp`
//! for `tcp:` entries), then A/AAAA of each SRV target; with no SRV records, A/AAAA of `name`
//! on port 5060. For `name:port`: A/AAAA only. Results go to the proxy core
//! ([`crate::proxy::Proxy::set_core_resolved`]), which orders them (RFC 2782). Each entry is
//! re-resolved when its records expire, at most every 60 s and at least every 5 s.

use crate::proxy::srv::Resolved;
use config::{CoreDomain, Transport};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::time::Duration;

/// RFC 3263 §4.2: the default port when SRV gives none.
const SIP_PORT: u16 = 5060;
/// Re-resolution bounds.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);
pub const MAX_REFRESH: Duration = Duration::from_secs(60);
/// After a failed lookup (the previous targets stay in use).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("resolver set-up: {0}")]
    Setup(String),
    #[error("no address for {0}")]
    NoAddress(String),
}

/// One lookup's result: the targets and how long they may be used.
#[derive(Debug)]
pub struct Lookup {
    pub targets: Vec<Resolved>,
    pub ttl: Duration,
}

/// The resolver: the system's (`/etc/resolv.conf`) unless `servers` are given
/// (`routing.dns_servers`).
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, ResolveError> {
    let setup = |e: &dyn std::fmt::Display| ResolveError::Setup(e.to_string());
    let builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| setup(&e))?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut ns.connections {
                    c.port = s.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    builder.build().map_err(|e| setup(&e))
}

/// Resolves one domain entry (RFC 3263 §4.2 for the port, §4.4 for SRV).
pub async fn lookup(r: &TokioResolver, d: &CoreDomain) -> Result<Lookup, ResolveError> {
    if let Some(port) = d.port {
        return addresses(r, &d.name, port, 0, 0).await;
    }
    let service = match d.transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
    };
    if let Ok(srv) = r.srv_lookup(format!("{service}.{}.", d.name)).await {
        let mut targets = Vec::new();
        let mut ttl = MAX_REFRESH;
        for rec in srv.answers() {
            let RData::SRV(s) = &rec.data else {
                continue;
            };
            ttl = ttl.min(Duration::from_secs(u64::from(rec.ttl)));
            // RFC 2782: a target of "." means the service is not available here.
            if s.target.is_root() {
                continue;
            }
            let host = s.target.to_ascii();
            if let Ok(l) = addresses(r, &host, s.port, s.priority, s.weight).await {
                ttl = ttl.min(l.ttl);
                targets.extend(l.targets);
            }
        }
        if !targets.is_empty() {
            return Ok(Lookup { targets, ttl });
        }
    }
    // RFC 3263 §4.2: no SRV records: the name's A/AAAA on the default port.
    addresses(r, &d.name, SIP_PORT, 0, 0).await
}

async fn addresses(
    r: &TokioResolver,
    host: &str,
    port: u16,
    priority: u16,
    weight: u16,
) -> Result<Lookup, ResolveError> {
    let fqdn = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let ips = r
        .lookup_ip(fqdn)
        .await
        .map_err(|_| ResolveError::NoAddress(host.to_string()))?;
    let ttl = ips
        .as_lookup()
        .answers()
        .iter()
        .map(|rec| Duration::from_secs(u64::from(rec.ttl)))
        .min()
        .unwrap_or(MAX_REFRESH);
    let targets: Vec<Resolved> = ips
        .iter()
        .map(|ip| Resolved {
            addr: SocketAddr::new(ip, port),
            priority,
            weight,
        })
        .collect();
    if targets.is_empty() {
        return Err(ResolveError::NoAddress(host.to_string()));
    }
    Ok(Lookup { targets, ttl })
}

/// When to resolve again after a lookup.
pub fn refresh_after(result: &Result<Lookup, ResolveError>) -> Duration {
    match result {
        Ok(l) if !l.targets.is_empty() => l.ttl.clamp(MIN_REFRESH, MAX_REFRESH),
        _ => RETRY_AFTER_FAILURE,
    }
}
