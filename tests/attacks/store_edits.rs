//! The log outranks the store: an insider edits kinkod's database (the state tables, not the
//! log's) while it is stopped. A freeze cleared or deleted is restored from the log (signing
//! stays frozen); another freeze id, a signed request's claims deleted, the signed request
//! deleted or set back to pending, a denied request set to pending, an approval or a claim
//! inserted, an approval or a velocity reservation deleted, a request inserted or deleted:
//! kinkod refuses to start, saying what differs. Never signed. And the state rebuilt from the
//! log alone is the state kept.

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

fn sql(dir: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(dir.join("kinko.db")).unwrap();
    conn.execute_batch(statements).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_edited_behind_kinkod_is_refused_at_start() {
    if kinko_tests::sqlite_only("edits the state tables of kinko.db") {
        return;
    }
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
    // One request waiting for its second approval, and one denied (not on the allowlist).
    let pending = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(1, 1_000, hot),
            "pending-1",
        ))
        .await
        .unwrap()
        .into_inner()
        .request_id;
    ApprovalServiceClient::new(channel(&d, "alice").await)
        .approve(officer_approval(&d, "alice", &pending, Verdict::Approve).await)
        .await
        .unwrap();
    let denied = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                2,
                1_000,
                address!("0x00000000000000000000000000000000000000a1"),
            ),
            "denied-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.state, pb::RequestState::Denied as i32, "{denied:?}");
    let denied = denied.request_id;
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
    kinko_tests::copy_dir(&dir, &pristine);

    // The freeze cleared or its row deleted: the log's freeze is restored, never lifted.
    for (what, edit) in [
        (
            "freeze cleared",
            "UPDATE freeze SET frozen = 0, freeze_id = x'';",
        ),
        ("freeze row deleted", "DELETE FROM freeze;"),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        kinko_tests::copy_dir(&pristine, &dir);
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
                eth_transfer(3, 1_000, hot),
                "after-edit",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.state, pb::RequestState::Denied as i32, "{what}: {r:?}");
        drop(d);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let columns = "requester, idempotency_key, key_name, chain, network, payload, reference, \
        requester_signature, intent_json, intent_digest, policy_hash, decision_json, state, \
        final_reason, signed_transaction, transaction_id, created_at, updated_at";
    let cases: [(&str, String, String); 12] = [
        (
            "freeze id replaced",
            "UPDATE freeze SET freeze_id = x'0101010101010101010101010101010101010101010101010101010101010101';".into(),
            "but the store names another freeze".into(),
        ),
        (
            "replay key deleted",
            format!("DELETE FROM replay_keys WHERE request_id = '{id}';"),
            "the store lacks the claim of replay key nonce:0 of key eth-dev".into(),
        ),
        (
            "digest deleted",
            format!("DELETE FROM signed_digests WHERE request_id = '{id}';"),
            "the store lacks the claim of digest".into(),
        ),
        (
            "signed request set back to pending",
            format!("UPDATE requests SET state = 'pending_approval' WHERE id = '{id}';"),
            "is pending_approval in the store, but the audit log shows it authorized for signing, signed".into(),
        ),
        (
            "denied request set to pending",
            format!("UPDATE requests SET state = 'pending_approval', final_reason = NULL WHERE id = '{denied}';"),
            format!("request {denied} is pending_approval in the store, but the audit log shows it denied"),
        ),
        (
            "approval inserted",
            format!(
                "INSERT INTO approvals (request_id, officer_id, approve, message, signature, received_at) \
                 SELECT request_id, 'bob', approve, message, signature, received_at FROM approvals \
                 WHERE request_id = '{pending}' AND officer_id = 'alice';"
            ),
            format!("the store holds a verdict of officer bob on {pending} that is not in the audit log"),
        ),
        (
            "pending request deleted",
            format!("DELETE FROM approvals WHERE request_id = '{pending}'; DELETE FROM requests WHERE id = '{pending}';"),
            format!("request {pending} is in the audit log but not in the store"),
        ),
        (
            "request inserted",
            format!(
                "INSERT INTO requests (id, {columns}) SELECT 'req-forged', {} FROM requests WHERE id = '{pending}';",
                columns.replace("idempotency_key", "'forged'")
            ),
            "request req-forged (pending_approval) is in the store, but the audit log never received it".into(),
        ),
        (
            "approval deleted",
            format!("DELETE FROM approvals WHERE request_id = '{pending}';"),
            format!("the audit log holds a verdict of officer alice on {pending} that the store lacks"),
        ),
        (
            "velocity reservation deleted",
            format!("DELETE FROM reservations WHERE request_id = '{id}';"),
            format!("the store's velocity reservations of request {id} () are not the ones its signing authorization implies"),
        ),
        (
            "claim inserted",
            format!("INSERT INTO replay_keys (key_name, replay_key, request_id, at) VALUES ('eth-dev', 'nonce:7', '{pending}', 0);"),
            format!("the store holds a claim of replay key nonce:7 of key eth-dev for request {pending}, which the audit log never authorized"),
        ),
        (
            "signed request deleted",
            format!(
                "DELETE FROM approvals WHERE request_id = '{id}'; DELETE FROM replay_keys WHERE request_id = '{id}'; DELETE FROM signed_digests WHERE request_id = '{id}'; DELETE FROM reservations WHERE request_id = '{id}'; DELETE FROM requests WHERE id = '{id}';"
            ),
            format!("request {id} is in the audit log but not in the store"),
        ),
    ];
    for (what, edit, expected) in cases {
        let _ = std::fs::remove_dir_all(&dir);
        kinko_tests::copy_dir(&pristine, &dir);
        sql(&dir, &edit);
        let err = start_fails(&dir);
        assert!(err.contains(&expected), "{what}: {err}");
        assert!(
            err.contains("kinkod will not sign until store and log agree"),
            "{what}: {err}"
        );
    }
    // The unedited store starts, still frozen.
    let _ = std::fs::remove_dir_all(&dir);
    kinko_tests::copy_dir(&pristine, &dir);
    let d = start(&dir, &label, port, false);
    let f = AdminServiceClient::new(channel(&d, "auditor").await)
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen);
    drop(d);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The state derived from the log alone (`kinkod rebuild`) is the state kinkod kept.
    let _ = std::fs::remove_dir_all(&dir);
    kinko_tests::copy_dir(&pristine, &dir);
    let rebuilt = dir.join("rebuilt.db");
    let out = std::process::Command::new(kinko_tests::bin("kinkod"))
        .arg("--config")
        .arg(dir.join("kinkod.toml"))
        .arg("rebuild")
        .arg("--out")
        .arg(&rebuilt)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("3 requests (1 signed)") && said.contains("FROZEN"),
        "{said}"
    );
    let tables = |db: &Path| -> Vec<Vec<String>> {
        let conn = rusqlite::Connection::open(db).unwrap();
        [
            "SELECT id || state || hex(payload) || hex(intent_digest) || hex(policy_hash) || requester || idempotency_key || coalesce(hex(signed_transaction), '') || coalesce(transaction_id, '') FROM requests ORDER BY id",
            "SELECT request_id || officer_id || approve || hex(message) || hex(signature) FROM approvals ORDER BY request_id, officer_id",
            "SELECT key_name || replay_key || request_id FROM replay_keys ORDER BY 1",
            "SELECT key_name || digest || request_id FROM signed_digests ORDER BY 1",
            "SELECT key_name || asset || amount || request_id FROM reservations ORDER BY 1",
            "SELECT frozen || hex(freeze_id) FROM freeze",
            "SELECT hex(policy_hash) FROM installed_policies ORDER BY seq",
            "SELECT seq || line FROM log_records ORDER BY seq",
            "SELECT size || note FROM log_checkpoints ORDER BY size",
        ]
        .iter()
        .map(|q| {
            let mut stmt = conn.prepare(q).unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        })
        .collect()
    };
    let kept = tables(&dir.join("kinko.db"));
    let derived = tables(&rebuilt);
    for (i, (k, r)) in kept.iter().zip(&derived).enumerate() {
        assert!(!k.is_empty() || i == 2, "table {i} of the fixture is empty");
        assert_eq!(
            k, r,
            "table {i} differs between the kept and the rebuilt state"
        );
    }
    // Every state table wiped: refused; the rebuilt database swapped in: kinkod starts, frozen
    // by the same freeze, and the request waiting for its second approval still waits.
    sql(
        &dir,
        "DELETE FROM approvals; DELETE FROM replay_keys; DELETE FROM signed_digests; DELETE FROM reservations; DELETE FROM requests; DELETE FROM freeze;",
    );
    let err = start_fails(&dir);
    assert!(
        err.contains("in the audit log but not in the store"),
        "{err}"
    );
    for f in ["kinko.db", "kinko.db-wal", "kinko.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    std::fs::rename(&rebuilt, dir.join("kinko.db")).unwrap();
    let d = start(&dir, &label, port, false);
    let now = AdminServiceClient::new(channel(&d, "auditor").await)
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(now.frozen);
    assert_eq!(now.freeze_id, f.freeze_id);
    let waiting = WithdrawalServiceClient::new(channel(&d, "ledger").await)
        .get_request(pb::RequestId {
            request_id: pending.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waiting.state, pb::RequestState::PendingApproval as i32);
    assert_eq!(waiting.approvals.len(), 1, "{waiting:?}");
}
