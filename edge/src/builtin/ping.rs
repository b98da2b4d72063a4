//! `if://capability/edge.ping`, action `ping`: answers with the agent's health, so the whole path
//! (verify, admit, witness, execute, reply) can be tried with no hardware attached.

use std::sync::Arc;

use if_protocol::envelope::EnvelopeBody;

use crate::capability::{Capability, OutcomeFuture};
use crate::health::Health;

/// `if://capability/edge.ping`, action `ping`: answers with the agent's health.
#[derive(Debug)]
pub struct Ping {
    health: Arc<Health>,
}

impl Ping {
    /// The capability id.
    pub const ID: &'static str = "if://capability/edge.ping";

    /// A ping that reports `health`.
    pub fn new(health: Arc<Health>) -> Self {
        Ping { health }
    }
}

impl Capability for Ping {
    fn id(&self) -> &str {
        Ping::ID
    }

    fn offers(&self, action: &str) -> bool {
        action == "ping"
    }

    fn execute<'a>(&'a self, _body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move { Ok(serde_json::json!({ "pong": true, "health": self.health.snapshot() })) })
    }
}
