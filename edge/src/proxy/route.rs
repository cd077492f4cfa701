//! RFC 3261 §16.4 Route processing, as a pure function of the Request-URI, the Route set and
//! "is this URI us?": which Request-URI the request goes on with and which Route values the edge
//! removes. The routing policy (core or not) is decided on top of it in `core.rs`.
//!
//! Two shapes put the edge's own URI in the Request-URI, and they must not be confused:
//! - **Strict router upstream** (§16.4, §12.2.1.1): a previous hop without `lr` support — or a
//!   phone whose outbound proxy has no `;lr` — moved the edge's URI into the Request-URI and the
//!   real target to the *end* of the Route set. The last Route value becomes the Request-URI
//!   and is removed.
//! - **A request addressed to the edge's domain**: a phone whose AoR is `sip:alice@EDGE`
//!   registers with `REGISTER sip:EDGE` and, with the edge as outbound proxy, also carries
//!   `Route: <sip:EDGE;lr>`. The last Route value is the edge itself, so nothing was moved: the
//!   Request-URI stays, and the edge's Route entry is removed as any loose route of ours.
//!
//! So: strict only when the Request-URI is ours *and* the last Route value is not.

use crate::sip::{NameAddr, Uri};

/// What §16.4 makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed<'a> {
    /// The Request-URI to forward with (the original one unless `strict`).
    pub target: &'a [u8],
    /// The strict-router case applied: the last Route value became `target` and is removed.
    pub strict: bool,
    /// How many leading Route values were ours and are removed (two after double
    /// Record-Route).
    pub ours: usize,
    /// The Route values left, in order (after both removals).
    pub remaining: Vec<&'a [u8]>,
}

/// §16.4 for a request with Request-URI `ruri` and Route values `routes` (top first).
/// `is_us` recognises the edge's own URIs.
pub fn process<'a>(
    ruri: &'a [u8],
    routes: &[&'a [u8]],
    is_us: impl Fn(&Uri<'_>) -> bool,
) -> Processed<'a> {
    let route_is_us = |v: &[u8]| {
        NameAddr::parse(v)
            .ok()
            .and_then(|na| na.uri().ok())
            .is_some_and(|u| is_us(&u))
    };
    let ruri_is_us = Uri::parse(ruri).is_ok_and(|u| is_us(&u));
    let mut rest: Vec<&[u8]> = routes.to_vec();
    let mut target = ruri;
    let mut strict = false;
    if ruri_is_us {
        if let Some(&last) = rest.last() {
            if !route_is_us(last) {
                // Only a URI that parses can become the Request-URI.
                if let Some(na) = NameAddr::parse(last).ok().filter(|na| na.uri().is_ok()) {
                    target = na.uri_raw;
                    strict = true;
                    rest.pop();
                }
            }
        }
    }
    let ours = rest.iter().take_while(|v| route_is_us(v)).count();
    rest.drain(..ours);
    Processed {
        target,
        strict,
        ours,
        remaining: rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Host;

    /// The edge is 192.0.2.10:5060.
    fn us(u: &Uri<'_>) -> bool {
        matches!(u.host, Host::V4(ip) if ip == std::net::Ipv4Addr::new(192, 0, 2, 10))
            && u.port_or_default() == 5060
    }

    fn run<'a>(ruri: &'a str, routes: &[&'a str]) -> Processed<'a> {
        let r: Vec<&[u8]> = routes.iter().map(|s| s.as_bytes()).collect();
        process(ruri.as_bytes(), &r, us)
    }

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    /// (Request-URI, Route set) → (target, strict, ours removed, remaining).
    type Case<'a> = (&'a str, &'a [&'a str], &'a str, bool, usize, &'a [&'a str]);

    #[test]
    fn table() {
        let cases: &[Case] = &[
            // Carrier provisioning: AoR in the carrier's domain, outbound proxy = edge.
            (
                "sip:example.test",
                &["<sip:192.0.2.10;lr>"],
                "sip:example.test",
                false,
                1,
                &[],
            ),
            // AoR = the edge, outbound proxy = the edge: nothing was moved.
            (
                "sip:192.0.2.10:5060",
                &["<sip:192.0.2.10:5060;lr>"],
                "sip:192.0.2.10:5060",
                false,
                1,
                &[],
            ),
            // The same phone with an outbound proxy without ;lr (strict): the UA put the
            // remote target last; it is the edge again.
            (
                "sip:192.0.2.10",
                &["<sip:192.0.2.10>"],
                "sip:192.0.2.10",
                false,
                1,
                &[],
            ),
            // Strict outbound proxy, carrier domain: the target comes back from the end.
            (
                "sip:192.0.2.10",
                &["<sip:bob@example.test>"],
                "sip:bob@example.test",
                true,
                0,
                &[],
            ),
            // Strict router upstream in a dialog: our RR URI in the R-URI, the rest kept.
            (
                "sip:192.0.2.10;lr",
                &["<sip:core.example;lr>", "<sip:bob@198.51.100.7>"],
                "sip:bob@198.51.100.7",
                true,
                0,
                &["<sip:core.example;lr>"],
            ),
            // In-dialog, double Record-Route of ours then the core.
            (
                "sip:alice@198.51.100.7:5062",
                &[
                    "<sip:192.0.2.10;lr>",
                    "<sip:192.0.2.10:5060;transport=tcp;lr>",
                    "<sip:core.example;lr>",
                ],
                "sip:alice@198.51.100.7:5062",
                false,
                2,
                &["<sip:core.example;lr>"],
            ),
            // No Route at all; a preloaded Route that is not ours stays.
            (
                "sip:bob@example.test",
                &[],
                "sip:bob@example.test",
                false,
                0,
                &[],
            ),
            (
                "sip:bob@example.test",
                &["<sip:elsewhere.example;lr>"],
                "sip:bob@example.test",
                false,
                0,
                &["<sip:elsewhere.example;lr>"],
            ),
        ];
        for (ruri, routes, target, strict, ours, remaining) in cases {
            let p = run(ruri, routes);
            let got: Vec<&str> = p.remaining.iter().map(|v| s(v)).collect();
            assert_eq!(
                (s(p.target), p.strict, p.ours, got.as_slice()),
                (*target, *strict, *ours, *remaining),
                "{ruri} {routes:?}"
            );
        }
    }

    /// Fuzz finding (sip_message): a strict router's last Route whose URI does not parse was
    /// taken as the Request-URI of the forwarded request.
    #[test]
    fn fuzz_strict_route_with_unparsable_uri_is_not_the_target() {
        let bad = "<sip\u{19f}ob@198.51.100.7>";
        let p = run("sip:192.0.2.10;lr", &["<sip:core.example;lr>", bad]);
        assert_eq!((s(p.target), p.strict), ("sip:192.0.2.10;lr", false));
        assert_eq!(p.remaining.len(), 2);
    }
}
