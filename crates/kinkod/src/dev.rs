//! `kinkod dev`: a complete development set-up under one directory, made on first run.
//!
//! Everything here is for development only: keys in a software token whose PIN sits in a file,
//! a local CA, officer keys in plain files. It says so loudly.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kinko_hsm::{Hsm, KeyKind, PinSource};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use secrecy::SecretString;

/// Officers of the development policy: id, roles, group.
pub(crate) const OFFICERS: [(&str, &str, &str); 3] = [
    ("alice", "\"approver\", \"admin\", \"freezer\"", "treasury"),
    ("bob", "\"approver\", \"admin\"", "treasury"),
    ("carol", "\"approver\", \"admin\", \"freezer\"", "risk"),
];
/// The development requester.
pub(crate) const REQUESTER: &str = "ledger";

/// One chain of the development set-up: its signing key, and the allowlisted hot wallet its
/// refill rule sends to.
struct DevChain {
    /// The key's policy name.
    name: &'static str,
    chain: &'static str,
    network: &'static str,
    hsm_label: &'static str,
    kind: KeyKind,
    /// The address book and the hot wallet in it.
    book: &'static str,
    hot: &'static str,
    /// The refill rule's asset, and its limits and approvals (TOML lines).
    asset: &'static str,
    limits: &'static str,
}

/// The development chains, in the order their keys are made.
const CHAINS: [DevChain; 3] = [
    DevChain {
        name: "eth-dev",
        chain: "ethereum",
        network: "11155111",
        hsm_label: "kinko-eth-dev",
        kind: KeyKind::Secp256k1,
        book: "eth-hot",
        hot: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        asset: "ETH",
        limits: "max_amount = \"100\"\nmax_fee = \"0.01\"\napprovals = { count = 2, roles = [\"approver\"], lifetime = \"4h\" }\nvelocity = [{ window = \"24h\", max_total = \"500\", max_count = 50 }]\n",
    },
    DevChain {
        name: "btc-dev",
        chain: "bitcoin",
        network: "testnet",
        hsm_label: "kinko-btc-dev",
        kind: KeyKind::Secp256k1,
        book: "btc-hot",
        hot: "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
        asset: "BTC",
        limits: "max_amount = \"10\"\nmax_fee = \"0.001\"\napprovals = { count = 2, roles = [\"approver\"], lifetime = \"4h\" }\n",
    },
    DevChain {
        name: "sol-dev",
        chain: "solana",
        network: "devnet",
        hsm_label: "kinko-sol-dev",
        kind: KeyKind::Ed25519,
        book: "sol-hot",
        hot: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
        asset: "SOL",
        limits: "max_amount = \"1000\"\nmax_fee = \"0.001\"\napprovals = { count = 2, roles = [\"approver\"], lifetime = \"4h\" }\n",
    },
];
const LOG_KEY: &str = "kinko-log";
/// The development log's origin (checkpoint name).
const DEV_ORIGIN: &str = "kinko.dev/log";

fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    Ok(hex::encode(b))
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes the set-up if `dir/kinkod.toml` does not exist yet; returns the config path.
pub(crate) async fn ensure(
    dir: &Path,
    listen: SocketAddr,
    token_label: &str,
    store_postgres: Option<&str>,
) -> Result<PathBuf, String> {
    let config_path = dir.join("kinkod.toml");
    if config_path.exists() {
        eprintln!(
            "kinkod dev: using the existing development set-up in {}",
            dir.display()
        );
        return Ok(config_path);
    }
    let module = std::env::var_os("KINKO_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    // SoftHSM2 keeps its tokens where SOFTHSM2_CONF says: never in the system's own store.
    // (Another module, e.g. Kryoptic with KRYOPTIC_CONF, is configured by its own variables.)
    let softhsm = module
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("softhsm"));
    let token_place = if softhsm {
        let conf = std::env::var_os("SOFTHSM2_CONF").ok_or(
            "kinkod dev needs SOFTHSM2_CONF pointing at a SoftHSM2 configuration of its own; run scripts/dev.sh",
        )?;
        if Path::new(&conf).starts_with("/etc") {
            return Err(
                "kinkod dev refuses the system-wide SoftHSM2 configuration; run scripts/dev.sh"
                    .into(),
            );
        }
        format!("SoftHSM2, SOFTHSM2_CONF={}", Path::new(&conf).display())
    } else {
        format!("module {}", module.display())
    };
    mkdir(dir)?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for sub in ["tls", "officers", "requesters", "hsm"] {
        mkdir(&dir.join(sub))?;
    }

    // The token and its keys.
    let pin_path = dir.join("hsm/user.pin");
    let user_pin = random_hex(16)?;
    let so_pin = random_hex(16)?;
    write_private(&pin_path, user_pin.as_bytes())?;
    write_private(&dir.join("hsm/so.pin"), so_pin.as_bytes())?;
    {
        let (module, label) = (module.clone(), token_label.to_string());
        let (so, user) = (SecretString::from(so_pin), SecretString::from(user_pin));
        tokio::task::spawn_blocking(move || {
            kinko_hsm::provision::init_token(&module, &label, &so, &user)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("creating token {token_label} ({token_place}): {e}"))?;
    }
    let hsm_config = kinko_hsm::HsmConfig {
        module: module.clone(),
        token_label: token_label.to_string(),
        pin: PinSource::File(pin_path.clone()),
        pool_size: 4,
    };
    let hsm = Hsm::open(&hsm_config).await.map_err(|e| e.to_string())?;
    // Keys only of the kinds the token can make: a token without secp256k1 (Kryoptic, some
    // cloud HSMs) gets a Solana-only set-up, and kinkod says so.
    let caps = hsm.probe().await.map_err(|e| e.to_string())?;
    if !caps.ed25519 {
        return Err(format!(
            "token {token_label} ({token_place}) cannot make Ed25519 keys, which the audit log needs"
        ));
    }
    let mut key_lines = String::new();
    let mut made = Vec::new();
    for c in &CHAINS {
        if c.kind == KeyKind::Secp256k1 && !caps.secp256k1_ecdsa {
            let _ = writeln!(
                key_lines,
                "{}: left out, the token has no secp256k1 ECDSA",
                c.name
            );
            continue;
        }
        let pk = hsm
            .generate_key(c.hsm_label, c.kind)
            .await
            .map_err(|e| e.to_string())?;
        let pk = hex::encode(pk.to_bytes());
        let _ = writeln!(
            key_lines,
            "{}: {} {}, public key {pk}",
            c.name, c.chain, c.network
        );
        made.push((c, pk));
    }
    let kinko_hsm::PublicKey::Ed25519(log_pk) = hsm
        .generate_key(LOG_KEY, KeyKind::Ed25519)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("the log key is not an Ed25519 key".into());
    };
    // The auditors' verifier key (in production they get it out of band; kinkod prints it).
    let vkey = kinko_audit::note::VerifierKey::new(DEV_ORIGIN, &log_pk.to_bytes())
        .map_err(|e| e.to_string())?;
    write_public(&dir.join("audit-log.vkey"), format!("{vkey}\n").as_bytes())?;

    // The CA and certificates.
    let ca_key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "Kinko development CA (NOT FOR PRODUCTION)",
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| e.to_string())?;
    write_public(&dir.join("tls/ca.pem"), ca_cert.pem().as_bytes())?;
    let issuer = Issuer::new(ca_params, ca_key);
    // A leaf certificate: its PEM, its key's PEM, and the SHA-256 of its DER (what the config
    // pins for a client).
    let leaf = |cn: &str, server: bool| -> Result<(String, String, String), String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let sans = if server {
            vec!["localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).map_err(|e| e.to_string())?;
        if server {
            p.subject_alt_names
                .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        }
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        let fingerprint = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(cert.der()))
        };
        Ok((cert.pem(), key.serialize_pem(), fingerprint))
    };
    let (cert, key, _) = leaf("localhost", true)?;
    write_public(&dir.join("tls/server.pem"), cert.as_bytes())?;
    write_private(&dir.join("tls/server.key"), key.as_bytes())?;
    // Certificate common name and roles (a TOML array's contents).
    let mut clients = vec![(REQUESTER.to_string(), r#""requester""#)];
    clients.extend(
        OFFICERS
            .iter()
            .map(|(id, ..)| (id.to_string(), r#""officer""#)),
    );
    clients.push(("auditor".to_string(), r#""auditor", "metrics""#));
    clients.push(("admin".to_string(), r#""admin""#));
    let mut principals = String::new();
    for (cn, roles) in &clients {
        let (cert, key, fingerprint) = leaf(cn, false)?;
        write_public(&dir.join(format!("tls/{cn}.pem")), cert.as_bytes())?;
        write_private(&dir.join(format!("tls/{cn}.key")), key.as_bytes())?;
        let _ = writeln!(
            principals,
            "[[principals]]\nname = \"{cn}\"\ncertificate_cn = \"{cn}\"\nroles = [{roles}]\ncertificate_sha256 = [\"{fingerprint}\"]\n"
        );
    }

    // Officer and requester Ed25519 keys (seeds in files: development only).
    let mut officers = String::new();
    for (id, roles, group) in OFFICERS {
        let vk = new_ed25519_key(&dir.join(format!("officers/{id}.key")))?;
        let _ = writeln!(
            officers,
            "[[officers]]\nid = \"{id}\"\nname = \"{id} (development)\"\nroles = [{roles}]\ngroup = \"{group}\"\npublic_key = \"{vk}\"\n"
        );
    }
    let requester_vk = new_ed25519_key(&dir.join(format!("requesters/{REQUESTER}.key")))?;

    let policy = dev_policy(&officers, &requester_vk, &made);
    write_public(&dir.join("policy.toml"), policy.as_bytes())?;
    kinko_policy::Policy::from_toml(policy.as_bytes())
        .map_err(|e| format!("the generated development policy does not load: {e}"))?;

    let config = format!(
        "# kinkod development configuration, made by `kinkod dev`. NOT FOR PRODUCTION.\n\n\
         [server]\nlisten = \"{listen}\"\n\n\
         [tls]\nclient_ca = \"tls/ca.pem\"\ncert = \"tls/server.pem\"\nkey = \"tls/server.key\"\n\n\
         {principals}\
         [hsm]\nmodule = \"{module}\"\ntoken_label = \"{token_label}\"\npin = {{ file = \"hsm/user.pin\" }}\npool_size = 4\n\n\
         {store}\
         [audit]\norigin = \"{DEV_ORIGIN}\"\nlog_key_label = \"{LOG_KEY}\"\n\n\
         [policy]\npath = \"policy.toml\"\n",
        module = module.display(),
        store = match store_postgres {
            None => "[store]\npath = \"kinko.db\"\n\n".to_string(),
            Some(url) => format!(
                "[store]\npostgres = \"{}\"\n\n",
                url.replace('\\', "\\\\").replace('"', "\\\"")
            ),
        },
    );
    write_public(&config_path, config.as_bytes())?;
    eprintln!(
        "\n*** DEVELOPMENT SET-UP — NOT FOR PRODUCTION ***\n\
         Keys live in a software token whose PIN is in a file, the CA is local, and the\n\
         officers' keys are plain files. Made in {dir}:\n  \
         config          {dir}/kinkod.toml\n  \
         policy          {dir}/policy.toml\n  \
         TLS             {dir}/tls/ (ca.pem, server, ledger, alice, bob, carol, auditor, admin)\n  \
         officer keys    {dir}/officers/*.key\n  \
         requester key   {dir}/requesters/{REQUESTER}.key\n  \
         HSM token       {token_label} ({token_place}), PIN {dir}/hsm/user.pin\n  \
         store and log   {dir}/kinko.db (log key {LOG_KEY}; verifier key in {dir}/audit-log.vkey;\n                  \
         files for auditors: kinkod --config {dir}/kinkod.toml export-log --out DIR)\n  \
         signing keys:\n    {keys}\n",
        dir = dir.display(),
        keys = key_lines.trim_end().replace('\n', "\n    "),
    );
    Ok(config_path)
}

/// Writes a fresh Ed25519 seed (hex) to `path` (mode 600) and returns the public key (hex).
fn new_ed25519_key(path: &Path) -> Result<String, String> {
    let mut seed = zeroize_seed()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    write_private(path, hex::encode(seed).as_bytes())?;
    seed.fill(0);
    Ok(hex::encode(key.verifying_key().to_bytes()))
}

fn zeroize_seed() -> Result<[u8; 32], String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
    Ok(seed)
}

/// The development policy for the chains made (`made`: each with its key's public key, hex).
fn dev_policy(officers: &str, requester_vk: &str, made: &[(&DevChain, String)]) -> String {
    let names: Vec<String> = made
        .iter()
        .map(|(c, _)| format!("\"{}\"", c.name))
        .collect();
    let mut keys = String::new();
    let mut books = String::new();
    let mut rules = String::new();
    for (c, pk) in made {
        let _ = write!(
            keys,
            "\n[[keys]]\nname = \"{}\"\nchain = \"{}\"\nnetwork = \"{}\"\nhsm_label = \"{}\"\npublic_key = \"{pk}\"\n",
            c.name, c.chain, c.network, c.hsm_label
        );
        let _ = write!(
            books,
            "\n[[address_books]]\nname = \"{}\"\nchain = \"{}\"\ncool_down = \"72h\"\n\n[[address_books.entries]]\naddress = \"{}\"\nlabel = \"development hot wallet\"\nadded_at = \"2026-01-01T00:00:00Z\"\n",
            c.book, c.chain, c.hot
        );
        let _ = write!(
            rules,
            "\n[[rules]]\nname = \"{book}-refill\"\nchain = \"{}\"\nasset = \"{}\"\nkinds = [\"transfer\"]\ndestination_book = \"{book}\"\n{}",
            c.chain,
            c.asset,
            c.limits,
            book = c.book
        );
    }
    format!(
        r#"# Development policy made by `kinkod dev`. NOT FOR PRODUCTION.
version = 1
description = "Development: refills of allowlisted hot wallets need 2 approvers; everything else is denied"

{officers}
[[requesters]]
id = "{REQUESTER}"
public_key = "{requester_vk}"
keys = [{names}]
{keys}{books}
[[rules]]
name = "deny-contract-calls"
kinds = ["token_approve", "contract_call", "safe_delegate_call", "safe_self_call"]
deny = "contract calls and token approvals are never signed"
{rules}
[governance.install]
quorum = {{ count = 2, roles = ["admin"], distinct_groups = 2, lifetime = "72h" }}
time_lock = "1h"
veto_roles = []

[governance.freeze]
roles = ["freezer"]
lifetime = "1h"

[governance.unfreeze]
quorum = {{ count = 2, roles = ["admin"], distinct_groups = 2, lifetime = "24h" }}
delay = "1h"
"#,
        names = names.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICERS_TOML: &str = "[[officers]]\nid = \"alice\"\nname = \"alice\"\nroles = [\"approver\", \"admin\", \"freezer\"]\ngroup = \"treasury\"\npublic_key = \"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\n\n[[officers]]\nid = \"carol\"\nname = \"carol\"\nroles = [\"approver\", \"admin\", \"freezer\"]\ngroup = \"risk\"\npublic_key = \"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c\"\n";
    const REQUESTER_VK: &str = "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025";
    const SECP: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    const ED: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    /// The development policy loads with every chain, and with Solana only (a token without
    /// secp256k1): then it names no Ethereum or Bitcoin key, book or rule.
    #[test]
    fn the_dev_policy_loads_with_every_chain_and_with_solana_only() {
        let all: Vec<(&DevChain, String)> = CHAINS
            .iter()
            .map(|c| {
                let pk = if c.kind == KeyKind::Secp256k1 {
                    SECP
                } else {
                    ED
                };
                (c, pk.to_string())
            })
            .collect();
        let p = kinko_policy::Policy::from_toml(
            dev_policy(OFFICERS_TOML, REQUESTER_VK, &all).as_bytes(),
        )
        .unwrap();
        assert_eq!(p.keys().count(), 3);

        let solana: Vec<(&DevChain, String)> = all
            .into_iter()
            .filter(|(c, _)| c.kind == KeyKind::Ed25519)
            .collect();
        let text = dev_policy(OFFICERS_TOML, REQUESTER_VK, &solana);
        let p = kinko_policy::Policy::from_toml(text.as_bytes()).unwrap();
        let names: Vec<&str> = p.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["sol-dev"]);
        for absent in ["eth-", "btc-", "ethereum", "bitcoin"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        assert!(text.contains("name = \"sol-hot-refill\""), "{text}");
    }
}
