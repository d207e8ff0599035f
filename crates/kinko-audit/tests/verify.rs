//! The auditor's verifier: a clean log passes; each kind of tampering is caught and named.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use kinko_audit::log::CHECKPOINTS_FILE;
use kinko_audit::merkle::Hash;
use kinko_audit::note::{Checkpoint, CheckpointSigner, SoftwareSigner, VerifierKey};
use kinko_audit::record::{Event, PolicyInstalled, Record, SigningAuthorized};
use kinko_audit::verify::{
    AuthorizationCheck, Report, VerifyOptions, consistency, prove, verify_consistency_proof,
    verify_dir, verify_inclusion_proof,
};
use kinko_intent::Intent;

fn verify(dir: &Path) -> Report {
    verify_dir(dir, &log_key(), VerifyOptions::default()).unwrap()
}

fn verify_with(dir: &Path, trusted: Vec<String>) -> Report {
    verify_dir(
        dir,
        &log_key(),
        VerifyOptions {
            trusted_checkpoints: trusted,
            ..Default::default()
        },
    )
    .unwrap()
}

fn first_failure(r: &Report) -> String {
    assert!(!r.ok(), "expected a failure:\n{r}");
    r.failures[0].to_string()
}

/// A log of the bootstrap and `n` withdrawals; returns its directory and segment lines.
fn log_with(n: u64) -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    populate(&open(dir.path()), n);
    let seg = segments(dir.path()).pop().unwrap();
    let lines = fs::read(seg)
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    (dir, lines)
}

fn write_lines(dir: &Path, lines: &[Vec<u8>]) {
    let seg = segments(dir).pop().unwrap();
    fs::write(seg, lines.concat()).unwrap();
}

#[test]
fn a_clean_log_verifies_with_a_summary() {
    let (dir, _) = log_with(3);
    let r = verify(dir.path());
    assert!(r.ok(), "{r}");
    assert_eq!(r.records, 20);
    assert_eq!(r.signatures, 3);
    assert_eq!(r.authorizations, 3);
    assert_eq!(r.policies, 1);
    assert_eq!(
        r.officers.iter().cloned().collect::<Vec<_>>(),
        vec!["officer-1", "officer-2"]
    );
    assert!(r.checkpoints >= 4);
    assert_eq!(r.latest_checkpoint.as_ref().unwrap().size, 20);
    let text = r.to_string();
    assert!(text.contains("result:         OK"), "{text}");
    assert!(text.contains("NOT re-checked"), "{text}");
}

#[test]
fn one_byte_edited_is_caught() {
    // In free text: the line stays valid, only the signed roots catch it.
    let (dir, mut lines) = log_with(2);
    let i = 2 + 6; // request_received of withdrawal 1
    let s = String::from_utf8(lines[i].clone()).unwrap();
    lines[i] = s.replacen("withdrawal 1", "withdrawal 9", 1).into_bytes();
    write_lines(dir.path(), &lines);
    let f = first_failure(&verify(dir.path()));
    assert!(f.contains("do not hash to this checkpoint's root"), "{f}");
    assert!(f.contains("among 8..="), "{f}");

    // In an approval signature: the record itself is named.
    let (dir, mut lines) = log_with(2);
    let i = 2 + 6 + 2; // first approval of withdrawal 1
    let pos = lines[i]
        .windows(11)
        .position(|w| w == b"\"signature\"")
        .unwrap()
        + 14;
    lines[i][pos] = if lines[i][pos] == b'0' { b'1' } else { b'0' };
    write_lines(dir.path(), &lines);
    let f = first_failure(&verify(dir.path()));
    assert!(f.starts_with("record 10 "), "{f}");
    assert!(
        f.contains("approval signature by officer officer-1 does not verify"),
        "{f}"
    );
}

#[test]
fn a_dropped_record_is_caught() {
    let (dir, mut lines) = log_with(2);
    lines.remove(5);
    write_lines(dir.path(), &lines);
    let f = first_failure(&verify(dir.path()));
    assert!(f.starts_with("record 5 "), "{f}");
    assert!(f.contains("carries sequence number 6"), "{f}");
}

#[test]
fn two_reordered_records_are_caught() {
    let (dir, mut lines) = log_with(2);
    lines.swap(4, 5);
    write_lines(dir.path(), &lines);
    let f = first_failure(&verify(dir.path()));
    assert!(f.starts_with("record 4 "), "{f}");
    assert!(f.contains("carries sequence number 5"), "{f}");
}

