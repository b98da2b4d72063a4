//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP `signed-note` envelopes.
//!
//! ```text
//! example.org/if-edge/studio-a-edge-1      <- origin
//! 1234                                      <- tree size, decimal
//! 5dC52nmnBlmpbVy3Ad7Zoquc...=              <- tree head, base64
//!                                           <- blank line ends the note text
//! — studio-a-edge-1 AbCdEf...==             <- em dash, key name, base64(key id || signature)
//! ```
//!
//! The signature covers the note text (every line up to and including the newline before the blank
//! line). An Ed25519 key's 4-byte id is `SHA-256(name || "\n" || 0x01 || public key)[..4]`, and its
//! verifier key is written `name+<8 hex digits of the id>+<base64(0x01 || public key)>`. A note may carry
//! signatures by other keys; a verifier looks only for the one it knows, and ignores extension lines after
//! the tree head.

use core::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::Hash;
use crate::error::{ErrorCode, IfError, Result};
use crate::if_bail;
use crate::keys;

/// Longest signed note handled.
pub const MAX_NOTE_LEN: usize = 1024;
/// Longest origin line.
pub const MAX_ORIGIN_LEN: usize = 128;
/// Longest key name.
pub const MAX_KEY_NAME_LEN: usize = 64;
/// Signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
const DASH: &str = "\u{2014} ";

/// A signed note's text.
pub type NoteText = heapless::String<MAX_NOTE_LEN>;

fn bad(detail: &str) -> IfError {
    IfError::with(ErrorCode::InvalidProof, detail)
}

/// A log checkpoint: origin, size and head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log, e.g. `example.org/if-edge/studio-a-edge-1`.
    pub origin: heapless::String<MAX_ORIGIN_LEN>,
    /// Number of leaves.
    pub size: u64,
    /// The tree head.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: three lines, each ending in a newline.
    pub fn to_text(&self) -> Result<NoteText> {
        check_line("origin", &self.origin)?;
        let mut root = [0u8; 44];
        let n = B64.encode_slice(self.root, &mut root).map_err(|_| bad("root does not encode"))?;
        let root = core::str::from_utf8(&root[..n]).map_err(|_| bad("root does not encode"))?;
        let mut out = NoteText::new();
        write!(out, "{}\n{}\n{}\n", self.origin, self.size, root).map_err(|_| bad("checkpoint too long"))?;
        Ok(out)
    }

    /// The checkpoint a signed note carries, its signatures not checked: to show a note, or to learn its
    /// origin before checking it with [`NoteVerifier::open_checkpoint`].
    pub fn parse_note(note: &str) -> Result<Checkpoint> {
        let text = note.split_once("\n\n").map_or(note, |(body, _)| &note[..body.len() + 1]);
        Checkpoint::parse_text(text)
    }

    /// Parses note text; extension lines after the head are allowed and ignored.
    pub fn parse_text(text: &str) -> Result<Checkpoint> {
        let Some(body) = text.strip_suffix('\n') else { return Err(bad("checkpoint text must end with a newline")) };
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        check_line("origin", origin)?;
        let size_text = lines.next().ok_or_else(|| bad("checkpoint has no size line"))?;
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(bad("checkpoint size must be a decimal number without leading zeros"));
        }
        let size = size_text.parse().map_err(|_| bad("checkpoint size out of range"))?;
        let root_text = lines.next().ok_or_else(|| bad("checkpoint has no root line"))?;
        let root = decode_exact::<32>(root_text).ok_or_else(|| bad("checkpoint root must be 32 bytes of base64"))?;
        for ext in lines {
            if ext.is_empty() {
                return Err(bad("blank line inside checkpoint text"));
            }
        }
        let origin = heapless::String::try_from(origin).map_err(|_| bad("origin too long"))?;
        Ok(Checkpoint { origin, size, root })
    }
}

fn check_line(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.chars().any(char::is_control) || s.len() > MAX_ORIGIN_LEN {
        if_bail!(ErrorCode::InvalidProof, "{what} must be 1..={MAX_ORIGIN_LEN} bytes without control characters");
    }
    Ok(())
}

fn decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut buf = [0u8; 96];
    let n = B64.decode_slice(text, &mut buf).ok()?;
    buf[..n].try_into().ok()
}

/// A named Ed25519 key for signed notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: heapless::String<MAX_KEY_NAME_LEN>,
    id: [u8; 4],
    key: VerifyingKey,
}

fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_KEY_NAME_LEN
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        if_bail!(ErrorCode::InvalidProof, "note key name must be 1..={MAX_KEY_NAME_LEN} bytes without spaces or '+'");
    }
    Ok(())
}

