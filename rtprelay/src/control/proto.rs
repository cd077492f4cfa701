//! The rtpproxy control protocol codec: commands and replies, parsed and encoded.
//!
//! Sans-IO and self-contained: this module depends on nothing else in the crate (std and
//! `thiserror` only), because three programs speak the protocol through it — the relay's control
//! server, the edge's relay client and the bench load tool. There must never be a second codec.
//!
//! The protocol is line oriented ASCII: `COMMAND[modifiers] arg arg ...`, one command per
//! datagram (UDP, prefixed by a cookie, see [`framing`]) or per line (unix stream sockets).
//! [`Command::parse`] and [`Command::encode`] are exact inverses for every command the encoder
//! can produce; the same holds for [`Reply`] with the exception documented on [`Reply::parse`].
//! Errors carry the rtpproxy error number ([`ErrorCode`]) that the server answers with.

mod command;
mod error;
pub mod framing;
mod modifiers;
mod reply;
mod scan;

pub use command::{CallId, Command, Delete, MediaOp, MediaOpKind, Notify, Query, Tag, Update};
pub use error::{ErrorCode, ProtoError};
pub use framing::{
    split_cookie, split_udp_reply, write_stream_command, write_stream_reply, write_udp_command,
    write_udp_reply,
};
pub use modifiers::{Interface, Modifiers};
pub use reply::Reply;

/// `V` answer: the base protocol version every rtpproxy speaks.
pub const BASE_VERSION: u32 = 20040107;

/// Capability dates (`VF`) whose features rtprelay implements, and what each one means:
/// - 20040107: the base protocol (U/L/D, cookie framing).
/// - 20050322: several media streams per call (`;n` stream numbers on tags); no music on hold.
/// - 20060704: the `VF` capability probe itself.
/// - 20080403: per-session statistics query (`Q` with stat names, `Qv`).
///
/// Not claimed (a client then does not use them): 20071116 repacketisation (`z` is parsed but
/// ignored), 20071218 copy/record, 20081102 codec lists (parsed, ignored), 20081224 timeout
/// notifications (parsed, ignored), 20090810 automatic bridging, 20140323 load reporting.
pub const SUPPORTED_FEATURES: &[u32] = &[20040107, 20050322, 20060704, 20080403];

/// Whether rtprelay implements the feature of capability date `date` (the `VF` answer).
pub fn feature_supported(date: u32) -> bool {
    SUPPORTED_FEATURES.contains(&date)
}

#[cfg(test)]
mod tests;
