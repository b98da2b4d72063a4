//! A video router's routing on `routing/{name}` (QoS 1, retained, signed like tally; one topic per
//! router): which input each output shows, with the router's labels, as the router's status says,
//! including changes other clients made.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// One output's route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The output, from 0 as the router numbers them.
    pub output: u32,
    /// The input it shows, from 0.
    pub input: u32,
    /// The output's label on the router.
    pub output_label: String,
    /// The input's label on the router.
    pub input_label: String,
}

/// The whole routing of one router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// The router's capability.
    pub capability: String,
    /// Every output, in order.
    pub routes: Vec<Route>,
    /// When the agent published it (signed with the rest).
    pub at_ms: u64,
}
