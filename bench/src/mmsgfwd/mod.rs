//! `mmsgfwd`: the plain recvmmsg/sendmmsg forwarder that rtprelay's datapaths are measured
//! against (issue 12: CPU per packet of the io_uring datapath at most 1.1× this).
//!
//! Just enough of the rtpproxy control protocol for `rtpload` (`V`, `VF`, `U`, `L`, `D`, `X`,
//! `I`; cookies; the shared codec `sbc_shared::proto`): `U` binds a session of two
//! legs, each an RTP+RTCP port pair (4 consecutive ports), and answers the port the `L` party
//! sends to; `L` answers the port the `U` party sends to. The sessions are spread round robin
//! over `--threads` forwarding threads ([`datapath`]), each with its own epoll set; a packet on
//! one leg's socket goes out of the other leg's socket to that leg's party (the SDP address
//! until the first packet from the party latches its source). No timers, no per-packet stats
//! beyond two counters per thread, no policy: the ceiling of a userspace relay on syscalls.

pub mod datapath;

use datapath::{Handle, Leg, Msg, Peer, Session};
use sbc_shared::proto::{CallId, Command, Delete, ErrorCode, Reply, Update};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;

/// `U`/`L` with an address that is neither loopback nor unspecified (this tool is loopback only).
pub const NOT_LOOPBACK: ErrorCode = ErrorCode(36);

#[derive(Debug, Clone)]
pub struct Config {
    /// Media sockets bind here (loopback).
    pub listen: IpAddr,
    /// Media port range, inclusive.
    pub ports: (u16, u16),
    pub threads: usize,
    pub batch: usize,
    pub max_sessions: usize,
    /// Pin forwarding thread i to the i-th allowed CPU.
    pub pin: bool,
}

struct Entry {
    from_tag: String,
    stream: u32,
    id: u64,
    worker: usize,
    /// Leg A's RTP port; A RTCP +1, B RTP +2, B RTCP +3.
    base: u16,
}

/// The control side: sessions by call, the port blocks, the thread handles.
pub struct Relay {
    cfg: Config,
    handles: Vec<Handle>,
    calls: HashMap<String, Vec<Entry>>,
    /// Free 4-port blocks (bases), lowest last.
    free: Vec<u16>,
    sessions: usize,
    next_id: u64,
}

