//! Names (of talents, agents, sites and argument keys) and free text, as they appear in envelopes and
//! topics: one rule for each, so whatever names an agent in an envelope can also name it in a topic,
//! and no text that reaches a line-based device protocol carries a control character.

use crate::error::{ErrorCode, Result};
use crate::if_bail;

/// A talent or agent name: 1..=64 bytes of `[A-Za-z0-9_.-]`.
pub type Name = heapless::String<64>;

/// A name-like token: non-empty, at most `cap` bytes, only `[A-Za-z0-9_.-]`.
pub fn check_token(what: &str, s: &str, cap: usize) -> Result<()> {
    if s.is_empty() || s.len() > cap {
        if_bail!(ErrorCode::InvalidEnvelope, "{what} must be 1..={cap} bytes");
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        if_bail!(ErrorCode::InvalidEnvelope, "{what} contains {c:?}; allowed are letters, digits, '_', '.', '-'");
    }
    Ok(())
}

/// Free text: no control characters (a line-based device protocol must never see a smuggled CR/LF).
pub(crate) fn check_text(what: &str, s: &str, non_empty: bool) -> Result<()> {
    if non_empty && s.trim().is_empty() {
        if_bail!(ErrorCode::InvalidEnvelope, "{what} must not be empty");
    }
    if s.chars().any(char::is_control) {
        if_bail!(ErrorCode::InvalidEnvelope, "{what} contains a control character");
    }
    Ok(())
}
