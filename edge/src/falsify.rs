//! Falsify mode: a signed envelope whose arguments carry `_mode = "falsify"` asks "would this work
//! now?" instead of doing it. It goes through the same verification, admission and witness as any
//! command (it takes its sequence number and is answered again byte for byte if redelivered), and is
//! recorded as FALSIFY. Authorization, the budget (nothing is charged), the device's breaker and queue and
//! the driver's own `plan` are all asked, and every problem is reported, not only the first. No device
//! is touched. The argument is signed like every other, so it cannot be stripped on the way to turn a dry
//! run into a real one.

use if_protocol::envelope::{ArgValue, Args, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};

use crate::capability::Plan;
use crate::capability::{Capability, OutcomeFuture};

/// The reserved argument.
pub const MODE_ARG: &str = "_mode";

/// Whether `body` asks for a dry run; an unknown mode is refused.
pub fn requested(body: &EnvelopeBody) -> Result<bool, IfError> {
    match body.args.get(MODE_ARG) {
        None => Ok(false),
        Some(ArgValue::Text(t)) if t.as_str() == "falsify" => Ok(true),
        Some(other) => Err(IfError::format(
            ErrorCode::InvalidEnvelope,
            format_args!("{MODE_ARG} must be \"falsify\" or absent, not {other:?}"),
        )),
    }
}

/// The body as the driver would see it: without the mode argument.
pub fn stripped(body: &EnvelopeBody) -> EnvelopeBody {
    let mut b = body.clone();
    let mut args = Args::new();
    for a in body.args.iter().filter(|a| a.key.as_str() != MODE_ARG) {
        let _ = args.insert(a.key.as_str(), a.value.clone());
    }
    b.args = args;
    b
}

/// The dry run's verdict, answered as the command's result.
#[derive(Debug)]
pub struct DryRun {
    capability: String,
    sends: Vec<String>,
    problems: Vec<IfError>,
}

impl DryRun {
    /// A verdict for `capability` from the checks that failed and the capability's plan.
    pub fn new(capability: &str, mut problems: Vec<IfError>, plan: Plan) -> Self {
        problems.extend(plan.problems);
        DryRun { capability: capability.to_string(), sends: plan.sends, problems }
    }
}

impl Capability for DryRun {
    fn id(&self) -> &str {
        &self.capability
    }

    fn offers(&self, _action: &str) -> bool {
        true
    }

    fn execute<'a>(&'a self, _body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            let problems: Vec<serde_json::Value> = self
                .problems
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "code": format!("IF_ERR_{:03}", e.code().number()),
                        "name": e.code().name(),
                        "message": e.detail(),
                    })
                })
                .collect();
            Ok(serde_json::json!({
                "falsify": true,
                "would_run": problems.is_empty(),
                "sends": self.sends,
                "problems": problems,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorize::tests::body;

    #[test]
    fn the_mode_is_read_and_stripped_and_an_unknown_one_refused() {
        let mut b = body("if://capability/x", "cut");
        assert!(!requested(&b).expect("no mode"));
        b.args.insert(MODE_ARG, ArgValue::Text("falsify".try_into().expect("short"))).expect("arg");
        b.args.insert("Input", ArgValue::Int(3)).expect("arg");
        assert!(requested(&b).expect("falsify"));
        let s = stripped(&b);
        assert!(s.args.get(MODE_ARG).is_none() && s.args.get("Input").is_some());
        let mut bad = body("if://capability/x", "cut");
        bad.args.insert(MODE_ARG, ArgValue::Text("pretend".try_into().expect("short"))).expect("arg");
        assert_eq!(requested(&bad).map_err(|e| e.code()), Err(ErrorCode::InvalidEnvelope));
    }
}
