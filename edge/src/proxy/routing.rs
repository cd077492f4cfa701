//! §16.4–16.5 routing decision with the trust policy of the access side (issue 8): where a
//! request goes, from its side, dialog state, Route set, Request-URI and the local bindings.
//! The pure Route processing is [`super::super::route`]; the token is [`super::super::route_token`].

use super::*;

impl Proxy {
    /// §16.4 Route processing and the routing policy of the trust boundary: the target
    /// (Request-URI to forward with) and the next hop.
    ///
    /// - An initial request (no To tag) from the access side goes to the core, with its
    ///   Request-URI untouched and every Route removed, whatever it names (the core is the
    ///   carrier's registrar and proxy: a phone provisioned with the edge as outbound proxy
    ///   sends `REGISTER sip:example.test`; a preloaded Route to anywhere else is an attempt
    ///   to use the edge as an open relay).
    /// - An in-dialog request from the access side goes where the edge's own Record-Route
    ///   says — the hop in its integrity token ([`super::route_token`]), i.e. the core of
    ///   the dialog — and only if the token verifies (403 otherwise); without a Route of ours
    ///   (a dialog the edge did not record-route) it goes to the core. Nothing a phone writes
    ///   makes the edge send it anywhere else.
    /// - From the core side (trusted): a remaining Route names the next hop; a GRUU or edge
    ///   contact of a local binding (also in-dialog: phones use their GRUU as dialog Contact)
    ///   goes to that binding's flow; anything else to its Request-URI.
    pub(super) fn route(
        &self,
        msg: &Message,
        side: Side,
        now: Instant,
    ) -> Result<Route, (u16, &'static str)> {
        let ruri = msg.request_uri().unwrap_or_default();
        let routes: Vec<&[u8]> = msg.values(HeaderName::Route).collect();
        let p = route::process(ruri, &routes, |u| self.locals.is_us_uri(u));
        let initial = msg.to().ok().is_some_and(|t| t.tag().is_none());
        let mut target = Bytes::copy_from_slice(p.target);
        let mut core = false;
        let why;
        let core_dest = || {
            self.policy
                .core_dest(now)
                .ok_or((503, "Service Unavailable (no core)"))
        };
        let hop = if side == Side::Access && initial {
            why = "access side to core";
            core = true;
            core_dest()?
        } else if side == Side::Access {
            match self.token_hop(msg, ruri, &routes) {
                Some(Ok(hop)) => {
                    why = "our Record-Route (token verified)";
                    hop
                }
                Some(Err(())) => {
                    self.metrics.security("route_token_invalid");
                    return Err((403, "Forbidden (invalid route)"));
                }
                None => {
                    why = "in-dialog without our Record-Route: to core";
                    core = true;
                    core_dest()?
                }
            }
        } else if let Some(first) = p.remaining.first() {
            why = "next Route";
            let uri = NameAddr::parse(first)
                .ok()
                .and_then(|na| na.uri().ok())
                .ok_or((400, "Bad Request (invalid Route)"))?;
            dest_for(&uri).ok_or((404, "Not Found (unroutable Route)"))?
        } else if let Some((contact, dest)) = self.binding_target(side, &target, now) {
            why = "GRUU or edge contact of a local binding";
            target = contact;
            dest
        } else {
            why = "Request-URI";
            let uri =
                Uri::parse(&target).map_err(|_| (400, "Bad Request (invalid Request-URI)"))?;
            if self.locals.is_us_uri(&uri) {
                return Err((404, "Not Found (Request-URI is the edge itself)"));
            }
            dest_for(&uri).ok_or((404, "Not Found (unresolvable Request-URI)"))?
        };
        tracing::debug!(
            call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
            method = msg.method().map(|m| m.as_str()).unwrap_or(""),
            ?side,
            why,
            strict = p.strict,
            ours = p.ours,
            target = %String::from_utf8_lossy(&target),
            hop = %hop.addr,
            "routed"
        );
        Ok(Route { target, hop, core })
    }

    /// The hop written in the edge's own Record-Route entry of an in-dialog request (the
    /// Request-URI after a strict router, else the first Route): `None` when the request
    /// carries no URI of ours, `Err` when ours is there but its token does not verify for
    /// this dialog (wrong Call-ID or tags, edited hop, forged or missing token).
    pub(super) fn token_hop(
        &self,
        msg: &Message,
        ruri: &[u8],
        routes: &[&[u8]],
    ) -> Option<Result<Dest, ()>> {
        let route_uris = routes
            .iter()
            .filter_map(|r| NameAddr::parse(r).ok().map(|na| na.uri_raw));
        let uri = std::iter::once(ruri)
            .chain(route_uris)
            .filter_map(|raw| Uri::parse(raw).ok())
            .filter(|u| self.locals.is_us_uri(u))
            .find(|u| u.param("etk").is_some() || u.has_lr())?;
        let call_id = msg.call_id().unwrap_or_default();
        let tags = [
            msg.from().ok().and_then(|f| f.tag()),
            msg.to().ok().and_then(|t| t.tag()),
        ];
        let check = || {
            let ftag = uri.param("ftag").flatten()?;
            let hop = uri.param("eh").flatten()?;
            let token = uri.param("etk").flatten()?;
            // The token names the caller's tag: the From tag of requests from the caller, the
            // To tag of requests from the callee.
            let dialog_tag = tags.contains(&Some(ftag));
            (dialog_tag && self.route_key.verify(call_id, ftag, hop, token))
                .then(|| route_token::parse_hop(hop))
                .flatten()
        };
        Some(check().ok_or(()))
    }
}

pub(super) struct Route {
    pub(super) target: Bytes,
    pub(super) hop: Dest,
    /// `hop` was chosen by the core policy.
    pub(super) core: bool,
}

/// Next hop for a URI: IP hosts only (DNS resolution, RFC 3263, is the registrar issue's).
pub(super) fn dest_for(uri: &Uri<'_>) -> Option<Dest> {
    let ip = match uri.host {
        Host::V4(a) => IpAddr::V4(a),
        Host::V6(a) => IpAddr::V6(a),
        Host::Domain(_) => return None,
    };
    let transport = match uri.transport_kind() {
        None | Some(sip::Transport::Udp) => Transport::Udp,
        Some(sip::Transport::Tcp) => Transport::Tcp,
        Some(_) => return None,
    };
    Some(Dest {
        transport,
        addr: SocketAddr::new(ip, uri.port_or_default()),
        flow: None,
    })
}
