//! The replay window against a plain reference model, exhaustively over small widths and short sequences,
//! near zero and at the top of the u64 range.

use std::collections::BTreeSet;

use if_protocol::replay::{Refusal, ReplayWindow};
use proptest::prelude::*;

/// Accepts a number above everything seen, or one inside the window not seen before.
#[derive(Default)]
struct Model {
    seen: BTreeSet<u64>,
}

impl Model {
    fn accept(&mut self, width: u64, seq: u64) -> Result<(), Refusal> {
        if let Some(&top) = self.seen.last()
            && seq <= top
        {
            if top - seq >= width {
                return Err(Refusal::TooOld);
            }
            if self.seen.contains(&seq) {
                return Err(Refusal::Duplicate);
            }
        }
        self.seen.insert(seq);
        Ok(())
    }
}

fn compare(width: u16, seqs: &[u64]) {
    let mut w = ReplayWindow::new(width).expect("width");
    let mut m = Model::default();
    for (i, &s) in seqs.iter().enumerate() {
        let checked = w.check(s);
        let got = w.accept(s);
        assert_eq!(checked, got, "check and accept agree");
        assert_eq!(got, m.accept(u64::from(width), s), "width {width}, step {i} of {seqs:?}");
        assert!(w.is_well_formed());
    }
}

/// Every sequence of `len` numbers drawn from `alphabet`, for each width.
fn exhaustive(widths: &[u16], alphabet: &[u64], len: u32) -> usize {
    let n = alphabet.len();
    let total = n.pow(len);
    for width in widths {
        for mut code in 0..total {
            let seqs: Vec<u64> = (0..len)
                .map(|_| {
                    let s = alphabet[code % n];
                    code /= n;
                    s
                })
                .collect();
            compare(*width, &seqs);
        }
    }
    total * widths.len()
}

#[test]
fn exhaustive_small_widths_near_zero() {
    let runs = exhaustive(&[1, 2, 3, 4, 5, 8], &[0, 1, 2, 3, 4, 5, 6, 9, 12], 5);
    assert_eq!(runs, 6 * 9usize.pow(5));
}

#[test]
fn exhaustive_at_the_top_of_u64() {
    let m = u64::MAX;
    exhaustive(&[1, 2, 3, 4, 64], &[m, m - 1, m - 2, m - 3, m - 4, m - 64, m - 65, 0], 5);
}

#[test]
fn exhaustive_across_word_boundaries() {
    exhaustive(&[63, 64, 65, 127, 128, 129, 1024], &[0, 1, 62, 63, 64, 65, 128, 129, 1023, 1024, 1100], 4);
}

#[test]
fn far_ahead_clears_the_window() {
    let mut w = ReplayWindow::new(64).expect("width");
    w.accept(5).expect("first");
    w.accept(u64::MAX).expect("far ahead");
    assert_eq!(w.accept(5), Err(Refusal::TooOld));
    assert_eq!(w.accept(u64::MAX), Err(Refusal::Duplicate));
    assert_eq!(w.accept(u64::MAX - 63), Ok(()), "last slot of the window");
    assert_eq!(w.accept(u64::MAX - 64), Err(Refusal::TooOld));
}

proptest! {
    #[test]
    fn random_sequences_match_the_model(width in 1u16..=200, base in any::<u64>(), steps in proptest::collection::vec(0u64..300, 1..60)) {
        let seqs: Vec<u64> = steps.iter().map(|d| base.wrapping_add(*d)).collect();
        compare(width, &seqs);
    }
}
