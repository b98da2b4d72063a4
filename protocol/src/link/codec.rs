//! Encoding one [`LinkFrame`] to bytes for the line and back: postcard, CRC-32C, COBS, delimiter.

use crc::{CRC_32_ISCSI, Crc};

use super::{LinkError, LinkFrame};

/// Largest postcard payload of a frame.
pub const MAX_PAYLOAD_LEN: usize = 64;
const CRC_LEN: usize = 4;
/// Largest frame on the line, delimiter included.
pub const MAX_ENCODED_LEN: usize = cobs::max_encoding_length(MAX_PAYLOAD_LEN + CRC_LEN) + 1;

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Encodes `frame` into `out`, delimiter included; returns the number of bytes written.
pub fn encode(frame: &LinkFrame, out: &mut [u8]) -> Result<usize, LinkError> {
    let mut raw = [0u8; MAX_PAYLOAD_LEN + CRC_LEN];
    let len = postcard::to_slice(frame, &mut raw[..MAX_PAYLOAD_LEN]).map_err(|_| LinkError::TooLarge)?.len();
    let crc = CRC32C.checksum(&raw[..len]);
    raw[len..len + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    let n = cobs::try_encode(&raw[..len + CRC_LEN], out).map_err(|_| LinkError::TooLarge)?;
    *out.get_mut(n).ok_or(LinkError::TooLarge)? = 0;
    Ok(n + 1)
}

/// Decodes the bytes between two delimiters (delimiter excluded); `buf` is used as scratch space.
pub fn decode(buf: &mut [u8]) -> Result<LinkFrame, LinkError> {
    let len = cobs::decode_in_place(buf).map_err(|_| LinkError::Cobs)?;
    let raw = &buf[..len];
    if raw.len() < CRC_LEN {
        return Err(LinkError::Crc);
    }
    let (payload, crc) = raw.split_at(raw.len() - CRC_LEN);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if CRC32C.checksum(payload) != want {
        return Err(LinkError::Crc);
    }
    match postcard::take_from_bytes::<LinkFrame>(payload) {
        Ok((frame, [])) => Ok(frame),
        _ => Err(LinkError::Decode),
    }
}
