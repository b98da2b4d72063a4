//! Device drivers, by the name a manifest gives in `driver`: the [`Driver`] trait a lane drives, the
//! shared reconnect [`supervisor`], and one module per device protocol.

pub mod loopback;
pub mod rack_node;
pub mod supervisor;
pub mod tsl;
pub mod videohub;
pub mod visca;
pub mod vmix;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use if_protocol::envelope::EnvelopeBody;
use if_protocol::policy::Manifest;
use if_protocol::{ErrorCode, IfError};
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::capability::{OutcomeFuture, Plan};
use crate::vault::Vault;

/// A boxed future of a health check.
pub type HealthFuture<'a> = Pin<Box<dyn Future<Output = Result<(), IfError>> + Send + 'a>>;

/// A device driver: what a lane drives.
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// A dry run: what would be sent and every reason it would fail.
    fn plan(&self, body: &EnvelopeBody) -> Plan;
    /// Sends the command and waits for the device's answer.
    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a>;
    /// A cheap check that the device is there and answering.
    fn health(&self) -> HealthFuture<'_>;
    /// How many commands the device executes at once: the lane gives the driver up to this many before
    /// the first is answered (a VISCA camera has two command sockets, so a zoom need not wait for a
    /// preset move to end). The driver still sends them in the order given.
    fn in_flight(&self) -> usize {
        1
    }
    /// An emergency (the lane's priority path: a camera STOP): sent ahead of whatever the driver holds,
    /// even while the commands in flight fill the device. By default the same as [`Driver::apply`].
    fn apply_now<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        self.apply(body)
    }
}

/// A tally change a driver saw: `tally` is one digit per input, 0 off, 1 program, 2 preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The capability (device).
    pub capability: String,
    /// The digits.
    pub tally: String,
    /// The switcher's titles of its inputs, by number from 1 (read at connect).
    pub labels: std::collections::BTreeMap<u32, String>,
    /// The activators that are on (vMix's `ACTS`): an overlay or mix with its input, a state with 1.
    pub activators: std::collections::BTreeMap<String, u32>,
}

/// Something a device did by itself, to be witnessed and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// A rack node's button changed (debounced on the node).
    Gpi {
        /// Input index.
        input: u8,
        /// Pressed when true.
        pressed: bool,
    },
    /// A rack node said hello: it started (again), or its port was opened again.
    Hello {
        /// Its hardware id.
        board_id: u32,
        /// Its starts since power-up.
        boots: u32,
    },
    /// A rack node put its outputs in their safe positions by itself.
    Safe {
        /// Why (`boot`, `link-lost`, `commanded`).
        reason: &'static str,
    },
}

/// A [`DeviceEvent`] and the capability it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReport {
    /// The capability (device).
    pub capability: String,
    /// What happened.
    pub event: DeviceEvent,
}

/// Device events waiting for the agent, at most: a device that floods is dropped from, not followed.
pub const DEVICE_EVENTS: usize = 256;

/// A router's whole routing as its status said, with its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The capability (router).
    pub capability: String,
    /// Every output's route.
    pub routes: Vec<if_protocol::messages::Route>,
}

/// The latest report of each device (by capability), for a consumer that may fall behind: a device that
/// reports faster than the agent publishes replaces its own report instead of queueing another, so
/// memory stays bounded and the newest report is never the one lost.
#[derive(Debug)]
pub struct Latest<T> {
    reports: std::sync::Mutex<std::collections::BTreeMap<String, T>>,
    posted: tokio::sync::Notify,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest { reports: std::sync::Mutex::new(std::collections::BTreeMap::new()), posted: tokio::sync::Notify::new() }
    }
}

impl<T> Latest<T> {
    /// Keeps `report` as `capability`'s latest.
    pub fn post(&self, capability: &str, report: T) {
        self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(capability.to_string(), report);
        self.posted.notify_one();
    }

