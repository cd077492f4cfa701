//! Replies: the answer half of the protocol.
//!
//! Shapes: `U`/`L` answer `port [addr [6]]` (Kamailio's module reads the port, then the
//! address if present, then treats a third token starting with `6` as IPv6; rtpengine writes
//! `4`/`6` there); `V`, `VF`, `D`, `X` answer a number; `Q`, `I`, `G` answer free text; any
//! failure is `E<n>`.

use super::error::{ErrorCode, ProtoError};
use super::scan;
use std::fmt::Write as _;
use std::net::IpAddr;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `U`/`L`: the relay port to put into the SDP, and the address (IPv6 adds ` 6`).
    /// Port 0 with `0.0.0.0` is the "session not found" answer to `L`.
    Port { port: u16, addr: Option<IpAddr> },
    /// `V` (version), `VF` (1/0), `D`/`X` (0).
    Number(u64),
    /// `Q`, `I`, `G`: text, possibly several lines (no trailing newline; framing adds it).
    Text(String),
    /// `E<n>`.
    Error(ErrorCode),
}

impl Reply {
    /// The plain success answer of `D` and `X`.
    pub const OK: Reply = Reply::Number(0);

    /// Append the reply text (no cookie, no newline: see [`super::framing`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(32);
        match self {
            Reply::Port { port, addr } => {
                let _ = write!(s, "{port}");
                if let Some(a) = addr {
                    let _ = write!(s, " {a}");
                    if a.is_ipv6() {
                        s.push_str(" 6");
                    }
                }
            }
            Reply::Number(n) => {
                let _ = write!(s, "{n}");
            }
            Reply::Text(t) => s.push_str(t),
            Reply::Error(code) => {
                let _ = write!(s, "{code}");
            }
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// Parse a reply (without cookie). Without the command the shape is guessed: `E<n>` is an
    /// error, a lone decimal a [`Reply::Number`], `port addr [4|6]` a [`Reply::Port`],
    /// anything else [`Reply::Text`]. So a `Port` without address comes back as a `Number`
    /// (and a numeric `Text` too); use [`Reply::port`] to read a `U`/`L` answer.
    pub fn parse(bytes: &[u8]) -> Result<Reply, ProtoError> {
        let text = scan::text(bytes)?;
        if text.is_empty() {
            return Err(ProtoError::Reply(String::new()));
        }
        if let Some(n) = text.strip_prefix(['E', 'e']) {
            if let Some(code) = scan::decimal(n).and_then(|v| u16::try_from(v).ok()) {
                return Ok(Reply::Error(ErrorCode(code)));
            }
        }
        let words: Vec<&str> = text
            .split(|c: char| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        match words.as_slice() {
            [n] => {
                if let Some(v) = scan::decimal(n) {
                    return Ok(Reply::Number(u64::from(v)));
                }
            }
            [port, addr, rest @ ..] if rest.len() <= 1 => {
                let family_ok = match rest.first() {
                    None => true,
                    Some(f) => matches!(*f, "4" | "6"),
                };
                if let (Ok(port), Ok(addr), true) =
                    (scan::port(port), scan::address(addr), family_ok)
                {
                    return Ok(Reply::Port {
                        port,
                        addr: Some(addr),
                    });
                }
            }
            _ => {}
        }
        Ok(Reply::Text(text.to_owned()))
    }

    /// Read a `U`/`L` answer: the port and, if given, the address. `None` for errors, text,
    /// and numbers that are not ports. Port 0 means "not found" (`L`) or failure.
    pub fn port(&self) -> Option<(u16, Option<IpAddr>)> {
        match self {
            Reply::Port { port, addr } => Some((*port, *addr)),
            Reply::Number(n) => u16::try_from(*n).ok().map(|p| (p, None)),
            _ => None,
        }
    }

    /// The error number, if this is an `E<n>` reply.
    pub fn error(&self) -> Option<ErrorCode> {
        match self {
            Reply::Error(c) => Some(*c),
            _ => None,
        }
    }
}

impl From<ErrorCode> for Reply {
    fn from(code: ErrorCode) -> Self {
        Reply::Error(code)
    }
}
