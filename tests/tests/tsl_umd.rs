//! Tally displays over TSL UMD through the whole path: a signed vMix cut through the real agent and the
//! vMix simulator, and the displays bound to the switcher's inputs change on a v5.0 UDP receiver, a v5.0
//! TCP receiver (the DLE/STX stream form, with a 0xFE in the index and the text) and a v3.1 UDP receiver
//! (a v5 display without a label of its own reads vMix's title of the input),
//! each parsed here from the published layout, not with the agent's codec. UMDs forget, so the same
//! state comes again on the output's refresh with no tally change; a binding added later is shown from
//! the latest tally at once.

use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use if_protocol::envelope::Hazards;
use if_tests::device::{self, DeviceRig, Limits, code};
use if_tests::sim::Sim;

const VMIX: &str = "if://capability/vmix.switcher";
const WALL: &str = "if://capability/umd.wall";
const BOOTH: &str = "if://capability/umd.booth";
const DESK: &str = "if://capability/umd.desk";

/// One v5 display message: (index, right, text tally, left, brightness, text).
type Dmsg = (u16, u8, u8, u8, u8, String);

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// A v5 packet: its screen and display messages; panics on anything the layout does not allow.
fn parse_v5(p: &[u8]) -> (u16, Vec<Dmsg>) {
    assert_eq!(usize::from(u16le(p, 0)), p.len() - 2, "PBC counts the bytes after it: {p:02x?}");
    assert_eq!(p[2], 0, "version 5.00");
    let utf16 = p[3] & 1 == 1;
    assert_eq!(p[3] & 0b10, 0, "display data, not screen control");
    let screen = u16le(p, 4);
    let mut out = Vec::new();
    let mut at = 6;
    while at < p.len() {
        let (index, control, len) = (u16le(p, at), u16le(p, at + 2), usize::from(u16le(p, at + 4)));
        assert_eq!(control & 0x8000, 0, "display data");
        let raw = &p[at + 6..at + 6 + len];
        let text = if utf16 {
            String::from_utf16_lossy(&raw.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>())
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        let field = |shift: u16| ((control >> shift) & 3) as u8;
        out.push((index, field(0), field(2), field(4), field(6), text));
        at += 6 + len;
    }
    (screen, out)
}

/// Undoes the stream wrapper: the packets after each DLE/STX, with DLE/DLE read as one DLE.
fn unwrap_stream(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (0xFE, Some(0x02)) => {
                packets.push(Vec::new());
                i += 2;
            }
            (0xFE, Some(0xFE)) => {
                if let Some(p) = packets.last_mut() {
                    p.push(0xFE);
                }
                i += 2;
            }
            (b, _) => {
                if let Some(p) = packets.last_mut() {
                    p.push(b);
                }
                i += 1;
            }
        }
    }
    packets
}

/// What a receiver got, with when.
type Got = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

fn udp_receiver() -> (u16, Got) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = socket.local_addr().expect("addr").port();
    let got: Got = Arc::default();
    let into = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            into.lock().expect("lock").push((Instant::now(), buf[..n].to_vec()));
        }
    });
    (port, got)
}

fn tcp_receiver() -> (u16, Got) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got: Got = Arc::default();
    let into = got.clone();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                return;
            }
            into.lock().expect("lock").push((Instant::now(), buf[..n].to_vec()));
        }
    });
    (port, got)
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    if_tests::wait_for(Duration::from_secs(10), &mut f).unwrap_or_else(|| panic!("{what}"))
}

/// Every display message a v5 datagram receiver got since `from`, with the packet's screen and time.
fn v5_datagrams(got: &Got, from: Instant) -> Vec<(Instant, u16, Dmsg)> {
    let packets = got.lock().expect("lock").clone();
    let mut out = Vec::new();
    for (at, p) in packets.into_iter().filter(|(at, _)| *at >= from) {
        let (screen, displays) = parse_v5(&p);
        out.extend(displays.into_iter().map(|d| (at, screen, d)));
    }
    out
}

