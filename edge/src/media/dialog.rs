//! The dialog ↔ relay session state machine, sans-IO.
//!
//! [`MediaDialogs`] turns the SIP messages the proxy forwards into relay commands and the
//! relay's answers into rewritten SDP. It reads no clock and owns no socket: the proxy passes
//! each message ([`SipEvent`]) with `now`, sends the [`RelayRequest`]s it gets back through the
//! relay client, feeds each outcome to [`MediaDialogs::on_relay_reply`], and calls
//! [`MediaDialogs::on_timer`] at [`MediaDialogs::poll_timeout`].
//!
//! Offer/answer (RFC 3264, RFC 6337 for where SDP may appear): an SDP from party S is an
//! *answer* when the other party's offer is outstanding, else an *offer*. An offer becomes
//! `U callid addr port S;n [other;n]` per relayable m= line (stream number `n` = position,
//! rtpproxy `;n`), an answer `L callid addr port offerer;n S;n` — the tag order every relay
//! (rtpengine included) matches, since it is the order of the `U` that created the stream.
//! This covers INVITE → 18x/2xx, re-INVITE and UPDATE from either side (same tags, same
//! relay, so the relay answers the same ports), and the late offer (SDP in the 2xx, answer in
//! the ACK). A repeated answer (183 then 200, retransmitted 2xx) repeats the `L`.
//!
//! The message carrying the SDP is held by the proxy until every command of it is answered
//! ([`BodyAction::Hold`] → [`Completion`]). A new call's first command goes to any relay
//! ([`Target::Any`], the client fails over); its other streams wait for that answer and then
//! follow to the same relay, where every later command of the call goes too.
//!
//! Teardown, each sends `D callid caller-tag` (every stream of the call) to the call's relay:
//! BYE, CANCEL, a final non-2xx response to the initial INVITE (which is also what the
//! proxy's Timer C produces, 408), the early timeout (no final response at all), the maximum
//! call duration (a BYE that never came), a failed initial offer. A call whose first `U` is
//! still unanswered when it ends gets its `D` as soon as that answer says which relay holds it.
//!
//! Calls are keyed by Call-ID + the caller's tag (the From tag of the initial INVITE); a
//! request from the callee carries it as To tag.
//!
//! Calls that cross the edge more than once (an on-net call A → edge → core → edge → B, call
//! forwarding, hunt groups) are anchored once: every relay address:port the edge has written
//! into an SDP is remembered, and an SDP that names one of them — the same call coming back
//! from the core — is forwarded unchanged, with no relay command and no change to the
//! offer/answer state (rtpengine's loop-protect idea, done by the edge so it works with any
//! relay). The other pass of the call then carries the real party's SDP and drives the one
//! session: pass 1 anchors A's offer, pass 2 anchors B's answer (`edge/docs/media-spirals.md`).

use super::client::{ClientError, RelayId, Target};
use super::liveness::{Liveness, Verdict};
use super::metrics::MediaMetrics;
use super::policy::{self, Decision, Peer};
use super::shell::CommandResult;
use crate::sdp::{rewrite, RewriteOptions, Sdp, SdpError, StreamRewrite};
use crate::sip::Method;
use config::MediaMode;
use sbc_shared::proto::{CallId, Command, Delete, Query, Tag, Update};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct DialogConfig {
    pub mode: MediaMode,
    pub rewrite: RewriteOptions,
    /// A confirmed call is deleted this long after its 2xx if no BYE came.
    pub max_duration: Duration,
    /// A call without final response is deleted this long after its INVITE.
    pub early_timeout: Duration,
    /// Per relay: the address to announce when its `U`/`L` answer carries none (rtpproxy
    /// may answer the port alone): the relay's control IP.
    pub relay_ips: Vec<IpAddr>,
    /// Most relayable streams (m= lines) one SDP may have (`media.max_streams_per_sdp`).
    pub max_streams: usize,
    /// Seconds between checks that a confirmed call's streams still exist on its relay
    /// (`media.check_interval_s`, 0 = off; see [`super::liveness`]).
    pub check_interval_s: u64,
}

