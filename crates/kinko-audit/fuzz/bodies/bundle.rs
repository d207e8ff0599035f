//! Fuzz body for inclusion-proof bundles (`InclusionProof::from_bundle`, what
//! `kinko audit check-proof` reads), shared by the `bundle` cargo-fuzz target and the corpus
//! test (`tests/fuzz_corpus.rs`).

use kinko_audit::note::{CheckpointSigner, SoftwareSigner, VerifierKey};
use kinko_audit::verify::{InclusionProof, verify_inclusion_proof};

#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// Reads `data` as a bundle: an accepted one re-encodes to a bundle that reads back the same,
/// and verifying it under the fixture log's key (seed `01…01`, origin `kinko.test/audit`)
/// either succeeds with a checkpoint covering the record or fails with a typed error. Says
/// whether it was read, and whether it verified.
pub(crate) fn check(data: &[u8]) -> [bool; 2] {
    let Ok(text) = std::str::from_utf8(data) else {
        return [false, false];
    };
    let Ok(p) = InclusionProof::from_bundle(text) else {
        return [false, false];
    };
    let again = InclusionProof::from_bundle(&p.to_bundle()).unwrap_or_else(|e| {
        panic!("a bundle's own encoding does not read back: {e}");
    });
    assert_eq!(
        (again.seq, &again.line, &again.checkpoint, &again.proof),
        (p.seq, &p.line, &p.checkpoint, &p.proof)
    );
    let signer = SoftwareSigner::from_seed(&[1; 32]);
    let Ok(key) = VerifierKey::new("kinko.test/audit", &signer.public_key()) else {
        panic!("the fixture's log key is invalid");
    };
    match verify_inclusion_proof(&key, &p) {
        Ok(cp) => {
            assert!(p.seq < cp.size, "record {} outside size {}", p.seq, cp.size);
            [true, true]
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            [true, false]
        }
    }
}
