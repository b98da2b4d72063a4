//! The rack node's firmware under QEMU (`mps2-an386`), its link driven frame by frame from the test and
//! its front panel read and pressed: what the real firmware does on the emulated board.

use std::time::{Duration, Instant};

use if_protocol::link::{Lamp, LinkFrame, Message, NakReason, SafeReason};
use if_tests::rack::{EdgeEnd, RackNode};

const SECOND: Duration = Duration::from_secs(1);

/// A node welcomed and resumed, with heartbeats flowing.
fn serving() -> (RackNode, EdgeEnd) {
    let node = RackNode::start();
    let mut edge = EdgeEnd::open(node.link());
    edge.beat(true);
    edge.handshake(41);
    assert_eq!(edge.command(Message::Resume), Some(Message::Ack));
    (node, edge)
}

#[test]
fn it_boots_with_every_output_safe_and_says_hello() {
    let node = RackNode::start();
    let edge = EdgeEnd::open(node.link());
    let hello = edge.handshake(7);
    assert!(
        matches!(hello, Message::Hello { lamps: 8, relays: 4, inputs: 8, boots: 1, firmware: [0, 1, 0], .. }),
        "{hello:?}"
    );
    node.wait_line(0, "relay 3 on", 5 * SECOND).expect("relay 3 fails closed");
    let text = node.text();
    assert_eq!(text.first().map(String::as_str), Some("boot 1"), "{text:?}");
    for i in 0..8 {
        assert!(text.contains(&format!("lamp {i} off")), "lamp {i} is set at boot: {text:?}");
    }
    assert!(text.contains(&"relay 0 off".to_string()));
    node.wait_line(0, "session 7", 2 * SECOND).expect("the Welcome starts a session");
    let mut edge = edge;
    let refused = edge.command(Message::SetLamp { lamp: 0, color: Lamp::Red });
    assert_eq!(refused, Some(Message::Nak { reason: NakReason::InSafeState }), "no output before Resume");
}

#[test]
fn a_lamp_and_a_relay_reach_the_panel_once_each_and_a_pulse_ends_after_its_time() {
    let (node, mut edge) = serving();
    let mark = node.mark();
    assert_eq!(edge.command(Message::SetLamp { lamp: 2, color: Lamp::Red }), Some(Message::Ack));
    let frame = LinkFrame { seq: 77, ack: 0, msg: Message::SetRelay { relay: 1, on: true } };
    assert_eq!(edge.resend(&frame), Some(Message::Ack));
    assert_eq!(edge.resend(&frame), Some(Message::Ack), "a resend is answered again");
    node.wait_line(mark, "relay 1 on", 2 * SECOND).expect("relay 1 closes");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.count(mark, "lamp 2 red"), 1);
    assert_eq!(node.count(mark, "relay 1 on"), 1, "the resend was not carried out again");

    let mark = node.mark();
    assert_eq!(edge.command(Message::PulseRelay { relay: 0, ms: 400 }), Some(Message::Ack));
    let on = node.wait_line(mark, "relay 0 on", 2 * SECOND).expect("the pulse closes relay 0");
    let off = node.wait_line(mark, "relay 0 off", 3 * SECOND).expect("and opens it again");
    let held = off.at.duration_since(on.at);
    assert!(held >= Duration::from_millis(350), "held {held:?} of a 400 ms pulse");
    let nak = edge.command(Message::SetRelay { relay: 4, on: true });
    assert_eq!(nak, Some(Message::Nak { reason: NakReason::NoSuchOutput }), "the board has relays 0-3");
}

