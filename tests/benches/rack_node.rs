//! The rack node's latency: the firmware under QEMU on its pseudo-terminal, and the whole path from a
//! signed MQTT command to the lamp on the node's front panel.
//!
//! - floor: a frame written to a pseudo-terminal and echoed back by a thread (what the pty costs);
//! - edge -> node -> edge: a `SetLamp` frame to the firmware and its `Ack` back (the link's round trip);
//! - MQTT publish -> lamp lit: a signed `lamp` command through Mosquitto, the agent (verify, admit,
//!   authorize, RECEIVED durable), the lane and the rack-node-serial driver, to the panel's line.
//!
//! `cargo build --release --workspace --bins && cargo build -p if-rack-node --profile firmware --target
//! thumbv7em-none-eabihf && cargo bench -p if-tests --bench rack_node`

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use if_protocol::envelope::{ArgValue, Hazards};
use if_protocol::link::{self, Accumulator, Lamp, LinkFrame, Message};
use if_tests::bench::print_latency;
use if_tests::device::{self, DeviceRig, Limits, code, text};
use if_tests::rack::RackNode;
use serialport::{SerialPort as _, TTYPort};

const N: usize = 500;
const RACK: &str = "if://capability/rack.one";

fn frame(f: &LinkFrame) -> Vec<u8> {
    let mut buf = [0u8; link::MAX_ENCODED_LEN];
    let n = link::encode(f, &mut buf).expect("fits");
    buf[..n].to_vec()
}

/// Reads from `port` until a frame `want` accepts arrives.
fn read_until(port: &mut TTYPort, acc: &mut Accumulator, want: impl Fn(&LinkFrame) -> bool) -> LinkFrame {
    let mut buf = [0u8; 256];
    loop {
        let n = port.read(&mut buf).expect("read the link");
        let mut got = None;
        acc.feed(&buf[..n], |r| {
            if let Ok(f) = r
                && got.is_none()
                && want(&f)
            {
                got = Some(f);
            }
        });
        if let Some(f) = got {
            return f;
        }
    }
}

fn pty_floor() -> Vec<Duration> {
    let (mut master, mut slave) = TTYPort::pair().expect("pty");
    master.set_timeout(Duration::from_secs(2)).expect("timeout");
    slave.set_timeout(Duration::from_secs(2)).expect("timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = slave.read(&mut buf) {
            if slave.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let f = LinkFrame { seq: 1, ack: 0, msg: Message::SetLamp { lamp: 1, color: Lamp::Red } };
    let bytes = frame(&f);
    let mut acc = Accumulator::new();
    let mut lat = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        master.write_all(&bytes).expect("write");
        read_until(&mut master, &mut acc, |_| true);
        lat.push(t.elapsed());
    }
    lat.sort();
    lat
}

fn link_round_trip() -> Vec<Duration> {
    let node = RackNode::start();
    let mut port = serialport::new(node.link(), 115_200).open_native().expect("open the link");
    port.set_timeout(Duration::from_secs(5)).expect("timeout");
    let mut acc = Accumulator::new();
    let hello = read_until(&mut port, &mut acc, |f| matches!(f.msg, Message::Hello { .. }));
    let Message::Hello { boots, .. } = hello.msg else { unreachable!("matched") };
    port.write_all(&frame(&LinkFrame { seq: 0, ack: 0, msg: Message::Welcome { session: 9, boots } })).expect("write");
    let mut seq = 0u8;
    let mut ask = |port: &mut TTYPort, msg: Message| {
        seq = seq.wrapping_add(1).max(1);
        let s = seq;
        let t = Instant::now();
        port.write_all(&frame(&LinkFrame { seq: s, ack: 0, msg })).expect("write");
        let answer = read_until(port, &mut acc, |f| f.msg.is_answer() && f.ack == s);
        assert_eq!(answer.msg, Message::Ack);
        t.elapsed()
    };
    ask(&mut port, Message::Resume);
    let mut lat: Vec<Duration> = (0..N)
        .map(|i| {
            let color = if i % 2 == 0 { Lamp::Red } else { Lamp::Green };
            ask(&mut port, Message::SetLamp { lamp: (i % 8) as u8, color })
        })
        .collect();
    lat.sort();
    lat
}

fn publish_to_lamp() -> Vec<Duration> {
    let node = RackNode::start();
    let limits = Limits { rps: 10_000.0, burst: 1000, queue_depth: 1024, timeout_ms: 2000, ..Limits::default() };
    let endpoint = format!("serial://{}?baud=115200", node.link());
    let m = device::manifest(RACK, "rack-node-serial", &endpoint, limits, &["lamp"], &[], &[]);
    let mut r = DeviceRig::new(&m, RACK, &["lamp"], |_, _| {});
    let args = |color: &str| vec![("lamp", ArgValue::Int(0)), ("color", text(color))];
    if_tests::wait_for(Duration::from_secs(10), || {
        (code(&r.ask("lamp", Hazards::NONE, &args("amber"))) == "OK").then_some(())
    })
    .expect("the node answers");
    let n = N / 2;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let color = if i % 2 == 0 { "red" } else { "green" };
        let frame = r.frame("lamp", Hazards::NONE, &args(color));
        let mark = node.mark();
        let t = Instant::now();
        r.probe.request(frame, &(i as u64).to_be_bytes());
        let line = node.wait_line(mark, &format!("lamp 0 {color}"), Duration::from_secs(5)).expect("the lamp");
        lat.push(line.at.duration_since(t));
        let _ = r.probe.next(Duration::from_secs(5));
    }
    lat.sort();
    lat
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let floor = pty_floor();
    print_latency("floor: a frame through a pty and back", &floor);
    let link = link_round_trip();
    print_latency("edge -> node -> edge: SetLamp answered by the firmware under QEMU", &link);
    let p50 = |l: &[Duration]| if_tests::bench::percentile(l, 0.5).as_secs_f64();
    println!("link round trip / pty floor, p50: {:.1}", p50(&link) / p50(&floor));
    let path = publish_to_lamp();
    print_latency("MQTT publish -> lamp lit on the panel (through the agent)", &path);
}
