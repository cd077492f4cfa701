//! The IO shell of the edge: one single-threaded tokio runtime owning the sockets, the TCP flows
//! and the sans-IO [`Proxy`]. Why one thread: the proxy core's state (transactions, response
//! contexts) then needs no locks and no cross-thread hand-off, and on the 2-core appliance the
//! other core is left to the kernel's network stack and to rtprelay. Scaling further is done with
//! SO_REUSEPORT workers that hand messages to the worker owning the transaction (see DESIGN.md).

use crate::capture::Exporter;
use crate::media::{ClientConfig, MediaMetrics, RelayHandle};
use crate::metrics::Metrics;
use crate::proxy::policy::{Policy, Side};
use crate::proxy::route_token::RouteKey;
use crate::proxy::Proxy;
use crate::ratelimit::{RateLimiter, Verdict};
use crate::registrar::journal::Journal;
use crate::registrar::persist::{Clock, Store};
use crate::sip::Limits;
use crate::transport::{recverr, tcp, udp, Dest, Source, Transport};
use bytes::Bytes;
use config::EdgeConfig;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

pub struct Edge {
    pub cfg: EdgeConfig,
    pub metrics: Metrics,
    pub udp: Vec<(SocketAddr, Rc<UdpSocket>)>,
    pub flows: RefCell<tcp::Flows>,
    proxy: RefCell<Proxy>,
    relays: RelayHandle,
    /// The mid-registrar's location log: changes go to its writer thread after each event
    /// (group commit there; the event loop never waits for the disk).
    journal: Journal,
    /// The per-source rate limit of the access side, checked before parsing.
    limiter: RefCell<RateLimiter>,
    /// The shell's copy of the routing policy, to tell access from core side before parsing
    /// (kept in step with the proxy's on each DNS resolution of a core entry).
    sides: RefCell<Policy>,
    /// The configuration in force (`cfg` as started, plus what reloads applied).
    current: RefCell<EdgeConfig>,
    /// The last location-store write failed with this (cleared by the next success).
    store_error: RefCell<Option<String>>,
    /// SIP capture to a HEP collector (`[hep]`), when enabled.
    pub hep: Option<Rc<Exporter>>,
    /// When the event loop runs the proxy's timers next ([`Proxy::poll_timeout`]), and the
    /// wake-up for an event that armed an earlier one.
    wake_at: std::cell::Cell<Instant>,
    wake: tokio::sync::Notify,
}

