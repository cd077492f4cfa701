//! A minimal SIP OPTIONS client over UDP, used to see that an edge is up and answering
//! (the edge answers an OPTIONS whose Request-URI is itself, with no user part, with 200).
//!
//! Each [`OptionsProbe::transaction`] is one client transaction (RFC 3261 17.1.2): a fresh branch
//! and Call-ID, the same bytes retransmitted on timeout, the answer matched by Call-ID and CSeq.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct OptionsProbe {
    socket: UdpSocket,
    target: SocketAddr,
}

/// How one OPTIONS transaction ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Final status code received.
    pub status: u16,
    /// How many times the request was sent (1 = answered to the first try).
    pub attempts: u32,
    pub elapsed: Duration,
}

impl OptionsProbe {
    /// Binds an ephemeral UDP port on `from` (an access-side address, see
    /// [`crate::ports::ACCESS_IP`]) for talking to `target`.
    pub fn new(from: Ipv4Addr, target: SocketAddr) -> std::io::Result<OptionsProbe> {
        let socket = UdpSocket::bind((from, 0))?;
        Ok(OptionsProbe { socket, target })
    }

    /// Sends one OPTIONS and retransmits it every `retry` until a final response arrives or
    /// `total` has passed.
    pub fn transaction(&self, retry: Duration, total: Duration) -> Result<Answer, String> {
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let local = self
            .socket
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?;
        let call_id = format!("e2e-probe-{}-{n}@127.0.0.1", std::process::id());
        let msg = options_request(self.target, local, &call_id, n);
        let start = Instant::now();
        let deadline = start + total;
        let mut attempts = 0u32;
        let mut buf = vec![0u8; 65_535];
        while Instant::now() < deadline {
            self.socket
                .send_to(msg.as_bytes(), self.target)
                .map_err(|e| format!("send to {}: {e}", self.target))?;
            attempts += 1;
            let resend_at = (Instant::now() + retry).min(deadline);
            loop {
                let left = resend_at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket
                    .set_read_timeout(Some(left))
                    .map_err(|e| format!("set timeout: {e}"))?;
                let Ok((len, _from)) = self.socket.recv_from(&mut buf) else {
                    break; // timed out (or transient error): retransmit
                };
                let text = String::from_utf8_lossy(buf.get(..len).unwrap_or(&[]));
                if let Some(status) = final_status_for(&text, &call_id) {
                    return Ok(Answer {
                        status,
                        attempts,
                        elapsed: start.elapsed(),
                    });
                }
            }
        }
        Err(format!(
            "OPTIONS to {} not answered within {total:?} ({attempts} tries)",
            self.target
        ))
    }
}

/// Sends OPTIONS every 100 ms until one is answered 200 or `timeout` passes.
pub fn wait_for_200(from: Ipv4Addr, target: SocketAddr, timeout: Duration) -> Result<(), String> {
    let probe = OptionsProbe::new(from, target).map_err(|e| format!("bind probe: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("never tried");
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match probe.transaction(
            Duration::from_millis(100),
            left.min(Duration::from_millis(300)),
        ) {
            Ok(a) if a.status == 200 => return Ok(()),
            Ok(a) => last = format!("answered {}", a.status),
            Err(e) => last = e,
        }
    }
    Err(format!(
        "edge at {target} did not answer OPTIONS 200 within {timeout:?}: {last}"
    ))
}

/// OPTIONS addressed to the edge itself (no user part).
pub fn options_request(target: SocketAddr, local: SocketAddr, call_id: &str, n: u64) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-e2e-{pid}-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=e2e{n}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        pid = std::process::id()
    )
}

/// The status code if `text` is a final (>= 200) response to the request with `call_id`.
pub fn final_status_for(text: &str, call_id: &str) -> Option<u16> {
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()?
        .strip_prefix("SIP/2.0 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let matches = lines.take_while(|l| !l.is_empty()).any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            let name = name.trim();
            (name.eq_ignore_ascii_case("call-id") || name == "i") && value.trim() == call_id
        })
    });
    (matches && status >= 200).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_matching_final_response() {
        let r = "SIP/2.0 200 OK\r\nVia: x\r\ni: abc\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(final_status_for(r, "abc"), Some(200));
        assert_eq!(final_status_for(r, "abd"), None);
        let prov = "SIP/2.0 100 Trying\r\nCall-ID: abc\r\n\r\n";
        assert_eq!(final_status_for(prov, "abc"), None);
        assert_eq!(final_status_for("garbage", "abc"), None);
    }
}
