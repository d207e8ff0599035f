//! Governance end to end, against a real kinkod: a policy changes only through a proposal that
//! officers approve under quorum and time-lock; the daemon refuses to start on a policy that did
//! not go through governance; requests expire; metrics and rate limits; a request interrupted
//! between authorization and signature is failed explicitly on restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_policy::{Policy, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::withdrawal_service_client::WithdrawalServiceClient;
use tokio_stream::StreamExt as _;

use kinko_tests::{
    audit_records, channel, eth_transfer, event_type, free_port, governance, init, reason,
    replace_in, start, start_fails, unique_label,
};

const HOT_WALLET: alloy_primitives::Address =
    address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

fn submission(dir: &Path, nonce: u64, value: u128, idem: &str) -> pb::SubmitWithdrawalRequest {
    kinko_tests::submission(
        dir,
        "eth-dev",
        Chain::Ethereum,
        eth_transfer(nonce, value, HOT_WALLET),
        idem,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_changes_only_under_quorum_and_time_lock_and_never_behind_governance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("gov"), free_port());
    init(&dir, &label, port, |dir| {
        // A short time-lock so the test can wait it out.
        replace_in(
            &dir.join("policy.toml"),
            "time_lock = \"1h\"",
            "time_lock = \"3s\"",
        );
    });
    let d = start(&dir, &label, port, false);
    let old_text = std::fs::read_to_string(dir.join("policy.toml")).unwrap();
    let old = Policy::from_toml(old_text.as_bytes()).unwrap();
    // The new policy lowers the Ethereum limit and adds a key the HSM does not hold yet.
    let new_text = old_text.replacen("max_amount = \"100\"", "max_amount = \"1\"", 1)
        + "\n[[keys]]\nname = \"eth-dev-2\"\nchain = \"ethereum\"\nnetwork = \"11155111\"\nhsm_label = \"kinko-eth-dev-2\"\n";
    let new = Policy::from_toml(new_text.as_bytes()).unwrap();

    // Only an admin proposes; a proposal changes nothing by itself.
    let mut ledger_admin = AdminServiceClient::new(channel(&d, "ledger").await);
    let err = ledger_admin
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: new_text.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ROLE_REQUIRED", "{err:?}");
    let mut admin = AdminServiceClient::new(channel(&d, "admin").await);
    let err = admin
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: "version = ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INVALID_REQUEST", "{err:?}");
    let p = admin
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: new_text.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.state, "pending");
    assert_eq!(p.policy_hash, new.hash().0);
    assert_eq!(p.current_policy_hash, old.hash().0);
    assert_eq!(p.approvals_required, 2);
    let id = p.proposal_id.clone();
    let install = Subject::InstallPolicy {
        request_id: id.clone(),
        new_policy_hash: new.hash(),
    };

    // An approval naming another hash does not count; alice and bob share a group, so the
    // quorum (two admins from two groups) needs carol.
    let mut alice = AdminServiceClient::new(channel(&d, "alice").await);
    let wrong = Subject::InstallPolicy {
        request_id: id.clone(),
        new_policy_hash: old.hash(),
    };
    let err = alice
        .approve_policy(governance(&d, "alice", wrong, Verdict::Approve))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "APPROVAL_INVALID", "{err:?}");
    let p = alice
        .approve_policy(governance(&d, "alice", install.clone(), Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((p.state.as_str(), p.approvals_counted), ("pending", 1));
    let mut bob = AdminServiceClient::new(channel(&d, "bob").await);
    let p = bob
        .approve_policy(governance(&d, "bob", install.clone(), Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.state, "pending", "two officers of one group: {p:?}");
    let mut carol = AdminServiceClient::new(channel(&d, "carol").await);
    // Carol's approval completes the quorum between `quorum_from` and `quorum_by`; the policy
    // takes effect its 3 s time-lock after that.
    let quorum_from = jiff::Timestamp::now().as_second();
    let p = carol
        .approve_policy(governance(&d, "carol", install.clone(), Verdict::Approve))
        .await
        .unwrap()
        .into_inner();
    let quorum_by = jiff::Timestamp::now().as_second();
    assert_eq!(p.state, "waiting", "{p:?}");
    assert!(
        (quorum_from + 3..=quorum_by + 3).contains(&p.effective_at_unix),
        "takes effect 3 s after the quorum reached in [{quorum_from}, {quorum_by}]: {p:?}"
    );

    // Until the time-lock passes, the old policy is in force: 2 ETH is allowed.
    let info = admin
        .get_policy(pb::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.policy_hash, old.hash().0);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(&dir, 0, 2_000_000_000_000_000_000, "before"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);

    // The daemon installs it by itself once the time-lock has passed.
    let mut installed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let p = admin
            .get_policy_proposal(pb::ProposalId {
                proposal_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if p.state == "installed" {
            assert!(
                jiff::Timestamp::now().as_second() >= p.effective_at_unix,
                "installed before its time-lock: {p:?}"
            );
            installed = true;
            break;
        }
    }
    assert!(
        installed,
        "the proposal was not installed after its time-lock"
    );
    let info = admin
        .get_policy(pb::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.policy_hash, new.hash().0);
    assert_eq!(info.proposal_id, id);
    assert_eq!(
        std::fs::read_to_string(dir.join("policy.toml")).unwrap(),
        new_text,
        "the policy file holds the installed policy"
    );
    // Now 2 ETH is over the new limit.
    let r = ledger
        .submit_withdrawal(submission(&dir, 1, 2_000_000_000_000_000_000, "after"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::Denied as i32, "{r:?}");
    // The new key was created in the HSM and is listed with its address.
    let keys = admin
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let k2 = keys.iter().find(|k| k.name == "eth-dev-2").unwrap();
    assert_eq!(k2.public_key.len(), 33);
    assert_eq!(
        k2.address,
        kinko_chain::address_of(Chain::Ethereum, "11155111", &k2.public_key).unwrap()
    );
    assert!(keys.iter().all(|k| !k.address.is_empty()), "{keys:?}");
    // The log holds the key's creation and the installation, each with the three approvals.
    let records = audit_records(&d).await;
    let created = records
        .iter()
        .find(|r| event_type(r) == "key_created" && r["event"]["key_name"] == "eth-dev-2")
        .unwrap();
    assert_eq!(created["event"]["approvals"].as_array().unwrap().len(), 3);
    assert_eq!(created["event"]["address"], k2.address.as_str());
    let last_install = records
        .iter()
        .rfind(|r| event_type(r) == "policy_installed")
        .unwrap();
    assert_eq!(
        last_install["event"]["policy_hash"],
        hex::encode(new.hash().0)
    );
    assert_eq!(
        last_install["event"]["approvals"].as_array().unwrap().len(),
        3
    );
    drop(d);

    // A policy file edited while the daemon is down is refused at start.
    std::fs::write(dir.join("policy.toml"), format!("{new_text}\n# edited\n")).unwrap();
    let err = start_fails(&dir);
    assert!(err.contains("is not the installed policy"), "{err}");
    // `kinkod installed-policy` restores it.
    let out = Command::new(kinko_tests::bin("kinkod"))
        .arg("--config")
        .arg(dir.join("kinkod.toml"))
        .arg("installed-policy")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout.clone()).unwrap(), new_text);
    std::fs::write(dir.join("policy.toml"), &out.stdout).unwrap();
    drop(start(&dir, &label, port, false));

    if !kinko_tests::sqlite_only("compares rebuilt SQLite files") {
        // The state rebuilt from the log alone holds the same installed policies, proposals and
        // governance votes, and kinkod starts on it.
        let rebuilt = dir.join("rebuilt.db");
        let out = Command::new(kinko_tests::bin("kinkod"))
            .arg("--config")
            .arg(dir.join("kinkod.toml"))
            .args(["rebuild", "--out"])
            .arg(&rebuilt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = |db: &std::path::Path, q: &str| -> Vec<String> {
            let conn = rusqlite::Connection::open(db).unwrap();
            let mut stmt = conn.prepare(q).unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for q in [
            "SELECT hex(policy_hash) || coalesce(proposal_id, '') || policy_text FROM installed_policies ORDER BY seq",
            "SELECT id || hex(policy_hash) || hex(base_policy_hash) || proposed_by || policy_text FROM policy_proposals ORDER BY id",
            "SELECT governance_id || officer_id || hex(message) || hex(signature) FROM governance_approvals ORDER BY governance_id, officer_id",
            "SELECT id || kind FROM governance ORDER BY id",
        ] {
            let kept = rows(&dir.join("kinko.db"), q);
            assert!(!kept.is_empty(), "{q}");
            assert_eq!(kept, rows(&rebuilt, q), "{q}");
        }
        for f in ["kinko.db", "kinko.db-wal", "kinko.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        std::fs::rename(&rebuilt, dir.join("kinko.db")).unwrap();
        drop(start(&dir, &label, port, false));
    }

    // Someone with write access to both the database and the file installs a policy behind
    // governance: the audit log still names the last approved one, and kinkod refuses to start.
    let forged = format!("{new_text}\n# forged\n");
    let forged_hash = Policy::from_toml(forged.as_bytes()).unwrap().hash();
    let store = kinko_tests::open_store(&dir);
    store
        .install_policy(&kinko_store::InstalledPolicy {
            policy_hash: forged_hash.0.to_vec(),
            policy_text: forged.clone(),
            proposal_id: None,
            installed_at: 0,
        })
        .unwrap();
    drop(store);
    std::fs::write(dir.join("policy.toml"), &forged).unwrap();
    let err = start_fails(&dir);
    assert!(
        err.contains("is not the policy the audit log last installed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_expire_watchers_see_it_and_metrics_and_rate_limits_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port, metrics_port) = (unique_label("exp"), free_port(), free_port());
    init(&dir, &label, port, |dir| {
        let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        config.push_str(&format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[limits]\npending_expiry_secs = 3\ncalls_per_second_per_principal = 2.0\ncall_burst_per_principal = 8.0\n"
        ));
        std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    });
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(&dir, 0, 1_000, "expires"))
        .await
        .unwrap()
        .into_inner();
    let mut watch = ledger
        .watch_request(pb::RequestId {
            request_id: r.request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().request.unwrap();
    assert_eq!(first.state, pb::RequestState::PendingApproval as i32);
    // Nobody approves: the watcher sees it expire (within the expiry plus a background step).
    let last = tokio::time::timeout(Duration::from_secs(15), async {
        let mut last = first;
        while let Some(e) = watch.next().await {
            last = e.unwrap().request.unwrap();
        }
        last
    })
    .await
    .expect("the watch stream did not end");
    assert_eq!(last.state, pb::RequestState::Expired as i32, "{last:?}");
    assert!(last.final_reason.contains("no quorum"), "{last:?}");
    let records = audit_records(&d).await;
    assert!(records.iter().any(|r| event_type(r) == "refusal"
        && r["event"]["code"] == "EXPIRED"
        && r["event"]["request_id"] == r_id(&last)));

    // Metrics: an auditor may scrape, a requester may not.
    let page = kinko_tests::https_get(&d, metrics_port, "auditor", "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("kinko_requests{state=\"expired\"} 1\n"),
        "{page}"
    );
    assert!(
        page.contains("kinko_decisions_total{rule=\"eth-hot-refill\",outcome=\"allow\"} 1\n"),
        "{page}"
    );
    assert!(page.contains("kinko_frozen 0\n"), "{page}");
    assert!(page.contains("kinko_audit_append_seconds_count"), "{page}");
    let page = kinko_tests::https_get(&d, metrics_port, "ledger", "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 403"), "{page}");

    // Rate limit: 2 calls/s with bursts of 8. A rapid run of calls is cut off with a clear
    // reason, and another principal is still served.
    let mut limited = None;
    for _ in 0..20 {
        if let Err(e) = ledger
            .get_request(pb::RequestId {
                request_id: r.request_id.clone(),
            })
            .await
        {
            limited = Some(e);
            break;
        }
    }
    let e = limited.expect("20 rapid calls were all served");
    assert_eq!(reason(&e), "RATE_LIMITED", "{e:?}");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    let mut auditor = AdminServiceClient::new(channel(&d, "auditor").await);
    auditor
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap();
    let page = kinko_tests::https_get(&d, metrics_port, "auditor", "/metrics").await;
    assert!(!page.contains("kinko_rate_limited_total 0\n"), "{page}");
}

fn r_id(r: &pb::Request) -> &str {
    &r.request_id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_left_signing_by_a_crash_is_failed_explicitly_and_never_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("rec"), free_port());
    let d = start(&dir, &label, port, true);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(&dir, 0, 1_000, "crash"))
        .await
        .unwrap()
        .into_inner();
    drop(d);
    // What a crash after the durable claim and before the signature leaves behind.
    let store = kinko_tests::open_store(&dir);
    for (from, to) in [
        (
            kinko_store::RequestState::PendingApproval,
            kinko_store::RequestState::Approved,
        ),
        (
            kinko_store::RequestState::Approved,
            kinko_store::RequestState::Signing,
        ),
    ] {
        store
            .transition(&r.request_id, &[from], to, None, 0)
            .unwrap();
    }
    drop(store);
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let now = ledger
        .get_request(pb::RequestId {
            request_id: r.request_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.state, pb::RequestState::Failed as i32, "{now:?}");
    assert!(now.final_reason.contains("kinkod stopped"), "{now:?}");
    assert!(now.signed_transaction.is_empty());
}
