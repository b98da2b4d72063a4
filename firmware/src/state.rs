//! The node's side of the link, as a state machine without I/O: bytes and the clock go in, frames to
//! send and output changes come out.
//!
//! - Session: `Hello` at boot and every `hello_ms` until a `Welcome` echoes this boot's counter. A
//!   `Welcome` with a session number not seen before means the edge restarted: its numbering is
//!   forgotten and `Hello` is said again. Until welcomed the node sends no reliable message, so the edge
//!   can forget the node's numbering at every `Hello` without ever taking a resend for a new message.
//! - Exactly once: each reliable command is carried out when first received and answered (`Ack` or
//!   `Nak`); a resend of it gets the same answer again and is not carried out again.
//! - Safe state: at boot, on `SafeState`, and when no valid frame has come from the edge for
//!   `link_timeout_ms`, every output goes to its safe position and output commands are refused
//!   (`Nak InSafeState`) until the edge sends `Resume`. The node reports `SafeEntered` once the link is
//!   back, so the edge knows to resynchronise.
//! - Inputs: debounced edges are sent as reliable `Gpi` messages, one in flight at a time, and only
//!   while the link is alive: a press made while nobody listens must not fire a cue minutes later.

use heapless::Deque;
use if_protocol::link::arq::{Delivery, Poll, Receiver, Sender};
use if_protocol::link::{Accumulator, LinkFrame, Message, NakReason, SafeReason};

use crate::config::Config;
use crate::debounce::{Debouncer, Edge};
use crate::hal::{Lamps, Notice, Notices, Relays};
use crate::outputs::Outputs;

/// Frames waiting to be written to the line.
const OUTBOX: usize = 8;
/// Input edges waiting for the link.
const GPI_QUEUE: usize = 8;

/// Counts of what went wrong, for the board to show (never sent over the link on their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Stretches of the line that did not decode (noise, cut frames).
    pub bad_frames: u32,
    /// Resends of the edge's reliable frames that were answered but not carried out again.
    pub duplicates: u32,
    /// Reliable messages the edge never answered.
    pub gave_up: u32,
    /// Input edges dropped: the link was down or the queue full.
    pub gpi_dropped: u32,
    /// Frames dropped because the outbox was full.
    pub outbox_full: u32,
}

/// A rack node's state.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    boots: u32,
    acc: Accumulator,
    tx: Sender,
    rx: Receiver,
    /// The edge session this node follows, once one has welcomed it.
    session: Option<u32>,
    /// When the next `Hello` is due; `None` once the edge has answered this boot's.
    hello_at: Option<u32>,
    heartbeat_at: u32,
    status_at: u32,
    /// When the last valid frame came from the edge.
    heard_at: Option<u32>,
    /// Why the outputs are in their safe positions, if they are.
    safe: Option<SafeReason>,
    /// Whether the edge has been told of the current safe state (or a report is in flight).
    safe_reported: bool,
    /// The answer to the last reliable command, repeated for its resends.
    last_answer: Message,
    outputs: Outputs,
    debounce: Debouncer,
    gpi: Deque<Edge, GPI_QUEUE>,
    outbox: Deque<LinkFrame, OUTBOX>,
    status_due: bool,
    counters: Counters,
}

impl Node {
    /// A node that has just started (its `boots`-th start since power-up) at `now_ms`: outputs in their
    /// safe positions, `Hello` due at once.
    pub fn new(cfg: Config, boots: u32, now_ms: u32) -> Node {
        let cfg = cfg.clamped();
        Node {
            tx: Sender::new(cfg.retransmit_ms, cfg.max_tries),
            rx: Receiver::new(),
            acc: Accumulator::new(),
            session: None,
            hello_at: Some(now_ms),
            heartbeat_at: now_ms,
            status_at: now_ms.wrapping_add(cfg.status_ms),
            heard_at: None,
            safe: Some(SafeReason::Boot),
            safe_reported: false,
            last_answer: Message::Ack,
            outputs: Outputs::new(&cfg),
            debounce: Debouncer::new(cfg.inputs, cfg.debounce_ms),
            gpi: Deque::new(),
            outbox: Deque::new(),
            status_due: false,
            counters: Counters::default(),
            boots,
            cfg,
        }
    }

