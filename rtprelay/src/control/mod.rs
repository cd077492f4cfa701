//! The control plane: the rtpproxy command protocol.
//!
//! - [`proto`]: the sans-IO codec (commands, replies, cookie framing): `sbc_shared::proto`,
//!   shared with the edge's relay client and the bench tools (one codec, never two copies).
//! - [`session`]: [`SessionManager`], sans-IO: Call-ID + tags → legs of the media plane
//!   ([`crate::backend::MediaBackend`]); command families in `update.rs`, `delete.rs`,
//!   `query.rs`, `info.rs`.
//! - [`cache`]: the UDP reply cache (retransmissions are answered, not re-executed).
//! - [`endpoint`]: framing + cache + session manager, sans-IO.
//! - [`server`]: the IO shell (UDP and unix sockets, allow-list, 1 s expiry tick);
//!   entry point [`server::run`].
//! - [`metrics`]: Prometheus counters and gauges.
//! - [`fake`]: an in-memory [`MediaBackend`](crate::backend::MediaBackend) for tests and
//!   benches.

pub mod cache;
mod delete;
pub mod endpoint;
pub mod fake;
mod info;
pub mod metrics;
pub use sbc_shared::proto;
mod query;
pub mod server;
pub mod session;
mod update;

pub use endpoint::{Endpoint, Outcome, OutcomeKind};
pub use info::{GLOBAL_STATS, INFO_MAX_STREAMS};
pub use metrics::ControlMetrics;
pub use query::QUERY_STATS;
pub use session::{Client, Quotas, SessionConfig, SessionManager, Totals};

#[cfg(test)]
mod session_memory;
#[cfg(test)]
mod session_tests;