impl DialogConfig {
    pub fn from_config(cfg: &config::EdgeMediaConfig) -> Self {
        DialogConfig {
            mode: cfg.mode,
            rewrite: RewriteOptions {
                keep_ice: cfg.keep_ice,
                bump_version: true,
            },
            max_duration: Duration::from_secs(cfg.max_call_duration_s),
            early_timeout: Duration::from_secs(cfg.early_timeout_s),
            relay_ips: cfg.relays.iter().map(|r| r.addr.ip()).collect(),
            max_streams: cfg.max_streams_per_sdp,
            check_interval_s: cfg.check_interval_s,
        }
    }
}

/// The message kind, as far as media cares. For a response, `method` is the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipKind {
    Request(Method),
    Response { status: u16, method: Method },
}

/// One SIP message the proxy is about to forward.
#[derive(Debug, Clone)]
pub struct SipEvent<'a> {
    pub call_id: &'a str,
    pub from_tag: &'a str,
    pub to_tag: Option<&'a str>,
    pub kind: SipKind,
    /// The body when it is SDP (`Content-Type: application/sdp`), else `None`.
    pub sdp: Option<&'a [u8]>,
    /// Who sent this message (source address, NAT test).
    pub sender: Peer,
    /// Whether the message's destination is behind NAT (for an initial INVITE: the callee's
    /// binding; `false` when unknown). Only read for new calls in mode `nat`.
    pub target_nated: bool,
}

/// A held message, until its [`Completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// One relay command, until its reply is fed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CmdId(pub u64);

/// A command to send through the relay client; feed its outcome to
/// [`MediaDialogs::on_relay_reply`] with the same `id` (also for `D`, whose outcome only
/// matters for logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRequest {
    pub id: CmdId,
    pub target: Target,
    pub command: Command,
}

/// What happens to the message's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAction {
    /// Forward as is.
    Unchanged,
    /// Forward with this body instead (same Content-Type; fix Content-Length).
    Replace(Vec<u8>),
    /// Hold the message until the [`Completion`] of this op.
    Hold(OpId),
    /// Not anchorable as it stands: a request gets this final response, a response or ACK is
    /// forwarded unchanged (its offer was already limited).
    Refuse { status: u16, reason: &'static str },
}

/// The answer to [`MediaDialogs::on_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub body: BodyAction,
    pub send: Vec<RelayRequest>,
}

