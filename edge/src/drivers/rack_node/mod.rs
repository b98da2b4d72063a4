//! `rack-node-serial`: the IF rack node (tally lamps, relays, buttons) over its serial link
//! (`if_protocol::link`: postcard frames with CRC-32C and COBS, stop-and-wait ARQ).
//!
//! One task owns the port, opened exclusively (two agents must not drive one node). The link's rules
//! are in `state.rs`: the session handshake, each command carried out exactly once on the node and
//! answered (a command the node never answers is DEVICE_TIMEOUT and is not sent again past the ARQ's
//! tries), the node resynchronised after it reboots or reports its safe state. Health is the node's
//! heartbeat. A port that goes away (adapter unplugged, emulator killed) fails whatever was waiting and
//! is opened again on the manifest's backoff schedule; button edges, the node's `Hello` and its safe
//! state go to the agent as [`DeviceEvent`]s, to be published and witnessed.
//!
//! Endpoint: `serial:///dev/ttyACM0?baud=115200&restore=0,2` (`restore`: the relays whose latched level
//! may be set again after a resynchronisation; none by default, pulses never).
//!
//! Actions: `lamp` (`lamp` index, `color` off/red/green/amber), `relay` (`relay` index, `on` true/false),
//! `pulse` (`relay` index, `ms` 1-65535), `safe` (every output to its safe position now; mark it
//! `emergency` in the manifest; the node stays safe until `resume`), `resume`.

mod state;

use std::time::Duration;

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::link::{Lamp, MAX_ENCODED_LEN, MAX_LAMPS, MAX_RELAYS, Message, NakReason, encode};
use if_protocol::{ErrorCode, IfError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt as _, SerialStream};

use super::supervisor::{Device, Refusable, supervise};
use super::{DeviceEvent, DeviceReport, Driver, DriverContext, HealthFuture};
use crate::backoff::Backoff;
use crate::capability::{OutcomeFuture, Plan};
use state::{Event, Failure, Link};

/// The name manifests use.
pub const DRIVER: &str = "rack-node-serial";

/// Where the node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Serial device path.
    pub path: String,
    /// Baud rate.
    pub baud: u32,
    /// Relays whose latched level is set again after a resynchronisation, bit `i` for relay `i`.
    pub restore: u16,
}

impl Endpoint {
    /// Parses `serial:///dev/ttyACM0?baud=115200&restore=0,2`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let (path, options) = super::serial_endpoint(text, "serial:///dev/PORT?baud=115200")?;
        let mut e = Endpoint { path, baud: 115_200, restore: 0 };
        for (k, v) in options {
            match k {
                "baud" => e.baud = v.parse().map_err(|_| "baud must be a number")?,
                "restore" => {
                    for r in v.split(',').filter(|s| !s.is_empty()) {
                        let i: usize = r.parse().map_err(|_| "restore lists relay numbers: restore=0,2")?;
                        if i >= MAX_RELAYS {
                            return Err(format!("restore: relay {i} is beyond the {MAX_RELAYS} a node can have"));
                        }
                        e.restore |= 1 << i;
                    }
                }
                _ => return Err(format!("unknown endpoint option {k:?}")),
            }
        }
        Ok(e)
    }
}

fn bad(body: &EnvelopeBody, why: &str) -> IfError {
    IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: {why}", body.action))
}

fn index(body: &EnvelopeBody, key: &str, below: usize) -> Result<u8, IfError> {
    match body.args.get(key) {
        Some(ArgValue::Int(v)) if (0..below as i64).contains(v) => u8::try_from(*v).map_err(|_| bad(body, key)),
        Some(ArgValue::Int(_)) => Err(bad(body, &format!("{key} must be 0-{}", below - 1))),
        _ => Err(bad(body, &format!("needs {key} as a number"))),
    }
}

