//! The metrics listener: [`crate::metrics`] served at `/metrics` on their own listener — TLS 1.3
//! with client certificates like every listener; the scraper's certificate needs the `metrics`
//! or `auditor` role.

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::auth::Principals;
use crate::config::Role;

/// Largest request head read from a scraper.
const MAX_HEAD: usize = 8 * 1024;

/// Serves `/metrics` over TLS with client certificates until the process ends.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<crate::tls::LiveTls>,
    principals: Arc<Principals>,
    engine: Arc<crate::engine::Engine>,
) {
    // The same limits as the gRPC listener: per peer and in all, each connection for a bounded
    // time; accept errors back off instead of spinning.
    let gate = crate::tls::Gate::new();
    loop {
        let (tcp, peer) = crate::tls::accept(&listener).await;
        let Some(ticket) = gate.admit(peer.ip()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, principals, engine) =
            (tls.http1(), Arc::clone(&principals), Arc::clone(&engine));
        tokio::spawn(async move {
            let evicted = Arc::clone(&ticket.evicted);
            let mut ticket = Some(ticket);
            let work = async {
                let mut stream = acceptor.accept(tcp).await.ok()?;
                // Authenticated by TLS: the handshake slot is free from here.
                drop(ticket.take());
                let role_ok = {
                    let (_, conn) = stream.get_ref();
                    let certs = conn.peer_certificates()?;
                    let p = principals.by_certificates(certs)?;
                    p.roles.contains(&Role::Metrics) || p.roles.contains(&Role::Auditor)
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.ok()?;
                    if n == 0 || head.len() + n > MAX_HEAD {
                        return None;
                    }
                    head.extend_from_slice(buf.get(..n)?);
                }
                let (code, body) = if !role_ok {
                    (
                        "403 Forbidden",
                        "the metrics or auditor role is required\n".to_string(),
                    )
                } else if head.starts_with(b"GET /metrics ") {
                    let store = Arc::clone(engine.store());
                    let snapshot = tokio::task::spawn_blocking(move || {
                        Some((
                            store.count_by_state().ok()?,
                            store.freeze_state().ok()?.frozen,
                        ))
                    })
                    .await
                    .ok()
                    .flatten();
                    match snapshot {
                        Some((states, frozen)) => {
                            let mut text = engine.metrics.render(&states, frozen);
                            if let Some(w) = engine.witnessing() {
                                text.push_str(&w.render(engine.store().log_size()));
                            }
                            ("200 OK", text)
                        }
                        None => ("503 Service Unavailable", "store unavailable\n".into()),
                    }
                } else {
                    ("404 Not Found", "try GET /metrics\n".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {code}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.ok()?;
                stream.shutdown().await.ok()
            };
            // Evicted only while still handshaking (a freed slot is no longer in the gate).
            tokio::select! {
                () = evicted.notified() => {}
                _ = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, work) => {}
            }
        });
    }
}

/// Serves `GET /healthz` in plain HTTP without a client certificate, for a load balancer:
/// `200 ok` when the store answers within 2 s and no witness conflict stopped signing,
/// `503 unavailable` otherwise. It says nothing else: no version, no state, no reason (those
/// are on the authenticated metrics listener and in the log).
pub(crate) async fn serve_health(
    listener: tokio::net::TcpListener,
    engine: Arc<crate::engine::Engine>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        let (mut tcp, _) = crate::tls::accept(&listener).await;
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let engine = Arc::clone(&engine);
        tokio::spawn(async move {
            let work = async {
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tcp.read(&mut buf).await.ok()?;
                    if n == 0 || head.len() + n > MAX_HEAD {
                        return None;
                    }
                    head.extend_from_slice(buf.get(..n)?);
                }
                let (code, body) = if head.starts_with(b"GET /healthz ") {
                    let store = Arc::clone(engine.store());
                    let probe = tokio::task::spawn_blocking(move || store.freeze_state().is_ok());
                    let store_ok = matches!(
                        tokio::time::timeout(std::time::Duration::from_secs(2), probe).await,
                        Ok(Ok(true))
                    );
                    let conflict = engine.witnessing().is_some_and(|w| w.conflict().is_some());
                    if store_ok && !conflict {
                        ("200 OK", "ok\n")
                    } else {
                        ("503 Service Unavailable", "unavailable\n")
                    }
                } else {
                    ("404 Not Found", "not found\n")
                };
                let response = format!(
                    "HTTP/1.1 {code}\r\ncontent-type: text/plain\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                tcp.write_all(response.as_bytes()).await.ok()?;
                tcp.shutdown().await.ok()
            };
            let _ = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, work).await;
            drop(permit);
        });
    }
}
