//! The `rack-node-serial` driver through the whole path against the real firmware under QEMU: signed
//! commands reach the front panel once each, the node goes safe when the agent is killed and is
//! resynchronised when it is back, a button press is a GPI event on MQTT and in the witness, and a line
//! that corrupts and drops bytes never gets a command carried out twice.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::probe::Probe;
use if_tests::rack::RackNode;
use serialport::{SerialPort as _, TTYPort};

const RACK: &str = "if://capability/rack.one";
const ACTIONS: [&str; 5] = ["lamp", "relay", "pulse", "safe", "resume"];
const SECOND: Duration = Duration::from_secs(1);

fn manifest(port: &str) -> String {
    manifest_at(port, 50.0)
}

fn manifest_at(port: &str, rps: f32) -> String {
    let limits = Limits { timeout_ms: 2000, rps, burst: 1, ..Limits::default() };
    let endpoint = format!("serial://{port}?baud=115200&restore=1");
    device::manifest(RACK, "rack-node-serial", &endpoint, limits, &ACTIONS, &[], &["safe"])
}

fn rig(port: &str) -> (DeviceRig, Probe) {
    let mut gpi = None;
    let rig = DeviceRig::new(&manifest(port), RACK, &ACTIONS, |broker, agent| {
        let p = Probe::connect(broker, &agent.site, &agent.name);
        p.subscribe(&p.topics.gpi);
        gpi = Some(p);
    });
    (rig, gpi.expect("gpi probe"))
}

/// Asks until the node is there (the driver opens the port and shakes hands after the agent starts).
fn first(r: &mut DeviceRig, action: &str, args: &[(&str, ArgValue)]) -> serde_json::Value {
    if_tests::wait_for(10 * SECOND, || {
        let reply = r.ask(action, Hazards::NONE, args);
        (code(&reply) == "OK").then_some(reply)
    })
    .expect("the node answers once the driver has its Hello")
}

fn lamp(i: i64, color: &str) -> Vec<(&'static str, ArgValue)> {
    vec![("lamp", ArgValue::Int(i)), ("color", text(color))]
}

#[test]
fn signed_commands_reach_the_panel_once_each_and_a_pulse_ends() {
    let node = RackNode::start();
    let (mut r, _gpi) = rig(node.link());
    let mark = node.mark();
    let reply = first(&mut r, "lamp", &lamp(2, "red"));
    assert_eq!(reply["result"]["acknowledged"], true, "{reply}");
    node.wait_line(mark, "lamp 2 red", SECOND).expect("the lamp lights");
    let relay = r.ask("relay", Hazards::NONE, &[("relay", ArgValue::Int(1)), ("on", ArgValue::Bool(true))]);
    assert_eq!(code(&relay), "OK", "{relay}");
    let pulse = r.ask("pulse", Hazards::NONE, &[("relay", ArgValue::Int(0)), ("ms", ArgValue::Int(300))]);
    assert_eq!(code(&pulse), "OK", "{pulse}");
    let on = node.wait_line(mark, "relay 0 on", SECOND).expect("the pulse starts");
    let off = node.wait_line(mark, "relay 0 off", 2 * SECOND).expect("and ends");
    assert!(off.at.duration_since(on.at) >= Duration::from_millis(250), "{:?}", off.at.duration_since(on.at));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.count(mark, "lamp 2 red"), 1);
    assert_eq!(node.count(mark, "relay 1 on"), 1);

    let nope = r.ask("relay", Hazards::NONE, &[("relay", ArgValue::Int(9)), ("on", ArgValue::Bool(true))]);
    assert_eq!(code(&nope), "IF_ERR_403", "the board has relays 0-3: {nope}");
    let bad = r.ask("lamp", Hazards::NONE, &lamp(1, "purple"));
    assert_eq!(code(&bad), "IF_ERR_101", "{bad}");

    let safe = r.ask("safe", Hazards::NONE, &[]);
    assert_eq!(code(&safe), "OK", "{safe}");
    node.wait_line(mark, "lamp 2 off", SECOND).expect("safe: lamps off");
    let held = r.ask("lamp", Hazards::NONE, &lamp(2, "green"));
    assert_eq!(code(&held), "IF_ERR_403", "held safe until resume: {held}");
    assert!(held["error"]["message"].as_str().unwrap_or("").contains("resume"), "{held}");
    assert_eq!(code(&r.ask("resume", Hazards::NONE, &[])), "OK");
    assert_eq!(code(&r.ask("lamp", Hazards::NONE, &lamp(2, "green"))), "OK");
    node.wait_line(mark, "lamp 2 green", SECOND).expect("serving again");
}

