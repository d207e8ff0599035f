//! The witness's decisions, one per status of the C2SP tlog-witness text, on real trees and
//! signed checkpoints.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::merkle::MerkleTree;
use crate::note::{CheckpointSigner, SoftwareSigner};

const ORIGIN: &str = "kinko.test/audit";

fn log_signer() -> SoftwareSigner {
    SoftwareSigner::from_seed(&[1; 32])
}

fn logs() -> Vec<KnownLog> {
    vec![KnownLog {
        origin: ORIGIN.into(),
        key: VerifierKey::new(ORIGIN, &log_signer().public_key()).unwrap(),
    }]
}

fn tree(n: u64, tag: &str) -> MerkleTree {
    let mut t = MerkleTree::new();
    for i in 0..n {
        t.append(format!("{tag} record {i}").as_bytes());
    }
    t
}

fn signed(t: &MerkleTree, size: u64) -> String {
    Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: t.root_at(size).unwrap(),
        extensions: Vec::new(),
    }
    .sign(ORIGIN, &log_signer())
    .unwrap()
}

fn body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut b = format!("old {old}\n");
    for h in proof {
        b.push_str(&B64.encode(h));
        b.push('\n');
    }
    b.push('\n');
    b.push_str(note);
    b
}

fn decide(b: &str, latest: Option<(u64, Hash)>) -> Result<Checkpoint, Refusal> {
    let req = parse_add_checkpoint(b.as_bytes())?;
    let known = logs();
    check(&req, &known, |_| latest)
}

#[test]
fn a_consistent_checkpoint_is_accepted_from_nothing_and_then_from_the_last_one() {
    let t = tree(20, "a");
    let first = decide(&body(0, &[], &signed(&t, 7)), None).unwrap();
    assert_eq!((first.size, first.root), (7, t.root_at(7).unwrap()));
    let proof = t.consistency_proof(7, 20).unwrap();
    let next = decide(&body(7, &proof, &signed(&t, 20)), Some((7, first.root))).unwrap();
    assert_eq!(next.size, 20);
    // The same checkpoint again (old = size, empty proof) is accepted: nothing rolls back.
    decide(&body(20, &[], &signed(&t, 20)), Some((20, next.root))).unwrap();
}

#[test]
fn each_refusal_has_the_status_the_spec_gives_it() {
    let t = tree(20, "a");
    let root7 = t.root_at(7).unwrap();
    let proof = t.consistency_proof(7, 20).unwrap();

    // 404: a log the witness does not know.
    let other = Checkpoint {
        origin: "other.example/log".into(),
        size: 20,
        root: t.root(),
        extensions: Vec::new(),
    }
    .sign("other.example/log", &log_signer())
    .unwrap();
    assert_eq!(
        decide(&body(0, &[], &other), None).unwrap_err().status(),
        404
    );

    // 403: signed by another key under the log's name, or a signature that does not verify.
    let forged = Checkpoint {
        origin: ORIGIN.into(),
        size: 20,
        root: t.root(),
        extensions: Vec::new(),
    }
    .sign(ORIGIN, &SoftwareSigner::from_seed(&[2; 32]))
    .unwrap();
    assert_eq!(
        decide(&body(0, &[], &forged), None).unwrap_err().status(),
        403
    );
    let tampered = signed(&t, 20).replacen("\n20\n", "\n21\n", 1);
    assert_eq!(
        decide(&body(0, &[], &tampered), None).unwrap_err().status(),
        403
    );

    // 400: old larger than the checkpoint.
    let e = decide(&body(21, &[], &signed(&t, 20)), Some((21, t.root()))).unwrap_err();
    assert_eq!(e.status(), 400);

    // 409: old is not the latest cosigned size; the body says which it is.
    let e = decide(&body(5, &[], &signed(&t, 20)), Some((7, root7))).unwrap_err();
    assert_eq!(e, Refusal::Conflict { latest: 7 });
    assert_eq!(e.body(), ("7\n".to_string(), "text/x.tlog.size"));
    let e = decide(&body(7, &proof, &signed(&t, 20)), None).unwrap_err();
    assert_eq!(e.body().0, "0\n");

    // 422: a proof that does not verify.
    let mut bad_proof = proof.clone();
    bad_proof[0][0] ^= 1;
    let e = decide(&body(7, &bad_proof, &signed(&t, 20)), Some((7, root7))).unwrap_err();
    assert_eq!(e.status(), 422);
    // 422: a non-empty proof from size 0.
    let e = decide(&body(0, &proof, &signed(&t, 20)), None).unwrap_err();
    assert_eq!(e.status(), 422);
    // 422: a size-0 checkpoint whose root is not the empty tree's.
    let zero = Checkpoint {
        origin: ORIGIN.into(),
        size: 0,
        root: [7; 32],
        extensions: Vec::new(),
    }
    .sign(ORIGIN, &log_signer())
    .unwrap();
    assert_eq!(
        decide(&body(0, &[], &zero), None).unwrap_err().status(),
        422
    );
}

/// A split view: the log shows the witness one history, then another of the same size (or a
/// longer one that does not extend the first). The witness refuses the second: 422, and its
/// record stays on the first.
#[test]
fn a_split_view_is_refused() {
    let honest = tree(20, "a");
    let fork = tree(20, "b");
    let first = decide(&body(0, &[], &signed(&honest, 20)), None).unwrap();
    let same_size = decide(&body(20, &[], &signed(&fork, 20)), Some((20, first.root))).unwrap_err();
    assert_eq!(same_size.status(), 422);
    let mut longer = tree(20, "b");
    longer.append(b"one more");
    let proof = longer.consistency_proof(20, 21).unwrap();
    let e = decide(
        &body(20, &proof, &signed(&longer, 21)),
        Some((20, first.root)),
    )
    .unwrap_err();
    assert_eq!(e.status(), 422);
}

#[test]
fn malformed_bodies_are_bad_requests_and_never_panic() {
    let t = tree(3, "a");
    let note = signed(&t, 3);
    for b in [
        String::new(),
        "old 3".into(),
        format!("old 03\n\n{note}"),
        format!("old -1\n\n{note}"),
        format!("old 18446744073709551616\n\n{note}"),
        format!("new 3\n\n{note}"),
        format!("old 3\nnot base64!\n\n{note}"),
        format!("old 3\n{}\n\n{note}", B64.encode([1u8; 31])),
        format!("old 3\n{note}"),
        format!(
            "old 0\n{}\n{note}",
            format!("{}\n", B64.encode([0u8; 32])).repeat(64)
        ),
    ] {
        let e = decide(&b, None).unwrap_err();
        assert_eq!(e.status(), 400, "{b:?}: {e:?}");
        assert!(!e.body().0.trim().is_empty());
    }
    assert_eq!(
        parse_add_checkpoint(&[0xff, 0xfe]).unwrap_err().status(),
        400
    );
}
