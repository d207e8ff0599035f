//! Support for the end-to-end and red-team tests: start a real kinkod, connect with a
//! certificate of `kinkod dev`'s CA, sign submissions and approvals as the pipeline and the
//! officers do, read the audit log and refusal reasons.
//!
//! Tests panic on unexpected conditions, so `unwrap` is the point here.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{TxKind, U256};
use kinko_intent::Chain;
use kinko_policy::request::RequestToSign;
pub use kinko_policy::{ApprovalMessage, FreezeId, Policy, SignedApproval, Subject, Verdict};
pub use kinko_proto::v1 as pb;

pub mod webdriver;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The path of a workspace binary (`kinkod`, `kinko`, built from the package of that name).
///
/// Cargo provides `CARGO_BIN_EXE_*` only for a package's own binaries, so the first call in a
/// test process builds it with the cargo that runs the tests (`$CARGO`), into the same target
/// directory and profile as the test executable (found from `current_exe`): a no-op when it is
/// up to date, and a stale binary is never tested.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = profile_dir.join(name);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let target_dir = profile_dir.parent().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", name, "--bin", name])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
            None => panic!("unexpected test executable path {}", exe.display()),
        }
        assert!(cmd.status().unwrap().success(), "building {name} failed");
        built.push(name.to_string());
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A running kinkod; killed when dropped.
pub struct Daemon {
    child: Child,
    /// The data directory (`kinkod dev` layout).
    pub dir: PathBuf,
    /// The gRPC address, `https://localhost:PORT`.
    pub addr: String,
    /// The audit log's verifier key, as kinkod prints it.
    pub vkey: String,
    /// Signing keys by policy name, as `kinkod dev` printed them on first start
    /// ("NAME: CHAIN NETWORK, public key HEX").
    pub keys: HashMap<String, Vec<u8>>,
    /// Every line kinkod wrote to standard error so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not exited, not a zombie): a daemon that recovers
    /// "by itself" is the same process throughout.
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    }

    /// The lines kinkod has written to standard error so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The exit code once the process has exited (None while it runs, or when a signal ended
    /// it).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.try_wait().ok().flatten().and_then(|s| s.code())
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free at the moment of the call, and not one this process was given in its last
/// 12,000 calls (the port is released on return, so two calls could otherwise hand out the same
/// one).
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (`ip_local_port_range`, 32768+ by default): a port
    // picked there could be taken by any outgoing connection or `bind(0)` between this call and
    // kinkod's bind (or its restart on the same port), and kinkod would exit at start. Each test
    // process starts at its own offset and never hands out a port twice.
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let mut guard = NEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let next = guard.get_or_insert((std::process::id() % u32::from(SPAN)) as u16);
    for _ in 0..SPAN {
        let port = LOW + *next;
        *next = (*next + 1) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// A token label unique to this process and moment.
pub fn unique_label(tag: &str) -> String {
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

/// Whether this run of the suite keeps kinkod's store in PostgreSQL
/// (`KINKO_TEST_BACKEND=postgres`, with the test cluster in `KINKO_TEST_PG_URL`); else SQLite.
pub fn on_postgres() -> bool {
    std::env::var("KINKO_TEST_BACKEND").is_ok_and(|b| b.trim() == "postgres")
}

/// For a test that edits the SQLite file itself: `true` (and says so) on the PostgreSQL run,
/// where it does not apply; the SQLite run of the suite runs it.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("SQLite only ({what}): this test runs in the suite's SQLite run");
    }
    on_postgres()
}

/// `kinkod dev` arguments for the backend of this run: a fresh PostgreSQL database each.
fn store_args() -> Vec<String> {
    if on_postgres() {
        let url = kinko_store::testing::fresh_database("kinkod").expect("a test database");
        vec!["--store-postgres".into(), url]
    } else {
        Vec::new()
    }
}

/// The store of the data directory `dir`, as its kinkod.toml names it.
pub fn open_store(dir: &Path) -> kinko_store::Store {
    let text = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    match config["store"].get("postgres").and_then(|v| v.as_str()) {
        Some(url) => kinko_store::Store::open_postgres(url).unwrap(),
        None => {
            kinko_store::Store::open(&dir.join(config["store"]["path"].as_str().unwrap())).unwrap()
        }
    }
}

/// Starts kinkod (`dev` on first start, `--config` afterwards) and waits until it listens.
pub fn start(dir: &Path, label: &str, port: u16, first: bool) -> Daemon {
    start_with_env(dir, label, port, first, &[])
}

