//! Bindings through the whole path: the real firmware under QEMU, the vMix simulator, the real agent.
//! A button bound to a cut fires it once per press, as its talent and only as far as that talent's
//! grants reach; lamps bound to tally follow vMix with no command sent per change.

use std::time::Duration;

use if_protocol::envelope::Hazards;
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::device::{self, Limits};
use if_tests::probe::Probe;
use if_tests::rack::RackNode;
use if_tests::sim::Sim;
use if_tests::talent::Talent;

const RACK: &str = "if://capability/rack.one";
const VMIX: &str = "if://capability/vmix.switcher";
const SECOND: Duration = Duration::from_secs(1);

fn ok(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn cuts(sim: &Sim) -> usize {
    sim.received().iter().filter(|l| *l == "FUNCTION Cut").count()
}

#[test]
fn a_bound_button_fires_one_cut_per_press_within_its_talents_grants_and_lamps_follow_tally() {
    let node = RackNode::start();
    let vmix = Sim::start("vmix");
    let broker = Broker::start();
    let (desk, intern) = (Talent::new("desk"), Talent::new("intern"));
    let mut agent = Agent::init(&broker, &[&desk, &intern]);
    let rack_actions = ["lamp", "relay", "pulse", "safe", "resume"];
    let endpoint = format!("serial://{}?baud=115200", node.link());
    let limits = Limits { timeout_ms: 2000, ..Limits::default() };
    agent.add_manifest(
        "rack",
        &device::manifest(RACK, "rack-node-serial", &endpoint, limits, &rack_actions, &[], &["safe"]),
    );
    agent.add_manifest(
        "vmix",
        &device::manifest(VMIX, "vmix-tcp", &vmix.endpoint(), Limits::default(), &["cut"], &["cut"], &[]),
    );
    agent.edit_config(|t| t.replace("allow = []", &format!("allow = [\"{RACK}@1.0.0\", \"{VMIX}@1.0.0\"]")));
    agent.start();
    let grant =
        ["--name", "desk", "--capability", VMIX, "--scope", "studio:control", "--action", "cut", "--hazard", "on_air"];
    ok(&agent.talent("grant", &grant));

    let press = |name: &str, input: &str, talent: &str| {
        let args = ["--name", name, "--node", RACK, "--input", input, "--talent", talent, "--capability", VMIX];
        let mut all = args.to_vec();
        all.extend(["--action", "cut", "--scope", "studio:control", "--hazard", "on_air"]);
        ok(&agent.binding("add", &all))
    };
    press("cut-button", "3", "desk");
    press("intern-button", "4", "intern");
    for (name, lamp, input) in [("cam1-tally", "0", "1"), ("cam2-tally", "1", "2")] {
        let args = ["--name", name, "--node", RACK, "--lamp", lamp, "--follow", VMIX, "--follow-input", input];
        ok(&agent.binding("add", &args));
    }
    let listed = ok(&agent.binding("list", &[]));
    assert!(listed.contains("binding cut-button: input 3 of if://capability/rack.one runs cut"), "{listed}");
    assert!(listed.contains("lamp 1 of if://capability/rack.one follows input 2"), "{listed}");
    let bad = agent.binding(
        "add",
        &[
            "--name",
            "x",
            "--node",
            "vmix",
            "--input",
            "1",
            "--talent",
            "desk",
            "--capability",
            VMIX,
            "--action",
            "cut",
            "--scope",
            "s",
        ],
    );
    assert!(!bad.status.success(), "a node that is not a capability id is refused");

    node.wait_line(0, "resumed", 10 * SECOND).expect("the agent has the node");
    let mut node = node;
    let mark = node.mark();
    node.press(3);
    assert!(if_tests::wait_for(5 * SECOND, || (cuts(&vmix) == 1).then_some(())).is_some(), "{:?}", vmix.received());
    // The cut changed vMix's tally (program 2, preview 1): the lamps follow with no command sent.
    node.wait_line(mark, "lamp 1 red", 5 * SECOND).expect("lamp 1 follows input 2 onto program");
    node.wait_line(mark, "lamp 0 green", 5 * SECOND).expect("lamp 0 follows input 1 onto preview");
    node.release(3);
    std::thread::sleep(SECOND);
    assert_eq!(cuts(&vmix), 1, "one press, one cut: the release fires nothing");

    node.press(4);
    std::thread::sleep(Duration::from_millis(200));
    node.release(4);
    std::thread::sleep(2 * SECOND);
    assert_eq!(cuts(&vmix), 1, "the intern holds no grant for vMix: nothing runs");

    // A signed cut from the desk moves tally back; the lamps follow again.
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let mut b = desk.next_ping();
    b.capability = VMIX.try_into().expect("short");
    b.action = "cut".try_into().expect("short");
    b.hazards = Hazards::ON_AIR;
    probe.request(desk.sign(&b), b"cut");
    let mark = node.mark();
    node.wait_line(mark, "lamp 0 red", 5 * SECOND).expect("lamp 0 back on program");
    node.wait_line(mark, "lamp 1 green", 5 * SECOND).expect("lamp 1 back on preview");

    ok(&agent.binding("remove", &["--name", "cut-button"]));
    node.press(3);
    std::thread::sleep(2 * SECOND);
    assert_eq!(cuts(&vmix), 2, "removed: the button fires nothing (the second cut was the desk's)");

    agent.stop();
    let records = agent.export();
    let gpi = records.iter().position(|r| r["kind"] == "GPI" && r["detail"] == "input 3 pressed").expect("the press");
    let received = records
        .iter()
        .position(|r| r["kind"] == "RECEIVED" && r["why"].as_str().is_some_and(|w| w.starts_with("binding cut-button")))
        .expect("RECEIVED of the bound cut");
    assert!(gpi < received, "the press is witnessed before its command");
    assert_eq!(records[received]["sender"], "desk", "attributed to the binding's talent");
    let executed = records.iter().skip(received).find(|r| r["kind"] == "EXECUTED" && r["capability"] == VMIX);
    assert!(executed.is_some(), "and its outcome");
    let refused =
        records.iter().find(|r| r["kind"] == "REJECTED" && r["sender"] == "intern").expect("the intern's press");
    assert_eq!(refused["code"], "IF_ERR_003", "PERMISSION_DENIED: {refused}");
}
