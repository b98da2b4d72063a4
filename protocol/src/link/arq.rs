//! Sequence numbers, acknowledgements and retransmission for the serial link (stop-and-wait).
//!
//! A relay command must arrive exactly once even when the line drops a frame, so reliable messages
//! ([`Message::is_reliable`]) are numbered `1..=255` (0 means "nothing yet") and kept by the [`Sender`]
//! until an answer from the peer ([`Message::is_answer`]) carries their number in `ack`; until then they are resent every
//! `retransmit_ms`, up to `max_tries` times. The [`Receiver`] delivers each number once and reports resends
//! as duplicates, which must be acknowledged again but not acted on. One reliable frame is in flight at a
//! time: the link is slow and commands are few, and order is then never in doubt.
//!
//! Time is a wrapping `u32` millisecond counter, as a microcontroller keeps it.

use super::{LinkFrame, Message};

/// What the sender has to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Nothing.
    Idle,
    /// Send this frame again.
    Resend(LinkFrame),
    /// The peer never acknowledged this message; it is dropped and the link should be treated as down.
    GaveUp(Message),
}

/// A reliable message is already waiting for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

#[derive(Debug, Clone)]
struct InFlight {
    frame: LinkFrame,
    sent_at: u32,
    tries: u8,
}

/// Numbers outgoing frames and keeps the reliable one in flight until it is acknowledged.
#[derive(Debug, Clone)]
pub struct Sender {
    last_seq: u8,
    in_flight: Option<InFlight>,
    retransmit_ms: u32,
    max_tries: u8,
}

impl Sender {
    /// A sender that resends after `retransmit_ms` and gives up after `max_tries` sends in all.
    pub fn new(retransmit_ms: u32, max_tries: u8) -> Self {
        Sender { last_seq: 0, in_flight: None, retransmit_ms, max_tries: max_tries.max(1) }
    }

    /// Whether a reliable message can be sent now.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none()
    }

    /// Makes the frame for `msg`, acknowledging `ack`. A reliable message gets the next number and is kept
    /// for resending; refused with [`Busy`] while another is in flight.
    pub fn send(&mut self, msg: Message, ack: u8, now_ms: u32) -> Result<LinkFrame, Busy> {
        if !msg.is_reliable() {
            return Ok(LinkFrame { seq: 0, ack, msg });
        }
        if self.in_flight.is_some() {
            return Err(Busy);
        }
        self.last_seq = if self.last_seq == u8::MAX { 1 } else { self.last_seq + 1 };
        let frame = LinkFrame { seq: self.last_seq, ack, msg };
        self.in_flight = Some(InFlight { frame: frame.clone(), sent_at: now_ms, tries: 1 });
        Ok(frame)
    }

    /// Takes the `ack` field of an answer from the peer; true when it completes the frame in flight.
    pub fn on_ack(&mut self, ack: u8) -> bool {
        match &self.in_flight {
            Some(f) if f.frame.seq == ack => {
                self.in_flight = None;
                true
            }
            _ => false,
        }
    }

    /// Resends or gives up when the acknowledgement is late. `ack` refreshes the resent frame's ack field.
    pub fn poll(&mut self, now_ms: u32, ack: u8) -> Poll {
        let Some(f) = &mut self.in_flight else { return Poll::Idle };
        if now_ms.wrapping_sub(f.sent_at) < self.retransmit_ms {
            return Poll::Idle;
        }
        if f.tries >= self.max_tries {
            let gone = self.in_flight.take().map(|f| f.frame.msg);
            return gone.map_or(Poll::Idle, Poll::GaveUp);
        }
        f.tries += 1;
        f.sent_at = now_ms;
        f.frame.ack = ack;
        Poll::Resend(f.frame.clone())
    }
}

impl Default for Sender {
    fn default() -> Self {
        Sender::new(100, 5)
    }
}

/// What to do with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A new reliable message: act on it and acknowledge it.
    New,
    /// A resend of the last reliable message: answer again as the first time, do not act.
    Duplicate,
    /// An unnumbered message (answer, heartbeat, handshake, status): act on it, nothing to answer.
    Unnumbered,
}

/// Delivers each reliable message once.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    last: u8,
}

impl Receiver {
    /// A receiver that has seen nothing.
    pub const fn new() -> Self {
        Receiver { last: 0 }
    }

    /// Classifies `frame` and records its number.
    pub fn on_frame(&mut self, frame: &LinkFrame) -> Delivery {
        if !frame.msg.is_reliable() {
            return Delivery::Unnumbered;
        }
        if frame.seq == self.last {
            return Delivery::Duplicate;
        }
        self.last = frame.seq;
        Delivery::New
    }

    /// The value for the `ack` field of the next outgoing frame.
    pub fn ack(&self) -> u8 {
        self.last
    }

    /// Forgets the peer's numbering; call when the peer has restarted (a `Hello`, or a new `Welcome` session).
    pub fn reset(&mut self) {
        self.last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(on: bool) -> Message {
        Message::SetRelay { relay: 1, on }
    }

    #[test]
    fn one_reliable_frame_in_flight() {
        let mut s = Sender::new(100, 3);
        let f = s.send(relay(true), 0, 0).expect("idle");
        assert_eq!(f.seq, 1);
        assert_eq!(s.send(relay(false), 0, 0), Err(Busy));
        assert!(s.send(Message::Heartbeat { uptime_ms: 5 }, 0, 0).is_ok(), "heartbeats are never held back");
        assert!(!s.on_ack(7));
        assert!(s.on_ack(1));
        assert!(s.is_idle());
        assert_eq!(s.send(relay(false), 0, 0).map(|f| f.seq), Ok(2));
    }

    #[test]
    fn resends_then_gives_up() {
        let mut s = Sender::new(100, 3);
        s.send(relay(true), 0, u32::MAX - 10).expect("idle");
        assert_eq!(s.poll(u32::MAX, 0), Poll::Idle, "not late yet");
        let again = s.poll(89, 4);
        assert!(matches!(&again, Poll::Resend(f) if f.seq == 1 && f.ack == 4), "{again:?}: late across the u32 wrap");
        assert!(matches!(s.poll(200, 4), Poll::Resend(_)));
        assert_eq!(s.poll(300, 4), Poll::GaveUp(relay(true)));
        assert!(s.is_idle());
    }

    #[test]
    fn sequence_skips_zero_on_wrap() {
        let mut s = Sender::new(100, 3);
        for expected in (1..=255u8).chain(1..=2) {
            let f = s.send(relay(true), 0, 0).expect("idle");
            assert_eq!(f.seq, expected);
            assert!(s.on_ack(f.seq));
        }
    }

    #[test]
    fn receiver_delivers_once() {
        let mut r = Receiver::new();
        let f = LinkFrame { seq: 1, ack: 0, msg: relay(true) };
        assert_eq!(r.on_frame(&f), Delivery::New);
        assert_eq!(r.on_frame(&f), Delivery::Duplicate);
        assert_eq!(r.ack(), 1);
        let hb = LinkFrame { seq: 0, ack: 0, msg: Message::Heartbeat { uptime_ms: 1 } };
        assert_eq!(r.on_frame(&hb), Delivery::Unnumbered);
        r.reset();
        assert_eq!(r.on_frame(&f), Delivery::New, "after the peer restarts, its first number is new again");
    }
}
