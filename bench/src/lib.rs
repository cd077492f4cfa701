//! Load tools; see the binaries under src/bin. [`rtpload`] holds the pieces of the `rtpload`
//! binary (iperf-like RTP through any relay speaking the rtpproxy control protocol);
//! [`mmsgfwd`] the plain recvmmsg/sendmmsg forwarder the relay is compared against.

pub mod mmsgfwd;
pub mod rtpload;