impl Edge {
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.cfg.limits.max_message_bytes,
            max_headers: self.cfg.limits.max_headers,
        }
    }

    /// Every packet from `src` (datagram, stream frame, keepalive) passes here first, before any
    /// parsing: false means drop it silently (an access-side source over its rate limit).
    /// Costs a hash lookup; core-side sources are never limited.
    pub fn admit(&self, src: &Source) -> bool {
        let mut limiter = self.limiter.borrow_mut();
        if !limiter.is_active() || self.sides.borrow().side(src) == Side::Core {
            return true;
        }
        match limiter.check(src.remote.ip(), Instant::now()) {
            Verdict::Pass => true,
            Verdict::Drop => {
                self.metrics.security("rate_limited");
                false
            }
            Verdict::Block => {
                self.metrics.security("rate_limited");
                self.metrics.blocked_sources.set(limiter.blocked() as i64);
                tracing::info!(
                    source = %src.remote.ip(),
                    block_s = self.cfg.limits.source_block_s,
                    "source over its rate limit: blocked"
                );
                false
            }
        }
    }

    /// The proxy core, for the operator API (read).
    pub fn proxy_ref(&self) -> std::cell::Ref<'_, Proxy> {
        self.proxy.borrow()
    }

    /// The proxy core, for the operator API (change).
    pub fn proxy_mut(&self) -> std::cell::RefMut<'_, Proxy> {
        self.proxy.borrow_mut()
    }

    /// The RTP relays and their state, for the operator API.
    /// A location-store write's outcome: failures are logged, counted
    /// (`edge_registrar_store_errors_total`) and make the node not ready until one succeeds.
    fn store_result(&self, r: Result<(), String>, what: &str) {
        match r {
            Ok(()) => {
                if self.store_error.borrow_mut().take().is_some() {
                    tracing::info!("location store writable again");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, what, "location store write failed");
                self.metrics.store_errors.inc();
                *self.store_error.borrow_mut() = Some(e);
            }
        }
    }

    /// `edge_registrar_bindings_by_mode{mode}`: one walk of the AoRs (no binding copied).
    pub fn refresh_scrape_gauges(&self) {
        let cfg = self.current.borrow();
        let mut counts = [0i64; crate::metrics::REGISTRAR_MODES.len()];
        self.proxy
            .borrow()
            .registrar()
            .location()
            .for_each_aor(|aor, n| {
                let domain = crate::registrar::contact::aor_domain(aor);
                let mode = cfg.registrar.policy_for(domain).mode;
                counts[crate::metrics::registrar_mode_index(mode)] += n as i64;
            });
        for (mode, n) in crate::metrics::REGISTRAR_MODES.iter().zip(counts) {
            self.metrics
                .bindings_by_mode
                .with_label_values(&[mode])
                .set(n);
        }
    }

    /// What `GET /ready` answers from.
    pub fn readiness(&self, now: Instant) -> crate::admin_api::Readiness {
        let p = self.proxy.borrow();
        let cores = p.core_states(now);
        crate::admin_api::Readiness {
            draining: p.draining(),
            cores: cores.len(),
            cores_up: cores.iter().filter(|c| c.state == "up").count(),
            anchoring: p.media().anchoring(),
            relays_up: self
                .relay_states()
                .iter()
                .filter(|r| r.up && !r.disabled)
                .count(),
            store_error: self.store_error.borrow().clone(),
        }
    }

    pub fn relay_states(&self) -> Vec<crate::media::client::RelayView> {
        self.relays.states()
    }

    /// The operator takes a relay out of rotation for new calls or puts it back.
    pub fn set_relay_enabled(&self, addr: SocketAddr, enabled: bool) -> bool {
        self.relays.set_enabled(addr, enabled)
    }

    /// The registrar mode in force for an AoR domain.
    pub fn registrar_mode(&self, domain: &str) -> config::RegistrarMode {
        self.current.borrow().registrar.policy_for(domain).mode
    }

    /// True while an access-side source is blocked by the rate limit.
    pub fn is_blocked(&self, remote: SocketAddr) -> bool {
        self.limiter
            .borrow()
            .is_blocked(remote.ip(), Instant::now())
    }

    /// Once a second: end the rate-limit blocks that are over (one log line each) and evict
    /// idle sources.
    fn sweep_rate_limits(&self) {
        let mut limiter = self.limiter.borrow_mut();
        if !limiter.is_active() {
            return;
        }
        for r in limiter.sweep(Instant::now()) {
            tracing::info!(source = %r.ip, dropped = r.dropped, "rate-limit block ended: source released");
        }
        self.metrics.blocked_sources.set(limiter.blocked() as i64);
        self.metrics
            .rate_tracked_sources
            .set(limiter.tracked() as i64);
    }

    /// A message arrived: run the proxy core, then send what it decided.
    pub fn on_message(self: &Rc<Self>, data: Bytes, src: Source) {
        if let Some(hep) = &self.hep {
            hep.capture(src.transport, src.remote, src.local, &data);
        }
        self.run_core(|p, now| p.on_message(data, src, now));
    }

    pub fn on_transport_error(self: &Rc<Self>, dest: Dest) {
        self.run_core(|p, now| p.on_transport_error(dest, now));
    }

    fn on_tick(self: &Rc<Self>) {
        self.run_core(|p, now| p.on_tick(now));
    }

    /// Feed the proxy core one event, then carry out what it decided: messages to send and
    /// relay commands (each awaited on its own task, its result fed back to the core).
    fn run_core(self: &Rc<Self>, event: impl FnOnce(&mut Proxy, Instant)) {
        let now = Instant::now();
        let next = {
            let mut proxy = self.proxy.borrow_mut();
            event(&mut proxy, now);
            proxy.poll_timeout(now)
        };
        // The event may have armed a timer earlier than the one the loop sleeps for.
        if next < self.wake_at.get() {
            self.wake_at.set(next);
            self.wake.notify_one();
        }
        self.dispatch();
    }

    fn dispatch(self: &Rc<Self>) {
        let (out, relay, changes) = {
            let mut proxy = self.proxy.borrow_mut();
            (
                proxy.take_transmits(),
                proxy.take_relay_requests(),
                proxy.take_registrar_changes(),
            )
        };
        if !changes.is_empty() {
            let live = self.proxy.borrow().registrar().location().len();
            self.journal.append(changes, Clock::system(), live);
        }
        for t in out {
            self.send(t.dest, t.bytes);
        }
        for r in relay {
            let edge = self.clone();
            tokio::task::spawn_local(async move {
                let result = edge.relays.command(r.command, r.target).await;
                edge.run_core(|p, now| p.on_relay_reply(r.id, result, now));
            });
        }
    }

    /// What the location-log writer reported since the last call: errors are logged and
    /// counted, a success after them clears the not-ready state.
    fn journal_outcomes(&self) {
        let o = self.journal.take_outcomes();
        for e in o.errors {
            self.store_result(Err(e), "location log");
        }
        if o.recovered {
            self.store_result(Ok(()), "location log");
        }
    }

    pub fn send(self: &Rc<Self>, dest: Dest, bytes: Bytes) {
        match dest.transport {
            Transport::Udp => self.send_udp(dest, bytes),
            Transport::Tcp => tcp::send(self, dest, bytes),
        }
    }

    fn send_udp(&self, dest: Dest, bytes: Bytes) {
        let Some((local, sock)) = self
            .udp
            .iter()
            .find(|(l, _)| l.is_ipv4() == dest.addr.is_ipv4())
        else {
            self.metrics.drop("no_socket_for_family");
            return;
        };
        let mut sent = sock.try_send_to(&bytes, dest.addr);
        if sent.as_ref().is_err_and(recverr::is_icmp_error) {
            // An earlier datagram's ICMP error, reported by this send (which did not go out):
            // the error queue has it; send this one again.
            sent = sock.try_send_to(&bytes, dest.addr);
        }
        let capture = |hep: &Option<Rc<Exporter>>| {
            if let Some(hep) = hep {
                hep.capture(Transport::Udp, *local, dest.addr, &bytes);
            }
        };
        match sent {
            Ok(_) => capture(&self.hep),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                capture(&self.hep);
                let sock = sock.clone();
                tokio::task::spawn_local(async move {
                    let _ = sock.send_to(&bytes, dest.addr).await;
                });
            }
            Err(_) => self.metrics.drop("send_failed"),
        }
    }
}

