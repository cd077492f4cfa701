//! The IO shell of the control plane: sockets, the allow-list, the tick.
//!
//! One control task owns everything stateful — the [`Endpoint`] (session manager + reply
//! cache) and the media backend — so commands execute one at a time in arrival order and
//! nothing needs a lock. It multiplexes:
//! - the UDP socket (`control.udp`): cookie-framed datagrams; sources outside
//!   `control.allow` are dropped silently and counted (`rtprelay_control_rejected_total
//!   {reason="source"}`), since the protocol has no authentication;
//! - commands from unix stream connections (`control.unix`), read by one small task per
//!   connection and passed over a channel. A connection may carry one command (`unix:`
//!   clients such as Kamailio's module: write, read, close) or many (`cunix:`): every LF ends a
//!   command, and bytes left without LF at the end of a read are taken as a whole command,
//!   because `unix:` clients send none (rtpproxy likewise takes one read as one command).
//!   Access to the socket is governed by its file permissions, not by the allow-list;
//! - a 1 s tick that drops streams the media plane timed out and purges the reply cache.
//!
//! The backend is called synchronously from the control task, in batches: the datagrams queued
//! on the socket (up to [`BATCH`]) are executed one after the other inside
//! [`MediaBackend::begin_batch`]/[`MediaBackend::end_batch`], so `U`/`L`/`D` only queue work
//! to the shards (pooled sockets, no reply awaited) and the shards are woken once per batch;
//! then the replies are sent (one recvmmsg and one sendmmsg per batch). The commands that
//! still need a shard's answer wait for it without stalling the runtime's other tasks
//! (`media::off_runtime` lists them).

use super::cache::ReplyCache;
use super::endpoint::{Endpoint, OutcomeKind};
use super::metrics::ControlMetrics;
use super::session::{SessionConfig, SessionManager};
use crate::backend::MediaBackend;
use config::{ControlConfig, IpNet, MediaConfig};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UdpSocket, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Reply cache bound (entries), against floods of distinct cookies.
pub const REPLY_CACHE_ENTRIES: usize = 100_000;
/// Largest datagram or unix read accepted as one command.
pub const MAX_COMMAND: usize = 16 * 1024;
/// Datagrams handled as one batch (one wake-up of the media plane) at most.
pub const BATCH: usize = 64;
/// Period of the expiry tick.
pub const TICK: Duration = Duration::from_secs(1);

/// How soon the final counters of removed streams are collected while some are pending.
const COLLECT_EVERY: Duration = Duration::from_millis(20);

type LineRequest = (Vec<u8>, oneshot::Sender<Vec<u8>>);

/// Bind the sockets of `cfg` and serve forever. The session limit is the number of streams
/// the media port range can hold (`(port_max - port_min + 1) / 4`: two legs of RTP+RTCP).
/// Returns only on a bind error (or if every socket fails).
pub async fn run(
    cfg: ControlConfig,
    media_cfg: MediaConfig,
    backend: Box<dyn MediaBackend>,
    metrics: ControlMetrics,
) -> io::Result<()> {
    let session = SessionConfig::from_config(&media_cfg, &cfg, default_max_sessions(&media_cfg));
    Server::bind(&cfg, session, backend, metrics)
        .await?
        .serve()
        .await
}

/// The session limit [`run`] uses for a media config.
pub fn default_max_sessions(media: &MediaConfig) -> usize {
    let ports = usize::from(media.port_max.saturating_sub(media.port_min)) + 1;
    (ports / 4).max(1)
}

/// Is `src` allowed to send commands? IPv4-mapped IPv6 sources (dual-stack sockets) are
/// compared as IPv4.
pub fn allowed(allow: &[IpNet], src: IpAddr) -> bool {
    let src = src.to_canonical();
    allow.iter().any(|net| net.contains(&src))
}

/// A bound control server, not yet serving (lets a caller learn the bound UDP port).
pub struct Server {
    udp: Option<UdpSocket>,
    unix: Option<UnixListener>,
    allow: Vec<IpNet>,
    endpoint: Endpoint,
    backend: Box<dyn MediaBackend>,
    metrics: ControlMetrics,
    /// Set when a drain starts (read by the admin listener's `/ready`).
    draining: Arc<AtomicBool>,
}

