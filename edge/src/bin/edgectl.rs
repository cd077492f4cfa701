//! `edgectl`: the operator's view of a running edge over its admin listener (like `kamcmd
//! ul.dump`, `tm.stats`, `dispatcher.list`). Human tables by default, `--json` for scripts.
//! Reads are GET; changes (remove, enable/disable, drain, log level) are POST.

use clap::{Parser, Subcommand};
use edge::admin_api::encode;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Inspect and steer a running edge over its admin listener"
)]
struct Cli {
    /// The edge's admin listener (`admin.listen`).
    #[arg(long, default_value = "127.0.0.1:9560")]
    admin: SocketAddr,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Transactions, calls, bindings, draining.
    Status,
    /// Registered contacts (all, or one AoR's).
    Registrations {
        #[arg(long)]
        aor: Option<String>,
    },
    /// Remove one binding (the core is updated as its registrar mode requires).
    Remove { aor: String, contact: String },
    /// Core targets: state and last change.
    Cores,
    /// RTP relays: weight, state and last change.
    Relays,
    /// Put a core target back into rotation.
    Enable { addr: SocketAddr },
    /// Take a core target out of rotation.
    Disable { addr: SocketAddr },
    /// Put an RTP relay back into rotation for new calls.
    RelayEnable { addr: SocketAddr },
    /// Take an RTP relay out of rotation for new calls (its calls stay).
    RelayDisable { addr: SocketAddr },
    /// Start a graceful drain (as SIGTERM): new calls get 503, the process exits when done.
    Drain,
    /// Change the log level (`log.level` syntax).
    LogLevel { level: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (method, target) = match &cli.cmd {
        Cmd::Status => ("GET", "/v1/status".to_string()),
        Cmd::Registrations { aor: None } => ("GET", "/v1/registrations".into()),
        Cmd::Registrations { aor: Some(a) } => {
            ("GET", format!("/v1/registrations?aor={}", encode(a)))
        }
        Cmd::Remove { aor, contact } => (
            "POST",
            format!(
                "/v1/registrations/remove?aor={}&contact={}",
                encode(aor),
                encode(contact)
            ),
        ),
        Cmd::Cores => ("GET", "/v1/cores".into()),
        Cmd::Relays => ("GET", "/v1/relays".into()),
        Cmd::Enable { addr } => ("POST", format!("/v1/cores/enable?addr={addr}")),
        Cmd::Disable { addr } => ("POST", format!("/v1/cores/disable?addr={addr}")),
        Cmd::RelayEnable { addr } => ("POST", format!("/v1/relays/enable?addr={addr}")),
        Cmd::RelayDisable { addr } => ("POST", format!("/v1/relays/disable?addr={addr}")),
        Cmd::Drain => ("POST", "/v1/drain".into()),
        Cmd::LogLevel { level } => ("POST", format!("/v1/log?level={}", encode(level))),
    };
    let (status, body) = match request(cli.admin, method, &target) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgectl: {}: {e}", cli.admin);
            return ExitCode::from(2);
        }
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != 200 {
        let why = value["error"].as_str().unwrap_or("(no reason)");
        eprintln!("edgectl: {status}: {why}");
        return ExitCode::from(1);
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match &cli.cmd {
        Cmd::Registrations { .. } => table(
            &value,
            &[
                ("AOR", "aor"),
                ("CONTACT", "contact"),
                ("RECEIVED", "received"),
                ("TRANSPORT", "transport"),
                ("EXPIRES", "expires_in_s"),
                ("MODE", "mode"),
                ("NAT", "nated"),
            ],
        ),
        Cmd::Cores => table(
            &value,
            &[
                ("CORE", "addr"),
                ("TRANSPORT", "transport"),
                ("STATE", "state"),
                ("CHANGED_S_AGO", "changed_s_ago"),
            ],
        ),
        Cmd::Relays => table(
            &value,
            &[
                ("RELAY", "addr"),
                ("WEIGHT", "weight"),
                ("STATE", "state"),
                ("CHANGED_S_AGO", "changed_s_ago"),
            ],
        ),
        _ => {
            if let Some(o) = value.as_object() {
                for (k, v) in o {
                    println!("{k:<22} {}", cell(v));
                }
            }
        }
    }
    ExitCode::SUCCESS
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Rows of `value` (an array of objects) as aligned columns.
fn table(value: &Value, cols: &[(&str, &str)]) {
    let rows: Vec<Vec<String>> = value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| cols.iter().map(|(_, k)| cell(&r[*k])).collect())
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let l: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(l.join("  ").trim_end());
        out.push('\n');
    };
    line(cols.iter().map(|(h, _)| *h).collect(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out.push_str(&format!("({} rows)\n", rows.len()));
    let _ = std::io::stdout().write_all(out.as_bytes());
}

/// One HTTP/1.0 request; the status code and body.
fn request(admin: SocketAddr, method: &str, target: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s =
        TcpStream::connect_timeout(&admin, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {target} HTTP/1.0\r\nHost: {admin}\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP answer")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no HTTP status")?;
    Ok((code, buf[split + 4..].to_vec()))
}
