//! The C2SP `tlog-tiles` layout of a log, so that an archive of it is read by any tlog-tiles client.
//!
//! A tile at level `L` holds up to 256 hashes of the tree's nodes at height `8 * L` (level 0: leaf
//! hashes), the `N`-th tile those of nodes `256 * N ..`. A full tile is at `tile/<L>/<N>`; the right edge
//! of a tree whose size is not a multiple of the tile's span is a partial tile `tile/<L>/<N>.p/<W>` of
//! `W` hashes. The records themselves are in entry bundles `tile/entries/<N>[.p/<W>]`: each entry as a
//! big-endian `u16` length and its bytes, the same entries whose leaf hashes are tile `0/<N>`. `<N>` is
//! written in groups of three digits, all but the last with an `x` (`1234067` is `x001/x234/067`).
//!
//! The hash of a full tile's 256 hashes (their Merkle tree hash) is the tree node one tile level up, so a
//! bundle of 256 entries stands for one node at height 8: [`bundle_root`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::Hash;
use super::merkle::{leaf_hash, root};
use crate::{ErrorCode, IfError};

/// Tree levels per tile level.
pub const HEIGHT: u32 = 8;
/// Hashes in a full tile, entries in a full bundle.
pub const WIDTH: u64 = 1 << HEIGHT;

fn push_index(path: &mut String, index: u64) {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    for (i, g) in groups.iter().rev().enumerate() {
        let last = i + 1 == groups.len();
        let _ = write!(path, "{}{g:03}{}", if last { "" } else { "x" }, if last { "" } else { "/" });
    }
}

fn push_width(path: &mut String, width: u64) {
    if width < WIDTH {
        let _ = write!(path, ".p/{width}");
    }
}

/// The path of the tile at `level`, `index`, holding `width` hashes (256: a full tile).
pub fn tile_path(level: u8, index: u64, width: u64) -> String {
    let mut path = String::new();
    let _ = write!(path, "tile/{level}/");
    push_index(&mut path, index);
    push_width(&mut path, width);
    path
}

/// The path of entry bundle `index` holding `width` entries (256: a full bundle).
pub fn entries_path(index: u64, width: u64) -> String {
    let mut path = String::from("tile/entries/");
    push_index(&mut path, index);
    push_width(&mut path, width);
    path
}

