//! The relay control client, sans-IO: rtpproxy commands over UDP to a weighted set of relays.
//!
//! Commands and replies go through the shared codec ([`sbc_shared::proto`]); this file
//! adds what a client needs on top (rtpproxy protocol note, "Framing"):
//! - a cookie per command (`<prefix>_<seq>`, the prefix random per process so a restarted
//!   edge never gets another instance's cached replies), retransmitted with the same cookie
//!   every `retransmit` up to `tries` sends, replies matched by cookie and source;
//! - a relay set: new calls ([`Target::Any`]) are spread by smooth weighted round robin over
//!   the relays that are up; a relay that lets a command time out is marked down, and the
//!   command of a new call is re-sent (new cookie) to the next relay that is up — existing calls
//!   ([`Target::Relay`]) stay on their relay, whose sessions they need;
//! - health: every `health_interval` each relay gets a `V`; the right answer (20040107)
//!   brings it (back) up, a timeout takes it down.
//!
//! Only U, L, D, Q, V and VF are sent: the subset stock rtpengine's UDP interface implements.
//!
//! Drive it like quinn-proto: [`RelayClient::send`] / [`RelayClient::handle_datagram`] /
//! [`RelayClient::handle_timeout`] as inputs; [`RelayClient::poll_transmit`],
//! [`RelayClient::poll_event`] and [`RelayClient::poll_timeout`] as outputs.

use super::metrics::MediaMetrics;
use sbc_shared::proto::{split_udp_reply, write_udp_command, Command, Reply, BASE_VERSION};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Index of a relay in the configured set.
pub type RelayId = usize;

/// Identifies one [`RelayClient::send`] until its [`ClientEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Where a command may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A new call: any relay that is up (weighted), failing over on timeout.
    Any,
    /// An existing call: the relay that holds its session.
    Relay(RelayId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Control addresses and weights.
    pub relays: Vec<(SocketAddr, u32)>,
    pub retransmit: Duration,
    /// Sends per relay (first + retransmissions).
    pub tries: u32,
    pub health_interval: Duration,
}

impl ClientConfig {
    pub fn from_config(cfg: &config::EdgeMediaConfig) -> Self {
        ClientConfig {
            relays: cfg.relays.iter().map(|r| (r.addr, r.weight)).collect(),
            retransmit: Duration::from_millis(cfg.retransmit_ms),
            tries: cfg.command_tries.max(1),
            health_interval: Duration::from_millis(cfg.health_interval_ms),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("no relay is up")]
    NoRelay,
    #[error("relay {0} did not answer")]
    Timeout(SocketAddr),
    #[error("unknown relay {0}")]
    UnknownRelay(RelayId),
}

/// The outcome of one [`RelayClient::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The relay answered (possibly `E<n>`; interpreting the reply is the caller's job).
    Reply {
        id: RequestId,
        relay: RelayId,
        reply: Reply,
        latency: Duration,
    },
    Failed {
        id: RequestId,
        error: ClientError,
    },
}

/// A relay as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayView {
    pub addr: SocketAddr,
    pub weight: i64,
    pub up: bool,
    pub disabled: bool,
    pub changed: Option<Instant>,
}

struct Relay {
    addr: SocketAddr,
    weight: i64,
    /// Smooth weighted round robin state (nginx's algorithm).
    current: i64,
    up: bool,
    /// When `up` last changed (`None`: since start).
    changed: Option<Instant>,
    /// Removed from `media.relays` by a reload: no new call goes there, no health ping; the
    /// calls it holds still reach it (ids of relays never change).
    retired: bool,
    /// Taken out of rotation by the operator (`edgectl relay-disable`): no new call.
    disabled: bool,
    next_ping: Instant,
    ping_pending: bool,
}

/// One command in flight on one relay.
struct Pending {
    /// `None` for a health ping.
    id: Option<RequestId>,
    command: Command,
    target: Target,
    relay: RelayId,
    datagram: Vec<u8>,
    first_sent: Instant,
    next_send: Instant,
    sends: u32,
    /// Relays already tried (failover of a [`Target::Any`] command).
    tried: Vec<RelayId>,
}

pub struct RelayClient {
    cfg: ClientConfig,
    relays: Vec<Relay>,
    prefix: String,
    seq: u64,
    next_id: u64,
    /// Keyed by cookie sequence number.
    pending: HashMap<u64, Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    metrics: Option<MediaMetrics>,
    /// Bumped on every change of [`Self::states`], so a shell republishes only then.
    state_version: u64,
}

impl RelayClient {
    /// `cookie_prefix`: random per process (e.g. `rand::random()`), fixed in tests. Relays
    /// start up; the first health pings go out on the first [`Self::handle_timeout`].
    pub fn new(
        cfg: ClientConfig,
        cookie_prefix: u32,
        metrics: Option<MediaMetrics>,
        now: Instant,
    ) -> Self {
        let relays = cfg
            .relays
            .iter()
            .map(|(addr, w)| Relay {
                addr: *addr,
                weight: i64::from((*w).max(1)),
                current: 0,
                up: true,
                changed: None,
                retired: false,
                disabled: false,
                next_ping: now,
                ping_pending: false,
            })
            .collect::<Vec<_>>();
        let client = RelayClient {
            cfg,
            relays,
            prefix: format!("{cookie_prefix:08x}"),
            seq: 0,
            next_id: 0,
            pending: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            metrics,
            state_version: 0,
        };
        client.publish();
        client
    }