/// [`start`] with extra environment variables (e.g. `KINKO_FAILPOINT`).
pub fn start_with_env(
    dir: &Path,
    label: &str,
    port: u16,
    first: bool,
    env: &[(&str, &str)],
) -> Daemon {
    kinko_hsm::testing::ensure_softhsm2_conf().unwrap();
    let mut cmd = Command::new(bin("kinkod"));
    if first {
        cmd.args(["dev", "--data-dir"]).arg(dir).args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token-label",
            label,
        ]);
        cmd.args(store_args());
    } else {
        cmd.arg("--config").arg(dir.join("kinkod.toml"));
    }
    cmd.envs(env.iter().copied());
    launch(cmd, dir, &format!("https://localhost:{port}"))
}

/// Starts an initialized daemon through `wrapper` (e.g. `ip netns exec NAME`, which execs
/// kinkod in place: the pid is kinkod's), reached by clients at `addr` (`https://HOST:PORT`).
pub fn start_wrapped(dir: &Path, wrapper: &[&str], addr: &str) -> Daemon {
    kinko_hsm::testing::ensure_softhsm2_conf().unwrap();
    let mut cmd = Command::new(wrapper[0]);
    cmd.args(&wrapper[1..])
        .arg(bin("kinkod"))
        .arg("--config")
        .arg(dir.join("kinkod.toml"));
    launch(cmd, dir, addr)
}

/// Starts an initialized daemon from another kinkod executable (`exe`), reached at `addr`.
pub fn start_executable(exe: &Path, dir: &Path, addr: &str) -> Daemon {
    kinko_hsm::testing::ensure_softhsm2_conf().unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg("--config").arg(dir.join("kinkod.toml"));
    launch(cmd, dir, addr)
}

fn launch(mut cmd: Command, dir: &Path, addr: &str) -> Daemon {
    cmd.stderr(Stdio::piped());
    // A test may ask for another log level (`start_with_env`); warnings by default.
    if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
        cmd.env("RUST_LOG", "warn,cryptoki::mechanism=off");
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log_lines = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        let mut vkey = String::new();
        let mut keys = HashMap::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("kinkod| {line}");
            log_lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line.clone());
            // The log goes to a pipe, not a terminal: plain text, never colour codes.
            if line.contains('\u{1b}') {
                let _ = tx.send(Err(format!(
                    "terminal escape codes in a non-terminal log: {line:?}"
                )));
                return;
            }
            if let Some(k) = line.strip_prefix("kinkod: audit log key ") {
                vkey = k.to_string();
            }
            if let Some((name, pk)) = key_line(&line) {
                keys.insert(name, pk);
            }
            if line.contains("kinkod: listening on") {
                let _ = tx.send(Ok((vkey.clone(), keys.clone())));
            }
        }
    });
    let (vkey, keys) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("kinkod did not start listening")
        .unwrap_or_else(|e| panic!("{e}"));
    Daemon {
        child,
        dir: dir.to_path_buf(),
        addr: addr.to_string(),
        vkey,
        keys,
        log,
    }
}

/// A channel to `d` presenting the certificate of principal `who`.
pub async fn channel(d: &Daemon, who: &str) -> Channel {
    try_channel(d, who).await.unwrap()
}

