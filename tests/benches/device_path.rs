//! The device path measured end to end: signed envelope -> Mosquitto -> the agent (verify, admit,
//! authorize, RECEIVED durable) -> the lane -> the vmix-tcp driver -> the vMix simulator, paced at 1k
//! commands/s with the lane's rate limit lifted. Two figures: publish -> the simulator receives the
//! `FUNCTION` line (from the simulator's own timestamps; each command carries its number), and publish
//! -> answered -> EXECUTED durable -> reply, held against an MQTT echo and the disk's flush measured in
//! the same run. Then the lane's own cost per command, in process, against calling the driver directly.
//!
//! `cargo build --release --workspace --bins && cargo bench -p if-tests --bench device_path`

use std::sync::Arc;
use std::time::{Duration, Instant};

use if_edge::capability::{Capability, OutcomeFuture, Plan};
use if_edge::drivers::{Driver, HealthFuture};
use if_edge::lane::{Lane, LaneSpec};
use if_protocol::envelope::{ArgValue, EnvelopeBody, Hazards};
use if_tests::bench::{flush_latency, paced, paced_latency, percentile, print_goal, print_latency, spawn_echo};
use if_tests::device::{self, DeviceRig, Limits, code};
use if_tests::probe::Probe;
use if_tests::sim::Sim;

const VMIX: &str = "if://capability/vmix.switcher";

fn manifest(endpoint: &str) -> String {
    let limits = Limits {
        rps: 100_000.0,
        burst: 10_000,
        breaker_failures: 50,
        queue_depth: 4096,
        timeout_ms: 2000,
        ..Limits::default()
    };
    device::manifest(VMIX, "vmix-tcp", endpoint, limits, &["preview_input", "set_text"], &[], &[])
}

/// A driver that answers at once: what is left is the lane.
#[derive(Debug)]
struct Instant0;

impl Driver for Instant0 {
    fn plan(&self, _: &EnvelopeBody) -> Plan {
        Plan::default()
    }
    fn apply<'a>(&'a self, _: &'a EnvelopeBody) -> OutcomeFuture<'a> {
        Box::pin(async { Ok(serde_json::Value::Null) })
    }
    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

fn lane_overhead() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let n = 100_000u32;
    let (direct, through) = rt.block_on(async move {
        let driver = Arc::new(Instant0);
        let body = if_tests::talent::Talent::new("desk").next_ping();
        let start = Instant::now();
        for _ in 0..n {
            let _ = driver.apply(&body).await;
        }
        let direct = start.elapsed();
        let spec = LaneSpec {
            id: "if://capability/bench".into(),
            actions: ["ping".to_string()].into_iter().collect(),
            emergency: Default::default(),
            ends_queue: Default::default(),
            rps: 1e9,
            burst: 1_000_000,
            backoff: if_edge::backoff::Backoff::from_secs(&[1]),
            breaker_failures: 5,
            queue_depth: 1024,
            timeout: Duration::from_secs(5),
        };
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let lane = Lane::start(spec, driver, tx);
        let start = Instant::now();
        for _ in 0..n {
            let _ = lane.execute(&body).await;
        }
        (direct, start.elapsed())
    });
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "lane overhead: {:.2} us per command ({:.2} us through the lane, {:.2} us calling the driver directly; {n} sequential commands)",
        per(through) - per(direct),
        per(through),
        per(direct)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("device_path: bench");
        return;
    }
    let sim = Sim::start("vmix");
    let mut rig = DeviceRig::new(&manifest(&sim.endpoint()), VMIX, &["preview_input", "set_text"], |_, _| {});
    let ready = if_tests::wait_for(Duration::from_secs(10), || {
        (code(&rig.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(2))])) == "OK").then_some(())
    });
    assert!(ready.is_some(), "the driver connected");
    let n = 2000;
    // The floors, in the same run: an MQTT echo in the agent's place (one way is half its round trip),
    // and the disk's flush.
    let echo_probe = Probe::connect(&rig.broker, &rig.agent.site, "echo");
    let echo = spawn_echo(rig.broker.port, &echo_probe.topics);
    let echo_frames: Vec<Vec<u8>> =
        (0..n).map(|i| rig.frame("set_text", Hazards::NONE, &[("Value", ArgValue::Int(i))])).collect();
    let echo_lat = paced_latency(&echo_probe, echo_frames);
    drop(echo);
    let flush = flush_latency();
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| rig.frame("set_text", Hazards::NONE, &[("Input", ArgValue::Int(1)), ("Value", ArgValue::Int(i))]))
        .collect();
    let (lat, published, _) = paced(&rig.probe, frames);
    let mut to_device: Vec<Duration> = sim
        .received_at()
        .iter()
        .filter_map(|(at, line)| {
            let i: usize = line.strip_prefix("FUNCTION SetText Input=1&Value=")?.parse().ok()?;
            let us = at.checked_sub(*published.get(i)?)?;
            Some(Duration::from_micros(u64::try_from(us).ok()?))
        })
        .collect();
    to_device.sort();
    println!("machine: {} cpus", std::thread::available_parallelism().map_or(0, |n| n.get()));
    print_latency("publish -> vMix simulator receives the FUNCTION, paced 1k cmds/s", &to_device);
    print_latency("publish -> vMix simulator answered -> reply, paced 1k cmds/s", &lat);
    println!("the simulator received {} of {n} numbered FUNCTION lines", to_device.len());
    print_latency("echo latency at 1k msgs/s", &echo_lat);
    print_latency("4 KiB write + fdatasync, same disk", &flush);
    if !to_device.is_empty() {
        print_goal(
            "publish -> device",
            percentile(&to_device, 0.99),
            "echo p99 / 2 + fdatasync p99",
            percentile(&echo_lat, 0.99) / 2 + percentile(&flush, 0.99),
        );
    }
    rig.agent.stop();
    lane_overhead();
}
