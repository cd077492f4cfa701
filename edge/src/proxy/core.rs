//! [`Proxy`]: the RFC 3261 §16 stateful proxy, sans-IO.
//!
//! One type, cut along §16 into files a reader finds by section: `validate.rs` (§16.3 and the
//! stateless early rejects), `routing.rs` (§16.4–16.5 with the access side's trust policy),
//! `forward.rs` (§16.6), `branches.rs` (forking, failover, CANCEL), `responses.rs` (§16.7),
//! `registrar_glue.rs` (the mid-registrar's hooks). This file: the state, the public API and
//! the request entry points.
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
use super::route;
use super::route_token::{self, RouteKey};
use crate::media::{
    BodyAction, CmdId, CommandResult, DialogConfig, MediaDialogs, MediaMetrics, Outcome, Peer,
    RelayRequest,
};
use crate::metrics::Metrics;
use crate::nat::{self, received};
use crate::sip::{self, HeaderName, Host, Limits, Message, Method, NameAddr, Uri};
use crate::transaction::{
    self as tx, ClientKey, ClientState, IdMap, Output, RequestMatch, ResponseMatch, ServerKey,
    TransactionTable, TuEvent, TxId,
};
use crate::transport::{Dest, Source, Transmit, Transport};
use bytes::Bytes;
use config::{EdgeConfig, ForkingMode};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[path = "branches.rs"]
mod branches;
#[path = "ending.rs"]
mod ending;
#[path = "forward.rs"]
mod forward;
#[path = "registrar_glue.rs"]
mod registrar_glue;
#[path = "responses.rs"]
mod responses;
#[path = "routing.rs"]
mod routing;
#[path = "validate.rs"]
mod validate;
use responses::{replace_status, status_of};
use routing::dest_for;
use validate::{log_reject, loop_hash};

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
    /// The last relay command failed (an outage is logged once, at its start and end).
    relay_outage: bool,
    /// Draining: new dialogs and OPTIONS get 503 with this Retry-After (s).
    draining: Option<u32>,
    relay_out: Vec<RelayRequest>,
    parked: IdMap<u64, Parked>,
    /// The sender of the response being processed (for media policy).
    responder: Option<Peer>,
    /// The context and branch of the response being processed.
    responding: Option<(u64, usize)>,
    /// Confirmed anchored dialogs the edge can end with BYE ([`super::calls`]).
    calls: super::calls::Calls,
    /// Start times of client transactions, for the latency histograms.
    timing: super::timing::Timing,
    /// When `edge_core_up` was last published.
    core_up_published: Option<Instant>,
    /// The mid-registrar (issue 4).
    reg: registrar_glue::RegGlue,
    /// Key of the Record-Route integrity token ([`route_token`]).
    route_key: RouteKey,
    /// Live server transactions per access-side source IP, and the source of each.
    per_source: std::collections::HashMap<IpAddr, usize>,
    server_source: IdMap<TxId, IpAddr>,
    max_per_source: usize,
}

