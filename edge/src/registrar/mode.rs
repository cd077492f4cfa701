//! The mid-registrar's decision for each REGISTER from the access side, and what the core's
//! answer changes: [`Registrar::on_register`] and [`Registrar::on_core_response`].
//!
//! Modes (config `registrar.mode`, per-domain override):
//! - **mirror**: every REGISTER goes to the core; its Contacts are rewritten to
//!   `sip:<token>@<edge>` (or a `Path: <sip:<token>@<edge>;lr>` is added, RFC 3327), and the
//!   local binding takes the expiry the core granted.
//! - **contact** throttling: each contact is registered at the core with `outgoing_expires`
//!   (lowered by a random deviation); refreshes are answered here while the core binding
//!   outlives the refreshed local one; de-registrations go to the core at once.
//! - **aor** throttling: the core sees one contact per AoR (`sip:<token>@<edge>`). New devices
//!   still go to the core (as a refresh of that one contact) so the core authenticates them; the
//!   core contact is removed only when the last device goes.
//!
//! **Authentication safety.** A REGISTER is answered locally only when it refreshes (or, in AoR
//! mode, removes one of several) bindings the core accepted, arrives on the same flow
//! (transport + source ip:port, RFC 5626 §3) with the same Call-ID, and has a higher CSeq
//! (RFC 3261 §10.3 step 7). Anything else — a new device, a new Call-ID, another flow, a retry
//! carrying Authorization/Proxy-Authorization — goes to the core, whose 401/407 passes through
//! untouched. A binding is saved only on the core's 2xx. A hijacker who knows a Call-ID still
//! needs the victim's flow, which it cannot spoof on TCP and can only spoof blindly on UDP.

use super::contact::{
    aor_domain, expires_header, has_credentials, register_aor, register_contacts, ContactSpec,
    Contacts, RegisterError,
};
use super::core_update::CoreUpdate;
use super::location::{token_of, Binding, Location, Upsert};
use super::metrics::RegistrarMetrics;
use crate::nat;
use crate::sip::{response_to, Edit, HeaderName, Message, NameAddr, Uri};
use crate::transport::Source;
use bytes::Bytes;
use config::{DomainPolicy, InsertionMode, RegistrarConfig, RegistrarMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod core_reply;
mod expiry;
mod forward;

/// Identifies a REGISTER forwarded to the core, until its final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingId(pub u64);

/// What to do with a REGISTER from the access side.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterAction {
    /// Answer it here: send `bytes` (a complete response) back over the request's flow.
    Reply { status: u16, bytes: Bytes },
    /// Forward it to the core after applying `rewrite`; report the core's responses with
    /// [`Registrar::on_core_response`] under `id`.
    Forward { id: PendingId, rewrite: Rewrite },
}

/// Header changes on a REGISTER forwarded to the core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Replace every Contact field with these values (one field each).
    pub contacts: Option<Vec<String>>,
    /// Add this Path value on top (RFC 3327 §5.2).
    pub path: Option<String>,
    /// Remove the Expires header (the expires travel in the Contact parameters instead).
    pub remove_expires: bool,
}

impl Rewrite {
    /// Applies the changes to the proxy's edit of the request.
    pub fn apply(&self, e: &mut Edit<'_>) {
        if let Some(cs) = &self.contacts {
            e.remove_all(HeaderName::Contact);
            for c in cs {
                e.append(HeaderName::Contact, c.as_bytes());
            }
        }
        if let Some(p) = &self.path {
            e.prepend(HeaderName::Path, p.as_bytes());
        }
        if self.remove_expires {
            e.remove_all(HeaderName::Expires);
        }
    }

    /// The rewritten request as bytes (when the caller has no edit of its own).
    pub fn to_bytes(&self, req: &Message) -> Bytes {
        let mut e = Edit::new(req);
        self.apply(&mut e);
        e.finish()
    }
}

/// What to do with a response of the core to a forwarded REGISTER.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseAction {
    /// Relay the response unchanged (provisional, challenge, failure).
    PassThrough,
    /// Relay these bytes instead: the core's 2xx with the device's own Contacts (§10.3 step 8)
    /// in place of the edge's. Vias are untouched, so §16.7 processing applies as usual.
    Replace(Bytes),
}

/// A change of the location table, for the persistence log.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert(Box<Binding>),
    Remove { aor: String, contact: String },
}

/// One Contact of a forwarded REGISTER.
#[derive(Debug, Clone)]
struct PendingContact {
    spec: ContactSpec,
    /// Expires the device asked for after min/max (0: remove).
    local_expires: u32,
    token: String,
    core_contact: String,
    /// What the edge asked of the core for this contact.
    core_expires_sent: u32,
}

