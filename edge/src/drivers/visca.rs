//! `visca-serial`: Sony VISCA over a serial port (PROTOCOLS.md), through tokio-serial.
//!
//! One task owns the port (opened exclusively: two controllers must not fight over one camera). It
//! sends one command at a time until the camera acknowledges it (`z0 4y FF`: the command holds socket
//! y), then the next may go while the first executes; the camera has two sockets. A command's answer is
//! its completion (`z0 5y FF`) or its error (`z0 6y ee FF`: length, syntax, cancelled, no socket, not
//! executable -> DEVICE_REJECTED). "Buffer full" means the camera took nothing, so the command is sent
//! again once a socket frees (at most three tries). No ACK or no completion in time is DEVICE_TIMEOUT:
//! the command is not sent again. Health is the power inquiry.
//!
//! Actions, for camera `address` (1-7, from the endpoint `serial:///dev/ttyUSB0?baud=9600&address=1`):
//! `preset_recall` (`preset` 0-127), `pan_tilt` (`direction` up/down/left/right/upleft/upright/downleft/
//! downright, `pan_speed` 1-24, `tilt_speed` 1-20), `stop` (pan/tilt stop; mark it `emergency` in the
//! manifest), `zoom` (`direction` tele/wide/stop, `speed` 0-7).

use std::collections::VecDeque;
use std::time::Duration;

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt as _, SerialStream};

use crate::capability::OutcomeFuture;
use crate::lane::{Driver, HealthFuture, Plan};

/// The name manifests use.
pub const DRIVER: &str = "visca-serial";

/// Where the camera is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Serial device path.
    pub path: String,
    /// Baud rate.
    pub baud: u32,
    /// Camera address 1-7.
    pub address: u8,
}

impl Endpoint {
    /// Parses `serial:///dev/ttyUSB0?baud=9600&address=1`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let rest = text.strip_prefix("serial://").ok_or("must read serial:///dev/PORT?baud=9600&address=1")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut e = Endpoint { path: path.to_string(), baud: 9600, address: 1 };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("baud", v)) => e.baud = v.parse().map_err(|_| "baud must be a number")?,
                Some(("address", v)) => {
                    e.address = v.parse().ok().filter(|a| (1..=7).contains(a)).ok_or("address must be 1-7")?
                }
                _ => return Err(format!("unknown endpoint option {kv:?}")),
            }
        }
        if e.path.is_empty() {
            return Err("needs a device path".into());
        }
        Ok(e)
    }
}

fn bad(body: &EnvelopeBody, why: &str) -> IfError {
    IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: {why}", body.action))
}

fn int(
    body: &EnvelopeBody,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    default: Option<i64>,
) -> Result<u8, IfError> {
    let v = match body.args.get(key) {
        Some(ArgValue::Int(v)) => *v,
        None => default.ok_or_else(|| bad(body, &format!("needs {key}")))?,
        Some(_) => return Err(bad(body, &format!("{key} must be a number"))),
    };
    if !range.contains(&v) {
        return Err(bad(body, &format!("{key} must be {}-{}", range.start(), range.end())));
    }
    u8::try_from(v).map_err(|_| bad(body, &format!("{key} is out of range")))
}

fn word<'a>(body: &'a EnvelopeBody, key: &str) -> Result<&'a str, IfError> {
    match body.args.get(key) {
        Some(ArgValue::Text(t)) => Ok(t.as_str()),
        _ => Err(bad(body, &format!("needs {key} as text"))),
    }
}

