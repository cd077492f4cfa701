//! The operator CLI (issue 10): `edgectl` against a running edge holding 10,000 bindings made by
//! SIPp REGISTERs through it. Every verb is run and its output printed (for the closing note);
//! `registrations` over all 10,000 must answer within a second.

use e2e::edge::{start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::ports::{free_port, CORE_IP};
use e2e::sipp::{failure_report, register_through};
use e2e::tools::{edge_tools_or_skip, workspace_bin};
use e2e::workdir::WorkDir;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BINDINGS: u32 = 10_000;

fn ctl(bin: &Path, admin: SocketAddr, args: &[&str]) -> (i32, String, Duration) {
    let t0 = Instant::now();
    let out = Command::new(bin)
        .arg("--admin")
        .arg(admin.to_string())
        .args(args)
        .output()
        .expect("run edgectl");
    let took = t0.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text, took)
}

fn show(args: &[&str], text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let shown = if lines.len() > 8 {
        format!(
            "{}\n  ...\n{}",
            lines[..4].join("\n"),
            lines[lines.len() - 2..].join("\n")
        )
    } else {
        lines.join("\n")
    };
    eprintln!("$ edgectl {}\n{shown}\n", args.join(" "));
}

#[test]
fn edgectl_verbs_on_10000_bindings() {
    let test = "edgectl_verbs_on_10000_bindings";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let Some(ctl_bin) = workspace_bin("edgectl") else {
        e2e::skip::skip(
            test,
            "edgectl binary not found (run `cargo build --workspace --bins`)",
        );
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let core = SocketAddr::from((CORE_IP, free_port()));
    // All 10,000 phones register from one address: above the per-source binding limit (1,000)
    // and the rate limit, both lifted here.
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        "[registrar]\nmax_bindings_per_source = 20000\n\n[limits]\nsource_rate = 0\n",
    )
    .expect("config");
    let cfg = cfg.display().to_string();
    // A relay that does not answer: `relays` shows it (down once its health ping failed).
    let relay = SocketAddr::from((CORE_IP, free_port())).to_string();
    let args = EdgeArgs::udp_core(core).extra(&[
        "--config",
        &cfg,
        "--media-mode",
        "always",
        "--relay",
        &relay,
    ]);
    let mut edge = start_or_panic(&tools.edge, &dir, &args);
    let admin = edge.admin_addr();
    let outcomes = register_through(&tools.sipp, &dir, edge.sip_addr(), core, BINDINGS, 2000);
    if let Some(msg) = failure_report(test, &outcomes) {
        panic!("{msg}{}", edge.report());
    }
    let run = |args: &[&str]| {
        let (code, text, took) = ctl(&ctl_bin, admin, args);
        show(args, &text);
        (code, text, took)
    };
    let (code, text, _) = run(&["status"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("bindings               {BINDINGS}")),
        "{text}"
    );
    let (code, text, took) = run(&["registrations"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("({BINDINGS} rows)")), "{text}");
    assert!(
        took < Duration::from_secs(1),
        "{test}: registrations took {took:?}"
    );
    eprintln!("registrations of {BINDINGS} bindings: {took:?}\n");
    let aor = format!("sip:e2e7@{}", edge.sip_addr().ip());
    let (code, text, _) = run(&["--json", "registrations", "--aor", &aor]);
    assert_eq!(code, 0, "{text}");
    let rows: serde_json::Value = serde_json::from_str(&text).expect("json");
    let contact = rows[0]["contact"]
        .as_str()
        .expect("one binding")
        .to_string();
    let (code, text, _) = run(&["remove", &aor, &contact]);
    assert_eq!(code, 0, "{text}");
    let (code, text, _) = run(&["remove", &aor, &contact]);
    assert_eq!(code, 1, "removing twice: {text}");
    let (_, text, _) = run(&["status"]);
    assert!(
        text.contains(&format!("bindings               {}", BINDINGS - 1)),
        "{text}"
    );
    let (code, text, _) = run(&["cores"]);
    assert!(
        code == 0 && text.contains(&core.to_string()) && text.contains("up"),
        "{text}"
    );
    let (code, text, _) = run(&["relays"]);
    assert!(
        code == 0 && text.contains(&relay) && text.contains("(1 rows)"),
        "{text}"
    );
    let (code, text, _) = run(&["relay-disable", &relay]);
    assert_eq!(code, 0, "{text}");
    std::thread::sleep(Duration::from_millis(100));
    let (_, text, _) = run(&["relays"]);
    assert!(text.contains("disabled"), "{text}");
    let (code, text, _) = run(&["relay-enable", &relay]);
    assert_eq!(code, 0, "{text}");
    let (code, text, _) = run(&["disable", &core.to_string()]);
    assert_eq!(code, 0, "{text}");
    let (_, text, _) = run(&["cores"]);
    assert!(text.contains("disabled"), "{text}");
    let (code, text, _) = run(&["enable", &core.to_string()]);
    assert_eq!(code, 0, "{text}");
    let (code, text, _) = run(&["log-level", "warning"]);
    assert_eq!(code, 0, "{text}");
    let (code, text, _) = run(&["log-level", "loud"]);
    assert_eq!(code, 1, "{text}");
    let (code, text, _) = run(&["drain"]);
    assert_eq!(code, 0, "{text}");
    let status = edge.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{test}: drain did not end the edge\n{}",
        edge.report()
    );
    eprintln!("{test}: PASS every verb; registrations of {BINDINGS} in under 1 s; drain ended the edge with exit 0");
}
