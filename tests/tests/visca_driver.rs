//! The visca-serial driver through the whole path against the VISCA camera simulator on a
//! pseudo-terminal: commands as the camera sees them, error replies mapped to codes, and a STOP that
//! overtakes twenty queued moves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::sim::Sim;

const CAM: &str = "if://capability/camera.one";

fn manifest(endpoint: &str, rps: f32, burst: u32, queue_depth: u32) -> String {
    let limits = Limits { rps, burst, queue_depth, timeout_ms: 1500, ..Limits::default() };
    device::manifest(CAM, "visca-serial", endpoint, limits, &["preset_recall", "pan_tilt", "stop"], &[], &["stop"])
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// (unix ms, hex) of every packet the camera received.
fn packets(sim: &Sim) -> Vec<(u128, String)> {
    sim.received()
        .iter()
        .filter_map(|l| l.split_once(' ').and_then(|(t, h)| Some((t.parse().ok()?, h.to_string()))))
        .collect()
}

#[test]
fn the_camera_sees_the_protocol_errors_map_to_codes_and_a_stop_overtakes_the_queue() {
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
    sim.fault("");

    // Twenty moves queue behind the lane's 2 a second; a STOP goes straight to the camera.
    let moves: Vec<Vec<u8>> =
        (0..20).map(|_| r.frame("pan_tilt", Hazards::NONE, &[("direction", text("left"))])).collect();
    for (i, f) in moves.into_iter().enumerate() {
        r.probe.request(f, &(10_000 + i as u64).to_be_bytes());
    }
    std::thread::sleep(Duration::from_millis(300));
    let stop = r.frame("stop", Hazards::NONE, &[]);
    let sent_at = unix_ms();
    r.probe.request(stop, b"stop");
    let reply = loop {
        let m = r.probe.next(Duration::from_secs(10)).expect("replies");
        if m.correlation.as_deref() == Some(&b"stop"[..]) {
            break m.json();
        }
    };
    assert_eq!(code(&reply), "OK", "{reply}");
    let seen = packets(&sim);
    let stop_at = seen.iter().position(|(_, h)| h == "81 01 06 01 01 01 03 03 FF").expect("the camera saw the stop");
    let moves_before = seen[..stop_at].iter().filter(|(_, h)| h.starts_with("81 01 06 01 08 08")).count();
    assert!(moves_before <= 2, "the stop overtook the queue: {moves_before} moves before it");
    let latency = seen[stop_at].0.saturating_sub(sent_at);
    eprintln!("STOP: publish -> camera {latency} ms, {moves_before} move(s) before it");
    assert!(latency < 500, "the stop reached the camera {latency} ms after it was published");
    std::thread::sleep(Duration::from_millis(1200));
    let after = packets(&sim)[stop_at..].iter().filter(|(_, h)| h.starts_with("81 01 06 01 08 08")).count();
    assert!(after >= 1, "the moves were queued behind the lane's rate, and went after the stop");
    r.agent.stop();
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
