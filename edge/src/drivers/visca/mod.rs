//! Sony VISCA PTZ cameras, over a serial line (`visca-serial`) and over IP (`visca-ip`).
//!
//! Both speak the same commands and replies ([`command`], [`reply`]); what differs is how a reply is
//! matched to its command. On a serial line the order of the line is the only correlation
//! (`sockets.rs`); over IP every message carries a sequence number and the camera answers with it
//! (`sequence.rs`, the header in `header.rs`). Either way the driver sends one command at a time until
//! the camera acknowledges it (`z0 4y FF`: it holds socket y), and then the next may go while the first
//! executes: the camera has two sockets, so the lane gives the driver up to two commands at once (a zoom
//! need not wait for a preset move to end). A command's answer is its completion (`z0 5y FF`) or its
//! error (`z0 6y ee FF`: length, syntax, cancelled, no socket, not executable -> DEVICE_REJECTED).
//! "Buffer full" means the camera took nothing, so the command is sent again one frame later (at most
//! three tries). Health is the power inquiry.
//!
//! Actions: `preset_recall` (`preset` 0-127), `pan_tilt` (`direction` up/down/left/right/upleft/upright/
//! downleft/downright, `pan_speed` 1-24, `tilt_speed` 1-20), `stop` (pan/tilt stop; mark it `emergency`
//! in the manifest, so it overtakes and ends the queued moves), `tally` (`on` true/false: the camera's
//! own tally lamp, CAM_Tally), `zoom` (`direction` tele/wide/stop, `speed` 0-7).

mod command;
mod header;
pub mod ip;
mod reply;
mod sequence;
pub mod serial;
mod sockets;

pub use command::{hex, packet};

use if_protocol::envelope::EnvelopeBody;
use if_protocol::{ErrorCode, IfError};
use tokio::sync::{mpsc, oneshot};

use super::supervisor::Refusable;
use crate::capability::{OutcomeFuture, Plan};
use crate::drivers::{Driver, HealthFuture};

/// A request for the camera and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    /// The packet.
    pub packet: Vec<u8>,
    /// An inquiry (`8x 09 ...`): answered `z0 50 ...`, with no ACK.
    pub inquiry: bool,
    /// The answer: the reply packet, or why not.
    pub answer: oneshot::Sender<Result<Vec<u8>, IfError>>,
}

impl Refusable for Request {
    fn refuse(self, why: IfError) {
        let _ = self.answer.send(Err(why));
    }
}

/// The driver of one camera: a handle on the task that owns its port or socket.
#[derive(Debug)]
pub struct Camera {
    requests: mpsc::Sender<Request>,
    address: u8,
    /// Where it is, for errors (`/dev/ttyUSB0`, `10.0.0.7:52381`).
    place: String,
}

impl Camera {
    async fn send(&self, packet: Vec<u8>, inquiry: bool) -> Result<Vec<u8>, IfError> {
        let (answer, wait) = oneshot::channel();
        let gone = || {
            IfError::format(
                ErrorCode::DeviceUnreachable,
                format_args!("camera on {}: the connection task stopped", self.place),
            )
        };
        self.requests.send(Request { packet, inquiry, answer }).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}

impl Driver for Camera {
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
            let reply = self.send(p, false).await?;
            // Over IP, a camera that had the command already may say so instead of completing it again.
            let completed = reply.get(1).is_some_and(|b| b & 0xF0 == 0x50);
            Ok(serde_json::json!({ "visca": sent, "completed": completed }))
        })
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move { self.send(command::power_inquiry(self.address), true).await.map(|_| ()) })
    }

    fn in_flight(&self) -> usize {
        2
    }
}
