//! The io_uring shard's sockets (see [`UringSockets`]).

use super::userdata::recv_ud;
use crate::datapath::socket::bind_pair;
use crate::table::Sockets;
use std::io;
use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// The shard's sockets. Ring operations that follow from opening/closing (file-table updates,
/// arming and cancelling receives) are queued here and applied by the loop: the table calls
/// [`Sockets`] while the ring is borrowed by the loop.
pub struct UringSockets {
    pub socks: Vec<Option<UdpSocket>>,
    pub gens: Vec<u32>,
    /// (fixed index, fd or -1) in order.
    pub updates: Vec<(u32, RawFd)>,
    pub arm: Vec<u32>,
    pub cancel: Vec<u64>,
}

impl Sockets for UringSockets {
    fn open(&mut self, slot: u32, ip: IpAddr, rtp_port: u16) -> io::Result<()> {
        let base = slot as usize * 2;
        if base + 1 >= self.socks.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "slot out of range",
            ));
        }
        let pair = bind_pair(ip, rtp_port)?;
        for (c, s) in pair.into_iter().enumerate() {
            let idx = base + c;
            self.gens[idx] = self.gens[idx].wrapping_add(1);
            self.updates.push((idx as u32, s.as_raw_fd()));
            self.arm.push(idx as u32);
            self.socks[idx] = Some(s);
        }
        Ok(())
    }

    fn close(&mut self, slot: u32) {
        let base = slot as usize * 2;
        for idx in base..base + 2 {
            let Some(s) = self.socks.get_mut(idx) else {
                return;
            };
            if s.take().is_some() {
                // The fixed-file slot keeps the socket alive until the update and the cancel of
                // its receive are processed; the port is released then.
                self.updates.push((idx as u32, -1));
                self.cancel.push(recv_ud(idx as u32, self.gens[idx]));
                self.gens[idx] = self.gens[idx].wrapping_add(1);
            }
        }
    }
}
