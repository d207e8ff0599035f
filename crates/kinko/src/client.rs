//! Connecting to kinkod: mutual TLS with the caller's certificate.

use std::path::PathBuf;

use clap::Args;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Where kinkod is and which certificate to present.
#[derive(Debug, Clone, Args)]
pub(crate) struct Connect {
    /// kinkod's address.
    #[arg(long, env = "KINKO_SERVER", default_value = "https://localhost:7443")]
    pub(crate) server: String,
    /// A development directory made by `kinkod dev`: takes tls/ca.pem and tls/<as>.pem/.key.
    #[arg(long, env = "KINKO_DEV_DIR")]
    pub(crate) dev_dir: Option<PathBuf>,
    /// The principal whose certificate to use with --dev-dir (ledger, alice, bob, carol, auditor).
    #[arg(long = "as", env = "KINKO_AS")]
    pub(crate) as_principal: Option<String>,
    /// CA certificate (PEM) that kinkod's certificate chains to.
    #[arg(long, env = "KINKO_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, env = "KINKO_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "KINKO_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The name kinkod's certificate must carry (default: the host of --server).
    #[arg(long, env = "KINKO_TLS_SERVER_NAME")]
    pub(crate) tls_server_name: Option<String>,
}

impl Connect {
    fn paths(&self) -> Result<(PathBuf, PathBuf, PathBuf), String> {
        if let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            return Ok((ca.clone(), cert.clone(), key.clone()));
        }
        let dir = self
            .dev_dir
            .as_ref()
            .ok_or("give --tls-ca, --tls-cert and --tls-key, or --dev-dir with --as")?;
        let who = self
            .as_principal
            .as_ref()
            .ok_or("--dev-dir needs --as PRINCIPAL")?;
        Ok((
            dir.join("tls/ca.pem"),
            dir.join(format!("tls/{who}.pem")),
            dir.join(format!("tls/{who}.key")),
        ))
    }

    /// The name checked against kinkod's certificate: --tls-server-name, else the host of
    /// --server (a DNS name or an IP address).
    pub(crate) fn server_name(&self) -> Result<String, String> {
        if let Some(n) = &self.tls_server_name {
            return Ok(n.clone());
        }
        let uri: tonic::transport::Uri = self
            .server
            .parse()
            .map_err(|e| format!("--server {:?}: {e}", self.server))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("--server {:?} names no host", self.server))?;
        Ok(host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string())
    }

    pub(crate) async fn channel(&self) -> Result<Channel, String> {
        let (ca, cert, key) = self.paths()?;
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&ca)?))
            .identity(Identity::from_pem(read(&cert)?, read(&key)?))
            .domain_name(self.server_name()?);
        Channel::from_shared(self.server.clone())
            .map_err(|e| format!("--server: {e}"))?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("cannot reach kinkod at {}: {}", self.server, causes(&e)))
    }
}

/// An error with its causes (tonic's transport error alone says only "transport error"; the
/// cause says which: a refused connection, a certificate not valid for the name, …).
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Reads a hex Ed25519 seed file (mode 600 required).
pub(crate) fn read_ed25519_seed(
    path: &std::path::Path,
) -> Result<ed25519_dalek::SigningKey, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{}: key file readable by others; chmod 600 it",
            path.display()
        ));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut *seed)
        .map_err(|_| format!("{}: expected 64 hex characters", path.display()))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// A gRPC status as the CLI shows it: the code, the daemon's stable reason (from the
/// `kinko-reason` metadata) and its message, without control characters.
pub(crate) fn show_status(s: tonic::Status) -> String {
    let reason = s
        .metadata()
        .get("kinko-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let msg = clean(s.message()).replace('\n', " ");
    if reason.is_empty() || msg.starts_with(&format!("[{reason}]")) {
        format!("{:?}: {msg}", s.code())
    } else {
        format!("{:?}: [{reason}] {msg}", s.code())
    }
}

/// Text from the daemon as printed on the officer's terminal: control characters other than
/// newlines (terminal escape sequences that could redraw what the officer reads) are replaced.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Connect;

    fn connect(server: &str, name: Option<&str>) -> Connect {
        Connect {
            server: server.into(),
            dev_dir: None,
            as_principal: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: name.map(str::to_string),
        }
    }

    #[test]
    fn the_server_name_checked_is_the_one_given() {
        // Not always "localhost": the host of --server, or --tls-server-name.
        for (server, name, want) in [
            ("https://kinko.example.com:7443", None, "kinko.example.com"),
            ("https://localhost:7443", None, "localhost"),
            ("https://127.0.0.1:7443", None, "127.0.0.1"),
            ("https://[::1]:7443", None, "::1"),
            (
                "https://10.0.0.5:7443",
                Some("kinko.internal"),
                "kinko.internal",
            ),
        ] {
            assert_eq!(
                connect(server, name).server_name().unwrap(),
                want,
                "{server}"
            );
        }
        assert!(connect("not a uri", None).server_name().is_err());
    }
}
