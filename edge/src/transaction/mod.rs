//! The SIP transaction layer (RFC 3261 §17, with the RFC 6026 corrections).
//! (Usage documentation: see below; filled in with the tests.)

mod client;
mod key;
mod machine;
mod output;
mod server;
mod table;
mod timers;

pub use client::ClientState;
pub use key::{ClientKey, Method, ServerKey};
pub use machine::Timer;
pub use output::{Output, RequestMatch, ResponseMatch, Transmit, TuEvent, TxId, TxStats};
pub use server::ServerState;
pub use table::{TransactionTable, TxError};
pub use timers::Timers;

#[cfg(test)]
mod tests;
