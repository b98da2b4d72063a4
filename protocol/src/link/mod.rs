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

/// Most tally lamps a node can have (and report in [`Message::Status`]).
pub const MAX_LAMPS: usize = 16;
/// Most relays a node can have (one bit each in [`Message::Status`]).
pub const MAX_RELAYS: usize = 16;
/// Most contact-closure inputs (GPI) a node can have.
pub const MAX_INPUTS: usize = 16;

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

/// The colour of one tally lamp (a red and a green element; amber is both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lamp {
    /// Dark.
    #[default]
    Off,
    /// Red: on program.
    Red,
    /// Green: on preview.
    Green,
    /// Amber: both elements lit.
    Amber,
}

impl Lamp {
    /// The name used in configuration, arguments and on the front panel.
    pub const fn name(self) -> &'static str {
        match self {
            Lamp::Off => "off",
            Lamp::Red => "red",
            Lamp::Green => "green",
            Lamp::Amber => "amber",
        }
    }

    /// Reads [`Lamp::name`] back.
    pub fn from_name(name: &str) -> Option<Lamp> {
        [Lamp::Off, Lamp::Red, Lamp::Green, Lamp::Amber].into_iter().find(|l| l.name() == name)
    }
}

/// Why a node refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NakReason {
    /// Lamp, relay or input index out of range.
    NoSuchOutput,
    /// The node is in its safe state and takes no output command until the edge sends `Resume`.
    InSafeState,
    /// The message is not one a node accepts.
    Unsupported,
}

/// Why a node put its outputs into their safe positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SafeReason {
    /// It has just started (power-up or reset): nothing is known about what the outputs should show.
    Boot,
    /// No valid frame came from the edge within the node's link timeout.
    LinkLost,
    /// The edge sent `SafeState`.
    Commanded,
}

impl SafeReason {
    /// The name used on the front panel, on MQTT and in the witness.
    pub const fn name(self) -> &'static str {
        match self {
            SafeReason::Boot => "boot",
            SafeReason::LinkLost => "link-lost",
            SafeReason::Commanded => "commanded",
        }
    }
}

/// The messages of the link protocol.
///
/// Reliable messages ([`Message::is_reliable`]) are numbered and completed by an [`Message::Ack`] or
/// [`Message::Nak`] frame whose `ack` names them; the `ack` field of any other frame is informational.
/// The session handshake: the node sends `Hello` at boot and every second until a `Welcome` echoes its
/// `boots`; the edge sends `Welcome` in answer to each `Hello`, and unasked (`boots: 0`) every second after
/// it opens the port until a `Hello` arrives. A `Welcome` with a session the node has not seen means the
/// edge restarted: the node forgets the edge's numbering and says `Hello` again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Completes the reliable message named by the frame's `ack`: received and carried out.
    Ack,
    /// Completes the reliable message named by the frame's `ack`: received and refused.
    Nak {
        /// Why.
        reason: NakReason,
    },
    /// Liveness, both directions; the node enters its safe state when the edge's frames stop.
    Heartbeat {
        /// Sender's uptime in milliseconds (wraps).
        uptime_ms: u32,
    },
    /// Node -> edge: what it is and what it has.
    Hello {
        /// Hardware id of the board.
        board_id: u32,
        /// Firmware version `[major, minor, patch]`.
        firmware: [u8; 3],
        /// Number of tally lamps.
        lamps: u8,
        /// Number of relays.
        relays: u8,
        /// Number of contact-closure inputs.
        inputs: u8,
        /// Starts since power-up, this one included.
        boots: u32,
    },
    /// Edge -> node: answers a `Hello`, or asks for one.
    Welcome {
        /// The edge's session number, fixed while one edge process holds the port.
        session: u32,
        /// The `boots` of the `Hello` this answers; 0 when it answers none (the edge has just opened the
        /// port and asks the node to say `Hello`).
        boots: u32,
    },
    /// Edge -> node: set a tally lamp.
    SetLamp {
        /// Lamp index.
        lamp: u8,
        /// New colour.
        color: Lamp,
    },
    /// Edge -> node: switch a relay and leave it there (latched).
    SetRelay {
        /// Relay index.
        relay: u8,
        /// Closed when true.
        on: bool,
    },
    /// Edge -> node: close a relay for `ms` milliseconds, then open it.
    PulseRelay {
        /// Relay index.
        relay: u8,
        /// How long it stays closed.
        ms: u16,
    },
    /// Edge -> node: put every output into its safe position now.
    SafeState,
    /// Edge -> node: leave the safe state; output commands are taken again.
    Resume,
    /// Node -> edge: a debounced contact closure changed.
    Gpi {
        /// Input index.
        input: u8,
        /// Closed (pressed) when true.
        pressed: bool,
    },
    /// Node -> edge: the node has put its outputs into their safe positions.
    SafeEntered {
        /// Why.
        reason: SafeReason,
    },
    /// Node -> edge: the whole output state.
    Status {
        /// Lamp colours.
        lamps: heapless::Vec<Lamp, MAX_LAMPS>,
        /// Relay states, bit `i` for relay `i`.
        relays: u16,
        /// Whether the node is in its safe state.
        safe: bool,
    },
}

impl Message {
    /// Whether the message must be numbered, answered and retransmitted until it is. Answers, heartbeats,
    /// the handshake and status reports are not: each is repeated or superseded by the next one.
    pub fn is_reliable(&self) -> bool {
        !matches!(
            self,
            Message::Ack
                | Message::Nak { .. }
                | Message::Heartbeat { .. }
                | Message::Hello { .. }
                | Message::Welcome { .. }
                | Message::Status { .. }
        )
    }

    /// Whether the message answers a reliable one (named by the frame's `ack`).
    pub fn is_answer(&self) -> bool {
        matches!(self, Message::Ack | Message::Nak { .. })
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
