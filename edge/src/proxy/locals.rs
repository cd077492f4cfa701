//! The edge's own addresses: what to write in Via and Record-Route, and how to recognise a URI
//! or a Via that points at us (§16.4 Route processing, §16.3 step 4 loop detection).

use crate::sip::{Host, Uri};
use crate::transport::Transport;
use std::net::{IpAddr, SocketAddr};

pub struct Locals {
    listen: Vec<(Transport, SocketAddr)>,
    /// Host written instead of the listen IP (public address, DNS name).
    advertise: Option<String>,
    /// `host_port` of each listen address, computed once (it is written into every forward).
    cached: Vec<(SocketAddr, String)>,
}

impl Locals {
    pub fn new(listen: Vec<(Transport, SocketAddr)>, advertise: Option<String>) -> Self {
        let mut l = Locals {
            listen,
            advertise,
            cached: Vec::new(),
        };
        l.cached = l.listen.iter().map(|(_, a)| (*a, l.format(*a))).collect();
        l
    }

    /// The listen address used for messages toward `dest` over `transport`: same transport and
    /// address family, else any of the transport, else the first.
    pub fn for_dest(&self, transport: Transport, dest: SocketAddr) -> Option<SocketAddr> {
        self.listen
            .iter()
            .find(|(t, a)| *t == transport && a.is_ipv4() == dest.is_ipv4())
            .or_else(|| self.listen.iter().find(|(t, _)| *t == transport))
            .or_else(|| self.listen.first())
            .map(|(_, a)| *a)
    }

    /// Does the edge listen on this transport?
    pub fn has(&self, transport: Transport) -> bool {
        self.listen.iter().any(|(t, _)| *t == transport)
    }

    /// `host:port` for Via sent-by and Record-Route, for a local listen address.
    pub fn host_port(&self, local: SocketAddr) -> String {
        match self.cached.iter().find(|(a, _)| *a == local) {
            Some((_, hp)) => hp.clone(),
            None => self.format(local),
        }
    }

    fn format(&self, local: SocketAddr) -> String {
        let host = match (&self.advertise, local.ip()) {
            (Some(h), _) => h.clone(),
            (None, IpAddr::V6(v6)) => format!("[{v6}]"),
            (None, IpAddr::V4(v4)) if v4.is_unspecified() => "127.0.0.1".to_string(),
            (None, IpAddr::V4(v4)) => v4.to_string(),
        };
        format!("{host}:{}", local.port())
    }

    /// Is `host:port` one of ours?
    pub fn is_us(&self, host: &Host<'_>, port: u16) -> bool {
        let ip = match host {
            Host::V4(a) => IpAddr::V4(*a),
            Host::V6(a) => IpAddr::V6(*a),
            Host::Domain(d) => {
                return self
                    .advertise
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(d))
                    && self.listen.iter().any(|(_, l)| l.port() == port);
            }
        };
        self.listen
            .iter()
            .any(|(_, l)| l.port() == port && (l.ip() == ip || l.ip().is_unspecified()))
            || self.advertise.as_deref().is_some_and(|a| {
                a.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() == Ok(ip)
                    && self.listen.iter().any(|(_, l)| l.port() == port)
            })
    }

    pub fn is_us_uri(&self, uri: &Uri<'_>) -> bool {
        self.is_us(&uri.host, uri.port_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locals() -> Locals {
        Locals::new(
            vec![
                (Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
                (Transport::Tcp, "127.0.0.1:5060".parse().unwrap()),
                (Transport::Udp, "[::1]:5080".parse().unwrap()),
            ],
            None,
        )
    }

    #[test]
    fn recognises_own_uris() {
        let l = locals();
        let us = |s: &str| l.is_us_uri(&Uri::parse(s.as_bytes()).unwrap());
        assert!(us("sip:127.0.0.1;lr"));
        assert!(us("sip:127.0.0.1:5060;lr"));
        assert!(!us("sip:127.0.0.1:5070;lr"));
        assert!(us("sip:[::1]:5080"));
        assert!(!us("sip:example.com"));
    }

    #[test]
    fn picks_family_and_transport() {
        let l = locals();
        let v6 = l
            .for_dest(Transport::Udp, "[::1]:7000".parse().unwrap())
            .unwrap();
        assert_eq!(l.host_port(v6), "[::1]:5080");
        let tcp = l
            .for_dest(Transport::Tcp, "127.0.0.1:7000".parse().unwrap())
            .unwrap();
        assert_eq!(l.host_port(tcp), "127.0.0.1:5060");
    }
}
