//! Reassembles frames from a byte stream that may split frames anywhere and carry noise between them.

use super::codec::{MAX_ENCODED_LEN, decode};
use super::{LinkError, LinkFrame};

/// Collects bytes up to each `0x00` delimiter and decodes what it collected.
///
/// Garbage before a frame makes that stretch fail (CRC or COBS) at the next delimiter, and the frame after
/// it decodes normally. A stretch longer than any frame is dropped as it comes (memory stays bounded) and
/// reported once as [`LinkError::Overflow`] at its delimiter. Empty stretches (two delimiters in a row,
/// which senders may use to flush the line) are ignored.
#[derive(Debug)]
pub struct Accumulator {
    buf: [u8; MAX_ENCODED_LEN],
    len: usize,
    overflowed: bool,
}

impl Default for Accumulator {
    fn default() -> Self {
        Accumulator::new()
    }
}

impl Accumulator {
    /// An empty accumulator.
    pub const fn new() -> Self {
        Accumulator { buf: [0; MAX_ENCODED_LEN], len: 0, overflowed: false }
    }

    /// Feeds one byte; returns a frame or an error when the byte ends a stretch.
    pub fn push(&mut self, byte: u8) -> Option<Result<LinkFrame, LinkError>> {
        if byte != 0 {
            if self.len < self.buf.len() {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflowed = true;
            }
            return None;
        }
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.overflowed) {
            return Some(Err(LinkError::Overflow));
        }
        if len == 0 {
            return None;
        }
        Some(decode(&mut self.buf[..len]))
    }

    /// Feeds a chunk; calls `each` for every frame or error it completes.
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(Result<LinkFrame, LinkError>)) {
        for &b in bytes {
            if let Some(r) = self.push(b) {
                each(r);
            }
        }
    }
}