#[test]
fn safe_ends_the_commands_queued_before_it() {
    let node = RackNode::start();
    let mut r = DeviceRig::new(&manifest_at(node.link(), 2.0), RACK, &ACTIONS, |_, _| {});
    first(&mut r, "lamp", &lamp(0, "green"));
    let mark = node.mark();
    for (i, color) in ["red", "amber", "red", "amber", "red"].iter().enumerate() {
        r.probe.request(r.frame("lamp", Hazards::NONE, &lamp(1, color)), &(100 + i as u64).to_be_bytes());
    }
    node.wait_line(mark, "lamp 1 red", 2 * SECOND).expect("the first lamp command ran");
    r.probe.request(r.frame("safe", Hazards::NONE, &[]), b"safe");
    let replies = r.probe.until_replies(6, 10 * SECOND);
    let safe = replies.iter().find(|m| m.correlation.as_deref() == Some(&b"safe"[..])).expect("the safe reply");
    assert_eq!(code(&safe.json()), "OK", "{}", safe.json());
    let ended = replies.iter().filter(|m| code(&m.json()) == "IF_ERR_305").count();
    let ran = node.count(mark, "lamp 1 red") + node.count(mark, "lamp 1 amber");
    assert_eq!(ended + ran, 5, "each lamp command either ran before the safe state or was ended: {replies:?}");
    assert!(ended >= 3, "the rate held the rest in the queue: {ended} ended");
    let safe_at = node.wait_line(mark, "safe commanded", SECOND).expect("the node went safe").at;
    std::thread::sleep(Duration::from_millis(1500));
    let lit = |l: &if_tests::rack::PanelLine| l.text == "lamp 1 red" || l.text == "lamp 1 amber";
    let after: Vec<String> =
        node.lines().into_iter().skip(mark).filter(|l| l.at > safe_at && lit(l)).map(|l| l.text).collect();
    assert!(after.is_empty(), "no lamp command queued before the safe state reached the node after it: {after:?}");
}

#[test]
fn a_killed_agent_leaves_the_node_safe_and_the_agent_back_resynchronises_it() {
    let node = RackNode::start();
    let (mut r, _gpi) = rig(node.link());
    first(&mut r, "lamp", &lamp(4, "amber"));
    assert_eq!(
        code(&r.ask("relay", Hazards::NONE, &[("relay", ArgValue::Int(1)), ("on", ArgValue::Bool(true))])),
        "OK"
    );
    assert_eq!(
        code(&r.ask("relay", Hazards::NONE, &[("relay", ArgValue::Int(2)), ("on", ArgValue::Bool(true))])),
        "OK"
    );

    let mark = node.mark();
    r.agent.kill9();
    node.wait_line(mark, "safe link-lost", 5 * SECOND).expect("the node gives up on the dead agent");
    node.wait_line(mark, "lamp 4 off", SECOND).expect("lamps off");
    node.wait_line(mark, "relay 1 off", SECOND).expect("relays to their safe level");

    let back = node.mark();
    r.agent.start();
    node.wait_line(back, "resumed", 10 * SECOND).expect("the new agent resumes the node");
    // A new agent process knows no lamp or relay of the old one: it sets the lamps it has (all off) and
    // restores no relay it did not set itself.
    let reply = first(&mut r, "lamp", &lamp(4, "green"));
    assert_eq!(reply["result"]["acknowledged"], true);
    node.wait_line(back, "lamp 4 green", SECOND).expect("commands again");
    assert_eq!(node.count(back, "relay 1 on"), 0);
}

#[test]
fn a_button_press_is_a_gpi_event_on_mqtt_and_in_the_witness() {
    let mut node = RackNode::start();
    let (mut r, gpi) = rig(node.link());
    first(&mut r, "lamp", &lamp(0, "red"));
    node.press(5);
    let event = gpi.next_on(&gpi.topics.gpi, 5 * SECOND).expect("a GPI event").json();
    assert_eq!((event["input"].as_u64(), event["pressed"].as_bool()), (Some(5), Some(true)), "{event}");
    assert_eq!(event["capability"], RACK);
    assert!(event["record"].as_u64().is_some(), "with its witness record: {event}");
    node.release(5);
    let event = gpi.next_on(&gpi.topics.gpi, 5 * SECOND).expect("the release").json();
    assert_eq!(event["pressed"], false);
    assert!(gpi.next_on(&gpi.topics.gpi, SECOND).is_none(), "one event per edge");
    r.agent.stop();
    let records = r.agent.export();
    let presses: Vec<_> = records.iter().filter(|x| x["kind"] == "GPI").collect();
    assert_eq!(presses.len(), 2, "{presses:?}");
    assert_eq!(presses[0]["detail"], "input 5 pressed");
    assert!(records.iter().any(|x| x["kind"] == "DEVICE" && x["action"] == "node.hello"), "the node's hello");
}

/// A pseudo-terminal between the agent and QEMU that drops one byte in `every` and flips one bit in
/// another, both ways, while `noisy` is set.
struct Noise {
    path: String,
    noisy: Arc<AtomicBool>,
    touched: Arc<AtomicU64>,
    _ends: Vec<TTYPort>,
}

