//! Load tools; see the binaries under src/bin.
