//! Governance held to the withdrawal path's standard, against a real kinkod: an unfreeze lifts
//! the one freeze it names and never another; every governance vote is checked when it arrives
//! (a bad one is refused, logged, stored nowhere, and never takes a valid vote's place); the
//! proposer of a policy never counts toward its quorum; and signing racing freezes, unfreezes
//! and policy installs never leaves a signature authorized under a control no longer in force
//! (the auditor's offline verification of the log passes).

use std::time::Duration;

use kinko_intent::Chain;

use kinko_tests::pb::admin_service_client::AdminServiceClient;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, FreezeId, Policy, Subject, Verdict, audit_records, channel, eth_transfer, event_type,
    free_port, governance, init, officer_approval, pb, reason, replace_in, start, submission,
    unique_label,
};

const HOT: alloy_primitives::Address =
    alloy_primitives::address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

async fn admin(d: &Daemon, who: &str) -> AdminServiceClient<tonic::transport::Channel> {
    AdminServiceClient::new(channel(d, who).await)
}

async fn freeze_state(d: &Daemon) -> pb::FreezeState {
    admin(d, "auditor")
        .await
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn freeze_id(f: &pb::FreezeState) -> FreezeId {
    FreezeId(f.freeze_id.as_slice().try_into().unwrap())
}

async fn freeze(d: &Daemon, id: &str) -> FreezeId {
    let f = admin(d, "carol")
        .await
        .freeze(governance(
            d,
            "carol",
            Subject::Freeze {
                request_id: id.into(),
            },
            Verdict::Approve,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen, "{f:?}");
    freeze_id(&f)
}

async fn wait_until_unfrozen(d: &Daemon) {
    for _ in 0..60 {
        if !freeze_state(d).await.frozen {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("still frozen");
}

/// A kinkod whose governance delays are seconds, not hours.
fn quick_governance(tag: &str) -> (tempfile::TempDir, std::path::PathBuf, String, u16) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label(tag), free_port());
    init(&dir, &label, port, |dir| {
        let policy = dir.join("policy.toml");
        replace_in(&policy, "time_lock = \"1h\"", "time_lock = \"1s\"");
        replace_in(&policy, "delay = \"1h\"", "delay = \"1s\"");
        // alice may also propose policies (an admin who is an officer).
        replace_in(
            &dir.join("kinkod.toml"),
            "name = \"alice\"\ncertificate_cn = \"alice\"\nroles = [\"officer\"]",
            "name = \"alice\"\ncertificate_cn = \"alice\"\nroles = [\"officer\", \"admin\"]",
        );
    });
    (tmp, dir, label, port)
}

/// The refusal records of the log for governance request `id`, with their codes.
fn refusals_for(records: &[serde_json::Value], id: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| event_type(r) == "refusal" && r["event"]["request_id"] == id)
        .map(|r| r["event"]["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfreeze_lifts_the_freeze_it_names_and_never_another() {
    let (_tmp, dir, label, port) = quick_governance("unfreeze");
    let d = start(&dir, &label, port, false);

    // Freeze 1, lifted by alice and carol (two groups), after the delay.
    let first = freeze(&d, "freeze-1").await;
    let lift_first = Subject::Unfreeze {
        request_id: "unfreeze-1".into(),
        freeze_id: first,
    };
    let alice_old = governance(&d, "alice", lift_first.clone(), Verdict::Approve);
    admin(&d, "alice")
        .await
        .unfreeze(alice_old.clone())
        .await
        .unwrap();
    admin(&d, "carol")
        .await
        .unfreeze(governance(&d, "carol", lift_first, Verdict::Approve))
        .await
        .unwrap();
    wait_until_unfrozen(&d).await;

    // Freeze 2. One officer replays her accepted approval for the lifted freeze: refused,
    // because it names freeze 1.
    let second = freeze(&d, "freeze-2").await;
    assert_ne!(first, second);
    let err = admin(&d, "alice")
        .await
        .unfreeze(alice_old)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "APPROVAL_INVALID", "{err:?}");
    assert!(
        err.message().contains(&format!(
            "lifts freeze {first}, but the freeze in force is {second}"
        )),
        "{err:?}"
    );
    // Re-signed for freeze 2 under the old, effective request id: that request never acts
    // again.
    let err = admin(&d, "alice")
        .await
        .unfreeze(governance(
            &d,
            "alice",
            Subject::Unfreeze {
                request_id: "unfreeze-1".into(),
                freeze_id: second,
            },
            Verdict::Approve,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "WRONG_STATE", "{err:?}");
    assert!(err.message().contains("never acts again"), "{err:?}");

    // A garbage signature for a new unfreeze of freeze 2: refused on receipt, nothing stored —
    // so it does not take alice's place, and her valid approval is then accepted.
    let lift_second = Subject::Unfreeze {
        request_id: "unfreeze-2".into(),
        freeze_id: second,
    };
    // A malformed call (a signature of 10 bytes): refused before the engine, and still logged.
    let mut short = governance(&d, "alice", lift_second.clone(), Verdict::Approve);
    short.signature.truncate(10);
    let err = admin(&d, "alice").await.unfreeze(short).await.unwrap_err();
    assert_eq!(reason(&err), "APPROVAL_INVALID", "{err:?}");
    let mut garbage = governance(&d, "alice", lift_second.clone(), Verdict::Approve);
    garbage.signature[7] ^= 0x20;
    let err = admin(&d, "alice")
        .await
        .unfreeze(garbage)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "APPROVAL_INVALID", "{err:?}");
    assert!(err.message().contains("BadSignature"), "{err:?}");
    let f = freeze_state(&d).await;
    assert!(f.frozen && f.unfreeze_approvals == 0, "{f:?}");
    // Bob holds no freezer role: his veto could never count, so it is refused too.
    let err = admin(&d, "bob")
        .await
        .unfreeze(governance(&d, "bob", lift_second.clone(), Verdict::Reject))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "APPROVAL_INVALID", "{err:?}");
    assert!(err.message().contains("MissingRole"), "{err:?}");
    let f = admin(&d, "alice")
        .await
        .unfreeze(governance(&d, "alice", lift_second, Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen, "one officer never unfreezes: {f:?}");
    assert_eq!(f.unfreeze_request_id, "unfreeze-2");
    assert_eq!(f.unfreeze_approvals, 1, "{f:?}");
    // Well past the delay, freeze 2 still holds: one valid approval is not a quorum.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(freeze_state(&d).await.frozen);

    // The log holds every accepted vote with its signature, and every refusal with its code.
    let records = audit_records(&d).await;
    let votes: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| event_type(r) == "governance_vote")
        .map(|r| {
            (
                r["event"]["request_id"].as_str().unwrap(),
                r["event"]["approval"]["officer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        votes,
        [
            ("unfreeze-1", "alice"),
            ("unfreeze-1", "carol"),
            ("unfreeze-2", "alice")
        ]
    );
    assert_eq!(
        refusals_for(&records, "unfreeze-1"),
        ["APPROVAL_INVALID", "WRONG_STATE"]
    );
    assert_eq!(
        refusals_for(&records, "unfreeze-2"),
        ["APPROVAL_INVALID", "APPROVAL_INVALID", "APPROVAL_INVALID"]
    );
    // And it verifies offline, governance outcomes re-derived from the log alone.
    let copy = dir.parent().unwrap().join("audit-copy");
    crate::drill::fetch_and_verify(&d, &format!("https://localhost:{port}"), &copy, &dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proposer_never_counts_toward_its_own_policy() {
    let (_tmp, dir, label, port) = quick_governance("proposer");
    let d = start(&dir, &label, port, false);
    let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap() + "# proposed by alice\n";
    let p = admin(&d, "alice")
        .await
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: text.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.proposed_by, "alice");
    let subject = Subject::InstallPolicy {
        request_id: p.proposal_id.clone(),
        new_policy_hash: Policy::from_toml(text.as_bytes()).unwrap().hash(),
    };
    // alice (treasury) approving her own proposal: refused, not stored.
    let err = admin(&d, "alice")
        .await
        .approve_policy(governance(&d, "alice", subject.clone(), Verdict::Approve))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "SELF_APPROVAL", "{err:?}");
    // carol (risk) alone is one of the two officers from two groups the quorum needs.
    let s = admin(&d, "carol")
        .await
        .approve_policy(governance(&d, "carol", subject.clone(), Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state, "pending", "{s:?}");
    assert_eq!(s.approvals_counted, 1, "{s:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = admin(&d, "auditor")
        .await
        .get_policy_proposal(pb::ProposalId {
            proposal_id: p.proposal_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state, "pending", "{s:?}");
    assert_ne!(s.current_policy_hash, s.policy_hash);
    // bob (treasury) completes it: two officers, two groups, neither the proposer.
    admin(&d, "bob")
        .await
        .approve_policy(governance(&d, "bob", subject, Verdict::Approve))
        .await
        .unwrap();
    let mut installed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let s = admin(&d, "auditor")
            .await
            .get_policy_proposal(pb::ProposalId {
                proposal_id: p.proposal_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if s.state == "installed" {
            installed = true;
            break;
        }
    }
    assert!(installed);
    let records = audit_records(&d).await;
    let installed = records
        .iter()
        .rfind(|r| event_type(r) == "policy_installed")
        .unwrap();
    let evidence: Vec<&str> = installed["event"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["officer"].as_str().unwrap())
        .collect();
    assert_eq!(evidence, ["carol", "bob"]);
    assert_eq!(refusals_for(&records, &p.proposal_id), ["SELF_APPROVAL"]);
    let copy = dir.parent().unwrap().join("audit-copy");
    crate::drill::fetch_and_verify(&d, &format!("https://localhost:{port}"), &copy, &dir);
}

/// Quorums complete (and signatures are authorized) while freezes, unfreezes and a policy
/// installation land. Whatever the interleaving, no `signing_authorized` record follows a
/// freeze or an installation it did not see: the auditor's offline verification passes.
#[tokio::test(flavor = "multi_thread")]
async fn signing_racing_freezes_and_installs_never_outruns_the_controls() {
    let (_tmp, dir, label, port) = quick_governance("race");
    let d = start(&dir, &label, port, false);
    let rounds: u64 = if crate::slow() { 6 } else { 3 };
    let per_round: u64 = 8;
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let mut nonce = 0;
    for round in 0..rounds {
        // Requests approved by alice; bob's approvals complete their quorums below.
        let mut ids = Vec::new();
        for _ in 0..per_round {
            let r = ledger
                .submit_withdrawal(submission(
                    &dir,
                    "eth-dev",
                    Chain::Ethereum,
                    eth_transfer(nonce, 1_000, HOT),
                    &format!("race-{nonce}"),
                ))
                .await
                .unwrap()
                .into_inner();
            nonce += 1;
            assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
            let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
            alice
                .approve(officer_approval(&d, "alice", &r.request_id, Verdict::Approve).await)
                .await
                .unwrap();
            ids.push(r.request_id);
        }
        let mut approvals = Vec::new();
        for id in &ids {
            approvals.push(officer_approval(&d, "bob", id, Verdict::Approve).await);
        }
        let signers = {
            let d_ch = channel(&d, "bob").await;
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for a in approvals {
                    let mut bob = ApprovalServiceClient::new(d_ch.clone());
                    tasks.push(tokio::spawn(async move { bob.approve(a).await }));
                }
                for t in tasks {
                    // Approved, or refused because frozen meanwhile: both fine here.
                    let _ = t.await.unwrap();
                }
            })
        };
        if round % 2 == 0 {
            let f = freeze(&d, &format!("race-freeze-{round}")).await;
            let lift = Subject::Unfreeze {
                request_id: format!("race-unfreeze-{round}"),
                freeze_id: f,
            };
            for who in ["alice", "carol"] {
                admin(&d, who)
                    .await
                    .unfreeze(governance(&d, who, lift.clone(), Verdict::Approve))
                    .await
                    .unwrap();
            }
            signers.await.unwrap();
            wait_until_unfrozen(&d).await;
        } else {
            let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap()
                + &format!("# round {round}\n");
            crate::drill::install(&d, &text).await;
            signers.await.unwrap();
            assert_eq!(
                std::fs::read_to_string(dir.join("policy.toml")).unwrap(),
                text
            );
        }
    }
    let records = audit_records(&d).await;
    let count = |t: &str| records.iter().filter(|r| event_type(r) == t).count();
    assert!(count("signature_produced") > 0, "nothing was signed");
    assert_eq!(count("freeze") as u64, rounds.div_ceil(2));
    assert_eq!(count("policy_installed") as u64, 1 + rounds / 2);
    let copy = dir.parent().unwrap().join("audit-copy");
    crate::drill::fetch_and_verify(&d, &format!("https://localhost:{port}"), &copy, &dir);
}

/// The SHA-256 a principal's certificate is pinned with in `kinkod.toml`.
fn pinned_fingerprint(config: &str, name: &str) -> String {
    let block = config
        .split("[[principals]]")
        .find(|b| b.contains(&format!("name = \"{name}\"\n")))
        .unwrap();
    let (_, rest) = block.split_once("certificate_sha256 = [\"").unwrap();
    rest[..64].to_string()
}

/// A principal is its pinned certificate, not a common name: a second certificate named "bob"
/// from another CA the daemon trusts is not bob; a revoked certificate is nobody; a principal
/// that may only scrape metrics reads nothing. Each refusal is a log record. Also: a cancel is
/// logged and ends the request; an approval that expired never keeps its officer from
/// approving again, and GetRequest says which approvals count; a signing key can never take
/// the log key's HSM label.
#[tokio::test(flavor = "multi_thread")]
async fn identities_are_pinned_certificates_and_officers_are_never_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("ident"), free_port());
    init(&dir, &label, port, |dir| {
        // A second CA the daemon trusts for client certificates (another team's, say), which
        // issues a certificate named "bob".
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "another CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "bob");
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("tls/rogue-bob.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls/rogue-bob.key"), key.serialize_pem()).unwrap();
        let mut bundle = std::fs::read_to_string(dir.join("tls/ca.pem")).unwrap();
        bundle.push_str(&ca_cert.pem());
        std::fs::write(dir.join("tls/ca.pem"), bundle).unwrap();
        // carol's certificate is revoked; the admin principal may only scrape metrics.
        let config_path = dir.join("kinkod.toml");
        let config = std::fs::read_to_string(&config_path).unwrap();
        let carol = pinned_fingerprint(&config, "carol");
        let config = config
            .replace(
                "key = \"tls/server.key\"\n",
                &format!("key = \"tls/server.key\"\nrevoked_sha256 = [\"{carol}\"]\n"),
            )
            .replace(
                "name = \"admin\"\ncertificate_cn = \"admin\"\nroles = [\"admin\"]",
                "name = \"admin\"\ncertificate_cn = \"admin\"\nroles = [\"metrics\"]",
            )
            .replace(
                "name = \"alice\"\ncertificate_cn = \"alice\"\nroles = [\"officer\"]",
                "name = \"alice\"\ncertificate_cn = \"alice\"\nroles = [\"officer\", \"admin\"]",
            );
        std::fs::write(&config_path, config).unwrap();
    });
    let d = start(&dir, &label, port, false);

    // The rogue "bob" passes TLS (its CA is trusted) but is not bob.
    let err = ApprovalServiceClient::new(channel(&d, "rogue-bob").await)
        .list_pending(pb::ListPendingRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UNAUTHENTICATED", "{err:?}");
    assert!(
        err.message()
            .ends_with("names \"bob\" but is not a pinned certificate of principal bob"),
        "{err:?}"
    );
    // The real bob still is.
    ApprovalServiceClient::new(channel(&d, "bob").await)
        .list_pending(pb::ListPendingRequest::default())
        .await
        .unwrap();
    // carol's revoked certificate is nobody, pinned or not.
    let err = admin(&d, "carol")
        .await
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UNAUTHENTICATED", "{err:?}");
    assert!(err.message().ends_with("is revoked"), "{err:?}");
    // A metrics-only principal reads nothing through the API.
    let err = admin(&d, "admin")
        .await
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ROLE_REQUIRED", "{err:?}");
    assert_eq!(
        err.message(),
        "[ROLE_REQUIRED] principal admin may only scrape metrics"
    );

    // A cancel is logged and ends the request: approvals after it are refused.
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let submit = |nonce: u64, idem: &str| {
        submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(nonce, 1_000, HOT),
            idem,
        )
    };
    let cancelled = ledger
        .submit_withdrawal(submit(0, "to-cancel"))
        .await
        .unwrap()
        .into_inner();
    let r = ledger
        .cancel_request(pb::CancelRequestRequest {
            request_id: cancelled.request_id.clone(),
            reason: "wrong amount".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Cancelled as i32);
    let err = ApprovalServiceClient::new(channel(&d, "alice").await)
        .approve(officer_approval(&d, "alice", &cancelled.request_id, Verdict::Approve).await)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "WRONG_STATE", "{err:?}");

    // alice's approval expires before bob's arrives: it stops counting, and alice approves
    // again (before, she was "already decided" for good).
    let r = ledger
        .submit_withdrawal(submit(1, "expiring"))
        .await
        .unwrap()
        .into_inner();
    let id = r.request_id.clone();
    let short = kinko_tests::sign_approval(
        &d,
        "alice",
        "alice",
        Subject::Withdrawal {
            request_id: id.clone(),
            intent_digest: kinko_intent::IntentDigest(
                r.intent_digest.as_slice().try_into().unwrap(),
            ),
        },
        Verdict::Approve,
        2,
    );
    let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
    let shown = alice.approve(short).await.unwrap().into_inner();
    assert_eq!(shown.approvals.len(), 1);
    assert!(shown.approvals[0].counts, "{shown:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = alice
        .get_request(pb::RequestId {
            request_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!shown.approvals[0].counts, "{shown:?}");
    assert!(shown.approvals[0].note.starts_with("Expired"), "{shown:?}");
    let again = alice
        .approve(officer_approval(&d, "alice", &id, Verdict::Approve).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.approvals.len(), 1, "{again:?}");
    assert!(again.approvals[0].counts, "{again:?}");
    let signed = ApprovalServiceClient::new(channel(&d, "bob").await)
        .approve(officer_approval(&d, "bob", &id, Verdict::Approve).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");

    // No signing key may take the log key's HSM label (kinkod dev names it "kinko-log").
    let text = std::fs::read_to_string(dir.join("policy.toml"))
        .unwrap()
        .replacen(
            "hsm_label = \"kinko-eth-dev\"",
            "hsm_label = \"kinko-log\"",
            1,
        );
    let err = AdminServiceClient::new(channel(&d, "alice").await)
        .propose_policy(pb::ProposePolicyRequest { policy_text: text })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INVALID_REQUEST", "{err:?}");
    assert!(
        err.message().ends_with(
            "signing key eth-dev uses HSM label \"kinko-log\", the audit log key's label; give it its own"
        ),
        "{err:?}"
    );

    // Every refusal of the way in is a log record, with its code.
    let records = audit_records(&d).await;
    let refusals: Vec<(&str, &str, &str)> = records
        .iter()
        .filter(|r| event_type(r) == "refusal" && r["event"]["request_id"].is_null())
        .map(|r| {
            (
                r["principal"].as_str().unwrap(),
                r["event"]["code"].as_str().unwrap(),
                r["event"]["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(refusals.len(), 4, "{refusals:?}");
    // (the refused proposal is the fourth: logged by the engine, under its proposer)
    assert_eq!(refusals[0].0, "unauthenticated");
    assert_eq!(refusals[0].1, "UNAUTHENTICATED");
    assert!(
        refusals[0]
            .2
            .contains("not a pinned certificate of principal bob")
    );
    assert_eq!(refusals[1].0, "unauthenticated");
    assert!(refusals[1].2.ends_with("is revoked"));
    assert_eq!(
        refusals[2],
        (
            "admin",
            "ROLE_REQUIRED",
            "principal admin may only scrape metrics"
        )
    );
    assert_eq!(refusals[3].0, "alice");
    assert_eq!(refusals[3].1, "INVALID_REQUEST");
    let cancel = records
        .iter()
        .find(|r| event_type(r) == "request_cancelled")
        .unwrap();
    assert_eq!(cancel["event"]["request_id"], cancelled.request_id.as_str());
    assert_eq!(cancel["principal"], "ledger");
    assert_eq!(
        cancel["event"]["reason"],
        "cancelled by ledger: wrong amount"
    );
    let copy = dir.parent().unwrap().join("audit-copy");
    crate::drill::fetch_and_verify(&d, &d.addr, &copy, &dir);
}

/// A proposer backdates a new allowlisted address (`added_at` a year ago) to skip its
/// cool-down. The entry counts from the moment kinkod installed the policy — the second of the
/// installation's log record, the time the offline verifier counts from, even when the commit
/// is slow (held 8 s here before it): a withdrawal to it right after the installation is
/// denied until exactly that record's time plus the cool-down, and the offline verifier agrees.
#[tokio::test(flavor = "multi_thread")]
async fn a_backdated_allowlist_entry_still_waits_out_its_cool_down() {
    let (_tmp, dir, label, port) = quick_governance("backdate");
    let d = kinko_tests::start_with_env(
        &dir,
        &label,
        port,
        false,
        &[("KINKO_FAILPOINT", "pause:before_install_commit")],
    );
    const NEW: alloy_primitives::Address =
        alloy_primitives::address!("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359");
    let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap().replacen(
        "label = \"development hot wallet\"\nadded_at = \"2026-01-01T00:00:00Z\"\n",
        &format!(
            "label = \"development hot wallet\"\nadded_at = \"2026-01-01T00:00:00Z\"\n\n[[address_books.entries]]\naddress = \"{NEW}\"\nlabel = \"new wallet, backdated\"\nadded_at = \"2025-12-01T00:00:00Z\"\n"
        ),
        1,
    );
    crate::drill::install(&d, &text).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("policy.toml")).unwrap(),
        text
    );
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000, NEW),
            "backdated",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Denied as i32, "{r:?}");
    let explanation = r.decision.unwrap().explanation_json;
    let records = kinko_tests::audit_records(&d).await;
    let installed = records
        .iter()
        .rfind(|r| kinko_tests::event_type(r) == "policy_installed")
        .expect("the installation is in the log");
    let usable_from = jiff::Timestamp::from_second(
        i64::try_from(installed["time_ms"].as_u64().unwrap() / 1000).unwrap() + 72 * 3600,
    )
    .unwrap();
    assert!(
        explanation.contains(&format!(
            "{NEW} (new wallet, backdated) is in its cool-down until {usable_from}"
        )),
        "{explanation}"
    );
    // The old entry is still usable at once.
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000, HOT),
            "old-entry",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32, "{r:?}");
    // After a restart the entry still counts from its installation (replayed from the store).
    drop(d);
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(1, 1_000, NEW),
            "backdated-after-restart",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Denied as i32, "{r:?}");
    let copy = dir.parent().unwrap().join("audit-copy");
    crate::drill::fetch_and_verify(&d, &d.addr, &copy, &dir);
}

/// A signing key that takes the audit log key's HSM label is refused at start, before any key
/// is used (the proposal path is tested above).
#[test]
fn a_signing_key_on_the_log_key_label_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("logkey"), free_port());
    init(&dir, &label, port, |dir| {
        replace_in(
            &dir.join("policy.toml"),
            "hsm_label = \"kinko-eth-dev\"",
            "hsm_label = \"kinko-log\"",
        );
    });
    let err = kinko_tests::start_fails(&dir);
    assert!(
        err.contains(
            "signing key eth-dev uses HSM label \"kinko-log\", the audit log key's label; give it its own"
        ),
        "{err}"
    );
}

/// Claims share group commits: twelve requests completing their quorum at once, under a limit
/// of three signatures a day, all reach the claim step together — each authorized against a
/// ledger that does not yet hold the others' uncommitted claims. Exactly three are signed; the
/// claim's transaction, which counts every reservation before it (committed or earlier in the
/// same batch), denies the rest, and those sign nothing.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_in_one_batch_never_pass_a_velocity_limit_together() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-batch"), free_port());
    init(&dir, &label, port, |dir| {
        replace_in(&dir.join("policy.toml"), "max_count = 50", "max_count = 3");
    });
    // Each claim's transaction takes 0.5 s (a slow disk), so the claims behind the first queue
    // up and commit as one batch, each checked in turn inside it.
    let d = std::sync::Arc::new(kinko_tests::start_with_env(
        &dir,
        &label,
        port,
        false,
        &[("KINKO_FAILPOINT", "slow:in_claim_transaction")],
    ));
    let mut ids = Vec::new();
    for n in 0..12u64 {
        let r = crate::replicas::submit(&d, n, &format!("batch-{n}")).await;
        let mut alice = ApprovalServiceClient::new(channel(&d, "alice").await);
        alice
            .approve(officer_approval(&d, "alice", &r.request_id, Verdict::Approve).await)
            .await
            .unwrap();
        ids.push(r.request_id);
    }
    // Bob's approvals are made first, then sent together.
    let mut signed_approvals = Vec::new();
    for id in &ids {
        signed_approvals.push(officer_approval(&d, "bob", id, Verdict::Approve).await);
    }
    let mut racing = Vec::new();
    for a in signed_approvals {
        let d = std::sync::Arc::clone(&d);
        racing.push(tokio::spawn(async move {
            ApprovalServiceClient::new(channel(&d, "bob").await)
                .approve(a)
                .await
                .map(tonic::Response::into_inner)
        }));
    }
    let (mut signed, mut denied) = (0, 0);
    for r in racing {
        match r.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.state, pb::RequestState::Signed as i32, "{r:?}");
                signed += 1;
            }
            Err(e) => {
                assert_eq!(reason(&e), "POLICY_DENIED", "{e:?}");
                denied += 1;
            }
        }
    }
    assert_eq!((signed, denied), (3, 9));
    let authorized = audit_records(&d)
        .await
        .into_iter()
        .filter(|r| event_type(r) == "signing_authorized")
        .count();
    assert_eq!(authorized, 3, "signing_authorized records");
}
