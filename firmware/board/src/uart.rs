//! The CMSDK APB UART: a one-byte buffer each way, polled (the main loop never blocks for long).

use if_firmware::hal::Link;

use crate::mmio;

const DATA: usize = 0x000;
const STATE: usize = 0x004;
const CTRL: usize = 0x008;
const BAUDDIV: usize = 0x010;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const STATE_RX_OVERRUN: u32 = 1 << 3;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// One UART.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// UART0, the link to the edge.
    pub fn uart0(sysclk_hz: u32, baud: u32) -> Uart {
        Uart::enable(0x4000_4000, sysclk_hz, baud)
    }

    /// UART1, the front panel.
    pub fn uart1(sysclk_hz: u32, baud: u32) -> Uart {
        Uart::enable(0x4000_5000, sysclk_hz, baud)
    }

    fn enable(base: usize, sysclk_hz: u32, baud: u32) -> Uart {
        // The divider must be at least 16 for the UART to run.
        mmio::write(base + BAUDDIV, (sysclk_hz / baud.max(1)).max(16));
        mmio::write(base + CTRL, CTRL_TX_EN | CTRL_RX_EN);
        Uart { base }
    }
}

impl Link for Uart {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let state = mmio::read(self.base + STATE);
            if state & STATE_RX_OVERRUN != 0 {
                // A lost byte: the frame it was in fails its CRC; clear the flag and go on.
                mmio::write(self.base + STATE, STATE_RX_OVERRUN);
            }
            if state & STATE_RX_FULL == 0 {
                break;
            }
            buf[n] = (mmio::read(self.base + DATA) & 0xFF) as u8;
            n += 1;
        }
        n
    }

    /// Waits for room one byte at a time.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            while mmio::read(self.base + STATE) & STATE_TX_FULL != 0 {}
            mmio::write(self.base + DATA, u32::from(b));
        }
    }
}
