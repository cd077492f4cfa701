//! TCP shell: stream framing by Content-Length, CRLF ping/pong (RFC 5626 §4.4.1), and connection
//! reuse. Every connection is a flow with a `FlowId`; responses and later requests toward the same
//! peer address go over it (RFC 3261 §18.2.2, RFC 5923's spirit for reuse).
//!
//! The limits (connection caps, message deadline, write queue bound, write timeout) are decided
//! by the sans-IO [`guard`](super::guard); this shell counts, obeys, logs and closes.

use super::guard::{
    ConnTable, Direction, ReadClock, ReadExpiry, TcpGuardEvent, TcpLimits, WriteQueue,
};
use super::keepalive::{self, StreamKeepalive};
use super::{Dest, FlowId, Source, Transport};
use crate::capture::Exporter;
use crate::server::Edge;
use crate::sip;
use bytes::{Buf, Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// Why a connection ends, when something other than its reader ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Guard(TcpGuardEvent),
    /// The socket refused a write: the peer is gone.
    WriteFailed,
}

/// What the flow table, the sender and the connection's tasks share about one connection.
struct Shared {
    queue: RefCell<WriteQueue>,
    /// The first reason to close wins; the reader acts on it when woken.
    closing: Cell<Option<Close>>,
    wake: Notify,
}

impl Shared {
    fn close(&self, why: Close) {
        if self.closing.get().is_none() {
            self.closing.set(Some(why));
        }
        // A stored permit: the reader sees it even if it is not waiting right now.
        self.wake.notify_one();
    }
}

struct Flow {
    peer: SocketAddr,
    dir: Direction,
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Rc<Shared>,
}

/// Open connections, by id and by peer address, and their counts against the limits.
pub struct Flows {
    next: FlowId,
    by_id: HashMap<FlowId, Flow>,
    by_addr: HashMap<SocketAddr, FlowId>,
    conns: ConnTable,
    limits: TcpLimits,
}

/// What became of a message offered to an open flow.
enum Enqueue {
    Queued,
    /// No usable flow toward the destination.
    NoFlow,
    /// The flow's write queue would exceed its bound: the flow is closing, the message dropped.
    Overflow(SocketAddr),
}

type NewFlow = (FlowId, mpsc::UnboundedReceiver<Bytes>, Rc<Shared>);

