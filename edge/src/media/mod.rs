//! Media anchoring: which calls go through an RTP relay, the relay control client, and the
//! dialog ↔ relay session state machine.
//!
//! - [`policy`]: `media.mode` (always / nat / never) → [`Decision`].
//! - [`client`]: [`RelayClient`], sans-IO rtpproxy client over UDP (cookies, retransmission,
//!   weighted relay set, `V` health pings, failover of new calls); [`shell`]: its tokio UDP
//!   task behind a cloneable [`RelayHandle`].
//! - [`dialog`]: [`MediaDialogs`], sans-IO: SIP events → relay commands, relay replies →
//!   rewritten SDP; frees every relay session (`D`) on BYE, CANCEL, failure, timeouts.
//! - [`metrics`]: [`MediaMetrics`] (`edge_media_dialogs`, `edge_media_sessions`,
//!   `edge_relay_command_seconds{command}`, `edge_relay_failures_total{reason}`,
//!   `edge_relays_up`).
//!
//! # Wiring it into the proxy
//!
//! ```text
//! setup:   metrics  = MediaMetrics::register(&registry)?
//!          relays   = RelayHandle::spawn(ClientConfig::from_config(&cfg.media), Some(metrics.clone())).await?
//!          dialogs  = MediaDialogs::new(DialogConfig::from_config(&cfg.media), Some(metrics))
//!
//! for each INVITE/ACK/BYE/CANCEL/UPDATE/PRACK request the proxy forwards, and each
//! response to INVITE/UPDATE/PRACK it forwards upstream (final ones: the chosen best one):
//!     ev   = media::sip_event(&msg, Peer { source, nated, access }, target_nated)   (None: skip)
//!     step = dialogs.on_message(&ev, now)
//!     for r in step.send: spawn { result = relays.command(r.command, r.target).await;
//!                                 feed (r.id, result) back to the proxy task }
//!     match step.body:
//!         Unchanged        → forward now
//!         Replace(body)    → forward now with Edit::set_body(None, &body)
//!         Hold(op)         → park the message under `op`
//!
//! for each relay result (on the proxy's task, which owns `dialogs`):
//!     r = dialogs.on_relay_reply(id, result, now)
//!     send r.send the same way
//!     if let Some(Completion { op, outcome }) = r.done:
//!         Rewrite(body) → forward the parked message with Edit::set_body(None, &body)
//!         Failed(e)     → media.on_relay_failure: "forward" → forward it unchanged;
//!                         "reject" → a request gets 500 (a response is forwarded unchanged)
//!                         (MediaError::Gone: the dialog ended meanwhile → forward unchanged)
//!
//! timer:   at dialogs.poll_timeout(): send dialogs.on_timer(now) (early timeout, max
//!          call duration).
//! ```
//!
//! `dialogs` is single-owner state (one proxy task, or one instance per worker sharded by
//! Call-ID); relay results must come back to the owner. A retransmitted request that the
//! transaction layer absorbs must not be passed again; a held INVITE whose retransmission
//! arrives is absorbed as usual (the server transaction answers 100 Trying).

pub mod client;
pub mod dialog;
pub mod event;
pub mod liveness;
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
pub use event::sip_event;
pub use metrics::MediaMetrics;
pub use policy::{Decision, Peer};
pub use shell::{CommandResult, RelayHandle};
