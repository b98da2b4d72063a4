//! `if://capability/edge.witness`, action `query` with argument `trace` (a UUID): every record of one
//! trace, read from the running agent's log. It is a command like any other, so asking is itself
//! verified, admitted and witnessed; any active talent may ask, as for `edge.ping`.

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};

use super::record::Record;
use super::writer::Witness;
use crate::capability::{Capability, OutcomeFuture};

/// Most records one answer carries; the newest are kept.
pub const MAX_RECORDS: usize = 256;

/// The capability.
#[derive(Debug)]
pub struct WitnessQuery {
    witness: Witness,
}

impl WitnessQuery {
    /// The capability id.
    pub const ID: &'static str = "if://capability/edge.witness";

    /// Queries over `witness`.
    pub fn new(witness: Witness) -> Self {
        WitnessQuery { witness }
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
        action == "query"
    }

    fn execute<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            let wanted = trace(body)?;
            let (records, more) = self
                .witness
                .with_store(move |store| {
                    let mut found = std::collections::VecDeque::new();
                    let mut more = 0usize;
                    store.for_each_leaf(0, |_, leaf| {
                        let r = Record::from_leaf(leaf)?;
                        if r.entry.trace == Some(wanted) {
                            if found.len() == MAX_RECORDS {
                                found.pop_front();
                                more += 1;
                            }
                            found.push_back(r.to_json());
                        }
                        Ok(())
                    })?;
                    Ok((Vec::from(found), more))
                })
                .await?;
            Ok(serde_json::json!({ "trace": wanted, "records": records, "older_not_shown": more }))
        })
    }
}