/// `SHA-256(name || "\n" || 0x01 || public key)[..4]`.
pub fn note_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519_TYPE]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl NoteVerifier {
    /// The verifier for `key` under `name`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self> {
        check_key_name(name)?;
        let name = heapless::String::try_from(name).map_err(|_| bad("key name too long"))?;
        let id = note_key_id(&name, &key);
        Ok(NoteVerifier { name, id, key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses `name+hexid+base64(0x01 || key)`; the id must match the key.
    pub fn parse(vkey: &str) -> Result<Self> {
        // The base64 key may itself contain '+': only the first two separate fields.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("verifier key must be name+id+key"));
        };
        let raw = decode_exact::<33>(key_b64).ok_or_else(|| bad("verifier key must be base64 of 33 bytes"))?;
        if raw[0] != ED25519_TYPE {
            return Err(bad("verifier key is not an Ed25519 key"));
        }
        let key = keys::verifying_key(&raw[1..]).map_err(|_| bad("verifier key is not a usable Ed25519 key"))?;
        let v = NoteVerifier::new(name, key)?;
        let mut id = [0u8; 4];
        crate::envelope::hex_decode(id_hex, &mut id).ok_or_else(|| bad("verifier key id must be 8 hex digits"))?;
        if id != v.id {
            return Err(bad("verifier key id does not match its key"));
        }
        Ok(v)
    }

    /// The `name+hexid+base64key` form.
    pub fn to_vkey(&self) -> heapless::String<160> {
        let mut raw = [0u8; 33];
        raw[0] = ED25519_TYPE;
        raw[1..].copy_from_slice(self.key.as_bytes());
        let mut key_b64 = [0u8; 44];
        let n = B64.encode_slice(raw, &mut key_b64).unwrap_or(0);
        let mut hex = [0u8; 8];
        let mut out = heapless::String::new();
        let _ = write!(
            out,
            "{}+{}+{}",
            self.name,
            crate::envelope::hex_encode(&self.id, &mut hex),
            core::str::from_utf8(&key_b64[..n]).unwrap_or_default()
        );
        out
    }

    /// Finds this key's signature line in `note`, verifies it, and returns the note text.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str> {
        if note.len() > MAX_NOTE_LEN {
            if_bail!(ErrorCode::FrameTooLarge, "signed note of {} bytes exceeds {MAX_NOTE_LEN}", note.len());
        }
        let split = note.rfind("\n\n").ok_or_else(|| bad("signed note has no blank line before its signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        let Some(sigs) = sigs.strip_suffix('\n') else { return Err(bad("signature lines must end with a newline")) };
        for line in sigs.split('\n') {
            let rest = line.strip_prefix(DASH).ok_or_else(|| bad("signature line must start with an em dash"))?;
            let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("signature line needs a name and a signature"))?;
            if name != self.name.as_str() {
                continue;
            }
            let Some(raw) = decode_exact::<68>(b64) else { continue };
            if raw[..4] != self.id {
                continue;
            }
            let sig: [u8; 64] = raw[4..].try_into().map_err(|_| bad("signature is not 64 bytes"))?;
            keys::verify_raw(&self.key, text.as_bytes(), &Signature::from_bytes(&sig))
                .map_err(|_| bad("note signature does not verify"))?;
            return Ok(text);
        }
        Err(bad("no signature by the expected key"))
    }

    /// Opens a signed checkpoint and checks its origin.
    pub fn open_checkpoint(&self, note: &str, origin: &str) -> Result<Checkpoint> {
        let cp = Checkpoint::parse_text(self.open(note)?)?;
        if cp.origin != origin {
            if_bail!(ErrorCode::InvalidProof, "checkpoint origin '{}' is not the expected '{origin}'", cp.origin);
        }
        Ok(cp)
    }
}

/// Signs note `text` (which must end with a newline) as key `name`.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<NoteText> {
    check_key_name(name)?;
    if text.is_empty() || !text.ends_with('\n') || text.contains("\n\n") {
        return Err(bad("note text must be non-empty lines, each ending in a newline"));
    }
    let mut raw = [0u8; 68];
    raw[..4].copy_from_slice(&note_key_id(name, &key.verifying_key()));
    raw[4..].copy_from_slice(&key.sign(text.as_bytes()).to_bytes());
    let mut sig = [0u8; 92];
    let n = B64.encode_slice(raw, &mut sig).map_err(|_| bad("signature does not encode"))?;
    let sig = core::str::from_utf8(&sig[..n]).map_err(|_| bad("signature does not encode"))?;
    let mut out = NoteText::new();
    write!(out, "{text}\n{DASH}{name} {sig}\n").map_err(|_| {
        IfError::format(ErrorCode::FrameTooLarge, format_args!("signed note exceeds {MAX_NOTE_LEN} bytes"))
    })?;
    Ok(out)
}

/// Signs a checkpoint as key `name`.
pub fn sign_checkpoint(cp: &Checkpoint, name: &str, key: &SigningKey) -> Result<NoteText> {
    sign_note(&cp.to_text()?, name, key)
}
