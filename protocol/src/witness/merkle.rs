//! RFC 6962 Merkle tree hashing: `leaf = SHA-256(0x00 || data)`, `node = SHA-256(0x01 || left || right)`.
//!
//! [`CompactTree`] keeps only the roots of the perfect subtrees that make up a tree of any size (one per set
//! bit of the size, at most 64), so appending a leaf and reading the tree head cost `O(log n)` hashes and a
//! few hundred bytes of state, whatever the size of the log.

use sha2::{Digest, Sha256};

use super::Hash;

/// SHA-256 of the empty string: the head of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of a leaf with `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of a perfect subtree of `2^level` leaves whose last leaf is `last`; its first leaf is
/// `last + 1 - 2^level`, a multiple of `2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Index of the subtree's last leaf.
    pub last: u64,
    /// Height above the leaves (1: a parent of two leaves).
    pub level: u8,
    /// The subtree's Merkle tree hash.
    pub hash: Hash,
}

impl Node {
    /// Index of the last leaf of the perfect subtree with `2^level` leaves that is the `index`-th of its
    /// height, counted from the left.
    pub const fn last_leaf(level: u8, index: u64) -> u64 {
        ((index + 1) << level) - 1
    }
}

/// A Merkle tree kept as its perfect-subtree roots ("peaks"), for appending and reading the head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactTree {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first; subtree `i` has `2^k` leaves for the
    /// `i`-th set bit of `size` counted from the top.
    peaks: heapless::Vec<Hash, 64>,
}

impl CompactTree {
    /// The empty tree.
    pub const fn new() -> Self {
        CompactTree { size: 0, peaks: heapless::Vec::new() }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest first (what the agent persists to resume the tree).
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Rebuilds a tree from its size and peaks; `None` when the number of peaks does not fit the size.
    pub fn from_peaks(size: u64, peaks: &[Hash]) -> Option<Self> {
        if peaks.len() != size.count_ones() as usize {
            return None;
        }
        Some(CompactTree { size, peaks: heapless::Vec::from_slice(peaks).ok()? })
    }

    /// Appends a leaf given its leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_nodes(leaf);
    }

    /// Appends a leaf and returns every interior node the leaf completes, lowest first: the roots of the
    /// perfect subtrees that end at this leaf (on average one per leaf). Storing them lets a log answer
    /// proofs from `O(log n)` nodes instead of rehashing its leaves.
    pub fn push_nodes(&mut self, leaf: Hash) -> heapless::Vec<Node, 64> {
        let last = self.size;
        let mut completed = heapless::Vec::new();
        let mut carry = leaf;
        // Each trailing one bit of the old size is a peak of the same height to merge with.
        let merges = self.size.trailing_ones();
        for level in 1..=merges {
            match self.peaks.pop() {
                Some(left) => carry = node_hash(&left, &carry),
                None => break,
            }
            // One node per level, and a u64 size has at most 64 levels.
            let _ = completed.push(Node { last, level: level as u8, hash: carry });
        }
        // At most 64 peaks exist for any u64 size and one was just freed or the size has fewer set bits.
        let _ = self.peaks.push(carry);
        self.size += 1;
        completed
    }

    /// The tree head (RFC 6962 MTH).
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else { return empty_root() };
        peaks.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The tree head of a list of leaf hashes.
pub fn root(leaves: impl IntoIterator<Item = Hash>) -> Hash {
    let mut tree = CompactTree::new();
    for leaf in leaves {
        tree.push(leaf);
    }
    tree.root()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6962 definition, recursively: split at the largest power of two below n.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn compact_tree_matches_the_definition() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut tree = CompactTree::new();
        assert_eq!(tree.root(), empty_root());
        for n in 1..=leaves.len() {
            tree.push(leaves[n - 1]);
            assert_eq!(tree.root(), reference_root(&leaves[..n]), "size {n}");
            assert_eq!(tree.peaks().len(), n.count_ones() as usize);
            let resumed = CompactTree::from_peaks(tree.size(), tree.peaks()).expect("peaks fit");
            assert_eq!(resumed, tree);
        }
        assert!(CompactTree::from_peaks(3, &[[0; 32]]).is_none());
    }

    #[test]
    fn every_completed_node_is_the_root_of_its_perfect_subtree() {
        let leaves: Vec<Hash> = (0u32..200).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut tree = CompactTree::new();
        let mut nodes = Vec::new();
        for leaf in &leaves {
            nodes.extend(tree.push_nodes(*leaf));
        }
        // A tree of n leaves has n - 1 interior nodes once every subtree is perfect; for 200 leaves
        // the unfinished right edge (200 = 128 + 64 + 8) leaves 2 peaks' merges to come.
        assert_eq!(nodes.len(), 200 - 200u32.count_ones() as usize);
        for n in &nodes {
            let width = 1usize << n.level;
            let first = n.last as usize + 1 - width;
            assert_eq!(first % width, 0, "aligned: {n:?}");
            assert_eq!(n.hash, reference_root(&leaves[first..=n.last as usize]), "{n:?}");
            assert_eq!(Node::last_leaf(n.level, (first / width) as u64), n.last);
        }
    }

    #[test]
    fn rfc6962_reference_leaves_root() {
        // Root of the 8 reference leaves listed in protocol/tests/vectors/README.md (RFC 6962 / Go test data).
        let data: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f],
        ];
        let r = root(data.iter().map(|d| leaf_hash(d)));
        assert_eq!(hex::encode(r), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    }
}
