//! The visca-ip driver through the whole path against the VISCA-over-IP camera simulator on UDP: every
//! action as the camera sees it, a lost ACK and a lost command recovered by sequence number and run
//! once, a camera that restarts (and knows no sequence number) reset and the command run, two commands
//! executing at once in the camera's two sockets (and a STOP that cancels one of them to get in), errors
//! mapped to codes, and a STOP that overtakes and ends the queued moves.

use std::time::Duration;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::sim::Sim;

const CAM: &str = "if://capability/camera.ip";

/// One datagram the camera received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Datagram {
    /// When, in microseconds since the Unix epoch.
    us: u128,
    /// Payload type, four hex digits (`0100` command, `0110` inquiry, `0200` control).
    kind: String,
    seq: u32,
    hex: String,
}

/// Every datagram the camera received, from its own record (`UNIX_US TYPE SEQ HEX`).
fn datagrams(sim: &Sim) -> Vec<Datagram> {
    sim.received()
        .iter()
        .filter_map(|l| {
            let mut it = l.splitn(4, ' ');
            let (us, kind, seq, hex) = (it.next()?, it.next()?, it.next()?, it.next()?);
            Some(Datagram { us: us.parse().ok()?, kind: kind.into(), seq: seq.parse().ok()?, hex: hex.into() })
        })
        .collect()
}

/// `(ms, hex)` of each command and inquiry the camera received.
fn packets(sim: &Sim) -> Vec<(u128, String)> {
    datagrams(sim).into_iter().filter(|d| d.kind == "0100" || d.kind == "0110").map(|d| (d.us / 1000, d.hex)).collect()
}

fn rig(sim: &Sim, limits: Limits) -> DeviceRig {
    let actions = if_tests::visca::ACTIONS;
    let m = device::manifest(CAM, "visca-ip", &sim.endpoint(), limits, &actions, &[], &["stop"]);
    let mut r = DeviceRig::new(&m, CAM, &actions, |_, _| {});
    let up = if_tests::wait_for(Duration::from_secs(10), || {
        (code(&r.ask("stop", Hazards::NONE, &[])) == "OK").then_some(())
    });
    assert!(up.is_some(), "the camera answers: {:?}", sim.received());
    r
}

fn recall(r: &mut DeviceRig, preset: i64) -> serde_json::Value {
    r.ask("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(preset))])
}

#[test]
fn every_action_reaches_the_camera_and_it_was_reset_first() {
    let sim = Sim::start("visca-ip");
    let mut r = rig(&sim, Limits { timeout_ms: 1500, ..Limits::default() });
    let first = datagrams(&sim);
    assert_eq!((first[0].kind.as_str(), first[0].hex.as_str()), ("0200", "01"), "a RESET before anything: {first:?}");
    let commands: Vec<u32> = first.iter().filter(|d| d.kind == "0100").map(|d| d.seq).collect();
    assert_eq!(commands.first(), Some(&1), "numbered from 1 after the reset: {first:?}");
    if_tests::visca::every_action_reaches_the_camera(&mut r, &|| packets(&sim));
    let seqs: Vec<u32> = datagrams(&sim).iter().filter(|d| d.kind != "0200").map(|d| d.seq).collect();
    // One more for each message (the same again when an answer came late and it was sent again).
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == w[0]), "{seqs:?}");
    r.agent.stop();
}

#[test]
fn a_lost_ack_or_a_lost_command_is_recovered_by_sequence_number_and_runs_once() {
    let sim = Sim::start("visca-ip");
    let mut r = rig(&sim, Limits { timeout_ms: 1000, ..Limits::default() });

    // The ACK of a preset recall is lost: the driver sends it again under the same number, the camera
    // says it had it (and does not run it again), and its completion, by number, answers it.
    sim.fault("lose-ack");
    let before = datagrams(&sim).len();
    let reply = recall(&mut r, 11);
    assert_eq!(code(&reply), "OK", "{reply}");
    assert_eq!(reply["result"]["completed"], true, "{reply}");
    let sent: Vec<Datagram> =
        datagrams(&sim)[before..].iter().filter(|d| d.hex == "81 01 04 3F 02 0B FF").cloned().collect();
    assert_eq!(sent.len(), 2, "sent twice: {sent:?}");
    assert_eq!(sent[0].seq, sent[1].seq, "under the same number");

    // A zoom completes in a frame: its completion comes before any second send and answers it alone.
    let before = datagrams(&sim).len();
    let zoom = r.ask("zoom", Hazards::NONE, &[("direction", text("stop"))]);
    assert_eq!(code(&zoom), "OK", "{zoom}");
    assert_eq!(datagrams(&sim)[before..].iter().filter(|d| d.kind == "0100").count(), 1, "sent once");

    // The command itself is lost: sent again under the same number, and run.
    sim.fault("lose-command");
    let before = datagrams(&sim).len();
    let reply = recall(&mut r, 12);
    assert_eq!(code(&reply), "OK", "{reply}");
    let sent: Vec<u32> =
        datagrams(&sim)[before..].iter().filter(|d| d.hex == "81 01 04 3F 02 0C FF").map(|d| d.seq).collect();
    assert!(sent.len() == 2 && sent[0] == sent[1], "{sent:?}");
    r.agent.stop();
}

