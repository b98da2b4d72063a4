//! The hardware a node's logic needs, as traits: the board crate implements them for one microcontroller
//! (GPIO pins on a real board, a text front panel under QEMU), and the tests implement them in memory.

use if_protocol::link::Lamp;

/// Tally lamps.
pub trait Lamps {
    /// Shows `color` on lamp `index` (always below the configured count).
    fn set_lamp(&mut self, index: u8, color: Lamp);
}

/// Relays.
pub trait Relays {
    /// Closes (`true`) or opens relay `index` (always below the configured count).
    fn set_relay(&mut self, index: u8, closed: bool);
}

/// Contact-closure inputs, read raw (debouncing is the logic's job).
pub trait Inputs {
    /// The level of every input now: bit `i` set when input `i` is closed.
    fn levels(&mut self) -> u16;
}

/// A millisecond clock.
pub trait Clock {
    /// Milliseconds since start, wrapping at `u32::MAX`.
    fn now_ms(&mut self) -> u32;
}

/// The serial link to the edge, without blocking.
pub trait Link {
    /// Copies the bytes received so far into `buf`; returns how many (0 when there are none).
    fn read(&mut self, buf: &mut [u8]) -> usize;
    /// Sends `bytes` (a whole frame).
    fn write(&mut self, bytes: &[u8]);
}

/// Something a node signals outside the link, for a person watching it (the QEMU front panel prints
/// it; a real board may light an LED or ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Outputs went to their safe positions.
    Safe(if_protocol::link::SafeReason),
    /// The edge sent `Resume`: output commands are taken again.
    Resumed,
    /// A new session with the edge began (the edge answered `Hello`).
    Session(u32),
}

/// Where [`Notice`]s go.
pub trait Notices {
    /// Reports one notice.
    fn notice(&mut self, notice: Notice);
}
