//! `rtprelay`: an RTP/RTCP relay with one io_uring datapath thread per core, driven by the
//! rtpproxy control protocol.
//!
//! - [`control`]: the rtpproxy command protocol (the sans-IO codec [`control::proto`] is
//!   `sbc_shared::proto`, shared with the edge's relay client and the load tools), sessions,
//!   reply cache, UDP/unix server.
//! - [`backend`]: the narrow interface between control and media planes.
//! - [`table`]: the per-shard port table, latching and timeouts (sans-IO).
//! - [`datapath`] + [`media`]: one thread per shard, io_uring or recvmmsg/sendmmsg.
//! - [`admin`]: the `/metrics`, `/health` and `/ready` listener (`sbc_shared::admin`, shared
//!   with the edge) and the relay's readiness rule.
//!
//! What the edge links too (codec, STUN answers, admin listener, logging, sd_notify, build
//! commit) lives in the `sbc-shared` crate (`rtprelay/shared/`) and is re-exported here under
//! its old paths, so the edge does not link this crate (nor io_uring).

pub mod admin;
pub mod backend;
pub mod control;
pub mod datapath;
/// Entry points for the fuzz targets and their stable corpus replay (`tests/fuzz/`).
#[doc(hidden)]
pub mod fuzzing;
pub use sbc_shared::logging;
pub mod media;
pub mod metrics;
pub use sbc_shared::sd_notify;
pub use sbc_shared::stun;
pub mod table;
