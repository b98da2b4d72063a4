//! The fault matrix through the agent: for each fault the vMix, Videohub and VISCA (serial and IP)
//! simulators can play (refused connections, an answer cut off mid-way, a hung device, garbage, answers
//! too slow), commands fail with a device code, the lane's breaker opens after `breaker_failures` and then fails fast with
//! IF_ERR_303, each half-open window sends exactly one probe (witnessed as BREAKER records, and counted
//! by the simulator where the probe is its own request), and once the fault clears the lane recovers by
//! itself.

use std::time::{Duration, Instant};

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code};
use if_tests::sim::Sim;

const VMIX: &str = "if://capability/vmix.switcher";

fn manifest(endpoint: &str) -> String {
    let limits = Limits {
        rps: 100.0,
        burst: 20,
        breaker_failures: 3,
        timeout_ms: 400,
        backoff: "[1, 1, 1]",
        ..Limits::default()
    };
    device::manifest(VMIX, "vmix-tcp", endpoint, limits, &["preview_input"], &[], &[])
}

fn preview(r: &mut DeviceRig) -> serde_json::Value {
    r.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(3))])
}

/// Runs every fault of `faults` against the device behind `r`, then checks the BREAKER records and that
/// the device itself received at least one and no more health probes than there were half-open windows
/// (`probes` counts them in what the simulator recorded).
fn fault_matrix(
    sim: &Sim,
    mut r: DeviceRig,
    faults: &[&str],
    probes: fn(&[String]) -> usize,
    command: fn(&mut DeviceRig) -> serde_json::Value,
) {
    let healthy = |r: &mut DeviceRig| {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if code(&command(r)) == "OK" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    assert!(healthy(&mut r), "the lane works before any fault");
    for fault in faults {
        sim.fault(fault);
        let mut codes = Vec::new();
        loop {
            let c = code(&command(&mut r)).to_string();
            codes.push(c.clone());
            if c == "IF_ERR_303" || codes.len() > 6 {
                break;
            }
        }
        let before_open = &codes[..codes.len() - 1];
        assert_eq!(codes.last().map(String::as_str), Some("IF_ERR_303"), "{fault}: the breaker opened: {codes:?}");
        // Each failed command is up to three attempts (unreachable ones are retried), so the breaker's
        // three consecutive failures may come from one command.
        assert!(!before_open.is_empty(), "{fault}: it took a failure first: {codes:?}");
        assert!(before_open.iter().all(|c| c == "IF_ERR_401" || c == "IF_ERR_402"), "{fault}: device codes: {codes:?}");
        sim.fault("");
        assert!(healthy(&mut r), "{fault}: the lane recovers by itself once the fault clears");
    }
    r.agent.stop();

    let changes: Vec<String> = r
        .agent
        .export()
        .iter()
        .filter(|rec| rec["kind"] == "BREAKER")
        .filter_map(|rec| rec["detail"].as_str().and_then(|d| d.split(':').next()).map(String::from))
        .collect();
    assert!(changes.iter().filter(|c| *c == "closed -> open").count() >= faults.len(), "{changes:?}");
    // Exactly one probe per half-open window: every half-open is followed by open or closed, never by
    // another half-open.
    for w in changes.windows(2) {
        if w[0] == "open -> half_open" {
            assert!(w[1] == "half_open -> open" || w[1] == "half_open -> closed", "{changes:?}");
        }
    }
    assert_eq!(changes.last().map(String::as_str), Some("half_open -> closed"), "{changes:?}");
    let windows = changes.iter().filter(|c| *c == "open -> half_open").count();
    let probes = probes(&sim.received());
    assert!(probes >= 1 && probes <= windows, "the device saw {probes} probes for {windows} half-open windows");
}

/// Lines that end with `probe`.
fn ending(lines: &[String], probe: &str) -> usize {
    lines.iter().filter(|l| l.ends_with(probe)).count()
}

/// vMix's health probe is `TALLY`; a connection also sends one right after its subscriptions
/// (`SUBSCRIBE TALLY`, `SUBSCRIBE ACTS`), which is not a probe.
fn vmix_probes(lines: &[String]) -> usize {
    (0..lines.len()).filter(|&i| lines[i] == "TALLY" && (i == 0 || !lines[i - 1].starts_with("SUBSCRIBE "))).count()
}

fn limits() -> Limits {
    Limits { rps: 100.0, burst: 20, breaker_failures: 3, timeout_ms: 400, backoff: "[1, 1, 1]", ..Limits::default() }
}

#[test]
fn each_vmix_fault_opens_the_breaker_which_probes_once_per_window_and_recovers() {
    let sim = Sim::start("vmix");
    let r = DeviceRig::new(&manifest(&sim.endpoint()), VMIX, &["preview_input"], |_, _| {});
    fault_matrix(&sim, r, &["refuse", "drop", "hang", "garbage", "slow"], vmix_probes, preview);
}

#[test]
fn each_videohub_fault_opens_the_breaker_which_probes_once_per_window_and_recovers() {
    const HUB: &str = "if://capability/videohub.router";
    let sim = Sim::start("videohub");
    let m = device::manifest(HUB, "videohub-tcp", &sim.endpoint(), limits(), &["route"], &[], &[]);
    let r = DeviceRig::new(&m, HUB, &["route"], |_, _| {});
    fault_matrix(
        &sim,
        r,
        &["refuse", "drop", "hang", "garbage", "slow"],
        |l| ending(l, "PING:"),
        |r| r.ask("route", Hazards::NONE, &[("output", ArgValue::Int(1)), ("input", ArgValue::Int(2))]),
    );
}

#[test]
fn each_visca_fault_opens_the_breaker_which_probes_once_per_window_and_recovers() {
    const CAM: &str = "if://capability/camera.one";
    let sim = Sim::start("visca");
    let m = device::manifest(CAM, "visca-serial", &sim.endpoint(), limits(), &["pan_tilt"], &[], &[]);
    let r = DeviceRig::new(&m, CAM, &["pan_tilt"], |_, _| {});
    // The probe is the power inquiry, `81 09 04 00 FF`.
    fault_matrix(
        &sim,
        r,
        &["drop", "hang", "garbage", "slow"],
        |l| ending(l, "81 09 04 00 FF"),
        |r| r.ask("pan_tilt", Hazards::NONE, &[("direction", device::text("left"))]),
    );
}

#[test]
fn each_visca_ip_fault_opens_the_breaker_which_probes_once_per_window_and_recovers() {
    const CAM: &str = "if://capability/camera.ip";
    let sim = Sim::start("visca-ip");
    let m = device::manifest(CAM, "visca-ip", &sim.endpoint(), limits(), &["pan_tilt"], &[], &[]);
    let r = DeviceRig::new(&m, CAM, &["pan_tilt"], |_, _| {});
    // The probe is the power inquiry, `81 09 04 00 FF`, in a datagram of its own; one sent again when
    // its answer is lost carries the same sequence number and is the same probe.
    let probes = |lines: &[String]| {
        let mut seqs: Vec<&str> =
            lines.iter().filter(|l| l.ends_with("81 09 04 00 FF")).filter_map(|l| l.split(' ').nth(2)).collect();
        seqs.dedup();
        seqs.len()
    };
    fault_matrix(&sim, r, &["refuse", "drop", "hang", "garbage", "slow"], probes, |r| {
        r.ask("pan_tilt", Hazards::NONE, &[("direction", device::text("left"))])
    });
}

#[test]
fn vmix_never_receives_a_request_before_the_previous_answer() {
    let sim = Sim::start("vmix");
    let mut r = DeviceRig::new(&manifest(&sim.endpoint()), VMIX, &["preview_input"], |_, _| {});
    assert!(if_tests::wait_for(Duration::from_secs(10), || (code(&preview(&mut r)) == "OK").then_some(())).is_some());
    sim.fault("delay 20");
    let replies = r.burst(15, "preview_input", &[("Input", ArgValue::Int(2))]);
    assert_eq!(replies.len(), 15);
    assert!(replies.iter().all(|x| code(x) == "OK"), "{replies:?}");
    r.agent.stop();
    let functions: Vec<String> =
        sim.timeline().into_iter().filter(|l| l.starts_with("rx FUNCTION") || l.starts_with("tx FUNCTION")).collect();
    assert_eq!(functions.len(), 2 * 16, "{functions:?}");
    for pair in functions.chunks(2) {
        assert!(
            pair[0].starts_with("rx") && pair[1].starts_with("tx"),
            "a request only after the answer: {functions:?}"
        );
    }
}
