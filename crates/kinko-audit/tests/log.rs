//! The log on disk: durability, recovery, refusal to open a tampered log, group commit.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::Arc;

use common::*;
use kinko_audit::Error;
use kinko_audit::log::{AuditLog, CHECKPOINTS_FILE};
use kinko_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use kinko_audit::note::{Checkpoint, SoftwareSigner};
use kinko_audit::record::{Event, Freeze, Record, Refusal, Rejection, Unfreeze};

fn refusal(i: u64) -> Event {
    Event::Refusal(Refusal {
        request_id: Some(format!("r{i}")),
        code: "DENIED".into(),
        message: "over the daily limit".into(),
    })
}

#[test]
fn appends_survive_reopen_and_proofs_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (root, size) = {
        let log = open(dir.path());
        populate(&log, 3);
        (log.root_at(log.size()).unwrap(), log.size())
    };
    assert_eq!(size, 2 + 3 * 6);
    let log = open(dir.path());
    assert_eq!(log.size(), size);
    let note = log.latest_checkpoint().unwrap();
    let cp = Checkpoint::open(&note, &log_key(), Some(ORIGIN)).unwrap();
    assert_eq!((cp.size, cp.root), (size, root));
    let lines = log.read_lines(0, usize::MAX).unwrap();
    assert_eq!(lines.len() as u64, size);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(Record::decode(line.as_bytes()).unwrap().seq, i as u64);
        let p = log.inclusion_proof(i as u64, size).unwrap();
        verify_inclusion(i as u64, size, &leaf_hash(line.as_bytes()), &p, &root).unwrap();
    }
    let p = log.consistency_proof(5, size).unwrap();
    verify_consistency(5, size, &log.root_at(5).unwrap(), &root, &p).unwrap();
    assert_eq!(log.read_lines(18, 10).unwrap().len(), 2);
}

#[test]
fn signature_events_return_with_a_covering_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut covered = Vec::new();
    for e in bootstrap_events()
        .into_iter()
        .chain(withdrawal_events(0, &[1, 2]))
    {
        let kind = e.kind();
        let needs = e.needs_checkpoint();
        let a = log.append("requester", e).unwrap();
        if needs {
            let cp = Checkpoint::open(&a.checkpoint.unwrap(), &log_key(), Some(ORIGIN)).unwrap();
            assert!(cp.size > a.seq, "checkpoint must cover the {kind} record");
            covered.push(kind);
        }
    }
    // The checks above ran, once for each event that must be covered (the list of which is
    // pinned by `exactly_these_events_need_a_checkpoint`).
    assert_eq!(
        covered,
        ["policy_installed", "key_created", "signature_produced"]
    );
    // An event that needs none returns without one (no HSM call per record).
    assert!(log.append("x", refusal(1)).unwrap().checkpoint.is_none());
}

/// One event of every kind, each with whether it must return covered by a signed checkpoint.
fn one_event_of_each_kind() -> Vec<(Event, bool)> {
    let mut v: Vec<(Event, bool)> = bootstrap_events()
        .into_iter()
        .chain(withdrawal_events(0, &[1]))
        .map(|e| {
            let needs = matches!(
                e,
                Event::KeyCreated(_) | Event::PolicyInstalled(_) | Event::SignatureProduced(_)
            );
            (e, needs)
        })
        .collect();
    let a = approval(1, b"any");
    v.push((
        Event::Rejection(Rejection {
            request_id: "req-0".into(),
            officer: officer_name(1),
            reason: "wrong destination".into(),
            signed: Some(a.clone()),
        }),
        false,
    ));
    v.push((
        Event::Freeze(Freeze {
            reason: "incident".into(),
            signed: Some(a.clone()),
        }),
        true,
    ));
    v.push((
        Event::Unfreeze(Unfreeze {
            reason: "resolved".into(),
            approvals: vec![a],
        }),
        true,
    ));
    v.push((refusal(1), false));
    v
}

