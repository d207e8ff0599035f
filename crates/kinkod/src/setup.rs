//! A production set-up without `kinkod dev` (docs/install.md): `init` writes a commented
//! configuration and a starting policy, `create-key` makes the audit-log key and the first
//! signing keys on the configured token, and `check-config` checks everything a start would,
//! without starting and without changing anything.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kinko_hsm::{Hsm, KeyKind, PublicKey};
use kinko_intent::Chain;
use kinko_policy::Policy;

use crate::config::Config;

/// What `create-key` makes.
#[derive(Debug)]
pub(crate) enum NewKey {
    /// The audit log's Ed25519 key, labelled `[audit] log_key_label`.
    Log,
    /// A signing key for the policy's `[[keys]]`.
    Signing {
        name: String,
        chain: Chain,
        network: String,
        hsm_label: String,
    },
}

/// Whether the store already holds a history (an installed policy): keys made after that go
/// through governance, which logs their creation with the officers' approvals.
fn store_has_history(config: &Config) -> Result<bool, String> {
    let location = config.store.location()?;
    if let kinko_store::Location::Sqlite(path) = &location
        && !path.exists()
    {
        return Ok(false);
    }
    let store = kinko_store::Store::open_at(&location)
        .map_err(|e| format!("{}: {e}", config.store.describe()))?;
    Ok(store
        .installed_policy()
        .map_err(|e| e.to_string())?
        .is_some())
}

/// `kinkod create-key`: makes a key on the configured token with only `CKA_SIGN` (sensitive,
/// never extractable, no decrypt, unwrap or derive) and prints what the policy or the auditors
/// need. Refused once the store holds a history: later keys are created by governance.
pub(crate) async fn create_key(config: &Config, what: NewKey) -> Result<(), String> {
    if store_has_history(config)? {
        return Err(format!(
            "the store {} already holds a history: keys are now created through governance \
             (a policy proposal naming the key; docs/operations.md, \"Changing the policy\"), \
             so that the log records who approved them",
            config.store.describe()
        ));
    }
    let (label, kind) = match &what {
        NewKey::Log => (config.audit.log_key_label.clone(), KeyKind::Ed25519),
        NewKey::Signing {
            hsm_label, chain, ..
        } => {
            if *hsm_label == config.audit.log_key_label {
                return Err(format!(
                    "HSM label {hsm_label:?} is the audit log key's ([audit] log_key_label); give the signing key its own"
                ));
            }
            let kind = match chain {
                Chain::Solana => KeyKind::Ed25519,
                Chain::Ethereum | Chain::Bitcoin => KeyKind::Secp256k1,
            };
            (hsm_label.clone(), kind)
        }
    };
    let hsm = Hsm::open(&config.hsm).await.map_err(|e| e.to_string())?;
    let pk = hsm
        .generate_key(&label, kind)
        .await
        .map_err(|e| format!("creating {label} on token {}: {e}", config.hsm.token_label))?;
    match what {
        NewKey::Log => {
            let PublicKey::Ed25519(vk) = pk else {
                return Err("the token returned a non-Ed25519 key".into());
            };
            let vkey = kinko_audit::note::VerifierKey::new(&config.audit.origin, &vk.to_bytes())
                .map_err(|e| e.to_string())?;
            eprintln!(
                "kinkod: created the audit-log key {label} (Ed25519, sign only) on token {}. \
                 Give the auditors this verifier key out of band:",
                config.hsm.token_label
            );
            println!("{vkey}");
        }
        NewKey::Signing {
            name,
            chain,
            network,
            hsm_label,
        } => {
            let public = pk.to_bytes();
            let address = kinko_chain::address_of(chain, &network, &public)
                .map_err(|e| format!("{name}: {e}"))?;
            eprintln!(
                "kinkod: created {hsm_label} ({}, sign only) on token {}; its address on {} {network} is {address}. \
                 Append this block to the policy (it pins the public key):",
                kind.name(),
                config.hsm.token_label,
                chain.as_str()
            );
            println!(
                "{}",
                keys_block(&name, chain, &network, &hsm_label, &public, &address)
            );
        }
    }
    Ok(())
}

