//! A text front panel: the lamps, relays and buttons of a board as lines on a serial line, for an
//! emulated board (QEMU's second UART) or a bench with no hardware attached.
//!
//! Out, one line per change: `lamp 3 red`, `relay 1 on`, `relay 1 off`, and what the node notices:
//! `safe link-lost`, `resumed`, `session 12345`. In: `press 3` and `release 3` set input 3's contact
//! (debounced like any contact); `selftest watchdog` asks the board to stop its main loop, to prove that
//! the watchdog resets it; anything else is answered `? unknown`. Lines end with `\n`.

use if_protocol::link::{Lamp, MAX_INPUTS};

use crate::hal::{Inputs, Lamps, Link, Notice, Notices, Relays};

const LINE: usize = 32;

/// The panel over a byte stream.
#[derive(Debug)]
pub struct Panel<L> {
    port: L,
    line: [u8; LINE],
    len: usize,
    long: bool,
    levels: u16,
    hang: bool,
}

impl<L: Link> Panel<L> {
    /// A panel with every contact open.
    pub fn new(port: L) -> Self {
        Panel { port, line: [0; LINE], len: 0, long: false, levels: 0, hang: false }
    }

    /// Whether `selftest watchdog` was asked for (once per asking).
    pub fn hang_requested(&mut self) -> bool {
        core::mem::take(&mut self.hang)
    }

    /// Writes one line of text.
    pub fn say(&mut self, words: &[&str]) {
        let mut out = [0u8; 64];
        let mut n = 0;
        for (i, w) in words.iter().enumerate() {
            let sep: &[u8] = if i == 0 { b"" } else { b" " };
            for &b in sep.iter().chain(w.as_bytes()) {
                if n < out.len() - 1 {
                    out[n] = b;
                    n += 1;
                }
            }
        }
        out[n] = b'\n';
        self.port.write(&out[..=n]);
    }

    fn take_line(&mut self) {
        let line = core::str::from_utf8(&self.line[..self.len]).unwrap_or("").trim();
        let mut words = line.split_ascii_whitespace();
        let input = |w: Option<&str>| w.and_then(|n| n.parse::<u8>().ok()).filter(|n| usize::from(*n) < MAX_INPUTS);
        match (words.next(), input(words.next()), words.next()) {
            (Some("press"), Some(i), None) => self.levels |= 1 << i,
            (Some("release"), Some(i), None) => self.levels &= !(1 << i),
            (Some("selftest"), None, None) if line == "selftest watchdog" => self.hang = true,
            (None, _, _) => {}
            _ => self.say(&["?", "unknown"]),
        }
    }
}

impl<L: Link> Inputs for Panel<L> {
    fn levels(&mut self) -> u16 {
        let mut buf = [0u8; 16];
        loop {
            let n = self.port.read(&mut buf).min(buf.len());
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                match b {
                    b'\n' | b'\r' => {
                        if !core::mem::take(&mut self.long) {
                            self.take_line();
                        } else {
                            self.say(&["?", "too-long"]);
                        }
                        self.len = 0;
                    }
                    _ if self.len < LINE => {
                        self.line[self.len] = b;
                        self.len += 1;
                    }
                    _ => self.long = true,
                }
            }
        }
        self.levels
    }
}

impl<L: Link> Lamps for Panel<L> {
    fn set_lamp(&mut self, index: u8, color: Lamp) {
        self.say(&["lamp", digits(index.into()).as_str(), color.name()]);
    }
}

impl<L: Link> Relays for Panel<L> {
    fn set_relay(&mut self, index: u8, closed: bool) {
        self.say(&["relay", digits(index.into()).as_str(), if closed { "on" } else { "off" }]);
    }
}

impl<L: Link> Notices for Panel<L> {
    fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Safe(reason) => self.say(&["safe", reason.name()]),
            Notice::Resumed => self.say(&["resumed"]),
            Notice::Session(s) => self.say(&["session", digits(s).as_str()]),
        }
    }
}

/// A number in decimal, without `core::fmt` (which costs kilobytes of flash).
#[derive(Debug)]
pub struct Digits {
    buf: [u8; 10],
    start: usize,
}

impl Digits {
    /// The digits as text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[self.start..]).unwrap_or("?")
    }
}

/// `n` in decimal.
pub fn digits(mut n: u32) -> Digits {
    let mut d = Digits { buf: [b'0'; 10], start: 10 };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    #[derive(Default)]
    struct Port {
        inbox: Vec<u8>,
        out: Vec<u8>,
    }
    impl Link for Port {
        fn read(&mut self, buf: &mut [u8]) -> usize {
            let n = self.inbox.len().min(buf.len());
            buf[..n].copy_from_slice(&self.inbox[..n]);
            self.inbox.drain(..n);
            n
        }
        fn write(&mut self, bytes: &[u8]) {
            self.out.extend_from_slice(bytes);
        }
    }

    fn out(p: &mut Panel<Port>) -> String {
        String::from_utf8(core::mem::take(&mut p.port.out)).expect("text")
    }

    #[test]
    fn outputs_are_one_line_each() {
        let mut p = Panel::new(Port::default());
        p.set_lamp(3, Lamp::Amber);
        p.set_relay(12, false);
        p.notice(Notice::Safe(if_protocol::link::SafeReason::LinkLost));
        p.notice(Notice::Session(4_294_967_295));
        assert_eq!(out(&mut p), "lamp 3 amber\nrelay 12 off\nsafe link-lost\nsession 4294967295\n");
        assert_eq!(digits(0).as_str(), "0");
    }

    #[test]
    fn press_and_release_set_the_contacts_and_nonsense_is_refused() {
        let mut p = Panel::new(Port::default());
        p.port.inbox.extend_from_slice(b"press 3\r\npress 15\n");
        assert_eq!(p.levels(), 1 << 3 | 1 << 15);
        p.port.inbox.extend_from_slice(b"release 3\npress 16\npress\nzap 1\npress 2 3\n\n");
        assert_eq!(p.levels(), 1 << 15);
        assert_eq!(out(&mut p), "? unknown\n? unknown\n? unknown\n? unknown\n");
        p.port.inbox.extend_from_slice(&[b'x'; 100]);
        p.port.inbox.extend_from_slice(b"\npress 1\n");
        assert_eq!(p.levels(), 1 << 15 | 1 << 1, "a line too long is dropped whole; the next one counts");
        assert_eq!(out(&mut p), "? too-long\n");
        assert!(!p.hang_requested());
        p.port.inbox.extend_from_slice(b"selftest watchdog\n");
        p.levels();
        assert!(p.hang_requested());
        assert!(!p.hang_requested(), "once per asking");
    }
}
