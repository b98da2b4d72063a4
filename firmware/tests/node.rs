//! The node's logic on the host: a board in memory, an edge played frame by frame, the clock by hand.

use if_firmware::hal::{Clock, Inputs, Lamps, Link, Notice, Notices, Relays};
use if_firmware::{Config, Node, run};
use if_protocol::link::{self, Accumulator, Lamp, LinkFrame, MAX_LAMPS, Message, NakReason, SafeReason};

#[derive(Debug, Default)]
struct Board {
    now: u32,
    levels: u16,
    line_in: Vec<u8>,
    line_out: Vec<u8>,
    lamps: [Lamp; 8],
    relays: u16,
    writes: Vec<String>,
    notices: Vec<Notice>,
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
impl Inputs for Board {
    fn levels(&mut self) -> u16 {
        self.levels
    }
}
impl Clock for Board {
    fn now_ms(&mut self) -> u32 {
        self.now
    }
}
impl Link for Board {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.line_in.len().min(buf.len());
        buf[..n].copy_from_slice(&self.line_in[..n]);
        self.line_in.drain(..n);
        n
    }
    fn write(&mut self, bytes: &[u8]) {
        self.line_out.extend_from_slice(bytes);
    }
}
impl Notices for Board {
    fn notice(&mut self, n: Notice) {
        self.notices.push(n);
    }
}

struct Bench {
    node: Node,
    board: Board,
    acc: Accumulator,
    seq: u8,
}

const BOOTS: u32 = 3;

impl Bench {
    fn new() -> Bench {
        let cfg = Config { safe_relays: 0b0010, ..Config::default() };
        Bench { node: Node::new(cfg, BOOTS, 0), board: Board::default(), acc: Accumulator::new(), seq: 0 }
    }

    /// Runs the main loop for `ms` milliseconds, one pass per millisecond; returns the frames sent.
    fn run(&mut self, ms: u32) -> Vec<LinkFrame> {
        for _ in 0..ms {
            run::step(&mut self.node, &mut self.board);
            self.board.now = self.board.now.wrapping_add(1);
        }
        let mut out = Vec::new();
        let bytes = std::mem::take(&mut self.board.line_out);
        self.acc.feed(&bytes, |r| out.push(r.expect("the node sends only valid frames")));
        out
    }

    fn put(&mut self, frame: &LinkFrame) {
        let mut buf = [0u8; link::MAX_ENCODED_LEN];
        let n = link::encode(frame, &mut buf).expect("fits");
        self.board.line_in.extend_from_slice(&buf[..n]);
    }

    /// Sends a reliable message with the next number; returns the number.
    fn command(&mut self, msg: Message) -> u8 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.put(&LinkFrame { seq: self.seq, ack: 0, msg });
        self.seq
    }

    fn welcome(&mut self, session: u32, boots: u32) {
        self.put(&LinkFrame { seq: 0, ack: 0, msg: Message::Welcome { session, boots } });
    }

    /// Welcomed and resumed: a node taking output commands.
    fn serving() -> Bench {
        let mut b = Bench::new();
        b.run(1);
        b.welcome(7, BOOTS);
        b.command(Message::Resume);
        let sent = b.run(2);
        assert!(answers(&sent).contains(&(b.seq, Message::Ack)), "{sent:?}");
        b
    }

    fn heartbeat(&mut self) {
        self.put(&LinkFrame { seq: 0, ack: 0, msg: Message::Heartbeat { uptime_ms: self.board.now } });
    }
}

fn answers(frames: &[LinkFrame]) -> Vec<(u8, Message)> {
    frames.iter().filter(|f| f.msg.is_answer()).map(|f| (f.ack, f.msg.clone())).collect()
}

fn hellos(frames: &[LinkFrame]) -> usize {
    frames.iter().filter(|f| matches!(f.msg, Message::Hello { .. })).count()
}

#[test]
fn boots_safe_and_says_hello_every_second_until_answered() {
    let mut b = Bench::new();
    let sent = b.run(2500);
    assert_eq!(hellos(&sent), 3, "at 0, 1000 and 2000 ms");
    assert!(matches!(
        sent.iter().find(|f| matches!(f.msg, Message::Hello { .. })).map(|f| &f.msg),
        Some(Message::Hello { lamps: 8, relays: 4, inputs: 8, boots: BOOTS, .. })
    ));
    assert_eq!(b.node.safe(), Some(SafeReason::Boot));
    assert_eq!(b.board.relays, 0b0010, "relays at their safe levels from the start");
    assert!(b.board.writes.iter().any(|w| w == "lamp 7 off"), "every output written once at start");

    b.welcome(9, 0);
    let sent = b.run(10);
    assert_eq!(hellos(&sent), 0, "an unasked Welcome is answered at the next Hello slot");
    let sent = b.run(1000);
    assert_eq!(hellos(&sent), 1);
    b.welcome(9, BOOTS);
    assert_eq!(hellos(&b.run(3000)), 0, "welcomed: no more Hello");
}

