//! What the driver knows of the camera's two command sockets, as pure state: no port, no clock of its
//! own, so every rule is tested with plain values.
//!
//! VISCA replies carry no request id: an ACK (`z0 4y FF`) belongs to the command sent last, and a
//! completion or error names only a socket. The order of the line is the only correlation, so the rules
//! keep it intact:
//! - one command waits for its ACK at a time; a command executes in the socket its ACK named;
//! - "buffer full" means the camera took nothing: the command is sent again one frame later, at most
//!   three tries in all. An emergency is sent even while both sockets execute; if the camera is full,
//!   the command running longest is cancelled (`8x 2y FF`, answered "command cancelled") and the
//!   emergency takes its socket;
//! - a command with no ACK in time is DEVICE_TIMEOUT and never sent again; its ACK may still come, and
//!   must not be taken for the next command's. So before the next command, an inquiry goes out and must
//!   be answered (inquiries get no ACK, and the camera answers in order): once its answer is in, every
//!   reply to the lost command has passed. If that inquiry goes unanswered too, the held command is
//!   refused as unreachable: it was never sent;
//! - when the port is lost, a command that was sent ends DEVICE_TIMEOUT (its outcome is unknown), one
//!   that was not ends DEVICE_UNREACHABLE (safe to try again).

use std::collections::VecDeque;
use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Request;
use super::command::hex;
use super::reply::{BUFFER_FULL, Reply, rejected};

/// How long a "buffer full" command waits before it is sent again: about one video frame.
pub(crate) const FRAME: Duration = Duration::from_millis(20);

/// Tries after "buffer full", the first included: three, and ten frames for an emergency, which is sent
/// while both sockets execute and goes as soon as the camera frees one.
pub(crate) fn tries(req: &Request) -> u8 {
    if req.urgent { 10 } else { 3 }
}

#[derive(Debug)]
struct InFlight {
    req: Request,
    deadline: Instant,
    tries: u8,
}

/// The camera's sockets as the driver sees them.
#[derive(Debug)]
pub(crate) struct Sockets {
    /// The camera's reply header, `z0` = `0x80 | (address + 8) << 4`.
    z: u8,
    address: u8,
    /// The socket whose command an emergency cancels, to be sent next.
    cancel: Option<u8>,
    timeout: Duration,
    sync_inquiry: Vec<u8>,
    waiting_ack: Option<InFlight>,
    executing: [Option<InFlight>; 2],
    /// Commands the camera refused with "buffer full", and the time they may go again.
    again: VecDeque<(InFlight, Instant)>,
    /// A command held back until the line is in order again.
    held: Option<Request>,
    /// An ACK was lost: the next command waits for an answered inquiry.
    out_of_step: bool,
}

impl Sockets {
    /// For the camera at `address` (1-7), with the manifest's answer `timeout`.
    pub fn new(address: u8, timeout: Duration) -> Self {
        Sockets {
            z: 0x80 | ((address + 8) << 4),
            address,
            cancel: None,
            timeout,
            // The version inquiry: not the health probe's power inquiry, so the two are told apart.
            sync_inquiry: vec![0x80 | address, 0x09, 0x00, 0x02, 0xFF],
            waiting_ack: None,
            executing: [None, None],
            again: VecDeque::new(),
            held: None,
            out_of_step: false,
        }
    }

    /// Whether a new request may be taken: nothing waits for an ACK or to be sent, and a socket is free
    /// (an `urgent` one goes even while both execute: the camera takes it or says "buffer full").
    pub fn ready_for(&self, urgent: bool) -> bool {
        self.waiting_ack.is_none() && self.held.is_none() && self.again.is_empty() && (urgent || self.free())
    }

    fn free(&self) -> bool {
        self.executing.iter().any(Option::is_none)
    }

