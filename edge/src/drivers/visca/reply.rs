//! What a VISCA camera answers, read the same over a serial line and over IP: an ACK naming the socket a
//! command took, a completion (of a command, or an inquiry's answer with its data), or an error with its
//! code. Over a serial line the packet's place in the line says which command it answers (`sockets.rs`);
//! over IP its sequence number does (`sequence.rs`).

use if_protocol::{ErrorCode, IfError};

use super::command::hex;

/// One reply packet from camera `z` (`z0`, `0x80 | (address + 8) << 4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// `z0 4y FF`: the command was taken into socket `y` (1 or 2).
    Ack(u8),
    /// `z0 5y ... FF`: socket `y` completed (an inquiry's answer is socket 0, with its data).
    Done(u8, &'a [u8]),
    /// `z0 6y ee FF`: error `ee`, naming socket `y` (0 when the command never got one).
    Error(u8, u8),
}

impl<'a> Reply<'a> {
    /// Reads `p` as a reply of camera `z`, or `None` if it is none.
    pub fn read(z: u8, p: &'a [u8]) -> Option<Reply<'a>> {
        match p {
            [a, y, 0xFF] if *a == z && (0x41..=0x42).contains(y) => Some(Reply::Ack(y - 0x40)),
            [a, y, 0xFF] if *a == z && (0x51..=0x52).contains(y) => Some(Reply::Done(y - 0x50, &[])),
            [a, 0x50, data @ .., 0xFF] if *a == z => Some(Reply::Done(0, data)),
            [a, y, code, 0xFF] if *a == z && y & 0xF0 == 0x60 && y & 0x0F <= 2 => Some(Reply::Error(y & 0x0F, *code)),
            _ => None,
        }
    }
}

/// Error code `03`: the camera took nothing and the command may go again.
pub(crate) const BUFFER_FULL: u8 = 0x03;
/// Error code `04`: the command in that socket was cancelled (`8x 2y FF`).
pub(crate) const CANCELLED: u8 = 0x04;

fn error_text(code: u8) -> &'static str {
    match code {
        0x01 => "message length error",
        0x02 => "syntax error",
        BUFFER_FULL => "command buffer full",
        CANCELLED => "command cancelled",
        0x05 => "no socket",
        0x41 => "command not executable now",
        _ => "unknown error",
    }
}

/// A camera's error `code` to `packet`, as DEVICE_REJECTED.
pub(crate) fn rejected(code: u8, packet: &[u8]) -> IfError {
    IfError::format(
        ErrorCode::DeviceRejected,
        format_args!("camera: {} ({code:02X}) for {}", error_text(code), hex(packet)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_as_the_protocol_lays_them_out() {
        let z = 0x90;
        assert_eq!(Reply::read(z, &[0x90, 0x41, 0xFF]), Some(Reply::Ack(1)));
        assert_eq!(Reply::read(z, &[0x90, 0x52, 0xFF]), Some(Reply::Done(2, &[])));
        assert_eq!(Reply::read(z, &[0x90, 0x50, 0x02, 0xFF]), Some(Reply::Done(0, &[0x02])));
        assert_eq!(Reply::read(z, &[0x90, 0x61, 0x41, 0xFF]), Some(Reply::Error(1, 0x41)));
        assert_eq!(Reply::read(z, &[0x90, 0x60, 0x03, 0xFF]), Some(Reply::Error(0, BUFFER_FULL)));
        for not in [&[0xA0, 0x41, 0xFF][..], &[0x90, 0x43, 0xFF], &[0x90, 0x41], &[0x90, 0x6F, 0x01, 0xFF], &[]] {
            assert_eq!(Reply::read(z, not), None, "{not:02X?}");
        }
        assert!(rejected(0x02, &[0x81, 0xFF]).to_string().contains("syntax error (02) for 81 FF"));
    }
}
