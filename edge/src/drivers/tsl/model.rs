//! What the displays of one `tsl-umd` output show, and the bytes that say it: the pure half of the
//! driver. An update changes only the fields it names; each version and transport gets its own frames.

use std::collections::BTreeMap;

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};

use super::codec::{self, Charset, Color, Display, V31};

/// Which TSL protocol the displays speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// v5.0: 16-bit indices, three tally colours, variable text.
    V5,
    /// v3.1: addresses 0-126, four on/off tallies (1: left, program; 2: right, preview), 16 characters.
    V31,
}

/// How the frames travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One packet or message per datagram.
    Datagram,
    /// A byte stream: v5 packets in the DLE/STX wrapper, v3.1 messages back to back.
    Stream,
}

/// Every display's state, by index.
#[derive(Debug, Clone)]
pub struct Model {
    version: Version,
    screen: u16,
    charset: Charset,
    brightness: u8,
    displays: BTreeMap<u16, Display>,
}

/// The most displays one output keeps.
pub const MAX_DISPLAYS: usize = 1024;

fn bad(body: &EnvelopeBody, why: &str) -> IfError {
    IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: {why}", body.action))
}

fn color(body: &EnvelopeBody, key: &str) -> Result<Option<Color>, IfError> {
    match body.args.get(key) {
        None => Ok(None),
        Some(ArgValue::Text(t)) => match t.as_str() {
            "off" => Ok(Some(Color::Off)),
            "red" => Ok(Some(Color::Red)),
            "green" => Ok(Some(Color::Green)),
            "amber" => Ok(Some(Color::Amber)),
            _ => Err(bad(body, &format!("{key} must be off, red, green or amber"))),
        },
        Some(_) => Err(bad(body, &format!("{key} must be off, red, green or amber"))),
    }
}

impl Model {
    /// No displays yet.
    pub fn new(version: Version, screen: u16, charset: Charset, brightness: u8) -> Self {
        Model { version, screen, charset, brightness: brightness.min(3), displays: BTreeMap::new() }
    }

    fn highest_index(&self) -> u16 {
        match self.version {
            Version::V5 => 0xFFFE,
            Version::V31 => u16::from(codec::V31_ADDRESSES - 1),
        }
    }

    /// The display a `display` command sets, as it would be, without changing anything: `index`, and
    /// any of `text`, `left`, `text_tally`, `right` (off/red/green/amber) and `brightness` (0-3).
    pub fn updated(&self, body: &EnvelopeBody) -> Result<Display, IfError> {
        let top = self.highest_index();
        let index = match body.args.get("index") {
            Some(ArgValue::Int(i)) if (0..=i64::from(top)).contains(i) => u16::try_from(*i).unwrap_or(0),
            _ => return Err(bad(body, &format!("needs index, a number 0-{top}"))),
        };
        if !self.displays.contains_key(&index) && self.displays.len() >= MAX_DISPLAYS {
            return Err(bad(body, &format!("an output keeps at most {MAX_DISPLAYS} displays")));
        }
        let mut d = self.displays.get(&index).cloned().unwrap_or(Display {
            index,
            left: Color::Off,
            text_tally: Color::Off,
            right: Color::Off,
            brightness: self.brightness,
            text: String::new(),
        });
        match body.args.get("text") {
            None => {}
            Some(ArgValue::Text(t)) => d.text = t.as_str().chars().take(codec::MAX_TEXT).collect(),
            Some(_) => return Err(bad(body, "text must be text")),
        }
        d.left = color(body, "left")?.unwrap_or(d.left);
        d.text_tally = color(body, "text_tally")?.unwrap_or(d.text_tally);
        d.right = color(body, "right")?.unwrap_or(d.right);
        match body.args.get("brightness") {
            None => {}
            Some(ArgValue::Int(b)) if (0..=3).contains(b) => d.brightness = u8::try_from(*b).unwrap_or(3),
            Some(_) => return Err(bad(body, "brightness must be 0-3")),
        }
        Ok(d)
    }

    /// Keeps `d` as its display's state.
    pub fn set(&mut self, d: Display) {
        self.displays.insert(d.index, d);
    }

    /// How many displays it keeps.
    pub fn len(&self) -> usize {
        self.displays.len()
    }

