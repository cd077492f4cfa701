//! Framing per transport.
//!
//! - UDP (and rtpproxy's TCP): `COOKIE SP COMMAND`, answered by `COOKIE SP REPLY LF`. The
//!   cookie is an opaque token chosen by the client (Kamailio: `<pid>_<seq>`); a client
//!   retransmits with the same cookie and matches replies by it.
//! - unix stream sockets (`unix:` one command per connection, `cunix:` persistent): no cookie,
//!   `COMMAND [LF]` answered by `REPLY LF`.

use super::command::Command;
use super::error::ProtoError;
use super::reply::Reply;
use super::scan::is_blank;

/// Longest cookie accepted (rtpproxy clients use short ones; this bounds the reply cache key).
pub const MAX_COOKIE: usize = 128;

/// Split a UDP datagram into (cookie, command bytes). The cookie is everything before the
/// first blank; it must be non-empty and followed by a command.
pub fn split_cookie(datagram: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    let end = datagram
        .iter()
        .position(|&b| is_blank(b))
        .ok_or(ProtoError::NoCookie)?;
    let cookie = datagram.get(..end).ok_or(ProtoError::NoCookie)?;
    let rest = datagram.get(end..).ok_or(ProtoError::NoCookie)?;
    if cookie.is_empty() || cookie.len() > MAX_COOKIE || rest.iter().all(|&b| is_blank(b)) {
        return Err(ProtoError::NoCookie);
    }
    Ok((cookie, rest))
}

/// `COOKIE SP COMMAND` (no newline, as Kamailio sends it).
pub fn write_udp_command(cookie: &[u8], cmd: &Command, out: &mut Vec<u8>) {
    out.extend_from_slice(cookie);
    out.push(b' ');
    cmd.encode(out);
}

/// `COOKIE SP REPLY LF`.
pub fn write_udp_reply(cookie: &[u8], reply: &Reply, out: &mut Vec<u8>) {
    out.extend_from_slice(cookie);
    out.push(b' ');
    reply.encode(out);
    out.push(b'\n');
}

/// Split a UDP reply datagram into (cookie, parsed reply).
pub fn split_udp_reply(datagram: &[u8]) -> Result<(&[u8], Reply), ProtoError> {
    let (cookie, rest) = split_cookie(datagram)?;
    Ok((cookie, Reply::parse(rest)?))
}

/// `COMMAND LF` for a unix stream socket.
pub fn write_stream_command(cmd: &Command, out: &mut Vec<u8>) {
    cmd.encode(out);
    out.push(b'\n');
}

/// `REPLY LF` for a unix stream socket.
pub fn write_stream_reply(reply: &Reply, out: &mut Vec<u8>) {
    reply.encode(out);
    out.push(b'\n');
}
