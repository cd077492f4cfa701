//! The mid-registrar (issue 4, [`crate::registrar`]) wired into the proxy core. A child module
//! of `proxy::core` so the hooks there stay one-line calls into this file.
//!
//! - REGISTER from the access side: [`Registrar::on_register`] answers it here or forwards it
//!   (rewritten, never Record-Routed, RFC 3261 §10.2) to the core; the core's final answer goes
//!   through [`Registrar::on_core_response`] before it is relayed (§16.7).
//! - A new request from the core side whose Request-URI (or Path Route) names a binding is
//!   forked in parallel to every binding over its own flow (§16.5/§16.6, RFC 5626 §5.3); the
//!   response context CANCELs the others with `Reason: SIP;cause=200;...` (RFC 3326) when one
//!   answers 200. An unknown `sip:<token>@edge` gets 480 (§10.3).
//! - Contact fixing on dialog-forming requests and responses from NATed registered phones.
//! - Timers: expiry and its core updates, keepalives (OPTIONS in a non-INVITE client
//!   transaction, or CRLF / 4-byte datagrams), bindings dead after failed pings.
//! - The shell persists [`Change`]s from [`Proxy::take_registrar_changes`].

use super::*;
use crate::nat;
use crate::registrar::keepalive::{ping_branch, ping_of_branch, Keepalive};
use crate::registrar::lookup::Target;
use crate::registrar::{
    Binding, Change, CoreUpdate, PendingId, RegisterAction, Registrar, RegistrarMetrics,
    ResponseAction,
};
use config::NatPingMethod;
use std::collections::HashMap;

/// Registrar state kept next to the proxy's.
pub(super) struct RegGlue {
    reg: Registrar,
    ka: Keepalive,
    /// Context → the REGISTER it forwards to the core.
    pending: HashMap<u64, PendingId>,
    /// Context → the flow and Path route set of each lookup target (its branch's hop).
    hops: HashMap<u64, Vec<TargetHop>>,
    /// Changes for the shell's store, drained from the registrar after each call.
    changes: Vec<Change>,
    /// NATed bindings' received sources (for Contact fixing), counted per source.
    nated: HashMap<(String, String), SocketAddr>,
    nated_src: HashMap<SocketAddr, usize>,
    /// The core's temporary GRUUs (RFC 5627 §3.2, opaque to anyone but the core, so learnt
    /// from its 200 to REGISTER): user part → (AoR, contact), and back.
    temp_gruu: HashMap<String, (String, String)>,
    temp_gruu_of: HashMap<(String, String), String>,
    /// Next expiry sweep: the sweep walks the whole table, so it runs once a second, not at
    /// every 10 ms tick (expiry is counted in seconds anyway).
    next_sweep: Option<Instant>,
}

/// Period of the expiry sweep.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One lookup target: Request-URI, the binding's flow, and the REGISTER's Path (RFC 3327
/// §5.3: it becomes the branch's Route set).
pub(super) struct TargetHop {
    pub(super) uri: Bytes,
    dest: Dest,
    route: Vec<String>,
    /// The binding registered through a NAT (media policy `nat` anchors calls toward it).
    pub(super) nated: bool,
}

/// What the registrar decided about a new request.
pub(super) struct RegPlan {
    pending: Option<PendingId>,
    /// Lookup targets, one branch each.
    pub(super) hops: Vec<TargetHop>,
}

impl RegGlue {
    /// `edge` is `host:port[;transport=tcp]` as the core reaches the edge.
    pub(super) fn new(cfg: &EdgeConfig, edge: String, metrics: &Metrics) -> Self {
        // A second registration in the same registry (several proxies in one test process)
        // falls back to unregistered handles.
        let m = RegistrarMetrics::register(&metrics.registry)
            .unwrap_or_else(|_| RegistrarMetrics::unregistered());
        let reg = Registrar::new(&cfg.registrar, edge, rand::random(), m.clone());
        let ka = Keepalive::new(&cfg.registrar, reg.location().clone(), rand::random(), m);
        RegGlue {
            reg,
            ka,
            pending: HashMap::new(),
            hops: HashMap::new(),
            changes: Vec::new(),
            nated: HashMap::new(),
            nated_src: HashMap::new(),
            temp_gruu: HashMap::new(),
            temp_gruu_of: HashMap::new(),
            next_sweep: None,
        }
    }

