//! [`Proxy`]: the RFC 3261 §16 stateful proxy, sans-IO.
//!
//! Input: a received message with its [`Source`] and `now`; or a tick; or a transport error.
//! Output: [`Transmit`]s collected in the proxy and taken by the shell with
//! [`Proxy::take_transmits`]. Requests are processed as §16.3–§16.6 say; each forwarded request
//! runs in a client transaction and its responses are collected by the request's
//! [`ResponseContext`] (§16.7).

use super::anchor::{self, Parked};
use super::branch::{self, BranchGen};
use super::build;
use super::context::{Action, Candidate, ResponseContext};
use super::health::{self, Health};
use super::locals::Locals;
use super::policy::{Policy, Side};
use super::received;
use super::route;
use super::route_token::{self, RouteKey};
use crate::media::{
    BodyAction, CmdId, CommandResult, DialogConfig, MediaDialogs, MediaMetrics, Outcome, Peer,
    RelayRequest,
};
use crate::metrics::Metrics;
use crate::sip::{self, HeaderName, Host, Limits, Message, Method, NameAddr, Uri};
use crate::transaction::{
    self as tx, ClientKey, IdMap, Output, RequestMatch, ResponseMatch, ServerKey, TransactionTable,
    TuEvent, TxId,
};
use crate::transport::{Dest, Source, Transmit, Transport};
use bytes::Bytes;
use config::{EdgeConfig, ForkingMode};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[path = "registrar_glue.rs"]
mod registrar_glue;

/// One branch of a proxied request.
struct BranchInfo {
    /// The request as sent, to build its CANCEL and ACK (parsed again only then).
    request: Bytes,
    dest: Dest,
    tx: Option<TxId>,
    /// The Request-URI it was forwarded with (to re-send it on failover).
    target: Bytes,
    /// The hop was chosen by the core policy: a 503 or transport error may fail over.
    core: bool,
    /// Core entries this branch was sent to, in order (serial failover, RFC 3263 §4.3).
    tried: Vec<Dest>,
    /// A provisional other than 100 was relayed upstream: too late to fail over.
    relayed_1xx: bool,
}

/// One proxied request: its server transaction and its response context.
struct Ctx {
    rc: ResponseContext,
    server_tx: TxId,
    request: Message,
    src: Source,
    branches: Vec<BranchInfo>,
    /// The hop for branches started from the initial target (core, or the next Route).
    first_hop: Option<Dest>,
    /// `first_hop` is a core entry chosen by the policy.
    first_hop_core: bool,
    loop_hash: u64,
}

pub struct Proxy {
    cfg: config::ProxyConfig,
    timer_c: Duration,
    max_transactions: usize,
    limits: Limits,
    locals: Locals,
    /// Our Via sent-by strings, for the loop check's fast path.
    sent_by: Vec<String>,
    policy: Policy,
    /// OPTIONS probes to the core entries (`routing.health_interval_s`).
    health: Health,
    txs: TransactionTable<Dest>,
    branches: BranchGen,
    contexts: IdMap<u64, Ctx>,
    next_ctx: u64,
    server_ctx: IdMap<TxId, u64>,
    client_ctx: IdMap<TxId, (u64, usize)>,
    timer_c_heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    out: Vec<Transmit>,
    txout: Vec<Output<Dest>>,
    metrics: Metrics,
    absorbed_seen: u64,
    /// Media anchoring (issue 5): dialog ↔ relay sessions, commands for the shell, and the
    /// messages parked until the relay answers.
    media: MediaDialogs,
    reject_on_relay_failure: bool,
    relay_out: Vec<RelayRequest>,
    parked: IdMap<u64, Parked>,
    /// The sender of the response being processed (for media policy).
    responder: Option<Peer>,
    /// The mid-registrar (issue 4).
    reg: registrar_glue::RegGlue,
    /// Key of the Record-Route integrity token ([`route_token`]).
    route_key: RouteKey,
    /// Live server transactions per access-side source IP, and the source of each.
    per_source: std::collections::HashMap<IpAddr, usize>,
    server_source: IdMap<TxId, IpAddr>,
    max_per_source: usize,
}

impl Proxy {
    pub fn new(
        cfg: &EdgeConfig,
        listen: Vec<(Transport, SocketAddr)>,
        metrics: Metrics,
        media_metrics: Option<MediaMetrics>,
        now: Instant,
    ) -> Self {
        let locals = Locals::new(listen.clone(), cfg.sip.advertise.clone());
        let policy = Policy::new(&cfg.routing);
        let edge = registrar_glue::edge_toward_core(&locals, &policy, now);
        Proxy {
            reg: registrar_glue::RegGlue::new(cfg, edge, &metrics),
            cfg: cfg.proxy.clone(),
            timer_c: Duration::from_secs(cfg.timers.timer_c_s),
            max_transactions: cfg.limits.max_transactions,
            limits: Limits {
                max_message_bytes: cfg.limits.max_message_bytes,
                max_headers: cfg.limits.max_headers,
            },
            sent_by: listen.iter().map(|(_, a)| locals_hp(a, cfg)).collect(),
            locals,
            policy,
            health: Health::new(cfg.routing.health_interval_s, now),
            txs: TransactionTable::new(tx::Timers::from(&cfg.timers)),
            branches: BranchGen::new(rand::random()),
            contexts: IdMap::default(),
            next_ctx: 0,
            server_ctx: IdMap::default(),
            client_ctx: IdMap::default(),
            timer_c_heap: BinaryHeap::new(),
            out: Vec::new(),
            txout: Vec::new(),
            metrics,
            absorbed_seen: 0,
            media: MediaDialogs::new(DialogConfig::from_config(&cfg.media), media_metrics),
            reject_on_relay_failure: cfg.media.on_relay_failure == config::RelayFailure::Reject,
            relay_out: Vec::new(),
            parked: IdMap::default(),
            responder: None,
            route_key: RouteKey::new(rand::random()),
            per_source: Default::default(),
            server_source: IdMap::default(),
            max_per_source: cfg.limits.max_transactions_per_source,
        }
    }

