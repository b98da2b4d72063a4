//! What the driver knows of a VISCA-over-IP camera, as pure state: no socket and no clock of its own
//! (like `sockets.rs` for the serial line), so every rule is tested with plain values. The datagrams it
//! decides to send are queued and taken with [`Sequence::transmit`].
//!
//! The rules:
//! - every message carries a sequence number, one more than the last, and the camera answers with the
//!   number of the message it answers: replies are matched by number, never by order, so a late or
//!   repeated reply is never taken for another command's, whatever UDP loses or reorders;
//! - one command waits for its ACK at a time, as on a serial line; at most two execute (the camera's
//!   two sockets);
//! - no answer within the ACK wait: the same message is sent again with the same number, three sends in
//!   all, then DEVICE_TIMEOUT (it may have run). A camera never runs a number twice: one that had the
//!   command answers a repeat with "abnormality in the sequence number", which means it was performed
//!   and only its ACK was lost. Its completion is then waited for by number; if none comes in time the
//!   answer says it ran but was not seen to complete. A completion that comes without an ACK answers
//!   the command too;
//! - the same error to a command's first send means the camera does not know this driver's numbers (it
//!   restarted, or another controller reset it): it took nothing. What it was executing is unknown now.
//!   The driver sends RESET and, once the camera acknowledges it, sends the command again under the next
//!   number (numbers never start over on one connection, so none is given twice); An unanswered RESET loses the
//!   link (the supervisor connects again, which resets again);
//! - "buffer full": sent again one frame later under a new number (the camera answered the old one), at
//!   most three tries (ten for an emergency, which is sent even while both sockets execute: if the
//!   camera is full, the command running longest is cancelled and the emergency takes its socket);
//! - when the link is lost, a command that was sent ends DEVICE_TIMEOUT (its outcome is unknown), one
//!   that was not ends DEVICE_UNREACHABLE.

use std::collections::VecDeque;
use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use tokio::time::Instant;

use super::Request;
use super::command::hex;
use super::header::{self, BAD_MESSAGE, BAD_SEQUENCE, COMMAND, CONTROL, CONTROL_REPLY, INQUIRY, REPLY, RESET};
use super::reply::{BUFFER_FULL, CANCELLED, Reply, rejected};
use super::sockets::{FRAME, tries};

/// Sends of one message, the first included, before it is given up.
const SENDS: u8 = 3;

/// A camera over IP is always address 1: its replies start `90`.
const Z: u8 = 0x90;

/// How long a message waits for its first answer before it is sent again: a quarter of the answer
/// timeout, between 20 and 200 ms (a camera on the same network answers within milliseconds).
pub(crate) fn ack_wait(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(200))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sent, no ACK yet.
    Sent,
    /// Acknowledged: executing in socket 1 or 2.
    Executing(u8),
    /// The camera said it had it already (a repeat): performed; its completion not yet seen.
    Performed,
}

#[derive(Debug)]
struct Flight {
    req: Request,
    seq: u32,
    datagram: Vec<u8>,
    sends: u8,
    /// Tries after "buffer full", the first included.
    tries: u8,
    stage: Stage,
    resend_at: Option<Instant>,
    deadline: Instant,
}

#[derive(Debug)]
struct Reset {
    sends: u8,
    next_at: Instant,
}

/// A camera's sequence numbers and commands as the driver sees them.
#[derive(Debug)]
pub(crate) struct Sequence {
    timeout: Duration,
    wait: Duration,
    next: u32,
    flights: Vec<Flight>,
    /// Commands the camera refused with "buffer full": (request, tries so far, when it may go again).
    again: VecDeque<(Request, u8, Instant)>,
    /// A command held back while a RESET is answered, with its tries.
    held: Option<(Request, u8)>,
    resetting: Option<Reset>,
    out: VecDeque<Vec<u8>>,
    failed: Option<IfError>,
}

impl Sequence {
    /// After a RESET the camera acknowledged: the first number is 1.
    pub fn new(timeout: Duration) -> Self {
        Sequence {
            timeout,
            wait: ack_wait(timeout),
            next: 1,
            flights: Vec::new(),
            again: VecDeque::new(),
            held: None,
            resetting: None,
            out: VecDeque::new(),
            failed: None,
        }
    }

    /// Whether a new request may be taken: nothing waits for an ACK, a reset or to be sent again, and a
    /// socket is free (an `urgent` one goes even while both execute: the camera takes it or says
    /// "buffer full").
    pub fn ready_for(&self, urgent: bool) -> bool {
        self.failed.is_none() && self.held.is_none() && self.again.is_empty() && self.may_send(urgent)
    }

    /// Nothing waits for its ACK or a reset, and a socket is free unless `urgent`.
    fn may_send(&self, urgent: bool) -> bool {
        self.resetting.is_none()
            && !self.flights.iter().any(|f| f.stage == Stage::Sent)
            && (urgent || self.flights.len() < 2)
    }

