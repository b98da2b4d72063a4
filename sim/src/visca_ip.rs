//! A Sony camera that takes VISCA over IP (docs/PROTOCOLS.md, "Sony VISCA over IP") on a UDP socket:
//! two sockets, answers by sequence number, with its own reading of the header (none of the agent's
//! code).
//!
//! Like a camera after power-up, it knows no sequence number until it is reset: a command before the
//! first RESET, or under a number no higher than the last it ran, is not run and is answered "abnormality
//! in the sequence number" (control reply `0F 01`); so a command sent again under the same number never
//! runs twice. A command is acknowledged at once (`90 4y FF`) and completed 600 ms later for a preset
//! recall, one frame (17 ms) later for anything else (`90 5y FF`); a third while both sockets are busy is
//! "buffer full". Cancel (`81 2y FF`) ends the command in socket y (`90 6y 04 FF`, or `05` for an empty
//! socket). Inquiries are answered `90 50 ... FF` (power: on). Every datagram received is
//! recorded as `UNIX_US TYPE SEQ HEX` (`TYPE` four hex digits, `----` for no message).
//!
//! Faults from the fault file: `refuse` (the socket is closed, so the host refuses datagrams, until the
//! fault clears), `hang` (answer nothing), `garbage` (noise instead of answers), `drop` (every answer
//! cut short after its header), `slow` (every answer 2 s late), `lose-ack` (the first ACK to each
//! command is lost), `lose-command` (the first datagram of each command is lost), `busy`, `syntax`,
//! `notexec` (every command answered with that error).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::Files;

fn fault(files: &Files) -> String {
    files.fault.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

/// `(payload type, sequence number, payload)` of a datagram, if it is a message.
fn read(d: &[u8]) -> Option<(u16, u32, &[u8])> {
    let kind = u16::from_be_bytes([*d.first()?, *d.get(1)?]);
    let len = usize::from(u16::from_be_bytes([*d.get(2)?, *d.get(3)?]));
    let seq = u32::from_be_bytes([*d.get(4)?, *d.get(5)?, *d.get(6)?, *d.get(7)?]);
    let payload = d.get(8..)?;
    (payload.len() == len && (1..=16).contains(&len)).then_some((kind, seq, payload))
}

fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut d = kind.to_be_bytes().to_vec();
    d.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

fn record(files: &Files, d: &[u8]) {
    let Some(path) = &files.record else { return };
    use std::io::Write as _;
    let us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
    let line = match read(d) {
        Some((kind, seq, payload)) => format!("{us} {kind:04X} {seq} {}", hex(payload)),
        None => format!("{us} ---- - {}", hex(d)),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// What the camera remembers.
#[derive(Debug, Default)]
struct Camera {
    /// The number of the last command it ran; `None` until it is reset.
    last: Option<u32>,
    /// Each socket: 0 when free, else the number of the command executing there (so a command cancelled
    /// and its socket given to another never completes in it).
    busy: [u64; 2],
    commands: u64,
    acks_lost: HashSet<u32>,
    commands_lost: HashSet<u32>,
}

type Shared = Arc<Mutex<Camera>>;

/// Answers on `socket` until the process ends.
pub async fn serve(socket: UdpSocket, files: Files) -> std::io::Result<()> {
    let here = socket.local_addr()?;
    let camera = Shared::default();
    let mut socket = Arc::new(socket);
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let d = buf[..n].to_vec();
        record(&files, &d);
        let f = fault(&files);
        if f == "refuse" {
            socket = refuse(socket, here, &files).await;
            continue;
        }
        if f == "slow" {
            let (socket, camera) = (Arc::downgrade(&socket), camera.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Some(socket) = socket.upgrade() {
                    answer(&d, "", &socket, peer, &camera).await;
                }
            });
            continue;
        }
        answer(&d, &f, &socket, peer, &camera).await;
    }
}

/// Closes the socket (the host then refuses what comes) until the fault clears, and opens it again.
async fn refuse(socket: Arc<UdpSocket>, here: SocketAddr, files: &Files) -> Arc<UdpSocket> {
    drop(socket);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if fault(files) != "refuse"
            && let Ok(s) = UdpSocket::bind(here).await
        {
            return Arc::new(s);
        }
    }
}

async fn send(socket: &UdpSocket, peer: SocketAddr, d: &[u8], f: &str) {
    let d = if f == "drop" { &d[..d.len().min(8)] } else { d };
    let _ = socket.send_to(d, peer).await;
}

fn reset(camera: &Shared) {
    camera.lock().unwrap_or_else(std::sync::PoisonError::into_inner).last = Some(0);
}

