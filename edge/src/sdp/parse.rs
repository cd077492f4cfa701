//! Zero-copy SDP parsing: lines as slices of the body, the few fields the rewrite needs typed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// Why a body is not SDP the edge can rewrite. The proxy then forwards the body unchanged or
/// rejects the request (its media policy decides), it never guesses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("empty SDP")]
    Empty,
    #[error("line {0}: not `<letter>=<value>`")]
    Syntax(usize),
    #[error("SDP does not start with v=0")]
    Version,
    #[error("missing or repeated o= line")]
    Origin,
    #[error("line {0}: malformed o= line")]
    OriginFields(usize),
    #[error("line {0}: malformed c= line")]
    ConnectionFields(usize),
    #[error("line {0}: c= address is not a numeric address of its type")]
    ConnectionAddress(usize),
    #[error("line {0}: more than one c= line in one section")]
    DuplicateConnection(usize),
    #[error("line {0}: malformed m= line")]
    MediaFields(usize),
    #[error("line {0}: malformed a=rtcp")]
    RtcpFields(usize),
    #[error("stream {0} has no c= line (neither media nor session level)")]
    MissingConnection(usize),
}

/// One line: its type letter, its value (after `=`, without line ending) and its line ending
/// (`\r\n`, `\n` or empty for an unterminated last line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Line<'a> {
    pub kind: u8,
    pub value: &'a [u8],
    pub eol: &'a [u8],
}

/// A `c=` line (RFC 8866 §5.7): its address (TTL and count of multicast addresses dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub addr: IpAddr,
}

/// `a=rtcp` (RFC 3605): the RTCP port and, if given, address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp {
    pub port: u16,
    pub addr: Option<IpAddr>,
}

/// One media description (`m=` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStream<'a> {
    /// Position of the m= line, 0-based (the rtpproxy stream number is `index + 1`).
    pub index: usize,
    /// `audio`, `video`, `application`, ...
    pub media: &'a str,
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVPF`, `udptl`, `TCP/BFCP`, ...
    pub proto: &'a str,
    /// The effective address: the media-level c= if present, else the session-level one
    /// (RFC 8866 §5.7). `None` only for a disabled stream without any c=.
    pub connection: Option<IpAddr>,
    /// Whether the section has its own c= line.
    pub media_connection: bool,
    pub rtcp: Option<Rtcp>,
    /// `a=rtcp-mux` (RFC 5761): RTP and RTCP share the port.
    pub rtcp_mux: bool,
    /// Port 0: the stream is rejected or disabled (RFC 3264 §6, §8.2); left alone.
    pub disabled: bool,
    /// Whether the section carries ICE candidates (RFC 8839).
    pub ice: bool,
    /// Line indices of the section (the m= line first).
    pub(super) lines: Range<usize>,
}

impl MediaStream<'_> {
    /// A stream the UDP relay can carry: enabled and not over TCP (RFC 4145 `TCP/...`).
    pub fn relayable(&self) -> bool {
        !self.disabled && !self.proto.to_ascii_uppercase().starts_with("TCP")
    }
}

/// A parsed SDP body, borrowing from it.
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    pub(super) lines: Vec<Line<'a>>,
    /// End of the session section (index of the first m= line, or `lines.len()`).
    pub(super) session_end: usize,
    pub(super) origin_version: u64,
    pub(super) session_connection: Option<Connection>,
    pub(super) streams: Vec<MediaStream<'a>>,
}

impl<'a> Sdp<'a> {
    /// Parse an SDP body.
    pub fn parse(body: &'a [u8]) -> Result<Sdp<'a>, SdpError> {
        let lines = split_lines(body)?;
        if lines.first().map(|l| (l.kind, l.value)) != Some((b'v', b"0")) {
            return Err(SdpError::Version);
        }
        let session_end = lines
            .iter()
            .position(|l| l.kind == b'm')
            .unwrap_or(lines.len());
        let session = lines.get(..session_end).unwrap_or(&[]);
        let mut origin = None;
        for (n, l) in session.iter().enumerate() {
            if l.kind == b'o' {
                if origin.is_some() {
                    return Err(SdpError::Origin);
                }
                origin = Some(origin_version(l.value).ok_or(SdpError::OriginFields(n + 1))?);
            }
        }
        let origin_version = origin.ok_or(SdpError::Origin)?;
        let session_connection = section_connection(&lines, 0..session_end)?;

        let mut streams = Vec::new();
        let mut start = session_end;
        while start < lines.len() {
            let end = lines
                .iter()
                .skip(start + 1)
                .position(|l| l.kind == b'm')
                .map_or(lines.len(), |p| start + 1 + p);
            let index = streams.len();
            streams.push(media_stream(&lines, index, start..end, session_connection)?);
            start = end;
        }
        Ok(Sdp {
            lines,
            session_end,
            origin_version,
            session_connection,
            streams,
        })
    }

    /// The media streams in m= line order.
    pub fn media(&self) -> &[MediaStream<'a>] {
        &self.streams
    }

    /// The session-level c= line, if any.
    pub fn session_connection(&self) -> Option<Connection> {
        self.session_connection
    }

    /// `<sess-version>` of the o= line.
    pub fn origin_version(&self) -> u64 {
        self.origin_version
    }
}

/// Split into `x=value` lines. Empty lines are tolerated only at the end (some phones send a
/// trailing blank line); anything else that is not `<letter>=` is an error.
fn split_lines(body: &[u8]) -> Result<Vec<Line<'_>>, SdpError> {
    let mut lines = Vec::with_capacity(24);
    let mut rest = body;
    let mut trailing_blank = false;
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => rest.split_at(i + 1),
            None => (rest, &[][..]),
        };
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let eol = line.get(content.len()..).unwrap_or(&[]);
        rest = next;
        if content.iter().all(|b| *b == b' ' || *b == b'\t') {
            trailing_blank = true;
            continue;
        }
        if trailing_blank {
            return Err(SdpError::Syntax(number));
        }
        match content {
            [kind @ b'a'..=b'z', b'=', value @ ..] => lines.push(Line {
                kind: *kind,
                value,
                eol,
            }),
            _ => return Err(SdpError::Syntax(number)),
        }
    }
    if lines.is_empty() {
        return Err(SdpError::Empty);
    }
    Ok(lines)
}

/// Whitespace separated fields of a line value.
pub(super) fn fields(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|f| !f.is_empty())
}

fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>` (§5.2).
fn origin_version(value: &[u8]) -> Option<u64> {
    let f: Vec<&[u8]> = fields(value).collect();
    match f.as_slice() {
        [_, _, version, _, _, _] => number(version),
        _ => None,
    }
}

