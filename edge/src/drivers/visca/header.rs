//! The 8-byte header VISCA over IP puts before every message: payload type (2 bytes), payload length
//! (2 bytes) and sequence number (4 bytes), all big-endian, then the payload itself (1-16 bytes). One
//! message is one UDP datagram.

/// A VISCA command (`8x 01 ...`).
pub(crate) const COMMAND: u16 = 0x0100;
/// A VISCA inquiry (`8x 09 ...`).
pub(crate) const INQUIRY: u16 = 0x0110;
/// A VISCA reply: ACK, completion or error.
pub(crate) const REPLY: u16 = 0x0111;
/// A control command: RESET (`01`) sets the camera's sequence number to 0.
pub(crate) const CONTROL: u16 = 0x0200;
/// A control reply: `01` acknowledges a RESET, `0F 01` is an abnormal sequence number, `0F 02` an
/// abnormal message (type).
pub(crate) const CONTROL_REPLY: u16 = 0x0201;

/// The RESET control payload.
pub(crate) const RESET: [u8; 1] = [0x01];
/// The camera's "abnormality in the sequence number".
pub(crate) const BAD_SEQUENCE: [u8; 2] = [0x0F, 0x01];
/// The camera's "abnormality in the message (type)".
pub(crate) const BAD_MESSAGE: [u8; 2] = [0x0F, 0x02];

/// The longest payload a message carries.
const MAX_PAYLOAD: usize = 16;

/// One message, read from a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// Its payload type.
    pub kind: u16,
    /// Its sequence number.
    pub seq: u32,
    /// What it carries.
    pub payload: &'a [u8],
}

/// The datagram of a message.
pub(crate) fn encode(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&kind.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// Reads a datagram, or says why it is no message: shorter than its header, a length that is not the
/// payload's, or a payload that is empty or longer than any VISCA message.
pub(crate) fn decode(d: &[u8]) -> Result<Message<'_>, &'static str> {
    let (Some(head), Some(payload)) = (d.get(..8), d.get(8..)) else { return Err("shorter than its header") };
    let kind = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let seq = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if len != payload.len() {
        return Err("its length is not its payload's");
    }
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err("its payload is empty or longer than any message");
    }
    Ok(Message { kind, seq, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_its_header_then_its_payload() {
        let d = encode(COMMAND, 0x0102_0304, &[0x81, 0x01, 0x04, 0x3F, 0x02, 0x05, 0xFF]);
        assert_eq!(d[..8], [0x01, 0x00, 0x00, 0x07, 0x01, 0x02, 0x03, 0x04]);
        let m = decode(&d).expect("reads back");
        assert_eq!((m.kind, m.seq, m.payload), (COMMAND, 0x0102_0304, &d[8..]));
        assert_eq!(encode(CONTROL, 0, &RESET), [0x02, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0x01]);
    }

    #[test]
    fn what_breaks_the_layout_is_no_message() {
        assert!(decode(&[0x01, 0x11, 0x00]).is_err());
        assert!(decode(&[0x01, 0x11, 0x00, 0x05, 0, 0, 0, 1, 0x90, 0x41, 0xFF]).is_err(), "length 5 for 3");
        assert!(decode(&[0x01, 0x11, 0x00, 0x00, 0, 0, 0, 1]).is_err(), "empty");
        let long = encode(REPLY, 1, &[0x01; 17]);
        assert!(decode(&long).is_err(), "longer than any message");
    }
}
