//! Media anchoring: which calls go through the RTP relay, and the relay's control client.