impl Server {
    /// Bind `control.udp` and `control.unix` (a stale socket file at that path is replaced).
    pub async fn bind(
        cfg: &ControlConfig,
        session: SessionConfig,
        backend: Box<dyn MediaBackend>,
        metrics: ControlMetrics,
    ) -> io::Result<Server> {
        let udp = match cfg.udp {
            Some(addr) => Some(UdpSocket::bind(addr).await?),
            None => None,
        };
        let unix = match &cfg.unix {
            Some(path) => {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                Some(UnixListener::bind(path)?)
            }
            None => None,
        };
        let cache = ReplyCache::new(Duration::from_secs(cfg.reply_cache_s), REPLY_CACHE_ENTRIES);
        Ok(Server {
            udp,
            unix,
            allow: cfg.allow.clone(),
            endpoint: Endpoint::new(SessionManager::new(session), cache),
            backend,
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A flag that turns true when [`Server::serve_with_drain`] starts draining (for a
    /// readiness probe: a draining relay takes no new calls).
    pub fn drain_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// The bound UDP address (useful with port 0).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Serve until the task is dropped.
    pub async fn serve(self) -> io::Result<()> {
        let (_keep, stops) = mpsc::unbounded_channel();
        self.serve_with_drain(stops, Duration::ZERO).await
    }

    /// Serve; the first message on `stops` starts a drain (new calls are refused with `E98`,
    /// the streams in progress go on) that returns once no session is left or after
    /// `drain_timeout`; a second message returns at once.
    pub async fn serve_with_drain(
        self,
        mut stops: mpsc::UnboundedReceiver<()>,
        drain_timeout: Duration,
    ) -> io::Result<()> {
        let mut drain_deadline: Option<Instant> = None;
        let Server {
            udp,
            unix,
            allow,
            mut endpoint,
            mut backend,
            metrics,
            draining,
        } = self;
        let (tx, mut lines) = mpsc::channel::<LineRequest>(1024);
        if let Some(listener) = unix {
            tokio::spawn(accept_loop(listener, tx.clone(), metrics.clone()));
        }
        // Keep one sender so `lines` never reports closed when there is no unix socket.
        let _keep_open = tx;
        let mut tick = tokio::time::interval(TICK);
        // While removed streams wait for their final counters, collect them soon (the shards
        // answer within a batch): the "stream ended" line should not wait for the next tick.
        let mut collect = tokio::time::interval(COLLECT_EVERY);
        collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One recvmmsg reads a batch, one sendmmsg sends its replies (a syscall per batch,
        // not per datagram: the kernel's send path was half the control thread's CPU).
        let mut rx = mmsg::RecvBatch::new(BATCH, MAX_COMMAND);
        let mut tx_batch = mmsg::SendBatch::new(BATCH);
        let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
        tracing::info!(udp = ?udp.as_ref().and_then(|s| s.local_addr().ok()), "control server ready");
        loop {
            tokio::select! {
                r = recv(udp.as_ref(), &mut rx) => {
                    let Some(sock) = udp.as_ref() else { continue };
                    let n = match r {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::debug!(error = %e, "control recv failed");
                            continue;
                        }
                    };
                    // One batch: the datagrams queued (up to BATCH); the media plane is woken
                    // once for all of them (see `MediaBackend::begin_batch`).
                    replies.clear();
                    backend.begin_batch();
                    for i in 0..n {
                        let Some((data, src)) = rx.get(i) else { continue };
                        if let Some(reply) = datagram(&allow, &metrics, &mut endpoint, backend.as_mut(), Some(data), src) {
                            replies.push((reply, src));
                        }
                    }
                    backend.end_batch();
                    // Final counters of streams removed in earlier batches: logged now, not
                    // at the next tick (keeps the pending set small).
                    endpoint.sessions.collect_removed(backend.as_mut());
                    metrics.publish(&endpoint.sessions);
                    // What sendmmsg did not take (socket buffer full, or an error on one
                    // reply) is sent one by one, waiting for room.
                    let sent = tx_batch.send(sock, &replies);
                    for (reply, src) in replies.drain(..).skip(sent) {
                        let sent = match sock.try_send_to(&reply, src) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.send_to(&reply, src).await,
                            r => r,
                        };
                        if let Err(e) = sent {
                            tracing::debug!(%src, error = %e, "control reply not sent");
                        }
                    }
                }
                Some((line, reply_tx)) = lines.recv() => {
                    backend.begin_batch();
                    let (reply, outcome) = endpoint.line(&line, backend.as_mut(), Instant::now());
                    backend.end_batch();
                    metrics.record(outcome);
                    metrics.publish(&endpoint.sessions);
                    let _ = reply_tx.send(reply);
                }
                _ = collect.tick(), if endpoint.sessions.ending() > 0 => {
                    endpoint.sessions.collect_removed(backend.as_mut());
                    metrics.publish(&endpoint.sessions);
                }
                _ = tick.tick() => {
                    // Timeouts are counted by the shards (`rtprelay_timeouts_total{shard}`).
                    backend.begin_batch();
                    endpoint.tick(backend.as_mut(), Instant::now());
                    backend.end_batch();
                    metrics.publish(&endpoint.sessions);
                }
                Some(()) = stops.recv() => {
                    if drain_deadline.is_some() {
                        tracing::info!(sessions = endpoint.sessions.sessions(), "stop requested again: stopping now");
                        return Ok(());
                    }
                    endpoint.sessions.set_draining(true);
                    draining.store(true, Ordering::Relaxed);
                    tracing::info!(
                        sessions = endpoint.sessions.sessions(),
                        timeout_s = drain_timeout.as_secs(),
                        "draining: new calls refused (E98), streams in progress go on (signal again to stop now)"
                    );
                    drain_deadline = Some(Instant::now() + drain_timeout);
                }
            }
            if let Some(deadline) = drain_deadline {
                let left = endpoint.sessions.sessions();
                if left == 0 {
                    tracing::info!("drain complete: no session left");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        sessions = left,
                        "drain timeout: stopping with these sessions"
                    );
                    return Ok(());
                }
            }
        }
    }
}

/// One UDP datagram: allow-list, execute, metrics. The reply, if any.
fn datagram(
    allow: &[IpNet],
    metrics: &ControlMetrics,
    endpoint: &mut Endpoint,
    backend: &mut dyn MediaBackend,
    datagram: Option<&[u8]>,
    src: SocketAddr,
) -> Option<Vec<u8>> {
    if !allowed(allow, src.ip()) {
        metrics.reject("source");
        tracing::debug!(%src, "control command from a source not allowed");
        return None;
    }
    let (reply, outcome) = endpoint.datagram(src, datagram?, backend, Instant::now());
    if outcome.result == OutcomeKind::Dropped {
        metrics.reject("framing");
    } else {
        metrics.record(outcome);
    }
    reply
}

/// Receive a batch of datagrams from the UDP socket (at least one), or wait forever when
/// there is no socket.
async fn recv(sock: Option<&UdpSocket>, rx: &mut mmsg::RecvBatch) -> io::Result<usize> {
    let Some(sock) = sock else {
        return std::future::pending().await;
    };
    loop {
        sock.readable().await?;
        match rx.recv(sock) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// recvmmsg/sendmmsg on the control socket, through tokio's readiness (`try_io`), so a
/// `WouldBlock` clears it as `try_recv_from` would.
mod mmsg {
    use crate::datapath::sockaddr;
    use std::io;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    fn zero_mmsghdr() -> libc::mmsghdr {
        // SAFETY: plain data; null pointers and zero lengths are valid "empty" values.
        unsafe { std::mem::zeroed() }
    }

    /// Receive memory for up to `n` datagrams of `size` bytes, allocated once.
    pub struct RecvBatch {
        size: usize,
        bufs: Vec<u8>,
        iov: Vec<libc::iovec>,
        names: Vec<libc::sockaddr_storage>,
        hdrs: Vec<libc::mmsghdr>,
        got: usize,
    }

    // SAFETY: the raw pointers in `iov`/`hdrs` point into this struct's own vectors (set
    // right before each call); nothing is shared between threads.
    unsafe impl Send for RecvBatch {}

    impl RecvBatch {
        pub fn new(n: usize, size: usize) -> RecvBatch {
            let empty = libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            RecvBatch {
                size,
                bufs: vec![0u8; n * size],
                iov: vec![empty; n],
                names: vec![sockaddr::empty_storage(); n],
                hdrs: vec![zero_mmsghdr(); n],
                got: 0,
            }
        }

        /// Read the datagrams queued (up to the batch size) without waiting.
        pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            let fd = sock.as_raw_fd();
            self.got = 0;
            let n = sock.try_io(Interest::READABLE, || {
                let base = self.bufs.as_mut_ptr();
                for i in 0..self.hdrs.len() {
                    self.iov[i] = libc::iovec {
                        // SAFETY: i * size < bufs.len().
                        iov_base: unsafe { base.add(i * self.size) }.cast(),
                        iov_len: self.size,
                    };
                    let h = &mut self.hdrs[i];
                    *h = zero_mmsghdr();
                    h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                    h.msg_hdr.msg_namelen =
                        std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                    h.msg_hdr.msg_iov = &mut self.iov[i];
                    h.msg_hdr.msg_iovlen = 1;
                }
                // SAFETY: every header points at live memory of this struct, sized as said.
                let r = unsafe {
                    libc::recvmmsg(
                        fd,
                        self.hdrs.as_mut_ptr(),
                        self.hdrs.len() as libc::c_uint,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            })?;
            self.got = n;
            Ok(n)
        }

        /// Datagram `i` of the last [`RecvBatch::recv`] and its source. A datagram longer
        /// than the buffer is cut (as `recv_from` into the same buffer would).
        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
            if i >= self.got {
                return None;
            }
            let h = self.hdrs.get(i)?;
            let src = sockaddr::parse_storage(&self.names[i], h.msg_hdr.msg_namelen)?;
            let len = (h.msg_len as usize).min(self.size);
            Some((self.bufs.get(i * self.size..i * self.size + len)?, src))
        }
    }

    /// Send memory for up to `n` replies.
    pub struct SendBatch {
        iov: Vec<libc::iovec>,
        names: Vec<libc::sockaddr_storage>,
        hdrs: Vec<libc::mmsghdr>,
    }

    // SAFETY: as for `RecvBatch`.
    unsafe impl Send for SendBatch {}

    impl SendBatch {
        pub fn new(n: usize) -> SendBatch {
            let empty = libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            SendBatch {
                iov: vec![empty; n],
                names: vec![sockaddr::empty_storage(); n],
                hdrs: vec![zero_mmsghdr(); n],
            }
        }

        /// Send the first replies (up to the batch size) in one sendmmsg, without waiting.
        /// Returns how many the kernel took (0 on `WouldBlock` or an error on the first).
        pub fn send(&mut self, sock: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) -> usize {
            let n = replies.len().min(self.hdrs.len());
            if n == 0 {
                return 0;
            }
            let fd = sock.as_raw_fd();
            let r = sock.try_io(Interest::WRITABLE, || {
                for (i, (reply, dst)) in replies.iter().take(n).enumerate() {
                    let namelen = sockaddr::write(*dst, &mut self.names[i]);
                    self.iov[i] = libc::iovec {
                        iov_base: reply.as_ptr() as *mut libc::c_void,
                        iov_len: reply.len(),
                    };
                    let h = &mut self.hdrs[i];
                    *h = zero_mmsghdr();
                    h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                    h.msg_hdr.msg_namelen = namelen;
                    h.msg_hdr.msg_iov = &mut self.iov[i];
                    h.msg_hdr.msg_iovlen = 1;
                }
                // SAFETY: the headers point at `replies` (alive for the call) and at this
                // struct's memory; the kernel only reads them.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs.as_mut_ptr(),
                        n as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            });
            r.unwrap_or(0)
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    tx: mpsc::Sender<LineRequest>,
    metrics: ControlMetrics,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, tx.clone(), metrics.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control unix accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One unix stream connection: commands in, replies out, in order.
async fn connection(stream: UnixStream, tx: mpsc::Sender<LineRequest>, metrics: ControlMetrics) {
    let (mut rd, mut wr) = stream.into_split();
    let mut chunk = vec![0u8; MAX_COMMAND];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(chunk.get(..n).unwrap_or_default());
        // Every LF ends a command. A tail without LF after a short read is a whole command
        // (see module doc); after a full read it may be cut, so wait for the rest.
        let complete = match pending.iter().rposition(|b| *b == b'\n') {
            Some(last) => last + 1,
            None => 0,
        };
        let take = if n < chunk.len() {
            pending.len()
        } else {
            complete
        };
        let commands: Vec<u8> = pending.drain(..take).collect();
        if pending.len() > MAX_COMMAND {
            metrics.reject("framing");
            return;
        }
        for line in commands.split(|b| *b == b'\n') {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let (reply_tx, reply_rx) = oneshot::channel();
            if tx.send((line.to_vec(), reply_tx)).await.is_err() {
                return;
            }
            let Ok(reply) = reply_rx.await else { return };
            if wr.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let allow: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&allow, "::ffff:127.0.0.5".parse().unwrap()));
        assert!(allowed(&allow, "2001:db8::1".parse().unwrap()));
        assert!(!allowed(&allow, "10.0.0.1".parse().unwrap()));
        assert!(!allowed(&allow, "::1".parse().unwrap()));
        assert!(!allowed(&[], "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn session_limit_from_port_range() {
        let media = MediaConfig {
            port_min: 30000,
            port_max: 30399,
            ..MediaConfig::default()
        };
        assert_eq!(default_max_sessions(&media), 100);
    }
}
