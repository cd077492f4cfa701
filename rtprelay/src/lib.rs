//! `rtprelay`: an RTP/RTCP relay with one io_uring datapath thread per core, driven by the
//! rtpproxy control protocol.
//!
//! - [`control`]: the rtpproxy command protocol (sans-IO codec in [`control::proto`], shared
//!   with the edge's relay client and the load tool), sessions, reply cache, UDP/unix server.
//! - [`backend`]: the narrow interface between control and media planes.
//! - [`table`]: the per-shard port table, latching and timeouts (sans-IO).
//! - [`datapath`] + [`media`]: one thread per shard, io_uring or recvmmsg/sendmmsg.
//! - [`admin`]: the `/metrics` and `/health` listener shared by both binaries.

pub mod admin;
pub mod backend;
pub mod control;
pub mod datapath;
/// Entry points for the fuzz targets and their stable corpus replay (`tests/fuzz/`).
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod sd_notify;
pub mod stun;
pub mod table;
