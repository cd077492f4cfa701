//! The admin listener (`/metrics`, `/health`, `/ready`) is `sbc_shared::admin`, shared with the
//! edge; the relay adds its readiness rule.

pub use sbc_shared::admin::*;

/// The relay's readiness: not while draining (new calls are refused with `E98`), not with a
/// stopped shard (its streams are dead and `U` for calls hashed to it fail).
pub fn relay_readiness(draining: bool, stopped_shards: &[u16]) -> Result<(), String> {
    if draining {
        return Err("draining: new calls refused".into());
    }
    if !stopped_shards.is_empty() {
        return Err(format!("shard thread(s) stopped: {stopped_shards:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::relay_readiness;

    #[test]
    fn readiness_reasons() {
        assert_eq!(relay_readiness(false, &[]), Ok(()));
        assert!(relay_readiness(true, &[]).unwrap_err().contains("draining"));
        assert_eq!(
            relay_readiness(false, &[1]).unwrap_err(),
            "shard thread(s) stopped: [1]"
        );
    }
}
