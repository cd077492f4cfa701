//! Starting and stopping the media plane releases everything: threads, sockets, rings
//! (checked by counting this process's open descriptors; one test per file so nothing else
//! opens descriptors meanwhile).

#[path = "../../tests/src/skip.rs"]
mod skip;
use config::{DatapathKind, MediaConfig};
use rtprelay::backend::{LegSpec, MediaBackend};
use rtprelay::media;
use std::net::{IpAddr, Ipv4Addr};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn start_stop_releases_descriptors_and_ports() {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let spec = LegSpec {
        remote: None,
        symmetric: true,
        local_ip: lo,
    };
    let before = open_fds();
    for kind in [DatapathKind::Fallback, DatapathKind::IoUring] {
        for round in 0..5 {
            let cfg = MediaConfig {
                listen: lo,
                port_min: 47_400,
                port_max: 47_407,
                threads: 1,
                datapath: kind,
                pin_threads: false,
                ring_buffers: 64,
                ..MediaConfig::default()
            };
            let mut m = match media::start(&cfg) {
                Ok(m) => m,
                Err(media::StartError::IoUring(e)) => {
                    skip::skip(
                        "start_stop_releases_descriptors_and_ports",
                        format!("io_uring: {e}"),
                    );
                    break;
                }
                Err(e) => panic!("start: {e}"),
            };
            // Every port of the range every round: they must have been released by the last
            // shutdown (two streams take all four pairs).
            let mut ports = Vec::new();
            for _ in 0..2 {
                let (a, b) = m
                    .create(0, spec, spec)
                    .unwrap_or_else(|e| panic!("{kind:?} round {round}: {e}"));
                ports.extend([a.port, b.port]);
            }
            ports.sort_unstable();
            assert_eq!(ports, [47_400, 47_402, 47_404, 47_406]);
            m.shutdown();
        }
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}
