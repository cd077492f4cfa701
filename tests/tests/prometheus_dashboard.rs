//! The Grafana dashboard against real data (issue 11): Debian's `prometheus` scrapes a running
//! edge and rtprelay every second with the shipped `deploy/prometheus/scrape.yml` (targets
//! replaced) and `alerts.yml`, while SIPp phones register through the edge and SIPp calls with
//! 5 s of G.711 audio each (echoed by the callee) cross the edge and the relay for about 40 s.
//! Then every expression of every panel of `deploy/grafana/edge-sbc.json`, with its variables
//! substituted, is queried through the HTTP API: the test fails listing each one that errors or
//! returns no data. Every alert rule must also evaluate without error on the real metrics.
//!
//! A fast check without any binary: the dashboard is an importable JSON model (datasource
//! variable on every panel and variable, instance variables, unique panel ids, every panel a
//! query).
//!
//! With `DASHBOARD_RENDER_DIR=DIR` the run also writes `DIR/series.json`: each panel's range
//! series over the run, for `deploy/grafana/render.py`.

use e2e::edge::{assert_calls_ok, start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::ports::{free_port, ACCESS_IP, CORE_IP};
use e2e::prometheus::{deploy_file, prometheus_or_skip, Prometheus};
use e2e::relay::{free_media_range, relay_or_skip, Relay};
use e2e::sipp::{register_through, Scenario, Sipp};
use e2e::tools::{edge_tools_or_skip, rtp_call_scenario};
use e2e::workdir::WorkDir;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The window `$__rate_interval` stands for: four scrape intervals (1 s) plus margin, as
/// Grafana computes it from the data source's scrape interval.
const RATE_INTERVAL: &str = "10s";

fn dashboard() -> Value {
    let path = deploy_file("grafana/edge-sbc.json");
    let text = std::fs::read_to_string(&path).expect("edge-sbc.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel (rows' nested panels too).
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// `(panel title, expr, legendFormat)` of every target of every panel.
fn queries(dash: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or("?").to_string(),
                t["expr"].as_str().unwrap_or("").to_string(),
                t["legendFormat"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

/// The dashboard's variables as Grafana would fill them for this run: the one edge and the one
/// relay of the test (the variables' own queries are checked to list them).
fn substitute(expr: &str, edge: &str, relay: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", "1s")
        .replace("$relay_instance", relay)
        .replace("$instance", edge)
}

#[test]
fn dashboard_is_an_importable_model() {
    let test = "dashboard_is_an_importable_model";
    let dash = dashboard();
    let mut problems = Vec::new();
    let vars = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        other => problems.push(format!("datasource variable: {other:?}")),
    }
    for (name, job) in [("instance", "edge"), ("relay_instance", "rtprelay")] {
        match var(name) {
            Some(v)
                if v["type"] == "query"
                    && v["datasource"]["uid"] == "${datasource}"
                    && v["definition"]
                        == format!("label_values(up{{job=\"{job}\"}}, instance)") => {}
            other => problems.push(format!("{name} variable: {other:?}")),
        }
    }
    let mut ids = std::collections::HashSet::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        if !ids.insert(p["id"].as_u64()) {
            problems.push(format!("{title}: duplicate or missing id {}", p["id"]));
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: datasource {}", p["datasource"]));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title}: no query"));
        }
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            if t["datasource"]["uid"] != "${datasource}" || expr.is_empty() {
                problems.push(format!("{title}: target {t}"));
            }
            // Each query is scoped to the selected instances.
            if !expr.contains("instance=~\"$instance\"")
                && !expr.contains("instance=~\"$relay_instance\"")
            {
                problems.push(format!(
                    "{title}: not filtered by an instance variable: {expr}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{test}:\n{}", problems.join("\n"));
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The shipped scrape config with its two targets replaced by the test's admin addresses and a
/// 1 s scrape and evaluation interval.
fn scrape_config(edge_admin: SocketAddr, relay_admin: SocketAddr) -> String {
    let shipped = std::fs::read_to_string(deploy_file("prometheus/scrape.yml")).expect("scrape");
    for target in ["\"127.0.0.1:9560\"", "\"127.0.0.1:9561\""] {
        assert!(
            shipped.contains(target),
            "scrape.yml no longer names {target}: update this test"
        );
    }
    let replaced = shipped
        .replace("\"127.0.0.1:9560\"", &format!("\"{edge_admin}\""))
        .replace("\"127.0.0.1:9561\"", &format!("\"{relay_admin}\""));
    format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{replaced}")
}

#[test]
fn every_dashboard_query_returns_data_from_a_live_edge_and_relay() {
    let test = "every_dashboard_query_returns_data_from_a_live_edge_and_relay";
    let (Some(tools), Some(relay_bin), Some(prom_bin)) = (
        edge_tools_or_skip(test),
        relay_or_skip(test),
        prometheus_or_skip(test),
    ) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let started = Instant::now();

    // ~20 calls up at once (4/s × 5.5 s), 4 ports each.
    let (lo, hi) = free_media_range(256);
    let ports = format!("{lo}-{hi}");
    let relay = Relay::start(&relay_bin, &dir, &["--ports", &ports])
        .unwrap_or_else(|f| panic!("{test}: relay: {} {}", f.message, f.log));
    // The core: first a SIPp registrar, then (same port) a SIPp UAS echoing the audio.
    let core = SocketAddr::from((CORE_IP, free_port()));
    let relay_ctl = relay.control_addr().to_string();
    let args = EdgeArgs::udp_core(core).extra(&["--media-mode", "always", "--relay", &relay_ctl]);
    let mut edge = start_or_panic(&tools.edge, &dir, &args);

    let config = scrape_config(edge.admin_addr(), relay.admin_addr());
    let alerts = std::fs::read_to_string(deploy_file("prometheus/alerts.yml")).expect("alerts");
    let mut prom = Prometheus::start(&prom_bin, &dir, &config, &[("alerts.yml", alerts)])
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    prom.wait_targets_up(2, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", prom.report()));
    let run_start = now_unix();

    // Registrations: 20 phones through the edge's mid-registrar to the core.
    let outcomes = register_through(&tools.sipp, &dir, edge.sip_addr(), core, 20, 20);
    assert_calls_ok(test, &outcomes, &mut edge);

    // Calls with audio both ways for ~40 s; the queries run while the last ones are up.
    const CALLS: u32 = 160;
    let limit = Duration::from_secs(80);
    let uas = Sipp::new(&tools.sipp, "uas", Scenario::Builtin("uas"))
        .ip(CORE_IP)
        .local_port(core.port())
        .calls(CALLS)
        .timeout(limit)
        .arg("-rtp_echo")
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let uac = Sipp::new(
        &tools.sipp,
        "uac",
        Scenario::File(rtp_call_scenario(dir.path())),
    )
    .ip(ACCESS_IP)
    .remote(edge.sip_addr())
    .calls(CALLS)
    .rate(4)
    .timeout(limit)
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_secs(38));

    let dash = dashboard();
    let (edge_inst, relay_inst) = (
        edge.admin_addr().to_string(),
        relay.admin_addr().to_string(),
    );
    let mut failures = Vec::new();
    // The variables' queries list the test's targets.
    for (job, want) in [("edge", &edge_inst), ("rtprelay", &relay_inst)] {
        let sel = format!("up{{job=\"{job}\"}}");
        match prom.api("label/instance/values", &[("match[]", &sel)]) {
            Ok(v)
                if v.as_array()
                    .is_some_and(|a| a.iter().any(|i| i == want.as_str())) => {}
            other => failures.push(format!(
                "variable query label_values({sel}, instance): {other:?}"
            )),
        }
    }
    let queries = queries(&dash);
    let mut answered = 0;
    for (title, expr, _) in &queries {
        let q = substitute(expr, &edge_inst, &relay_inst);
        match prom.query(&q) {
            Ok(r) if r.is_empty() => failures.push(format!("NO DATA  [{title}] {expr}")),
            Ok(_) => answered += 1,
            Err(e) => failures.push(format!("ERROR    [{title}] {expr}: {e}")),
        }
    }
    // Every alert rule evaluates on the real metrics (health "ok", no error).
    match prom.api("rules", &[("type", "alert")]) {
        Ok(data) => {
            for g in data["groups"].as_array().into_iter().flatten() {
                for r in g["rules"].as_array().into_iter().flatten() {
                    if r["health"] != "ok" && r["health"] != "unknown" {
                        failures.push(format!(
                            "ALERT    {}: {} {}",
                            r["name"], r["health"], r["lastError"]
                        ));
                    }
                }
            }
        }
        Err(e) => failures.push(format!("GET /api/v1/rules: {e}")),
    }
    let run_end = now_unix();
    if let Some(out) = std::env::var_os("DASHBOARD_RENDER_DIR") {
        render_dump(
            &prom,
            &queries,
            (&edge_inst, &relay_inst),
            (run_start, run_end),
            &out,
        );
    }

    let outcomes = vec![uac.wait(), uas.wait()];
    assert_calls_ok(test, &outcomes, &mut edge);
    eprintln!(
        "{test}: {answered} of {} panel queries returned data, run {:.0} s",
        queries.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{test}: {} of {} dashboard queries failed:\n{}\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n"),
        prom.report()
    );
}

/// Writes each panel's range series over the run to `dir/series.json` for render.py.
fn render_dump(
    prom: &Prometheus,
    queries: &[(String, String, String)],
    (edge, relay): (&str, &str),
    (start, end): (f64, f64),
    dir: &std::ffi::OsStr,
) {
    let mut out = Vec::new();
    for (title, expr, legend) in queries {
        let q = substitute(expr, edge, relay);
        let result = prom.query_range(&q, start, end, 1.0).unwrap_or_default();
        out.push(json!({"panel": title, "expr": expr, "legend": legend, "result": result}));
    }
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).expect("render dir");
    let path = dir.join("series.json");
    std::fs::write(&path, serde_json::to_string(&out).expect("json")).expect("write series");
    eprintln!("dashboard series written to {}", path.display());
}
