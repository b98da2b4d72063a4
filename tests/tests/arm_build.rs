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
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target/<profile>/deps layout");
    let path = target.join("aarch64-unknown-linux-gnu/release/if-edge");
    let build = "cargo build --release --target aarch64-unknown-linux-gnu -p if-edge --bin if-edge";
    assert!(path.is_file(), "{} is missing: run `{build}` (tools/test.sh does)", path.display());
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).expect("the image's time");
    let deps = std::fs::read_to_string(path.with_extension("d")).unwrap_or_default();
    let home = std::env::var("CARGO_HOME").unwrap_or_else(|_| "/nonexistent".into());
    let newer =
        deps.split_once(": ").map_or("", |(_, d)| d).split_whitespace().map(PathBuf::from).find(|s| {
            !s.starts_with(&home) && std::fs::metadata(s).and_then(|m| m.modified()).is_ok_and(|t| t > built)
        });
    if let Some(source) = newer {
        panic!("{} is older than {}: run `{build}`", path.display(), source.display());
    }
    path
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix(" kB")?.trim().parse().ok())
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
    let rss = rss_kib(agent.pid().expect("running")).expect("VmRSS");
    println!("idle RSS of the aarch64 agent under qemu-aarch64 (emulator included): {:.1} MiB", rss as f64 / 1024.0);
    assert!(rss < 128 * 1024, "idle RSS {rss} KiB under emulation");
    agent.stop();
}
