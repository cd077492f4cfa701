//! `received` and `rport` on the top Via of a request (RFC 3261 §18.2.1, RFC 3581 §4).
//!
//! A NATed phone's Via names its private address; the edge records where the request really
//! came from so that responses go back through the NAT binding. `received` is added when the
//! sent-by host differs from the source IP, or whenever `rport` was requested (RFC 3581 §4);
//! a bare `rport` is filled in with the source port.

use crate::sip::Via;
use std::net::{IpAddr, SocketAddr};

/// The new top Via value, or `None` when nothing needs to change.
pub fn stamp(raw: &[u8], via: &Via<'_>, src: SocketAddr) -> Option<Vec<u8>> {
    let host_is_src = via
        .host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip == src.ip());
    let fill_rport = via.rport == Some(None);
    let add_received = (!host_is_src || via.rport.is_some()) && via.received.is_none();
    if !fill_rport && !add_received {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() + 40);
    if fill_rport {
        // Rewrite the bare `rport` parameter in place; everything else stays byte for byte.
        let pos = find_bare_rport(raw)?;
        out.extend_from_slice(&raw[..pos + 5]);
        out.extend_from_slice(format!("={}", src.port()).as_bytes());
        out.extend_from_slice(&raw[pos + 5..]);
    } else {
        out.extend_from_slice(raw);
    }
    if add_received {
        out.extend_from_slice(b";received=");
        out.extend_from_slice(src.ip().to_string().as_bytes());
    }
    Some(out)
}

/// Byte offset of a `rport` parameter that has no value.
fn find_bare_rport(raw: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = raw[i..].iter().position(|b| *b == b';') {
        let start = i + off + 1;
        let name_start = start
            + raw[start..]
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
        let rest = &raw[name_start..];
        if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"rport") {
            let after = rest.get(5).copied();
            if matches!(
                after,
                None | Some(b';') | Some(b' ') | Some(b'\t') | Some(b',')
            ) {
                return Some(name_start);
            }
        }
        i = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str, src: &str) -> Option<String> {
        let via = Via::parse(raw.as_bytes()).unwrap();
        stamp(raw.as_bytes(), &via, src.parse().unwrap()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn natted_phone_with_rport() {
        assert_eq!(
            run(
                "SIP/2.0/UDP 192.168.1.5:5060;rport;branch=z9hG4bK1",
                "198.51.100.9:40000"
            )
            .as_deref(),
            Some("SIP/2.0/UDP 192.168.1.5:5060;rport=40000;branch=z9hG4bK1;received=198.51.100.9")
        );
    }

    #[test]
    fn rport_requested_from_matching_host_still_gets_received() {
        assert_eq!(
            run(
                "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1;rport",
                "127.0.0.1:5071"
            )
            .as_deref(),
            Some("SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1;rport=5071;received=127.0.0.1")
        );
    }

    #[test]
    fn no_rport_and_same_host_is_untouched() {
        assert_eq!(
            run(
                "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK1",
                "127.0.0.1:5071"
            ),
            None
        );
    }

    #[test]
    fn no_rport_other_host_gets_received_only() {
        assert_eq!(
            run(
                "SIP/2.0/UDP phone.example;branch=z9hG4bK1",
                "203.0.113.4:5060"
            )
            .as_deref(),
            Some("SIP/2.0/UDP phone.example;branch=z9hG4bK1;received=203.0.113.4")
        );
    }

    #[test]
    fn rport_named_prefix_is_not_rport() {
        assert_eq!(find_bare_rport(b"SIP/2.0/UDP h;rportx;branch=1"), None);
        assert_eq!(find_bare_rport(b"SIP/2.0/UDP h; rport"), Some(15));
    }
}