#[derive(Debug, Clone)]
enum PendingOp {
    Query,
    Star,
    Contacts(Vec<PendingContact>),
}

#[derive(Debug, Clone)]
struct Pending {
    aor: String,
    policy: DomainPolicy,
    src: Source,
    call_id: String,
    cseq: u32,
    path: Vec<String>,
    user_agent: Option<String>,
    nated: bool,
    /// RFC 5626 §6: the REGISTER asked for outbound (reg-id + instance + Supported: outbound).
    outbound: bool,
    op: PendingOp,
    created: Instant,
}

/// A pending entry without a final response is dropped after this (well beyond Timer F,
/// 64·T1 = 32 s, RFC 3261 §17.1.2.2).
const PENDING_TTL: Duration = Duration::from_secs(64);

/// How long before the core binding would end a refresh goes to the core instead of being
/// absorbed (Timer F, 64·T1 = 32 s: one forwarded REGISTER with a challenge fits).
const REFRESH_SLACK: Duration = Duration::from_secs(32);

/// The mid-registrar: location table plus the decisions of the three modes. Sans-IO.
pub struct Registrar {
    cfg: RegistrarConfig,
    /// `host:port[;params]` of the edge as the core reaches it.
    edge: String,
    loc: Arc<Location>,
    pending: HashMap<PendingId, Pending>,
    next_id: u64,
    rng: StdRng,
    changes: Vec<Change>,
    metrics: RegistrarMetrics,
}

impl Registrar {
    /// `edge` is the `host:port` (optionally followed by URI parameters such as
    /// `;transport=tcp`) at which the core reaches the edge; it goes into core contacts and
    /// Path. `seed` seeds tokens, tags and the expires deviation (fixed in tests).
    /// A reloaded configuration: modes (global and per domain), expiry policy and binding
    /// limits apply to the next REGISTER; bindings keep what they were saved with. (The
    /// location's per-AoR limit, keepalives and the store are fixed at start.)
    pub fn set_config(&mut self, cfg: &RegistrarConfig) {
        let keep = self.cfg.max_contacts_per_aor;
        self.cfg = cfg.clone();
        self.cfg.max_contacts_per_aor = keep;
    }

    pub fn new(cfg: &RegistrarConfig, edge: String, seed: u64, metrics: RegistrarMetrics) -> Self {
        Registrar {
            cfg: cfg.clone(),
            edge,
            loc: Arc::new(Location::new(cfg.max_contacts_per_aor)),
            pending: HashMap::new(),
            next_id: 1,
            rng: StdRng::seed_from_u64(seed),
            changes: Vec::new(),
            metrics,
        }
    }

    /// The location table (shared with lookups and the keepalive scheduler).
    pub fn location(&self) -> &Arc<Location> {
        &self.loc
    }

    pub fn metrics(&self) -> &RegistrarMetrics {
        &self.metrics
    }

    /// Changes since the last call, in order, for [`super::persist::Store::append`].
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Loads bindings read from the store at start (not journalled again).
    pub fn restore(&mut self, bindings: Vec<Binding>) {
        for b in bindings {
            self.loc.upsert(b);
        }
        self.metrics.bindings.set(self.loc.len() as i64);
    }

    /// Targets for a request from the core (see [`super::lookup::lookup`]).
    pub fn lookup(
        &self,
        request_uri: &[u8],
        route_user: Option<&str>,
        now: Instant,
    ) -> Vec<super::lookup::Target> {
        super::lookup::lookup(&self.loc, request_uri, route_user, now)
    }

    /// Forwarded REGISTERs still waiting for the core.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Decides what to do with a REGISTER received from the access side on `src`.
    pub fn on_register(&mut self, req: &Message, src: Source, now: Instant) -> RegisterAction {
        match self.decide(req, src, now) {
            Ok(a) => a,
            Err(e) => self.reject(req, 400, &e.to_string(), &[]),
        }
    }

