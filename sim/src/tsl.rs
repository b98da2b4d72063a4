//! A TSL UMD v5.0 receiver (docs/PROTOCOLS.md, "TSL UMD tally displays"), as a multiviewer's UMD input is:
//! a UDP socket that takes v5.0 packets and records every display message it reads, one line each:
//! `display INDEX screen SCREEN left COLOUR text COLOUR right COLOUR brightness N "TEXT"` (colours off,
//! red, green, amber). A packet that breaks the layout is recorded as `bad packet: WHY` and nothing of it
//! is taken. It never answers: displays do not.

use tokio::net::UdpSocket;

use crate::Files;

const COLOURS: [&str; 4] = ["off", "red", "green", "amber"];

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The lines a v5.0 packet stands for, or why it breaks the layout.
pub fn read_packet(p: &[u8]) -> Result<Vec<String>, String> {
    let pbc = usize::from(u16le(p, 0).ok_or("shorter than its header")?);
    if pbc + 2 != p.len() {
        return Err(format!("byte count {pbc} for {} bytes after it", p.len().saturating_sub(2)));
    }
    let (version, flags, screen) = (p.get(2).copied(), p.get(3).copied(), u16le(p, 4));
    let (Some(0), Some(flags), Some(screen)) = (version, flags, screen) else {
        return Err("not a version 5.00 header".into());
    };
    if flags & 0b10 != 0 {
        return Err("screen control data, which this receiver does not take".into());
    }
    let mut lines = Vec::new();
    let mut at = 6;
    while at < p.len() {
        let (Some(index), Some(control), Some(len)) = (u16le(p, at), u16le(p, at + 2), u16le(p, at + 4)) else {
            return Err(format!("a display message cut short at byte {at}"));
        };
        if control & 0x8000 != 0 {
            return Err(format!("display {index}: control data, which this receiver does not take"));
        }
        let raw = p.get(at + 6..at + 6 + usize::from(len)).ok_or(format!("display {index}: text cut short"))?;
        let text = if flags & 1 == 1 {
            let units: Vec<u16> = raw.chunks(2).map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
            String::from_utf16_lossy(&units)
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        let colour = |shift: u16| COLOURS[usize::from((control >> shift) & 3)];
        lines.push(format!(
            "display {index} screen {screen} left {} text {} right {} brightness {} {text:?}",
            colour(4),
            colour(2),
            colour(0),
            (control >> 6) & 3
        ));
        at += 6 + usize::from(len);
    }
    Ok(lines)
}

/// Receives on `socket` until the process ends.
pub async fn serve(socket: UdpSocket, files: Files) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await?;
        let lines = read_packet(&buf[..n]).unwrap_or_else(|why| vec![format!("bad packet: {why}")]);
        if let Some(path) = &files.record {
            use std::io::Write as _;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                for l in lines {
                    let _ = writeln!(f, "{l}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_reads_as_its_displays_and_a_broken_one_says_why() {
        let p = [0x0F, 0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00, 0xD1, 0x00, 0x05, 0x00, b'C', b'A', b'M', b' ', b'2'];
        assert_eq!(
            read_packet(&p),
            Ok(vec![r#"display 3 screen 1 left red text off right red brightness 3 "CAM 2""#.to_string()])
        );
        assert!(read_packet(&p[..16]).is_err_and(|e| e.contains("byte count")));
        let mut cut = p;
        cut[0] = 0x0F;
        cut[10] = 0x09;
        assert!(read_packet(&cut).is_err_and(|e| e.contains("cut short")));
        assert!(read_packet(&[0x01]).is_err());
    }
}
