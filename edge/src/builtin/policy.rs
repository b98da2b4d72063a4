//! `if://capability/edge.policy`: runs a policy command that passed the whole pipeline.
//!
//! The command reached here like any other: verified, admitted (so a replayed policy command is refused
//! like any replayed envelope), authorized (its signer is a policy key of the trust root) and witnessed
//! RECEIVED. Running it decides the talent or grant it sets, commits that document with its POLICY record
//! in one transaction, and only then lets it take effect. Policy commands run one at a time, so each is
//! decided against the state the previous one left.
//!
//! A change that starts a sender's sequence numbers over (`talent.reset`, or a talent added again with a
//! new key) removes that sender's replay window. Windows are written by the ingress loop alone, with every
//! RECEIVED record, so such a change is handed to the ingress loop ([`Forget`]) to commit between two
//! bursts: no RECEIVED written after it can carry the window it removed.

use std::sync::{Arc, Mutex, PoisonError};

use if_protocol::envelope::EnvelopeBody;

use if_protocol::{ErrorCode, IfError};
use tokio::sync::{mpsc, oneshot};

use crate::capability::{Capability, OutcomeFuture};
use crate::clock::Clock;
use crate::policy::commands::{ACTIONS, POLICY_CAPABILITY};
use crate::policy::{Change, Policy, record};
use crate::witness::store::Append;
use crate::witness::writer::Witness;

/// A change that forgets a sender's replay window, for the ingress loop to commit and apply.
#[derive(Debug)]
pub struct Forget {
    /// The change, to apply once its record is durable.
    pub change: Change,
    /// The policy command it came from.
    pub body: Box<EnvelopeBody>,
    /// When it was decided.
    pub now_ms: u64,
    /// Whether it was committed, with the change's final summary.
    pub done: oneshot::Sender<Result<String, IfError>>,
}

/// The POLICY record of `change`, decided from policy command `body` at `now_ms`, with its state writes.
pub fn command_record(change: &Change, body: &EnvelopeBody, now_ms: u64) -> Append {
    let mut item = record(Ok(change), &format!("envelope {}", body.id), now_ms);
    item.entry.sender = body.sender.to_string();
    item.entry.envelope = Some(body.id);
    item.entry.trace = Some(body.trace);
    item.entry.why = body.why.to_string();
    item.entry.action = body.action.to_string();
    item
}

/// The policy capability.
#[derive(Debug)]
pub struct PolicyCommands {
    policy: Arc<Mutex<Policy>>,
    witness: Witness,
    clock: Arc<Mutex<Clock>>,
    forgets: mpsc::UnboundedSender<Forget>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl PolicyCommands {
    /// Commands that change `policy`, witnessed in `witness`; changes that forget a sender's window go
    /// to `forgets` (the ingress loop).
    pub fn new(
        policy: Arc<Mutex<Policy>>,
        witness: Witness,
        clock: Arc<Mutex<Clock>>,
        forgets: mpsc::UnboundedSender<Forget>,
    ) -> Self {
        PolicyCommands { policy, witness, clock, forgets, one_at_a_time: tokio::sync::Mutex::new(()) }
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
            if crate::policy::commands::READ_ONLY.contains(&body.action.as_str()) {
                let policy = self.policy.lock().unwrap_or_else(PoisonError::into_inner);
                let list: Vec<String> = policy.bindings().map(crate::policy::bindings::describe).collect();
                return Ok(serde_json::json!({ "bindings": list }));
            }
            let _turn = self.one_at_a_time.lock().await;
            let now_ms = self.clock.lock().unwrap_or_else(PoisonError::into_inner).now_ms();
            let change =
                self.policy.lock().unwrap_or_else(PoisonError::into_inner).offer_command(body, &body.sender, now_ms)?;
            let mut summary = change.summary.clone();
            if change.forget.is_some() {
                let (done, committed) = oneshot::channel();
                let stopping = || IfError::with(ErrorCode::SystemError, "the agent is stopping; nothing changed");
                let forget = Forget { change, body: Box::new(body.clone()), now_ms, done };
                self.forgets.send(forget).map_err(|_| stopping())?;
                summary = committed.await.map_err(|_| stopping())??;
            } else {
                self.witness.append(vec![command_record(&change, body, now_ms)]).await?;
                self.policy.lock().unwrap_or_else(PoisonError::into_inner).apply(change);
            }
            tracing::info!("{summary}");
            Ok(serde_json::json!({ "policy": summary }))
        })
    }
}
