//! The manifest loader's rules, in the order they are applied.
//!
//! 1. Signatures: a threshold of the **trust root's** signing keys. A key the manifest itself names, or
//!    any key the root does not list, counts for nothing. (INVALID_SIGNATURE)
//! 2. The allow-list in the agent's config: `id@version`, optionally pinned to the SHA-256 of the
//!    manifest's canonical bytes, `id@version#sha256:HEX`. (CAPABILITY_NOT_ALLOWED, VERSION_NOT_ALLOWED)
//! 3. Expiry of the manifest and of the root. (MANIFEST_EXPIRED)
//! 4. Rollback: a version never goes down, and the same version must be the same document.
//!    (MANIFEST_ROLLBACK)
//!
//! A refused manifest changes nothing: the agent keeps what it trusted before.

use if_protocol::policy::{Manifest, Semver, Signed, TrustRoot, canonical_bytes};
use if_protocol::{ErrorCode, IfError};
use sha2::{Digest as _, Sha256};

use super::trust;

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// `if://capability/<name>`.
    pub id: String,
    /// The allowed version.
    pub version: Semver,
    /// The SHA-256 of the canonical bytes it must have, if pinned.
    pub digest: Option<[u8; 32]>,
}

impl Allowed {
    /// Parses `id@1.2.3` or `id@1.2.3#sha256:HEX`.
    pub fn parse(text: &str) -> Result<Allowed, String> {
        let (rest, digest) = match text.split_once('#') {
            Some((rest, pin)) => {
                let hex_text = pin.strip_prefix("sha256:").ok_or("a pin must read #sha256:HEX")?;
                let bytes = hex::decode(hex_text).map_err(|_| "the pin is not hex")?;
                (rest, Some(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "the pin must be 32 bytes")?))
            }
            None => (text, None),
        };
        let (id, version) = rest.rsplit_once('@').ok_or("must read if://capability/NAME@MAJOR.MINOR.PATCH")?;
        if !id.starts_with("if://capability/") || id.len() <= "if://capability/".len() {
            return Err("the id must read if://capability/NAME".into());
        }
        let version = Semver::parse(version).ok_or("the version must read MAJOR.MINOR.PATCH")?;
        Ok(Allowed { id: id.to_string(), version, digest })
    }
}

/// The SHA-256 of a manifest's canonical bytes: what a pin names and what "byte-identical" compares.
pub fn digest(m: &Manifest) -> Result<[u8; 32], IfError> {
    Ok(Sha256::digest(canonical_bytes(m)?.as_slice()).into())
}

/// The value rules of a manifest, all of them: `limits.rps must be > 0; ...`. The driver must be one the
/// agent knows of.
pub fn validate(m: &Manifest) -> Result<(), IfError> {
    let l = &m.limits;
    let mut problems = Vec::new();
    if !(l.rps.is_finite() && l.rps > 0.0) {
        problems.push("limits.rps must be > 0");
    }
    if l.burst == 0 {
        problems.push("limits.burst must be >= 1");
    }
    if l.backoff.is_empty() || l.backoff.contains(&0) {
        problems.push("limits.backoff must list delays of >= 1 s");
    }
    if l.breaker_failures == 0 {
        problems.push("limits.breaker_failures must be >= 1");
    }
    if l.queue_depth == 0 {
        problems.push("limits.queue_depth must be >= 1");
    }
    if l.timeout_ms == 0 {
        problems.push("limits.timeout_ms must be >= 1");
    }
    if m.actions.is_empty() {
        problems.push("actions must list at least one action");
    }
    if !DRIVERS.contains(&m.driver.as_str()) {
        problems.push(
            "driver must be one of vmix-tcp, videohub-tcp, visca-serial, visca-ip, rack-node-serial, tsl-umd, loopback",
        );
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(IfError::format(ErrorCode::InvalidEnvelope, format_args!("{}@{}: {}", m.id, m.version, problems.join("; "))))
}

/// The drivers a manifest may name.
pub const DRIVERS: &[&str] =
    &["vmix-tcp", "videohub-tcp", "visca-serial", "visca-ip", "rack-node-serial", "tsl-umd", "loopback"];

/// What loading a manifest would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new capability, or a newer version of a known one.
    Install,
    /// The very manifest already installed: nothing to do.
    Unchanged,
}

