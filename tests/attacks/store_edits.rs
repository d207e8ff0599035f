//! The log outranks the store: an insider edits kinkod's database while it is stopped. A freeze
//! cleared or deleted is restored from the log (signing stays frozen); another freeze id, a
//! signed request's claims deleted, the signed request deleted or set back to pending: kinkod
//! refuses to start, saying what differs. Never signed.

use std::path::Path;
use std::time::Duration;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::admin_service_client::AdminServiceClient;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Subject, Verdict, channel, eth_transfer, free_port, governance, init, officer_approval, pb,
    start, start_fails, submission, unique_label,
};

/// Copies a directory tree (the data directory, to replay each edit on the same history).
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

fn sql(dir: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(dir.join("kinko.db")).unwrap();
    conn.execute_batch(statements).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_edited_behind_kinkod_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("store-edit"), free_port());
    init(&dir, &label, port, |_| {});
    let d = start(&dir, &label, port, false);
    // One signed withdrawal (nonce 0), then a freeze.
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000, hot),
            "signed-1",
        ))
        .await
        .unwrap()
        .into_inner();
    let id = r.request_id.clone();
    for officer in ["alice", "bob"] {
        ApprovalServiceClient::new(channel(&d, officer).await)
            .approve(officer_approval(&d, officer, &id, Verdict::Approve).await)
            .await
            .unwrap();
    }
    let f = AdminServiceClient::new(channel(&d, "carol").await)
        .freeze(governance(
            &d,
            "carol",
            Subject::Freeze {
                request_id: "freeze-1".into(),
            },
            Verdict::Approve,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen);
    drop(d);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pristine = tmp.path().join("pristine");
    copy_dir(&dir, &pristine);

    // The freeze cleared or its row deleted: the log's freeze is restored, never lifted.
    for (what, edit) in [
        (
            "freeze cleared",
            "UPDATE freeze SET frozen = 0, freeze_id = x'';",
        ),
        ("freeze row deleted", "DELETE FROM freeze;"),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&pristine, &dir);
        sql(&dir, edit);
        let d = start(&dir, &label, port, false);
        let now = AdminServiceClient::new(channel(&d, "auditor").await)
            .get_freeze_state(pb::ListKeysRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(now.frozen, "{what}: {now:?}");
        assert_eq!(now.freeze_id, f.freeze_id, "{what}: the log's freeze");
        // Nothing is signed: a fully approved withdrawal waits.
        let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
        let r = ledger
            .submit_withdrawal(submission(
                &dir,
                "eth-dev",
                Chain::Ethereum,
                eth_transfer(1, 1_000, hot),
                "after-edit",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.state, pb::RequestState::Denied as i32, "{what}: {r:?}");
        drop(d);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cases: [(&str, String, &str); 5] = [
        (
            "freeze id replaced",
            "UPDATE freeze SET freeze_id = x'0101010101010101010101010101010101010101010101010101010101010101';".into(),
            "but the store names another freeze",
        ),
        (
            "replay key deleted",
            format!("DELETE FROM replay_keys WHERE request_id = '{id}';"),
            "the store lacks the claim of replay key nonce:0 of key eth-dev",
        ),
        (
            "digest deleted",
            format!("DELETE FROM signed_digests WHERE request_id = '{id}';"),
            "the store lacks the claim of digest",
        ),
        (
            "signed request set back to pending",
            format!("UPDATE requests SET state = 'pending_approval' WHERE id = '{id}';"),
            "is pending_approval in the store, but the audit log shows it signed",
        ),
        (
            "signed request deleted",
            format!(
                "DELETE FROM approvals WHERE request_id = '{id}'; DELETE FROM replay_keys WHERE request_id = '{id}'; DELETE FROM signed_digests WHERE request_id = '{id}'; DELETE FROM reservations WHERE request_id = '{id}'; DELETE FROM requests WHERE id = '{id}';"
            ),
            "is not in the store",
        ),
    ];
    for (what, edit, expected) in cases {
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&pristine, &dir);
        sql(&dir, &edit);
        let err = start_fails(&dir);
        assert!(err.contains(expected), "{what}: {err}");
        assert!(
            err.contains("kinkod will not sign until store and log agree"),
            "{what}: {err}"
        );
    }
    // The unedited store starts, still frozen.
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&pristine, &dir);
    let d = start(&dir, &label, port, false);
    let f = AdminServiceClient::new(channel(&d, "auditor").await)
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen);
}
