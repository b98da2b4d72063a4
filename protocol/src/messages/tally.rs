//! Tally feedback on `tally`: which sources a switcher has on program and on preview, and what the
//! switcher calls them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// One switcher's tally, as its driver last saw it (retained, so a panel that connects later knows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The capability that reported it.
    pub capability: String,
    /// One digit per input, from input 1: `0` off, `1` program, `2` preview (vMix's own form).
    pub tally: String,
    /// Inputs on program, from 1.
    pub program: Vec<u32>,
    /// Inputs on preview, from 1.
    pub preview: Vec<u32>,
    /// When the agent published it (signed with the rest: a replayed old tally shows its age).
    pub at_ms: u64,
    /// The switcher's titles of its inputs, by input number from 1, where it has them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<u32, String>,
    /// vMix's activators that are on: an overlay or another mix by name with its input
    /// (`Overlay1`: 3, `InputMix2`: 5), or a state with 1 (`Recording`, `Streaming`, `External`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub activators: BTreeMap<String, u32>,
}

impl Tally {
    /// The tally of `capability` from its digit string.
    pub fn from_digits(capability: &str, digits: &str, at_ms: u64) -> Self {
        let on = |d: char| (1u32..).zip(digits.chars()).filter(|(_, c)| *c == d).map(|(i, _)| i).collect();
        Tally {
            capability: capability.into(),
            tally: digits.into(),
            program: on('1'),
            preview: on('2'),
            at_ms,
            labels: BTreeMap::new(),
            activators: BTreeMap::new(),
        }
    }

    /// The same, with the switcher's input titles and the activators that are on.
    pub fn labelled(mut self, labels: BTreeMap<u32, String>, activators: BTreeMap<String, u32>) -> Self {
        self.labels = labels;
        self.activators = activators;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_become_program_and_preview_inputs_from_one() {
        let t = Tally::from_digits("if://capability/vmix", "0120010", 7);
        assert_eq!(t.program, [2, 6]);
        assert_eq!(t.preview, [3]);
        assert_eq!(Tally::from_digits("x", "", 0).program, Vec::<u32>::new());
    }
}