    /// Moves the registrar's changes to our buffer, keeping the NATed-source index and the
    /// keepalive schedule current.
    fn sync(&mut self) {
        for c in self.reg.take_changes() {
            self.ka.on_change(&c);
            match &c {
                Change::Upsert(b) => self.index(b),
                Change::Remove { aor, contact } => self.unindex(aor, contact),
            }
            self.changes.push(c);
        }
    }

    fn index(&mut self, b: &Binding) {
        self.unindex(&b.aor, &b.contact);
        if let Some(user) = temp_gruu_user(&b.gruu_params) {
            let id = (b.aor.clone(), b.contact.clone());
            self.temp_gruu.insert(user.clone(), id.clone());
            self.temp_gruu_of.insert(id, user);
        }
        if b.nated {
            self.nated
                .insert((b.aor.clone(), b.contact.clone()), b.source);
            *self.nated_src.entry(b.source).or_default() += 1;
        }
    }

    fn unindex(&mut self, aor: &str, contact: &str) {
        if let Some(user) = self
            .temp_gruu_of
            .remove(&(aor.to_string(), contact.to_string()))
        {
            self.temp_gruu.remove(&user);
        }
        let Some(src) = self.nated.remove(&(aor.to_string(), contact.to_string())) else {
            return;
        };
        if let Some(n) = self.nated_src.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.nated_src.remove(&src);
            }
        }
    }

    fn is_nated(&self, src: &SocketAddr) -> bool {
        self.nated_src.contains_key(src)
    }
}

/// The user part of the `temp-gruu` the core gave a binding (`;temp-gruu="sip:USER@dom;gr"`
/// in its 200 to REGISTER, kept in [`Binding::gruu_params`]).
fn temp_gruu_user(params: &str) -> Option<String> {
    let at = params.find("temp-gruu=")? + "temp-gruu=".len();
    let value = params.get(at..)?.trim_start_matches('"');
    let value = value.split('"').next()?;
    let uri = Uri::parse(value.as_bytes()).ok()?;
    uri.user.map(str::to_string)
}

/// The `host:port` (with `;transport=tcp` for TCP) at which the core reaches the edge.
pub(super) fn edge_toward_core(locals: &Locals, policy: &Policy, now: Instant) -> String {
    let core = policy.core_dest(now);
    let local = core
        .and_then(|d| locals.for_dest(d.transport, d.addr))
        .or_else(|| locals.for_dest(Transport::Udp, SocketAddr::from(([127, 0, 0, 1], 5060))));
    let hp = local.map_or_else(|| "127.0.0.1:5060".to_string(), |l| locals.host_port(l));
    match core.map(|d| d.transport) {
        Some(Transport::Tcp) => format!("{hp};transport=tcp"),
        _ => hp,
    }
}

impl Proxy {
    /// Bindings read from the store at start-up.
    pub fn registrar_restore(&mut self, bindings: Vec<Binding>) {
        for b in &bindings {
            self.reg.index(b);
            self.reg.ka.on_upsert(b);
        }
        self.reg.reg.restore(bindings);
    }

    /// Location changes since the last call, for the store.
    pub fn take_registrar_changes(&mut self) -> Vec<Change> {
        self.reg.sync();
        std::mem::take(&mut self.reg.changes)
    }

    /// The registrar (location table, metrics).
    pub fn registrar(&self) -> &Registrar {
        &self.reg.reg
    }

