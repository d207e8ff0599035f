//! The Merkle tree of [RFC 6962 §2.1] / [RFC 9162 §2.1], with inclusion and consistency proofs.
//!
//! * `MTH({}) = SHA-256()`, the hash of the empty string;
//! * `MTH({d0}) = SHA-256(0x00 || d0)` ([`LEAF_HASH_PREFIX`]);
//! * `MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))` for `n > 1`, where `k` is the largest
//!   power of two smaller than `n` ([`NODE_HASH_PREFIX`]).
//!
//! The two prefixes separate leaves from interior nodes, so no leaf can be passed off as a node
//! (second-preimage attacks on the tree).
//!
//! [`MerkleTree`] keeps every complete subtree hash, level by level: an append costs O(1) amortized
//! (O(log n) at worst), the root of any past size and any proof cost O(log n) hash lookups and
//! O(log n) hashes, and nothing ever re-hashes the whole log. Memory is two hashes per leaf.
//!
//! Roots are compared in constant time ([`hashes_equal`]).
//!
//! [RFC 6962 §2.1]: https://www.rfc-editor.org/rfc/rfc6962#section-2.1
//! [RFC 9162 §2.1]: https://www.rfc-editor.org/rfc/rfc9162#section-2.1

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Error;

/// Length in bytes of a tree hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// A SHA-256 tree hash.
pub type Hash = [u8; HASH_LEN];

/// Domain-separation prefix of a leaf hash: `SHA-256(0x00 || leaf)` (RFC 6962 §2.1).
pub const LEAF_HASH_PREFIX: u8 = 0x00;

/// Domain-separation prefix of an interior node hash: `SHA-256(0x01 || left || right)`
/// (RFC 6962 §2.1).
pub const NODE_HASH_PREFIX: u8 = 0x01;

/// The most hashes a proof can hold: one per level of a tree of at most 2^64 leaves (plus the
/// first root that RFC 9162 §2.1.4.2 prepends for a power-of-two first size).
pub const MAX_PROOF_LEN: usize = 64;

