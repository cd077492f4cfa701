//! Prometheus metrics of the edge. Labels have bounded cardinality: methods outside the known set
//! are counted as "other", never by their text.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `direction`: "in" (received) or "out" (sent, incl. forwarded).
    pub requests: IntCounterVec,
    /// `class`: 1xx..6xx.
    pub responses: IntCounterVec,
    pub transactions_active: IntGauge,
    /// `edge_transactions_in_progress`: live transactions before their final response, the
    /// ones `limits.max_transactions` bounds.
    pub transactions_in_progress: IntGauge,
    /// `kind`: request (answered 4xx/5xx), response (dropped), framing (dropped), oversize.
    pub parse_errors: IntCounterVec,
    pub retransmissions: IntCounter,
    /// Retransmitted requests absorbed by a server transaction.
    pub absorbed: IntCounter,
    /// Messages not processed, by reason (no_route, send_failed, tcp_limit, stray_response…).
    pub dropped: IntCounterVec,
    pub tcp_connections: IntGauge,
    /// STUN Binding requests answered on the SIP UDP ports (RFC 5626 §4.4.2).
    pub stun_answered: IntCounter,
    /// Requests re-sent to the next core entry after a 503 or a transport error.
    pub core_failovers: IntCounter,
    /// `edge_core_down_total{reason}`: a core entry taken out of rotation because its health
    /// probes went unanswered (`probe`), it was unreachable (`unreachable`: ICMP, refused
    /// connection), a request to it timed out (`timeout`) or it answered 503 (`overload`);
    /// counted when it goes from up to down; every label exists from the start.
    pub core_downs: IntCounterVec,
    /// `edge_security_events_total{event}`: what the trust boundary refused or rewrote, one
    /// label per rule (see [`SECURITY_EVENTS`]); every label exists from the start.
    pub security: IntCounterVec,
    /// Access-side sources currently blocked by the per-source rate limit.
    pub blocked_sources: IntGauge,
    /// Sources currently tracked by the per-source rate limit (bounded by
    /// `limits.max_tracked_sources`).
    pub rate_tracked_sources: IntGauge,
    /// `edge_transaction_duration_seconds{method,class}`: client transactions, first
    /// transmission → final response (`class` 2xx..6xx or `timeout`).
    pub tx_duration: HistogramVec,
    /// `edge_invite_pdd_seconds`: INVITE forwarded → first 18x (post-dial delay).
    pub invite_pdd: Histogram,
    /// `edge_core_probe_rtt_seconds{core}`: OPTIONS health probe round trip per core target.
    pub probe_rtt: HistogramVec,
    /// `edge_core_up{core}`: 1 while the core target is in rotation.
    pub core_up: IntGaugeVec,
    /// `edge_transactions_limit`: `limits.max_transactions`.
    pub transactions_limit: IntGauge,
    /// `edge_registrar_store_errors_total`: location-store writes (append, fsync) that failed.
    pub store_errors: IntCounter,
    /// `edge_registrar_bindings_by_mode{mode}`: local bindings per registrar mode of their
    /// AoR's domain (refreshed when scraped).
    pub bindings_by_mode: IntGaugeVec,
    /// `edge_sip_probes_total{kind}`: OPTIONS the edge originates to probe (`core_health`,
    /// `nat_keepalive`), retransmissions included; not in `edge_sip_requests_total`.
    pub probes: IntCounterVec,
    /// SIP messages copied to the HEP capture collector (`[hep]`).
    pub hep_sent: IntCounter,
    /// SIP messages not copied to the collector: its socket would block (or failed).
    pub hep_dropped: IntCounter,
    /// Pre-resolved children of `requests` / `responses`: the hot path increments a plain
    /// atomic instead of hashing label values under a lock.
    request_children: Vec<[IntCounter; 2]>,
    response_children: Vec<[IntCounter; 2]>,
}

