//! `tsl-umd`: tally displays (the UMDs of a multiviewer, under-monitor displays) fed over TSL UMD.
//!
//! Endpoints: `udp://HOST:PORT?version=5&screen=0&charset=utf16` (v5.0 datagrams),
//! `tcp://HOST:PORT?version=5` (v5.0 in the DLE/STX stream wrapper), `udp://HOST:PORT?version=3.1`, and
//! `serial:///dev/ttyUSB0?baud=38400&version=3.1` (RS-422, 8E1). Options: `screen` (v5, default 0),
//! `charset` (`ascii`, the default, or `utf16`), `brightness` (0-3, default 3) and `refresh_s` (default
//! 5, `0` never): every display is sent again that often, since UMDs forget.
//!
//! Actions: `display` (`index`, and any of `text`, `left`, `text_tally`, `right` as off/red/green/amber,
//! `brightness`) changes what one display shows and sends it at once; `refresh` sends every display.
//! Tally bindings (`ifctl binding add --display N --follow SWITCHER --follow-input I`) drive `display`
//! through the lane like any command. The displays never answer, so a command is done when its bytes are
//! sent; a connection or a port that cannot be opened is `IF_ERR_401`, and health is the link opening.

pub mod codec;
pub mod model;

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use if_protocol::envelope::EnvelopeBody;
use if_protocol::{ErrorCode, IfError};
use tokio::io::AsyncWriteExt as _;
use tokio_serial::SerialPortBuilderExt as _;

use super::{Driver, HealthFuture};
use crate::capability::{OutcomeFuture, Plan};
use codec::Charset;
use model::{Framing, Model, Version};

/// The name manifests use.
pub const DRIVER: &str = "tsl-umd";

/// Where the displays are, and how they are spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A UDP destination, `HOST:PORT`.
    Udp(String),
    /// A TCP server, `HOST:PORT`.
    Tcp(String),
    /// A serial port and its baud rate (8E1).
    Serial(String, u32),
}

/// A parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where.
    pub transport: Transport,
    /// Which protocol.
    pub version: Version,
    /// The v5 screen.
    pub screen: u16,
    /// The v5 text encoding.
    pub charset: Charset,
    /// The brightness displays start with.
    pub brightness: u8,
    /// How often every display is sent again (`None`: never).
    pub refresh: Option<Duration>,
}

fn host_port(addr: &str) -> Result<String, String> {
    if super::is_host_port(addr) { Ok(addr.to_string()) } else { Err("needs HOST:PORT".into()) }
}

impl Endpoint {
    /// Parses one of the endpoint forms in the module documentation.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let form = "udp://HOST:PORT?version=5, tcp://HOST:PORT?version=5 or serial:///dev/PORT?version=3.1";
        let (transport, options): (Transport, Vec<(&str, &str)>) = if text.starts_with("serial://") {
            let (path, mut options) = super::serial_endpoint(text, form)?;
            let mut baud = 38_400;
            if let Some(i) = options.iter().position(|(k, _)| *k == "baud") {
                baud = options.remove(i).1.parse().map_err(|_| "baud must be a number")?;
            }
            (Transport::Serial(path, baud), options)
        } else {
            let (scheme, rest) = text.split_once("://").ok_or_else(|| format!("must read {form}"))?;
            let (addr, query) = rest.split_once('?').unwrap_or((rest, ""));
            let options = super::endpoint_options(query)?;
            match scheme {
                "udp" => (Transport::Udp(host_port(addr)?), options),
                "tcp" => (Transport::Tcp(host_port(addr)?), options),
                _ => return Err(format!("must read {form}")),
            }
        };
        let mut e = Endpoint {
            transport,
            version: Version::V5,
            screen: 0,
            charset: Charset::Ascii,
            brightness: 3,
            refresh: Some(Duration::from_secs(5)),
        };
        for (k, v) in options {
            match (k, v) {
                ("version", "5" | "5.0") => e.version = Version::V5,
                ("version", "3.1") => e.version = Version::V31,
                ("version", _) => return Err("version must be 5 or 3.1".into()),
                ("screen", v) => e.screen = v.parse().map_err(|_| "screen must be a number 0-65535")?,
                ("charset", "ascii") => e.charset = Charset::Ascii,
                ("charset", "utf16") => e.charset = Charset::Utf16,
                ("charset", _) => return Err("charset must be ascii or utf16".into()),
                ("brightness", v) => {
                    e.brightness = v.parse().ok().filter(|b| *b <= 3).ok_or("brightness must be 0-3")?;
                }
                ("refresh_s", v) => {
                    let s: u64 = v.parse().map_err(|_| "refresh_s must be a number of seconds")?;
                    e.refresh = (s > 0).then(|| Duration::from_secs(s));
                }
                _ => return Err(format!("unknown endpoint option {k:?}")),
            }
        }
        if e.version == Version::V31 && matches!(e.transport, Transport::Tcp(_)) {
            return Err("version 3.1 runs over udp or a serial port".into());
        }
        Ok(e)
    }

    fn framing(&self) -> Framing {
        match self.transport {
            Transport::Udp(_) => Framing::Datagram,
            Transport::Tcp(_) | Transport::Serial(..) => Framing::Stream,
        }
    }
}