    /// Whether it keeps none.
    pub fn is_empty(&self) -> bool {
        self.displays.is_empty()
    }

    /// The frames that carry `displays`.
    fn frames_for(&self, displays: &[Display], framing: Framing) -> Vec<Vec<u8>> {
        match self.version {
            Version::V5 => {
                let packets = codec::v5_packets(self.screen, self.charset, displays);
                match framing {
                    Framing::Datagram => packets,
                    Framing::Stream => packets.iter().map(|p| codec::stream_wrap(p)).collect(),
                }
            }
            Version::V31 => displays
                .iter()
                .filter_map(|d| {
                    let m = V31 {
                        address: u8::try_from(d.index).ok()?,
                        tally: [d.left != Color::Off, d.right != Color::Off, false, false],
                        brightness: d.brightness,
                        text: d.text.clone(),
                    };
                    codec::v31_message(&m).map(|b| b.to_vec())
                })
                .collect(),
        }
    }

    /// The frames that carry display `d`.
    pub fn frames_of(&self, d: &Display, framing: Framing) -> Vec<Vec<u8>> {
        self.frames_for(std::slice::from_ref(d), framing)
    }

    /// The frames that carry every display, for the periodic refresh (UMDs forget).
    pub fn frames_all(&self, framing: Framing) -> Vec<Vec<u8>> {
        let all: Vec<Display> = self.displays.values().cloned().collect();
        self.frames_for(&all, framing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::authorize::tests::body;

    fn display(args: &[(&str, ArgValue)]) -> EnvelopeBody {
        let mut b = body("if://capability/umd", "display");
        for (k, v) in args {
            b.args.insert(k, v.clone()).expect("room");
        }
        b
    }

    fn t(s: &str) -> ArgValue {
        ArgValue::Text(s.try_into().expect("short"))
    }

    #[test]
    fn an_update_changes_only_what_it_names() {
        let mut m = Model::new(Version::V5, 1, Charset::Ascii, 3);
        let d = m.updated(&display(&[("index", ArgValue::Int(4)), ("text", t("CAM 4")), ("left", t("red"))]));
        m.set(d.expect("valid"));
        let d = m.updated(&display(&[("index", ArgValue::Int(4)), ("right", t("green"))])).expect("valid");
        assert_eq!((d.text.as_str(), d.left, d.right, d.brightness), ("CAM 4", Color::Red, Color::Green, 3));
        m.set(d.clone());
        let frames = m.frames_of(&d, Framing::Datagram);
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][4..8], &[0x01, 0x00, 0x04, 0x00], "screen 1, index 4");
        let stream = m.frames_all(Framing::Stream);
        assert_eq!(&stream[0][..2], &[codec::DLE, codec::STX]);
    }

    #[test]
    fn v31_sends_left_as_tally_1_and_right_as_tally_2() {
        let mut m = Model::new(Version::V31, 0, Charset::Ascii, 3);
        let d = m.updated(&display(&[("index", ArgValue::Int(7)), ("right", t("green")), ("text", t("CAM 7"))]));
        let d = d.expect("valid");
        m.set(d.clone());
        let f = m.frames_of(&d, Framing::Datagram);
        assert_eq!(f[0].len(), 18);
        assert_eq!((f[0][0], f[0][1]), (0x87, 0x32), "address 7; tally 2 and brightness 3");
        let too_far = m.updated(&display(&[("index", ArgValue::Int(127))])).expect_err("refused");
        assert!(too_far.to_string().contains("0-126"), "{too_far}");
    }

    #[test]
    fn bad_arguments_are_refused_naming_the_argument() {
        let m = Model::new(Version::V5, 0, Charset::Ascii, 3);
        for (args, what) in [
            (vec![], "index"),
            (vec![("index", ArgValue::Int(70_000))], "index"),
            (vec![("index", ArgValue::Int(1)), ("left", t("purple"))], "left"),
            (vec![("index", ArgValue::Int(1)), ("brightness", ArgValue::Int(4))], "brightness"),
            (vec![("index", ArgValue::Int(1)), ("text", ArgValue::Int(4))], "text"),
        ] {
            let e = m.updated(&display(&args)).expect_err("refused");
            assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
            assert!(e.to_string().contains(what), "{e}");
        }
    }
}
