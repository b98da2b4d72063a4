//! The per-sender replay window: an RFC 4303 (IPsec ESP) style sliding window over `u64` sequence numbers.
//!
//! The window remembers the highest sequence number accepted (`top`) and which of the `width` numbers
//! ending at `top` were seen. A number above `top` is new and slides the window up; a number inside the
//! window is new once; a number below the window is too old to tell and is refused. `width = 1` gives
//! strict monotonic order.
//!
//! A sequence number may never run ahead of time: it is at most the receiver's clock in microseconds
//! plus the allowed skew ([`seq_limit`]). A sender that counts 1, 2, 3 stays far below that bound, and
//! one that takes its numbers from the clock stays at it; but no single envelope can push a sender's
//! window so far up (to `u64::MAX`, say) that every later number of that sender is too old.
//!
//! Checking and recording are separate ([`ReplayWindow::check`] then [`ReplayWindow::accept`]) so the agent
//! can write the new state in the same transaction as the witness record before it commits to it. The
//! state is plain data (`Serialize`/`Deserialize`) for that purpose.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, IfError, Result};

/// Widest window supported.
pub const MAX_WIDTH: u16 = 1024;
/// The default width: wide enough for many senders sharing one identity to arrive out of order.
pub const DEFAULT_WIDTH: u16 = 1024;
const WORDS: usize = MAX_WIDTH as usize / 64;

/// The largest sequence number accepted at `now_ms` with `skew_ms` of allowed clock difference: the
/// clock in microseconds plus the skew.
pub const fn seq_limit(now_ms: u64, skew_ms: u64) -> u64 {
    now_ms.saturating_add(skew_ms).saturating_mul(1000)
}

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before (inside the window).
    Duplicate,
    /// Below the window: too old to tell.
    TooOld,
}

impl Refusal {
    /// The IF error code: `REPLAY_DETECTED` or `OUT_OF_ORDER`.
    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::Duplicate => ErrorCode::ReplayDetected,
            Refusal::TooOld => ErrorCode::OutOfOrder,
        }
    }
}

/// Window state for one sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayWindow {
    width: u16,
    /// Highest accepted number, `None` before the first.
    top: Option<u64>,
    /// Bit `i` (word `i / 64`, bit `i % 64`) is set when `top - i` was accepted.
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// An empty window; `width` must be `1..=MAX_WIDTH`.
    pub fn new(width: u16) -> Result<Self> {
        if width == 0 || width > MAX_WIDTH {
            return Err(IfError::format(
                ErrorCode::ConfigInvalid,
                format_args!("replay window width must be 1..={MAX_WIDTH}, got {width}"),
            ));
        }
        Ok(ReplayWindow { width, top: None, seen: [0; WORDS] })
    }

    /// The width.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// The highest accepted number.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Whether `seq` would be accepted; changes nothing.
    pub fn check(&self, seq: u64) -> core::result::Result<(), Refusal> {
        let Some(top) = self.top else { return Ok(()) };
        if seq > top {
            return Ok(());
        }
        let behind = top - seq;
        if behind >= u64::from(self.width) {
            return Err(Refusal::TooOld);
        }
        if self.bit(behind as usize) { Err(Refusal::Duplicate) } else { Ok(()) }
    }

    /// Checks `seq` and records it.
    pub fn accept(&mut self, seq: u64) -> core::result::Result<(), Refusal> {
        self.check(seq)?;
        match self.top {
            Some(top) if seq <= top => self.set_bit((top - seq) as usize),
            Some(top) => {
                self.shift_up(seq - top);
                self.top = Some(seq);
                self.set_bit(0);
            }
            None => {
                self.top = Some(seq);
                self.set_bit(0);
            }
        }
        Ok(())
    }

    /// Checks the state read back from storage: width in range and no bits beyond it.
    pub fn is_well_formed(&self) -> bool {
        if self.width == 0 || self.width > MAX_WIDTH {
            return false;
        }
        if self.top.is_none() {
            return self.seen.iter().all(|w| *w == 0);
        }
        (usize::from(self.width)..usize::from(MAX_WIDTH)).all(|i| !self.bit(i))
    }

    fn bit(&self, i: usize) -> bool {
        self.seen[i / 64] >> (i % 64) & 1 == 1
    }

    fn set_bit(&mut self, i: usize) {
        self.seen[i / 64] |= 1 << (i % 64);
    }

    /// Moves every mark `by` places further from the top, dropping those that leave the window.
    fn shift_up(&mut self, by: u64) {
        if by >= u64::from(self.width) {
            self.seen = [0; WORDS];
            return;
        }
        let by = by as usize;
        let (words, bits) = (by / 64, by % 64);
        for i in (0..WORDS).rev() {
            let lo = if i >= words { self.seen[i - words] } else { 0 };
            let carry = if bits > 0 && i > words { self.seen[i - words - 1] >> (64 - bits) } else { 0 };
            self.seen[i] = if bits > 0 { lo << bits | carry } else { lo };
        }
        self.clear_beyond_width();
    }

    fn clear_beyond_width(&mut self) {
        let width = usize::from(self.width);
        for (i, word) in self.seen.iter_mut().enumerate() {
            let first = i * 64;
            if first >= width {
                *word = 0;
            } else if width - first < 64 {
                *word &= (1u64 << (width - first)) - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_bounds_sequence_numbers() {
        assert_eq!(seq_limit(1_800_000_000_000, 30_000), 1_800_000_030_000_000);
        assert_eq!(seq_limit(u64::MAX, 1), u64::MAX);
        assert!(seq_limit(1_800_000_000_000, 0) < u64::MAX / 1000);
    }

    #[test]
    fn width_bounds() {
        assert!(ReplayWindow::new(0).is_err());
        assert!(ReplayWindow::new(MAX_WIDTH + 1).is_err());
        assert!(ReplayWindow::new(1).is_ok());
        assert!(ReplayWindow::new(MAX_WIDTH).is_ok());
    }

    #[test]
    fn strict_monotonic_with_width_one() {
        let mut w = ReplayWindow::new(1).expect("width");
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(5), Err(Refusal::Duplicate));
        assert_eq!(w.accept(4), Err(Refusal::TooOld));
        assert_eq!(w.accept(6), Ok(()));
        assert_eq!(Refusal::TooOld.code(), ErrorCode::OutOfOrder);
        assert_eq!(Refusal::Duplicate.code(), ErrorCode::ReplayDetected);
    }

    #[test]
    fn check_does_not_record() {
        let mut w = ReplayWindow::new(8).expect("width");
        assert_eq!(w.check(3), Ok(()));
        assert_eq!(w.check(3), Ok(()));
        w.accept(3).expect("new");
        assert_eq!(w.check(3), Err(Refusal::Duplicate));
    }

    #[test]
    fn shift_across_word_boundaries() {
        let mut w = ReplayWindow::new(MAX_WIDTH).expect("width");
        w.accept(1000).expect("first");
        w.accept(1070).expect("ahead by 70");
        assert_eq!(w.check(1000), Err(Refusal::Duplicate));
        w.accept(1000 + 1023).expect("ahead");
        assert_eq!(w.check(1000), Err(Refusal::Duplicate), "1023 behind is the last slot");
        w.accept(1000 + 1024).expect("ahead");
        assert_eq!(w.check(1000), Err(Refusal::TooOld));
        assert_eq!(w.check(1070), Err(Refusal::Duplicate));
        assert!(w.is_well_formed());
    }
}
