//! The millisecond clock: SysTick interrupts once a millisecond and counts.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick on the processor clock, one interrupt per millisecond.
pub fn start(sysclk_hz: u32) {
    // SAFETY: SysTick is configured once, here, before the main loop; nothing else owns it.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(sysclk_hz / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since start (wrapping).
pub fn now_ms() -> u32 {
    MILLIS.load(Ordering::Relaxed)
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}
