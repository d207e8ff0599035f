//! Day-2 operations on a real kinkod: systemd's notification protocol (ready, watchdog, a
//! graceful stop), certificate rotation and revocation with SIGHUP while a request is in
//! flight, and the shipped systemd unit's sandbox.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_policy::Verdict;
use kinko_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;
use pb::withdrawal_service_client::WithdrawalServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use kinko_tests::{
    channel, eth_transfer, free_port, officer_approval, reason, start, start_with_env, unique_label,
};

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Every datagram that arrives within `wait`.
fn datagrams(sock: &UnixDatagram, wait: Duration) -> Vec<String> {
    let until = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        sock.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    out
}

/// Under `Type=notify`, systemd counts kinkod started only at READY=1, which kinkod sends once
/// it listens (its log verified); it pings the watchdog at half `WATCHDOG_USEC`; on SIGTERM it
/// says STOPPING=1 and exits 0 after the calls in flight.
#[test]
fn kinkod_tells_systemd_it_is_ready_pings_the_watchdog_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let data = dir.path().join("kinko");
    let label = unique_label("notify");
    let notify = sock_path.to_str().unwrap().to_string();
    let d = start_with_env(
        &data,
        &label,
        free_port(),
        true,
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    // `start` returned when kinkod printed "listening on": READY=1 follows it at once.
    let first = datagrams(&sock, Duration::from_secs(3));
    let ready = first
        .iter()
        .position(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {first:?}"));
    assert!(first[ready].contains("STATUS=serving on"), "{first:?}");
    // Pings every 300 ms: at least 4 more in 1.5 s.
    let pings = datagrams(&sock, Duration::from_millis(1500))
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count();
    assert!(
        pings >= 4,
        "{pings} watchdog pings in 1.5 s at WATCHDOG_USEC=600000"
    );

    // A WATCHDOG_PID of another process: that watchdog is not kinkod's, so no pings.
    drop(d);
    let mut d = start_with_env(
        &data,
        &label,
        free_port(),
        false,
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let got = datagrams(&sock, Duration::from_secs(1));
    assert!(got.iter().any(|m| m.starts_with("READY=1")), "{got:?}");
    assert!(!got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");

    // SIGTERM: STOPPING=1, then a clean exit (not killed by the signal).
    let pid = d.pid();
    signal(pid, "TERM");
    let got = datagrams(&sock, Duration::from_secs(3));
    assert!(got.iter().any(|m| m == "STOPPING=1"), "{got:?}");
    let until = Instant::now() + Duration::from_secs(20);
    while d.alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.alive(), "kinkod did not exit on SIGTERM");
    assert_eq!(
        d.exit_code(),
        Some(0),
        "kinkod did not exit cleanly on SIGTERM"
    );
}

/// A CA and certificates made for the rotation: what an operator's CA issues.
struct NewCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl NewCa {
    fn new() -> NewCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "rotated CA for the reload test");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        NewCa {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf: certificate PEM, key PEM, SHA-256 of the DER (hex).
    fn leaf(&self, cn: &str, server: bool) -> (String, String, String) {
        let key = KeyPair::generate().unwrap();
        let sans = if server {
            vec!["localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let fp = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(cert.der()))
        };
        (cert.pem(), key.serialize_pem(), fp)
    }
}

fn fingerprint_of(pem_path: &Path) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(pem_path).unwrap();
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(der.as_ref()))
}

async fn connect(addr: &str, ca: &str, cert: &str, key: &str) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name("localhost");
    Channel::from_shared(addr.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// `systemctl reload` (SIGHUP) while a withdrawal waits for approvals: kinkod serves the new
/// server certificate to new connections, accepts a client certificate from a new CA pinned in
/// the new configuration, refuses a certificate revoked in it — on a connection opened before
/// the reload too — and the pending request is approved and signed across the rotation by the
/// same process. A reload whose files do not load changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_certificates_and_revocations_without_losing_a_request() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("kinko");
    let label = unique_label("reload");
    let d = start(&dir, &label, free_port(), true);
    let pid = d.pid();

    // A request in flight, and connections open before the reload.
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let id = ledger
        .submit_withdrawal(kinko_tests::submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000_000_000_000_000_000, hot),
            "rotation-1",
        ))
        .await
        .unwrap()
        .into_inner()
        .request_id;
    let mut bob_before = ApprovalServiceClient::new(channel(&d, "bob").await);
    let request = pb::RequestId {
        request_id: id.clone(),
    };
    bob_before.get_request(request.clone()).await.unwrap();

    // The rotation: a new CA beside the old one, a new server certificate from it, a new
    // certificate for alice pinned beside her old one, and bob's certificate revoked.
    let ca = NewCa::new();
    let (server_pem, server_key, _) = ca.leaf("localhost", true);
    let (alice_pem, alice_key, alice_fp) = ca.leaf("alice", false);
    let old_ca = std::fs::read_to_string(dir.join("tls/ca.pem")).unwrap();
    let bob_fp = fingerprint_of(&dir.join("tls/bob.pem"));
    let config_path = dir.join("kinkod.toml");
    let mut config: toml::Table = std::fs::read_to_string(&config_path)
        .unwrap()
        .parse()
        .unwrap();
    let tls = config["tls"].as_table_mut().unwrap();
    tls.insert("client_ca".into(), "tls/both-cas.pem".into());
    tls.insert("cert".into(), "tls/server-2.pem".into());
    tls.insert("key".into(), "tls/server-2.key".into());
    tls.insert(
        "revoked_sha256".into(),
        toml::Value::Array(vec![bob_fp.clone().into()]),
    );
    for p in config["principals"].as_array_mut().unwrap() {
        let p = p.as_table_mut().unwrap();
        if p["name"].as_str() == Some("alice") {
            p["certificate_sha256"]
                .as_array_mut()
                .unwrap()
                .push(alice_fp.clone().into());
        }
    }
    let write_private = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    std::fs::write(dir.join("tls/both-cas.pem"), format!("{old_ca}{}", ca.pem)).unwrap();
    // Clients trust both CAs before the server's certificate changes (as an operator
    // distributes the new CA first); the support library's clients read tls/ca.pem.
    std::fs::write(dir.join("tls/ca.pem"), format!("{old_ca}{}", ca.pem)).unwrap();
    std::fs::write(dir.join("tls/server-2.pem"), &server_pem).unwrap();
    write_private("tls/server-2.key", &server_key);
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();

    // Before the reload, the new server certificate is not served.
    assert!(
        connect(&d.addr, &ca.pem, &alice_pem, &alice_key)
            .await
            .is_err()
    );
    signal(pid, "HUP");
    let until = Instant::now() + Duration::from_secs(10);
    let alice_new = loop {
        match connect(&d.addr, &ca.pem, &alice_pem, &alice_key).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > until => panic!("the new certificate is not served: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };

    // bob's revoked certificate: refused on the connection opened before the reload, and on a
    // new one.
    let err = bob_before.get_request(request.clone()).await.unwrap_err();
    assert_eq!(reason(&err), "UNAUTHENTICATED", "{err:?}");
    assert!(err.message().contains("revoked"), "{err:?}");
    let both = format!("{old_ca}{}", ca.pem);
    let bob_pem = std::fs::read_to_string(dir.join("tls/bob.pem")).unwrap();
    let bob_key = std::fs::read_to_string(dir.join("tls/bob.key")).unwrap();
    let bob_new = connect(&d.addr, &both, &bob_pem, &bob_key).await;
    if let Ok(c) = bob_new {
        let err = ApprovalServiceClient::new(c)
            .get_request(request.clone())
            .await
            .unwrap_err();
        assert!(err.message().contains("revoked"), "{err:?}");
    }

    // alice approves with her new certificate, carol with her old one (still pinned, from the
    // old CA still in the bundle): the request submitted before the reload is signed.
    let a = officer_approval(&d, "alice", &id, Verdict::Approve).await;
    let r = ApprovalServiceClient::new(alice_new)
        .approve(a)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
    let c = officer_approval(&d, "carol", &id, Verdict::Approve).await;
    let r = ApprovalServiceClient::new(channel(&d, "carol").await)
        .approve(c)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Signed as i32, "{r:?}");
    assert_eq!(d.pid(), pid);
    assert!(d.alive());

    // A reload with a key file that does not parse: refused, nothing changes, still serving
    // the rotated certificate.
    write_private("tls/server-2.key", "not a key\n");
    signal(pid, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alice_again = connect(&d.addr, &ca.pem, &alice_pem, &alice_key)
        .await
        .expect("a refused reload dropped the rotated certificate");
    ApprovalServiceClient::new(alice_again)
        .get_request(request)
        .await
        .unwrap();
    assert!(d.alive());
}

/// The shipped unit keeps its sandbox: `systemd-analyze security` rates it at most 2.0 (1.2
/// when written; 10 is the worst), and the settings the install guide promises are there.
#[test]
fn the_systemd_unit_keeps_its_sandbox() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/kinkod.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for setting in [
        "Type=notify",
        "WatchdogSec=",
        "User=kinko",
        "LoadCredential=hsm-pin:",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(text.contains(setting), "the unit lost {setting:?}");
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is missing: apt-get install systemd (scripts/test-all.sh does)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the unit's exposure rose above 2.0:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Overall exposure level for kinkod.service: 1."),
        "{report}"
    );
}