    /// Takes a request; returns the packet to write now.
    pub fn submit(&mut self, req: Request, now: Instant) -> Vec<u8> {
        let req = if self.out_of_step && !req.inquiry {
            let urgent = req.urgent;
            self.held = Some(req);
            let (answer, _) = oneshot::channel();
            Request { packet: self.sync_inquiry.clone(), inquiry: true, urgent, answer }
        } else {
            req
        };
        let packet = req.packet.clone();
        self.waiting_ack = Some(InFlight { req, deadline: now + self.timeout, tries: 1 });
        packet
    }

    /// A command due to go now (sent again after "buffer full", or held for an inquiry now answered).
    pub fn due(&mut self, now: Instant) -> Option<Vec<u8>> {
        // A cancel has no ACK; its answer names the socket it freed.
        if let Some(y) = self.cancel.take() {
            return Some(vec![0x80 | self.address, 0x20 | y, 0xFF]);
        }
        if self.waiting_ack.is_some() {
            return None;
        }
        let f = if !self.out_of_step
            && self.held.as_ref().is_some_and(|r| r.urgent || self.free())
            && let Some(req) = self.held.take()
        {
            InFlight { req, deadline: now + self.timeout, tries: 1 }
        } else if self.again_due().is_some_and(|at| at <= now) {
            let (mut f, _) = self.again.pop_front()?;
            f.tries += 1;
            f.deadline = now + self.timeout;
            f
        } else {
            return None;
        };
        let packet = f.req.packet.clone();
        self.waiting_ack = Some(f);
        Some(packet)
    }

    /// The socket (1 or 2) of the command executing longest, when both are busy.
    fn oldest(&self) -> Option<u8> {
        match &self.executing {
            [Some(a), Some(b)] => Some(if a.deadline <= b.deadline { 1 } else { 2 }),
            _ => None,
        }
    }

    /// When the command sent again after "buffer full" may go: its frame has passed, and a socket is
    /// free unless it is urgent (otherwise a completion frees one first).
    fn again_due(&self) -> Option<Instant> {
        self.again.front().filter(|(f, _)| f.req.urgent || self.free()).map(|(_, at)| *at)
    }

    /// When something next falls due: a timeout, or a command to send again.
    pub fn next_due(&self) -> Option<Instant> {
        let timeouts = self.waiting_ack.iter().chain(self.executing.iter().flatten()).map(|f| f.deadline);
        timeouts.chain(self.again_due()).min()
    }

    /// Handles one packet from the camera.
    pub fn on_packet(&mut self, p: &[u8], now: Instant) {
        let waiting_inquiry = self.waiting_ack.as_ref().map(|f| f.req.inquiry);
        match Reply::read(self.z, p) {
            Some(Reply::Done(0, _)) if waiting_inquiry == Some(true) => {
                self.out_of_step = false;
                if let Some(f) = self.waiting_ack.take() {
                    let _ = f.req.answer.send(Ok(p.to_vec()));
                }
            }
            Some(Reply::Ack(y)) if waiting_inquiry == Some(false) => {
                if let Some(f) = self.waiting_ack.take() {
                    let taken = InFlight { deadline: now + self.timeout, ..f };
                    // The camera gives only a free socket: the command there had ended unseen.
                    if let Some(old) = self.executing[usize::from(y - 1)].replace(taken) {
                        self.time_out(old, "completion");
                    }
                }
            }
            Some(Reply::Done(y @ 1..=2, [])) => {
                if let Some(f) = self.executing[usize::from(y - 1)].take() {
                    let _ = f.req.answer.send(Ok(p.to_vec()));
                }
            }
            Some(Reply::Error(_, BUFFER_FULL)) if waiting_inquiry == Some(false) => {
                if let Some(f) = self.waiting_ack.take() {
                    // An emergency finds both sockets busy: the command running longest is cancelled
                    // (a STOP means no more motion), and the emergency takes its socket a frame later.
                    if f.req.urgent && f.tries == 1 {
                        self.cancel = self.oldest();
                    }
                    if f.tries < tries(&f.req) {
                        self.again.push_back((f, now + FRAME));
                    } else {
                        let _ = f.req.answer.send(Err(rejected(BUFFER_FULL, &f.req.packet)));
                    }
                }
            }
            Some(Reply::Error(y, code)) => {
                // Some cameras name a socket in the error to a command that never got one.
                let f = match y {
                    s @ (1 | 2) if self.executing[usize::from(s - 1)].is_some() => {
                        self.executing[usize::from(s - 1)].take()
                    }
                    _ => {
                        // An answer to the inquiry, even an error, puts the line in step again.
                        self.out_of_step &= waiting_inquiry != Some(true);
                        self.waiting_ack.take()
                    }
                };
                if let Some(f) = f {
                    let _ = f.req.answer.send(Err(rejected(code, &f.req.packet)));
                }
            }
            _ => tracing::debug!(packet = %hex(p), "unexpected VISCA packet ignored"),
        }
    }