async fn answer(d: &[u8], f: &str, socket: &Arc<UdpSocket>, peer: SocketAddr, camera: &Shared) {
    match f {
        "hang" => return,
        "garbage" => return send(socket, peer, &[0x12, 0x34, 0xFF], f).await,
        _ => {}
    }
    let Some((kind, seq, payload)) = read(d) else { return };
    let reply = |p: &[u8]| message(0x0111, seq, p);
    let control = |p: &[u8]| message(0x0201, seq, p);
    match kind {
        0x0200 if payload == [0x01] => {
            reset(camera);
            send(socket, peer, &control(&[0x01]), f).await;
        }
        0x0110 if payload == [0x81, 0x09, 0x04, 0x00, 0xFF] => {
            send(socket, peer, &reply(&[0x90, 0x50, 0x02, 0xFF]), f).await
        }
        0x0110 => send(socket, peer, &reply(&[0x90, 0x50, 0x00, 0xFF]), f).await,
        0x0100 => command(seq, payload, f, socket, peer, camera).await,
        _ => send(socket, peer, &control(&[0x0F, 0x02]), f).await,
    }
}

/// What the camera does with a command, decided under its lock.
enum Verdict {
    /// Nothing: the datagram was lost.
    Lost,
    /// Answer this and run nothing.
    Refuse(Vec<u8>),
    /// Run it in socket `i` as command `id`; `ack` unless the ACK is lost.
    Run { i: usize, id: u64, ack: bool },
}

fn verdict(seq: u32, payload: &[u8], f: &str, camera: &Shared) -> Verdict {
    let reply = |p: &[u8]| message(0x0111, seq, p);
    let mut cam = camera.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if f == "lose-command" && cam.commands_lost.insert(seq) {
        return Verdict::Lost;
    }
    if cam.last.is_none_or(|last| seq <= last) {
        return Verdict::Refuse(message(0x0201, seq, &[0x0F, 0x01]));
    }
    cam.last = Some(seq);
    // Cancel: the command in socket y ends "cancelled"; an empty socket is "no socket".
    if let [0x81, c, 0xFF] = payload
        && c & 0xF0 == 0x20
        && (1..=2).contains(&(c & 0x0F))
    {
        let y = c & 0x0F;
        let was = std::mem::take(&mut cam.busy[usize::from(y - 1)]);
        return Verdict::Refuse(reply(&[0x90, 0x60 | y, if was == 0 { 0x05 } else { 0x04 }, 0xFF]));
    }
    let error = match f {
        "syntax" => Some(0x02),
        "busy" => Some(0x03),
        "notexec" => Some(0x41),
        _ if !(payload.starts_with(&[0x81, 0x01]) && payload.ends_with(&[0xFF])) => Some(0x02),
        _ => None,
    };
    if let Some(e) = error {
        return Verdict::Refuse(reply(&[0x90, if e == 0x41 { 0x61 } else { 0x60 }, e, 0xFF]));
    }
    let Some(i) = cam.busy.iter().position(|b| *b == 0) else {
        return Verdict::Refuse(reply(&[0x90, 0x60, 0x03, 0xFF]));
    };
    cam.commands += 1;
    let id = cam.commands;
    cam.busy[i] = id;
    Verdict::Run { i, id, ack: !(f == "lose-ack" && cam.acks_lost.insert(seq)) }
}

async fn command(seq: u32, payload: &[u8], f: &str, socket: &Arc<UdpSocket>, peer: SocketAddr, camera: &Shared) {
    let (i, id, ack) = match verdict(seq, payload, f, camera) {
        Verdict::Lost => return,
        Verdict::Refuse(answer) => return send(socket, peer, &answer, f).await,
        Verdict::Run { i, id, ack } => (i, id, ack),
    };
    let y = 0x41 + i as u8;
    if ack {
        send(socket, peer, &message(0x0111, seq, &[0x90, y, 0xFF]), f).await;
    }
    let done = if payload.starts_with(&[0x81, 0x01, 0x04, 0x3F, 0x02]) { 600 } else { 17 };
    let completion = message(0x0111, seq, &[0x90, y + 0x10, 0xFF]);
    // Answers on their way hold the socket weakly: a `refuse` closes it at once.
    let (socket, camera, f) = (Arc::downgrade(socket), camera.clone(), f.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(done)).await;
        let mine = {
            let mut cam = camera.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mine = cam.busy[i] == id;
            if mine {
                cam.busy[i] = 0;
            }
            mine
        };
        if mine && let Some(socket) = socket.upgrade() {
            send(&socket, peer, &completion, &f).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_and_anything_else_is_none() {
        let d = message(0x0100, 7, &[0x81, 0x01, 0x04, 0x07, 0x27, 0xFF]);
        assert_eq!(d[..8], [0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x07]);
        assert_eq!(read(&d), Some((0x0100, 7, &d[8..])));
        assert_eq!(read(&d[..10]), None, "cut short");
        assert_eq!(read(&[0x12, 0x34, 0xFF]), None);
    }
}
