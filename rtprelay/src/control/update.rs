//! `U` (offer) and `L` (answer): create or update a stream and answer the relay port.
//!
//! `U callid addr port from-tag[;n] [to-tag]` is about the *from-tag* party: its SDP said
//! "send my media to addr:port". The first `U` of a stream allocates legs A (that party) and
//! B (the other party, address unknown yet) and answers B's local port — the port the proxy
//! writes into the SDP it forwards to the other party. A repeated `U` from the same party
//! (re-INVITE, retransmission after the cache expired) updates A and answers the same port; a
//! `U` whose from-tag is B's (re-INVITE from the callee) updates B and answers A's port.
//!
//! `L callid addr port from-tag to-tag` is about the *to-tag* party (the answerer). As in
//! rtpproxy, the tags are matched in both orders: Kamailio sends the answer in a reply with
//! From/To as in the dialog, but in a request (ACK with SDP, late offer) swaps them. `L` never
//! creates a stream: an unknown one is answered `0 0.0.0.0` (rtpengine's answer; Kamailio's
//! module reads port 0 as failure and, for lookups, logs nothing), not `E50`.
//!
//! Address `0.0.0.0`/`::` or port 0 (hold, or unknown) leaves the leg's remote unset: the
//! media plane then waits for the party's first packet to latch (unless `a`).
//!
//! The address is what strict latching trusts: a public one lets only its IP latch, a private
//! one lets the first source latch and gets nothing sent before that. A proxy should therefore
//! pass a NATed phone's signalling source IP here, not its private SDP address (rules in
//! `rtprelay/README.md`, "Media-plane rules"). A `U` that adds a stream beyond the call's quota
//! answers `E83`, a new call beyond the client's quota `E84`.

use super::proto::{ErrorCode, Interface, Modifiers, Reply, Update};
use super::session::{backend_error, shard_hint, CallKey, EndReason, SessionManager, Side, Stream};
use crate::backend::{BackendError, LegSpec, MediaBackend};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

/// Where the match landed: stream index, the side the command is about, and a to-tag to
/// record as B's tag.
struct Found {
    idx: usize,
    side: Side,
    bind_b: Option<String>,
}

