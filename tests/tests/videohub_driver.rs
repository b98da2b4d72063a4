//! The videohub-tcp driver through the whole path against the Videohub simulator: routes and salvos
//! confirmed by the router's status, all-or-nothing salvos, locked outputs, NAK, a hung router, a
//! restart, and the routing feedback topic following the router, also when another client routes.

use std::time::Duration;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::probe::Probe;
use if_tests::sim::Sim;

const HUB: &str = "if://capability/videohub.router";

fn manifest(endpoint: &str) -> String {
    let actions = ["route", "salvo"];
    device::manifest(HUB, "videohub-tcp", endpoint, Limits::default(), &actions, &actions, &[])
}

fn routing_blocks(sim: &Sim) -> Vec<String> {
    sim.received().into_iter().filter(|b| b.starts_with("VIDEO OUTPUT ROUTING:")).collect()
}

#[test]
fn routes_and_salvos_are_confirmed_or_refused_whole() {
    let mut sim = Sim::start("videohub");
    let mut r = DeviceRig::new(&manifest(&sim.endpoint()), HUB, &["route", "salvo"], |_, _| {});
    let route = |r: &mut DeviceRig, o: i64, i: i64| {
        r.ask("route", Hazards::ON_AIR, &[("output", ArgValue::Int(o)), ("input", ArgValue::Int(i))])
    };
    let ok = if_tests::wait_for(Duration::from_secs(10), || {
        let reply = route(&mut r, 0, 5);
        (code(&reply) == "OK").then_some(reply)
    })
    .expect("a route once the driver is connected");
    assert_eq!(ok["result"]["routed"], serde_json::json!(["0:5"]), "{ok}");

    let salvo = r.ask("salvo", Hazards::ON_AIR, &[("routes", text("1:7, 2:8, 3:9"))]);
    assert_eq!(code(&salvo), "OK", "{salvo}");
    assert_eq!(salvo["result"]["routed"], serde_json::json!(["1:7", "2:8", "3:9"]));
    assert!(routing_blocks(&sim).contains(&"VIDEO OUTPUT ROUTING: | 1 7 | 2 8 | 3 9".to_string()), "one block");

    // A missing output refuses the whole salvo before anything is sent.
    let sent_before = routing_blocks(&sim).len();
    let outside = r.ask("salvo", Hazards::ON_AIR, &[("routes", text("4:1, 99:1"))]);
    assert_eq!(code(&outside), "IF_ERR_403", "{outside}");
    assert_eq!(routing_blocks(&sim).len(), sent_before, "nothing of it was sent");

    // NAK is DEVICE_REJECTED.
    sim.fault("nak");
    let nak = route(&mut r, 5, 1);
    assert_eq!(code(&nak), "IF_ERR_403", "{nak}");

    // A hung router: DEVICE_TIMEOUT, sent once.
    sim.fault("hang");
    let before = routing_blocks(&sim).len();
    let hung = route(&mut r, 6, 1);
    assert_eq!(code(&hung), "IF_ERR_402", "{hung}");
    // A marker behind it in the lane: once the router has it, anything sent again would be before it.
    sim.fault("");
    let marker = if_tests::wait_for(Duration::from_secs(15), || (code(&route(&mut r, 9, 3)) == "OK").then_some(()));
    assert!(marker.is_some(), "the router answers again");
    let hung_block = routing_blocks(&sim)[before..].iter().filter(|b| b.ends_with("| 6 1")).count();
    assert_eq!(hung_block, 1, "sent once, never again: {:?}", &routing_blocks(&sim)[before..]);

    // After a restart with output 4 locked by another client, the prelude tells the driver: a salvo
    // touching it is refused whole, others go through.
    sim.fault("lock 4");
    sim.restart();
    let back = if_tests::wait_for(Duration::from_secs(15), || {
        let reply = route(&mut r, 7, 2);
        (code(&reply) == "OK").then_some(())
    });
    assert!(back.is_some(), "the driver reconnected after the restart");
    let locked = r.ask("salvo", Hazards::ON_AIR, &[("routes", text("3:1, 4:1"))]);
    assert_eq!(code(&locked), "IF_ERR_403", "{locked}");
    assert!(locked["error"]["message"].as_str().unwrap_or("").contains("locked"), "{locked}");
    r.agent.stop();
}

#[test]
fn the_routing_topic_follows_the_router_with_its_labels_also_when_another_client_routes() {
    let sim = Sim::start("videohub");
    let mut watcher = None;
    let mut r = DeviceRig::new(&manifest(&sim.endpoint()), HUB, &["route", "salvo"], |broker, agent| {
        let p = Probe::connect(broker, &agent.site, &agent.name);
        p.subscribe(&format!("{}/#", p.topics.routing));
        watcher = Some(p);
    });
    let watcher = watcher.expect("a watcher");
    let topic = watcher.topics.routing_of("videohub.router");
    let route_of = |m: &serde_json::Value, output: u64| {
        m["routes"].as_array().and_then(|a| a.iter().find(|r| r["output"] == output)).cloned().unwrap_or_default()
    };
    let until = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        let found = if_tests::wait_for(Duration::from_secs(10), || {
            let m = watcher.next_on(&topic, Duration::from_millis(500))?;
            let v = m.json();
            f(&v).then_some((v, m.payload))
        });
        found.unwrap_or_else(|| panic!("{what}"))
    };
    // The prelude: every output with the router's labels, signed for its topic.
    let (first, payload) =
        until("the routing after the prelude", &|v| v["routes"].as_array().is_some_and(|a| a.len() == 12));
    assert_eq!(first["capability"], HUB);
    let key = if_edge::keyfile::read_public(&r.agent.public_key()).expect("the agent's key");
    let context = if_protocol::attest::topic_context(&topic);
    let verified = if_protocol::attest::verify(&key, if_protocol::attest::PUBLISH_DOMAIN, &context, &payload);
    assert!(verified.is_ok(), "signed by the agent for its topic: {first}");
    let out0 = route_of(&first, 0);
    assert_eq!((out0["output_label"].as_str(), out0["input_label"].as_str()), (Some("Output 1"), Some("Input 1")));

    // A route through the agent.
    let ok = if_tests::wait_for(Duration::from_secs(10), || {
        let reply = r.ask("route", Hazards::ON_AIR, &[("output", ArgValue::Int(2)), ("input", ArgValue::Int(5))]);
        (code(&reply) == "OK").then_some(())
    });
    assert!(ok.is_some());
    let (after, _) = until("output 2 from input 5", &|v| route_of(v, 2)["input"] == 5);
    assert_eq!(route_of(&after, 2)["input_label"], "Input 6");

    // Another client on the router (a hardware panel, another controller) routes output 3 to input 9.
    let addr = sim.endpoint().trim_start_matches("tcp://").to_string();
    let mut panel = std::net::TcpStream::connect(addr).expect("a second client");
    panel.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut prelude = String::new();
    let mut reader = std::io::BufReader::new(panel.try_clone().expect("clone"));
    while !prelude.contains("END PRELUDE:") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).expect("the prelude") == 0 {
            break;
        }
        prelude += &line;
    }
    std::io::Write::write_all(&mut panel, b"VIDEO OUTPUT ROUTING:\n3 9\n\n").expect("route from the panel");
    let (other, _) = until("output 3 from input 9, routed by another client", &|v| route_of(v, 3)["input"] == 9);
    assert_eq!(route_of(&other, 2)["input"], 5, "the rest as it was");
}
