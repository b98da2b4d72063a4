//! TSL UMD messages as bytes: v5.0 packets (UDP, or a byte stream with the DLE/STX wrapper) and v3.1
//! messages (18 bytes, serial or UDP). Pure functions with no I/O, checked against byte layouts worked
//! out from the published specification.
//!
//! v5.0, little-endian: `PBC` (u16, the bytes after it), `VER` (0), `FLAGS` (bit 0: text is UTF-16LE),
//! `SCREEN` (u16), then per display `INDEX` (u16), `CONTROL` (u16: bits 0-1 right-hand tally, 2-3 text
//! tally, 4-5 left-hand tally, 6-7 brightness; bit 15 clear for display data), `LENGTH` (u16, bytes of
//! text) and the text. A packet is at most 2048 bytes. On a stream, a packet starts with DLE/STX
//! (`FE 02`) and every `FE` inside it is sent twice; the byte counts ignore the doubling.
//!
//! v3.1: `0x80 + address` (0-126), a control byte (bits 0-3 tally 1-4, bits 4-5 brightness), then 16
//! printable ASCII characters, padded with spaces.

/// A tally colour of a v5 display's lamp or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Color {
    /// Dark.
    #[default]
    Off = 0,
    /// Program.
    Red = 1,
    /// Preview.
    Green = 2,
    /// Both, or a third state.
    Amber = 3,
}

/// How a v5 packet carries its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    /// Printable ASCII; anything else is sent as `?`.
    #[default]
    Ascii,
    /// UTF-16LE.
    Utf16,
}

/// One v5 display's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Display {
    /// Its index on the screen, from 0 (`0xFFFF` is every display).
    pub index: u16,
    /// The left-hand tally.
    pub left: Color,
    /// The text's tally colour.
    pub text_tally: Color,
    /// The right-hand tally.
    pub right: Color,
    /// 0 (off) to 3 (full).
    pub brightness: u8,
    /// The text (at most [`MAX_TEXT`] characters are sent).
    pub text: String,
}

/// The largest v5 packet.
pub const MAX_PACKET: usize = 2048;
/// The most characters of a display's text that are sent.
pub const MAX_TEXT: usize = 64;
/// The stream wrapper's DLE.
pub const DLE: u8 = 0xFE;
/// The stream wrapper's STX.
pub const STX: u8 = 0x02;
/// The header after PBC: VER, FLAGS and SCREEN.
const HEADER: usize = 2 + 1 + 1 + 2;

fn text_bytes(text: &str, charset: Charset) -> Vec<u8> {
    let chars = text.chars().take(MAX_TEXT);
    match charset {
        Charset::Ascii => chars.map(|c| if (' '..='~').contains(&c) { c as u8 } else { b'?' }).collect(),
        Charset::Utf16 => {
            let mut units = [0u16; 2];
            chars
                .flat_map(|c| c.encode_utf16(&mut units).iter().flat_map(|u| u.to_le_bytes()).collect::<Vec<_>>())
                .collect()
        }
    }
}

/// The control word of a display.
pub fn control(d: &Display) -> u16 {
    (d.right as u16) | ((d.text_tally as u16) << 2) | ((d.left as u16) << 4) | (u16::from(d.brightness.min(3)) << 6)
}

fn dmsg(d: &Display, charset: Charset) -> Vec<u8> {
    let text = text_bytes(&d.text, charset);
    let mut out = Vec::with_capacity(6 + text.len());
    out.extend_from_slice(&d.index.to_le_bytes());
    out.extend_from_slice(&control(d).to_le_bytes());
    // At most MAX_TEXT characters of at most 4 bytes: always fits in a u16.
    out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&text);
    out
}