/// The link message an action sends, checked against what any node can have (the node itself refuses
/// an index beyond its own counts).
pub fn message(body: &EnvelopeBody) -> Result<Message, IfError> {
    match body.action.as_str() {
        "lamp" => {
            let lamp = index(body, "lamp", MAX_LAMPS)?;
            let color = match body.args.get("color") {
                Some(ArgValue::Text(t)) => Lamp::from_name(t.as_str()),
                _ => None,
            };
            let color = color.ok_or_else(|| bad(body, "needs color: off, red, green or amber"))?;
            Ok(Message::SetLamp { lamp, color })
        }
        "relay" => {
            let relay = index(body, "relay", MAX_RELAYS)?;
            let on = match body.args.get("on") {
                Some(ArgValue::Bool(b)) => *b,
                _ => return Err(bad(body, "needs on: true or false")),
            };
            Ok(Message::SetRelay { relay, on })
        }
        "pulse" => {
            let relay = index(body, "relay", MAX_RELAYS)?;
            let ms = match body.args.get("ms") {
                Some(ArgValue::Int(v)) => u16::try_from(*v).ok().filter(|ms| *ms > 0),
                _ => None,
            };
            let ms = ms.ok_or_else(|| bad(body, "needs ms: 1-65535"))?;
            Ok(Message::PulseRelay { relay, ms })
        }
        "safe" => Ok(Message::SafeState),
        "resume" => Ok(Message::Resume),
        other => Err(IfError::format(ErrorCode::ActionNotAllowed, format_args!("rack-node has no action {other:?}"))),
    }
}

/// What the port task is asked.
#[derive(Debug)]
enum Request {
    Command { msg: Message, answer: oneshot::Sender<Result<(), IfError>> },
    Health { answer: oneshot::Sender<Result<(), IfError>> },
}

impl Refusable for Request {
    fn refuse(self, why: IfError) {
        let answer = match self {
            Request::Command { answer, .. } | Request::Health { answer } => answer,
        };
        let _ = answer.send(Err(why));
    }
}

/// The driver: a handle on the port task.
#[derive(Debug)]
pub struct RackNode {
    requests: mpsc::Sender<Request>,
    path: String,
}

impl RackNode {
    /// Starts the port task.
    pub fn start(endpoint: Endpoint, backoff: Backoff, capability: String, ctx: DriverContext) -> Self {
        let (requests, rx) = mpsc::channel(64);
        let path = endpoint.path.clone();
        let port = Port { endpoint, capability, ctx, events: std::sync::Mutex::new((0, 0)), started: Instant::now() };
        tokio::spawn(supervise(port, backoff, rx));
        RackNode { requests, path }
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<Result<(), IfError>>) -> Request) -> Result<(), IfError> {
        let (answer, wait) = oneshot::channel();
        let gone = || {
            IfError::format(
                ErrorCode::DeviceUnreachable,
                format_args!("rack node on {}: the port task stopped", self.path),
            )
        };
        self.requests.send(make(answer)).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}

impl Driver for RackNode {
    fn plan(&self, body: &EnvelopeBody) -> Plan {
        match message(body) {
            Ok(m) => Plan { sends: vec![format!("{m:?}")], problems: Vec::new() },
            Err(e) => Plan { sends: Vec::new(), problems: vec![e] },
        }
    }

    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            let msg = message(body)?;
            let sent = format!("{msg:?}");
            self.ask(|answer| Request::Command { msg, answer }).await?;
            Ok(serde_json::json!({ "link": sent, "acknowledged": true }))
        })
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move { self.ask(|answer| Request::Health { answer }).await })
    }
}

/// Events a node may report in one second; beyond that they are dropped (and counted in the log), so a
/// faulty or hostile node cannot fill the witness log.
const EVENTS_PER_S: u32 = 20;

struct Port {
    endpoint: Endpoint,
    capability: String,
    ctx: DriverContext,
    /// Events reported in the current second: (second since the port task started, count).
    events: std::sync::Mutex<(u64, u32)>,
    started: Instant,
}

impl Port {
    fn unreachable(&self, why: impl std::fmt::Display) -> IfError {
        IfError::format(ErrorCode::DeviceUnreachable, format_args!("rack node on {}: {why}", self.endpoint.path))
    }