#[test]
fn a_truncated_log_presented_as_complete_is_caught_by_a_later_checkpoint() {
    let (dir, lines) = log_with(3);
    // The auditor kept the latest checkpoint at an earlier audit.
    let kept = latest_note(dir.path());
    assert_eq!(lines.len(), 20);
    // The operator removes the last withdrawal and every checkpoint that covered it: the log
    // is self-consistent again.
    write_lines(dir.path(), &lines[..14]);
    let cps = fs::read_to_string(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    let keep: Vec<&str> = cps
        .lines()
        .filter(|l| {
            let cl: serde_json::Value = serde_json::from_str(l).unwrap();
            let note = cl["note"].as_str().unwrap();
            Checkpoint::open(note, &log_key(), None).unwrap().size <= 14
        })
        .collect();
    fs::write(
        dir.path().join(CHECKPOINTS_FILE),
        format!("{}\n", keep.join("\n")),
    )
    .unwrap();
    assert!(verify(dir.path()).ok(), "self-consistent after truncation");
    let r = verify_with(dir.path(), vec![kept]);
    let f = first_failure(&r);
    assert!(f.contains("auditor-held checkpoint 1"), "{f}");
    assert!(
        f.contains("covers 20 records but the log holds only 14"),
        "{f}"
    );
}

fn latest_note(dir: &Path) -> String {
    let cps = fs::read_to_string(dir.join(CHECKPOINTS_FILE)).unwrap();
    let cl: serde_json::Value = serde_json::from_str(cps.lines().last().unwrap()).unwrap();
    cl["note"].as_str().unwrap().to_string()
}

#[test]
fn a_resigned_forked_history_is_caught_by_an_older_checkpoint() {
    // The real history: bootstrap and two withdrawals; the auditor keeps its checkpoint.
    let (real, _) = log_with(2);
    let kept = latest_note(real.path());
    // A forked history re-signed with the same log key (an insider who can use the HSM's log
    // key): the second withdrawal approved by other officers, then more.
    let fork = tempfile::tempdir().unwrap();
    {
        let log = open(fork.path());
        for e in bootstrap_events() {
            log.append("kinkod", e).unwrap();
        }
        for e in withdrawal_events(0, &[1, 2]) {
            log.append("r", e).unwrap();
        }
        for n in 1..4 {
            for e in withdrawal_events(n, &[1, 3]) {
                log.append("r", e).unwrap();
            }
        }
    }
    // On its own the fork verifies: every signature is by the log key.
    assert!(verify(fork.path()).ok());
    let f = first_failure(&verify_with(fork.path(), vec![kept.clone()]));
    assert!(f.contains("auditor-held checkpoint 1"), "{f}");
    assert!(f.contains("history was rewritten"), "{f}");
    let err = consistency(fork.path(), &log_key(), &kept, &latest_note(fork.path())).unwrap_err();
    assert!(err.to_string().contains("history was rewritten"), "{err}");
    // Against the real log the old checkpoint is consistent.
    let more = real.path();
    {
        let log = open(more);
        for e in withdrawal_events(5, &[1, 2]) {
            log.append("r", e).unwrap();
        }
    }
    let c = consistency(more, &log_key(), &kept, &latest_note(more)).unwrap();
    assert_eq!((c.old.size, c.new.size), (14, 20));
    verify_consistency_proof(&log_key(), &kept, &latest_note(more), &c.proof).unwrap();
    let mut bad: Vec<Hash> = c.proof.clone();
    bad[0][0] ^= 1;
    assert!(verify_consistency_proof(&log_key(), &kept, &latest_note(more), &bad).is_err());
    assert!(verify_with(more, vec![kept]).ok());
}

#[test]
fn checkpoints_by_another_key_are_refused() {
    let (dir, _) = log_with(1);
    let other = SoftwareSigner::from_seed(&[5; 32]);
    let other_key = VerifierKey::new(ORIGIN, &other.public_key()).unwrap();
    let r = verify_dir(dir.path(), &other_key, VerifyOptions::default()).unwrap();
    let f = first_failure(&r);
    assert!(f.contains("checkpoint does not verify"), "{f}");
    assert!(f.contains("no valid signature"), "{f}");
}

#[test]
fn signature_records_are_checked() {
    // A signature event with no authorization before it, in a log the log's own writer wrote:
    // sequence numbers, hashes and checkpoints (signed by the log key) are all correct, so only
    // the missing-authorization check can catch it.
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for e in bootstrap_events() {
            log.append("kinkod", e).unwrap();
        }
        for e in withdrawal_events(0, &[1, 2]) {
            log.append("r", e).unwrap();
        }
        for e in withdrawal_events(1, &[1, 2]) {
            if !matches!(e, Event::SigningAuthorized(_)) {
                log.append("r", e).unwrap();
            }
        }
    }
    let r = verify(dir.path());
    // Bootstrap 0-1, request 0 at 2-7, request 1 at 8-11 without its authorization: its
    // signature is record 12, and it is the one and only finding.
    assert_eq!(r.records, 13, "{r}");
    assert!(r.checkpoints > 0, "{r}");
    assert_eq!((r.authorizations, r.signatures), (1, 2), "{r}");
    assert_eq!(r.failures.len(), 1, "{r}");
    assert_eq!(r.failures[0].seq, Some(12), "{r}");
    assert_eq!(
        r.failures[0].reason, "signature for request req-1 without a signing authorization",
        "{r}"
    );

    // A bad HSM signature, in a log re-signed so that only the signature check catches it.
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for e in bootstrap_events() {
            log.append("kinkod", e).unwrap();
        }
        let mut events = withdrawal_events(0, &[1, 2]);
        if let Some(Event::SignatureProduced(s)) = events.last_mut() {
            s.signatures[0].signature.0[5] ^= 1;
        }
        for e in events {
            log.append("r", e).unwrap();
        }
        // And the same request signed a second time.
        let again = withdrawal_events(0, &[1, 2]).pop().unwrap();
        log.append("r", again).unwrap();
    }
    let r = verify(dir.path());
    let f = first_failure(&r);
    assert!(f.starts_with("record 7 "), "{f}");
    assert!(f.contains("secp256k1 signature does not verify"), "{f}");
    assert!(
        r.failures[1].to_string().contains("signed a second time"),
        "{r}"
    );
}