    /// The Record-Route token key (the shell loads it from `proxy.route_secret_file`, so that
    /// dialogs survive a restart); a random one is used until then.
    pub fn set_route_key(&mut self, key: RouteKey) {
        self.route_key = key;
    }

    /// The `routing.core` entries given as domain names, for the shell to resolve:
    /// (slot, entry).
    pub fn core_domains(&self) -> Vec<(usize, config::CoreDomain)> {
        self.policy.domains()
    }

    /// The shell resolved core entry `slot` (RFC 3263): its targets from now on.
    pub fn set_core_resolved(&mut self, slot: usize, targets: Vec<super::srv::Resolved>) {
        self.policy
            .set_resolved(slot, targets, |n| rand::random_range(0..=n));
    }

    /// What to send, in order.
    pub fn take_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.out)
    }

    /// Relay commands to send; feed each result back with [`Proxy::on_relay_reply`].
    pub fn take_relay_requests(&mut self) -> Vec<RelayRequest> {
        std::mem::take(&mut self.relay_out)
    }

    /// Live media dialogs (for tests and shutdown).
    pub fn media(&self) -> &MediaDialogs {
        &self.media
    }

    /// A relay command finished (reply, error or timeout).
    pub fn on_relay_reply(&mut self, id: CmdId, result: CommandResult, now: Instant) {
        let r = self.media.on_relay_reply(id, result, now);
        self.relay_out.extend(r.send);
        if let Some(done) = r.done {
            if let Some(p) = self.parked.remove(&done.op.0) {
                self.resume(p, done.outcome, now);
            }
        }
        self.after_event();
    }

    /// Continue a parked message with the relay's outcome.
    fn resume(&mut self, p: Parked, outcome: Outcome, now: Instant) {
        let body = match outcome {
            Outcome::Rewrite(body) => Some(body),
            Outcome::Failed(e) => {
                tracing::warn!(error = %e, "media relay failed");
                None
            }
        };
        match p {
            Parked::Request { ctx, acts } => {
                let Some(c) = self.contexts.get_mut(&ctx) else {
                    return;
                };
                match &body {
                    Some(b) => {
                        if let Some(m) = anchor::with_body(&c.request, b, &self.limits) {
                            c.request = m;
                        }
                    }
                    None if self.reject_on_relay_failure => {
                        let (tx, req) = (c.server_tx, c.request.clone());
                        self.contexts.remove(&ctx);
                        self.server_ctx.remove(&tx);
                        self.respond_local(
                            tx,
                            &req,
                            500,
                            "Server Internal Error (media relay)",
                            now,
                        );
                        return;
                    }
                    None => {}
                }
                self.apply(ctx, acts, now);
            }
            Parked::Response { ctx, act } => {
                let act = match (body, act) {
                    (Some(b), Action::Forward(bytes)) => {
                        Action::Forward(anchor::bytes_with_body(&bytes, &b, &self.limits))
                    }
                    (Some(b), Action::Final(Candidate::Received { status, msg })) => {
                        Action::Final(Candidate::Received {
                            status,
                            msg: anchor::bytes_with_body(&msg, &b, &self.limits),
                        })
                    }
                    (_, act) => act,
                };
                self.apply_with(ctx, vec![act], now, true);
            }
            Parked::Stateless { msg, src } => {
                let msg = match body.and_then(|b| anchor::with_body(&msg, &b, &self.limits)) {
                    Some(m) => m,
                    None => *msg,
                };
                self.forward_stateless_now(msg, src, now);
            }
        }
    }

    /// Live transactions (for the gauge and the limit).
    pub fn transactions(&self) -> usize {
        self.txs.len()
    }

    pub fn on_message(&mut self, data: Bytes, src: Source, now: Instant) {
        match sip::parse(data, &self.limits) {
            Ok(msg) if msg.is_request() => self.on_request(msg, src, now),
            Ok(msg) => self.on_response(msg, src, now),
            Err(e) => {
                let kind = match e.kind {
                    sip::ParseErrorKind::TooLarge => "oversize",
                    _ if e.partial().is_some_and(|m| !m.is_request()) => "response",
                    _ if e.can_respond() => "request",
                    _ => "unparseable",
                };
                self.metrics.parse_error(kind);
                if let Some(resp) = e.response(None, Some(&self.local_tag())) {
                    self.metrics.response(e.status_code(), "out");
                    self.send(Dest::back_to(&src), resp);
                }
            }
        }
        self.after_event();
    }

    pub fn on_tick(&mut self, now: Instant) {
        if self.media.poll_timeout().is_some_and(|t| t <= now) {
            let reqs = self.media.on_timer(now);
            self.relay_out.extend(reqs);
        }
        let mut outs = std::mem::take(&mut self.txout);
        self.txs.poll(now, &mut outs);
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
        while let Some(Reverse((at, ctx, b))) = self.timer_c_heap.peek().copied() {
            if at > now {
                break;
            }
            self.timer_c_heap.pop();
            let acts = match self.contexts.get_mut(&ctx) {
                Some(c) => c.rc.on_timer_c(b),
                None => continue,
            };
            self.apply(ctx, acts, now);
        }
        self.reg_tick(now);
        self.health_tick(now);
        self.after_event();
    }

    /// Sends the OPTIONS health probes that are due (one per core entry per interval).
    fn health_tick(&mut self, now: Instant) {
        let cores = self.policy.core_dests();
        for dest in self.health.due(now, &cores) {
            let n = self.health.count();
            let local = self
                .locals
                .for_dest(dest.transport, dest.addr)
                .map(|l| self.locals.host_port(l))
                .unwrap_or_default();
            let tx = self.send_own(dest, "OPTIONS", now, |via| {
                health::options(&dest, via, &local, n)
            });
            match tx {
                Some(t) => self.health.sent(t, dest),
                // No local socket can reach it: as good as unreachable.
                None => self.policy.mark_down(&dest, now),
            }
        }
    }

    /// The shell could not deliver to `dest` (TCP connect failed): every client transaction
    /// toward it fails (§17.1.4).
    pub fn on_transport_error(&mut self, dest: Dest, now: Instant) {
        self.policy.mark_down(&dest, now);
        let mut candidates: Vec<TxId> = self.client_ctx.keys().copied().collect();
        candidates.extend(self.health.in_flight_to(dest.addr));
        self.fail_toward(candidates, &dest, now);
        self.reg_transport_error(&dest, now);
        self.after_event();
    }

    /// The client transactions among `candidates` whose destination is `dest`'s address fail
    /// with a transport error (their owners learn it through the usual outputs).
    fn fail_toward(&mut self, candidates: Vec<TxId>, dest: &Dest, now: Instant) {
        let mut outs = std::mem::take(&mut self.txout);
        for t in candidates {
            if self.txs.dest(t).is_some_and(|d| d.addr == dest.addr) {
                self.txs.on_transport_error(t, &mut outs);
            }
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
    }

    /// Branch `b` of context `id` ends with a response the proxy makes up (timeout, no route).
    fn branch_final_local(
        &mut self,
        id: u64,
        b: usize,
        status: u16,
        reason: &'static str,
        now: Instant,
    ) {
        let acts = match self.contexts.get_mut(&id) {
            Some(c) => {
                c.rc.on_final(b, Candidate::Local { status, reason }, Vec::new())
            }
            None => return,
        };
        self.apply(id, acts, now);
    }

    fn after_event(&mut self) {
        self.metrics.transactions_active.set(self.txs.len() as i64);
        let absorbed = self.txs.stats().absorbed;
        self.metrics
            .absorbed
            .inc_by(absorbed.saturating_sub(self.absorbed_seen));
        self.absorbed_seen = absorbed;
    }

    fn local_tag(&mut self) -> String {
        self.branches.tag()
    }

    fn send(&mut self, dest: Dest, bytes: Bytes) {
        self.out.push(Transmit { dest, bytes });
    }

    /// A response generated here, sent statelessly to the request's source.
    fn reply_stateless(&mut self, req: &Message, src: &Source, code: u16, reason: &str) {
        self.reply_stateless_with(req, src, code, reason, &[]);
    }

    fn reply_stateless_with(
        &mut self,
        req: &Message,
        src: &Source,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        log_reject(req, code, reason);
        let tag = self.local_tag();
        let resp = sip::response_to(req, code, reason, Some(&tag), extra);
        self.metrics.response(code, "out");
        self.send(Dest::back_to(src), resp);
    }

    // ---- requests (§16.3 – §16.6) ----

    fn on_request(&mut self, msg: Message, src: Source, now: Instant) {
        let method = msg.method().cloned().unwrap_or(Method::Other("".into()));
        self.metrics.request(method.as_str(), "in");
        if let Err(e) = msg.validate_request() {
            self.metrics.parse_error("request");
            if let Some(resp) = e.response(Some(&msg), Some(&self.local_tag())) {
                self.metrics.response(e.status_code(), "out");
                self.send(Dest::back_to(&src), resp);
            }
            return;
        }
        let Some(key) = server_key(&msg, &method) else {
            self.metrics.parse_error("request");
            return;
        };
        let mut outs = std::mem::take(&mut self.txout);
        let matched = self.txs.on_request(&key, now, &mut outs);
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
        match (matched, &method) {
            (RequestMatch::Absorbed(_), _) => {}
            // The ACK of a reject the edge sent statelessly (its To tag is ours): it ends here,
            // as the transaction it would have matched would have absorbed it (§17.2.1).
            (_, Method::Ack)
                if msg
                    .to()
                    .ok()
                    .and_then(|t| t.tag())
                    .is_some_and(|t| self.branches.is_local_tag(t)) =>
            {
                self.metrics.drop("ack_of_local_reject");
            }
            (_, Method::Ack) => self.forward_stateless(msg, src, now),
            (RequestMatch::AckToTu(_), _) => {}
            (RequestMatch::NoMatch, Method::Cancel) => self.on_cancel(msg, key, src, now),
            (RequestMatch::NoMatch, _) => self.on_new_request(msg, method, key, src, now),
        }
    }

    /// §16.3 checks shared by stateful and stateless forwarding. Returns the error response.
    fn check(&self, msg: &Message, loop_hash: u64) -> Option<(u16, &'static str)> {
        match msg.max_forwards() {
            Ok(Some(0)) => return Some((483, "Too Many Hops")),
            Err(_) => return Some((400, "Bad Request (invalid Max-Forwards)")),
            _ => {}
        }
        // §16.3 step 4: a Via of ours carrying this request's hash means a loop. Only Vias
        // that mention one of our sent-by strings are parsed.
        let mentions_us = |raw: &[u8]| {
            self.sent_by
                .iter()
                .any(|s| memchr::memmem::find(raw, s.as_bytes()).is_some())
        };
        let looped = msg
            .values(HeaderName::Via)
            .filter(|raw| mentions_us(raw))
            .filter_map(|raw| sip::Via::parse(raw).ok())
            .any(|v| {
                v.branch.is_some_and(|b| branch::is_loop(b, loop_hash))
                    && Host::parse(v.host)
                        .is_some_and(|h| self.locals.is_us(&h, v.sent_by_port_or_default()))
            });
        if looped {
            return Some((482, "Loop Detected"));
        }
        None
    }

    fn on_new_request(
        &mut self,
        msg: Message,
        method: Method,
        key: ServerKey,
        src: Source,
        now: Instant,
    ) {
        // Early rejects are stateless (issue 8): decided before any state is kept, sent once,
        // never retransmitted by Timer G — a spoofed source gets one datagram, not twelve —
        // and no 100 Trying goes out before the request passed them.
        if self.txs.len() >= self.max_transactions {
            self.reply_stateless(&msg, &src, 503, "Service Unavailable (transaction limit)");
            return;
        }
        let loop_hash = loop_hash(&msg);
        let side = self.policy.side(&src);
        let ip = src.remote.ip();
        if side == Side::Access
            && self.per_source.get(&ip).copied().unwrap_or(0) >= self.max_per_source
        {
            self.metrics.security("source_transaction_limit");
            self.reply_stateless(
                &msg,
                &src,
                503,
                "Service Unavailable (too many transactions from this address)",
            );
            return;
        }
        let for_us = self.is_for_us(&msg) && method == Method::Options;
        if !for_us {
            if let Some((code, reason)) = self.check(&msg, loop_hash) {
                self.reply_stateless(&msg, &src, code, reason);
                return;
            }
            if let Some(pr) = msg.header(HeaderName::ProxyRequire) {
                // §16.3 step 5: we support no extension a proxy must understand.
                let pr = pr.to_vec();
                self.reply_stateless_with(
                    &msg,
                    &src,
                    420,
                    "Bad Extension",
                    &[("Unsupported", &pr)],
                );
                return;
            }
            let in_dialog = msg.to().ok().is_some_and(|t| t.tag().is_some());
            if side == Side::Access && in_dialog {
                let ruri = msg.request_uri().unwrap_or_default();
                let routes: Vec<&[u8]> = msg.values(HeaderName::Route).collect();
                if let Some(Err(())) = self.token_hop(&msg, ruri, &routes) {
                    self.metrics.security("route_token_invalid");
                    self.reply_stateless(&msg, &src, 403, "Forbidden (invalid route)");
                    return;
                }
            }
        }
        let Ok(server_tx) =
            self.txs
                .create_server(key, Dest::back_to(&src), src.transport == Transport::Tcp)
        else {
            return;
        };
        if side == Side::Access {
            *self.per_source.entry(ip).or_default() += 1;
            self.server_source.insert(server_tx, ip);
        }
        if for_us {
            self.respond_local(server_tx, &msg, 200, "OK", now);
            return;
        }
        if method == Method::Invite {
            let trying = sip::response_to(&msg, 100, "Trying", None, &[]);
            self.respond(server_tx, 100, trying, now);
        }
        if self.media.anchoring() && anchor::sdp_in_multipart(&msg) {
            // The relay cannot be put in front of an SDP the edge does not rewrite, and an
            // unanchored SDP leaks private addresses and bypasses the relay: refuse it (RFC
            // 3261 §21.4.13 415 with the type we accept).
            let tag = self.local_tag();
            let reason = "Unsupported Media Type (SDP inside multipart)";
            log_reject(&msg, 415, reason);
            let resp = sip::response_to(
                &msg,
                415,
                reason,
                Some(&tag),
                &[("Accept", b"application/sdp")],
            );
            self.respond(server_tx, 415, resp, now);
            return;
        }
        let Some((msg, plan)) = self.reg_request(msg, &method, side, &src, server_tx, now) else {
            return;
        };
        let (targets, first_hop, first_hop_core) = if plan.hops.is_empty() {
            match self.route(&msg, side, now) {
                Ok(r) => (vec![r.target], Some(r.hop), r.core),
                Err((code, reason)) => {
                    self.respond_local(server_tx, &msg, code, reason, now);
                    return;
                }
            }
        } else {
            (
                plan.hops.iter().map(|h| h.uri.clone()).collect(),
                None,
                false,
            )
        };
        let invite = method == Method::Invite;
        let sequential = self.cfg.forking == ForkingMode::Sequential;
        // §16.5: recursing on 3xx is a local policy; without it a 3xx is a final like others.
        let redirects = if self.cfg.recurse_3xx {
            self.cfg.max_redirects
        } else {
            0
        };
        let (rc, acts) = ResponseContext::new(invite, targets, sequential, redirects);
        let id = self.next_ctx;
        self.next_ctx += 1;
        self.reg_bind(id, plan);
        self.server_ctx.insert(server_tx, id);
        self.contexts.insert(
            id,
            Ctx {
                rc,
                server_tx,
                request: msg,
                src,

                branches: Vec::new(),
                first_hop,
                first_hop_core,
                loop_hash,
            },
        );
        let sender = anchor::peer(&self.contexts[&id].request, src.remote.ip());
        let action = anchor::step(
            &mut self.media,
            &self.contexts[&id].request,
            sender,
            false,
            now,
            &mut self.relay_out,
        );
        match action {
            BodyAction::Unchanged => self.apply(id, acts, now),
            BodyAction::Replace(body) => self.resume(
                Parked::Request { ctx: id, acts },
                Outcome::Rewrite(body),
                now,
            ),
            BodyAction::Hold(op) => {
                self.parked.insert(op.0, Parked::Request { ctx: id, acts });
            }
        }
    }

    /// OPTIONS (keepalive pings) addressed to the edge itself: Request-URI is ours, no user part.
    fn is_for_us(&self, msg: &Message) -> bool {
        msg.header(HeaderName::Route).is_none()
            && msg
                .request_uri()
                .and_then(|r| Uri::parse(r).ok())
                .is_some_and(|u| u.user.is_none() && self.locals.is_us_uri(&u))
    }

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
    fn route(&self, msg: &Message, side: Side, now: Instant) -> Result<Route, (u16, &'static str)> {
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
    fn token_hop(&self, msg: &Message, ruri: &[u8], routes: &[&[u8]]) -> Option<Result<Dest, ()>> {
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

    /// Forward without a transaction: ACK for 2xx (§16.11 rules, RFC 6026), and a CANCEL that
    /// matches nothing (§16.10).
    fn forward_stateless(&mut self, msg: Message, src: Source, now: Instant) {
        let sender = anchor::peer(&msg, src.remote.ip());
        match anchor::step(
            &mut self.media,
            &msg,
            sender,
            false,
            now,
            &mut self.relay_out,
        ) {
            BodyAction::Unchanged => self.forward_stateless_now(msg, src, now),
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

    fn forward_stateless_now(&mut self, msg: Message, src: Source, now: Instant) {
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
    fn forwarded(
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

    fn on_cancel(&mut self, msg: Message, key: ServerKey, src: Source, now: Instant) {
        let Some(invite_tx) = self.txs.find_cancelled_invite(&key) else {
            // §16.10: no matching transaction, forward statelessly.
            self.forward_stateless(msg, src, now);
            return;
        };
        // The CANCEL's own transaction, answered 200 at once (§16.10).
        if let Ok(cancel_tx) =
            self.txs
                .create_server(key, Dest::back_to(&src), src.transport == Transport::Tcp)
        {
            self.respond_local(cancel_tx, &msg, 200, "OK", now);
        }
        let sender = anchor::peer(&msg, src.remote.ip());
        // The relay session of a cancelled call is freed (D); a CANCEL has no body to rewrite.
        let _ = anchor::step(
            &mut self.media,
            &msg,
            sender,
            false,
            now,
            &mut self.relay_out,
        );
        let Some(&id) = self.server_ctx.get(&invite_tx) else {
            return;
        };
        let reason = msg.header(HeaderName::Reason).map(Bytes::copy_from_slice);
        let acts = match self.contexts.get_mut(&id) {
            Some(c) => c.rc.on_cancel(reason),
            None => return,
        };
        self.apply(id, acts, now);
    }

    /// Send a response generated here through a server transaction.
    fn respond_local(&mut self, tx: TxId, req: &Message, code: u16, reason: &str, now: Instant) {
        if code >= 300 {
            log_reject(req, code, reason);
        }
        let tag = self.local_tag();
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        if code == 200 && req.method() == Some(&Method::Options) {
            extra.push((
                "Allow",
                b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER, MESSAGE",
            ));
            extra.push(("Accept", b"application/sdp"));
        }
        let resp = sip::response_to(req, code, reason, Some(&tag), &extra);
        self.respond(tx, code, resp, now);
    }

    fn respond(&mut self, tx: TxId, code: u16, bytes: Bytes, now: Instant) {
        let mut outs = std::mem::take(&mut self.txout);
        if self
            .txs
            .send_response(tx, code, bytes, now, &mut outs)
            .is_ok()
            && code > 100
        {
            self.metrics.response(code, "out");
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
    }

    // ---- branches and the response context ----

    fn apply(&mut self, id: u64, acts: Vec<Action>, now: Instant) {
        self.apply_with(id, acts, now, false);
    }

    /// `media_done`: responses in `acts` went through media anchoring already.
    fn apply_with(&mut self, id: u64, acts: Vec<Action>, now: Instant, media_done: bool) {
        for act in acts {
            let act = match act {
                a @ (Action::Forward(_) | Action::Final(_)) if !media_done => {
                    match self.media_upstream(id, a, now) {
                        Some(a) => a,
                        None => continue, // parked until the relay answers
                    }
                }
                a => a,
            };
            match act {
                Action::Forward(bytes) => {
                    let Some(tx) = self.contexts.get(&id).map(|c| c.server_tx) else {
                        continue;
                    };
                    let code = status_of(&bytes);
                    self.respond(tx, code, bytes, now);
                }
                Action::Final(cand) => self.send_final(id, cand, now),
                Action::Cancel(b, reason) => self.cancel_branch(id, b, reason.header(), now),
                Action::Start(target) => self.start_branch(id, target, now),
            }
        }
        self.reap(id);
    }

    /// Media anchoring for a response going upstream. `None`: parked.
    fn media_upstream(&mut self, id: u64, act: Action, now: Instant) -> Option<Action> {
        let ctx = self.contexts.get(&id)?;
        if !matches!(
            ctx.request.method(),
            Some(Method::Invite | Method::Update | Method::Prack)
        ) {
            return Some(act);
        }
        let bytes = match &act {
            Action::Forward(b) => b.clone(),
            Action::Final(Candidate::Received { msg, .. }) => msg.clone(),
            Action::Final(Candidate::Local { status, reason }) => {
                sip::response_to(&ctx.request, *status, reason, None, &[])
            }
            _ => return Some(act),
        };
        let Ok(resp) = sip::parse(bytes, &self.limits) else {
            return Some(act);
        };
        let sender = self.responder.unwrap_or(Peer {
            source: ctx.src.remote.ip(),
            nated: false,
        });
        match anchor::step(
            &mut self.media,
            &resp,
            sender,
            false,
            now,
            &mut self.relay_out,
        ) {
            BodyAction::Unchanged => Some(act),
            BodyAction::Replace(body) => Some(match act {
                Action::Forward(b) => {
                    Action::Forward(anchor::bytes_with_body(&b, &body, &self.limits))
                }
                Action::Final(Candidate::Received { status, msg }) => {
                    Action::Final(Candidate::Received {
                        status,
                        msg: anchor::bytes_with_body(&msg, &body, &self.limits),
                    })
                }
                other => other,
            }),
            BodyAction::Hold(op) => {
                self.parked.insert(op.0, Parked::Response { ctx: id, act });
                None
            }
        }
    }

    fn send_final(&mut self, id: u64, cand: Candidate, now: Instant) {
        let Some(ctx) = self.contexts.get(&id) else {
            return;
        };
        let tx = ctx.server_tx;
        match cand {
            Candidate::Received { status: 503, msg } => {
                // §16.7 step 6: a 503 from downstream is not passed on as 503 (it would make
                // the previous hop think *we* are overloaded).
                let bytes = replace_status(&msg, 500, "Server Internal Error");
                self.respond(tx, 500, bytes, now);
            }
            Candidate::Received { status, msg } => self.respond(tx, status, msg, now),
            Candidate::Local { status, reason } => {
                let req = ctx.request.clone();
                self.respond_local(tx, &req, status, reason, now);
            }
        }
    }

    fn start_branch(&mut self, id: u64, target: Bytes, now: Instant) {
        let reg_hop = self.reg_hop(id, &target);
        let Some(ctx) = self.contexts.get_mut(&id) else {
            return;
        };
        let b = ctx.rc.branch_started();
        // A registered binding goes over its flow; the first target to the hop chosen by
        // routing; recursion targets to their URI.
        let (hop, core) = match reg_hop {
            Some(h) => (Some(h), false),
            None => match ctx.first_hop.take() {
                Some(h) => (Some(h), ctx.first_hop_core),
                None => (Uri::parse(&target).ok().and_then(|u| dest_for(&u)), false),
            },
        };
        let result = match hop {
            Some(hop) => self.send_branch(id, b, target.clone(), hop, core, false, now),
            None => Err((404, "Not Found (unresolvable target)")),
        };
        let Err((code, reason)) = result else {
            return;
        };
        tracing::info!(
            call_id = %self.contexts.get(&id).map(|c| String::from_utf8_lossy(c.request.call_id().unwrap_or_default()).into_owned()).unwrap_or_default(),
            target = %String::from_utf8_lossy(&target),
            code,
            reason,
            "branch not sent"
        );
        let Some(c) = self.contexts.get_mut(&id) else {
            return;
        };
        // Keep `branches` indexed like the response context's branches (CANCEL, failover).
        if c.branches.len() == b {
            c.branches.push(BranchInfo {
                request: Bytes::new(),
                dest: Dest {
                    transport: Transport::Udp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    flow: None,
                },
                tx: None,
                target,
                core: false,
                tried: Vec::new(),
                relayed_1xx: false,
            });
        }
        let cand = Candidate::Local {
            status: code,
            reason,
        };
        let acts = c.rc.on_final(b, cand, Vec::new());
        self.apply(id, acts, now);
    }

    /// Sends branch `b` of context `id` toward `hop` on a new client transaction. With
    /// `failover` the branch already exists (its previous core failed) and is replaced: the
    /// response context never sees the failed attempt.
    #[allow(clippy::too_many_arguments)]
    fn send_branch(
        &mut self,
        id: u64,
        b: usize,
        target: Bytes,
        hop: Dest,
        core: bool,
        failover: bool,
        now: Instant,
    ) -> Result<(), (u16, &'static str)> {
        const CANNOT: (u16, &str) = (500, "Server Internal Error (cannot forward)");
        let ctx = self.contexts.get(&id).ok_or(CANNOT)?;
        let record_route = self.cfg.record_route
            && ctx.request.to().ok().is_some_and(|t| t.tag().is_none())
            && is_dialog_forming(ctx.request.method());
        let br = self.branches.next(ctx.loop_hash);
        let mut hop = hop;
        let mut bytes = self
            .forwarded(&ctx.request, &ctx.src, &target, hop, &br, record_route)
            .ok_or(CANNOT)?;
        if hop.transport == Transport::Udp && bytes.len() > self.cfg.max_udp_request_bytes {
            // RFC 3261 §18.1.1: too large for UDP — a congestion-controlled transport, with the
            // Via saying so, or 513 when the edge has none.
            if !self.locals.has(Transport::Tcp) {
                return Err((513, "Message Too Large (for UDP; no TCP listener)"));
            }
            hop = Dest {
                transport: Transport::Tcp,
                addr: hop.addr,
                flow: None,
            };
            bytes = self
                .forwarded(&ctx.request, &ctx.src, &target, hop, &br, record_route)
                .ok_or(CANNOT)?;
        }
        let bytes = self.reg_route(id, &target, bytes);
        let method = ctx.request.method().cloned().unwrap_or(Method::Invite);
        let key = ClientKey::new(&br, tx_method(&method));
        let mut outs = std::mem::take(&mut self.txout);
        let bytes_sent = bytes.clone();
        let created = self
            .txs
            .create_client(key, bytes, hop, hop.is_reliable(), now, &mut outs);
        let ctx = self.contexts.get_mut(&id).ok_or(CANNOT)?;
        let mut info = BranchInfo {
            request: bytes_sent,
            dest: hop,
            tx: created.as_ref().ok().copied(),
            target,
            core,
            tried: vec![hop],
            relayed_1xx: false,
        };
        match ctx.branches.get_mut(b) {
            Some(old) if failover => {
                info.tried = std::mem::take(&mut old.tried);
                info.tried.push(hop);
                let old_tx = std::mem::replace(old, info).tx;
                if let Some(t) = old_tx {
                    self.client_ctx.remove(&t);
                }
            }
            _ => ctx.branches.push(info),
        }
        if let Ok(t) = created {
            self.client_ctx.insert(t, (id, b));
            self.metrics.request(method.as_str(), "out");
            if !failover {
                self.reg_sent(id);
            }
            // Timer C runs per branch (§16.8): a failover does not restart it.
            if method == Method::Invite && !failover {
                self.timer_c_heap.push(Reverse((now + self.timer_c, id, b)));
            }
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
        Ok(())
    }

    /// Serial failover (RFC 3263 §4.3): branch `b` went to a core entry that answered 503 or
    /// could not be reached; re-send it to the next healthy core entry it has not tried, unless
    /// the caller already has a final answer, cancelled, or saw a provisional from the failed
    /// core. Returns whether the branch was re-sent (its failure is then not reported).
    fn core_failover(&mut self, id: u64, b: usize, now: Instant) -> bool {
        let Some(ctx) = self.contexts.get(&id) else {
            return false;
        };
        let Some(info) = ctx.branches.get(b) else {
            return false;
        };
        if !info.core
            || info.relayed_1xx
            || ctx.rc.final_sent
            || ctx.rc.stopped
            || self.txs.server_state(ctx.server_tx).is_none()
        {
            return false;
        }
        let Some(next) = self.policy.next_core(now, &info.tried) else {
            return false;
        };
        tracing::info!(from = %info.dest.addr, to = %next.addr, "core failover");
        let target = info.target.clone();
        self.metrics.core_failovers.inc();
        self.send_branch(id, b, target, next, true, true, now)
            .is_ok()
    }

    fn cancel_branch(&mut self, id: u64, b: usize, reason: Option<Bytes>, now: Instant) {
        let Some(info) = self.contexts.get(&id).and_then(|c| c.branches.get(b)) else {
            return;
        };
        let Ok(sent) = sip::parse(info.request.clone(), &self.limits) else {
            return;
        };
        let Some(bytes) = build::cancel(&sent, reason.as_deref()) else {
            return;
        };
        let dest = info.dest;
        let Some(br) = sent
            .top_via()
            .ok()
            .and_then(|v| v.branch)
            .map(str::to_owned)
        else {
            return;
        };
        let mut outs = std::mem::take(&mut self.txout);
        let key = ClientKey::new(&br, tx::Method::Cancel);
        if self
            .txs
            .create_client(key, bytes, dest, dest.is_reliable(), now, &mut outs)
            .is_ok()
        {
            self.metrics.request("CANCEL", "out");
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
    }

    /// Drop a context once its search is over and its server transaction is gone.
    fn reap(&mut self, id: u64) {
        let Some(ctx) = self.contexts.get(&id) else {
            return;
        };
        let server_alive = self.txs.server_state(ctx.server_tx).is_some();
        if !server_alive && (ctx.rc.final_sent || ctx.rc.is_finished()) {
            let ctx = self.contexts.remove(&id).expect("present");
            self.reg_forget(id);
            self.server_ctx.remove(&ctx.server_tx);
            for b in ctx.branches {
                if let Some(t) = b.tx {
                    self.client_ctx.remove(&t);
                }
            }
        }
    }

    // ---- responses (§16.7) ----

    fn on_response(&mut self, msg: Message, src: Source, now: Instant) {
        self.responder = Some(anchor::peer(&msg, src.remote.ip()));
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
            // RFC 6026: a response matching no transaction is not forwarded.
            self.metrics.drop("stray_response");
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
                self.policy.mark_down_for(&d, now, retry_after(&msg));
            } else {
                self.policy.mark_up(&d);
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
        let Some((id, b)) = owner else {
            // e.g. the 200 for a CANCEL we sent: ends here (§16.10); or a keepalive's answer;
            // or a health probe's (the core was marked up or, on 503, down above).
            if self.health.done(client).is_some() {
                return;
            }
            self.reg_own_response(client, now);
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
        self.apply(id, acts, now);
    }

    /// The 3xx Contacts to recurse on (§16.5): none from the access side (a phone must not
    /// make the edge call anywhere: its 3xx goes upstream to the core, which decides), at most
    /// `proxy.max_redirect_targets` from the core side.
    fn redirect_targets(&self, msg: &Message, src: &Source) -> Vec<Bytes> {
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

    // ---- transaction layer outputs ----

    fn handle_tx_outputs(&mut self, outs: &mut Vec<Output<Dest>>, now: Instant) {
        // Outputs can produce more outputs (a timeout starts the next branch): loop.
        while !outs.is_empty() {
            let batch: Vec<Output<Dest>> = std::mem::take(outs);
            for o in batch {
                match o {
                    Output::Transmit(t) => {
                        if t.retransmission {
                            self.metrics.retransmissions.inc();
                        }
                        self.out.push(Transmit {
                            dest: t.dest,
                            bytes: t.bytes,
                        });
                    }
                    Output::Tu(TuEvent::Timeout { tx, .. }) => {
                        self.branch_failed(tx, 408, "Request Timeout", now, outs)
                    }
                    Output::Tu(TuEvent::TransportError { tx }) => {
                        self.branch_failed(tx, 503, "Service Unavailable", now, outs)
                    }
                    Output::Terminated(tx) => {
                        if let Some(id) = self.server_ctx.get(&tx).copied() {
                            self.reap(id);
                        }
                        if let Some(ip) = self.server_source.remove(&tx) {
                            if let Some(n) = self.per_source.get_mut(&ip) {
                                *n -= 1;
                                if *n == 0 {
                                    self.per_source.remove(&ip);
                                }
                            }
                        }
                        self.client_ctx.remove(&tx);
                        self.health.done(tx);
                    }
                }
            }
        }
    }

    fn branch_failed(
        &mut self,
        tx: TxId,
        code: u16,
        reason: &'static str,
        now: Instant,
        _outs: &mut Vec<Output<Dest>>,
    ) {
        let Some((id, b)) = self.client_ctx.get(&tx).copied() else {
            if let Some(d) = self.health.done(tx) {
                self.policy.mark_down(&d, now);
                return;
            }
            self.reg_own_failed(tx, now);
            return;
        };
        if let Some(d) = self
            .contexts
            .get(&id)
            .and_then(|c| c.branches.get(b))
            .map(|i| i.dest)
        {
            self.policy.mark_down(&d, now);
        }
        // A transport error is immediate: fail over. A timeout is not (Timer B/F = 64·T1, the
        // caller has given up by then; re-sending would ring a call nobody waits for).
        if code == 503 && self.core_failover(id, b, now) {
            return;
        }
        self.reg_branch_failed(id);
        self.branch_final_local(id, b, code, reason, now);
    }
}

/// Every request the edge answers with an error itself is logged at info with its Call-ID, so
/// an operator can follow a call (`grep CALL-ID`) without a capture.
fn log_reject(req: &Message, code: u16, reason: &str) {
    tracing::info!(
        call_id = %String::from_utf8_lossy(req.call_id().unwrap_or_default()),
        method = req.method().map(|m| m.as_str()).unwrap_or(""),
        ruri = %String::from_utf8_lossy(req.request_uri().unwrap_or_default()),
        code,
        reason,
        "rejected locally"
    );
}

struct Route {
    target: Bytes,
    hop: Dest,
    /// `hop` was chosen by the core policy.
    core: bool,
}

fn server_key(msg: &Message, method: &Method) -> Option<ServerKey> {
    let via = msg.top_via().ok()?;
    let sent_by = match via.port {
        Some(p) => format!("{}:{p}", via.host),
        None => via.host.to_string(),
    };
    Some(ServerKey::new(
        via.branch.unwrap_or(""),
        &sent_by,
        tx_method(method),
    ))
}

fn locals_hp(a: &SocketAddr, cfg: &EdgeConfig) -> String {
    Locals::new(Vec::new(), cfg.sip.advertise.clone()).host_port(*a)
}

fn tx_method(m: &Method) -> tx::Method {
    match m {
        Method::Invite => tx::Method::Invite,
        Method::Ack => tx::Method::Ack,
        Method::Cancel => tx::Method::Cancel,
        other => tx::Method::Other(other.as_str().into()),
    }
}

/// §16.6 step 8 fields.
fn loop_hash(msg: &Message) -> u64 {
    let from_tag = msg.from().ok().and_then(|f| f.tag()).unwrap_or("");
    let to_tag = msg.to().ok().and_then(|t| t.tag()).unwrap_or("");
    let fixed = [
        msg.request_uri().unwrap_or_default(),
        msg.call_id().unwrap_or_default(),
        from_tag.as_bytes(),
        to_tag.as_bytes(),
        msg.header(HeaderName::CSeq).unwrap_or_default(),
        msg.header(HeaderName::ProxyRequire).unwrap_or_default(),
    ];
    branch::loop_hash(fixed.into_iter().chain(msg.values(HeaderName::Route)))
}

fn is_dialog_forming(m: Option<&Method>) -> bool {
    matches!(
        m,
        Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
    )
}

/// Next hop for a URI: IP hosts only (DNS resolution, RFC 3263, is the registrar issue's).
fn dest_for(uri: &Uri<'_>) -> Option<Dest> {
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

/// How long a core that answered 503 stays out of rotation: its Retry-After seconds (RFC 3261
/// §20.33; comment and parameters ignored), else [`super::policy::DOWN_FOR`].
fn retry_after(msg: &Message) -> Duration {
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
        _ => super::policy::DOWN_FOR,
    }
}

fn status_of(resp: &[u8]) -> u16 {
    resp.get(8..11)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The same response with another status line.
fn replace_status(resp: &[u8], code: u16, reason: &str) -> Bytes {
    let rest = memchr::memmem::find(resp, b"\r\n").map_or(&resp[..0], |i| &resp[i..]);
    let mut out = Vec::with_capacity(resp.len());
    out.extend_from_slice(format!("SIP/2.0 {code} {reason}").as_bytes());
    out.extend_from_slice(rest);
    Bytes::from(out)
}
