//! The edge's side of the rack-node link, as a state machine without I/O (the port task in `mod.rs`
//! feeds it bytes and the clock and writes what it says).
//!
//! - Session: a random session number per opening of the port. `Welcome { boots: 0 }` every second
//!   until the node's `Hello`; each `Hello` is answered with a `Welcome` echoing its `boots`. Nothing
//!   the node numbers is taken before its first `Hello` of this session, so its numbering can be
//!   forgotten at every `Hello` without a resend ever passing for a new message.
//! - Commands: one reliable frame in flight (the ARQ of `if_protocol::link::arq`); each completes with
//!   the node's `Ack`, its `Nak` (refused, with why), or no answer after the ARQ's tries (never sent again).
//! - Resynchronisation: after a `Hello` (a node that rebooted, or a port opened again) or a
//!   `SafeEntered` (the node lost the link), the node is sent `Resume`, then every lamp as the model
//!   has it, then the latched relays the manifest lets it restore. Pulses are never replayed. After the
//!   `safe` action the node stays safe until `resume`, whatever happens to the link.
//! - Events: the node's button edges, its `Hello` and its safe state, for the agent to publish and witness.

use std::collections::VecDeque;

use if_protocol::link::arq::{Delivery, Poll, Receiver, Sender};
use if_protocol::link::{Accumulator, Lamp, LinkFrame, MAX_LAMPS, Message, NakReason, SafeReason};

/// How often the edge says it is alive (the node's link timeout is 1500 ms).
pub const HEARTBEAT_MS: u64 = 500;
/// How often `Welcome` asks for a `Hello` until one comes.
pub const WELCOME_MS: u64 = 1000;
/// With nothing from the node for this long, it is taken as gone (health fails, commands are refused).
pub const SILENCE_MS: u64 = 1500;
/// How long the edge waits for an answer before sending a command again, and how many sends in all.
pub const RETRANSMIT_MS: u32 = 100;
/// Sends of one command in all.
pub const TRIES: u8 = 5;
/// Commands waiting behind the one in flight.
const QUEUE: usize = 64;

/// What the node said about itself in its `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// Hardware id.
    pub board_id: u32,
    /// Firmware version.
    pub firmware: [u8; 3],
    /// Lamps, relays and inputs it has.
    pub lamps: u8,
    /// Relays.
    pub relays: u8,
    /// Inputs.
    pub inputs: u8,
    /// Starts since power-up.
    pub boots: u32,
}

/// Why a command did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The node refused it.
    Refused(NakReason),
    /// The node never answered it within the ARQ's tries; it is not sent again.
    NoAnswer,
    /// The node has not said `Hello` in this session, or has been silent too long.
    NotReady,
    /// Too many commands are waiting.
    Full,
}

/// Something the node did by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A debounced input edge.
    Gpi {
        /// Input index.
        input: u8,
        /// Closed when true.
        pressed: bool,
    },
    /// The node said `Hello`: it (re)started, or the port was (re)opened.
    Hello(NodeInfo),
    /// The node reported that its outputs went safe.
    Safe(SafeReason),
}

/// A queued command: whose it is (`None` for the edge's own resynchronisation) and what it sends.
#[derive(Debug)]
struct Queued<T> {
    token: Option<T>,
    msg: Message,
}

/// The outputs as the edge last had them acknowledged.
#[derive(Debug, Clone)]
struct Model {
    lamps: [Lamp; MAX_LAMPS],
    /// Latched relay levels this edge set, and which relays it set.
    relays: u16,
    relays_set: u16,
    /// Relays the manifest lets the edge latch again after a resynchronisation.
    restore: u16,
    /// The operator put the node in its safe state; it stays there until `Resume`.
    held: bool,
}

/// The edge's link state.
#[derive(Debug)]
pub struct Link<T> {
    session: u32,
    acc: Accumulator,
    tx: Sender,
    rx: Receiver,
    node: Option<NodeInfo>,
    welcome_at: u64,
    heartbeat_at: u64,
    heard_at: Option<u64>,
    queue: VecDeque<Queued<T>>,
    in_flight: Option<Queued<T>>,
    model: Model,
    /// Frames to write, in order.
    out: VecDeque<LinkFrame>,
    events: VecDeque<Event>,
    done: VecDeque<(T, Result<(), Failure>)>,
    bad_frames: u64,
}