#[test]
fn a_signature_not_covered_by_a_checkpoint_is_caught() {
    let (dir, _) = log_with(1);
    // Keep only the first checkpoint (size 0 or the bootstrap).
    let cps = fs::read_to_string(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    fs::write(
        dir.path().join(CHECKPOINTS_FILE),
        format!("{}\n", cps.lines().next().unwrap()),
    )
    .unwrap();
    let f = first_failure(&verify(dir.path()));
    assert!(f.contains("not covered by any signed checkpoint"), "{f}");
}

#[test]
fn inclusion_proofs_from_prove_verify() {
    let (dir, lines) = log_with(2);
    for seq in [0u64, 7, 13] {
        let p = prove(dir.path(), &log_key(), seq).unwrap();
        assert_eq!(
            p.line.as_bytes(),
            &lines[seq as usize][..lines[seq as usize].len() - 1]
        );
        let cp = verify_inclusion_proof(&log_key(), &p).unwrap();
        assert_eq!(cp.size, 14);
        let mut bad = p.clone();
        bad.line.push(' ');
        assert!(verify_inclusion_proof(&log_key(), &bad).is_err());
        assert!(p.to_string().contains(&format!("record {seq}")));
    }
    assert!(prove(dir.path(), &log_key(), 14).is_err());
}

/// A policy check written for these tests: officers and quorum read from the test policy text
/// (`POLICY_TEXT`). The daemon's verifier plugs kinko-policy in the same way.
#[derive(Default)]
struct TestPolicy {
    officers: Vec<String>,
    quorum: usize,
}

impl AuthorizationCheck for TestPolicy {
    fn policy_installed(&mut self, _record: &Record, e: &PolicyInstalled) -> Result<(), String> {
        let v: toml_like::Policy = toml_like::parse(&e.policy_text)?;
        self.officers = v.officers;
        self.quorum = v.quorum;
        Ok(())
    }
    fn signing_authorized(
        &mut self,
        _record: &Record,
        e: &SigningAuthorized,
        _intent: &Intent,
        _requester: Option<&str>,
    ) -> Result<(), String> {
        let mut counted = std::collections::BTreeSet::new();
        for a in &e.approvals {
            if !self.officers.contains(&a.officer) {
                return Err(format!(
                    "approval by {} who is not an officer of the policy in force",
                    a.officer
                ));
            }
            if a.message.0 != approval_message(&e.request_id, &e.intent) {
                return Err(format!(
                    "approval by {} is not for this request and intent",
                    a.officer
                ));
            }
            counted.insert(a.officer.clone());
        }
        if counted.len() < self.quorum {
            return Err(format!(
                "{} of {} approvals: quorum not met",
                counted.len(),
                self.quorum
            ));
        }
        Ok(())
    }
}

mod toml_like {
    pub(super) struct Policy {
        pub(super) officers: Vec<String>,
        pub(super) quorum: usize,
    }
    pub(super) fn parse(text: &str) -> Result<Policy, String> {
        let mut officers = Vec::new();
        let mut quorum = 0;
        for line in text.lines() {
            if let Some(list) = line.strip_prefix("officers = ") {
                officers = list
                    .trim_matches(['[', ']'])
                    .split(", ")
                    .map(|s| s.trim_matches('"').to_string())
                    .collect();
            } else if let Some(q) = line.strip_prefix("quorum = ") {
                quorum = q.parse().map_err(|_| "bad quorum")?;
            }
        }
        Ok(Policy { officers, quorum })
    }
}

fn verify_policy(dir: &Path) -> Report {
    let mut policy = TestPolicy::default();
    verify_dir(
        dir,
        &log_key(),
        VerifyOptions {
            authorization: Some(&mut policy),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn authorization_check_plugs_in_quorum_and_officers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        populate(&log, 1);
        // One short of the quorum.
        for e in withdrawal_events(1, &[2]) {
            log.append("r", e).unwrap();
        }
        // An officer not in the policy of that time.
        for e in withdrawal_events(2, &[1, 9]) {
            log.append("r", e).unwrap();
        }
    }
    let r = verify_policy(dir.path());
    assert!(r.authorization_checked);
    assert_eq!(r.failures.len(), 2, "{r}");
    let f0 = r.failures[0].to_string();
    assert!(f0.starts_with("record 11 "), "{f0}");
    assert!(f0.contains("1 of 2 approvals: quorum not met"), "{f0}");
    let f1 = r.failures[1].to_string();
    assert!(f1.starts_with("record 17 "), "{f1}");
    assert!(f1.contains("officer-9 who is not an officer"), "{f1}");
    // Without the policy check those signatures pass the structural checks.
    assert!(verify(dir.path()).ok());
}

/// A request the log says was cancelled is never signed: a correctly written log (real
/// sequence numbers and checkpoints) that authorizes and signs it after its `request_cancelled`
/// record fails verification, naming it.
#[test]
fn a_signing_after_a_cancel_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for e in bootstrap_events() {
            log.append("kinkod", e).unwrap();
        }
        let mut events = withdrawal_events(0, &[1, 2]);
        // After the approvals, before the signing authorization.
        let at = events
            .iter()
            .position(|e| matches!(e, Event::SigningAuthorized(_)))
            .unwrap();
        events.insert(
            at,
            Event::Cancelled(kinko_audit::record::Cancelled {
                request_id: "req-0".into(),
                reason: "cancelled by requester: wrong amount".into(),
            }),
        );
        for e in events {
            log.append("requester", e).unwrap();
        }
        log.checkpoint().unwrap();
    }
    let r = verify(dir.path());
    assert_eq!(r.failures.len(), 1, "{r}");
    assert!(
        first_failure(&r).contains("request req-0 signed after it was cancelled"),
        "{r}"
    );
    // And a cancel after the authorization is caught too.
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for e in bootstrap_events() {
            log.append("kinkod", e).unwrap();
        }
        let mut events = withdrawal_events(0, &[1, 2]);
        events.push(Event::Cancelled(kinko_audit::record::Cancelled {
            request_id: "req-0".into(),
            reason: "too late".into(),
        }));
        for e in events {
            log.append("requester", e).unwrap();
        }
        log.checkpoint().unwrap();
    }
    let r = verify(dir.path());
    assert!(
        first_failure(&r).contains("request req-0 cancelled after its signing was authorized"),
        "{r}"
    );
}

