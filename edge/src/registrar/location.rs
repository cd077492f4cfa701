//! The location service (RFC 3261 §10.3): AoR → bindings, as the edge knows them.
//!
//! A [`Binding`] is one device contact of an AoR together with what the edge needs to reach it
//! behind a NAT (the received source, transport and flow, RFC 5626) and to throttle it safely
//! (the Call-ID and CSeq of the REGISTER the core accepted, the contact the edge registered at
//! the core and when that core binding ends). The table is a `DashMap` so lookups for calls
//! from the core do not contend with registrations of other AoRs.

use crate::transport::{Dest, FlowId, Source, Transport};
use dashmap::DashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// One contact of an AoR.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The AoR, normalised by [`super::contact::aor_key`].
    pub aor: String,
    /// The Contact URI as the device sent it (without `<>` and header parameters).
    pub contact: String,
    /// Where the REGISTER came from: the NAT's public side for a NATed device.
    pub transport: Transport,
    pub source: SocketAddr,
    /// The edge address it arrived on (send from the same socket).
    pub local: SocketAddr,
    /// The TCP connection; `None` for UDP and after a restart.
    pub flow: Option<FlowId>,
    /// RFC 5626 §4.1 `+sip.instance` (the value, `<>` and quotes stripped).
    pub instance: Option<String>,
    /// RFC 5626 §4.2 `reg-id`.
    pub reg_id: Option<u32>,
    /// `q` × 1000 (RFC 3261 §20.10), when given.
    pub q: Option<u16>,
    /// When the device's binding ends.
    pub expires: Instant,
    /// Call-ID and CSeq of the REGISTER that last updated the binding at the core or here.
    pub call_id: String,
    pub cseq: u32,
    /// Path values of the REGISTER (RFC 3327), top first.
    pub path: Vec<String>,
    pub user_agent: Option<String>,
    /// The contact the edge registered at the core for this binding (`sip:<token>@<edge>`),
    /// or the device's own contact in mirror/path mode.
    pub core_contact: String,
    /// When the core's binding ends (throttling decisions).
    pub core_expires: Instant,
    /// The user part the edge put in the core contact or Path (`sip:<token>@<edge>`): a
    /// request from the core to it maps back to this binding (AoR mode: to the whole AoR).
    pub token: String,
    /// GRUU parameters (`;pub-gruu=...;temp-gruu=...`, RFC 5627 §5.4) the core gave this
    /// contact, echoed to the device; "" when none.
    pub gruu_params: String,
    /// The device looked NATed when it registered (keepalives, Contact fixing).
    pub nated: bool,
    /// The core challenged a REGISTER with this Call-ID after the binding was saved; a
    /// credentialed retry must then reach the core.
    pub challenged: bool,
}

impl Binding {
    /// The source the binding was learnt from, as a [`Source`] (for replies over its flow).
    pub fn source(&self) -> Source {
        Source {
            transport: self.transport,
            remote: self.source,
            local: self.local,
            flow: self.flow,
        }
    }

    /// Where requests for this binding go: its received source, over its flow (RFC 5626
    /// §5.3), so they pass the NAT binding the device opened.
    pub fn dest(&self) -> Dest {
        Dest {
            transport: self.transport,
            addr: self.source,
            flow: self.flow,
        }
    }

    /// Same flow (transport + source ip:port, RFC 5626 §3) as `src`.
    pub fn same_flow(&self, src: &Source) -> bool {
        self.transport == src.transport && self.source == src.remote
    }

    /// RFC 5626 §6: with `+sip.instance` and `reg-id` a binding is identified by the pair;
    /// otherwise by its Contact URI (RFC 3261 §10.3 step 7).
    pub fn same_identity(
        &self,
        contact: &str,
        instance: Option<&str>,
        reg_id: Option<u32>,
    ) -> bool {
        match (&self.instance, self.reg_id, instance, reg_id) {
            (Some(a), Some(r), Some(b), Some(s)) => a == b && r == s,
            _ => self.contact == contact,
        }
    }

    /// Seconds left, rounded up, 0 when expired.
    pub fn remaining(&self, now: Instant) -> u32 {
        let d = self.expires.saturating_duration_since(now);
        let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        u32::try_from(s).unwrap_or(u32::MAX)
    }
}

/// Result of [`Location::upsert`].
#[derive(Debug, PartialEq, Eq)]
pub enum Upsert {
    Inserted,
    Updated,
    /// The AoR already holds `max_contacts_per_aor` bindings.
    Full,
}

/// AoR → bindings, plus an index from the core contact's user part (the token) to the AoR.
#[derive(Debug)]
pub struct Location {
    aors: DashMap<String, Vec<Binding>>,
    tokens: DashMap<String, String>,
    max_per_aor: usize,
    /// Number of bindings, kept alongside so `len` is O(1) (it feeds a gauge per REGISTER).
    count: AtomicUsize,
    /// Bindings per source IP (`registrar.max_bindings_per_source`).
    by_ip: DashMap<IpAddr, usize>,
}