/// The policy's `[[keys]]` block for a key, with its public key pinned.
fn keys_block(
    name: &str,
    chain: Chain,
    network: &str,
    hsm_label: &str,
    public: &[u8],
    address: &str,
) -> String {
    format!(
        "\n[[keys]]\nname = \"{name}\"\nchain = \"{}\"\nnetwork = \"{network}\"\nhsm_label = \"{hsm_label}\"\npublic_key = \"{}\"\n# address {address}",
        chain.as_str(),
        hex::encode(public)
    )
}

/// The key kinds the token must support for `policy`: Ed25519 always (the log key), secp256k1
/// when the policy has an Ethereum or Bitcoin key. (Governance that later adds such a key to a
/// token without secp256k1 fails to create it, by name.)
pub(crate) fn needed_kinds(policy: &Policy) -> Vec<kinko_hsm::KeyKind> {
    let mut kinds = vec![kinko_hsm::KeyKind::Ed25519];
    if policy.keys().any(|k| {
        matches!(
            k.chain,
            kinko_intent::Chain::Ethereum | kinko_intent::Chain::Bitcoin
        )
    }) {
        kinds.push(kinko_hsm::KeyKind::Secp256k1);
    }
    kinds
}

/// One line of the `check-config` report.
#[derive(Default)]
struct Report {
    lines: Vec<(&'static str, String)>,
}

impl Report {
    fn ok(&mut self, what: impl Into<String>) {
        self.lines.push(("ok", what.into()));
    }
    fn warn(&mut self, what: impl Into<String>) {
        self.lines.push(("warn", what.into()));
    }
    fn fail(&mut self, what: impl Into<String>) {
        self.lines.push(("FAIL", what.into()));
    }
    fn failures(&self) -> usize {
        self.lines.iter().filter(|(l, _)| *l == "FAIL").count()
    }
}

/// The placeholders `kinkod init` writes, which an operator must replace.
const PLACEHOLDER: &str = "REPLACE-";

/// `kinkod check-config`: every check a start makes before serving, and some it cannot, each
/// reported with what to fix; nothing is started, created or changed (the store is not
/// opened: a start verifies its log). Returns whether everything passed.
pub(crate) async fn check_config(path: &Path) -> bool {
    let mut r = Report::default();
    let ok = check_into(path, &mut r).await;
    let mut out = std::io::stdout().lock();
    for (level, line) in &r.lines {
        let _ = writeln!(out, "{level:<4}  {line}");
    }
    let failures = r.failures();
    let _ = if failures == 0 && ok {
        writeln!(out, "\nkinkod check-config: {} passed", path.display())
    } else {
        writeln!(
            out,
            "\nkinkod check-config: {} has {} problem(s) to fix before kinkod starts",
            path.display(),
            failures.max(1)
        )
    };
    failures == 0 && ok
}

async fn check_into(path: &Path, r: &mut Report) -> bool {
    let config = match Config::load(path) {
        Ok(c) => {
            r.ok(format!("config {} loads", path.display()));
            c
        }
        Err(e) => {
            r.fail(format!("config: {e}"));
            return false;
        }
    };

    // The policy.
    let policy = match std::fs::read(&config.policy.path) {
        Err(e) => {
            r.fail(format!("policy {}: {e}", config.policy.path.display()));
            None
        }
        Ok(text) => {
            let shown = config.policy.path.display();
            let placeholders: Vec<String> = String::from_utf8_lossy(&text)
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(PLACEHOLDER) && !l.trim_start().starts_with('#'))
                .map(|(i, l)| format!("line {}: {}", i + 1, l.trim()))
                .collect();
            if !placeholders.is_empty() {
                r.fail(format!(
                    "policy {shown}: placeholders from `kinkod init` still to replace: {}",
                    placeholders.join("; ")
                ));
                None
            } else {
                match Policy::from_toml(&text) {
                    Ok(p) => {
                        r.ok(format!(
                            "policy {shown} loads: {} officers, {} requesters, {} keys, {} rules, hash {}",
                            p.officers().count(),
                            p.requesters().count(),
                            p.keys().count(),
                            p.rules().len(),
                            hex::encode(p.hash().0)
                        ));
                        Some(p)
                    }
                    Err(e) => {
                        r.fail(format!("policy {shown}: {e}"));
                        None
                    }
                }
            }
        }
    };
    if let Some(p) = &policy {
        for k in p.keys() {
            if let Err(e) = crate::engine::check_not_log_key(k, &config.audit.log_key_label) {
                r.fail(format!("policy: {e}"));
            }
            if k.public_key.is_none() {
                r.warn(format!(
                    "policy key {} pins no public_key: officers' CLIs refuse to approve withdrawals from it until a policy pins it",
                    k.name
                ));
            }
        }
        check_principals(&config, p, r);
    }