impl Flows {
    pub fn new(limits: TcpLimits) -> Self {
        Flows {
            next: 0,
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            conns: ConnTable::default(),
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Admits a connection against the limits and registers it.
    fn add(&mut self, peer: SocketAddr, dir: Direction) -> Result<NewFlow, TcpGuardEvent> {
        match dir {
            Direction::Inbound(ip) => self.conns.admit_inbound(ip, &self.limits)?,
            Direction::Outbound => self.conns.admit_outbound(&self.limits)?,
        }
        self.next += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Rc::new(Shared {
            queue: RefCell::new(WriteQueue::new()),
            closing: Cell::new(None),
            wake: Notify::new(),
        });
        let flow = Flow {
            peer,
            dir,
            tx,
            shared: shared.clone(),
        };
        self.by_id.insert(self.next, flow);
        self.by_addr.insert(peer, self.next);
        Ok((self.next, rx, shared))
    }

    fn remove(&mut self, id: FlowId) {
        if let Some(flow) = self.by_id.remove(&id) {
            self.conns.release(flow.dir);
            if self.by_addr.get(&flow.peer) == Some(&id) {
                self.by_addr.remove(&flow.peer);
            }
        }
    }

    /// Queues `bytes` on the destination's flow if open, else on any open flow to its address.
    fn enqueue(&mut self, dest: &Dest, bytes: Bytes, now: Instant) -> Enqueue {
        let usable = |f: &&Flow| f.shared.closing.get().is_none() && !f.tx.is_closed();
        let flow = dest
            .flow
            .and_then(|f| self.by_id.get(&f))
            .filter(usable)
            .or_else(|| {
                self.by_addr
                    .get(&dest.addr)
                    .and_then(|f| self.by_id.get(f))
                    .filter(usable)
            });
        let Some(flow) = flow else {
            return Enqueue::NoFlow;
        };
        let pushed = flow
            .shared
            .queue
            .borrow_mut()
            .push(bytes.len(), now, &self.limits);
        if let Err(e) = pushed {
            flow.shared.close(Close::Guard(e));
            return Enqueue::Overflow(flow.peer);
        }
        if flow.tx.send(bytes).is_err() {
            return Enqueue::NoFlow;
        }
        Enqueue::Queued
    }
}

pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

pub async fn accept_loop(edge: Rc<Edge>, local: SocketAddr, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%local, error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if edge.is_blocked(peer) {
            // A rate-limited source gets no connection slot either.
            edge.metrics.security("rate_limited");
            continue;
        }
        let added = edge
            .flows
            .borrow_mut()
            .add(peer, Direction::Inbound(peer.ip()));
        let (id, rx, shared) = match added {
            Ok(v) => v,
            Err(e) => {
                if e == TcpGuardEvent::GlobalLimit {
                    // Kept for dashboards that predate edge_security_events_total.
                    edge.metrics.drop("tcp_limit");
                }
                edge.metrics.security(e.label());
                tracing::info!(%peer, reason = %e, "tcp connection refused");
                continue; // dropping the stream closes it
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::task::spawn_local(run_connection(
            edge.clone(),
            id,
            local,
            peer,
            stream,
            rx,
            shared,
        ));
    }
}

/// Send over TCP: reuse an open flow, or connect (within `limits.max_tcp_outbound`).
pub fn send(edge: &Rc<Edge>, dest: Dest, bytes: Bytes) {
    let now = Instant::now();
    let queued = edge.flows.borrow_mut().enqueue(&dest, bytes.clone(), now);
    match queued {
        Enqueue::Queued => return,
        Enqueue::Overflow(peer) => {
            // Counted and logged once, when the connection closes; this message is lost.
            tracing::debug!(%peer, "tcp write queue full, message dropped");
            transport_error_later(edge, dest);
            return;
        }
        Enqueue::NoFlow => {}
    }
    let added = edge.flows.borrow_mut().add(dest.addr, Direction::Outbound);
    let (id, rx, shared) = match added {
        Ok(v) => v,
        Err(e) => {
            edge.metrics.security(e.label());
            tracing::info!(peer = %dest.addr, reason = %e, "tcp connection not opened");
            transport_error_later(edge, dest);
            return;
        }
    };
    // Queue the message before the connection exists; it is written once connected. One message
    // always fits (config validation: tcp_write_queue_bytes >= max_message_bytes).
    let _ = edge.flows.borrow_mut().enqueue(
        &Dest {
            flow: Some(id),
            ..dest
        },
        bytes,
        now,
    );
    let edge = edge.clone();
    tokio::task::spawn_local(async move {
        let connect =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(dest.addr)).await;
        match connect {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(dest.addr);
                run_connection(edge, id, local, dest.addr, stream, rx, shared).await;
            }
            _ => {
                tracing::debug!(peer = %dest.addr, "tcp connect failed");
                edge.flows.borrow_mut().remove(id);
                edge.on_transport_error(dest);
            }
        }
    });
}

/// Reports a transport error from its own task: `send` runs while the proxy core's decisions are
/// being dispatched, and the core must not be re-entered from there.
fn transport_error_later(edge: &Rc<Edge>, dest: Dest) {
    let edge = edge.clone();
    tokio::task::spawn_local(async move { edge.on_transport_error(dest) });
}

/// How long a connection the peer closed cleanly may take to write what is still queued.
const FLUSH_ON_EOF: Duration = Duration::from_secs(2);

async fn run_connection(
    edge: Rc<Edge>,
    id: FlowId,
    local: SocketAddr,
    peer: SocketAddr,
    stream: TcpStream,
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Rc<Shared>,
) {
    edge.metrics.tcp_connections.inc();
    let limits = TcpLimits::from(&edge.cfg.limits);
    let (mut reader, writer) = stream.into_split();
    let writer_task = tokio::task::spawn_local(write_loop(
        writer,
        rx,
        shared.clone(),
        limits,
        edge.hep.clone(),
    ));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let src = Source {
        transport: Transport::Tcp,
        remote: peer,
        local,
        flow: Some(id),
    };
    let mut clock = ReadClock::new(Instant::now());
    let why: Option<Close> = loop {
        let (deadline, expiry) = clock.deadline(&limits);
        let read = tokio::select! {
            biased;
            _ = shared.wake.notified() => break shared.closing.get(),
            r = tokio::time::timeout_at(deadline.into(), reader.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => break None,
            Err(_) if expiry == ReadExpiry::MessageDeadline => {
                break Some(Close::Guard(TcpGuardEvent::MessageDeadline))
            }
            Err(_) => {
                tracing::debug!(%peer, "tcp connection idle, closed");
                break None;
            }
        }
        match drain(&edge, &mut buf, src, id) {
            Ok(completed) => clock.on_read(Instant::now(), completed, !buf.is_empty()),
            Err(()) => break None,
        }
    };
    match why {
        Some(Close::Guard(e)) => {
            edge.metrics.security(e.label());
            tracing::info!(%peer, reason = %e, "tcp connection closed");
        }
        Some(Close::WriteFailed) => tracing::debug!(%peer, "tcp write failed, connection closed"),
        None => {}
    }
    // Forget the flow first: its sender goes, so the writer ends once it has written what is
    // queued. A peer that half-closes right after its request (`socat`, scripts, some phones
    // on unregister) still gets the answer; a connection closed for a fault is cut at once.
    edge.flows.borrow_mut().remove(id);
    if why.is_none() {
        let mut writer_task = writer_task;
        if tokio::time::timeout(FLUSH_ON_EOF, &mut writer_task)
            .await
            .is_err()
        {
            writer_task.abort();
        }
    } else {
        writer_task.abort();
    }
    edge.metrics.tcp_connections.dec();
}

/// Hands every complete message (and keepalive) at the front of `buf` to the edge. `Ok(true)`
/// when something was taken off; `Err` when the stream cannot be framed.
fn drain(edge: &Rc<Edge>, buf: &mut BytesMut, src: Source, id: FlowId) -> Result<bool, ()> {
    let limits = edge.limits();
    let drained = drain_frames(buf, &limits, |frame| match frame {
        // A ping counts against the source's rate like any packet.
        Frame::Ping => {
            if edge.admit(&src) {
                edge.send(
                    Dest::back_to_flow(src.remote, id),
                    Bytes::from_static(keepalive::PONG),
                );
            }
        }
        Frame::Message(msg) => {
            if edge.admit(&src) {
                edge.on_message(msg, src);
            }
        }
    });
    drained.map_err(|Unframeable| edge.metrics.parse_error("framing"))
}

/// One unit taken off the front of a stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A CRLFCRLF ping (RFC 5626 §4.4.1): answer with a pong.
    Ping,
    /// One complete message, as [`sip::frame_len`] cut it.
    Message(Bytes),
}

/// The stream cannot be framed (see [`sip::frame_len`]); it cannot be resynchronised either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unframeable;

/// The framing of a connection's read buffer, sans-IO: takes every complete message and
/// keepalive off the front of `buf` (stray CRLFs are dropped) and hands each to `on`.
/// `Ok(true)` when something was taken off; `Err` when the stream cannot be framed (the
/// connection must be closed: it cannot be resynchronised).
pub fn drain_frames(
    buf: &mut BytesMut,
    limits: &sip::Limits,
    mut on: impl FnMut(Frame),
) -> Result<bool, Unframeable> {
    let mut completed = false;
    loop {
        match keepalive::stream_front(buf) {
            StreamKeepalive::Ping(n) => {
                buf.advance(n);
                completed = true;
                on(Frame::Ping);
                continue;
            }
            StreamKeepalive::Skip(n) => {
                buf.advance(n);
                completed = true;
                continue;
            }
            StreamKeepalive::Incomplete => return Ok(completed),
            StreamKeepalive::None => {}
        }
        if buf.is_empty() {
            return Ok(completed);
        }
        match sip::frame_len(buf, limits) {
            Ok(Some(n)) => {
                completed = true;
                on(Frame::Message(buf.split_to(n).freeze()));
            }
            Ok(None) if buf.len() <= limits.max_message_bytes => return Ok(completed),
            _ => return Err(Unframeable),
        }
    }
}

/// Writes queued messages in order; a write that makes no progress within the write timeout, or
/// fails, closes the connection. Each message is captured (`[hep]`) as its write begins: only
/// here are both ends of an outbound connection known, and a message dropped from a full
/// queue is never captured.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Rc<Shared>,
    limits: TcpLimits,
    hep: Option<Rc<Exporter>>,
) {
    let ends = writer
        .local_addr()
        .and_then(|l| Ok((l, writer.peer_addr()?)));
    while let Some(bytes) = rx.recv().await {
        if let (Some(hep), Ok((local, peer))) = (&hep, &ends) {
            hep.capture(Transport::Tcp, *local, *peer, &bytes);
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let deadline = shared
                .queue
                .borrow()
                .write_deadline(&limits)
                .unwrap_or_else(|| Instant::now() + limits.write_timeout);
            match tokio::time::timeout_at(deadline.into(), writer.write(rest)).await {
                Ok(Ok(n)) if n > 0 => {
                    rest = &rest[n..];
                    shared.queue.borrow_mut().written(n, Instant::now());
                }
                Ok(_) => return shared.close(Close::WriteFailed),
                Err(_) => return shared.close(Close::Guard(TcpGuardEvent::WriteTimeout)),
            }
        }
    }
}

impl Dest {
    fn back_to_flow(peer: SocketAddr, id: FlowId) -> Dest {
        Dest {
            transport: Transport::Tcp,
            addr: peer,
            flow: Some(id),
        }
    }
}
