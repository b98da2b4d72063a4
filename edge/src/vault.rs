//! The secrets vault: where drivers' passwords and API keys come from, and the only place they do.
//!
//! Two backends, looked up in this order: the systemd credentials directory (`$CREDENTIALS_DIRECTORY`,
//! read once by the agent at start, never by a driver) and a directory of files, one secret per file
//! named after the secret. A vault file readable or writable by group or others is refused: fix its mode
//! (`chmod 600`) rather than trust it. A driver receives a [`DriverSecrets`] holding exactly the secrets its
//! manifest lists, as [`SecretString`]s whose `Debug` shows no value; asking for any other is refused.
//! Every value read is registered with [`crate::redact`], so it is scrubbed from logs and replies if it
//! ever reaches them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use if_protocol::policy::Manifest;
use if_protocol::{ErrorCode, IfError};
use secrecy::SecretString;

/// Where secrets are read from.
#[derive(Debug, Clone, Default)]
pub struct Vault {
    credentials: Option<PathBuf>,
    dir: Option<PathBuf>,
}

impl Vault {
    /// A vault over the systemd credentials directory (if set) and a file directory (if configured).
    pub fn new(credentials: Option<PathBuf>, dir: Option<PathBuf>) -> Self {
        Vault { credentials, dir }
    }

    /// Reads secret `name`.
    pub fn read(&self, name: &str) -> Result<SecretString, IfError> {
        if_protocol::envelope::check_token("secret name", name, 64)?;
        if let Some(path) = self.credentials.as_ref().map(|d| d.join(name)).filter(|p| p.is_file()) {
            return load(&path, false);
        }
        if let Some(path) = self.dir.as_ref().map(|d| d.join(name)).filter(|p| p.exists()) {
            return load(&path, true);
        }
        Err(IfError::format(ErrorCode::ConfigInvalid, format_args!("secret {name} is not in the vault")))
    }

    /// The secrets `manifest` lists, and only those.
    pub fn for_manifest(&self, manifest: &Manifest) -> Result<DriverSecrets, IfError> {
        let mut held = BTreeMap::new();
        for name in &manifest.requires_secrets {
            held.insert(name.to_string(), self.read(name)?);
        }
        Ok(DriverSecrets { capability: manifest.id.to_string(), held })
    }
}

/// Reads one secret file; `strict` refuses group or other permissions.
fn load(path: &Path, strict: bool) -> Result<SecretString, IfError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("vault file {shown}: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if strict && mode & 0o077 != 0 {
        return Err(IfError::format(
            ErrorCode::PermissionDenied,
            format_args!("vault file {shown} has mode {mode:04o}: group and others must have no access (chmod 600)"),
        ));
    }
    let text = crate::files::read_text(path, crate::files::KEY_MAX)
        .map_err(|e| IfError::format(ErrorCode::ConfigInvalid, format_args!("vault file {shown} {e}")))?;
    let value = text.trim_end_matches(['\n', '\r']);
    crate::redact::register(value);
    Ok(SecretString::from(value))
}

/// The secrets one driver may use.
pub struct DriverSecrets {
    capability: String,
    held: BTreeMap<String, SecretString>,
}

impl DriverSecrets {
    /// None at all.
    pub fn none(capability: &str) -> Self {
        DriverSecrets { capability: capability.to_string(), held: BTreeMap::new() }
    }

    /// Secret `name`, if the driver's manifest lists it.
    pub fn get(&self, name: &str) -> Result<&SecretString, IfError> {
        self.held.get(name).ok_or_else(|| {
            IfError::format(
                ErrorCode::PermissionDenied,
                format_args!("the manifest of {} does not list secret {name}", self.capability),
            )
        })
    }

    /// The names held.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.held.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for DriverSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverSecrets").field("capability", &self.capability).field("names", &self.held.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn write(dir: &Path, name: &str, value: &str, mode: u32) {
        let path = dir.join(name);
        std::fs::write(&path, value).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn manifest(secrets: &[&str]) -> Manifest {
        let text = include_str!("../../tests/fixtures/manifests/loopback.toml");
        let mut m: Manifest = crate::policy::file::parse_doc(text, "loopback.toml").expect("fixture");
        m.requires_secrets = secrets.iter().map(|s| (*s).try_into().expect("short")).collect();
        m
    }

    #[test]
    fn a_driver_gets_its_listed_secrets_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "token", "tok-123\n", 0o600);
        write(dir.path(), "other", "other-456", 0o600);
        let vault = Vault::new(None, Some(dir.path().to_path_buf()));
        let s = vault.for_manifest(&manifest(&["token"])).expect("secrets");
        assert_eq!(s.get("token").expect("listed").expose_secret(), "tok-123");
        assert_eq!(s.get("other").expect_err("unlisted").code(), ErrorCode::PermissionDenied);
        assert!(!format!("{s:?}").contains("tok-123"), "Debug shows names only");
    }

    #[test]
    fn loose_files_missing_secrets_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "loose", "v", 0o644);
        write(dir.path(), "group", "v", 0o640);
        let vault = Vault::new(None, Some(dir.path().to_path_buf()));
        for name in ["loose", "group"] {
            let e = vault.read(name).expect_err("loose mode");
            assert_eq!(e.code(), ErrorCode::PermissionDenied);
            assert!(e.detail().contains("chmod 600") && !e.detail().contains(": v"), "{}", e.detail());
        }
        assert_eq!(vault.read("absent").expect_err("missing").code(), ErrorCode::ConfigInvalid);
        assert!(vault.read("../etc/passwd").is_err(), "a name is a token, not a path");
    }

    #[test]
    fn the_credentials_directory_comes_first() {
        let creds = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        write(creds.path(), "token", "from-systemd", 0o400);
        write(dir.path(), "token", "from-file", 0o600);
        let vault = Vault::new(Some(creds.path().to_path_buf()), Some(dir.path().to_path_buf()));
        assert_eq!(vault.read("token").expect("read").expose_secret(), "from-systemd");
    }
}