/// The root of the empty tree: `SHA-256()` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash `SHA-256(0x00 || data)` (RFC 6962 §2.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_HASH_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// The interior node hash `SHA-256(0x01 || left || right)` (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_HASH_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &Hash, b: &Hash) -> bool {
    a.ct_eq(b).into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`), the split point `k` of
/// RFC 6962 §2.1.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    // n >= 2, so n - 1 >= 1 and leading_zeros <= 63.
    1u64 << (63 - (n - 1).leading_zeros())
}

/// An append-only RFC 6962 Merkle tree that keeps every complete subtree hash.
///
/// INVARIANT: `levels[l][i]` is the hash of the complete subtree over leaves
/// `[i * 2^l, (i + 1) * 2^l)`, and it exists exactly when all those leaves have been appended.
#[derive(Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl std::fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleTree")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends the leaf with this data; returns its index.
    pub fn append(&mut self, data: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(data))
    }

    /// Appends a leaf given its leaf hash; returns its index. O(1) amortized, O(log n) at worst.
    pub fn push_leaf_hash(&mut self, hash: Hash) -> u64 {
        let index = self.size();
        let mut level = 0usize;
        let mut carry = hash;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let Some(nodes) = self.levels.get_mut(level) else {
                break;
            };
            nodes.push(carry);
            match nodes.as_slice() {
                // An even count means the last two nodes are siblings: their parent is complete.
                [.., l, r] if nodes.len().is_multiple_of(2) => {
                    carry = node_hash(l, r);
                    level += 1;
                }
                _ => break,
            }
        }
        index
    }

    /// Drops every leaf from index `size` on: the tree becomes what it was at `size` leaves
    /// (used to undo leaves whose records were not committed). A larger `size` changes nothing.
    pub fn truncate(&mut self, size: u64) {
        if size >= self.size() {
            return;
        }
        for (level, nodes) in self.levels.iter_mut().enumerate() {
            // Complete subtrees of 2^level leaves within the first `size` leaves.
            let keep = u32::try_from(level)
                .ok()
                .and_then(|l| size.checked_shr(l))
                .unwrap_or(0);
            nodes.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf_hash_at(&self, index: u64) -> Option<Hash> {
        let i = usize::try_from(index).ok()?;
        self.levels.first()?.get(i).copied()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        // The current size is always a valid size.
        self.root_at(self.size()).unwrap_or_else(|_| empty_root())
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        if size > self.size() {
            return Err(Error::TreeSize {
                requested: size,
                size: self.size(),
            });
        }
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }

    /// `MTH(D[start : start + n])` for `n >= 1`, from stored complete subtrees: O(log n).
    fn subtree(&self, start: u64, n: u64) -> Result<Hash, Error> {
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            let index = usize::try_from(start >> level).map_err(|_| Error::TreeInvariant)?;
            return self
                .levels
                .get(level)
                .and_then(|l| l.get(index))
                .copied()
                .ok_or(Error::TreeInvariant);
        }
        if n < 2 {
            return Err(Error::TreeInvariant);
        }
        let k = split_point(n);
        let left = self.subtree(start, k)?;
        let right = self.subtree(start + k, n - k)?;
        Ok(node_hash(&left, &right))
    }

    /// The inclusion proof `PATH(index, D[size])` of RFC 9162 §2.1.3.1 for the leaf at `index`
    /// in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        if size > self.size() {
            return Err(Error::TreeSize {
                requested: size,
                size: self.size(),
            });
        }
        if index >= size {
            return Err(Error::LeafIndex { index, size });
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out)?;
        Ok(out)
    }

    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) -> Result<(), Error> {
        if n <= 1 {
            return Ok(());
        }
        let k = split_point(n);
        if m < k {
            self.path(m, start, k, out)?;
            out.push(self.subtree(start + k, n - k)?);
        } else {
            self.path(m - k, start + k, n - k, out)?;
            out.push(self.subtree(start, k)?);
        }
        Ok(())
    }

    /// The consistency proof `PROOF(old, D[new])` of RFC 9162 §2.1.4.1 between the trees of
    /// `old` and `new` leaves. Empty when `old == 0` or `old == new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        if new > self.size() {
            return Err(Error::TreeSize {
                requested: new,
                size: self.size(),
            });
        }
        if old > new {
            return Err(Error::SizesOutOfOrder { old, new });
        }
        let mut out = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut out)?;
        }
        Ok(out)
    }

    fn subproof(
        &self,
        m: u64,
        start: u64,
        n: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), Error> {
        if m == n {
            if !complete {
                out.push(self.subtree(start, n)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, k, complete, out)?;
            out.push(self.subtree(start + k, n - k)?);
        } else {
            self.subproof(m - k, start + k, n - k, false, out)?;
            out.push(self.subtree(start, k)?);
        }
        Ok(())
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): that the leaf with hash `leaf` is at `index`
/// in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    if index >= size {
        return Err(Error::LeafIndex { index, size });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(Error::ProofInvalid("inclusion proof is too long"));
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(Error::ProofInvalid("inclusion proof is too long"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(Error::ProofInvalid("inclusion proof is too short"));
    }
    if !hashes_equal(&r, root) {
        return Err(Error::ProofInvalid(
            "inclusion proof does not lead to the root",
        ));
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): that the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    if old > new {
        return Err(Error::SizesOutOfOrder { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(Error::ProofInvalid(
                "consistency proof between equal sizes must be empty",
            ));
        }
        if !hashes_equal(old_root, new_root) {
            return Err(Error::ProofInvalid("roots of equal sizes differ"));
        }
        return Ok(());
    }
    if old == 0 {
        // Every tree extends the empty tree.
        if !proof.is_empty() {
            return Err(Error::ProofInvalid(
                "consistency proof from the empty tree must be empty",
            ));
        }
        return Ok(());
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(Error::ProofInvalid("consistency proof is too long"));
    }
    let (first, rest): (Hash, &[Hash]) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((h, rest)) => (*h, rest),
            None => return Err(Error::ProofInvalid("consistency proof is empty")),
        }
    };
    let mut f = old - 1;
    let mut s = new - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = first;
    let mut sr = first;
    for c in rest {
        if s == 0 {
            return Err(Error::ProofInvalid("consistency proof is too long"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(Error::ProofInvalid("consistency proof is too short"));
    }
    // Evaluate both comparisons before branching, so neither short-circuits.
    let old_ok = hashes_equal(&fr, old_root);
    let new_ok = hashes_equal(&sr, new_root);
    if !(old_ok & new_ok) {
        return Err(Error::ProofInvalid(
            "consistency proof does not lead to both roots",
        ));
    }
    Ok(())
}

/// A running root over a stream of leaves with O(log n) memory: the verifier's view of the tree
/// (the "compact range" `[0, size)`: one hash per set bit of `size`).
#[derive(Debug, Clone, Default)]
pub struct CompactRange {
    size: u64,
    // Hashes of the complete subtrees, largest first; their sizes are the set bits of `size`.
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// The empty range.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) -> Result<(), Error> {
        let mut carry = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            let left = self.peaks.pop().ok_or(Error::TreeInvariant)?;
            carry = node_hash(&left, &carry);
            s >>= 1;
        }
        self.peaks.push(carry);
        self.size = self.size.checked_add(1).ok_or(Error::TreeInvariant)?;
        Ok(())
    }

    /// The root of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
#[path = "merkle_tests.rs"]
mod tests;