impl Location {
    pub fn new(max_per_aor: usize) -> Self {
        Location {
            aors: DashMap::new(),
            tokens: DashMap::new(),
            max_per_aor: max_per_aor.max(1),
            count: AtomicUsize::new(0),
            by_ip: DashMap::new(),
        }
    }

    /// Bindings of an AoR (a snapshot).
    pub fn get(&self, aor: &str) -> Vec<Binding> {
        self.aors.get(aor).map(|b| b.clone()).unwrap_or_default()
    }

    /// The binding of `aor` with that identity.
    pub fn find(
        &self,
        aor: &str,
        contact: &str,
        instance: Option<&str>,
        reg_id: Option<u32>,
    ) -> Option<Binding> {
        self.aors.get(aor).and_then(|v| {
            v.iter()
                .find(|b| b.same_identity(contact, instance, reg_id))
                .cloned()
        })
    }

    /// The AoR whose core contact has this user part.
    pub fn aor_of_token(&self, token: &str) -> Option<String> {
        self.tokens.get(token).map(|a| a.clone())
    }

    /// Inserts or replaces the binding with the same identity.
    pub fn upsert(&self, b: Binding) -> Upsert {
        let token = (!b.token.is_empty()).then(|| b.token.clone());
        let aor = b.aor.clone();
        let mut entry = self.aors.entry(aor.clone()).or_default();
        let pos = entry
            .iter()
            .position(|x| x.same_identity(&b.contact, b.instance.as_deref(), b.reg_id));
        let full = entry.len() >= self.max_per_aor;
        let mut moved = None;
        let r = match pos.and_then(|i| entry.get_mut(i)) {
            Some(x) => {
                if x.source.ip() != b.source.ip() {
                    moved = Some((x.source.ip(), b.source.ip()));
                }
                *x = b;
                Upsert::Updated
            }
            None if full => Upsert::Full,
            None => {
                moved = Some((IpAddr::from([0, 0, 0, 0]), b.source.ip()));
                entry.push(b);
                self.count.fetch_add(1, Ordering::Relaxed);
                Upsert::Inserted
            }
        };
        drop(entry);
        if let Some((from, to)) = moved {
            if r == Upsert::Updated {
                self.uncount(from);
            }
            *self.by_ip.entry(to).or_default() += 1;
        }
        if r != Upsert::Full {
            if let Some(t) = token {
                self.tokens.insert(t, aor);
            }
        }
        r
    }

    /// Removes a binding by identity; returns it.
    pub fn remove(&self, aor: &str, contact: &str) -> Option<Binding> {
        let removed = {
            let mut v = self.aors.get_mut(aor)?;
            let i = v.iter().position(|b| b.contact == contact)?;
            v.remove(i)
        };
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.aors.remove_if(aor, |_, v| v.is_empty());
        self.forget_token(&removed);
        self.uncount(removed.source.ip());
        Some(removed)
    }

    /// Removes every binding of an AoR.
    pub fn remove_aor(&self, aor: &str) -> Vec<Binding> {
        let v = self.aors.remove(aor).map(|(_, v)| v).unwrap_or_default();
        self.count.fetch_sub(v.len(), Ordering::Relaxed);
        for b in &v {
            self.forget_token(b);
            self.uncount(b.source.ip());
        }
        v
    }

