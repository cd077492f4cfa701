//! §16.7 responses: source check, core health, failover on 503, redirects, Contact fixing,
//! then the response context.

use super::*;

impl Proxy {
    pub(super) fn on_response(&mut self, msg: Message, src: Source, now: Instant) {
        self.responder = Some(Peer {
            access: self.policy.side(&src) == Side::Access,
            ..nat::sender(&msg, src.remote.ip())
        });
        let status = msg.status().unwrap_or(0);
        self.metrics.response(status, "in");
        let (Ok(via), Ok(cseq)) = (msg.top_via(), msg.cseq()) else {
            self.metrics.parse_error("response");
            return;
        };
        let Some(br) = via.branch else {
            self.metrics.drop("stray_response");
            return;
        };
        let key = ClientKey::new(br, tx_method(&cseq.method));
        let Some(client) = self.txs.find_client(&key) else {
            // A keepalive's answer (pings are stateless), or a stray: RFC 6026, a response
            // matching no transaction is not forwarded.
            if !self.reg_ping_answer(br, &src) {
                self.metrics.drop("stray_response");
            }
            return;
        };
        let owner = self.client_ctx.get(&client).copied();
        // A response counts only from where its request went (the address, or the TCP flow):
        // anyone can guess a branch and send a 200 from elsewhere (a forged registrar OK, a
        // fake answer to a call).
        if let Some(d) = self.txs.dest(client) {
            let same_flow = d.flow.is_some() && d.flow == src.flow;
            if d.addr != src.remote && !same_flow {
                self.metrics.security("response_wrong_source");
                tracing::debug!(
                    from = %src.remote,
                    expected = %d.addr,
                    status,
                    "response from another address than its request went to: dropped"
                );
                return;
            }
        }
        if let Some(d) = self.txs.dest(client).copied() {
            if status == 503 {
                // RFC 3263 §4.3 / RFC 3261 §21.5.4: the core is overloaded or down; §16.7 step
                // 6 makes proxies turn a downstream 503 into 500, so a 503 is the core's own.
                if self.policy.mark_down_for(&d, now, retry_after(&msg)) {
                    self.metrics.core_down("overload");
                }
            } else {
                self.policy.mark_up(&d, now);
            }
        }
        let ack = owner.and_then(|(id, b)| {
            let req = &self.contexts.get(&id)?.branches.get(b)?.request;
            Some((
                req.clone(),
                msg.header(HeaderName::To).map(Bytes::copy_from_slice)?,
            ))
        });
        let mut outs = std::mem::take(&mut self.txout);
        let limits = &self.limits;
        let m = self.txs.on_response(&key, status, now, &mut outs, || {
            let (req, to) = ack?;
            build::ack(&sip::parse(req, limits).ok()?, &to)
        });
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
        let ResponseMatch::ToTu(_) = m else {
            return;
        };
        let obs = self.timing.response(client, status, now);
        self.observe(client, obs);
        let Some((id, b)) = owner else {
            // e.g. the 200 for a CANCEL we sent: ends here (§16.10); or a keepalive's answer;
            // or a health probe's (the core was marked up or, on 503, down above).
            self.health.answered(client);
            return;
        };
        if (101..200).contains(&status) {
            if let Some(info) = self
                .contexts
                .get_mut(&id)
                .and_then(|c| c.branches.get_mut(b))
            {
                info.relayed_1xx = true;
            }
        }
        if status == 503 && self.core_failover(id, b, now) {
            return;
        }
        let msg = self.reg_response(id, msg, &src, now);
        // §16.7 step 3: remove our Via.
        let mut e = sip::Edit::new(&msg);
        e.remove_first_value(HeaderName::Via);
        let upstream = e.finish();
        let mut redirects = (300..400)
            .contains(&status)
            .then(|| self.redirect_targets(&msg, &src));
        let acts = {
            let Some(ctx) = self.contexts.get_mut(&id) else {
                return;
            };
            if status < 200 {
                ctx.rc.on_provisional(b, status, upstream)
            } else {
                let contacts = redirects.take().unwrap_or_default();
                ctx.rc.on_final(
                    b,
                    Candidate::Received {
                        status,
                        msg: upstream,
                    },
                    contacts,
                )
            }
        };
        self.responding = Some((id, b));
        self.apply(id, acts, now);
        self.responding = None;
    }

    /// The 3xx Contacts to recurse on (§16.5): none from the access side (a phone must not
    /// make the edge call anywhere: its 3xx goes upstream to the core, which decides), at most
    /// `proxy.max_redirect_targets` from the core side.
    pub(super) fn redirect_targets(&self, msg: &Message, src: &Source) -> Vec<Bytes> {
        let all: Vec<Bytes> = msg
            .values(HeaderName::Contact)
            .filter_map(|v| NameAddr::parse(v).ok())
            .map(|na| Bytes::copy_from_slice(na.uri_raw))
            .collect();
        if all.is_empty() {
            return all;
        }
        if self.policy.side(src) == Side::Access {
            self.metrics.security("access_redirect_not_followed");
            return Vec::new();
        }
        let cap = self.cfg.max_redirect_targets;
        if all.len() > cap {
            self.metrics.security("redirect_targets_capped");
            tracing::info!(
                call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
                contacts = all.len(),
                followed = cap,
                "3xx with too many Contacts: the rest ignored"
            );
        }
        all.into_iter().take(cap).collect()
    }
}

/// How long a core that answered 503 stays out of rotation: its Retry-After seconds (RFC 3261
/// §20.33; comment and parameters ignored), else [`super::policy::DOWN_FOR`].
pub(super) fn retry_after(msg: &Message) -> Duration {
    let secs = msg.header(HeaderName::RetryAfter).and_then(|v| {
        let v = v.trim_ascii();
        let digits: &[u8] = v
            .iter()
            .position(|c| !c.is_ascii_digit())
            .map_or(v, |n| v.get(..n).unwrap_or_default());
        std::str::from_utf8(digits).ok()?.parse::<u64>().ok()
    });
    match secs {
        Some(s) if s > 0 => Duration::from_secs(s),
        _ => crate::proxy::policy::DOWN_FOR,
    }
}

pub(super) fn status_of(resp: &[u8]) -> u16 {
    resp.get(8..11)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The same response with another status line.
pub(super) fn replace_status(resp: &[u8], code: u16, reason: &str) -> Bytes {
    let rest = memchr::memmem::find(resp, b"\r\n").map_or(&resp[..0], |i| &resp[i..]);
    let mut out = Vec::with_capacity(resp.len());
    out.extend_from_slice(format!("SIP/2.0 {code} {reason}").as_bytes());
    out.extend_from_slice(rest);
    Bytes::from(out)
}
