//! Known-answer tests for the RFC 6962 tree.
//!
//! Vectors: transparency-dev/merkle (Go), `testonly/constants.go` (`LeafInputs`, `NodeHashes`,
//! `RootHashes`) and `proof/verify_test.go` (`inclusionProofs`, `consistencyProofs`), which carry
//! the test data of Certificate Transparency's C++ and Go implementations
//! (https://github.com/transparency-dev/merkle).
#![allow(clippy::unwrap_used)]

use super::*;

fn h(s: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

/// `testonly.LeafInputs()`.
fn leaf_inputs() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|s| hex::decode(s).unwrap())
    .collect()
}

/// `testonly.RootHashes()`: roots by tree size, from 0 to 8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// `testonly.NodeHashes()[0]`: the leaf hashes.
const LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

/// `proof/verify_test.go` `inclusionProofs`: (1-based leaf, size, proof).
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            3,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            2,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// `proof/verify_test.go` `consistencyProofs`: (size1, size2, proof).
fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

fn vector_tree() -> MerkleTree {
    let mut t = MerkleTree::new();
    for leaf in leaf_inputs() {
        t.append(&leaf);
    }
    t
}

/// Straight from the RFC 6962 §2.1 definition, recursive over the data: the reference that the
/// stored-subtree implementation is checked against.
fn reference_mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&reference_mth(&leaves[..k]), &reference_mth(&leaves[k..]))
        }
    }
}

#[test]
fn prefixes_are_named_and_as_in_rfc6962() {
    assert_eq!(LEAF_HASH_PREFIX, 0x00);
    assert_eq!(NODE_HASH_PREFIX, 0x01);
}

#[test]
fn leaf_hashes_match_vectors() {
    for (input, want) in leaf_inputs().iter().zip(LEAF_HASHES) {
        assert_eq!(leaf_hash(input), h(want));
    }
}

#[test]
fn roots_match_vectors_at_every_size() {
    let leaves = leaf_inputs();
    let mut t = MerkleTree::new();
    let mut c = CompactRange::new();
    assert_eq!(t.root(), h(ROOTS[0]));
    assert_eq!(c.root(), h(ROOTS[0]));
    for (i, leaf) in leaves.iter().enumerate() {
        t.append(leaf);
        c.push(leaf_hash(leaf)).unwrap();
        assert_eq!(t.root(), h(ROOTS[i + 1]), "size {}", i + 1);
        assert_eq!(c.root(), h(ROOTS[i + 1]), "compact size {}", i + 1);
    }
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(t.root_at(size as u64).unwrap(), h(want));
    }
    assert!(t.root_at(9).is_err());
}

#[test]
fn interior_nodes_match_vectors() {
    // testonly.NodeHashes() levels 1..3.
    let t = vector_tree();
    assert_eq!(
        t.subtree(0, 2).unwrap(),
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")
    );
    assert_eq!(
        t.subtree(6, 2).unwrap(),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")
    );
    assert_eq!(
        t.subtree(4, 4).unwrap(),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")
    );
}

#[test]
fn inclusion_proofs_match_vectors_and_verify() {
    let t = vector_tree();
    for (leaf, size, want) in inclusion_vectors() {
        let index = leaf - 1;
        let proof = t.inclusion_proof(index, size).unwrap();
        assert_eq!(proof, want, "leaf {leaf} size {size}");
        let lh = h(LEAF_HASHES[index as usize]);
        let root = h(ROOTS[size as usize]);
        verify_inclusion(index, size, &lh, &want, &root).unwrap();
    }
}

#[test]
fn consistency_proofs_match_vectors_and_verify() {
    let t = vector_tree();
    for (old, new, want) in consistency_vectors() {
        let proof = t.consistency_proof(old, new).unwrap();
        assert_eq!(proof, want, "{old} -> {new}");
        verify_consistency(
            old,
            new,
            &h(ROOTS[old as usize]),
            &h(ROOTS[new as usize]),
            &want,
        )
        .unwrap();
    }
}

/// The corruptions of `proof/verify_test.go` (`corruptInclusionProof`): each must fail.
#[test]
fn corrupted_inclusion_proofs_fail() {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (leaf, size, proof) in inclusion_vectors() {
        let i = leaf - 1;
        let lh = h(LEAF_HASHES[i as usize]);
        let root = h(ROOTS[size as usize]);
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (i.wrapping_sub(1), size, root, lh, proof.clone()),
            (i + 1, size, root, lh, proof.clone()),
            (i ^ 2, size, root, lh, proof.clone()),
            (i, size * 2, root, lh, proof.clone()),
            (i, size / 2, root, lh, proof.clone()),
            (i, size, root, some, proof.clone()),
            (i, size, h(ROOTS[0]), lh, proof.clone()),
            (i, size, some, lh, proof.clone()),
            (i, size, root, lh, [proof.clone(), vec![root]].concat()),
            (i, size, root, lh, [vec![root], proof.clone()].concat()),
        ];
        for k in 0..proof.len() {
            let mut p = proof.clone();
            p[k][0] ^= 8;
            probes.push((i, size, root, lh, p));
        }
        if !proof.is_empty() {
            probes.push((i, size, root, lh, proof[..proof.len() - 1].to_vec()));
        }
        for (n, (pi, ps, pr, pl, pp)) in probes.into_iter().enumerate() {
            assert!(
                verify_inclusion(pi, ps, &pl, &pp, &pr).is_err(),
                "probe {n} for leaf {leaf} size {size} verified"
            );
        }
    }
}

