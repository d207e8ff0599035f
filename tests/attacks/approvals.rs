//! Forged or misused approvals (THREATS.md: a stolen officer certificate, a replayed approval,
//! one insider trying to count twice). Each is refused, the request stays as it was, and the
//! refusal is in the audit log with the request id.

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    ApprovalMessage, Daemon, SignedApproval, Subject, Verdict, audit_records, channel, ed25519_key,
    eth_transfer, event_type, free_port, officer_approval, pb, reason, sign_approval, start,
    submission, unique_label,
};

const HOT_WALLET: alloy_primitives::Address =
    address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

async fn submit(d: &Daemon, nonce: u64, idem: &str) -> pb::Request {
    let mut ledger = WithdrawalServiceClient::new(channel(d, "ledger").await);
    ledger
        .submit_withdrawal(submission(
            &d.dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(nonce, 1_000_000, HOT_WALLET),
            idem,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn state(d: &Daemon, id: &str) -> (i32, usize) {
    let mut ledger = WithdrawalServiceClient::new(channel(d, "ledger").await);
    let r = ledger
        .get_request(pb::RequestId {
            request_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (r.state, r.approvals.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_replayed_and_doubled_approvals_never_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("atk-appr"), free_port(), true);
    let a = submit(&d, 0, "a").await;
    let b = submit(&d, 1, "b").await;
    let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
    let mut bob = ApprovalServiceClient::new(channel(&d, "bob").await);
    let mut carol = ApprovalServiceClient::new(channel(&d, "carol").await);
    let alice_on_a = officer_approval(&d, "alice", &a.request_id, Verdict::Approve).await;
    alice.approve(alice_on_a.clone()).await.unwrap();
    let pending = (pb::RequestState::PendingApproval as i32, 1);
    assert_eq!(state(&d, &a.request_id).await, pending);

    let mut attempts: Vec<(&str, tonic::Status)> = Vec::new();
    // 1. Alice's approval of A replayed onto B (same signed bytes, B's id on the envelope).
    let mut replayed = alice_on_a.clone();
    replayed.request_id = b.request_id.clone();
    attempts.push((
        "replayed onto another request",
        alice.approve(replayed).await.unwrap_err(),
    ));
    // 2. An approval of another intent: bob signs the digest of B's payload for request A.
    let b_digest: [u8; 32] = b.intent_digest.as_slice().try_into().unwrap();
    let other_intent = sign_approval(
        &d,
        "bob",
        "bob",
        Subject::Withdrawal {
            request_id: a.request_id.clone(),
            intent_digest: kinko_intent::IntentDigest(b_digest),
        },
        Verdict::Approve,
        600,
    );
    attempts.push((
        "another intent",
        bob.approve(other_intent).await.unwrap_err(),
    ));
    // 3. Alice counting twice: her approval again, and a fresh one.
    attempts.push((
        "the same approval twice",
        alice.approve(alice_on_a.clone()).await.unwrap_err(),
    ));
    let again = officer_approval(&d, "alice", &a.request_id, Verdict::Approve).await;
    attempts.push((
        "a second approval by one officer",
        alice.approve(again).await.unwrap_err(),
    ));
    // 4. Alice's approval sent over bob's certificate (two certificates, one key).
    attempts.push((
        "one key, two certificates",
        bob.approve(alice_on_a.clone()).await.unwrap_err(),
    ));
    // 5. Bob's certificate with alice's key claiming to be bob (two keys claiming one id).
    let bob_with_alices_key = sign_approval(
        &d,
        "bob",
        "alice",
        Subject::Withdrawal {
            request_id: a.request_id.clone(),
            intent_digest: kinko_intent::IntentDigest(
                a.intent_digest.as_slice().try_into().unwrap(),
            ),
        },
        Verdict::Approve,
        600,
    );
    attempts.push((
        "another officer's key",
        bob.approve(bob_with_alices_key).await.unwrap_err(),
    ));
    // 6. Carol's certificate stolen, without carol's key: signed with a key the thief made.
    let thief = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let now = jiff::Timestamp::now().as_second();
    let forged = SignedApproval::sign(
        &ApprovalMessage {
            policy_hash: kinko_tests::policy(&d.dir).hash(),
            subject: Subject::Withdrawal {
                request_id: a.request_id.clone(),
                intent_digest: kinko_intent::IntentDigest(
                    a.intent_digest.as_slice().try_into().unwrap(),
                ),
            },
            officer_id: "carol".into(),
            verdict: Verdict::Approve,
            issued_at: now,
            expires_at: now + 600,
        },
        &thief,
    )
    .unwrap();
    attempts.push((
        "a stolen certificate without the officer's key",
        carol
            .approve(pb::SignedApproval {
                request_id: a.request_id.clone(),
                officer_id: "carol".into(),
                message: forged.message,
                signature: forged.signature.to_vec(),
            })
            .await
            .unwrap_err(),
    ));
    // 7. An approval that expired an hour ago (issued two hours ago, honestly signed by carol).
    let expired = SignedApproval::sign(
        &ApprovalMessage {
            policy_hash: kinko_tests::policy(&d.dir).hash(),
            subject: Subject::Withdrawal {
                request_id: a.request_id.clone(),
                intent_digest: kinko_intent::IntentDigest(
                    a.intent_digest.as_slice().try_into().unwrap(),
                ),
            },
            officer_id: "carol".into(),
            verdict: Verdict::Approve,
            issued_at: now - 7200,
            expires_at: now - 3600,
        },
        &ed25519_key(&d.dir.join("officers/carol.key")),
    )
    .unwrap();
    attempts.push((
        "an expired approval",
        carol
            .approve(pb::SignedApproval {
                request_id: a.request_id.clone(),
                officer_id: "carol".into(),
                message: expired.message,
                signature: expired.signature.to_vec(),
            })
            .await
            .unwrap_err(),
    ));
    // 8. The requester's certificate cannot reach the approval service at all.
    let mut ledger_as_officer = ApprovalServiceClient::new(channel(&d, "ledger").await);
    let own = officer_approval(&d, "alice", &a.request_id, Verdict::Approve).await;
    attempts.push((
        "the requester approving",
        ledger_as_officer.approve(own).await.unwrap_err(),
    ));

    // Each refusal names its own reason: the gRPC code, the stable kinko reason, and what in
    // the message made it fail (the check that refused it, not just "invalid").
    let (a_id, b_id) = (a.request_id.as_str(), b.request_id.as_str());
    let expected: Vec<(&str, tonic::Code, &str, String, Option<&str>)> = vec![
        (
            "replayed onto another request",
            tonic::Code::InvalidArgument,
            "APPROVAL_INVALID",
            format!("the approval does not count: WrongRequest {{ saw: {a_id:?} }}"),
            Some(b_id),
        ),
        (
            "another intent",
            tonic::Code::InvalidArgument,
            "APPROVAL_INVALID",
            format!(
                "the approval does not count: WrongDigest {{ saw: {:?} }}",
                hex::encode(&b.intent_digest)
            ),
            Some(a_id),
        ),
        (
            "the same approval twice",
            tonic::Code::FailedPrecondition,
            "WRONG_STATE",
            format!(
                "officer alice already decided on request {a_id}, and that verdict still counts"
            ),
            Some(a_id),
        ),
        (
            "a second approval by one officer",
            tonic::Code::FailedPrecondition,
            "WRONG_STATE",
            format!(
                "officer alice already decided on request {a_id}, and that verdict still counts"
            ),
            Some(a_id),
        ),
        (
            "one key, two certificates",
            tonic::Code::InvalidArgument,
            "APPROVAL_INVALID",
            "the approval is signed as officer alice, but the caller is bob".into(),
            Some(a_id),
        ),
        (
            "another officer's key",
            tonic::Code::InvalidArgument,
            "APPROVAL_INVALID",
            "the approval does not count: BadSignature".into(),
            Some(a_id),
        ),
        (
            "a stolen certificate without the officer's key",
            tonic::Code::InvalidArgument,
            "APPROVAL_INVALID",
            "the approval does not count: BadSignature".into(),
            Some(a_id),
        ),
        (
            "an expired approval",
            tonic::Code::InvalidArgument,
            "APPROVAL_INVALID",
            format!(
                "the approval does not count: Expired {{ expires_at: {} }}",
                now - 3600
            ),
            Some(a_id),
        ),
        // Refused by the role check before the engine: never reaches the log.
        (
            "the requester approving",
            tonic::Code::PermissionDenied,
            "ROLE_REQUIRED",
            "principal ledger lacks the Officer role for this call".into(),
            None,
        ),
    ];
    assert_eq!(attempts.len(), expected.len());
    for ((what, err), (name, code, why, message, _)) in attempts.iter().zip(&expected) {
        assert_eq!(what, name);
        assert_eq!(err.code(), *code, "{what}: {err:?}");
        assert_eq!(reason(err), *why, "{what}: {err:?}");
        assert_eq!(
            err.message(),
            format!("[{why}] {message}"),
            "{what}: {err:?}"
        );
    }
    // Nothing counted: A still has only alice's first approval, B none, nothing signed.
    assert_eq!(state(&d, &a.request_id).await, pending);
    assert_eq!(
        state(&d, &b.request_id).await,
        (pb::RequestState::PendingApproval as i32, 0)
    );
    let records = audit_records(&d).await;
    assert!(
        !records
            .iter()
            .any(|r| event_type(r) == "signing_authorized")
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| event_type(r) == "approval")
            .count(),
        1
    );
    // Every refusal is logged, in order, with its reason code, its message and the request id
    // it was about (none for a refused role: the call never named one the daemon read).
    let logged: Vec<(String, String, Option<String>)> = records
        .iter()
        .filter(|r| event_type(r) == "refusal")
        .map(|r| {
            (
                r["event"]["code"].as_str().unwrap().to_string(),
                r["event"]["message"].as_str().unwrap().to_string(),
                r["event"]["request_id"].as_str().map(str::to_string),
            )
        })
        .collect();
    let want: Vec<(String, String, Option<String>)> = expected
        .iter()
        .map(|(_, _, why, message, id)| {
            (
                why.to_string(),
                message
                    .strip_prefix(&format!("[{why}] "))
                    .unwrap_or(message)
                    .to_string(),
                id.map(str::to_string),
            )
        })
        .collect();
    assert_eq!(logged, want);

    // And the honest path still works: bob's real approval completes the quorum.
    let r = bob
        .approve(officer_approval(&d, "bob", &a.request_id, Verdict::Approve).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Signed as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requester_never_approves_its_own_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (kinko_tests::unique_label("atk-self"), free_port());
    let alice_pk = std::cell::RefCell::new(String::new());
    kinko_tests::init(&dir, &label, port, |dir| {
        *alice_pk.borrow_mut() = hex::encode(
            ed25519_key(&dir.join("officers/alice.key"))
                .verifying_key()
                .to_bytes(),
        );
    });
    let pristine = std::fs::read_to_string(dir.join("policy.toml")).unwrap();

    // 1. The policy language refuses an officer who is also a requester, or a key shared by both.
    kinko_tests::replace_in(
        &dir.join("policy.toml"),
        "[[keys]]",
        &format!(
            "[[requesters]]\nid = \"alice\"\npublic_key = \"{}\"\nkeys = [\"eth-dev\"]\n\n[[keys]]",
            alice_pk.borrow()
        ),
    );
    let err = kinko_tests::start_fails(&dir);
    assert!(err.contains("is also an officer id"), "{err}");
    assert!(err.contains("is also the key of officer"), "{err}");
    std::fs::write(dir.join("policy.toml"), pristine).unwrap();

    // 2. At the daemon: a certificate mapped to the requester's principal with the officer role
    //    (an operator's mistake, or an insider's edit) still cannot approve its own request.
    kinko_tests::replace_in(
        &dir.join("kinkod.toml"),
        "name = \"auditor\"\ncertificate_cn = \"auditor\"\nroles = [\"auditor\", \"metrics\"]",
        "name = \"ledger\"\ncertificate_cn = \"auditor\"\nroles = [\"officer\"]",
    );
    let d = start(&dir, &label, port, false);
    let r = submit(&d, 0, "own").await;
    let mut ledger_as_officer = ApprovalServiceClient::new(channel(&d, "auditor").await);
    let own = sign_approval(
        &d,
        "ledger",
        "alice",
        Subject::Withdrawal {
            request_id: r.request_id.clone(),
            intent_digest: kinko_intent::IntentDigest(
                r.intent_digest.as_slice().try_into().unwrap(),
            ),
        },
        Verdict::Approve,
        600,
    );
    let err = ledger_as_officer.approve(own).await.unwrap_err();
    assert_eq!(reason(&err), "SELF_APPROVAL", "{err:?}");
    assert_eq!(
        state(&d, &r.request_id).await,
        (pb::RequestState::PendingApproval as i32, 0),
        "nothing recorded"
    );
}