    /// Ends what has waited too long.
    pub fn expire(&mut self, now: Instant) {
        let late = |f: &Option<InFlight>| f.as_ref().is_some_and(|f| f.deadline <= now);
        if late(&self.waiting_ack)
            && let Some(f) = self.waiting_ack.take()
        {
            if !f.req.inquiry {
                self.out_of_step = true;
            }
            if let Some(held) = self.held.take() {
                let why = "the camera did not answer an inquiry after a lost ACK; not sent";
                let _ = held.answer.send(Err(IfError::with(ErrorCode::DeviceUnreachable, why)));
            }
            self.time_out(f, "ACK");
        }
        for i in 0..2 {
            if late(&self.executing[i])
                && let Some(f) = self.executing[i].take()
            {
                self.time_out(f, "completion");
            }
        }
    }

    fn time_out(&self, f: InFlight, what: &str) {
        let _ = f.req.answer.send(Err(IfError::format(
            ErrorCode::DeviceTimeout,
            format_args!("no {what} for {} within {} ms; not sent again", hex(&f.req.packet), self.timeout.as_millis()),
        )));
    }

    /// The port is gone: everything ends, as sent (outcome unknown) or not sent.
    pub fn lost(&mut self, why: &IfError) {
        let sent = self.waiting_ack.take().into_iter().chain(self.executing.iter_mut().filter_map(Option::take));
        for f in sent {
            let _ = f.req.answer.send(Err(IfError::format(
                ErrorCode::DeviceTimeout,
                format_args!("the port was lost after {} was sent; the outcome is unknown", hex(&f.req.packet)),
            )));
        }
        let unsent = self.again.drain(..).map(|(f, _)| f.req).chain(self.held.take());
        for req in unsent {
            let _ = req.answer.send(Err(why.clone()));
        }
        self.out_of_step = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = oneshot::Receiver<Result<Vec<u8>, IfError>>;

    fn request(packet: &[u8], inquiry: bool) -> (Request, Answer) {
        let (answer, rx) = oneshot::channel();
        (Request { packet: packet.to_vec(), inquiry, urgent: false, answer }, rx)
    }

    const MOVE: [u8; 9] = [0x81, 0x01, 0x06, 0x01, 8, 8, 0x01, 0x03, 0xFF];
    const RECALL: [u8; 7] = [0x81, 0x01, 0x04, 0x3F, 0x02, 5, 0xFF];

    fn code(rx: &mut Answer) -> Option<ErrorCode> {
        rx.try_recv().ok().and_then(|r| r.err()).map(|e| e.code())
    }

    #[test]
    fn an_ack_then_a_completion_answers_the_command_and_two_may_execute() {
        let t = Instant::now();
        let mut s = Sockets::new(1, Duration::from_millis(500));
        let (a, mut ra) = request(&MOVE, false);
        assert_eq!(s.submit(a, t), MOVE);
        assert!(!s.ready_for(false), "one command waits for its ACK at a time");
        s.on_packet(&[0x90, 0x41, 0xFF], t);
        assert!(s.ready_for(false));
        let (b, mut rb) = request(&RECALL, false);
        s.submit(b, t);
        s.on_packet(&[0x90, 0x42, 0xFF], t);
        assert!(!s.ready_for(false), "both sockets busy");
        s.on_packet(&[0x90, 0x52, 0xFF], t);
        assert_eq!(rb.try_recv().expect("answered").expect("ok"), [0x90, 0x52, 0xFF]);
        assert!(ra.try_recv().is_err(), "the first still executes");
        s.on_packet(&[0x90, 0x61, 0x41, 0xFF], t);
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceRejected));
        let (c, mut rc) = request(&MOVE, false);
        s.submit(c, t);
        s.on_packet(&[0x90, 0x61, 0x41, 0xFF], t);
        assert_eq!(code(&mut rc), Some(ErrorCode::DeviceRejected), "an error naming a free socket: the waiting one");
    }

    #[test]
    fn buffer_full_is_sent_again_a_frame_later_at_most_three_times() {
        let t = Instant::now();
        let mut s = Sockets::new(1, Duration::from_millis(500));
        let (a, mut ra) = request(&MOVE, false);
        s.submit(a, t);
        for i in 1..3u32 {
            s.on_packet(&[0x90, 0x60, 0x03, 0xFF], t);
            assert_eq!(s.due(t), None, "not before a frame has passed");
            assert_eq!(s.due(t + FRAME * i), Some(MOVE.to_vec()));
        }
        s.on_packet(&[0x90, 0x60, 0x03, 0xFF], t);
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceRejected), "three tries in all");
    }

    #[test]
    fn after_a_lost_ack_an_answered_inquiry_comes_before_the_next_command() {
        let t = Instant::now();
        let timeout = Duration::from_millis(400);
        let mut s = Sockets::new(1, timeout);
        let (a, mut ra) = request(&MOVE, false);
        s.submit(a, t);
        s.expire(t + timeout);
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceTimeout));
        let (b, mut rb) = request(&RECALL, false);
        assert_eq!(s.submit(b, t + timeout), [0x81, 0x09, 0x00, 0x02, 0xFF], "an inquiry goes first");
        // The lost command's late ACK and completion: neither is taken for the held command.
        s.on_packet(&[0x90, 0x41, 0xFF], t + timeout);
        s.on_packet(&[0x90, 0x51, 0xFF], t + timeout);
        assert!(rb.try_recv().is_err());
        assert_eq!(s.due(t + timeout), None, "still waiting for the inquiry's answer");
        s.on_packet(&[0x90, 0x50, 0x02, 0xFF], t + timeout);
        assert_eq!(s.due(t + timeout), Some(RECALL.to_vec()), "in step again: the command goes");
        s.on_packet(&[0x90, 0x41, 0xFF], t + timeout);
        s.on_packet(&[0x90, 0x51, 0xFF], t + timeout);
        assert!(rb.try_recv().expect("answered").is_ok());
    }

    #[test]
    fn an_unanswered_inquiry_after_a_lost_ack_refuses_the_held_command_as_unsent() {
        let t = Instant::now();
        let timeout = Duration::from_millis(400);
        let mut s = Sockets::new(1, timeout);
        let (a, _ra) = request(&MOVE, false);
        s.submit(a, t);
        s.expire(t + timeout);
        let (b, mut rb) = request(&RECALL, false);
        s.submit(b, t + timeout);
        s.expire(t + timeout * 2);
        assert_eq!(code(&mut rb), Some(ErrorCode::DeviceUnreachable));
        let (c, _rc) = request(&RECALL, false);
        assert_eq!(s.submit(c, t + timeout * 2)[1], 0x09, "still out of step: an inquiry first again");
    }

    #[test]
    fn a_lost_port_ends_sent_commands_as_unknown_and_unsent_ones_as_unreachable() {
        let t = Instant::now();
        let mut s = Sockets::new(1, Duration::from_millis(500));
        let (a, mut ra) = request(&MOVE, false);
        s.submit(a, t);
        s.on_packet(&[0x90, 0x41, 0xFF], t);
        let (b, mut rb) = request(&RECALL, false);
        s.submit(b, t);
        s.on_packet(&[0x90, 0x60, 0x03, 0xFF], t);
        s.lost(&IfError::with(ErrorCode::DeviceUnreachable, "port closed"));
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceTimeout));
        assert_eq!(code(&mut rb), Some(ErrorCode::DeviceUnreachable));
    }
}