impl Relay {
    pub fn new(cfg: Config) -> std::io::Result<Relay> {
        let cpus = datapath::allowed_cpus();
        let handles = (0..cfg.threads)
            .map(|i| {
                let cpu = if cfg.pin && !cpus.is_empty() {
                    cpus.get(i % cpus.len()).copied()
                } else {
                    None
                };
                datapath::spawn(i, cpu, cfg.batch)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (min, max) = cfg.ports;
        let first = u32::from(min).div_ceil(2) * 2;
        let mut free: Vec<u16> = (first..)
            .step_by(4)
            .take_while(|b| b + 3 <= u32::from(max))
            .filter_map(|b| u16::try_from(b).ok())
            .collect();
        free.reverse();
        Ok(Relay {
            cfg,
            handles,
            calls: HashMap::new(),
            free,
            sessions: 0,
            next_id: 0,
        })
    }

    /// Sessions the port range can hold.
    pub fn capacity(&self) -> usize {
        self.free.len() + self.sessions
    }

    /// (received, forwarded) summed over the threads.
    pub fn counters(&self) -> (u64, u64) {
        self.handles.iter().fold((0, 0), |(r, f), h| {
            (
                r + h.counters.received.load(Ordering::Relaxed),
                f + h.counters.forwarded.load(Ordering::Relaxed),
            )
        })
    }

    pub fn handle(&mut self, cmd: &Command) -> Reply {
        match cmd {
            Command::Version => Reply::Number(u64::from(sbc_shared::proto::BASE_VERSION)),
            Command::VersionFeature(d) => {
                Reply::Number(u64::from(matches!(d, 20040107 | 20050322 | 20060704)))
            }
            Command::Update(u) => self.update(u),
            Command::Lookup(u) => self.lookup(u),
            Command::Delete(d) => self.delete(d),
            Command::DeleteAll => {
                let keys: Vec<String> = self.calls.keys().cloned().collect();
                for k in keys {
                    self.remove(&k, |_| true);
                }
                Reply::OK
            }
            Command::Info { .. } => {
                let (r, f) = self.counters();
                Reply::Text(format!(
                    "sessions created: {}\nactive sessions: {}\npackets received: {r}\npackets forwarded: {f}",
                    self.next_id, self.sessions
                ))
            }
            _ => Reply::Error(ErrorCode::UNKNOWN_COMMAND),
        }
    }

    fn update(&mut self, u: &Update) -> Reply {
        if !allowed(u.addr) {
            return Reply::Error(NOT_LOOPBACK);
        }
        let key = call_key(&u.call);
        let stream = u.stream_number();
        if let Some(e) = self.calls.get(&key).and_then(|v| {
            v.iter()
                .find(|e| e.from_tag == u.from_tag.tag && e.stream == stream)
        }) {
            return self.port_reply(e.base + 2);
        }
        if self.sessions >= self.cfg.max_sessions {
            return Reply::Error(ErrorCode::OVERLOAD);
        }
        // A block whose ports are taken by someone else is dropped; a few tries at most.
        for _ in 0..16 {
            let Some(base) = self.free.pop() else {
                return Reply::Error(ErrorCode::NO_PORTS);
            };
            let Ok(socks) = bind_block(self.cfg.listen, base) else {
                continue;
            };
            let [a0, a1, b0, b1] = socks;
            let session = Box::new(Session {
                legs: [
                    Leg {
                        socks: [a0, a1],
                        peer: peers(u.addr, u.port),
                        latched: [false; 2],
                    },
                    Leg {
                        socks: [b0, b1],
                        peer: [None, None],
                        latched: [false; 2],
                    },
                ],
            });
            let id = self.next_id;
            self.next_id += 1;
            let worker = (id % self.handles.len() as u64) as usize;
            if let Some(h) = self.handles.get(worker) {
                h.send(Msg::Add(id, session));
            }
            self.sessions += 1;
            self.calls.entry(key).or_default().push(Entry {
                from_tag: u.from_tag.tag.clone(),
                stream,
                id,
                worker,
                base,
            });
            return self.port_reply(base + 2);
        }
        Reply::Error(ErrorCode::BIND_FAILED)
    }

    fn lookup(&mut self, u: &Update) -> Reply {
        if !allowed(u.addr) {
            return Reply::Error(NOT_LOOPBACK);
        }
        let stream = u.stream_number();
        let to = u.to_tag.as_ref().map(|t| t.tag.as_str());
        let found = self.calls.get(&call_key(&u.call)).and_then(|v| {
            v.iter().find(|e| {
                e.stream == stream && (e.from_tag == u.from_tag.tag || Some(&*e.from_tag) == to)
            })
        });
        let Some(e) = found else {
            return Reply::Port {
                port: 0,
                addr: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            };
        };
        if let Some(h) = self.handles.get(e.worker) {
            h.send(Msg::Peer(e.id, 1, Box::new(peers(u.addr, u.port))));
        }
        self.port_reply(e.base)
    }

    fn delete(&mut self, d: &Delete) -> Reply {
        let from = d.from_tag.tag.clone();
        let to = d.to_tag.as_ref().map(|t| t.tag.clone());
        let n = self.remove(&call_key(&d.call), |e| {
            e.from_tag == from || Some(&e.from_tag) == to.as_ref()
        });
        if n == 0 {
            Reply::Error(ErrorCode::SESSION_UNKNOWN)
        } else {
            Reply::OK
        }
    }

    fn remove(&mut self, key: &str, pick: impl Fn(&Entry) -> bool) -> usize {
        let Some(v) = self.calls.get_mut(key) else {
            return 0;
        };
        let (gone, keep): (Vec<Entry>, Vec<Entry>) = v.drain(..).partition(|e| pick(e));
        *v = keep;
        if v.is_empty() {
            self.calls.remove(key);
        }
        for e in &gone {
            if let Some(h) = self.handles.get(e.worker) {
                h.send(Msg::Remove(e.id));
            }
            // The thread closes the sockets on its next wake; the block goes to the back of
            // the queue (reused last), so a rebind right away is unlikely to race the close.
            self.free.insert(0, e.base);
            self.sessions -= 1;
        }
        gone.len()
    }

    fn port_reply(&self, port: u16) -> Reply {
        Reply::Port {
            port,
            addr: Some(self.cfg.listen),
        }
    }
}

fn call_key(c: &CallId) -> String {
    match &c.branch {
        Some(b) => format!("{};{b}", c.id),
        None => c.id.clone(),
    }
}

fn allowed(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

/// The SDP address of a party, RTP and RTCP (port + 1); none for hold/unknown.
fn peers(ip: IpAddr, port: u16) -> [Option<Peer>; 2] {
    if ip.is_unspecified() || port == 0 {
        return [None, None];
    }
    [
        Some(Peer::new(SocketAddr::new(ip, port))),
        port.checked_add(1)
            .map(|p| Peer::new(SocketAddr::new(ip, p))),
    ]
}

/// Bind the four sockets of a block: A RTP, A RTCP, B RTP, B RTCP.
fn bind_block(ip: IpAddr, base: u16) -> std::io::Result<[UdpSocket; 4]> {
    let b = |o: u16| -> std::io::Result<UdpSocket> {
        let s = UdpSocket::bind(SocketAddr::new(ip, base + o))?;
        s.set_nonblocking(true)?;
        Ok(s)
    };
    Ok([b(0)?, b(1)?, b(2)?, b(3)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbc_shared::proto::Tag;
    use std::time::Duration;

    fn relay(ports: (u16, u16)) -> Relay {
        Relay::new(Config {
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports,
            threads: 2,
            batch: 8,
            max_sessions: 100,
            pin: false,
        })
        .unwrap()
    }

    fn upd(call: &str, at: SocketAddr, from: &str, to: Option<&str>) -> Update {
        let mut u = Update::new(
            CallId::new(call),
            at.ip(),
            at.port(),
            Tag::with_stream(from, 1),
        );
        u.to_tag = to.map(|t| Tag::with_stream(t, 1));
        u
    }

    #[test]
    fn forwards_both_ways_and_latches() {
        let mut r = relay((46100, 46199));
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let to_b = r
            .handle(&Command::Update(upd(
                "c1",
                a.local_addr().unwrap(),
                "x",
                None,
            )))
            .port()
            .unwrap()
            .0;
        let to_a = r
            .handle(&Command::Lookup(upd(
                "c1",
                b.local_addr().unwrap(),
                "x",
                Some("y"),
            )))
            .port()
            .unwrap()
            .0;
        assert_ne!(to_a, to_b);
        // U again is idempotent.
        let again = r.handle(&Command::Update(upd(
            "c1",
            a.local_addr().unwrap(),
            "x",
            None,
        )));
        assert_eq!(again.port().unwrap().0, to_b);
        let mut buf = [0u8; 64];
        a.send_to(b"hello b", ("127.0.0.1", to_a)).unwrap();
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello b");
        assert_eq!(
            from.port(),
            to_b,
            "symmetric: B hears from the port it sends to"
        );
        b.send_to(b"hello a", ("127.0.0.1", to_b)).unwrap();
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello a");
        assert_eq!(from.port(), to_a);
        assert_eq!(r.handle(&Command::Info { brief: true }).error(), None);
        let d = Delete {
            weak: false,
            call: CallId::new("c1"),
            from_tag: Tag::new("x"),
            to_tag: Some(Tag::new("y")),
        };
        assert_eq!(r.handle(&Command::Delete(d.clone())), Reply::OK);
        assert!(r.handle(&Command::Delete(d)).error().is_some());
        // The threads add to the counters after each epoll round.
        for _ in 0..100 {
            if r.counters() == (2, 2) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(r.counters(), (2, 2));
    }

    #[test]
    fn refuses_non_loopback_and_unknown_lookup() {
        let mut r = relay((46200, 46299));
        let out: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        assert_eq!(
            r.handle(&Command::Update(upd("c", out, "x", None))),
            Reply::Error(NOT_LOOPBACK)
        );
        let lo: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            r.handle(&Command::Lookup(upd("nope", lo, "x", Some("y"))))
                .port()
                .unwrap()
                .0,
            0
        );
        assert_eq!(r.capacity(), 25);
    }
}