impl<T> Link<T> {
    /// A port just opened at `now_ms`, with session number `session`; `restore` says which latched
    /// relays may be set again after a resynchronisation.
    pub fn new(session: u32, restore: u16, now_ms: u64) -> Self {
        Link {
            session,
            acc: Accumulator::new(),
            tx: Sender::new(RETRANSMIT_MS, TRIES),
            rx: Receiver::new(),
            node: None,
            welcome_at: now_ms,
            heartbeat_at: now_ms,
            heard_at: None,
            queue: VecDeque::new(),
            in_flight: None,
            model: Model { lamps: [Lamp::Off; MAX_LAMPS], relays: 0, relays_set: 0, restore, held: false },
            out: VecDeque::new(),
            events: VecDeque::new(),
            done: VecDeque::new(),
            bad_frames: 0,
        }
    }

    /// Whether the node has said `Hello` in this session and been heard within [`SILENCE_MS`].
    pub fn ready(&self, now_ms: u64) -> bool {
        self.node.is_some() && self.heard_at.is_some_and(|t| now_ms.saturating_sub(t) < SILENCE_MS)
    }

    /// Milliseconds since the node was last heard, if ever.
    pub fn silent_for(&self, now_ms: u64) -> Option<u64> {
        self.heard_at.map(|t| now_ms.saturating_sub(t))
    }