    /// Takes a request: its datagram is queued.
    pub fn submit(&mut self, req: Request, now: Instant) {
        self.send(req, 1, now);
    }

    /// The next datagram to send.
    pub fn transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Why the link is lost, once it is.
    pub fn failed(&mut self) -> Option<IfError> {
        self.failed.take()
    }

    fn send(&mut self, req: Request, tries: u8, now: Instant) {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        let kind = if req.inquiry { INQUIRY } else { COMMAND };
        let datagram = header::encode(kind, seq, &req.packet);
        self.out.push_back(datagram.clone());
        self.flights.push(Flight {
            req,
            seq,
            datagram,
            sends: 1,
            tries,
            stage: Stage::Sent,
            resend_at: Some(now + self.wait),
            deadline: now + self.wait * u32::from(SENDS),
        });
    }

    /// The camera lost its count: what it was executing under the old numbers is unknown now (and those
    /// numbers are given out again after the reset).
    fn start_reset(&mut self, now: Instant) {
        for f in self.flights.drain(..) {
            let _ = f.req.answer.send(Err(IfError::format(
                ErrorCode::DeviceTimeout,
                format_args!(
                    "the camera lost its sequence numbers (restarted?) while {} ran; the outcome is unknown",
                    hex(&f.req.packet)
                ),
            )));
        }
        self.out.push_back(header::encode(CONTROL, 0, &RESET));
        self.resetting = Some(Reset { sends: 1, next_at: now + self.wait });
    }

    /// When something next falls due: a send again, a timeout, a command after "buffer full".
    pub fn next_due(&self) -> Option<Instant> {
        let flights = self.flights.iter().flat_map(|f| [f.resend_at, Some(f.deadline)]).flatten();
        let reset = self.resetting.as_ref().map(|r| r.next_at);
        flights.chain(reset).chain(self.again_due()).min()
    }

    /// When the command sent again after "buffer full" may go: its frame has passed and it may be sent
    /// (otherwise an ACK or a completion comes first).
    fn again_due(&self) -> Option<Instant> {
        self.again.front().filter(|(req, _, _)| self.may_send(req.urgent)).map(|(_, _, at)| *at)
    }

    /// Handles one datagram from the camera.
    pub fn on_datagram(&mut self, d: &[u8], now: Instant) {
        let m = match header::decode(d) {
            Ok(m) => m,
            Err(why) => return tracing::debug!(datagram = %hex(d), why, "not a VISCA-over-IP message; ignored"),
        };
        if m.kind == CONTROL_REPLY && m.payload == RESET {
            // The camera may answer a RESET under any number: its own is 0 now.
            // Numbers go on counting from where they were: one given before is never given again, so a
            // late reply to an old command is never taken for a new one.
            if self.resetting.take().is_some()
                && let Some((req, tries)) = self.held.take()
            {
                self.send(req, tries, now);
            }
            return;
        }
        let by_seq = self.flights.iter().position(|f| f.seq == m.seq);
        // A cancel's answer may come under the cancel's own number: it names the socket it freed.
        let cancelled = match (m.kind, Reply::read(Z, m.payload)) {
            (REPLY, Some(Reply::Error(y, CANCELLED))) if by_seq.is_none() => {
                self.flights.iter().position(|f| f.stage == Stage::Executing(y))
            }
            _ => None,
        };
        let Some(i) = by_seq.or(cancelled) else {
            return tracing::debug!(seq = m.seq, payload = %hex(m.payload), "a reply to no command in flight; ignored");
        };
        let (stage, inquiry, sends) = (self.flights[i].stage, self.flights[i].req.inquiry, self.flights[i].sends);
        match (m.kind, Reply::read(Z, m.payload)) {
            (REPLY, Some(Reply::Ack(y))) if stage == Stage::Sent && !inquiry => {
                let f = &mut self.flights[i];
                (f.stage, f.resend_at, f.deadline) = (Stage::Executing(y), None, now + self.timeout);
            }
            (REPLY, Some(Reply::Done(0, _))) if inquiry => self.answer(i, Ok(m.payload.to_vec())),
            (REPLY, Some(Reply::Done(1..=2, []))) if !inquiry => self.answer(i, Ok(m.payload.to_vec())),
            (REPLY, Some(Reply::Error(_, BUFFER_FULL))) if stage == Stage::Sent && !inquiry => {
                let f = self.flights.remove(i);
                // An emergency finds both sockets busy: the command running longest is cancelled (a STOP
                // means no more motion), and the emergency takes its socket a frame later.
                if f.req.urgent && f.tries == 1 {
                    self.cancel_oldest();
                }
                if f.tries < tries(&f.req) {
                    self.again.push_back((f.req, f.tries, now + FRAME));
                } else {
                    let _ = f.req.answer.send(Err(rejected(BUFFER_FULL, &f.req.packet)));
                }
            }
            (REPLY, Some(Reply::Error(_, code))) => {
                let packet = self.flights[i].req.packet.clone();
                self.answer(i, Err(rejected(code, &packet)));
            }
            (CONTROL_REPLY, _) if m.payload == BAD_SEQUENCE && stage == Stage::Sent && sends == 1 => {
                tracing::info!(seq = m.seq, "the camera does not know this sequence number; resetting it");
                let f = self.flights.remove(i);
                self.held = Some((f.req, f.tries));
                self.start_reset(now);
            }
            (CONTROL_REPLY, _) if m.payload == BAD_SEQUENCE && stage == Stage::Sent => {
                let f = &mut self.flights[i];
                (f.stage, f.resend_at, f.deadline) = (Stage::Performed, None, now + self.timeout);
            }
            (CONTROL_REPLY, _) if m.payload == BAD_MESSAGE => {
                let why = "the camera does not take this message (abnormality in the message type)";
                self.answer(i, Err(IfError::with(ErrorCode::DeviceRejected, why)));
            }
            _ => tracing::debug!(seq = m.seq, payload = %hex(m.payload), "unexpected VISCA reply ignored"),
        }
    }

