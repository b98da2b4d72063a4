//! What a node has and how it keeps time: fixed per board at build time.

use if_protocol::link::{MAX_INPUTS, MAX_LAMPS, MAX_RELAYS};

/// A node's outputs, inputs and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Hardware id sent in `Hello`.
    pub board_id: u32,
    /// Number of tally lamps (at most [`MAX_LAMPS`]).
    pub lamps: u8,
    /// Number of relays (at most [`MAX_RELAYS`]).
    pub relays: u8,
    /// Number of contact-closure inputs (at most [`MAX_INPUTS`]).
    pub inputs: u8,
    /// Each relay's safe position, bit `i` for relay `i` (closed when set).
    pub safe_relays: u16,
    /// With no valid frame from the edge for this long, the outputs go to their safe positions.
    pub link_timeout_ms: u32,
    /// How often the node says it is alive.
    pub heartbeat_ms: u32,
    /// How often `Hello` is repeated until the edge answers it.
    pub hello_ms: u32,
    /// How often the node reports its whole output state.
    pub status_ms: u32,
    /// How long a contact must hold a new level before it counts.
    pub debounce_ms: u32,
    /// How long the node waits for an answer before sending a reliable message again.
    pub retransmit_ms: u32,
    /// Sends of one reliable message in all before it is dropped.
    pub max_tries: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            board_id: 1,
            lamps: 8,
            relays: 4,
            inputs: 8,
            safe_relays: 0,
            link_timeout_ms: 1500,
            heartbeat_ms: 250,
            hello_ms: 1000,
            status_ms: 2000,
            debounce_ms: 20,
            retransmit_ms: 100,
            max_tries: 5,
        }
    }
}

impl Config {
    /// The configuration with every count clamped to what the link can carry.
    pub fn clamped(mut self) -> Config {
        self.lamps = self.lamps.min(MAX_LAMPS as u8);
        self.relays = self.relays.min(MAX_RELAYS as u8);
        self.inputs = self.inputs.min(MAX_INPUTS as u8);
        self
    }

    /// Whether relay `i`'s safe position is closed.
    pub fn safe_relay(&self, i: u8) -> bool {
        i < 16 && self.safe_relays & (1 << i) != 0
    }
}
