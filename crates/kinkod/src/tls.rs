//! The listener: TLS 1.3 only, client certificates required and verified against the configured
//! CA. The principal is the client certificate's subject common name, mapped to roles in the
//! config.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// How long a client may take to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: the TLS private key is readable by other users (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the rustls server configuration: TLS 1.3, ring, client certificates required.
pub(crate) fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&cfg.client_ca)? {
        roots.add(ca).map_err(|e| format!("client CA: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&cfg.cert)?, read_key(&cfg.key)?)
        .map_err(|e| format!("server certificate: {e}"))?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(server))
}

/// TLS handshakes allowed in flight at once, in all.
const MAX_HANDSHAKES: usize = 1024;
/// TLS handshakes allowed in flight at once from one IP address: one host (or one attacker)
/// holding half-open connections never takes the slots other clients need to reach kinkod.
const MAX_HANDSHAKES_PER_PEER: usize = 32;

/// Admission of connections that have not authenticated yet: at most [`MAX_HANDSHAKES`] TLS
/// handshakes in flight in all and [`MAX_HANDSHAKES_PER_PEER`] from one address, each for
/// [`HANDSHAKE_TIMEOUT`] at most. Past either limit a new connection is closed at once.
pub(crate) struct Gate {
    global: Arc<tokio::sync::Semaphore>,
    per_peer: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    per_peer_max: usize,
}

/// A handshake slot; freed when dropped.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    ip: std::net::IpAddr,
    _global: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut m) = self.gate.per_peer.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Gate {
    pub(crate) fn new() -> Arc<Gate> {
        Gate::with_limits(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_PEER)
    }

    fn with_limits(global: usize, per_peer: usize) -> Arc<Gate> {
        Arc::new(Gate {
            global: Arc::new(tokio::sync::Semaphore::new(global)),
            per_peer: std::sync::Mutex::new(std::collections::HashMap::new()),
            per_peer_max: per_peer,
        })
    }

    /// A slot for a handshake from `ip`, or `None` (the connection is to be closed).
    pub(crate) fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Ticket> {
        let mut m = self.per_peer.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= self.per_peer_max {
            return None;
        }
        let global = Arc::clone(&self.global).try_acquire_owned().ok()?;
        *n += 1;
        Some(Ticket {
            gate: Arc::clone(self),
            ip,
            _global: global,
        })
    }
}

/// Accepts the next TCP connection. An accept error (out of file descriptors, say) waits a
/// little before the next try instead of spinning.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop, under the
/// [`Gate`]'s limits; failed handshakes (no certificate, wrong CA, TLS 1.2) are logged and
/// dropped.
pub(crate) fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let gate = Gate::new();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = accept(&listener).await;
            if tx.is_closed() {
                break;
            }
            // Small gRPC frames must not wait for the peer's delayed ACK (Nagle): ~40 ms a call.
            let _ = tcp.set_nodelay(true);
            let Some(ticket) = gate.admit(peer.ip()) else {
                tracing::debug!(%peer, "handshake limit reached; connection closed");
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ticket = ticket;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The subject common name of the client's leaf certificate.
pub(crate) fn peer_common_name(certs: &[CertificateDer<'static>]) -> Option<String> {
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// Binds the listener.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listen on {addr}: {e}"))
}

#[cfg(test)]
mod gate_tests {
    use super::Gate;
    use std::net::IpAddr;

    #[test]
    fn one_peer_never_takes_the_slots_of_others() {
        let gate = Gate::with_limits(4, 2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 1].into();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert!(gate.admit(a).is_none(), "a third from one peer");
        let _b1 = gate.admit(b).unwrap();
        let _b2 = gate.admit(b).unwrap();
        assert!(gate.admit([10, 0, 0, 1].into()).is_none(), "global limit");
        drop(a1);
        assert!(gate.admit(a).is_some(), "a freed slot is reusable");
    }
}
