//! NAT keepalives toward registered devices (RFC 5626 §3.5 motivates them; the edge pings on
//! the device's behalf because most phones behind NATs send nothing between REGISTERs).
//!
//! Every NATed binding is pinged once per `natping_interval`, at a phase derived from a hash
//! of its AoR and contact, so pings are spread evenly over the interval (no burst after a
//! restart) and a binding keeps its phase across restarts. With `natping_method = "options"`
//! an OPTIONS that gets any response (even 404/405: the NAT let it through) resets the
//! binding's failure count; `natping_max_failures` unanswered ones in a row remove the binding
//! (the caller then passes it to [`super::Registrar::remove_bindings`] to update the core).
//! CRLF and 4-byte pings keep the NAT open but detect nothing on UDP.
//!
//! Pings are stateless, as nathelper's: an OPTIONS is sent once, with no client transaction
//! and no Timer E retransmissions (100,000 bindings would otherwise keep ~10 retransmitting
//! transactions each alive). Its top Via branch carries an unguessable ping id
//! ([`ping_branch`]); a response with that branch is the answer, and a ping still unanswered
//! when the binding's next ping is due counts as one failure.
//!
//! The scheduler follows the location table through its [`Change`]s (O(1) per change), never
//! by walking or copying the table.
//!
//! Sans-IO: [`Keepalive::poll`] returns the pings due, [`Keepalive::on_answer`] takes an
//! answer, [`Keepalive::on_change`] a change of the location table.

use super::location::{Binding, Location};
use super::metrics::RegistrarMetrics;
use super::mode::Change;
use crate::transport::Dest;
use bytes::{BufMut, Bytes, BytesMut};
use config::{NatPingMethod, RegistrarConfig};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Identifies one OPTIONS ping until its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PingId(pub u64);

/// One keepalive to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub id: PingId,
    pub method: NatPingMethod,
    /// The binding's received source and flow.
    pub dest: Dest,
    /// Send from this local address (the one the REGISTER arrived on).
    pub local: SocketAddr,
    pub aor: String,
    /// The device's Contact URI (Request-URI and To of an OPTIONS).
    pub contact: String,
}

impl Ping {
    /// The bytes to send: CRLFCRLF, four zero bytes, or an OPTIONS with the caller's Via (whose
    /// branch is [`ping_branch`] of this ping's id) and `from` URI (e.g. `sip:ping@edge-host`).
    /// Sent once, statelessly; report a response with [`Keepalive::on_answer`].
    pub fn payload(&self, via: &str, from: &str) -> Bytes {
        match self.method {
            NatPingMethod::Crlf => Bytes::from_static(b"\r\n\r\n"),
            NatPingMethod::FourByte => Bytes::from_static(&[0, 0, 0, 0]),
            NatPingMethod::Options => {
                let id = format!("{:x}", self.id.0);
                let mut b = BytesMut::with_capacity(384);
                let lines: [&[&str]; 8] = [
                    &["OPTIONS ", &self.contact, " SIP/2.0"],
                    &["Via: ", via],
                    &["Max-Forwards: 70"],
                    &["From: <", from, ">;tag=ka", &id],
                    &["To: <", &self.contact, ">"],
                    &["Call-ID: ka-", &id, "@edge"],
                    &["CSeq: 1 OPTIONS"],
                    &["Content-Length: 0"],
                ];
                for parts in lines {
                    for p in parts {
                        b.put_slice(p.as_bytes());
                    }
                    b.put_slice(b"\r\n");
                }
                b.put_slice(b"\r\n");
                b.freeze()
            }
        }
    }
}

type Key = (String, String);

struct Entry {
    next: Instant,
    failures: u32,
    outstanding: Option<PingId>,
}

/// What [`Keepalive::poll`] produced.
#[derive(Debug, Default)]
pub struct Polled {
    pub pings: Vec<Ping>,
    /// Bindings that reached `natping_max_failures`: already gone from the scheduler; pass
    /// them to [`super::Registrar::remove_bindings`].
    pub dead: Vec<Binding>,
}

