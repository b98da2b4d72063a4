//! A signed camera command to a networked PTZ camera: how long from the MQTT publish until the camera
//! has the VISCA-over-IP datagram.
//!
//! - floor: one trip through the broker (a QoS 1 publish, received by a subscriber on the same broker),
//!   the hop every command takes before the agent sees it;
//! - publish -> camera receives: a signed `zoom` through Mosquitto, the real agent (verify, admit,
//!   authorize, RECEIVED durable), the lane and the visca-ip driver, to a camera played here on a UDP
//!   socket (answering RESET, ACK and completion at once, so the camera itself costs nothing), paced at
//!   1k commands/s with the lane's rate limit lifted. Both clocks are this machine's.
//!
//! `cargo build --release --workspace --bins && cargo bench -p if-tests --bench camera_path`

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::bench::{paced, print_latency, unix_us};
use if_tests::device::{self, DeviceRig, Limits, code, text};

const CAM: &str = "if://capability/camera.ip";
const N: usize = 1000;

/// `(unix us, sequence number)` of every command the camera received.
type Seen = Arc<Mutex<Vec<(u128, u32)>>>;

/// A camera on a UDP socket: RESET acknowledged, each command acknowledged and completed at once,
/// inquiries answered. Its own reading of the header.
fn camera() -> (String, Seen) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr").to_string();
    let seen = Seen::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let at = unix_us();
            let d = &buf[..n];
            if n < 9 {
                continue;
            }
            let (kind, seq) = (u16::from_be_bytes([d[0], d[1]]), [d[4], d[5], d[6], d[7]]);
            let answer = |kind: u16, payload: &[u8]| {
                let mut m = kind.to_be_bytes().to_vec();
                m.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                m.extend_from_slice(&seq);
                m.extend_from_slice(payload);
                let _ = socket.send_to(&m, peer);
            };
            match kind {
                0x0200 => answer(0x0201, &[0x01]),
                0x0110 => answer(0x0111, &[0x90, 0x50, 0x02, 0xFF]),
                0x0100 => {
                    record.lock().expect("record").push((at, u32::from_be_bytes(seq)));
                    answer(0x0111, &[0x90, 0x41, 0xFF]);
                    answer(0x0111, &[0x90, 0x51, 0xFF]);
                }
                _ => {}
            }
        }
    });
    (format!("udp://{addr}"), seen)
}

fn floor(rig: &DeviceRig) -> Vec<Duration> {
    let topic = "bench/floor";
    rig.probe.subscribe(topic);
    let mut lat = Vec::with_capacity(300);
    for _ in 0..300 {
        let start = Instant::now();
        rig.probe.publish_to(topic, vec![0u8; 200], false);
        if rig.probe.next_on(topic, Duration::from_secs(5)).is_some() {
            lat.push(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    lat.sort();
    lat
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("camera_path: bench");
        return;
    }
    let (endpoint, seen) = camera();
    let limits = Limits {
        rps: 100_000.0,
        burst: 10_000,
        breaker_failures: 50,
        queue_depth: 4096,
        timeout_ms: 2000,
        ..Limits::default()
    };
    let m = device::manifest(CAM, "visca-ip", &endpoint, limits, &["zoom"], &[], &[]);
    let mut rig = DeviceRig::new(&m, CAM, &["zoom"], |_, _| {});
    let stop = [("direction", text("stop"))];
    let ready = if_tests::wait_for(Duration::from_secs(10), || {
        (code(&rig.ask("zoom", Hazards::NONE, &stop)) == "OK").then_some(())
    });
    assert!(ready.is_some(), "the camera answered");
    let floor = floor(&rig);
    let before = seen.lock().expect("seen").len();
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            rig.frame("zoom", Hazards::NONE, &[("direction", text("tele")), ("speed", ArgValue::Int((i % 8) as i64))])
        })
        .collect();
    let (answered, published, _) = paced(&rig.probe, frames);
    // The camera's commands in the order sent (one number each; a number sent again is counted once).
    let mut commands: Vec<(u128, u32)> = seen.lock().expect("seen")[before..].to_vec();
    commands.dedup_by_key(|(_, seq)| *seq);
    let mut to_camera: Vec<Duration> = commands
        .iter()
        .zip(&published)
        .filter_map(|((at, _), p)| Some(Duration::from_micros(u64::try_from(at.checked_sub(*p)?).ok()?)))
        .collect();
    to_camera.sort();
    println!("machine: {} cpus", std::thread::available_parallelism().map_or(0, |n| n.get()));
    print_latency("floor: MQTT publish -> subscriber on the same broker", &floor);
    print_latency("MQTT publish -> VISCA-IP camera receives the zoom, paced 1k cmds/s", &to_camera);
    print_latency("MQTT publish -> camera completed -> reply, paced 1k cmds/s", &answered);
    println!("the camera received {} of {N} commands", commands.len());
    rig.agent.stop();
}
