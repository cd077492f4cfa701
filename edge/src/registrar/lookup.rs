//! Requests from the core toward registered devices (RFC 3261 §16.5 target determination
//! from the location service): the Request-URI is the AoR, or the contact the edge registered
//! at the core (`sip:<token>@<edge>`, which maps back to one binding in mirror/contact mode and
//! to the whole AoR in AoR mode), or — in Path mode — the device's own contact with the edge's
//! Path entry as the Route the proxy just consumed. Every live binding found is a target to
//! fork to in parallel over its flow. GRUU (RFC 5627 §5.5): a public GRUU
//! (`...;gr=urn:uuid:...`) reaches only the bindings of that instance.

use super::contact::{aor_key, clean_instance};
use super::location::{Binding, Location};
use crate::sip::Uri;
use crate::transport::Dest;
use std::net::SocketAddr;
use std::time::Instant;

/// One branch to fork to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The new Request-URI: the device's registered contact (§16.5).
    pub request_uri: String,
    /// Send over the binding's flow to its received source.
    pub dest: Dest,
    /// Send from this local address (the one the REGISTER arrived on).
    pub local: SocketAddr,
    /// Route set from the REGISTER's Path (RFC 3327 §5.3), top first.
    pub route: Vec<String>,
    pub binding: Binding,
}

/// The targets for a request from the core. `route_user` is the user part of the edge's own
/// Route entry the proxy removed (Path insertion mode), if any. Highest `q` first (§16.6 uses
/// it for sequential forking; parallel forking sends to all at once). Empty: answer 480
/// Temporarily Unavailable (§10.3, RFC 5627 §5.5 for an unknown GRUU) or, when the Request-URI
/// is not one of ours, route it as usual.
pub fn lookup(
    loc: &Location,
    request_uri: &[u8],
    route_user: Option<&str>,
    now: Instant,
) -> Vec<Target> {
    let Ok(uri) = Uri::parse(request_uri) else {
        return Vec::new();
    };
    let by_token = |token: &str| -> Option<Vec<Binding>> {
        let aor = loc.aor_of_token(token)?;
        Some(
            loc.get(&aor)
                .into_iter()
                .filter(|b| b.token == token)
                .collect(),
        )
    };
    let mut found = uri
        .user
        .and_then(by_token)
        .or_else(|| {
            // Path mode: the Request-URI is the device contact itself.
            let ruri = std::str::from_utf8(request_uri).ok()?;
            let v: Vec<Binding> = by_token(route_user?)?
                .into_iter()
                .filter(|b| b.contact == ruri)
                .collect();
            (!v.is_empty()).then_some(v)
        })
        .unwrap_or_else(|| loc.get(&aor_key(&uri)));
    // A temporary GRUU (`;gr` without a value) is opaque to the edge: the core resolves it.
    if let Some(Some(instance)) = uri.param("gr") {
        let want = clean_instance(&percent_decode(instance));
        found.retain(|b| b.instance.as_deref() == Some(want.as_str()));
    }
    found.retain(|b| b.expires > now);
    found.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
    found
        .into_iter()
        .map(|b| Target {
            request_uri: b.contact.clone(),
            dest: b.dest(),
            local: b.local,
            route: b.path.clone(),
            binding: b,
        })
        .collect()
}

/// `urn:uuid:...` may arrive escaped in a URI parameter (`%3A`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::location::tests::binding;
    use crate::transport::Transport;
    use std::time::Duration;

    fn table(now: Instant) -> Location {
        let loc = Location::new(10);
        let mut a = binding("sip:alice@d", "sip:alice@192.168.1.5:5060", now, 60);
        a.token = "ta".into();
        a.q = Some(500);
        a.instance = Some("urn:uuid:a1".into());
        let mut b = binding("sip:alice@d", "sip:alice@192.168.7.7:5062", now, 60);
        b.token = "tb".into();
        b.transport = Transport::Tcp;
        b.flow = Some(42);
        b.source = "203.0.113.11:40001".parse().unwrap();
        b.path = vec!["<sip:outbound.example;lr>".into()];
        let mut c = binding("sip:alice@d", "sip:alice@10.9.9.9", now, 5);
        c.token = "tc".into();
        loc.upsert(a);
        loc.upsert(b);
        loc.upsert(c);
        loc
    }

    #[test]
    fn aor_forks_to_every_live_binding_by_q() {
        let now = Instant::now();
        let loc = table(now);
        let t = lookup(
            &loc,
            b"sip:alice@D;user=phone",
            None,
            now + Duration::from_secs(10),
        );
        assert_eq!(t.len(), 2, "the expired one is left out");
        assert_eq!(
            t[0].request_uri, "sip:alice@192.168.7.7:5062",
            "q=1 before q=0.5"
        );
        assert_eq!(t[0].dest.flow, Some(42));
        assert_eq!(t[0].dest.addr, "203.0.113.11:40001".parse().unwrap());
        assert_eq!(t[0].route, vec!["<sip:outbound.example;lr>"]);
        assert_eq!(t[1].request_uri, "sip:alice@192.168.1.5:5060");
    }

    #[test]
    fn core_contact_token_reaches_only_its_binding() {
        let now = Instant::now();
        let loc = table(now);
        let t = lookup(&loc, b"sip:ta@10.0.0.1:5060", None, now);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].binding.token, "ta");
        // AoR mode: one token shared by the AoR's bindings → all of them.
        let mut x = binding("sip:bob@d", "sip:bob@1", now, 60);
        x.token = "shared".into();
        let mut y = binding("sip:bob@d", "sip:bob@2", now, 60);
        y.token = "shared".into();
        loc.upsert(x);
        loc.upsert(y);
        assert_eq!(lookup(&loc, b"sip:shared@10.0.0.1", None, now).len(), 2);
    }

    #[test]
    fn path_mode_and_gruu() {
        let now = Instant::now();
        let loc = table(now);
        let t = lookup(&loc, b"sip:alice@192.168.7.7:5062", Some("tb"), now);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].binding.token, "tb");
        let t = lookup(&loc, b"sip:alice@d;gr=urn:uuid:a1", None, now);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].binding.token, "ta");
        assert_eq!(
            lookup(&loc, b"sip:alice@d;gr=urn%3Auuid%3Aa1", None, now).len(),
            1
        );
        assert!(lookup(&loc, b"sip:alice@d;gr=urn:uuid:other", None, now).is_empty());
        assert!(lookup(&loc, b"sip:nobody@d", None, now).is_empty());
        assert!(lookup(&loc, b"not a uri", None, now).is_empty());
    }
}
