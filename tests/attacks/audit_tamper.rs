//! The audit log (held in the store) edited, truncated or emptied while kinkod is down, by
//! someone who can write the database and drops its append-only triggers: kinkod refuses to
//! start and names what it found, and the auditor's offline verifier (`kinko audit verify`, on
//! the files `kinkod export-log` writes) names the first bad record.

use std::path::Path;
use std::process::Command;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::audit_service_client::AuditServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Verdict, bin, channel, eth_transfer, export_log, free_port, officer_approval, pb, start,
    start_fails, submission, unique_label,
};

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("kinko.db")).unwrap()
}

/// What an attacker with write access to the database does first.
fn drop_triggers(dir: &Path) {
    db(dir)
        .execute_batch(
            "DROP TRIGGER IF EXISTS log_records_append_only_update;
             DROP TRIGGER IF EXISTS log_records_append_only_delete;
             DROP TRIGGER IF EXISTS log_checkpoints_append_only_update;
             DROP TRIGGER IF EXISTS log_checkpoints_append_only_delete;",
        )
        .unwrap();
}

fn line(dir: &Path, seq: u64) -> String {
    db(dir)
        .query_row(
            "SELECT line FROM log_records WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .unwrap()
}

/// Rewrites record `seq`'s line and, as a careful attacker would, its leaf-hash column.
fn set_line(dir: &Path, seq: u64, line: &str) {
    let hash = kinko_audit::merkle::leaf_hash(line.as_bytes());
    db(dir)
        .execute(
            "UPDATE log_records SET line = ?2, leaf_hash = ?3 WHERE seq = ?1",
            rusqlite::params![seq as i64, line, hash.as_slice()],
        )
        .unwrap();
}

/// The database files, saved or restored.
/// The PostgreSQL database `dir`'s kinkod uses (None on SQLite).
pub(crate) fn pg_database(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    let url = config["store"].get("postgres")?.as_str()?.to_string();
    url.split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .map(str::to_string)
}

/// On the test cluster (kinkod stopped): database `to` becomes a copy of `from`, as a backup
/// or a restore would make it.
pub(crate) fn pg_copy(from: &str, to: &str) {
    let base = kinko_store::testing::postgres_url().unwrap();
    let sql = |s: &str| kinko_store::testing::sql(&base, s);
    // The killed kinkod's sessions may linger a moment; a copy needs none on either side.
    sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname IN ('{from}', '{to}') AND pid <> pg_backend_pid()"
    ))
    .unwrap();
    sql(&format!("DROP DATABASE IF EXISTS {to}")).unwrap();
    sql(&format!("CREATE DATABASE {to} TEMPLATE {from}")).unwrap();
}

pub(crate) fn copy_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["kinko.db", "kinko.db-wal", "kinko.db-shm"] {
        let _ = std::fs::remove_file(to.join(f));
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
}

