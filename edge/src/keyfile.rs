//! Ed25519 key files, as written by `ifctl keygen` and `if-edge init` and read by the agent and the CLI.
//!
//! `NAME.key` holds the 32-byte secret seed as one line of base64 and is created with mode 0600; reading a
//! secret key file that group or others can read is refused, as `ssh` does. `NAME.pub` holds the public
//! key as one line of base64. Errors name the file but never include its contents.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use if_protocol::{ErrorCode, IfError, keys};

/// The two files of a key pair.
#[derive(Debug, Clone)]
pub struct KeyPaths {
    /// The secret key, mode 0600.
    pub secret: PathBuf,
    /// The public key.
    pub public: PathBuf,
}

fn config_err(path: &Path, what: &str) -> IfError {
    IfError::format(ErrorCode::ConfigInvalid, format_args!("{}: {what}", path.display()))
}

/// Generates a key pair into `dir/NAME.key` and `dir/NAME.pub`; never overwrites an existing key.
pub fn generate(dir: &Path, name: &str) -> Result<(KeyPaths, VerifyingKey), IfError> {
    if_protocol::envelope::check_token("key name", name, 64)
        .map_err(|e| IfError::with(ErrorCode::ConfigInvalid, e.detail()))?;
    fs::create_dir_all(dir).map_err(|e| config_err(dir, &format!("cannot create directory: {e}")))?;
    let paths = KeyPaths { secret: dir.join(format!("{name}.key")), public: dir.join(format!("{name}.pub")) };
    for p in [&paths.secret, &paths.public] {
        if p.exists() {
            return Err(config_err(p, "already exists; move it away first (keys are never overwritten)"));
        }
    }
    let mut seed = [0u8; 32];
    rand::fill(&mut seed[..]);
    let key = SigningKey::from_bytes(&seed);
    write_new(&paths.secret, 0o600, &B64.encode(key.to_bytes()))?;
    write_new(&paths.public, 0o644, &B64.encode(key.verifying_key().as_bytes()))?;
    Ok((paths, key.verifying_key()))
}

fn write_new(path: &Path, mode: u32, line: &str) -> Result<(), IfError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| config_err(path, &format!("cannot create: {e}")))?;
    writeln!(f, "{line}").and_then(|()| f.sync_all()).map_err(|e| config_err(path, &format!("cannot write: {e}")))
}

fn read_line(path: &Path) -> Result<String, IfError> {
    let text = crate::files::read_text(path, crate::files::KEY_MAX).map_err(|e| config_err(path, &e))?;
    Ok(text.trim().to_string())
}

fn decode32(path: &Path, text: &str, what: &str) -> Result<[u8; 32], IfError> {
    B64.decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| config_err(path, &format!("not a {what} (one line of base64, 32 bytes)")))
}

/// Refuses a secret file that group or others can read, as `ssh` does.
pub fn check_private(path: &Path) -> Result<(), IfError> {
    let meta = fs::metadata(path).map_err(|e| config_err(path, &format!("cannot read: {e}")))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(config_err(path, &format!("is {kind}")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(config_err(
            path,
            &format!("secret key is readable by group or others (mode {mode:03o}); chmod 600 it"),
        ));
    }
    Ok(())
}

/// Reads a secret key; refuses files that group or others can read.
pub fn read_secret(path: &Path) -> Result<SigningKey, IfError> {
    check_private(path)?;
    let text = read_line(path)?;
    Ok(SigningKey::from_bytes(&decode32(path, &text, "secret key")?))
}

/// Reads a public key; refuses weak or malformed keys.
pub fn read_public(path: &Path) -> Result<VerifyingKey, IfError> {
    let text = read_line(path)?;
    let bytes = decode32(path, &text, "public key")?;
    keys::verifying_key(&bytes).map_err(|e| config_err(path, e.detail()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (paths, public) = generate(dir.path(), "desk-a").expect("generate");
        assert_eq!(fs::metadata(&paths.secret).expect("meta").permissions().mode() & 0o777, 0o600);
        let secret = read_secret(&paths.secret).expect("secret");
        assert_eq!(secret.verifying_key(), public);
        assert_eq!(read_public(&paths.public).expect("public"), public);
        let e = generate(dir.path(), "desk-a").expect_err("exists");
        assert!(e.to_string().contains("already exists"), "{e}");
    }

    #[test]
    fn readable_secret_is_refused_without_leaking_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (paths, _) = generate(dir.path(), "desk-a").expect("generate");
        let secret_text = fs::read_to_string(&paths.secret).expect("read");
        fs::set_permissions(&paths.secret, fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = read_secret(&paths.secret).expect_err("group readable");
        assert_eq!(e.code(), ErrorCode::ConfigInvalid);
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains(secret_text.trim()), "the secret never appears in an error");
    }

    #[test]
    fn malformed_files_are_refused_with_their_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.pub");
        fs::write(&bad, "not base64!\n").expect("write");
        let e = read_public(&bad).expect_err("bad");
        assert!(e.to_string().starts_with("IF_ERR_503 CONFIG_INVALID: ") && e.to_string().contains("bad.pub"), "{e}");
        let weak = dir.path().join("weak.pub");
        let mut identity = [0u8; 32];
        identity[0] = 1;
        fs::write(&weak, B64.encode(identity)).expect("write");
        assert!(read_public(&weak).is_err());
        assert!(generate(dir.path(), "../escape").is_err(), "names are tokens, never paths");
        assert!(read_public(&dir.path().join("missing.pub")).is_err());
    }
}
