//! Serial link between the edge agent and a rack node (tally lamps, relays, buttons).
//!
//! A UART loses bytes, flips bits and starts mid-frame, so every message is framed to survive that:
//! postcard encoding, a CRC-32C over it, COBS so that `0x00` never appears inside, and a `0x00` delimiter.
//! [`Accumulator`] turns any byte stream back into frames, resynchronising at the next delimiter after
//! garbage. [`arq`] adds sequence numbers, acknowledgements and retransmission on top.
//!
//! ```text
//! wire:   COBS( postcard(LinkFrame) || crc32c_le ) 0x00
//! ```

mod accumulator;
pub mod arq;
mod codec;

pub use accumulator::Accumulator;
pub use codec::{MAX_ENCODED_LEN, MAX_PAYLOAD_LEN, decode, encode};

use serde::{Deserialize, Serialize};

/// Number of tally lamps a node reports in a status message.
pub const MAX_LAMPS: usize = 16;

/// What went wrong with a frame read from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// More bytes than any frame can have before a delimiter; skipped up to the next delimiter.
    Overflow,
    /// The bytes between delimiters are not valid COBS.
    Cobs,
    /// Too short to hold a CRC, or the CRC does not match.
    Crc,
    /// The CRC matched but the payload does not decode to a frame.
    Decode,
    /// The frame does not fit the output buffer (encoding side).
    TooLarge,
}

impl From<LinkError> for crate::IfError {
    fn from(e: LinkError) -> Self {
        let detail = match e {
            LinkError::Overflow => "link frame longer than the maximum",
            LinkError::Cobs => "link frame is not valid COBS",
            LinkError::Crc => "link frame CRC mismatch",
            LinkError::Decode => "link frame payload does not decode",
            LinkError::TooLarge => "link frame too large to encode",
        };
        crate::IfError::with(crate::ErrorCode::InvalidEnvelope, detail)
    }
}

/// State of one tally lamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TallyState {
    /// Dark.
    #[default]
    Off,
    /// Red: on program.
    Program,
    /// Green: on preview.
    Preview,
    /// On program and preview.
    Both,
}

/// Why a node refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NakReason {
    /// Lamp, relay or button index out of range.
    NoSuchOutput,
    /// The node is in its safe state and takes only `SafeState`, `Resume` and heartbeats.
    InSafeState,
    /// The message is not one a node accepts.
    Unsupported,
}

/// The messages of the link protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Carries only an acknowledgement.
    Ack,
    /// Liveness, both directions; the node enters its safe state when the edge's heartbeats stop.
    Heartbeat {
        /// Sender's uptime in milliseconds (wraps).
        uptime_ms: u32,
    },
    /// Node -> edge at start: what it is and what it has.
    Hello {
        /// Hardware id of the node.
        node_id: u32,
        /// Firmware version `[major, minor, patch]`.
        firmware: [u8; 3],
        /// Number of tally lamps.
        lamps: u8,
        /// Number of relays.
        relays: u8,
        /// Number of buttons (GPI).
        buttons: u8,
    },
    /// Edge -> node: set a tally lamp.
    SetTally {
        /// Lamp index.
        lamp: u8,
        /// New state.
        state: TallyState,
    },
    /// Edge -> node: switch a relay.
    SetRelay {
        /// Relay index.
        relay: u8,
        /// Closed when true.
        on: bool,
    },
    /// Edge -> node: enter the configured safe state now.
    SafeState,
    /// Edge -> node: leave the safe state.
    Resume,
    /// Node -> edge: a button changed.
    Button {
        /// Button index.
        button: u8,
        /// Pressed when true.
        pressed: bool,
    },
    /// Node -> edge: the whole output state.
    Status {
        /// Lamp states.
        lamps: heapless::Vec<TallyState, MAX_LAMPS>,
        /// Relay states, bit `i` for relay `i`.
        relays: u16,
        /// Whether the node is in its safe state.
        safe: bool,
    },
    /// Node -> edge: the command in the acknowledged frame was refused.
    Nak {
        /// Why.
        reason: NakReason,
    },
}

impl Message {
    /// Whether the message must be acknowledged and retransmitted until it is. Acks and heartbeats are
    /// not: a lost heartbeat is followed by the next one.
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Message::Ack | Message::Heartbeat { .. })
    }
}

/// One frame on the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkFrame {
    /// Sequence number of this frame (meaningful for reliable messages).
    pub seq: u8,
    /// Sequence number of the last reliable frame received from the peer.
    pub ack: u8,
    /// The message.
    pub msg: Message,
}
