//! Core health by OPTIONS (sans-IO): every `routing.health_interval_s` the proxy sends an
//! OPTIONS to each core entry in a non-INVITE client transaction (RFC 3261 §11: OPTIONS is the
//! capability query every UA and proxy answers). Any response means the entry is alive (a 503
//! with Retry-After is handled like any 503).
//!
//! A probe still unanswered when the next round is due counts as a **miss** and is abandoned
//! (its transaction terminated: probes do not pile up retransmitting for Timer F's 32 s).
//! `routing.health_misses` consecutive misses make the entry dead: the proxy marks it down and
//! fails over what is in flight toward it. Detection thus takes misses × interval, not Timer F
//! (Kamailio's dispatcher and OpenSIPS' `ds_probing_threshold` count misses the same way). A
//! transport error (ICMP port unreachable, refused TCP connect) fails the probe at once.

use crate::transaction::TxId;
use crate::transport::{Dest, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Health {
    /// `None`: probing is off.
    interval: Option<Duration>,
    misses_to_down: u32,
    next_round: Option<Instant>,
    in_flight: HashMap<TxId, Dest>,
    /// Consecutive misses per entry (by address and transport).
    misses: HashMap<(Transport, std::net::SocketAddr), u32>,
    sent: u64,
}

/// What a due round asks of the proxy.
#[derive(Debug, Default, PartialEq)]
pub struct Round {
    /// Probe these entries now.
    pub probe: Vec<Dest>,
    /// Terminate these probe transactions: unanswered for a whole interval.
    pub abandon: Vec<TxId>,
    /// These entries just reached the miss limit: down, fail over their in-flight requests.
    pub dead: Vec<Dest>,
}

impl Health {
    pub fn new(interval_s: u64, misses_to_down: u32, now: Instant) -> Self {
        let interval = (interval_s > 0).then(|| Duration::from_secs(interval_s));
        Health {
            interval,
            misses_to_down: misses_to_down.max(1),
            next_round: interval.map(|i| now + i),
            in_flight: HashMap::new(),
            misses: HashMap::new(),
            sent: 0,
        }
    }

    /// When the next round is due (`None`: probing is off).
    pub fn next_round(&self) -> Option<Instant> {
        self.next_round
    }

    /// The round due now, if any: previous probes still outstanding become misses.
    pub fn due(&mut self, now: Instant, cores: &[Dest]) -> Round {
        let (Some(interval), Some(next)) = (self.interval, self.next_round) else {
            return Round::default();
        };
        if now < next {
            return Round::default();
        }
        self.next_round = Some(now + interval);
        let mut round = Round::default();
        for (tx, dest) in std::mem::take(&mut self.in_flight) {
            round.abandon.push(tx);
            if self.miss(dest) {
                round.dead.push(dest);
            }
        }
        round.abandon.sort_unstable_by_key(|t| t.0);
        round.probe = cores.to_vec();
        round
    }

    /// Count a miss for `dest`; true when this one reaches the limit (reported once).
    fn miss(&mut self, dest: Dest) -> bool {
        let n = self.misses.entry((dest.transport, dest.addr)).or_insert(0);
        *n += 1;
        *n == self.misses_to_down
    }

    /// A probe to `dest` was sent in transaction `tx`.
    pub fn sent(&mut self, tx: TxId, dest: Dest) {
        self.sent += 1;
        self.in_flight.insert(tx, dest);
    }

    /// Transaction `tx` got a response: the probed entry, if it was a probe (its misses reset).
    pub fn answered(&mut self, tx: TxId) -> Option<Dest> {
        let d = self.in_flight.remove(&tx)?;
        self.misses.remove(&(d.transport, d.addr));
        Some(d)
    }

    /// Transaction `tx` failed (transport error, or Timer F with long intervals): the probed
    /// entry, if it was a probe. The caller marks it down at once.
    pub fn failed(&mut self, tx: TxId) -> Option<Dest> {
        let d = self.in_flight.remove(&tx)?;
        let n = self.misses.entry((d.transport, d.addr)).or_insert(0);
        *n = (*n).max(self.misses_to_down);
        Some(d)
    }

    /// The entry probed by transaction `tx`, if it is a probe in flight.
    pub fn probe_dest(&self, tx: TxId) -> Option<Dest> {
        self.in_flight.get(&tx).copied()
    }

    /// Forget transaction `tx` (terminated): nothing is reported.
    pub fn done(&mut self, tx: TxId) {
        self.in_flight.remove(&tx);
    }

    /// Outstanding probes toward `addr` (to fail them on a transport error).
    pub fn in_flight_to(&self, addr: std::net::SocketAddr) -> Vec<TxId> {
        self.in_flight
            .iter()
            .filter(|(_, d)| d.addr == addr)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Probes sent so far (a distinct Call-ID each).
    pub fn count(&self) -> u64 {
        self.sent
    }
}

/// The OPTIONS probe toward `dest`; `via` is our Via value, `local` our host:port.
pub fn options(dest: &Dest, via: &str, local: &str, n: u64) -> Bytes {
    let transport = match dest.transport {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
    };
    let uri = format!("sip:{}{transport}", dest.addr);
    Bytes::from(format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
From: <sip:health@{local}>;tag=hc{n}\r\nTo: <{uri}>\r\nCall-ID: hc-{n}@{local}\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(s: &str) -> Dest {
        Dest {
            transport: Transport::Udp,
            addr: s.parse().unwrap(),
            flow: None,
        }
    }

    #[test]
    fn rounds_count_unanswered_probes_as_misses() {
        let t0 = Instant::now();
        let cores = [dest("10.0.0.5:5060"), dest("10.0.0.6:5060")];
        let mut h = Health::new(1, 2, t0);
        assert_eq!(
            h.due(t0, &cores),
            Round::default(),
            "first round after one interval"
        );
        let s = Duration::from_secs;
        let r = h.due(t0 + s(1), &cores);
        assert_eq!(r.probe, cores.to_vec());
        assert!(r.abandon.is_empty() && r.dead.is_empty());
        assert_eq!(
            h.due(t0 + s(1) + Duration::from_millis(500), &cores),
            Round::default()
        );
        h.sent(TxId(1), cores[0]);
        h.sent(TxId(2), cores[1]);
        // Only the second answers: the first's probe is a miss (abandoned), not yet dead.
        assert_eq!(h.answered(TxId(2)), Some(cores[1]));
        assert_eq!(h.answered(TxId(2)), None);
        let r = h.due(t0 + s(2), &cores);
        assert_eq!((r.abandon, r.dead), (vec![TxId(1)], vec![]));
        h.sent(TxId(3), cores[0]);
        h.sent(TxId(4), cores[1]);
        assert_eq!(h.answered(TxId(4)), Some(cores[1]));
        // Second consecutive miss: dead, reported once.
        let r = h.due(t0 + s(3), &cores);
        assert_eq!((r.abandon, r.dead), (vec![TxId(3)], vec![cores[0]]));
        h.sent(TxId(5), cores[0]);
        let r = h.due(t0 + s(4), &cores);
        assert_eq!((r.abandon, r.dead), (vec![TxId(5)], vec![]));
        // An answer resets the count: two more misses are needed again.
        h.sent(TxId(6), cores[0]);
        assert_eq!(h.answered(TxId(6)), Some(cores[0]));
        h.sent(TxId(7), cores[0]);
        assert!(h.due(t0 + s(5), &cores).dead.is_empty());
    }

    #[test]
    fn a_failed_probe_is_dead_at_once_and_not_counted_twice() {
        let t0 = Instant::now();
        let cores = [dest("10.0.0.5:5060")];
        let mut h = Health::new(1, 3, t0);
        h.due(t0 + Duration::from_secs(1), &cores);
        h.sent(TxId(1), cores[0]);
        assert_eq!(h.failed(TxId(1)), Some(cores[0]));
        assert_eq!(h.failed(TxId(1)), None);
        h.sent(TxId(2), cores[0]);
        assert!(h.due(t0 + Duration::from_secs(2), &cores).dead.is_empty());
        h.done(TxId(3));
        assert!(h.in_flight_to(cores[0].addr).is_empty());
    }

    #[test]
    fn zero_interval_is_off() {
        let t0 = Instant::now();
        let mut h = Health::new(0, 2, t0);
        let cores = [dest("10.0.0.5:5060")];
        assert_eq!(
            h.due(t0 + Duration::from_secs(3600), &cores),
            Round::default()
        );
    }

    #[test]
    fn probe_is_a_parseable_options() {
        let d = Dest {
            transport: Transport::Tcp,
            ..dest("10.0.0.5:5060")
        };
        let b = options(
            &d,
            "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKx;rport",
            "127.0.0.1:5060",
            3,
        );
        let limits = crate::sip::Limits {
            max_message_bytes: 65535,
            max_headers: 64,
        };
        let m = crate::sip::parse(b, &limits).unwrap();
        assert_eq!(m.request_uri().unwrap(), b"sip:10.0.0.5:5060;transport=tcp");
        assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bKx"));
    }
}
