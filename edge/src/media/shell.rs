//! The relay client's IO shell: one tokio task owning one UDP socket and the sans-IO
//! [`RelayClient`]; callers talk to it through a cloneable [`RelayHandle`].

use super::client::{
    ClientConfig, ClientError, ClientEvent, RelayClient, RelayId, RequestId, Target,
};
use super::metrics::MediaMetrics;
use sbc_shared::proto::{Command, Reply};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// What a command came back with: the relay that answered and its reply.
pub type CommandResult = Result<(RelayId, Reply), ClientError>;

// Nearly every request is a command: boxing it to shrink the rare variants would cost an
// allocation per relay command.
#[allow(clippy::large_enum_variant)]
enum Request {
    Command {
        command: Command,
        target: Target,
        done: oneshot::Sender<CommandResult>,
    },
    /// A reloaded relay set (address, weight).
    SetRelays(Vec<(SocketAddr, u32)>),
    /// The operator enables or disables a relay.
    SetEnabled(SocketAddr, bool),
}

/// Send relay commands; cheap to clone. The task stops when every handle is dropped.
#[derive(Clone)]
pub struct RelayHandle {
    tx: mpsc::Sender<Request>,
    local: SocketAddr,
    /// The client task's view of the relays, refreshed on every turn of its loop.
    states: std::sync::Arc<std::sync::Mutex<Vec<super::client::RelayView>>>,
}

/// Queue depth between callers and the client task.
const QUEUE: usize = 4096;

impl RelayHandle {
    /// Bind a UDP socket (loopback when every relay is on loopback, else the unspecified
    /// address of the first relay's family) and spawn the client task on the current runtime.
    pub async fn spawn(cfg: ClientConfig, metrics: Option<MediaMetrics>) -> io::Result<Self> {
        let bind_ip: IpAddr = match cfg.relays.first().map(|(a, _)| a.ip()) {
            Some(ip) if cfg.relays.iter().all(|(a, _)| a.ip().is_loopback()) => {
                if ip.is_ipv4() {
                    Ipv4Addr::LOCALHOST.into()
                } else {
                    Ipv6Addr::LOCALHOST.into()
                }
            }
            Some(IpAddr::V6(_)) => Ipv6Addr::UNSPECIFIED.into(),
            _ => Ipv4Addr::UNSPECIFIED.into(),
        };
        let sock = UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?;
        let local = sock.local_addr()?;
        let core = RelayClient::new(cfg, rand::random(), metrics, Instant::now());
        let (tx, rx) = mpsc::channel(QUEUE);
        let states = std::sync::Arc::new(std::sync::Mutex::new(core.states()));
        tokio::spawn(run(sock, core, rx, states.clone()));
        Ok(RelayHandle { tx, local, states })
    }

    /// Reloaded `media.relays`: applied by the client task (see [`RelayClient::set_relays`]).
    /// False when its queue is full or it is gone.
    pub fn set_relays(&self, relays: Vec<(SocketAddr, u32)>) -> bool {
        self.tx.try_send(Request::SetRelays(relays)).is_ok()
    }

    /// The operator enables or disables a relay for new calls; false when there is no such
    /// relay (checked against the last published states) or the client task is busy.
    pub fn set_enabled(&self, addr: SocketAddr, enabled: bool) -> bool {
        self.states().iter().any(|r| r.addr == addr)
            && self.tx.try_send(Request::SetEnabled(addr, enabled)).is_ok()
    }

    /// The relays and their state, as of the client task's last turn.
    pub fn states(&self) -> Vec<super::client::RelayView> {
        self.states.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Send `command` and wait for its outcome (retransmissions and failover included).
    pub async fn command(&self, command: Command, target: Target) -> CommandResult {
        let (done, wait) = oneshot::channel();
        // One debug line per command and per outcome, with the Call-ID inside the command
        // text, so a call can be followed through the relay in the edge's log.
        let text = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            let mut v = Vec::new();
            command.encode(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        });
        if let Some(t) = &text {
            tracing::debug!(command = %t, ?target, "relay command");
        }
        let req = Request::Command {
            command,
            target,
            done,
        };
        if self.tx.send(req).await.is_err() {
            return Err(ClientError::NoRelay);
        }
        let result = wait.await.unwrap_or(Err(ClientError::NoRelay));
        if let Some(t) = &text {
            match &result {
                Ok((relay, reply)) => tracing::debug!(command = %t, relay, ?reply, "relay reply"),
                Err(e) => tracing::debug!(command = %t, error = %e, "relay command failed"),
            }
        }
        result
    }

    /// The client socket's address (what the relay sees as source).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

async fn run(
    sock: UdpSocket,
    mut core: RelayClient,
    mut rx: mpsc::Receiver<Request>,
    states: std::sync::Arc<std::sync::Mutex<Vec<super::client::RelayView>>>,
) {
    let mut waiting: HashMap<RequestId, oneshot::Sender<CommandResult>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut published = core.state_version();
    loop {
        // Republished only when a relay changed (not once per command).
        if core.state_version() != published {
            published = core.state_version();
            if let Ok(mut s) = states.lock() {
                *s = core.states();
            }
        }
        while let Some(t) = core.poll_transmit() {
            // Unconnected UDP: a dead relay shows up as a timeout, not as an error here.
            if let Err(e) = sock.send_to(&t.data, t.to).await {
                tracing::debug!(to = %t.to, error = %e, "relay send failed");
            }
        }
        while let Some(ev) = core.poll_event() {
            let (id, result) = match ev {
                ClientEvent::Reply {
                    id, relay, reply, ..
                } => (id, Ok((relay, reply))),
                ClientEvent::Failed { id, error } => (id, Err(error)),
            };
            if let Some(done) = waiting.remove(&id) {
                let _ = done.send(result);
            }
        }
        let deadline = core
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(1));
        tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    core.handle_datagram(from, buf.get(..n).unwrap_or_default(), Instant::now());
                }
                Err(e) => tracing::debug!(error = %e, "relay socket receive error"),
            },
            req = rx.recv() => match req {
                Some(Request::Command { command, target, done }) => {
                    let id = core.send(command, target, Instant::now());
                    waiting.insert(id, done);
                }
                Some(Request::SetRelays(relays)) => core.set_relays(&relays, Instant::now()),
                Some(Request::SetEnabled(addr, on)) => {
                    core.set_enabled(addr, on, Instant::now());
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => core.handle_timeout(Instant::now()),
        }
    }
}
