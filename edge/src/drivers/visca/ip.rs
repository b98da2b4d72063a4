//! `visca-ip`: Sony's VISCA over IP, one UDP socket to the camera's port 52381.
//!
//! The socket is connected to the camera, so the kernel drops every datagram from anywhere else, and a
//! camera whose host says nothing listens (ICMP port unreachable) is refused at once; one that is off
//! answers nothing, and its RESET times out.
//! Connecting sends RESET and waits for the camera to acknowledge it, so this driver's sequence numbers
//! start where the camera's do; after that the rules of `sequence.rs` hold. The endpoint reads
//! `udp://HOST:52381` (the port may be left out); the camera address over IP is always 1.

use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::header::{self, CONTROL, CONTROL_REPLY, RESET};
use super::sequence::{Sequence, ack_wait};
use super::{Camera, Request, Waiting};
use crate::backoff::Backoff;
use crate::drivers::supervisor::{Device, supervise};

/// The name manifests use.
pub const DRIVER: &str = "visca-ip";

/// The port Sony's cameras listen on.
pub const PORT: u16 = 52381;

/// Where the camera is: `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host and port.
    pub addr: String,
}

impl Endpoint {
    /// Parses `udp://HOST:PORT` or `udp://HOST`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let rest = text.strip_prefix("udp://").ok_or("must read udp://HOST:52381")?;
        if rest.contains(['/', '?']) {
            return Err("takes no path or options: udp://HOST:52381".into());
        }
        let addr = if crate::drivers::is_host_port(rest) {
            rest.to_string()
        } else if !rest.is_empty() && !rest.contains(':') {
            format!("{rest}:{PORT}")
        } else {
            return Err("must read udp://HOST:52381".into());
        };
        Ok(Endpoint { addr })
    }
}

/// Starts the socket task: the driver of the camera at `endpoint`.
pub fn start(endpoint: Endpoint, timeout: Duration, backoff: Backoff, capability: String) -> Camera {
    let (requests, rx) = mpsc::channel(64);
    let place = endpoint.addr.clone();
    tokio::spawn(supervise(Link { endpoint, timeout, capability }, backoff, rx));
    Camera { requests, address: 1, place }
}

struct Link {
    endpoint: Endpoint,
    timeout: Duration,
    capability: String,
}

/// Room for any datagram: a VISCA message is at most 24 bytes, and anything longer is no message.
const DATAGRAM: usize = 64;

impl Link {
    fn unreachable(&self, why: impl std::fmt::Display) -> IfError {
        IfError::format(ErrorCode::DeviceUnreachable, format_args!("camera at {}: {why}", self.endpoint.addr))
    }

    fn io_error(&self, e: &std::io::Error) -> IfError {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => self.unreachable("refused (nothing listens on that port)"),
            _ => self.unreachable(e),
        }
    }

    /// RESET, sent up to three times, until the camera acknowledges it.
    async fn reset(&self, socket: &UdpSocket) -> Result<(), IfError> {
        let mut buf = [0u8; DATAGRAM];
        let reset = header::encode(CONTROL, 0, &RESET);
        for _ in 0..3 {
            socket.send(&reset).await.map_err(|e| self.io_error(&e))?;
            let until = Instant::now() + ack_wait(self.timeout);
            loop {
                match tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(self.io_error(&e)),
                    Ok(Ok(n)) => {
                        if header::decode(&buf[..n]).is_ok_and(|m| m.kind == CONTROL_REPLY && m.payload == RESET) {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Err(self.unreachable("no answer to RESET"))
    }

    async fn exchange(
        &self,
        socket: &UdpSocket,
        s: &mut Sequence,
        waiting: &mut Waiting,
        requests: &mut mpsc::Receiver<Request>,
    ) -> IfError {
        let mut buf = [0u8; DATAGRAM];
        loop {
            while let Some(req) = waiting.next(|urgent| s.ready_for(urgent)) {
                s.submit(req, Instant::now());
            }
            while let Some(d) = s.transmit() {
                if let Err(e) = socket.send(&d).await {
                    return self.io_error(&e);
                }
            }
            if let Some(why) = s.failed() {
                return self.unreachable(why.detail());
            }
            let next_due = s.next_due();
            tokio::select! {
                n = socket.recv(&mut buf) => match n {
                    Ok(n) => s.on_datagram(&buf[..n], Instant::now()),
                    Err(e) => return self.io_error(&e),
                },
                req = requests.recv() => match req {
                    Some(req) => waiting.push(req),
                    None => return self.unreachable("driver stopped"),
                },
                () = async { match next_due { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    s.expire(Instant::now());
                }
            }
        }
    }
}

impl Device for Link {
    type Conn = UdpSocket;
    type Request = Request;

    fn describe(&self) -> String {
        format!("VISCA {} at udp {}", self.capability, self.endpoint.addr)
    }

    async fn connect(&self) -> Result<UdpSocket, IfError> {
        let to = tokio::time::timeout(self.timeout, tokio::net::lookup_host(&self.endpoint.addr))
            .await
            .map_err(|_| self.unreachable("the name did not resolve in time"))?
            .map_err(|e| self.unreachable(e))?
            .next()
            .ok_or_else(|| self.unreachable("the name has no address"))?;
        let any: std::net::SocketAddr =
            if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
        let socket = UdpSocket::bind(any).await.map_err(|e| self.unreachable(e))?;
        socket.connect(to).await.map_err(|e| self.io_error(&e))?;
        self.reset(&socket).await?;
        Ok(socket)
    }

    async fn serve(&self, socket: UdpSocket, requests: &mut mpsc::Receiver<Request>) -> IfError {
        let mut s = Sequence::new(self.timeout);
        let mut waiting = Waiting::default();
        let why = self.exchange(&socket, &mut s, &mut waiting, requests).await;
        s.lost(&why);
        waiting.refuse(&why);
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_say_why() {
        assert_eq!(Endpoint::parse("udp://10.0.0.7:52381").expect("ok").addr, "10.0.0.7:52381");
        assert_eq!(Endpoint::parse("udp://cam-2.studio").expect("default port").addr, "cam-2.studio:52381");
        for bad in ["tcp://x:1", "udp://", "udp://x:0", "udp://x:port", "udp://x:1/path", "udp://x?address=2"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