    fn decide(
        &mut self,
        req: &Message,
        src: Source,
        now: Instant,
    ) -> Result<RegisterAction, RegisterError> {
        let aor = register_aor(req)?;
        let call_id = req
            .call_id()
            .and_then(|c| std::str::from_utf8(c).ok())
            .filter(|c| !c.is_empty())
            .ok_or(RegisterError::CallId)?
            .to_string();
        let cseq = req.cseq().map_err(|_| RegisterError::CSeq)?.seq;
        let hdr_expires = expires_header(req);
        let contacts = register_contacts(req)?;
        let policy = self.cfg.policy_for(aor_domain(&aor));
        let mut p = Pending {
            aor,
            policy,
            src,
            call_id,
            cseq,
            path: req
                .values(HeaderName::Path)
                .filter_map(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
                .collect(),
            user_agent: req
                .header(HeaderName::UserAgent)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string),
            nated: nat::register_is_nated(req, &src),
            outbound: false,
            op: PendingOp::Query,
            created: now,
        };
        let specs = match contacts {
            Contacts::Query => return Ok(self.forward(p, Rewrite::default())),
            Contacts::Star => {
                p.op = PendingOp::Star;
                return Ok(self.forward(p, Rewrite::default()));
            }
            Contacts::List(l) => l,
        };
        p.outbound = supports_outbound(req)
            && specs
                .iter()
                .any(|s| s.reg_id.is_some() && s.instance.is_some());
        // §10.3 step 6: a contact parameter wins over the Expires header, then the default;
        // too short is 423 (§21.4.17), too long is lowered.
        let mut locals = Vec::with_capacity(specs.len());
        for s in &specs {
            let e = s
                .expires
                .or(hdr_expires)
                .unwrap_or(self.cfg.default_expires);
            if e != 0 && e < self.cfg.min_expires {
                let min = self.cfg.min_expires.to_string();
                return Ok(self.reject(
                    req,
                    423,
                    "Interval Too Brief",
                    &[("Min-Expires", min.as_bytes())],
                ));
            }
            locals.push(e.min(self.cfg.max_expires));
        }
        // Expired but not yet swept bindings count for nothing.
        let existing: Vec<Binding> = self
            .loc
            .get(&p.aor)
            .into_iter()
            .filter(|b| b.expires > now)
            .collect();
        let new_ids = specs
            .iter()
            .zip(&locals)
            .filter(|(s, e)| **e > 0 && !existing.iter().any(|b| same(b, s)))
            .count();
        if existing.len() + new_ids > self.cfg.max_contacts_per_aor {
            return Ok(self.reject(req, 403, "Too Many Contacts", &[]));
        }
        // Memory bounds against REGISTER floods: the whole table, and what one source holds.
        if new_ids > 0 && self.loc.len() + new_ids > self.cfg.max_bindings {
            return Ok(self.reject(
                req,
                503,
                "Service Unavailable (binding limit)",
                &[("Retry-After", b"60")],
            ));
        }
        if new_ids > 0
            && self.loc.from_source(src.remote.ip()) + new_ids > self.cfg.max_bindings_per_source
        {
            return Ok(self.reject(
                req,
                403,
                "Forbidden (too many bindings from this address)",
                &[],
            ));
        }
        if policy.mode != RegistrarMode::Mirror
            && self.can_absorb(req, &p, &specs, &locals, &existing, now)
        {
            return Ok(self.absorb(req, &p, &specs, &locals, now));
        }
        Ok(self.forward_contacts(p, specs, locals, &existing))
    }

    /// The authentication-safety rule (module doc) plus the throttling condition.
    fn can_absorb(
        &self,
        req: &Message,
        p: &Pending,
        specs: &[ContactSpec],
        locals: &[u32],
        existing: &[Binding],
        now: Instant,
    ) -> bool {
        let creds = has_credentials(req);
        if creds && !self.cfg.absorb_authorized_refreshes {
            return false;
        }
        let all_known = specs.iter().zip(locals).all(|(s, &e)| {
            existing.iter().find(|b| same(b, s)).is_some_and(|b| {
                b.same_flow(&p.src)
                    && b.call_id == p.call_id
                    && p.cseq > b.cseq
                    && !(creds && b.challenged)
                    // The core binding must outlive the refreshed local one, with time to
                    // spare for a forwarded refresh and its challenge round trip.
                    && (e == 0
                        || b.core_expires
                            >= now + Duration::from_secs(u64::from(e)) + REFRESH_SLACK)
            })
        });
        if !all_known {
            return false;
        }
        let removes = locals.contains(&0);
        match p.policy.mode {
            RegistrarMode::Mirror => false,
            // De-registrations reach the core at once.
            RegistrarMode::Contact => !removes,
            // A removal is local only while another device keeps the AoR's core contact.
            RegistrarMode::Aor => !removes || self.remaining_after(existing, specs, locals) > 0,
        }
    }

    /// Bindings of the AoR left after applying the request.
    fn remaining_after(
        &self,
        existing: &[Binding],
        specs: &[ContactSpec],
        locals: &[u32],
    ) -> usize {
        let kept = existing
            .iter()
            .filter(|b| !specs.iter().any(|s| same(b, s)))
            .count();
        kept + locals.iter().filter(|e| **e > 0).count()
    }

