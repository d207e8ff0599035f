//! Fuzz body for the RFC 9162 inclusion and consistency proof verifiers
//! (`kinko_audit::merkle::{verify_inclusion, verify_consistency}`), which check proofs an
//! auditor receives (`kinko audit prove`, `kinko audit consistency`), shared by the `proof`
//! cargo-fuzz target and the corpus test (`tests/fuzz_corpus.rs`).
//!
//! Input: one byte `n` (a tree of `n` leaves `"leaf <i>"`), one flag byte (bit 0: consistency
//! instead of inclusion; bit 1: the leaf hash, or the old root, is taken from the input instead
//! of the tree; bit 2: the root, or the new root, likewise), two little-endian `u64`s (index and
//! size, or old and new size), then the hashes: the overridden hashes first, then the proof.

use kinko_audit::merkle::{Hash, MerkleTree, leaf_hash, verify_consistency, verify_inclusion};

/// Builds the tree, verifies the proof the input holds, and checks that the verifier accepts
/// only true statements with the one proof the tree gives for them (anything else would need
/// a SHA-256 collision), and accepts that proof whenever the statement is true.
pub(crate) fn run(data: &[u8]) {
    let [n, flags, rest @ ..] = data else {
        return;
    };
    let (Some(a), Some(b)) = (rest.get(..8), rest.get(8..16)) else {
        return;
    };
    let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) else {
        return;
    };
    let (a, b) = (u64::from_le_bytes(a), u64::from_le_bytes(b));
    let mut hashes: Vec<Hash> = rest
        .get(16..)
        .unwrap_or_default()
        .chunks_exact(32)
        .filter_map(|c| c.try_into().ok())
        .collect();
    let mut tree = MerkleTree::new();
    for i in 0..*n {
        tree.append(format!("leaf {i}").as_bytes());
    }
    let n = u64::from(*n);
    let root_at = |size: u64| tree.root_at(size.min(n)).unwrap_or_else(|e| panic!("{e}"));
    let mut take = |flag: u8, real: Hash| {
        if flags & flag != 0 && !hashes.is_empty() {
            hashes.remove(0)
        } else {
            real
        }
    };

    if flags & 1 == 0 {
        let (index, size) = (a, b);
        let real_leaf = tree
            .leaf_hash_at(index)
            .unwrap_or_else(|| leaf_hash(b"absent"));
        let leaf = take(2, real_leaf);
        let root = take(4, root_at(size));
        let proof = hashes;
        if verify_inclusion(index, size, &leaf, &proof, &root).is_ok() {
            assert!(
                index < size && size <= n,
                "inclusion outside the tree accepted"
            );
            assert_eq!(leaf, real_leaf, "inclusion of a leaf that is not there");
            assert_eq!(
                root,
                root_at(size),
                "inclusion under a root that is not the tree's"
            );
            match tree.inclusion_proof(index, size) {
                Ok(real) => assert_eq!(proof, real, "a second inclusion proof verified"),
                Err(e) => panic!("{e}"),
            }
        }
        if index < size && size <= n {
            match tree.inclusion_proof(index, size) {
                Ok(real) => assert!(
                    verify_inclusion(index, size, &real_leaf, &real, &root_at(size)).is_ok(),
                    "the tree's own inclusion proof is refused"
                ),
                Err(e) => panic!("{e}"),
            }
        }
    } else {
        let (old, new) = (a, b);
        let old_root = take(2, root_at(old));
        let new_root = take(4, root_at(new));
        let proof = hashes;
        if verify_consistency(old, new, &old_root, &new_root, &proof).is_ok() {
            assert!(old <= new, "consistency backwards accepted");
            if old == new {
                // A tree is a prefix of itself: any root, no proof.
                assert!(proof.is_empty() && old_root == new_root, "equal sizes");
            } else if old == 0 {
                // Every tree extends the empty one: the verifier does not examine the roots
                // (so a caller must not take a size-0 "old root" as checked).
                assert!(proof.is_empty(), "a proof from the empty tree");
            } else {
                assert!(new <= n, "consistency beyond the tree accepted");
                assert_eq!(
                    old_root,
                    root_at(old),
                    "consistency from a root not the tree's"
                );
                assert_eq!(
                    new_root,
                    root_at(new),
                    "consistency with a root not the tree's"
                );
                match tree.consistency_proof(old, new) {
                    Ok(real) => assert_eq!(proof, real, "a second consistency proof verified"),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        if old <= new && new <= n {
            match tree.consistency_proof(old, new) {
                Ok(real) => assert!(
                    verify_consistency(old, new, &root_at(old), &root_at(new), &real).is_ok(),
                    "the tree's own consistency proof is refused"
                ),
                Err(e) => panic!("{e}"),
            }
        }
    }
}
