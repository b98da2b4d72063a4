//! The visca-serial driver through the whole path against the VISCA camera simulator on a
//! pseudo-terminal: every action as the camera sees it, error replies mapped to codes, buffer full sent
//! again, a zoom beside a preset move in the camera's second socket (and a STOP that cancels a move to
//! get in when both are busy), a STOP that overtakes and ends the queued moves (each answered
//! SUPERSEDED, witnessed), the rate limit, the port going away and back, and the camera's own tally lamp
//! following its vMix input.

use std::time::Duration;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::sim::Sim;
use if_tests::talent::Talent;

const CAM: &str = "if://capability/camera.one";

fn manifest(endpoint: &str, rps: f32, burst: u32, queue_depth: u32) -> String {
    let limits = Limits { rps, burst, queue_depth, timeout_ms: 1500, ..Limits::default() };
    device::manifest(CAM, "visca-serial", endpoint, limits, &["preset_recall", "pan_tilt", "stop"], &[], &["stop"])
}

/// (unix ms, hex) of every packet the camera received.
fn packets(sim: &Sim) -> Vec<(u128, String)> {
    sim.received()
        .iter()
        .filter_map(|l| l.split_once(' ').and_then(|(t, h)| Some((t.parse().ok()?, h.to_string()))))
        .collect()
}