/// How the shell reloads its configuration on SIGHUP: `load` re-reads the file and the
/// command line's flags; `set_level` changes the log filter.
pub struct Reloader {
    pub load: Box<dyn Fn() -> Result<EdgeConfig, String>>,
    pub set_level: sbc_shared::logging::SetLevel,
}

/// Bind every listener, then serve forever. Bind errors are returned (fatal at startup).
pub async fn run(
    cfg: EdgeConfig,
    metrics: Metrics,
    reloader: Option<Reloader>,
) -> std::io::Result<()> {
    let mut udp_socks = Vec::new();
    for addr in &cfg.sip.listen_udp {
        let s = udp::bind(*addr).map_err(|e| annotate(e, "udp", *addr))?;
        udp_socks.push((s.local_addr()?, Rc::new(s)));
    }
    let mut tcp_listeners = Vec::new();
    for addr in &cfg.sip.listen_tcp {
        let l = tcp::listen(*addr).map_err(|e| annotate(e, "tcp", *addr))?;
        tcp_listeners.push((l.local_addr()?, l));
    }
    let admin = sbc_shared::admin::bind(cfg.admin.listen)
        .await
        .map_err(|e| annotate(e, "admin", cfg.admin.listen))?;
    let mut locals: Vec<(Transport, SocketAddr)> = udp_socks
        .iter()
        .map(|(a, _)| (Transport::Udp, *a))
        .collect();
    locals.extend(tcp_listeners.iter().map(|(a, _)| (Transport::Tcp, *a)));
    let media_metrics = MediaMetrics::register(&metrics.registry)
        .map_err(|e| std::io::Error::other(format!("media metrics: {e}")))?;
    let relays = RelayHandle::spawn(relay_client_config(&cfg.media), Some(media_metrics.clone()))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("relay client: {e}")))?;
    let mut proxy = Proxy::new(
        &cfg,
        locals,
        metrics.clone(),
        Some(media_metrics),
        Instant::now(),
    );
    proxy.set_route_key(load_route_key(&cfg.proxy.route_secret_file)?);
    let store = open_store(&cfg, &mut proxy)?;
    let flows = RefCell::new(tcp::Flows::new((&cfg.limits).into()));
    let limiter = RateLimiter::new(&cfg.limits, Instant::now());
    let sides = Policy::new(&cfg.routing);
    let cfg_now = cfg.clone();
    let hep = Exporter::new(&cfg.hep, &metrics)
        .map_err(|e| std::io::Error::new(e.kind(), format!("hep.collector: {e}")))?
        .map(Rc::new);
    let edge = Rc::new(Edge {
        cfg,
        metrics: metrics.clone(),
        udp: udp_socks,
        flows,
        proxy: RefCell::new(proxy),
        relays,
        journal: Journal::spawn(store)
            .map_err(|e| std::io::Error::other(format!("location-log writer thread: {e}")))?,
        store_error: RefCell::new(None),
        limiter: RefCell::new(limiter),
        sides: RefCell::new(sides),
        current: RefCell::new(cfg_now),
        hep,
        wake_at: std::cell::Cell::new(Instant::now()),
        wake: tokio::sync::Notify::new(),
    });
    start_resolvers(&edge);
    let (stop_tx, mut stop) = signals()?;
    let reloader = Rc::new(reloader);
    {
        let edge = edge.clone();
        let reloader = reloader.clone();
        let api = move |method: &str, target: &str| {
            let set_level = reloader
                .as_ref()
                .as_ref()
                .map(|r| &*r.set_level as &dyn Fn(&str) -> Result<(), String>);
            crate::operator::answer(&edge, method, target, set_level, &stop_tx)
        };
        tokio::task::spawn_local(sbc_shared::admin::serve_local(
            admin,
            metrics.registry.clone(),
            api,
        ));
    }
    for i in 0..edge.udp.len() {
        tokio::task::spawn_local(udp::recv_loop(edge.clone(), i));
        tokio::task::spawn_local(udp::error_loop(edge.clone(), i));
    }
    for (local, l) in tcp_listeners {
        tokio::task::spawn_local(tcp::accept_loop(edge.clone(), local, l));
    }
    tracing::info!(
        udp = ?edge.cfg.sip.listen_udp,
        tcp = ?edge.cfg.sip.listen_tcp,
        core = ?edge.cfg.routing.core,
        admin = %edge.cfg.admin.listen,
        "edge started"
    );
    let mut notifier = sbc_shared::sd_notify::Notifier::from_env();
    if let Some(n) = &notifier {
        n.ready(&format!(
            "SIP on {:?} {:?}, {} binding(s) loaded",
            edge.cfg.sip.listen_udp,
            edge.cfg.sip.listen_tcp,
            edge.proxy.borrow().registrar().location().len()
        ));
    }
    // Timers: the loop sleeps until the proxy's next deadline (an event that arms an earlier
    // one wakes it), at most a second; a fixed tick would wake it 100 times a second for
    // nothing and fire every timer up to a tick late.
    let mut last_sync = Instant::now();
    let mut drain: Option<Drain> = None;
    loop {
        let mut at = edge.wake_at.get();
        if drain.is_some() {
            at = at.min(Instant::now() + DRAIN_CHECK);
        }
        if let Some(due) = notifier
            .as_ref()
            .and_then(|n| n.watchdog_due(Instant::now()))
        {
            at = at.min(due);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = edge.wake.notified() => continue,
            sig = stop.recv() => {
                let Some(sig) = sig else { continue };
                if sig == "drain (operator)" && drain.is_some() {
                    continue;
                }
                if sig == "SIGHUP" {
                    match reloader.as_ref() {
                        Some(r) => edge.reload(r),
                        None => tracing::warn!("SIGHUP: no configuration source to reload"),
                    }
                    continue;
                }
                if drain.is_some() || edge.current.borrow().proxy.drain_timeout_s == 0 {
                    edge.stop(sig, notifier.as_ref());
                    return Ok(());
                }
                drain = Some(edge.start_drain(sig, notifier.as_ref()));
            }
        }
        if let Some(d) = &drain {
            if d.done(&edge) {
                edge.stop("drained", notifier.as_ref());
                return Ok(());
            }
        }
        edge.on_tick();
        let now = Instant::now();
        edge.wake_at.set(edge.proxy.borrow_mut().poll_timeout(now));
        // The watchdog is fed from this loop: if it stops turning, systemd restarts the edge.
        if let Some(n) = notifier.as_mut() {
            n.watchdog_tick(Instant::now(), true);
        }
        sbc_shared::sd_notify::test_stall_point();
        if last_sync.elapsed() >= Duration::from_secs(1) {
            last_sync = Instant::now();
            edge.journal_outcomes();
            edge.sweep_rate_limits();
        }
    }
}

