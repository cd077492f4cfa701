//! Counters of the mid-registrar, for `/metrics`. Plain prometheus handles: the registrar
//! increments them, the admin listener exports the registry they were registered in.

use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Clone, Debug)]
pub struct RegistrarMetrics {
    /// `edge_registrar_bindings`: bindings in the location table.
    pub bindings: IntGauge,
    /// `edge_registrar_registers_absorbed_total`: REGISTERs answered locally.
    pub absorbed: IntCounter,
    /// `edge_registrar_registers_forwarded_total`: REGISTERs sent to the core.
    pub forwarded: IntCounter,
    /// `edge_registrar_registers_rejected_total`: REGISTERs answered 4xx/5xx locally.
    pub rejected: IntCounter,
    /// `edge_registrar_keepalives_sent_total`.
    pub keepalives_sent: IntCounter,
    /// `edge_registrar_keepalives_failed_total`: OPTIONS pings without an answer.
    pub keepalives_failed: IntCounter,
    /// `edge_registrar_bindings_removed_by_ping_total`.
    pub removed_by_ping: IntCounter,
}

impl RegistrarMetrics {
    /// Handles registered in `registry` (fails only on a duplicate registration).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered();
        registry.register(Box::new(m.bindings.clone()))?;
        for c in [
            &m.absorbed,
            &m.forwarded,
            &m.rejected,
            &m.keepalives_sent,
            &m.keepalives_failed,
            &m.removed_by_ping,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        Ok(m)
    }

    /// Handles not exported anywhere (tests, or before the admin listener exists).
    pub fn unregistered() -> Self {
        let counter = |n: &str, h: &str| IntCounter::new(n, h).expect("valid metric name");
        RegistrarMetrics {
            bindings: IntGauge::new("edge_registrar_bindings", "Bindings in the location table")
                .expect("valid metric name"),
            absorbed: counter(
                "edge_registrar_registers_absorbed_total",
                "REGISTERs answered locally by the mid-registrar",
            ),
            forwarded: counter(
                "edge_registrar_registers_forwarded_total",
                "REGISTERs forwarded to the core registrar",
            ),
            rejected: counter(
                "edge_registrar_registers_rejected_total",
                "REGISTERs rejected locally (400, 423, too many contacts)",
            ),
            keepalives_sent: counter(
                "edge_registrar_keepalives_sent_total",
                "NAT keepalives sent to registered devices",
            ),
            keepalives_failed: counter(
                "edge_registrar_keepalives_failed_total",
                "OPTIONS keepalives left unanswered",
            ),
            removed_by_ping: counter(
                "edge_registrar_bindings_removed_by_ping_total",
                "Bindings removed after too many failed keepalives",
            ),
        }
    }
}

impl Default for RegistrarMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once() {
        let r = Registry::new();
        let m = RegistrarMetrics::register(&r).unwrap();
        m.absorbed.inc();
        assert_eq!(r.gather().len(), 7);
        assert!(RegistrarMetrics::register(&r).is_err());
    }
}
