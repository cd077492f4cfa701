//! Is the media of a confirmed call still there? (sans-IO)
//!
//! Every `media.check_interval_s` each confirmed call's streams are queried on its relay with
//! `Q callid caller-tag`. A relay deletes a stream when no packet came for its timeout, and a
//! relay that restarted knows no stream at all: either way it answers "unknown" (rtpproxy and
//! our relay `E50`, rtpengine `E8`), and the call is ended with a BYE to both parties — the
//! job Kamailio gives its dialog module on rtpengine's timeout notification. Polling works
//! with every relay the edge drives (no notification socket to open toward the edge) at one
//! small command per call and interval. A query that gets no answer says nothing: the relay
//! may be restarting, and the next check decides.

use super::dialog::CmdId;
use super::shell::CommandResult;
use sbc_shared::proto::ErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// `E<n>` codes that mean "no such call or stream": rtpproxy/rtprelay 50, rtpengine 8.
const UNKNOWN_CALL: [u16; 2] = [50, 8];

#[derive(Debug, Default)]
pub struct Liveness {
    interval: Option<Duration>,
    /// Next check of each watched call: (when, sequence) → call key.
    due: BTreeMap<(Instant, u64), String>,
    at: HashMap<String, (Instant, u64)>,
    /// Queries in flight → call key.
    asked: HashMap<CmdId, String>,
    seq: u64,
}

/// What a query's answer says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not one of our queries.
    NotOurs,
    /// The relay has it (or did not answer): keep the call.
    Alive,
    /// The relay does not know the call: end it.
    Lost(String),
}

impl Liveness {
    pub fn new(interval_s: u64) -> Self {
        Liveness {
            interval: (interval_s > 0).then(|| Duration::from_secs(interval_s)),
            ..Liveness::default()
        }
    }

    /// Start checking call `key` one interval from now (no-op when checks are off).
    pub fn watch(&mut self, key: &str, now: Instant) {
        let Some(i) = self.interval else {
            return;
        };
        self.forget(key);
        self.schedule(key.to_owned(), now + i);
    }

    fn schedule(&mut self, key: String, at: Instant) {
        self.seq += 1;
        self.due.insert((at, self.seq), key.clone());
        self.at.insert(key, (at, self.seq));
    }

    /// The call ended: no more checks, and a late answer is ignored.
    pub fn forget(&mut self, key: &str) {
        if let Some(t) = self.at.remove(key) {
            self.due.remove(&t);
        }
        self.asked.retain(|_, k| k != key);
    }

    /// The calls to query now (each rescheduled one interval later).
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let Some(i) = self.interval else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some((&(at, seq), _)) = self.due.first_key_value() {
            if at > now {
                break;
            }
            let Some(key) = self.due.remove(&(at, seq)) else {
                break;
            };
            self.schedule(key.clone(), now + i);
            out.push(key);
        }
        out
    }

    /// Query `id` was sent for call `key`.
    pub fn asked(&mut self, id: CmdId, key: String) {
        self.asked.insert(id, key);
    }

    /// The outcome of command `id`.
    pub fn on_reply(&mut self, id: CmdId, result: &CommandResult) -> Verdict {
        let Some(key) = self.asked.remove(&id) else {
            return Verdict::NotOurs;
        };
        match result {
            Ok((_, reply)) if reply.error().is_some_and(is_unknown_call) => Verdict::Lost(key),
            _ => Verdict::Alive,
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.due.keys().next().map(|(at, _)| *at)
    }
}

fn is_unknown_call(e: ErrorCode) -> bool {
    UNKNOWN_CALL.contains(&e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::client::ClientError;
    use sbc_shared::proto::Reply;

    #[test]
    fn watched_calls_are_queried_every_interval_until_forgotten() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Liveness::new(5);
        l.watch("a", t0);
        l.watch("b", t0 + s(1));
        assert_eq!(l.next_deadline(), Some(t0 + s(5)));
        assert!(l.due(t0 + s(4)).is_empty());
        assert_eq!(l.due(t0 + s(5)), vec!["a".to_string()]);
        assert_eq!(l.due(t0 + s(6)), vec!["b".to_string()]);
        assert_eq!(l.due(t0 + s(10)), vec!["a".to_string()]);
        l.forget("a");
        assert_eq!(l.due(t0 + s(60)), vec!["b".to_string()]);
    }

    #[test]
    fn off_checks_nothing() {
        let t0 = Instant::now();
        let mut l = Liveness::new(0);
        l.watch("a", t0);
        assert_eq!(l.next_deadline(), None);
        assert!(l.due(t0 + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn only_an_unknown_call_answer_is_a_loss() {
        let mut l = Liveness::new(5);
        let ask = |l: &mut Liveness, n: u64| {
            l.asked(CmdId(n), format!("call{n}"));
            CmdId(n)
        };
        let id = ask(&mut l, 1);
        assert_eq!(
            l.on_reply(id, &Ok((0, Reply::Error(ErrorCode(50))))),
            Verdict::Lost("call1".into())
        );
        assert_eq!(
            l.on_reply(id, &Ok((0, Reply::Error(ErrorCode(50))))),
            Verdict::NotOurs
        );
        let id = ask(&mut l, 2);
        assert_eq!(
            l.on_reply(id, &Ok((0, Reply::Error(ErrorCode(8))))),
            Verdict::Lost("call2".into()),
            "rtpengine's code"
        );
        let id = ask(&mut l, 3);
        let alive = Ok((0, Reply::Text("55 10 12 22 0".into())));
        assert_eq!(l.on_reply(id, &alive), Verdict::Alive);
        let id = ask(&mut l, 4);
        assert_eq!(
            l.on_reply(id, &Err(ClientError::NoRelay)),
            Verdict::Alive,
            "no answer: next check decides"
        );
        let id = ask(&mut l, 5);
        l.forget("call5");
        assert_eq!(
            l.on_reply(id, &Ok((0, Reply::Error(ErrorCode(50))))),
            Verdict::NotOurs
        );
    }
}
