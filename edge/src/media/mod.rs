//! Media anchoring: which calls go through an RTP relay, the relay control client, and the
//! dialog ↔ relay session state machine.
//!
//! - [`policy`]: `media.mode` (always / nat / never) → [`Decision`].
//! - [`client`]: [`RelayClient`], sans-IO rtpproxy client over UDP (cookies, retransmission,
//!   weighted relay set, health pings, failover of new calls); [`shell`]: its tokio UDP task
//!   ([`RelayHandle`]).
//! - [`dialog`]: [`MediaDialogs`], sans-IO: SIP events → relay commands, relay replies →
//!   rewritten SDP; frees every relay session (D) on BYE, CANCEL, failure, timeout.
//! - [`metrics`]: [`MediaMetrics`] (`edge_media_dialogs`, `edge_media_sessions`,
//!   `edge_relay_command_seconds`, `edge_relay_failures_total`, `edge_relays_up`).

pub mod client;
pub mod dialog;
pub mod metrics;
pub mod policy;
pub mod shell;

pub use client::{
    ClientConfig, ClientError, ClientEvent, RelayClient, RelayId, RequestId, Target, Transmit,
};
pub use dialog::{
    BodyAction, CmdId, Completion, DialogConfig, MediaDialogs, MediaError, OpId, Outcome,
    RelayRequest, ReplyStep, SipEvent, SipKind, Step,
};
pub use metrics::MediaMetrics;
pub use policy::{Decision, Peer};
pub use shell::{CommandResult, RelayHandle};
