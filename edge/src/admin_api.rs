//! The operator API on the admin listener (`edgectl` is its client), sans-IO: a request line
//! becomes an [`Op`], the shell runs it and answers JSON built from the views here. Reads are
//! `GET`; anything that changes the node is `POST` only, so a stray browser or scraper cannot.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/status` | transactions, calls, bindings, draining |
//! | GET | `/v1/registrations[?aor=AOR]` | bindings (AoR, contact, received flow, expiry, mode) |
//! | POST | `/v1/registrations/remove?aor=AOR&contact=URI` | remove one binding |
//! | GET | `/v1/cores` | core targets, state and last change |
//! | GET | `/v1/relays` | RTP relays, weight, state and last change |
//! | POST | `/v1/relays/enable?addr=IP:PORT`, `/v1/relays/disable?addr=...` | a relay out of rotation for new calls / back |
//! | POST | `/v1/cores/enable?addr=IP:PORT`, `/v1/cores/disable?addr=...` | take a core out of rotation / back |
//! | POST | `/v1/drain` | start a graceful drain (as SIGTERM) |
//! | POST | `/v1/log?level=LEVEL` | change the log level |
//!
//! Query values are percent-encoded (RFC 3986 §2.1).

use serde::Serialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Status,
    Registrations { aor: Option<String> },
    RemoveBinding { aor: String, contact: String },
    Cores,
    Relays,
    SetCore { addr: SocketAddr, enabled: bool },
    SetRelay { addr: SocketAddr, enabled: bool },
    Drain,
    LogLevel { level: String },
}

/// An answer that is not 200: status code and reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub u16, pub String);

/// The [`Op`] of `METHOD TARGET`, or `None` when the path is not under `/v1/` (the admin
/// listener then serves `/metrics` and `/health` as before).
pub fn parse(method: &str, target: &str) -> Option<Result<Op, Refusal>> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path.strip_prefix("/v1/")?;
    let params = query_pairs(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let need = |k: &str| get(k).ok_or_else(|| Refusal(400, format!("missing `{k}`")));
    let post = method == "POST";
    let op = match (rest, method) {
        ("status", "GET") => Ok(Op::Status),
        ("registrations", "GET") => Ok(Op::Registrations { aor: get("aor") }),
        ("registrations/remove", _) if post => need("aor").and_then(|aor| {
            Ok(Op::RemoveBinding {
                aor,
                contact: need("contact")?,
            })
        }),
        ("cores", "GET") => Ok(Op::Cores),
        ("relays", "GET") => Ok(Op::Relays),
        ("cores/enable" | "cores/disable", _) if post => need("addr").and_then(|a| {
            let addr = a
                .parse()
                .map_err(|_| Refusal(400, format!("`addr` is not ip:port: {a}")))?;
            Ok(Op::SetCore {
                addr,
                enabled: rest == "cores/enable",
            })
        }),
        ("relays/enable" | "relays/disable", _) if post => need("addr").and_then(|a| {
            let addr = a
                .parse()
                .map_err(|_| Refusal(400, format!("`addr` is not ip:port: {a}")))?;
            Ok(Op::SetRelay {
                addr,
                enabled: rest == "relays/enable",
            })
        }),
        ("drain", _) if post => Ok(Op::Drain),
        ("log", _) if post => need("level").map(|level| Op::LogLevel { level }),
        (
            "status"
            | "registrations"
            | "cores"
            | "registrations/remove"
            | "cores/enable"
            | "cores/disable"
            | "drain"
            | "log",
            _,
        ) => Err(Refusal(405, format!("{method} not allowed on {path}"))),
        _ => Err(Refusal(404, format!("no such resource: {path}"))),
    };
    Some(op)
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding (`+` is a space, as in forms); invalid escapes are kept as they are.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding of a query value (everything but unreserved characters, RFC 3986 §2.3).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// What `GET /ready` (readiness, apart from `/health`, liveness) looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub draining: bool,
    pub cores: usize,
    pub cores_up: usize,
    /// Media anchoring is on (`media.mode` not `never`): a relay is needed.
    pub anchoring: bool,
    pub relays_up: usize,
    /// The last location-store write failed with this error.
    pub store_error: Option<String>,
}

