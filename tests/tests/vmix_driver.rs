//! The vmix-tcp driver through the whole path: signed envelope -> Mosquitto -> the agent -> the vMix
//! simulator on a real socket, and tally changes back on the tally topic. Errors, a wrong port, a hung
//! device and a simulator restart each behave as a broadcast engineer would want.

use std::time::Duration;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::probe::Probe;
use if_tests::sim::Sim;

const VMIX: &str = "if://capability/vmix.switcher";

const ACTIONS: [&str; 7] =
    ["cut", "preview_input", "set_text", "overlay_input1_in", "start_recording", "add_input", "set_input_name"];

fn manifest(endpoint: &str) -> String {
    device::manifest(VMIX, "vmix-tcp", endpoint, Limits::default(), &ACTIONS, &["cut"], &[])
}

fn rig(endpoint: &str) -> (DeviceRig, Probe) {
    let mut tally = None;
    let rig = DeviceRig::new(&manifest(endpoint), VMIX, &ACTIONS, |broker, agent| {
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
        got.contains(&"SUBSCRIBE TALLY".to_string())
            && got.contains(&"TALLY".to_string())
            && got.contains(&"XML".to_string())
    });
    let first = tally.next_on(&tally.topics.tally, Duration::from_secs(5)).expect("the resync's tally").json();
    assert_eq!((first["tally"].as_str(), first["capability"].as_str()), (Some("1200"), Some(VMIX)));
    assert_eq!(first["labels"]["2"], "Camera 2", "vMix's titles, read from its XML at connect: {first}");

    let cut = r.ask("cut", Hazards::ON_AIR, &[]);
    assert_eq!(code(&cut), "OK", "{cut}");
    assert!(sim.received().contains(&"FUNCTION Cut".to_string()));
    let after = tally.next_on(&tally.topics.tally, Duration::from_secs(5)).expect("a tally change").json();
    assert_eq!(after["program"], serde_json::json!([2]), "{after}");

    // vMix's activators (SUBSCRIBE ACTS) come with the tally: an overlay with its input, recording.
    assert_eq!(code(&r.ask("overlay_input1_in", Hazards::NONE, &[("Input", ArgValue::Int(3))])), "OK");
    assert_eq!(code(&r.ask("start_recording", Hazards::NONE, &[])), "OK");
    let acts = if_tests::wait_for(Duration::from_secs(5), || {
        let m = tally.next_on(&tally.topics.tally, Duration::from_millis(500))?.json();
        (m["activators"] == serde_json::json!({ "Overlay1": 3, "Recording": 1 })).then_some(m)
    });
    let acts = acts.expect("the activators on the tally topic");
    assert_eq!(acts["program"], serde_json::json!([2]), "the tally as it was: {acts}");
    assert!(sim.received().contains(&"SUBSCRIBE ACTS".to_string()));

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
fn a_stop_answers_the_command_running_and_leaves_a_newer_one_to_the_next_run() {
    let sim = Sim::start("vmix");
    let (mut r, _tally) = rig(&sim.endpoint());
    let input = |n: i64| [("Input", ArgValue::Int(n))];
    wait_until("a command works", || code(&r.ask("preview_input", Hazards::NONE, &input(1))) == "OK");
    let has = |s: &Sim, n: i64| s.received().iter().filter(|l| l.ends_with(&format!("Input={n}"))).count();

    // A command vMix takes its time over (within the manifest's 800 ms); the agent is told to stop while
    // it runs.
    sim.fault("delay 600");
    r.probe.request(r.frame("preview_input", Hazards::NONE, &input(2)), b"slow");
    wait_until("vMix has the slow command", || has(&sim, 2) == 1);
    r.agent.terminate();
    wait_until("the agent is stopping", || r.agent.log().contains("shutting down"));
    // A command that arrives while it stops is not taken: it stays with the broker.
    r.probe.request(r.frame("preview_input", Hazards::NONE, &input(3)), b"later");
    r.agent.stop();
    let slow = r.probe.next(Duration::from_secs(5)).expect("the running command was answered before the stop");
    assert_eq!(slow.correlation.as_deref(), Some(&b"slow"[..]));
    assert_eq!(code(&slow.json()), "OK", "{}", slow.json());
    assert_eq!(has(&sim, 3), 0, "nothing was started after the stop began");

    // The next run takes the waiting command from the broker and runs it once.
    sim.fault("");
    r.agent.start();
    let later = r.probe.next(Duration::from_secs(10)).expect("the waiting command is answered by the next run");
    assert_eq!(later.correlation.as_deref(), Some(&b"later"[..]));
    assert_eq!(code(&later.json()), "OK", "{}", later.json());
    assert_eq!(has(&sim, 3), 1);
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

#[test]
fn a_show_with_a_thousand_inputs_has_an_xml_longer_than_any_line_and_still_connects_with_its_titles() {
    // 1000 inputs: vMix's XML is over 100 KB, longer than the longest line the driver reads.
    let sim = Sim::start_with("vmix", &["--inputs", "1000"]);
    let (mut r, tally) = rig(&sim.endpoint());
    let first = tally.next_on(&tally.topics.tally, Duration::from_secs(10)).expect("the resync's tally").json();
    assert_eq!(first["tally"].as_str().map(str::len), Some(1000), "{first}");
    assert_eq!(first["labels"]["256"], "Camera 256", "the titles, read by the XML's byte count");
    assert!(first["labels"]["257"].is_null(), "at most 256 titles are kept");
    let cut = r.ask("cut", Hazards::ON_AIR, &[]);
    assert_eq!(code(&cut), "OK", "the connection goes on after the long document: {cut}");
}

#[test]
fn commands_published_together_reach_vmix_in_the_order_they_were_published() {
    let sim = Sim::start("vmix");
    let (mut r, _tally) = rig(&sim.endpoint());
    wait_until("the driver connected", || {
        code(&r.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(2))])) == "OK"
    });
    // One flood of numbered commands: the agent verifies and commits them as one burst and runs each on
    // a task of its own, yet hands them to the lane in order.
    let frames: Vec<Vec<u8>> = (0..30)
        .map(|i| r.frame("set_text", Hazards::NONE, &[("Input", ArgValue::Int(1)), ("Value", ArgValue::Int(i))]))
        .collect();
    for (i, f) in frames.into_iter().enumerate() {
        r.probe.request(f, &(1_000 + i as u64).to_be_bytes());
    }
    let replies = r.probe.until_replies(30, Duration::from_secs(20));
    assert_eq!(replies.len(), 30);
    assert!(replies.iter().all(|m| code(&m.json()) == "OK"), "{replies:?}");
    let numbers: Vec<i64> =
        sim.received().iter().filter_map(|l| l.strip_prefix("FUNCTION SetText Input=1&Value=")?.parse().ok()).collect();
    assert_eq!(numbers, (0..30).collect::<Vec<i64>>(), "vMix got them in the order published");
    r.agent.stop();
}