    fn absorb(
        &mut self,
        req: &Message,
        p: &Pending,
        specs: &[ContactSpec],
        locals: &[u32],
        now: Instant,
    ) -> RegisterAction {
        for (s, &e) in specs.iter().zip(locals) {
            let Some(mut b) = self
                .loc
                .find(&p.aor, &s.uri, s.instance.as_deref(), s.reg_id)
            else {
                continue;
            };
            if e == 0 {
                self.remove(&b.aor, &b.contact);
                continue;
            }
            b.expires = now + Duration::from_secs(u64::from(e));
            b.cseq = p.cseq;
            b.flow = p.src.flow;
            b.local = p.src.local;
            b.q = s.q.or(b.q);
            self.loc.upsert(b.clone());
            self.changes.push(Change::Upsert(Box::new(b)));
        }
        self.metrics.absorbed.inc();
        self.metrics.bindings.set(self.loc.len() as i64);
        let bytes = self.ok_with_bindings(req, p, now);
        RegisterAction::Reply { status: 200, bytes }
    }

    /// 200 OK listing every current binding with its remaining time (§10.3 step 8).
    fn ok_with_bindings(&mut self, req: &Message, p: &Pending, now: Instant) -> Bytes {
        let values = self.contact_values(&p.aor, now);
        let mut extra: Vec<(&str, &[u8])> =
            values.iter().map(|v| ("Contact", v.as_bytes())).collect();
        let outbound = self.outbound_headers(p);
        extra.extend(outbound.iter().map(|(n, v)| (*n, v.as_bytes())));
        let tag = self.token();
        response_to(req, 200, "OK", Some(&tag), &extra)
    }

    /// RFC 5626 §6: a registrar that accepted an outbound registration says so with
    /// `Require: outbound`, and §4.4.1 `Flow-Timer` tells the device how often to send its
    /// own keepalives (our ping interval). The core never sees reg-id, so the edge adds them.
    fn outbound_headers(&self, p: &Pending) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if p.outbound {
            h.push(("Require", "outbound".to_string()));
            if self.cfg.natping_interval_s > 0 {
                h.push(("Flow-Timer", self.cfg.natping_interval_s.to_string()));
            }
        }
        h
    }

    fn contact_values(&self, aor: &str, now: Instant) -> Vec<String> {
        self.loc
            .get(aor)
            .iter()
            .map(|b| {
                let mut v = format!("<{}>;expires={}", b.contact, b.remaining(now));
                if let Some(i) = &b.instance {
                    v.push_str(&format!(";+sip.instance=\"<{i}>\""));
                }
                if let Some(r) = b.reg_id {
                    v.push_str(&format!(";reg-id={r}"));
                }
                v.push_str(&b.gruu_params);
                v
            })
            .collect()
    }

    fn reject(
        &mut self,
        req: &Message,
        status: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) -> RegisterAction {
        self.metrics.rejected.inc();
        let tag = self.token();
        RegisterAction::Reply {
            status,
            bytes: response_to(req, status, reason, Some(&tag), extra),
        }
    }

    fn forward(&mut self, p: Pending, rewrite: Rewrite) -> RegisterAction {
        let id = PendingId(self.next_id);
        self.next_id += 1;
        self.pending.insert(id, p);
        RegisterAction::Forward { id, rewrite }
    }

    /// The proxy sent a [`RegisterAction::Forward`] to the core. Counted here, not when the
    /// registrar decides to forward: the proxy may still answer the REGISTER itself (no core
    /// reachable, bad route), and an operator must not see it as forwarded.
    pub fn sent_to_core(&self) {
        self.metrics.forwarded.inc();
    }

    /// A random token (core contact user part, To tag).
    fn token(&mut self) -> String {
        format!("r{:016x}", self.rng.random::<u64>())
    }

    fn remove(&mut self, aor: &str, contact: &str) {
        if self.loc.remove(aor, contact).is_some() {
            self.changes.push(Change::Remove {
                aor: aor.to_string(),
                contact: contact.to_string(),
            });
        }
    }
}

/// `Supported: outbound` in the request (RFC 5626 §4.2.1).
fn supports_outbound(req: &Message) -> bool {
    req.values(HeaderName::Supported)
        .any(|v| v.eq_ignore_ascii_case(b"outbound"))
}

fn same(b: &Binding, s: &ContactSpec) -> bool {
    b.same_identity(&s.uri, s.instance.as_deref(), s.reg_id)
}
