//! Rewriting an offer or answer so that media flows through the relay (or, without a relay,
//! to the NATed source address of the phone).
//!
//! What changes, and why:
//! - `c=`: the new address, at session level (taken from the first rewritten stream) and in
//!   every rewritten section that has its own c= or needs one because its address differs from
//!   the session one; a stream left alone that inherited the session c= gets its old address
//!   as a media-level c= so its meaning does not change (RFC 8866 §5.7).
//! - `m=` port (the `/<number of ports>` suffix is kept) and `a=rtcp` (RFC 3605): the relay
//!   allocates RTCP on port + 1, or on the RTP port itself when the stream muxes RTCP
//!   (RFC 5761 §5.1.3: `a=rtcp` then names the RTP port). `a=rtcp-mux` is kept.
//! - ICE (RFC 8839): candidates name the phone's own addresses, which the relay hides; they
//!   are removed with `ice-ufrag`, `ice-pwd`, `ice-options` and friends unless the config keeps
//!   them, at both levels.
//! - `o=`: `<sess-version>` becomes the received version + 1 (RFC 3264 §8: a changed SDP
//!   needs a higher version). Deriving it from the received one keeps the rule for the next
//!   offer: an unchanged re-offer (same version) is rewritten to the same output version.
//! - Disabled streams (port 0) are copied untouched; so is every other line, with its own line
//!   ending. Inserted lines take the line ending of the line before them.

use super::parse::{attribute, fields, Line, MediaStream, Sdp};
use std::io::Write as _;
use std::net::IpAddr;

/// Where one stream's media must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRewrite {
    pub addr: IpAddr,
    /// The new RTP port (the relay's); `None` keeps the port and the a=rtcp port (only the
    /// address is fixed, as nathelper's `fix_nated_sdp` does).
    pub port: Option<u16>,
}

/// Rewrite switches (from `[media]` in the edge config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewriteOptions {
    /// Keep ICE attributes (`media.keep_ice`).
    pub keep_ice: bool,
    /// Bump the o= version (on for every rewrite that changes something).
    pub bump_version: bool,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        RewriteOptions {
            keep_ice: false,
            bump_version: true,
        }
    }
}

/// ICE attributes (RFC 8839 §5) removed with the candidates.
const ICE_ATTRIBUTES: &[&[u8]] = &[
    b"candidate",
    b"remote-candidates",
    b"end-of-candidates",
    b"ice-ufrag",
    b"ice-pwd",
    b"ice-options",
    b"ice-lite",
    b"ice-mismatch",
    b"ice-pacing",
];

fn is_ice(l: &Line<'_>) -> bool {
    l.kind == b'a' && ICE_ATTRIBUTES.contains(&attribute(l.value).0)
}

/// Write the rewritten body. `streams[i]` applies to the stream of index `i`; `None`, a
/// missing entry or a disabled stream leaves that stream alone.
pub fn rewrite(sdp: &Sdp<'_>, streams: &[Option<StreamRewrite>], opts: &RewriteOptions) -> Vec<u8> {
    let target = |s: &MediaStream<'_>| {
        if s.disabled {
            None
        } else {
            streams.get(s.index).copied().flatten()
        }
    };
    let session_addr = sdp.session_connection.map(|c| c.addr);
    let new_session_addr = match session_addr {
        Some(_) => sdp
            .streams
            .iter()
            .find_map(|s| target(s).map(|t| t.addr))
            .or(session_addr),
        None => None,
    };
    let mut w = Writer {
        out: Vec::with_capacity(sdp.lines.iter().map(|l| l.value.len() + 4).sum::<usize>() + 64),
    };

    for l in sdp.lines.iter().take(sdp.session_end) {
        match l.kind {
            b'o' if opts.bump_version => w.origin(l, sdp.origin_version),
            b'c' => match new_session_addr {
                Some(a) => w.connection(a, l.eol),
                None => w.copy(l),
            },
            _ if !opts.keep_ice && is_ice(l) => {}
            _ => w.copy(l),
        }
    }

    for s in &sdp.streams {
        let t = target(s);
        // A c= this section must gain: its new address, or its old one when the session
        // c= moved away under a stream we leave alone.
        let insert = if s.media_connection || s.disabled {
            None
        } else {
            let wanted = t.map(|t| t.addr).or(s.connection);
            wanted.filter(|a| Some(*a) != new_session_addr)
        };
        let mut pending_insert = insert;
        for (n, l) in sdp
            .lines
            .get(s.lines.clone())
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            // RFC 8866 §5: `c=` comes after `m=` and `i=`.
            if n > 0 && l.kind != b'i' {
                if let Some(a) = pending_insert.take() {
                    let eol = w.last_eol();
                    w.connection(a, eol);
                }
            }
            match (l.kind, t) {
                (b'm', Some(StreamRewrite { port: Some(p), .. })) => w.media_port(l, p),
                (b'c', Some(t)) => w.connection(t.addr, l.eol),
                (b'a', Some(t)) if attribute(l.value).0 == b"rtcp" => w.rtcp(l, s, t),
                _ if !opts.keep_ice && is_ice(l) => {}
                _ => w.copy(l),
            }
        }
        if let Some(a) = pending_insert {
            let eol = w.last_eol();
            w.connection(a, eol);
        }
    }
    w.out
}