#[test]
fn a_camera_that_restarts_is_reset_and_the_command_runs() {
    let mut sim = Sim::start("visca-ip");
    let mut r = rig(&sim, Limits { timeout_ms: 1500, ..Limits::default() });
    for p in 1..=3 {
        assert_eq!(code(&recall(&mut r, p)), "OK");
    }
    // Power-cycled: the camera knows no sequence number until it is reset.
    sim.restart();
    let before = datagrams(&sim).len();
    let reply = recall(&mut r, 4);
    assert_eq!(code(&reply), "OK", "{reply}");
    let after: Vec<(String, u32, String)> =
        datagrams(&sim)[before..].iter().map(|d| (d.kind.clone(), d.seq, d.hex.clone())).collect();
    let recall4 = "81 01 04 3F 02 04 FF".to_string();
    // A message sent again after a late answer is the same message: count each once.
    let mut after = after;
    after.dedup();
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!((after[0].0.as_str(), &after[0].2), ("0100", &recall4), "refused under the old number: {after:?}");
    assert_eq!((after[1].0.as_str(), after[1].2.as_str()), ("0200", "01"), "then a RESET: {after:?}");
    assert_eq!((after[2].0.as_str(), &after[2].2), ("0100", &recall4), "then again: {after:?}");
    assert!(after[2].1 > after[0].1, "under a number never given before: {after:?}");
    r.agent.stop();
}

#[test]
fn a_zoom_runs_while_a_preset_move_executes_in_the_other_socket() {
    let sim = Sim::start("visca-ip");
    let mut r = rig(&sim, Limits { timeout_ms: 1500, ..Limits::default() });
    if_tests::visca::a_zoom_runs_beside_a_preset_move(&mut r, &|| packets(&sim));
    r.agent.stop();
}

#[test]
fn a_stop_cancels_a_preset_move_when_both_sockets_execute() {
    let sim = Sim::start("visca-ip");
    let mut r = rig(&sim, Limits { timeout_ms: 1500, ..Limits::default() });
    if_tests::visca::a_stop_cancels_a_move_when_both_sockets_execute(&mut r, &|| packets(&sim));
    r.agent.stop();
}

#[test]
fn errors_map_to_codes_and_a_stop_ends_the_queued_moves() {
    let sim = Sim::start("visca-ip");
    let limits = Limits { rps: 2.0, burst: 1, queue_depth: 30, timeout_ms: 1500, ..Limits::default() };
    let mut r = rig(&sim, limits);
    for (fault, code_, text_) in [
        ("syntax", "IF_ERR_403", "syntax error"),
        ("notexec", "IF_ERR_403", "not executable"),
        ("busy", "IF_ERR_403", "buffer full"),
    ] {
        sim.fault(fault);
        let before = datagrams(&sim).len();
        let reply = recall(&mut r, 7);
        assert_eq!(code(&reply), code_, "{fault}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap_or("").contains(text_), "{fault}: {reply}");
        if fault == "busy" {
            let tries: Vec<u32> =
                datagrams(&sim)[before..].iter().filter(|d| d.hex == "81 01 04 3F 02 07 FF").map(|d| d.seq).collect();
            assert_eq!(tries.len(), 3, "three tries in all: {tries:?}");
            assert!(tries.windows(2).all(|w| w[1] > w[0]), "each under a new number: {tries:?}");
        }
    }
    sim.fault("");
    if_tests::visca::a_stop_ends_the_queued_moves(&mut r, &|| packets(&sim));
}