#[test]
fn exactly_these_events_need_a_checkpoint() {
    let events = one_event_of_each_kind();
    // Every kind of event, once each (a new kind must be added here, with its answer).
    let mut kinds: Vec<&str> = events.iter().map(|(e, _)| e.kind()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "approval",
            "decision",
            "freeze",
            "key_created",
            "policy_installed",
            "refusal",
            "rejection",
            "request_received",
            "signature_produced",
            "signing_authorized",
            "unfreeze",
        ]
    );
    let pinned: Vec<(&str, bool)> = events.iter().map(|(e, n)| (e.kind(), *n)).collect();
    let actual: Vec<(&str, bool)> = events
        .iter()
        .map(|(e, _)| (e.kind(), e.needs_checkpoint()))
        .collect();
    assert_eq!(actual, pinned);
    // And the log honours it: those return covered by a signed checkpoint, the others return
    // without one (no HSM signature per record).
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut checked = 0;
    for (e, needs) in events {
        let kind = e.kind();
        let a = log.append("x", e).unwrap();
        if needs {
            let note = a
                .checkpoint
                .unwrap_or_else(|| panic!("{kind}: no checkpoint"));
            let cp = Checkpoint::open(&note, &log_key(), Some(ORIGIN)).unwrap();
            assert!(cp.size > a.seq, "{kind}: checkpoint does not cover it");
        } else {
            assert!(a.checkpoint.is_none(), "{kind}: unexpected checkpoint");
        }
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn torn_tail_is_truncated_at_every_byte_offset_and_never_more() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        populate(&log, 1);
        log.checkpoint().unwrap();
        // The last record is not covered by a checkpoint: a crash could tear it.
        log.append("x", refusal(9)).unwrap();
    }
    let seg = segments(dir.path()).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    let cps = fs::read(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    let n = full.iter().filter(|&&b| b == b'\n').count() as u64;
    let last_start = full[..full.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    for cut in last_start..=full.len() {
        fs::write(&seg, &full[..cut]).unwrap();
        fs::write(dir.path().join(CHECKPOINTS_FILE), &cps).unwrap();
        let log = open(dir.path());
        let expected = if cut == full.len() { n } else { n - 1 };
        assert_eq!(log.size(), expected, "cut at {cut}");
        drop(log);
        let kept = fs::read(&seg).unwrap();
        let expected_len = if cut == full.len() {
            full.len()
        } else {
            last_start
        };
        assert_eq!(kept.len(), expected_len, "cut at {cut}");
        assert_eq!(kept[..], full[..expected_len]);
    }
    // A torn checkpoints line is dropped the same way.
    fs::write(&seg, &full).unwrap();
    let mut torn = cps.clone();
    torn.extend_from_slice(b"{\"note\":\"kinko.te");
    fs::write(dir.path().join(CHECKPOINTS_FILE), &torn).unwrap();
    assert_eq!(open(dir.path()).size(), n);
}

fn expect_refused(dir: &std::path::Path) -> Error {
    AuditLog::open(dir, config(), log_signer()).unwrap_err()
}

#[test]
fn tampered_logs_refuse_to_open() {
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        populate(&open(dir.path()), 2);
        let seg = segments(dir.path()).pop().unwrap();
        let data = fs::read(&seg).unwrap();
        (dir, seg, data)
    };

    // One byte edited, the line still canonical JSON: only the signed root catches it.
    let (dir, seg, data) = make();
    let text = String::from_utf8(data).unwrap();
    fs::write(&seg, text.replacen("withdrawal 1", "withdrawal 7", 1)).unwrap();
    assert!(matches!(
        expect_refused(dir.path()),
        Error::CheckpointMismatch(_)
    ));

    // One byte edited so the line is no longer valid.
    let (dir, seg, mut data) = make();
    data[10] = b'#';
    fs::write(&seg, &data).unwrap();
    assert!(matches!(expect_refused(dir.path()), Error::Corrupt { .. }));

    // A record dropped from the middle.
    let (dir, seg, data) = make();
    let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    let dropped: Vec<u8> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .flat_map(|(_, l)| l.iter().copied())
        .collect();
    fs::write(&seg, dropped).unwrap();
    assert!(matches!(expect_refused(dir.path()), Error::Corrupt { .. }));

    // Whole records cut off the end (covered by the last checkpoint).
    let (dir, seg, data) = make();
    let keep = lines_prefix(&data, 5);
    fs::write(&seg, &data[..keep]).unwrap();
    assert!(matches!(
        expect_refused(dir.path()),
        Error::CheckpointMismatch(_)
    ));

    // A log re-signed by another key.
    let (dir, _, _) = make();
    let other = AuditLog::open(dir.path(), config(), SoftwareSigner::from_seed(&[2; 32]));
    assert!(matches!(other.unwrap_err(), Error::CheckpointMismatch(_)));

    // Records without any checkpoint.
    let (dir, _, _) = make();
    fs::remove_file(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    assert!(matches!(
        expect_refused(dir.path()),
        Error::CheckpointMismatch(_)
    ));
}

fn lines_prefix(data: &[u8], n: usize) -> usize {
    data.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .unwrap()
        .0
        + 1
}

#[test]
fn a_second_process_cannot_open_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let _log = open(dir.path());
    assert!(matches!(expect_refused(dir.path()), Error::Locked(_)));
}