/// `[log] format = "json"`: every line kinkod writes through its logger is one JSON object, and
/// every audit record committed has its line (target `kinko::audit`) with the record's
/// sequence number: the refusal with its code, the decisions, the approvals, the signature
/// with its transaction id, and the freeze.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_one_line_per_signature_refusal_and_freeze() {
    use kinko_policy::Subject;
    use pb::admin_service_client::AdminServiceClient;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("kinko");
    let label = unique_label("jsonlog");
    let port = free_port();
    drop(start(&dir, &label, port, true));
    let config = dir.join("kinkod.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[log]\nformat = \"json\"\n");
    std::fs::write(&config, text).unwrap();
    let d = start_with_env(
        &dir,
        &label,
        port,
        false,
        &[("RUST_LOG", "info,cryptoki::mechanism=off")],
    );
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let stranger = address!("0x00000000000000000000000000000000000000aa");
    let denied = ledger
        .submit_withdrawal(kinko_tests::submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000_000_000_000_000_000, stranger),
            "json-denied",
        ))
        .await;
    assert!(
        denied.is_err()
            || denied
                .as_ref()
                .is_ok_and(|r| r.get_ref().state == pb::RequestState::Denied as i32),
        "{denied:?}"
    );
    let id = ledger
        .submit_withdrawal(kinko_tests::submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000_000_000_000_000_000, hot),
            "json-signed",
        ))
        .await
        .unwrap()
        .into_inner()
        .request_id;
    for officer in ["alice", "bob"] {
        let a = officer_approval(&d, officer, &id, Verdict::Approve).await;
        ApprovalServiceClient::new(channel(&d, officer).await)
            .approve(a)
            .await
            .unwrap();
    }
    AdminServiceClient::new(channel(&d, "carol").await)
        .freeze(kinko_tests::governance(
            &d,
            "carol",
            Subject::Freeze {
                request_id: "json-freeze".into(),
            },
            Verdict::Approve,
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Lines from the logger (not kinkod's own "kinkod: …" banner lines) are JSON objects.
    let lines = d.log_lines();
    let mut records = Vec::new();
    for line in lines.iter().filter(|l| !l.starts_with("kinkod: ")) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["target"] == "kinko::audit" {
            records.push(v);
        }
    }
    let with = |event: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["event"] == event).collect()
    };
    let signed = with("signature_produced");
    assert_eq!(signed.len(), 1, "{records:#?}");
    assert_eq!(signed[0]["request"], id.as_str());
    assert!(
        signed[0]["transaction"].as_str().unwrap().starts_with("0x"),
        "{:?}",
        signed[0]
    );
    let decisions = with("decision");
    assert!(
        decisions.iter().any(|r| r["outcome"] != "allow"),
        "{decisions:#?}"
    );
    assert_eq!(with("approval").len(), 2, "{records:#?}");
    let freezes = with("freeze");
    assert_eq!(freezes.len(), 1, "{records:#?}");
    assert_eq!(freezes[0]["level"], "WARN");
    // Each line names its record, and the records are the log's, in order, none twice.
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let log = kinko_tests::audit_records(&d).await;
    for r in &records {
        let seq = r["seq"].as_u64().unwrap() as usize;
        assert_eq!(
            kinko_tests::event_type(&log[seq]),
            r["event"].as_str().unwrap(),
            "{r}"
        );
    }
    // No payload, signature or policy text in the daemon's log.
    let all = lines.join("\n");
    assert!(
        !all.contains("policy_text") && !all.contains("signed_payload"),
        "{all}"
    );
}