/// `kinko audit verify DIR --log-key K [--checkpoint F]`: (exit code, output).
fn verify(dir: &Path, vkey: &str, kept: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new(bin("kinko"));
    cmd.args(["audit", "verify"])
        .arg(dir)
        .args(["--log-key", vkey]);
    if let Some(k) = kept {
        cmd.arg("--checkpoint").arg(k);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_edited_truncated_or_replaced_offline_is_refused_and_named() {
    if kinko_tests::sqlite_only("edits the log tables of kinko.db") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-log"), free_port());
    let d = start(&dir, &label, port, true);
    let vkey = d.vkey.clone();
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    for n in 0..2u64 {
        let r = ledger
            .submit_withdrawal(submission(
                &dir,
                "eth-dev",
                Chain::Ethereum,
                eth_transfer(
                    n,
                    1_000,
                    address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
                ),
                &format!("log-{n}"),
            ))
            .await
            .unwrap()
            .into_inner();
        for officer in ["alice", "bob"] {
            let mut c = ApprovalServiceClient::new(channel(&d, officer).await);
            c.approve(officer_approval(&d, officer, &r.request_id, Verdict::Approve).await)
                .await
                .unwrap();
        }
    }
    // The auditor keeps the latest checkpoint, as docs/audit.md asks.
    let mut auditor = AuditServiceClient::new(channel(&d, "auditor").await);
    let kept_note = auditor
        .latest_checkpoint(pb::CheckpointRequest::default())
        .await
        .unwrap()
        .into_inner()
        .signed_note;
    let kept = tmp.path().join("kept.note");
    std::fs::write(&kept, &kept_note).unwrap();
    drop(d);

    let pristine = tmp.path().join("pristine");
    copy_db(&dir, &pristine);
    let export = |name: &str| export_log(&dir, &tmp.path().join(name));
    assert_eq!(verify(&export("pristine-export"), &vkey, Some(&kept)).0, 0);
    let total = db(&dir)
        .query_row("SELECT COUNT(*) FROM log_records", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as u64;
    assert!(total > 10);
    drop_triggers(&dir);
    const WONT_START: &str = "kinkod will not start on a history that does not verify";

    // 1. The first decision record (N) edited so that it no longer decodes: kinkod names the
    //    record and why.
    let n: u64 = (0..total)
        .find(|&i| line(&dir, i).contains("\"type\":\"decision\""))
        .expect("a decision record");
    let original = line(&dir, n);
    assert!(
        original.contains("\"explanation\""),
        "record {n} is a decision: {original}"
    );
    set_line(
        &dir,
        n,
        &original.replace("\"explanation\"", "\"explanati0n\""),
    );
    let err = start_fails(&dir);
    assert!(
        err.contains(&format!(
            "the audit log in the store does not verify: record {n}: record encoding: unknown field `explanati0n`"
        )) && err.contains(WONT_START),
        "{err}"
    );
    let (code, out) = verify(&export("edited-1"), &vkey, None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("record {n}")),
        "the first bad record is named: {out}"
    );

    // 1b. One character of record N's request id changed (leaf hash column updated too): the
    //     record still decodes, but the log no longer hashes to the checkpoints kinkod signed.
    let at = original
        .find("\"request_id\":\"req-")
        .expect("record N names its request")
        + 19;
    let mut edited = original.clone().into_bytes();
    edited[at] = if edited[at] == b'0' { b'1' } else { b'0' };
    set_line(&dir, n, &String::from_utf8(edited).unwrap());
    let err = start_fails(&dir);
    assert!(
        err.contains("records do not hash to the root of the checkpoint signed at that size")
            && err.contains(WONT_START),
        "{err}"
    );
    // The verifier narrows it down to the records between two checkpoints, record N among them.
    let (code, out) = verify(&export("edited-1b"), &vkey, None);
    assert_eq!(code, 2, "{out}");
    let (from, to) = out
        .lines()
        .find_map(|l| l.strip_prefix("result:         FAILED at record "))
        .and_then(|l| l.split_once("a record among "))
        .and_then(|(_, r)| r.split_once(" was altered"))
        .and_then(|(r, _)| r.split_once("..="))
        .unwrap_or_else(|| panic!("no altered range named: {out}"));
    let range = from.parse::<u64>().unwrap()..=to.parse::<u64>().unwrap();
    assert!(range.contains(&n), "{range:?}: {out}");
    set_line(&dir, n, &original);
    drop(start(&dir, &label, port, false));

    // 2. Truncated consistently at an earlier signed checkpoint: records and checkpoints both cut,
    //    so the log alone is valid — but the state kinkod kept shows requests it no longer holds.
    let cps: Vec<u64> = {
        let conn = db(&dir);
        let mut stmt = conn
            .prepare("SELECT size FROM log_checkpoints ORDER BY size")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|r| r.unwrap() as u64)
            .collect()
    };
    let cut_at = *cps
        .iter()
        .rfind(|s| **s > 0 && **s < total - 2)
        .expect("an earlier checkpoint to cut at");
    db(&dir)
        .execute_batch(&format!(
            "DELETE FROM log_records WHERE seq >= {cut_at}; DELETE FROM log_checkpoints WHERE size > {cut_at};"
        ))
        .unwrap();
    // Shorter than the newest checkpoint this kinkod saw: refused at once.
    let err = start_fails(&dir);
    assert!(
        err.contains(&format!(
            "holds {cut_at} records, but this kinkod saw a signed checkpoint of"
        )),
        "{err}"
    );
    // Without that file (a new host, say), the state it kept still disagrees with the log.
    let seen = dir.join("seen-checkpoint.note");
    let seen_note = std::fs::read(&seen).unwrap();
    std::fs::remove_file(&seen).unwrap();
    let err = start_fails(&dir);
    assert!(
        err.contains("in the store, but the audit log")
            && err.contains("kinkod will not sign until store and log agree"),
        "{err}"
    );
    // The auditor's copy of the truncated log passes alone, but not against the kept checkpoint.
    let truncated = export("truncated");
    assert_eq!(verify(&truncated, &vkey, None).0, 0);
    let (code, out) = verify(&truncated, &vkey, Some(&kept));
    assert_eq!(code, 2, "{out}");

    // 3. The log emptied.
    db(&dir)
        .execute_batch("DELETE FROM log_records; DELETE FROM log_checkpoints;")
        .unwrap();
    let err = start_fails(&dir);
    assert!(err.contains("its audit log is empty"), "{err}");

    // Restored from the pristine copy, kinkod starts again.
    copy_db(&pristine, &dir);
    std::fs::write(&seen, seen_note).unwrap();
    drop(start(&dir, &label, port, false));
}

/// Submits and approves (twice) one Ethereum withdrawal of nonce `nonce`: signed.
pub(crate) async fn sign_one(d: &kinko_tests::Daemon, nonce: u64) {
    let r = WithdrawalServiceClient::new(channel(d, "ledger").await)
        .submit_withdrawal(submission(
            &d.dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                nonce,
                1_000,
                address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            &format!("restore-{nonce}"),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut state = 0;
    for officer in ["alice", "bob"] {
        state = ApprovalServiceClient::new(channel(d, officer).await)
            .approve(officer_approval(d, officer, &r.request_id, Verdict::Approve).await)
            .await
            .unwrap()
            .into_inner()
            .state;
    }
    assert_eq!(state, pb::RequestState::Signed as i32);
}

/// A database restored from a backup older than what this kinkod has seen signed: refused at
/// start (it would forget the nonces, digests and velocity of the signatures since), naming the
/// file that keeps the newest checkpoint; removing that file knowingly lets it start. Both
/// backends: a copy of kinko.db, or of the PostgreSQL database.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_restored_from_an_older_backup_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-restore"), free_port());
    let d = start(&dir, &label, port, true);
    sign_one(&d, 0).await;
    // The backup, taken between two signatures (with kinkod stopped): a copy of kinko.db, or
    // on PostgreSQL a copy of the database.
    drop(d);
    let backup = tmp.path().join("backup");
    let pg = pg_database(&dir);
    let pg_backup = pg.as_ref().map(|db| format!("{db}_backup"));
    match (&pg, &pg_backup) {
        (Some(db), Some(bk)) => pg_copy(db, bk),
        _ => copy_db(&dir, &backup),
    }
    let d = start(&dir, &label, port, false);
    sign_one(&d, 1).await;
    // The background tick keeps the newest checkpoint (every 2 s).
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    drop(d);
    match (&pg, &pg_backup) {
        (Some(db), Some(bk)) => pg_copy(bk, db),
        _ => copy_db(&backup, &dir),
    }
    let err = start_fails(&dir);
    assert!(
        err.contains("but this kinkod saw a signed checkpoint of")
            && err.contains("restored from an older backup or replaced")
            && err.contains("seen-checkpoint.note"),
        "{err}"
    );
    // Knowingly continuing this history: the file removed, kinkod starts on the older log.
    std::fs::remove_file(dir.join("seen-checkpoint.note")).unwrap();
    drop(start(&dir, &label, port, false));
}