    fn uncount(&self, ip: IpAddr) {
        let gone = self.by_ip.get_mut(&ip).is_some_and(|mut n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
        if gone {
            self.by_ip.remove_if(&ip, |_, n| *n == 0);
        }
    }

    /// Bindings registered from source address `ip`.
    pub fn from_source(&self, ip: IpAddr) -> usize {
        self.by_ip.get(&ip).map_or(0, |n| *n)
    }

    fn forget_token(&self, b: &Binding) {
        if b.token.is_empty() {
            return;
        }
        // AoR mode shares one token between the AoR's bindings.
        let still_used = self
            .aors
            .get(&b.aor)
            .is_some_and(|v| v.iter().any(|x| x.token == b.token));
        if !still_used {
            self.tokens.remove(&b.token);
        }
    }

    /// Applies `f` to every binding of an AoR (e.g. a new core expiry in AoR mode).
    pub fn update_aor(&self, aor: &str, mut f: impl FnMut(&mut Binding)) {
        if let Some(mut v) = self.aors.get_mut(aor) {
            v.iter_mut().for_each(&mut f);
        }
    }

    /// Removes the bindings that expired at `now` (RFC 3261 §10.3: a binding lives until its
    /// expiration interval elapses); returns them so the caller can update the core.
    pub fn sweep(&self, now: Instant) -> Vec<Binding> {
        let mut gone = Vec::new();
        for mut e in self.aors.iter_mut() {
            let v = e.value_mut();
            let mut i = 0;
            while i < v.len() {
                if v.get(i).is_some_and(|b| b.expires <= now) {
                    gone.push(v.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.aors.retain(|_, v| !v.is_empty());
        self.count.fetch_sub(gone.len(), Ordering::Relaxed);
        for b in &gone {
            self.forget_token(b);
            self.uncount(b.source.ip());
        }
        gone
    }

    /// Every binding (snapshot), e.g. to compact the store or schedule keepalives.
    pub fn all(&self) -> Vec<Binding> {
        self.aors.iter().flat_map(|e| e.value().clone()).collect()
    }

    /// Bindings per AoR, without copying them: `f(aor, bindings)` for each AoR.
    pub fn for_each_aor(&self, mut f: impl FnMut(&str, usize)) {
        for e in self.aors.iter() {
            f(e.key(), e.value().len());
        }
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.aors.is_empty()
    }

    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }
}

/// The user part of a `sip:<token>@host` core contact.
pub fn token_of(core_contact: &str) -> Option<&str> {
    let rest = core_contact
        .strip_prefix("sip:")
        .or_else(|| core_contact.strip_prefix("sips:"))?;
    let at = rest.find('@')?;
    rest.get(..at).filter(|t| !t.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn binding(aor: &str, contact: &str, now: Instant, secs: u64) -> Binding {
        Binding {
            aor: aor.into(),
            contact: contact.into(),
            transport: Transport::Udp,
            source: "192.0.2.1:5060".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            flow: None,
            instance: None,
            reg_id: None,
            q: None,
            expires: now + Duration::from_secs(secs),
            call_id: "c1".into(),
            cseq: 1,
            path: vec![],
            user_agent: None,
            core_contact: format!("sip:t{}@edge", contact.len()),
            token: format!("t{}", contact.len()),
            gruu_params: String::new(),
            core_expires: now + Duration::from_secs(secs),
            nated: false,
            challenged: false,
        }
    }

    #[test]
    fn upsert_limit_and_identity() {
        let now = Instant::now();
        let loc = Location::new(2);
        assert_eq!(
            loc.upsert(binding("sip:a@d", "sip:a@1", now, 60)),
            Upsert::Inserted
        );
        assert_eq!(
            loc.upsert(binding("sip:a@d", "sip:a@1", now, 90)),
            Upsert::Updated
        );
        assert_eq!(
            loc.upsert(binding("sip:a@d", "sip:a@22", now, 60)),
            Upsert::Inserted
        );
        assert_eq!(
            loc.upsert(binding("sip:a@d", "sip:a@333", now, 60)),
            Upsert::Full
        );
        assert_eq!(loc.len(), 2);
        assert_eq!(loc.aor_of_token("t7").as_deref(), Some("sip:a@d"));
        assert_eq!(
            loc.aor_of_token("t9"),
            None,
            "a refused binding leaves no token"
        );
        // RFC 5626 §6: same instance and reg-id replace even with another contact URI.
        let mut a = binding("sip:b@d", "sip:b@1", now, 60);
        a.instance = Some("urn:uuid:1".into());
        a.reg_id = Some(1);
        loc.upsert(a.clone());
        a.contact = "sip:b@2".into();
        assert_eq!(loc.upsert(a), Upsert::Updated);
        assert_eq!(loc.get("sip:b@d").len(), 1);
    }

    #[test]
    fn sweep_removes_only_expired_and_their_tokens() {
        let now = Instant::now();
        let loc = Location::new(10);
        loc.upsert(binding("sip:a@d", "sip:a@1", now, 30));
        loc.upsert(binding("sip:a@d", "sip:a@22", now, 90));
        assert!(loc.sweep(now + Duration::from_secs(29)).is_empty());
        let gone = loc.sweep(now + Duration::from_secs(30));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].contact, "sip:a@1");
        assert_eq!(loc.aor_of_token("t7"), None);
        assert!(loc.aor_of_token("t8").is_some());
        assert_eq!(loc.len(), 1);
        loc.sweep(now + Duration::from_secs(91));
        assert!(loc.is_empty());
        assert_eq!(loc.len(), 0);
        assert_eq!(loc.aor_of_token("t8"), None);
    }

    #[test]
    fn remove_keeps_shared_token_while_used() {
        let now = Instant::now();
        let loc = Location::new(10);
        let mut a = binding("sip:a@d", "sip:a@1", now, 30);
        a.token = "shared".into();
        let mut b = binding("sip:a@d", "sip:a@2", now, 30);
        b.token = "shared".into();
        loc.upsert(a);
        loc.upsert(b);
        loc.remove("sip:a@d", "sip:a@1");
        assert!(loc.aor_of_token("shared").is_some());
        assert_eq!(loc.remove_aor("sip:a@d").len(), 1);
        assert!(loc.aor_of_token("shared").is_none());
        assert_eq!(loc.len(), 0);
        assert_eq!(loc.aor_count(), 0);
    }

    #[test]
    fn remaining_rounds_up() {
        let now = Instant::now();
        let b = binding("sip:a@d", "sip:a@1", now, 30);
        assert_eq!(b.remaining(now + Duration::from_millis(500)), 30);
        assert_eq!(b.remaining(now + Duration::from_secs(31)), 0);
        assert_eq!(token_of("sip:abc@h:5060"), Some("abc"));
        assert_eq!(token_of("sip:h"), None);
    }
}