struct Writer {
    out: Vec<u8>,
}

const CRLF: &[u8] = b"\r\n";

impl Writer {
    /// Terminate the previous line if it had no ending (an unterminated last line that is no
    /// longer last) and return the ending to use for a line after it.
    fn last_eol(&mut self) -> &'static [u8] {
        let ends_lf = self.out.last() == Some(&b'\n');
        if !ends_lf {
            self.out.extend_from_slice(CRLF);
            return CRLF;
        }
        if self.out.len() >= 2 && self.out.get(self.out.len() - 2) == Some(&b'\r') {
            CRLF
        } else {
            b"\n"
        }
    }

    fn copy(&mut self, l: &Line<'_>) {
        self.out.push(l.kind);
        self.out.push(b'=');
        self.out.extend_from_slice(l.value);
        self.out.extend_from_slice(l.eol);
    }

    fn connection(&mut self, addr: IpAddr, eol: &[u8]) {
        let _ = write!(self.out, "c=IN {} {addr}", addrtype(addr));
        self.out.extend_from_slice(eol);
    }

    /// o= with the third field replaced by `version + 1` (other fields byte for byte).
    fn origin(&mut self, l: &Line<'_>, version: u64) {
        self.out.extend_from_slice(b"o=");
        let mut field = 0;
        let mut rest = l.value;
        // Walk the fields keeping the original separators.
        while !rest.is_empty() {
            let sep = rest
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            let (blank, tail) = rest.split_at(sep);
            self.out.extend_from_slice(blank);
            let len = tail
                .iter()
                .take_while(|b| **b != b' ' && **b != b'\t')
                .count();
            let (f, tail) = tail.split_at(len);
            if !f.is_empty() {
                if field == 2 {
                    let _ = write!(self.out, "{}", version.wrapping_add(1));
                } else {
                    self.out.extend_from_slice(f);
                }
                field += 1;
            }
            rest = tail;
        }
        self.out.extend_from_slice(l.eol);
    }

    /// m= with the port replaced, keeping `/<number of ports>` and everything else.
    fn media_port(&mut self, l: &Line<'_>, port: u16) {
        let mut it = fields(l.value);
        let media = it.next().unwrap_or_default();
        let old = it.next().unwrap_or_default();
        let suffix = old
            .iter()
            .position(|b| *b == b'/')
            .and_then(|i| old.get(i..))
            .unwrap_or_default();
        // The rest of the line after the port field, byte for byte.
        let port_end = subslice_end(l.value, old);
        let _ = write!(self.out, "m=");
        self.out.extend_from_slice(media);
        let _ = write!(self.out, " {port}");
        self.out.extend_from_slice(suffix);
        self.out
            .extend_from_slice(l.value.get(port_end..).unwrap_or_default());
        self.out.extend_from_slice(l.eol);
    }

    fn rtcp(&mut self, l: &Line<'_>, s: &MediaStream<'_>, t: StreamRewrite) {
        let Some(old) = s.rtcp else {
            return self.copy(l);
        };
        let port = match t.port {
            Some(p) if old.port == s.port => p,
            Some(p) => p.checked_add(1).unwrap_or(p),
            None => old.port,
        };
        let _ = write!(self.out, "a=rtcp:{port}");
        if old.addr.is_some() {
            let _ = write!(self.out, " IN {} {}", addrtype(t.addr), t.addr);
        }
        self.out.extend_from_slice(l.eol);
    }
}

fn addrtype(a: IpAddr) -> &'static str {
    match a {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// Offset just past `part` inside `whole` (`part` must be a subslice of it).
fn subslice_end(whole: &[u8], part: &[u8]) -> usize {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    (start + part.len()).min(whole.len())
}