const DIRECTIONS: [&str; 2] = ["in", "out"];
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let requests = counter_vec(
            "edge_sip_requests_total",
            "SIP requests by method and direction",
            &["method", "direction"],
        );
        let responses = counter_vec(
            "edge_sip_responses_total",
            "SIP responses by class and direction",
            &["class", "direction"],
        );
        let parse_errors = counter_vec(
            "edge_sip_parse_errors_total",
            "Malformed SIP messages by kind",
            &["kind"],
        );
        let dropped = counter_vec(
            "edge_sip_dropped_total",
            "SIP messages not processed, by reason",
            &["reason"],
        );
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let children = |vec: &IntCounterVec, first: &[&str]| {
            first
                .iter()
                .map(|f| DIRECTIONS.map(|d| vec.with_label_values(&[f, d])))
                .collect::<Vec<_>>()
        };
        let mut methods: Vec<&str> = KNOWN.to_vec();
        methods.push("other");
        let request_children = methods
            .iter()
            .map(|m| DIRECTIONS.map(|d| requests.with_label_values(&[m, d])))
            .collect();
        let response_children = children(&responses, &CLASSES);
        let security = counter_vec(
            "edge_security_events_total",
            "Requests and responses refused or rewritten at the trust boundary, by rule",
            &["event"],
        );
        for e in SECURITY_EVENTS {
            security.with_label_values(&[e]).inc_by(0);
        }
        let core_downs = counter_vec(
            "edge_core_down_total",
            "Core entries marked down by missed health probes or as unreachable",
            &["reason"],
        );
        for r in CORE_DOWN_REASONS {
            core_downs.with_label_values(&[r]).inc_by(0);
        }
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let tx_duration = histogram_vec(
            "edge_transaction_duration_seconds",
            "Client transactions from first transmission to final response, by method and class",
            &["method", "class"],
            SIP_BUCKETS,
        );
        for m in ["INVITE", "REGISTER", "BYE", "OPTIONS"] {
            for c in ["2xx", "4xx", "5xx", "timeout"] {
                let _ = tx_duration.with_label_values(&[m, c]);
            }
        }
        let invite_pdd = Histogram::with_opts(
            HistogramOpts::new(
                "edge_invite_pdd_seconds",
                "Post-dial delay: INVITE forwarded to first 18x",
            )
            .buckets(PDD_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(invite_pdd.clone()))
            .expect("unique metric");
        let probe_rtt = histogram_vec(
            "edge_core_probe_rtt_seconds",
            "OPTIONS health probe round trip per core target",
            &["core"],
            SIP_BUCKETS,
        );
        let probes = counter_vec(
            "edge_sip_probes_total",
            "OPTIONS the edge originates as probes (core health, NAT keepalive), retransmissions included",
            &["kind"],
        );
        for k in ["core_health", "nat_keepalive"] {
            probes.with_label_values(&[k]).inc_by(0);
        }
        for k in PARSE_ERROR_KINDS {
            parse_errors.with_label_values(&[k]).inc_by(0);
        }
        for r in DROP_REASONS {
            dropped.with_label_values(&[r]).inc_by(0);
        }
        let build_info = gauge_vec(
            "edge_build_info",
            "Version and git commit of this edge binary (always 1)",
            &["version", "commit"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::BUILD_COMMIT])
            .set(1);
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        Metrics {
            tx_duration,
            invite_pdd,
            probe_rtt,
            probes,
            core_up: gauge_vec(
                "edge_core_up",
                "1 while the core target is in rotation, 0 while down or disabled",
                &["core"],
            ),
            bindings_by_mode: {
                let g = gauge_vec(
                    "edge_registrar_bindings_by_mode",
                    "Local bindings per registrar mode of their AoR's domain (refreshed when scraped)",
                    &["mode"],
                );
                for m in REGISTRAR_MODES {
                    g.with_label_values(&[m]).set(0);
                }
                g
            },
            store_errors: counter(
                "edge_registrar_store_errors_total",
                "Location store writes (append, fsync) that failed",
            ),
            transactions_limit: gauge(
                "edge_transactions_limit",
                "limits.max_transactions: new requests get 503 when this many are in progress",
            ),
            security,
            core_downs,
            request_children,
            response_children,
            transactions_active: gauge(
                "edge_transactions_active",
                "Live SIP transactions (in progress and in wait states)",
            ),
            transactions_in_progress: gauge(
                "edge_transactions_in_progress",
                "Live SIP transactions before their final response (bounded by limits.max_transactions)",
            ),
            tcp_connections: gauge("edge_tcp_connections", "Open SIP TCP connections"),
            blocked_sources: gauge(
                "edge_blocked_sources",
                "Access-side sources currently blocked by the per-source rate limit",
            ),
            rate_tracked_sources: gauge(
                "edge_rate_tracked_sources",
                "Sources tracked by the per-source rate limit",
            ),
            retransmissions: counter(
                "edge_sip_retransmissions_total",
                "Requests and responses retransmitted by the edge's transactions",
            ),
            stun_answered: counter(
                "edge_stun_binding_answered_total",
                "STUN Binding requests answered on the SIP UDP ports",
            ),
            core_failovers: counter(
                "edge_core_failovers_total",
                "Requests re-sent to the next core entry after a 503 or transport error",
            ),
            absorbed: counter(
                "edge_sip_retransmissions_absorbed_total",
                "Retransmissions received and absorbed by a transaction",
            ),
            hep_sent: counter(
                "edge_hep_sent_total",
                "SIP messages sent to the HEP capture collector",
            ),
            hep_dropped: counter(
                "edge_hep_dropped_total",
                "SIP messages not sent to the HEP capture collector (socket full or error)",
            ),
            registry,
            requests,
            responses,
            parse_errors,
            dropped,
        }
    }

    pub fn request(&self, method: &str, direction: &'static str) {
        let i = KNOWN
            .iter()
            .position(|k| *k == method)
            .unwrap_or(KNOWN.len());
        self.request_children[i][dir_index(direction)].inc();
    }

    pub fn response(&self, status: u16, direction: &'static str) {
        let class = (status / 100).clamp(1, 6) as usize - 1;
        self.response_children[class][dir_index(direction)].inc();
    }

    pub fn parse_error(&self, kind: &'static str) {
        self.parse_errors.with_label_values(&[kind]).inc();
    }

    pub fn drop(&self, reason: &'static str) {
        self.dropped.with_label_values(&[reason]).inc();
    }

    /// A core entry went down; `reason` is one of [`CORE_DOWN_REASONS`].
    pub fn core_down(&self, reason: &'static str) {
        debug_assert!(
            CORE_DOWN_REASONS.contains(&reason),
            "unknown reason {reason}"
        );
        self.core_downs.with_label_values(&[reason]).inc();
    }

    /// One trust-boundary event; `event` must be one of [`SECURITY_EVENTS`].
    pub fn security(&self, event: &'static str) {
        debug_assert!(SECURITY_EVENTS.contains(&event), "unknown event {event}");
        self.security.with_label_values(&[event]).inc();
    }
}