#[test]
fn concurrent_appends_share_syncs_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    for e in bootstrap_events() {
        log.append("kinkod", e).unwrap();
    }
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let (mut seqs, mut covered) = (Vec::new(), 0);
                for i in 0..5 {
                    for e in withdrawal_events(t * 100 + i, &[1, 2]) {
                        let needs = e.needs_checkpoint();
                        let a = log.append(&format!("requester-{t}"), e).unwrap();
                        if needs {
                            let cp =
                                Checkpoint::open(&a.checkpoint.unwrap(), &log_key(), None).unwrap();
                            assert!(cp.size > a.seq);
                            covered += 1;
                        }
                        seqs.push(a.seq);
                    }
                }
                // One covered signature per withdrawal: the check above ran for each.
                assert_eq!(covered, 5);
                seqs
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (2..2 + 16 * 5 * 6).collect::<Vec<_>>());
    // At most one checkpoint per batch: fewer than one per signature.
    let cps = fs::read_to_string(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    assert!(cps.lines().count() <= 2 + 16 * 5 + 1);
    drop(log);
    let report =
        kinko_audit::verify::verify_dir(dir.path(), &log_key(), Default::default()).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.signatures, 80);
}

#[test]
fn a_checkpoint_is_made_periodically_while_the_log_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.checkpoint_interval = std::time::Duration::from_millis(200);
    let log = AuditLog::open(dir.path(), c, log_signer()).unwrap();
    log.append("x", refusal(1)).unwrap();
    log.append("x", refusal(2)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let cp = Checkpoint::open(&log.latest_checkpoint().unwrap(), &log_key(), None).unwrap();
    assert_eq!(cp.size, 2);
}

#[test]
fn segments_rotate_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.segment_max_bytes = 2000;
    {
        let log = AuditLog::open(dir.path(), c.clone(), log_signer()).unwrap();
        populate(&log, 4);
        log.append(
            "o",
            Event::Freeze(Freeze {
                reason: "r".into(),
                signed: None,
            }),
        )
        .unwrap();
    }
    assert!(segments(dir.path()).len() > 3);
    let log = AuditLog::open(dir.path(), c, log_signer()).unwrap();
    assert_eq!(log.size(), 2 + 4 * 6 + 1);
    assert_eq!(log.read_lines(0, 1000).unwrap().len(), 27);
    let tail = log.read_lines(20, 1000).unwrap();
    assert_eq!(Record::decode(tail[0].as_bytes()).unwrap().seq, 20);
    drop(log);
    let report =
        kinko_audit::verify::verify_dir(dir.path(), &log_key(), Default::default()).unwrap();
    assert!(report.ok(), "{report}");
}