/// The corruptions of `proof/verify_test.go` (`corruptConsistencyProof`): each must fail.
#[test]
fn corrupted_consistency_proofs_fail() {
    for (old, new, proof) in consistency_vectors() {
        if proof.is_empty() {
            continue;
        }
        let r1 = h(ROOTS[old as usize]);
        let r2 = h(ROOTS[new as usize]);
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old - 1, new, r1, r2, proof.clone()),
            (old + 1, new, r1, r2, proof.clone()),
            (old ^ 2, new, r1, r2, proof.clone()),
            (old, new * 2, r1, r2, proof.clone()),
            (old, new / 2, r1, r2, proof.clone()),
            (old, new, [7u8; 32], r2, proof.clone()),
            (old, new, r1, [7u8; 32], proof.clone()),
            (old, new, r2, r1, proof.clone()),
            (old, new, r1, r2, vec![]),
            (old, new, r1, r2, [proof.clone(), vec![r1]].concat()),
            (old, new, r1, r2, [proof.clone(), vec![r2]].concat()),
            (old, new, r1, r2, [vec![r1], proof.clone()].concat()),
            (old, new, r1, r2, [vec![r2], proof.clone()].concat()),
            (old, new, r1, r2, [vec![proof[0]], proof.clone()].concat()),
            (old, new, r1, r2, proof[..proof.len() - 1].to_vec()),
        ];
        for k in 0..proof.len() {
            let mut p = proof.clone();
            p[k][0] ^= 16;
            probes.push((old, new, r1, r2, p));
        }
        for (n, (a, b, ra, rb, p)) in probes.into_iter().enumerate() {
            assert!(
                verify_consistency(a, b, &ra, &rb, &p).is_err(),
                "probe {n} for {old}->{new} verified"
            );
        }
    }
}

#[test]
fn edge_cases_of_verification() {
    // From `TestVerifyConsistency` / `TestVerifyInclusion` in proof/verify_test.go.
    let e = h(ROOTS[0]);
    let a = [1u8; 32];
    let b = [2u8; 32];
    assert!(verify_consistency(0, 0, &a, &a, &[]).is_ok());
    assert!(verify_consistency(0, 1, &a, &b, &[]).is_ok());
    assert!(verify_consistency(1, 1, &b, &b, &[]).is_ok());
    assert!(verify_consistency(0, 0, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 0, &a, &b, &[]).is_err());
    assert!(verify_consistency(2, 1, &a, &b, &[]).is_err());
    assert!(verify_consistency(1, 2, &a, &b, &[]).is_err());
    assert!(verify_consistency(0, 0, &e, &e, &[e]).is_err());
    assert!(verify_consistency(0, 1, &e, &e, &[e]).is_err());
    assert!(verify_consistency(1, 1, &e, &e, &[e]).is_err());
    for (i, s) in [(0, 0), (0, 1), (1, 0), (2, 1)] {
        assert!(verify_inclusion(i, s, &a, &[], &e).is_err());
    }
    assert!(verify_inclusion(0, 1, &a, &[], &a).is_ok());
    assert!(verify_consistency(3, 7, &a, &b, &[a; 65]).is_err());
}

/// Every proof generated for every pair of sizes up to 70 matches the RFC definition and
/// verifies; the stored-subtree roots agree with the recursive definition.
#[test]
fn generated_proofs_verify_for_all_small_sizes() {
    let leaves: Vec<Vec<u8>> = (0u32..70).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut t = MerkleTree::new();
    for l in &leaves {
        t.append(l);
    }
    let roots: Vec<Hash> = (0..=leaves.len())
        .map(|n| reference_mth(&leaves[..n]))
        .collect();
    for n in 0..=leaves.len() as u64 {
        assert_eq!(t.root_at(n).unwrap(), roots[n as usize]);
        for i in 0..n {
            let p = t.inclusion_proof(i, n).unwrap();
            verify_inclusion(
                i,
                n,
                &leaf_hash(&leaves[i as usize]),
                &p,
                &roots[n as usize],
            )
            .unwrap();
        }
        for m in 0..=n {
            let p = t.consistency_proof(m, n).unwrap();
            verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p).unwrap();
        }
    }
}

/// A tree truncated to any size has that size's root and proofs, and grows again exactly as a
/// tree built to that size would (the store undoes the leaves of an uncommitted transaction).
#[test]
fn truncate_returns_the_tree_to_an_earlier_size() {
    for full in 0u64..40 {
        let mut reference = MerkleTree::new();
        let mut roots = vec![reference.root()];
        for i in 0..full {
            reference.append(&i.to_be_bytes());
            roots.push(reference.root());
        }
        for size in 0..=full {
            let mut t = reference.clone();
            t.truncate(size);
            assert_eq!(t.size(), size);
            assert_eq!(t.root(), roots[size as usize], "full {full}, size {size}");
            // Grown back, it is the original tree.
            for i in size..full {
                t.append(&i.to_be_bytes());
            }
            assert_eq!(t.root(), reference.root());
            if full > 0 {
                assert_eq!(
                    t.inclusion_proof(full - 1, full).unwrap(),
                    reference.inclusion_proof(full - 1, full).unwrap()
                );
            }
        }
    }
}