fn kinkod_backup(dir: &Path, out: &Path) -> std::process::Output {
    Command::new(kinko_tests::bin("kinkod"))
        .arg("--config")
        .arg(dir.join("kinkod.toml"))
        .arg("backup")
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The backup procedure of docs/operations.md, "Backups": `kinkod backup` while kinkod serves
/// gives a consistent copy; restoring a backup older than what this host has seen signed is
/// refused, naming both sizes; restoring the newest backup (taken after the last signature)
/// starts, with the pending request still pending and signable.
#[tokio::test(flavor = "multi_thread")]
async fn backup_while_serving_and_restore_refuses_an_older_copy() {
    if kinko_tests::sqlite_only("backs up and restores the SQLite file") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("kinko");
    let label = unique_label("backup");
    let port = free_port();
    let d = start(&dir, &label, port, true);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let submit = |nonce: u64, idem: &str| {
        kinko_tests::submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(nonce, 1_000_000_000_000_000_000, hot),
            idem,
        )
    };
    let first = ledger
        .submit_withdrawal(submit(0, "backup-1"))
        .await
        .unwrap()
        .into_inner()
        .request_id;
    let approve = |officer: &'static str, id: String| {
        let d = &d;
        async move {
            let a = officer_approval(d, officer, &id, Verdict::Approve).await;
            ApprovalServiceClient::new(channel(d, officer).await)
                .approve(a)
                .await
                .unwrap()
                .into_inner()
        }
    };
    approve("alice", first.clone()).await;

    // An online backup, with a request pending.
    let old = data.path().join("backup-old.db");
    let o = kinkod_backup(&dir, &old);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("integrity ok"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Never over an existing file.
    assert!(!kinkod_backup(&dir, &old).status.success());

    // Signed after that backup; then a second request pending.
    let r = approve("bob", first.clone()).await;
    assert_eq!(r.state, pb::RequestState::Signed as i32);
    let second = ledger
        .submit_withdrawal(submit(1, "backup-2"))
        .await
        .unwrap()
        .into_inner()
        .request_id;
    approve("alice", second.clone()).await;
    let newest = data.path().join("backup-newest.db");
    assert!(kinkod_backup(&dir, &newest).status.success());
    // The seen-checkpoint file follows the log within one 2 s tick (docs/operations.md).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(d);

    // Restoring the older backup: it forgot a signature, and kinkod refuses it.
    let restore = |from: &Path| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("kinko.db{suffix}")));
        }
        std::fs::copy(from, dir.join("kinko.db")).unwrap();
    };
    restore(&old);
    let refused = kinko_tests::start_fails(&dir);
    assert!(
        refused.contains("restored from an older backup"),
        "{refused}"
    );

    // The newest backup starts: the signed one is signed, the pending one signs.
    restore(&newest);
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let got = ledger
        .get_request(pb::RequestId {
            request_id: first.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.state, pb::RequestState::Signed as i32);
    let a = officer_approval(&d, "bob", &second, Verdict::Approve).await;
    let r = ApprovalServiceClient::new(channel(&d, "bob").await)
        .approve(a)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Signed as i32, "{r:?}");
}

