//! Tally to the wall: how long a tally change takes from the switcher to a multiviewer's UMD.
//!
//! - floor: a line written on loopback TCP, read by a thread that sends one UDP datagram, received here
//!   (the two sockets the path crosses, with no work);
//! - vMix tally change -> TSL packet: a `TALLY OK` line pushed by a switcher on the vMix TCP API (played
//!   here, so the push time is exact), through the real agent's vmix-tcp driver, its tally loop and a
//!   display binding, the tsl-umd lane and driver, to the v5.0 datagram on a UDP receiver.
//!
//! `cargo build --release --workspace --bins && cargo bench -p if-tests --bench tally_path`

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use if_tests::bench::print_latency;
use if_tests::device::{self, DeviceRig, Limits};

const N: usize = 300;
const VMIX: &str = "if://capability/vmix.switcher";
const UMD: &str = "if://capability/umd.wall";

/// Every datagram `socket` receives, with when.
fn receive(socket: UdpSocket) -> mpsc::Receiver<(Instant, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    rx
}

fn floor() -> Vec<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let out = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let at = out.local_addr().expect("addr");
    let datagrams = receive(out);
    let mut writer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    writer.set_nodelay(true).expect("nodelay");
    let (reader, _) = listener.accept().expect("accept");
    std::thread::spawn(move || {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            let _ = udp.send_to(line.as_bytes(), at);
        }
    });
    let mut lat: Vec<Duration> = (0..N)
        .map(|_| {
            let t = Instant::now();
            writer.write_all(b"TALLY OK 1200\r\n").expect("write");
            let (got, _) = datagrams.recv_timeout(Duration::from_secs(5)).expect("a datagram");
            got.duration_since(t)
        })
        .collect();
    lat.sort();
    lat
}

/// A switcher on the vMix TCP API: it answers what the driver asks at connect and lets the bench push
/// tally lines on the connection.
fn switcher() -> (String, Arc<Mutex<Option<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", listener.local_addr().expect("addr"));
    let push: Arc<Mutex<Option<TcpStream>>> = Arc::default();
    let conn = push.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_nodelay(true);
            let _ = stream.write_all(b"VERSION OK 27.0.0.49\r\n");
            let writer = stream.try_clone().expect("clone");
            *conn.lock().expect("lock") = Some(writer);
            let conn = conn.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    let answer = match line.split(' ').next().unwrap_or("") {
                        "SUBSCRIBE" => "SUBSCRIBE OK TALLY".to_string(),
                        "TALLY" => "TALLY OK 2100".to_string(),
                        other => format!("{other} OK"),
                    };
                    if let Some(w) = conn.lock().expect("lock").as_mut() {
                        let _ = w.write_all(format!("{answer}\r\n").as_bytes());
                    }
                }
            });
        }
    });
    (endpoint, push)
}

/// The left-hand tally of display 1 in a v5.0 packet (the first display message), if it is one.
fn left_of_display_1(p: &[u8]) -> Option<u16> {
    let index = u16::from_le_bytes([*p.get(6)?, *p.get(7)?]);
    let control = u16::from_le_bytes([*p.get(8)?, *p.get(9)?]);
    (index == 1).then_some((control >> 4) & 3)
}

fn tally_to_umd() -> Vec<Duration> {
    let (endpoint, push) = switcher();
    let umds = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let umd_at = umds.local_addr().expect("addr");
    let datagrams = receive(umds);
    let fast = Limits { rps: 10_000.0, burst: 1000, queue_depth: 1024, ..Limits::default() };
    let vmix = device::manifest(VMIX, "vmix-tcp", &endpoint, Limits::default(), &["cut"], &["cut"], &[]);
    let r = DeviceRig::new(&vmix, VMIX, &["cut"], |_, agent| {
        let out = format!("udp://{umd_at}?version=5&refresh_s=0");
        agent.add_manifest("umd", &device::manifest(UMD, "tsl-umd", &out, fast, &["display"], &[], &[]));
        agent.edit_config(|t| {
            t.replace(&format!("allow = [\"{VMIX}@1.0.0\"]"), &format!("allow = [\"{VMIX}@1.0.0\", \"{UMD}@1.0.0\"]"))
        });
    });
    let bind = ["--name", "umd1", "--node", UMD, "--display", "1", "--follow", VMIX, "--follow-input", "1"];
    let out = r.agent.binding("add", &bind);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Input 1 starts on preview ("2100"): the display shows it once the binding is in.
    let shown = (0..100).find_map(|_| {
        let (_, p) = datagrams.recv_timeout(Duration::from_millis(100)).ok()?;
        (left_of_display_1(&p) == Some(0)).then_some(())
    });
    assert!(shown.is_some(), "the display follows input 1");
    let mut lat = Vec::with_capacity(N);
    for i in 0..N {
        let (digits, left) = if i % 2 == 0 { ("1200", 1) } else { ("2100", 0) };
        while datagrams.try_recv().is_ok() {}
        let t = Instant::now();
        let sent =
            push.lock().expect("lock").as_mut().map(|w| w.write_all(format!("TALLY OK {digits}\r\n").as_bytes()));
        assert!(matches!(sent, Some(Ok(()))), "the driver is connected");
        let got = loop {
            let (at, p) = datagrams.recv_timeout(Duration::from_secs(5)).expect("the display changed");
            if left_of_display_1(&p) == Some(left) {
                break at;
            }
        };
        lat.push(got.duration_since(t));
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(r);
    lat.sort();
    lat
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let floor = floor();
    print_latency("floor: a line over loopback TCP, then one UDP datagram", &floor);
    let path = tally_to_umd();
    print_latency("vMix tally change -> TSL v5 packet on the wire (through the agent)", &path);
    let p = |l: &[Duration], q| if_tests::bench::percentile(l, q).as_secs_f64();
    println!(
        "tally -> UMD / floor: p50 {:.1}, p99 {:.1}",
        p(&path, 0.5) / p(&floor, 0.5),
        p(&path, 0.99) / p(&floor, 0.99)
    );
}
