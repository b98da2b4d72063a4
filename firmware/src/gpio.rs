//! The hardware traits over `embedded-hal` pins, for a real board: each lamp is a red and a green pin
//! (amber lights both), each relay one pin, each input one pin (optionally active low, as a contact to
//! ground with a pull-up is). A pin that reports an error is left as it is: on a microcontroller the
//! GPIO error type is `Infallible`.

use embedded_hal::digital::{InputPin, OutputPin};
use if_protocol::link::Lamp;

use crate::hal::{Inputs, Lamps, Relays};

/// Tally lamps on pairs of output pins.
#[derive(Debug)]
pub struct GpioLamps<P, const N: usize> {
    /// Red element of each lamp.
    pub red: [P; N],
    /// Green element of each lamp.
    pub green: [P; N],
}

impl<P: OutputPin, const N: usize> Lamps for GpioLamps<P, N> {
    fn set_lamp(&mut self, index: u8, color: Lamp) {
        let i = usize::from(index);
        let (r, g) = match color {
            Lamp::Off => (false, false),
            Lamp::Red => (true, false),
            Lamp::Green => (false, true),
            Lamp::Amber => (true, true),
        };
        if let (Some(red), Some(green)) = (self.red.get_mut(i), self.green.get_mut(i)) {
            let _ = red.set_state(r.into());
            let _ = green.set_state(g.into());
        }
    }
}

/// Relays on output pins (high closes).
#[derive(Debug)]
pub struct GpioRelays<P, const N: usize>(pub [P; N]);

impl<P: OutputPin, const N: usize> Relays for GpioRelays<P, N> {
    fn set_relay(&mut self, index: u8, closed: bool) {
        if let Some(pin) = self.0.get_mut(usize::from(index)) {
            let _ = pin.set_state(closed.into());
        }
    }
}

/// Contact-closure inputs on input pins.
#[derive(Debug)]
pub struct GpioInputs<P, const N: usize> {
    /// One pin per input.
    pub pins: [P; N],
    /// A closed contact reads low (a contact to ground with a pull-up).
    pub active_low: bool,
}

impl<P: InputPin, const N: usize> Inputs for GpioInputs<P, N> {
    fn levels(&mut self) -> u16 {
        let mut levels = 0u16;
        for (i, pin) in self.pins.iter_mut().enumerate().take(16) {
            if pin.is_high().is_ok_and(|high| high != self.active_low) {
                levels |= 1 << i;
            }
        }
        levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::convert::Infallible;
    use embedded_hal::digital::ErrorType;

    #[derive(Debug, Default, Clone, Copy, PartialEq)]
    struct Pin(bool);
    impl ErrorType for Pin {
        type Error = Infallible;
    }
    impl OutputPin for Pin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0 = false;
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0 = true;
            Ok(())
        }
    }
    impl InputPin for Pin {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(self.0)
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(!self.0)
        }
    }

    #[test]
    fn amber_lights_both_elements_and_off_neither() {
        let mut l = GpioLamps { red: [Pin(false); 2], green: [Pin(false); 2] };
        l.set_lamp(1, Lamp::Amber);
        assert_eq!((l.red[1], l.green[1]), (Pin(true), Pin(true)));
        l.set_lamp(1, Lamp::Green);
        assert_eq!((l.red[1], l.green[1]), (Pin(false), Pin(true)));
        l.set_lamp(1, Lamp::Off);
        assert_eq!((l.red[1], l.green[1]), (Pin(false), Pin(false)));
        l.set_lamp(7, Lamp::Red);
        assert_eq!(l.red, [Pin(false); 2], "an index beyond the pins touches nothing");
    }

    #[test]
    fn relays_and_active_low_inputs() {
        let mut r = GpioRelays([Pin(false); 3]);
        r.set_relay(2, true);
        assert_eq!(r.0, [Pin(false), Pin(false), Pin(true)]);
        let mut i = GpioInputs { pins: [Pin(true), Pin(false), Pin(true)], active_low: true };
        assert_eq!(i.levels(), 0b010, "the low pin is the closed contact");
    }
}
