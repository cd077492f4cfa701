//! SDP (RFC 8866, formerly RFC 4566) as the edge needs it for media anchoring: a zero-copy
//! parser over the message body and a rewriter for offers and answers (RFC 3264).
//!
//! [`Sdp::parse`] splits the body into lines (CRLF or bare LF, RFC 8866 §5 asks for CRLF but
//! tells parsers to accept LF) and validates only what the rewrite depends on: `v=` first, one
//! `o=` with a numeric version, `c=` and `m=` lines well formed, every active stream with a
//! connection address. [`Sdp::media`] lists the streams with their effective address.
//! [`rewrite`] writes a new body with some streams pointed at the relay ([`StreamRewrite`]);
//! every line it has no reason to touch is copied byte for byte, with its own line ending.
//!
//! No IO, no clock; bad input yields [`SdpError`], never a panic.

mod parse;
mod rewrite;

pub use parse::{Connection, MediaStream, Rtcp, Sdp, SdpError};
pub use rewrite::{rewrite, RewriteOptions, StreamRewrite};

#[cfg(test)]
mod tests;
