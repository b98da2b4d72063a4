//! Sony VISCA PTZ cameras, over a serial line (`visca-serial`) and over IP (`visca-ip`).
//!
//! Both speak the same commands and replies ([`command`], [`reply`]); what differs is how a reply is
//! matched to its command. On a serial line the order of the line is the only correlation
//! (`sockets.rs`); over IP every message carries a sequence number and the camera answers with it
//! (`sequence.rs`, the header in `header.rs`). Either way the driver sends one command at a time until
//! the camera acknowledges it (`z0 4y FF`: it holds socket y), and then the next may go while the first
//! executes: the camera has two sockets, so the lane gives the driver up to two commands at once (a zoom
//! need not wait for a preset move to end). An emergency (STOP) goes ahead of whatever waits, and is
//! sent even while both sockets execute: the camera either takes it or says "buffer full", and then it
//! goes again as soon as a socket is free. A command's answer is its completion (`z0 5y FF`) or its
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

use std::collections::VecDeque;

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
    /// An emergency (STOP): it goes before anything waiting, and even while both sockets execute.
    pub urgent: bool,
    /// The answer: the reply packet (empty: performed, its completion not seen), or why not.
    pub answer: oneshot::Sender<Result<Vec<u8>, IfError>>,
}

/// The requests a connection task holds until the camera may take them: emergencies first, each kind
/// in the order it came. The lane bounds how many there are.
#[derive(Debug, Default)]
pub(crate) struct Waiting(VecDeque<Request>);

impl Waiting {
    /// Holds `req`.
    pub fn push(&mut self, req: Request) {
        if req.urgent {
            let at = self.0.iter().take_while(|r| r.urgent).count();
            self.0.insert(at, req);
        } else {
            self.0.push_back(req);
        }
    }

    /// The next request, if `ready` (told whether it is urgent) lets it go now. One whose caller gave
    /// up waiting (the lane's timeout) is dropped: it must not reach the camera later.
    pub fn next(&mut self, ready: impl Fn(bool) -> bool) -> Option<Request> {
        while self.0.front().is_some_and(|r| r.answer.is_closed()) {
            self.0.pop_front();
        }
        if ready(self.0.front()?.urgent) { self.0.pop_front() } else { None }
    }

    /// The link is lost: every request held ends with `why` (none was sent).
    pub fn refuse(&mut self, why: &IfError) {
        for req in self.0.drain(..) {
            let _ = req.answer.send(Err(why.clone()));
        }
    }
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
    async fn send(&self, packet: Vec<u8>, inquiry: bool, urgent: bool) -> Result<Vec<u8>, IfError> {
        let (answer, wait) = oneshot::channel();
        let gone = || {
            IfError::format(
                ErrorCode::DeviceUnreachable,
                format_args!("camera on {}: the connection task stopped", self.place),
            )
        };
        self.requests.send(Request { packet, inquiry, urgent, answer }).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }
}

impl Camera {
    async fn command(&self, body: &EnvelopeBody, urgent: bool) -> crate::capability::Outcome {
        let p = packet(body, self.address)?;
        let sent = hex(&p);
        let reply = self.send(p, false, urgent).await?;
        // Over IP, a camera that had the command already may say so instead of completing it again.
        let completed = reply.get(1).is_some_and(|b| b & 0xF0 == 0x50);
        Ok(serde_json::json!({ "visca": sent, "completed": completed }))
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
        Box::pin(self.command(body, false))
    }

    fn apply_now<'a>(&'a self, body: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(self.command(body, true))
    }

    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move { self.send(command::power_inquiry(self.address), true, false).await.map(|_| ()) })
    }

    fn in_flight(&self) -> usize {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(packet: u8, urgent: bool) -> (Request, oneshot::Receiver<Result<Vec<u8>, IfError>>) {
        let (answer, rx) = oneshot::channel();
        (Request { packet: vec![packet], inquiry: false, urgent, answer }, rx)
    }

    #[test]
    fn emergencies_wait_first_in_order_and_abandoned_requests_are_dropped() {
        let mut w = Waiting::default();
        let (a, _ra) = request(1, false);
        let (b, rb) = request(2, false);
        let (stop1, _r1) = request(3, true);
        let (stop2, _r2) = request(4, true);
        for r in [a, b, stop1, stop2] {
            w.push(r);
        }
        drop(rb);
        assert!(w.next(|urgent| urgent).is_some_and(|r| r.packet == [3]), "the first emergency first");
        assert!(w.next(|urgent| urgent).is_some_and(|r| r.packet == [4]));
        assert!(w.next(|urgent| urgent).is_none(), "an ordinary command waits for a free socket");
        assert!(w.next(|_| true).is_some_and(|r| r.packet == [1]));
        assert!(w.next(|_| true).is_none(), "one whose caller gave up never goes");
    }
}
