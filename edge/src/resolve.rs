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

/// The shell against a real DNS server on loopback: a tiny authoritative responder written for
/// the test (no other address is ever queried).
#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SRV: u16 = 33;
    const A: u16 = 1;

    /// (name, type) -> answers as (ttl, rdata).
    fn zone(name: &str, qtype: u16) -> Option<Vec<(u32, Vec<u8>)>> {
        let srv = |prio: u16, weight: u16, port: u16, target: &str| {
            let mut r = Vec::new();
            r.extend_from_slice(&prio.to_be_bytes());
            r.extend_from_slice(&weight.to_be_bytes());
            r.extend_from_slice(&port.to_be_bytes());
            r.extend_from_slice(&encode_name(target));
            (30, r)
        };
        let a = |ip: [u8; 4]| (20, ip.to_vec());
        match (name, qtype) {
            ("_sip._udp.core.test", SRV) => Some(vec![
                srv(10, 60, 5070, "a.core.test"),
                srv(10, 40, 5071, "b.core.test"),
                srv(20, 0, 5072, "c.core.test"),
            ]),
            ("a.core.test", A) => Some(vec![a([127, 0, 0, 31])]),
            ("b.core.test", A) => Some(vec![a([127, 0, 0, 32])]),
            ("c.core.test", A) => Some(vec![a([127, 0, 0, 33])]),
            ("plain.test", A) => Some(vec![a([127, 0, 0, 40])]),
            // Names that exist answer other types with no data (NODATA, e.g. AAAA).
            ("a.core.test" | "b.core.test" | "c.core.test" | "plain.test", _) => Some(Vec::new()),
            _ => None, // NXDOMAIN
        }
    }

    fn encode_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.trim_end_matches('.').split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// Answers one query datagram; `None` for what it cannot parse.
    fn respond(q: &[u8]) -> Option<Vec<u8>> {
        let mut at = 12;
        let mut labels = Vec::new();
        loop {
            let len = *q.get(at)? as usize;
            at += 1;
            if len == 0 {
                break;
            }
            labels.push(
                std::str::from_utf8(q.get(at..at + len)?)
                    .ok()?
                    .to_ascii_lowercase(),
            );
            at += len;
        }
        let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
        let question = q.get(12..at + 4)?;
        let name = labels.join(".");
        let answers = zone(&name, qtype);
        let rcode = if answers.is_some() { 0 } else { 3 };
        let answers = answers.unwrap_or_default();
        let mut r = Vec::new();
        r.extend_from_slice(q.get(0..2)?);
        r.extend_from_slice(&(0x8400u16 | 0x0100 | rcode).to_be_bytes()); // QR AA RD
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(question);
        for (ttl, rdata) in answers {
            r.extend_from_slice(&[0xC0, 12]); // the question's name
            r.extend_from_slice(&qtype.to_be_bytes());
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            r.extend_from_slice(&rdata);
        }
        Some(r)
    }

    async fn serve(sock: tokio::net::UdpSocket) {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if let Some(r) = respond(&buf[..n]) {
                let _ = sock.send_to(&r, from).await;
            }
        }
    }

    fn domain(transport: Transport, name: &str, port: Option<u16>) -> CoreDomain {
        CoreDomain {
            transport,
            name: name.into(),
            port,
            priority: 0,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn srv_then_a_and_fallbacks_against_a_loopback_dns_server() {
        let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let dns = sock.local_addr().unwrap();
        let server = tokio::spawn(serve(sock));
        let r = resolver(&[dns]).unwrap();
        let run = async {
            // SRV then A for each target, with the SRV priority and weight.
            let l = lookup(&r, &domain(Transport::Udp, "core.test", None))
                .await
                .unwrap();
            let mut got: Vec<(String, u16, u16)> = l
                .targets
                .iter()
                .map(|t| (t.addr.to_string(), t.priority, t.weight))
                .collect();
            got.sort();
            assert_eq!(
                got,
                vec![
                    ("127.0.0.31:5070".to_string(), 10, 60),
                    ("127.0.0.32:5071".to_string(), 10, 40),
                    ("127.0.0.33:5072".to_string(), 20, 0),
                ]
            );
            // The smallest TTL (A records: 20 s) bounds the refresh.
            assert_eq!(l.ttl, Duration::from_secs(20));
            assert_eq!(refresh_after(&Ok(l)), Duration::from_secs(20));
            // No SRV: A/AAAA of the name on 5060 (RFC 3263 §4.2).
            let l = lookup(&r, &domain(Transport::Udp, "plain.test", None))
                .await
                .unwrap();
            let addrs: Vec<String> = l.targets.iter().map(|t| t.addr.to_string()).collect();
            assert_eq!(addrs, vec!["127.0.0.40:5060"]);
            // An explicit port: A/AAAA only.
            let l = lookup(&r, &domain(Transport::Tcp, "plain.test", Some(5080)))
                .await
                .unwrap();
            assert_eq!(l.targets[0].addr.to_string(), "127.0.0.40:5080");
            // No _sip._tcp SRV and no address for the name itself: an error, retried later.
            let e = lookup(&r, &domain(Transport::Tcp, "core.test", None)).await;
            assert!(matches!(e, Err(ResolveError::NoAddress(_))), "{e:?}");
            assert_eq!(refresh_after(&e), RETRY_AFTER_FAILURE);
        };
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("lookups finish");
        server.abort();
    }
}
