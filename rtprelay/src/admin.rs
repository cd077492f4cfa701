//! The admin HTTP listener shared by both binaries: `GET /metrics` (Prometheus text format) and
//! `GET /health`. Deliberately tiny (HTTP/1.0 style, one request per connection): it serves a
//! scraper and a health probe, nothing else, so it pulls in no HTTP framework.

use prometheus::{Encoder, Registry, TextEncoder};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bind the admin listener; errors here are fatal at startup (address in use, bad address).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// An answer of an operator API hooked into the listener: status line (`200 OK`), body (JSON).
pub type ApiAnswer = (String, Vec<u8>);

/// Serve until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Registry) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(stream, registry.clone(), |_: &str, _: &str| {
            None
        }));
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
        tokio::task::spawn_local(connection(stream, registry.clone(), api.clone()));
    }
}

async fn connection<F>(mut stream: tokio::net::TcpStream, registry: Registry, api: F)
where
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
            let (s, c, b) = respond(&buf[..len], &registry);
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

fn respond(request: &[u8], registry: &Registry) -> (&'static str, &'static str, Vec<u8>) {
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
        let (s, _, body) = respond(b"GET /metrics HTTP/1.1\r\n\r\n", &r);
        assert_eq!(s, "200 OK");
        assert!(String::from_utf8(body).unwrap().contains("x_total 1"));
        assert_eq!(respond(b"GET /health HTTP/1.0\r\n\r\n", &r).0, "200 OK");
        assert_eq!(
            respond(b"GET /nope HTTP/1.0\r\n\r\n", &r).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.0\r\n\r\n", &r).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond(b"", &r).0, "405 Method Not Allowed");
    }
}
