//! One control endpoint, sans-IO: framing + reply cache + session manager.
//!
//! The IO shell (`server.rs`) hands it what arrived — a UDP datagram with its source, or one
//! line from a unix stream socket — and sends back what it returns. Each call reports an
//! [`Outcome`] for the metrics.

use super::cache::ReplyCache;
use super::proto::{framing, Command, Reply};
use super::session::{Client, SessionManager};
use crate::backend::MediaBackend;
use std::net::SocketAddr;
use std::time::Instant;

/// What happened to one input, for `rtprelay_control_commands_total{command, result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The command letter(s) (`"U"`, `"VF"`, ...), `"unknown"` when it did not parse, `"none"`
    /// for a datagram without cookie.
    pub command: &'static str,
    pub result: OutcomeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Executed, answered with a non-error reply.
    Ok,
    /// Answered `E<n>` (parse error or refused).
    Error,
    /// A retransmission answered from the reply cache.
    Retransmit,
    /// Dropped without answer (no cookie: nothing to address a reply with).
    Dropped,
}

impl OutcomeKind {
    pub fn label(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Error => "error",
            OutcomeKind::Retransmit => "retransmit",
            OutcomeKind::Dropped => "dropped",
        }
    }
}

/// Session manager plus UDP reply cache.
#[derive(Debug)]
pub struct Endpoint {
    pub sessions: SessionManager,
    cache: ReplyCache,
}

impl Endpoint {
    pub fn new(sessions: SessionManager, cache: ReplyCache) -> Self {
        Endpoint { sessions, cache }
    }