fn archive(dir: &Path, to: &Path) -> std::process::Output {
    Command::new(kinko_tests::bin("kinkod"))
        .arg("--config")
        .arg(dir.join("kinkod.toml"))
        .args(["archive-log", "--dir"])
        .arg(to)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn verify_dir(dir: &Path, vkey: &str) -> std::process::Output {
    Command::new(kinko_tests::bin("kinko"))
        .args(["audit", "verify"])
        .arg(dir)
        .args(["--log-key", vkey])
        .output()
        .unwrap()
}

/// `kinkod archive-log` archives the log incrementally while kinkod runs: each run adds a
/// segment of the new records and never rewrites one; the archive verifies alone; an archive
/// whose old segment was altered is refused (and fails verification).
#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_archived_in_segments_that_verify_and_are_never_rewritten() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("kinko");
    let d = start(&dir, &unique_label("archive"), free_port(), true);
    let vkey = d.vkey.clone();
    let arch = data.path().join("archive");
    let o = archive(&dir, &arch);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let segment_0 = arch.join("segment-00000000000000000000.jsonl");
    let first = std::fs::read(&segment_0).unwrap();
    assert!(!first.is_empty());

    // More records, then a second run: a second segment, the first untouched.
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    ledger
        .submit_withdrawal(kinko_tests::submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000_000_000_000_000_000, hot),
            "archive-1",
        ))
        .await
        .unwrap();
    let o = archive(&dir, &arch);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let segments: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(&arch)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("segment-"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(segments.len(), 2, "{segments:?}");
    let lines_0 = first.iter().filter(|b| **b == b'\n').count();
    assert_eq!(segments[1], format!("segment-{lines_0:020}.jsonl"));
    assert_eq!(std::fs::read(&segment_0).unwrap(), first);
    // Nothing new: no new segment.
    assert!(archive(&dir, &arch).status.success());
    assert_eq!(
        std::fs::read_dir(&arch)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
            .count(),
        2
    );
    let v = verify_dir(&arch, &vkey);
    assert!(
        v.status.success(),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );

    // An archived record altered: the next run refuses, and the archive no longer verifies.
    let altered = String::from_utf8(first).unwrap().replacen(
        "\"principal\":\"kinkod\"",
        "\"principal\":\"mallory\"",
        1,
    );
    std::fs::write(&segment_0, altered).unwrap();
    let o = archive(&dir, &arch);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("differs from the store's"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!verify_dir(&arch, &vkey).status.success());
}

