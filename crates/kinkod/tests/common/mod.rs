//! Helpers shared by the end-to-end tests: start a real kinkod, connect with a certificate of
//! `kinkod dev`'s CA, read keys and reasons.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{TxKind, U256};
use kinko_intent::Chain;
use kinko_policy::request::RequestToSign;
use kinko_policy::{ApprovalMessage, Policy, SignedApproval, Subject, Verdict};
use kinko_proto::v1 as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A running kinkod; killed when dropped.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) addr: String,
    /// The audit log's verifier key, as kinkod prints it.
    pub(crate) vkey: String,
    /// Signing keys by policy name, as `kinkod dev` printed them on first start
    /// ("NAME: CHAIN NETWORK, public key HEX").
    pub(crate) keys: HashMap<String, Vec<u8>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A token label unique to this process and moment.
pub(crate) fn unique_label(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{nanos:x}", std::process::id())
}

/// Parses one "NAME: CHAIN NETWORK, public key HEX" line of `kinkod dev`'s banner.
fn key_line(line: &str) -> Option<(String, Vec<u8>)> {
    let (name, rest) = line.trim().split_once(": ")?;
    let (_, hex_key) = rest.split_once(", public key ")?;
    Some((name.to_string(), hex::decode(hex_key.trim()).ok()?))
}

/// Starts kinkod (`dev` on first start, `--config` afterwards) and waits until it listens.
pub(crate) fn start(dir: &Path, label: &str, port: u16, first: bool) -> Daemon {
    kinko_hsm::testing::ensure_softhsm2_conf().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinkod"));
    if first {
        cmd.args(["dev", "--data-dir"]).arg(dir).args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token-label",
            label,
        ]);
    } else {
        cmd.arg("--config").arg(dir.join("kinkod.toml"));
    }
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut vkey = String::new();
        let mut keys = HashMap::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("kinkod| {line}");
            if let Some(k) = line.strip_prefix("kinkod: audit log key ") {
                vkey = k.to_string();
            }
            if let Some((name, pk)) = key_line(&line) {
                keys.insert(name, pk);
            }
            if line.contains("kinkod: listening on") {
                let _ = tx.send((vkey.clone(), keys.clone()));
            }
        }
    });
    let (vkey, keys) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("kinkod did not start listening");
    Daemon {
        child,
        dir: dir.to_path_buf(),
        addr: format!("https://localhost:{port}"),
        vkey,
        keys,
    }
}

/// A channel to `d` presenting the certificate of principal `who`.
pub(crate) async fn channel(d: &Daemon, who: &str) -> Channel {
    let read = |p: &str| std::fs::read(d.dir.join(p)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("tls/ca.pem")))
        .identity(Identity::from_pem(
            read(&format!("tls/{who}.pem")),
            read(&format!("tls/{who}.key")),
        ))
        .domain_name("localhost");
    Channel::from_shared(d.addr.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// An Ed25519 key from a hex seed file made by `kinkod dev`.
pub(crate) fn ed25519_key(path: &Path) -> ed25519_dalek::SigningKey {
    let hex_seed = std::fs::read_to_string(path).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed.trim(), &mut seed).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// The stable reason code of a refusal.
pub(crate) fn reason(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("kinko-reason")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The requester pipeline's submission, signed with the requester key.
pub(crate) fn submission(
    dir: &Path,
    key_name: &str,
    chain: Chain,
    payload: Vec<u8>,
    idem: &str,
) -> pb::SubmitWithdrawalRequest {
    let key = ed25519_key(&dir.join("requesters/ledger.key"));
    let reference = format!("ledger withdrawal {idem}");
    let sig = RequestToSign {
        requester_id: "ledger",
        key_name,
        chain,
        idempotency_key: idem,
        reference: &reference,
        payload: &payload,
    }
    .sign(&key)
    .unwrap();
    let pb_chain = match chain {
        Chain::Bitcoin => pb::Chain::Bitcoin,
        Chain::Solana => pb::Chain::Solana,
        Chain::Ethereum => pb::Chain::Ethereum,
    };
    pb::SubmitWithdrawalRequest {
        key_name: key_name.into(),
        chain: pb_chain as i32,
        payload,
        idempotency_key: idem.into(),
        reference,
        requester_signature: sig.to_vec(),
    }
}

/// An unsigned EIP-1559 transfer on Sepolia (the development key's network).
pub(crate) fn eth_transfer(nonce: u64, value_wei: u128, to: alloy_primitives::Address) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: 11_155_111,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::from(value_wei),
        access_list: Default::default(),
        input: Default::default(),
    };
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

/// An officer's signed governance approval (freeze, unfreeze, install) under the policy file
/// in the data directory.
pub(crate) fn governance(
    d: &Daemon,
    officer: &str,
    subject: Subject,
    verdict: Verdict,
) -> pb::GovernanceApproval {
    let policy = Policy::from_toml(&std::fs::read(d.dir.join("policy.toml")).unwrap()).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let msg = ApprovalMessage {
        policy_hash: policy.hash(),
        subject: subject.clone(),
        officer_id: officer.into(),
        verdict,
        issued_at: now,
        expires_at: now + 1800,
    };
    let signed = SignedApproval::sign(
        &msg,
        &ed25519_key(&d.dir.join(format!("officers/{officer}.key"))),
    )
    .unwrap();
    pb::GovernanceApproval {
        subject_id: subject.request_id().to_string(),
        officer_id: officer.into(),
        message: signed.message,
        signature: signed.signature.to_vec(),
    }
}