    /// Hook for a new request (inside its server transaction). `None`: answered here.
    pub(super) fn reg_request(
        &mut self,
        msg: Message,
        method: &Method,
        side: Side,
        src: &Source,
        server_tx: TxId,
        now: Instant,
    ) -> Option<(Message, RegPlan)> {
        let mut plan = RegPlan {
            pending: None,
            hops: Vec::new(),
        };
        let initial = msg.to().ok().is_some_and(|t| t.tag().is_none());
        if *method == Method::Register && side == Side::Access {
            let action = self.reg.reg.on_register(&msg, *src, now);
            self.reg.sync();
            return match action {
                RegisterAction::Reply { status, bytes } => {
                    tracing::debug!(
                        call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
                        status,
                        "REGISTER answered by the mid-registrar"
                    );
                    self.respond(server_tx, status, bytes, now);
                    None
                }
                RegisterAction::Forward { id, rewrite } => {
                    plan.pending = Some(id);
                    let rewritten = rewrite.to_bytes(&msg);
                    match sip::parse(rewritten, &self.limits) {
                        Ok(m) => Some((m, plan)),
                        Err(_) => {
                            self.reg.reg.on_core_failure(id);
                            self.respond_local(server_tx, &msg, 500, "Server Internal Error", now);
                            None
                        }
                    }
                }
            };
        }
        if side == Side::Access {
            // Contact fixing on dialog-forming requests from NATed phones, registered or not
            // (as Kamailio's fix_nated_contact): otherwise the core's in-dialog requests go to
            // the phone's private address.
            let nated =
                || self.reg.is_nated(&src.remote) || nat::sender(&msg, src.remote.ip()).nated;
            let msg = if initial && is_dialog_forming(Some(method)) && nated() {
                self.fix_contact(msg, src)
            } else {
                msg
            };
            return Some((msg, plan));
        }
        if !initial || matches!(method, Method::Register | Method::Ack | Method::Cancel) {
            return Some((msg, plan));
        }
        let ruri = msg.request_uri().unwrap_or_default();
        let route_user = msg.values(HeaderName::Route).next().and_then(|r| {
            let na = NameAddr::parse(r).ok()?;
            let u = na.uri().ok()?;
            if self.locals.is_us_uri(&u) {
                u.user.map(str::to_string)
            } else {
                None
            }
        });
        let targets: Vec<Target> = self.reg.reg.lookup(ruri, route_user.as_deref(), now);
        if targets.is_empty() {
            let ours =
                Uri::parse(ruri).is_ok_and(|u| u.user.is_some() && self.locals.is_us_uri(&u));
            if ours {
                self.respond_local(server_tx, &msg, 480, "Temporarily Unavailable", now);
                return None;
            }
            return Some((msg, plan));
        }
        plan.hops = targets
            .into_iter()
            .map(|t| TargetHop {
                uri: Bytes::from(t.request_uri),
                dest: t.dest,
                route: t.route,
                nated: t.binding.nated,
            })
            .collect();
        tracing::debug!(
            call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
            method = method.as_str(),
            ruri = %String::from_utf8_lossy(ruri),
            bindings = plan.hops.len(),
            "routed to local bindings"
        );
        Some((msg, plan))
    }

    /// A request from the core whose Request-URI is a GRUU of a local binding (RFC 5627 §5.5:
    /// the core's pub-gruu, `;gr=<instance>`, or its temp-gruu, `;gr` alone) or the contact
    /// the edge registered for it, initial or in-dialog: phones use their GRUU as the dialog's
    /// Contact, so the core's ACK, BYE and re-INVITE carry it (or, from a core that resolves
    /// the GRUU itself, the edge's contact). Returns the binding's contact (the new
    /// Request-URI) and flow.
    pub(super) fn binding_target(
        &self,
        side: Side,
        target: &[u8],
        now: Instant,
    ) -> Option<(Bytes, Dest)> {
        if side != Side::Core {
            return None;
        }
        let uri = Uri::parse(target).ok()?;
        let gr = match uri.param("gr") {
            Some(gr) => gr,
            // The contact the edge registered at the core (`sip:<token>@edge`): a core that
            // resolves GRUUs itself sends in-dialog requests there. In AoR mode the token
            // names every binding of the AoR; an in-dialog request goes to the first (highest
            // q).
            None if uri.user.is_some() && self.locals.is_us_uri(&uri) => {
                let t = self.reg.reg.lookup(target, None, now).into_iter().next()?;
                return Some((Bytes::from(t.request_uri), t.dest));
            }
            None => return None,
        };
        let found = match gr {
            Some(_) => {
                self.reg
                    .reg
                    .lookup(target, None, now)
                    .into_iter()
                    .next()?
                    .binding
            }
            None => {
                let (aor, contact) = self.reg.temp_gruu.get(uri.user?)?;
                self.reg
                    .reg
                    .location()
                    .get(aor)
                    .into_iter()
                    .find(|b| b.contact == *contact && b.expires > now)?
            }
        };
        Some((Bytes::from(found.contact.clone()), found.dest()))
    }

