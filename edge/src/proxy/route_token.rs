//! The integrity token of the edge's Record-Route (the trust boundary, issue 8).
//!
//! A phone's in-dialog requests come back through the Record-Route the edge inserted, and a
//! phone controls everything it sends: its Route set and Request-URI could point the edge at any
//! host (open relay, toll fraud, core bypass). So the edge writes into its Record-Route URI the
//! hop that in-dialog requests from the access side must go to — the core it used for the
//! dialog — with an HMAC over the dialog's Call-ID, the caller's tag and that hop:
//!
//! `<sip:EDGE;lr;ftag=<From tag>;eh=<transport>:<ip:port>;etk=<token>>`
//!
//! An access-side in-dialog request goes to `eh` only if `etk` verifies; nothing a phone can
//! write changes where it goes. (Kamailio's rr module keeps `ftag` the same way; OpenSIPS'
//! topology hiding encrypts the whole route set for the same reason.) The key is
//! `proxy.route_secret_file`, kept across restarts so dialogs survive them.

use crate::transport::{Dest, Transport};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;

/// Bytes of HMAC-SHA256 kept in the token (128 bits, hex-encoded).
const TOKEN_BYTES: usize = 16;

/// The HMAC key, kept as the keyed HMAC state (cloned per use: saves the two block
/// compressions of keying on every Record-Route and every in-dialog request).
#[derive(Clone)]
pub struct RouteKey(Hmac<Sha256>);

impl std::fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteKey(..)")
    }
}

impl RouteKey {
    pub fn new(key: [u8; 32]) -> Self {
        RouteKey(Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length"))
    }

    fn mac(&self, call_id: &[u8], ftag: &str, hop: &str) -> Hmac<Sha256> {
        let mut m = self.0.clone();
        // Length-prefixed fields: no two different triples feed the same bytes.
        for part in [call_id, ftag.as_bytes(), hop.as_bytes()] {
            m.update(&(part.len() as u32).to_be_bytes());
            m.update(part);
        }
        m
    }

    /// The token for a dialog (Call-ID, caller's tag) and its access-side hop.
    pub fn token(&self, call_id: &[u8], ftag: &str, hop: &str) -> String {
        let out = self.mac(call_id, ftag, hop).finalize().into_bytes();
        out.iter()
            .take(TOKEN_BYTES)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Does `token` belong to this dialog and hop? Constant time.
    pub fn verify(&self, call_id: &[u8], ftag: &str, hop: &str, token: &str) -> bool {
        let Some(bytes) = unhex(token) else {
            return false;
        };
        bytes.len() == TOKEN_BYTES
            && self
                .mac(call_id, ftag, hop)
                .verify_truncated_left(&bytes)
                .is_ok()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `udp:10.0.0.5:5060` / `tcp:[2001:db8::1]:5060`: the `eh` parameter.
pub fn hop_param(d: &Dest) -> String {
    let t = match d.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    format!("{t}:{}", d.addr)
}

/// The hop back from an `eh` parameter.
pub fn parse_hop(s: &str) -> Option<Dest> {
    let (t, addr) = s.split_once(':')?;
    let transport = match t {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        _ => return None,
    };
    Some(Dest {
        transport,
        addr: addr.parse::<SocketAddr>().ok()?,
        flow: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_binds_dialog_and_hop() {
        let k = RouteKey::new([7; 32]);
        let t = k.token(b"call-1", "tagA", "udp:10.0.0.5:5060");
        assert_eq!(t.len(), 2 * TOKEN_BYTES);
        assert!(k.verify(b"call-1", "tagA", "udp:10.0.0.5:5060", &t));
        // Any change of dialog, tag or hop, or another key, fails.
        assert!(!k.verify(b"call-2", "tagA", "udp:10.0.0.5:5060", &t));
        assert!(!k.verify(b"call-1", "tagB", "udp:10.0.0.5:5060", &t));
        assert!(!k.verify(b"call-1", "tagA", "udp:6.6.6.6:5060", &t));
        assert!(!RouteKey::new([8; 32]).verify(b"call-1", "tagA", "udp:10.0.0.5:5060", &t));
        // Field boundaries are part of the input.
        assert!(!k.verify(b"call-1t", "agA", "udp:10.0.0.5:5060", &t));
        // Garbage tokens.
        for bad in ["", "zz", &t[..30], &format!("{t}00")] {
            assert!(
                !k.verify(b"call-1", "tagA", "udp:10.0.0.5:5060", bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn hop_round_trips() {
        for s in ["udp:10.0.0.5:5060", "tcp:[2001:db8::1]:5070"] {
            let d = parse_hop(s).unwrap();
            assert_eq!(hop_param(&d), s);
        }
        assert!(parse_hop("sctp:1.2.3.4:5").is_none());
        assert!(parse_hop("udp:evil.example:5060").is_none());
    }
}
