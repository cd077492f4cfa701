//! `edge`: the SIP edge proxy and mid-registrar of the SBC appliance.
//!
//! Protocol logic (parsing, transactions, proxy decisions) is sans-IO: plain data structures and
//! functions fed with `(input, now)` that return actions. Sockets and timers live in the thin
//! tokio shell under `transport/` and `main.rs`.

pub mod metrics;
pub mod proxy;
pub mod sip;
pub mod transaction;
pub mod transport;