/// The entry bundle `path` names, `(index, width)`: the inverse of [`entries_path`]; `None` for any other.
pub fn entries_at(path: &str) -> Option<(u64, u64)> {
    let rest = path.strip_prefix("tile/entries/")?;
    let (index, width) = match rest.split_once(".p/") {
        Some((index, width)) => (index, width.parse::<u64>().ok().filter(|w| (1..WIDTH).contains(w))?),
        None => (rest, WIDTH),
    };
    let groups: Vec<&str> = index.split('/').collect();
    let mut n: u64 = 0;
    for (i, group) in groups.iter().enumerate() {
        let digits = if i + 1 == groups.len() { Some(*group) } else { group.strip_prefix('x') }?;
        // A leading group of zeros is never written: `x000/005` is not bundle 5's path, `005` is.
        let leading_zeros = i == 0 && groups.len() > 1 && digits == "000";
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) || leading_zeros {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    Some((n, width))
}

/// The right edge of a tree of `size` leaves at each tile level: `(level, index, width)` of every partial
/// tile it needs (none at a level where the count of its nodes is a multiple of 256).
pub fn partial_tiles(size: u64) -> impl Iterator<Item = (u8, u64, u64)> {
    (0u8..8).filter_map(move |level| {
        let nodes = size.checked_shr(HEIGHT * u32::from(level)).unwrap_or(0);
        let width = nodes % WIDTH;
        (width > 0).then_some((level, nodes / WIDTH, width))
    })
}

/// The bytes of an entry bundle of `entries`: each a big-endian `u16` length and the entry.
pub fn bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, IfError> {
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let Ok(len) = u16::try_from(e.len()) else {
            crate::if_bail!(ErrorCode::InvalidProof, "entry {i} of a bundle is {} bytes, over 65535", e.len());
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// The entries of a bundle, which must hold at most [`WIDTH`] of them and nothing after the last.
pub fn unbundle(bytes: &[u8]) -> Result<Vec<&[u8]>, IfError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if out.len() as u64 == WIDTH {
            crate::if_bail!(ErrorCode::InvalidProof, "a bundle holds more than {WIDTH} entries");
        }
        let [hi, lo, tail @ ..] = rest else {
            crate::if_bail!(ErrorCode::InvalidProof, "a bundle ends inside an entry's length");
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < len {
            crate::if_bail!(ErrorCode::InvalidProof, "entry {} of a bundle is cut short", out.len());
        }
        let (entry, after) = tail.split_at(len);
        out.push(entry);
        rest = after;
    }
    Ok(out)
}

/// The level-0 tile of `entries`: their leaf hashes, end to end.
pub fn leaf_tile(entries: &[&[u8]]) -> Vec<u8> {
    entries.iter().flat_map(|e| leaf_hash(e)).collect()
}

/// The hashes of a tile's bytes (a multiple of 32 bytes, at most 256 hashes).
pub fn tile_hashes(bytes: &[u8]) -> Result<Vec<Hash>, IfError> {
    if !bytes.len().is_multiple_of(32) || bytes.len() as u64 > WIDTH * 32 {
        crate::if_bail!(ErrorCode::InvalidProof, "a tile of {} bytes is not a whole number of hashes", bytes.len());
    }
    Ok(bytes.chunks_exact(32).filter_map(|c| Hash::try_from(c).ok()).collect())
}

/// The Merkle tree hash of a bundle's entries: for a full bundle, the tree's node at height 8 over them.
pub fn bundle_root(entries: &[&[u8]]) -> Hash {
    root(entries.iter().map(|e| leaf_hash(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_three_digit_groups_of_the_layout() {
        assert_eq!(tile_path(0, 0, 256), "tile/0/000");
        assert_eq!(tile_path(1, 1234067, 256), "tile/1/x001/x234/067");
        assert_eq!(tile_path(0, 1000, 7), "tile/0/x001/000.p/7");
        assert_eq!(entries_path(999, 256), "tile/entries/999");
        assert_eq!(entries_path(5, 255), "tile/entries/005.p/255");
        for (index, width) in [(0, 256), (999, 256), (1234067, 256), (5, 255), (1000, 1)] {
            assert_eq!(entries_at(&entries_path(index, width)), Some((index, width)));
        }
        for other in ["tile/0/000", "tile/entries/1234", "tile/entries/x1/000", "tile/entries/001.p/256"] {
            assert_eq!(entries_at(other), None, "{other}");
        }
        assert_eq!(entries_at("tile/entries/001/002"), None, "a group without its x");
        assert_eq!(entries_at("tile/entries/x000/005"), None, "a leading group of zeros");
    }

    #[test]
    fn the_right_edge_names_one_partial_tile_per_level_that_needs_one() {
        let edge: Vec<_> = partial_tiles(70_000).collect();
        // 70,000 leaves: 273 full leaf tiles and 112 leaves over; 273 nodes at height 8 make one full
        // level-1 tile and 17 over; one node at height 16.
        assert_eq!(edge, [(0, 273, 112), (1, 1, 17), (2, 0, 1)]);
        assert_eq!(partial_tiles(65_536).collect::<Vec<_>>(), [(2, 0, 1)]);
        assert_eq!(partial_tiles(0).count(), 0);
    }

    #[test]
    fn bundles_round_trip_and_refuse_what_is_cut_short_or_too_long() {
        let entries: [&[u8]; 3] = [b"a", b"", b"three"];
        let b = bundle(entries).expect("small entries");
        assert_eq!(unbundle(&b).expect("parses"), entries);
        assert_eq!(unbundle(&b[..b.len() - 1]).expect_err("cut").code(), ErrorCode::InvalidProof);
        assert!(unbundle(&[0]).is_err(), "half a length");
        let big = alloc::vec![0u8; 70_000];
        assert!(bundle([big.as_slice()]).is_err(), "an entry over 65535 bytes has no length");
        let many = bundle(core::iter::repeat_n(&b"x"[..], 257)).expect("bytes");
        assert!(unbundle(&many).is_err(), "257 entries");
        assert!(tile_hashes(&[0; 33]).is_err() && tile_hashes(&[0; 64]).map(|h| h.len()).ok() == Some(2));
    }

    #[test]
    fn a_full_bundles_root_is_the_root_of_its_leaf_tile() {
        let data: Vec<[u8; 2]> = (0..256u16).map(u16::to_be_bytes).collect();
        let entries: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
        let tile = tile_hashes(&leaf_tile(&entries)).expect("tile");
        assert_eq!(tile.len(), 256);
        assert_eq!(bundle_root(&entries), root(tile));
    }
}
