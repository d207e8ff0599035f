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

/// The listeners' TLS configurations, replaced whole by a reload (SIGHUP): new handshakes use
/// the new certificate, key and client CA; connections already open keep their session.
pub(crate) struct LiveTls {
    /// gRPC (ALPN h2) and HTTP/1.1 (the metrics listener), built from the same files.
    current: std::sync::RwLock<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>,
}

impl LiveTls {
    /// Reads the files.
    pub(crate) fn load(cfg: &TlsConfig) -> Result<LiveTls, String> {
        Ok(LiveTls {
            current: std::sync::RwLock::new(Self::build(cfg)?),
        })
    }

    fn build(
        cfg: &TlsConfig,
    ) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>), String> {
        let grpc = server_config(cfg)?;
        // The same set-up speaking HTTP/1.1: a scraper (Prometheus, curl) offers http/1.1 in
        // ALPN, and the gRPC listener's h2-only list would refuse its handshake.
        let mut http1 = (*grpc).clone();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok((grpc, Arc::new(http1)))
    }

    /// Re-reads the files; on any error the configuration in use stays.
    pub(crate) fn reload(&self, cfg: &TlsConfig) -> Result<(), String> {
        let new = Self::build(cfg)?;
        match self.current.write() {
            Ok(mut c) => *c = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        Ok(())
    }

    fn get(&self) -> (Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>) {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// An acceptor for a new gRPC connection.
    pub(crate) fn grpc(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.get().0)
    }

    /// An acceptor for a new metrics (HTTP/1.1) connection.
    pub(crate) fn http1(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.get().1)
    }
}

/// TLS handshakes allowed in flight at once, in all.
const MAX_HANDSHAKES: usize = 1024;
/// TLS handshakes allowed in flight at once from one IP address.
const MAX_HANDSHAKES_PER_PEER: usize = 32;

/// Admission of connections that have not authenticated yet. At most [`MAX_HANDSHAKES`] TLS
/// handshakes are in flight in all and [`MAX_HANDSHAKES_PER_PEER`] from one address, each for
/// [`HANDSHAKE_TIMEOUT`] at most. A new connection is never turned away for lack of a slot:
/// the oldest handshake in flight from the same address (past the per-address limit) or from
/// anyone (past the global one) is dropped to make room. Half-open connections held by an
/// attacker — from one address, from many, or from the officer's own address behind the same
/// NAT — are always the oldest, so they make way for an officer whose handshake takes
/// milliseconds; authenticated connections hold no slot at all.
pub(crate) struct Gate {
    inner: std::sync::Mutex<GateState>,
    max: usize,
    per_peer_max: usize,
}

#[derive(Default)]
struct GateState {
    next_id: u64,
    /// Handshakes in flight, oldest first: id, peer, and how to drop it.
    flight: std::collections::VecDeque<(u64, std::net::IpAddr, Arc<tokio::sync::Notify>)>,
    per_peer: std::collections::HashMap<std::net::IpAddr, usize>,
}

impl GateState {
    fn remove_at(&mut self, i: usize) -> Option<Arc<tokio::sync::Notify>> {
        let (_, ip, evict) = self.flight.remove(i)?;
        if let Some(n) = self.per_peer.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&ip);
            }
        }
        Some(evict)
    }
}

/// A handshake slot; freed when dropped. `evicted` fires when a newer connection took it.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    pub(crate) evicted: Arc<tokio::sync::Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut st) = self.gate.inner.lock()
            && let Some(i) = st.flight.iter().position(|(id, ..)| *id == self.id)
        {
            st.remove_at(i);
        }
    }
}

impl Gate {
    pub(crate) fn new() -> Arc<Gate> {
        Gate::with_limits(MAX_HANDSHAKES, MAX_HANDSHAKES_PER_PEER)
    }

