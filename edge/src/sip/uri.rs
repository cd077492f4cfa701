//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966 for tel).
//!
//! `sip:user:password@host:port;uri-parameters?headers`. The parse borrows from the input and
//! validates the character classes, so a URI that parses can be written back as is.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::{ParseError, ParseErrorKind};
use super::lex::{find_param, parse_u16};
use super::transport::Transport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// The host part of a URI or Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    Domain(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses `hostname`, `IPv4address` or `[IPv6reference]` (§25.1). A dotted-digit name
    /// must be a valid IPv4 address (a top label cannot start with a digit).
    pub fn parse(s: &'a str) -> Option<Host<'a>> {
        let b = s.as_bytes();
        if let Some(inner) = s.strip_prefix('[') {
            return inner.strip_suffix(']')?.parse().ok().map(Host::V6);
        }
        if b.is_empty() {
            return None;
        }
        if b.iter().all(|&c| c.is_ascii_digit() || c == b'.') {
            return s.parse().ok().map(Host::V4);
        }
        // hostname: alphanumerics, '-' and '.'; '_' is tolerated as deployed DNS names use it.
        let ok = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
            && !s.contains("..");
        ok.then_some(Host::Domain(s))
    }

    pub fn is_ip(&self) -> bool {
        !matches!(self, Host::Domain(_))
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A parsed URI. For `tel:` URIs `user` holds the telephone number, `host` is
/// `Host::Domain("")` and `port` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// Raw `;name=value...` (leading `;` kept), or "".
    pub params: &'a str,
    /// Raw headers after `?` (without the `?`), or "".
    pub headers: &'a str,
}

fn bad_uri() -> ParseError {
    ParseError::new(ParseErrorKind::Uri, "Bad Request (invalid URI)")
}

/// unreserved = alphanum / mark (§25.1), plus `%` for escapes.
fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()%".contains(&c)
}

fn user_char(c: u8) -> bool {
    unreserved(c) || b"&=+$,;?/".contains(&c)
}

fn password_char(c: u8) -> bool {
    unreserved(c) || b"&=+$,".contains(&c)
}

fn param_char(c: u8) -> bool {
    unreserved(c) || b"[]/:&+$=;".contains(&c)
}

fn header_char(c: u8) -> bool {
    // hnv-unreserved plus '&' and '=' separators; '@' is tolerated (seen unescaped in
    // Replaces headers of Refer-To URIs).
    unreserved(c) || b"[]/?:+$&=@".contains(&c)
}

fn tel_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || b"*#+-.()pPwW".contains(&c)
}