/// The keepalive scheduler.
pub struct Keepalive {
    loc: Arc<Location>,
    interval: Duration,
    method: NatPingMethod,
    max_failures: u32,
    entries: HashMap<Key, Entry>,
    heap: BinaryHeap<Reverse<(Instant, Key)>>,
    outstanding: HashMap<PingId, Key>,
    /// Bindings given up on, with the CSeq they had: not rescheduled until the caller removes
    /// them or the device registers again (a new CSeq).
    dead: HashMap<Key, u32>,
    /// Bindings seen in the change feed since the last poll.
    fresh: Vec<Key>,
    next_id: u64,
    /// Mixed into ping ids so that a third party cannot guess them and answer for a device.
    salt: u64,
    /// Phases are counted from the first binding seen, so pings are evenly spread from then on.
    epoch: Option<Instant>,
    metrics: RegistrarMetrics,
}

/// Prefix of the top Via branch of a keepalive OPTIONS (RFC 3261 §8.1.1.7 magic cookie first).
const BRANCH_PREFIX: &str = "z9hG4bKka.";

/// The top Via branch of the OPTIONS ping `id`.
pub fn ping_branch(id: PingId) -> String {
    format!("{BRANCH_PREFIX}{:x}", id.0)
}

/// The ping id of a response's top Via branch, if it is one of our keepalives'.
pub fn ping_of_branch(branch: &str) -> Option<PingId> {
    let hex = branch.strip_prefix(BRANCH_PREFIX)?;
    (hex.len() <= 16).then(|| u64::from_str_radix(hex, 16).ok().map(PingId))?
}

