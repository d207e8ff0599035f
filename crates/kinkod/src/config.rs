//! kinkod's one configuration file (TOML, unknown keys refused).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kinko_hsm::HsmConfig;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Listeners.
    pub(crate) server: ServerConfig,
    /// The Prometheus listener (optional).
    #[serde(default)]
    pub(crate) metrics: Option<MetricsConfig>,
    /// The health listener for load balancers (optional; plain HTTP, no client certificate).
    #[serde(default)]
    pub(crate) health: Option<HealthConfig>,
    /// TLS files.
    pub(crate) tls: TlsConfig,
    /// Certificate subjects and their roles.
    #[serde(default)]
    pub(crate) principals: Vec<PrincipalConfig>,
    /// The HSM.
    pub(crate) hsm: HsmConfig,
    /// The SQLite file.
    pub(crate) store: StoreConfig,
    /// The audit log.
    pub(crate) audit: AuditConfig,
    /// The policy in force.
    pub(crate) policy: PolicyConfig,
    /// Limits.
    #[serde(default)]
    pub(crate) limits: Limits,
    /// Witnesses that cosign the log's checkpoints (optional; docs/witness.md).
    #[serde(default)]
    pub(crate) witness: Option<WitnessConfig>,
    /// kinkod's own log (standard error).
    #[serde(default)]
    pub(crate) log: LogConfig,
}

/// `[log]`: how kinkod writes its own log lines to standard error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// `text` (the default; colour codes only on a terminal) or `json`: one JSON object per
    /// line, with `timestamp`, `level`, `target` and the event's fields, for journald or a log
    /// shipper. `RUST_LOG` still chooses what is logged.
    #[serde(default)]
    pub(crate) format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[witness]`: who cosigns the log's checkpoints, and how long to wait for them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WitnessConfig {
    /// The witness policy (C2SP tlog-policy): the witnesses with their keys and `http://` URLs,
    /// and the quorum. Relative to the config file.
    pub(crate) policy: PathBuf,
    /// How long one `add-checkpoint` request may take. Default 5 s.
    #[serde(default = "default_witness_timeout")]
    pub(crate) timeout_ms: u64,
    /// How long a signature under a `witnessed` rule waits for the quorum before the request
    /// fails (nothing signed). Default 15 s.
    #[serde(default = "default_witness_wait")]
    pub(crate) wait_ms: u64,
}

fn default_witness_timeout() -> u64 {
    5_000
}

fn default_witness_wait() -> u64 {
    15_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerConfig {
    /// gRPC listener (TLS 1.3, client certificates required).
    pub(crate) listen: SocketAddr,
}

/// `[health]`: `GET /healthz` for a load balancer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthConfig {
    /// Plain HTTP, no client certificate: it answers `200 ok` or `503 unavailable` and nothing
    /// else (no version, no state, no reason). Bind it where only the load balancer reaches.
    pub(crate) listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// `/metrics` listener: TLS 1.3 with client certificates (role `metrics` or `auditor`).
    pub(crate) listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// PEM CA bundle that client certificates must chain to.
    pub(crate) client_ca: PathBuf,
    /// PEM server certificate chain.
    pub(crate) cert: PathBuf,
    /// PEM server private key (refused when other users can read it).
    pub(crate) key: PathBuf,
    /// Revoked client certificates: SHA-256 of their DER, hex. Refused even when pinned.
    #[serde(default)]
    pub(crate) revoked_sha256: Vec<String>,
}

