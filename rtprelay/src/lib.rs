//! `rtprelay`: an RTP/RTCP relay with one io_uring datapath thread per core, driven by the
//! rtpproxy control protocol.

pub mod admin;
pub mod backend;
pub mod control;
pub mod datapath;
pub mod media;
pub mod metrics;
pub mod stun;
pub mod table;
