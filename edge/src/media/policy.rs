//! Media policy: whether a call's media goes through a relay (`media.mode`).
//!
//! - `always`: every call with SDP is anchored.
//! - `nat`: anchored when either side is behind NAT — the sender of the initial INVITE (NAT
//!   detection on its request) or its target (the registrar knows whether the binding came
//!   through NAT). Two public phones talk directly.
//! - `never`: no relay; but a NATed phone's SDP names its private address, so its c= lines
//!   are set to the source address its signalling came from (Kamailio nathelper's
//!   `fix_nated_sdp`); symmetric-RTP phones behind a port-preserving NAT then work.

use config::MediaMode;
use std::net::IpAddr;

/// Who sent a message, as the NAT layer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The source IP of the signalling (the `received` address).
    pub source: IpAddr,
    /// The NAT test said this peer is behind NAT (RFC 3581 received/rport differ from Via,
    /// private address in Contact or SDP, ...).
    pub nated: bool,
}

/// What to do with one call (decided at its initial INVITE) or one SDP (mode `never`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Anchor the media on a relay.
    Relay,
    /// No relay; point the SDP's c= lines at this address (the NATed sender's source).
    FixNat(IpAddr),
    /// Leave the SDP alone.
    Leave,
}

/// Decide for a new call: `sender` sent the initial INVITE, `target_nated` is the NAT state
/// of where it goes (false when unknown, e.g. toward the core).
pub fn for_call(mode: MediaMode, sender: &Peer, target_nated: bool) -> Decision {
    match mode {
        MediaMode::Always => Decision::Relay,
        MediaMode::Nat if sender.nated || target_nated => Decision::Relay,
        MediaMode::Nat => Decision::Leave,
        MediaMode::Never => for_unrelayed(sender),
    }
}

/// For an SDP of a call that is not relayed: fix it when its sender is NATed.
pub fn for_unrelayed(sender: &Peer) -> Decision {
    if sender.nated {
        Decision::FixNat(sender.source)
    } else {
        Decision::Leave
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(nated: bool) -> Peer {
        Peer {
            source: "198.51.100.9".parse().unwrap(),
            nated,
        }
    }

    #[test]
    fn decisions() {
        let fix = Decision::FixNat("198.51.100.9".parse().unwrap());
        let table = [
            (MediaMode::Always, false, false, Decision::Relay),
            (MediaMode::Always, true, true, Decision::Relay),
            (MediaMode::Nat, false, false, Decision::Leave),
            (MediaMode::Nat, true, false, Decision::Relay),
            (MediaMode::Nat, false, true, Decision::Relay),
            (MediaMode::Never, false, true, Decision::Leave),
            (MediaMode::Never, true, false, fix),
        ];
        for (mode, sender, target, want) in table {
            assert_eq!(
                for_call(mode, &peer(sender), target),
                want,
                "{mode:?} {sender} {target}"
            );
        }
    }
}