#[test]
fn silence_from_the_edge_puts_every_output_safe_until_the_edge_resumes() {
    let (node, mut edge) = serving();
    assert_eq!(edge.command(Message::SetLamp { lamp: 5, color: Lamp::Green }), Some(Message::Ack));
    assert_eq!(edge.command(Message::SetRelay { relay: 3, on: false }), Some(Message::Ack));
    std::thread::sleep(3 * SECOND);
    assert_eq!(node.count(0, "safe link-lost"), 0, "heartbeats keep the link alive");

    let mark = node.mark();
    let quiet = Instant::now();
    edge.beat(false);
    let safe = node.wait_line(mark, "safe link-lost", 5 * SECOND).expect("the node gives up on the edge");
    let after = safe.at.duration_since(quiet);
    assert!(after >= Duration::from_millis(1200), "safe after {after:?} of silence, not before the timeout");
    node.wait_line(mark, "lamp 5 off", SECOND).expect("lamps off");
    node.wait_line(mark, "relay 3 on", SECOND).expect("relay 3 back to its safe level");

    let back = Instant::now();
    edge.beat(true);
    let report = edge.wait(back, 2 * SECOND, |f| matches!(f.msg, Message::SafeEntered { .. })).expect("reported");
    assert_eq!(report.msg, Message::SafeEntered { reason: SafeReason::LinkLost });
    edge.send(&LinkFrame { seq: 0, ack: report.seq, msg: Message::Ack });
    let refused = edge.command(Message::SetLamp { lamp: 5, color: Lamp::Green });
    assert_eq!(refused, Some(Message::Nak { reason: NakReason::InSafeState }));
    assert_eq!(edge.command(Message::Resume), Some(Message::Ack));
    assert_eq!(edge.command(Message::SetLamp { lamp: 5, color: Lamp::Green }), Some(Message::Ack));
    node.wait_line(mark, "lamp 5 green", SECOND).expect("serving again");
}

#[test]
fn a_button_pressed_on_the_panel_is_one_gpi_message_per_edge() {
    let (mut node, edge) = serving();
    let since = Instant::now();
    node.press(3);
    let press =
        edge.wait(since, 2 * SECOND, |f| matches!(f.msg, Message::Gpi { .. })).expect("the press reaches the edge");
    assert_eq!(press.msg, Message::Gpi { input: 3, pressed: true });
    edge.send(&LinkFrame { seq: 0, ack: press.seq, msg: Message::Ack });
    std::thread::sleep(Duration::from_millis(500));
    node.release(3);
    let release = edge
        .wait(since, 2 * SECOND, |f| f.msg == Message::Gpi { input: 3, pressed: false })
        .expect("the release reaches the edge");
    edge.send(&LinkFrame { seq: 0, ack: release.seq, msg: Message::Ack });
    std::thread::sleep(Duration::from_millis(500));
    let gpi: Vec<_> = edge.frames().into_iter().filter(|(_, f)| matches!(f.msg, Message::Gpi { .. })).collect();
    let numbers: std::collections::BTreeSet<u8> = gpi.iter().map(|(_, f)| f.seq).collect();
    assert_eq!(numbers.len(), 2, "two edges, each one message (resent at most until answered): {gpi:?}");
    node.say("press 99\n");
    assert!(node.wait_line(0, "? unknown", 2 * SECOND).is_some(), "the panel refuses what it cannot do");
}

#[test]
fn noise_on_the_link_is_never_carried_out_and_the_link_recovers() {
    let (node, mut edge) = serving();
    let mark = node.mark();
    let mut buf = [0u8; if_protocol::link::MAX_ENCODED_LEN];
    let frame = LinkFrame { seq: 200, ack: 0, msg: Message::SetLamp { lamp: 6, color: Lamp::Amber } };
    let n = if_protocol::link::encode(&frame, &mut buf).expect("fits");
    for bit in [1u8, 4, 6] {
        let mut bad = buf;
        bad[2] ^= 1 << bit;
        edge.send_raw(&bad[..n]);
    }
    edge.send_raw(&[0x42; 300]);
    edge.send_raw(&[0]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.count(mark, "lamp 6 amber"), 0, "no corrupted frame is carried out");
    assert_eq!(edge.command(Message::SetLamp { lamp: 6, color: Lamp::Amber }), Some(Message::Ack));
    node.wait_line(mark, "lamp 6 amber", SECOND).expect("the next good frame is");
}

#[test]
fn a_stopped_main_loop_is_reset_by_the_watchdog_and_the_edge_hears_the_new_boot() {
    let (mut node, edge) = serving();
    let mark = node.mark();
    node.say("selftest watchdog\n");
    let hang = node.wait_line(mark, "hang", 2 * SECOND).expect("the main loop stops");
    let boot = node.wait_line(mark, "boot 2", 5 * SECOND).expect("the watchdog resets the board");
    let after = boot.at.duration_since(hang.at);
    assert!(after >= Duration::from_millis(300), "reset {after:?} after the loop stopped: two 250 ms periods");
    node.wait_line(mark, "relay 3 on", SECOND).expect("outputs safe from the start");
    let hello = edge.wait(hang.at, 3 * SECOND, |f| matches!(f.msg, Message::Hello { .. })).expect("Hello again");
    assert!(matches!(hello.msg, Message::Hello { boots: 2, .. }), "{hello:?}: the boot counter survived the reset");
}