/// Roles a principal can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// Submits withdrawals (an exchange's withdrawal pipeline).
    Requester,
    /// Approves, rejects, freezes.
    Officer,
    /// Proposes policies, lists and creates keys.
    Admin,
    /// Reads the log and proofs.
    Auditor,
    /// Scrapes `/metrics`.
    Metrics,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalConfig {
    /// The principal's name: a requester or officer id of the policy.
    pub(crate) name: String,
    /// The certificate subject common name it must carry.
    pub(crate) certificate_cn: String,
    /// Its roles.
    pub(crate) roles: Vec<Role>,
    /// The certificates that are this principal: SHA-256 of each one's DER, hex (more than one
    /// while a certificate is rotated). Required: a common name alone does not identify a
    /// principal, since anyone the CA issues a certificate to can choose it.
    #[serde(default)]
    pub(crate) certificate_sha256: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreConfig {
    /// Path of the SQLite database (the embedded default: one kinkod).
    #[serde(default)]
    pub(crate) path: Option<PathBuf>,
    /// A PostgreSQL connection string (`host=… port=… user=… dbname=…`): several kinkod
    /// replicas share one history (docs/ha.md). Exactly one of `path` and `postgres`.
    #[serde(default)]
    pub(crate) postgres: Option<String>,
    /// TLS to PostgreSQL: a PEM file of the CA certificates the server's certificate must chain
    /// to (it must also name the connection string's host). Set, the connection is TLS or
    /// nothing (never the clear); unset, the connection is in the clear and suits a local
    /// socket or a trusted network only. Relative to the config file.
    #[serde(default)]
    pub(crate) postgres_ca: Option<PathBuf>,
    /// A local file where this kinkod keeps the newest signed checkpoint it has seen; at start
    /// a log older than it (a database restored from an older backup, or replaced) is refused.
    /// Each replica has its own. Default `seen-checkpoint.note` beside the config.
    #[serde(default = "default_seen_checkpoint")]
    pub(crate) seen_checkpoint: PathBuf,
    /// Start even though the database's settings can lose committed transactions
    /// (asynchronous standbys, `synchronous_commit = off`, …). DANGEROUS: a lost commit can
    /// forget a signed nonce and sign it again. Default false.
    #[serde(default)]
    pub(crate) dangerous_allow_unsafe_durability: bool,
    /// This kinkod's name among replicas (claims carry it; at start a replica recovers only its
    /// own, and claims older than two minutes). Default: the host name and the gRPC port.
    #[serde(default)]
    pub(crate) replica: Option<String>,
}

fn default_seen_checkpoint() -> PathBuf {
    PathBuf::from("seen-checkpoint.note")
}

impl StoreConfig {
    /// Where the store is.
    pub(crate) fn location(&self) -> Result<kinko_store::Location, String> {
        match (&self.path, &self.postgres) {
            (Some(_), None) if self.postgres_ca.is_some() => {
                Err("[store] postgres_ca applies to `postgres`, not to an SQLite `path`".into())
            }
            (Some(p), None) => Ok(kinko_store::Location::Sqlite(p.clone())),
            (None, Some(url)) => match &self.postgres_ca {
                None => Ok(kinko_store::Location::Postgres(url.clone())),
                Some(ca) => Ok(kinko_store::Location::PostgresTls {
                    url: url.clone(),
                    ca_pem: std::fs::read(ca)
                        .map_err(|e| format!("[store] postgres_ca {}: {e}", ca.display()))?,
                }),
            },
            _ => Err(
                "[store] needs exactly one of `path` (SQLite) and `postgres` (a connection string)"
                    .into(),
            ),
        }
    }

    /// The store as messages name it (a connection string without its password).
    pub(crate) fn describe(&self) -> String {
        match (&self.path, &self.postgres) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(url)) => format!(
                "PostgreSQL ({})",
                url.split_whitespace()
                    .filter(|kv| !kv.starts_with("password="))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            (None, None) => "(no store configured)".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditConfig {
    /// The audit log lives in the store. This names the directory of a log kept in files by an
    /// earlier kinkod (segments and checkpoints), to import once with `kinkod import-log`;
    /// kinkod refuses to start while it holds a history the store does not.
    #[serde(default)]
    pub(crate) dir: Option<PathBuf>,
    /// The checkpoint origin line (the log's name), e.g. `kinko.example.com/log`.
    pub(crate) origin: String,
    /// Label of the Ed25519 log key in the HSM.
    pub(crate) log_key_label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyConfig {
    /// The policy file in force.
    pub(crate) path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    /// Largest gRPC message, bytes.
    pub(crate) max_message_bytes: usize,
    /// Requests allowed in flight per principal (each waits at most `request_timeout_secs`).
    pub(crate) max_concurrent_per_principal: usize,
    /// Pending requests per requester.
    pub(crate) max_pending_per_requester: usize,
    /// Denied requests stored per requester per 24 h (past it, refused and not stored).
    pub(crate) max_denied_per_requester_per_day: usize,
    /// Open WatchRequest streams per principal.
    pub(crate) max_watches_per_principal: usize,
    /// Deadline of every call.
    pub(crate) request_timeout_secs: u64,
    /// Calls per second per principal, averaged (0: unlimited).
    pub(crate) calls_per_second_per_principal: f64,
    /// Bursts allowed above that rate.
    pub(crate) call_burst_per_principal: f64,
    /// A request pending approval for longer expires.
    pub(crate) pending_expiry_secs: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 512 * 1024,
            max_concurrent_per_principal: 32,
            max_pending_per_requester: 1000,
            max_denied_per_requester_per_day: 1000,
            max_watches_per_principal: 16,
            request_timeout_secs: 30,
            calls_per_second_per_principal: 200.0,
            call_burst_per_principal: 400.0,
            pending_expiry_secs: 24 * 3600,
        }
    }
}

impl Config {
    /// Reads and parses the file; paths are taken relative to the file's directory.
    pub(crate) fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut c: Config =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.tls.client_ca,
            &mut c.tls.cert,
            &mut c.tls.key,
            &mut c.policy.path,
            &mut c.store.seen_checkpoint,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in [
            c.audit.dir.as_mut(),
            c.store.path.as_mut(),
            c.store.postgres_ca.as_mut(),
            c.witness.as_mut().map(|w| &mut w.policy),
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        c.store.location()?;
        if let kinko_hsm::PinSource::File(p) = &mut c.hsm.pin
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        // A module given by a relative path (with a directory part) is relative to the file
        // too; a bare library name is left to the dynamic loader's search path.
        if c.hsm.module.is_relative() && c.hsm.module.components().count() > 1 {
            c.hsm.module = base.join(&c.hsm.module);
        }
        let mut seen = std::collections::HashSet::new();
        let mut pinned = std::collections::HashSet::new();
        let fingerprint_ok = |f: &str| f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit());
        for p in &c.principals {
            if !seen.insert(p.certificate_cn.clone()) {
                return Err(format!(
                    "certificate_cn {:?} is mapped twice",
                    p.certificate_cn
                ));
            }
            if p.certificate_sha256.is_empty() {
                return Err(format!(
                    "principal {:?}: certificate_sha256 is required: the SHA-256 of each certificate that is this principal (`openssl x509 -in CERT.pem -outform der | sha256sum`); a common name alone identifies no one",
                    p.name
                ));
            }
            for f in &p.certificate_sha256 {
                if !fingerprint_ok(f) {
                    return Err(format!(
                        "principal {:?}: certificate_sha256 {f:?} is not 64 hex characters",
                        p.name
                    ));
                }
                if !pinned.insert(f.to_ascii_lowercase()) {
                    return Err(format!("certificate {f} is pinned to two principals"));
                }
            }
        }
        for f in &c.tls.revoked_sha256 {
            if !fingerprint_ok(f) {
                return Err(format!("tls.revoked_sha256 {f:?} is not 64 hex characters"));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::StoreConfig;

    fn store(text: &str) -> StoreConfig {
        toml::from_str(text).unwrap()
    }

    /// `[store] postgres_ca` makes the location TLS with that file's certificates; it is refused
    /// beside an SQLite path, and a missing file is named.
    #[test]
    fn postgres_ca_selects_verified_tls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("pg-ca.pem");
        std::fs::write(&ca, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let url = "host=db.example port=5432 user=kinko dbname=kinko";
        let tls = store(&format!(
            "postgres = \"{url}\"\npostgres_ca = \"{}\"\n",
            ca.display()
        ));
        match tls.location().unwrap() {
            kinko_store::Location::PostgresTls { url: u, ca_pem } => {
                assert_eq!(u, url);
                assert_eq!(ca_pem, b"-----BEGIN CERTIFICATE-----\n");
            }
            other => panic!("{other:?}"),
        }
        let clear = store(&format!("postgres = \"{url}\"\n"));
        assert!(matches!(
            clear.location().unwrap(),
            kinko_store::Location::Postgres(_)
        ));
        let sqlite = store(&format!(
            "path = \"kinko.db\"\npostgres_ca = \"{}\"\n",
            ca.display()
        ));
        assert!(sqlite.location().unwrap_err().contains("postgres_ca"));
        let missing = store(&format!(
            "postgres = \"{url}\"\npostgres_ca = \"{}\"\n",
            dir.path().join("nope.pem").display()
        ));
        assert!(missing.location().unwrap_err().contains("nope.pem"));
    }
}

#[cfg(test)]
mod reference {
    use std::collections::BTreeSet;

    use serde::de::DeserializeOwned;

    /// The keys a section's type accepts, read from serde's own refusal of an unknown key
    /// ("unknown field `…`, expected one of `a`, `b`").
    fn keys_of<T: DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
        let err = toml::from_str::<T>("kinko_no_such_key = 1\n")
            .expect_err("an unknown key was accepted")
            .to_string();
        let expected = err
            .split_once("expected")
            .unwrap_or_else(|| panic!("no list of keys in {err:?}"))
            .1;
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// `docs/config.md`: the keys of each `## \`[section]\`` table.
    fn documented() -> std::collections::BTreeMap<String, BTreeSet<String>> {
        let page = include_str!("../../../docs/config.md");
        let mut out = std::collections::BTreeMap::new();
        let mut section = None;
        for line in page.lines() {
            if let Some(h) = line.strip_prefix("## `") {
                section = h.split('`').next().map(str::to_string);
            } else if let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) {
                let key = row.split('`').next().unwrap_or_default().to_string();
                out.entry(s.clone())
                    .or_insert_with(BTreeSet::new)
                    .insert(key);
            }
        }
        out
    }

    /// Every key kinkod accepts is documented, and every documented key is accepted, section
    /// by section, and the sections are the configuration's.
    #[test]
    fn the_reference_lists_every_key() {
        let types: Vec<(&str, BTreeSet<String>)> = vec![
            ("[server]", keys_of::<super::ServerConfig>()),
            ("[tls]", keys_of::<super::TlsConfig>()),
            ("[[principals]]", keys_of::<super::PrincipalConfig>()),
            ("[hsm]", keys_of::<kinko_hsm::HsmConfig>()),
            ("[store]", keys_of::<super::StoreConfig>()),
            ("[audit]", keys_of::<super::AuditConfig>()),
            ("[policy]", keys_of::<super::PolicyConfig>()),
            ("[metrics]", keys_of::<super::MetricsConfig>()),
            ("[health]", keys_of::<super::HealthConfig>()),
            ("[limits]", keys_of::<super::Limits>()),
            ("[witness]", keys_of::<super::WitnessConfig>()),
            ("[log]", keys_of::<super::LogConfig>()),
        ];
        let docs = documented();
        let sections: BTreeSet<String> = keys_of::<super::Config>()
            .into_iter()
            .map(|s| {
                if s == "principals" {
                    "[[principals]]".to_string()
                } else {
                    format!("[{s}]")
                }
            })
            .collect();
        let listed: BTreeSet<String> = types.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(sections, listed, "a section of Config is not checked here");
        for (section, keys) in &types {
            let doc = docs
                .get(*section)
                .unwrap_or_else(|| panic!("docs/config.md has no {section} section"));
            let missing: Vec<_> = keys.difference(doc).collect();
            let unknown: Vec<_> = doc.difference(keys).collect();
            assert!(
                missing.is_empty() && unknown.is_empty(),
                "docs/config.md {section}: not documented {missing:?}, documented but unknown {unknown:?}"
            );
        }
        assert_eq!(docs.len(), types.len(), "docs/config.md has extra sections");
    }

    /// The commented configuration `kinkod init` writes names only keys kinkod accepts: each
    /// commented `key = value` line, uncommented into its section, parses.
    #[test]
    fn the_init_template_names_only_real_keys() {
        let docs = documented();
        let text = crate::setup::config_template_for_tests();
        let mut section = String::new();
        let mut checked = 0;
        for line in text.lines() {
            let l = line.trim_start_matches('#').trim();
            if l.starts_with('[') && !l.contains('=') {
                section = l.split_whitespace().next().unwrap_or_default().to_string();
                continue;
            }
            if let Some((key, _)) = l.split_once(" = ")
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && !section.is_empty()
                && line.starts_with(|c: char| c == '#' || c.is_ascii_lowercase())
            {
                let known = docs.get(&section).is_some_and(|k| k.contains(key));
                assert!(
                    known,
                    "kinkod init writes {key:?} in {section}, which docs/config.md does not list"
                );
                checked += 1;
            }
        }
        assert!(checked >= 35, "only {checked} keys found in the template");
    }
}
