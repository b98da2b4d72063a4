//! Capabilities: what a command can ask the agent to do, behind one trait.
//!
//! The pipeline knows capabilities only through [`Capability`]: an id, its actions, `execute` (and
//! `take`, which keeps the order commands were admitted in), and a dry run's [`Plan`]. Device lanes plug in behind the same trait, and so do the agent's own
//! capabilities ([`crate::builtin`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use if_protocol::envelope::EnvelopeBody;
use if_protocol::{ErrorCode, IfError};

/// What `execute` returns.
pub type Outcome = Result<serde_json::Value, IfError>;

/// A boxed future of an [`Outcome`].
pub type OutcomeFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// Something a command can run.
pub trait Capability: Send + Sync + std::fmt::Debug + 'static {
    /// `if://capability/<name>`.
    fn id(&self) -> &str;
    /// Whether it accepts `action`.
    fn offers(&self, action: &str) -> bool;
    /// Runs an admitted, authorized, witnessed command. Called at most once per envelope.
    fn execute<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a>;
    /// [`Capability::execute`], with the command taken now, in the order of the calls: the pipeline
    /// awaits each command on a task of its own, and a capability that queues (a device lane) queues it
    /// here, so commands reach a device in the order they were admitted. By default it is taken when the
    /// future first runs.
    fn take(self: Arc<Self>, body: EnvelopeBody) -> OutcomeFuture<'static> {
        Box::pin(async move { self.execute(&body).await })
    }
    /// A dry run: what would be sent and every reason it would fail now, touching nothing.
    fn plan(&self, _body: &EnvelopeBody) -> Plan {
        Plan::default()
    }
}

/// What a dry run says about a command without touching anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// What would be sent, in order, as the device would see it.
    pub sends: Vec<String>,
    /// Every reason it would fail now.
    pub problems: Vec<IfError>,
}

/// The capabilities an agent offers, by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_id: HashMap<String, Arc<dyn Capability>>,
}

impl Registry {
    /// How many capabilities are offered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds a capability.
    pub fn add(&mut self, c: Arc<dyn Capability>) {
        self.by_id.insert(c.id().to_string(), c);
    }

    /// The capability for an envelope, if it exists and has the action.
    pub fn resolve(&self, body: &EnvelopeBody) -> Result<Arc<dyn Capability>, IfError> {
        let Some(c) = self.by_id.get(body.capability.as_str()) else {
            return Err(IfError::format(
                ErrorCode::CapabilityNotAllowed,
                format_args!("{} is not offered by this agent", body.capability),
            ));
        };
        if !c.offers(body.action.as_str()) {
            return Err(IfError::format(
                ErrorCode::ActionNotAllowed,
                format_args!("{} has no action {:?}", body.capability, body.action.as_str()),
            ));
        }
        Ok(c.clone())
    }
}
