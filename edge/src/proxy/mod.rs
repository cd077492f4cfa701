//! The stateful proxy core (RFC 3261 §16), sans-IO: [`Proxy`] takes received messages, ticks
//! and transport errors with `now`, and produces transmits.
mod anchor;
pub mod branch;
pub mod build;
pub mod calls;
pub mod context;
mod core;
pub mod health;
pub mod locals;
pub mod policy;
pub mod route;
pub mod route_token;
pub mod srv;
pub mod timing;

pub use self::core::{Proxy, HOUSEKEEPING};

#[cfg(test)]
mod tests;