#[test]
fn output_commands_wait_for_resume() {
    let mut b = Bench::new();
    b.run(1);
    b.welcome(7, BOOTS);
    let n = b.command(Message::SetLamp { lamp: 0, color: Lamp::Red });
    assert_eq!(answers(&b.run(2)), [(n, Message::Nak { reason: NakReason::InSafeState })]);
    assert_eq!(b.board.lamps[0], Lamp::Off);
    let n = b.command(Message::Resume);
    assert_eq!(answers(&b.run(2)), [(n, Message::Ack)]);
    let n = b.command(Message::SetLamp { lamp: 0, color: Lamp::Red });
    assert_eq!(answers(&b.run(2)), [(n, Message::Ack)]);
    assert_eq!(b.board.lamps[0], Lamp::Red);
    assert_eq!(b.board.notices, [Notice::Session(7), Notice::Resumed]);
}

#[test]
fn a_resent_command_is_answered_again_but_carried_out_once() {
    let mut b = Bench::serving();
    let frame = LinkFrame { seq: 40, ack: 0, msg: Message::PulseRelay { relay: 0, ms: 100 } };
    b.put(&frame);
    b.run(60);
    b.put(&frame);
    let sent = b.run(30);
    assert_eq!(answers(&sent), [(40, Message::Ack)], "the resend is answered");
    assert_eq!(b.board.relays & 1, 1);
    b.run(20);
    assert_eq!(b.board.relays & 1, 0, "the pulse was not restarted by the resend: it ended at 100 ms");
    assert_eq!(b.board.writes.iter().filter(|w| *w == "relay 0 on").count(), 1);
    assert_eq!(b.node.counters().duplicates, 1);

    let bad = LinkFrame { seq: 41, ack: 0, msg: Message::SetRelay { relay: 9, on: true } };
    b.put(&bad);
    b.put(&bad);
    let sent = b.run(2);
    let nak = (41, Message::Nak { reason: NakReason::NoSuchOutput });
    assert_eq!(answers(&sent), [nak.clone(), nak], "the same answer twice");
}

#[test]
fn silence_from_the_edge_puts_outputs_safe_and_the_node_reports_it_when_the_link_is_back() {
    let mut b = Bench::serving();
    b.command(Message::SetLamp { lamp: 2, color: Lamp::Green });
    b.command(Message::SetRelay { relay: 0, on: true });
    b.command(Message::SetRelay { relay: 1, on: false });
    b.run(1400);
    assert_eq!((b.board.lamps[2], b.board.relays), (Lamp::Green, 0b0001), "1.4 s of silence: still serving");
    b.run(200);
    assert_eq!(b.node.safe(), Some(SafeReason::LinkLost));
    assert_eq!((b.board.lamps[2], b.board.relays), (Lamp::Off, 0b0010), "lamps off, relays to their safe levels");
    assert!(b.board.notices.contains(&Notice::Safe(SafeReason::LinkLost)));

    let n = b.command(Message::SetLamp { lamp: 2, color: Lamp::Green });
    let sent = b.run(5);
    assert_eq!(answers(&sent), [(n, Message::Nak { reason: NakReason::InSafeState })]);
    let report = sent.iter().find(|f| f.msg == Message::SafeEntered { reason: SafeReason::LinkLost });
    let report = report.expect("the safe state is reported once the edge is heard again");
    assert!(report.seq != 0, "as a reliable message");
    let again = b.run(120);
    assert!(again.iter().any(|f| f.seq == report.seq && matches!(f.msg, Message::SafeEntered { .. })), "resent");
    b.put(&LinkFrame { seq: 0, ack: report.seq, msg: Message::Ack });
    b.heartbeat();
    b.run(5);
    b.heartbeat();
    let quiet = b.run(300);
    assert!(!quiet.iter().any(|f| matches!(f.msg, Message::SafeEntered { .. })), "answered: not sent again");

    b.command(Message::Resume);
    let n = b.command(Message::SetLamp { lamp: 2, color: Lamp::Green });
    assert!(answers(&b.run(2)).contains(&(n, Message::Ack)));
    assert_eq!(b.board.lamps[2], Lamp::Green);
}

