//! `if://capability/edge.policy`: runs a policy command that passed the whole pipeline.
//!
//! The command reached here like any other: verified, admitted (so a replayed policy command is refused
//! like any replayed envelope), authorized (its signer is a policy key of the trust root) and witnessed
//! RECEIVED. Running it decides the talent or grant it sets, commits that document with its POLICY record
//! in one transaction, and only then lets it take effect. Policy commands run one at a time, so each is
//! decided against the state the previous one left.

use std::sync::{Arc, Mutex, PoisonError};

use if_protocol::envelope::EnvelopeBody;

use super::commands::{ACTIONS, POLICY_CAPABILITY};
use super::{Policy, record};
use crate::capability::{Capability, OutcomeFuture};
use crate::clock::Clock;
use crate::witness::writer::Witness;

/// The policy capability.
#[derive(Debug)]
pub struct PolicyCommands {
    policy: Arc<Mutex<Policy>>,
    witness: Witness,
    clock: Arc<Mutex<Clock>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl PolicyCommands {
    /// Commands that change `policy`, witnessed in `witness`.
    pub fn new(policy: Arc<Mutex<Policy>>, witness: Witness, clock: Arc<Mutex<Clock>>) -> Self {
        PolicyCommands { policy, witness, clock, one_at_a_time: tokio::sync::Mutex::new(()) }
    }
}

impl Capability for PolicyCommands {
    fn id(&self) -> &str {
        POLICY_CAPABILITY
    }

    fn offers(&self, action: &str) -> bool {
        ACTIONS.contains(&action)
    }

    fn execute<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            let _turn = self.one_at_a_time.lock().await;
            let now_ms = self.clock.lock().unwrap_or_else(PoisonError::into_inner).now_ms();
            let change = self.policy.lock().unwrap_or_else(PoisonError::into_inner).offer_command(
                body,
                &body.sender,
                now_ms / 1000,
            )?;
            let mut item = record(Ok(&change), &format!("envelope {}", body.id), now_ms);
            item.entry.sender = body.sender.to_string();
            item.entry.envelope = Some(body.id);
            item.entry.trace = Some(body.trace);
            item.entry.why = body.why.to_string();
            item.entry.action = body.action.to_string();
            self.witness.append(vec![item]).await?;
            let summary = change.summary.clone();
            tracing::info!("{summary}");
            self.policy.lock().unwrap_or_else(PoisonError::into_inner).apply(change);
            Ok(serde_json::json!({ "policy": summary }))
        })
    }
}
