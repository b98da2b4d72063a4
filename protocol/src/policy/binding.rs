//! Bindings: rack-node inputs and lamps tied to the rest of the studio by signed policy.
//!
//! A binding arrives as a policy command (`binding.add`), signed by a policy key of the trust root and
//! witnessed as POLICY like a grant. A [`Rule::Press`] makes a button fire an action of a capability as a
//! named talent: each press is authorized against that talent's grants at the moment it happens, so a
//! revoked talent or a narrowed grant stops the button too. A [`Rule::Tally`] makes a lamp follow one
//! input of a switcher's tally (red on program, green on preview), and a [`Rule::Umd`] a tally display
//! (a UMD on a multiviewer) likewise, with its label; a [`Rule::Camera`] lights a camera's own tally
//! lamp while its input is on program.

use serde::{Deserialize, Serialize};

use crate::args::Args;
use crate::envelope::{ActionName, CapabilityId, Hazards, Name, Scope};

/// One binding, named so it can be listed and removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Its name (unique on the agent).
    pub name: Name,
    /// The rack node's capability.
    pub node: CapabilityId,
    /// What it does.
    pub rule: Rule,
}

/// What a binding does.
// An agent has a handful of bindings, read on a press: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    /// A press of `input` on the node runs `action` of `capability` with `args`, sent as `talent` in
    /// `scope` and accepting `hazards`.
    Press {
        /// The node's input, from 0.
        input: u8,
        /// The talent the command is attributed to (and authorized as).
        talent: Name,
        /// The capability to drive.
        capability: CapabilityId,
        /// Its action.
        action: ActionName,
        /// The action's arguments.
        args: Args,
        /// The scope the command is in.
        scope: Scope,
        /// The hazards it accepts.
        hazards: Hazards,
    },
    /// Lamp `lamp` on the node follows input `input` (from 1) of `source`'s tally: red on program, green on
    /// preview, off otherwise.
    Tally {
        /// The node's lamp, from 0.
        lamp: u8,
        /// The switcher whose tally it follows.
        source: CapabilityId,
        /// The switcher's input, from 1 as vMix numbers them.
        input: u32,
    },
    /// Display `display` of the tally display output `node` (a `tsl-umd` capability) follows input
    /// `input` of `source`'s tally: left-hand lamp red on program, right-hand green on preview, the text
    /// red or green with them; it reads `label`, or `Input N` when the label is empty.
    Umd {
        /// The display's index (TSL v5) or address (v3.1), from 0.
        display: u16,
        /// The switcher whose tally it follows.
        source: CapabilityId,
        /// The switcher's input, from 1.
        input: u32,
        /// What the display reads.
        label: heapless::String<32>,
    },
    /// The tally lamp of camera `node` (a VISCA camera) follows input `input` of `source`'s tally: on
    /// while the input is on program.
    Camera {
        /// The switcher whose tally it follows.
        source: CapabilityId,
        /// The switcher's input, from 1.
        input: u32,
    },
}