    fn with_limits(max: usize, per_peer: usize) -> Arc<Gate> {
        Arc::new(Gate {
            inner: std::sync::Mutex::new(GateState::default()),
            max: max.max(1),
            per_peer_max: per_peer.max(1),
        })
    }

    /// A slot for a handshake from `ip`, evicting the oldest handshake that stands in its way.
    /// IPv6 peers are counted by /64 (one host's usual allocation).
    pub(crate) fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Ticket> {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                std::net::IpAddr::V6(o.into())
            }
            v4 => v4,
        };
        let mut st = self.inner.lock().ok()?;
        if st.per_peer.get(&ip).copied().unwrap_or(0) >= self.per_peer_max
            && let Some(i) = st.flight.iter().position(|(_, p, _)| *p == ip)
            && let Some(evict) = st.remove_at(i)
        {
            evict.notify_one();
        }
        if st.flight.len() >= self.max
            && let Some(evict) = st.remove_at(0)
        {
            evict.notify_one();
        }
        let id = st.next_id;
        st.next_id = st.next_id.wrapping_add(1);
        let evicted = Arc::new(tokio::sync::Notify::new());
        st.flight.push_back((id, ip, Arc::clone(&evicted)));
        *st.per_peer.entry(ip).or_insert(0) += 1;
        Some(Ticket {
            gate: Arc::clone(self),
            id,
            evicted,
        })
    }

    #[cfg(test)]
    fn in_flight(&self) -> (usize, usize) {
        let st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (st.flight.len(), st.per_peer.len())
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
    tls: Arc<LiveTls>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
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
                continue;
            };
            let acceptor = tls.grpc();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let done = tokio::select! {
                    () = ticket.evicted.notified() => {
                        tracing::debug!(%peer, "half-open connection dropped for a newer one");
                        return;
                    }
                    done = handshake => done,
                };
                // Authenticated (or refused): the slot is free from here.
                drop(ticket);
                match done {
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
    fn the_oldest_half_open_handshake_makes_way() {
        let gate = Gate::with_limits(4, 2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 1].into();
        let a1 = gate.admit(a).unwrap();
        let a2 = gate.admit(a).unwrap();
        // A third from one address evicts that address's oldest, not anyone else's.
        let a3 = gate.admit(a).unwrap();
        assert_eq!(gate.in_flight(), (2, 1));
        let b1 = gate.admit(b).unwrap();
        let _b2 = gate.admit(b).unwrap();
        assert_eq!(gate.in_flight(), (4, 2));
        // Past the global limit the oldest of all makes way.
        let c: IpAddr = [10, 0, 0, 1].into();
        let _c1 = gate.admit(c).unwrap();
        assert_eq!(gate.in_flight(), (4, 3));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let fired = |t: &super::Ticket| {
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_millis(10), t.evicted.notified())
                    .await
                    .is_ok()
            })
        };
        assert!(fired(&a1), "a1: evicted by a3");
        assert!(fired(&a2), "a2: the oldest when c1 came");
        assert!(!fired(&a3));
        assert!(!fired(&b1));
        // Dropping tickets frees their slots.
        drop((a1, a2, a3, b1));
        assert_eq!(gate.in_flight(), (2, 2));
    }

    #[test]
    fn ipv6_peers_count_by_their_64_prefix() {
        let gate = Gate::with_limits(16, 2);
        let host = |last: u16| -> IpAddr {
            std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last).into()
        };
        let first = gate.admit(host(1)).unwrap();
        let _second = gate.admit(host(2)).unwrap();
        // A third address of the same /64 is the same peer: its oldest makes way.
        let _third = gate.admit(host(3)).unwrap();
        assert_eq!(gate.in_flight(), (2, 1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(rt.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_millis(10),
                first.evicted.notified(),
            )
            .await
            .is_ok()
        }));
        // Another /64 is another peer.
        let _other = gate
            .admit(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1).into())
            .unwrap();
        assert_eq!(gate.in_flight(), (3, 2));
    }
}