/// Longest sleep of the event loop: the per-second gauges and checks run at least this often.
pub const HOUSEKEEPING: Duration = Duration::from_secs(1);

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
            health: Health::new(
                cfg.routing.health_interval_s,
                cfg.routing.health_misses,
                now,
            ),
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
            relay_outage: false,
            draining: None,
            relay_out: Vec::new(),
            parked: IdMap::default(),
            responder: None,
            responding: None,
            calls: Default::default(),
            timing: Default::default(),
            core_up_published: None,
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
        if let Some((call_id, tag)) = r.lost {
            self.end_lost_call(&call_id, &tag, now);
        }
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
            Outcome::Rewrite(body) => {
                if std::mem::take(&mut self.relay_outage) {
                    tracing::info!("media relay answers again");
                }
                Some(body)
            }
            Outcome::Failed(e) => {
                // Once per outage at warn; every failed call is counted in the metrics.
                if std::mem::replace(&mut self.relay_outage, true) {
                    tracing::debug!(error = %e, "media relay failed");
                } else {
                    tracing::warn!(
                        error = %e,
                        reject = self.reject_on_relay_failure,
                        "media relay failed: new calls are {} until it answers again",
                        if self.reject_on_relay_failure {
                            "refused with 503"
                        } else {
                            "forwarded unanchored"
                        }
                    );
                }
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
                        let reason = "Service Unavailable (media relay)";
                        self.media.count_refused("relay_failure");
                        self.refuse_ctx(ctx, 503, reason, now);
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

    /// End context `ctx` before any branch started: answer its request with `status` here.
    fn refuse_ctx(&mut self, ctx: u64, status: u16, reason: &str, now: Instant) {
        let Some(c) = self.contexts.remove(&ctx) else {
            return;
        };
        self.reg_forget(ctx);
        self.server_ctx.remove(&c.server_tx);
        self.respond_local(c.server_tx, &c.request, status, reason, now);
    }

    /// Apply a reloaded configuration's run-time keys ([`crate::reload`]): routing (a new core
    /// set and health probes; transactions in flight keep their destinations), proxy
    /// behaviour, transaction limits, what to do when no relay answers.
    pub fn reconfigure(&mut self, cfg: &EdgeConfig, routing_changed: bool, now: Instant) {
        // Only a new routing section replaces the policy: another reload (a log level) must
        // not forget which cores are down or restart the health probes.
        if routing_changed {
            self.policy = Policy::new(&cfg.routing);
            self.health = Health::new(
                cfg.routing.health_interval_s,
                cfg.routing.health_misses,
                now,
            );
        }
        self.cfg = cfg.proxy.clone();
        self.max_transactions = cfg.limits.max_transactions;
        self.max_per_source = cfg.limits.max_transactions_per_source;
        self.reject_on_relay_failure = cfg.media.on_relay_failure == config::RelayFailure::Reject;
        self.media.set_max_streams(cfg.media.max_streams_per_sdp);
        self.reg_reconfigure(&cfg.registrar);
    }

    /// Core targets and their state, for the operator.
    pub fn core_states(&self, now: Instant) -> Vec<super::policy::CoreState> {
        self.policy.states(now)
    }

    /// The operator takes a core target out of rotation or puts it back.
    pub fn set_core_enabled(&mut self, addr: SocketAddr, enabled: bool, now: Instant) -> bool {
        self.policy.set_enabled(addr, enabled, now)
    }

    /// Whether a drain has started.
    pub fn draining(&self) -> bool {
        self.draining.is_some()
    }

    /// Start draining: from now on new dialog-forming requests and OPTIONS are answered 503
    /// with `Retry-After: retry_after_s`; everything in progress goes on.
    pub fn drain(&mut self, retry_after_s: u32) {
        self.draining = Some(retry_after_s);
    }

    /// What a drain waits for: transactions without their final response yet, and anchored
    /// calls (the dialogs the edge knows of; an unanchored dialog keeps no state here).
    pub fn in_progress(&self) -> (usize, usize) {
        (self.txs.pending(), self.media.dialogs())
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

    /// Proxy contexts alive (requests in progress, INVITEs until their transactions end).
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    /// The latest instant at which [`Self::on_tick`] must run next: the earliest transaction
    /// timer, Timer C, relay or keepalive deadline, health round or expiry sweep, and at most
    /// [`HOUSEKEEPING`] from `now` (per-second gauges). The shell sleeps until then unless a
    /// message comes first: no fixed tick, no idle wake-ups, no timer late by a tick.
    pub fn poll_timeout(&mut self, now: Instant) -> Instant {
        let c = self.timer_c_heap.peek().map(|Reverse((at, _, _))| *at);
        [
            self.txs.next_deadline(),
            c,
            self.media.poll_timeout(),
            self.reg_next_due(now),
            self.health.next_round(),
        ]
        .into_iter()
        .flatten()
        .fold(now + HOUSEKEEPING, Instant::min)
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
        self.publish_core_up(now);
        self.after_event();
    }

    /// `edge_core_up{core}` once a second (a down period also ends by time alone) and
    /// `edge_transactions_limit`.
    fn publish_core_up(&mut self, now: Instant) {
        if self
            .core_up_published
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.core_up_published = Some(now);
        for s in self.policy.states(now) {
            let core = s.dest.addr.to_string();
            self.metrics
                .core_up
                .with_label_values(&[&core])
                .set(i64::from(s.state == "up"));
            // The probe histogram of every core exists before its first probe.
            let _ = self.metrics.probe_rtt.with_label_values(&[&core]);
        }
        self.metrics
            .transactions_limit
            .set(i64::try_from(self.max_transactions).unwrap_or(i64::MAX));
    }

    /// `probe_kind` of an OPTIONS the edge sends to `dest`: a core health probe or a NAT
    /// keepalive to a phone.
    pub(super) fn probe_kind(&self, dest: &Dest) -> &'static str {
        if self.policy.is_core(dest) {
            "core_health"
        } else {
            "nat_keepalive"
        }
    }

    /// Record what a response or timeout of client transaction `tx` says about latency.
    pub(super) fn observe(&mut self, tx: TxId, obs: Option<super::timing::Observation>) {
        use super::timing::Observation;
        match obs {
            Some(Observation::PostDialDelay(d)) => self.metrics.invite_pdd.observe(d.as_secs_f64()),
            Some(Observation::Done {
                method,
                class,
                took,
            }) => {
                if let Some(core) = self.health.probe_dest(tx) {
                    if class != "timeout" {
                        self.metrics
                            .probe_rtt
                            .with_label_values(&[&core.addr.to_string()])
                            .observe(took.as_secs_f64());
                    }
                } else {
                    self.metrics
                        .tx_duration
                        .with_label_values(&[method, class])
                        .observe(took.as_secs_f64());
                }
            }
            None => {}
        }
    }

    /// Sends the OPTIONS health probes that are due (one per core entry per interval); a probe
    /// left unanswered for a whole interval is abandoned, and an entry with
    /// `routing.health_misses` of those in a row is down (see [`health`]).
    fn health_tick(&mut self, now: Instant) {
        let cores = self.policy.core_dests();
        let round = self.health.due(now, &cores);
        if round.probe.is_empty() && round.abandon.is_empty() {
            return;
        }
        let mut outs = std::mem::take(&mut self.txout);
        for tx in round.abandon {
            self.txs.terminate(tx, &mut outs);
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
        for dest in round.dead {
            tracing::warn!(core = %dest.addr, "core target not answering health probes");
            self.core_dead(dest, now);
        }
        for dest in round.probe {
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
                None => {
                    self.policy.mark_down(&dest, now);
                }
            }
        }
    }

    /// Core entry `dest` is dead (probes unanswered): out of rotation, and every request in
    /// flight toward it that has heard nothing back fails as if unreachable, which re-sends it
    /// to the next core entry (RFC 3263 §4.3; a request that got a provisional stays: the core
    /// took it). Without this a request sent just before the core died would wait for Timer
    /// B/F (32 s) and end in 408 although another core is up.
    pub(super) fn core_dead(&mut self, dest: Dest, now: Instant) {
        if self.policy.mark_down(&dest, now) {
            self.metrics.core_down("probe");
        }
        let unanswered: Vec<TxId> = self
            .client_ctx
            .keys()
            .copied()
            .filter(|t| {
                matches!(
                    self.txs.client_state(*t),
                    Some(ClientState::Calling | ClientState::Trying)
                )
            })
            .collect();
        self.fail_toward(unanswered, &dest, now);
    }

    /// The shell could not deliver to `dest` (TCP connect failed): every client transaction
    /// toward it fails (§17.1.4).
    pub fn on_transport_error(&mut self, dest: Dest, now: Instant) {
        if self.policy.mark_down(&dest, now) {
            self.metrics.core_down("unreachable");
        }
        let mut candidates: Vec<TxId> = self.client_ctx.keys().copied().collect();
        candidates.extend(self.health.in_flight_to(dest.addr));
        self.fail_toward(candidates, &dest, now);
        self.after_event();
    }

    fn after_event(&mut self) {
        self.metrics.transactions_active.set(self.txs.len() as i64);
        self.metrics
            .transactions_in_progress
            .set(self.txs.pending() as i64);
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
            (RequestMatch::NoMatch, _) => {
                if !self.calls.is_empty() {
                    // In-dialog CSeq numbers, and BYE, of the calls the edge may end itself.
                    self.calls.on_request(&msg);
                }
                self.on_new_request(msg, method, key, src, now)
            }
        }
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
        // The limit bounds work in progress; a transaction that only absorbs retransmissions
        // costs a few hundred bytes (transaction/tests/memory.rs) and ends by its own timer.
        if self.txs.pending() >= self.max_transactions {
            self.reply_stateless(&msg, &src, 503, "Service Unavailable (transaction limit)");
            return;
        }
        // Draining (SIGTERM): nothing new starts here; a load balancer or SRV client moves on
        // (RFC 3261 §21.5.4 Retry-After). In-dialog requests, CANCEL, ACK and REGISTER go on.
        if let Some(retry) = self.draining {
            let initial = msg.to().ok().is_some_and(|t| t.tag().is_none());
            if method == Method::Options || (initial && is_dialog_forming(Some(&method))) {
                let retry = retry.to_string();
                self.metrics.drop("draining");
                self.reply_stateless_with(
                    &msg,
                    &src,
                    503,
                    "Service Unavailable (draining)",
                    &[("Retry-After", retry.as_bytes())],
                );
                return;
            }
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
        }
        // An access-side in-dialog request is routed now, before any state: a forged route
        // (403) is answered statelessly, and the decision (token verified once) is kept for
        // forwarding below — the registrar step changes nothing for such a request.
        let in_dialog = msg.to().ok().is_some_and(|t| t.tag().is_some());
        let mut early_route = None;
        if !for_us && side == Side::Access && in_dialog {
            match self.route(&msg, side, now) {
                Ok(r) => early_route = Some(r),
                Err((code, reason)) => {
                    self.reply_stateless(&msg, &src, code, reason);
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
            match early_route.map_or_else(|| self.route(&msg, side, now), Ok) {
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
        // Media policy `nat`: a call toward a binding that registered through a NAT is
        // anchored too, not only one from a NATed caller (issue 9).
        let target_nated = self.reg_hops_nated(id);
        let action = media_step(
            &mut self.media,
            &mut self.relay_out,
            &self.contexts[&id].request,
            (&src, side),
            target_nated,
            now,
        );
        match action {
            BodyAction::Refuse { status, reason } => {
                self.media.count_refused("too_many_streams");
                self.refuse_ctx(id, status, reason, now);
            }
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
        // The relay session of a cancelled call is freed (D); a CANCEL has no body to rewrite.
        let side = self.policy.side(&src);
        let _ = media_step(
            &mut self.media,
            &mut self.relay_out,
            &msg,
            (&src, side),
            false,
            now,
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
        if code >= 200 {
            self.release_source(tx);
        }
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

    /// Server transaction `tx` no longer counts against its source's
    /// `limits.max_transactions_per_source`: it has its final response (what it still holds
    /// while waiting out RFC 3261/6026 timers is bounded by the source's request rate), or it
    /// is gone.
    fn release_source(&mut self, tx: TxId) {
        let Some(ip) = self.server_source.remove(&tx) else {
            return;
        };
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
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
                            if self.health.probe_dest(t.tx).is_some() {
                                let kind = self.probe_kind(&t.dest);
                                self.metrics.probes.with_label_values(&[kind]).inc();
                            } else {
                                self.metrics.retransmissions.inc();
                            }
                        }
                        self.out.push(Transmit {
                            dest: t.dest,
                            bytes: t.bytes,
                        });
                    }
                    Output::Tu(TuEvent::Timeout { tx, .. }) => {
                        let obs = self.timing.timeout(tx, now);
                        self.observe(tx, obs);
                        self.branch_failed(tx, 408, "Request Timeout", now, outs)
                    }
                    Output::Tu(TuEvent::TransportError { tx }) => {
                        self.branch_failed(tx, 503, "Service Unavailable", now, outs)
                    }
                    Output::Terminated(tx) => {
                        if let Some(id) = self.server_ctx.get(&tx).copied() {
                            self.reap(id);
                        }
                        self.release_source(tx);
                        self.client_ctx.remove(&tx);
                        self.health.done(tx);
                        self.timing.forget(tx);
                    }
                }
            }
        }
    }
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

/// Media anchoring's view of a request from `src` on `side` (its sender's NAT test included);
/// relay commands are queued in `out` for the shell. Takes the fields, not the proxy, so a
/// request kept in a context can be passed without a copy.
pub(super) fn media_step(
    media: &mut MediaDialogs,
    out: &mut Vec<RelayRequest>,
    msg: &Message,
    (src, side): (&Source, Side),
    target_nated: bool,
    now: Instant,
) -> BodyAction {
    let sender = Peer {
        access: side == Side::Access,
        ..nat::sender(msg, src.remote.ip())
    };
    anchor::step(media, msg, sender, target_nated, now, out)
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

fn is_dialog_forming(m: Option<&Method>) -> bool {
    matches!(
        m,
        Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
    )
}
