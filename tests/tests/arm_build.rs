//! The agent built for `aarch64-unknown-linux-gnu` (rack boxes are often Arm), run under `qemu-aarch64`
//! (Debian's qemu-user) against a real Mosquitto: it comes online, takes its talents and answers a
//! signed ping end to end; its idle memory under emulation is measured and bounded.

use std::path::PathBuf;
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

/// The Arm build `tools/test.sh` makes, checked against cargo's dep-info.
fn arm_image() -> PathBuf {
    if_tests::cross_image(
        "aarch64-unknown-linux-gnu/release/if-edge",
        "cargo build --release --target aarch64-unknown-linux-gnu -p if-edge -p if-tools -p if-collector --bin if-edge \
         --bin ifctl --bin if-collector",
    )
}

#[test]
fn the_arm_build_answers_a_signed_ping_under_qemu_user() {
    let image = arm_image();
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.program =
        Some((PathBuf::from("qemu-aarch64"), vec!["-L".into(), "/usr/aarch64-linux-gnu".into(), image.into()]));
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    probe.request(desk.sign(&desk.next_ping()), b"arm");
    let reply = loop {
        let m = probe.next(Duration::from_secs(30)).expect("a reply from the Arm agent");
        if m.correlation.as_deref() == Some(&b"arm"[..]) {
            break m.json();
        }
    };
    assert_eq!(reply["ok"], true, "{reply}");
    std::thread::sleep(Duration::from_secs(3));
    let rss = if_tests::rss_kib(agent.pid().expect("running")).expect("VmRSS");
    println!("idle RSS of the aarch64 agent under qemu-aarch64 (emulator included): {:.1} MiB", rss as f64 / 1024.0);
    assert!(rss < 128 * 1024, "idle RSS {rss} KiB under emulation");
    agent.stop();
}
