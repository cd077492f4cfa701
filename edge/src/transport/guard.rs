//! TCP guards, sans-IO: which connections may open, how long a message may take to arrive, and
//! how much may wait to be written to a peer. The tokio shell (`tcp.rs`) asks and obeys; the
//! decisions are plain functions of counts and injected time, so they are unit tested here.
//!
//! Why each guard exists:
//! - connection caps (global, per source IP, outbound): one host cannot take every slot, and
//!   requests toward many dead or slow targets cannot open unbounded sockets;
//! - the message deadline: a read timeout alone is reset by every byte, so a peer trickling one
//!   byte per idle period holds a connection and a partial buffer forever (slowloris);
//! - the write queue bound and write timeout: a peer that never reads would otherwise make the
//!   edge buffer every response for it without limit.

use config::LimitsConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Why a connection was refused or closed; `label()` is its `edge_security_events_total` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpGuardEvent {
    #[error("too many TCP connections")]
    GlobalLimit,
    #[error("too many TCP connections from this IP")]
    PerIpLimit,
    #[error("too many outbound TCP connections")]
    OutboundLimit,
    #[error("message not complete within the deadline")]
    MessageDeadline,
    #[error("write queue over its bound (peer not reading)")]
    WriteQueueFull,
    #[error("write made no progress within the timeout")]
    WriteTimeout,
}

impl TcpGuardEvent {
    /// The `event` label (one of `metrics::SECURITY_EVENTS`).
    pub fn label(self) -> &'static str {
        match self {
            TcpGuardEvent::GlobalLimit => "tcp_limit",
            TcpGuardEvent::PerIpLimit => "tcp_per_ip_limit",
            TcpGuardEvent::OutboundLimit => "tcp_outbound_limit",
            TcpGuardEvent::MessageDeadline => "tcp_message_deadline",
            TcpGuardEvent::WriteQueueFull => "tcp_write_queue",
            TcpGuardEvent::WriteTimeout => "tcp_write_timeout",
        }
    }
}

/// The TCP limits, from `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub max_outbound: usize,
    pub idle_timeout: Duration,
    pub message_deadline: Duration,
    pub write_queue_bytes: usize,
    pub write_timeout: Duration,
}

impl From<&LimitsConfig> for TcpLimits {
    fn from(c: &LimitsConfig) -> Self {
        TcpLimits {
            max_connections: c.max_tcp_connections,
            max_per_ip: c.max_tcp_connections_per_ip,
            max_outbound: c.max_tcp_outbound,
            idle_timeout: Duration::from_secs(c.tcp_idle_timeout_s),
            message_deadline: Duration::from_secs(c.tcp_message_deadline_s),
            write_queue_bytes: c.tcp_write_queue_bytes,
            write_timeout: Duration::from_secs(c.tcp_write_timeout_s),
        }
    }
}

/// Who opened a connection; decides which counts it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Accepted from a peer: counts against the global and its IP's cap.
    Inbound(IpAddr),
    /// Opened by the edge: counts against the outbound cap (and the global total).
    Outbound,
}

/// Counts of open connections. Every `admit_*` that returns `Ok` must be matched by exactly one
/// `release` with the same direction.
#[derive(Debug, Default)]
pub struct ConnTable {
    total: usize,
    outbound: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnTable {
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn from_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// A connection was accepted from `ip`: keep it, or refuse (close) it.
    pub fn admit_inbound(&mut self, ip: IpAddr, l: &TcpLimits) -> Result<(), TcpGuardEvent> {
        // The global cap counts outbound connections too: they hold sockets just the same.
        if self.total >= l.max_connections {
            return Err(TcpGuardEvent::GlobalLimit);
        }
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= l.max_per_ip {
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
            return Err(TcpGuardEvent::PerIpLimit);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// The edge wants to open a connection.
    pub fn admit_outbound(&mut self, l: &TcpLimits) -> Result<(), TcpGuardEvent> {
        if self.outbound >= l.max_outbound {
            return Err(TcpGuardEvent::OutboundLimit);
        }
        self.outbound += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection admitted as `dir` is gone.
    pub fn release(&mut self, dir: Direction) {
        self.total = self.total.saturating_sub(1);
        match dir {
            Direction::Outbound => self.outbound = self.outbound.saturating_sub(1),
            Direction::Inbound(ip) => {
                if let Some(n) = self.per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        // No entry per IP that has gone: the map stays as small as the live set.
                        self.per_ip.remove(&ip);
                    }
                }
            }
        }
    }
}

/// Why a read wait ended without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadExpiry {
    /// Nothing pending and nothing received for `idle_timeout`: an ordinary close.
    Idle,
    /// A partial message was not completed in time.
    MessageDeadline,
}

/// The read side's clock: idle between messages, deadline within one.
#[derive(Debug, Clone, Copy)]
pub struct ReadClock {
    last_read: Instant,
    /// When the first byte of the still-incomplete message arrived.
    partial_since: Option<Instant>,
}

impl ReadClock {
    pub fn new(now: Instant) -> Self {
        ReadClock {
            last_read: now,
            partial_since: None,
        }
    }

