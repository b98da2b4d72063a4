//! The trust root's rules: which root is installed first, and which new root may replace it.
//!
//! A root names the keys that may sign roots and manifests (`roles.manifests`) and the keys that may
//! sign policy commands (`roles.policy`), with a threshold k. The first root is provisioned at install
//! and must carry k signatures of its own signing keys. A new root is accepted only when its version is
//! exactly the next one and it carries k signatures of the current root's signing keys **and** k' of its
//! own (TUF's rule), so neither a stolen old key set nor a fabricated new one can move trust alone.

use ed25519_dalek::VerifyingKey;
use if_protocol::keys;
use if_protocol::policy::{Signed, TrustRoot};
use if_protocol::{ErrorCode, IfError};

/// The keys of `root` that may sign roots and manifests. Keys that do not decode count for nothing.
pub fn signing_keys(root: &TrustRoot) -> Vec<VerifyingKey> {
    root.keys.iter().filter(|k| k.roles.manifests).filter_map(|k| keys::verifying_key(&k.public_key.0).ok()).collect()
}

/// Whether `root` has expired at `now_s` (unix seconds).
pub fn expired(root: &TrustRoot, now_s: u64) -> bool {
    root.expires <= now_s
}

fn well_formed(root: &TrustRoot) -> Result<(), IfError> {
    let signers = signing_keys(root).len();
    let k = usize::from(root.threshold);
    if root.version == 0 || k == 0 || k > signers {
        return Err(IfError::format(
            ErrorCode::InvalidEnvelope,
            format_args!(
                "trust root v{} needs a version >= 1 and a threshold of 1..={signers} signing keys, not {k}",
                root.version
            ),
        ));
    }
    Ok(())
}

fn not_expired(root: &TrustRoot, now_s: u64) -> Result<(), IfError> {
    if expired(root, now_s) {
        return Err(IfError::format(
            ErrorCode::ManifestExpired,
            format_args!("trust root v{} expired at {}", root.version, root.expires),
        ));
    }
    Ok(())
}

/// Checks the first root an agent installs: well formed, not expired, signed by its own threshold.
pub fn check_initial(new: &Signed<TrustRoot>, now_s: u64) -> Result<(), IfError> {
    well_formed(&new.doc)?;
    not_expired(&new.doc, now_s)?;
    new.verify_threshold(&signing_keys(&new.doc), usize::from(new.doc.threshold))
        .map_err(|e| IfError::format(e.code(), format_args!("trust root v{}: {}", new.doc.version, e.detail())))
}

/// Checks a rotation from `current` to `new`.
pub fn check_rotation(current: &TrustRoot, new: &Signed<TrustRoot>, now_s: u64) -> Result<(), IfError> {
    let next = current.version.checked_add(1);
    if Some(new.doc.version) != next {
        let code =
            if new.doc.version <= current.version { ErrorCode::ManifestRollback } else { ErrorCode::VersionNotAllowed };
        return Err(IfError::format(
            code,
            format_args!(
                "trust root v{} cannot follow v{}: only v{} can",
                new.doc.version,
                current.version,
                current.version.saturating_add(1)
            ),
        ));
    }
    well_formed(&new.doc)?;
    not_expired(&new.doc, now_s)?;
    let by = |keys: &[VerifyingKey], k: u8, whose: &str| {
        new.verify_threshold(keys, usize::from(k)).map_err(|e| {
            IfError::format(
                e.code(),
                format_args!("trust root v{} by the {whose} keys: {}", new.doc.version, e.detail()),
            )
        })
    };
    by(&signing_keys(current), current.threshold, "current")?;
    by(&signing_keys(&new.doc), new.doc.threshold, "new")
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::SigningKey;
    use if_protocol::bytes::FixedBytes;
    use if_protocol::policy::{KeyRoles, TrustKey};

    use super::*;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// A root of keys `seeds` (all signing, the first also a policy signer) with threshold `k`.
    pub(crate) fn root(version: u32, seeds: &[u8], k: u8) -> TrustRoot {
        let mut keys = heapless::Vec::new();
        for (i, s) in seeds.iter().enumerate() {
            let entry = TrustKey {
                name: format!("key{s}").as_str().try_into().expect("short"),
                public_key: FixedBytes(key(*s).verifying_key().to_bytes()),
                roles: KeyRoles { manifests: true, policy: i == 0 },
            };
            keys.push(entry).expect("room");
        }
        TrustRoot { version, expires: 4_000_000_000, threshold: k, keys }
    }

    pub(crate) fn signed(doc: TrustRoot, by: &[u8]) -> Signed<TrustRoot> {
        let mut s = Signed::unsigned(doc);
        for seed in by {
            s.sign(&key(*seed)).expect("sign");
        }
        s
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn the_first_root_needs_its_own_threshold() {
        check_initial(&signed(root(1, &[1, 2, 3], 2), &[1, 2]), NOW).expect("2 of 3");
        let e = check_initial(&signed(root(1, &[1, 2, 3], 2), &[1]), NOW).expect_err("1 of 3");
        assert_eq!(e.code(), ErrorCode::InvalidSignature);
        // Signatures by keys the root does not list count for nothing.
        let e = check_initial(&signed(root(1, &[1, 2, 3], 2), &[1, 9]), NOW).expect_err("outsider");
        assert_eq!(e.code(), ErrorCode::InvalidSignature);
        let e = check_initial(&signed(root(1, &[1], 2), &[1]), NOW).expect_err("k > n");
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
        let mut old = root(1, &[1], 1);
        old.expires = NOW;
        assert_eq!(check_initial(&signed(old, &[1]), NOW).expect_err("expired").code(), ErrorCode::ManifestExpired);
    }

    #[test]
    fn rotation_needs_both_thresholds_and_the_next_version() {
        let current = root(1, &[1, 2, 3], 2);
        let next = || root(2, &[3, 4, 5], 2);
        check_rotation(&current, &signed(next(), &[1, 2, 4, 5]), NOW).expect("old 2 + new 2");
        // Key 3 is in both sets: it counts toward each.
        check_rotation(&current, &signed(next(), &[1, 3, 4]), NOW).expect("shared key counts on both sides");
        let only_old = check_rotation(&current, &signed(next(), &[1, 2]), NOW).expect_err("only old");
        assert_eq!(only_old.code(), ErrorCode::InvalidSignature);
        assert!(only_old.detail().contains("new keys"), "{}", only_old.detail());
        let only_new = check_rotation(&current, &signed(next(), &[4, 5]), NOW).expect_err("only new");
        assert!(only_new.detail().contains("current keys"), "{}", only_new.detail());
        let skip = check_rotation(&current, &signed(root(3, &[3, 4, 5], 2), &[1, 2, 4, 5]), NOW).expect_err("skip");
        assert_eq!(skip.code(), ErrorCode::VersionNotAllowed);
        let back = check_rotation(&root(2, &[1, 2, 3], 2), &signed(root(1, &[1, 2, 3], 2), &[1, 2, 3]), NOW);
        assert_eq!(back.expect_err("rollback").code(), ErrorCode::ManifestRollback);
    }
}
