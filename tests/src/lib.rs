//! Shared helpers for end-to-end tests: start binaries, pick ports, wait for readiness.
