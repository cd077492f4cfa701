//! The control plane: the rtpproxy command protocol.
//!
//! - [`proto`]: the sans-IO codec (commands, replies, cookie framing), shared with the edge's
//!   relay client and the bench tool; depends on nothing else in this crate.
//! - [`session`]: [`SessionManager`], sans-IO: Call-ID + tags → legs of the media plane
//!   ([`crate::backend::MediaBackend`]); command families in `update.rs`, `delete.rs`,
//!   `query.rs`, `info.rs`.
//! - [`fake`]: an in-memory [`MediaBackend`](crate::backend::MediaBackend) for tests and
//!   benches.

mod delete;
pub mod fake;
mod info;
pub mod proto;
mod query;
pub mod session;
mod update;

pub use info::{GLOBAL_STATS, INFO_MAX_STREAMS};
pub use query::QUERY_STATS;
pub use session::{SessionConfig, SessionManager, Totals};

#[cfg(test)]
mod session_tests;
