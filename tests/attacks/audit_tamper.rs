//! The audit log edited, truncated or replaced while kinkod is down: kinkod refuses to start,
//! and the auditor's offline verifier (`kinko audit verify`) names the first bad record.

use std::path::{Path, PathBuf};
use std::process::Command;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::audit_service_client::AuditServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Verdict, bin, channel, eth_transfer, free_port, officer_approval, pb, start, start_fails,
    submission, unique_label,
};

fn segment(audit: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(audit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-"))
        })
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 1, "one segment expected in a small log");
    segs.remove(0)
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The tree size in a checkpoints.jsonl line (`{"note": "origin\nSIZE\nroot\n\n— sig"}`).
fn checkpoint_size(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["note"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_edited_truncated_or_replaced_offline_is_refused_and_named() {
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
        .latest_checkpoint(pb::CheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .signed_note;
    let kept = tmp.path().join("kept.note");
    std::fs::write(&kept, &kept_note).unwrap();
    drop(d);

    let audit = dir.join("audit");
    let pristine = tmp.path().join("pristine");
    copy_dir(&audit, &pristine);
    assert_eq!(verify(&pristine, &vkey, Some(&kept)).0, 0);
    let seg = segment(&audit);
    let original = std::fs::read(&seg).unwrap();
    let lines: Vec<&[u8]> = original
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() > 10);

    // The size of the last checkpoint kinkod signed (the one it checks the log against).
    let cps_path = audit.join("checkpoints.jsonl");
    let last_signed = checkpoint_size(
        std::fs::read_to_string(&cps_path)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    );
    // kinkod's refusal: which log, what failed, and that it will not start.
    let refusal = |what: &str| format!("kinkod: audit log {}: {what}", audit.display());
    const WONT_START: &str = " (kinkod will not start on a log that does not verify)\n";

    // 1. One byte of record 5 edited (byte 20 falls in a field name) so that the record no
    //    longer decodes: kinkod names the record and why.
    let mut edited = original.clone();
    let offset: usize = lines[..5].iter().map(|l| l.len() + 1).sum::<usize>() + 20;
    edited[offset] = if edited[offset] == b'0' { b'1' } else { b'0' };
    std::fs::write(&seg, &edited).unwrap();
    let err = start_fails(&dir);
    assert!(
        err.contains(&refusal(&format!(
            "audit log at {} is corrupt: record 5: record encoding: unknown field `explanati0n`",
            seg.display()
        ))) && err.ends_with(WONT_START),
        "{err}"
    );
    let (code, out) = verify(&audit, &vkey, None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("record 5"),
        "the first bad record is named: {out}"
    );

    // 1b. One character of record 5's request id changed: the record still decodes, but the
    //     log no longer hashes to the last checkpoint kinkod signed.
    let mut edited = original.clone();
    let at = lines[5]
        .windows(18)
        .position(|w| w == b"\"request_id\":\"req-")
        .expect("record 5 names its request");
    let offset: usize = lines[..5].iter().map(|l| l.len() + 1).sum::<usize>() + at + 18;
    edited[offset] = if edited[offset] == b'0' { b'1' } else { b'0' };
    std::fs::write(&seg, &edited).unwrap();
    let err = start_fails(&dir);
    assert!(
        err.contains(&refusal(&format!(
            "audit log does not match its last signed checkpoint: the first {last_signed} records \
             do not hash to the root of the last signed checkpoint{WONT_START}"
        ))),
        "{err}"
    );
    // The verifier narrows it down to the records between two checkpoints, record 5 among them.
    let (code, out) = verify(&audit, &vkey, None);
    assert_eq!(code, 2, "{out}");
    let (from, to) = out
        .lines()
        .find_map(|l| l.strip_prefix("result:         FAILED at record "))
        .and_then(|l| l.split_once("a record among "))
        .and_then(|(_, r)| r.split_once(" was altered"))
        .and_then(|(r, _)| r.split_once("..="))
        .unwrap_or_else(|| panic!("no altered range named: {out}"));
    let range = from.parse::<u64>().unwrap()..=to.parse::<u64>().unwrap();
    assert!(range.contains(&5), "{range:?}: {out}");
    std::fs::write(&seg, &original).unwrap();

    // 2. Truncated consistently at an earlier signed checkpoint: records and checkpoints both cut,
    //    so the log is internally valid — but shorter than what kinkod signed.
    let cps = std::fs::read_to_string(&cps_path).unwrap();
    let cp_lines: Vec<&str> = cps.lines().collect();
    let total = lines.len() as u64;
    let (cut_at, keep_cps) = cp_lines
        .iter()
        .enumerate()
        .map(|(i, l)| (checkpoint_size(l), i + 1))
        .rfind(|(size, _)| *size > 0 && *size < total)
        .expect("an earlier checkpoint to cut at");
    let kept_records: Vec<u8> = lines[..cut_at as usize]
        .iter()
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect();
    std::fs::write(&seg, &kept_records).unwrap();
    std::fs::write(
        &cps_path,
        cp_lines[..keep_cps]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let err = start_fails(&dir);
    assert!(
        err.contains(&format!(
            "holds {cut_at} records but kinkod signed a checkpoint of"
        )),
        "{err}"
    );
    // The auditor's copy of the truncated log passes alone, but not against the kept checkpoint.
    assert_eq!(verify(&audit, &vkey, None).0, 0);
    let (code, out) = verify(&audit, &vkey, Some(&kept));
    assert_eq!(code, 2, "{out}");

    // 3. Replaced by an empty log.
    std::fs::remove_dir_all(&audit).unwrap();
    std::fs::create_dir(&audit).unwrap();
    let err = start_fails(&dir);
    assert!(err.contains("holds 0 records"), "{err}");

    // Restored from the pristine copy, kinkod starts again.
    std::fs::remove_dir_all(&audit).unwrap();
    copy_dir(&pristine, &audit);
    drop(start(&dir, &label, port, false));

    // 4. The store lost (or swapped for an empty one) next to a log with history: refused, since
    //    kinkod would forget the freeze, the velocity used and every nonce already signed.
    let db = tmp.path().join("db-backup");
    std::fs::create_dir(&db).unwrap();
    for f in ["kinko.db", "kinko.db-wal", "kinko.db-shm"] {
        if dir.join(f).exists() {
            std::fs::rename(dir.join(f), db.join(f)).unwrap();
        }
    }
    let err = start_fails(&dir);
    assert!(err.contains("the store was lost or replaced"), "{err}");
    for f in ["kinko.db", "kinko.db-wal", "kinko.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
        if db.join(f).exists() {
            std::fs::rename(db.join(f), dir.join(f)).unwrap();
        }
    }
    drop(start(&dir, &label, port, false));
}
