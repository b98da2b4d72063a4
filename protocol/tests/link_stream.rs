//! Link frames on a noisy line: random chunking, garbage between frames, corrupted CRC, overlong noise.

use if_protocol::link::{self, Accumulator, Lamp, LinkError, LinkFrame, Message};
use proptest::prelude::*;

fn frames() -> Vec<LinkFrame> {
    vec![
        LinkFrame { seq: 1, ack: 0, msg: Message::SetLamp { lamp: 2, color: Lamp::Red } },
        LinkFrame { seq: 2, ack: 7, msg: Message::SetRelay { relay: 0, on: true } },
        LinkFrame { seq: 0, ack: 7, msg: Message::Heartbeat { uptime_ms: 123_456 } },
        LinkFrame { seq: 3, ack: 9, msg: Message::Gpi { input: 4, pressed: true } },
        LinkFrame { seq: 4, ack: 9, msg: Message::SafeState },
    ]
}

fn wire(frames: &[LinkFrame]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| {
            let mut out = [0u8; link::MAX_ENCODED_LEN];
            let n = link::encode(f, &mut out).expect("fits");
            out[..n].to_vec()
        })
        .collect()
}

fn collect(acc: &mut Accumulator, bytes: &[u8]) -> (Vec<LinkFrame>, Vec<LinkError>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    acc.feed(bytes, |r| match r {
        Ok(f) => ok.push(f),
        Err(e) => bad.push(e),
    });
    (ok, bad)
}

#[test]
fn corrupted_crc_is_reported_and_the_next_frame_still_arrives() {
    let w = wire(&frames());
    for i in 0..w[0].len() - 1 {
        let mut first = w[0].clone();
        first[i] ^= 0x10;
        if first[i] == 0 {
            continue; // a flip to the delimiter splits the frame instead; covered by the garbage test
        }
        let mut line = first;
        line.extend_from_slice(&w[1]);
        let (ok, bad) = collect(&mut Accumulator::new(), &line);
        assert_eq!(ok, vec![frames()[1].clone()], "flip at {i}");
        assert_eq!(bad.len(), 1, "flip at {i}: {bad:?}");
        assert!(matches!(bad[0], LinkError::Crc | LinkError::Cobs | LinkError::Decode), "{bad:?}");
    }
}

#[test]
fn noise_longer_than_any_frame_is_one_overflow() {
    let w = wire(&frames());
    let mut line = vec![0x55; 5 * link::MAX_ENCODED_LEN];
    line.push(0);
    line.extend_from_slice(&w[2]);
    let (ok, bad) = collect(&mut Accumulator::new(), &line);
    assert_eq!(bad, vec![LinkError::Overflow]);
    assert_eq!(ok, vec![frames()[2].clone()]);
}

#[test]
fn empty_stretches_are_ignored() {
    let w = wire(&frames());
    let mut line = vec![0, 0, 0];
    line.extend_from_slice(&w[0]);
    line.extend_from_slice(&[0, 0]);
    let (ok, bad) = collect(&mut Accumulator::new(), &line);
    assert_eq!((ok.len(), bad.len()), (1, 0));
}

#[test]
fn a_frame_too_large_to_encode_is_refused() {
    let big = LinkFrame {
        seq: 1,
        ack: 1,
        msg: Message::Status { lamps: (0..16).map(|_| Lamp::Amber).collect(), relays: u16::MAX, safe: true },
    };
    let mut out = [0u8; 8];
    assert_eq!(link::encode(&big, &mut out), Err(LinkError::TooLarge));
}

proptest! {
    #[test]
    fn any_chunking_with_garbage_between_frames(
        cuts in proptest::collection::vec(1usize..20, 1..40),
        garbage in proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..30), 5),
    ) {
        let w = wire(&frames());
        // garbage, then a delimiter to end it, then a frame; repeated.
        let mut line = Vec::new();
        for (g, f) in garbage.iter().zip(&w) {
            line.extend_from_slice(g);
            line.push(0);
            line.extend_from_slice(f);
        }
        let mut acc = Accumulator::new();
        let (mut ok, mut bad) = (Vec::new(), 0usize);
        let mut rest = line.as_slice();
        for cut in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
            let (o, b) = collect(&mut acc, chunk);
            ok.extend(o);
            bad += b.len();
            rest = tail;
        }
        prop_assert_eq!(ok, frames(), "every frame arrives, in order");
        // Garbage can only show up as errors, at most one per stretch.
        prop_assert!(bad <= garbage.iter().filter(|g| !g.is_empty()).count());
    }
}
