//! The stateful proxy core (RFC 3261 §16), sans-IO.
pub mod branch;
pub mod context;
pub mod policy;