    /// The REGISTER of context `id` (if it is one the registrar forwards) left for the core.
    pub(super) fn reg_sent(&self, id: u64) {
        if self.reg.pending.contains_key(&id) {
            self.reg.reg.sent_to_core();
        }
    }

    /// Remember the plan for context `id`.
    pub(super) fn reg_bind(&mut self, id: u64, plan: RegPlan) {
        if let Some(p) = plan.pending {
            self.reg.pending.insert(id, p);
        }
        if !plan.hops.is_empty() {
            self.reg.hops.insert(id, plan.hops);
        }
    }

    /// Whether any lookup target of context `id` registered through a NAT.
    pub(super) fn reg_hops_nated(&self, id: u64) -> bool {
        self.reg
            .hops
            .get(&id)
            .is_some_and(|v| v.iter().any(|h| h.nated))
    }

    /// The flow of a lookup target, as its branch's hop.
    pub(super) fn reg_hop(&self, id: u64, target: &[u8]) -> Option<Dest> {
        self.reg
            .hops
            .get(&id)?
            .iter()
            .find(|h| h.uri.as_ref() == target)
            .map(|h| h.dest)
    }

    /// A lookup target's branch with the REGISTER's Path as its Route set (RFC 3327 §5.3),
    /// on top of what the forwarded request already carries.
    pub(super) fn reg_route(&self, id: u64, target: &[u8], forwarded: Bytes) -> Bytes {
        let Some(h) = self
            .reg
            .hops
            .get(&id)
            .and_then(|v| v.iter().find(|h| h.uri.as_ref() == target))
            .filter(|h| !h.route.is_empty())
        else {
            return forwarded;
        };
        let Ok(m) = sip::parse(forwarded.clone(), &self.limits) else {
            return forwarded;
        };
        let mut e = sip::Edit::new(&m);
        for r in h.route.iter().rev() {
            e.prepend(HeaderName::Route, r.as_bytes());
        }
        e.finish()
    }

    /// Hook for a response to a proxied request, before §16.7 processing: the core's final
    /// answer to a forwarded REGISTER, and Contact fixing on responses from NATed phones.
    pub(super) fn reg_response(
        &mut self,
        id: u64,
        msg: Message,
        src: &Source,
        now: Instant,
    ) -> Message {
        let status = msg.status().unwrap_or(0);
        if let Some(p) = self.reg.pending.get(&id).copied() {
            let action = self.reg.reg.on_core_response(p, &msg, now);
            if status >= 200 {
                self.reg.pending.remove(&id);
            }
            self.reg.sync();
            return match action {
                ResponseAction::PassThrough => msg,
                ResponseAction::Replace(bytes) => sip::parse(bytes, &self.limits).unwrap_or(msg),
            };
        }
        let dialog = msg
            .cseq()
            .ok()
            .is_some_and(|c| is_dialog_forming(Some(&c.method)));
        if dialog
            && (101..300).contains(&status)
            && self.policy.side(src) == Side::Access
            && (self.reg.is_nated(&src.remote) || nat::sender(&msg, src.remote.ip()).nated)
        {
            return self.fix_contact(msg, src);
        }
        msg
    }

    fn fix_contact(&self, msg: Message, src: &Source) -> Message {
        let mut e = sip::Edit::new(&msg);
        if !nat::fix_contact(&msg, src, &mut e) {
            return msg;
        }
        let bytes = e.finish();
        sip::parse(bytes, &self.limits).unwrap_or(msg)
    }

    /// A branch of context `id` failed without a response (timeout, transport error).
    pub(super) fn reg_branch_failed(&mut self, id: u64) {
        if let Some(p) = self.reg.pending.remove(&id) {
            self.reg.reg.on_core_failure(p);
        }
    }

    /// Context `id` is gone.
    pub(super) fn reg_forget(&mut self, id: u64) {
        self.reg_branch_failed(id);
        self.reg.hops.remove(&id);
    }

    /// A response whose top Via branch is a keepalive's (stateless: no transaction matched).
    /// True when it was one of ours, from where the ping went.
    pub(super) fn reg_ping_answer(&mut self, branch: &str, src: &Source) -> bool {
        let Some(id) = ping_of_branch(branch) else {
            return false;
        };
        if !self.reg.ka.on_answer(id, src.remote) {
            self.metrics.drop("stray_response");
        }
        true
    }