/// How often a graceful stop checks whether everything has finished.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// A graceful stop in progress (SIGTERM): new dialogs are refused, the rest goes on until
/// nothing is in progress or the deadline.
struct Drain {
    deadline: Instant,
    started: Instant,
}

impl Drain {
    fn done(&self, edge: &Edge) -> bool {
        let (txs, calls) = edge.proxy.borrow().in_progress();
        if txs == 0 && calls == 0 {
            tracing::info!(
                after_ms = self.started.elapsed().as_millis() as u64,
                "drain complete: no transaction or call left"
            );
            return true;
        }
        if Instant::now() >= self.deadline {
            tracing::warn!(
                transactions = txs,
                calls,
                "drain timeout: stopping with these still in progress"
            );
            return true;
        }
        false
    }
}

impl Edge {
    fn start_drain(&self, sig: &str, notifier: Option<&sbc_shared::sd_notify::Notifier>) -> Drain {
        let p = self.current.borrow().proxy.clone();
        self.proxy.borrow_mut().drain(p.drain_retry_after_s);
        let (txs, calls) = self.proxy.borrow().in_progress();
        tracing::info!(
            signal = sig,
            transactions = txs,
            calls,
            timeout_s = p.drain_timeout_s,
            "draining: new calls and OPTIONS get 503, calls in progress go on (signal again to stop now)"
        );
        if let Some(n) = notifier {
            n.stopping(&format!("draining: {txs} transactions, {calls} calls"));
        }
        let now = Instant::now();
        Drain {
            deadline: now + Duration::from_secs(p.drain_timeout_s),
            started: now,
        }
    }

