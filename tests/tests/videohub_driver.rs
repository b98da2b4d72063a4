//! The videohub-tcp driver through the whole path against the Videohub simulator: routes and salvos
//! confirmed by the router's status, all-or-nothing salvos, locked outputs, NAK, a hung router, and a
//! restart.

use std::time::Duration;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::device::{self, DeviceRig, Limits, code, text};
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
