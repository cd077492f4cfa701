//! The control plane: the rtpproxy command protocol.
//!
//! - [`proto`]: the sans-IO codec (commands, replies, cookie framing), shared with the edge's
//!   relay client and the bench tool; depends on nothing else in this crate.

pub mod proto;
