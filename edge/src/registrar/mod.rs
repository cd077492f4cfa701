//! The mid-registrar (issue 4): a location table in front of a core registrar.
//! See [`mode`] for the three modes and the authentication-safety rule.
pub mod contact;
pub mod core_update;
pub mod keepalive;
pub mod location;
pub mod lookup;
pub mod metrics;
pub mod mode;
pub mod nat;
pub mod persist;

pub use core_update::CoreUpdate;
pub use location::{Binding, Location};
pub use metrics::RegistrarMetrics;
pub use mode::{Change, PendingId, RegisterAction, Registrar, ResponseAction, Rewrite};

#[cfg(test)]
mod tests;
