//! `visca-serial`: Sony VISCA over a serial port (docs/PROTOCOLS.md), through tokio-serial.
//!
//! One task owns the port (opened exclusively: two controllers must not fight over one camera). It
//! sends one command at a time until the camera acknowledges it (`z0 4y FF`: the command holds socket
//! y), then the next may go while the first executes; the camera has two sockets. A command's answer is
//! its completion (`z0 5y FF`) or its error (`z0 6y ee FF`: length, syntax, cancelled, no socket, not
//! executable -> DEVICE_REJECTED). "Buffer full" means the camera took nothing, so the command is sent
//! again one frame later (at most three tries). No ACK or no completion in time is DEVICE_TIMEOUT: the
//! command is not sent again, and an answered inquiry must come before the next command, so a late ACK
//! is never taken for another command's (the rules are in `sockets.rs`). A header byte in the middle of
//! a packet starts a new packet: a reply cut short (a cable pulled mid-answer) never swallows the next
//! one. Health is the power inquiry.
//!
//! Actions, for camera `address` (1-7, from the endpoint `serial:///dev/ttyUSB0?baud=9600&address=1`):
//! `preset_recall` (`preset` 0-127), `pan_tilt` (`direction` up/down/left/right/upleft/upright/downleft/
//! downright, `pan_speed` 1-24, `tilt_speed` 1-20), `stop` (pan/tilt stop; mark it `emergency` in the
//! manifest, so it overtakes and ends the queued moves), `tally` (`on` true/false: the camera's own tally
//! lamp, CAM_Tally), `zoom` (`direction` tele/wide/stop, `speed` 0-7).

use super::supervisor::{Device, Refusable, supervise};
use crate::backoff::Backoff;
use std::time::Duration;

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt as _, SerialStream};

use crate::capability::OutcomeFuture;
use crate::capability::Plan;
use crate::drivers::{Driver, HealthFuture};

mod sockets;

