//! Building the REGISTER the core receives (mode doc in [`super`]): which contact stands
//! for each device at the core, and the expires asked of it.

use super::*;

impl Registrar {
    pub(super) fn forward_contacts(
        &mut self,
        mut p: Pending,
        specs: Vec<ContactSpec>,
        locals: Vec<u32>,
        existing: &[Binding],
    ) -> RegisterAction {
        let mode = p.policy.mode;
        // Tokens are reused even from expired, unswept bindings, so the core keeps one contact
        // per device (contact mode) or per AoR (AoR mode) instead of collecting stale ones.
        let known = self.loc.get(&p.aor);
        let aor_token = known
            .first()
            .map(|b| b.token.clone())
            .filter(|_| mode == RegistrarMode::Aor)
            .unwrap_or_else(|| self.token());
        let remaining = self.remaining_after(existing, &specs, &locals);
        let longest = locals.iter().copied().max().unwrap_or(0);
        let aor_expires = if remaining == 0 {
            0
        } else {
            self.deviated(p.policy.outgoing_expires).max(longest)
        };
        let mut pcs = Vec::with_capacity(specs.len());
        for (spec, e) in specs.into_iter().zip(locals) {
            let old = known.iter().find(|b| same(b, &spec));
            let (token, core_contact, core_expires_sent) = match mode {
                RegistrarMode::Aor => {
                    let cc = self.core_contact(&aor_token);
                    (aor_token.clone(), cc, aor_expires)
                }
                RegistrarMode::Mirror if p.policy.insertion_mode == InsertionMode::Path => {
                    let t = old.map_or_else(|| self.token(), |b| b.token.clone());
                    (t, spec.uri.clone(), e)
                }
                _ => {
                    let t = old.map_or_else(|| self.token(), |b| b.token.clone());
                    let sent = match (mode, e) {
                        (RegistrarMode::Contact, 0) => 0,
                        (RegistrarMode::Contact, e) => {
                            self.deviated(p.policy.outgoing_expires).max(e)
                        }
                        (_, e) => e,
                    };
                    let cc = self.core_contact(&t);
                    (t, cc, sent)
                }
            };
            pcs.push(PendingContact {
                spec,
                local_expires: e,
                token,
                core_contact,
                core_expires_sent,
            });
        }
        let path_mode =
            mode == RegistrarMode::Mirror && p.policy.insertion_mode == InsertionMode::Path;
        let rewrite = if path_mode {
            let token = pcs.first().map(|c| c.token.clone()).unwrap_or_default();
            Rewrite {
                contacts: None,
                path: Some(format!("<sip:{token}@{};lr>", self.edge)),
                remove_expires: false,
            }
        } else if mode == RegistrarMode::Aor {
            let cc = self.core_contact(&aor_token);
            Rewrite {
                contacts: Some(vec![format!("<{cc}>;expires={aor_expires}")]),
                path: None,
                remove_expires: true,
            }
        } else {
            Rewrite {
                contacts: Some(
                    pcs.iter()
                        .map(|c| {
                            let mut v =
                                format!("<{}>;expires={}", c.core_contact, c.core_expires_sent);
                            // The core keys GRUUs by instance (RFC 5627 §3.1); reg-id stays
                            // here, flows end at the edge (RFC 5626 §5.1).
                            if let Some(i) = &c.spec.instance {
                                v.push_str(&format!(";+sip.instance=\"<{i}>\""));
                            }
                            v
                        })
                        .collect(),
                ),
                path: None,
                remove_expires: true,
            }
        };
        p.op = PendingOp::Contacts(pcs);
        self.forward(p, rewrite)
    }

    fn core_contact(&self, token: &str) -> String {
        format!("sip:{token}@{}", self.edge)
    }

    /// `outgoing` lowered by a random 0..=deviation percent (never below 1 s).
    fn deviated(&mut self, outgoing: u32) -> u32 {
        let pct = u64::from(self.cfg.expires_deviation_percent.min(100));
        let cut = u64::from(outgoing) * self.rng.random_range(0..=pct) / 100;
        (u64::from(outgoing) - cut).max(1) as u32
    }
}