/// The auditor sees a double-sign from the log alone: the same transaction signed for two
/// requests (its nonce and its digest), and another transaction for an already signed nonce.
#[test]
fn a_replay_key_or_digest_signed_twice_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for e in bootstrap_events() {
            log.append("kinkod", e).unwrap();
        }
        // req-0 signs nonce 0; req-0-again signs the very same transaction.
        for e in withdrawal_events(0, &[1, 2]) {
            log.append("requester", e).unwrap();
        }
        for e in withdrawal_events_as("req-0-again", 0, payload(0), &[1, 2]) {
            log.append("requester", e).unwrap();
        }
        // req-0-other signs another transaction (0.5 ETH) with the same nonce.
        let other = payload_with_value(0, 500_000_000_000_000_000);
        assert_ne!(other, payload(0));
        for e in withdrawal_events_as("req-0-other", 0, other, &[1, 2]) {
            log.append("requester", e).unwrap();
        }
        // A different nonce is fine.
        for e in withdrawal_events(1, &[1, 2]) {
            log.append("requester", e).unwrap();
        }
        log.checkpoint().unwrap();
    }
    let r = verify(dir.path());
    let texts: Vec<String> = r.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(texts.len(), 3, "{r}");
    assert!(
        texts[0].contains(&format!(
            "replay key nonce:0 of key {KEY_NAME} signed twice: by request req-0 and by request req-0-again"
        )),
        "{r}"
    );
    assert!(
        texts[1].contains(&format!(
            "of key {KEY_NAME} signed twice: by request req-0 and by request req-0-again"
        )) && texts[1].contains("digest "),
        "{r}"
    );
    assert!(
        texts[2].contains(&format!(
            "replay key nonce:0 of key {KEY_NAME} signed twice: by request req-0 and by request req-0-other"
        )),
        "{r}"
    );
}