    fn failure(&self, f: Failure) -> IfError {
        let path = &self.endpoint.path;
        match f {
            Failure::Refused(NakReason::InSafeState) => IfError::format(
                ErrorCode::DeviceRejected,
                format_args!("rack node on {path}: its outputs are in their safe state (send resume)"),
            ),
            Failure::Refused(NakReason::NoSuchOutput) => IfError::format(
                ErrorCode::DeviceRejected,
                format_args!("rack node on {path}: it has no such lamp or relay"),
            ),
            Failure::Refused(NakReason::Unsupported) => IfError::format(
                ErrorCode::DeviceRejected,
                format_args!("rack node on {path}: it does not take that message"),
            ),
            Failure::NoAnswer => IfError::format(
                ErrorCode::DeviceTimeout,
                format_args!("rack node on {path}: no answer after {} sends; not sent again", state::TRIES),
            ),
            Failure::NotReady => self.unreachable("the node has not said Hello, or has gone silent"),
            Failure::Full => IfError::format(
                ErrorCode::QueueFull,
                format_args!("rack node on {path}: too many commands are waiting"),
            ),
        }
    }

    fn report(&self, event: DeviceEvent) {
        let second = self.started.elapsed().as_secs();
        {
            let mut w = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if w.0 != second {
                *w = (second, 0);
            }
            w.1 += 1;
            if w.1 > EVENTS_PER_S {
                if w.1 == EVENTS_PER_S + 1 {
                    tracing::warn!(capability = %self.capability, "rack node reports more than {EVENTS_PER_S} events a second; dropping the rest of this second's");
                }
                return;
            }
        }
        let report = DeviceReport { capability: self.capability.clone(), event };
        if self.ctx.events.try_send(report).is_err() {
            tracing::warn!(capability = %self.capability, "device event dropped: the agent is behind");
        }
    }