    // TLS.
    match crate::tls::server_config(&config.tls) {
        Ok(_) => r.ok(format!(
            "TLS: server certificate {} and key {} match; client CA {} loads",
            config.tls.cert.display(),
            config.tls.key.display(),
            config.tls.client_ca.display()
        )),
        Err(e) => r.fail(format!("TLS: {e}")),
    }
    check_certificate_dates(&config.tls.cert, "server certificate", r);
    check_certificate_dates(&config.tls.client_ca, "client CA", r);

    // Files kinkod writes.
    check_writable_dir(&config.store.seen_checkpoint, "[store] seen_checkpoint", r);
    match config.store.location() {
        Ok(kinko_store::Location::Sqlite(db)) => {
            if db.exists() {
                r.ok(format!(
                    "store {}: exists (a start verifies its audit log against its checkpoints)",
                    db.display()
                ));
            } else {
                check_writable_dir(&db, "store (a new SQLite database)", r);
            }
        }
        Ok(_) => r.ok(format!(
            "store {}: PostgreSQL, not opened by check-config (a start checks its durability settings and verifies its log)",
            config.store.describe()
        )),
        Err(e) => r.fail(format!("store: {e}")),
    }
    if let Some(w) = &config.witness {
        match crate::witnessing::Witnessing::load(w) {
            Ok(_) => r.ok(format!("witness policy {} loads", w.policy.display())),
            Err(e) => r.fail(format!("[witness] {e}")),
        }
    }

