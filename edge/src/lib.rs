//! `edge`: the SIP edge proxy and mid-registrar of the SBC appliance.
//!
//! Protocol logic (parsing in [`sip`], transactions in [`transaction`], proxy decisions in
//! [`proxy`]) is sans-IO: plain data structures and functions fed with `(input, now)` that
//! return actions. Sockets and timers live in the thin tokio shell ([`server`], [`transport`]).

/// The git commit the binary was built from (found by `rtprelay/build.rs`: one repository,
/// one commit for both daemons), "unknown" outside a checkout.
pub const BUILD_COMMIT: &str = sbc_shared::GIT_COMMIT;

pub mod admin_api;
pub mod capture;
/// Entry points for the fuzz targets and their stable corpus replay (`tests/fuzz/`).
#[doc(hidden)]
pub mod fuzzing;
pub mod hep;
pub mod media;
pub mod metrics;
pub mod nat;
pub mod operator;
pub mod proxy;
pub mod ratelimit;
pub mod registrar;
pub mod reload;
pub mod resolve;
pub mod sdp;
pub mod server;
pub mod sip;
pub mod transaction;
pub mod transport;
