//! Signed policy documents as files people read: the document's own TOML fields, then its signatures.
//!
//! ```toml
//! id = "if://capability/vmix.switcher"
//! version = "1.2.0"
//! # ... the rest of the manifest ...
//!
//! [[signatures]]
//! key_id = "Rm9vQmFyMDE="        # base64 of the key id (8 bytes)
//! sig = "..."                    # base64 Ed25519 signature over domain || postcard(document)
//! ```
//!
//! The signatures cover the document's canonical binary encoding, not this text, so comments, order and
//! layout may change freely while any change of meaning breaks every signature.

use std::path::Path;

use if_protocol::policy::{DocSignature, Document, MAX_DOC_LEN, Signed};
use if_protocol::{ErrorCode, IfError};

/// Largest signed document file read.
pub const MAX_FILE_LEN: usize = 4 * MAX_DOC_LEN;

fn malformed(what: &str, e: impl std::fmt::Display) -> IfError {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    IfError::format(ErrorCode::InvalidEnvelope, format_args!("{what}: {first}"))
}

/// Refuses a list longer than the document type holds, naming its key and the limit.
fn check_lists<D: Document>(table: &toml::Table, what: &str) -> Result<(), IfError> {
    for (key, max) in D::LIST_LIMITS {
        let mut value = None;
        let mut at = Some(table);
        for part in key.split('.') {
            value = at.and_then(|t| t.get(part));
            at = value.and_then(toml::Value::as_table);
        }
        if let Some(n) = value.and_then(toml::Value::as_array).map(Vec::len).filter(|n| n > max) {
            return Err(IfError::format(
                ErrorCode::InvalidEnvelope,
                format_args!("{what}: {key}: at most {max} entries, got {n}"),
            ));
        }
    }
    Ok(())
}

/// Parses an unsigned document, e.g. a manifest before signing. `what` names it in errors.
pub fn parse_doc<D: Document>(text: &str, what: &str) -> Result<D, IfError> {
    let mut table: toml::Table = text.parse().map_err(|e| malformed(what, e))?;
    if table.remove("signatures").is_some() {
        return Err(IfError::format(ErrorCode::InvalidEnvelope, format_args!("{what}: is already signed")));
    }
    check_lists::<D>(&table, what)?;
    table.try_into().map_err(|e| malformed(what, e))
}

/// Parses a signed document. `what` names it in errors.
pub fn parse_signed<D: Document>(text: &str, what: &str) -> Result<Signed<D>, IfError> {
    if text.len() > MAX_FILE_LEN {
        return Err(IfError::format(
            ErrorCode::FrameTooLarge,
            format_args!("{what}: {} bytes exceeds {MAX_FILE_LEN}", text.len()),
        ));
    }
    let mut table: toml::Table = text.parse().map_err(|e| malformed(what, e))?;
    let sigs = table.remove("signatures").unwrap_or(toml::Value::Array(Vec::new()));
    let sigs: Vec<DocSignature> = sigs.try_into().map_err(|e| malformed(what, e))?;
    check_lists::<D>(&table, what)?;
    let doc: D = table.try_into().map_err(|e| malformed(what, e))?;
    let mut signed = Signed::unsigned(doc);
    for s in sigs {
        signed
            .signatures
            .push(s)
            .map_err(|_| IfError::format(ErrorCode::InvalidEnvelope, format_args!("{what}: too many signatures")))?;
    }
    Ok(signed)
}

/// The file text of a signed document.
pub fn to_text<D: Document>(signed: &Signed<D>) -> Result<String, IfError> {
    let mut table = toml::Table::try_from(&signed.doc).map_err(|e| malformed("document", e))?;
    let sigs = toml::Value::try_from(signed.signatures.as_slice()).map_err(|e| malformed("signatures", e))?;
    table.insert("signatures".into(), sigs);
    toml::to_string(&table).map_err(|e| malformed("document", e))
}

/// Reads a regular file, refusing anything larger than [`MAX_FILE_LEN`].
pub fn read(path: &Path) -> Result<String, IfError> {
    crate::files::read_text(path, MAX_FILE_LEN as u64)
        .map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use if_protocol::policy::Manifest;

    use super::*;

    pub(crate) const MANIFEST: &str = r#"
id = "if://capability/vmix.switcher"
version = "1.2.0"
driver = "vmix-tcp"
endpoint = "tcp://10.0.0.5:8099"
requires_secrets = []
scopes = ["studio:control"]
expires = 4000000000

[limits]
rps = 10.0
burst = 5
backoff = [1, 2, 5, 10, 30]
breaker_failures = 3
queue_depth = 32
timeout_ms = 2000

[[actions]]
name = "cut"
hazards = ["on_air"]
cost = 1
"#;

    #[test]
    fn signed_text_round_trips_and_still_verifies() {
        let doc: Manifest = parse_doc(MANIFEST, "m.toml").expect("parse");
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut signed = Signed::unsigned(doc);
        signed.sign(&key).expect("sign");
        let text = to_text(&signed).expect("text");
        let back: Signed<Manifest> = parse_signed(&text, "signed.toml").expect("parse signed");
        assert_eq!(back, signed);
        back.verify_threshold(&[key.verifying_key()], 1).expect("verifies");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let typo = MANIFEST.replace("burst = 5", "bursts = 5");
        let e = parse_doc::<Manifest>(&typo, "m.toml").expect_err("typo");
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
        assert!(e.detail().contains("m.toml") && e.detail().contains("bursts"), "{}", e.detail());
        let bad = MANIFEST.replace("\"1.2.0\"", "\"1.2\"");
        let e = parse_doc::<Manifest>(&bad, "m.toml").expect_err("version");
        assert!(e.detail().contains("MAJOR.MINOR.PATCH"), "{}", e.detail());
        assert!(parse_signed::<Manifest>("= nonsense", "x").is_err());
        let huge = "#".repeat(MAX_FILE_LEN + 1);
        assert_eq!(parse_signed::<Manifest>(&huge, "x").expect_err("big").code(), ErrorCode::FrameTooLarge);
    }

    #[test]
    fn a_list_longer_than_its_limit_is_named_with_the_limit() {
        let actions: String =
            (0..400).map(|i| format!("\n[[actions]]\nname = \"a{i}\"\nhazards = []\ncost = 0\n")).collect();
        let e = parse_doc::<Manifest>(&format!("{MANIFEST}{actions}"), "m.toml").expect_err("400 actions");
        assert_eq!(e.detail(), "m.toml: actions: at most 32 entries, got 401");
        let backoff = MANIFEST.replace("backoff = [1, 2, 5, 10, 30]", "backoff = [1, 2, 3, 4, 5, 6, 7, 8, 9]");
        let e = parse_signed::<Manifest>(&backoff, "m.toml").expect_err("9 delays");
        assert!(e.detail().contains("limits.backoff: at most 8 entries, got 9"), "{}", e.detail());
    }
}
