//! Connection settings from flags or an `ifctl.toml`: the file named by `--config`, else
//! `$IFCTL_CONFIG`, else `./ifctl.toml` when it exists. A flag always wins over the file.
//!
//! ```toml
//! broker = "mqtt://127.0.0.1:1883"
//! site = "studio-a"
//! agent = "edge-1"
//! key = "keys/desk.key"      # relative to the file
//! sender = "desk"
//! tls_ca = "certs/ca.pem"    # for an mqtts:// broker; tls_cert and tls_key for a client certificate
//! ```

use std::path::{Path, PathBuf};

use if_protocol::{ErrorCode, IfError};
use serde::Deserialize;

/// The file's settings; every one optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `mqtt://HOST:PORT`.
    pub broker: Option<String>,
    /// Site.
    pub site: Option<String>,
    /// Agent.
    pub agent: Option<String>,
    /// A talent's secret key file.
    pub key: Option<PathBuf>,
    /// The talent's name.
    pub sender: Option<String>,
    /// The CA certificate of an `mqtts://` broker.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate, for a broker that requires one.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub tls_key: Option<PathBuf>,
}

impl Settings {
    /// Reads the settings file, if there is one.
    pub fn load(explicit: Option<&Path>) -> Result<Settings, IfError> {
        let env = std::env::var_os("IFCTL_CONFIG").map(PathBuf::from);
        let path = match (explicit, env) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(p)) => p,
            (None, None) if Path::new("ifctl.toml").is_file() => PathBuf::from("ifctl.toml"),
            (None, None) => return Ok(Settings::default()),
        };
        let bad = |e: &dyn std::fmt::Display| {
            IfError::format(ErrorCode::ConfigInvalid, format_args!("{}: {e}", path.display()))
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(&e))?;
        let mut s: Settings = toml::from_str(&text).map_err(|e| bad(&e.message().trim()))?;
        if let Some(dir) = path.parent() {
            for p in [&mut s.key, &mut s.tls_ca, &mut s.tls_cert, &mut s.tls_key].into_iter().flatten() {
                *p = dir.join(&*p);
            }
        }
        Ok(s)
    }

    /// The TLS settings for an `mqtts://` broker, checked (`None` when no CA is given).
    pub fn tls(&self) -> Result<Option<if_edge::tls::Tls>, IfError> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err(IfError::with(ErrorCode::ConfigInvalid, "--tls-cert and --tls-key need --tls-ca"));
            }
            return Ok(None);
        };
        let files = if_edge::tls::TlsFiles { ca: ca.clone(), cert: self.tls_cert.clone(), key: self.tls_key.clone() };
        files.load("tls").map(Some)
    }
}

/// A flag's value, or the file's, or an error naming both.
pub fn pick<T: Clone>(flag: Option<&T>, file: Option<&T>, name: &str) -> Result<T, IfError> {
    flag.or(file).cloned().ok_or_else(|| {
        IfError::format(ErrorCode::ConfigInvalid, format_args!("--{name} is needed (or {name} in ifctl.toml)"))
    })
}
