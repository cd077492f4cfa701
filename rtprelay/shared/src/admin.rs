//! The admin HTTP listener shared by both binaries: `GET /metrics` (Prometheus text format),
//! `GET /health` (liveness: the process answers) and, where the binary gives a readiness check
//! ([`serve_with_ready`], the relay: `rtprelay::admin::relay_readiness`), `GET /ready`:
//! `200 ready`, or `503` with the reason in the body (draining, a shard thread stopped) so a
//! load balancer or orchestrator stops sending new calls while `/health` keeps the process
//! alive. Deliberately tiny (HTTP/1.0 style, one request per connection): it serves a scraper
//! and a health probe, nothing else, so it pulls in no HTTP framework.

use prometheus::{Encoder, Registry, TextEncoder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bind the admin listener; errors here are fatal at startup (address in use, bad address).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// An answer of an operator API hooked into the listener: status line (`200 OK`), body (JSON).
pub type ApiAnswer = (String, Vec<u8>);

/// A readiness check: `Err(reason)` when the process should get no new work.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Serve until the task is dropped (no `/ready`).
pub async fn serve(listener: TcpListener, registry: Registry) {
    serve_inner(listener, registry, None).await
}

/// [`serve`] with `GET /ready` answered from `ready`.
pub async fn serve_with_ready(listener: TcpListener, registry: Registry, ready: ReadyCheck) {
    serve_inner(listener, registry, Some(ready)).await
}

async fn serve_inner(listener: TcpListener, registry: Registry, ready: Option<ReadyCheck>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(
            stream,
            registry.clone(),
            |_: &str, _: &str| None,
            ready.clone(),
        ));
    }
}

/// [`serve`] on the current thread's `LocalSet`, with an operator API: `api(method, target)`
/// answers the requests it knows (`None`: `/metrics`, `/health` as usual). The API may read
/// and change single-threaded state, hence `spawn_local`.
pub async fn serve_local<F>(listener: TcpListener, registry: Registry, api: F)
where
    F: Fn(&str, &str) -> Option<ApiAnswer> + Clone + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::task::spawn_local(connection(stream, registry.clone(), api.clone(), None));
    }
}

async fn connection<F>(
    mut stream: tokio::net::TcpStream,
    registry: Registry,
    api: F,
    ready: Option<ReadyCheck>,
) where
    F: Fn(&str, &str) -> Option<ApiAnswer>,
{
    let mut buf = [0u8; 2048];
    let mut len = 0;
    // Read the request head (bounded in size and time).
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = buf[..len].split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match api(method, target) {
        Some((status, body)) => (status, "application/json", body),
        None => {
            let (s, c, b) = respond(&buf[..len], &registry, ready.as_deref());
            (s.to_string(), c, b)
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

type ReadyFn = dyn Fn() -> Result<(), String> + Send + Sync;

fn respond(
    request: &[u8],
    registry: &Registry,
    ready: Option<&ReadyFn>,
) -> (&'static str, &'static str, Vec<u8>) {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    if method != b"GET" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n".to_vec(),
        );
    }
    match path {
        b"/metrics" => {
            let encoder = TextEncoder::new();
            let mut out = Vec::with_capacity(8192);
            if encoder.encode(&registry.gather(), &mut out).is_err() {
                return (
                    "500 Internal Server Error",
                    "text/plain",
                    b"encode\n".to_vec(),
                );
            }
            ("200 OK", "text/plain; version=0.0.4", out)
        }
        b"/health" => ("200 OK", "text/plain", b"ok\n".to_vec()),
        b"/ready" if ready.is_some() => match ready.map(|f| f()) {
            Some(Err(reason)) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {reason}\n").into_bytes(),
            ),
            _ => ("200 OK", "text/plain", b"ready\n".to_vec()),
        },
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = Registry::new();
        let c = prometheus::IntCounter::new("x_total", "x").unwrap();
        r.register(Box::new(c.clone())).unwrap();
        c.inc();
        let (s, _, body) = respond(b"GET /metrics HTTP/1.1\r\n\r\n", &r, None);
        assert_eq!(s, "200 OK");
        assert!(String::from_utf8(body).unwrap().contains("x_total 1"));
        assert_eq!(
            respond(b"GET /health HTTP/1.0\r\n\r\n", &r, None).0,
            "200 OK"
        );
        assert_eq!(
            respond(b"GET /nope HTTP/1.0\r\n\r\n", &r, None).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.0\r\n\r\n", &r, None).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond(b"", &r, None).0, "405 Method Not Allowed");
        // Without a readiness check (the edge) there is no /ready.
        assert_eq!(
            respond(b"GET /ready HTTP/1.0\r\n\r\n", &r, None).0,
            "404 Not Found"
        );
    }

    #[test]
    fn ready_reports_the_reason() {
        let r = Registry::new();
        let req = b"GET /ready HTTP/1.1\r\n\r\n";
        let ok = || Ok(());
        assert_eq!(
            respond(req, &r, Some(&ok)),
            ("200 OK", "text/plain", b"ready\n".to_vec())
        );
        let draining = || Err("draining: new calls refused".to_string());
        let (s, _, body) = respond(req, &r, Some(&draining));
        assert_eq!(s, "503 Service Unavailable");
        assert_eq!(body, b"not ready: draining: new calls refused\n");
        // Liveness is not readiness: /health stays 200 while not ready.
        assert_eq!(
            respond(b"GET /health HTTP/1.0\r\n\r\n", &r, Some(&draining)).0,
            "200 OK"
        );
    }
}
