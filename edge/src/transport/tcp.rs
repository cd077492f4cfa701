//! TCP shell: stream framing by Content-Length, CRLF ping/pong (RFC 5626 §4.4.1), and connection
//! reuse. Every connection is a flow with a `FlowId`; responses and later requests toward the same
//! peer address go over it (RFC 3261 §18.2.2, RFC 5923's spirit for reuse).

use super::keepalive::{self, StreamKeepalive};
use super::{Dest, FlowId, Source, Transport};
use crate::server::Edge;
use crate::sip;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Open connections, by id and by peer address.
#[derive(Default)]
pub struct Flows {
    next: FlowId,
    by_id: HashMap<FlowId, (SocketAddr, mpsc::UnboundedSender<Bytes>)>,
    by_addr: HashMap<SocketAddr, FlowId>,
}

impl Flows {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn add(&mut self, peer: SocketAddr) -> (FlowId, mpsc::UnboundedReceiver<Bytes>) {
        self.next += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        self.by_id.insert(self.next, (peer, tx));
        self.by_addr.insert(peer, self.next);
        (self.next, rx)
    }

    fn remove(&mut self, id: FlowId) {
        if let Some((peer, _)) = self.by_id.remove(&id) {
            if self.by_addr.get(&peer) == Some(&id) {
                self.by_addr.remove(&peer);
            }
        }
    }

    /// The sender for a destination: its flow if open, else any open flow to its address.
    fn sender(&self, dest: &Dest) -> Option<&mpsc::UnboundedSender<Bytes>> {
        dest.flow
            .and_then(|f| self.by_id.get(&f))
            .or_else(|| self.by_addr.get(&dest.addr).and_then(|f| self.by_id.get(f)))
            .map(|(_, tx)| tx)
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
        if edge.flows.borrow().len() >= edge.cfg.limits.max_tcp_connections {
            edge.metrics.drop("tcp_limit");
            continue;
        }
        if edge.is_blocked(peer) {
            edge.metrics.security("rate_limited");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, rx) = edge.flows.borrow_mut().add(peer);
        tokio::task::spawn_local(run_connection(edge.clone(), id, local, peer, stream, rx));
    }
}

/// Send over TCP: reuse an open flow, or connect.
pub fn send(edge: &Rc<Edge>, dest: Dest, bytes: Bytes) {
    if let Some(tx) = edge.flows.borrow().sender(&dest) {
        if tx.send(bytes.clone()).is_ok() {
            return;
        }
    }
    let (id, rx) = edge.flows.borrow_mut().add(dest.addr);
    let edge = edge.clone();
    // Queue the message before the connection exists; it is written once connected.
    if let Some((_, tx)) = edge.flows.borrow().by_id.get(&id) {
        let _ = tx.send(bytes);
    }
    tokio::task::spawn_local(async move {
        let connect =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(dest.addr)).await;
        match connect {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(dest.addr);
                run_connection(edge, id, local, dest.addr, stream, rx).await;
            }
            _ => {
                tracing::debug!(peer = %dest.addr, "tcp connect failed");
                edge.flows.borrow_mut().remove(id);
                edge.on_transport_error(dest);
            }
        }
    });
}

async fn run_connection(
    edge: Rc<Edge>,
    id: FlowId,
    local: SocketAddr,
    peer: SocketAddr,
    stream: TcpStream,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    edge.metrics.tcp_connections.inc();
    let (mut reader, mut writer) = stream.into_split();
    let writer_task = tokio::task::spawn_local(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let idle = Duration::from_secs(edge.cfg.limits.tcp_idle_timeout_s);
    let max = edge.cfg.limits.max_message_bytes;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let src = Source {
        transport: Transport::Tcp,
        remote: peer,
        local,
        flow: Some(id),
    };
    'conn: loop {
        match tokio::time::timeout(idle, reader.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        loop {
            match keepalive::stream_front(&buf) {
                StreamKeepalive::Ping(n) => {
                    buf.advance(n);
                    if !edge.admit(&src) {
                        continue;
                    }
                    edge.send(
                        Dest::back_to_flow(peer, id),
                        Bytes::from_static(keepalive::PONG),
                    );
                    continue;
                }
                StreamKeepalive::Skip(n) => {
                    buf.advance(n);
                    continue;
                }
                StreamKeepalive::Incomplete => break,
                StreamKeepalive::None => {}
            }
            if buf.is_empty() {
                break;
            }
            let limits = edge.limits();
            match sip::frame_len(&buf, &limits) {
                Ok(Some(n)) => {
                    let msg = buf.split_to(n).freeze();
                    if edge.admit(&src) {
                        edge.on_message(msg, src);
                    }
                }
                Ok(None) if buf.len() <= max => break,
                // A stream that cannot be framed cannot be resynchronised: close it.
                _ => {
                    edge.metrics.parse_error("framing");
                    break 'conn;
                }
            }
        }
    }
    writer_task.abort();
    edge.flows.borrow_mut().remove(id);
    edge.metrics.tcp_connections.dec();
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