impl<'a> Uri<'a> {
    /// Parses a sip, sips or tel URI. Any other well-formed scheme is
    /// `ParseErrorKind::UnsupportedScheme` (answered with 416, §8.2.2.1).
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, ParseError> {
        let s = std::str::from_utf8(raw).map_err(|_| bad_uri())?;
        let colon = s.find(':').ok_or_else(bad_uri)?;
        let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
        let sb = scheme.as_bytes();
        if !sb.first().is_some_and(u8::is_ascii_alphabetic)
            || !sb
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        {
            return Err(bad_uri());
        }
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            return Err(ParseError::new(
                ParseErrorKind::UnsupportedScheme,
                "Unsupported URI Scheme",
            ));
        };
        if scheme == Scheme::Tel {
            return parse_tel(rest);
        }
        let (userinfo, hostpart) = match rest.find('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.find(':') {
                    Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                    None => (ui, None),
                };
                if u.is_empty() || !u.bytes().all(user_char) {
                    return Err(bad_uri());
                }
                if p.is_some_and(|p| !p.bytes().all(password_char)) {
                    return Err(bad_uri());
                }
                (Some(u), p)
            }
        };
        let host_end = if hostpart.starts_with('[') {
            hostpart.find(']').ok_or_else(bad_uri)? + 1
        } else {
            hostpart.find([':', ';', '?']).unwrap_or(hostpart.len())
        };
        let host = Host::parse(&hostpart[..host_end]).ok_or_else(bad_uri)?;
        let mut rest = &hostpart[host_end..];
        let mut port = None;
        if let Some(r) = rest.strip_prefix(':') {
            let end = r.find([';', '?']).unwrap_or(r.len());
            port = Some(parse_u16(&r.as_bytes()[..end]).ok_or_else(bad_uri)?);
            rest = &r[end..];
        }
        let q = rest.find('?').unwrap_or(rest.len());
        let (params, headers) = (&rest[..q], rest.get(q + 1..).unwrap_or(""));
        if !params.is_empty() && (!params.starts_with(';') || !params.bytes().all(param_char)) {
            return Err(bad_uri());
        }
        if params
            .split(';')
            .skip(1)
            .any(|p| p.is_empty() || p.starts_with('='))
        {
            return Err(bad_uri());
        }
        if !headers.bytes().all(header_char) {
            return Err(bad_uri());
        }
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// A URI parameter, case-insensitively: `Some(None)` for a flag such as `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// Loose routing flag (§16.4, §19.1.1).
    pub fn has_lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The `transport=` parameter as written.
    pub fn transport(&self) -> Option<&'a str> {
        self.param("transport").flatten()
    }

    /// `transport=` as a known [`Transport`]; `sips` implies TLS (§26.2.2).
    pub fn transport_kind(&self) -> Option<Transport> {
        match self.transport() {
            Some(t) => Transport::parse(t.as_bytes()),
            None if self.scheme == Scheme::Sips => Some(Transport::Tls),
            None => None,
        }
    }

    /// The port, or 5061 for sips / transport=tls and 5060 otherwise (§19.1.2).
    pub fn port_or_default(&self) -> u16 {
        self.port
            .unwrap_or_else(|| self.transport_kind().map_or(5060, Transport::default_port))
    }
}

fn parse_tel(rest: &str) -> Result<Uri<'_>, ParseError> {
    let semi = rest.find(';').unwrap_or(rest.len());
    let (number, params) = (&rest[..semi], &rest[semi..]);
    if number.is_empty() || !number.bytes().all(tel_char) {
        return Err(bad_uri());
    }
    if !params.bytes().all(param_char) || params.split(';').skip(1).any(str::is_empty) {
        return Err(bad_uri());
    }
    Ok(Uri {
        scheme: Scheme::Tel,
        user: Some(number),
        password: None,
        host: Host::Domain(""),
        port: None,
        params,
        headers: "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u = Uri::parse(b"sip:alice:secret@example.com:5070;transport=tcp;lr?subject=x&h=y")
            .unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Domain("example.com"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params, ";transport=tcp;lr");
        assert_eq!(u.headers, "subject=x&h=y");
        assert!(u.has_lr());
        assert_eq!(u.transport(), Some("tcp"));
        assert_eq!(u.transport_kind(), Some(Transport::Tcp));
    }

    #[test]
    fn ip_hosts() {
        let u = Uri::parse(b"sips:[2001:db8::1]:5061;maddr=[2001:db8::2]").unwrap();
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.host.to_string(), "[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("MADDR"), Some(Some("[2001:db8::2]")));
        let u = Uri::parse(b"SIP:+1-555@10.0.0.1;user=phone").unwrap();
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(u.user, Some("+1-555"));
        assert_eq!(u.port_or_default(), 5060);
        assert_eq!(Uri::parse(b"sips:h").unwrap().port_or_default(), 5061);
    }

    #[test]
    fn tel_uri() {
        let u = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some("+1-201-555-0123"));
        assert_eq!(u.param("phone-context"), Some(Some("example.com")));
    }

    #[test]
    fn rejects() {
        for bad in [
            &b"sip:"[..],
            b"sip:@host",
            b"sip:a b@host",
            b"sip:host:port",
            b"sip:host:70000",
            b"sip:[::1",
            b"sip:[zz::1]",
            b"sip:1.2.3.999",
            b"sip:host;",
            b"sip:host;=x",
            b"sip:-host",
            b"nocolon",
            b"1sip:host",
            b"tel:",
            b"sip:h\xff",
        ] {
            let e = Uri::parse(bad).unwrap_err();
            assert_eq!(
                e.kind,
                ParseErrorKind::Uri,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = Uri::parse(b"http://example.com/").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::UnsupportedScheme);
        assert_eq!(e.status_code(), 416);
    }
}