/// Applies the rules to `new`, given the root, the allow-list and the installed manifest of the same id.
pub fn check(
    root: Option<&TrustRoot>,
    allow: &[Allowed],
    installed: Option<&Manifest>,
    new: &Signed<Manifest>,
    now_s: u64,
) -> Result<Verdict, IfError> {
    let m = &new.doc;
    let Some(root) = root else {
        return Err(IfError::with(
            ErrorCode::InvalidSignature,
            "no trust root is installed: no manifest can be trusted",
        ));
    };
    new.verify_threshold(&trust::signing_keys(root), usize::from(root.threshold)).map_err(|e| {
        IfError::format(e.code(), format_args!("{}@{}: {} (trust root v{})", m.id, m.version, e.detail(), root.version))
    })?;
    let same_id: Vec<&Allowed> = allow.iter().filter(|a| a.id == m.id.as_str()).collect();
    if same_id.is_empty() {
        return Err(IfError::format(
            ErrorCode::CapabilityNotAllowed,
            format_args!("{} is not on the allow-list", m.id),
        ));
    }
    let Some(entry) = same_id.iter().find(|a| a.version == m.version) else {
        return Err(IfError::format(
            ErrorCode::VersionNotAllowed,
            format_args!("{}@{} is not on the allow-list", m.id, m.version),
        ));
    };
    let d = digest(m)?;
    if entry.digest.is_some_and(|pin| pin != d) {
        return Err(IfError::format(
            ErrorCode::VersionNotAllowed,
            format_args!("{}@{} has digest {}, not the pinned one", m.id, m.version, hex::encode(d)),
        ));
    }
    if m.expires <= now_s {
        return Err(IfError::format(
            ErrorCode::ManifestExpired,
            format_args!("{}@{} expired at {}", m.id, m.version, m.expires),
        ));
    }
    if trust::expired(root, now_s) {
        return Err(IfError::format(
            ErrorCode::ManifestExpired,
            format_args!(
                "trust root v{} expired at {}: rotate it before loading manifests",
                root.version, root.expires
            ),
        ));
    }
    match installed {
        Some(old) if old.version > m.version => Err(IfError::format(
            ErrorCode::ManifestRollback,
            format_args!("{}@{} would roll back {}", m.id, m.version, old.version),
        )),
        Some(old) if old.version == m.version && digest(old)? != d => Err(IfError::format(
            ErrorCode::ManifestRollback,
            format_args!("{}@{} differs from the installed manifest of the same version", m.id, m.version),
        )),
        Some(old) if old.version == m.version => Ok(Verdict::Unchanged),
        _ => Ok(Verdict::Install),
    }
}

#[cfg(test)]
mod tests {
    use if_protocol::bytes::FixedBytes;
    use if_protocol::policy::DocSignature;

    use super::super::file::parse_doc;
    use super::super::trust::tests::{key, root};
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn manifest(version: &str) -> Manifest {
        let text = include_str!("../../../tests/fixtures/manifests/vmix.toml").replace("1.2.0", version);
        parse_doc(&text, "vmix.toml").expect("fixture parses")
    }

    fn signed(m: Manifest, by: &[u8]) -> Signed<Manifest> {
        let mut s = Signed::unsigned(m);
        for seed in by {
            s.sign(&key(*seed)).expect("sign");
        }
        s
    }

    fn allow(entries: &[&str]) -> Vec<Allowed> {
        entries.iter().map(|e| Allowed::parse(e).expect("allow entry")).collect()
    }

    fn code(r: Result<Verdict, IfError>) -> ErrorCode {
        r.expect_err("refused").code()
    }

    #[test]
    fn a_manifest_signed_by_the_root_threshold_and_allowed_is_installed() {
        let r = root(1, &[1, 2, 3], 2);
        let a = allow(&["if://capability/vmix.switcher@1.2.0"]);
        assert_eq!(check(Some(&r), &a, None, &signed(manifest("1.2.0"), &[1, 3]), NOW).expect("ok"), Verdict::Install);
    }

    #[test]
    fn signatures_count_only_for_root_keys_and_once_per_key() {
        let r = root(1, &[1, 2, 3], 2);
        let a = allow(&["if://capability/vmix.switcher@1.2.0"]);
        // Signed by an outsider whose key the manifest could carry anywhere: it counts for nothing.
        assert_eq!(
            code(check(Some(&r), &a, None, &signed(manifest("1.2.0"), &[9, 8]), NOW)),
            ErrorCode::InvalidSignature
        );
        assert_eq!(code(check(Some(&r), &a, None, &signed(manifest("1.2.0"), &[1]), NOW)), ErrorCode::InvalidSignature);
        let mut dup = signed(manifest("1.2.0"), &[1]);
        let again: DocSignature = dup.signatures[0].clone();
        dup.signatures.push(again).expect("room");
        assert_eq!(code(check(Some(&r), &a, None, &dup, NOW)), ErrorCode::InvalidSignature, "one key twice is one");
        let mut forged = signed(manifest("1.2.0"), &[1, 2]);
        forged.signatures[1].sig = FixedBytes([0; 64]);
        assert_eq!(code(check(Some(&r), &a, None, &forged, NOW)), ErrorCode::InvalidSignature);
        assert_eq!(code(check(None, &a, None, &signed(manifest("1.2.0"), &[1, 2]), NOW)), ErrorCode::InvalidSignature);
    }

