//! `user_data` of the shard's io_uring requests: the top 2 bits name the operation; a RECV
//! carries (generation << 32 | fixed-file index), so a completion of a socket that has since
//! been closed (and maybe reopened for another leg) is recognised as stale; a SEND carries the
//! id of the buffer it sends from.

pub const OP_SHIFT: u32 = 62;
pub const OP_RECV: u64 = 0;
pub const OP_SEND: u64 = 1;
pub const OP_CTL: u64 = 2;
pub const CTL_WAKE: u64 = OP_CTL << OP_SHIFT;
pub const CTL_TIMEOUT: u64 = (OP_CTL << OP_SHIFT) | 1;
pub const CTL_CANCEL: u64 = (OP_CTL << OP_SHIFT) | 2;
pub const CTL_CANCEL_ALL: u64 = (OP_CTL << OP_SHIFT) | 3;

/// The 30 bits of a socket generation that fit in a RECV's user_data.
pub fn gen_bits(gen: u32) -> u32 {
    gen & 0x3fff_ffff
}

pub fn recv_ud(idx: u32, gen: u32) -> u64 {
    (OP_RECV << OP_SHIFT) | (u64::from(gen_bits(gen)) << 32) | u64::from(idx)
}

/// (fixed-file index, generation bits) of a RECV's user_data.
pub fn recv_parts(ud: u64) -> (u32, u32) {
    ((ud & 0xffff_ffff) as u32, gen_bits((ud >> 32) as u32))
}

pub fn send_ud(bid: u16) -> u64 {
    (OP_SEND << OP_SHIFT) | u64::from(bid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trip() {
        let ud = recv_ud(12_345, 0x3fff_ffff);
        assert_eq!(ud >> OP_SHIFT, OP_RECV);
        assert_eq!(recv_parts(ud), (12_345, 0x3fff_ffff));
        assert_eq!(recv_parts(recv_ud(7, u32::MAX)), (7, gen_bits(u32::MAX)));
        // The generation wraps inside its 30 bits and never spills into the op bits.
        assert_eq!(recv_ud(1, u32::MAX) >> OP_SHIFT, OP_RECV);
        assert_eq!(send_ud(4095) >> OP_SHIFT, OP_SEND);
        assert_eq!(send_ud(4095) & 0xffff, 4095);
        for c in [CTL_WAKE, CTL_TIMEOUT, CTL_CANCEL, CTL_CANCEL_ALL] {
            assert_eq!(c >> OP_SHIFT, OP_CTL);
        }
    }
}
