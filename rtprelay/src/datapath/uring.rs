//! io_uring datapath (in progress: setup reports "unsupported" so `auto` uses the fallback).

use super::{Ctl, ShardParams};
use std::io;

pub struct UringShard {
    _ctl: Ctl,
}

impl UringShard {
    pub fn new(_params: &ShardParams, ctl: Ctl) -> Result<UringShard, (io::Error, Ctl)> {
        Err((
            io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring datapath not built yet",
            ),
            ctl,
        ))
    }

    pub fn run(self) {}
}
