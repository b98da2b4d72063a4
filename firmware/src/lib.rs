//! The rack node's firmware logic: everything a node does, apart from touching hardware.
//!
//! A rack node drives tally lamps and relays and reads contact closures (GPI) for the edge agent, over
//! the serial link of [`if_protocol::link`]. All of its behaviour lives here as plain `no_std` code with
//! no I/O, so it is unit-tested on the host; the board crate (`firmware/board`) is a thin layer that
//! implements the traits of [`hal`] for one microcontroller and calls [`run::step`] in its main loop.
//!
//! Layers, each importing only those below it:
//! - [`config`]: what the node has and its timings (link timeout, heartbeat, debounce, safe relay levels).
//! - [`hal`]: the hardware traits (lamps, relays, inputs, clock, the link's byte stream), and [`gpio`]
//!   their implementations over `embedded-hal` pins for a real board.
//! - [`debounce`]: contact closures to press/release edges.
//! - [`outputs`]: the output model: lamp colours, latched and pulsed relays, the safe positions.
//! - [`state`]: the link session state machine (handshake, ARQ, heartbeats, safe state, commands).
//! - [`panel`]: the hardware traits as text lines on a serial port, for an emulated board.
//! - [`run`]: one pass of the main loop, wiring the state machine to the hardware traits.
#![no_std]

pub mod config;
pub mod debounce;
pub mod gpio;
pub mod hal;
pub mod outputs;
pub mod panel;
pub mod run;
pub mod state;

pub use config::Config;
pub use state::Node;

/// The firmware version sent in `Hello`: this crate's version.
pub const VERSION: [u8; 3] = [
    parse_u8(env!("CARGO_PKG_VERSION_MAJOR")),
    parse_u8(env!("CARGO_PKG_VERSION_MINOR")),
    parse_u8(env!("CARGO_PKG_VERSION_PATCH")),
];

const fn parse_u8(s: &str) -> u8 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v: u8 = 0;
    while i < b.len() {
        v = v.wrapping_mul(10).wrapping_add(b[i].wrapping_sub(b'0'));
        i += 1;
    }
    v
}
