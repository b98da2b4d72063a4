//! The rack node on an Arm MPS2 board with the AN386 image (Cortex-M4), as QEMU's `mps2-an386` emulates
//! it: the thin layer between the node's logic (`if-firmware`) and the registers.
//!
//! - UART0 (0x40004000) is the link to the edge agent; UART1 (0x40005000) is the front panel (text lines,
//!   `if_firmware::panel`), standing in for the lamp, relay and button GPIO of a real rack node.
//! - SysTick gives the millisecond clock; the CMSDK watchdog (0x40008000) resets the board when the main
//!   loop stops feeding it; a counter kept in RAM that survives resets numbers the boots.
//!
//! This file and the modules beside it are the only code of the project that touches hardware, hence the
//! only code allowed `unsafe` (register access, each use commented). Built for the host, the binary only
//! says where it belongs, so that the workspace builds and lints everywhere.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod boots;
#[cfg(target_os = "none")]
mod clock;
#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod uart;
#[cfg(target_os = "none")]
mod watchdog;

#[cfg(target_os = "none")]
mod board {
    use cortex_m_rt::entry;
    use if_firmware::hal::{Clock, Inputs, Lamps, Link, Notice, Notices, Relays};
    use if_firmware::panel::{Panel, digits};
    use if_firmware::{Config, Node, run};
    use if_protocol::link::Lamp;

    use crate::uart::Uart;
    use crate::{boots, clock, watchdog};

    /// The system clock of the MPS2 FPGA images (also QEMU's), which the UARTs, SysTick and watchdog run on.
    const SYSCLK_HZ: u32 = 25_000_000;
    /// The link's speed, as the edge's endpoint says (`serial:///dev/ttyACM0?baud=115200`).
    const BAUD: u32 = 115_200;
    /// A main loop that stops for this long is reset by the watchdog (it fires twice: interrupt, then reset).
    const WATCHDOG_MS: u32 = 250;

    /// What this board has; relay 3 is wired to fail closed (say, a "studio in use" light kept on).
    fn config() -> Config {
        Config { board_id: 0x0386_0001, lamps: 8, relays: 4, inputs: 8, safe_relays: 0b1000, ..Config::default() }
    }

    struct Rack {
        link: Uart,
        panel: Panel<Uart>,
    }

    impl Lamps for Rack {
        fn set_lamp(&mut self, index: u8, color: Lamp) {
            self.panel.set_lamp(index, color);
        }
    }
    impl Relays for Rack {
        fn set_relay(&mut self, index: u8, closed: bool) {
            self.panel.set_relay(index, closed);
        }
    }
    impl Inputs for Rack {
        fn levels(&mut self) -> u16 {
            self.panel.levels()
        }
    }
    impl Clock for Rack {
        fn now_ms(&mut self) -> u32 {
            clock::now_ms()
        }
    }
    impl Link for Rack {
        fn read(&mut self, buf: &mut [u8]) -> usize {
            self.link.read(buf)
        }
        fn write(&mut self, bytes: &[u8]) {
            self.link.write(bytes);
        }
    }
    impl Notices for Rack {
        fn notice(&mut self, notice: Notice) {
            self.panel.notice(notice);
        }
    }

    #[entry]
    fn main() -> ! {
        let boots = boots::count();
        clock::start(SYSCLK_HZ);
        let mut rack = Rack { link: Uart::uart0(SYSCLK_HZ, BAUD), panel: Panel::new(Uart::uart1(SYSCLK_HZ, BAUD)) };
        rack.panel.say(&["boot", digits(boots).as_str()]);
        let dog = watchdog::Watchdog::start(SYSCLK_HZ / 1000 * WATCHDOG_MS);
        let mut node = Node::new(config(), boots, clock::now_ms());
        loop {
            run::step(&mut node, &mut rack);
            if rack.panel.hang_requested() {
                // The front panel's watchdog self-test: a main loop that has stopped.
                rack.panel.say(&["hang"]);
                loop {
                    cortex_m::asm::nop();
                }
            }
            dog.feed();
        }
    }

    /// A panic stops the loop; the watchdog then resets the board, which starts with every output safe.
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        loop {
            cortex_m::asm::nop();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("if-rack-node is firmware for the rack node: build it with --target thumbv7em-none-eabihf");
    std::process::exit(2);
}
