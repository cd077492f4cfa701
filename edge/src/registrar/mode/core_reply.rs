//! The core's answer to a forwarded REGISTER: a 2xx saves or removes bindings (RFC 3261
//! §10.3 step 7, mirrored here) and is rewritten to list the device's contacts; 401/407 and
//! failures pass through and save nothing.

use super::*;

impl Registrar {
    /// The core's answer to a forwarded REGISTER.
    pub fn on_core_response(
        &mut self,
        id: PendingId,
        resp: &Message,
        now: Instant,
    ) -> ResponseAction {
        let status = resp.status().unwrap_or(500);
        if status < 200 {
            return ResponseAction::PassThrough;
        }
        let Some(p) = self.pending.remove(&id) else {
            return ResponseAction::PassThrough;
        };
        if status == 401 || status == 407 {
            // The device will retry with credentials; that retry must reach the core.
            let call_id = p.call_id.clone();
            let mut marked = Vec::new();
            self.loc.update_aor(&p.aor, |b| {
                if b.call_id == call_id && !b.challenged {
                    b.challenged = true;
                    marked.push(b.clone());
                }
            });
            self.changes
                .extend(marked.into_iter().map(|b| Change::Upsert(Box::new(b))));
            return ResponseAction::PassThrough;
        }
        if !(200..300).contains(&status) {
            return ResponseAction::PassThrough;
        }
        match &p.op {
            PendingOp::Query => {}
            PendingOp::Star => {
                for b in self.loc.remove_aor(&p.aor) {
                    self.changes.push(Change::Remove {
                        aor: b.aor,
                        contact: b.contact,
                    });
                }
            }
            PendingOp::Contacts(pcs) => self.save(&p, pcs, resp, now),
        }
        self.metrics.bindings.set(self.loc.len() as i64);
        let mut e = Edit::new(resp);
        e.remove_all(HeaderName::Contact);
        for v in self.contact_values(&p.aor, now) {
            e.append(HeaderName::Contact, v.as_bytes());
        }
        let outbound = self.outbound_headers(&p);
        if !outbound.is_empty() {
            e.remove_all("Flow-Timer");
            let has = resp
                .values(HeaderName::Require)
                .any(|v| v.eq_ignore_ascii_case(b"outbound"));
            for (n, v) in &outbound {
                if !(has && *n == "Require") {
                    e.append(*n, v.as_bytes());
                }
            }
        }
        ResponseAction::Replace(e.finish())
    }

    /// The core accepted: save or remove each contact of the request (§10.3 step 7).
    fn save(&mut self, p: &Pending, pcs: &[PendingContact], resp: &Message, now: Instant) {
        let granted = core_grants(resp);
        let hdr = resp
            .header(HeaderName::Expires)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let secs = |s: u32| now + Duration::from_secs(u64::from(s));
        let mut core_expiry = None;
        for c in pcs {
            if c.local_expires == 0 {
                if let Some(b) = self.loc.find(
                    &p.aor,
                    &c.spec.uri,
                    c.spec.instance.as_deref(),
                    c.spec.reg_id,
                ) {
                    self.remove(&b.aor, &b.contact);
                }
                continue;
            }
            let g = granted.iter().find(|g| {
                g.uri.eq_ignore_ascii_case(&c.core_contact)
                    || (!c.token.is_empty() && token_of(&g.uri) == Some(c.token.as_str()))
            });
            let core_secs = g
                .and_then(|g| g.expires)
                .or(hdr)
                .unwrap_or(c.core_expires_sent);
            if core_secs == 0 {
                continue; // the core did not keep it
            }
            let local_secs = if p.policy.mode == RegistrarMode::Mirror {
                core_secs
            } else {
                c.local_expires.min(core_secs)
            };
            core_expiry = Some(secs(core_secs));
            let b = Binding {
                aor: p.aor.clone(),
                contact: c.spec.uri.clone(),
                transport: p.src.transport,
                source: p.src.remote,
                local: p.src.local,
                flow: p.src.flow,
                instance: c.spec.instance.clone(),
                reg_id: c.spec.reg_id,
                q: c.spec.q,
                expires: secs(local_secs),
                call_id: p.call_id.clone(),
                cseq: p.cseq,
                path: p.path.clone(),
                user_agent: p.user_agent.clone(),
                core_contact: c.core_contact.clone(),
                core_expires: secs(core_secs),
                token: c.token.clone(),
                gruu_params: g.map(|g| g.gruu.clone()).unwrap_or_default(),
                nated: p.nated,
                challenged: false,
            };
            if self.loc.upsert(b.clone()) != Upsert::Full {
                self.changes.push(Change::Upsert(Box::new(b)));
            }
        }
        // AoR mode: every device of the AoR shares the one core binding just refreshed.
        if let (RegistrarMode::Aor, Some(at)) = (p.policy.mode, core_expiry) {
            let mut refreshed = Vec::new();
            self.loc.update_aor(&p.aor, |b| {
                b.core_expires = at;
                refreshed.push(b.clone());
            });
            self.changes
                .extend(refreshed.into_iter().map(|b| Change::Upsert(Box::new(b))));
        }
    }
}

/// A Contact of the core's 2xx.
struct Granted {
    uri: String,
    expires: Option<u32>,
    gruu: String,
}

/// The Contacts of a 2xx to REGISTER with their expires and GRUU parameters.
fn core_grants(resp: &Message) -> Vec<Granted> {
    resp.values(HeaderName::Contact)
        .filter_map(|v| NameAddr::parse(v).ok())
        .filter_map(|na| {
            Uri::parse(na.uri_raw).ok()?;
            let mut gruu = String::new();
            for name in ["pub-gruu", "temp-gruu"] {
                if let Some(Some(v)) = na.param(name) {
                    gruu.push_str(&format!(";{name}={v}"));
                }
            }
            Some(Granted {
                uri: std::str::from_utf8(na.uri_raw).ok()?.to_string(),
                expires: na.param("expires").flatten().and_then(|e| e.parse().ok()),
                gruu,
            })
        })
        .collect()
}
