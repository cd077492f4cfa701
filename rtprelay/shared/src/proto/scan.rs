//! Small lexical helpers shared by the command and reply parsers.

use super::error::ProtoError;
use std::net::IpAddr;

/// The message as text: rtpproxy commands are ASCII. Trailing CR/LF and surrounding blanks
/// are not part of the command.
pub(crate) fn text(bytes: &[u8]) -> Result<&str, ProtoError> {
    let s = std::str::from_utf8(bytes).map_err(|_| ProtoError::Encoding)?;
    if !s.is_ascii() || s.bytes().any(|b| b.is_ascii_control() && !is_blank(b)) {
        return Err(ProtoError::Encoding);
    }
    Ok(s.trim_matches(|c: char| c.is_ascii_whitespace()))
}

/// Separators between arguments: rtpproxy splits on runs of blanks.
pub(crate) fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A decimal number made of ASCII digits only (no sign, no blanks), bounded to `u32`.
pub(crate) fn decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().and_then(|v| u32::try_from(v).ok())
}

/// A port argument: decimal, at most 65535 (0 is legal: "no media / unknown").
pub(crate) fn port(s: &str) -> Result<u16, ProtoError> {
    let v = decimal(s).ok_or_else(|| ProtoError::Port(s.to_owned()))?;
    u16::try_from(v).map_err(|_| ProtoError::PortRange(v))
}

/// A numeric IPv4 or IPv6 address (no brackets, no host names).
pub(crate) fn address(s: &str) -> Result<IpAddr, ProtoError> {
    s.parse::<IpAddr>()
        .map_err(|_| ProtoError::Address(s.to_owned()))
}
