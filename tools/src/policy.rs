//! Signing policy documents: the trust root (`ifctl trust init|rotate`) and capability manifests
//! (`ifctl manifest sign`).
//!
//! Keys are read from `ifctl keygen` files; a key's name in the root is its file stem (`desk.key` ->
//! `desk`). Every output is checked by the same rules the agent applies before it is written.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{SigningKey, VerifyingKey};
use if_edge::policy::{file, manifests, trust};
use if_protocol::bytes::FixedBytes;
use if_protocol::policy::{KeyRoles, Manifest, Signed, TrustKey, TrustRoot};
use if_protocol::{ErrorCode, IfError};

/// What a new root lists and who signs it.
#[derive(Debug)]
pub struct RootSpec {
    /// Secret keys that sign roots and manifests; each also signs this root.
    pub keys: Vec<PathBuf>,
    /// Public keys that sign policy commands.
    pub policy_keys: Vec<PathBuf>,
    /// k of n.
    pub threshold: u8,
    /// Days until it expires.
    pub expires_days: u64,
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn invalid(args: std::fmt::Arguments<'_>) -> IfError {
    IfError::format(ErrorCode::ConfigInvalid, args)
}

fn stem(path: &Path) -> Result<String, IfError> {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| invalid(format_args!("{}: no file name to take the key name from", path.display())))
}

fn entry(path: &Path, key: &VerifyingKey, roles: KeyRoles) -> Result<TrustKey, IfError> {
    let name = stem(path)?;
    Ok(TrustKey {
        name: name.as_str().try_into().map_err(|_| invalid(format_args!("key name {name:?} is too long")))?,
        public_key: FixedBytes(key.to_bytes()),
        roles,
    })
}

/// Builds and signs root `version` from `spec`, adding signatures by `also_sign` (the current keys,
/// for a rotation).
fn build(spec: &RootSpec, version: u32, also_sign: &[SigningKey]) -> Result<Signed<TrustRoot>, IfError> {
    let mut keys: heapless::Vec<TrustKey, { if_protocol::policy::MAX_ROOT_KEYS }> = heapless::Vec::new();
    let mut signers = Vec::new();
    let too_many = || invalid(format_args!("a trust root lists at most {} keys", if_protocol::policy::MAX_ROOT_KEYS));
    for path in &spec.keys {
        let secret = if_edge::keyfile::read_secret(path)?;
        keys.push(entry(path, &secret.verifying_key(), KeyRoles { manifests: true, policy: false })?)
            .map_err(|_| too_many())?;
        signers.push(secret);
    }
    for path in &spec.policy_keys {
        let public = if_edge::keyfile::read_public(path)?;
        match keys.iter_mut().find(|k| k.public_key.0 == public.to_bytes()) {
            Some(k) => k.roles.policy = true,
            None => {
                keys.push(entry(path, &public, KeyRoles { manifests: false, policy: true })?).map_err(|_| too_many())?
            }
        }
    }
    let doc = TrustRoot {
        version,
        expires: now_s().saturating_add(spec.expires_days.saturating_mul(86_400)),
        threshold: spec.threshold,
        keys,
    };
    let mut signed = Signed::unsigned(doc);
    for k in signers.iter().chain(also_sign) {
        signed.sign(k)?;
    }
    Ok(signed)
}

/// What a verb that writes a file says: a line for people, the same facts as JSON for `--json`.
#[derive(Debug)]
pub struct Written {
    /// For people.
    pub text: String,
    /// For programs.
    pub json: serde_json::Value,
}

impl Written {
    /// Prints it in the form asked for.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.json);
        } else {
            println!("{}", self.text);
        }
    }
}

/// `ifctl trust init`: root version 1, signed by its own keys.
pub fn init_root(spec: &RootSpec, out: &Path) -> Result<Written, IfError> {
    let root = build(spec, 1, &[])?;
    trust::check_initial(&root, now_s())?;
    write(out, &file::to_text(&root)?)?;
    Ok(Written {
        text: format!(
            "wrote {} (trust root v1, {} keys, threshold {})",
            out.display(),
            root.doc.keys.len(),
            root.doc.threshold
        ),
        json: serde_json::json!({
            "wrote": out, "version": 1, "keys": root.doc.keys.len(), "threshold": root.doc.threshold,
            "signatures": root.signatures.len(),
        }),
    })
}

/// `ifctl trust rotate`: the next version of `current`, signed by the new keys and `current_keys`.
pub fn rotate_root(current: &Path, current_keys: &[PathBuf], spec: &RootSpec, out: &Path) -> Result<Written, IfError> {
    let cur: Signed<TrustRoot> = file::parse_signed(&file::read(current)?, &current.display().to_string())?;
    let old: Vec<SigningKey> =
        current_keys.iter().map(|p| if_edge::keyfile::read_secret(p)).collect::<Result<_, _>>()?;
    let version = cur.doc.version.checked_add(1).ok_or_else(|| invalid(format_args!("root version overflows")))?;
    let root = build(spec, version, &old)?;
    trust::check_rotation(&cur.doc, &root, now_s())?;
    write(out, &file::to_text(&root)?)?;
    Ok(Written {
        text: format!("wrote {} (trust root v{version}, signed by {} keys)", out.display(), root.signatures.len()),
        json: serde_json::json!({
            "wrote": out, "version": version, "keys": root.doc.keys.len(), "threshold": root.doc.threshold,
            "signatures": root.signatures.len(),
        }),
    })
}

/// `ifctl manifest sign`: signs (or adds signatures to) a manifest and prints its allow-list line.
pub fn sign_manifest(input: &Path, keys: &[PathBuf], out: &Path) -> Result<Written, IfError> {
    let text = file::read(input)?;
    let name = input.display().to_string();
    // An already signed manifest gets more signatures; an unsigned one its first.
    let mut signed: Signed<Manifest> = if text.lines().any(|l| l.trim() == "[[signatures]]") {
        file::parse_signed(&text, &name)?
    } else {
        Signed::unsigned(file::parse_doc(&text, &name)?)
    };
    manifests::validate(&signed.doc)?;
    for path in keys {
        signed.sign(&if_edge::keyfile::read_secret(path)?)?;
    }
    write(out, &file::to_text(&signed)?)?;
    let digest = hex::encode(manifests::digest(&signed.doc)?);
    let allow = format!("{}@{}#sha256:{digest}", signed.doc.id, signed.doc.version);
    Ok(Written {
        text: format!("wrote {} ({} signature(s))\nallow = \"{allow}\"", out.display(), signed.signatures.len()),
        json: serde_json::json!({
            "wrote": out, "id": signed.doc.id, "version": signed.doc.version,
            "signatures": signed.signatures.len(), "sha256": digest, "allow": allow,
        }),
    })
}

fn write(path: &Path, text: &str) -> Result<(), IfError> {
    std::fs::write(path, text)
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("{}: {e}", path.display())))
}
