//! `rtprelayctl`: the operator's view of a running rtprelay over its control socket (what
//! `rtpengine-ctl list sessions` / `list totals` give): the relay's sessions with their
//! counters (`I`), relay-wide totals (`Gv`), the protocol version (`V`).

use clap::{Parser, Subcommand};
use rtprelay::control::proto::{framing, Command, Reply};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Inspect a running rtprelay over its control socket")]
struct Cli {
    /// The relay's control address (`control.udp`); the source must be in `control.allow`.
    #[arg(long, default_value = "127.0.0.1:22222")]
    control: SocketAddr,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Totals, then one line per stream: Call-ID, stream, tags, ports, latched addresses,
    /// packets in/in/relayed/dropped, seconds before the media timeout (at most 100 streams).
    Sessions,
    /// Relay-wide counters (sessions created/destroyed/timed out/active, packets).
    Totals,
    /// The protocol version the relay answers.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.cmd {
        Cmd::Sessions => "I",
        Cmd::Totals => "Gv",
        Cmd::Version => "V",
    };
    match ask(cli.control, command) {
        Ok(text) => {
            let text = match cli.cmd {
                // `Gv` answers `name=value` pairs on one line.
                Cmd::Totals => text.split_whitespace().collect::<Vec<_>>().join("\n"),
                _ => text,
            };
            println!("{}", text.trim());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtprelayctl: {}: {e}", cli.control);
            ExitCode::from(1)
        }
    }
}

/// One command with a cookie; the reply's text (an `E<n>` reply is an error).
fn ask(control: SocketAddr, command: &str) -> Result<String, String> {
    // Parse our own command first: a typo is not sent.
    Command::parse(command.as_bytes()).map_err(|e| e.to_string())?;
    let sock = UdpSocket::bind(if control.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })
    .map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let cookie = format!("ctl{}", std::process::id());
    sock.send_to(format!("{cookie} {command}").as_bytes(), control)
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_536];
    let n = sock
        .recv(&mut buf)
        .map_err(|e| format!("no answer ({e}); is this source in control.allow?"))?;
    let (got, body) = framing::split_cookie(&buf[..n]).map_err(|e| e.to_string())?;
    if got != cookie.as_bytes() {
        return Err("answer to another command".into());
    }
    let reply = Reply::parse(body).map_err(|e| e.to_string())?;
    if let Some(code) = reply.error() {
        return Err(format!("the relay answered {code}"));
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}
