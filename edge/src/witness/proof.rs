//! RFC 6962 consistency proofs (section 2.1.2, `PROOF(m, D[n])`), so an upstream verifier can check that
//! the log it saw at an earlier checkpoint is a prefix of the log at a later one without receiving the
//! records. The verifier's side is `if_protocol::witness::proof::verify_consistency`.
//!
//! A proof is made of roots of subtrees, and every subtree the algorithm names starts at a multiple of
//! the largest power of two not above its width, so each one is a handful of *perfect* subtrees. The
//! witness log stores the root of every perfect subtree as it completes ([`Nodes`] over a snapshot),
//! so a proof costs `O(log n)` lookups however long the log is; a plain list of leaf hashes answers the
//! same questions by hashing, for tests and small logs.

use if_protocol::IfError;
use if_protocol::witness::Hash;
use if_protocol::witness::merkle::{empty_root, node_hash};

/// Roots of the perfect subtrees of a log.
pub trait Nodes {
    /// The root of the `index`-th perfect subtree of `2^level` leaves (level 0: a leaf hash).
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, IfError>;
}

impl Nodes for [Hash] {
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, IfError> {
        let width = 1usize << level;
        let first = usize::try_from(index).unwrap_or(usize::MAX).saturating_mul(width);
        match self.get(first..first.saturating_add(width)) {
            Some(leaves) => Ok(slice_root(leaves)),
            None => Err(IfError::format(
                if_protocol::ErrorCode::InvalidProof,
                format_args!("no subtree {index} of height {level} in {} leaves", self.len()),
            )),
        }
    }
}

fn slice_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&slice_root(&leaves[..k]), &slice_root(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of `n` leaves from `start`, where `start` is a multiple of the largest power of
/// two not above `n` (true of every range a proof asks for): one perfect subtree per set bit of `n`.
pub fn range_root(nodes: &(impl Nodes + ?Sized), start: u64, n: u64) -> Result<Hash, IfError> {
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() {
        let level = n.trailing_zeros() as u8;
        return nodes.perfect(level, start >> level);
    }
    let k = split(n);
    Ok(node_hash(&range_root(nodes, start, k)?, &range_root(nodes, start + k, n - k)?))
}

/// The roots of the perfect subtrees that make a tree of `size` leaves, largest first.
pub fn peaks_of(nodes: &(impl Nodes + ?Sized), size: u64) -> Result<Vec<Hash>, IfError> {
    let mut peaks = Vec::new();
    let mut start = 0u64;
    for level in (0..u64::BITS).rev().filter(|l| size & (1 << l) != 0) {
        peaks.push(nodes.perfect(level as u8, start >> level)?);
        start += 1 << level;
    }
    Ok(peaks)
}

/// The Merkle tree hash of `leaves` (already leaf-hashed).
pub fn subtree_root(leaves: &[Hash]) -> Hash {
    slice_root(leaves)
}

/// The proof that the first `m` leaves of a log of `n` form a prefix of it; empty when `m` is 0 or `n`.
pub fn consistency_of(nodes: &(impl Nodes + ?Sized), m: u64, n: u64) -> Result<Vec<Hash>, IfError> {
    let mut proof = Vec::new();
    if m > 0 && m < n {
        subproof(nodes, m, 0, n, true, &mut proof)?;
    }
    Ok(proof)
}

/// [`consistency_of`] over a list of leaf hashes.
pub fn consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    // A list answers every range inside it, so this cannot fail.
    consistency_of(leaves, m as u64, leaves.len() as u64).unwrap_or_default()
}

/// The inclusion proof of the subtree of leaves `first .. first + width` in the tree of `size` leaves:
/// its RFC 6962 audit path as one leaf of the tree above it. The subtree is a perfect one (`width` a
/// power of two and `first` a multiple of it) or the tree's right edge (`first + width == size`, `first` a
/// multiple of the power of two above `width`), as an entry bundle is. Verified with
/// `verify_inclusion(first / W, size.div_ceil(W), root, proof, head)` for bundles of `W` leaves.
pub fn subtree_inclusion_of(
    nodes: &(impl Nodes + ?Sized),
    first: u64,
    width: u64,
    size: u64,
) -> Result<Vec<Hash>, IfError> {
    let mut proof = Vec::new();
    let (mut start, mut n) = (0, size);
    let fits = width > 0 && first.checked_add(width).is_some_and(|end| end <= size);
    while fits && (start, n) != (first, width) {
        if n <= width {
            break;
        }
        let k = split(n);
        if first < start + k {
            proof.push(range_root(nodes, start + k, n - k)?);
            n = k;
        } else {
            proof.push(range_root(nodes, start, k)?);
            (start, n) = (start + k, n - k);
        }
    }
    if !fits || (start, n) != (first, width) {
        return Err(IfError::format(
            if_protocol::ErrorCode::InvalidProof,
            format_args!("leaves {first}..+{width} are not one subtree of a tree of {size}"),
        ));
    }
    // The path was walked from the top; a proof lists it from the subtree up.
    proof.reverse();
    Ok(proof)
}