/// The audit log says which build signed: a `daemon_started` record with the executable's
/// SHA-256 (as SHA256SUMS lists it) when a build first starts on the log, none when the same
/// build restarts, a new one when another build starts; `kinko audit verify` lists them.
#[tokio::test(flavor = "multi_thread")]
async fn the_log_records_each_build_that_starts_on_it() {
    use sha2::Digest as _;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("kinko");
    let label = unique_label("build");
    let port = free_port();
    let exe = kinko_tests::bin("kinkod");
    let hash = |p: &Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()));
    let builds = |records: &[serde_json::Value]| -> Vec<String> {
        records
            .iter()
            .filter(|r| kinko_tests::event_type(r) == "daemon_started")
            .map(|r| r["event"]["binary_sha256"].as_str().unwrap().to_string())
            .collect()
    };
    let d = start(&dir, &label, port, true);
    let first = builds(&kinko_tests::audit_records(&d).await);
    assert_eq!(first, vec![hash(&exe)]);
    drop(d);
    let d = start(&dir, &label, port, false);
    assert_eq!(
        builds(&kinko_tests::audit_records(&d).await),
        first,
        "same build: no record"
    );
    drop(d);

    // Another build: the same program with a byte appended (the loader ignores it).
    let other = data.path().join("kinkod-other");
    let mut bytes = std::fs::read(&exe).unwrap();
    bytes.push(0);
    std::fs::write(&other, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = kinko_tests::start_executable(&other, &dir, &format!("https://localhost:{port}"));
    let records = kinko_tests::audit_records(&d).await;
    assert_eq!(builds(&records), vec![hash(&exe), hash(&other)]);
    let last = records
        .iter()
        .rev()
        .find(|r| kinko_tests::event_type(r) == "daemon_started")
        .unwrap();
    assert_eq!(last["event"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!last["event"]["replica"].as_str().unwrap().is_empty());
    drop(d);

    let out = data.path().join("audit");
    kinko_tests::export_log(&dir, &out);
    let vkey = std::fs::read_to_string(dir.join("audit-log.vkey")).unwrap();
    let v = verify_dir(&out, vkey.trim());
    let report = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success(), "{report}");
    assert!(
        report.contains(&format!("sha256 {}", hash(&exe))),
        "{report}"
    );
    assert!(
        report.contains(&format!("sha256 {}", hash(&other))),
        "{report}"
    );
}

/// A seen-checkpoint file kinkod cannot write (the unit makes everything but /var/lib/kinko
/// read-only) is refused at start, not discovered after a restore went unnoticed.
#[test]
fn an_unwritable_seen_checkpoint_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("kinko");
    drop(start(&dir, &unique_label("seen"), free_port(), true));
    let config = dir.join("kinkod.toml");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[store]\n",
        "[store]\nseen_checkpoint = \"/proc/kinko-no-such-directory/seen-checkpoint.note\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let err = kinko_tests::start_fails(&dir);
    assert!(
        err.contains("seen_checkpoint") && err.contains("cannot write"),
        "{err}"
    );
}