    #[test]
    fn the_allow_list_decides_id_version_and_pin() {
        let r = root(1, &[1], 1);
        let m = signed(manifest("1.2.0"), &[1]);
        let other = allow(&["if://capability/videohub.router@1.2.0"]);
        assert_eq!(code(check(Some(&r), &other, None, &m, NOW)), ErrorCode::CapabilityNotAllowed);
        let older = allow(&["if://capability/vmix.switcher@1.1.0"]);
        assert_eq!(code(check(Some(&r), &older, None, &m, NOW)), ErrorCode::VersionNotAllowed);
        let d = hex::encode(digest(&m.doc).expect("digest"));
        let pinned = allow(&[&format!("if://capability/vmix.switcher@1.2.0#sha256:{d}")]);
        assert_eq!(check(Some(&r), &pinned, None, &m, NOW).expect("pin matches"), Verdict::Install);
        let wrong = allow(&[&format!("if://capability/vmix.switcher@1.2.0#sha256:{}", "00".repeat(32))]);
        assert_eq!(code(check(Some(&r), &wrong, None, &m, NOW)), ErrorCode::VersionNotAllowed);
    }

    #[test]
    fn expiry_and_rollback_are_refused_and_the_same_manifest_is_a_no_op() {
        let r = root(1, &[1], 1);
        let a = allow(&["if://capability/vmix.switcher@1.2.0", "if://capability/vmix.switcher@1.1.0"]);
        let mut old = manifest("1.2.0");
        old.expires = NOW;
        assert_eq!(code(check(Some(&r), &a, None, &signed(old, &[1]), NOW)), ErrorCode::ManifestExpired);
        let mut expired_root = root(1, &[1], 1);
        expired_root.expires = NOW - 1;
        let fresh = signed(manifest("1.2.0"), &[1]);
        assert_eq!(code(check(Some(&expired_root), &a, None, &fresh, NOW)), ErrorCode::ManifestExpired);

        let installed = manifest("1.2.0");
        let down = signed(manifest("1.1.0"), &[1]);
        assert_eq!(code(check(Some(&r), &a, Some(&installed), &down, NOW)), ErrorCode::ManifestRollback);
        let mut changed = manifest("1.2.0");
        changed.limits.rps = 50.0;
        let changed = signed(changed, &[1]);
        assert_eq!(code(check(Some(&r), &a, Some(&installed), &changed, NOW)), ErrorCode::ManifestRollback);
        assert_eq!(check(Some(&r), &a, Some(&installed), &fresh, NOW).expect("same"), Verdict::Unchanged);
        assert_eq!(check(Some(&r), &a, Some(&manifest("1.1.0")), &fresh, NOW).expect("up"), Verdict::Install);
    }

    #[test]
    fn bad_limits_are_all_named() {
        let mut m = manifest("1.2.0");
        m.limits.rps = 0.0;
        m.limits.queue_depth = 0;
        let e = validate(&m).expect_err("bad limits");
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
        assert!(e.detail().contains("limits.rps must be > 0; limits.queue_depth must be >= 1"), "{}", e.detail());
        m = manifest("1.2.0");
        m.driver = "telnet".try_into().expect("short");
        assert!(validate(&m).is_err());
        validate(&manifest("1.2.0")).expect("the fixture is valid");
    }

    #[test]
    fn allow_entries_parse_or_say_why() {
        let a = Allowed::parse("if://capability/vmix.switcher@1.2.0").expect("plain");
        assert_eq!(
            (a.id.as_str(), a.version.to_string(), a.digest),
            ("if://capability/vmix.switcher", "1.2.0".into(), None)
        );
        for bad in [
            "vmix@1.2.0",
            "if://capability/vmix",
            "if://capability/vmix@1.2",
            "if://capability/@1.0.0",
            "if://capability/vmix@1.0.0#md5:00",
            "if://capability/vmix@1.0.0#sha256:zz",
            "if://capability/vmix@1.0.0#sha256:00",
        ] {
            assert!(Allowed::parse(bad).is_err(), "{bad}");
        }
    }
}
