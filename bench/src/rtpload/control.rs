//! The control client: rtpproxy commands over UDP through the one shared codec
//! (`sbc_shared::proto`), pipelined (a window of outstanding cookies) and retransmitted
//! with the same cookie until answered, as Kamailio's module does.

use sbc_shared::proto::{
    split_udp_reply, write_udp_command, CallId, Command, Delete, Modifiers, Reply, Tag, Update,
};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Commands outstanding at once.
    pub window: usize,
    /// Retransmit after this long without answer.
    pub retransmit: Duration,
    /// Give up on a command after this many sends.
    pub tries: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            window: 32,
            retransmit: Duration::from_millis(500),
            tries: 5,
        }
    }
}

pub struct Client {
    sock: UdpSocket,
    relay: SocketAddr,
    prefix: String,
    next: u64,
    opts: ClientOptions,
}

struct Pending {
    index: usize,
    sent_at: Instant,
    tries: u32,
    bytes: Vec<u8>,
}

impl Client {
    pub fn new(relay: SocketAddr, opts: ClientOptions) -> io::Result<Self> {
        let local: SocketAddr = match relay {
            SocketAddr::V4(_) => ([127, 0, 0, 1], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
        };
        let sock = UdpSocket::bind(local)?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(Client {
            sock,
            relay,
            prefix: format!("{}_", std::process::id()),
            next: 0,
            opts,
        })
    }

    /// Send one command and wait for its reply.
    pub fn call(&mut self, cmd: &Command) -> Result<Reply, String> {
        self.run(std::slice::from_ref(cmd))
            .pop()
            .unwrap_or_else(|| Err("no reply".into()))
    }

    /// Run `cmds` pipelined; the replies come back in the same order (an `Err` where no
    /// answer came after `tries` sends).
    pub fn run(&mut self, cmds: &[Command]) -> Vec<Result<Reply, String>> {
        let mut out: Vec<Option<Result<Reply, String>>> = vec![None; cmds.len()];
        let mut pending: HashMap<Vec<u8>, Pending> = HashMap::new();
        let mut next_cmd = 0;
        let mut buf = vec![0u8; 65536];
        let mut left = cmds.len();
        while left > 0 {
            // Fill the window.
            while pending.len() < self.opts.window && next_cmd < cmds.len() {
                let cookie = format!("{}{}", self.prefix, self.next).into_bytes();
                self.next += 1;
                let mut bytes = Vec::with_capacity(128);
                if let Some(c) = cmds.get(next_cmd) {
                    write_udp_command(&cookie, c, &mut bytes);
                }
                let _ = self.sock.send_to(&bytes, self.relay);
                pending.insert(
                    cookie,
                    Pending {
                        index: next_cmd,
                        sent_at: Instant::now(),
                        tries: 1,
                        bytes,
                    },
                );
                next_cmd += 1;
            }
            // Collect replies (read timeout bounds the wait).
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let datagram = buf.get(..n).unwrap_or_default();
                    if let Ok((cookie, reply)) = split_udp_reply(datagram) {
                        if let Some(p) = pending.remove(cookie) {
                            if let Some(slot) = out.get_mut(p.index) {
                                *slot = Some(Ok(reply));
                                left -= 1;
                            }
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {}
            }
            // Retransmit (same cookie) or give up.
            let now = Instant::now();
            let mut dead = Vec::new();
            for (cookie, p) in pending.iter_mut() {
                if now.duration_since(p.sent_at) < self.opts.retransmit {
                    continue;
                }
                if p.tries >= self.opts.tries {
                    dead.push(cookie.clone());
                    continue;
                }
                let _ = self.sock.send_to(&p.bytes, self.relay);
                p.tries += 1;
                p.sent_at = now;
            }
            for cookie in dead {
                if let Some(p) = pending.remove(&cookie) {
                    if let Some(slot) = out.get_mut(p.index) {
                        *slot = Some(Err(format!("no answer after {} tries", p.tries)));
                        left -= 1;
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err("no reply".into())))
            .collect()
    }
}

/// Names of stream `i` of run `run`: (Call-ID, from-tag, to-tag).
pub fn names(run: u32, i: usize) -> (String, String, String) {
    (
        format!("rtpload-{run:08x}-{i}"),
        format!("a{i}"),
        format!("b{i}"),
    )
}

/// The offer for stream `i`: party A at `a`.
pub fn offer(run: u32, i: usize, a: SocketAddr) -> Command {
    let (call, from, _) = names(run, i);
    Command::Update(update(call, a, from, None))
}

/// The answer for stream `i`: party B at `b`.
pub fn answer(run: u32, i: usize, b: SocketAddr) -> Command {
    let (call, from, to) = names(run, i);
    Command::Lookup(update(call, b, from, Some(to)))
}

pub fn delete(run: u32, i: usize) -> Command {
    let (call, from, to) = names(run, i);
    Command::Delete(Delete {
        weak: false,
        call: CallId::new(call),
        from_tag: Tag::new(from),
        to_tag: Some(Tag::new(to)),
    })
}

/// Tags carry the media stream number `;1` as Kamailio's module sends them (rtpengine's UDP
/// parser falls back to a looser regular expression without it, and then does not find the
/// session again for `D`).
fn update(call: String, at: SocketAddr, from: String, to: Option<String>) -> Update {
    Update {
        modifiers: Modifiers::default(),
        call: CallId::new(call),
        addr: at.ip(),
        port: at.port(),
        from_tag: Tag::with_stream(from, 1),
        to_tag: to.map(|t| Tag::with_stream(t, 1)),
        notify: None,
    }
}

/// The relay port (and address, if the reply names one) of a `U`/`L` reply; port 0 and
/// errors are failures.
pub fn relay_port(reply: &Reply, default_ip: IpAddr) -> Result<SocketAddr, String> {
    match reply.port() {
        Some((0, _)) => Err(format!("relay refused: {reply:?}")),
        Some((port, addr)) => {
            let ip = match addr {
                Some(a) if !a.is_unspecified() => a,
                _ => default_ip,
            };
            Ok(SocketAddr::new(ip, port))
        }
        None => Err(format!("unexpected reply {reply:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_rtpproxy_expects() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut v = Vec::new();
        write_udp_command(b"c1", &offer(0xab, 3, a), &mut v);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "c1 U rtpload-000000ab-3 127.0.0.1 4000 a3;1"
        );
        let mut v = Vec::new();
        answer(0xab, 3, a).encode(&mut v);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "L rtpload-000000ab-3 127.0.0.1 4000 a3;1 b3;1"
        );
        let mut v = Vec::new();
        delete(0xab, 3).encode(&mut v);
        assert_eq!(String::from_utf8(v).unwrap(), "D rtpload-000000ab-3 a3 b3");
    }

    #[test]
    fn reply_ports() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let p = |s: &str| relay_port(&Reply::parse(s.as_bytes()).unwrap(), lo);
        assert_eq!(
            p("30000 127.0.0.2").unwrap(),
            "127.0.0.2:30000".parse().unwrap()
        );
        assert_eq!(
            p("30002 127.0.0.1 4").unwrap(),
            "127.0.0.1:30002".parse().unwrap()
        );
        assert_eq!(p("30004").unwrap(), "127.0.0.1:30004".parse().unwrap());
        assert!(p("0 0.0.0.0").is_err());
        assert!(p("E8").is_err());
    }

    #[test]
    fn retransmits_with_the_same_cookie_until_answered() {
        // A fake relay that ignores the first copy of every command and answers the second.
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = relay.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            relay
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
            let mut buf = [0u8; 1024];
            let mut answered = 0;
            while answered < 3 {
                let Ok((n, from)) = relay.recv_from(&mut buf) else {
                    break;
                };
                let (cookie, _) = sbc_shared::proto::split_cookie(&buf[..n]).unwrap();
                let c = seen.entry(cookie.to_vec()).or_default();
                *c += 1;
                if *c == 2 {
                    let mut r = Vec::new();
                    sbc_shared::proto::write_udp_reply(cookie, &Reply::Number(20040107), &mut r);
                    relay.send_to(&r, from).unwrap();
                    answered += 1;
                }
            }
            seen
        });
        let mut c = Client::new(
            addr,
            ClientOptions {
                window: 2,
                retransmit: Duration::from_millis(50),
                tries: 5,
            },
        )
        .unwrap();
        let r = c.run(&[Command::Version, Command::Version, Command::Version]);
        assert!(r.iter().all(|x| x == &Ok(Reply::Number(20040107))), "{r:?}");
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3, "three distinct cookies");
        assert!(seen.values().all(|&n| n == 2));
    }
}