    /// Stretches of the line that did not decode.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames
    }

    /// Queues `msg` for the node on behalf of `token`; refused at once when the node is not there.
    pub fn submit(&mut self, token: T, msg: Message, now_ms: u64) -> Result<(), (T, Failure)> {
        if !self.ready(now_ms) {
            return Err((token, Failure::NotReady));
        }
        if self.queue.len() >= QUEUE {
            return Err((token, Failure::Full));
        }
        self.queue.push_back(Queued { token: Some(token), msg });
        Ok(())
    }

    /// Takes bytes read from the port at `now_ms`.
    pub fn receive(&mut self, bytes: &[u8], now_ms: u64) {
        for &b in bytes {
            match self.acc.push(b) {
                Some(Ok(frame)) => self.on_frame(frame, now_ms),
                Some(Err(_)) => self.bad_frames += 1,
                None => {}
            }
        }
    }

    fn on_frame(&mut self, frame: LinkFrame, now_ms: u64) {
        self.heard_at = Some(now_ms);
        if frame.msg.is_reliable() && self.node.is_none() {
            // Numbered before this session's Hello: perhaps a resend to an edge that is gone. Not taken
            // and not answered; the node sends it again once it is welcomed.
            return;
        }
        match self.rx.on_frame(&frame) {
            Delivery::New => {
                let answer = match frame.msg {
                    Message::Gpi { input, pressed } => {
                        self.events.push_back(Event::Gpi { input, pressed });
                        Message::Ack
                    }
                    Message::SafeEntered { reason } => {
                        self.events.push_back(Event::Safe(reason));
                        self.resync();
                        Message::Ack
                    }
                    _ => Message::Nak { reason: NakReason::Unsupported },
                };
                self.answer(answer);
            }
            // A stop-and-wait peer resends only what it has not had answered; both edge-bound reliable
            // messages were answered `Ack` (anything else: Unsupported, and a resend gets the same).
            Delivery::Duplicate => {
                let again = match frame.msg {
                    Message::Gpi { .. } | Message::SafeEntered { .. } => Message::Ack,
                    _ => Message::Nak { reason: NakReason::Unsupported },
                };
                self.answer(again);
            }
            Delivery::Unnumbered => match frame.msg {
                Message::Ack | Message::Nak { .. } if self.tx.on_ack(frame.ack) => {
                    let refused = match frame.msg {
                        Message::Nak { reason } => Some(reason),
                        _ => None,
                    };
                    self.complete(refused.map_or(Ok(()), |r| Err(Failure::Refused(r))));
                }
                Message::Hello { board_id, firmware, lamps, relays, inputs, boots } => {
                    let info = NodeInfo { board_id, firmware, lamps, relays, inputs, boots };
                    self.rx.reset();
                    self.node = Some(info);
                    self.events.push_back(Event::Hello(info));
                    self.unnumbered(Message::Welcome { session: self.session, boots });
                    self.resync();
                }
                _ => {}
            },
        }
    }

    /// Replaces any resynchronisation still queued with a fresh one, ahead of the operators' commands.
    fn resync(&mut self) {
        self.queue.retain(|q| q.token.is_some());
        if self.model.held {
            return;
        }
        let count = self.node.map_or(0, |n| n.lamps.min(MAX_LAMPS as u8));
        let relays = self.node.map_or(0, |n| n.relays.min(16));
        let mut steps = vec![Message::Resume];
        steps.extend((0..count).map(|lamp| Message::SetLamp { lamp, color: self.model.lamps[usize::from(lamp)] }));
        let restore = self.model.restore & self.model.relays_set;
        steps.extend(
            (0..relays)
                .filter(|i| restore & (1 << i) != 0)
                .map(|relay| Message::SetRelay { relay, on: self.model.relays & (1 << relay) != 0 }),
        );
        for msg in steps.into_iter().rev() {
            self.queue.push_front(Queued { token: None, msg });
        }
    }

    fn complete(&mut self, result: Result<(), Failure>) {
        let Some(q) = self.in_flight.take() else { return };
        if result.is_ok() {
            self.learn(&q.msg);
        }
        if let Some(token) = q.token {
            self.done.push_back((token, result));
        }
    }

    /// What an acknowledged command changed in the model.
    fn learn(&mut self, msg: &Message) {
        let m = &mut self.model;
        match *msg {
            Message::SetLamp { lamp, color } => {
                if let Some(l) = m.lamps.get_mut(usize::from(lamp)) {
                    *l = color;
                }
            }
            Message::SetRelay { relay, on } if relay < 16 => {
                let bit = 1u16 << relay;
                m.relays = if on { m.relays | bit } else { m.relays & !bit };
                m.relays_set |= bit;
            }
            // A pulse leaves the relay open: nothing to restore.
            Message::PulseRelay { relay, .. } if relay < 16 => {
                let bit = 1u16 << relay;
                m.relays &= !bit;
                m.relays_set &= !bit;
            }
            Message::SafeState => {
                m.lamps = [Lamp::Off; MAX_LAMPS];
                m.relays_set = 0;
                m.held = true;
            }
            Message::Resume => m.held = false,
            _ => {}
        }
    }

    fn answer(&mut self, msg: Message) {
        self.unnumbered(msg);
    }

    fn unnumbered(&mut self, msg: Message) {
        self.out.push_back(LinkFrame { seq: 0, ack: self.rx.ack(), msg });
    }

    /// Advances the timers to `now_ms`: `Welcome` until `Hello`, heartbeats, resends, the next command.
    pub fn poll(&mut self, now_ms: u64) {
        if self.node.is_none() && now_ms >= self.welcome_at {
            self.welcome_at = now_ms + WELCOME_MS;
            self.unnumbered(Message::Welcome { session: self.session, boots: 0 });
        }
        if now_ms >= self.heartbeat_at {
            self.heartbeat_at = now_ms + HEARTBEAT_MS;
            self.unnumbered(Message::Heartbeat { uptime_ms: now_ms as u32 });
        }
        let clock = now_ms as u32;
        match self.tx.poll(clock, self.rx.ack()) {
            Poll::Resend(frame) => self.out.push_back(frame),
            Poll::GaveUp(_) => self.complete(Err(Failure::NoAnswer)),
            Poll::Idle => {}
        }
        if self.node.is_none() || !self.tx.is_idle() {
            return;
        }
        if let Some(q) = self.queue.pop_front() {
            match self.tx.send(q.msg.clone(), self.rx.ack(), clock) {
                Ok(frame) => {
                    self.out.push_back(frame);
                    self.in_flight = Some(q);
                }
                Err(_) => self.queue.push_front(q),
            }
        }
    }

    /// When [`Link::poll`] next has something to do, if nothing arrives before.
    pub fn next_due(&self, now_ms: u64) -> u64 {
        let mut due = self.heartbeat_at;
        if self.node.is_none() {
            due = due.min(self.welcome_at);
        }
        if !self.tx.is_idle() {
            due = due.min(now_ms + u64::from(RETRANSMIT_MS) / 4);
        }
        due.max(now_ms)
    }

    /// Drops queued commands whose owner no longer waits (`gone`), before they are sent.
    pub fn forget(&mut self, gone: impl Fn(&T) -> bool) {
        self.queue.retain(|q| q.token.as_ref().is_none_or(|t| !gone(t)));
    }

    /// The next frame to write.
    pub fn outgoing(&mut self) -> Option<LinkFrame> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next completed command.
    pub fn completed(&mut self) -> Option<(T, Result<(), Failure>)> {
        self.done.pop_front()
    }

    /// The port is gone: every command still waiting, sent or not, and their owners.
    pub fn close(&mut self) -> Vec<T> {
        let mut owners: Vec<T> = self.in_flight.take().and_then(|q| q.token).into_iter().collect();
        owners.extend(self.queue.drain(..).filter_map(|q| q.token));
        owners
    }
}

#[cfg(test)]
mod tests;