fn packet(screen: u16, charset: Charset, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    // The count of the bytes after PBC; a packet is at most MAX_PACKET bytes.
    out.extend_from_slice(&u16::try_from(HEADER - 2 + body.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.push(0);
    out.push(u8::from(charset == Charset::Utf16));
    out.extend_from_slice(&screen.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The v5 packets that carry `displays` on `screen`: as few as fit [`MAX_PACKET`] each, displays in
/// order, none split.
pub fn v5_packets(screen: u16, charset: Charset, displays: &[Display]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut body = Vec::new();
    for d in displays {
        let m = dmsg(d, charset);
        if !body.is_empty() && HEADER + body.len() + m.len() > MAX_PACKET {
            packets.push(packet(screen, charset, &body));
            body.clear();
        }
        body.extend_from_slice(&m);
    }
    if !body.is_empty() {
        packets.push(packet(screen, charset, &body));
    }
    packets
}

/// A v5 packet as sent on a byte stream (TCP, serial): DLE/STX, then the packet with every DLE doubled.
pub fn stream_wrap(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 2 + packet.len() / 16);
    out.extend_from_slice(&[DLE, STX]);
    for &b in packet {
        out.push(b);
        if b == DLE {
            out.push(DLE);
        }
    }
    out
}

/// One v3.1 display's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V31 {
    /// 0-126.
    pub address: u8,
    /// Tallies 1-4 (by convention 1 program, 2 preview).
    pub tally: [bool; 4],
    /// 0 (off) to 3 (full).
    pub brightness: u8,
    /// The text: 16 printable ASCII characters are sent, padded with spaces.
    pub text: String,
}

/// The most v3.1 addresses.
pub const V31_ADDRESSES: u8 = 127;

/// The 18 bytes of a v3.1 message, or `None` for an address above 126.
pub fn v31_message(m: &V31) -> Option<[u8; 18]> {
    if m.address >= V31_ADDRESSES {
        return None;
    }
    let mut out = [b' '; 18];
    out[0] = 0x80 + m.address;
    let tally = m.tally.iter().enumerate().fold(0u8, |acc, (i, on)| acc | (u8::from(*on) << i));
    out[1] = tally | (m.brightness.min(3) << 4);
    for (slot, c) in out[2..].iter_mut().zip(m.text.chars()) {
        *slot = if (' '..='~').contains(&c) { c as u8 } else { b'?' };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(index: u16, text: &str) -> Display {
        Display { index, left: Color::Off, text_tally: Color::Off, right: Color::Red, brightness: 3, text: text.into() }
    }

    #[test]
    fn a_v5_packet_is_laid_out_as_the_specification_says() {
        // Screen 0, display 1, right-hand red, brightness 3, "CAM 1".
        let p = v5_packets(0, Charset::Ascii, &[display(1, "CAM 1")]);
        assert_eq!(p.len(), 1);
        let want = [
            0x0F, 0x00, // PBC: the 15 bytes after it
            0x00, // VER
            0x00, // FLAGS: ASCII, display data
            0x00, 0x00, // SCREEN 0
            0x01, 0x00, // INDEX 1
            0xC1, 0x00, // CONTROL: RH red (1), brightness 3 (0xC0)
            0x05, 0x00, // LENGTH 5
            b'C', b'A', b'M', b' ', b'1',
        ];
        assert_eq!(p[0], want);
    }

    #[test]
    fn every_tally_field_has_its_own_bits_and_screen_and_index_are_little_endian() {
        let d = Display {
            index: 0x0102,
            left: Color::Amber,
            text_tally: Color::Green,
            right: Color::Red,
            brightness: 2,
            text: String::new(),
        };
        assert_eq!(control(&d), 0b10_11_10_01);
        let p = &v5_packets(0x0A0B, Charset::Ascii, &[d])[0];
        assert_eq!(&p[4..12], &[0x0B, 0x0A, 0x02, 0x01, 0b1011_1001, 0x00, 0x00, 0x00]);
        assert_eq!(p.len(), 12);
        assert_eq!(u16::from_le_bytes([p[0], p[1]]), 10);
    }

    #[test]
    fn utf16_text_sets_the_flag_and_counts_bytes() {
        let p = &v5_packets(0, Charset::Utf16, &[display(0, "Ké")])[0];
        assert_eq!(p[3], 0x01, "FLAGS bit 0");
        assert_eq!(&p[10..], &[0x04, 0x00, b'K', 0x00, 0xE9, 0x00]);
        let ascii = &v5_packets(0, Charset::Ascii, &[display(0, "Ké")])[0];
        assert_eq!(&ascii[10..], &[0x02, 0x00, b'K', b'?'], "not ASCII: sent as ?");
    }

    #[test]
    fn many_displays_are_split_into_packets_of_at_most_2048_bytes() {
        let long = "x".repeat(200);
        let displays: Vec<Display> = (0..40).map(|i| display(i, &long)).collect();
        let packets = v5_packets(0, Charset::Ascii, &displays);
        assert!(packets.len() > 1);
        assert!(
            packets.iter().all(|p| p.len() <= MAX_PACKET),
            "{:?}",
            packets.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let per = 6 + MAX_TEXT;
        let carried: usize = packets.iter().map(|p| (p.len() - HEADER) / per).sum();
        assert_eq!(carried, 40, "every display once, none split, text cut at {MAX_TEXT} characters");
        assert!(packets.iter().all(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) == p.len() - 2));
        assert!(v5_packets(0, Charset::Ascii, &[]).is_empty());
    }

    #[test]
    fn the_stream_form_starts_with_dle_stx_and_doubles_every_dle_without_counting_it() {
        // Display index 254 (0xFE) and a text with 0xFE in UTF-16 (U+00FE, þ).
        let p = &v5_packets(0, Charset::Utf16, &[display(254, "þ")])[0];
        let wrapped = stream_wrap(p);
        assert_eq!(&wrapped[..2], &[DLE, STX]);
        let fe = p.iter().filter(|b| **b == DLE).count();
        assert_eq!(fe, 2, "the index and the text");
        assert_eq!(wrapped.len(), 2 + p.len() + fe);
        assert_eq!(&wrapped[2..4], &p[..2], "PBC counts the packet, not the doubling");
        assert_eq!(&wrapped[8..11], &[0xFE, 0xFE, 0x00], "index 254, doubled");
    }

    #[test]
    fn a_v31_message_is_18_bytes_of_address_control_and_padded_text() {
        let m = V31 { address: 5, tally: [true, false, false, false], brightness: 3, text: "CAM 1".into() };
        let mut want = [b' '; 18];
        want[..7].copy_from_slice(&[0x85, 0x31, b'C', b'A', b'M', b' ', b'1']);
        assert_eq!(v31_message(&m), Some(want));
        let all = V31 { address: 126, tally: [true; 4], brightness: 1, text: "a very long label indeed".into() };
        let bytes = v31_message(&all).expect("126 is the last address");
        assert_eq!((bytes[0], bytes[1]), (0xFE, 0x1F));
        assert_eq!(&bytes[2..], b"a very long labe");
        assert_eq!(v31_message(&V31 { address: 127, ..all.clone() }), None);
        let odd = V31 { text: "Kamera \u{e9}".into(), ..all };
        assert_eq!(&v31_message(&odd).map(|b| b[2..10].to_vec()).unwrap_or_default(), b"Kamera ?");
    }
}