/// An open link to the displays.
#[derive(Debug)]
enum Link {
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpStream),
    Serial(tokio_serial::SerialStream),
}

impl Link {
    async fn send(&mut self, frames: &[Vec<u8>]) -> std::io::Result<()> {
        for f in frames {
            match self {
                Link::Udp(s) => {
                    s.send(f).await?;
                }
                Link::Tcp(s) => s.write_all(f).await?,
                Link::Serial(s) => s.write_all(f).await?,
            }
        }
        match self {
            Link::Udp(_) => Ok(()),
            Link::Tcp(s) => s.flush().await,
            Link::Serial(s) => s.flush().await,
        }
    }
}

#[derive(Debug)]
struct Inner {
    id: String,
    endpoint: Endpoint,
    timeout: Duration,
    model: Mutex<Model>,
    link: tokio::sync::Mutex<Option<Link>>,
}

impl Inner {
    fn unreachable(&self, why: impl std::fmt::Display) -> IfError {
        IfError::format(ErrorCode::DeviceUnreachable, format_args!("{}: {why}", self.id))
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn open(&self) -> Result<Link, IfError> {
        let opening = async {
            match &self.endpoint.transport {
                Transport::Udp(addr) => {
                    let s = tokio::net::UdpSocket::bind("0.0.0.0:0").await.map_err(|e| self.unreachable(e))?;
                    s.connect(addr).await.map_err(|e| self.unreachable(format_args!("udp {addr}: {e}")))?;
                    Ok(Link::Udp(s))
                }
                Transport::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| self.unreachable(format_args!("tcp {addr}: {e}")))?;
                    let _ = s.set_nodelay(true);
                    Ok(Link::Tcp(s))
                }
                Transport::Serial(path, baud) => tokio_serial::new(path, *baud)
                    .data_bits(tokio_serial::DataBits::Eight)
                    .parity(tokio_serial::Parity::Even)
                    .stop_bits(tokio_serial::StopBits::One)
                    .open_native_async()
                    .map(Link::Serial)
                    .map_err(|e| self.unreachable(format_args!("{path}: {e}"))),
            }
        };
        tokio::time::timeout(self.timeout, opening).await.map_err(|_| self.unreachable("opening timed out"))?
    }

    /// Sends `frames`, opening the link first if it is closed; a failed send closes it.
    async fn send(&self, frames: &[Vec<u8>]) -> Result<(), IfError> {
        let mut link = self.link.lock().await;
        if link.is_none() {
            *link = Some(self.open().await?);
        }
        let Some(open) = link.as_mut() else { return Err(self.unreachable("no link")) };
        match tokio::time::timeout(self.timeout, open.send(frames)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *link = None;
                Err(self.unreachable(e))
            }
            Err(_) => {
                *link = None;
                Err(self.unreachable("sending timed out"))
            }
        }
    }

    async fn apply(&self, body: &EnvelopeBody) -> Result<serde_json::Value, IfError> {
        let framing = self.endpoint.framing();
        match body.action.as_str() {
            "display" => {
                let (d, frames) = {
                    let m = self.model();
                    let d = m.updated(body)?;
                    let frames = m.frames_of(&d, framing);
                    (d, frames)
                };
                self.send(&frames).await?;
                self.model().set(d.clone());
                let bytes: usize = frames.iter().map(Vec::len).sum();
                Ok(serde_json::json!({ "index": d.index, "text": d.text, "bytes": bytes }))
            }
            "refresh" => {
                let (n, frames) = {
                    let m = self.model();
                    (m.len(), m.frames_all(framing))
                };
                self.send(&frames).await?;
                Ok(serde_json::json!({ "displays": n }))
            }
            other => Err(IfError::format(ErrorCode::InvalidEnvelope, format_args!("tsl-umd has no action {other}"))),
        }
    }
}

