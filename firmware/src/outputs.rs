//! The node's output model: what every lamp and relay should show, pulses and their end, and the safe
//! positions. Changes are written to the hardware by [`Outputs::flush`], only where something changed, so
//! the model is the one truth and the hardware follows it.

use if_protocol::link::{Lamp, MAX_LAMPS, MAX_RELAYS};

use crate::config::Config;
use crate::hal::{Lamps, Relays};

/// An index beyond what the node has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSuchOutput;

/// Desired and last written output state.
#[derive(Debug, Clone)]
pub struct Outputs {
    lamps: u8,
    relays: u8,
    safe_relays: u16,
    want_lamps: [Lamp; MAX_LAMPS],
    want_relays: u16,
    /// When each pulsing relay opens again.
    pulse_end: [Option<u32>; MAX_RELAYS],
    /// What the hardware shows; `None` until first written (so the first flush writes everything).
    shown: Option<([Lamp; MAX_LAMPS], u16)>,
}

impl Outputs {
    /// Every output in its safe position, nothing written yet.
    pub fn new(cfg: &Config) -> Self {
        Outputs {
            lamps: cfg.lamps,
            relays: cfg.relays,
            safe_relays: cfg.safe_relays,
            want_lamps: [Lamp::Off; MAX_LAMPS],
            want_relays: cfg.safe_relays,
            pulse_end: [None; MAX_RELAYS],
            shown: None,
        }
    }

    /// The lamp colours, one per lamp the node has.
    pub fn lamps(&self) -> &[Lamp] {
        &self.want_lamps[..usize::from(self.lamps)]
    }

    /// The relay states, bit `i` for relay `i`.
    pub fn relays(&self) -> u16 {
        self.want_relays
    }

    /// Sets lamp `i`.
    pub fn set_lamp(&mut self, i: u8, color: Lamp) -> Result<(), NoSuchOutput> {
        *self.want_lamps[..usize::from(self.lamps)].get_mut(usize::from(i)).ok_or(NoSuchOutput)? = color;
        Ok(())
    }

    /// Latches relay `i` (ending any pulse on it).
    pub fn set_relay(&mut self, i: u8, closed: bool) -> Result<(), NoSuchOutput> {
        let bit = self.bit(i)?;
        self.pulse_end[usize::from(i)] = None;
        self.want_relays = if closed { self.want_relays | bit } else { self.want_relays & !bit };
        Ok(())
    }

    /// Closes relay `i` now and opens it `ms` milliseconds after `now_ms`.
    pub fn pulse_relay(&mut self, i: u8, ms: u16, now_ms: u32) -> Result<(), NoSuchOutput> {
        let bit = self.bit(i)?;
        self.want_relays |= bit;
        self.pulse_end[usize::from(i)] = Some(now_ms.wrapping_add(u32::from(ms)));
        Ok(())
    }

    /// Ends the pulses that are due; true when one ended.
    pub fn tick(&mut self, now_ms: u32) -> bool {
        let mut ended = false;
        for i in 0..self.relays {
            let slot = &mut self.pulse_end[usize::from(i)];
            // A pulse is due once its end is not in the future (the clock wraps: compare by difference).
            if let Some(end) = *slot
                && now_ms.wrapping_sub(end) < u32::MAX / 2
            {
                *slot = None;
                self.want_relays &= !(1 << i);
                ended = true;
            }
        }
        ended
    }

    /// Every lamp off, every relay to its safe position, every pulse cancelled.
    pub fn to_safe(&mut self) {
        self.want_lamps = [Lamp::Off; MAX_LAMPS];
        self.want_relays = self.safe_relays;
        self.pulse_end = [None; MAX_RELAYS];
    }

    /// Writes what changed since the last flush to the hardware.
    pub fn flush(&mut self, hw: &mut (impl Lamps + Relays)) {
        let (lamps, relays) = self.shown.unwrap_or(([Lamp::Off; MAX_LAMPS], !self.want_relays));
        let first = self.shown.is_none();
        for i in 0..self.lamps {
            let (want, was) = (self.want_lamps[usize::from(i)], lamps[usize::from(i)]);
            if first || want != was {
                hw.set_lamp(i, want);
            }
        }
        for i in 0..self.relays {
            let bit = 1 << i;
            if first || (self.want_relays ^ relays) & bit != 0 {
                hw.set_relay(i, self.want_relays & bit != 0);
            }
        }
        self.shown = Some((self.want_lamps, self.want_relays));
    }

    fn bit(&self, i: u8) -> Result<u16, NoSuchOutput> {
        if i < self.relays { Ok(1 << i) } else { Err(NoSuchOutput) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::vec::Vec;

    #[derive(Default)]
    struct Seen(Vec<(char, u8, u8)>);
    impl Lamps for Seen {
        fn set_lamp(&mut self, i: u8, c: Lamp) {
            self.0.push(('l', i, c as u8));
        }
    }
    impl Relays for Seen {
        fn set_relay(&mut self, i: u8, on: bool) {
            self.0.push(('r', i, on as u8));
        }
    }

    fn cfg() -> Config {
        Config { lamps: 2, relays: 2, safe_relays: 0b10, ..Config::default() }
    }

    #[test]
    fn the_first_flush_writes_everything_then_only_changes() {
        let mut o = Outputs::new(&cfg());
        let mut hw = Seen::default();
        o.flush(&mut hw);
        assert_eq!(hw.0, [('l', 0, 0), ('l', 1, 0), ('r', 0, 0), ('r', 1, 1)], "safe positions at start");
        hw.0.clear();
        o.set_lamp(1, Lamp::Red).expect("lamp 1");
        o.flush(&mut hw);
        o.flush(&mut hw);
        assert_eq!(hw.0, [('l', 1, Lamp::Red as u8)]);
        assert_eq!(o.set_lamp(2, Lamp::Red), Err(NoSuchOutput));
        assert_eq!(o.set_relay(2, true), Err(NoSuchOutput));
    }

    #[test]
    fn a_pulse_ends_after_its_time_even_across_the_clock_wrap() {
        let mut o = Outputs::new(&cfg());
        o.pulse_relay(0, 100, u32::MAX - 10).expect("relay 0");
        assert_eq!(o.relays() & 1, 1);
        assert!(!o.tick(u32::MAX));
        assert!(!o.tick(88));
        assert!(o.tick(89));
        assert_eq!(o.relays() & 1, 0);
    }

    #[test]
    fn latching_a_pulsing_relay_ends_the_pulse() {
        let mut o = Outputs::new(&cfg());
        o.pulse_relay(0, 100, 0).expect("relay 0");
        o.set_relay(0, true).expect("relay 0");
        assert!(!o.tick(500));
        assert_eq!(o.relays() & 1, 1, "stays latched");
    }

    #[test]
    fn safe_state_turns_lamps_off_and_relays_to_their_safe_level() {
        let mut o = Outputs::new(&cfg());
        o.set_lamp(0, Lamp::Green).expect("lamp");
        o.set_relay(0, true).expect("relay");
        o.set_relay(1, false).expect("relay");
        o.pulse_relay(0, 10, 0).expect("relay");
        o.to_safe();
        assert_eq!(o.lamps(), [Lamp::Off, Lamp::Off]);
        assert_eq!(o.relays(), 0b10);
        assert!(!o.tick(100), "the pulse was cancelled");
    }
}
