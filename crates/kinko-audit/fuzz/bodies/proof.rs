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
/// only statements that are true of the tree, with the one proof the tree gives for them
/// (anything else would need a SHA-256 collision), and accepts that proof whenever the
/// statement is true. The claimed sizes need not be the true ones: RFC 9162 verification does
/// not bind them (a proof for a 13-leaf tree also verifies as one for 15 leaves), which is why a
/// checkpoint signs size and root together; for a fixed size the index is bound. A refused
/// proof is refused with a typed error that has a message.
#[allow(
    dead_code,
    reason = "the fuzz target's entry; the corpus test calls `check`"
)]
pub(crate) fn run(data: &[u8]) {
    check(data);
}

/// [`run`], saying whether the input held a proof the verifier accepted.
pub(crate) fn check(data: &[u8]) -> [bool; 1] {
    let [n, flags, rest @ ..] = data else {
        return [false];
    };
    let (Some(a), Some(b)) = (rest.get(..8), rest.get(8..16)) else {
        return [false];
    };
    let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) else {
        return [false];
    };
    let refused = |e: &kinko_audit::Error| {
        assert!(!e.to_string().trim().is_empty(), "no message: {e:?}");
    };
    let mut accepted = false;
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
    // The tree size whose root is `root` (roots of different sizes differ, barring a collision).
    let size_of = |root: &Hash| (0..=n).find(|&k| root_at(k) == *root);
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
        let verdict = verify_inclusion(index, size, &leaf, &proof, &root);
        if let Err(e) = &verdict {
            refused(e);
        }
        if verdict.is_ok() {
            accepted = true;
            assert!(index < size, "inclusion outside the claimed size accepted");
            // A root and a proof do not bind the tree size (RFC 9162 §2.1.3.2 consumes only
            // some bits of it): the statement must hold for the size whose root this is, with
            // that size's own proof; the signed checkpoint is what binds size and root together.
            let Some(real_size) = size_of(&root) else {
                panic!("inclusion under a root of no size of the tree");
            };
            let Some(real_index) = (0..real_size).find(|&i| tree.leaf_hash_at(i) == Some(leaf))
            else {
                panic!("inclusion of a leaf that is not in the tree of that root");
            };
            match tree.inclusion_proof(real_index, real_size) {
                Ok(real) => assert_eq!(proof, real, "a second inclusion proof verified"),
                Err(e) => panic!("{e}"),
            }
            if real_size == size {
                assert_eq!(real_index, index, "the size does not bind the index");
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
        let verdict = verify_consistency(old, new, &old_root, &new_root, &proof);
        if let Err(e) = &verdict {
            refused(e);
        }
        if verdict.is_ok() {
            accepted = true;
            assert!(old <= new, "consistency backwards accepted");
            if old == new {
                // A tree is a prefix of itself: any root, no proof.
                assert!(proof.is_empty() && old_root == new_root, "equal sizes");
            } else if old == 0 {
                // Every tree extends the empty one: the verifier does not examine the roots
                // (so a caller must not take a size-0 "old root" as checked).
                assert!(proof.is_empty(), "a proof from the empty tree");
            } else {
                // As for inclusion, the sizes are bound by the signed checkpoints, not by the
                // roots and the proof: the statement must hold for the sizes of these roots.
                let (Some(real_old), Some(real_new)) = (size_of(&old_root), size_of(&new_root))
                else {
                    panic!("consistency between roots of no size of the tree");
                };
                assert!(real_old <= real_new, "consistency backwards accepted");
                match tree.consistency_proof(real_old, real_new) {
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
    [accepted]
}