    /// SIGHUP: load the configuration again and apply what can change at run time; a file
    /// that does not load changes nothing. Logged once per reload, naming the keys.
    fn reload(&self, r: &Reloader) {
        let new = match (r.load)() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload failed: configuration unchanged");
                return;
            }
        };
        let plan = crate::reload::plan(&self.current.borrow(), &new);
        if plan.applied.is_empty() && plan.need_restart.is_empty() {
            tracing::info!("reload: no change");
            return;
        }
        let eff = &plan.effective;
        if plan.applied.iter().any(|k| k == "log.level") {
            if let Err(e) = (r.set_level)(&eff.log.level) {
                tracing::error!(error = %e, "reload: log.level not applied");
            }
        }
        let now = Instant::now();
        let routing = plan.applied.iter().any(|k| k.starts_with("routing."));
        self.proxy.borrow_mut().reconfigure(eff, routing, now);
        if routing {
            *self.sides.borrow_mut() = Policy::new(&eff.routing);
        }
        if plan
            .applied
            .iter()
            .any(|k| k.starts_with("limits.source_") || k == "limits.max_tracked_sources")
        {
            *self.limiter.borrow_mut() = RateLimiter::new(&eff.limits, now);
            self.metrics.blocked_sources.set(0);
        }
        if plan.applied.iter().any(|k| k == "media.relays") {
            let relays = eff
                .media
                .relays
                .iter()
                .map(|r| (r.addr, r.weight))
                .collect();
            if !self.relays.set_relays(relays) {
                tracing::error!("reload: media.relays not applied (relay client busy)");
            }
        }
        tracing::info!(
            applied = ?plan.applied,
            need_restart = ?plan.need_restart,
            core = ?eff.routing.core,
            "reload: configuration applied"
        );
        *self.current.borrow_mut() = plan.effective;
    }

    /// Flush the location store (fsync) and report; the caller returns from `run`.
    fn stop(&self, why: &str, notifier: Option<&sbc_shared::sd_notify::Notifier>) {
        if let Some(n) = notifier {
            n.stopping("stopping");
        }
        let synced = self.journal.sync();
        self.journal_outcomes();
        self.store_result(synced, "sync");
        tracing::info!(
            reason = why,
            bindings = self.proxy.borrow().registrar().location().len(),
            "stopped: location store flushed"
        );
    }
}

