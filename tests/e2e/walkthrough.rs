//! End to end: a real `kinkod` process on 127.0.0.1 with real TLS 1.3 and client certificates,
//! a real SoftHSM2 token, a real SQLite file and audit log, set up by `kinkod dev`.
//!
//! The test plays the withdrawal pipeline (signs its request with the requester key) and the
//! officers (each decodes the raw payload with kinko-chain *itself* and signs an approval over
//! the digest it computed). The signed transaction is checked by an independent path (alloy's
//! signer recovery) and the audit log by the auditor's verifier.

use std::path::Path;
use std::process::Command;

use alloy_consensus::TxEnvelope;
use alloy_consensus::transaction::SignerRecoverable;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{TxKind, U256, address};
use kinko_intent::{Chain, Intent};
use kinko_policy::{ApprovalMessage, Policy, SignedApproval, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;
use pb::audit_service_client::AuditServiceClient;
use pb::withdrawal_service_client::WithdrawalServiceClient;

use kinko_tests::{
    Daemon, channel, ed25519_key, eth_transfer, free_port, governance, reason, start, unique_label,
};

const HOT_WALLET: alloy_primitives::Address =
    address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

/// An Ethereum withdrawal on the development key, signed by the requester.
fn submission(dir: &Path, payload: Vec<u8>, idem: &str) -> pb::SubmitWithdrawalRequest {
    kinko_tests::submission(dir, "eth-dev", Chain::Ethereum, payload, idem)
}

/// What an officer's client does: fetch the raw payload, decode it locally, sign over the digest
/// it computed itself (never the one the daemon shows).
async fn officer_approval(
    d: &Daemon,
    officer: &str,
    request_id: &str,
    verdict: Verdict,
) -> pb::SignedApproval {
    let mut client = ApprovalServiceClient::new(channel(d, officer).await);
    let req = client
        .get_request(pb::RequestId {
            request_id: request_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let policy_bytes = std::fs::read(d.dir.join("policy.toml")).unwrap();
    let policy = Policy::from_toml(&policy_bytes).unwrap();
    let intent = decode_locally(&policy, &req.payload, &req.intent_json);
    let now = jiff::Timestamp::now().as_second();
    let msg = ApprovalMessage {
        policy_hash: policy.hash(),
        subject: Subject::Withdrawal {
            request_id: request_id.into(),
            intent_digest: intent.digest().unwrap(),
        },
        officer_id: officer.into(),
        verdict,
        issued_at: now,
        expires_at: now + 3600,
    };
    let key = ed25519_key(&d.dir.join(format!("officers/{officer}.key")));
    let signed = SignedApproval::sign(&msg, &key).unwrap();
    pb::SignedApproval {
        request_id: request_id.into(),
        officer_id: officer.into(),
        message: signed.message,
        signature: signed.signature.to_vec(),
    }
}

/// Decodes with the network and public key the officer's own policy pins for the key (never
/// anything the daemon claims), then checks the daemon's intent is exactly what the officer's
/// client decoded.
fn decode_locally(policy: &Policy, payload: &[u8], claimed_json: &str) -> Intent {
    let claimed: Intent = serde_json::from_str(claimed_json).unwrap();
    let key = policy.key("eth-dev").unwrap();
    let pinned = key.public_key.as_deref().expect("kinkod dev pins the key");
    let ctx = kinko_chain::DecodeContext {
        network: &key.network,
        public_key: pinned,
        tokens: policy.token_registry(),
    };
    let mine = kinko_chain::decode(Chain::Ethereum, payload, &ctx).unwrap();
    assert_eq!(
        mine, claimed,
        "the daemon shows the intent the officer's client decodes"
    );
    mine
}

#[tokio::test(flavor = "multi_thread")]
async fn ethereum_withdrawal_walkthrough_refusals_restart_and_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let label = unique_label("e2e");
    let port = free_port();
    let d = start(&dir, &label, port, true);

    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let one_eth = 1_000_000_000_000_000_000u128;

    // 1. Submit: decoded, allowed by the hot-refill rule, pending two approvals.
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            eth_transfer(0, one_eth, HOT_WALLET),
            "w-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    assert_eq!(r.decision.as_ref().unwrap().rule, "eth-hot-refill");
    assert!(
        r.intent_text
            .contains("1 ETH -> 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        "{}",
        r.intent_text
    );
    let id = r.request_id.clone();

    // Idempotent resubmission returns the same request; a different payload under the same key is refused.
    let again = ledger
        .submit_withdrawal(submission(
            &dir,
            eth_transfer(0, one_eth, HOT_WALLET),
            "w-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.request_id, id);
    let err = ledger
        .submit_withdrawal(submission(
            &dir,
            eth_transfer(0, 2 * one_eth, HOT_WALLET),
            "w-1",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "IDEMPOTENCY_CONFLICT");

    // Refusals that change nothing.
    // A tampered request (signature over other bytes).
    let mut tampered = submission(&dir, eth_transfer(1, one_eth, HOT_WALLET), "w-2");
    tampered.payload = eth_transfer(1, 90 * one_eth, HOT_WALLET);
    let err = ledger.submit_withdrawal(tampered).await.unwrap_err();
    assert_eq!(reason(&err), "BAD_REQUESTER_SIGNATURE", "{err:?}");
    // A destination outside the allowlist: recorded as denied.
    let stranger = address!("0x1111111111111111111111111111111111111111");
    let denied = ledger
        .submit_withdrawal(submission(&dir, eth_transfer(1, one_eth, stranger), "w-3"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.state, pb::RequestState::Denied as i32);
    // Garbage payload.
    let err = ledger
        .submit_withdrawal(submission(&dir, vec![0x02, 0xff, 0x00], "w-4"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UNDECODABLE_PAYLOAD");
    // The requester certificate cannot approve; an officer certificate cannot submit.
    let mut as_ledger = ApprovalServiceClient::new(channel(&d, "ledger").await);
    let a = officer_approval(&d, "alice", &id, Verdict::Approve).await;
    let err = as_ledger.approve(a.clone()).await.unwrap_err();
    assert_eq!(reason(&err), "ROLE_REQUIRED");
    let mut alice_as_requester = WithdrawalServiceClient::new(channel(&d, "alice").await);
    let err = alice_as_requester
        .submit_withdrawal(submission(
            &dir,
            eth_transfer(5, one_eth, HOT_WALLET),
            "w-5",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ROLE_REQUIRED");
    // An approval over a different intent digest.
    let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
    let mut wrong = officer_approval(&d, "alice", &id, Verdict::Approve).await;
    let mut msg = ApprovalMessage::from_bytes(&wrong.message).unwrap();
    msg.subject = Subject::Withdrawal {
        request_id: id.clone(),
        intent_digest: kinko_intent::IntentDigest([9; 32]),
    };
    let signed = SignedApproval::sign(&msg, &ed25519_key(&dir.join("officers/alice.key"))).unwrap();
    wrong.message = signed.message;
    wrong.signature = signed.signature.to_vec();
    assert_eq!(
        reason(&alice.approve(wrong).await.unwrap_err()),
        "APPROVAL_INVALID"
    );
    // Bob's signature presented by alice's certificate.
    let bobs = officer_approval(&d, "bob", &id, Verdict::Approve).await;
    assert_eq!(
        reason(&alice.approve(bobs).await.unwrap_err()),
        "APPROVAL_INVALID"
    );

    // 2. One approval: still pending.
    let r = alice.approve(a).await.unwrap().into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
    // Alice cannot count twice.
    let err = alice
        .approve(officer_approval(&d, "alice", &id, Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "WRONG_STATE", "{err:?}");

    // 3. Restart with the request pending: it is all still there.
    drop(d);
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .get_request(pb::RequestId {
            request_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
    assert_eq!(r.approvals.len(), 1);

    // 4. Bob approves: quorum met, the HSM signs, the signed transaction comes back.
    let mut bob = ApprovalServiceClient::new(channel(&d, "bob").await);
    let r = bob
        .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.state,
        pb::RequestState::Signed as i32,
        "{}",
        r.final_reason
    );
    let env = TxEnvelope::decode_2718(&mut r.signed_transaction.as_slice()).unwrap();
    let intent: Intent = serde_json::from_str(&r.intent_json).unwrap();
    assert_eq!(
        env.recover_signer().unwrap().to_checksum(None),
        intent.signer.as_str(),
        "independent recovery"
    );
    assert_eq!(r.transaction_id, format!("{:#x}", env.tx_hash()));
    let TxEnvelope::Eip1559(signed) = &env else {
        panic!("EIP-1559 expected")
    };
    assert_eq!(signed.tx().to, TxKind::Call(HOT_WALLET));
    assert_eq!(signed.tx().value, U256::from(one_eth));

    // 5. The same nonce for a different transaction is never signed.
    let r2 = ledger
        .submit_withdrawal(submission(
            &dir,
            eth_transfer(0, 2 * one_eth, HOT_WALLET),
            "w-6",
        ))
        .await
        .unwrap()
        .into_inner();
    let mut carol = ApprovalServiceClient::new(channel(&d, "carol").await);
    carol
        .approve(officer_approval(&d, "carol", &r2.request_id, Verdict::Approve).await)
        .await
        .unwrap();
    let err = bob
        .approve(officer_approval(&d, "bob", &r2.request_id, Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "REPLAY_CONFLICT", "{err:?}");

    // 6. The auditor's view: a signed checkpoint, records streamed, and the offline verifier.
    let mut auditor = AuditServiceClient::new(channel(&d, "auditor").await);
    let cp = auditor
        .latest_checkpoint(pb::CheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        cp.signed_note.starts_with("kinko.dev/log\n"),
        "{}",
        cp.signed_note
    );
    let mut stream = auditor
        .stream_records(pb::StreamRecordsRequest { from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while let Some(rec) = stream.message().await.unwrap() {
        let v: serde_json::Value = serde_json::from_str(&rec.json).unwrap();
        kinds.push(v["event"]["type"].as_str().unwrap().to_string());
    }
    for k in [
        "policy_installed",
        "request_received",
        "decision",
        "approval",
        "signing_authorized",
        "signature_produced",
        "refusal",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} record in {kinds:?}");
    }
    let signing_authorized = kinds
        .iter()
        .position(|k| k == "signing_authorized")
        .unwrap();
    let produced = kinds
        .iter()
        .position(|k| k == "signature_produced")
        .unwrap();
    assert!(signing_authorized < produced, "logged before signing");

    // 7. The auditor's offline verifier: every record, checkpoint and authorization re-checked
    // against the policy in force, with the log key kinkod printed.
    let vkey = kinko_audit::note::VerifierKey::parse(&d.vkey).unwrap();
    drop(d);
    let mut check = kinko_audit::policy_check::PolicyCheck::new();
    // The files an operator hands to the auditor, written from the store with kinkod stopped.
    let exported = kinko_tests::export_log(&dir, &dir.with_extension("export"));
    let report = kinko_audit::verify::verify_dir(
        &exported,
        &vkey,
        kinko_audit::verify::VerifyOptions {
            authorization: Some(&mut check),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.failures.is_empty(), "{report}");
    assert_eq!(report.signatures, 1, "{report}");
}

/// A TLS client of kinkod's gRPC listener offering only `version`, presenting `identity`
/// (certificate and key PEM) if any. After the handshake it sends the HTTP/2 preface and reads
/// once, since in TLS 1.3 the server judges the client's certificate after the client has
/// finished. Returns the TLS error, if any.
async fn tls_client(
    d: &Daemon,
    port: u16,
    version: &'static rustls::SupportedProtocolVersion,
    identity: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<(), rustls::Error> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tls_error = |e: std::io::Error| -> rustls::Error {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| panic!("not a TLS error: {e:?}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(d.dir.join("tls/ca.pem")).unwrap();
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(&cert)
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(&key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(tls_error)?;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .map_err(tls_error)?;
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).await.map_err(tls_error)?;
    assert!(
        n > 0,
        "the server closed the connection without a TLS alert"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_without_a_valid_certificate_or_role_are_refused() {
    use pb::admin_service_client::AdminServiceClient;
    use rustls::AlertDescription;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("e2e"), free_port());
    // The admin's certificate (signed by the development CA) is no longer pinned to a
    // principal: the admin principal now names another certificate.
    kinko_tests::init(&dir, &label, port, |dir| {
        let config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        let (head, tail) = config
            .split_once("name = \"admin\"\ncertificate_cn = \"admin\"\nroles = [\"admin\"]\ncertificate_sha256 = [\"")
            .unwrap();
        let tail = &tail[64..];
        std::fs::write(
            dir.join("kinkod.toml"),
            format!(
                "{head}name = \"admin\"\ncertificate_cn = \"admin\"\nroles = [\"admin\"]\ncertificate_sha256 = [\"{}{tail}",
                "0".repeat(64)
            ),
        )
        .unwrap();
    });
    let d = start(&dir, &label, port, false);
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
    let ledger = || Some((read("tls/ledger.pem"), read("tls/ledger.key")));

    // A valid certificate over TLS 1.3 gets through the handshake (the client below works).
    assert_eq!(
        tls_client(&d, port, &rustls::version::TLS13, ledger()).await,
        Ok(())
    );
    // TLS 1.3 only: a client offering only TLS 1.2 is refused in the handshake.
    assert_eq!(
        tls_client(&d, port, &rustls::version::TLS12, ledger()).await,
        Err(rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion
        ))
    );
    // No client certificate: refused in the handshake, no call gets through.
    assert_eq!(
        tls_client(&d, port, &rustls::version::TLS13, None).await,
        Err(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
        ))
    );
    // A certificate from another CA, even with a mapped name: refused in the handshake.
    let other = rcgen_self_signed("ledger");
    assert_eq!(
        tls_client(
            &d,
            port,
            &rustls::version::TLS13,
            Some((other.0.into_bytes(), other.1.into_bytes()))
        )
        .await,
        Err(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
    );
    // A certificate of the right CA whose name is mapped to no principal: unauthenticated,
    // even for a call any principal may make.
    let err = AdminServiceClient::new(channel(&d, "admin").await)
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert_eq!(reason(&err), "UNAUTHENTICATED", "{err:?}");
    let message = err.message();
    let fingerprint = message
        .strip_prefix("[UNAUTHENTICATED] certificate ")
        .and_then(|m| {
            m.strip_suffix(" names \"admin\" but is not a pinned certificate of principal admin")
        })
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{message}"
    );
    // A mapped certificate of the wrong role for the call: the auditor cannot submit.
    let mut auditor_as_ledger = WithdrawalServiceClient::new(channel(&d, "auditor").await);
    let err = auditor_as_ledger
        .submit_withdrawal(submission(&dir, eth_transfer(0, 1, HOT_WALLET), "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert_eq!(reason(&err), "ROLE_REQUIRED", "{err:?}");
    assert_eq!(
        err.message(),
        "[ROLE_REQUIRED] principal auditor lacks the Requester role for this call"
    );
}

fn rcgen_self_signed(cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_between_approval_and_signing_stops_it_and_unfreezing_is_slow() {
    use pb::admin_service_client::AdminServiceClient;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("e2e"), free_port(), true);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            eth_transfer(0, 1_000_000_000, HOT_WALLET),
            "f-1",
        ))
        .await
        .unwrap()
        .into_inner();
    let id = r.request_id;
    let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
    alice
        .approve(officer_approval(&d, "alice", &id, Verdict::Approve).await)
        .await
        .unwrap();

    // Bob (no freezer role) cannot freeze; carol (freezer) can, alone.
    let mut bob_admin = AdminServiceClient::new(channel(&d, "bob").await);
    let freeze = Subject::Freeze {
        request_id: "freeze-1".into(),
    };
    let err = bob_admin
        .freeze(governance(&d, "bob", freeze.clone(), Verdict::Approve))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "APPROVAL_INVALID", "{err:?}");
    let mut carol_admin = AdminServiceClient::new(channel(&d, "carol").await);
    let f = carol_admin
        .freeze(governance(&d, "carol", freeze, Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen);
    assert_eq!(f.freeze_id.len(), 32, "{f:?}");
    let freeze_id = kinko_policy::FreezeId(f.freeze_id.as_slice().try_into().unwrap());

    // The second approval is recorded, but nothing is signed while frozen.
    let mut bob = ApprovalServiceClient::new(channel(&d, "bob").await);
    let r = bob
        .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    assert!(r.signed_transaction.is_empty());
    assert_eq!(r.approvals.len(), 2);

    // Unfreezing needs two admins from two groups and then a delay: still frozen after both.
    let unfreeze = Subject::Unfreeze {
        request_id: "unfreeze-1".into(),
        freeze_id,
    };
    let mut alice_admin = AdminServiceClient::new(channel(&d, "alice").await);
    let f = alice_admin
        .unfreeze(governance(&d, "alice", unfreeze.clone(), Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen && f.reason.contains("pending_quorum"), "{f:?}");
    let f = carol_admin
        .unfreeze(governance(&d, "carol", unfreeze, Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen && f.reason.contains("waiting"), "{f:?}");
    let state = alice_admin
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(state.frozen);
    let r = ledger
        .get_request(pb::RequestId { request_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
    // The keys are listed for any authenticated principal.
    let keys = alice_admin
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let names: Vec<_> = keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["btc-dev", "eth-dev", "sol-dev"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pending_queue_per_requester_is_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("e2e"), free_port());
    let status = Command::new(kinko_tests::bin("kinkod"))
        .args(["dev", "--init-only", "--data-dir"])
        .arg(&dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token-label",
            &label,
        ])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
    config.push_str("\n[limits]\nmax_pending_per_requester = 2\n");
    std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    for n in 0..2u64 {
        let r = ledger
            .submit_withdrawal(submission(
                &dir,
                eth_transfer(n, 1, HOT_WALLET),
                &format!("p-{n}"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
    }
    let err = ledger
        .submit_withdrawal(submission(&dir, eth_transfer(2, 1, HOT_WALLET), "p-2"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "TOO_MANY_PENDING", "{err:?}");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    // Cancelling one frees a place.
    let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
    let pending = alice
        .list_pending(pb::ListPendingRequest::default())
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(pending.len(), 2);
    ledger
        .cancel_request(pb::CancelRequestRequest {
            request_id: pending[0].request_id.clone(),
            reason: "stale".into(),
        })
        .await
        .unwrap();
    ledger
        .submit_withdrawal(submission(&dir, eth_transfer(2, 1, HOT_WALLET), "p-2"))
        .await
        .unwrap();
}