    pub fn relay_addr(&self, relay: RelayId) -> Option<SocketAddr> {
        self.relays.get(relay).map(|r| r.addr)
    }

    /// A reloaded `media.relays`: weights of known relays change, new ones are added (up, pinged
    /// at once), missing ones are retired — no new call goes there, calls in progress keep it.
    pub fn set_relays(&mut self, relays: &[(SocketAddr, u32)], now: Instant) {
        for r in &mut self.relays {
            r.retired = !relays.iter().any(|(a, _)| *a == r.addr);
        }
        for (addr, w) in relays {
            let weight = i64::from((*w).max(1));
            match self.relays.iter_mut().find(|r| r.addr == *addr) {
                Some(r) => r.weight = weight,
                None => self.relays.push(Relay {
                    addr: *addr,
                    weight,
                    current: 0,
                    up: true,
                    changed: Some(now),
                    retired: false,
                    disabled: false,
                    next_ping: now,
                    ping_pending: false,
                }),
            }
            if let Some(r) = self.relays.iter_mut().find(|r| r.addr == *addr) {
                r.current = 0;
            }
        }
        self.state_version += 1;
        self.publish();
        tracing::info!(relays = ?relays, "relay set reloaded");
    }

    /// The operator takes a relay out of rotation for new calls or puts it back. False when no
    /// relay has that address.
    pub fn set_enabled(&mut self, addr: SocketAddr, enabled: bool, now: Instant) -> bool {
        let Some(r) = self
            .relays
            .iter_mut()
            .find(|r| r.addr == addr && !r.retired)
        else {
            return false;
        };
        if r.disabled == enabled {
            r.disabled = !enabled;
            r.changed = Some(now);
            self.state_version += 1;
            tracing::info!(relay = %addr, enabled, "relay {} by the operator", if enabled { "enabled" } else { "disabled" });
        }
        self.publish();
        true
    }

    /// Changes whenever [`Self::states`] would answer differently.
    pub fn state_version(&self) -> u64 {
        self.state_version
    }

    /// Every relay: address, weight, up, when that last changed (for the operator).
    pub fn states(&self) -> Vec<RelayView> {
        self.relays
            .iter()
            .filter(|r| !r.retired)
            .map(|r| RelayView {
                addr: r.addr,
                weight: r.weight,
                up: r.up,
                disabled: r.disabled,
                changed: r.changed,
            })
            .collect()
    }

    pub fn is_up(&self, relay: RelayId) -> bool {
        self.relays.get(relay).is_some_and(|r| r.up)
    }