fn noise(node_link: &str, every: u64) -> Noise {
    let (master, slave) = TTYPort::pair().expect("a pty pair");
    let path = slave.name().expect("name");
    let mut node = serialport::new(node_link, 115_200).open_native().expect("open the node's link");
    let (noisy, touched) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
    let mut ends = Vec::new();
    for (mut from, mut to, seed) in [
        (master.try_clone_native().expect("clone"), node.try_clone_native().expect("clone"), 7u64),
        (node.try_clone_native().expect("clone"), master.try_clone_native().expect("clone"), 11u64),
    ] {
        from.set_timeout(Duration::from_millis(50)).expect("timeout");
        let (noisy, touched) = (noisy.clone(), touched.clone());
        std::thread::spawn(move || {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut buf = [0u8; 256];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                    Err(_) => return,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    match (noisy.load(Ordering::Relaxed), rng % every) {
                        (true, 0) => {
                            touched.fetch_add(1, Ordering::Relaxed);
                        }
                        (true, 1) => {
                            touched.fetch_add(1, Ordering::Relaxed);
                            out.push(b ^ (1 << (rng >> 61)));
                        }
                        _ => out.push(b),
                    }
                }
                if to.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
    node.set_timeout(Duration::from_millis(50)).expect("timeout");
    ends.extend([master, slave, node]);
    Noise { path, noisy, touched, _ends: ends }
}

#[test]
fn a_line_that_drops_and_flips_bytes_never_gets_a_command_carried_out_twice() {
    let node = RackNode::start();
    let line = noise(node.link(), 40);
    let (mut r, _gpi) = rig(&line.path);
    line.noisy.store(false, Ordering::Relaxed);
    first(&mut r, "resume", &[]);
    line.noisy.store(true, Ordering::Relaxed);
    let mark = node.mark();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..25 {
        let color = if i % 2 == 0 { "red" } else { "green" };
        let reply = r.ask("lamp", Hazards::NONE, &lamp(i % 8, color));
        if code(&reply) == "OK" {
            ok += 1
        } else {
            failed += 1
        }
        let pulse = r.ask("pulse", Hazards::NONE, &[("relay", ArgValue::Int(0)), ("ms", ArgValue::Int(20))]);
        if code(&pulse) == "OK" {
            ok += 1
        } else {
            failed += 1
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    line.noisy.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    let pulses = node.count(mark, "relay 0 on");
    println!(
        "{ok} acknowledged, {failed} failed, {pulses} pulses, {} bytes touched",
        line.touched.load(Ordering::Relaxed)
    );
    assert!(line.touched.load(Ordering::Relaxed) > 20, "the line really was noisy");
    assert!(ok >= 25, "most commands get through: {ok} of 50");
    assert!(pulses <= 25, "{pulses} pulses for 25 commands: none twice");
    for l in node.text().iter().skip(mark) {
        let known = l.starts_with("lamp ") || l.starts_with("relay ") || l.starts_with("safe ") || l == "resumed";
        assert!(known || l.starts_with("session "), "nothing corrupted reached the panel: {l:?}");
        if let Some(rest) = l.strip_prefix("lamp ") {
            let (i, c) = rest.split_once(' ').expect("lamp N color");
            assert!(i.parse::<u8>().is_ok_and(|i| i < 8) && ["off", "red", "green"].contains(&c), "{l:?}");
        }
    }
    // The line is clean again: the link recovers.
    let after = r.ask("lamp", Hazards::NONE, &lamp(7, "amber"));
    let after = if code(&after) == "OK" { after } else { first(&mut r, "lamp", &lamp(7, "amber")) };
    assert_eq!(code(&after), "OK", "{after}");
}

#[test]
fn a_node_that_goes_away_opens_the_breaker_and_a_new_one_is_taken_on_the_backoff_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("rack.tty");
    let mut node = RackNode::start();
    std::os::unix::fs::symlink(node.link(), &link).expect("link the node's pty");
    let (mut r, _gpi) = rig(link.to_str().expect("utf-8"));
    first(&mut r, "lamp", &lamp(3, "red"));

    // The node loses power (QEMU killed): the port fails; commands fail fast, then the breaker opens.
    node.kill();
    let codes: Vec<String> = (0..8)
        .map(|_| {
            let reply = r.ask("lamp", Hazards::NONE, &lamp(3, "green"));
            std::thread::sleep(Duration::from_millis(100));
            code(&reply).to_string()
        })
        .collect();
    assert!(codes.iter().all(|c| ["IF_ERR_401", "IF_ERR_402", "IF_ERR_303"].contains(&c.as_str())), "{codes:?}");
    assert!(codes.contains(&"IF_ERR_303".to_string()), "the breaker opened: {codes:?}");

    // A node on the same path again (a new adapter, a rebooted emulator): taken on the backoff schedule.
    let node = RackNode::start();
    std::fs::remove_file(&link).expect("unlink");
    std::os::unix::fs::symlink(node.link(), &link).expect("link the new node's pty");
    let back = if_tests::wait_for(20 * SECOND, || {
        let reply = r.ask("lamp", Hazards::NONE, &lamp(3, "green"));
        (code(&reply) == "OK").then_some(reply)
    });
    assert!(back.is_some(), "the driver reopened the port and the breaker closed");
    node.wait_line(0, "lamp 3 green", SECOND).expect("the new node shows it");
}
