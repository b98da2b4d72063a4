//! The VISCA command packets of the actions a camera offers, the same over a serial line and over IP
//! (docs/DEVICES.md, "Sony VISCA cameras"): pure functions from a command's arguments to its bytes, so
//! a bad argument is refused before anything leaves the agent.

use if_protocol::envelope::{ArgValue, EnvelopeBody};
use if_protocol::{ErrorCode, IfError};

/// The power inquiry (`8x 09 04 00 FF`): the health probe.
pub(crate) fn power_inquiry(address: u8) -> Vec<u8> {
    vec![0x80 | address, 0x09, 0x04, 0x00, 0xFF]
}

/// Bytes as the logs, replies and simulators write them: `81 01 04 3F 02 05 FF`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

fn bad(body: &EnvelopeBody, why: &str) -> IfError {
    IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}: {why}", body.action))
}

fn int(
    body: &EnvelopeBody,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    default: Option<i64>,
) -> Result<u8, IfError> {
    let v = match body.args.get(key) {
        Some(ArgValue::Int(v)) => *v,
        None => default.ok_or_else(|| bad(body, &format!("needs {key}")))?,
        Some(_) => return Err(bad(body, &format!("{key} must be a number"))),
    };
    if !range.contains(&v) {
        return Err(bad(body, &format!("{key} must be {}-{}", range.start(), range.end())));
    }
    u8::try_from(v).map_err(|_| bad(body, &format!("{key} is out of range")))
}

fn word<'a>(body: &'a EnvelopeBody, key: &str) -> Result<&'a str, IfError> {
    match body.args.get(key) {
        Some(ArgValue::Text(t)) => Ok(t.as_str()),
        _ => Err(bad(body, &format!("needs {key} as text"))),
    }
}

/// The packet a command sends to camera `address`.
pub fn packet(body: &EnvelopeBody, address: u8) -> Result<Vec<u8>, IfError> {
    let to = 0x80 | address;
    match body.action.as_str() {
        "preset_recall" => Ok(vec![to, 0x01, 0x04, 0x3F, 0x02, int(body, "preset", 0..=127, None)?, 0xFF]),
        "stop" => Ok(vec![to, 0x01, 0x06, 0x01, 0x01, 0x01, 0x03, 0x03, 0xFF]),
        // CAM_Tally: the camera's own tally lamp, 02 on, 03 off.
        "tally" => match body.args.get("on") {
            Some(ArgValue::Bool(on)) => Ok(vec![to, 0x01, 0x7E, 0x01, 0x0A, 0x00, if *on { 0x02 } else { 0x03 }, 0xFF]),
            _ => Err(bad(body, "needs on, true or false")),
        },
        "pan_tilt" => {
            let (x, y) = match word(body, "direction")? {
                "up" => (0x03, 0x01),
                "down" => (0x03, 0x02),
                "left" => (0x01, 0x03),
                "right" => (0x02, 0x03),
                "upleft" => (0x01, 0x01),
                "upright" => (0x02, 0x01),
                "downleft" => (0x01, 0x02),
                "downright" => (0x02, 0x02),
                _ => {
                    return Err(bad(
                        body,
                        "direction must be up, down, left, right, upleft, upright, downleft or downright",
                    ));
                }
            };
            let (v, w) = (int(body, "pan_speed", 1..=24, Some(8))?, int(body, "tilt_speed", 1..=20, Some(8))?);
            Ok(vec![to, 0x01, 0x06, 0x01, v, w, x, y, 0xFF])
        }
        "zoom" => {
            let p = int(body, "speed", 0..=7, Some(3))?;
            let z = match word(body, "direction")? {
                "tele" => 0x20 | p,
                "wide" => 0x30 | p,
                "stop" => 0x00,
                _ => return Err(bad(body, "direction must be tele, wide or stop")),
            };
            Ok(vec![to, 0x01, 0x04, 0x07, z, 0xFF])
        }
        other => Err(IfError::format(ErrorCode::ActionNotAllowed, format_args!("visca has no action {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::envelope::Args;

    use super::*;
    use crate::policy::authorize::tests::body;

    fn with(action: &str, args: &[(&str, ArgValue)]) -> EnvelopeBody {
        let mut b = body("if://capability/cam", action);
        let mut a = Args::new();
        for (k, v) in args {
            a.insert(k, v.clone()).expect("arg");
        }
        b.args = a;
        b
    }

    #[test]
    fn packets_follow_the_protocol() {
        assert_eq!(
            packet(&with("preset_recall", &[("preset", ArgValue::Int(5))]), 1).expect("ok"),
            [0x81, 0x01, 0x04, 0x3F, 0x02, 0x05, 0xFF]
        );
        assert_eq!(packet(&with("stop", &[]), 2).expect("ok"), [0x82, 0x01, 0x06, 0x01, 0x01, 0x01, 0x03, 0x03, 0xFF]);
        let left = with("pan_tilt", &[("direction", ArgValue::Text("left".try_into().expect("short")))]);
        assert_eq!(packet(&left, 1).expect("ok"), [0x81, 0x01, 0x06, 0x01, 8, 8, 0x01, 0x03, 0xFF]);
        let tele = with(
            "zoom",
            &[("direction", ArgValue::Text("tele".try_into().expect("short"))), ("speed", ArgValue::Int(7))],
        );
        assert_eq!(packet(&tele, 1).expect("ok"), [0x81, 0x01, 0x04, 0x07, 0x27, 0xFF]);
        let lamp = |on| packet(&with("tally", &[("on", ArgValue::Bool(on))]), 3).expect("ok");
        assert_eq!(lamp(true), [0x83, 0x01, 0x7E, 0x01, 0x0A, 0x00, 0x02, 0xFF]);
        assert_eq!(lamp(false), [0x83, 0x01, 0x7E, 0x01, 0x0A, 0x00, 0x03, 0xFF]);
        assert!(packet(&with("tally", &[("on", ArgValue::Int(1))]), 1).is_err());
        assert!(packet(&with("preset_recall", &[("preset", ArgValue::Int(200))]), 1).is_err());
        assert!(
            packet(&with("pan_tilt", &[("direction", ArgValue::Text("sideways".try_into().expect("short")))]), 1)
                .is_err()
        );
    }
}