#[cfg(test)]
mod urgent {
    use super::*;

    #[test]
    fn an_urgent_command_goes_while_both_sockets_execute_and_cancels_the_oldest_when_the_camera_is_full() {
        let t = Instant::now();
        let mut s = Sockets::new(1, Duration::from_millis(500));
        let mut answers = Vec::new();
        for p in [[0x81, 0x01, 0x04, 0x3F, 0x02, 1, 0xFF], [0x81, 0x01, 0x04, 0x3F, 0x02, 2, 0xFF]] {
            let (answer, rx) = oneshot::channel();
            answers.push(rx);
            s.submit(Request { packet: p.to_vec(), inquiry: false, urgent: false, answer }, t);
            let y = 0x40 + u8::try_from(answers.len()).unwrap_or(1);
            s.on_packet(&[0x90, y, 0xFF], t);
        }
        assert!(!s.ready_for(false) && s.ready_for(true), "both sockets busy: only an emergency goes");
        let (answer, mut rstop) = oneshot::channel();
        let stop = [0x81, 0x01, 0x06, 0x01, 0x01, 0x01, 0x03, 0x03, 0xFF];
        assert_eq!(s.submit(Request { packet: stop.to_vec(), inquiry: false, urgent: true, answer }, t), stop);
        // Buffer full: the recall running longest (socket 1) is cancelled, and the stop takes its socket.
        s.on_packet(&[0x90, 0x60, 0x03, 0xFF], t);
        assert_eq!(s.due(t), Some(vec![0x81, 0x21, 0xFF]), "cancel socket 1");
        s.on_packet(&[0x90, 0x61, 0x04, 0xFF], t);
        let cancelled = answers[0].try_recv().expect("answered").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(cancelled.contains("command cancelled"), "{cancelled}");
        assert_eq!(s.due(t + FRAME), Some(stop.to_vec()), "the stop again, a frame later");
        s.on_packet(&[0x90, 0x41, 0xFF], t + FRAME);
        s.on_packet(&[0x90, 0x51, 0xFF], t + FRAME);
        assert!(rstop.try_recv().expect("answered").is_ok(), "taken in the freed socket");
        assert!(answers[1].try_recv().is_err(), "the other recall still executes");
        // An ordinary command after "buffer full" with both sockets busy waits for a completion, and
        // nothing falls due meanwhile but the timeouts.
        let (answer, _r) = oneshot::channel();
        s.submit(
            Request { packet: vec![0x81, 0x01, 0x04, 0x07, 0x00, 0xFF], inquiry: false, urgent: false, answer },
            t,
        );
        s.on_packet(&[0x90, 0x41, 0xFF], t);
        let (answer, _r2) = oneshot::channel();
        s.submit(
            Request { packet: vec![0x81, 0x01, 0x04, 0x07, 0x20, 0xFF], inquiry: false, urgent: false, answer },
            t,
        );
        s.on_packet(&[0x90, 0x60, 0x03, 0xFF], t);
        assert_eq!(s.due(t + FRAME * 5), None);
        assert!(s.next_due().is_some_and(|d| d >= t + Duration::from_millis(500)), "no busy wait");
    }
}
