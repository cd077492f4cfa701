//! Bindings that end without a REGISTER (expiry, dead keepalives) and the core updates their
//! mode requires.

use super::*;

impl Registrar {
    /// The core never answered (transport error, Timer F): nothing is saved.
    pub fn on_core_failure(&mut self, id: PendingId) {
        self.pending.remove(&id);
    }

    /// Expires bindings and stale pending entries; returns the REGISTERs the core must get.
    pub fn on_tick(&mut self, now: Instant) -> Vec<CoreUpdate> {
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.created) < PENDING_TTL);
        let gone = self.loc.sweep(now);
        self.removed(gone)
    }

    /// Removes bindings found dead elsewhere (failed keepalives, a closed flow with RFC 5626
    /// outbound) and returns the core updates their mode requires.
    pub fn remove_bindings(&mut self, dead: &[Binding]) -> Vec<CoreUpdate> {
        let gone: Vec<Binding> = dead
            .iter()
            .filter_map(|b| self.loc.remove(&b.aor, &b.contact))
            .collect();
        self.removed(gone)
    }

    fn removed(&mut self, gone: Vec<Binding>) -> Vec<CoreUpdate> {
        let mut updates: Vec<CoreUpdate> = Vec::new();
        for b in gone {
            self.changes.push(Change::Remove {
                aor: b.aor.clone(),
                contact: b.contact.clone(),
            });
            let mode = self.cfg.policy_for(aor_domain(&b.aor)).mode;
            let update = match mode {
                // The core's binding ends with the local one (mirror).
                RegistrarMode::Mirror => false,
                RegistrarMode::Contact => b.core_expires > b.expires,
                RegistrarMode::Aor => {
                    self.loc.get(&b.aor).is_empty() && !updates.iter().any(|u| u.aor == b.aor)
                }
            };
            if update {
                let call_id = format!("{}@edge", self.token());
                updates.push(CoreUpdate {
                    aor: b.aor,
                    contact: b.core_contact,
                    expires: 0,
                    call_id,
                });
            }
        }
        self.metrics.bindings.set(self.loc.len() as i64);
        updates
    }
}
