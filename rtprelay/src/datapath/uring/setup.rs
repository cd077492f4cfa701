//! Building the shard's ring: the flags that make it fast, and the kernel it needs.

use io_uring::IoUring;
use std::io;

pub fn build_ring(entries: u32, cq: u32) -> io::Result<IoUring> {
    let defer = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .setup_cqsize(cq)
        .build(entries);
    match defer {
        Ok(r) => Ok(r),
        Err(e) => {
            // DEFER_TASKRUN (6.1) implies multishot RECVMSG (6.0); without it, check the
            // kernel version, which is the only way to know (there is no feature bit): on
            // 5.19 the ring would build but every receive would fail.
            if kernel_version().is_some_and(|v| v < (6, 0)) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "io_uring datapath needs Linux >= 6.0 (multishot RECVMSG)",
                ));
            }
            tracing::info!(error = %e, "io_uring DEFER_TASKRUN refused, trying COOP_TASKRUN");
            IoUring::builder()
                .setup_coop_taskrun()
                .setup_submit_all()
                .setup_cqsize(cq)
                .build(entries)
        }
    }
}

/// (major, minor) of the running kernel.
fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: uname fills a plain struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let release: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    parse_version(std::str::from_utf8(&release).ok()?)
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_version("6.18.0-1-cloud-amd64"), Some((6, 18)));
        assert_eq!(parse_version("5.19.17"), Some((5, 19)));
        assert_eq!(parse_version("garbage"), None);
        assert!(kernel_version().is_some());
    }
}