/// `SUBPROOF(m, D[start : start + n], whole)` of RFC 6962 section 2.1.2.
fn subproof(
    nodes: &(impl Nodes + ?Sized),
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), IfError> {
    if m == n {
        if !whole {
            proof.push(range_root(nodes, start, n)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, k, whole, proof)?;
        proof.push(range_root(nodes, start + k, n - k)?);
    } else {
        subproof(nodes, m - k, start + k, n - k, false, proof)?;
        proof.push(range_root(nodes, start, k)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use if_protocol::witness::merkle::{CompactTree, Node, leaf_hash, root};
    use if_protocol::witness::proof::verify_consistency;

    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect()
    }

    #[test]
    fn every_prefix_of_every_log_up_to_70_leaves_proves_consistent() {
        let all = leaves(70);
        for n in 1..=all.len() {
            let log = &all[..n];
            assert_eq!(subtree_root(log), root(log.iter().copied()), "head of {n}");
            for m in 1..=n {
                let proof = consistency(m, log);
                let (r1, r2) = (subtree_root(&log[..m]), subtree_root(log));
                assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &proof).is_ok(), "{m} -> {n}");
            }
        }
    }

    #[test]
    fn a_changed_leaf_or_a_forked_head_fails_to_verify() {
        let log = leaves(13);
        let mut forked = log.clone();
        forked[3] = leaf_hash(b"rewritten");
        let proof = consistency(7, &forked);
        let (r1, r2) = (subtree_root(&log[..7]), subtree_root(&forked));
        assert!(verify_consistency(7, 13, &r1, &r2, &proof).is_err(), "an earlier record was rewritten");
        let proof = consistency(7, &log);
        assert!(verify_consistency(7, 13, &r1, &subtree_root(&forked), &proof).is_err());
    }

    #[test]
    fn every_bundle_of_every_tree_proves_included_as_one_leaf_of_the_tree_of_bundles() {
        use if_protocol::witness::proof::verify_inclusion;
        let all = leaves(40);
        // Bundles of 4 leaves stand for the 256 of the archive: the same shape, smaller.
        let w = 4u64;
        for size in 1..=all.len() as u64 {
            let log = &all[..size as usize];
            let head = subtree_root(log);
            for index in 0..size.div_ceil(w) {
                let first = index * w;
                let width = w.min(size - first);
                let proof = subtree_inclusion_of(log, first, width, size).expect("a bundle");
                let root = subtree_root(&log[first as usize..(first + width) as usize]);
                let ok = verify_inclusion(index, size.div_ceil(w), &root, &proof, &head);
                assert!(ok.is_ok(), "bundle {index} of a tree of {size}: {ok:?}");
                let wrong = verify_inclusion(index, size.div_ceil(w), &leaf_hash(b"forged"), &proof, &head);
                assert!(wrong.is_err());
            }
        }
        assert!(subtree_inclusion_of(&all[..], 2, 4, 40).is_err(), "not aligned");
        assert!(subtree_inclusion_of(&all[..], 36, 8, 40).is_err(), "past the end");
        assert!(subtree_inclusion_of(&all[..], 0, 0, 40).is_err(), "empty");
    }

    /// The nodes a growing tree reports, as a store keeps them, counting lookups.
    struct Stored {
        leaves: Vec<Hash>,
        nodes: std::collections::HashMap<(u64, u8), Hash>,
        lookups: Cell<usize>,
    }

    impl Nodes for Stored {
        fn perfect(&self, level: u8, index: u64) -> Result<Hash, IfError> {
            self.lookups.set(self.lookups.get() + 1);
            if level == 0 {
                return self.leaves.perfect(0, index);
            }
            let last = Node::last_leaf(level, index);
            self.nodes.get(&(last, level)).copied().ok_or_else(|| {
                IfError::format(if_protocol::ErrorCode::InvalidProof, format_args!("no node {level}/{index}"))
            })
        }
    }

    #[test]
    fn proofs_from_stored_nodes_equal_proofs_from_leaves_and_take_logarithmic_lookups() {
        let all = leaves(1100);
        let mut tree = CompactTree::new();
        let mut stored = Stored { leaves: Vec::new(), nodes: Default::default(), lookups: Cell::new(0) };
        for leaf in &all {
            for n in tree.push_nodes(*leaf) {
                stored.nodes.insert((n.last, n.level), n.hash);
            }
            stored.leaves.push(*leaf);
        }
        for (m, n) in [(1u64, 2u64), (3, 7), (8, 9), (500, 1000), (1000, 1024), (1023, 1100), (1, 1100)] {
            stored.lookups.set(0);
            let proof = consistency_of(&stored, m, n).expect("from nodes");
            assert_eq!(proof, consistency(m as usize, &all[..n as usize]), "{m} -> {n}");
            // About two lookups per level of the tree (11 levels), where the leaves would be 1100 hashes.
            assert!(stored.lookups.get() <= 2 * 11 + 2, "{m} -> {n}: {} lookups", stored.lookups.get());
            let head = range_root(&stored, 0, n).expect("head");
            assert_eq!(head, subtree_root(&all[..n as usize]));
        }
        assert!(range_root(&stored, 0, 1101).is_err(), "a subtree beyond the log is an error, not a guess");
    }
}
