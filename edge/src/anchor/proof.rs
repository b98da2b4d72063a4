//! RFC 6962 consistency proofs made from a log's leaf hashes (section 2.1.2, `PROOF(m, D[n])`), so an
//! upstream verifier can check that the log it saw at an earlier checkpoint is a prefix of the log at a
//! later one without receiving the records. The verifier's side is
//! `if_protocol::witness::proof::verify_consistency`.

use if_protocol::witness::Hash;
use if_protocol::witness::merkle::{empty_root, node_hash};

/// The Merkle tree hash of `leaves` (already leaf-hashed).
pub fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The proof that the first `m` leaves form a prefix of `leaves`; empty when `m` is 0 or the whole log.
pub fn consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let mut proof = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut proof);
    }
    proof
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(subtree_root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, proof);
        proof.push(subtree_root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, proof);
        proof.push(subtree_root(&leaves[..k]));
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::witness::merkle::{leaf_hash, root};
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
}
