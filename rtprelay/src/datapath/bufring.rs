//! A provided-buffer ring (io_uring `IORING_REGISTER_PBUF_RING`): the shard's pool of receive
//! buffers that every multishot RECVMSG draws from. The kernel picks a buffer per datagram and
//! reports its id in the CQE; the shard gives it back (re-adds it at the tail) once the packet
//! has been forwarded or dropped. Buffers may come back in any order.
//!
//! Layout (kernel ABI, `struct io_uring_buf`, 16 bytes): `addr u64, len u32, bid u16, resv u16`;
//! the ring's tail is the `resv` field of entry 0, which is why entries are written field by
//! field and never as a whole struct.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

const ENTRY: usize = 16;
const TAIL_OFFSET: usize = 14;

pub struct BufRing {
    ring: *mut u8,
    ring_len: usize,
    entries: u16,
    mask: u16,
    /// Local tail: entries added since the last `commit` are invisible to the kernel.
    tail: u16,
    bufs: Vec<u8>,
    buf_size: usize,
}

impl BufRing {
    /// `entries` must be a power of two in 1..=32768 (validated by the config).
    pub fn new(entries: u32, buf_size: usize) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring_buffers must be a power of two <= 32768",
            ));
        }
        let ring_len = entries as usize * ENTRY;
        // SAFETY: anonymous private mapping, checked for failure; page-aligned as the kernel
        // requires for a buffer ring.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut r = BufRing {
            ring: ring.cast(),
            ring_len,
            entries: (entries - 1) as u16 + 1,
            mask: (entries - 1) as u16,
            tail: 0,
            bufs: vec![0u8; entries as usize * buf_size],
            buf_size,
        };
        for bid in 0..entries {
            r.push(bid as u16);
        }
        r.commit();
        Ok(r)
    }

    pub fn ring_addr(&self) -> u64 {
        self.ring as u64
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Pointer to buffer `bid` (stable for the ring's life).
    pub fn ptr(&mut self, bid: u16) -> Option<*mut u8> {
        let start = usize::from(bid) * self.buf_size;
        self.bufs
            .get_mut(start..start + self.buf_size)
            .map(<[u8]>::as_mut_ptr)
    }

    /// The first `len` bytes of buffer `bid`.
    pub fn get(&self, bid: u16, len: usize) -> Option<&[u8]> {
        let start = usize::from(bid) * self.buf_size;
        self.bufs.get(start..start + len.min(self.buf_size))
    }

    pub fn get_mut(&mut self, bid: u16) -> Option<&mut [u8]> {
        let start = usize::from(bid) * self.buf_size;
        self.bufs.get_mut(start..start + self.buf_size)
    }

    /// Give buffer `bid` back (visible to the kernel after `commit`).
    pub fn push(&mut self, bid: u16) {
        let Some(addr) = self.ptr(bid) else { return };
        let idx = usize::from(self.tail & self.mask);
        // SAFETY: idx < entries, so the 16-byte entry lies inside the mapping; fields are
        // written individually so entry 0's `resv` (the shared tail) is not overwritten.
        unsafe {
            let e = self.ring.add(idx * ENTRY);
            e.cast::<u64>().write(addr as u64);
            e.add(8).cast::<u32>().write(self.buf_size as u32);
            e.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish the tail: the kernel may now use every pushed buffer.
    pub fn commit(&mut self) {
        // SAFETY: offset 14 of entry 0 is the kernel-shared tail (2-byte aligned).
        let tail = unsafe { &*self.ring.add(TAIL_OFFSET).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl BufRing {
        fn shared_tail(&self) -> u16 {
            // SAFETY: as in `commit`.
            unsafe { &*self.ring.add(TAIL_OFFSET).cast::<AtomicU16>() }.load(Ordering::Acquire)
        }

        fn entry(&self, i: usize) -> (u64, u32, u16) {
            assert!(i < usize::from(self.entries));
            // SAFETY: i < entries.
            unsafe {
                let e = self.ring.add(i * ENTRY);
                (
                    e.cast::<u64>().read(),
                    e.add(8).cast::<u32>().read(),
                    e.add(12).cast::<u16>().read(),
                )
            }
        }
    }

    #[test]
    fn starts_full_and_returns_buffers_at_the_tail() {
        let mut r = BufRing::new(16, 64).expect("ring");
        assert_eq!(r.shared_tail(), 16);
        for i in 0..16u16 {
            let (addr, len, bid) = r.entry(usize::from(i));
            assert_eq!((len, bid), (64, i));
            assert_eq!(addr, r.ptr(i).expect("buf") as u64);
        }
        // Tail 16 wraps to entry 0, whose last field is the shared tail: writing the entry must
        // not touch it, and the kernel must not see the entry before `commit`.
        r.push(5);
        assert_eq!(r.shared_tail(), 16);
        assert_eq!(r.entry(0).2, 5);
        r.push(9);
        r.commit();
        assert_eq!(r.shared_tail(), 18);
        assert_eq!(r.entry(1).2, 9);
        // Unknown buffer ids are ignored.
        r.push(16);
        r.commit();
        assert_eq!(r.shared_tail(), 18);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(BufRing::new(12, 64).is_err());
        assert!(BufRing::new(65536, 64).is_err());
    }
}
