//! Passkey approvals through a real kinkod: carol's officer key is a WebAuthn credential. Her
//! assertion — the challenge SHA-256 of the approval message her own client built from its own
//! decode — counts beside alice's CLI approval and the withdrawal is signed; the whole
//! assertion is in the audit log, and the offline verifier re-verifies it from the log alone.
//! Assertions from another origin, without user verification, or over another request count
//! for nothing (`APPROVAL_INVALID`) and change nothing.
//!
//! The assertions are made here as an authenticator makes them (P-256 over
//! `authenticatorData || SHA-256(clientDataJSON)`); the console's browser tests make them with
//! Chromium's virtual authenticator.

use std::process::Command;

use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    ApprovalMessage, Subject, Verdict, channel, eth_transfer, export_log, free_port, init,
    officer_approval, pb, policy, reason, start, submission, unique_label,
};
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use sha2::{Digest as _, Sha256};

const ORIGIN: &str = "http://localhost:7390";

/// An assertion by `sk` over `message` from `origin` with authenticator `flags`, encoded as it
/// travels in `SignedApproval.signature`.
fn assertion(sk: &p256::ecdsa::SigningKey, message: &[u8], origin: &str, flags: u8) -> Vec<u8> {
    let cdj = format!(
        r#"{{"type":"webauthn.get","challenge":"{}","origin":"{origin}","crossOrigin":false}}"#,
        kinko_policy::webauthn::base64url(&kinko_policy::webauthn::challenge(message))
    );
    let mut auth = Sha256::digest(b"localhost").to_vec();
    auth.push(flags);
    auth.extend_from_slice(&3u32.to_be_bytes());
    let mut h = Sha256::new();
    h.update(&auth);
    h.update(Sha256::digest(cdj.as_bytes()));
    let digest: [u8; 32] = h.finalize().into();
    let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
    kinko_policy::webauthn::Assertion {
        authenticator_data: auth,
        client_data_json: cdj.into_bytes(),
        signature: sig.to_der().as_bytes().to_vec(),
    }
    .to_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_approval_counts_is_logged_whole_and_the_auditor_re_verifies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("passkey"), free_port());
    let sk = p256::ecdsa::SigningKey::from_bytes(&[77u8; 32].into()).unwrap();
    let sec1 = hex::encode(sk.verifying_key().to_encoded_point(false).as_bytes());
    init(&dir, &label, port, |dir| {
        // carol enrols a passkey instead of her CLI key (before the first start installs it).
        let path = dir.join("policy.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("id = \"carol\"").unwrap();
        let line_at = start + text[start..].find("public_key = \"").unwrap();
        let line_end = line_at + text[line_at..].find('\n').unwrap();
        let text = format!(
            "{}passkey = {{ public_key = \"{sec1}\", rp_id = \"localhost\", origins = [\"{ORIGIN}\"], credential_id = \"AQID\" }}{}",
            &text[..line_at],
            &text[line_end..]
        );
        std::fs::write(&path, text).unwrap();
    });
    // At info level: the log, written to a pipe, must be plain text (checked by `start`).
    let d = kinko_tests::start_with_env(
        &dir,
        &label,
        port,
        false,
        &[("RUST_LOG", "info,cryptoki=off")],
    );
    let p = policy(&dir);
    assert!(p.officer("carol").unwrap().passkey.is_some());

    let submit = |nonce: u64| {
        let d = &d;
        async move {
            WithdrawalServiceClient::new(channel(d, "ledger").await)
                .submit_withdrawal(submission(
                    &d.dir,
                    "eth-dev",
                    Chain::Ethereum,
                    eth_transfer(
                        nonce,
                        1_000,
                        alloy_primitives::address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
                    ),
                    &format!("passkey-{nonce}"),
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let r = submit(0).await;
    let mut officers = ApprovalServiceClient::new(channel(&d, "carol").await);
    // carol's client builds the approval message over the digest it decoded itself.
    let alice = officer_approval(&d, "alice", &r.request_id, Verdict::Approve).await;
    let digest: [u8; 32] = r.intent_digest.as_slice().try_into().unwrap();
    let now = jiff::Timestamp::now().as_second();
    let message = |request_id: &str| {
        ApprovalMessage {
            policy_hash: p.hash(),
            subject: Subject::Withdrawal {
                request_id: request_id.into(),
                intent_digest: kinko_intent::IntentDigest(digest),
            },
            officer_id: "carol".into(),
            verdict: Verdict::Approve,
            issued_at: now,
            expires_at: now + 3600,
        }
        .to_bytes()
        .unwrap()
    };
    let approval = |signature: Vec<u8>, request_id: &str| pb::SignedApproval {
        request_id: r.request_id.clone(),
        officer_id: "carol".into(),
        message: message(request_id),
        signature,
    };
    // Refused, nothing counted: another origin (a phishing page), no user verification, an
    // assertion over another request's message, an Ed25519 signature under her name.
    for (bad, why) in [
        (
            approval(
                assertion(&sk, &message(&r.request_id), "http://evil.example", 0x05),
                &r.request_id,
            ),
            "origin",
        ),
        (
            approval(
                assertion(&sk, &message(&r.request_id), ORIGIN, 0x01),
                &r.request_id,
            ),
            "no user verification",
        ),
        (
            approval(
                assertion(&sk, &message("req-other"), ORIGIN, 0x05),
                &r.request_id,
            ),
            "another request's challenge",
        ),
        (
            approval(
                kinko_tests::sign_approval(
                    &d,
                    "carol",
                    "carol",
                    Subject::Withdrawal {
                        request_id: r.request_id.clone(),
                        intent_digest: kinko_intent::IntentDigest(digest),
                    },
                    Verdict::Approve,
                    3600,
                )
                .signature,
                &r.request_id,
            ),
            "an Ed25519 signature from her old key file",
        ),
    ] {
        let e = officers.approve(bad).await.unwrap_err();
        assert_eq!(reason(&e), "APPROVAL_INVALID", "{why}: {e:?}");
    }
    let after = officers
        .get_request(pb::RequestId {
            request_id: r.request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.approvals.len(), 0, "a refused approval was stored");
    // alice (CLI) and carol (passkey): signed.
    ApprovalServiceClient::new(channel(&d, "alice").await)
        .approve(alice)
        .await
        .unwrap();
    let signed = officers
        .approve(approval(
            assertion(&sk, &message(&r.request_id), ORIGIN, 0x05),
            &r.request_id,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:#?}");

    // The log holds the whole assertion as carol's evidence, and verifies offline.
    let records = kinko_tests::audit_records(&d).await;
    let authorized = records
        .iter()
        .find(|r| kinko_tests::event_type(r) == "signing_authorized")
        .unwrap();
    let evidence = authorized["event"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["officer"] == "carol")
        .unwrap();
    assert_eq!(evidence["public_key"].as_str().unwrap(), sec1);
    let sig = hex::decode(evidence["signature"].as_str().unwrap()).unwrap();
    let logged = kinko_policy::webauthn::Assertion::from_bytes(&sig).unwrap();
    assert!(String::from_utf8_lossy(&logged.client_data_json).contains(ORIGIN));
    drop(d);
    let out = export_log(&dir, &tmp.path().join("export"));
    let vkey = {
        let d = start(&dir, &label, port, false);
        d.vkey.clone()
    };
    let verify = Command::new(kinko_tests::bin("kinko"))
        .args(["audit", "verify"])
        .arg(&out)
        .args(["--log-key", &vkey])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    assert!(text.contains("officers:       2 (alice, carol)"), "{text}");
}