impl Step {
    fn unchanged(send: Vec<RelayRequest>) -> Self {
        Step {
            body: BodyAction::Unchanged,
            send,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("relay: {0}")]
    Relay(#[from] ClientError),
    /// `E<n>`, port 0, or an answer that is not `port [addr]`.
    #[error("relay refused the command: {0}")]
    Refused(String),
    /// The dialog ended (BYE, CANCEL, failure) while the message was held.
    #[error("dialog ended while waiting for the relay")]
    Gone,
    #[error("SDP: {0}")]
    Sdp(#[from] SdpError),
}

/// A held message may go: with this body, or (failure) per `media.on_relay_failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Rewrite(Vec<u8>),
    Failed(MediaError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub op: OpId,
    pub outcome: Outcome,
}

/// The answer to [`MediaDialogs::on_relay_reply`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplyStep {
    pub send: Vec<RelayRequest>,
    pub done: Option<Completion>,
    /// A confirmed call whose streams its relay no longer has (media timed out, relay
    /// restarted): (Call-ID, caller tag). Its media state is gone; the proxy ends the dialog.
    pub lost: Option<(String, String)>,
}

/// Where the offer/answer exchange of a call stands (RFC 3264 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exchange {
    Idle,
    Offered { by: String },
    Answered { offerer: String, answerer: String },
}

struct Call {
    call_id: String,
    caller_tag: String,
    callee_tag: Option<String>,
    relay: Option<RelayId>,
    confirmed: bool,
    exchange: Exchange,
    /// Stream indices the relay holds for this call (for `edge_media_sessions`).
    held: BTreeSet<usize>,
    /// Relay addresses written into this call's SDPs (keys of `MediaDialogs::anchored`).
    anchored: Vec<SocketAddr>,
    /// Key into `MediaDialogs::timers`.
    timer: (Instant, u64),
    ops: Vec<OpId>,
}

struct Op {
    call: String,
    body: Vec<u8>,
    rewrites: Vec<Option<StreamRewrite>>,
    waiting: usize,
    /// Commands that wait for the call's relay to be known.
    queued: Vec<(usize, Command)>,
    failed: Option<MediaError>,
    /// The call's first offer: its failure ends the call.
    initial: bool,
    /// Call-ID and caller tag, for a late `D`: a `U` answered after its call ended (the
    /// first `U` of a call that ended before the relay was known, or a re-offer overtaken by
    /// the BYE's `D`) re-created a session that nobody will delete otherwise.
    ids: (String, String),
}

struct Cmd {
    op: OpId,
    stream: usize,
    offer: bool,
}

pub struct MediaDialogs {
    cfg: DialogConfig,
    calls: HashMap<String, Call>,
    ops: HashMap<OpId, Op>,
    cmds: HashMap<CmdId, Cmd>,
    /// Deadlines (early timeout, max duration) → call key.
    timers: BTreeMap<(Instant, u64), String>,
    next: u64,
    sessions: usize,
    /// Relay address:port written into an SDP → the call it belongs to.
    anchored: HashMap<SocketAddr, String>,
    /// Checks that confirmed calls still have their streams.
    live: Liveness,
    metrics: Option<MediaMetrics>,
}

/// Non-empty printable ASCII without blanks or `;` (the rtpproxy argument separators).
fn command_safe(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

fn key(call_id: &str, tag: &str) -> String {
    // A space cannot occur in a Call-ID (RFC 3261 §25.1 `word`).
    format!("{call_id} {tag}")
}

impl MediaDialogs {
    pub fn new(cfg: DialogConfig, metrics: Option<MediaMetrics>) -> Self {
        MediaDialogs {
            live: Liveness::new(cfg.check_interval_s),
            cfg,
            calls: HashMap::new(),
            ops: HashMap::new(),
            cmds: HashMap::new(),
            timers: BTreeMap::new(),
            next: 0,
            sessions: 0,
            anchored: HashMap::new(),
            metrics,
        }
    }

    /// Whether calls may be anchored at all (`media.mode` is not `never`).
    /// `media.max_streams_per_sdp` changed (configuration reload).
    pub fn set_max_streams(&mut self, n: usize) {
        self.cfg.max_streams = n;
    }

    /// Count a message refused for a media reason (`edge_media_refused_total{reason}`).
    pub fn count_refused(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.refused.with_label_values(&[reason]).inc();
        }
    }

    /// Count a confirmed call whose media a relay lost, by `outcome`
    /// (`edge_media_lost_calls_total`).
    pub fn count_lost(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.lost_calls.with_label_values(&[outcome]).inc();
        }
    }

    /// Is call (`call_id`, caller tag `tag`) anchored?
    pub fn has_call(&self, call_id: &str, tag: &str) -> bool {
        self.calls.contains_key(&key(call_id, tag))
    }

    pub fn anchoring(&self) -> bool {
        self.cfg.mode != MediaMode::Never
    }

    /// Calls whose media is anchored (or about to be).
    pub fn dialogs(&self) -> usize {
        self.calls.len()
    }

    /// Media streams held on relays.
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Messages held, waiting for relay answers.
    pub fn held(&self) -> usize {
        self.ops.len()
    }

