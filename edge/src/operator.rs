//! The shell side of the operator API ([`crate::admin_api`]): runs an [`Op`] against the
//! running edge and answers JSON. Served on the admin listener's thread, which is the edge's
//! own (single-threaded) runtime: the views are consistent snapshots without locks.

use crate::admin_api::{self, Core, Op, Refusal, Registration, Relay, Status};
use crate::server::Edge;
use sbc_shared::admin::ApiAnswer;
use std::time::Instant;

/// Changes the log level (the logging setup's reload hook).
pub type SetLevel<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// Answer `method target` if it is an API request.
pub fn answer(
    edge: &Edge,
    method: &str,
    target: &str,
    set_level: Option<SetLevel<'_>>,
    main_loop: &tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> Option<ApiAnswer> {
    if target == "/metrics" {
        // Gauges that cost a walk of the location table are computed per scrape (every
        // 15 s or so), not per REGISTER; the listener then encodes the registry as usual.
        edge.refresh_scrape_gauges();
        return None;
    }
    if target == "/ready" && method == "GET" {
        return Some(match edge.readiness(Instant::now()).check() {
            Ok(()) => ("200 OK".to_string(), b"ready\n".to_vec()),
            Err(why) => (
                "503 Service Unavailable".to_string(),
                format!("not ready: {why}\n").into_bytes(),
            ),
        });
    }
    let op = match admin_api::parse(method, target)? {
        Ok(op) => op,
        Err(r) => return Some(refusal(r)),
    };
    let now = Instant::now();
    let ok = |v: serde_json::Value| Some(("200 OK".to_string(), json(&v)));
    match op {
        Op::Status => {
            let p = edge.proxy_ref();
            let loc = p.registrar().location();
            let (pending, calls) = p.in_progress();
            let s = Status {
                transactions: p.transactions(),
                pending_transactions: pending,
                calls,
                bindings: loc.len(),
                aors: loc.aor_count(),
                draining: p.draining(),
            };
            ok(serde_json::to_value(s).unwrap_or_default())
        }
        Op::Registrations { aor } => {
            let p = edge.proxy_ref();
            let reg = p.registrar();
            let loc = reg.location();
            let mut bindings = match &aor {
                Some(a) => loc.get(a),
                None => loc.all(),
            };
            bindings.sort_by(|a, b| (&a.aor, &a.contact).cmp(&(&b.aor, &b.contact)));
            let rows: Vec<Registration> = bindings
                .iter()
                .map(|b| Registration {
                    aor: b.aor.clone(),
                    contact: b.contact.clone(),
                    received: b.source.to_string(),
                    transport: format!("{:?}", b.transport).to_ascii_lowercase(),
                    expires_in_s: b.remaining(now),
                    mode: format!(
                        "{:?}",
                        edge.registrar_mode(crate::registrar::contact::aor_domain(&b.aor))
                    )
                    .to_ascii_lowercase(),
                    nated: b.nated,
                    user_agent: b.user_agent.clone(),
                })
                .collect();
            ok(serde_json::to_value(rows).unwrap_or_default())
        }
        Op::RemoveBinding { aor, contact } => {
            if edge.proxy_mut().remove_binding(&aor, &contact, now) {
                ok(serde_json::json!({ "removed": 1 }))
            } else {
                Some(refusal(Refusal(
                    404,
                    format!("no binding {contact} of {aor}"),
                )))
            }
        }
        Op::Cores => {
            let rows: Vec<Core> = edge
                .proxy_ref()
                .core_states(now)
                .into_iter()
                .map(|c| Core {
                    addr: c.dest.addr.to_string(),
                    transport: format!("{:?}", c.dest.transport).to_ascii_lowercase(),
                    state: c.state.to_string(),
                    changed_s_ago: c.since.map(|t| now.saturating_duration_since(t).as_secs()),
                })
                .collect();
            ok(serde_json::to_value(rows).unwrap_or_default())
        }
        Op::Relays => {
            let rows: Vec<Relay> = edge
                .relay_states()
                .into_iter()
                .map(|r| Relay {
                    addr: r.addr.to_string(),
                    weight: r.weight,
                    state: if r.disabled {
                        "disabled"
                    } else if r.up {
                        "up"
                    } else {
                        "down"
                    }
                    .to_string(),
                    changed_s_ago: r
                        .changed
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                })
                .collect();
            ok(serde_json::to_value(rows).unwrap_or_default())
        }
        Op::SetCore { addr, enabled } => {
            if edge.proxy_mut().set_core_enabled(addr, enabled, now) {
                ok(serde_json::json!({ "addr": addr.to_string(), "enabled": enabled }))
            } else {
                Some(refusal(Refusal(404, format!("no core target {addr}"))))
            }
        }
        Op::SetRelay { addr, enabled } => {
            if edge.set_relay_enabled(addr, enabled) {
                ok(serde_json::json!({ "addr": addr.to_string(), "enabled": enabled }))
            } else {
                Some(refusal(Refusal(404, format!("no relay {addr}"))))
            }
        }
        Op::Drain => {
            let _ = main_loop.send("drain (operator)");
            ok(serde_json::json!({ "draining": true }))
        }
        Op::LogLevel { level } => match set_level.map(|f| f(&level)) {
            Some(Ok(())) => {
                tracing::info!(level, "log level set by the operator");
                ok(serde_json::json!({ "level": level }))
            }
            Some(Err(e)) => Some(refusal(Refusal(400, e))),
            None => Some(refusal(Refusal(503, "no log control".into()))),
        },
    }
}

fn json(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

fn refusal(Refusal(code, why): Refusal) -> ApiAnswer {
    let status = match code {
        400 => "400 Bad Request",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        _ => "503 Service Unavailable",
    };
    (
        status.to_string(),
        json(&serde_json::json!({ "error": why })),
    )
}
