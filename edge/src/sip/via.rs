//! Via (RFC 3261 §8.1.1.7, §18.2.2, §20.42; rport RFC 3581).
//!
//! `SIP / 2.0 / UDP host:port;branch=z9hG4bK...;received=...;rport`, with LWS allowed around
//! the slashes and the colon.

use super::error::ParseError;
use super::lex::{find_param, is_lws, is_token_char, parse_u16, trim, valid_params};
use super::transport::Transport;
use super::uri::Host;

/// One Via value, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token as written (`UDP`, `tcp`, ...).
    pub transport: &'a str,
    /// sent-by host; an IPv6 reference keeps its brackets.
    pub host: &'a str,
    pub port: Option<u16>,
    pub branch: Option<&'a str>,
    pub received: Option<&'a str>,
    /// `Some(None)`: bare `;rport` (a request asking for it); `Some(Some(p))`: filled in.
    pub rport: Option<Option<u16>>,
    /// All parameters raw, leading `;` kept, or "".
    pub params: &'a str,
}

const BAD: &str = "Bad Request (invalid Via)";

fn bad() -> ParseError {
    ParseError::bad(BAD)
}

/// Splits a token at the start of `s` (after LWS); returns (token, rest).
fn token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = skip_lws(s);
    let end = s.iter().position(|&b| !is_token_char(b)).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

fn skip_lws(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    &s[n..]
}

fn expect(s: &[u8], c: u8) -> Option<&[u8]> {
    let s = skip_lws(s);
    (s.first() == Some(&c)).then(|| &s[1..])
}

fn as_str(b: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(b).map_err(|_| bad())
}

impl<'a> Via<'a> {
    /// Parses one via-parm (a single comma-separated value of a Via field).
    pub fn parse(v: &'a [u8]) -> Result<Via<'a>, ParseError> {
        let v = trim(v);
        let (proto, rest) = token(v).ok_or_else(bad)?;
        let rest = expect(rest, b'/').ok_or_else(bad)?;
        let (version, rest) = token(rest).ok_or_else(bad)?;
        let rest = expect(rest, b'/').ok_or_else(bad)?;
        let (transport, rest) = token(rest).ok_or_else(bad)?;
        if !proto.eq_ignore_ascii_case(b"SIP") || version != b"2.0" {
            return Err(bad());
        }
        // LWS sent-by
        if !rest.first().is_some_and(|&b| is_lws(b)) {
            return Err(bad());
        }
        let rest = skip_lws(rest);
        let host_end = if rest.first() == Some(&b'[') {
            rest.iter().position(|&b| b == b']').ok_or_else(bad)? + 1
        } else {
            rest.iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
                .unwrap_or(rest.len())
        };
        let host = as_str(&rest[..host_end])?;
        Host::parse(host).ok_or_else(bad)?;
        let mut rest = skip_lws(&rest[host_end..]);
        let mut port = None;
        if let Some(r) = expect(rest, b':') {
            let r = skip_lws(r);
            let end = r
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(r.len());
            port = Some(parse_u16(&r[..end]).ok_or_else(bad)?);
            rest = skip_lws(&r[end..]);
        }
        if !rest.is_empty() && (rest.first() != Some(&b';') || !valid_params(rest)) {
            return Err(bad());
        }
        let params = as_str(rest)?;
        let rport = match find_param(params, "rport") {
            None => None,
            Some(None) => Some(None),
            Some(Some(p)) => Some(Some(parse_u16(p.as_bytes()).ok_or_else(bad)?)),
        };
        // via-branch and via-received require a value (§20.42).
        let branch = match find_param(params, "branch") {
            Some(None) => return Err(bad()),
            b => b.flatten(),
        };
        let received = match find_param(params, "received") {
            Some(None) => return Err(bad()),
            r => r.flatten(),
        };
        Ok(Via {
            transport: as_str(transport)?,
            host,
            port,
            branch,
            received,
            rport,
            params,
        })
    }

    /// Any parameter, case-insensitively (`Some(None)` for a flag).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    pub fn transport_kind(&self) -> Option<Transport> {
        Transport::parse(self.transport.as_bytes())
    }

    /// The sent-by port, or the transport's default: 5061 for TLS, else 5060 (§18.2.2).
    pub fn sent_by_port_or_default(&self) -> u16 {
        self.port
            .unwrap_or_else(|| self.transport_kind().map_or(5060, Transport::default_port))
    }

    /// Whether the branch carries the RFC 3261 magic cookie (§8.1.1.7).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical() {
        let v =
            Via::parse(b"SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "pc33.atlanta.com");
        assert_eq!(v.port, Some(5066));
        assert_eq!(v.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.received, None);
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn spaced_ipv6_and_filled_rport() {
        let v = Via::parse(
            b"SIP / 2.0 / tls\r\n [2001:db8::1] : 5061 ; received=192.0.2.1;rport=4000;branch=x",
        )
        .unwrap();
        assert_eq!(v.transport, "tls");
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.received, Some("192.0.2.1"));
        assert_eq!(v.rport, Some(Some(4000)));
        assert_eq!(v.branch, Some("x"));
        assert_eq!(v.params, "; received=192.0.2.1;rport=4000;branch=x");
    }

    #[test]
    fn default_ports() {
        let v = Via::parse(b"SIP/2.0/TLS h").unwrap();
        assert_eq!(v.sent_by_port_or_default(), 5061);
        let v = Via::parse(b"SIP/2.0/UDP h;branch=z9hG4bKa").unwrap();
        assert_eq!(v.sent_by_port_or_default(), 5060);
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0 UDP host",
            b"SIP/3.0/UDP host",
            b"HTTP/2.0/UDP host",
            b"SIP/2.0/UDPhost",
            b"SIP/2.0/UDP host:99999",
            b"SIP/2.0/UDP host:",
            b"SIP/2.0/UDP [::1",
            b"SIP/2.0/UDP host;branch",
            b"SIP/2.0/UDP host branch=x",
            b"SIP/2.0/UDP host;rport=abc",
            b"SIP/2.0/UDP host;=x",
            b"SIP/2.0/UDP 300.1.1.1",
        ] {
            assert!(
                Via::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
