//! NAT traversal in one place, used by the registrar, the proxy and media anchoring:
//! detection for REGISTERs and dialog-forming messages (the checks OpenSIPS' `nat_uac_test`
//! popularised: a Contact with a private or shared address, a Via sent-by that differs from
//! the packet's source, RFC 3581 `rport`), Contact fixing, and `received`/`rport` stamping
//! ([`received`]). Pure functions.

pub mod received;

use crate::sip::{Edit, HeaderName, Host, Message, NameAddr, Uri};
use crate::transport::{Source, Transport};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Not;

/// Addresses that cannot be reached from outside their site: RFC 1918, RFC 6598 shared
/// (100.64/10, carrier-grade NAT), link-local (RFC 3927, fe80::/10), IPv6 ULA (RFC 4193),
/// loopback and unspecified.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_private_v4(a),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_private_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, ..] = a.octets();
    a.is_private()
        || a.is_link_local()
        || a.is_loopback()
        || a.is_unspecified()
        || (o0 == 100 && (64..128).contains(&o1))
}

fn host_ip(h: &Host<'_>) -> Option<IpAddr> {
    match h {
        Host::V4(a) => Some(IpAddr::V4(*a)),
        Host::V6(a) => Some(IpAddr::V6(*a)),
        Host::Domain(_) => None,
    }
}

/// A Contact value whose host is a private address.
pub fn contact_is_private(contact: &[u8]) -> bool {
    NameAddr::parse(contact)
        .ok()
        .and_then(|na| na.uri().ok())
        .and_then(|u| host_ip(&u.host))
        .is_some_and(is_private)
}

/// The top Via's sent-by differs from where the packet came from (RFC 3261 §18.2.1 would add
/// `received`); a domain sent-by counts as different. The port is compared on UDP only.
pub fn via_differs(req: &Message, src: &Source) -> bool {
    let Ok(v) = req.top_via() else {
        return true;
    };
    let ip = Host::parse(v.host).as_ref().and_then(host_ip);
    // On streams the source port is an ephemeral one, never the sent-by (listening) port.
    ip.map(canonical) != Some(canonical(src.remote.ip()))
        || (src.transport == Transport::Udp && v.sent_by_port_or_default() != src.remote.port())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        v4 => v4,
    }
}

/// The top Via asks for `rport` (RFC 3581 §3): the client knows it may be behind a NAT.
pub fn asks_rport(req: &Message) -> bool {
    req.top_via().is_ok_and(|v| v.rport.is_some())
}

/// Whether a REGISTER's device should be treated as NATed: any Contact private while the
/// source is public, or the Via sent-by not matching the source. `rport` alone is not enough
/// (many public phones always send it), but it is reported by [`asks_rport`].
pub fn register_is_nated(req: &Message, src: &Source) -> bool {
    let src_private = is_private(src.remote.ip());
    let private_contact = req.values(HeaderName::Contact).any(contact_is_private);
    (private_contact && !src_private) || via_differs(req, src)
}