    /// When [`Self::on_timer`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.keys().next().map(|(at, _)| *at);
        match (timer, self.live.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A SIP message is about to be forwarded. Call for INVITE, ACK, BYE, CANCEL, UPDATE,
    /// PRACK requests and for responses to INVITE, UPDATE and PRACK, once per message the
    /// proxy forwards (a final response only when the proxy forwards it upstream, i.e. the
    /// best response of all branches), and for the final responses the proxy itself sends
    /// to an INVITE (408 on Timer C, 404 no route, 500 relay failure...), so the call's
    /// relay session is freed at once rather than at the early timeout.
    pub fn on_message(&mut self, ev: &SipEvent<'_>, now: Instant) -> Step {
        // Call-ID and tags become words of a relay command: one with a blank or `;` in it
        // (not allowed by RFC 3261 §25.1, but a peer can send anything) could shift the
        // command's arguments onto another call's tags.
        if !command_safe(ev.call_id)
            || !command_safe(ev.from_tag)
            || ev.to_tag.is_some_and(|t| !command_safe(t))
        {
            return Step::unchanged(Vec::new());
        }
        let mut k = self.find(ev.call_id, ev.from_tag, ev.to_tag);
        let spiral = ev.sdp.is_some_and(|body| self.names_our_relay(body));
        match (&ev.kind, &k) {
            (SipKind::Request(Method::Bye), Some(k)) => {
                return Step::unchanged(self.end(&k.clone(), "bye"));
            }
            // A CANCEL that crossed the 2xx has no effect (RFC 3261 §9.2): the caller ACKs
            // and then sends BYE, which frees the relay.
            (SipKind::Request(Method::Cancel), Some(k))
                if self.calls.get(k).is_some_and(|c| !c.confirmed) =>
            {
                return Step::unchanged(self.end(&k.clone(), "cancel"));
            }
            (SipKind::Response { status, method }, Some(key)) if *status >= 200 => {
                let Some(call) = self.calls.get_mut(key) else {
                    return Step::unchanged(Vec::new());
                };
                if *method == Method::Invite && *status < 300 {
                    if !call.confirmed {
                        call.confirmed = true;
                        call.callee_tag = ev.to_tag.map(str::to_owned).or(call.callee_tag.take());
                        let key = key.clone();
                        self.arm(&key, now + self.cfg.max_duration);
                        self.live.watch(&key, now);
                    }
                } else if *status >= 300 {
                    if *method == Method::Invite && !call.confirmed {
                        return Step::unchanged(self.end(&key.clone(), "failure response"));
                    }
                    // A failed re-INVITE/UPDATE: its offer is void (RFC 3264 §8).
                    if matches!(call.exchange, Exchange::Offered { .. }) {
                        call.exchange = Exchange::Idle;
                    }
                }
            }
            // The SDP already points at our relay: this INVITE is a call we anchored coming
            // back from the core; nothing new to anchor.
            (SipKind::Request(Method::Invite), None) if ev.to_tag.is_none() && spiral => {
                tracing::debug!(
                    call_id = ev.call_id,
                    "SDP names our relay: not anchored again"
                );
                return Step::unchanged(Vec::new());
            }
            (SipKind::Request(Method::Invite), None) if ev.to_tag.is_none() => {
                match policy::for_call(self.cfg.mode, &ev.sender, ev.target_nated) {
                    Decision::Relay => k = Some(self.create(ev, now)),
                    Decision::FixNat(ip) => return self.fix_nat(ev.sdp, ip),
                    Decision::Leave => return Step::unchanged(Vec::new()),
                }
            }
            _ => {}
        }
        let Some(k) = k else {
            // Not an anchored call. In mode `never` every NATed sender's SDP is fixed.
            if self.cfg.mode == MediaMode::Never {
                if let Decision::FixNat(ip) = policy::for_unrelayed(&ev.sender) {
                    return self.fix_nat(ev.sdp, ip);
                }
            }
            return Step::unchanged(Vec::new());
        };
        // The sender of a request is its From party; of a response, its To party.
        let sender = match ev.kind {
            SipKind::Request(_) => Some(ev.from_tag),
            SipKind::Response { .. } => ev.to_tag,
        };
        match (ev.sdp, sender) {
            (Some(_), Some(_)) if spiral => {
                tracing::debug!(
                    call_id = ev.call_id,
                    "SDP names our relay (the call crossed the edge again): forwarded unchanged"
                );
                Step::unchanged(Vec::new())
            }
            (Some(body), Some(sender)) => self.sdp(&k, body, sender, ev, now),
            _ => Step::unchanged(Vec::new()),
        }
    }

    /// The outcome of a [`RelayRequest`].
    pub fn on_relay_reply(&mut self, id: CmdId, result: CommandResult, now: Instant) -> ReplyStep {
        let _ = now;
        match self.live.on_reply(id, &result) {
            Verdict::NotOurs => {}
            Verdict::Alive => return ReplyStep::default(),
            Verdict::Lost(key) => return self.lost(&key),
        }
        let Some(cmd) = self.cmds.remove(&id) else {
            if let Err(e) = result {
                tracing::debug!(error = %e, "relay delete failed");
            }
            return ReplyStep::default();
        };
        let mut send = Vec::new();
        let Some(op) = self.ops.get_mut(&cmd.op) else {
            return ReplyStep::default();
        };
        op.waiting = op.waiting.saturating_sub(1);
        match result {
            Ok((relay, reply)) => match reply.port() {
                Some((port, addr)) if port != 0 => {
                    let addr = addr
                        .or_else(|| self.cfg.relay_ips.get(relay).copied())
                        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                    if let Some(slot) = op.rewrites.get_mut(cmd.stream) {
                        *slot = Some(StreamRewrite {
                            addr,
                            port: Some(port),
                        });
                    }
                    match self.calls.get_mut(&op.call) {
                        Some(call) => {
                            let at = SocketAddr::new(addr, port);
                            if !call.anchored.contains(&at) {
                                call.anchored.push(at);
                            }
                            self.anchored.insert(at, op.call.clone());
                            call.relay.get_or_insert(relay);
                            if cmd.offer && call.held.insert(cmd.stream) {
                                self.sessions += 1;
                            }
                            for (stream, command) in std::mem::take(&mut op.queued) {
                                let id = CmdId(self.next);
                                self.next += 1;
                                op.waiting += 1;
                                let offer = matches!(command, Command::Update(_));
                                self.cmds.insert(
                                    id,
                                    Cmd {
                                        op: cmd.op,
                                        stream,
                                        offer,
                                    },
                                );
                                send.push(RelayRequest {
                                    id,
                                    target: Target::Relay(relay),
                                    command,
                                });
                            }
                        }
                        // Every such U may have re-created the call: each gets its D.
                        None if cmd.offer => {
                            let (call_id, tag) = op.ids.clone();
                            send.push(self.delete_request(&call_id, &tag, relay));
                        }
                        None => {}
                    }
                }
                _ => {
                    if let Some(m) = &self.metrics {
                        if reply.error().is_none() {
                            m.failures.with_label_values(&["refused"]).inc();
                        }
                    }
                    op.queued.clear();
                    op.failed
                        .get_or_insert(MediaError::Refused(format!("{reply:?}")));
                }
            },
            Err(e) => {
                op.queued.clear();
                op.failed.get_or_insert(MediaError::Relay(e));
            }
        }
        self.gauges();
        let Some(op) = self.ops.get(&cmd.op) else {
            return ReplyStep {
                send,
                ..ReplyStep::default()
            };
        };
        if op.waiting > 0 {
            return ReplyStep {
                send,
                ..ReplyStep::default()
            };
        }
        let Some(op) = self.ops.remove(&cmd.op) else {
            return ReplyStep {
                send,
                ..ReplyStep::default()
            };
        };
        if let Some(call) = self.calls.get_mut(&op.call) {
            call.ops.retain(|o| *o != cmd.op);
        }
        let outcome = if !self.calls.contains_key(&op.call) {
            Outcome::Failed(MediaError::Gone)
        } else if let Some(e) = op.failed {
            if op.initial {
                send.extend(self.end(&op.call, "initial offer failed"));
            }
            Outcome::Failed(e)
        } else {
            match Sdp::parse(&op.body) {
                Ok(sdp) => Outcome::Rewrite(rewrite(&sdp, &op.rewrites, &self.cfg.rewrite)),
                Err(e) => Outcome::Failed(e.into()),
            }
        };
        ReplyStep {
            send,
            done: Some(Completion {
                op: cmd.op,
                outcome,
            }),
            lost: None,
        }
    }

    /// The relay does not know confirmed call `key` any more: forget it (its `D` is harmless
    /// if the relay lost it, and frees what is left if only some streams timed out).
    fn lost(&mut self, key: &str) -> ReplyStep {
        let Some(ids) = self
            .calls
            .get(key)
            .map(|c| (c.call_id.clone(), c.caller_tag.clone()))
        else {
            return ReplyStep::default();
        };
        tracing::info!(call_id = %ids.0, "relay no longer has the call's media: ending it");
        ReplyStep {
            send: self.end(key, "media lost"),
            done: None,
            lost: Some(ids),
        }
    }

    /// Delete the calls whose early timeout or maximum duration has passed.
    pub fn on_timer(&mut self, now: Instant) -> Vec<RelayRequest> {
        let mut send = Vec::new();
        while let Some((&(at, seq), k)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            let k = k.clone();
            self.timers.remove(&(at, seq));
            if self.calls.get(&k).is_some_and(|c| c.timer == (at, seq)) {
                send.extend(self.end(&k, "timeout"));
            }
        }
        for k in self.live.due(now) {
            let Some(call) = self.calls.get(&k) else {
                continue;
            };
            let Some(relay) = call.relay else {
                continue;
            };
            let id = CmdId(self.next);
            self.next += 1;
            let command = Command::Query(Query {
                verbose: false,
                call: CallId::new(&call.call_id),
                from_tag: Tag::new(&call.caller_tag),
                to_tag: None,
                stats: Vec::new(),
            });
            self.live.asked(id, k);
            send.push(RelayRequest {
                id,
                target: Target::Relay(relay),
                command,
            });
        }
        send
    }

    /// Does any relayable stream of this SDP point at an address the edge got from a relay
    /// (and wrote into an SDP) for a live call?
    fn names_our_relay(&self, body: &[u8]) -> bool {
        if self.anchored.is_empty() {
            return false;
        }
        let Ok(sdp) = Sdp::parse(body) else {
            return false;
        };
        sdp.media().iter().filter(|s| s.relayable()).any(|s| {
            s.connection
                .is_some_and(|ip| self.anchored.contains_key(&SocketAddr::new(ip, s.port)))
        })
    }

    fn find(&self, call_id: &str, from: &str, to: Option<&str>) -> Option<String> {
        let k = key(call_id, from);
        if self.calls.contains_key(&k) {
            return Some(k);
        }
        let k = key(call_id, to?);
        self.calls.contains_key(&k).then_some(k)
    }

    fn create(&mut self, ev: &SipEvent<'_>, now: Instant) -> String {
        let k = key(ev.call_id, ev.from_tag);
        self.calls.insert(
            k.clone(),
            Call {
                call_id: ev.call_id.to_owned(),
                caller_tag: ev.from_tag.to_owned(),
                callee_tag: None,
                relay: None,
                confirmed: false,
                exchange: Exchange::Idle,
                held: BTreeSet::new(),
                anchored: Vec::new(),
                timer: (now, 0),
                ops: Vec::new(),
            },
        );
        self.arm(&k, now + self.cfg.early_timeout);
        self.gauges();
        k
    }

    fn arm(&mut self, k: &str, at: Instant) {
        let seq = self.next;
        self.next += 1;
        if let Some(call) = self.calls.get_mut(k) {
            self.timers.remove(&call.timer);
            call.timer = (at, seq);
            self.timers.insert((at, seq), k.to_owned());
        }
    }

    /// Forget the call and free its relay session.
    fn end(&mut self, k: &str, why: &str) -> Vec<RelayRequest> {
        let Some(call) = self.calls.remove(k) else {
            return Vec::new();
        };
        self.timers.remove(&call.timer);
        self.live.forget(k);
        for at in &call.anchored {
            if self.anchored.get(at).is_some_and(|c| c == k) {
                self.anchored.remove(at);
            }
        }
        self.sessions = self.sessions.saturating_sub(call.held.len());
        self.gauges();
        tracing::debug!(call_id = %call.call_id, why, "media dialog ended");
        // Without a relay, nothing was created yet; a first U still in flight is deleted
        // when its answer names the relay (`on_relay_reply`).
        call.relay
            .map(|relay| self.delete_request(&call.call_id, &call.caller_tag, relay))
            .into_iter()
            .collect()
    }

    fn delete_request(&mut self, call_id: &str, caller_tag: &str, relay: RelayId) -> RelayRequest {
        let id = CmdId(self.next);
        self.next += 1;
        RelayRequest {
            id,
            target: Target::Relay(relay),
            command: Command::Delete(Delete {
                weak: false,
                call: CallId::new(call_id),
                from_tag: Tag::new(caller_tag),
                to_tag: None,
            }),
        }
    }

    fn gauges(&self) {
        if let Some(m) = &self.metrics {
            m.dialogs.set(self.calls.len() as i64);
            m.sessions.set(self.sessions as i64);
        }
    }

    /// mode `never`: point the c= lines of a NATed sender's SDP at its source address.
    fn fix_nat(&self, body: Option<&[u8]>, ip: IpAddr) -> Step {
        let Some(Ok(sdp)) = body.map(Sdp::parse) else {
            return Step::unchanged(Vec::new());
        };
        let fixes: Vec<Option<StreamRewrite>> = sdp
            .media()
            .iter()
            .map(|_| {
                Some(StreamRewrite {
                    addr: ip,
                    port: None,
                })
            })
            .collect();
        Step {
            body: BodyAction::Replace(rewrite(&sdp, &fixes, &self.cfg.rewrite)),
            send: Vec::new(),
        }
    }

    /// An SDP with more streams than `media.max_streams_per_sdp`: nothing is sent to the relay
    /// (a few such INVITEs would otherwise hold the whole port range). A new call is forgotten
    /// at once; the message is refused (`488`) when it is a request.
    fn too_many_streams(&mut self, k: &str, ev: &SipEvent<'_>, streams: usize) -> Step {
        tracing::info!(
            call_id = ev.call_id,
            streams,
            limit = self.cfg.max_streams,
            "SDP with too many media streams: not anchored"
        );
        if self
            .calls
            .get(k)
            .is_some_and(|c| c.relay.is_none() && c.ops.is_empty())
        {
            self.calls.remove(k);
            self.gauges();
        }
        Step {
            body: BodyAction::Refuse {
                status: 488,
                reason: "Not Acceptable Here (too many media streams)",
            },
            send: Vec::new(),
        }
    }

    /// An SDP from party `sender` in an anchored call: offer → U, answer → L.
    fn sdp(&mut self, k: &str, body: &[u8], sender: &str, ev: &SipEvent<'_>, now: Instant) -> Step {
        let _ = now;
        let kind = &ev.kind;
        let sdp = match Sdp::parse(body) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "SDP not rewritten");
                return Step::unchanged(Vec::new());
            }
        };
        let streams = sdp.media().iter().filter(|s| s.relayable()).count();
        if streams > self.cfg.max_streams {
            return self.too_many_streams(k, ev, streams);
        }
        let Some(call) = self.calls.get_mut(k) else {
            return Step::unchanged(Vec::new());
        };
        let provisional = matches!(kind, SipKind::Response { status, .. } if *status < 200);
        let response = matches!(kind, SipKind::Response { .. });
        // (offerer tag, answerer tag) if this SDP is an answer.
        let answer = match &call.exchange {
            Exchange::Offered { by } if by != sender => Some((by.clone(), sender.to_owned())),
            // A repeated answer (retransmitted 2xx), or the 2xx of another fork of the
            // INVITE (RFC 3261 §16.7 step 5 forwards every 2xx): an answer from `sender`.
            Exchange::Answered { offerer, .. } if response && offerer != sender => {
                Some((offerer.clone(), sender.to_owned()))
            }
            _ => None,
        };
        let other = if sender == call.caller_tag {
            call.callee_tag.clone()
        } else {
            Some(call.caller_tag.clone())
        };
        let repeat_offer = matches!(&call.exchange,
            Exchange::Answered { offerer, .. } if response && offerer == sender);
        match &answer {
            Some((offerer, answerer)) if !provisional => {
                call.exchange = Exchange::Answered {
                    offerer: offerer.clone(),
                    answerer: answerer.clone(),
                };
            }
            Some(_) => {}
            None if repeat_offer => {}
            None => {
                call.exchange = Exchange::Offered {
                    by: sender.to_owned(),
                }
            }
        }
        let mut commands = Vec::new();
        for s in sdp.media().iter().filter(|s| s.relayable()) {
            let signalled = s.connection.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let addr = policy::media_address(signalled, &ev.sender);
            let n = u32::try_from(s.index + 1).unwrap_or(u32::MAX);
            let call_id = CallId::new(call.call_id.clone());
            let command = match &answer {
                Some((offerer, answerer)) => {
                    let mut u = Update::new(call_id, addr, s.port, Tag::with_stream(offerer, n));
                    u.to_tag = Some(Tag::with_stream(answerer, n));
                    Command::Lookup(u)
                }
                None => {
                    let mut u = Update::new(call_id, addr, s.port, Tag::with_stream(sender, n));
                    u.to_tag = other.as_ref().map(|t| Tag::with_stream(t, n));
                    Command::Update(u)
                }
            };
            commands.push((s.index, command));
        }
        if commands.is_empty() {
            return Step::unchanged(Vec::new());
        }
        let op_id = OpId(self.next);
        self.next += 1;
        call.ops.push(op_id);
        let relay = call.relay;
        let initial = relay.is_none() && answer.is_none();
        let mut op = Op {
            call: k.to_owned(),
            body: body.to_vec(),
            rewrites: vec![None; sdp.media().len()],
            waiting: 0,
            queued: Vec::new(),
            failed: None,
            initial,
            ids: (call.call_id.clone(), call.caller_tag.clone()),
        };
        let mut send = Vec::new();
        for (stream, command) in commands {
            let target = match relay {
                Some(r) => Target::Relay(r),
                None if send.is_empty() => Target::Any,
                None => {
                    op.queued.push((stream, command));
                    continue;
                }
            };
            let id = CmdId(self.next);
            self.next += 1;
            op.waiting += 1;
            self.cmds.insert(
                id,
                Cmd {
                    op: op_id,
                    stream,
                    offer: matches!(command, Command::Update(_)),
                },
            );
            send.push(RelayRequest {
                id,
                target,
                command,
            });
        }
        self.ops.insert(op_id, op);
        Step {
            body: BodyAction::Hold(op_id),
            send,
        }
    }
}

#[cfg(test)]
#[path = "dialog_tests.rs"]
mod tests;