#[test]
fn an_edge_restart_is_a_new_session_its_numbering_starts_again() {
    let mut b = Bench::serving();
    let n = b.command(Message::SetLamp { lamp: 1, color: Lamp::Red });
    assert_eq!(n, 2);
    b.run(2);
    // The edge restarts: new session, its first command is number 1 again.
    b.welcome(8, 0);
    let sent = b.run(2);
    assert_eq!(hellos(&sent), 1, "Hello at once for the new edge");
    b.welcome(8, BOOTS);
    b.put(&LinkFrame { seq: 2, ack: 0, msg: Message::SetLamp { lamp: 1, color: Lamp::Amber } });
    let sent = b.run(2);
    assert_eq!(answers(&sent), [(2, Message::Ack)]);
    assert_eq!(b.board.lamps[1], Lamp::Amber, "seq 2 of the new session is new, not a resend of the old seq 2");
    b.welcome(8, BOOTS);
    assert_eq!(hellos(&b.run(2)), 0, "the same session again changes nothing");
}

#[test]
fn a_press_is_sent_once_reliably_and_dropped_while_the_link_is_down() {
    let mut b = Bench::serving();
    b.board.levels = 0b100;
    let mut got = Vec::new();
    for _ in 0..4 {
        b.heartbeat();
        got.extend(b.run(100));
    }
    let gpi: Vec<_> = got.iter().filter(|f| matches!(f.msg, Message::Gpi { .. })).collect();
    assert!(gpi.len() >= 3, "resent every 100 ms while unanswered: {gpi:?}");
    assert!(gpi.iter().all(|f| f.seq == gpi[0].seq && f.msg == Message::Gpi { input: 2, pressed: true }));
    b.put(&LinkFrame { seq: 0, ack: gpi[0].seq, msg: Message::Ack });
    b.board.levels = 0;
    let sent = b.run(100);
    let release: Vec<_> = sent.iter().filter(|f| matches!(f.msg, Message::Gpi { .. })).collect();
    assert_eq!(release.len(), 1);
    assert_eq!(release[0].msg, Message::Gpi { input: 2, pressed: false });
    assert_ne!(release[0].seq, gpi[0].seq);
    b.put(&LinkFrame { seq: 0, ack: release[0].seq, msg: Message::Ack });

    b.run(2000);
    assert_eq!(b.node.safe(), Some(SafeReason::LinkLost));
    b.board.levels = 0b1;
    b.run(100);
    b.heartbeat();
    let sent = b.run(50);
    assert!(!sent.iter().any(|f| matches!(f.msg, Message::Gpi { .. })), "the press during the outage is dropped");
    assert_eq!(b.node.counters().gpi_dropped, 1);
}

#[test]
fn noise_on_the_line_is_counted_and_never_acted_on() {
    let mut b = Bench::serving();
    let mut buf = [0u8; link::MAX_ENCODED_LEN];
    let frame = LinkFrame { seq: 9, ack: 0, msg: Message::SetLamp { lamp: 3, color: Lamp::Red } };
    let n = link::encode(&frame, &mut buf).expect("fits");
    buf[3] ^= 0x10;
    b.board.line_in.extend_from_slice(&buf[..n]);
    b.board.line_in.extend_from_slice(&[0x55, 0x13, 0x00]);
    let sent = b.run(5);
    assert!(answers(&sent).is_empty());
    assert_eq!(b.board.lamps[3], Lamp::Off);
    assert_eq!(b.node.counters().bad_frames, 2);
}

#[test]
fn the_edge_can_command_the_safe_state_and_resume() {
    let mut b = Bench::serving();
    b.command(Message::SetRelay { relay: 1, on: false });
    b.command(Message::SetLamp { lamp: 0, color: Lamp::Red });
    b.run(3);
    let n = b.command(Message::SafeState);
    let sent = b.run(3);
    assert_eq!(answers(&sent), [(n, Message::Ack)]);
    assert_eq!((b.board.lamps[0], b.board.relays), (Lamp::Off, 0b0010));
    assert!(!sent.iter().any(|f| matches!(f.msg, Message::SafeEntered { .. })), "the edge asked: no report");
    assert!(sent.iter().any(|f| matches!(f.msg, Message::Status { safe: true, .. })));
}

#[test]
fn every_message_the_node_makes_fits_a_frame() {
    let mut buf = [0u8; link::MAX_ENCODED_LEN];
    let status = Message::Status { lamps: (0..MAX_LAMPS).map(|_| Lamp::Amber).collect(), relays: u16::MAX, safe: true };
    let hello =
        Message::Hello { board_id: u32::MAX, firmware: [255; 3], lamps: 16, relays: 16, inputs: 16, boots: u32::MAX };
    for msg in [status, hello, Message::SafeEntered { reason: SafeReason::LinkLost }] {
        let f = LinkFrame { seq: 255, ack: 255, msg };
        assert!(link::encode(&f, &mut buf).is_ok(), "{f:?}");
    }
}

#[test]
fn the_node_state_fits_in_two_kilobytes_of_stack() {
    let size = std::mem::size_of::<Node>();
    println!("Node: {size} bytes");
    assert!(size <= 2048, "Node is {size} bytes");
}
