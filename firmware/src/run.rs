//! One pass of the node's main loop: read the line, advance the state machine, write the outputs and
//! the frames. The board calls [`step`] forever (feeding its watchdog between passes); nothing in a
//! pass blocks.

use if_protocol::link::{MAX_ENCODED_LEN, encode};

use crate::hal::{Clock, Inputs, Lamps, Link, Notices, Relays};
use crate::state::Node;

/// Everything a node needs from its board.
pub trait Board: Lamps + Relays + Inputs + Clock + Link + Notices {}

impl<T: Lamps + Relays + Inputs + Clock + Link + Notices> Board for T {}

/// Chunks read from the line in one pass at most, so outputs and timers are never starved by a flood.
const READS_PER_PASS: usize = 4;

/// Runs one pass of the main loop on `board`.
pub fn step(node: &mut Node, board: &mut impl Board) {
    let now = board.now_ms();
    let mut buf = [0u8; 64];
    for _ in 0..READS_PER_PASS {
        let n = board.read(&mut buf).min(buf.len());
        if n == 0 {
            break;
        }
        node.receive(&buf[..n], now, board);
    }
    let levels = board.levels();
    node.poll(now, levels, board);
    node.flush(board);
    let mut out = [0u8; MAX_ENCODED_LEN];
    while let Some(frame) = node.outgoing() {
        // Every message the node makes fits a frame (a host test proves it); one that did not would be
        // dropped here rather than half written.
        if let Ok(n) = encode(&frame, &mut out) {
            board.write(&out[..n]);
        }
    }
}
