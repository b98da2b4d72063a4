//! The vmix-tcp driver through the whole path: signed envelope -> Mosquitto -> the agent -> the vMix
//! simulator on a real socket, and tally changes back on the tally topic. Errors, a wrong port, a hung
//! device and a simulator restart each behave as a broadcast engineer would want.

use std::time::Duration;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::probe::Probe;
use if_tests::sim::Sim;

const VMIX: &str = "if://capability/vmix.switcher";

fn manifest(endpoint: &str) -> String {
    let actions = ["cut", "preview_input", "set_text"];
    device::manifest(VMIX, "vmix-tcp", endpoint, Limits::default(), &actions, &["cut"], &[])
}

fn rig(endpoint: &str) -> (DeviceRig, Probe) {
    let mut tally = None;
    let rig = DeviceRig::new(&manifest(endpoint), VMIX, &["cut", "preview_input", "set_text"], |broker, agent| {
        let p = Probe::connect(broker, &agent.site, &agent.name);
        p.subscribe(&p.topics.tally);
        tally = Some(p);
    });
    (rig, tally.expect("tally probe"))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    assert!(if_tests::wait_for(Duration::from_secs(10), || f().then_some(())).is_some(), "{what}");
}

#[test]
fn commands_reach_vmix_and_tally_comes_back() {
    let mut sim = Sim::start("vmix");
    let (mut r, tally) = rig(&sim.endpoint());
    wait_until("the driver subscribed and resynced", || {
        let got = sim.received();
        got.contains(&"SUBSCRIBE TALLY".to_string()) && got.contains(&"TALLY".to_string())
    });
    let first = tally.next_on(&tally.topics.tally, Duration::from_secs(5)).expect("the resync's tally").json();
    assert_eq!((first["tally"].as_str(), first["capability"].as_str()), (Some("1200"), Some(VMIX)));

    let cut = r.ask("cut", Hazards::ON_AIR, &[]);
    assert_eq!(code(&cut), "OK", "{cut}");
    assert!(sim.received().contains(&"FUNCTION Cut".to_string()));
    let after = tally.next_on(&tally.topics.tally, Duration::from_secs(5)).expect("a tally change").json();
    assert_eq!(after["program"], serde_json::json!([2]), "{after}");

    let text = r.ask("set_text", Hazards::NONE, &[("Input", ArgValue::Int(2)), ("Value", text("Hello & good night"))]);
    assert_eq!(code(&text), "OK");
    assert!(
        sim.received().iter().any(|l| l == "FUNCTION SetText Input=2&Value=Hello%20%26%20good%20night"),
        "{:?}",
        sim.received()
    );

    let er = r.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(9))]);
    assert_eq!(code(&er), "IF_ERR_403", "vMix's ER is DEVICE_REJECTED: {er}");
    assert!(er["error"]["message"].as_str().unwrap_or("").contains("Input not found"), "with vMix's text: {er}");

    // The simulator restarts: the driver reconnects, subscribes again and resyncs tally.
    let subscribes = |s: &Sim| s.received().iter().filter(|l| *l == "SUBSCRIBE TALLY").count();
    sim.restart();
    wait_until("resubscribed after the restart", || subscribes(&sim) >= 2);
    wait_until("a command works again", || {
        code(&r.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(3))])) == "OK"
    });

    // A hung device: DEVICE_TIMEOUT, and the line was sent exactly once.
    sim.fault("hang");
    let before = sim.received().len();
    let hung = r.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(4))]);
    assert_eq!(code(&hung), "IF_ERR_402", "{hung}");
    // A marker behind it in the lane: once vMix has it, anything sent again would be on record before it.
    sim.fault("");
    wait_until("a command works again", || {
        code(&r.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(1))])) == "OK"
    });
    let sent: Vec<String> = sim.received()[before..].iter().filter(|l| l.contains("Input=4")).cloned().collect();
    assert_eq!(sent, ["FUNCTION PreviewInput Input=4"], "sent once, never again");
    r.agent.stop();
}

#[test]
fn a_web_controller_port_is_reported_as_not_vmix() {
    let sim = Sim::start("vmix");
    sim.fault("http");
    let (mut r, _tally) = rig(&sim.endpoint());
    let out = r.ask("cut", Hazards::ON_AIR, &[]);
    assert_eq!(code(&out), "IF_ERR_401", "{out}");
    assert!(out["error"]["message"].as_str().unwrap_or("").contains("not a vMix TCP API endpoint"), "{out}");
    r.agent.stop();
    assert!(r.agent.log().contains("not a vMix TCP API endpoint"));
}
