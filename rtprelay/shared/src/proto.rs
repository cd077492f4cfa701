//! The rtpproxy control protocol codec: commands and replies, parsed and encoded.
//!
//! Sans-IO and self-contained: this module depends on nothing else in the crate (std and
//! `thiserror` only), because three programs speak the protocol through it — the relay's control
//! server (as `rtprelay::control::proto`), the edge's relay client and the bench tools. It lives
//! in `sbc-shared` so that the edge links it without linking the relay. There must never be a
//! second codec.
//!
//! The protocol is line oriented ASCII: `COMMAND[modifiers] arg arg ...`, one command per
//! datagram (UDP, prefixed by a cookie, see [`framing`]) or per line (unix stream sockets).
//! [`Command::parse`] and [`Command::encode`] are exact inverses for every command the encoder
//! can produce; the same holds for [`Reply`] with the exception documented on [`Reply::parse`].
//! Errors carry the rtpproxy error number ([`ErrorCode`]) that the server answers with.
//!
//! Observed peers (for clients of this codec):
//! - Kamailio 5.6 `rtpproxy` module: every worker probes `V` (expects `20040107`) and
//!   `VF 20050322` (must be `1`) at startup, optionally `VF 20071116`/`VF 20081102`; sends
//!   modifiers in upper case (`A`, `I`, `E`, `S` for its `w` flag, `Z<ms>`, `6`, `c<pts>`),
//!   `;n` on both tags, an optional timeout-socket argument; reads at most 255 reply bytes as
//!   `port [addr [6]]`, port 0 meaning failure. Over `unix:` it writes one command without LF
//!   per connection. (Checked by `rtprelay/tests/control_kamailio.rs`.)
//! - rtpengine 10.5 (`--listen-udp`): answers `U`/`L` with `port addr 4|6` (`0.0.0.0` when the
//!   offer was `0.0.0.0`), `VF 20080403` with `0`, `Q` with `ttl p0 p1 p2 p3`, an unknown `L`
//!   with `0 0.0.0.0`, an unknown `D`/`Q` and `X`/`I` with `E8`; `D` of a known call answers
//!   `0` again while its deletion is pending (`--delete-delay`, default 30 s). It does not
//!   match `L` tags in swapped order (it creates a new branch instead). Run several instances
//!   with distinct `--listen-cli` ports (default 2224 collides).

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