/// The `reason` labels of `edge_core_down_total`.
pub const CORE_DOWN_REASONS: &[&str] = &["probe", "unreachable", "timeout", "overload"];

/// The `event` labels of `edge_security_events_total`.
pub const SECURITY_EVENTS: &[&str] = &[
    // A Route of an access-side initial request that was not the edge's own, removed.
    "preloaded_route_removed",
    // An access-side in-dialog request without a valid Record-Route token.
    "route_token_invalid",
    // An identity header (P-Asserted-Identity...) from the access side, removed.
    "identity_header_removed",
    // A response from another address than the one its branch was sent to, dropped.
    "response_wrong_source",
    // A 3xx from the access side relayed instead of recursed on.
    "access_redirect_not_followed",
    // 3xx Contacts beyond proxy.max_redirect_targets, ignored.
    "redirect_targets_capped",
    // A request dropped by the per-source rate limit (or its block time).
    "rate_limited",
    // An inbound TCP connection refused by limits.max_tcp_connections.
    "tcp_limit",
    // An inbound TCP connection refused by limits.max_tcp_connections_per_ip.
    "tcp_per_ip_limit",
    // An outbound TCP connection not opened: limits.max_tcp_outbound reached.
    "tcp_outbound_limit",
    // A TCP connection closed: a message not complete limits.tcp_message_deadline_s after its
    // first byte (slowloris).
    "tcp_message_deadline",
    // A TCP connection closed: more than limits.tcp_write_queue_bytes waiting for the peer.
    "tcp_write_queue",
    // A TCP connection closed: a write made no progress for limits.tcp_write_timeout_s.
    "tcp_write_timeout",
    // A request refused because its source holds limits.max_transactions_per_source.
    "source_transaction_limit",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Buckets of SIP round trips (s): loopback to transatlantic, up to Timer B/F.
const SIP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 32.0,
];
/// Buckets of post-dial delay (s): an answering machine to a phone that rings a while.
const PDD_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0];

/// The `reason` labels of `edge_sip_dropped_total` known in advance (created at start).
const DROP_REASONS: [&str; 9] = [
    "ack_of_local_reject",
    "draining",
    "no_route",
    "no_socket_for_family",
    "send_failed",
    "stateless_check",
    "stray_response",
    "stun_not_binding_request",
    "tcp_limit",
];

/// The `kind` labels of `edge_sip_parse_errors_total`.
const PARSE_ERROR_KINDS: [&str; 5] = ["request", "response", "framing", "oversize", "unparseable"];

/// The `mode` labels of `edge_registrar_bindings_by_mode`, as `registrar.mode` spells them.
pub const REGISTRAR_MODES: [&str; 3] = ["mirror", "contact", "aor"];

/// The position of `mode` in [`REGISTRAR_MODES`].
pub fn registrar_mode_index(mode: config::RegistrarMode) -> usize {
    match mode {
        config::RegistrarMode::Mirror => 0,
        config::RegistrarMode::Contact => 1,
        config::RegistrarMode::Aor => 2,
    }
}

/// The bounded label of a method: one of the known methods, or "other".
pub fn method_label(method: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|k| **k == method)
        .copied()
        .unwrap_or("other")
}

/// Bounded label set for methods; anything else is "other".
const KNOWN: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

fn dir_index(direction: &str) -> usize {
    usize::from(direction != "in")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let m = Metrics::new();
        m.request("FOO", "in");
        m.request("BAR", "in");
        m.request("INVITE", "in");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&m.registry.gather())
            .unwrap();
        assert!(text.contains(r#"edge_sip_requests_total{direction="in",method="other"} 2"#));
        assert!(text.contains(r#"edge_sip_requests_total{direction="in",method="INVITE"} 1"#));
    }
}
