//! Core health by OPTIONS (sans-IO): every `routing.health_interval_s` the proxy sends an
//! OPTIONS to each core entry in a non-INVITE client transaction (RFC 3261 §11: OPTIONS is the
//! capability query every UA and proxy answers). Any response means the entry is alive (a 503
//! with Retry-After is handled like any 503); a timeout (Timer F) or a transport error marks it
//! down. One probe per entry is outstanding at a time, so a silent core costs one transaction.

use crate::transaction::TxId;
use crate::transport::{Dest, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Health {
    /// `None`: probing is off.
    interval: Option<Duration>,
    next_round: Option<Instant>,
    in_flight: HashMap<TxId, Dest>,
    sent: u64,
}

impl Health {
    pub fn new(interval_s: u64, now: Instant) -> Self {
        let interval = (interval_s > 0).then(|| Duration::from_secs(interval_s));
        Health {
            interval,
            next_round: interval.map(|i| now + i),
            in_flight: HashMap::new(),
            sent: 0,
        }
    }

    /// The entries to probe now (a new round is due and no probe to them is outstanding).
    pub fn due(&mut self, now: Instant, cores: &[Dest]) -> Vec<Dest> {
        let (Some(interval), Some(next)) = (self.interval, self.next_round) else {
            return Vec::new();
        };
        if now < next {
            return Vec::new();
        }
        self.next_round = Some(now + interval);
        cores
            .iter()
            .filter(|c| !self.in_flight.values().any(|d| d == *c))
            .copied()
            .collect()
    }

    /// A probe to `dest` was sent in transaction `tx`.
    pub fn sent(&mut self, tx: TxId, dest: Dest) {
        self.sent += 1;
        self.in_flight.insert(tx, dest);
    }

    /// Transaction `tx` got a response or failed: the probed entry, if it was a probe.
    pub fn done(&mut self, tx: TxId) -> Option<Dest> {
        self.in_flight.remove(&tx)
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
    fn rounds_and_one_probe_in_flight_per_entry() {
        let t0 = Instant::now();
        let cores = [dest("10.0.0.5:5060"), dest("10.0.0.6:5060")];
        let mut h = Health::new(10, t0);
        assert!(
            h.due(t0, &cores).is_empty(),
            "first round after one interval"
        );
        let s = Duration::from_secs;
        assert_eq!(h.due(t0 + s(10), &cores), cores.to_vec());
        assert!(h.due(t0 + s(11), &cores).is_empty());
        h.sent(TxId(1), cores[0]);
        // Next round: the first still has a probe outstanding.
        assert_eq!(h.due(t0 + s(20), &cores), vec![cores[1]]);
        assert_eq!(h.done(TxId(1)), Some(cores[0]));
        assert_eq!(h.done(TxId(1)), None);
        assert_eq!(h.due(t0 + s(30), &cores), cores.to_vec());
    }

    #[test]
    fn zero_interval_is_off() {
        let t0 = Instant::now();
        let mut h = Health::new(0, t0);
        let cores = [dest("10.0.0.5:5060")];
        assert!(h.due(t0 + Duration::from_secs(3600), &cores).is_empty());
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