/// The Contact fix for a NATed device (dialog-forming requests and their responses): the
/// Contact URI with its host and port replaced by the received source, so in-dialog requests
/// reach it through the NAT binding. `None` when the Contact cannot be parsed.
pub fn fixed_contact_uri(contact_uri: &[u8], src: &Source) -> Option<String> {
    let u = Uri::parse(contact_uri).ok()?;
    let host = match canonical(src.remote.ip()) {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let user = u.user.map(|u| format!("{u}@")).unwrap_or_default();
    Some(format!(
        "{}:{user}{host}:{}{}",
        u.scheme.as_str(),
        src.remote.port(),
        u.params
    ))
}

/// Contact fixing (the `fix_nated_contact` of other proxies) on a dialog-forming request or
/// its response from a NATed device: when the first Contact has a private address, or the top
/// Via does not match the source, its URI is replaced by the received source (display name and
/// header parameters kept) so in-dialog requests reach the device through its NAT. Returns
/// whether it rewrote anything. For responses pass the source the response came from.
pub fn fix_contact(msg: &Message, src: &Source, edit: &mut Edit<'_>) -> bool {
    let Some(value) = msg.values(HeaderName::Contact).next() else {
        return false;
    };
    let Ok(na) = NameAddr::parse(value) else {
        return false;
    };
    let behind_nat = contact_is_private(value) && !is_private(src.remote.ip());
    let via_off = msg.is_request() && via_differs(msg, src);
    if !(behind_nat || via_off) {
        return false;
    }
    let Some(uri) = fixed_contact_uri(na.uri_raw, src) else {
        return false;
    };
    let display = na.display.map(|d| format!("\"{d}\" ")).unwrap_or_default();
    edit.replace_first_value(
        HeaderName::Contact,
        format!("{display}<{uri}>{}", na.params).as_bytes(),
    );
    true
}

/// NAT test for the sender of `msg` (RFC 3581 and nathelper's usual checks): the top Via's
/// sent-by is not where the packet came from (requests), or the Contact names a private
/// address that is not the source. `access` is left false: the caller knows the side.
pub fn sender(msg: &Message, src: IpAddr) -> crate::media::Peer {
    let via_differs = msg.is_request()
        && msg.top_via().ok().is_some_and(|v| {
            v.host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip == src)
                .not()
        });
    let private_contact = msg
        .values(HeaderName::Contact)
        .next()
        .and_then(|v| NameAddr::parse(v).ok())
        .and_then(|na| {
            let raw = na.uri_raw;
            let uri = Uri::parse(raw).ok()?;
            let ip = match uri.host {
                Host::V4(a) => IpAddr::V4(a),
                Host::V6(a) => IpAddr::V6(a),
                Host::Domain(_) => return None,
            };
            // One definition of "private" for the whole edge (registrar and media agree).
            Some(ip != src && is_private(ip))
        })
        .unwrap_or(false);
    crate::media::Peer {
        source: src,
        nated: via_differs || private_contact,
        access: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Limits};
    use bytes::Bytes;

    #[test]
    fn sender_nat_test() {
        let req = "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bK1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:a@192.168.1.2:5060>\r\nContent-Length: 0\r\n\r\n";
        let m = parse(Bytes::from_static(req.as_bytes()), &Limits::default()).unwrap();
        assert!(sender(&m, "198.51.100.7".parse().unwrap()).nated);
        assert!(!sender(&m, "192.168.1.2".parse().unwrap()).nated);
    }

    fn src(remote: &str) -> Source {
        Source {
            transport: Transport::Udp,
            remote: remote.parse().unwrap(),
            local: "198.51.100.1:5060".parse().unwrap(),
            flow: None,
        }
    }

    fn reg(via: &str, contact: &str) -> Message {
        let s = format!(
            "REGISTER sip:d SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK1\r\n\
             From: <sip:a@d>;tag=1\r\nTo: <sip:a@d>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\
             Contact: {contact}\r\nContent-Length: 0\r\n\r\n"
        );
        parse(Bytes::from(s), &Limits::default()).unwrap()
    }

    #[test]
    fn private_ranges() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["100.128.0.1", "8.8.8.8", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn detects_nat() {
        let nated = reg("192.168.1.5:5060;rport", "<sip:a@192.168.1.5:5060>");
        assert!(register_is_nated(&nated, &src("203.0.113.9:40000")));
        assert!(asks_rport(&nated));
        let public = reg("203.0.113.9:5060", "<sip:a@203.0.113.9:5060>");
        assert!(!register_is_nated(&public, &src("203.0.113.9:5060")));
        // Same ip, other port: a port-mapping NAT or a symmetric one.
        assert!(register_is_nated(&public, &src("203.0.113.9:5061")));
        // TCP: the ephemeral source port is expected.
        let mut tcp = src("203.0.113.9:51234");
        tcp.transport = Transport::Tcp;
        assert!(!register_is_nated(&public, &tcp));
        // A private Contact from a private source (same site, no NAT in between).
        let lan = reg("10.0.0.5:5060", "<sip:a@10.0.0.5:5060>");
        assert!(!register_is_nated(&lan, &src("10.0.0.5:5060")));
    }

    #[test]
    fn fixes_contact_of_nated_invite_only() {
        let invite = |contact: &str| {
            let s = format!(
                "INVITE sip:b@d SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK1;rport\r\n\
                 From: <sip:a@d>;tag=1\r\nTo: <sip:b@d>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                 Contact: {contact}\r\nContent-Length: 0\r\n\r\n"
            );
            parse(Bytes::from(s), &Limits::default()).unwrap()
        };
        let m = invite("\"Al\" <sip:a@192.168.1.5:5060;ob>;+sip.instance=\"<urn:uuid:1>\"");
        let mut e = Edit::new(&m);
        assert!(fix_contact(&m, &src("203.0.113.9:40000"), &mut e));
        let out = parse(e.finish(), &Limits::default()).unwrap();
        assert_eq!(
            out.header(HeaderName::Contact),
            Some(&b"\"Al\" <sip:a@203.0.113.9:40000;ob>;+sip.instance=\"<urn:uuid:1>\""[..])
        );
        // Sent from where it says: nothing to fix.
        let m = invite("<sip:a@192.168.1.5:5060>");
        let mut e = Edit::new(&m);
        assert!(!fix_contact(&m, &src("192.168.1.5:5060"), &mut e));
    }

    #[test]
    fn contact_fix() {
        let s = src("203.0.113.9:40000");
        assert_eq!(
            fixed_contact_uri(b"sip:alice@192.168.1.5:5062;transport=udp", &s).as_deref(),
            Some("sip:alice@203.0.113.9:40000;transport=udp")
        );
        assert_eq!(
            fixed_contact_uri(b"sip:10.0.0.1", &src("[2001:db8::1]:5060")).as_deref(),
            Some("sip:[2001:db8::1]:5060")
        );
    }
}