    /// Every device's latest report not yet taken, waiting for one.
    pub async fn next(&self) -> Vec<T> {
        loop {
            let taken = std::mem::take(&mut *self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            if !taken.is_empty() {
                return taken.into_values().collect();
            }
            self.posted.notified().await;
        }
    }
}

/// What drivers may send back to the agent, besides answers.
#[derive(Debug, Clone)]
pub struct DriverContext {
    /// Tally changes, published on the tally topic.
    pub tally: Arc<Latest<Tally>>,
    /// Device events, witnessed and published (bounded by [`DEVICE_EVENTS`]).
    pub events: mpsc::Sender<DeviceReport>,
    /// Routers' routing, published retained.
    pub routing: Arc<Latest<Routing>>,
}

/// Connects to `addr` within `timeout`, with Nagle off (device commands are small and latency counts).
pub(crate) async fn tcp_connect(
    addr: &str,
    timeout: Duration,
    unreachable: impl Fn(&dyn std::fmt::Display) -> IfError,
) -> Result<tokio::net::TcpStream, IfError> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(&"connect timed out"))?
        .map_err(|e| unreachable(&e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Whether `addr` reads `HOST:PORT` with a host and a port number above 0.
pub(crate) fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// `tcp://HOST:PORT` -> `HOST:PORT`.
fn tcp_endpoint(m: &Manifest) -> Result<String, IfError> {
    m.endpoint.strip_prefix("tcp://").filter(|a| is_host_port(a)).map(str::to_string).ok_or_else(|| {
        IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: endpoint must read tcp://HOST:PORT", m.id))
    })
}

/// A serial endpoint's options, `(key, value)` in order.
pub(crate) type SerialOptions<'a> = Vec<(&'a str, &'a str)>;

/// `serial:///dev/PORT?k=v&k=v` -> the device path and the options, in order (`form` is the example the
/// error shows). Each driver reads its own options and refuses the others.
pub(crate) fn serial_endpoint<'a>(text: &'a str, form: &str) -> Result<(String, SerialOptions<'a>), String> {
    let rest = text.strip_prefix("serial://").ok_or_else(|| format!("must read {form}"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err("needs a device path".into());
    }
    Ok((path.to_string(), endpoint_options(query)?))
}

/// An endpoint's `k=v&k=v` query, `(key, value)` in order.
pub(crate) fn endpoint_options(query: &str) -> Result<SerialOptions<'_>, String> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').ok_or_else(|| format!("unknown endpoint option {kv:?}")))
        .collect()
}

/// The driver a manifest names, with the secrets it lists.
pub fn build(m: &Manifest, vault: &Vault, ctx: &DriverContext) -> Result<Arc<dyn Driver>, IfError> {
    let secrets = vault.for_manifest(m)?;
    let timeout = Duration::from_millis(u64::from(m.limits.timeout_ms.max(1)));
    match m.driver.as_str() {
        loopback::DRIVER => Ok(Arc::new(loopback::Loopback::new(secrets))),
        vmix::DRIVER => Ok(Arc::new(vmix::Vmix::start(
            tcp_endpoint(m)?,
            timeout,
            Backoff::from_secs(&m.limits.backoff),
            m.id.to_string(),
            ctx.clone(),
        ))),
        videohub::DRIVER => Ok(Arc::new(videohub::Videohub::start(
            tcp_endpoint(m)?,
            timeout,
            Backoff::from_secs(&m.limits.backoff),
            m.id.to_string(),
            ctx.routing.clone(),
        ))),
        visca::serial::DRIVER => {
            let endpoint = visca::serial::Endpoint::parse(&m.endpoint)
                .map_err(|why| IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: endpoint {why}", m.id)))?;
            Ok(Arc::new(visca::serial::start(
                endpoint,
                timeout,
                Backoff::from_secs(&m.limits.backoff),
                m.id.to_string(),
            )))
        }
        visca::ip::DRIVER => {
            let endpoint = visca::ip::Endpoint::parse(&m.endpoint)
                .map_err(|why| IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: endpoint {why}", m.id)))?;
            Ok(Arc::new(visca::ip::start(endpoint, timeout, Backoff::from_secs(&m.limits.backoff), m.id.to_string())))
        }
        rack_node::DRIVER => {
            let endpoint = rack_node::Endpoint::parse(&m.endpoint)
                .map_err(|why| IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: endpoint {why}", m.id)))?;
            Ok(Arc::new(rack_node::RackNode::start(
                endpoint,
                Backoff::from_secs(&m.limits.backoff),
                m.id.to_string(),
                ctx.clone(),
            )))
        }
        tsl::DRIVER => {
            let endpoint = tsl::Endpoint::parse(&m.endpoint)
                .map_err(|why| IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: endpoint {why}", m.id)))?;
            Ok(Arc::new(tsl::Tsl::start(endpoint, timeout, m.id.to_string())))
        }
        other => Err(IfError::format(
            ErrorCode::CapabilityNotAllowed,
            format_args!("driver {other} is not available in this build of the agent"),
        )),
    }
}