#[test]
fn a_signed_cut_changes_the_bound_tally_displays_over_v5_udp_v5_tcp_and_v31() {
    let sim = Sim::start("vmix");
    let (wall_port, wall) = udp_receiver();
    let (booth_port, booth) = tcp_receiver();
    let (desk_port, desk) = udp_receiver();
    let umd = |id: &str, endpoint: String| {
        device::manifest(id, "tsl-umd", &endpoint, Limits::default(), &["display", "refresh"], &[], &[])
    };
    let vmix = device::manifest(VMIX, "vmix-tcp", &sim.endpoint(), Limits::default(), &["cut"], &["cut"], &[]);
    let mut r = DeviceRig::new(&vmix, VMIX, &["cut"], |_, agent| {
        agent.add_manifest("wall", &umd(WALL, format!("udp://127.0.0.1:{wall_port}?version=5&screen=1&refresh_s=1")));
        let booth_at = format!("tcp://127.0.0.1:{booth_port}?version=5&charset=utf16&refresh_s=0");
        agent.add_manifest("booth", &umd(BOOTH, booth_at));
        agent.add_manifest("desk", &umd(DESK, format!("udp://127.0.0.1:{desk_port}?version=3.1&refresh_s=0")));
        agent.edit_config(|t| {
            let allow = [VMIX, WALL, BOOTH, DESK].map(|c| format!("\"{c}@1.0.0\"")).join(", ");
            t.replace(&format!("allow = [\"{VMIX}@1.0.0\"]"), &format!("allow = [{allow}]"))
        });
    });
    let bind =
        |agent: &if_tests::agent::Agent, name: &str, node: &str, display: &str, input: &str, label: Option<&str>| {
            let mut args = vec!["--name", name, "--node", node, "--display", display, "--follow", VMIX];
            args.extend(["--follow-input", input]);
            if let Some(l) = label {
                args.extend(["--label", l]);
            }
            let out = agent.binding("add", &args);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
    bind(&r.agent, "wall-cam2", WALL, "3", "2", Some("CAM 2"));
    bind(&r.agent, "wall-cam1", WALL, "4", "1", None);
    bind(&r.agent, "booth-cam2", BOOTH, "254", "2", Some("þ CAM 2"));
    bind(&r.agent, "desk-cam2", DESK, "5", "2", Some("CAM 2"));
    let listed = String::from_utf8_lossy(&r.agent.binding("list", &[]).stdout).into_owned();
    assert!(listed.contains("display 3 of if://capability/umd.wall follows input 2"), "{listed}");

    // The simulator starts with input 1 on program and 2 on preview; the cut swaps them.
    let before = Instant::now();
    let cut = until("the vMix driver is up", || {
        let reply = r.ask("cut", Hazards::ON_AIR, &[]);
        (code(&reply) == "OK").then_some(reply)
    });
    assert_eq!(cut["ok"], true);

    // v5 over UDP, screen 1: display 3 follows input 2 (now on program), display 4 input 1 (preview).
    fn on(index: u16, left: u8, text: u8, right: u8, label: &str) -> impl Fn(&(Instant, u16, Dmsg)) -> bool + '_ {
        move |(_, screen, d)| {
            *screen == 1 && d.0 == index && (d.3, d.2, d.1, d.4) == (left, text, right, 3) && d.5 == label
        }
    }
    let program = on(3, 1, 1, 0, "CAM 2");
    let first = until("display 3 red on the left and in its text", || {
        v5_datagrams(&wall, before).iter().find(|m| program(m)).map(|m| m.0)
    });
    // Display 4's binding has no label: it reads vMix's own title of input 1 (from vMix's XML).
    until("display 4 green on the right, reading vMix's title of input 1", || {
        v5_datagrams(&wall, before).iter().any(on(4, 0, 2, 2, "Camera 1")).then_some(())
    });
    // No tally change since: the refresh sends display 3 again.
    until("display 3 again on the refresh, a second later", || {
        v5_datagrams(&wall, first + Duration::from_millis(500)).iter().any(&program).then_some(())
    });

    // v5 over TCP: the wrapper, the index 254 (0xFE) doubled, the UTF-16 text with U+00FE in it.
    let (raw, packet) = until("the booth display over TCP", || {
        let raw: Vec<u8> = booth.lock().expect("lock").iter().flat_map(|(_, b)| b.clone()).collect();
        let packets = unwrap_stream(&raw);
        let p = packets.into_iter().find(|p| parse_v5(p).1.iter().any(|d| d.0 == 254 && d.3 == 1))?;
        Some((raw, p))
    });
    assert_eq!(&raw[..2], &[0xFE, 0x02], "a packet starts with DLE/STX");
    assert!(raw.windows(3).any(|w| w == [0xFE, 0xFE, 0x00]), "index 254 doubled on the wire: {raw:02x?}");
    let (_, displays) = parse_v5(&packet);
    assert_eq!(displays[0].5, "þ CAM 2", "the text, UTF-16LE");

    // v3.1 over UDP: address 5, tally 1 (program) at brightness 3, 16 characters padded with spaces.
    let msg = until("the v3.1 message for address 5", || {
        desk.lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| b.clone())
            .find(|b| b.len() == 18 && b[0] == 0x85 && b[1] & 1 == 1)
    });
    assert_eq!(msg[1], 0x31, "tally 1 and brightness 3");
    assert_eq!(&msg[2..], b"CAM 2           ");

    // A binding added now is shown from the switcher's latest tally, with no tally change.
    let added = Instant::now();
    bind(&r.agent, "wall-late", WALL, "9", "1", Some("LATE"));
    until("display 9 green on the right at once", || {
        v5_datagrams(&wall, added).iter().any(on(9, 0, 2, 2, "LATE")).then_some(())
    });
}
