//! Button events on `gpi`: a contact closure on a rack node changed (QoS 1, not retained: an event, not a
//! state).

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// One debounced press or release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpi {
    /// The rack node's capability.
    pub capability: String,
    /// The input, from 0 as the node numbers them.
    pub input: u8,
    /// Closed (pressed) when true.
    pub pressed: bool,
    /// The witness record of the event, when it was written.
    pub record: Option<u64>,
    /// When the agent received it (unix ms).
    pub at_ms: u64,
}