    /// A reloaded `[registrar]` (see [`Registrar::set_config`]).
    pub(super) fn reg_reconfigure(&mut self, cfg: &config::RegistrarConfig) {
        self.reg.reg.set_config(cfg);
    }

    /// The operator removes a binding (`edgectl registrations remove`): as if it had expired —
    /// stored, indexed and the core updated as its mode requires. False when there is none.
    pub fn remove_binding(&mut self, aor: &str, contact: &str, now: Instant) -> bool {
        let Some(b) = self
            .reg
            .reg
            .location()
            .get(aor)
            .into_iter()
            .find(|b| b.contact == contact)
        else {
            return false;
        };
        let ups = self.reg.reg.remove_bindings(&[b]);
        self.reg.sync();
        self.send_core_updates(ups, now);
        tracing::info!(aor, contact, "binding removed by the operator");
        true
    }

    /// When [`Self::reg_tick`] has work next: the expiry sweep or a keepalive.
    pub(super) fn reg_next_due(&self, now: Instant) -> Option<Instant> {
        let sweep = self.reg.next_sweep.unwrap_or(now);
        Some(self.reg.ka.next_due(now).map_or(sweep, |k| k.min(sweep)))
    }

    /// Timers: expiry, keepalives, dead bindings.
    pub(super) fn reg_tick(&mut self, now: Instant) {
        let mut ups = Vec::new();
        if self.reg.next_sweep.is_none_or(|t| now >= t) {
            self.reg.next_sweep = Some(now + SWEEP_EVERY);
            ups = self.reg.reg.on_tick(now);
        }
        let polled = self.reg.ka.poll(now);
        if !polled.dead.is_empty() {
            ups.extend(self.reg.reg.remove_bindings(&polled.dead));
        }
        self.reg.sync();
        for ping in polled.pings {
            let Some(local) = self.locals.for_dest(ping.dest.transport, ping.dest.addr) else {
                continue;
            };
            let hp = self.locals.host_port(local);
            match ping.method {
                NatPingMethod::Options => {
                    // Stateless (no client transaction, no Timer E): sent once; the answer is
                    // matched by the branch, silence counts at the binding's next ping.
                    let from = format!("sip:ping@{hp}");
                    let via = build::via(ping.dest.transport, &hp, &ping_branch(ping.id));
                    let bytes = ping.payload(&via, &from);
                    self.metrics
                        .probes
                        .with_label_values(&[self.probe_kind(&ping.dest)])
                        .inc();
                    self.send(ping.dest, bytes);
                }
                _ => {
                    let bytes = ping.payload("", "");
                    self.send(ping.dest, bytes);
                }
            }
        }
        self.send_core_updates(ups, now);
    }

    fn send_core_updates(&mut self, ups: Vec<CoreUpdate>, now: Instant) {
        for u in ups {
            let Some(core) = self.policy.core_dest(now) else {
                return;
            };
            let tag = self.local_tag();
            self.send_own(core, "REGISTER", now, |via| u.request(via, &tag));
        }
    }

    /// Sends a request of the edge's own in a non-INVITE client transaction.
    pub(super) fn send_own(
        &mut self,
        dest: Dest,
        method: &str,
        now: Instant,
        build: impl FnOnce(&str) -> Bytes,
    ) -> Option<TxId> {
        let local = self.locals.for_dest(dest.transport, dest.addr)?;
        let hp = self.locals.host_port(local);
        let br = self.branches.next(0);
        let bytes = build(&build::via(dest.transport, &hp, &br));
        let key = ClientKey::new(&br, tx::Method::Other(method.into()));
        let mut outs = std::mem::take(&mut self.txout);
        let created = self
            .txs
            .create_client(key, bytes, dest, dest.is_reliable(), now, &mut outs);
        if let Ok(tx) = created {
            // The edge originates OPTIONS only as probes: counted apart from traffic.
            if method == "OPTIONS" {
                self.metrics
                    .probes
                    .with_label_values(&[self.probe_kind(&dest)])
                    .inc();
            } else {
                self.metrics.request(method, "out");
            }
            self.timing
                .start(tx, crate::metrics::method_label(method), now);
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
        created.ok()
    }
}
