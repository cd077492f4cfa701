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
    /// An access-side peer (a phone): its SDP addresses are not trusted as they stand.
    pub access: bool,
}

/// The address to give the relay for a stream whose SDP says `sdp` (the c= address), sent by
/// `sender`. For a NATed phone, or any phone whose SDP names a private, loopback or unspecified
/// address, it is the signalling's source IP (rtpproxy without its `r` flag; rtpengine's
/// `SIP-source-address`): the relay then latches strictly to that IP, and a stranger who sprays
/// the relay's ports gets nothing (RTP bleed, issue 9). From the core the SDP is taken as it is:
/// the carrier's own network may well use private addresses.
pub fn media_address(sdp: IpAddr, sender: &Peer) -> IpAddr {
    if sender.access && (sender.nated || crate::nat::is_private(sdp)) {
        sender.source.to_canonical()
    } else {
        sdp
    }
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
            access: true,
        }
    }

    #[test]
    fn media_address_is_the_source_for_phones_that_cannot_be_trusted() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let core = Peer {
            access: false,
            ..peer(true)
        };
        let table = [
            // (SDP address, sender, relay address)
            ("192.168.1.10", peer(true), "198.51.100.9"),
            ("192.168.1.10", peer(false), "198.51.100.9"),
            ("0.0.0.0", peer(false), "198.51.100.9"),
            ("203.0.113.7", peer(true), "198.51.100.9"),
            ("203.0.113.7", peer(false), "203.0.113.7"),
            ("10.1.2.3", core, "10.1.2.3"),
        ];
        for (sdp, sender, want) in table {
            assert_eq!(
                media_address(ip(sdp), &sender),
                ip(want),
                "{sdp} {sender:?}"
            );
        }
        let v6 = Peer {
            source: ip("::ffff:198.51.100.9"),
            ..peer(true)
        };
        assert_eq!(media_address(ip("10.0.0.1"), &v6), ip("198.51.100.9"));
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