#[test]
fn the_titles_are_read_again_when_inputs_come_or_go() {
    let sim = Sim::start("vmix");
    let (mut r, tally) = rig(&sim.endpoint());
    let first = tally.next_on(&tally.topics.tally, Duration::from_secs(10)).expect("the resync's tally").json();
    assert_eq!(first["labels"]["2"], "Camera 2", "{first}");
    // A rename alone: vMix tells no subscriber.
    let rename = r.ask("set_input_name", Hazards::NONE, &[("Input", ArgValue::Int(2)), ("Value", text("Host"))]);
    assert_eq!(code(&rename), "OK", "{rename}");
    // An input added: the tally grows, and the titles are read again, the rename with them.
    let added = r.ask("add_input", Hazards::NONE, &[("Value", text("Colour|Slate"))]);
    assert_eq!(code(&added), "OK", "{added}");
    let retitled = if_tests::wait_for(Duration::from_secs(10), || {
        let m = tally.next_on(&tally.topics.tally, Duration::from_secs(1))?.json();
        (m["labels"]["5"] == "Slate").then_some(m)
    })
    .expect("a tally with the new input's title");
    assert_eq!(retitled["labels"]["2"], "Host", "{retitled}");
    assert_eq!(retitled["tally"].as_str().map(str::len), Some(5), "{retitled}");
    let xml = sim.received().iter().filter(|l| *l == "XML").count();
    assert_eq!(xml, 2, "the XML at connect and once after the input came, not polled: {:?}", sim.received());
    // The connection goes on after the document read mid-stream.
    assert_eq!(code(&r.ask("cut", Hazards::ON_AIR, &[])), "OK");
    r.agent.stop();
}
