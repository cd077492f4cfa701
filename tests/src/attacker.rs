//! Hand-driven SIP peers over UDP for the security suite (`tests/tests/security_sip.rs`): a phone,
//! a core and an attacker that write every byte themselves, so a test can send exactly the
//! malformed, forged or replayed message it means to and see exactly what comes back, and where.
//!
//! What it is: a UDP socket with bounded receives ([`Peer`]), a message view that reads headers
//! by name ([`Msg`]), and builders for a request ([`request`]) and a response to a received
//! request ([`response_to`], copying Vias, From, To, Call-ID, CSeq and Record-Route as a UAS
//! does). What it is not: a SIP stack — no transactions, no retransmissions, no dialog state.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

/// Where the attacker listens: a loopback address none of the three sides uses.
pub const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// One received SIP message, as text.
#[derive(Debug, Clone)]
pub struct Msg {
    pub text: String,
    /// Where it came from.
    pub from: SocketAddr,
}

/// Compact header forms (RFC 3261 §7.3.3) for the headers the suite reads.
fn long_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        _ => name,
    }
}

impl Msg {
    pub fn first_line(&self) -> &str {
        self.text.split("\r\n").next().unwrap_or("")
    }

    /// Status code of a response, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        self.first_line()
            .strip_prefix("SIP/2.0 ")?
            .get(..3)?
            .parse()
            .ok()
    }

    /// Method of a request, `None` for a response.
    pub fn method(&self) -> Option<&str> {
        let l = self.first_line();
        if l.starts_with("SIP/2.0") {
            return None;
        }
        l.split(' ').next()
    }

    pub fn request_uri(&self) -> Option<&str> {
        self.method()?;
        self.first_line().split(' ').nth(1)
    }

    fn head(&self) -> &str {
        self.text.split("\r\n\r\n").next().unwrap_or("")
    }

    pub fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
    }

    /// Every header line value (not split at commas) named `name` (or its compact form), in
    /// order.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        let want = long_name(name).to_ascii_lowercase();
        self.head()
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| long_name(n.trim()).eq_ignore_ascii_case(&want))
            .map(|(_, v)| v.trim())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    pub fn has_header(&self, name: &str) -> bool {
        !self.headers(name).is_empty()
    }

    pub fn call_id(&self) -> &str {
        self.header("call-id").unwrap_or("")
    }

    /// `CSeq` method.
    pub fn cseq_method(&self) -> &str {
        self.header("cseq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }

    /// The `branch` parameter of the top Via.
    pub fn top_branch(&self) -> Option<&str> {
        let via = self.header("via")?.split(',').next()?;
        via.split(';')
            .filter_map(|p| p.trim().strip_prefix("branch="))
            .next()
    }

    /// The `tag` parameter of From or To.
    pub fn tag(&self, header: &str) -> Option<&str> {
        let v = self.header(header)?;
        let params = v.rsplit_once('>').map(|(_, p)| p).unwrap_or(v);
        params
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("tag="))
            .next()
    }

    /// All values of a comma-separable header (Record-Route, Route, Contact), split at top-level
    /// commas (outside `<>` and quotes).
    pub fn values(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in self.headers(name) {
            let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    '<' if !quoted => depth += 1,
                    '>' if !quoted => depth -= 1,
                    ',' if !quoted && depth == 0 => {
                        out.push(cur.trim().to_string());
                        cur.clear();
                        continue;
                    }
                    _ => {}
                }
                cur.push(c);
            }
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
        }
        out
    }
}

/// The URI inside `<...>` of a name-addr, or the value itself.
pub fn uri_of(name_addr: &str) -> &str {
    match (name_addr.find('<'), name_addr.find('>')) {
        (Some(a), Some(b)) if a < b => name_addr.get(a + 1..b).unwrap_or(name_addr),
        _ => name_addr.split(';').next().unwrap_or(name_addr),
    }
}

/// A UDP SIP peer.
pub struct Peer {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Peer {
    /// Binds `ip:port` (0 for any port).
    pub fn bind(ip: Ipv4Addr, port: u16) -> Peer {
        let sock = UdpSocket::bind((ip, port)).unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"));
        let addr = sock
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        Peer { sock, addr }
    }

    pub fn send(&self, text: &str, to: SocketAddr) {
        self.sock
            .send_to(text.as_bytes(), to)
            .unwrap_or_else(|e| panic!("send from {} to {to}: {e}", self.addr));
    }

    /// The next datagram within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).ok()?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let text = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned();
                    // Keepalives (CRLF, 4-byte pings) are not SIP messages.
                    if text.trim().is_empty() {
                        continue;
                    }
                    return Some(Msg { text, from });
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(_) => continue,
            }
        }
    }

    /// The first message within `timeout` for which `pred` holds; others are read and dropped.
    pub fn recv_where(&self, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv(left)?;
            if pred(&m) {
                return Some(m);
            }
        }
    }

    /// Everything that arrives during `window`.
    pub fn drain(&self, window: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(m) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            out.push(m);
        }
        out
    }
}

/// A request. `via_host` is what the top Via says (normally the sender's address);
/// `extra` are full header lines without CRLF, placed after CSeq.
#[allow(clippy::too_many_arguments)]
pub fn request(
    method: &str,
    ruri: &str,
    via_host: SocketAddr,
    branch: &str,
    call_id: &str,
    from_tag: &str,
    to_tag: Option<&str>,
    cseq: u32,
    extra: &[String],
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let mut s = format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via_host};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.test>;tag={from_tag}\r\n\
         To: <sip:bob@example.test>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n"
    );
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s
}

/// A response to `req` as its UAS writes it: every Via, From, To (with `to_tag` added if the
/// request's To has none), Call-ID, CSeq and the Record-Route set copied; `extra` header lines
/// after them.
pub fn response_to(
    req: &Msg,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[String],
    body: &str,
) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.headers("via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!("From: {}\r\n", req.header("from").unwrap_or("")));
    let to = req.header("to").unwrap_or("");
    match to_tag {
        Some(t) if req.tag("to").is_none() => s.push_str(&format!("To: {to};tag={t}\r\n")),
        _ => s.push_str(&format!("To: {to}\r\n")),
    }
    s.push_str(&format!("Call-ID: {}\r\n", req.call_id()));
    s.push_str(&format!("CSeq: {}\r\n", req.header("cseq").unwrap_or("")));
    for rr in req.headers("record-route") {
        s.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s
}

/// A minimal SDP offer/answer from `ip`.
pub fn sdp(ip: IpAddr, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// Accepts one TCP connection on `listener` within `timeout` and reads from it until one whole
/// SIP message (head and Content-Length body) is there; `None` if nothing came.
pub fn tcp_accept_message(listener: &TcpListener, timeout: Duration) -> Option<Msg> {
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true).ok()?;
    let (mut conn, from) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    };
    conn.set_nonblocking(false).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        conn.set_read_timeout(Some(left)).ok()?;
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(buf.get(..n).unwrap_or(&[])),
        }
        let text = String::from_utf8_lossy(&data);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let m = Msg {
                text: head.to_string(),
                from,
            };
            let len: usize = m
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                // Keep the connection's peer able to see an answer if the test writes one.
                let _ = conn.flush();
                return Some(Msg {
                    text: text.into_owned(),
                    from,
                });
            }
        }
    }
    None
}
