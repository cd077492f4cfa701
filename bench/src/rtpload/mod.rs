//! `rtpload`: RTP load through a relay that speaks the rtpproxy control protocol (rtprelay, or
//! rtpengine's `--listen-udp`).
//!
//! How a run works: [`control`] opens N streams (`U` then `L`, pipelined, retransmitted with
//! the same cookie), the sender threads pace 172-byte RTP packets (12-byte header + 160 bytes
//! of G.711, 20 ms) in both directions, the receiver threads account them per stream and
//! direction ([`stats`]), and at the end the streams are deleted (`D`).
//!
//! Efficiency (the tool shares two cores with the relay): each side of every stream is served
//! by one of a few shared sockets (`--sockets`), so sends to many relay ports are batched with
//! one `sendmmsg` per socket and receives with `recvmmsg` ([`net`]); packets carry their stream,
//! direction and send time in the payload ([`packet`]), so demultiplexing needs no lookup and no
//! allocation. The relay keys its legs by its own local port, so legs sharing a remote address
//! are still distinct.

pub mod control;
pub mod net;
pub mod pacer;
pub mod packet;
pub mod procfs;
pub mod report;
pub mod stats;
