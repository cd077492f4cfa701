//! The reply cache: a retransmitted UDP command is answered, never executed twice.
//!
//! rtpproxy clients retransmit a command with the same cookie until a reply arrives
//! (Kamailio: `rtpproxy_retr` times, `rtpproxy_tout` apart). Executing a retransmitted `U` twice
//! would be harmless, but a retransmitted `D` after a new `U`, or an `X`, would not; so the
//! answer is kept per (source address, cookie) for `control.reply_cache_s` and replayed.
//! Sans-IO: time is passed in.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

type Key = (SocketAddr, Vec<u8>);

/// Encoded replies by (source, cookie), expiring `ttl` after insertion.
#[derive(Debug)]
pub struct ReplyCache {
    ttl: Duration,
    max_entries: usize,
    entries: HashMap<Key, (Instant, Vec<u8>)>,
    /// Insertion order; with one TTL for all entries this is also expiry order.
    order: VecDeque<(Instant, Key)>,
}

impl ReplyCache {
    /// `max_entries` bounds memory under a flood of distinct cookies: the oldest entry is
    /// evicted first (it is the one least likely to be retransmitted).
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        ReplyCache {
            ttl,
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The cached reply datagram for this (source, cookie), if still fresh.
    pub fn get(&self, src: SocketAddr, cookie: &[u8], now: Instant) -> Option<&[u8]> {
        let key = (src, cookie.to_vec());
        self.entries
            .get(&key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, reply)| reply.as_slice())
    }

    /// Remember the reply sent for (source, cookie).
    pub fn insert(&mut self, src: SocketAddr, cookie: &[u8], reply: Vec<u8>, now: Instant) {
        self.purge(now);
        while self.entries.len() >= self.max_entries {
            let Some((at, key)) = self.order.pop_front() else {
                break;
            };
            self.remove_if_same(&key, at);
        }
        let key = (src, cookie.to_vec());
        self.order.push_back((now, key.clone()));
        self.entries.insert(key, (now, reply));
    }

    /// Drop expired entries.
    pub fn purge(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            if let Some((at, key)) = self.order.pop_front() {
                self.remove_if_same(&key, at);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remove `key` only if the map still holds the entry inserted at `at` (a key reinserted
    /// later has a newer order record of its own).
    fn remove_if_same(&mut self, key: &Key, at: Instant) {
        if self.entries.get(key).is_some_and(|(t, _)| *t == at) {
            self.entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn hit_until_ttl_then_miss() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(30), 100);
        c.insert(src(1), b"k1", b"k1 0\n".to_vec(), t0);
        assert_eq!(
            c.get(src(1), b"k1", t0 + Duration::from_secs(29)),
            Some(&b"k1 0\n"[..])
        );
        assert_eq!(c.get(src(1), b"k1", t0 + Duration::from_secs(30)), None);
        c.purge(t0 + Duration::from_secs(29));
        assert_eq!(c.len(), 1);
        c.purge(t0 + Duration::from_secs(30));
        assert!(c.is_empty());
    }

    #[test]
    fn keyed_by_source_and_cookie() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(30), 100);
        c.insert(src(1), b"k1", b"a".to_vec(), t0);
        assert_eq!(c.get(src(2), b"k1", t0), None);
        assert_eq!(c.get(src(1), b"k2", t0), None);
        assert_eq!(c.get(src(1), b"k1", t0), Some(&b"a"[..]));
    }

    #[test]
    fn bounded_evicts_oldest() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(30), 2);
        c.insert(src(1), b"a", b"1".to_vec(), t0);
        c.insert(src(1), b"b", b"2".to_vec(), t0 + Duration::from_secs(1));
        c.insert(src(1), b"c", b"3".to_vec(), t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(src(1), b"a", t0 + Duration::from_secs(2)), None);
        assert!(c.get(src(1), b"c", t0 + Duration::from_secs(2)).is_some());
    }

    #[test]
    fn reinsert_is_not_purged_by_stale_record() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(10), 100);
        c.insert(src(1), b"a", b"old".to_vec(), t0);
        c.insert(src(1), b"a", b"new".to_vec(), t0 + Duration::from_secs(5));
        c.purge(t0 + Duration::from_secs(11));
        assert_eq!(
            c.get(src(1), b"a", t0 + Duration::from_secs(11)),
            Some(&b"new"[..])
        );
    }
}