impl Readiness {
    /// `Ok` when the node can take traffic; else every reason it cannot, `; `-separated. A
    /// load balancer or orchestrator takes a not-ready node out of rotation; the process is
    /// alive and recovers by itself (a core or relay comes back, the disk frees up).
    pub fn check(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if self.draining {
            why.push("draining".to_owned());
        }
        if self.cores_up == 0 {
            why.push(format!("no core up ({} configured)", self.cores));
        }
        if self.anchoring && self.relays_up == 0 {
            why.push("no relay up".to_owned());
        }
        if let Some(e) = &self.store_error {
            why.push(format!("location store not writable: {e}"));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub transactions: usize,
    pub pending_transactions: usize,
    pub calls: usize,
    pub bindings: usize,
    pub aors: usize,
    pub draining: bool,
}

#[derive(Debug, Serialize)]
pub struct Registration {
    pub aor: String,
    pub contact: String,
    /// Where the REGISTER came from (the NAT's public side), and over what.
    pub received: String,
    pub transport: String,
    pub expires_in_s: u32,
    pub mode: String,
    pub nated: bool,
    pub user_agent: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Core {
    pub addr: String,
    pub transport: String,
    pub state: String,
    /// Seconds since the last state change (`None`: unchanged since start).
    pub changed_s_ago: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Relay {
    pub addr: String,
    pub weight: i64,
    pub state: String,
    pub changed_s_ago: Option<u64>,
}

#[cfg(test)]
mod tests {

    #[test]
    fn ready_only_with_a_core_a_relay_and_a_writable_store() {
        let ok = Readiness {
            draining: false,
            cores: 2,
            cores_up: 1,
            anchoring: true,
            relays_up: 1,
            store_error: None,
        };
        assert_eq!(ok.check(), Ok(()));
        let none = Readiness {
            cores_up: 0,
            relays_up: 0,
            store_error: Some("No space left on device".into()),
            ..ok.clone()
        };
        assert_eq!(
            none.check(),
            Err("no core up (2 configured); no relay up; location store not writable: No space left on device".into())
        );
        let no_media = Readiness {
            anchoring: false,
            relays_up: 0,
            ..ok.clone()
        };
        assert_eq!(
            no_media.check(),
            Ok(()),
            "no relay needed without anchoring"
        );
        let draining = Readiness {
            draining: true,
            ..ok
        };
        assert_eq!(draining.check(), Err("draining".into()));
    }
    use super::*;

    #[test]
    fn reads_are_get_changes_are_post_only() {
        assert_eq!(parse("GET", "/v1/status"), Some(Ok(Op::Status)));
        assert_eq!(
            parse("GET", "/v1/registrations?aor=sip%3Aalice%40example.com"),
            Some(Ok(Op::Registrations {
                aor: Some("sip:alice@example.com".into())
            }))
        );
        assert_eq!(
            parse("POST", "/v1/cores/disable?addr=10.0.0.5:5060"),
            Some(Ok(Op::SetCore {
                addr: "10.0.0.5:5060".parse().unwrap(),
                enabled: false
            }))
        );
        assert!(matches!(
            parse("GET", "/v1/drain"),
            Some(Err(Refusal(405, _)))
        ));
        assert!(matches!(
            parse("GET", "/v1/cores/enable?addr=1.2.3.4:5"),
            Some(Err(Refusal(405, _)))
        ));
        assert!(matches!(
            parse("POST", "/v1/log"),
            Some(Err(Refusal(400, _)))
        ));
        assert!(matches!(
            parse("POST", "/v1/cores/enable?addr=x"),
            Some(Err(Refusal(400, _)))
        ));
        assert!(matches!(
            parse("GET", "/v1/nope"),
            Some(Err(Refusal(404, _)))
        ));
        assert_eq!(parse("GET", "/metrics"), None);
    }

    #[test]
    fn query_values_round_trip_through_percent_encoding() {
        let contact = "sip:bob@192.0.2.10:40000;transport=udp;ob";
        assert_eq!(decode(&encode(contact)), contact);
        assert_eq!(decode("a+b%2"), "a b%2");
        assert_eq!(
            parse(
                "POST",
                &format!(
                    "/v1/registrations/remove?aor={}&contact={}",
                    encode("sip:bob@x"),
                    encode(contact)
                )
            ),
            Some(Ok(Op::RemoveBinding {
                aor: "sip:bob@x".into(),
                contact: contact.into()
            }))
        );
    }
}
