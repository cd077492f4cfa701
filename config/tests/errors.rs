//! Config errors must name the key and the line.
use config::{EdgeConfig, RelayConfig};

#[test]
fn empty_file_gives_loopback_defaults() {
    let e: EdgeConfig = config::from_str("").unwrap();
    assert_eq!(e.sip.listen_udp[0].to_string(), "127.0.0.1:5060");
    assert!(e.sip.listen_udp[0].ip().is_loopback());
    let r: RelayConfig = config::from_str("").unwrap();
    assert!(r.media.listen.is_loopback());
    assert_eq!((r.media.port_min, r.media.port_max), (30_000, 40_000));
}

#[test]
fn type_error_names_key_and_line() {
    let err = config::from_str::<EdgeConfig>("[timers]\n\nt1_ms = \"fast\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("t1_ms"), "{msg}");
}

#[test]
fn unknown_key_is_rejected_with_line() {
    let err = config::from_str::<RelayConfig>("[media]\nport_mni = 4000\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("line 2") && msg.contains("port_mni"), "{msg}");
}

#[test]
fn semantic_error_names_key() {
    let err = config::from_str::<RelayConfig>("[media]\nport_min = 5000\nport_max = 4000\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("media.port_max"), "{err}");
    let err = config::from_str::<EdgeConfig>("[routing]\ncore = [\"nowhere\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routing.core") && err.contains("nowhere"),
        "{err}"
    );
}

#[test]
fn core_priorities_order_the_list_and_bad_ones_name_the_key() {
    let e: EdgeConfig = config::from_str(
        "[routing]\ncore = [\"10.0.0.1:5060;priority=20\", \"tcp:10.0.0.2:5060\", \"10.0.0.3:5060;priority=20\", \"10.0.0.4:5060 ; priority=5\"]\n",
    )
    .unwrap();
    let order: Vec<String> = e
        .routing
        .core_targets()
        .iter()
        .map(|c| format!("{}/{}", c.addr, c.priority))
        .collect();
    assert_eq!(
        order,
        [
            "10.0.0.2:5060/0",
            "10.0.0.4:5060/5",
            "10.0.0.1:5060/20",
            "10.0.0.3:5060/20"
        ]
    );
    for bad in [
        "10.0.0.1:5060;priority=x",
        "10.0.0.1:5060;weight=3",
        "10.0.0.1:5060;priority=70000",
    ] {
        let err = config::from_str::<EdgeConfig>(&format!("[routing]\ncore = [\"{bad}\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("routing.core") && err.contains(bad), "{err}");
    }
}

#[test]
fn core_entries_may_be_domain_names() {
    use config::{CoreEntry, Transport};
    let e: EdgeConfig = config::from_str(
        "[routing]\ncore = [\"tcp:Core.Example.COM.;priority=2\", \"sip.example.net:5080\", \"10.0.0.1:5060;priority=1\"]\n",
    )
    .unwrap();
    let entries = e.routing.core_entries();
    // By priority: the name with a port (0), the address (1), the SRV name (2).
    assert!(
        matches!(&entries[0], CoreEntry::Domain(d) if d.port == Some(5080) && d.name == "sip.example.net")
    );
    assert!(matches!(&entries[1], CoreEntry::Addr(t) if t.priority == 1));
    match &entries[2] {
        CoreEntry::Domain(d) => {
            assert_eq!(d.name, "core.example.com");
            assert_eq!(d.transport, Transport::Tcp);
            assert_eq!((d.port, d.priority), (None, 2));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.routing.core_targets().len() == 1, "addresses only");
    for bad in [
        "1.2.3.4",
        "core..example.com",
        "-x.example.com",
        "core.example.com:99999",
        "under_score.example.com",
    ] {
        let err = config::from_str::<EdgeConfig>(&format!("[routing]\ncore = [\"{bad}\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("routing.core") && err.contains(bad), "{err}");
    }
}

#[test]
fn example_files_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
    config::from_file::<EdgeConfig>(format!("{dir}edge.toml").as_ref()).unwrap();
    config::from_file::<RelayConfig>(format!("{dir}rtprelay.toml").as_ref()).unwrap();
}

#[test]
fn tcp_guard_keys_have_defaults_and_zero_is_rejected_by_name() {
    let e: EdgeConfig = config::from_str("").unwrap();
    let l = &e.limits;
    assert_eq!(l.max_tcp_connections_per_ip, 64);
    assert_eq!(l.max_tcp_outbound, 1024);
    assert_eq!(l.tcp_message_deadline_s, 10);
    assert_eq!(l.tcp_write_queue_bytes, 1 << 20);
    assert_eq!(l.tcp_write_timeout_s, 10);
    for key in [
        "max_tcp_connections",
        "max_tcp_connections_per_ip",
        "max_tcp_outbound",
        "tcp_idle_timeout_s",
        "tcp_message_deadline_s",
        "tcp_write_timeout_s",
        "tcp_write_queue_bytes",
    ] {
        let err = config::from_str::<EdgeConfig>(&format!("[limits]\n{key} = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("limits.{key}")), "{err}");
    }
}

#[test]
fn source_rate_limits_parse_and_bad_ones_name_the_key() {
    let d: EdgeConfig = config::from_str("").unwrap();
    assert_eq!(
        (
            d.limits.source_rate,
            d.limits.source_burst,
            d.limits.source_block_s,
            d.limits.max_tracked_sources
        ),
        (50, 100, 60, 100_000)
    );
    let c: EdgeConfig = config::from_str(
        "[limits]\nsource_rate = 20\nsource_overrides = [{ network = \"192.0.2.0/24\", rate = 1000 }, { network = \"10.0.0.1/32\", rate = 0, burst = 5 }]\n",
    )
    .unwrap();
    assert_eq!(c.limits.source_overrides.len(), 2);
    assert_eq!(c.limits.source_overrides[0].burst(), 2000);
    for (text, key) in [
        ("[limits]\nsource_burst = 0\n", "limits.source_burst"),
        (
            "[limits]\nsource_block_s = 100000\n",
            "limits.source_block_s",
        ),
        (
            "[limits]\nmax_tracked_sources = 0\n",
            "limits.max_tracked_sources",
        ),
        (
            "[limits]\nsource_overrides = [{ network = \"10.0.0.0/8\", rate = 5, burst = 0 }]\n",
            "limits.source_overrides",
        ),
    ] {
        let err = config::from_str::<EdgeConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{text}: {err}");
    }
    // Off: no burst needed.
    assert!(
        config::from_str::<EdgeConfig>("[limits]\nsource_rate = 0\nsource_burst = 0\n").is_ok()
    );
}

#[test]
fn hep_capture_is_off_by_default_and_bad_keys_are_named() {
    let e: EdgeConfig = config::from_str("").unwrap();
    assert!(!e.hep.enabled);
    let e: EdgeConfig = config::from_str(
        "[hep]\nenabled = true\ncollector = \"192.0.2.9:9060\"\nagent_id = 7\npassword = \"k\"\n",
    )
    .unwrap();
    assert_eq!(e.hep.collector.to_string(), "192.0.2.9:9060");
    assert_eq!((e.hep.agent_id, e.hep.password.as_deref()), (7, Some("k")));
    let err =
        config::from_str::<EdgeConfig>("[hep]\nenabled = true\ncollector = \"0.0.0.0:9060\"\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("hep.collector"), "{err}");
    let err = config::from_str::<EdgeConfig>("[hep]\npassword = \"\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hep.password"), "{err}");
    let err = config::from_str::<EdgeConfig>("[hep]\n\ncolector = \"192.0.2.9:9060\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("colector") && err.contains("line 3"), "{err}");
}