    /// Why the outputs are in their safe positions, if they are.
    pub fn safe(&self) -> Option<SafeReason> {
        self.safe
    }

    /// The output model.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// The session followed, once welcomed.
    pub fn session(&self) -> Option<u32> {
        self.session
    }

    /// What went wrong so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Takes bytes read from the line at `now_ms`.
    pub fn receive(&mut self, bytes: &[u8], now_ms: u32, notices: &mut impl Notices) {
        for &b in bytes {
            match self.acc.push(b) {
                Some(Ok(frame)) => self.on_frame(frame, now_ms, notices),
                Some(Err(_)) => self.counters.bad_frames = self.counters.bad_frames.wrapping_add(1),
                None => {}
            }
        }
    }

    fn on_frame(&mut self, frame: LinkFrame, now_ms: u32, notices: &mut impl Notices) {
        self.heard_at = Some(now_ms);
        match self.rx.on_frame(&frame) {
            Delivery::New => {
                let answer = self.carry_out(&frame.msg, now_ms, notices);
                self.last_answer = answer.clone();
                self.answer(answer);
            }
            Delivery::Duplicate => {
                self.counters.duplicates = self.counters.duplicates.wrapping_add(1);
                self.answer(self.last_answer.clone());
            }
            Delivery::Unnumbered => match frame.msg {
                Message::Ack | Message::Nak { .. } => {
                    self.tx.on_ack(frame.ack);
                }
                Message::Welcome { session, boots } => self.on_welcome(session, boots, now_ms, notices),
                _ => {}
            },
        }
    }

    fn on_welcome(&mut self, session: u32, boots: u32, now_ms: u32, notices: &mut impl Notices) {
        if self.session != Some(session) {
            // A new edge: its numbering starts again, and it must hear this node's Hello.
            self.rx.reset();
            self.session = Some(session);
            self.last_answer = Message::Ack;
            notices.notice(Notice::Session(session));
            if self.safe.is_some() {
                self.safe_reported = false;
            }
        }
        if boots == self.boots {
            self.hello_at = None;
        } else if self.hello_at.is_none() {
            self.hello_at = Some(now_ms);
        }
    }

    fn carry_out(&mut self, msg: &Message, now_ms: u32, notices: &mut impl Notices) -> Message {
        let output = matches!(msg, Message::SetLamp { .. } | Message::SetRelay { .. } | Message::PulseRelay { .. });
        if output && self.safe.is_some() {
            return Message::Nak { reason: NakReason::InSafeState };
        }
        let done = match *msg {
            Message::SetLamp { lamp, color } => self.outputs.set_lamp(lamp, color),
            Message::SetRelay { relay, on } => self.outputs.set_relay(relay, on),
            Message::PulseRelay { relay, ms } => self.outputs.pulse_relay(relay, ms, now_ms),
            Message::SafeState => {
                self.enter_safe(SafeReason::Commanded, notices);
                // The edge asked for it: it needs no report.
                self.safe_reported = true;
                Ok(())
            }
            Message::Resume => {
                if self.safe.take().is_some() {
                    notices.notice(Notice::Resumed);
                }
                Ok(())
            }
            _ => return Message::Nak { reason: NakReason::Unsupported },
        };
        match done {
            Ok(()) => {
                self.status_due = true;
                Message::Ack
            }
            Err(_) => Message::Nak { reason: NakReason::NoSuchOutput },
        }
    }

    fn enter_safe(&mut self, reason: SafeReason, notices: &mut impl Notices) {
        self.outputs.to_safe();
        self.safe = Some(reason);
        self.safe_reported = false;
        self.status_due = true;
        notices.notice(Notice::Safe(reason));
    }

    fn answer(&mut self, msg: Message) {
        self.queue(LinkFrame { seq: 0, ack: self.rx.ack(), msg });
    }

    fn queue(&mut self, frame: LinkFrame) {
        if self.outbox.push_back(frame).is_err() {
            self.counters.outbox_full = self.counters.outbox_full.wrapping_add(1);
        }
    }

