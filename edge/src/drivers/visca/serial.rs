//! `visca-serial`: Sony VISCA over a serial port, through tokio-serial.
//!
//! One task owns the port (opened exclusively: two controllers must not fight over one camera). A
//! serial line carries no request id, so the order of the line is the only correlation: the rules that
//! keep it are in `sockets.rs`. A header byte in the middle of a packet starts a new packet: a reply
//! cut short (a cable pulled mid-answer) never swallows the next one. The endpoint reads
//! `serial:///dev/ttyUSB0?baud=9600&address=1` (camera address 1-7).

use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt as _, SerialStream};

use super::sockets::Sockets;
use super::{Camera, Request, Waiting};
use crate::backoff::Backoff;
use crate::drivers::supervisor::{Device, supervise};

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
        let (path, options) = crate::drivers::serial_endpoint(text, "serial:///dev/PORT?baud=9600&address=1")?;
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

/// Starts the port task: the driver of the camera at `endpoint`.
pub fn start(endpoint: Endpoint, timeout: Duration, backoff: Backoff, capability: String) -> Camera {
    let (requests, rx) = mpsc::channel(64);
    let (address, place) = (endpoint.address, endpoint.path.clone());
    tokio::spawn(supervise(Port { endpoint, timeout, capability }, backoff, rx));
    Camera { requests, address, place }
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

    /// Serves until the port fails; returns why. Whatever was in flight or waiting then ends with it.
    async fn serve_on(&self, mut port: SerialStream, requests: &mut mpsc::Receiver<Request>) -> IfError {
        let mut sockets = Sockets::new(self.endpoint.address, self.timeout);
        let mut waiting = Waiting::default();
        let why = self.exchange(&mut port, &mut sockets, &mut waiting, requests).await;
        sockets.lost(&why);
        waiting.refuse(&why);
        why
    }

    async fn exchange(
        &self,
        port: &mut SerialStream,
        s: &mut Sockets,
        waiting: &mut Waiting,
        requests: &mut mpsc::Receiver<Request>,
    ) -> IfError {
        let mut framer = Framer::default();
        let mut buf = [0u8; 64];
        loop {
            let mut sends: Vec<Vec<u8>> = Vec::new();
            while let Some(req) = waiting.next(|urgent| s.ready_for(urgent)) {
                sends.push(s.submit(req, Instant::now()));
            }
            for packet in sends {
                if let Err(e) = port.write_all(&packet).await {
                    return self.unreachable(format_args!("could not send: {e}"));
                }
            }
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
                req = requests.recv() => match req {
                    Some(req) => {
                        waiting.push(req);
                        None
                    }
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
    use super::*;

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