/// SIGTERM, SIGINT and SIGHUP as a stream of names (handlers installed now, so a signal during
/// startup is not lost; SIGHUP no longer kills the process).
#[allow(clippy::type_complexity)]
fn signals() -> std::io::Result<(
    tokio::sync::mpsc::UnboundedSender<&'static str>,
    tokio::sync::mpsc::UnboundedReceiver<&'static str>,
)> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::hangup(), "SIGHUP"),
    ] {
        let mut s = signal(kind)?;
        let tx = tx.clone();
        tokio::task::spawn_local(async move {
            while s.recv().await.is_some() {
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
    }
    Ok((tx, rx))
}

/// One task per domain-name core entry: resolve (RFC 3263), hand the targets to the proxy
/// core, sleep until the records expire (5..60 s), repeat. A resolver that cannot be set up is
/// logged; those entries then never get targets (the other entries still work).
fn start_resolvers(edge: &Rc<Edge>) {
    let domains = edge.proxy.borrow().core_domains();
    if domains.is_empty() {
        return;
    }
    let resolver = match crate::resolve::resolver(&edge.cfg.routing.dns_servers) {
        Ok(r) => Rc::new(r),
        Err(e) => {
            tracing::error!(error = %e, "routing.core: DNS unavailable, domain entries unused");
            return;
        }
    };
    for (slot, domain) in domains {
        let edge = edge.clone();
        let resolver = resolver.clone();
        tokio::task::spawn_local(async move {
            loop {
                let result = crate::resolve::lookup(&resolver, &domain).await;
                match &result {
                    Ok(l) => {
                        tracing::info!(name = %domain.name, targets = ?l.targets, "core resolved");
                        edge.proxy
                            .borrow_mut()
                            .set_core_resolved(slot, l.targets.clone());
                        // Only the addresses matter for telling sides apart, not their order.
                        edge.sides
                            .borrow_mut()
                            .set_resolved(slot, l.targets.clone(), |_| 0);
                    }
                    Err(e) => {
                        tracing::warn!(name = %domain.name, error = %e, "core resolution failed")
                    }
                }
                tokio::time::sleep(crate::resolve::refresh_after(&result)).await;
            }
        });
    }
}

/// Loads the location log into the proxy's registrar and opens it for appending (creating
/// its directory). Any failure is fatal at start-up and names the config key.
/// The Record-Route token key from `proxy.route_secret_file`: 32 bytes, created from the OS
/// CSPRNG (mode 0600, directories as needed) when the file does not exist yet.
fn load_route_key(path: &std::path::Path) -> std::io::Result<RouteKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("proxy.route_secret_file {}: {e}", path.display()),
        )
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                err(std::io::Error::other(format!(
                    "holds {} bytes, expected 32 (delete it to create a new key)",
                    bytes.len()
                )))
            })?;
            Ok(RouteKey::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            let key: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(err)?;
            f.write_all(&key).map_err(err)?;
            f.sync_all().map_err(err)?;
            tracing::info!(path = %path.display(), "created a new Record-Route token key");
            Ok(RouteKey::new(key))
        }
        Err(e) => Err(err(e)),
    }
}

fn open_store(cfg: &EdgeConfig, proxy: &mut Proxy) -> std::io::Result<Store> {
    let path = &cfg.registrar.store_path;
    let err = |e| std::io::Error::other(format!("registrar.store_path: {e}"));
    let loaded = Store::load(path, Clock::system()).map_err(err)?;
    let records = loaded.records;
    tracing::info!(
        path = %path.display(),
        bindings = loaded.bindings.len(),
        skipped = loaded.skipped,
        "location store loaded"
    );
    proxy.registrar_restore(loaded.bindings);
    Store::open(path, records).map_err(err)
}

/// With media anchoring off no relay is ever used: do not probe any (no health pings, no
/// warnings about a relay that is not meant to run).
fn relay_client_config(media: &config::EdgeMediaConfig) -> ClientConfig {
    let mut c = ClientConfig::from_config(media);
    if media.mode == config::MediaMode::Never {
        c.relays.clear();
    }
    c
}

fn annotate(e: std::io::Error, what: &str, addr: SocketAddr) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot listen ({what}) on {addr}: {e}"))
}
