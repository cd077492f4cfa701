//! Load tools; see the binaries under src/bin. [`rtpload`] holds the pieces of the `rtpload`
//! binary (iperf-like RTP through any relay speaking the rtpproxy control protocol).

pub mod rtpload;
