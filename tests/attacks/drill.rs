//! The incident-response drill of docs/incident-response.md, end to end against a real kinkod:
//! a suspicious request is denied and shows in the metrics; an officer freezes; the auditor
//! fetches and verifies the log offline; a new key is created under the install quorum and the
//! old one retired; the new key is pinned by a second proposal; signing resumes only after the
//! unfreeze quorum and its delay. Delays are shortened to seconds in this drill's policy.

use std::time::Duration;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::admin_service_client::AdminServiceClient;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, Policy, Subject, Verdict, channel, eth_transfer, free_port, governance, init,
    officer_approval, pb, reason, replace_in, start, submission, unique_label,
};

const HOT: alloy_primitives::Address = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

async fn admin(d: &Daemon, who: &str) -> AdminServiceClient<tonic::transport::Channel> {
    AdminServiceClient::new(channel(d, who).await)
}

/// Proposes `text`, has alice (treasury) and carol (risk) approve it, and waits until kinkod
/// installs it after the time-lock and has rewritten its policy file with it. (The proposal
/// reads "installed" from the store's commit; the file is rewritten just after, so a caller
/// reading the file as soon as the proposal is installed could still see the old text.)
pub(crate) async fn install(d: &Daemon, text: &str) {
    let p = admin(d, "admin")
        .await
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: text.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let subject = Subject::InstallPolicy {
        request_id: p.proposal_id.clone(),
        new_policy_hash: Policy::from_toml(text.as_bytes()).unwrap().hash(),
    };
    for officer in ["alice", "carol"] {
        admin(d, officer)
            .await
            .approve_policy(governance(d, officer, subject.clone(), Verdict::Approve))
            .await
            .unwrap();
    }
    for _ in 0..60 {
        let s = admin(d, "admin")
            .await
            .get_policy_proposal(pb::ProposalId {
                proposal_id: p.proposal_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if s.state == "installed" {
            let file = d.dir.join("policy.toml");
            for _ in 0..100 {
                if std::fs::read_to_string(&file).unwrap() == text {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!(
                "proposal {} was installed but {} never held its text",
                p.proposal_id,
                file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("proposal {} was not installed", p.proposal_id);
}

async fn frozen(d: &Daemon) -> pb::FreezeState {
    admin(d, "auditor")
        .await
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner()
}

pub(crate) use kinko_tests::{cli, fetch_and_verify};

#[tokio::test(flavor = "multi_thread")]
async fn the_incident_response_runbook_works_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port, metrics_port) = (unique_label("drill"), free_port(), free_port());
    init(&dir, &label, port, |dir| {
        let policy = dir.join("policy.toml");
        replace_in(&policy, "time_lock = \"1h\"", "time_lock = \"2s\"");
        replace_in(&policy, "delay = \"1h\"", "delay = \"3s\"");
        let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        config.push_str(&format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ));
        std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    });
    let d = start(&dir, &label, port, false);
    let server = format!("https://localhost:{port}");
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);

    // 1. Detect: a suspicious withdrawal to an unknown address is denied by default, and the
    //    denial is counted where the alert rule looks (docs/alerts/kinko.rules.yml).
    let attacker = address!("0x2222222222222222222222222222222222222222");
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 5_000_000_000_000_000_000, attacker),
            "suspicious",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Denied as i32);
    let page = kinko_tests::https_get(&d, metrics_port, "auditor", "/metrics").await;
    assert!(
        page.contains(
            "kinko_decisions_total{rule=\"(none: denied by default)\",outcome=\"deny\"} 1"
        ),
        "{page}"
    );

    // 2. Contain: carol (freezer) freezes with the CLI, alone.
    let policy_file = dir.join("policy.toml");
    let (ok, out) = cli(
        &[
            "freeze",
            "--server",
            &server,
            "--as",
            "carol",
            "--officer-key",
            dir.join("officers/carol.key").to_str().unwrap(),
            "--policy",
            policy_file.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(ok, "{out}");
    assert!(frozen(&d).await.frozen);
    assert!(
        kinko_tests::https_get(&d, metrics_port, "auditor", "/metrics")
            .await
            .contains("kinko_frozen 1")
    );

    // 3. Investigate: the auditor fetches the log and verifies it offline.
    fetch_and_verify(&d, &server, &tmp.path().join("audit-copy"), &dir);

    // 4. Eradicate: install a policy that retires eth-dev and creates eth-dev-2 (while frozen).
    let old = std::fs::read_to_string(&policy_file).unwrap();
    let rotated = old
        .replace(
            "keys = [\"eth-dev\", \"btc-dev\", \"sol-dev\"]",
            "keys = [\"eth-dev-2\", \"btc-dev\", \"sol-dev\"]",
        )
        .replacen("name = \"eth-dev\"", "name = \"eth-dev-2\"", 1)
        .replacen(
            "hsm_label = \"kinko-eth-dev\"",
            "hsm_label = \"kinko-eth-dev-2\"",
            1,
        );
    // The new key cannot be pinned before it exists: drop the old key's pin from its entry.
    let old_pin = Policy::from_toml(old.as_bytes())
        .unwrap()
        .key("eth-dev")
        .unwrap()
        .public_key
        .clone()
        .unwrap();
    let rotated = rotated.replacen(
        &format!("public_key = \"{}\"\n", hex::encode(&old_pin)),
        "",
        1,
    );
    install(&d, &rotated).await;
    let keys = admin(&d, "auditor")
        .await
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(keys.iter().all(|k| k.name != "eth-dev"), "eth-dev retired");
    let new_key = keys.iter().find(|k| k.name == "eth-dev-2").unwrap().clone();
    assert_ne!(new_key.public_key, old_pin);
    // Officers check the new address, then pin the key with a second proposal.
    let pinned = rotated.replacen(
        "hsm_label = \"kinko-eth-dev-2\"\n",
        &format!(
            "hsm_label = \"kinko-eth-dev-2\"\npublic_key = \"{}\"\n",
            hex::encode(&new_key.public_key)
        ),
        1,
    );
    install(&d, &pinned).await;
    // kinkod rewrites the file right after the installation's commit, which the proposal's
    // state shows first.
    for _ in 0..50 {
        if std::fs::read_to_string(&policy_file).unwrap() == pinned {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read_to_string(&policy_file).unwrap(), pinned);
    // The retired key signs nothing any more.
    let err = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(1, 1_000, HOT),
            "old-key",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "NOT_FOUND", "{err:?}");

    // 5. While frozen, nothing new goes through: a withdrawal on the new key is denied.
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev-2",
            Chain::Ethereum,
            eth_transfer(0, 1_000, HOT),
            "while-frozen",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Denied as i32, "{r:?}");
    // Denied by the freeze itself (every decision lists a `frozen` check; only a frozen
    // daemon denies with the `frozen` code, before the requester, the key or any rule).
    let decision = r.decision.unwrap();
    let explained: serde_json::Value = serde_json::from_str(&decision.explanation_json).unwrap();
    assert_eq!(explained["outcome"], "deny", "{explained}");
    assert_eq!(explained["code"], "frozen", "{explained}");
    assert_eq!(
        decision.reason,
        "signing is frozen; unfreezing needs the governance quorum and delay"
    );
    assert!(explained["rule"].is_null(), "{explained}");

    // 6. Unfreeze: one officer is not enough; two of two groups, then the delay.
    let freeze_id =
        kinko_policy::FreezeId(frozen(&d).await.freeze_id.as_slice().try_into().unwrap());
    let unfreeze = Subject::Unfreeze {
        request_id: "unfreeze-drill".into(),
        freeze_id,
    };
    admin(&d, "alice")
        .await
        .unfreeze(governance(&d, "alice", unfreeze.clone(), Verdict::Approve))
        .await
        .unwrap();
    assert!(frozen(&d).await.frozen, "one officer cannot unfreeze");
    // The quorum is reached by carol's approval, between `quorum_from` and `quorum_by`; the
    // freeze lifts the policy's delay (3 s) after it, not earlier.
    let quorum_from = jiff::Timestamp::now().as_second();
    admin(&d, "carol")
        .await
        .unfreeze(governance(&d, "carol", unfreeze, Verdict::Approve))
        .await
        .unwrap();
    let quorum_by = jiff::Timestamp::now().as_second();
    let state = frozen(&d).await;
    assert!(state.frozen, "the delay has not passed");
    assert_eq!(state.unfreeze_request_id, "unfreeze-drill");
    assert_eq!(state.unfreeze_approvals, 2);
    assert!(
        (quorum_from + 3..=quorum_by + 3).contains(&state.unfreeze_at_unix),
        "lifts 3 s after the quorum reached in [{quorum_from}, {quorum_by}]: {state:?}"
    );
    let mut lifted = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !frozen(&d).await.frozen {
            assert!(
                jiff::Timestamp::now().as_second() >= state.unfreeze_at_unix,
                "lifted before its delay: {state:?}"
            );
            lifted = true;
            break;
        }
    }
    assert!(
        lifted,
        "the freeze was not lifted after the quorum and the delay"
    );

    // Service is restored on the new key.
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev-2",
            Chain::Ethereum,
            eth_transfer(0, 1_000, HOT),
            "restored",
        ))
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    for officer in ["alice", "bob"] {
        let mut c = ApprovalServiceClient::new(channel(&d, officer).await);
        last = Some(
            c.approve(officer_approval(&d, officer, &r.request_id, Verdict::Approve).await)
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let signed = last.unwrap();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");
    assert!(!signed.signed_transaction.is_empty());

    // 7. Afterwards: the whole incident verifies offline, approvals and quorums included.
    fetch_and_verify(&d, &server, &tmp.path().join("audit-after"), &dir);
}