    /// After a read at `now` and framing what could be framed: `completed` says whether at least
    /// one message (or keepalive) was taken off the buffer, `pending` whether bytes remain.
    pub fn on_read(&mut self, now: Instant, completed: bool, pending: bool) {
        self.last_read = now;
        self.partial_since = match (pending, completed, self.partial_since) {
            (false, _, _) => None,
            // The leftover began in this read: the old message ended within it.
            (true, true, _) | (true, false, None) => Some(now),
            // Still the same message: its deadline does not move.
            (true, false, Some(t)) => Some(t),
        };
    }

    /// When the wait for more data ends, and what that expiry means.
    pub fn deadline(&self, l: &TcpLimits) -> (Instant, ReadExpiry) {
        let idle = self.last_read + l.idle_timeout;
        match self.partial_since {
            Some(t) if t + l.message_deadline <= idle => {
                (t + l.message_deadline, ReadExpiry::MessageDeadline)
            }
            _ => (idle, ReadExpiry::Idle),
        }
    }
}

/// Bytes queued toward one peer and when writing last made progress.
#[derive(Debug, Clone, Copy)]
pub struct WriteQueue {
    queued: usize,
    /// Set while bytes are queued: the last time the queue went non-empty or bytes left.
    progress_at: Option<Instant>,
}

impl WriteQueue {
    pub fn new() -> Self {
        WriteQueue {
            queued: 0,
            progress_at: None,
        }
    }

    pub fn queued(&self) -> usize {
        self.queued
    }

    /// `len` more bytes to send. Over the bound the connection must be closed: the peer is not
    /// reading (or reads slower than it asks), and refusing only this message would lose a
    /// message in the middle of a stream the peer still believes reliable.
    pub fn push(&mut self, len: usize, now: Instant, l: &TcpLimits) -> Result<(), TcpGuardEvent> {
        if self.queued + len > l.write_queue_bytes {
            return Err(TcpGuardEvent::WriteQueueFull);
        }
        if self.queued == 0 {
            self.progress_at = Some(now);
        }
        self.queued += len;
        Ok(())
    }

    /// `len` bytes were handed to the kernel.
    pub fn written(&mut self, len: usize, now: Instant) {
        self.queued = self.queued.saturating_sub(len);
        self.progress_at = (self.queued > 0).then_some(now);
    }