/// The driver.
#[derive(Debug)]
pub struct Tsl {
    inner: Arc<Inner>,
}

impl Tsl {
    /// The output, with its refresh task on the current runtime (it ends with the driver).
    pub fn start(endpoint: Endpoint, timeout: Duration, id: String) -> Self {
        let model = Model::new(endpoint.version, endpoint.screen, endpoint.charset, endpoint.brightness);
        let refresh = endpoint.refresh;
        let inner =
            Arc::new(Inner { id, endpoint, timeout, model: Mutex::new(model), link: tokio::sync::Mutex::new(None) });
        if let Some(every) = refresh {
            tokio::spawn(refresh_loop(Arc::downgrade(&inner), every));
        }
        Tsl { inner }
    }
}

/// Sends every display again each `every`, while the driver exists.
async fn refresh_loop(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let frames = inner.model().frames_all(inner.endpoint.framing());
        if !frames.is_empty()
            && let Err(e) = inner.send(&frames).await
        {
            tracing::debug!(capability = %inner.id, error = %e, "tally displays: refresh not sent");
        }
    }
}

impl Driver for Tsl {
    fn plan(&self, body: &EnvelopeBody) -> Plan {
        let m = self.inner.model();
        match body.action.as_str() {
            "display" => match m.updated(body) {
                Ok(d) => {
                    let sends = m.frames_of(&d, self.inner.endpoint.framing()).iter().map(hex::encode).collect();
                    Plan { sends, problems: Vec::new() }
                }
                Err(e) => Plan { sends: Vec::new(), problems: vec![e] },
            },
            "refresh" => Plan { sends: vec![format!("every display ({})", m.len())], problems: Vec::new() },
            other => Plan {
                sends: Vec::new(),
                problems: vec![IfError::format(
                    ErrorCode::InvalidEnvelope,
                    format_args!("tsl-umd has no action {other}"),
                )],
            },
        }
    }

    fn apply<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(self.inner.apply(body))
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move {
            let mut link = self.inner.link.lock().await;
            if link.is_none() {
                *link = Some(self.inner.open().await?);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_form_and_its_options() {
        let e = Endpoint::parse("udp://10.0.0.9:8900?version=5&screen=2&charset=utf16&refresh_s=0").expect("valid");
        assert_eq!(e.transport, Transport::Udp("10.0.0.9:8900".into()));
        assert_eq!((e.version, e.screen, e.charset, e.refresh), (Version::V5, 2, Charset::Utf16, None));
        let e = Endpoint::parse("tcp://umd.studio:5727").expect("valid");
        assert_eq!((e.framing(), e.refresh, e.brightness), (Framing::Stream, Some(Duration::from_secs(5)), 3));
        let e = Endpoint::parse("serial:///dev/ttyUSB2?version=3.1&brightness=1").expect("valid");
        assert_eq!(e.transport, Transport::Serial("/dev/ttyUSB2".into(), 38_400));
        assert_eq!((e.version, e.brightness), (Version::V31, 1));
        for (bad, why) in [
            ("http://x:1", "must read"),
            ("udp://x", "HOST:PORT"),
            ("udp://x:0", "HOST:PORT"),
            ("udp://x:1?version=4", "version"),
            ("udp://x:1?charset=latin1", "charset"),
            ("udp://x:1?brightness=9", "brightness"),
            ("udp://x:1?screen=-1", "screen"),
            ("udp://x:1?colour=red", "unknown endpoint option"),
            ("tcp://x:1?version=3.1", "udp or a serial port"),
            ("serial:///dev/x?baud=fast", "baud"),
        ] {
            let e = Endpoint::parse(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
