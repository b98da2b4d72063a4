//! The edge's link state against the node's real logic (`if-firmware`), wired byte for byte in memory
//! with a clock by hand and a line that can drop and flip bytes.

use super::*;
use if_firmware::hal::{Lamps, Notice, Notices, Relays};
use if_firmware::{Config, Node};
use if_protocol::link::{MAX_ENCODED_LEN, encode};

#[derive(Debug, Default)]
struct Board {
    lamps: [Lamp; 8],
    relays: u16,
    writes: Vec<String>,
}

impl Lamps for Board {
    fn set_lamp(&mut self, i: u8, c: Lamp) {
        self.lamps[usize::from(i)] = c;
        self.writes.push(format!("lamp {i} {}", c.name()));
    }
}
impl Relays for Board {
    fn set_relay(&mut self, i: u8, on: bool) {
        self.relays = if on { self.relays | 1 << i } else { self.relays & !(1 << i) };
        self.writes.push(format!("relay {i} {}", if on { "on" } else { "off" }));
    }
}
impl Notices for Board {
    fn notice(&mut self, _: Notice) {}
}

struct Wire {
    edge: Link<u32>,
    node: Node,
    board: Board,
    now: u64,
    levels: u16,
    /// One byte in `loss` is dropped and one in `loss` flipped, each way (0: a clean line).
    loss: u64,
    rng: u64,
    done: Vec<(u32, Result<(), Failure>)>,
    events: Vec<Event>,
}

impl Wire {
    fn new(restore: u16) -> Wire {
        let cfg = Config { safe_relays: 0b1000, ..Config::default() };
        Wire {
            edge: Link::new(0xABCD, restore, 0),
            node: Node::new(cfg, 1, 0),
            board: Board::default(),
            now: 0,
            levels: 0,
            loss: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            done: Vec::new(),
            events: Vec::new(),
        }
    }

    fn noise(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        if self.loss == 0 {
            return bytes;
        }
        let mut out = Vec::with_capacity(bytes.len());
        for b in bytes {
            // xorshift: a fixed sequence, so a failure is reproducible.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            match self.rng % self.loss {
                0 => {}
                1 => out.push(b ^ (1 << ((self.rng >> 60) % 8))),
                _ => out.push(b),
            }
        }
        out
    }

    fn run(&mut self, ms: u64) {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        for _ in 0..ms {
            self.edge.poll(self.now);
            let mut bytes = Vec::new();
            while let Some(f) = self.edge.outgoing() {
                let n = encode(&f, &mut buf).expect("fits");
                bytes.extend_from_slice(&buf[..n]);
            }
            let bytes = self.noise(bytes);
            let clock = self.now as u32;
            self.node.receive(&bytes, clock, &mut self.board);
            self.node.poll(clock, self.levels, &mut self.board);
            self.node.flush(&mut self.board);
            let mut back = Vec::new();
            while let Some(f) = self.node.outgoing() {
                let n = encode(&f, &mut buf).expect("fits");
                back.extend_from_slice(&buf[..n]);
            }
            let back = self.noise(back);
            self.edge.receive(&back, self.now);
            self.done.extend(std::iter::from_fn(|| self.edge.completed()));
            self.events.extend(std::iter::from_fn(|| self.edge.event()));
            self.now += 1;
        }
    }

    /// Submits and runs until the command completes (at most two seconds).
    fn command(&mut self, token: u32, msg: Message) -> Result<(), Failure> {
        self.edge.submit(token, msg, self.now).map_err(|(_, f)| f)?;
        for _ in 0..2000 {
            self.run(1);
            if let Some(i) = self.done.iter().position(|(t, _)| *t == token) {
                return self.done.remove(i).1;
            }
        }
        panic!("command {token} never completed");
    }

    fn reboot(&mut self, boots: u32) {
        let cfg = Config { safe_relays: 0b1000, ..Config::default() };
        self.node = Node::new(cfg, boots, self.now as u32);
        self.board.writes.clear();
    }
}

#[test]
fn the_handshake_makes_the_node_ready_and_commands_complete_with_its_answer() {
    let mut w = Wire::new(0);
    assert_eq!(w.edge.submit(1, Message::Resume, 0), Err((1, Failure::NotReady)), "nothing before Hello");
    w.run(50);
    assert!(w.edge.ready(w.now));
    assert!(matches!(w.events.first(), Some(Event::Hello(NodeInfo { lamps: 8, relays: 4, boots: 1, .. }))));
    assert_eq!(w.command(2, Message::SetLamp { lamp: 1, color: Lamp::Red }), Ok(()));
    assert_eq!(w.board.lamps[1], Lamp::Red, "the edge resumed the node itself after its Hello");
    assert_eq!(w.command(3, Message::SetRelay { relay: 7, on: true }), Err(Failure::Refused(NakReason::NoSuchOutput)));
    assert_eq!(w.command(4, Message::SafeState), Ok(()));
    assert_eq!(w.board.lamps[1], Lamp::Off);
    let held = w.command(5, Message::SetLamp { lamp: 1, color: Lamp::Red });
    assert_eq!(held, Err(Failure::Refused(NakReason::InSafeState)), "safe until resume");
    assert_eq!(w.command(6, Message::Resume), Ok(()));
    assert_eq!(w.command(7, Message::SetLamp { lamp: 1, color: Lamp::Green }), Ok(()));
}