/// SplitMix64 at step `n` from seed `salt`: a bijection of `n`, so distinct counters give
/// distinct ids.
fn mix(n: u64, salt: u64) -> u64 {
    let mut z = salt.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Keepalive {
    /// `salt` (random in production) makes ping ids unguessable.
    pub fn new(
        cfg: &RegistrarConfig,
        loc: Arc<Location>,
        salt: u64,
        metrics: RegistrarMetrics,
    ) -> Self {
        Keepalive {
            loc,
            interval: Duration::from_secs(u64::from(cfg.natping_interval_s)),
            method: cfg.natping_method,
            max_failures: cfg.natping_max_failures.max(1),
            entries: HashMap::new(),
            heap: BinaryHeap::new(),
            outstanding: HashMap::new(),
            dead: HashMap::new(),
            fresh: Vec::new(),
            next_id: 1,
            salt,
            epoch: None,
            metrics,
        }
    }

    /// Bindings currently scheduled.
    pub fn scheduled(&self) -> usize {
        self.entries.len()
    }

    /// The binding's phase within the interval: a stable FNV-1a hash of its identity.
    fn phase(&self, aor: &str, contact: &str) -> Duration {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in aor.bytes().chain([0]).chain(contact.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let ms = self.interval.as_millis().max(1) as u64;
        Duration::from_millis(h % ms)
    }

    /// First ping time of a new binding: its phase in the current interval, or the next one.
    fn first_due(&self, key: &Key, now: Instant, epoch: Instant) -> Instant {
        let phase = self.phase(&key.0, &key.1);
        let period = self.interval.max(Duration::from_millis(1));
        let since = now.saturating_duration_since(epoch);
        let cycles = since.as_millis() / period.as_millis();
        let mut at = epoch + period * cycles as u32 + phase;
        if at < now {
            at += period;
        }
        at
    }

    /// A change of the location table (from the registrar's change feed, or a binding
    /// restored at start-up as an upsert): schedule new NATed bindings, drop removed ones.
    pub fn on_change(&mut self, change: &Change) {
        match change {
            Change::Upsert(b) => self.on_upsert(b),
            Change::Remove { aor, contact } => {
                let key = (aor.clone(), contact.clone());
                self.forget(&key);
                self.dead.remove(&key);
            }
        }
    }

    /// A binding was inserted or refreshed; a new NATed one is scheduled at the next poll.
    pub fn on_upsert(&mut self, b: &Binding) {
        if self.interval.is_zero() {
            return;
        }
        let key = (b.aor.clone(), b.contact.clone());
        if !b.nated {
            self.forget(&key);
            self.dead.remove(&key);
            return;
        }
        // Given up on: only a new registration (a new CSeq) brings it back.
        if let Some(&cseq) = self.dead.get(&key) {
            if cseq == b.cseq {
                return;
            }
            self.dead.remove(&key);
        }
        if !self.entries.contains_key(&key) {
            self.fresh.push(key);
        }
    }

    /// Schedules the bindings seen since the last poll (still NATed and still there).
    fn schedule_fresh(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        for key in std::mem::take(&mut self.fresh) {
            if self.entries.contains_key(&key)
                || !self
                    .loc
                    .find(&key.0, &key.1, None, None)
                    .is_some_and(|b| b.nated)
            {
                continue;
            }
            let next = self.first_due(&key, now, epoch);
            self.heap.push(Reverse((next, key.clone())));
            self.entries.insert(
                key,
                Entry {
                    next,
                    failures: 0,
                    outstanding: None,
                },
            );
        }
    }

    /// The pings due at `now` (and bindings found dead). Call at [`Keepalive::next_due`].
    pub fn poll(&mut self, now: Instant) -> Polled {
        let mut out = Polled::default();
        if self.interval.is_zero() {
            return out;
        }
        self.schedule_fresh(now);
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.heap.pop() else {
                break;
            };
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            if entry.next != at {
                continue; // superseded
            }
            let binding = self.loc.find(&key.0, &key.1, None, None);
            let Some(b) = binding.filter(|b| b.nated) else {
                self.forget(&key);
                continue;
            };
            // An OPTIONS still unanswered one interval later counts as failed.
            if let Some(id) = entry.outstanding {
                self.outstanding.remove(&id);
                if self.fail(&key) {
                    out.dead.push(b);
                    continue;
                }
            }
            let id = PingId(mix(self.next_id, self.salt));
            self.next_id += 1;
            let next = at + self.interval;
            if let Some(e) = self.entries.get_mut(&key) {
                e.next = next;
                if self.method == NatPingMethod::Options {
                    e.outstanding = Some(id);
                }
            }
            if self.method == NatPingMethod::Options {
                self.outstanding.insert(id, key.clone());
            }
            self.heap.push(Reverse((next, key)));
            self.metrics.keepalives_sent.inc();
            out.pings.push(Ping {
                id,
                method: self.method,
                dest: b.dest(),
                local: b.local,
                aor: b.aor,
                contact: b.contact,
            });
        }
        out
    }

    /// The next time [`Keepalive::poll`] has work: now if bindings wait to be scheduled.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if !self.fresh.is_empty() {
            return Some(now);
        }
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Counts a failure; true (and the binding forgotten) when it reached the limit.
    fn fail(&mut self, key: &Key) -> bool {
        self.metrics.keepalives_failed.inc();
        let Some(e) = self.entries.get_mut(key) else {
            return false;
        };
        e.outstanding = None;
        e.failures += 1;
        if e.failures >= self.max_failures {
            self.forget(key);
            if let Some(b) = self.loc.find(&key.0, &key.1, None, None) {
                self.dead.insert(key.clone(), b.cseq);
            }
            self.metrics.removed_by_ping.inc();
            return true;
        }
        false
    }

    fn forget(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            if let Some(id) = e.outstanding {
                self.outstanding.remove(&id);
            }
        }
    }

    /// A response whose top Via branch named ping `id` arrived from `from`. Counts only from
    /// the address the ping went to (anyone can send a response); true when it was accepted.
    pub fn on_answer(&mut self, id: PingId, from: SocketAddr) -> bool {
        let Some(key) = self.outstanding.get(&id) else {
            return false;
        };
        let sent_to = self.loc.find(&key.0, &key.1, None, None).map(|b| b.dest());
        if sent_to.is_none_or(|d| d.addr != from) {
            return false;
        }
        let Some(key) = self.outstanding.remove(&id) else {
            return false;
        };
        if let Some(e) = self.entries.get_mut(&key) {
            e.failures = 0;
            e.outstanding = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::location::tests::binding;
    use crate::sip::{parse, Limits, Method};

    fn setup(n: usize, method: NatPingMethod) -> (Keepalive, Arc<Location>, Instant) {
        let now = Instant::now();
        let loc = Arc::new(Location::new(10));
        let cfg = RegistrarConfig {
            natping_interval_s: 30,
            natping_method: method,
            natping_max_failures: 3,
            ..RegistrarConfig::default()
        };
        let mut ka = Keepalive::new(&cfg, loc.clone(), 7, RegistrarMetrics::unregistered());
        for i in 0..n {
            let mut b = binding(
                &format!("sip:u{i}@d"),
                &format!("sip:u{i}@10.0.0.{i}"),
                now,
                3600,
            );
            b.nated = true;
            ka.on_change(&Change::Upsert(Box::new(b.clone())));
            loc.upsert(b);
        }
        // One binding without NAT: never pinged.
        let public = binding("sip:pub@d", "sip:pub@198.51.100.9", now, 3600);
        ka.on_upsert(&public);
        loc.upsert(public);
        (ka, loc, now)
    }

    #[test]
    fn pings_spread_evenly_once_per_interval() {
        let (mut ka, _loc, t0) = setup(300, NatPingMethod::Crlf);
        let mut per_slot = [0usize; 10];
        let mut per_binding: HashMap<String, usize> = HashMap::new();
        // Two full intervals in 100 ms steps.
        for step in 0..600u64 {
            let now = t0 + Duration::from_millis(step * 100);
            for p in ka.poll(now).pings {
                assert_eq!(p.payload("v", "f"), Bytes::from_static(b"\r\n\r\n"));
                assert_ne!(p.aor, "sip:pub@d");
                if step < 300 {
                    per_slot[(step / 30) as usize] += 1;
                }
                *per_binding.entry(p.aor).or_default() += 1;
            }
        }
        assert_eq!(ka.scheduled(), 300);
        assert_eq!(per_binding.len(), 300);
        assert!(per_binding.values().all(|&n| n == 2), "once per interval");
        // 300 pings over ten 3-s slots: about 30 each, none empty or bursty.
        assert!(
            per_slot.iter().all(|&n| (10..=60).contains(&n)),
            "{per_slot:?}"
        );
    }

    #[test]
    fn failed_options_remove_binding_after_max_failures() {
        let (mut ka, loc, t0) = setup(2, NatPingMethod::Options);
        let mut now = t0;
        let mut removed = Vec::new();
        let mut answered_u1 = 0;
        for _ in 0..1200 {
            now += Duration::from_millis(100);
            let polled = ka.poll(now);
            removed.extend(polled.dead);
            for p in polled.pings {
                let via = format!("SIP/2.0/UDP 10.0.0.1:5060;branch={}", ping_branch(p.id));
                let req = parse(p.payload(&via, "sip:ping@edge"), &Limits::default()).unwrap();
                assert_eq!(req.method(), Some(&Method::Options));
                assert_eq!(req.request_uri().unwrap(), p.contact.as_bytes());
                let branch = req.top_via().unwrap().branch.unwrap().to_string();
                assert_eq!(ping_of_branch(&branch), Some(p.id));
                if p.aor == "sip:u1@d" {
                    assert!(ka.on_answer(p.id, p.dest.addr));
                    answered_u1 += 1;
                }
            }
        }
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].aor, "sip:u0@d");
        assert_eq!(answered_u1, 4);
        assert_eq!(ka.metrics.removed_by_ping.get(), 1);
        assert_eq!(ka.metrics.keepalives_failed.get(), 3);
        // The scheduler forgot it; the caller removes it from the table (Registrar).
        assert_eq!(loc.len(), 3);
        assert_eq!(ka.scheduled(), 1);
    }

    #[test]
    fn unanswered_options_count_as_failed_at_next_ping() {
        let (mut ka, loc, t0) = setup(1, NatPingMethod::Options);
        let mut dead = Vec::new();
        let mut sent = 0;
        for s in 0..200u64 {
            let polled = ka.poll(t0 + Duration::from_secs(s));
            sent += polled.pings.len();
            dead.extend(polled.dead);
        }
        // Three unanswered pings, the fourth due time finds the limit reached.
        assert_eq!(sent, 3);
        assert_eq!(dead.len(), 1);
        // A late answer for a forgotten ping is ignored.
        let addr = loc.get("sip:u0@d")[0].dest().addr;
        assert!(!ka.on_answer(PingId(mix(1, 7)), addr));
        // A re-sent registration with the same CSeq does not bring it back…
        let mut b = loc.get("sip:u0@d").remove(0);
        ka.on_upsert(&b);
        let resent: usize = (200..260u64)
            .map(|s| ka.poll(t0 + Duration::from_secs(s)).pings.len())
            .sum();
        assert_eq!(resent, 0);
        // …a new registration does.
        b.cseq += 1;
        ka.on_upsert(&b);
        loc.upsert(b);
        let again: usize = (260..290u64)
            .map(|s| ka.poll(t0 + Duration::from_secs(s)).pings.len())
            .sum();
        assert_eq!(again, 1);
    }

    #[test]
    fn removed_binding_stops_pings_and_zero_interval_disables() {
        let (mut ka, loc, t0) = setup(1, NatPingMethod::FourByte);
        assert!(ka.poll(t0).pings.len() <= 1);
        loc.remove("sip:u0@d", "sip:u0@10.0.0.0");
        ka.on_change(&Change::Remove {
            aor: "sip:u0@d".into(),
            contact: "sip:u0@10.0.0.0".into(),
        });
        assert_eq!(ka.scheduled(), 0);
        let mut n = 0;
        for s in 1..100u64 {
            n += ka.poll(t0 + Duration::from_secs(s)).pings.len();
        }
        assert_eq!(n, 0);
        assert_eq!(ka.scheduled(), 0);
        let cfg = RegistrarConfig {
            natping_interval_s: 0,
            ..RegistrarConfig::default()
        };
        let mut off = Keepalive::new(&cfg, loc.clone(), 7, RegistrarMetrics::unregistered());
        let mut b = binding("sip:x@d", "sip:x@10.0.0.1", t0, 3600);
        b.nated = true;
        off.on_upsert(&b);
        assert_eq!(off.scheduled(), 0);
        assert!(off.poll(t0 + Duration::from_secs(100)).pings.is_empty());
    }

    #[test]
    fn answers_count_only_from_the_pinged_address_with_the_right_id() {
        let (mut ka, loc, t0) = setup(1, NatPingMethod::Options);
        let mut pings = Vec::new();
        for s in 0..31u64 {
            pings.extend(ka.poll(t0 + Duration::from_secs(s)).pings);
        }
        let p = pings.pop().expect("one ping in the first interval");
        let addr = loc.get("sip:u0@d")[0].dest().addr;
        assert_eq!(p.dest.addr, addr);
        // Another source, or a guessed neighbouring id: ignored, the ping stays outstanding.
        assert!(!ka.on_answer(p.id, "192.0.2.66:5060".parse().unwrap()));
        assert!(!ka.on_answer(PingId(p.id.0 ^ 1), addr));
        assert!(ka.on_answer(p.id, addr));
        // Answered once: a replay is ignored.
        assert!(!ka.on_answer(p.id, addr));
    }

    #[test]
    fn ping_ids_are_distinct_and_unpredictable_from_the_counter() {
        let ids: std::collections::HashSet<u64> = (1..10_000u64).map(|n| mix(n, 7)).collect();
        assert_eq!(ids.len(), 9_999);
        assert!(ids.iter().all(|&id| id > 10_000), "not the plain counter");
        assert_eq!(
            ping_of_branch(&ping_branch(PingId(u64::MAX))),
            Some(PingId(u64::MAX))
        );
        assert_eq!(ping_of_branch("z9hG4bKka.zz"), None);
        assert_eq!(ping_of_branch("z9hG4bKka.11112222333344445"), None);
        assert_eq!(ping_of_branch("z9hG4bK776asdhds"), None);
    }

    #[test]
    fn each_ping_is_sent_once_without_retransmission_and_dead_ones_stop() {
        // Stateless: whatever happens, a binding gets exactly one datagram per interval until
        // the failure limit, then none.
        let (mut ka, _loc, t0) = setup(50, NatPingMethod::Options);
        let mut per_binding: HashMap<String, usize> = HashMap::new();
        let mut dead = 0;
        for s in 0..600u64 {
            let polled = ka.poll(t0 + Duration::from_secs(s));
            dead += polled.dead.len();
            for p in polled.pings {
                *per_binding.entry(p.aor).or_default() += 1;
            }
        }
        assert_eq!(dead, 50);
        assert!(per_binding.values().all(|&n| n == 3), "{per_binding:?}");
        assert_eq!(ka.scheduled(), 0);
        assert_eq!(ka.metrics.keepalives_sent.get(), 150);
        assert_eq!(ka.metrics.keepalives_failed.get(), 150);
    }
}
