//! `sbc-shared`: the pieces both daemons (the edge and rtprelay) link, and nothing else, so the
//! edge does not link the relay (its io_uring datapath, session table, control server).
//!
//! - [`proto`]: the rtpproxy control protocol codec (sans-IO), spoken by the relay's control
//!   server, the edge's relay client and the bench tools. The one codec: never a second copy.
//! - [`stun`]: STUN Binding answers (media ports, SIP keepalives).
//! - [`admin`]: the `/metrics`, `/health` (and `/ready`) listener.
//! - [`logging`]: `log.level`/`log.format` setup, journald priorities.
//! - [`sd_notify`]: systemd's notify protocol and watchdog.
//! - [`GIT_COMMIT`]: the commit the binaries were built from.

pub mod admin;
/// Seeds shared by the fuzz targets of both daemons (`tests/fuzz/`).
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod proto;
pub mod sd_notify;
pub mod stun;

/// The commit the binaries were built from (`build.rs`: `git rev-parse --short HEAD`, or
/// `unknown`).
pub const GIT_COMMIT: &str = env!("SBC_GIT_COMMIT");
