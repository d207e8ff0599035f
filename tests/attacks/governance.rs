//! Governance attacks: a policy change with one insider's approval only, and the policy file
//! edited on disk while kinkod runs. (Unfreeze without quorum: drill.rs; a file edited while
//! kinkod is down and a policy forged into store and file: tests/e2e/governance.rs.)

use std::time::Duration;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::admin_service_client::AdminServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Policy, Subject, Verdict, channel, eth_transfer, free_port, governance, init, pb, replace_in,
    start, start_fails, submission, unique_label,
};

#[tokio::test(flavor = "multi_thread")]
async fn one_insider_cannot_change_the_policy_and_an_edited_file_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-gov"), free_port());
    init(&dir, &label, port, |dir| {
        replace_in(
            &dir.join("policy.toml"),
            "time_lock = \"1h\"",
            "time_lock = \"1s\"",
        );
    });
    let d = start(&dir, &label, port, false);
    let policy_file = dir.join("policy.toml");
    let installed = std::fs::read_to_string(&policy_file).unwrap();
    let big = 500_000_000_000_000_000_000u128; // 500 ETH, over the 100 ETH rule
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);

    // An insider (alice, an admin officer) gets a looser policy proposed and approves it alone.
    let loose = installed.replacen("max_amount = \"100\"", "max_amount = \"1000000\"", 1);
    let mut admin = AdminServiceClient::new(channel(&d, "admin").await);
    let p = admin
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: loose.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let subject = Subject::InstallPolicy {
        request_id: p.proposal_id.clone(),
        new_policy_hash: Policy::from_toml(loose.as_bytes()).unwrap().hash(),
    };
    let mut alice = AdminServiceClient::new(channel(&d, "alice").await);
    alice
        .approve_policy(governance(&d, "alice", subject.clone(), Verdict::Approve))
        .await
        .unwrap();
    // Approving twice does not make two.
    assert!(
        alice
            .approve_policy(governance(&d, "alice", subject, Verdict::Approve))
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = admin
        .get_policy_proposal(pb::ProposalId {
            proposal_id: p.proposal_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (s.state.as_str(), s.approvals_counted),
        ("pending", 1),
        "{s:?}"
    );

    // The insider edits the policy file on the running daemon's disk instead.
    std::fs::write(&policy_file, &loose).unwrap();
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, big, hot),
            "big",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.state,
        pb::RequestState::Denied as i32,
        "the running daemon enforces the installed policy, not the file"
    );
    // Denied by the installed policy's 100 ETH cap (the edited file's refill rule would have
    // matched 500 ETH and asked for approvals): the refill rule is skipped on its amount, so
    // nothing matches, under the installed policy's hash.
    let explained: serde_json::Value =
        serde_json::from_str(&r.decision.unwrap().explanation_json).unwrap();
    assert_eq!(explained["code"], "no_rule_matched", "{explained}");
    assert_eq!(
        explained["policy_hash"],
        Policy::from_toml(installed.as_bytes())
            .unwrap()
            .hash()
            .to_hex(),
        "{explained}"
    );
    let refill = explained["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rule"]["name"] == "eth-hot-refill")
        .unwrap_or_else(|| panic!("{explained}"));
    assert_eq!(
        (
            &refill["failed"]["condition"],
            &refill["failed"]["expected"],
            &refill["failed"]["saw"]
        ),
        (
            &serde_json::json!("amount"),
            &serde_json::json!("at most 100 ETH"),
            &serde_json::json!("500 ETH")
        ),
        "{refill}"
    );
    let info = admin
        .get_policy(pb::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.policy_text, installed);
    drop(d);
    // ... and at the next start the edited file is refused.
    let err = start_fails(&dir);
    assert!(err.contains("is not the installed policy"), "{err}");
}