#[test]
fn read_lines_match_the_files_from_any_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.segment_max_bytes = 64 * 1024;
    let log = Arc::new(AuditLog::open(dir.path(), c.clone(), log_signer()).unwrap());
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..150 {
                    log.append("x", refusal(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let check = |log: &AuditLog| {
        let files: Vec<String> = segments(dir.path())
            .iter()
            .flat_map(|p| {
                fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(files.len(), 2400);
        for from in [0u64, 1, 1023, 1024, 1025, 2047, 2048, 2399, 2400, 5000] {
            for max in [1usize, 7, 3000] {
                let got = log.read_lines(from, max).unwrap();
                let f = (from as usize).min(files.len());
                let want = &files[f..(f + max).min(files.len())];
                assert_eq!(got, want, "from {from} max {max}");
            }
        }
    };
    check(&log);
    assert!(segments(dir.path()).len() > 3);
    drop(log);
    // The index rebuilt at open gives the same answers.
    let log = AuditLog::open(dir.path(), c, log_signer()).unwrap();
    check(&log);
}

/// The log signer (the HSM) failing: an append that needs a checkpoint fails — the daemon must
/// not release the signature — and the next checkpoint covers the record.
#[test]
fn a_failing_checkpoint_signer_fails_the_appends_that_need_it() {
    use kinko_audit::note::CheckpointSigner;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flaky(SoftwareSigner, Arc<AtomicBool>);
    impl CheckpointSigner for Flaky {
        type Error = std::io::Error;
        fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Self::Error> {
            if self.1.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("CKR_DEVICE_REMOVED"));
            }
            Ok(self.0.sign(msg).unwrap())
        }
        fn public_key(&self) -> [u8; 32] {
            self.0.public_key()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let log = AuditLog::open(dir.path(), config(), Flaky(log_signer(), Arc::clone(&fail))).unwrap();
    let signature = withdrawal_events(0, &[1, 2]).pop().unwrap();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = log.append("r", signature.clone()).unwrap_err();
    assert!(
        matches!(err, Error::Signer(ref m) if m.contains("CKR_DEVICE_REMOVED")),
        "{err}"
    );
    // Events that need no checkpoint still go through.
    assert_eq!(log.append("r", refusal(1)).unwrap().seq, 1);
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let a = log.append("r", signature).unwrap();
    let cp = Checkpoint::open(&a.checkpoint.unwrap(), &log_key(), None).unwrap();
    assert_eq!(cp.size, 3);
    drop(log);
    assert_eq!(open(dir.path()).size(), 3);
}

#[test]
fn the_newest_policy_installed_record_is_known_after_append_and_reopen() {
    use kinko_audit::record::{HexBytes, PolicyInstalled};
    let install = |hash: u8| {
        Event::PolicyInstalled(PolicyInstalled {
            policy_hash: HexBytes(vec![hash; 32]),
            policy_text: format!("version = 1 # {hash}"),
            approvals: Vec::new(),
        })
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        assert_eq!(log.last_policy_installed(), None);
        let first = log.append("kinkod", install(1)).unwrap().seq;
        assert_eq!(log.last_policy_installed(), Some((first, vec![1; 32])));
        log.append("kinkod", refusal(1)).unwrap();
        let second = log.append("kinkod", install(2)).unwrap().seq;
        log.append("kinkod", refusal(2)).unwrap();
        assert_eq!(log.last_policy_installed(), Some((second, vec![2; 32])));
    }
    let log = open(dir.path());
    assert_eq!(log.last_policy_installed(), Some((2, vec![2; 32])));
}

#[test]
fn records_appended_together_keep_their_order_and_share_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let before = log.size();
    let appended = log
        .append_all("kinkod", (0..5).map(refusal).collect())
        .unwrap();
    let seqs: Vec<u64> = appended.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (before..before + 5).collect::<Vec<_>>());
    let lines = log.read_lines(before, 10).unwrap();
    for (i, line) in lines.iter().enumerate() {
        let r = Record::decode(line.as_bytes()).unwrap();
        assert_eq!(r.event, refusal(i as u64), "in the order given");
    }
    drop(log);
    assert_eq!(open(dir.path()).size(), before + 5);
}