    async fn exchange(
        &self,
        port: &mut SerialStream,
        link: &mut Link<oneshot::Sender<Result<(), IfError>>>,
        requests: &mut mpsc::Receiver<Request>,
        opened: Instant,
    ) -> IfError {
        let mut buf = [0u8; 256];
        let mut frame = [0u8; MAX_ENCODED_LEN];
        let ms = || u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (mut was_ready, mut bad_frames) = (false, 0);
        loop {
            let now = ms();
            link.poll(now);
            let mut bytes = Vec::new();
            while let Some(f) = link.outgoing() {
                if let Ok(n) = encode(&f, &mut frame) {
                    bytes.extend_from_slice(&frame[..n]);
                }
            }
            if !bytes.is_empty()
                && let Err(e) = port.write_all(&bytes).await
            {
                return self.unreachable(format_args!("could not send: {e}"));
            }
            while let Some((answer, result)) = link.completed() {
                let _ = answer.send(result.map_err(|f| self.failure(f)));
            }
            while let Some(e) = link.event() {
                self.on_event(e);
            }
            let ready = link.ready(now);
            if ready != was_ready {
                was_ready = ready;
                if !ready {
                    tracing::warn!(capability = %self.capability, "rack node on {} went silent", self.endpoint.path);
                }
            }
            if link.bad_frames() > bad_frames {
                bad_frames = link.bad_frames();
                tracing::debug!(capability = %self.capability, bad_frames, "noise on the rack node's link");
            }
            link.forget(oneshot::Sender::is_closed);
            let wake = opened + Duration::from_millis(link.next_due(now));
            tokio::select! {
                n = port.read(&mut buf) => match n {
                    Ok(0) => return self.unreachable("the port closed"),
                    Ok(n) => link.receive(&buf[..n], ms()),
                    Err(e) => return self.unreachable(e),
                },
                req = requests.recv() => match req {
                    Some(Request::Command { msg, answer }) => {
                        if let Err((answer, f)) = link.submit(answer, msg, ms()) {
                            let _ = answer.send(Err(self.failure(f)));
                        }
                    }
                    Some(Request::Health { answer }) => {
                        let now = ms();
                        let _ = answer.send(if link.ready(now) {
                            Ok(())
                        } else {
                            Err(self.unreachable(match link.silent_for(now) {
                                Some(t) => format!("no heartbeat for {t} ms"),
                                None => "nothing heard from the node yet".to_string(),
                            }))
                        });
                    }
                    None => return self.unreachable("driver stopped"),
                },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn on_event(&self, e: Event) {
        match e {
            Event::Gpi { input, pressed } => self.report(DeviceEvent::Gpi { input, pressed }),
            Event::Hello(n) => {
                tracing::info!(
                    capability = %self.capability,
                    board = n.board_id,
                    boots = n.boots,
                    "rack node on {} says hello: firmware {}.{}.{}, {} lamps, {} relays, {} inputs",
                    self.endpoint.path, n.firmware[0], n.firmware[1], n.firmware[2], n.lamps, n.relays, n.inputs
                );
                self.report(DeviceEvent::Hello { board_id: n.board_id, boots: n.boots });
            }
            Event::Safe(reason) => {
                tracing::warn!(capability = %self.capability, "rack node on {}: outputs safe ({})", self.endpoint.path, reason.name());
                self.report(DeviceEvent::Safe { reason: reason.name() });
            }
        }
    }
}

impl Device for Port {
    type Conn = SerialStream;
    type Request = Request;

    fn describe(&self) -> String {
        format!("rack node {} on {}", self.capability, self.endpoint.path)
    }

    async fn connect(&self) -> Result<SerialStream, IfError> {
        tokio_serial::new(&self.endpoint.path, self.endpoint.baud).open_native_async().map_err(|e| self.unreachable(e))
    }

    async fn serve(&self, mut port: SerialStream, requests: &mut mpsc::Receiver<Request>) -> IfError {
        let mut link = Link::new(rand::random::<u32>().max(1), self.endpoint.restore, 0);
        let why = self.exchange(&mut port, &mut link, requests, Instant::now()).await;
        for answer in link.close() {
            let _ = answer.send(Err(why.clone()));
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::envelope::Args;

    use super::*;
    use crate::policy::authorize::tests::body;

    fn with(action: &str, args: &[(&str, ArgValue)]) -> EnvelopeBody {
        let mut b = body("if://capability/rack", action);
        let mut a = Args::new();
        for (k, v) in args {
            a.insert(k, v.clone()).expect("arg");
        }
        b.args = a;
        b
    }

    fn text(s: &str) -> ArgValue {
        ArgValue::Text(s.try_into().expect("short"))
    }

    #[test]
    fn actions_become_exactly_one_link_message_each() {
        let lamp = with("lamp", &[("lamp", ArgValue::Int(3)), ("color", text("amber"))]);
        assert_eq!(message(&lamp).expect("ok"), Message::SetLamp { lamp: 3, color: Lamp::Amber });
        let relay = with("relay", &[("relay", ArgValue::Int(1)), ("on", ArgValue::Bool(true))]);
        assert_eq!(message(&relay).expect("ok"), Message::SetRelay { relay: 1, on: true });
        let pulse = with("pulse", &[("relay", ArgValue::Int(0)), ("ms", ArgValue::Int(250))]);
        assert_eq!(message(&pulse).expect("ok"), Message::PulseRelay { relay: 0, ms: 250 });
        assert_eq!(message(&with("safe", &[])).expect("ok"), Message::SafeState);
        assert_eq!(message(&with("resume", &[])).expect("ok"), Message::Resume);
    }

    #[test]
    fn bad_arguments_are_refused_with_why() {
        let cases = [
            with("lamp", &[("lamp", ArgValue::Int(16)), ("color", text("red"))]),
            with("lamp", &[("lamp", ArgValue::Int(-1)), ("color", text("red"))]),
            with("lamp", &[("lamp", ArgValue::Int(1)), ("color", text("blue"))]),
            with("relay", &[("relay", ArgValue::Int(1)), ("on", ArgValue::Int(1))]),
            with("pulse", &[("relay", ArgValue::Int(0)), ("ms", ArgValue::Int(0))]),
            with("pulse", &[("relay", ArgValue::Int(0)), ("ms", ArgValue::Int(70_000))]),
        ];
        for b in cases {
            let e = message(&b).expect_err("refused");
            assert_eq!(e.code(), ErrorCode::InvalidEnvelope, "{b:?}");
        }
        assert_eq!(message(&with("explode", &[])).expect_err("no").code(), ErrorCode::ActionNotAllowed);
    }

    #[test]
    fn endpoints_parse_or_say_why() {
        let e = Endpoint::parse("serial:///dev/ttyACM0?baud=57600&restore=0,2").expect("ok");
        assert_eq!(e, Endpoint { path: "/dev/ttyACM0".into(), baud: 57600, restore: 0b101 });
        assert_eq!(Endpoint::parse("serial:///dev/ttyACM0").expect("defaults").baud, 115_200);
        for bad in
            ["tcp://x:1", "serial://", "serial:///dev/x?restore=16", "serial:///dev/x?restore=a", "serial:///dev/x?x=1"]
        {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