impl SessionManager {
    pub(super) fn offer(
        &mut self,
        u: &Update,
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> Reply {
        if let Some(refused) = self.refuse_loop(u, "U") {
            return refused;
        }
        let ips = match self.local_ips(&u.modifiers) {
            Ok(ips) => ips,
            Err(code) => return code.into(),
        };
        let n = u.stream_number();
        let found = self.calls.get(u.call.id.as_str()).and_then(|streams| {
            streams.iter().enumerate().find_map(|(idx, st)| {
                if st.branch != u.call.branch || st.number != n {
                    return None;
                }
                let side = st.side_of(&u.from_tag.tag)?;
                // The first U may have had no To tag; a later one (re-INVITE) brings it.
                let bind_b = match (side, &st.b_tag, &u.to_tag) {
                    (Side::A, None, Some(t)) => Some(t.tag.clone()),
                    _ => None,
                };
                Some(Found { idx, side, bind_b })
            })
        });
        match found {
            Some(f) => self.apply(u, f, ips, backend, now),
            None => self.create(u, ips, backend, now),
        }
    }

    pub(super) fn answer(
        &mut self,
        u: &Update,
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> Reply {
        if let Some(refused) = self.refuse_loop(u, "L") {
            return refused;
        }
        let ips = match self.local_ips(&u.modifiers) {
            Ok(ips) => ips,
            Err(code) => return code.into(),
        };
        let Some(to) = u.to_tag.as_ref() else {
            return ErrorCode::ARGUMENT_COUNT.into();
        };
        let from = &u.from_tag.tag;
        let n = u.stream_number();
        let found = self.calls.get(u.call.id.as_str()).and_then(|streams| {
            let candidates = || {
                streams
                    .iter()
                    .enumerate()
                    .filter(|(_, st)| st.branch == u.call.branch && st.number == n)
            };
            // Exact dialog match in either order, then a stream whose answerer is not known
            // yet, then (forking: a later 2xx from another branch) re-binding B.
            candidates()
                .find_map(|(idx, st)| {
                    if *st.a_tag == **from && b_tag(st) == Some(&to.tag) {
                        Some(Found {
                            idx,
                            side: Side::B,
                            bind_b: None,
                        })
                    } else if *st.a_tag == *to.tag && b_tag(st) == Some(from) {
                        Some(Found {
                            idx,
                            side: Side::A,
                            bind_b: None,
                        })
                    } else {
                        None
                    }
                })
                .or_else(|| {
                    candidates().find_map(|(idx, st)| match b_tag(st) {
                        None if *st.a_tag == **from => Some(Found {
                            idx,
                            side: Side::B,
                            bind_b: Some(to.tag.clone()),
                        }),
                        None if *st.a_tag == *to.tag => Some(Found {
                            idx,
                            side: Side::A,
                            bind_b: Some(from.clone()),
                        }),
                        _ => None,
                    })
                })
                .or_else(|| {
                    candidates().find_map(|(idx, st)| {
                        (*st.a_tag == **from).then(|| Found {
                            idx,
                            side: Side::B,
                            bind_b: Some(to.tag.clone()),
                        })
                    })
                })
        });
        match found {
            Some(f) => self.apply(u, f, ips, backend, now),
            None => {
                let none = if u.addr.is_ipv6() {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                };
                Reply::Port {
                    port: 0,
                    addr: Some(none),
                }
            }
        }
    }

    /// `E35` when the command names one of the relay's own media sockets as the party's
    /// address (see [`super::SessionConfig::is_own_socket`]).
    fn refuse_loop(&mut self, u: &Update, cmd: &str) -> Option<Reply> {
        if !self.cfg.is_own_socket(u.addr, u.port) {
            return None;
        }
        self.totals.loops_refused += 1;
        tracing::warn!(
            call_id = %u.call.id,
            command = cmd,
            addr = %u.addr,
            port = u.port,
            "refused: the address is one of this relay's own media sockets (call anchored twice?)"
        );
        Some(ErrorCode::MEDIA_LOOP.into())
    }

    /// Local addresses requested for (this command's leg, the other leg). `None`: keep the
    /// leg's current address (the internal interface for a new leg).
    fn local_ips(&self, m: &Modifiers) -> Result<(Option<IpAddr>, Option<IpAddr>), ErrorCode> {
        let iface = |i: Option<&Interface>| -> Result<Option<IpAddr>, ErrorCode> {
            match i {
                None => Ok(None),
                Some(Interface::Internal) => Ok(Some(self.cfg.internal)),
                Some(Interface::External) => self
                    .cfg
                    .external
                    .map(Some)
                    .ok_or(ErrorCode::INVALID_LOCAL_ADDRESS),
            }
        };
        let this = match m.local {
            // The advertised address is the internal socket seen through NAT.
            Some(l) if l == self.cfg.internal || Some(l) == self.cfg.advertise => {
                Some(self.cfg.internal)
            }
            Some(l) if Some(l) == self.cfg.external => Some(l),
            Some(_) => return Err(ErrorCode::INVALID_LOCAL_ADDRESS),
            None => iface(m.interfaces.first())?,
        };
        Ok((this, iface(m.interfaces.get(1))?))
    }

    fn create(
        &mut self,
        u: &Update,
        (this_ip, other_ip): (Option<IpAddr>, Option<IpAddr>),
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> Reply {
        if self.draining && !self.calls.contains_key(u.call.id.as_str()) {
            tracing::info!(call_id = %u.call.id, "draining: new call refused");
            return ErrorCode::OVERLOAD.into();
        }
        if !self.calls.contains_key(u.call.id.as_str()) && self.calls.len() >= self.cfg.max_sessions
        {
            tracing::warn!(call_id = %u.call.id, limit = self.cfg.max_sessions, "session limit reached");
            return ErrorCode::OVERLOAD.into();
        }
        if let Some(refused) = self.over_quota(&u.call.id) {
            return refused;
        }
        let a = LegSpec {
            remote: remote_of(u.addr, u.port),
            symmetric: !u.modifiers.asymmetric,
            local_ip: this_ip.unwrap_or(self.cfg.internal),
        };
        let b = LegSpec {
            remote: None,
            symmetric: true,
            local_ip: other_ip.unwrap_or(self.cfg.internal),
        };
        let (leg_a, leg_b) = match backend.create(shard_hint(&u.call.id), a, b) {
            Ok(legs) => legs,
            Err(e) => {
                tracing::warn!(call_id = %u.call.id, error = %e, "cannot allocate stream");
                return backend_error(&e).into();
            }
        };
        let weak = u.modifiers.weak;
        let owner = self.own(&u.call.id);
        let stream = Stream {
            branch: u.call.branch.clone(),
            number: u.stream_number(),
            a_tag: u.from_tag.tag.as_str().into(),
            b_tag: u.to_tag.as_ref().map(|t| t.tag.as_str().into()),
            legs: [leg_a, leg_b],
            specs: [a, b],
            strong: !weak,
            weak: [weak, false],
            created: now,
            owner,
            signalled: now,
        };
        // Most calls have one stream: a default Vec would reserve room for four (896 bytes).
        // The Call-ID is stored once, shared by the three maps that need it.
        let key = match self.calls.get_key_value(u.call.id.as_str()) {
            Some((k, _)) => k.clone(),
            None => CallKey::from(u.call.id.as_str()),
        };
        self.calls
            .entry(key.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push(stream);
        self.by_leg.insert(leg_a, key);
        self.stream_count += 1;
        self.totals.streams_created += 1;
        tracing::debug!(call_id = %u.call.id, a_port = leg_a.port, b_port = leg_b.port, "stream created");
        Reply::Port {
            port: leg_b.port,
            addr: self.announce(b.local_ip),
        }
    }

    fn apply(
        &mut self,
        u: &Update,
        f: Found,
        (this_ip, other_ip): (Option<IpAddr>, Option<IpAddr>),
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> Reply {
        let Some(st) = self
            .calls
            .get_mut(u.call.id.as_str())
            .and_then(|s| s.get_mut(f.idx))
        else {
            return ErrorCode::SESSION_UNKNOWN.into();
        };
        let (me, other) = (f.side.idx(), f.side.other().idx());
        let mut spec = st.specs[me];
        spec.remote = remote_of(u.addr, u.port);
        spec.symmetric = !u.modifiers.asymmetric;
        if let Some(ip) = this_ip {
            spec.local_ip = ip;
        }
        let mut result = backend.update(st.legs[me], spec);
        if result.is_ok() {
            st.specs[me] = spec;
            if let Some(ip) = other_ip.filter(|ip| *ip != st.specs[other].local_ip) {
                let mut o = st.specs[other];
                o.local_ip = ip;
                result = backend.update(st.legs[other], o);
                if result.is_ok() {
                    st.specs[other] = o;
                }
            }
        }
        if let Err(e) = result {
            tracing::warn!(call_id = %u.call.id, error = %e, "media plane refused update");
            if e == BackendError::UnknownLeg {
                // The media plane lost (part of) the stream: free whatever is left of it and
                // forget it, so the next offer starts afresh.
                self.remove_stream(&u.call.id, f.idx, backend, EndReason::MediaPlaneLost, now);
            }
            return backend_error(&e).into();
        }
        if let Some(tag) = f.bind_b {
            if st.b_tag.as_ref().is_some_and(|old| **old != *tag) {
                tracing::info!(call_id = %u.call.id, to_tag = %tag, "answer from another fork re-binds leg B");
            }
            st.b_tag = Some(tag.into_boxed_str());
        }
        if u.modifiers.weak {
            st.weak[me] = true;
        } else {
            st.strong = true;
        }
        st.signalled = now;
        let (port, ip) = (st.legs[other].port, st.specs[other].local_ip);
        Reply::Port {
            port,
            addr: self.announce(ip),
        }
    }
}

fn b_tag(st: &Stream) -> Option<&str> {
    st.b_tag.as_deref()
}

/// The leg's remote: unknown for the unspecified address or port 0 (hold / not yet known).
fn remote_of(addr: IpAddr, port: u16) -> Option<SocketAddr> {
    (!addr.is_unspecified() && port != 0).then(|| SocketAddr::new(addr, port))
}