/// The packet a command sends to camera `address`.
pub fn packet(body: &EnvelopeBody, address: u8) -> Result<Vec<u8>, IfError> {
    let to = 0x80 | address;
    match body.action.as_str() {
        "preset_recall" => Ok(vec![to, 0x01, 0x04, 0x3F, 0x02, int(body, "preset", 0..=127, None)?, 0xFF]),
        "stop" => Ok(vec![to, 0x01, 0x06, 0x01, 0x01, 0x01, 0x03, 0x03, 0xFF]),
        "pan_tilt" => {
            let (x, y) = match word(body, "direction")? {
                "up" => (0x03, 0x01),
                "down" => (0x03, 0x02),
                "left" => (0x01, 0x03),
                "right" => (0x02, 0x03),
                "upleft" => (0x01, 0x01),
                "upright" => (0x02, 0x01),
                "downleft" => (0x01, 0x02),
                "downright" => (0x02, 0x02),
                _ => {
                    return Err(bad(
                        body,
                        "direction must be up, down, left, right, upleft, upright, downleft or downright",
                    ));
                }
            };
            let (v, w) = (int(body, "pan_speed", 1..=24, Some(8))?, int(body, "tilt_speed", 1..=20, Some(8))?);
            Ok(vec![to, 0x01, 0x06, 0x01, v, w, x, y, 0xFF])
        }
        "zoom" => {
            let p = int(body, "speed", 0..=7, Some(3))?;
            let z = match word(body, "direction")? {
                "tele" => 0x20 | p,
                "wide" => 0x30 | p,
                "stop" => 0x00,
                _ => return Err(bad(body, "direction must be tele, wide or stop")),
            };
            Ok(vec![to, 0x01, 0x04, 0x07, z, 0xFF])
        }
        other => Err(IfError::format(ErrorCode::ActionNotAllowed, format_args!("visca has no action {other:?}"))),
    }
}

fn error_text(code: u8) -> &'static str {
    match code {
        0x01 => "message length error",
        0x02 => "syntax error",
        0x03 => "command buffer full",
        0x04 => "command cancelled",
        0x05 => "no socket",
        0x41 => "command not executable now",
        _ => "unknown error",
    }
}

struct Request {
    packet: Vec<u8>,
    inquiry: bool,
    answer: oneshot::Sender<Result<Vec<u8>, IfError>>,
}

impl super::Refusable for Request {
    fn refuse(self, why: IfError) {
        let _ = self.answer.send(Err(why));
    }
}

/// The driver: a handle on the port task.
#[derive(Debug)]
pub struct Visca {
    requests: mpsc::Sender<Request>,
    address: u8,
    path: String,
}

impl Visca {
    /// Starts the port task.
    pub fn start(endpoint: Endpoint, timeout: Duration, backoff_s: Vec<u32>, capability: String) -> Self {
        let (requests, rx) = mpsc::channel(64);
        let (address, path) = (endpoint.address, endpoint.path.clone());
        tokio::spawn(Port { endpoint, timeout, backoff_s, capability }.run(rx));
        Visca { requests, address, path }
    }

    async fn send(&self, packet: Vec<u8>, inquiry: bool) -> Result<Vec<u8>, IfError> {
        let (answer, wait) = oneshot::channel();
        let gone = || {
            IfError::format(
                ErrorCode::DeviceUnreachable,
                format_args!("camera on {}: the port task stopped", self.path),
            )
        };
        self.requests.send(Request { packet, inquiry, answer }).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

impl Driver for Visca {
    fn plan(&self, body: &EnvelopeBody) -> Plan {
        match packet(body, self.address) {
            Ok(p) => Plan { sends: vec![hex(&p)], problems: Vec::new() },
            Err(e) => Plan { sends: Vec::new(), problems: vec![e] },
        }
    }

    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async move {
            let p = packet(body, self.address)?;
            let sent = hex(&p);
            self.send(p, false).await?;
            Ok(serde_json::json!({ "visca": sent, "completed": true }))
        })
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move { self.send(vec![0x80 | self.address, 0x09, 0x04, 0x00, 0xFF], true).await.map(|_| ()) })
    }
}

struct Port {
    endpoint: Endpoint,
    timeout: Duration,
    backoff_s: Vec<u32>,
    capability: String,
}

/// A command waiting for its ACK, or for its completion in socket `y`.
struct InFlight {
    req: Request,
    deadline: Instant,
    tries: u8,
}

impl Port {
    fn unreachable(&self, why: impl std::fmt::Display) -> IfError {
        IfError::format(ErrorCode::DeviceUnreachable, format_args!("camera on {}: {why}", self.endpoint.path))
    }