/// [`channel`], for a daemon that may be down (killed, cut off): connecting fails within 2 s.
pub async fn try_channel(d: &Daemon, who: &str) -> Result<Channel, String> {
    let read = |p: &str| std::fs::read(d.dir.join(p)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("tls/ca.pem")))
        .identity(Identity::from_pem(
            read(&format!("tls/{who}.pem")),
            read(&format!("tls/{who}.key")),
        ))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(d.addr.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// An Ed25519 key from a hex seed file made by `kinkod dev`.
pub fn ed25519_key(path: &Path) -> ed25519_dalek::SigningKey {
    let hex_seed = std::fs::read_to_string(path).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed.trim(), &mut seed).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// The stable reason code of a refusal.
pub fn reason(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("kinko-reason")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The requester pipeline's submission, signed with the requester key.
pub fn submission(
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
pub fn eth_transfer(nonce: u64, value_wei: u128, to: alloy_primitives::Address) -> Vec<u8> {
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
pub fn governance(
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

/// `kinkod dev --init-only` in `dir`, then `edit(dir)` before the first real start (the policy
/// file is installed at the first start; later edits are refused).
pub fn init(dir: &Path, label: &str, port: u16, edit: impl FnOnce(&Path)) {
    kinko_hsm::testing::ensure_softhsm2_conf().unwrap();
    let status = Command::new(bin("kinkod"))
        .args(["dev", "--init-only", "--data-dir"])
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token-label",
            label,
        ])
        .args(store_args())
        .env("RUST_LOG", "warn,cryptoki::mechanism=off")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "kinkod dev --init-only failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    edit(dir);
}

/// Replaces the first `from` in the file with `to` (which must be there).
pub fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Starts kinkod on `dir`'s config expecting it to refuse; returns what it printed. A kinkod
/// that starts after all is killed within a minute and the test fails (never hangs).
pub fn start_fails(dir: &Path) -> String {
    let mut child = Command::new(bin("kinkod"))
        .arg("--config")
        .arg(dir.join("kinkod.toml"))
        .env(
            "RUST_LOG",
            // Info: the log the refusal is read from, as an operator's file would hold it.
            std::env::var("KINKO_TEST_RUST_LOG")
                .unwrap_or_else(|_| "info,cryptoki::mechanism=off".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().unwrap();
    // Its log went to a pipe, not a terminal: plain text, no colour codes.
    assert!(
        !text.contains('\u{1b}'),
        "kinkod wrote terminal escape codes into a non-terminal log:\n{text}"
    );
    match status {
        Some(s) if !s.success() => text,
        _ => panic!("kinkod started but should not have:\n{text}"),
    }
}

/// `kinkod export-log` of `dir`'s store into a new directory `out` (the documented files the
/// offline verifier reads); returns `out`.
pub fn export_log(dir: &Path, out: &Path) -> PathBuf {
    let o = Command::new(bin("kinkod"))
        .arg("--config")
        .arg(dir.join("kinkod.toml"))
        .arg("export-log")
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn,cryptoki::mechanism=off")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "export-log: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.to_path_buf()
}

/// Copies a directory tree (the data directory, to replay each edit on the same history).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            std::fs::set_permissions(&target, e.metadata().unwrap().permissions()).unwrap();
        }
    }
}

/// The policy file in force in the data directory.
pub fn policy(dir: &Path) -> Policy {
    Policy::from_toml(&std::fs::read(dir.join("policy.toml")).unwrap()).unwrap()
}

/// What an honest officer's client does: fetch the raw payload, decode it locally with the key
/// its own policy pins, and sign over the digest it computed (never the daemon's).
pub async fn officer_approval(
    d: &Daemon,
    officer: &str,
    request_id: &str,
    verdict: Verdict,
) -> pb::SignedApproval {
    try_officer_approval(d, officer, request_id, verdict)
        .await
        .unwrap()
}

/// [`officer_approval`], for a daemon that may be down: fetching the request may fail.
pub async fn try_officer_approval(
    d: &Daemon,
    officer: &str,
    request_id: &str,
    verdict: Verdict,
) -> Result<pb::SignedApproval, String> {
    let mut client =
        pb::approval_service_client::ApprovalServiceClient::new(try_channel(d, officer).await?);
    let req = client
        .get_request(pb::RequestId {
            request_id: request_id.into(),
        })
        .await
        .map_err(|e| format!("{e:?}"))?
        .into_inner();
    let policy = policy(&d.dir);
    let key = policy.key(&req.key_name).unwrap();
    let ctx = kinko_chain::DecodeContext {
        network: &key.network,
        public_key: key.public_key.as_deref().unwrap(),
        tokens: policy.token_registry(),
    };
    let intent = kinko_chain::decode(key.chain, &req.payload, &ctx).unwrap();
    assert_eq!(
        intent.digest().unwrap().0.as_slice(),
        req.intent_digest.as_slice()
    );
    Ok(sign_approval(
        d,
        officer,
        officer,
        Subject::Withdrawal {
            request_id: request_id.into(),
            intent_digest: intent.digest().unwrap(),
        },
        verdict,
        3600,
    ))
}

/// An approval message with any subject and lifetime, signed with the key file of
/// `key_owner` but naming `officer` (an honest client has them equal).
pub fn sign_approval(
    d: &Daemon,
    officer: &str,
    key_owner: &str,
    subject: Subject,
    verdict: Verdict,
    valid_for: i64,
) -> pb::SignedApproval {
    let now = jiff::Timestamp::now().as_second();
    let msg = ApprovalMessage {
        policy_hash: policy(&d.dir).hash(),
        subject: subject.clone(),
        officer_id: officer.into(),
        verdict,
        issued_at: now,
        expires_at: now + valid_for,
    };
    let signed = SignedApproval::sign(
        &msg,
        &ed25519_key(&d.dir.join(format!("officers/{key_owner}.key"))),
    )
    .unwrap();
    pb::SignedApproval {
        request_id: subject.request_id().to_string(),
        officer_id: officer.into(),
        message: signed.message,
        signature: signed.signature.to_vec(),
    }
}

/// Every audit record, parsed, streamed over the AuditService.
pub async fn audit_records(d: &Daemon) -> Vec<serde_json::Value> {
    use tokio_stream::StreamExt as _;
    let mut auditor =
        pb::audit_service_client::AuditServiceClient::new(channel(d, "auditor").await);
    let mut stream = auditor
        .stream_records(pb::StreamRecordsRequest { from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.next().await {
        out.push(serde_json::from_str(&r.unwrap().json).unwrap());
    }
    out
}

/// A record's event type (`request_received`, `refusal`, …).
pub fn event_type(r: &serde_json::Value) -> &str {
    r["event"]["type"].as_str().unwrap_or_default()
}

/// The refusal records of the log with their codes, in order.
pub fn refusal_codes(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| event_type(r) == "refusal")
        .map(|r| r["event"]["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// One HTTP/1.1 GET over TLS 1.3 to `127.0.0.1:port`, presenting `who`'s certificate (the
/// metrics listener); returns the whole response.
pub async fn https_get(d: &Daemon, port: u16, who: &str, path: &str) -> String {
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let read = |p: &str| std::fs::read(d.dir.join(p)).unwrap();
    let certs = |pem: &[u8]| -> Vec<rustls::pki_types::CertificateDer<'static>> {
        rustls::pki_types::CertificateDer::pem_slice_iter(pem)
            .map(|c| c.unwrap())
            .collect()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&read("tls/ca.pem")) {
        roots.add(c).unwrap();
    }
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(&format!("tls/{who}.key"))).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(certs(&read(&format!("tls/{who}.pem"))), key)
    .unwrap();
    // As Prometheus and curl do: offer HTTP/1.1 in ALPN (a listener that only speaks h2 refuses
    // the handshake).
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    out
}

/// A running `kinko-witness` for one log; killed when dropped.
pub struct WitnessProcess {
    child: Child,
    /// The witness's directory (witness.toml, witness.key, witness.db).
    pub dir: PathBuf,
    /// Its `add-checkpoint` URL prefix, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its cosigner key (vkey).
    pub vkey: String,
}

impl WitnessProcess {
    /// Stops the process (SIGSTOP): connections are accepted by the kernel and never answered,
    /// as for a witness that hangs.
    pub fn pause(&self) {
        assert!(
            Command::new("kill")
                .args(["-STOP", &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Resumes a paused witness.
    pub fn resume(&self) {
        assert!(
            Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    /// The size of the latest checkpoint the witness cosigned for `origin` (0 if none), read
    /// from its own database.
    pub fn cosigned_size(&self, origin: &str) -> u64 {
        let db = rusqlite::Connection::open(self.dir.join("witness.db")).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.query_row("SELECT size FROM latest WHERE origin = ?1", [origin], |r| {
            r.get::<_, i64>(0)
        })
        .map(|s| s as u64)
        .unwrap_or(0)
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a witness named `name` in `dir` (if it is not there yet) that cosigns for the log
/// of verifier key `log_vkey`, and starts it on a free port of 127.0.0.1 (its state, key and
/// port survive a restart from the same `dir`).
pub fn start_witness(dir: &Path, name: &str, log_vkey: &str) -> WitnessProcess {
    let config = dir.join("witness.toml");
    if !config.exists() {
        let out = Command::new(bin("kinko-witness"))
            .arg("init")
            .arg(dir)
            .args(["--name", name, "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kinko-witness init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!("\n[[logs]]\nvkey = {log_vkey:?}\n"));
        std::fs::write(&config, text).unwrap();
    }
    let mut child = Command::new(bin("kinko-witness"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("KINKO_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("kinko-witness ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("kinko-witness did not start");
    let (vkey, url) = line.split_once(" listening on ").unwrap();
    WitnessProcess {
        child,
        dir: dir.to_path_buf(),
        url: url.to_string(),
        vkey: vkey.to_string(),
    }
}

/// Writes a witness policy (C2SP tlog-policy) naming `witnesses` (each with its URL) and the
/// quorum line `quorum` to `dir/witness-policy`, and adds a `[witness]` section using it to
/// `dir/kinkod.toml`, with `wait_ms` for witnessed signatures.
pub fn configure_witnesses(
    dir: &Path,
    witnesses: &[(&str, &WitnessProcess)],
    quorum: &str,
    wait_ms: u64,
) {
    let mut policy = String::from("# witnesses of this kinkod's log\n");
    for (name, w) in witnesses {
        policy.push_str(&format!("witness {name} {} {}\n", w.vkey, w.url));
    }
    policy.push_str(quorum);
    policy.push('\n');
    std::fs::write(dir.join("witness-policy"), policy).unwrap();
    let config = dir.join("kinkod.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    if !text.contains("[witness]") {
        text.push_str(&format!(
            "\n[witness]\npolicy = \"witness-policy\"\ntimeout_ms = 1000\nwait_ms = {wait_ms}\n"
        ));
        std::fs::write(&config, text).unwrap();
    }
}

/// What a tampering front end changes in the requests it serves (the Bybit pattern).
#[derive(Clone)]
pub enum Tamper {
    /// Serves this payload instead of the request's, with the honest intent and digest.
    Payload(Vec<u8>),
    /// Serves the honest payload and intent with the digest of another intent.
    Digest,
}

/// A malicious proxy in front of kinkod's approval service: it passes everything through but
/// tampers with each request it serves, and counts the votes it forwards.
pub struct TamperingProxy {
    upstream: pb::approval_service_client::ApprovalServiceClient<Channel>,
    tamper: Tamper,
    forwarded_votes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl pb::approval_service_server::ApprovalService for TamperingProxy {
    async fn list_pending(
        &self,
        req: tonic::Request<pb::ListPendingRequest>,
    ) -> Result<tonic::Response<pb::ListPendingResponse>, tonic::Status> {
        self.upstream.clone().list_pending(req.into_inner()).await
    }

    async fn get_request(
        &self,
        req: tonic::Request<pb::RequestId>,
    ) -> Result<tonic::Response<pb::Request>, tonic::Status> {
        let mut r = self
            .upstream
            .clone()
            .get_request(req.into_inner())
            .await?
            .into_inner();
        match &self.tamper {
            Tamper::Payload(p) => r.payload = p.clone(),
            Tamper::Digest => r.intent_digest = vec![0x42; 32],
        }
        Ok(tonic::Response::new(r))
    }

    async fn approve(
        &self,
        req: tonic::Request<pb::SignedApproval>,
    ) -> Result<tonic::Response<pb::Request>, tonic::Status> {
        self.forwarded_votes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.upstream.clone().approve(req.into_inner()).await
    }

    async fn reject(
        &self,
        req: tonic::Request<pb::SignedApproval>,
    ) -> Result<tonic::Response<pb::Request>, tonic::Status> {
        self.forwarded_votes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.upstream.clone().reject(req.into_inner()).await
    }
}

/// A running [`TamperingProxy`]: its port and the votes it forwarded; stopped when dropped.
pub struct RunningProxy {
    /// The port on 127.0.0.1 (clients use `https://localhost:PORT`).
    pub port: u16,
    /// Votes forwarded to kinkod.
    pub forwarded_votes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`TamperingProxy`] in front of `d`, connected as `officer`, terminating TLS with the
/// daemon's own certificate (a compromised front end) and asking for client certificates of the
/// same CA.
pub async fn tampering_proxy(d: &Daemon, officer: &str, tamper: Tamper) -> RunningProxy {
    use tonic::transport::{Server, ServerTlsConfig};
    let read = |p: &str| std::fs::read(d.dir.join(p)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read("tls/server.pem"),
            read("tls/server.key"),
        ))
        .client_ca_root(Certificate::from_pem(read("tls/ca.pem")));
    let forwarded_votes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let proxy = TamperingProxy {
        upstream: pb::approval_service_client::ApprovalServiceClient::new(
            channel(d, officer).await,
        ),
        tamper,
        forwarded_votes: std::sync::Arc::clone(&forwarded_votes),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(pb::approval_service_server::ApprovalServiceServer::new(
                proxy,
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    RunningProxy {
        port,
        forwarded_votes,
        task,
    }
}

/// `kinko ARGS` with the development set-up in `dir` (`KINKO_DEV_DIR`): whether it succeeded,
/// and what it printed (standard output, then standard error).
pub fn cli(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(bin("kinko"))
        .args(args)
        .env("KINKO_DEV_DIR", dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The auditor's step: `kinko audit fetch` into `copy`, then `kinko audit verify` offline;
/// returns what the verification printed.
pub fn fetch_and_verify(d: &Daemon, server: &str, copy: &Path, dir: &Path) -> String {
    let (ok, out) = cli(
        &[
            "audit",
            "fetch",
            "--server",
            server,
            "--as",
            "auditor",
            "--out",
            copy.to_str().unwrap(),
        ],
        dir,
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &[
            "audit",
            "verify",
            copy.to_str().unwrap(),
            "--log-key",
            &d.vkey,
        ],
        dir,
    );
    assert!(ok, "{out}");
    out
}
