//! Replays every committed seed of the fuzz targets (`fuzz/corpus/<target>/`) through the same
//! bodies the fuzzer runs, in the normal `cargo test` run: never a panic, and every invariant
//! the bodies assert holds (canonical re-encoding, notes that open only under the right key,
//! a verifier whose counts and root match an independent tree and that notices a deleted
//! record, proofs accepted only when true).
//!
//! `cargo test -p kinko-audit --test fuzz_corpus -- --ignored write_fuzz_seeds` regenerates the
//! seeds from logs written by the library itself (plus a few malformed variants), each file
//! named by the SHA-256 of its content.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use common::*;
use kinko_audit::log::{AuditLog, LogConfig};
use kinko_audit::merkle::MerkleTree;
use kinko_audit::note::{Checkpoint, CheckpointSigner, SoftwareSigner, sign_note};
use kinko_audit::policy_check::PolicyCheck;
use kinko_audit::record::{Event, Freeze, Refusal, Rejection, RequestReceived};
use kinko_audit::verify::{VerifyOptions, verify_dir};
use kinko_intent::Chain;
use kinko_policy::Subject;

#[path = "../fuzz/bodies/record.rs"]
mod record;

#[path = "../fuzz/bodies/note.rs"]
mod note;

#[path = "../fuzz/bodies/verify_dir.rs"]
mod verify_body;

#[path = "../fuzz/bodies/proof.rs"]
mod proof;

#[path = "../fuzz/bodies/witness.rs"]
mod witness;

#[path = "../fuzz/bodies/tlog_policy.rs"]
mod tlog_policy;