    async fn run(self, mut requests: mpsc::Receiver<Request>) {
        let mut attempt = 0usize;
        loop {
            let why = match tokio_serial::new(&self.endpoint.path, self.endpoint.baud).open_native_async() {
                Ok(port) => {
                    attempt = 0;
                    tracing::info!(capability = %self.capability, port = %self.endpoint.path, "VISCA port open");
                    let why = self.serve(port, &mut requests).await;
                    tracing::warn!(capability = %self.capability, "VISCA port lost: {}", why.detail());
                    why
                }
                Err(e) => self.unreachable(e),
            };
            if !super::wait_out(&mut requests, &self.backoff_s, attempt, &why).await {
                return;
            }
            attempt += 1;
        }
    }

    /// Serves until the port fails; returns why.
    async fn serve(&self, mut port: SerialStream, requests: &mut mpsc::Receiver<Request>) -> IfError {
        let z = 0x80 | ((self.endpoint.address + 8) << 4);
        let mut waiting_ack: Option<InFlight> = None;
        let mut executing: [Option<InFlight>; 2] = [None, None];
        let mut retry: VecDeque<InFlight> = VecDeque::new();
        let mut packet = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let deadline = waiting_ack.iter().chain(executing.iter().flatten()).map(|f| f.deadline).min();
            let can_send = waiting_ack.is_none() && executing.iter().any(Option::is_none);
            tokio::select! {
                n = port.read(&mut buf) => {
                    let n = match n {
                        Ok(0) => return self.unreachable("the port closed"),
                        Ok(n) => n,
                        Err(e) => return self.unreachable(e),
                    };
                    for &b in &buf[..n] {
                        packet.push(b);
                        if b != 0xFF && packet.len() < 16 {
                            continue;
                        }
                        let p = std::mem::take(&mut packet);
                        self.reply(&p, z, &mut waiting_ack, &mut executing, &mut retry);
                    }
                }
                req = requests.recv(), if can_send && retry.is_empty() => {
                    let Some(req) = req else { return self.unreachable("driver stopped") };
                    let f = InFlight { req, deadline: Instant::now() + self.timeout, tries: 1 };
                    if let Err(e) = port.write_all(&f.req.packet).await {
                        let _ = f.req.answer.send(Err(self.unreachable(format_args!("could not send: {e}"))));
                        return self.unreachable(e);
                    }
                    waiting_ack = Some(f);
                }
                () = tokio::time::sleep(Duration::from_millis(20)), if can_send && !retry.is_empty() => {
                    if let Some(mut f) = retry.pop_front() {
                        f.tries += 1;
                        if let Err(e) = port.write_all(&f.req.packet).await {
                            let _ = f.req.answer.send(Err(self.unreachable(format_args!("could not send: {e}"))));
                            return self.unreachable(e);
                        }
                        waiting_ack = Some(f);
                    }
                }
                () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    let now = Instant::now();
                    let expired = |f: &Option<InFlight>| f.as_ref().is_some_and(|f| f.deadline <= now);
                    for slot in std::iter::once(&mut waiting_ack).chain(executing.iter_mut()) {
                        if expired(slot) && let Some(f) = slot.take() {
                            let _ = f.req.answer.send(Err(IfError::format(
                                ErrorCode::DeviceTimeout,
                                format_args!("no answer to {} within {} ms; not sent again", hex(&f.req.packet), self.timeout.as_millis()),
                            )));
                        }
                    }
                }
            }
        }
    }

    /// Handles one packet from the camera.
    fn reply(
        &self,
        p: &[u8],
        z: u8,
        waiting_ack: &mut Option<InFlight>,
        executing: &mut [Option<InFlight>; 2],
        retry: &mut VecDeque<InFlight>,
    ) {
        let ok = |f: InFlight, answer: &[u8]| {
            let _ = f.req.answer.send(Ok(answer.to_vec()));
        };
        let fail = |f: InFlight, code: u8| {
            let _ = f.req.answer.send(Err(IfError::format(
                ErrorCode::DeviceRejected,
                format_args!("camera: {} ({:02X}) for {}", error_text(code), code, hex(&f.req.packet)),
            )));
        };
        match p {
            // Inquiry answer: `z0 50 ... FF`.
            [a, 0x50, ..] if *a == z && waiting_ack.as_ref().is_some_and(|f| f.req.inquiry) => {
                if let Some(f) = waiting_ack.take() {
                    ok(f, p);
                }
            }
            // ACK: the waiting command now executes in socket y.
            [a, y, 0xFF] if *a == z && (0x41..=0x42).contains(y) => {
                if let Some(f) = waiting_ack.take() {
                    let slot = usize::from(y - 0x41);
                    executing[slot] = Some(InFlight { deadline: Instant::now() + self.timeout, ..f });
                }
            }
            // Completion of socket y.
            [a, y, 0xFF] if *a == z && (0x51..=0x52).contains(y) => {
                if let Some(f) = executing[usize::from(y - 0x51)].take() {
                    ok(f, p);
                }
            }
            // Buffer full: the camera took nothing; send again when a socket frees.
            [a, y, 0x03, 0xFF] if *a == z && y & 0xF0 == 0x60 => {
                if let Some(f) = waiting_ack.take() {
                    if f.tries < 3 {
                        retry.push_back(f);
                    } else {
                        fail(f, 0x03);
                    }
                }
            }
            // Error of socket y (0: of the command waiting for its ACK).
            [a, y, code, 0xFF] if *a == z && y & 0xF0 == 0x60 => {
                let socket = y & 0x0F;
                let f = match socket {
                    1 | 2 => executing[usize::from(socket - 1)].take(),
                    _ => waiting_ack.take(),
                };
                if let Some(f) = f.or_else(|| waiting_ack.take()) {
                    fail(f, *code);
                }
            }
            _ => tracing::debug!(capability = %self.capability, packet = %hex(p), "unexpected VISCA packet ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::envelope::Args;

    use super::*;
    use crate::policy::authorize::tests::body;

    fn with(action: &str, args: &[(&str, ArgValue)]) -> EnvelopeBody {
        let mut b = body("if://capability/cam", action);
        let mut a = Args::new();
        for (k, v) in args {
            a.insert(k, v.clone()).expect("arg");
        }
        b.args = a;
        b
    }

    #[test]
    fn packets_follow_the_protocol() {
        assert_eq!(
            packet(&with("preset_recall", &[("preset", ArgValue::Int(5))]), 1).expect("ok"),
            [0x81, 0x01, 0x04, 0x3F, 0x02, 0x05, 0xFF]
        );
        assert_eq!(packet(&with("stop", &[]), 2).expect("ok"), [0x82, 0x01, 0x06, 0x01, 0x01, 0x01, 0x03, 0x03, 0xFF]);
        let left = with("pan_tilt", &[("direction", ArgValue::Text("left".try_into().expect("short")))]);
        assert_eq!(packet(&left, 1).expect("ok"), [0x81, 0x01, 0x06, 0x01, 8, 8, 0x01, 0x03, 0xFF]);
        let tele = with(
            "zoom",
            &[("direction", ArgValue::Text("tele".try_into().expect("short"))), ("speed", ArgValue::Int(7))],
        );
        assert_eq!(packet(&tele, 1).expect("ok"), [0x81, 0x01, 0x04, 0x07, 0x27, 0xFF]);
        assert!(packet(&with("preset_recall", &[("preset", ArgValue::Int(200))]), 1).is_err());
        assert!(
            packet(&with("pan_tilt", &[("direction", ArgValue::Text("sideways".try_into().expect("short")))]), 1)
                .is_err()
        );
    }

    #[test]
    fn endpoints_parse_or_say_why() {
        let e = Endpoint::parse("serial:///dev/ttyUSB0?baud=38400&address=2").expect("ok");
        assert_eq!(e, Endpoint { path: "/dev/ttyUSB0".into(), baud: 38400, address: 2 });
        assert_eq!(Endpoint::parse("serial:///dev/ttyS1").expect("defaults").baud, 9600);
        for bad in ["tcp://x:1", "serial://?baud=9600", "serial:///dev/x?address=9", "serial:///dev/x?parity=odd"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
