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
//! Sans-IO: [`Keepalive::poll`] returns the pings due, [`Keepalive::on_ping_result`] takes the
//! outcome of an OPTIONS (a response, or a transaction timeout / transport error).

use super::location::{Binding, Location};
use super::metrics::RegistrarMetrics;
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
    /// The bytes to send: CRLFCRLF, four zero bytes, or an OPTIONS with the caller's Via and
    /// `from` URI (e.g. `sip:ping@edge-host`). Send the OPTIONS in a non-INVITE client
    /// transaction and report its outcome with [`Keepalive::on_ping_result`].
    pub fn payload(&self, via: &str, from: &str) -> Bytes {
        match self.method {
            NatPingMethod::Crlf => Bytes::from_static(b"\r\n\r\n"),
            NatPingMethod::FourByte => Bytes::from_static(&[0, 0, 0, 0]),
            NatPingMethod::Options => {
                let id = self.id.0.to_string();
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
    next_id: u64,
    /// Phases are counted from the first poll, so pings are evenly spread from then on.
    epoch: Option<Instant>,
    /// When the table was last scanned for new NATed bindings.
    scanned: Option<Instant>,
    metrics: RegistrarMetrics,
}

/// How often [`Keepalive::poll`] rescans the location table for new bindings.
const SCAN_EVERY: Duration = Duration::from_secs(1);

impl Keepalive {
    pub fn new(cfg: &RegistrarConfig, loc: Arc<Location>, metrics: RegistrarMetrics) -> Self {
        Keepalive {
            loc,
            interval: Duration::from_secs(u64::from(cfg.natping_interval_s)),
            method: cfg.natping_method,
            max_failures: cfg.natping_max_failures.max(1),
            entries: HashMap::new(),
            heap: BinaryHeap::new(),
            outstanding: HashMap::new(),
            dead: HashMap::new(),
            next_id: 1,
            epoch: None,
            scanned: None,
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

    fn scan(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        self.scanned = Some(now);
        let all = self.loc.all();
        self.dead.retain(|k, cseq| {
            all.iter()
                .any(|b| b.aor == k.0 && b.contact == k.1 && b.cseq == *cseq)
        });
        for b in all.into_iter().filter(|b| b.nated) {
            let key = (b.aor, b.contact);
            if !self.entries.contains_key(&key) && !self.dead.contains_key(&key) {
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
    }

    /// The pings due at `now` (and bindings found dead). Call at least every second or at
    /// [`Keepalive::next_due`].
    pub fn poll(&mut self, now: Instant) -> Polled {
        let mut out = Polled::default();
        if self.interval.is_zero() {
            return out;
        }
        if self.scanned.is_none_or(|t| now >= t + SCAN_EVERY) {
            self.scan(now);
        }
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
            let id = PingId(self.next_id);
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

    /// The next time [`Keepalive::poll`] has work (not counting the periodic rescan).
    pub fn next_due(&self) -> Option<Instant> {
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

    /// The outcome of an OPTIONS ping: `answered` for any response, false for a timeout or a
    /// transport error. Returns the binding when it must now be removed.
    pub fn on_ping_result(&mut self, id: PingId, answered: bool) -> Option<Binding> {
        let key = self.outstanding.remove(&id)?;
        if answered {
            if let Some(e) = self.entries.get_mut(&key) {
                e.failures = 0;
                e.outstanding = None;
            }
            return None;
        }
        let b = self.loc.find(&key.0, &key.1, None, None);
        if self.fail(&key) {
            b
        } else {
            None
        }
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
        for i in 0..n {
            let mut b = binding(
                &format!("sip:u{i}@d"),
                &format!("sip:u{i}@10.0.0.{i}"),
                now,
                3600,
            );
            b.nated = true;
            loc.upsert(b);
        }
        // One binding without NAT: never pinged.
        loc.upsert(binding("sip:pub@d", "sip:pub@198.51.100.9", now, 3600));
        let cfg = RegistrarConfig {
            natping_interval_s: 30,
            natping_method: method,
            natping_max_failures: 3,
            ..RegistrarConfig::default()
        };
        (
            Keepalive::new(&cfg, loc.clone(), RegistrarMetrics::unregistered()),
            loc,
            now,
        )
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
                let req = parse(
                    p.payload("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKk", "sip:ping@edge"),
                    &Limits::default(),
                )
                .unwrap();
                assert_eq!(req.method(), Some(&Method::Options));
                assert_eq!(req.request_uri().unwrap(), p.contact.as_bytes());
                if p.aor == "sip:u1@d" {
                    assert!(ka.on_ping_result(p.id, true).is_none());
                    answered_u1 += 1;
                } else if let Some(b) = ka.on_ping_result(p.id, false) {
                    removed.push(b);
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
        assert!(ka.on_ping_result(PingId(1), true).is_none());
        // Given up until the device registers again.
        let mut b = loc.get("sip:u0@d").remove(0);
        b.cseq += 1;
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
        let mut off = Keepalive::new(&cfg, loc, RegistrarMetrics::unregistered());
        assert!(off.poll(t0 + Duration::from_secs(100)).pings.is_empty());
    }
}