    // The token: PIN, capability probe, the log key and every signing key.
    match config.hsm.pin.load() {
        Ok(_) => r.ok("HSM PIN source is readable by kinkod alone"),
        Err(e) => {
            r.fail(format!("HSM PIN: {e}"));
            return false;
        }
    }
    let hsm = match Hsm::open(&config.hsm).await {
        Ok(h) => {
            r.ok(format!(
                "HSM: module {} token {:?} opened and logged in",
                config.hsm.module.display(),
                config.hsm.token_label
            ));
            h
        }
        Err(e) => {
            r.fail(format!("HSM: {e}"));
            return false;
        }
    };
    match hsm.probe().await {
        Ok(caps) => match caps.require(&policy.as_ref().map_or_else(
            || vec![KeyKind::Ed25519, KeyKind::Secp256k1],
            needed_kinds,
        )) {
            Ok(()) => r.ok(format!(
                "HSM capability probe: {} generated a session key, signed, and verified in software (secp256k1 {}, Ed25519 {})",
                "each kind the policy needs",
                if caps.secp256k1_ecdsa { "works" } else { "MISSING" },
                if caps.ed25519 { "works" } else { "MISSING" },
            )),
            Err(e) => r.fail(format!(
                "HSM capability probe: {e} (mechanisms listed: {})",
                caps.mechanisms.join(" ")
            )),
        },
        Err(e) => r.fail(format!("HSM capability probe: {e}")),
    }
    match hsm.public_key(&config.audit.log_key_label).await {
        Ok(PublicKey::Ed25519(vk)) => {
            match kinko_audit::note::VerifierKey::new(&config.audit.origin, &vk.to_bytes()) {
                Ok(vkey) => r.ok(format!(
                    "audit-log key {}: Ed25519, sign only; verifier key {vkey}",
                    config.audit.log_key_label
                )),
                Err(e) => r.fail(format!("[audit] origin: {e}")),
            }
        }
        Ok(_) => r.fail(format!(
            "audit-log key {} is not an Ed25519 key",
            config.audit.log_key_label
        )),
        Err(kinko_hsm::HsmError::KeyNotFound(_)) => r.fail(format!(
            "audit-log key {} is not on the token: make it with `kinkod --config {} create-key --log-key`",
            config.audit.log_key_label,
            path.display()
        )),
        Err(e) => r.fail(format!("audit-log key {}: {e}", config.audit.log_key_label)),
    }
    if let Some(p) = &policy {
        for k in p.keys() {
            match hsm.public_key(&k.hsm_label).await {
                Ok(pk) => {
                    let public = pk.to_bytes();
                    let kind_ok = matches!(
                        (k.chain, &pk),
                        (Chain::Solana, PublicKey::Ed25519(_))
                            | (Chain::Ethereum | Chain::Bitcoin, PublicKey::Secp256k1(_))
                    );
                    if !kind_ok {
                        r.fail(format!(
                            "signing key {} (HSM label {}): a {} key cannot sign for {}",
                            k.name,
                            k.hsm_label,
                            pk.kind().name(),
                            k.chain.as_str()
                        ));
                    } else if k.public_key.as_ref().is_some_and(|pinned| *pinned != public) {
                        r.fail(format!(
                            "signing key {} (HSM label {}): the token holds public key {}, but the policy pins another: kinkod refuses to use it",
                            k.name,
                            k.hsm_label,
                            hex::encode(&public)
                        ));
                    } else {
                        let address =
                            kinko_chain::address_of(k.chain, k.network.as_str(), &public)
                                .unwrap_or_default();
                        r.ok(format!(
                            "signing key {} (HSM label {}): sign only{}, address {address}",
                            k.name,
                            k.hsm_label,
                            if k.public_key.is_some() {
                                ", the public key the policy pins"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                Err(kinko_hsm::HsmError::KeyNotFound(_)) => r.fail(format!(
                    "signing key {} (HSM label {}) is not on the token: make it with `kinkod --config {} create-key --name {} --chain {} --network {} --hsm-label {}` before the first start (afterwards, through governance)",
                    k.name,
                    k.hsm_label,
                    path.display(),
                    k.name,
                    k.chain.as_str(),
                    k.network.as_str(),
                    k.hsm_label
                )),
                Err(e) => r.fail(format!(
                    "signing key {} (HSM label {}): {e}",
                    k.name, k.hsm_label
                )),
            }
        }
    }
    true
}

/// Every requester and officer of the policy needs a principal to reach kinkod with; a
/// principal with those roles that the policy does not name is refused at each call.
fn check_principals(config: &Config, policy: &Policy, r: &mut Report) {
    use crate::config::Role;
    let has = |name: &str, role: Role| {
        config
            .principals
            .iter()
            .any(|p| p.name == name && p.roles.contains(&role))
    };
    for q in policy.requesters() {
        if !has(&q.id, Role::Requester) {
            r.warn(format!(
                "requester {} has no [[principals]] entry with role requester: it cannot submit",
                q.id
            ));
        }
    }
    for o in policy.officers() {
        if !has(&o.id, Role::Officer) {
            r.warn(format!(
                "officer {} has no [[principals]] entry with role officer: they cannot approve or freeze",
                o.id
            ));
        }
    }
    if config.principals.is_empty() {
        r.fail("no [[principals]]: nobody can call kinkod");
    } else {
        r.ok(format!(
            "{} principals, each pinned to its certificates",
            config.principals.len()
        ));
    }
}

/// Reports a PEM file's certificates that are expired, not yet valid or expire within 30 days.
fn check_certificate_dates(path: &Path, what: &str, r: &mut Report) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Ok(iter) = CertificateDer::pem_file_iter(path) else {
        return; // The TLS check names the problem.
    };
    let now = jiff::Timestamp::now().as_second();
    for der in iter.flatten() {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            r.fail(format!(
                "{what} {}: a certificate does not parse",
                path.display()
            ));
            continue;
        };
        let subject = cert.subject().to_string();
        let (from, until) = (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        );
        let until_shown = cert.validity().not_after.to_string();
        if now < from {
            r.fail(format!(
                "{what} {subject}: not valid before {}",
                cert.validity().not_before
            ));
        } else if now > until {
            r.fail(format!("{what} {subject}: expired {until_shown}"));
        } else if until - now < 30 * 86_400 {
            r.warn(format!(
                "{what} {subject}: expires {until_shown}, in {} days",
                (until - now) / 86_400
            ));
        } else {
            r.ok(format!("{what} {subject}: valid until {until_shown}"));
        }
    }
}

/// Checks that the directory of `file` exists and kinkod's user can create files in it (by
/// creating and removing one).
fn check_writable_dir(file: &Path, what: &str, r: &mut Report) {
    let dir = file.parent().unwrap_or(Path::new("."));
    let probe = dir.join(format!(".kinkod-check-config-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            r.ok(format!("{what}: {} is writable", dir.display()));
        }
        Err(e) => r.fail(format!(
            "{what} {}: cannot create files in {}: {e}",
            file.display(),
            dir.display()
        )),
    }
}

/// Options of `kinkod init`.
#[derive(Debug)]
pub(crate) struct InitOptions {
    /// Where kinkod.toml and policy.toml are written.
    pub(crate) dir: PathBuf,
    /// Where kinkod keeps its state (the SQLite store, the seen checkpoint).
    pub(crate) state_dir: PathBuf,
    /// The log's origin line.
    pub(crate) origin: String,
    /// The gRPC listener.
    pub(crate) listen: SocketAddr,
    /// The PKCS#11 module.
    pub(crate) module: PathBuf,
    /// The token label.
    pub(crate) token_label: String,
}

/// `kinkod init`: writes `kinkod.toml` (every key, commented) into `dir` and `policy.toml` (a
/// starting policy: deny by default, placeholders for officers and the requester) into the
/// state directory, since kinkod rewrites it when governance installs a policy. Never
/// overwrites.
pub(crate) fn init(o: &InitOptions) -> Result<(), String> {
    if o.origin.is_empty() || o.origin.contains(char::is_whitespace) {
        return Err("--origin must be one word, e.g. kinko.example.com/log".into());
    }
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    std::fs::create_dir_all(&o.state_dir).map_err(|e| format!("{}: {e}", o.state_dir.display()))?;
    let config_path = o.dir.join("kinkod.toml");
    let policy_path = o.state_dir.join("policy.toml");
    for p in [&config_path, &policy_path] {
        if p.exists() {
            return Err(format!(
                "{} exists; kinkod init never overwrites",
                p.display()
            ));
        }
    }
    let config = config_template(o);
    let policy = POLICY_TEMPLATE;
    write_new(&config_path, config.as_bytes())?;
    write_new(&policy_path, policy.as_bytes())?;
    eprintln!(
        "kinkod: wrote {} and {}. Next (docs/install.md): fill in the TLS files and principals, \
         the officers' and the requester's public keys, create the log key and signing keys \
         (kinkod --config {} create-key …), then run kinkod --config {} check-config",
        config_path.display(),
        policy_path.display(),
        config_path.display(),
        config_path.display()
    );
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The configuration `kinkod init` writes, with example options (for the reference test).
#[cfg(test)]
pub(crate) fn config_template_for_tests() -> String {
    config_template(&InitOptions {
        dir: PathBuf::from("/etc/kinko"),
        state_dir: PathBuf::from("/var/lib/kinko"),
        origin: "kinko.example.com/log".into(),
        listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
        module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
        token_label: "kinko".into(),
    })
}

fn config_template(o: &InitOptions) -> String {
    let mut s = String::new();
    let state = o.state_dir.display();
    let _ = write!(
        s,
        r#"# kinkod configuration, written by `kinkod init`. Every key is listed; commented keys
# show their default. Reference: docs/config.md. Check it with `kinkod --config FILE check-config`.
# Relative paths are relative to this file.

[server]
# The gRPC listener: TLS 1.3, a client certificate required from every caller.
listen = "{listen}"

# [metrics]
# listen = "127.0.0.1:9443"      # /metrics over TLS 1.3, client certificates with role metrics or auditor

# [health]
# listen = "127.0.0.1:8080"      # GET /healthz for a load balancer: plain HTTP, 200 ok or 503 unavailable

[tls]
client_ca = "tls/client-ca.pem"  # the CA bundle client certificates must chain to
cert = "tls/server.pem"          # this server's certificate chain
key = "tls/server.key"           # its private key (mode 600, refused otherwise)
# revoked_sha256 = []            # SHA-256 (hex) of the DER of client certificates refused even when pinned

# One [[principals]] per caller: its name in the policy, its certificate's common name, its
# roles (requester, officer, admin, auditor, metrics) and the SHA-256 of each of its
# certificates (openssl x509 -in CERT.pem -outform der | sha256sum).
[[principals]]
name = "REPLACE-requester-name"
certificate_cn = "REPLACE-requester-name"
roles = ["requester"]
certificate_sha256 = ["REPLACE-requester-certificate-sha256"]

[hsm]
module = "{module}"
token_label = "{token}"
# The user PIN: a file readable by kinkod alone (mode 600), an environment variable
# (pin = {{ env = "KINKO_HSM_PIN" }}), or a systemd credential (pin = {{ credential = "hsm-pin" }},
# with LoadCredential=hsm-pin:/etc/kinko/credentials/hsm-pin in the unit).
pin = {{ credential = "hsm-pin" }}
# pool_size = 4                  # sessions kept open

[store]
path = "{state}/kinko.db"         # the SQLite store: state and the audit log
# postgres = "host=db1 port=5432 user=kinko dbname=kinko"  # instead of path: replicas share one history (docs/ha.md)
# postgres_ca = "pg-ca.pem"      # with postgres: TLS with this CA, or nothing
seen_checkpoint = "{state}/seen-checkpoint.note"  # the newest checkpoint seen; never restore it with a backup
# dangerous_allow_unsafe_durability = false
# replica = "HOST:PORT"          # this replica's name in claims (default: host name and gRPC port)

[audit]
origin = "{origin}"              # the log's name in its checkpoints
log_key_label = "kinko-log"      # the Ed25519 log key on the token (kinkod create-key --log-key)
# dir = "audit"                  # only the file log of an earlier kinkod, to import once

[policy]
path = "{state}/policy.toml"      # the policy in force; kinkod rewrites it when governance installs one

# [limits]
# max_message_bytes = 524288
# max_concurrent_per_principal = 32
# max_pending_per_requester = 1000
# max_denied_per_requester_per_day = 1000
# max_watches_per_principal = 16
# request_timeout_secs = 30
# calls_per_second_per_principal = 200.0
# call_burst_per_principal = 400.0
# pending_expiry_secs = 86400

# [witness]                      # docs/witness.md
# policy = "witness-policy.txt"
# timeout_ms = 5000
# wait_ms = 15000

# [log]
# format = "text"                # or "json": one JSON object per line
"#,
        listen = o.listen,
        module = o.module.display(),
        token = o.token_label,
        origin = o.origin,
    );
    s
}

/// The starting policy: deny by default; three officers in two groups; governance that needs two
/// admins from two groups; no keys and no rules yet (create-key prints the keys' blocks).
const POLICY_TEMPLATE: &str = r#"# Kinko policy, written by `kinkod init` (docs/policy.md). Replace every REPLACE- value, append
# the [[keys]] blocks that `kinkod create-key` prints, and the address books and rules you need.
# Everything not allowed by a rule is denied. After the first start this file changes only
# through governance (kinko policy propose / approve).
version = 1
description = "REPLACE-a-description-of-this-policy"

# One [[officers]] per security officer; each makes their own key on their own machine
# (`kinko officer keygen --out FILE`, which prints the public key) and sends only the public key.
[[officers]]
id = "officer-1"
name = "REPLACE-officer-1-full-name"
roles = ["approver", "admin", "freezer"]
group = "treasury"
public_key = "REPLACE-officer-1-public-key"

[[officers]]
id = "officer-2"
name = "REPLACE-officer-2-full-name"
roles = ["approver", "admin"]
group = "treasury"
public_key = "REPLACE-officer-2-public-key"

[[officers]]
id = "officer-3"
name = "REPLACE-officer-3-full-name"
roles = ["approver", "admin", "freezer"]
group = "risk"
public_key = "REPLACE-officer-3-public-key"

# The withdrawal pipeline: its key made with `kinko requester keygen --out FILE`; `keys` names the
# signing keys it may ask for (their [[keys]] blocks come from `kinkod create-key`).
[[requesters]]
id = "REPLACE-requester-name"
public_key = "REPLACE-requester-public-key"
keys = ["REPLACE-signing-key-name"]

[[rules]]
name = "deny-contract-calls"
kinds = ["token_approve", "contract_call", "safe_delegate_call", "safe_self_call"]
deny = "contract calls and token approvals are never signed"

[governance.install]
quorum = { count = 2, roles = ["admin"], distinct_groups = 2, lifetime = "72h" }
time_lock = "24h"
veto_roles = ["freezer"]

[governance.freeze]
roles = ["freezer"]
lifetime = "1h"

[governance.unfreeze]
quorum = { count = 2, roles = ["admin"], distinct_groups = 2, lifetime = "24h" }
delay = "1h"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The starting policy loads once its placeholders are replaced (with real keys), and
    /// check-config names each placeholder left.
    #[test]
    fn the_starting_policy_loads_once_filled_in() {
        let key = |b: u8| {
            hex::encode(
                ed25519_dalek::SigningKey::from_bytes(&[b; 32])
                    .verifying_key()
                    .to_bytes(),
            )
        };
        let filled = POLICY_TEMPLATE
            .replace("REPLACE-officer-1-public-key", &key(1))
            .replace("REPLACE-officer-2-public-key", &key(2))
            .replace("REPLACE-officer-3-public-key", &key(3))
            .replace("REPLACE-requester-public-key", &key(4))
            .replace("REPLACE-signing-key-name", "sol-cold")
            .replace("REPLACE-", "")
            + &keys_block(
                "sol-cold",
                Chain::Solana,
                "devnet",
                "kinko-sol-cold",
                &[9; 32],
                "",
            );
        let p = Policy::from_toml(filled.as_bytes()).unwrap();
        assert_eq!(p.officers().count(), 3);
        // A Solana-only policy needs only Ed25519 of the token (Kryoptic, say, has no
        // secp256k1); an Ethereum key adds secp256k1.
        assert_eq!(needed_kinds(&p), vec![KeyKind::Ed25519]);
        let with_eth = filled.replace("\"sol-cold\"]", "\"sol-cold\", \"eth-cold\"]")
            + &keys_block(
                "eth-cold",
                Chain::Ethereum,
                "1",
                "kinko-eth-cold",
                // The secp256k1 generator, compressed: a valid point.
                &hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                    .unwrap(),
                "",
            );
        let p2 = Policy::from_toml(with_eth.as_bytes()).unwrap();
        assert_eq!(
            needed_kinds(&p2),
            vec![KeyKind::Ed25519, KeyKind::Secp256k1]
        );
        assert!(Policy::from_toml(POLICY_TEMPLATE.as_bytes()).is_err());
    }
}