    /// Cancels the command executing longest, when two execute (`81 2y FF`, a message of its own).
    fn cancel_oldest(&mut self) {
        let executing = self.flights.iter().filter_map(|f| match f.stage {
            Stage::Executing(y) => Some((f.deadline, y)),
            _ => None,
        });
        let oldest: Vec<(Instant, u8)> = executing.collect();
        if let [_, _] = oldest.as_slice()
            && let Some(&(_, y)) = oldest.iter().min()
        {
            let seq = self.next;
            self.next = self.next.wrapping_add(1);
            self.out.push_back(header::encode(COMMAND, seq, &[0x81, 0x20 | y, 0xFF]));
        }
    }

    fn answer(&mut self, i: usize, outcome: Result<Vec<u8>, IfError>) {
        let f = self.flights.remove(i);
        let _ = f.req.answer.send(outcome);
    }

    /// Sends again what waited for its ACK too long, ends what waited too long in all, and sends the
    /// commands whose frame after "buffer full" has passed.
    pub fn expire(&mut self, now: Instant) {
        if let Some(r) = self.resetting.as_mut().filter(|r| r.next_at <= now) {
            if r.sends < SENDS {
                r.sends += 1;
                r.next_at = now + self.wait;
                self.out.push_back(header::encode(CONTROL, 0, &RESET));
            } else {
                self.resetting = None;
                let why = "the camera did not acknowledge a RESET";
                if let Some((req, _)) = self.held.take() {
                    let _ = req.answer.send(Err(IfError::format(
                        ErrorCode::DeviceUnreachable,
                        format_args!("{why}; {} was not taken", hex(&req.packet)),
                    )));
                }
                self.failed = Some(IfError::with(ErrorCode::DeviceUnreachable, why));
            }
        }
        let mut i = 0;
        while i < self.flights.len() {
            let f = &mut self.flights[i];
            if f.deadline <= now {
                let outcome = match f.stage {
                    Stage::Performed => Ok(Vec::new()),
                    Stage::Sent => Err(self.timed_out(i, "ACK")),
                    Stage::Executing(_) => Err(self.timed_out(i, "completion")),
                };
                self.answer(i, outcome);
                continue;
            }
            if f.resend_at.is_some_and(|at| at <= now) {
                f.sends += 1;
                f.resend_at = (f.sends < SENDS).then(|| now + self.wait);
                self.out.push_back(f.datagram.clone());
            }
            i += 1;
        }
        if self.again_due().is_some_and(|at| at <= now)
            && let Some((req, tries, _)) = self.again.pop_front()
        {
            self.send(req, tries + 1, now);
        }
    }

    fn timed_out(&self, i: usize, what: &str) -> IfError {
        let f = &self.flights[i];
        IfError::format(
            ErrorCode::DeviceTimeout,
            format_args!(
                "no {what} for {} (sequence number {}, sent {} times); not sent again",
                hex(&f.req.packet),
                f.seq,
                f.sends
            ),
        )
    }

    /// The link is gone: everything ends, as sent (outcome unknown) or not sent.
    pub fn lost(&mut self, why: &IfError) {
        for f in self.flights.drain(..) {
            let _ = f.req.answer.send(Err(IfError::format(
                ErrorCode::DeviceTimeout,
                format_args!("the link was lost after {} was sent; the outcome is unknown", hex(&f.req.packet)),
            )));
        }
        let unsent = self.again.drain(..).map(|(req, _, _)| req).chain(self.held.take().map(|(req, _)| req));
        for req in unsent {
            let _ = req.answer.send(Err(why.clone()));
        }
    }
}

#[cfg(test)]
mod tests;