    fn unnumbered(&mut self, msg: Message) {
        self.queue(LinkFrame { seq: 0, ack: self.rx.ack(), msg });
    }

    fn link_alive(&self, now_ms: u32) -> bool {
        self.heard_at.is_some_and(|t| now_ms.wrapping_sub(t) < self.cfg.link_timeout_ms)
    }

    /// Advances the timers to `now_ms` with the inputs' raw `levels`: safe state on link loss, pulses,
    /// debouncing, `Hello`, heartbeats, status and the ARQ.
    pub fn poll(&mut self, now_ms: u32, levels: u16, notices: &mut impl Notices) {
        let alive = self.link_alive(now_ms);
        if !alive && self.heard_at.is_some() && self.safe.is_none() {
            self.enter_safe(SafeReason::LinkLost, notices);
        }
        if self.outputs.tick(now_ms) {
            self.status_due = true;
        }
        let mut edges: Deque<Edge, { if_protocol::link::MAX_INPUTS }> = Deque::new();
        self.debounce.sample(levels, now_ms, |e| {
            let _ = edges.push_back(e);
        });
        let welcomed = self.session.is_some() && self.hello_at.is_none();
        for e in edges {
            if !(alive && welcomed) || self.gpi.push_back(e).is_err() {
                self.counters.gpi_dropped = self.counters.gpi_dropped.wrapping_add(1);
            }
        }
        if let Some(at) = self.hello_at
            && due(now_ms, at)
        {
            self.hello_at = Some(now_ms.wrapping_add(self.cfg.hello_ms));
            self.unnumbered(self.hello());
        }
        if due(now_ms, self.heartbeat_at) {
            self.heartbeat_at = now_ms.wrapping_add(self.cfg.heartbeat_ms);
            self.unnumbered(Message::Heartbeat { uptime_ms: now_ms });
        }
        if self.status_due || due(now_ms, self.status_at) {
            self.status_due = false;
            self.status_at = now_ms.wrapping_add(self.cfg.status_ms);
            self.unnumbered(self.status());
        }
        if welcomed && alive {
            self.reliable(now_ms);
        }
    }

    fn reliable(&mut self, now_ms: u32) {
        match self.tx.poll(now_ms, self.rx.ack()) {
            Poll::Resend(frame) => self.queue(frame),
            Poll::GaveUp(msg) => {
                self.counters.gave_up = self.counters.gave_up.wrapping_add(1);
                if matches!(msg, Message::SafeEntered { .. }) {
                    self.safe_reported = false;
                }
            }
            Poll::Idle => {}
        }
        if !self.tx.is_idle() {
            return;
        }
        let next = match self.safe {
            Some(reason) if !self.safe_reported => {
                self.safe_reported = true;
                Some(Message::SafeEntered { reason })
            }
            _ => self.gpi.pop_front().map(|e| Message::Gpi { input: e.input, pressed: e.pressed }),
        };
        if let Some(msg) = next
            && let Ok(frame) = self.tx.send(msg, self.rx.ack(), now_ms)
        {
            self.queue(frame);
        }
    }

    fn hello(&self) -> Message {
        Message::Hello {
            board_id: self.cfg.board_id,
            firmware: crate::VERSION,
            lamps: self.cfg.lamps,
            relays: self.cfg.relays,
            inputs: self.cfg.inputs,
            boots: self.boots,
        }
    }

    fn status(&self) -> Message {
        Message::Status {
            lamps: self.outputs.lamps().iter().copied().collect(),
            relays: self.outputs.relays(),
            safe: self.safe.is_some(),
        }
    }

    /// Writes output changes to the hardware.
    pub fn flush(&mut self, hw: &mut (impl Lamps + Relays)) {
        self.outputs.flush(hw);
    }

    /// The next frame to write to the line.
    pub fn outgoing(&mut self) -> Option<LinkFrame> {
        self.outbox.pop_front()
    }
}

fn due(now_ms: u32, at: u32) -> bool {
    now_ms.wrapping_sub(at) < u32::MAX / 2
}