use sockets::{Request, Sockets};

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
        let (path, options) = super::serial_endpoint(text, "serial:///dev/PORT?baud=9600&address=1")?;
        let mut e = Endpoint { path, baud: 9600, address: 1 };
        for (k, v) in options {
            match k {
                "baud" => e.baud = v.parse().map_err(|_| "baud must be a number")?,
                "address" => e.address = v.parse().ok().filter(|a| (1..=7).contains(a)).ok_or("address must be 1-7")?,
                _ => return Err(format!("unknown endpoint option {k:?}")),
            }
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
        // CAM_Tally: the camera's own tally lamp, 02 on, 03 off.
        "tally" => match body.args.get("on") {
            Some(ArgValue::Bool(on)) => Ok(vec![to, 0x01, 0x7E, 0x01, 0x0A, 0x00, if *on { 0x02 } else { 0x03 }, 0xFF]),
            _ => Err(bad(body, "needs on, true or false")),
        },
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

/// Splits the bytes from a serial line into VISCA packets. A packet ends with `FF`; its first byte is a
/// header (`0x80`-`0xFE`) and every byte after it is below `0x80`, so a header in the middle of a packet
/// means the packet before was cut short: it is dropped. Anything longer than 16 bytes is cut too.
#[derive(Debug, Default)]
pub struct Framer {
    packet: Vec<u8>,
}

impl Framer {
    /// Takes one byte; returns a packet when it is complete.
    pub fn push(&mut self, b: u8) -> Option<Vec<u8>> {
        if b == 0xFF {
            let p = std::mem::take(&mut self.packet);
            return (!p.is_empty()).then(|| [p, vec![0xFF]].concat());
        }
        if b & 0x80 != 0 || self.packet.len() >= 15 {
            self.packet.clear();
        }
        if b & 0x80 != 0 || !self.packet.is_empty() {
            self.packet.push(b);
        }
        None
    }
}

impl Refusable for Request {
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
    pub fn start(endpoint: Endpoint, timeout: Duration, backoff: Backoff, capability: String) -> Self {
        let (requests, rx) = mpsc::channel(64);
        let (address, path) = (endpoint.address, endpoint.path.clone());
        tokio::spawn(supervise(Port { endpoint, timeout, capability }, backoff, rx));
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

impl Device for Port {
    type Conn = SerialStream;
    type Request = Request;

    fn describe(&self) -> String {
        format!("VISCA {} on {}", self.capability, self.endpoint.path)
    }

    async fn connect(&self) -> Result<SerialStream, IfError> {
        tokio_serial::new(&self.endpoint.path, self.endpoint.baud).open_native_async().map_err(|e| self.unreachable(e))
    }

    async fn serve(&self, port: SerialStream, requests: &mut mpsc::Receiver<Request>) -> IfError {
        self.serve_on(port, requests).await
    }
}

struct Port {
    endpoint: Endpoint,
    timeout: Duration,
    capability: String,
}

impl Port {
    fn unreachable(&self, why: impl std::fmt::Display) -> IfError {
        IfError::format(ErrorCode::DeviceUnreachable, format_args!("camera on {}: {why}", self.endpoint.path))
    }

    /// Serves until the port fails; returns why. Whatever was in flight then ends with it.
    async fn serve_on(&self, mut port: SerialStream, requests: &mut mpsc::Receiver<Request>) -> IfError {
        let mut sockets = Sockets::new(self.endpoint.address, self.timeout);
        let why = self.exchange(&mut port, &mut sockets, requests).await;
        sockets.lost(&why);
        why
    }

    async fn exchange(
        &self,
        port: &mut SerialStream,
        s: &mut Sockets,
        requests: &mut mpsc::Receiver<Request>,
    ) -> IfError {
        let mut framer = Framer::default();
        let mut buf = [0u8; 64];
        loop {
            let next_due = s.next_due();
            let send = tokio::select! {
                n = port.read(&mut buf) => {
                    let n = match n {
                        Ok(0) => return self.unreachable("the port closed"),
                        Ok(n) => n,
                        Err(e) => return self.unreachable(e),
                    };
                    let now = Instant::now();
                    for p in buf[..n].iter().filter_map(|&b| framer.push(b)) {
                        s.on_packet(&p, now);
                    }
                    s.due(now)
                }
                req = requests.recv(), if s.ready() => match req {
                    Some(req) if req.answer.is_closed() => None,
                    Some(req) => Some(s.submit(req, Instant::now())),
                    None => return self.unreachable("driver stopped"),
                },
                () = async { match next_due { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    let now = Instant::now();
                    s.expire(now);
                    s.due(now)
                }
            };
            if let Some(packet) = send
                && let Err(e) = port.write_all(&packet).await
            {
                return self.unreachable(format_args!("could not send: {e}"));
            }
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
        let lamp = |on| packet(&with("tally", &[("on", ArgValue::Bool(on))]), 3).expect("ok");
        assert_eq!(lamp(true), [0x83, 0x01, 0x7E, 0x01, 0x0A, 0x00, 0x02, 0xFF]);
        assert_eq!(lamp(false), [0x83, 0x01, 0x7E, 0x01, 0x0A, 0x00, 0x03, 0xFF]);
        assert!(packet(&with("tally", &[("on", ArgValue::Int(1))]), 1).is_err());
        assert!(packet(&with("preset_recall", &[("preset", ArgValue::Int(200))]), 1).is_err());
        assert!(
            packet(&with("pan_tilt", &[("direction", ArgValue::Text("sideways".try_into().expect("short")))]), 1)
                .is_err()
        );
    }

    #[test]
    fn a_packet_cut_short_never_swallows_the_next_one() {
        let mut f = Framer::default();
        let bytes = [0x90, 0x4, 0x90, 0x41, 0xFF, 0x00, 0x12, 0xFF, 0x90, 0x51, 0xFF];
        let packets: Vec<Vec<u8>> = bytes.iter().filter_map(|&b| f.push(b)).collect();
        assert_eq!(packets, vec![vec![0x90, 0x41, 0xFF], vec![0x90, 0x51, 0xFF]]);
        let long: Vec<u8> = std::iter::once(0x90).chain(std::iter::repeat_n(0x01, 40)).chain([0xFF]).collect();
        assert_eq!(long.iter().filter_map(|&b| f.push(b)).count(), 0, "an overlong packet is dropped");
        assert_eq!([0x90, 0x42, 0xFF].iter().filter_map(|&b| f.push(b)).count(), 1);
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
