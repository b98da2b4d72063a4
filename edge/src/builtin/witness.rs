//! `if://capability/edge.witness`: action `query` with argument `trace` (a UUID), every record of one
//! trace read from the running agent's log; action `verify`, the full check of the log beside the serving
//! agent ([`super::log_check`]), answered at once with the check's state. Each is a command like any
//! other, so asking is itself verified, admitted and witnessed; any active talent may ask, as for
//! `edge.ping`.

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};

use super::log_check::LogChecker;
use crate::capability::{Capability, OutcomeFuture};
use crate::witness::writer::Witness;

/// Most records one answer carries; the newest are kept.
pub const MAX_RECORDS: usize = 256;

/// The capability.
#[derive(Debug)]
pub struct WitnessQuery {
    witness: Witness,
    checker: LogChecker,
}

impl WitnessQuery {
    /// The capability id.
    pub const ID: &'static str = "if://capability/edge.witness";

    /// Queries over `witness`; full checks by `checker`.
    pub fn new(witness: Witness, checker: LogChecker) -> Self {
        WitnessQuery { witness, checker }
    }
}

fn trace(body: &EnvelopeBody) -> Result<uuid::Uuid, IfError> {
    match body.args.get("trace") {
        Some(ArgValue::Text(t)) => {
            t.as_str().parse().map_err(|_| IfError::with(ErrorCode::InvalidEnvelope, "query: trace must be a UUID"))
        }
        _ => Err(IfError::with(ErrorCode::InvalidEnvelope, "query: needs trace=UUID")),
    }
}

impl Capability for WitnessQuery {
    fn id(&self) -> &str {
        Self::ID
    }

    fn offers(&self, action: &str) -> bool {
        action == "query" || action == "verify"
    }

    fn execute<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            if body.action.as_str() == "verify" {
                let state = self.checker.start().await?;
                return serde_json::to_value(state)
                    .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("verify: {e}")));
            }
            let wanted = trace(body)?;
            let found = self.witness.read(move |log| log.trace(wanted, MAX_RECORDS)).await?;
            let pruned = (found.pruned_below > 0).then(|| pruned_json(found.pruned_below));
            let records: Vec<serde_json::Value> =
                pruned.into_iter().chain(found.records.iter().map(|(r, _)| r.to_json())).collect();
            let more = found.older;
            Ok(serde_json::json!({ "trace": wanted, "records": records, "older_not_shown": more }))
        })
    }
}

/// What a trace query says of the records pruned here: below which one, and the archive's entry bundles
/// that hold them (paths under the agent's `tlog/{site}/{agent}/`).
pub fn pruned_json(below: u64) -> serde_json::Value {
    use if_protocol::witness::tiles::{WIDTH, entries_path};
    let last = entries_path((below / WIDTH).saturating_sub(1), WIDTH);
    serde_json::json!({ "pruned_below": below, "archived": format!("{} to {last}", entries_path(0, WIDTH)) })
}
