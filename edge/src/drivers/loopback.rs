//! The `loopback` driver: answers every action with what it was asked and touches no hardware.
//!
//! It lets a site try its policy (manifests, grants, hazards, budgets) and its lanes (rate limits, the
//! breaker) end to end before a device is wired, and it is what the policy tests drive. Two arguments
//! make it behave like a device would: `vault=NAME` shows that it holds secret NAME (its length, never its
//! value), and `fail=unreachable|timeout|rejected` answers with that device error.

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};

use super::{Driver, HealthFuture};
use crate::capability::OutcomeFuture;
use crate::capability::Plan;
use crate::vault::DriverSecrets;

/// The name manifests use.
pub const DRIVER: &str = "loopback";

/// The driver.
#[derive(Debug)]
pub struct Loopback {
    secrets: DriverSecrets,
}

impl Loopback {
    /// A loopback holding `secrets`.
    pub fn new(secrets: DriverSecrets) -> Self {
        Loopback { secrets }
    }

    fn answer(&self, body: &EnvelopeBody) -> Result<serde_json::Value, IfError> {
        if let Some(ArgValue::Text(how)) = body.args.get("fail") {
            let code = match how.as_str() {
                "unreachable" => ErrorCode::DeviceUnreachable,
                "timeout" => ErrorCode::DeviceTimeout,
                _ => ErrorCode::DeviceRejected,
            };
            return Err(IfError::format(code, format_args!("loopback asked to fail: {}", how.as_str())));
        }
        let held = match body.args.get("vault") {
            Some(ArgValue::Text(name)) => {
                let bytes = secrecy::ExposeSecret::expose_secret(self.secrets.get(name)?).len();
                Some(serde_json::json!({ "name": name.as_str(), "held": true, "bytes": bytes }))
            }
            _ => None,
        };
        let args: serde_json::Map<String, serde_json::Value> = body
            .args
            .iter()
            .map(|a| {
                let v = match &a.value {
                    ArgValue::Bool(b) => serde_json::json!(b),
                    ArgValue::Int(i) => serde_json::json!(i),
                    ArgValue::Text(t) => serde_json::json!(t.as_str()),
                };
                (a.key.to_string(), v)
            })
            .collect();
        Ok(serde_json::json!({ "loopback": body.action.as_str(), "args": args, "vault": held }))
    }
}

impl Driver for Loopback {
    fn plan(&self, body: &EnvelopeBody) -> Plan {
        let problems = self.answer(body).err().into_iter().collect();
        Plan { sends: vec![format!("{} (loopback: nothing leaves the agent)", body.action.as_str())], problems }
    }

    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move { self.answer(body) })
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}
