//! Verification of RFC 6962 / RFC 9162 inclusion and consistency proofs.
//!
//! An inclusion proof for leaf `index` in a tree of `size` leaves splits into an "inner" part (the path up
//! to where the leaf's path and the right border of the tree meet) and a "border" part (left siblings along
//! the right border). A consistency proof from `size1` to `size2` is, after an optional seed, the suffix of
//! the inclusion proof of leaf `size1 - 1` in the larger tree; both heads are recomputed from it.
//! Proof length is checked exactly, so truncated or padded proofs fail before any hashing.

use super::Hash;
use super::merkle::node_hash;
use crate::error::{ErrorCode, IfError, Result};
use crate::if_bail;

fn mismatch(what: &str) -> IfError {
    IfError::format(ErrorCode::InvalidProof, format_args!("{what} does not match the proof"))
}

/// Lengths of the inner and border parts of an inclusion proof.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (u64::BITS - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

/// Hashes `seed` up the inner path; bit `i` of `index` says whether the sibling is on the left.
fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, sibling) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 { node_hash(&seed, sibling) } else { node_hash(sibling, &seed) };
    }
    seed
}

/// Like [`chain_inner`] but only through left siblings: the head of the smaller tree in a consistency proof.
fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, sibling) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(sibling, &seed);
        }
    }
    seed
}

fn chain_border_right(seed: Hash, proof: &[Hash]) -> Hash {
    proof.iter().fold(seed, |acc, sibling| node_hash(sibling, &acc))
}

/// The tree head implied by an inclusion proof.
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Result<Hash> {
    if index >= size {
        if_bail!(ErrorCode::InvalidProof, "leaf index {index} is outside a tree of size {size}");
    }
    let (inner, border) = decompose(index, size);
    if proof.len() != inner + border {
        if_bail!(ErrorCode::InvalidProof, "inclusion proof has {} hashes, want {}", proof.len(), inner + border);
    }
    let head = chain_inner(*leaf, &proof[..inner], index);
    Ok(chain_border_right(head, &proof[inner..]))
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose head is `root`.
///
/// Heads are taken as bytes, as they arrive from a peer: one of the wrong length simply never matches.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &[u8]) -> Result<()> {
    if root_from_inclusion(index, size, leaf, proof)?.as_slice() != root {
        return Err(mismatch("tree head"));
    }
    Ok(())
}

/// Checks that the tree of `size2` leaves with head `root2` extends the tree of `size1` with head `root1`.
///
/// Heads are taken as bytes, as they arrive from a peer; equal sizes need equal heads and an empty proof.
pub fn verify_consistency(size1: u64, size2: u64, root1: &[u8], root2: &[u8], proof: &[Hash]) -> Result<()> {
    if size2 < size1 {
        if_bail!(ErrorCode::InvalidProof, "tree shrank from {size1} to {size2}");
    }
    if size1 == 0 {
        // Every tree extends the empty one, so such a proof proves nothing; a verifier with no earlier
        // checkpoint has nothing to check consistency against and must not pretend it did.
        if_bail!(ErrorCode::InvalidProof, "a consistency proof from the empty tree proves nothing");
    }
    if size1 == size2 {
        if !proof.is_empty() {
            if_bail!(ErrorCode::InvalidProof, "trees of equal size need an empty proof");
        }
        return if root1 == root2 { Ok(()) } else { Err(mismatch("second tree head")) };
    }
    if proof.is_empty() {
        if_bail!(ErrorCode::InvalidProof, "consistency proof is empty");
    }
    let (inner, border) = decompose(size1 - 1, size2);
    let shift = size1.trailing_zeros() as usize;
    let inner = inner - shift;
    // When size1 is a power of two its head is the seed; otherwise the proof starts with the seed.
    let (seed, rest) = if size1 == 1 << shift {
        let head: Hash = root1.try_into().map_err(|_| mismatch("first tree head"))?;
        (head, proof)
    } else {
        (proof[0], &proof[1..])
    };
    if rest.len() != inner + border {
        if_bail!(
            ErrorCode::InvalidProof,
            "consistency proof has {} hashes, want {}",
            proof.len(),
            proof.len() - rest.len() + inner + border
        );
    }
    let mask = (size1 - 1) >> shift;
    let head1 = chain_border_right(chain_inner_right(seed, &rest[..inner], mask), &rest[inner..]);
    if head1.as_slice() != root1 {
        return Err(mismatch("first tree head"));
    }
    let head2 = chain_border_right(chain_inner(seed, &rest[..inner], mask), &rest[inner..]);
    if head2.as_slice() != root2 {
        return Err(mismatch("second tree head"));
    }
    Ok(())
}
