//! Two kinkod replicas on one PostgreSQL database (and one HSM token): clients spread over both.
//! Safety never rests on which replica answers: a nonce signed through one is refused through
//! the other, a freeze through one stops the other, the velocity limit counts every replica's
//! signatures, one replica's death leaves the other serving the same history, and the log —
//! one sequence written by both — verifies offline. Needs the test cluster
//! (`KINKO_TEST_PG_URL`, which scripts/test-all.sh sets); without it the test fails unless
//! `KINKO_ALLOW_SKIP=postgres` says to skip it knowingly.

use std::path::Path;
use std::process::Command;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::admin_service_client::AdminServiceClient;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, Subject, Verdict, bin, channel, eth_transfer, export_log, free_port, governance,
    officer_approval, pb, reason, replace_in, start, submission, unique_label,
};

fn copy_dir(from: &Path, to: &Path) {
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

async fn submit(d: &Daemon, nonce: u64, idem: &str) -> pb::Request {
    WithdrawalServiceClient::new(channel(d, "ledger").await)
        .submit_withdrawal(submission(
            &d.dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                nonce,
                1_000,
                address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            idem,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn approve(d: &Daemon, officer: &str, id: &str) -> Result<pb::Request, tonic::Status> {
    ApprovalServiceClient::new(channel(d, officer).await)
        .approve(officer_approval(d, officer, id, Verdict::Approve).await)
        .await
        .map(tonic::Response::into_inner)
}

async fn get(d: &Daemon, id: &str) -> pb::Request {
    WithdrawalServiceClient::new(channel(d, "ledger").await)
        .get_request(pb::RequestId {
            request_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_one_history_and_never_sign_twice() {
    let Some(_) = kinko_store::testing::postgres_url() else {
        assert!(
            std::env::var("KINKO_ALLOW_SKIP")
                .is_ok_and(|v| v.trim() == "1" || v.split(',').any(|n| n.trim() == "postgres")),
            "KINKO_TEST_PG_URL is not set: start a cluster (scripts/pg-cluster.sh start DIR) or set KINKO_ALLOW_SKIP=postgres"
        );
        eprintln!("SKIPPED (KINKO_ALLOW_SKIP): no PostgreSQL test cluster");
        return;
    };
    kinko_hsm::testing::ensure_softhsm2_conf().unwrap();
    let url = kinko_store::testing::fresh_database("replicas").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (label, port_a, port_b) = (unique_label("replicas"), free_port(), free_port());
    let status = Command::new(bin("kinkod"))
        .args(["dev", "--init-only", "--data-dir"])
        .arg(&dir_a)
        .args(["--listen", &format!("127.0.0.1:{port_a}")])
        .args(["--token-label", &label, "--store-postgres", &url])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    // Two withdrawals a day through this key, whichever replica signs them.
    replace_in(
        &dir_a.join("policy.toml"),
        "max_count = 50",
        "max_count = 2",
    );
    // Replica B: the same configuration, certificates, policy and token; another port.
    copy_dir(&dir_a, &dir_b);
    replace_in(
        &dir_b.join("kinkod.toml"),
        &format!("127.0.0.1:{port_a}"),
        &format!("127.0.0.1:{port_b}"),
    );
    // A database that can lose an acknowledged commit is refused, unless overridden by name.
    let name = url
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap()
        .to_string();
    kinko_store::testing::sql(
        &url,
        &format!("ALTER DATABASE {name} SET synchronous_commit = off"),
    )
    .unwrap();
    let err = kinko_tests::start_fails(&dir_a);
    assert!(
        err.contains("can lose committed transactions: synchronous_commit = off")
            && err.contains("dangerous_allow_unsafe_durability"),
        "{err}"
    );
    kinko_store::testing::sql(
        &url,
        &format!("ALTER DATABASE {name} RESET synchronous_commit"),
    )
    .unwrap();
    let a = start(&dir_a, &label, port_a, false);
    let b = start(&dir_b, &label, port_b, false);
    assert_eq!(a.vkey, b.vkey, "one log key, one log");

    // A withdrawal submitted to A, approved once through each: signed.
    let first = submit(&a, 0, "r-1").await;
    approve(&b, "alice", &first.request_id).await.unwrap();
    let signed = approve(&a, "bob", &first.request_id).await.unwrap();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");
    assert_eq!(
        get(&b, &first.request_id).await.signed_transaction,
        signed.signed_transaction
    );

    // The same nonce again, entirely through B: refused, never signed.
    let again = submit(&b, 0, "r-1-again").await;
    approve(&b, "alice", &again.request_id).await.unwrap();
    let err = approve(&b, "bob", &again.request_id).await.unwrap_err();
    assert_eq!(reason(&err), "REPLAY_CONFLICT", "{err:?}");

    // The second of two a day, through B; the third, through A — whose own memory of the day
    // holds one signature — is denied: the limit counts both replicas' signatures.
    let second = submit(&b, 1, "r-2").await;
    approve(&b, "alice", &second.request_id).await.unwrap();
    let s2 = approve(&b, "bob", &second.request_id).await.unwrap();
    assert_eq!(s2.state, pb::RequestState::Signed as i32, "{s2:?}");
    let third = submit(&a, 2, "r-3").await;
    approve(&a, "alice", &third.request_id).await.unwrap();
    let err = approve(&a, "bob", &third.request_id).await.unwrap_err();
    assert_eq!(reason(&err), "POLICY_DENIED", "{err:?}");
    assert!(
        get(&b, &third.request_id)
            .await
            .signed_transaction
            .is_empty()
    );

    // A freeze through B stops A.
    let f = AdminServiceClient::new(channel(&b, "carol").await)
        .freeze(governance(
            &b,
            "carol",
            Subject::Freeze {
                request_id: "freeze-replicas".into(),
            },
            Verdict::Approve,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen);
    let frozen = AdminServiceClient::new(channel(&a, "auditor").await)
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(frozen.freeze_id, f.freeze_id, "A sees B's freeze");

    // A dies (kill -9); B serves the same history.
    a.kill9();
    assert_eq!(
        get(&b, &first.request_id).await.state,
        pb::RequestState::Signed as i32
    );
    let vkey = b.vkey.clone();
    drop(b);

    // One log, written by both, verifies offline.
    let exported = export_log(&dir_b, &tmp.path().join("exported"));
    let out = Command::new(bin("kinko"))
        .args(["audit", "verify"])
        .arg(&exported)
        .args(["--log-key", &vkey])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
