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
//! agent_key = "keys/studio-a.edge-1.pub"   # the agent's pinned public key (its agent.pub) ...
//! agent_keys = "keys"        # ... or a directory of them, {site}.{agent}.pub, as the collector reads
//! ```
//!
//! Every answer of an agent is signed by its identity key, and `ifctl` believes nothing it cannot check
//! against the pinned key: a reply, a status or a dry-run verdict that does not verify is reported and
//! ignored.

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
    /// The agent's public key (`agent.pub`), pinned.
    pub agent_key: Option<PathBuf>,
    /// A directory of pinned agent keys, `{site}.{agent}.pub`.
    pub agent_keys: Option<PathBuf>,
}

/// The agents' pinned keys that `ifctl` checks answers and statuses against.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    /// `{site}.{agent}.pub` files.
    dir: Option<PathBuf>,
    /// One key for one agent (`site/agent`).
    single: Option<(String, PathBuf)>,
}

impl KeyRing {
    /// The pinned key of `site/agent`, if the ring has one; a key file that does not read is an error.
    pub fn get(&self, site: &str, agent: &str) -> Result<Option<ed25519_dalek::VerifyingKey>, IfError> {
        let name = format!("{site}/{agent}");
        if let Some((who, file)) = &self.single
            && *who == name
        {
            return if_edge::keyfile::read_public(file).map(Some);
        }
        let Some(dir) = &self.dir else { return Ok(None) };
        let file = dir.join(format!("{site}.{agent}.pub"));
        if !file.exists() {
            return Ok(None);
        }
        if_edge::keyfile::read_public(&file).map(Some)
    }

    /// Whether it holds any key at all.
    pub fn is_empty(&self) -> bool {
        self.dir.is_none() && self.single.is_none()
    }

    /// The key of `site/agent`, which a command to it needs.
    pub fn require(&self, site: &str, agent: &str) -> Result<ed25519_dalek::VerifyingKey, IfError> {
        self.get(site, agent)?.ok_or_else(|| {
            IfError::format(
                ErrorCode::ConfigInvalid,
                format_args!(
                    "no pinned key for agent {site}/{agent}: give --agent-key FILE (its agent.pub) or --agent-keys \
                     DIR ({site}.{agent}.pub), or agent_key / agent_keys in ifctl.toml"
                ),
            )
        })
    }
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
        let text = if_edge::files::read_text(&path, if_edge::files::DOC_MAX).map_err(|e| bad(&e))?;
        let mut s: Settings = toml::from_str(&text).map_err(|e| bad(&e.message().trim()))?;
        if let Some(dir) = path.parent() {
            let paths =
                [&mut s.key, &mut s.tls_ca, &mut s.tls_cert, &mut s.tls_key, &mut s.agent_key, &mut s.agent_keys];
            for p in paths.into_iter().flatten() {
                *p = dir.join(&*p);
            }
        }
        Ok(s)
    }

    /// The pinned agent keys: `agent_key` stands for the agent `site` and `agent` name (flags or file).
    pub fn keys(&self, site: Option<&String>, agent: Option<&String>) -> KeyRing {
        let single = match (&self.agent_key, site.or(self.site.as_ref()), agent.or(self.agent.as_ref())) {
            (Some(file), Some(s), Some(a)) => Some((format!("{s}/{a}"), file.clone())),
            _ => None,
        };
        KeyRing { dir: self.agent_keys.clone(), single }
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
