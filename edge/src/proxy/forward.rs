//! §16.6 the forwarded copy (Request-URI, Max-Forwards, Route, Record-Route with its token,
//! identity headers, Via) and stateless forwarding (ACK for 2xx, unmatched CANCEL).

use super::*;

impl Proxy {
    /// Forward without a transaction: ACK for 2xx (§16.11 rules, RFC 6026), and a CANCEL that
    /// matches nothing (§16.10).
    pub(super) fn forward_stateless(&mut self, msg: Message, src: Source, now: Instant) {
        let side = self.policy.side(&src);
        match media_step(
            &mut self.media,
            &mut self.relay_out,
            &msg,
            (&src, side),
            false,
            now,
        ) {
            // An ACK or stray CANCEL cannot be answered: its SDP answers an offer that was
            // already limited, so it goes on as it is.
            BodyAction::Unchanged | BodyAction::Refuse { .. } => {
                self.forward_stateless_now(msg, src, now)
            }
            BodyAction::Replace(body) => {
                let msg = anchor::with_body(&msg, &body, &self.limits).unwrap_or(msg);
                self.forward_stateless_now(msg, src, now);
            }
            BodyAction::Hold(op) => {
                let msg = Box::new(msg);
                self.parked.insert(op.0, Parked::Stateless { msg, src });
            }
        }
    }

    pub(super) fn forward_stateless_now(&mut self, msg: Message, src: Source, now: Instant) {
        let lh = loop_hash(&msg);
        if self.check(&msg, lh).is_some() {
            self.metrics.drop("stateless_check");
            return;
        }
        let side = self.policy.side(&src);
        let Ok(route) = self.route(&msg, side, now) else {
            self.metrics.drop("no_route");
            return;
        };
        let incoming = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch)
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
        let br = branch::derived(&incoming, lh);
        if let Some(bytes) = self.forwarded(&msg, &src, &route.target, route.hop, &br, false) {
            if let Some(m) = msg.method() {
                self.metrics.request(m.as_str(), "out");
            }
            self.send(route.hop, bytes);
        }
    }

    /// The forwarded copy (§16.6 steps 1–8): Request-URI, Max-Forwards, Route, Record-Route,
    /// received/rport on the previous Via, then our Via.
    pub(super) fn forwarded(
        &self,
        msg: &Message,
        src: &Source,
        target: &[u8],
        hop: Dest,
        branch: &str,
        record_route: bool,
    ) -> Option<Bytes> {
        let mut e = sip::Edit::new(msg);
        let ruri = msg.request_uri()?;
        let out_local = self.locals.for_dest(hop.transport, hop.addr)?;
        let out_hp = self.locals.host_port(out_local);
        // Route: drop ours (and for strict routers, the last entry that became the R-URI).
        let routes: Vec<&[u8]> = msg.values(HeaderName::Route).collect();
        let p = route::process(ruri, &routes, |u| self.locals.is_us_uri(u));
        let side = self.policy.side(src);
        let initial = msg.to().ok().is_some_and(|t| t.tag().is_none());
        if side == Side::Access {
            // Identity is the core's to assert, never a phone's.
            for h in &self.cfg.strip_identity_headers {
                if msg.header(h.as_str()).is_some() {
                    e.remove_all(h.as_str());
                    self.metrics.security("identity_header_removed");
                }
            }
        }
        if side == Side::Access && initial {
            // Goes to the core: a preloaded Route that is not ours is dropped, not followed.
            if !p.remaining.is_empty() {
                self.metrics.security("preloaded_route_removed");
                tracing::debug!(
                    call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
                    routes = p.remaining.len(),
                    "preloaded Route from the access side removed"
                );
            }
            e.remove_all(HeaderName::Route);
        } else if p.strict {
            e.remove_all(HeaderName::Route);
            for v in p.remaining.iter().rev() {
                e.prepend(HeaderName::Route, v);
            }
        } else {
            for _ in 0..p.ours {
                e.remove_first_value(HeaderName::Route);
            }
        }
        if target != ruri {
            e.set_request_uri(target);
        }
        let mf = match msg.max_forwards() {
            Ok(Some(n)) => n.saturating_sub(1),
            _ => self.cfg.default_max_forwards,
        };
        e.set_max_forwards(mf);
        if record_route {
            // The integrity token: where the access side's in-dialog requests must go (the
            // core this request goes to, or the core it came from).
            let access_hop = if side == Side::Access {
                hop
            } else {
                Dest {
                    transport: src.transport,
                    addr: src.remote,
                    flow: None,
                }
            };
            let ftag = msg.from().ok().and_then(|f| f.tag()).unwrap_or("");
            let eh = route_token::hop_param(&access_hop);
            let etk = self
                .route_key
                .token(msg.call_id().unwrap_or_default(), ftag, &eh);
            let params = format!(";ftag={ftag};eh={eh};etk={etk}");
            let in_hp = self.locals.host_port(src.local);
            // Double Record-Route when the two sides use different transports or interfaces,
            // so each side sees an address it can reach (RFC 5658).
            if in_hp != out_hp || src.transport != hop.transport {
                e.prepend(
                    HeaderName::RecordRoute,
                    build::record_route(src.transport, &in_hp, &params).as_bytes(),
                );
            }
            e.prepend(
                HeaderName::RecordRoute,
                build::record_route(hop.transport, &out_hp, &params).as_bytes(),
            );
        }
        let top = msg.values(HeaderName::Via).next()?;
        let via = msg.top_via().ok()?;
        if let Some(stamped) = received::stamp(top, &via, src.remote) {
            e.replace_first_value(HeaderName::Via, &stamped);
        }
        e.prepend(
            HeaderName::Via,
            build::via(hop.transport, &out_hp, branch).as_bytes(),
        );
        Some(e.finish())
    }
}
