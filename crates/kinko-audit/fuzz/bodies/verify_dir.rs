//! Fuzz body for the offline verifier (`kinko_audit::verify::verify_dir`) over a whole log
//! directory made from the input bytes, shared by the `verify_dir` cargo-fuzz target and the
//! corpus test (`tests/fuzz_corpus.rs`).
//!
//! The input is split at each NUL byte: the first part is the segment file of record 0, the
//! second (if any) is `checkpoints.jsonl`, and each further part is one more segment file,
//! named after the number of lines before it (so the segments chain as the log writes them).
//! The seed corpus holds real log directories written by the library in this form.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use kinko_audit::merkle::MerkleTree;
use kinko_audit::note::{CheckpointSigner, SoftwareSigner, VerifierKey};
use kinko_audit::policy_check::PolicyCheck;
use kinko_audit::record::{Event, Record};
use kinko_audit::verify::{Report, VerifyOptions, verify_dir};

/// The log key of the seed corpus: the test fixtures' log signer (seed `01…01`) and origin.
pub(crate) const ORIGIN: &str = "kinko.test/audit";
/// The log key's Ed25519 seed.
pub(crate) const SEED: [u8; 32] = [1; 32];

/// A scratch directory per thread, removed when the thread ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// The files of the log directory `data` describes, in order: (name, contents).
pub(crate) fn files(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut parts = data.split(|&b| b == 0);
    let mut out = Vec::new();
    let mut first = 0u64;
    // A segment named like an earlier one (which held no complete line) is left out.
    let segment = |bytes: &[u8], first: &mut u64, out: &mut Vec<(String, Vec<u8>)>| {
        let name = format!("segment-{first:020}.jsonl");
        if out.iter().all(|(n, _)| *n != name) {
            out.push((name, bytes.to_vec()));
            *first += lines(bytes).len() as u64;
        }
    };
    if let Some(seg0) = parts.next() {
        segment(seg0, &mut first, &mut out);
    }
    if let Some(cps) = parts.next() {
        out.push(("checkpoints.jsonl".to_string(), cps.to_vec()));
    }
    for seg in parts {
        segment(seg, &mut first, &mut out);
    }
    out
}

/// The record lines of a segment as the log reads them: complete lines only (a torn final
/// line is ignored), split at newlines.
pub(crate) fn lines(segment: &[u8]) -> Vec<&[u8]> {
    let complete = segment
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let body = &segment[..complete];
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == b'\n').collect()
}

fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) {
    let _ = std::fs::remove_dir_all(dir);
    if let Err(e) = std::fs::create_dir_all(dir) {
        panic!("scratch directory {}: {e}", dir.display());
    }
    for (name, bytes) in files {
        if let Err(e) = std::fs::write(dir.join(name), bytes) {
            panic!("write {name}: {e}");
        }
    }
}

fn verify(dir: &Path, key: &VerifierKey, policy: bool) -> Report {
    let mut check = PolicyCheck::new();
    let options = VerifyOptions {
        authorization: if policy { Some(&mut check) } else { None },
        ..VerifyOptions::default()
    };
    match verify_dir(dir, key, options) {
        Ok(r) => r,
        Err(e) => panic!("a readable log directory is an error, not a report: {e}"),
    }
}

/// Writes the log directory `data` describes and verifies it, with and without the policy
/// check. The verifier must report (never fail or panic) on any contents; count exactly the
/// records the log holds; compute the same root as an independent tree over them; and pass a
/// log only if every record decodes at its own sequence number, every signature is covered by
/// a verified checkpoint that the records hash to, and the policy check only adds failures.
/// Deleting a record that a checkpoint covers from a log that passed must make it fail. Every
/// failure the verifier reports says why.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// [`run`], saying whether the log passed.
pub(crate) fn check(data: &[u8]) -> [bool; 1] {
    let dir = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let scratch = s.get_or_insert_with(|| {
            Scratch(std::env::temp_dir().join(format!(
                "kinko-audit-fuzz-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            )))
        });
        scratch.0.clone()
    });
    let signer = SoftwareSigner::from_seed(&SEED);
    let Ok(key) = VerifierKey::new(ORIGIN, &signer.public_key()) else {
        panic!("the fixture's log key is invalid");
    };
    let files = files(data);
    write_dir(&dir, &files);
    let plain = verify(&dir, &key, false);
    let checked = verify(&dir, &key, true);

    let all: Vec<&[u8]> = files
        .iter()
        .filter(|(name, _)| name.starts_with("segment-"))
        .flat_map(|(_, bytes)| lines(bytes))
        .collect();
    let mut tree = MerkleTree::new();
    for line in &all {
        tree.append(line);
    }
    for r in [&plain, &checked] {
        assert_eq!(r.records, all.len() as u64, "record count");
        assert_eq!(r.root, Some(tree.root()), "root over the records");
    }
    assert!(
        !checked.ok() || plain.ok(),
        "the policy check removed a failure"
    );
    for f in plain.failures.iter().chain(&checked.failures) {
        assert!(
            !f.reason.trim().is_empty(),
            "a failure without a reason: {f:?}"
        );
    }
    if !plain.ok() {
        return [false];
    }

    let mut signature_seqs = Vec::new();
    for (i, line) in all.iter().enumerate() {
        match Record::decode(line) {
            Ok(r) => {
                assert_eq!(r.seq, i as u64, "passed a record at the wrong position");
                if matches!(r.event, Event::SignatureProduced(_)) {
                    signature_seqs.push(r.seq);
                }
            }
            Err(e) => panic!("passed an undecodable record {i}: {e}"),
        }
    }
    let cps = files
        .iter()
        .find(|(name, _)| name == "checkpoints.jsonl")
        .map(|(_, b)| lines(b).into_iter().filter(|l| !l.is_empty()).count())
        .unwrap_or_else(|| panic!("passed a log without a checkpoints file"));
    assert_eq!(
        plain.checkpoints, cps as u64,
        "passed an unverified checkpoint"
    );
    let covered = match &plain.latest_checkpoint {
        Some(cp) => {
            match tree.root_at(cp.size) {
                Ok(root) => assert_eq!(root, cp.root, "latest checkpoint root"),
                Err(e) => panic!("passed a checkpoint beyond the log: {e}"),
            }
            cp.size
        }
        None => 0,
    };
    if let Some(last) = signature_seqs.last() {
        assert!(*last < covered, "passed a signature no checkpoint covers");
    }

    // Delete the last covered record.
    if covered > 0 {
        let victim = covered - 1;
        let mut seen = 0u64;
        let tampered: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(name, bytes)| {
                if !name.starts_with("segment-") {
                    return (name.clone(), bytes.clone());
                }
                let ls = lines(bytes);
                let mut out = Vec::new();
                for l in &ls {
                    if seen != victim {
                        out.extend_from_slice(l);
                        out.push(b'\n');
                    }
                    seen += 1;
                }
                (name.clone(), out)
            })
            .collect();
        write_dir(&dir, &tampered);
        let r = verify(&dir, &key, false);
        assert!(!r.ok(), "deleting covered record {victim} went unnoticed");
    }
    [true]
}
