//! The mid-registrar (issue 4): a location table in front of a core registrar, so thousands of
//! NATed phones stay reachable with short refresh intervals while the core sees a trickle of
//! REGISTERs. Sans-IO like the rest of the edge: no sockets, no clock (`now` is passed in), no
//! file IO except in [`persist`], which the shell calls.
//!
//! - [`mode`]: [`Registrar`], the decision for each REGISTER (mirror, contact throttling, AoR
//!   throttling; the authentication-safety rule) and what the core's answer changes.
//! - [`location`]: [`Location`], AoR → [`Binding`]s (`DashMap`), with the per-AoR limit.
//! - [`contact`]: reading a REGISTER (AoR, Contacts, expires rules).
//! - [`persist`]: [`persist::Store`], the append-only log that survives restarts.
//! - [`nat`]: NAT detection and Contact fixing; [`keepalive`]: [`keepalive::Keepalive`], the
//!   ping scheduler; [`lookup`]: targets for requests from the core.
//! - [`core_update`]: REGISTERs the edge sends on its own (expired or dead bindings).
//! - [`metrics`] holds [`RegistrarMetrics`].
//!
//! # Wiring it into the proxy (what the shell / `Proxy` does)
//!
//! Start-up:
//! ```text
//! let metrics = RegistrarMetrics::register(&proxy_metrics.registry)?;
//! let mut reg = Registrar::new(&cfg.registrar, edge_host_port_toward_core, rand::random(), metrics.clone());
//! let loaded = persist::Store::load(&cfg.registrar.store_path, persist::Clock::system())?;
//! reg.restore(loaded.bindings);
//! let mut store = persist::Store::open(&cfg.registrar.store_path, loaded.records)?;
//! let mut ka = keepalive::Keepalive::new(&cfg.registrar, reg.location().clone(), metrics);
//! ```
//! `edge_host_port_toward_core` is what the core must use to reach the edge, e.g.
//! `"10.0.0.1:5060"` or `"10.0.0.1:5060;transport=tcp"`; it becomes `sip:<token>@…` in core
//! contacts and Path.
//!
//! A REGISTER from the access side (after the usual §16.3 validation, inside its server
//! transaction):
//! - `reg.on_register(&req, src, now)` →
//!   - [`RegisterAction::Reply`]`{ status, bytes }`: send `bytes` as the final response of the
//!     server transaction. Done.
//!   - [`RegisterAction::Forward`]`{ id, rewrite }`: forward the request to the core as any
//!     other request, after `rewrite.apply(&mut edit)` on the proxy's [`crate::sip::Edit`] (or
//!     use `rewrite.to_bytes(&req)` and forward those bytes). Remember `id` with the client
//!     transaction. Do not Record-Route a REGISTER (§10.2).
//! - Each response of the core to it: `reg.on_core_response(id, &resp, now)` →
//!   [`ResponseAction::PassThrough`] (relay it as it is: 1xx, 401/407 challenges, failures) or
//!   [`ResponseAction::Replace`]`(bytes)` (relay these bytes instead: a 2xx whose Contacts are
//!   the device's; the Vias are the core's, so strip ours as §16.7 does for any response).
//! - No final response (Timer F, transport error, the proxy's own 408/503):
//!   `reg.on_core_failure(id)`; answer the phone as the proxy does today.
//!
//! A request from the core side (INVITE, MESSAGE, …): after removing the edge's own Route
//! entry (note its user part: Path mode), call `lookup::lookup(reg.location(), ruri,
//! route_user, now)` (or [`Registrar::lookup`]). Each [`lookup::Target`] is a branch: Request-URI
//! `target.request_uri`, Route set `target.route` (the REGISTER's Path), sent to
//! `target.dest` (its flow) from `target.local`; fork in parallel and CANCEL the others with
//! `Reason: SIP;cause=200;text="Call completed elsewhere"` when one answers 200 (the proxy's
//! ResponseContext already does that). Empty and the Request-URI is `sip:<token>@edge`: 480.
//! Empty otherwise: route as usual. For dialog-forming requests and responses from NATed
//! phones apply [`nat::fix_contact`] on the edit.
//!
//! Timers (every ~1 s, or at the proxy's tick):
//! - `for u in reg.on_tick(now)`: send `u.request(via, from_tag)` to the core in a non-INVITE
//!   client transaction (the edge's own REGISTER; the core must trust the edge for these).
//! - `let polled = ka.poll(now)`: send each `ping.payload(via, "sip:ping@edge")` to `ping.dest`
//!   (OPTIONS in a client transaction; report any response with
//!   `ka.on_ping_result(ping.id, true)` and a timeout/transport error with `false`, which may
//!   return a dead binding); pass `polled.dead` and dead bindings from `on_ping_result` to
//!   `reg.remove_bindings(&dead)` and send the returned core updates as above.
//! - `store.append(&reg.take_changes(), Clock::system())`, `store.sync()`, and when
//!   `store.should_compact(reg.location().len())`, `store.compact(&reg.location().all(), clock)`.
//!
//! Metrics: the [`RegistrarMetrics`] handles (bindings gauge, absorbed / forwarded / rejected
//! REGISTERs, keepalives sent / failed, bindings removed by failed pings) are registered in the
//! registry given to [`RegistrarMetrics::register`] and updated by the registrar and scheduler.

pub mod contact;
pub mod core_update;
pub mod journal;
pub mod keepalive;
pub mod location;
pub mod lookup;
pub mod metrics;
pub mod mode;
pub mod persist;

pub use core_update::CoreUpdate;
pub use location::{Binding, Location};
pub use metrics::RegistrarMetrics;
pub use mode::{Change, PendingId, RegisterAction, Registrar, ResponseAction, Rewrite};

#[cfg(test)]
mod tests;
