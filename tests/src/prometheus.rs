//! Debian's Prometheus (package `prometheus`: `prometheus` and `promtool`) for the tests of what
//! `deploy/` ships: the alert rules (`promtool test rules`) and the Grafana dashboard's queries
//! against a real server scraping a running edge and rtprelay.
//!
//! [`Prometheus`] runs the server in the foreground on a free loopback port with its TSDB in the
//! test's work dir, stopped by PID when dropped; [`Prometheus::query`] and
//! [`Prometheus::query_range`] call its HTTP API.

use crate::http;
use crate::ports::{free_port, EDGE_IP};
use crate::process::ChildGuard;
use crate::workdir::{tail, WorkDir};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `<workspace>/deploy/<rel>`.
pub fn deploy_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join(rel)
}

/// `promtool`, or `None` after [`crate::skip::skip`] said why.
pub fn promtool_or_skip(test: &str) -> Option<PathBuf> {
    tool_or_skip(test, "promtool")
}

/// The `prometheus` server, or `None` after [`crate::skip::skip`] said why.
pub fn prometheus_or_skip(test: &str) -> Option<PathBuf> {
    tool_or_skip(test, "prometheus")
}

fn tool_or_skip(test: &str, name: &str) -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin").join(name);
    let found = fixed.is_file().then_some(fixed).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        crate::skip::skip(
            test,
            format!("{name} not found (install the Debian package prometheus)"),
        );
    }
    found
}

/// A running Prometheus server.
pub struct Prometheus {
    guard: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// Writes `config` (a prometheus.yml) and each `(name, text)` of `files` (rule files it
    /// names) into `dir`, starts the server on a free loopback port and waits until `/-/ready`.
    pub fn start(
        bin: &Path,
        dir: &WorkDir,
        config: &str,
        files: &[(&str, String)],
    ) -> Result<Prometheus, String> {
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(&conf, config).map_err(|e| format!("write {}: {e}", conf.display()))?;
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::write(&p, text).map_err(|e| format!("write {}: {e}", p.display()))?;
        }
        let addr = SocketAddr::from((EDGE_IP, free_port()));
        let log = dir.path().join("prometheus.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("create log: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("dup log: {e}"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut p = Prometheus {
            guard: ChildGuard::new("prometheus", child),
            addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = p.guard.try_wait() {
                return Err(format!(
                    "prometheus exited at startup ({status})\n{}",
                    p.report()
                ));
            }
            if matches!(http::get(addr, "/-/ready", Duration::from_secs(1)), Ok(r) if r.status == 200)
            {
                return Ok(p);
            }
            if Instant::now() >= deadline {
                return Err(format!("prometheus not ready within 20 s\n{}", p.report()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET /api/v1/<path>?<params>`: the `data` member of a `success` answer, else the error.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let url = format!("/api/v1/{path}?{}", query.join("&"));
        let r = http::get(self.addr, &url, Duration::from_secs(10))?;
        let v: Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("HTTP {}: not JSON ({e}): {}", r.status, r.body))?;
        if v["status"] != "success" {
            return Err(format!(
                "HTTP {} {}: {}",
                r.status, v["errorType"], v["error"]
            ));
        }
        Ok(v["data"].clone())
    }

    /// Instant query: the result vector (or scalar, as a one-element list).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)])?;
        Ok(match &data["result"] {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        })
    }

    /// Range query from `start` to `end` (Unix seconds) every `step` seconds: the matrix.
    pub fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Value>, String> {
        let (start, end, step) = (start.to_string(), end.to_string(), step.to_string());
        let data = self.api(
            "query_range",
            &[
                ("query", expr),
                ("start", &start),
                ("end", &end),
                ("step", &step),
            ],
        )?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until every active target's last scrape succeeded (`health` = `up`) and there are
    /// `n` of them.
    pub fn wait_targets_up(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("never asked");
        while Instant::now() < deadline {
            match self.api("targets", &[("state", "active")]) {
                Ok(data) => {
                    let targets = data["activeTargets"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let up = targets.iter().filter(|t| t["health"] == "up").count();
                    if up == n && targets.len() == n {
                        return Ok(());
                    }
                    last = format!("{targets:?}");
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("targets not all up within {timeout:?}: {last}"))
    }

    /// State and the tail of the server's log, for failure messages.
    pub fn report(&mut self) -> String {
        format!(
            "--- prometheus ({}) on {} ---\n{}\n",
            self.guard.state(),
            self.addr,
            tail(&self.log, 3000)
        )
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::url_encode;

    #[test]
    fn encodes_promql() {
        assert_eq!(
            url_encode(r#"sum by (le) (x{a=~"b.*"}[1m]) / 2"#),
            "sum%20by%20%28le%29%20%28x%7Ba%3D~%22b.%2A%22%7D%5B1m%5D%29%20%2F%202"
        );
    }
}