    /// A UDP datagram from `src`: returns the reply datagram (`None`: stay silent).
    pub fn datagram(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> (Option<Vec<u8>>, Outcome) {
        let Ok((cookie, body)) = framing::split_cookie(datagram) else {
            return (
                None,
                Outcome {
                    command: "none",
                    result: OutcomeKind::Dropped,
                },
            );
        };
        if let Some(cached) = self.cache.get(src, cookie, now) {
            let command = Command::parse(body).map_or("unknown", |c| c.name());
            return (
                Some(cached.to_vec()),
                Outcome {
                    command,
                    result: OutcomeKind::Retransmit,
                },
            );
        }
        let (reply, outcome) = self.execute(Client::Ip(src.ip()), body, backend, now);
        let mut out = Vec::with_capacity(64);
        framing::write_udp_reply(cookie, &reply, &mut out);
        self.cache.insert(src, cookie, out.clone(), now);
        (Some(out), outcome)
    }

    /// One command line from a stream socket (no cookie, no cache): the reply line.
    pub fn line(
        &mut self,
        line: &[u8],
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> (Vec<u8>, Outcome) {
        let (reply, outcome) = self.execute(Client::Local, line, backend, now);
        let mut out = Vec::with_capacity(64);
        framing::write_stream_reply(&reply, &mut out);
        (out, outcome)
    }

    /// Periodic work: drop streams the media plane timed out, purge the cache. Returns the
    /// number of streams that timed out.
    pub fn tick(&mut self, backend: &mut dyn MediaBackend, now: Instant) -> usize {
        self.cache.purge(now);
        self.sessions.expire(backend, now)
    }

    fn execute(
        &mut self,
        client: Client,
        body: &[u8],
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> (Reply, Outcome) {
        match Command::parse(body) {
            Ok(cmd) => {
                let reply = self.sessions.handle_from(client, &cmd, backend, now);
                let result = if reply.error().is_some() {
                    OutcomeKind::Error
                } else {
                    OutcomeKind::Ok
                };
                (
                    reply,
                    Outcome {
                        command: cmd.name(),
                        result,
                    },
                )
            }
            Err(e) => {
                tracing::debug!(error = %e, "bad control command");
                (
                    Reply::Error(e.code()),
                    Outcome {
                        command: "unknown",
                        result: OutcomeKind::Error,
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::fake::{FakeBackend, FakeCalls};
    use crate::control::SessionConfig;
    use std::time::Duration;

    fn endpoint() -> Endpoint {
        let cfg = SessionConfig {
            internal: [127, 0, 0, 1].into(),
            advertise: None,
            external: None,
            timeout: Duration::from_secs(60),
            max_sessions: 10,
            media_ports: (30000, 30099),
            quotas: Default::default(),
        };
        Endpoint::new(
            SessionManager::new(cfg),
            ReplyCache::new(Duration::from_secs(30), 1000),
        )
    }

    fn src(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn retransmission_is_answered_from_cache_not_executed() {
        let mut e = endpoint();
        let mut b = FakeBackend::new(30000, 16);
        let calls = b.calls();
        let t0 = Instant::now();
        let (r1, o1) = e.datagram(src(5060), b"77_1 U c1 192.0.2.1 4000 f;1", &mut b, t0);
        assert_eq!(r1.as_deref(), Some(&b"77_1 30002 127.0.0.1\n"[..]));
        assert_eq!(
            o1,
            Outcome {
                command: "U",
                result: OutcomeKind::Ok
            }
        );
        let (r2, o2) = e.datagram(
            src(5060),
            b"77_1 U c1 192.0.2.1 4000 f;1",
            &mut b,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(r2, r1);
        assert_eq!(o2.result, OutcomeKind::Retransmit);
        assert_eq!(FakeCalls::get(&calls.create), 1);
        assert_eq!(FakeCalls::get(&calls.update), 0);

        // A delete retransmitted after a new offer must not delete the new stream.
        e.datagram(
            src(5060),
            b"77_2 D c1 f",
            &mut b,
            t0 + Duration::from_secs(3),
        );
        e.datagram(
            src(5060),
            b"77_3 U c1 192.0.2.1 4000 f;1",
            &mut b,
            t0 + Duration::from_secs(4),
        );
        let (r, o) = e.datagram(
            src(5060),
            b"77_2 D c1 f",
            &mut b,
            t0 + Duration::from_secs(5),
        );
        assert_eq!(
            (r.as_deref(), o.result),
            (Some(&b"77_2 0\n"[..]), OutcomeKind::Retransmit)
        );
        assert_eq!(FakeCalls::get(&calls.remove), 1);
        assert_eq!(e.sessions.streams(), 1);
    }

    #[test]
    fn cache_expires_after_ttl_and_command_runs_again() {
        let mut e = endpoint();
        let mut b = FakeBackend::new(30000, 16);
        let calls = b.calls();
        let t0 = Instant::now();
        e.datagram(src(1), b"k U c1 192.0.2.1 4000 f;1", &mut b, t0);
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(e.tick(&mut b, t1), 0);
        let (_, o) = e.datagram(src(1), b"k U c1 192.0.2.1 4000 f;1", &mut b, t1);
        assert_eq!(o.result, OutcomeKind::Ok);
        // Executed again: an update of the existing stream this time.
        assert_eq!(FakeCalls::get(&calls.create), 1);
        assert_eq!(FakeCalls::get(&calls.update), 1);
    }

    #[test]
    fn same_cookie_other_source_is_executed() {
        let mut e = endpoint();
        let mut b = FakeBackend::new(30000, 16);
        let calls = b.calls();
        let t0 = Instant::now();
        e.datagram(src(1), b"k U c1 192.0.2.1 4000 f;1", &mut b, t0);
        e.datagram(src(2), b"k U c2 192.0.2.1 4000 f;1", &mut b, t0);
        assert_eq!(FakeCalls::get(&calls.create), 2);
    }

    #[test]
    fn errors_and_framing() {
        let mut e = endpoint();
        let mut b = FakeBackend::new(30000, 16);
        let t0 = Instant::now();
        let (r, o) = e.datagram(src(1), b"V", &mut b, t0);
        assert_eq!((r, o.result), (None, OutcomeKind::Dropped));
        let (r, o) = e.datagram(src(1), b"k1 Z foo", &mut b, t0);
        assert_eq!(r.as_deref(), Some(&b"k1 E0\n"[..]));
        assert_eq!(
            o,
            Outcome {
                command: "unknown",
                result: OutcomeKind::Error
            }
        );
        let (r, o) = e.datagram(src(1), b"k2 D nocall f", &mut b, t0);
        assert_eq!(r.as_deref(), Some(&b"k2 E50\n"[..]));
        assert_eq!(
            o,
            Outcome {
                command: "D",
                result: OutcomeKind::Error
            }
        );
        let (r, _) = e.line(b"VF 20040107", &mut b, t0);
        assert_eq!(r, b"1\n");
    }

    #[test]
    fn tick_expires_streams() {
        let mut e = endpoint();
        let mut b = FakeBackend::new(30000, 16);
        let t0 = Instant::now();
        e.line(b"U c1 192.0.2.1 4000 f;1", &mut b, t0);
        assert!(b.expire(crate::backend::LegId {
            shard: 0,
            port: 30000
        }));
        assert_eq!(e.tick(&mut b, t0), 1);
        assert_eq!(e.sessions.streams(), 0);
    }
}