    /// Commands in flight (health pings included).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Queue `command`; its outcome comes out of [`Self::poll_event`] with the returned id.
    pub fn send(&mut self, command: Command, target: Target, now: Instant) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let relay = match target {
            Target::Relay(r) if r < self.relays.len() => Some(r),
            Target::Relay(r) => {
                self.fail(id, ClientError::UnknownRelay(r), "no_relay");
                return id;
            }
            Target::Any => self.pick(&[]),
        };
        match relay {
            Some(r) => self.start(Some(id), command, target, r, Vec::new(), now),
            None => self.fail(id, ClientError::NoRelay, "no_relay"),
        }
        id
    }

    /// A datagram arrived on the client socket.
    pub fn handle_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        let Ok((cookie, reply)) = split_udp_reply(data) else {
            tracing::debug!(%from, "unparsable relay reply");
            return;
        };
        let Some(seq) = self.cookie_seq(cookie) else {
            return;
        };
        // Only the relay we asked may answer (the protocol has no other authentication).
        if self
            .pending
            .get(&seq)
            .is_none_or(|p| self.relays.get(p.relay).is_none_or(|r| r.addr != from))
        {
            return;
        }
        let Some(p) = self.pending.remove(&seq) else {
            return;
        };
        let latency = now.saturating_duration_since(p.first_sent);
        let Some(relay) = self.relays.get_mut(p.relay) else {
            return;
        };
        match p.id {
            None => {
                relay.ping_pending = false;
                let ok = reply == Reply::Number(u64::from(BASE_VERSION));
                self.set_up(p.relay, ok, now);
            }
            Some(id) => {
                if let Some(m) = &self.metrics {
                    m.command_seconds
                        .with_label_values(&[p.command.name()])
                        .observe(latency.as_secs_f64());
                    if reply.error().is_some() {
                        m.failures.with_label_values(&["error"]).inc();
                    }
                }
                // An answer is proof of life, even an error.
                self.set_up(p.relay, true, now);
                self.events.push_back(ClientEvent::Reply {
                    id,
                    relay: p.relay,
                    reply,
                    latency,
                });
            }
        }
    }

    /// Retransmit, time out, fail over and ping as due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.next_send <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            if p.sends < self.cfg.tries {
                p.sends += 1;
                p.next_send = now + self.cfg.retransmit;
                if let Some(r) = self.relays.get(p.relay) {
                    self.transmits.push_back(Transmit {
                        to: r.addr,
                        data: p.datagram.clone(),
                    });
                }
                continue;
            }
            let Some(p) = self.pending.remove(&seq) else {
                continue;
            };
            self.timed_out(p, now);
        }
        for r in 0..self.relays.len() {
            let Some(relay) = self.relays.get_mut(r) else {
                continue;
            };
            if relay.next_ping <= now && !relay.retired {
                relay.next_ping = now + self.cfg.health_interval;
                if !relay.ping_pending {
                    relay.ping_pending = true;
                    self.start(None, Command::Version, Target::Relay(r), r, Vec::new(), now);
                }
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retx = self.pending.values().map(|p| p.next_send);
        let pings = self.relays.iter().map(|r| r.next_ping);
        retx.chain(pings).min()
    }

    fn timed_out(&mut self, p: Pending, now: Instant) {
        let addr = self.relays.get(p.relay).map(|r| r.addr);
        if let Some(r) = self.relays.get_mut(p.relay) {
            if p.id.is_none() {
                r.ping_pending = false;
            }
        }
        tracing::warn!(relay = ?addr, command = p.command.name(), "relay command timed out");
        self.set_up(p.relay, false, now);
        let Some(id) = p.id else { return };
        if let Some(m) = &self.metrics {
            m.failures.with_label_values(&["timeout"]).inc();
        }
        if p.target == Target::Any {
            let mut tried = p.tried;
            tried.push(p.relay);
            if let Some(next) = self.pick(&tried) {
                self.start(Some(id), p.command, p.target, next, tried, now);
                return;
            }
        }
        let error = addr.map_or(ClientError::UnknownRelay(p.relay), ClientError::Timeout);
        self.events.push_back(ClientEvent::Failed { id, error });
    }

    fn start(
        &mut self,
        id: Option<RequestId>,
        command: Command,
        target: Target,
        relay: RelayId,
        tried: Vec<RelayId>,
        now: Instant,
    ) {
        let Some(addr) = self.relays.get(relay).map(|r| r.addr) else {
            return;
        };
        let seq = self.seq;
        self.seq += 1;
        let cookie = format!("{}_{seq}", self.prefix);
        let mut datagram = Vec::with_capacity(128);
        write_udp_command(cookie.as_bytes(), &command, &mut datagram);
        self.transmits.push_back(Transmit {
            to: addr,
            data: datagram.clone(),
        });
        self.pending.insert(
            seq,
            Pending {
                id,
                command,
                target,
                relay,
                datagram,
                first_sent: now,
                next_send: now + self.cfg.retransmit,
                sends: 1,
                tried,
            },
        );
    }

    fn fail(&mut self, id: RequestId, error: ClientError, reason: &str) {
        if let Some(m) = &self.metrics {
            m.failures.with_label_values(&[reason]).inc();
        }
        self.events.push_back(ClientEvent::Failed { id, error });
    }

    /// Smooth weighted round robin over the relays that are up and not in `skip`.
    fn pick(&mut self, skip: &[RelayId]) -> Option<RelayId> {
        let live = |i: usize, r: &Relay| r.up && !r.retired && !r.disabled && !skip.contains(&i);
        let total: i64 = self
            .relays
            .iter()
            .enumerate()
            .filter(|(i, r)| live(*i, r))
            .map(|(_, r)| r.weight)
            .sum();
        let mut best: Option<RelayId> = None;
        let mut best_current = i64::MIN;
        for (i, r) in self.relays.iter_mut().enumerate() {
            if !live(i, r) {
                continue;
            }
            r.current += r.weight;
            if r.current > best_current {
                best_current = r.current;
                best = Some(i);
            }
        }
        if let Some(r) = best.and_then(|b| self.relays.get_mut(b)) {
            r.current -= total;
        }
        best
    }

    fn set_up(&mut self, relay: RelayId, up: bool, now: Instant) {
        let Some(r) = self.relays.get_mut(relay) else {
            return;
        };
        if r.up != up {
            tracing::info!(relay = %r.addr, up, "relay state changed");
            r.up = up;
            r.changed = Some(now);
            self.state_version += 1;
            r.current = 0;
        }
        self.publish();
    }

    /// `edge_relays_up` and `edge_relay_up{relay}` (1 while up, in rotation and not retired).
    fn publish(&self) {
        let Some(m) = &self.metrics else {
            return;
        };
        let mut up = 0;
        for r in &self.relays {
            let live = r.up && !r.retired;
            up += i64::from(live);
            m.relay_up
                .with_label_values(&[&r.addr.to_string()])
                .set(i64::from(live && !r.disabled));
        }
        m.relays_up.set(up);
    }

    fn cookie_seq(&self, cookie: &[u8]) -> Option<u64> {
        let rest = cookie.strip_prefix(self.prefix.as_bytes())?;
        let digits = rest.strip_prefix(b"_")?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