/// `c=IN IP4|IP6 <address>[/ttl][/count]` → the address. `line` is 1-based for errors.
fn connection(value: &[u8], line: usize) -> Result<Connection, SdpError> {
    let f: Vec<&[u8]> = fields(value).collect();
    let [nettype, addrtype, addr] = f.as_slice() else {
        return Err(SdpError::ConnectionFields(line));
    };
    if *nettype != b"IN" {
        return Err(SdpError::ConnectionFields(line));
    }
    let host = addr.split(|b| *b == b'/').next().unwrap_or(addr);
    let addr = typed_address(addrtype, host).ok_or(SdpError::ConnectionAddress(line))?;
    Ok(Connection { addr })
}

/// A numeric address of the given `<addrtype>` (`IP4`/`IP6`); FQDNs are not supported.
fn typed_address(addrtype: &[u8], host: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(host).ok()?;
    match addrtype {
        b"IP4" => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        b"IP6" => s.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    }
}

/// The one c= line of a section, if any.
fn section_connection(
    lines: &[Line<'_>],
    range: Range<usize>,
) -> Result<Option<Connection>, SdpError> {
    let mut found = None;
    for i in range {
        let Some(l) = lines.get(i) else { break };
        if l.kind == b'c' {
            if found.is_some() {
                return Err(SdpError::DuplicateConnection(i + 1));
            }
            found = Some(connection(l.value, i + 1)?);
        }
    }
    Ok(found)
}

/// The attribute name and value of an `a=` line (`name[:value]`, §5.13).
pub(super) fn attribute(value: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', value) {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &[]),
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <connection-address>]` (RFC 3605 §2.1).
fn rtcp(value: &[u8], line: usize) -> Result<Rtcp, SdpError> {
    let f: Vec<&[u8]> = fields(value).collect();
    let bad = || SdpError::RtcpFields(line);
    match f.as_slice() {
        [port] => Ok(Rtcp {
            port: number(port).ok_or_else(bad)?,
            addr: None,
        }),
        [port, b"IN", addrtype, addr] => Ok(Rtcp {
            port: number(port).ok_or_else(bad)?,
            addr: Some(typed_address(addrtype, addr).ok_or_else(bad)?),
        }),
        _ => Err(bad()),
    }
}

/// `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` (§5.14) and its section.
fn media_stream<'a>(
    lines: &[Line<'a>],
    index: usize,
    range: Range<usize>,
    session: Option<Connection>,
) -> Result<MediaStream<'a>, SdpError> {
    let m_line = range.start + 1;
    let bad = || SdpError::MediaFields(m_line);
    let m = lines.get(range.start).ok_or_else(bad)?;
    let f: Vec<&'a [u8]> = fields(m.value).collect();
    let [media, port, proto, _fmt, ..] = f.as_slice() else {
        return Err(bad());
    };
    let port_only = port.split(|b| *b == b'/').next().unwrap_or(port);
    let port: u16 = number(port_only).ok_or_else(bad)?;
    let media = std::str::from_utf8(media).map_err(|_| bad())?;
    let proto = std::str::from_utf8(proto).map_err(|_| bad())?;
    let own = section_connection(lines, range.start + 1..range.end)?;
    let mut rtcp_attr = None;
    let mut rtcp_mux = false;
    let mut ice = false;
    for i in range.start + 1..range.end {
        let Some(l) = lines.get(i) else { break };
        if l.kind != b'a' {
            continue;
        }
        match attribute(l.value) {
            (b"rtcp", v) => rtcp_attr = Some(rtcp(v, i + 1)?),
            (b"rtcp-mux", _) => rtcp_mux = true,
            (b"candidate", _) => ice = true,
            _ => {}
        }
    }
    let disabled = port == 0;
    let connection = own.or(session).map(|c| c.addr);
    if connection.is_none() && !disabled {
        return Err(SdpError::MissingConnection(index));
    }
    Ok(MediaStream {
        index,
        media,
        port,
        proto,
        connection,
        media_connection: own.is_some(),
        rtcp: rtcp_attr,
        rtcp_mux,
        disabled,
        ice,
        lines: range,
    })
}
