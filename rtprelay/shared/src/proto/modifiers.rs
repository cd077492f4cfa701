//! The modifiers that follow the command letter of `U` and `L` (`Uaei6c0,8z20 ...`).
//!
//! rtpproxy reads them case-insensitively (Kamailio's module sends `A`, `I`, `E`, `S`, `Z`), and
//! some carry an argument that runs until the next letter: `c<pt,pt,...>`, `z<ms>`,
//! `l<addr>`, `r<addr>`. To keep that unambiguous, an IPv6 address argument is written in
//! brackets (`l[2001:db8::1]`); an IPv4 one is the run of digits and dots.

use super::error::ProtoError;
use super::scan::decimal;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which relay interface a leg uses (`e`/`i`, rtpproxy's bridging mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interface {
    /// `e`: the external interface (`media.external`).
    External,
    /// `i`: the internal interface (`media.listen`).
    Internal,
}

/// Parsed `U`/`L` modifiers. `Default` is "no modifiers": symmetric, internal interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modifiers {
    /// `a`: the party does not do symmetric RTP; send to the signalled address, never latch.
    pub asymmetric: bool,
    /// `s`: explicitly symmetric (the default; kept so the command round-trips).
    pub symmetric: bool,
    /// `w`: weak session (see the session manager for the delete semantics).
    pub weak: bool,
    /// `e`/`i` in the order given: the first is this command's leg (the party whose address
    /// the command carries), the second the other leg. At most two.
    pub interfaces: Vec<Interface>,
    /// `n`: allocate a new port (accepted, currently not acted upon).
    pub new_port: bool,
    /// `l<addr>`: explicit local address for this leg.
    pub local: Option<IpAddr>,
    /// `r<addr>`: use the local address that routes to this remote (accepted; the relay has
    /// no routing table lookup, it falls back to the interface selection).
    pub route_to: Option<IpAddr>,
    /// `z<ms>`: repacketisation interval (accepted, not implemented).
    pub repacketize_ms: Option<u32>,
    /// `c<pt,pt>`: payload types of the stream (accepted, not used by the relay).
    pub codecs: Vec<u8>,
}

/// Parse `U`/`L` modifiers. Returns the modifiers and whether `6` (IPv6 address) was given.
pub(crate) fn parse_stream_modifiers(s: &str) -> Result<(Modifiers, bool), ProtoError> {
    let bad = || ProtoError::Modifiers(s.to_owned());
    let b = s.as_bytes();
    let mut m = Modifiers::default();
    let mut ipv6 = false;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        i += 1;
        match c.to_ascii_lowercase() {
            b'a' => m.asymmetric = true,
            b's' => m.symmetric = true,
            b'w' => m.weak = true,
            b'n' => m.new_port = true,
            b'6' => ipv6 = true,
            b'e' | b'i' => {
                if m.interfaces.len() == 2 {
                    return Err(bad());
                }
                m.interfaces.push(if c.eq_ignore_ascii_case(&b'e') {
                    Interface::External
                } else {
                    Interface::Internal
                });
            }
            b'z' => {
                let end = run(b, i, |x| x.is_ascii_digit());
                m.repacketize_ms = Some(decimal(s.get(i..end).ok_or_else(bad)?).ok_or_else(bad)?);
                i = end;
            }
            b'c' => {
                let end = run(b, i, |x| x.is_ascii_digit() || x == b',');
                let list = s.get(i..end).ok_or_else(bad)?;
                m.codecs = list
                    .split(',')
                    .map(|pt| {
                        decimal(pt)
                            .and_then(|v| u8::try_from(v).ok())
                            .filter(|v| *v < 128)
                    })
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(bad)?;
                i = end;
            }
            b'l' | b'r' => {
                let (addr, end) = modifier_address(s, i).ok_or_else(bad)?;
                if c.eq_ignore_ascii_case(&b'l') {
                    m.local = Some(addr);
                } else {
                    m.route_to = Some(addr);
                }
                i = end;
            }
            _ => return Err(bad()),
        }
    }
    Ok((m, ipv6))
}

/// End index of the run of bytes satisfying `pred` starting at `from`.
fn run(b: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> usize {
    let mut end = from;
    while b.get(end).is_some_and(|&x| pred(x)) {
        end += 1;
    }
    end
}

/// `[v6]` or a dotted IPv4 run starting at `from`; returns the address and the end index.
fn modifier_address(s: &str, from: usize) -> Option<(IpAddr, usize)> {
    let b = s.as_bytes();
    if b.get(from) == Some(&b'[') {
        let close = from + 1 + s.get(from + 1..)?.find(']')?;
        let v6: Ipv6Addr = s.get(from + 1..close)?.parse().ok()?;
        Some((IpAddr::V6(v6), close + 1))
    } else {
        let end = run(b, from, |x| x.is_ascii_digit() || x == b'.');
        let v4: Ipv4Addr = s.get(from..end)?.parse().ok()?;
        Some((IpAddr::V4(v4), end))
    }
}

impl Modifiers {
    /// Append the canonical form: flags first, then the argument-carrying modifiers, codecs
    /// last (their digit run must not swallow a following flag such as `6`).
    pub(crate) fn encode(&self, ipv6: bool, out: &mut String) {
        if self.asymmetric {
            out.push('a');
        }
        if self.symmetric {
            out.push('s');
        }
        if self.weak {
            out.push('w');
        }
        for i in &self.interfaces {
            out.push(match i {
                Interface::External => 'e',
                Interface::Internal => 'i',
            });
        }
        if ipv6 {
            out.push('6');
        }
        if self.new_port {
            out.push('n');
        }
        for (letter, addr) in [('l', self.local), ('r', self.route_to)] {
            match addr {
                Some(IpAddr::V4(a)) => {
                    let _ = write!(out, "{letter}{a}");
                }
                Some(IpAddr::V6(a)) => {
                    let _ = write!(out, "{letter}[{a}]");
                }
                None => {}
            }
        }
        if let Some(ms) = self.repacketize_ms {
            let _ = write!(out, "z{ms}");
        }
        if !self.codecs.is_empty() {
            out.push('c');
            for (n, pt) in self.codecs.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{pt}");
            }
        }
    }
}

/// Check single-letter modifiers of the simple commands (`Dw`, `Qv`, `Ib`, `Gv`): every letter
/// must be in `allowed`; returns which of `allowed` were present.
pub(crate) fn simple_flags(s: &str, allowed: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut seen = Vec::new();
    for c in s.bytes().map(|c| c.to_ascii_lowercase()) {
        if !allowed.contains(&c) {
            return Err(ProtoError::Modifiers(s.to_owned()));
        }
        seen.push(c);
    }
    Ok(seen)
}