#[path = "../fuzz/bodies/bundle.rs"]
mod bundle;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs every seed of `target`, and every `step`-th prefix of it (truncation is the commonest
/// malformation), through `check`, which asserts the body's invariants on what each of its `K`
/// parsers or verifiers accepts, and that what they refuse is a typed error with a message. At
/// least `min` seeds, of which at least `accepted[k]` accepted by parser `k` (so its invariants
/// are checked at all; the bounds are today's counts, new seeds may add more), and some input
/// refused by all of them.
fn replay<const K: usize>(
    target: &str,
    step: usize,
    min: usize,
    accepted: [usize; K],
    check: fn(&[u8]) -> [bool; K],
) {
    let dir = corpus(target);
    let (mut n, mut seeds_accepted, mut inputs, mut refused) = (0, [0; K], 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let mut run = |data: &[u8]| {
            inputs += 1;
            let a = check(data);
            refused += usize::from(!a.contains(&true));
            a
        };
        for (count, ok) in seeds_accepted.iter_mut().zip(run(&data)) {
            *count += usize::from(ok);
        }
        for len in (0..data.len()).step_by(step) {
            run(&data[..len]);
        }
        n += 1;
    }
    assert!(n >= min, "only {n} seeds in {}", dir.display());
    for k in 0..K {
        assert!(
            seeds_accepted[k] >= accepted[k],
            "{target}: only {} of {n} seeds accepted by check {k}, expected at least {}",
            seeds_accepted[k],
            accepted[k]
        );
    }
    assert!(refused > 0, "{target}: none of {inputs} inputs refused");
}

#[test]
fn record_corpus_replays() {
    replay("record", 7, 12, [18], record::check);
}

/// Accepted seeds: opened as a note (one of them also cosigned by the fixture witness), parsed
/// as checkpoint text, parsed as a verifier key.
#[test]
fn note_corpus_replays() {
    replay("note", 1, 8, [10, 1, 1], note::check);
}

/// Accepted seeds: logs that pass (so the deleted-record check runs on them).
#[test]
fn verify_dir_corpus_replays() {
    replay("verify_dir", 7919, 8, [4], verify_body::check);
}

/// Accepted seeds: request bodies that parse, and checkpoints the witness cosigns.
#[test]
fn witness_corpus_replays() {
    replay("witness", 1, 7, [6, 1], witness::check);
}

/// Accepted seeds: witness policies that parse.
#[test]
fn tlog_policy_corpus_replays() {
    replay("tlog_policy", 1, 7, [4], tlog_policy::check);
}

/// Accepted seeds: bundles that read, and bundles that verify.
#[test]
fn bundle_corpus_replays() {
    replay("bundle", 7, 7, [5, 3], bundle::check);
}

/// Accepted seeds: proofs the verifier accepts.
#[test]
fn proof_corpus_replays() {
    replay("proof", 1, 8, [13], proof::check);
}

/// The fixtures' log key is the one the note and verifier bodies verify under.
#[test]
fn bodies_use_the_fixture_log_key() {
    assert_eq!(note::ORIGIN, ORIGIN);
    assert_eq!(verify_body::ORIGIN, ORIGIN);
    let body_key = SoftwareSigner::from_seed(&note::SEED).public_key();
    assert_eq!(body_key, log_signer().public_key());
    assert_eq!(
        SoftwareSigner::from_seed(&verify_body::SEED).public_key(),
        body_key
    );
}

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

/// Writes a seed file named by the SHA-256 of its content (first 40 hex digits, as the chain
/// crate's corpora).
fn write_seed(target: &str, bytes: &[u8]) {
    let dir = corpus(target);
    std::fs::create_dir_all(&dir).unwrap();
    let name = hex::encode(Sha256::digest(bytes));
    std::fs::write(dir.join(&name[..40]), bytes).unwrap();
}

/// A log directory in the `verify_dir` body's input form: segment 0, NUL, the checkpoints
/// file, then NUL and each further segment.
fn dir_input(dir: &Path) -> Vec<u8> {
    let segs = segments(dir);
    let mut out = std::fs::read(&segs[0]).unwrap();
    out.push(0);
    out.extend(std::fs::read(dir.join("checkpoints.jsonl")).unwrap());
    for s in &segs[1..] {
        out.push(0);
        out.extend(std::fs::read(s).unwrap());
    }
    out
}

/// A log that verifies with and without the policy check: a policy installed, a key
/// created, three approved withdrawals, a refusal.
fn good_log(dir: &Path, segment_max_bytes: u64) {
    let p1 = policy_text(&[1, 2, 3], "1");
    let mut c = LogConfig::new(ORIGIN);
    c.checkpoint_interval = std::time::Duration::from_secs(3600);
    c.segment_max_bytes = segment_max_bytes;
    let log = AuditLog::open(dir, c, log_signer()).unwrap();
    let mut events = vec![install(&p1, None, &[]), bootstrap_events().remove(1)];
    for n in 0..3 {
        events.extend(withdrawal(n, &p1, &[1, 2]));
    }
    for e in events {
        log.append("requester", e).unwrap();
    }
    log.append(
        "kinkod",
        Event::Refusal(Refusal {
            request_id: None,
            code: "NOT_ALLOWLISTED".into(),
            message: "destination not on the allowlist".into(),
        }),
    )
    .unwrap();
    log.checkpoint().unwrap();
}

/// A log holding every kind of event: rejections, freeze and unfreeze, an undecodable request.
fn rich_log(dir: &Path) {
    let p1 = policy_text(&[1, 2, 3], "1");
    let log = open(dir);
    let mut events = vec![install(&p1, None, &[]), bootstrap_events().remove(1)];
    events.extend(withdrawal(0, &p1, &[1, 2]));
    events.push(Event::RequestReceived(RequestReceived {
        request_id: "req-bad".into(),
        key_name: KEY_NAME.into(),
        chain: Chain::Ethereum,
        payload: vec![0xc0, 0x80].into(),
        idempotency_key: "idem-bad".into(),
        reference: "line\nbreak \"quoted\" \u{2014} ü".into(),
        requester_signature: Some(vec![0xab; 64].into()),
        intent: None,
    }));
    events.push(Event::Rejection(Rejection {
        request_id: "req-bad".into(),
        officer: officer_name(3),
        reason: "looks wrong".into(),
        signed: Some(signed_approval(
            3,
            &p1,
            Subject::Freeze {
                request_id: "gov-f".into(),
            },
            0,
        )),
    }));
    let freeze = Event::Freeze(Freeze {
        reason: "suspicious request".into(),
        signed: Some(signed_approval(
            1,
            &p1,
            Subject::Freeze {
                request_id: "gov-f".into(),
            },
            0,
        )),
    });
    for e in events.drain(..) {
        log.append("officer-1", e).unwrap();
    }
    let freeze_id = log.append("officer-1", freeze).unwrap().leaf_hash;
    events.extend(governed_unfreeze(&p1, freeze_id, &[1, 2]));
    events.extend(withdrawal(1, &p1, &[2, 3]));
    for e in events {
        log.append("officer-1", e).unwrap();
    }
}

/// A rewrite of one log line: the new line, or `None` to delete it.
type LineEdit = fn(&str) -> Option<String>;

/// Rewrites line `i` (0-based, over all segments) of the log in `dir` with `f`.
fn edit_line(dir: &Path, i: usize, f: impl Fn(&str) -> Option<String>) {
    let mut seen = 0;
    for seg in segments(dir) {
        let text = std::fs::read_to_string(&seg).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if seen == i {
                if let Some(l) = f(line) {
                    out.push_str(&l);
                    out.push('\n');
                }
            } else {
                out.push_str(line);
                out.push('\n');
            }
            seen += 1;
        }
        std::fs::write(&seg, out).unwrap();
    }
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "LOCK" {
            std::fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    to
}

fn all_lines(dir: &Path) -> Vec<String> {
    segments(dir)
        .iter()
        .flat_map(|s| {
            std::fs::read_to_string(s)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn notes(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("checkpoints.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["note"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn proof_input(n: u8, flags: u8, a: u64, b: u64, hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut v = vec![n, flags];
    v.extend(a.to_le_bytes());
    v.extend(b.to_le_bytes());
    for h in hashes {
        v.extend(h);
    }
    v
}

/// Regenerates the committed seed corpora of the four targets.
#[test]
#[ignore = "writes files; run by hand to regenerate fuzz/corpus"]
fn write_fuzz_seeds() {
    for t in ["record", "note", "verify_dir", "proof"] {
        let _ = std::fs::remove_dir_all(corpus(t));
    }
    let good = tempfile::tempdir().unwrap();
    good_log(good.path(), 64 << 20);
    let split = tempfile::tempdir().unwrap();
    good_log(split.path(), 3000);
    assert!(segments(split.path()).len() >= 3);
    let rich = tempfile::tempdir().unwrap();
    rich_log(rich.path());

    // The good logs verify with the policy check; the rich one without it.
    for (dir, policy) in [
        (good.path(), true),
        (split.path(), true),
        (rich.path(), false),
    ] {
        let mut check = PolicyCheck::new();
        let r = verify_dir(
            dir,
            &log_key(),
            VerifyOptions {
                authorization: if policy { Some(&mut check) } else { None },
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r.ok(), "{r}");
    }

    // record: every line of the rich log, and malformed variants of one.
    let lines = all_lines(rich.path());
    for l in &lines {
        write_seed("record", l.as_bytes());
    }
    let freeze = lines
        .iter()
        .find(|l| l.contains("\"type\":\"freeze\""))
        .unwrap();
    let auth = lines
        .iter()
        .find(|l| l.contains("\"type\":\"signing_authorized\""))
        .unwrap();
    for bad in [
        freeze.replacen(",\"principal\"", ", \"principal\"", 1),
        freeze.replacen("\"seq\":", "\"seq\":0", 1),
        freeze.replacen("}", ",\"x\":1}", 1),
        freeze.replacen("\"type\":\"freeze\"", "\"type\":\"thaw\"", 1),
        auth.to_uppercase(),
        auth.replacen("\"payload\":\"", "\"payload\":\"0", 1),
        auth[..auth.len() / 2].to_string(),
    ] {
        write_seed("record", bad.as_bytes());
    }

    // note: the log's checkpoints, its verifier key, and malformed or foreign notes.
    let cps = notes(good.path());
    for n in &cps {
        write_seed("note", n.as_bytes());
    }
    let last = cps.last().unwrap();
    write_seed("note", log_key().to_string().as_bytes());
    let text = Checkpoint::open(last, &log_key(), None).unwrap().to_text();
    write_seed("note", text.as_bytes());
    let other = SoftwareSigner::from_seed(&[9; 32]);
    let cosigned = sign_note(&text, "witness.example", &other).unwrap();
    let sig_line = cosigned.rsplit_once("\n\n").unwrap().1;
    write_seed("note", format!("{last}{sig_line}").as_bytes());
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: 7,
        root: [0x5a; 32],
        extensions: vec!["kinko-ext 1".into(), "another".into()],
    };
    write_seed("note", cp.sign(ORIGIN, &log_signer()).unwrap().as_bytes());
    for bad in [
        last.replacen('\u{2014}', "-", 1),
        // A signature line ending in "\r\n": once accepted (a second encoding of one note).
        format!("{}\r\n", last.trim_end_matches('\n')),
        last.trim_end().to_string(),
        last.replacen(ORIGIN, "kinko.test/audiT", 1),
        {
            // One base64 character of the signature changed.
            let (head, sig) = last.rsplit_once(' ').unwrap();
            let mut sig = sig.as_bytes().to_vec();
            sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
            format!("{head} {}", String::from_utf8(sig).unwrap())
        },
        text.replacen('\n', "\n0", 1),
    ] {
        write_seed("note", bad.as_bytes());
    }

    // verify_dir: the logs, and tampered copies.
    for d in [good.path(), split.path(), rich.path()] {
        write_seed("verify_dir", &dir_input(d));
    }
    let good_lines = all_lines(good.path());
    let n = good_lines.len();
    let req0 = good_lines
        .iter()
        .position(|l| l.contains("withdrawal 0"))
        .unwrap();
    let tampered: [(usize, LineEdit); 3] = [
        (req0, |l| {
            Some(l.replacen("withdrawal 0", "withdrawal 9", 1))
        }),
        (n - 1, |_| None),
        (5, |_| None),
    ];
    for (i, f) in tampered {
        let t = copy_dir(good.path());
        edit_line(t.path(), i, f);
        write_seed("verify_dir", &dir_input(t.path()));
    }
    let mut torn = dir_input(good.path());
    let cut = torn.iter().position(|&b| b == 0).unwrap();
    torn.splice(cut..cut, b"{\"event\":".iter().copied());
    write_seed("verify_dir", &torn);
    let no_cps: Vec<u8> = dir_input(good.path())
        .split(|&b| b == 0)
        .next()
        .unwrap()
        .to_vec();
    write_seed("verify_dir", &no_cps);

    // proof: the tree's own proofs for a few shapes, and forged ones.
    let mut tree = MerkleTree::new();
    for i in 0..13u8 {
        tree.append(format!("leaf {i}").as_bytes());
    }
    for (i, s) in [(0, 1), (0, 13), (5, 8), (12, 13), (6, 7)] {
        let p = tree.inclusion_proof(i, s).unwrap();
        write_seed("proof", &proof_input(13, 0, i, s, &p));
    }
    for (o, nw) in [(1, 13), (4, 8), (6, 13), (7, 8), (0, 5), (13, 13)] {
        let p = tree.consistency_proof(o, nw).unwrap();
        write_seed("proof", &proof_input(13, 1, o, nw, &p));
    }
    let p = tree.inclusion_proof(5, 8).unwrap();
    write_seed(
        "proof",
        &proof_input(13, 2, 5, 8, &[[0x11; 32], p[0], p[1], p[2]]),
    );
    write_seed("proof", &proof_input(13, 0, 5, 8, &p[..2]));
    let p = tree.consistency_proof(6, 13).unwrap();
    write_seed(
        "proof",
        &proof_input(13, 7, 6, 13, &[[1; 32], [2; 32], p[0]]),
    );
    write_seed("proof", &proof_input(13, 1, 13, 6, &p));
    // Proofs of the 13-leaf tree presented for 15 leaves: they verify (RFC 9162 verification
    // does not bind the size; checkpoints sign size and root together).
    let p = tree.consistency_proof(6, 13).unwrap();
    write_seed("proof", &proof_input(13, 1, 6, 15, &p));
    let p = tree.inclusion_proof(5, 13).unwrap();
    write_seed("proof", &proof_input(13, 0, 5, 15, &p));
}

/// Writes the seeds of the `tlog_policy` and `bundle` targets:
/// `cargo test -p kinko-audit --test fuzz_corpus -- --ignored write_witness_seeds`.
/// Ignored because it rewrites committed files; what CI checks is that the committed seeds
/// replay (`tlog_policy_corpus_replays`, `bundle_corpus_replays` above).
#[test]
#[ignore = "regenerates committed seed files"]
fn write_witness_seeds() {
    use kinko_audit::cosignature::CosignerKey;
    for t in ["tlog_policy", "bundle"] {
        let _ = std::fs::remove_dir_all(corpus(t));
    }
    let w = |i: u8| {
        CosignerKey::new(
            &format!("w{i}.example"),
            &SoftwareSigner::from_seed(&[i; 32]).public_key(),
        )
        .unwrap()
        .to_string()
    };
    let log = log_key().to_string();
    for text in [
        format!(
            "log {log}\nwitness a {} http://127.0.0.1:7380\nquorum a\n",
            w(1)
        ),
        format!(
            "# two of three, and one of two\nlog {log}\nwitness X1 {}\nwitness X2 {}\nwitness X3 {}\ngroup X 2 X1 X2 X3\n\twitness Y1 {}\nwitness Y2 {}\ngroup Y any Y1 Y2\ngroup XY all X Y\nquorum XY\n",
            w(1),
            w(2),
            w(3),
            w(4),
            w(5)
        ),
        "quorum none\n".to_string(),
        format!(
            "witness a {}\nwitness b {}\ngroup g 1 a b\nquorum g",
            w(1),
            w(2)
        ),
        format!("witness a {}\nwitness b {}\nquorum c\n", w(1), w(1)),
        format!("witness a {log}\nquorum a\n"),
        format!("witness a {}\ngroup g 3 a\nquorum g\n", w(1)),
    ] {
        write_seed("tlog_policy", text.as_bytes());
    }
    let good = tempfile::tempdir().unwrap();
    good_log(good.path(), 1 << 20);
    for seq in [0, 3, 7] {
        let p = kinko_audit::verify::prove(good.path(), &log_key(), seq).unwrap();
        write_seed("bundle", p.to_bundle().as_bytes());
    }
    let p = kinko_audit::verify::prove(good.path(), &log_key(), 5).unwrap();
    let b = p.to_bundle();
    for bad in [
        b.replacen("\"seq\":5", "\"seq\":6", 1),
        b.replacen("kinko-inclusion-proof/v1", "kinko-inclusion-proof/v2", 1),
        b.replacen("\"proof\":[\"", "\"proof\":[\"00", 1),
    ] {
        assert_ne!(bad, b);
        write_seed("bundle", bad.as_bytes());
    }
    // A record altered: reads, does not verify.
    let mut v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let record = v["record"].as_str().unwrap().replacen('1', "2", 1);
    v["record"] = record.into();
    write_seed("bundle", v.to_string().as_bytes());
}
