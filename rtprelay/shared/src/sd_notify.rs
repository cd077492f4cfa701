//! systemd's notify protocol (`sd_notify(3)`), without libsystemd: one datagram per message to
//! the unix socket named by `$NOTIFY_SOCKET` (a leading `@` is the abstract namespace). Shared
//! by both daemons (`Type=notify` units, `WatchdogSec=`).
//!
//! - `READY=1` once every listener is bound and state is loaded, with a one-line `STATUS=`;
//! - `WATCHDOG=1` at half of `$WATCHDOG_USEC`, sent *from the event loop itself*, so a stuck
//!   loop stops it and systemd restarts the process;
//! - `STOPPING=1` when shutdown begins.
//!
//! Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

pub struct Notifier {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
    /// Half the watchdog timeout, if systemd asked for keep-alives.
    watchdog: Option<Duration>,
    last_watchdog: Option<Instant>,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, if set and usable.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let addr = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(path).ok()?,
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier {
            sock,
            addr,
            watchdog: watchdog_interval(),
            last_watchdog: None,
        })
    }

    /// Send one message (`KEY=value` lines). Best effort: systemd may be gone at shutdown.
    pub fn send(&self, msg: &str) {
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            tracing::debug!(error = %e, "sd_notify");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    /// Call on every turn of the event loop: sends `WATCHDOG=1` when half the watchdog timeout
    /// has passed since the last one (and `alive` says the parts it vouches for are moving).
    /// Returns whether it sent one.
    /// When [`Self::watchdog_tick`] must next be called to keep the watchdog fed (`None`: no
    /// watchdog), for a loop that sleeps until its next deadline.
    pub fn watchdog_due(&self, now: Instant) -> Option<Instant> {
        let every = self.watchdog?;
        Some(self.last_watchdog.map_or(now, |t| t + every))
    }

    pub fn watchdog_tick(&mut self, now: Instant, alive: bool) -> bool {
        let Some(every) = self.watchdog else {
            return false;
        };
        if !alive
            || self
                .last_watchdog
                .is_some_and(|t| now.duration_since(t) < every)
        {
            return false;
        }
        self.last_watchdog = Some(now);
        self.send("WATCHDOG=1");
        true
    }
}

/// Half of `$WATCHDOG_USEC` when the watchdog is meant for this process (`$WATCHDOG_PID`
/// unset or ours).
fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// A test-only hook, called from each event loop: with `SBC_TEST_STALL_AFTER_S=N` set, the loop
/// that calls it blocks (a real `sleep` on its thread) for a minute, once, N seconds after its
/// first call — what a stuck loop looks like to the watchdog. Without the variable it costs a
/// thread-local read.
pub fn test_stall_point() {
    thread_local! {
        static STALL: std::cell::Cell<Option<Option<Instant>>> = const { std::cell::Cell::new(None) };
    }
    let due = STALL.with(|c| {
        let state = c.get().unwrap_or_else(|| {
            let after = std::env::var("SBC_TEST_STALL_AFTER_S")
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            after.map(|s| Instant::now() + Duration::from_secs(s))
        });
        match state {
            Some(at) if Instant::now() >= at => {
                c.set(Some(None));
                true
            }
            other => {
                c.set(Some(other));
                false
            }
        }
    });
    if due {
        tracing::warn!("SBC_TEST_STALL_AFTER_S: blocking this event loop on purpose (test hook)");
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket_and_the_watchdog_is_paced() {
        let dir = std::env::temp_dir().join(format!("sdn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut n = Notifier {
            sock: UnixDatagram::unbound().unwrap(),
            addr: std::os::unix::net::SocketAddr::from_pathname(&path).unwrap(),
            watchdog: Some(Duration::from_secs(5)),
            last_watchdog: None,
        };
        n.ready("up");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        let t0 = Instant::now();
        n.watchdog_tick(t0, true);
        n.watchdog_tick(t0 + Duration::from_secs(1), true);
        n.watchdog_tick(t0 + Duration::from_secs(6), false);
        n.watchdog_tick(t0 + Duration::from_secs(6), true);
        let mut got = Vec::new();
        rx.set_nonblocking(true).unwrap();
        while let Ok(len) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).to_string());
        }
        assert_eq!(got, ["WATCHDOG=1", "WATCHDOG=1"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