#[test]
fn the_camera_sees_the_protocol_errors_map_to_codes_and_a_stop_ends_the_queue() {
    let sim = Sim::start("visca");
    let mut r =
        DeviceRig::new(&manifest(&sim.endpoint(), 2.0, 1, 30), CAM, &["preset_recall", "pan_tilt", "stop"], |_, _| {});
    let recall = if_tests::wait_for(Duration::from_secs(10), || {
        let reply = r.ask("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(5))]);
        (code(&reply) == "OK").then_some(reply)
    })
    .expect("a preset recall once the port is open");
    assert_eq!(recall["result"]["completed"], true, "answered on completion: {recall}");
    assert!(packets(&sim).iter().any(|(_, h)| h == "81 01 04 3F 02 05 FF"), "{:?}", sim.received());

    sim.fault("syntax");
    let syntax = r.ask("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(6))]);
    assert_eq!(code(&syntax), "IF_ERR_403", "{syntax}");
    assert!(syntax["error"]["message"].as_str().unwrap_or("").contains("syntax error"), "{syntax}");
    sim.fault("notexec");
    let notexec = r.ask("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(6))]);
    assert!(notexec["error"]["message"].as_str().unwrap_or("").contains("not executable"), "{notexec}");
    // Buffer full: the camera took nothing, so the command goes again a frame later, three tries in all.
    sim.fault("busy");
    let before = packets(&sim).len();
    let busy = r.ask("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(7))]);
    assert_eq!(code(&busy), "IF_ERR_403", "{busy}");
    assert!(busy["error"]["message"].as_str().unwrap_or("").contains("buffer full"), "{busy}");
    let tries = packets(&sim)[before..].iter().filter(|(_, h)| h == "81 01 04 3F 02 07 FF").count();
    assert_eq!(tries, 3, "sent three times in all");
    sim.fault("");

    // Six moves queue behind the lane's 2 a second; a STOP goes straight to the camera and ends them.
    if_tests::visca::a_stop_ends_the_queued_moves(&mut r, &|| packets(&sim));
}

#[test]
fn a_hundred_commands_at_rps_10_burst_5_reach_the_camera_at_that_rate_and_the_rest_are_queue_full() {
    let sim = Sim::start("visca");
    let mut r =
        DeviceRig::new(&manifest(&sim.endpoint(), 10.0, 5, 20), CAM, &["preset_recall", "pan_tilt", "stop"], |_, _| {});
    assert!(
        if_tests::wait_for(Duration::from_secs(10), || (code(&r.ask("stop", Hazards::NONE, &[])) == "OK")
            .then_some(()))
        .is_some()
    );
    // Time itself is the subject here: the token bucket refills to its burst of 5 at 10 a second.
    std::thread::sleep(Duration::from_millis(600));
    let before = packets(&sim).len();
    let replies = r.burst(100, "pan_tilt", &[("direction", text("up"))]);
    assert_eq!(replies.len(), 100);
    let ok = replies.iter().filter(|x| code(x) == "OK").count();
    let full = replies.iter().filter(|x| code(x) == "IF_ERR_304").count();
    assert_eq!(
        ok + full,
        100,
        "each one either ran or was refused QUEUE_FULL: {:?}",
        replies.iter().map(code).collect::<Vec<_>>()
    );
    assert!(full >= 50, "beyond the queue depth, QUEUE_FULL at once: {full}");
    let moves: Vec<u128> = packets(&sim)[before..]
        .iter()
        .filter(|(_, h)| h.starts_with("81 01 06 01 08 08 03 01"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(moves.len(), ok, "the camera saw exactly the commands that ran");
    let first = moves[0];
    for (i, t) in moves.iter().enumerate() {
        // At most the burst of 5 at once, then 10 a second: command i no earlier than (i - 4) * 100 ms.
        let earliest = (i.saturating_sub(4) as u128) * 100;
        assert!(t - first + 15 >= earliest, "command {i} at {} ms: faster than the rate: {moves:?}", t - first);
    }
    r.agent.stop();
}

#[test]
fn every_action_reaches_the_camera_as_its_packet_and_bad_arguments_never_leave_the_agent() {
    let sim = Sim::start("visca");
    let actions = if_tests::visca::ACTIONS;
    let m = device::manifest(CAM, "visca-serial", &sim.endpoint(), Limits::default(), &actions, &[], &["stop"]);
    let mut r = DeviceRig::new(&m, CAM, &actions, |_, _| {});
    assert!(
        if_tests::wait_for(Duration::from_secs(10), || (code(&r.ask("stop", Hazards::NONE, &[])) == "OK")
            .then_some(()))
        .is_some(),
        "the port opens"
    );
    if_tests::visca::every_action_reaches_the_camera(&mut r, &|| packets(&sim));
    r.agent.stop();
}

#[test]
fn both_sockets_a_zoom_beside_a_preset_move_and_a_stop_that_cancels_one_to_get_in() {
    let sim = Sim::start("visca");
    let actions = if_tests::visca::ACTIONS;
    let m = device::manifest(CAM, "visca-serial", &sim.endpoint(), Limits::default(), &actions, &[], &["stop"]);
    let mut r = DeviceRig::new(&m, CAM, &actions, |_, _| {});
    let up = if_tests::wait_for(Duration::from_secs(10), || {
        (code(&r.ask("stop", Hazards::NONE, &[])) == "OK").then_some(())
    });
    assert!(up.is_some(), "the port opens");
    if_tests::visca::a_zoom_runs_beside_a_preset_move(&mut r, &|| packets(&sim));
    if_tests::visca::a_stop_cancels_a_move_when_both_sockets_execute(&mut r, &|| packets(&sim));
    r.agent.stop();
}

#[test]
fn a_camera_that_goes_away_fails_fast_and_the_lane_reconnects_when_it_returns() {
    let mut sim = Sim::start("visca");
    let limits = Limits { backoff: "[1, 1, 1]", breaker_failures: 3, timeout_ms: 500, ..Limits::default() };
    let m = device::manifest(CAM, "visca-serial", &sim.endpoint(), limits, &["preset_recall"], &[], &[]);
    let mut r = DeviceRig::new(&m, CAM, &["preset_recall"], |_, _| {});
    let recall = |r: &mut DeviceRig| r.ask("preset_recall", Hazards::NONE, &[("preset", ArgValue::Int(9))]);
    let ok = |r: &mut DeviceRig| {
        if_tests::wait_for(Duration::from_secs(20), || (code(&recall(r)) == "OK").then_some(())).is_some()
    };
    assert!(ok(&mut r), "the port opens");

    // The serial adapter is unplugged: its device node goes away.
    sim.stop();
    let mut codes = Vec::new();
    while codes.last().map(String::as_str) != Some("IF_ERR_303") && codes.len() < 8 {
        codes.push(code(&recall(&mut r)).to_string());
    }
    assert_eq!(codes.last().map(String::as_str), Some("IF_ERR_303"), "the breaker opened: {codes:?}");
    assert!(
        codes[..codes.len() - 1].iter().all(|c| c == "IF_ERR_401" || c == "IF_ERR_402"),
        "unreachable, or unknown for one in flight: {codes:?}"
    );

    let before = packets(&sim).len();
    sim.restart();
    assert!(ok(&mut r), "the lane reopens the port by itself");
    assert!(packets(&sim)[before..].iter().any(|(_, h)| h == "81 01 04 3F 02 09 FF"), "the camera saw it");
    r.agent.stop();
}

#[test]
fn the_cameras_tally_lamp_follows_its_vmix_input() {
    const VMIX: &str = "if://capability/vmix.switcher";
    let cam = Sim::start("visca");
    let vmix = Sim::start("vmix");
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    let actions = ["preset_recall", "pan_tilt", "stop", "tally"];
    let m = device::manifest(CAM, "visca-serial", &cam.endpoint(), Limits::default(), &actions, &[], &["stop"]);
    agent.add_manifest("cam", &m);
    let v = device::manifest(VMIX, "vmix-tcp", &vmix.endpoint(), Limits::default(), &["cut"], &["cut"], &[]);
    agent.add_manifest("vmix", &v);
    agent.edit_config(|t| t.replace("allow = []", &format!("allow = [\"{CAM}@1.0.0\", \"{VMIX}@1.0.0\"]")));
    agent.start();
    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(agent.talent(
        "grant",
        &["--name", "desk", "--capability", VMIX, "--scope", "studio:control", "--action", "cut", "--hazard", "on_air"],
    ));
    // Camera one shows vMix input 2, which starts on preview: its lamp is set off from the latest tally.
    ok(agent
        .binding("add", &["--name", "cam-lamp", "--node", CAM, "--camera", "--follow", VMIX, "--follow-input", "2"]));
    let lamp = |on: bool| format!("81 01 7E 01 0A 00 0{} FF", if on { 2 } else { 3 });
    let seen = |hex: &str| packets(&cam).iter().filter(|(_, h)| h == hex).count();
    let off = if_tests::wait_for(Duration::from_secs(10), || (seen(&lamp(false)) >= 1).then_some(()));
    assert!(off.is_some(), "the lamp was set off once the binding was added: {:?}", cam.received());
    assert_eq!(seen(&lamp(true)), 0);

    // A signed cut puts input 2 on program: the camera's lamp goes on.
    let addr = agent.addr();
    let mut cut = vec!["capability", "apply", VMIX, "--action", "cut", "--hazard", "on_air", "--why", "take 2"];
    cut.extend(["--sender", "desk", "--key", desk.secret.to_str().expect("utf-8")]);
    cut.extend(addr.iter().map(String::as_str));
    let out = if_tests::wait_for(Duration::from_secs(10), || {
        let out = Agent::ifctl(&cut);
        out.status.success().then_some(out)
    });
    assert!(out.is_some(), "the cut ran");
    let on = if_tests::wait_for(Duration::from_secs(10), || (seen(&lamp(true)) >= 1).then_some(()));
    assert!(on.is_some(), "the lamp went on with the cut: {:?}", cam.received());
    agent.stop();
}