    /// When the pending write must have progressed by; `None` when nothing is queued.
    pub fn write_deadline(&self, l: &TcpLimits) -> Option<Instant> {
        self.progress_at.map(|t| t + l.write_timeout)
    }
}

impl Default for WriteQueue {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TcpLimits {
        TcpLimits {
            max_connections: 4,
            max_per_ip: 2,
            max_outbound: 1,
            idle_timeout: Duration::from_secs(600),
            message_deadline: Duration::from_secs(10),
            write_queue_bytes: 100,
            write_timeout: Duration::from_secs(10),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_ip_cap_refuses_one_ip_but_not_another() {
        let l = limits();
        let mut t = ConnTable::default();
        assert_eq!(t.admit_inbound(ip(2), &l), Ok(()));
        assert_eq!(t.admit_inbound(ip(2), &l), Ok(()));
        assert_eq!(t.admit_inbound(ip(2), &l), Err(TcpGuardEvent::PerIpLimit));
        assert_eq!(t.admit_inbound(ip(3), &l), Ok(()));
        assert_eq!((t.total(), t.from_ip(ip(2))), (3, 2));
        t.release(Direction::Inbound(ip(2)));
        assert_eq!(t.admit_inbound(ip(2), &l), Ok(()));
    }

    #[test]
    fn global_cap_counts_outbound_connections() {
        let l = limits();
        let mut t = ConnTable::default();
        assert_eq!(t.admit_outbound(&l), Ok(()));
        assert_eq!(t.admit_outbound(&l), Err(TcpGuardEvent::OutboundLimit));
        for last in [2, 3, 4] {
            assert_eq!(t.admit_inbound(ip(last), &l), Ok(()));
        }
        assert_eq!(t.admit_inbound(ip(5), &l), Err(TcpGuardEvent::GlobalLimit));
        t.release(Direction::Outbound);
        assert_eq!(t.admit_inbound(ip(5), &l), Ok(()));
        // Outbound ones are capped only by their own limit: reaching the core must not depend
        // on how many peers are connected.
        assert_eq!(t.admit_outbound(&l), Ok(()));
    }

    #[test]
    fn released_ips_leave_no_entries() {
        let l = limits();
        let mut t = ConnTable::default();
        for last in 1..=4 {
            t.admit_inbound(ip(last), &l).unwrap();
        }
        assert_eq!(t.admit_inbound(ip(9), &l), Err(TcpGuardEvent::GlobalLimit));
        for last in 1..=4 {
            t.release(Direction::Inbound(ip(last)));
        }
        assert!(t.per_ip.is_empty());
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn trickled_bytes_do_not_extend_the_message_deadline() {
        let l = limits();
        let t0 = Instant::now();
        let mut c = ReadClock::new(t0);
        assert_eq!(c.deadline(&l), (t0 + l.idle_timeout, ReadExpiry::Idle));
        // One byte of a request, then one more every second: the deadline stays at t0 + 10 s.
        c.on_read(t0, false, true);
        for s in 1..10 {
            c.on_read(t0 + Duration::from_secs(s), false, true);
            assert_eq!(
                c.deadline(&l),
                (t0 + l.message_deadline, ReadExpiry::MessageDeadline)
            );
        }
    }

    #[test]
    fn a_completed_message_restarts_the_clock() {
        let l = limits();
        let t0 = Instant::now();
        let mut c = ReadClock::new(t0);
        c.on_read(t0, false, true);
        // At 8 s the message completes and the next one begins in the same read.
        let t8 = t0 + Duration::from_secs(8);
        c.on_read(t8, true, true);
        assert_eq!(
            c.deadline(&l),
            (t8 + l.message_deadline, ReadExpiry::MessageDeadline)
        );
        // Complete with nothing left: idle rules again, from the last read.
        let t9 = t0 + Duration::from_secs(9);
        c.on_read(t9, true, false);
        assert_eq!(c.deadline(&l), (t9 + l.idle_timeout, ReadExpiry::Idle));
    }

    #[test]
    fn idle_timeout_shorter_than_deadline_wins() {
        let l = TcpLimits {
            idle_timeout: Duration::from_secs(5),
            ..limits()
        };
        let t0 = Instant::now();
        let mut c = ReadClock::new(t0);
        c.on_read(t0, false, true);
        assert_eq!(c.deadline(&l), (t0 + l.idle_timeout, ReadExpiry::Idle));
    }

    #[test]
    fn write_queue_is_bounded_and_progress_moves_its_deadline() {
        let l = limits();
        let t0 = Instant::now();
        let mut q = WriteQueue::new();
        assert_eq!(q.write_deadline(&l), None);
        q.push(60, t0, &l).unwrap();
        // A second push while stalled does not count as progress.
        q.push(40, t0 + Duration::from_secs(3), &l).unwrap();
        assert_eq!(q.write_deadline(&l), Some(t0 + l.write_timeout));
        assert_eq!(q.push(1, t0, &l), Err(TcpGuardEvent::WriteQueueFull));
        let t5 = t0 + Duration::from_secs(5);
        q.written(30, t5);
        assert_eq!(q.queued(), 70);
        assert_eq!(q.write_deadline(&l), Some(t5 + l.write_timeout));
        q.written(70, t5);
        assert_eq!((q.queued(), q.write_deadline(&l)), (0, None));
        q.push(100, t5, &l).unwrap();
    }

    #[test]
    fn every_event_label_is_a_security_event() {
        use TcpGuardEvent::*;
        for e in [
            GlobalLimit,
            PerIpLimit,
            OutboundLimit,
            MessageDeadline,
            WriteQueueFull,
            WriteTimeout,
        ] {
            assert!(
                crate::metrics::SECURITY_EVENTS.contains(&e.label()),
                "{e:?}"
            );
        }
    }
}
