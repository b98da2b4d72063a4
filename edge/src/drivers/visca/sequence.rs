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
//!   restarted, or another controller reset it): it took nothing. The driver sends RESET and, once the
//!   camera acknowledges it, sends the command again under a fresh number. An unanswered RESET loses the
//!   link (the supervisor connects again, which resets again);
//! - "buffer full": sent again one frame later under a new number (the camera answered the old one), at
//!   most three tries;
//! - when the link is lost, a command that was sent ends DEVICE_TIMEOUT (its outcome is unknown), one
//!   that was not ends DEVICE_UNREACHABLE.

use std::collections::VecDeque;
use std::time::Duration;

use if_protocol::{ErrorCode, IfError};
use tokio::time::Instant;

use super::Request;
use super::command::hex;
use super::header::{self, BAD_MESSAGE, BAD_SEQUENCE, COMMAND, CONTROL, CONTROL_REPLY, INQUIRY, REPLY, RESET};
use super::reply::{BUFFER_FULL, Reply, rejected};
use super::sockets::FRAME;

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
    /// Acknowledged: executing in a socket.
    Executing,
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
    /// After a RESET the camera acknowledged: the next number is 1.
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
    /// socket is free.
    pub fn ready(&self) -> bool {
        self.failed.is_none()
            && self.resetting.is_none()
            && self.held.is_none()
            && self.again.is_empty()
            && !self.flights.iter().any(|f| f.stage == Stage::Sent)
            && self.flights.len() < 2
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

    fn start_reset(&mut self, now: Instant) {
        self.out.push_back(header::encode(CONTROL, 0, &RESET));
        self.resetting = Some(Reset { sends: 1, next_at: now + self.wait });
    }

    /// When something next falls due: a send again, a timeout, a command after "buffer full".
    pub fn next_due(&self) -> Option<Instant> {
        let flights = self.flights.iter().flat_map(|f| [f.resend_at, Some(f.deadline)]).flatten();
        let reset = self.resetting.as_ref().map(|r| r.next_at);
        flights.chain(reset).chain(self.again.front().map(|(_, _, at)| *at)).min()
    }

    /// Handles one datagram from the camera.
    pub fn on_datagram(&mut self, d: &[u8], now: Instant) {
        let m = match header::decode(d) {
            Ok(m) => m,
            Err(why) => return tracing::debug!(datagram = %hex(d), why, "not a VISCA-over-IP message; ignored"),
        };
        if m.kind == CONTROL_REPLY && m.payload == RESET {
            // The camera may answer a RESET under any number: its own is 0 now.
            if self.resetting.take().is_some() {
                self.next = 1;
                if let Some((req, tries)) = self.held.take() {
                    self.send(req, tries, now);
                }
            }
            return;
        }
        let Some(i) = self.flights.iter().position(|f| f.seq == m.seq) else {
            return tracing::debug!(seq = m.seq, payload = %hex(m.payload), "a reply to no command in flight; ignored");
        };
        let (stage, inquiry, sends) = (self.flights[i].stage, self.flights[i].req.inquiry, self.flights[i].sends);
        match (m.kind, Reply::read(Z, m.payload)) {
            (REPLY, Some(Reply::Ack(_))) if stage == Stage::Sent && !inquiry => {
                let f = &mut self.flights[i];
                (f.stage, f.resend_at, f.deadline) = (Stage::Executing, None, now + self.timeout);
            }
            (REPLY, Some(Reply::Done(0, _))) if inquiry => self.answer(i, Ok(m.payload.to_vec())),
            (REPLY, Some(Reply::Done(1..=2, []))) if !inquiry => self.answer(i, Ok(m.payload.to_vec())),
            (REPLY, Some(Reply::Error(_, BUFFER_FULL))) if stage == Stage::Sent && !inquiry => {
                let f = self.flights.remove(i);
                if f.tries < 3 {
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
                    Stage::Executing => Err(self.timed_out(i, "completion")),
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
        while self.ready_to_send_again() && self.again.front().is_some_and(|(_, _, at)| *at <= now) {
            if let Some((req, tries, _)) = self.again.pop_front() {
                self.send(req, tries + 1, now);
            }
        }
    }

    fn ready_to_send_again(&self) -> bool {
        self.resetting.is_none() && !self.flights.iter().any(|f| f.stage == Stage::Sent) && self.flights.len() < 2
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
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    type Answer = oneshot::Receiver<Result<Vec<u8>, IfError>>;

    const RECALL: [u8; 7] = [0x81, 0x01, 0x04, 0x3F, 0x02, 5, 0xFF];
    const ZOOM: [u8; 6] = [0x81, 0x01, 0x04, 0x07, 0x27, 0xFF];
    const TIMEOUT: Duration = Duration::from_millis(400);

    fn request(packet: &[u8], inquiry: bool) -> (Request, Answer) {
        let (answer, rx) = oneshot::channel();
        (Request { packet: packet.to_vec(), inquiry, answer }, rx)
    }

    fn sent(s: &mut Sequence) -> Vec<(u16, u32, Vec<u8>)> {
        std::iter::from_fn(|| s.transmit())
            .map(|d| {
                let m = header::decode(&d).expect("a message");
                (m.kind, m.seq, m.payload.to_vec())
            })
            .collect()
    }

    fn reply(seq: u32, payload: &[u8]) -> Vec<u8> {
        header::encode(REPLY, seq, payload)
    }

    fn code(rx: &mut Answer) -> Option<ErrorCode> {
        rx.try_recv().ok().and_then(|r| r.err()).map(|e| e.code())
    }

    #[test]
    fn replies_are_matched_by_number_and_two_commands_execute_at_once() {
        let t = Instant::now();
        let mut s = Sequence::new(TIMEOUT);
        let (a, mut ra) = request(&RECALL, false);
        s.submit(a, t);
        assert_eq!(sent(&mut s), [(COMMAND, 1, RECALL.to_vec())]);
        assert!(!s.ready(), "one waits for its ACK at a time");
        s.on_datagram(&reply(1, &[0x90, 0x41, 0xFF]), t);
        assert!(s.ready(), "the second socket is free");
        let (b, mut rb) = request(&ZOOM, false);
        s.submit(b, t);
        assert_eq!(sent(&mut s)[0].1, 2);
        s.on_datagram(&reply(2, &[0x90, 0x42, 0xFF]), t);
        assert!(!s.ready(), "both sockets busy");
        // A completion under a number no command has is nobody's.
        s.on_datagram(&reply(9, &[0x90, 0x51, 0xFF]), t);
        assert!(ra.try_recv().is_err() && rb.try_recv().is_err());
        s.on_datagram(&reply(2, &[0x90, 0x52, 0xFF]), t);
        assert_eq!(rb.try_recv().expect("answered").expect("ok"), [0x90, 0x52, 0xFF], "the zoom, before the recall");
        s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t);
        assert!(ra.try_recv().expect("answered").is_ok());
        // A repeated completion changes nothing.
        s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t);
        assert!(s.ready());
    }

    #[test]
    fn a_lost_ack_is_sent_again_under_the_same_number_and_the_camera_s_answer_settles_it() {
        let t = Instant::now();
        let w = ack_wait(TIMEOUT);
        let mut s = Sequence::new(TIMEOUT);
        let (a, mut ra) = request(&RECALL, false);
        s.submit(a, t);
        sent(&mut s);
        s.expire(t + w);
        assert_eq!(sent(&mut s), [(COMMAND, 1, RECALL.to_vec())], "the same number again");
        // The camera had it: performed, and its completion still answers it by number.
        s.on_datagram(&header::encode(CONTROL_REPLY, 1, &BAD_SEQUENCE), t + w);
        assert!(ra.try_recv().is_err());
        s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t + w);
        assert_eq!(ra.try_recv().expect("answered").expect("ok"), [0x90, 0x51, 0xFF]);

        // Performed, and no completion comes: it ran, not seen to complete.
        let (b, mut rb) = request(&ZOOM, false);
        s.submit(b, t);
        sent(&mut s);
        s.expire(t + w);
        s.on_datagram(&header::encode(CONTROL_REPLY, 2, &BAD_SEQUENCE), t + w);
        s.expire(t + w + TIMEOUT);
        assert_eq!(rb.try_recv().expect("answered").expect("performed"), Vec::<u8>::new());

        // A completion without any ACK answers the command too.
        let (c, mut rc) = request(&ZOOM, false);
        s.submit(c, t);
        sent(&mut s);
        s.on_datagram(&reply(3, &[0x90, 0x51, 0xFF]), t);
        assert!(rc.try_recv().expect("answered").is_ok());
    }

    #[test]
    fn three_sends_without_an_answer_are_a_timeout() {
        let t = Instant::now();
        let w = ack_wait(TIMEOUT);
        let mut s = Sequence::new(TIMEOUT);
        let (a, mut ra) = request(&RECALL, false);
        s.submit(a, t);
        for i in 1..=3u32 {
            assert_eq!(sent(&mut s).len(), 1, "send {i}");
            s.expire(t + w * i);
        }
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceTimeout));
        assert!(sent(&mut s).is_empty(), "never a fourth time");
        assert!(s.ready());
    }

    #[test]
    fn a_camera_that_forgot_the_numbers_is_reset_and_the_command_goes_again() {
        let t = Instant::now();
        let mut s = Sequence::new(TIMEOUT);
        for _ in 0..4 {
            let (a, _ra) = request(&ZOOM, false);
            s.submit(a, t);
            let seq = sent(&mut s)[0].1;
            s.on_datagram(&reply(seq, &[0x90, 0x51, 0xFF]), t);
        }
        // The camera restarted: it knows no number until it is reset.
        let (b, mut rb) = request(&RECALL, false);
        s.submit(b, t);
        assert_eq!(sent(&mut s)[0].1, 5);
        s.on_datagram(&header::encode(CONTROL_REPLY, 5, &BAD_SEQUENCE), t);
        assert_eq!(sent(&mut s), [(CONTROL, 0, RESET.to_vec())]);
        assert!(!s.ready() && rb.try_recv().is_err());
        s.on_datagram(&header::encode(CONTROL_REPLY, 0, &RESET), t);
        assert_eq!(sent(&mut s), [(COMMAND, 1, RECALL.to_vec())], "again, under a fresh number");
        s.on_datagram(&reply(1, &[0x90, 0x41, 0xFF]), t);
        s.on_datagram(&reply(1, &[0x90, 0x51, 0xFF]), t);
        assert!(rb.try_recv().expect("answered").is_ok());
    }

    #[test]
    fn an_unanswered_reset_loses_the_link_and_the_held_command_was_not_taken() {
        let t = Instant::now();
        let w = ack_wait(TIMEOUT);
        let mut s = Sequence::new(TIMEOUT);
        let (a, mut ra) = request(&RECALL, false);
        s.submit(a, t);
        sent(&mut s);
        s.on_datagram(&header::encode(CONTROL_REPLY, 1, &BAD_SEQUENCE), t);
        for i in 1..=3u32 {
            s.expire(t + w * i);
        }
        assert_eq!(sent(&mut s).iter().filter(|(k, _, _)| *k == CONTROL).count(), 3);
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceUnreachable));
        assert_eq!(s.failed().map(|e| e.code()), Some(ErrorCode::DeviceUnreachable));
    }

    #[test]
    fn errors_map_to_codes_and_buffer_full_goes_again_under_a_new_number() {
        let t = Instant::now();
        let mut s = Sequence::new(TIMEOUT);
        let (a, mut ra) = request(&RECALL, false);
        s.submit(a, t);
        sent(&mut s);
        s.on_datagram(&reply(1, &[0x90, 0x60, 0x02, 0xFF]), t);
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceRejected));
        let (b, mut rb) = request(&RECALL, false);
        s.submit(b, t);
        for (i, seq) in [2, 3, 4].into_iter().enumerate() {
            assert_eq!(sent(&mut s)[0].1, seq);
            s.on_datagram(&reply(seq, &[0x90, 0x60, 0x03, 0xFF]), t);
            s.expire(t + FRAME * (u32::try_from(i).unwrap_or(0) + 1));
        }
        assert_eq!(code(&mut rb), Some(ErrorCode::DeviceRejected), "three tries in all");
        let (c, mut rc) = request(&[0x81, 0x09, 0x04, 0x00, 0xFF], true);
        s.submit(c, t);
        assert_eq!(sent(&mut s)[0].0, INQUIRY);
        s.on_datagram(&header::encode(CONTROL_REPLY, 5, &BAD_MESSAGE), t);
        assert_eq!(code(&mut rc), Some(ErrorCode::DeviceRejected));
        // Garbage is no message and changes nothing.
        s.on_datagram(&[0x12, 0x34, 0xFF], t);
        assert!(s.ready());
    }

    #[test]
    fn a_lost_link_ends_sent_commands_as_unknown_and_unsent_ones_as_unreachable() {
        let t = Instant::now();
        let mut s = Sequence::new(TIMEOUT);
        let (a, mut ra) = request(&RECALL, false);
        s.submit(a, t);
        s.on_datagram(&reply(1, &[0x90, 0x41, 0xFF]), t);
        let (b, mut rb) = request(&ZOOM, false);
        s.submit(b, t);
        s.on_datagram(&reply(2, &[0x90, 0x60, 0x03, 0xFF]), t);
        s.lost(&IfError::with(ErrorCode::DeviceUnreachable, "refused"));
        assert_eq!(code(&mut ra), Some(ErrorCode::DeviceTimeout));
        assert_eq!(code(&mut rb), Some(ErrorCode::DeviceUnreachable));
    }
}
