//! Contact closures to clean press and release edges.
//!
//! A mechanical contact bounces for a few milliseconds when it closes or opens. An input's new level
//! counts only once it has held, unchanged, for the debounce time; a bounce that returns to the old level
//! within that time is no edge at all. Time is the node's wrapping millisecond clock.

use if_protocol::link::MAX_INPUTS;

/// One debounced change of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Input index.
    pub input: u8,
    /// Closed (pressed) when true.
    pub pressed: bool,
}

/// Debounces up to [`MAX_INPUTS`] inputs sampled together.
#[derive(Debug, Clone)]
pub struct Debouncer {
    count: u8,
    hold_ms: u32,
    /// The accepted level of every input.
    stable: u16,
    /// The level last sampled, and since when it has held.
    seen: u16,
    since: [u32; MAX_INPUTS],
}

impl Debouncer {
    /// `count` inputs, all open at start, each needing `hold_ms` of a steady level to change.
    pub fn new(count: u8, hold_ms: u32) -> Self {
        Debouncer { count: count.min(MAX_INPUTS as u8), hold_ms, stable: 0, seen: 0, since: [0; MAX_INPUTS] }
    }

    /// The accepted levels, bit `i` for input `i`.
    pub fn levels(&self) -> u16 {
        self.stable
    }

    /// Takes the raw `levels` sampled at `now_ms`; calls `edge` for each input whose new level has held.
    pub fn sample(&mut self, levels: u16, now_ms: u32, mut edge: impl FnMut(Edge)) {
        for i in 0..self.count {
            let bit = 1u16 << i;
            let level = levels & bit;
            if level != self.seen & bit {
                self.seen ^= bit;
                self.since[usize::from(i)] = now_ms;
            }
            let held = now_ms.wrapping_sub(self.since[usize::from(i)]) >= self.hold_ms;
            if held && level != self.stable & bit {
                self.stable ^= bit;
                edge(Edge { input: i, pressed: level != 0 });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::vec::Vec;

    fn run(d: &mut Debouncer, samples: &[(u32, u16)]) -> Vec<(u32, Edge)> {
        let mut out = Vec::new();
        for &(t, l) in samples {
            d.sample(l, t, |e| out.push((t, e)));
        }
        out
    }

    #[test]
    fn a_steady_press_is_one_edge_after_the_hold_time() {
        let mut d = Debouncer::new(4, 20);
        let got = run(&mut d, &[(0, 0), (5, 0b100), (10, 0b100), (24, 0b100), (25, 0b100), (40, 0b100)]);
        assert_eq!(got, [(25, Edge { input: 2, pressed: true })]);
        assert_eq!(d.levels(), 0b100);
        let got = run(&mut d, &[(50, 0), (69, 0), (70, 0)]);
        assert_eq!(got, [(70, Edge { input: 2, pressed: false })]);
    }

    #[test]
    fn bounces_shorter_than_the_hold_time_are_no_edge() {
        let mut d = Debouncer::new(1, 20);
        let bouncy: Vec<(u32, u16)> = (0..30).map(|t| (t, (t % 3 == 0) as u16)).collect();
        assert!(run(&mut d, &bouncy).is_empty(), "a contact that never holds for 20 ms never changes");
        let got = run(&mut d, &[(30, 1), (45, 1), (50, 1)]);
        assert_eq!(got, [(50, Edge { input: 0, pressed: true })], "held from 30 ms on: counts at 50 ms");
    }

    #[test]
    fn inputs_are_independent_and_beyond_the_count_ignored() {
        let mut d = Debouncer::new(2, 10);
        let got = run(&mut d, &[(0, 0b111), (10, 0b111)]);
        assert_eq!(got, [(10, Edge { input: 0, pressed: true }), (10, Edge { input: 1, pressed: true })]);
    }

    #[test]
    fn the_clock_may_wrap() {
        let mut d = Debouncer::new(1, 20);
        let got = run(&mut d, &[(u32::MAX - 5, 1), (u32::MAX, 1), (14, 1)]);
        assert_eq!(got, [(14, Edge { input: 0, pressed: true })]);
    }
}
