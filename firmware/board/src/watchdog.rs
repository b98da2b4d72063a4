//! The CMSDK APB watchdog: if the main loop stops feeding it, it interrupts after one period and resets
//! the board after the second.

use crate::mmio;

const BASE: usize = 0x4000_8000;
const LOAD: usize = BASE;
const CONTROL: usize = BASE + 0x008;
const INTCLR: usize = BASE + 0x00C;
const LOCK: usize = BASE + 0xC00;
const UNLOCK_KEY: u32 = 0x1ACC_E551;
const INTEN: u32 = 1 << 0;
const RESEN: u32 = 1 << 1;

/// The running watchdog.
pub struct Watchdog;

impl Watchdog {
    /// Starts it with `ticks` system-clock ticks per period.
    pub fn start(ticks: u32) -> Watchdog {
        mmio::write(LOCK, UNLOCK_KEY);
        mmio::write(LOAD, ticks);
        mmio::write(CONTROL, INTEN | RESEN);
        mmio::write(LOCK, 0);
        Watchdog
    }

    /// Restarts the period.
    pub fn feed(&self) {
        mmio::write(LOCK, UNLOCK_KEY);
        mmio::write(INTCLR, 1);
        mmio::write(LOCK, 0);
    }
}
