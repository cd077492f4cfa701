//! Via branch parameters (RFC 3261 §8.1.1.7, §16.6 step 8) and loop detection (§16.3 step 4).
//!
//! Our branch is `z9hG4bK` + a per-request unique part + `.` + a hash of the fields that define
//! the request's routing (§16.6 step 8: Request-URI, To tag, From tag, Call-ID, CSeq number,
//! Route, Proxy-Require, Proxy-Authorization). A request that comes back to us with one of our
//! Vias whose hash part equals the hash we would compute now is a loop (482); one whose hash
//! differs is a spiral (the Request-URI changed) and is processed normally.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hash::{Hash, Hasher};

pub const MAGIC: &str = "z9hG4bK";

/// Unpredictable identifiers — branches and tags — from a CSPRNG (rand's `StdRng`, ChaCha),
/// without a syscall per request. A guessable branch lets anyone who sees a few forge
/// responses or CANCELs for other calls; a guessable tag, in-dialog requests. The sans-IO core
/// takes the seed (as it takes time); the shell gives it OS randomness.
pub struct BranchGen {
    rng: StdRng,
    /// Every local tag starts with it: an ACK for a stateless local reject (no transaction
    /// left to absorb it) is recognised by its To tag and dropped, not forwarded.
    tag_prefix: String,
}

impl BranchGen {
    pub fn new(seed: [u8; 32]) -> Self {
        let mut rng = StdRng::from_seed(seed);
        let tag_prefix = format!("e{:08x}", rng.random::<u32>());
        BranchGen { rng, tag_prefix }
    }

    /// A fresh branch carrying `loop_hash`.
    pub fn next(&mut self, loop_hash: u64) -> String {
        let unique: u64 = self.rng.random();
        format!("{MAGIC}{unique:x}.{loop_hash:x}")
    }

    /// A fresh To tag (responses the edge generates itself).
    pub fn tag(&mut self) -> String {
        format!("{}{:016x}", self.tag_prefix, self.rng.random::<u64>())
    }

    /// Was `tag` made by [`Self::tag`]?
    pub fn is_local_tag(&self, tag: &str) -> bool {
        tag.len() == self.tag_prefix.len() + 16 && tag.starts_with(&self.tag_prefix)
    }
}

/// A deterministic branch derived from another (stateless forwarding, §16.11: retransmissions of
/// the same request must get the same branch).
pub fn derived(incoming_branch: &[u8], loop_hash: u64) -> String {
    let mut h = Fnv::default();
    incoming_branch.hash(&mut h);
    format!("{MAGIC}s{:x}.{loop_hash:x}", h.finish())
}

/// Hash of the routing-relevant fields (§16.6 step 8); the caller feeds them in a fixed order.
/// FNV-1a: this runs on every request, and needs no DoS resistance (an attacker who makes two
/// requests collide only makes us answer 482 to its own request).
pub fn loop_hash<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h = Fnv::default();
    for f in fields {
        f.hash(&mut h);
    }
    h.finish()
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// True when `branch` is one of ours and carries `loop_hash`.
pub fn is_loop(branch: &str, loop_hash: u64) -> bool {
    branch
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(_, h)| u64::from_str_radix(h, 16) == Ok(loop_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_are_unique_and_magic() {
        let mut g = BranchGen::new([42; 32]);
        let a = g.next(7);
        // The same seed gives the same sequence (tests stay deterministic).
        assert_eq!(BranchGen::new([42; 32]).next(7), a);
        let b = g.next(7);
        assert_ne!(a, b);
        assert!(a.starts_with(MAGIC));
        assert!(is_loop(&a, 7));
        assert!(
            !is_loop(&a, 8),
            "same hop, other request-uri: spiral, not loop"
        );
        assert!(!is_loop("z9hG4bKforeign", 7));
    }

    #[test]
    fn loop_hash_depends_on_every_field() {
        let base = loop_hash([&b"sip:a@b"[..], b"call-1", b"tag1"]);
        assert_eq!(base, loop_hash([&b"sip:a@b"[..], b"call-1", b"tag1"]));
        assert_ne!(base, loop_hash([&b"sip:a@c"[..], b"call-1", b"tag1"]));
        assert_ne!(base, loop_hash([&b"sip:a@b"[..], b"call-2", b"tag1"]));
        // Field boundaries matter.
        assert_ne!(loop_hash([&b"ab"[..], b"c"]), loop_hash([&b"a"[..], b"bc"]));
    }

    #[test]
    fn derived_is_stable() {
        assert_eq!(derived(b"z9hG4bKabc", 1), derived(b"z9hG4bKabc", 1));
        assert_ne!(derived(b"z9hG4bKabc", 1), derived(b"z9hG4bKabd", 1));
        assert!(is_loop(&derived(b"x", 5), 5));
    }
}