#[test]
fn a_rebooted_node_gets_its_lamps_and_the_allowed_latched_relays_back_but_no_pulse() {
    let mut w = Wire::new(0b0001);
    w.run(50);
    assert_eq!(w.command(1, Message::SetLamp { lamp: 2, color: Lamp::Amber }), Ok(()));
    assert_eq!(w.command(2, Message::SetRelay { relay: 0, on: true }), Ok(()));
    assert_eq!(w.command(3, Message::SetRelay { relay: 1, on: true }), Ok(()));
    assert_eq!(w.command(4, Message::PulseRelay { relay: 2, ms: 5000 }), Ok(()));
    w.reboot(2);
    w.run(200);
    assert!(w.events.iter().any(|e| matches!(e, Event::Hello(NodeInfo { boots: 2, .. }))));
    assert_eq!(w.node.safe(), None, "resumed");
    assert_eq!(w.board.lamps[2], Lamp::Amber, "lamps from the model");
    assert_eq!(w.board.relays & 0b0111, 0b0001, "relay 0 restored (allowed); relay 1 not; the pulse not replayed");
}

#[test]
fn after_the_link_is_lost_the_node_reports_it_and_is_resynchronised() {
    let mut w = Wire::new(0);
    w.run(50);
    assert_eq!(w.command(1, Message::SetLamp { lamp: 4, color: Lamp::Green }), Ok(()));
    // The line goes dead both ways for two seconds.
    w.loss = 1;
    w.run(2000);
    assert_eq!(w.node.safe(), Some(SafeReason::LinkLost));
    assert_eq!(w.board.lamps[4], Lamp::Off);
    assert!(!w.edge.ready(w.now), "the edge notices the silence too");
    assert_eq!(w.edge.submit(2, Message::Resume, w.now), Err((2, Failure::NotReady)));
    w.loss = 0;
    w.run(700);
    assert!(w.events.contains(&Event::Safe(SafeReason::LinkLost)), "reported at the next heartbeat: {:?}", w.events);
    assert_eq!((w.node.safe(), w.board.lamps[4]), (None, Lamp::Green), "resumed with the model's lamps");
}

#[test]
fn a_node_heard_before_its_hello_is_not_taken_at_its_word() {
    let mut edge: Link<u32> = Link::new(1, 0, 0);
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let stale = LinkFrame { seq: 5, ack: 0, msg: Message::Gpi { input: 0, pressed: true } };
    let n = encode(&stale, &mut buf).expect("fits");
    edge.receive(&buf[..n], 0);
    assert_eq!(edge.event(), None, "a numbered frame before Hello is neither taken");
    edge.poll(0);
    let out: Vec<_> = std::iter::from_fn(|| edge.outgoing()).collect();
    assert!(!out.iter().any(|f| f.msg.is_answer()), "nor answered: {out:?}");
}

#[test]
fn button_edges_reach_the_edge_once_each() {
    let mut w = Wire::new(0);
    w.run(50);
    w.levels = 0b10;
    w.run(100);
    w.levels = 0;
    w.run(100);
    let gpi: Vec<_> = w.events.iter().filter(|e| matches!(e, Event::Gpi { .. })).collect();
    assert_eq!(gpi, [&Event::Gpi { input: 1, pressed: true }, &Event::Gpi { input: 1, pressed: false }]);
}

#[test]
fn a_noisy_line_never_carries_a_command_out_twice() {
    let mut w = Wire::new(0);
    w.run(100);
    // One byte in 40 dropped and one in 40 flipped, both ways: most frames of ~10 bytes survive, many do not.
    w.loss = 40;
    let (mut ok, mut no_answer, mut refused) = (0, 0, 0);
    for token in 0..300 {
        if !w.edge.ready(w.now) {
            w.run(50);
            continue;
        }
        match w.command(token, Message::PulseRelay { relay: 0, ms: 2 }) {
            Ok(()) => ok += 1,
            Err(Failure::NoAnswer) => no_answer += 1,
            Err(_) => refused += 1,
        }
        w.run(5);
    }
    w.loss = 0;
    w.run(50);
    let pulses = w.board.writes.iter().filter(|l| *l == "relay 0 on").count();
    println!("{ok} acknowledged, {no_answer} unanswered, {refused} refused, {pulses} pulses");
    assert!(ok > 200, "{ok} of 300 completed");
    assert!(
        (ok..=ok + no_answer).contains(&pulses),
        "{pulses} pulses for {ok} acknowledged and {no_answer} unanswered ({refused} refused): none twice"
    );
    assert!(w.edge.bad_frames() > 0 && w.node.counters().bad_frames > 0, "the line really was noisy");
}
