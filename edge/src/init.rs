//! `if-edge init`: a working agent directory in one command.
//!
//! Writes `DIR/edge.toml`, the agent identity key `DIR/agent.key` (0600) and `DIR/agent.pub`, and, given
//! the site's signed trust root, copies it to `DIR/policy/root.toml` with an empty
//! `DIR/policy/manifests/`, so the directory can be moved as a whole. Talents and grants are not files:
//! they arrive as signed policy commands once the agent runs. Nothing is overwritten: an existing
//! `edge.toml` or key stops it before anything is written.

use std::path::{Path, PathBuf};

use if_protocol::{ErrorCode, IfError};

use crate::config::{AdmissionSection, AgentSection, Config, MqttSection, TrustSection, VaultSection, WitnessSection};

/// What `init` was asked for.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// The directory to write.
    pub dir: PathBuf,
    /// `mqtt://HOST:PORT`.
    pub broker: String,
    /// Site name.
    pub site: String,
    /// Agent name.
    pub agent: String,
    /// The site's signed trust root, if there is one yet.
    pub trust_root: Option<PathBuf>,
    /// TLS files for an `mqtts://` broker (stored as absolute paths).
    pub tls: Option<crate::tls::TlsFiles>,
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The config file.
    pub config: PathBuf,
    /// The agent's secret key.
    pub key: PathBuf,
    /// The agent's public key.
    pub public: PathBuf,
    /// The copied trust root.
    pub trust_root: Option<PathBuf>,
}

fn invalid(what: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::ConfigInvalid, format_args!("{what}"))
}

/// Writes the directory.
pub fn init(req: &InitRequest) -> Result<Written, IfError> {
    let config_path = req.dir.join("edge.toml");
    if config_path.exists() {
        return Err(invalid(format_args!("{}: already exists; nothing was written", config_path.display())));
    }
    let config = Config {
        agent: AgentSection {
            site: req.site.clone(),
            name: req.agent.clone(),
            key: PathBuf::from("agent.key"),
            org: "local".into(),
        },
        mqtt: MqttSection {
            broker: req.broker.clone(),
            tls: req.tls.clone().map(absolute).transpose()?,
            client_id: None,
            keep_alive_s: 10,
            session_expiry_s: 86_400,
            receive_maximum: 256,
            outgoing_inflight: 512,
            status_interval_s: 30,
            backoff_s: vec![1, 2, 5, 10, 30],
        },
        admission: AdmissionSection::default(),
        witness: WitnessSection::default(),
        trust: match &req.trust_root {
            Some(_) => TrustSection {
                root: Some(PathBuf::from("policy/root.toml")),
                manifests: Some(PathBuf::from("policy/manifests")),
                ..TrustSection::default()
            },
            None => TrustSection { no_root: true, ..TrustSection::default() },
        },
        vault: VaultSection::default(),
        budgets: Vec::new(),
        uplink: crate::config::UplinkSection::default(),
    };
    let text = toml::to_string(&config).map_err(|e| invalid(format_args!("config does not serialize: {e}")))?;
    // Check everything before writing anything.
    let checked = Config::parse(&config_path, &text)?;
    checked.tls()?;
    let root_text = match &req.trust_root {
        Some(file) => {
            let text = crate::policy::file::read(file)?;
            let root = crate::policy::file::parse_signed(&text, &file.display().to_string())?;
            crate::policy::trust::check_initial(&root, crate::clock::Clock::system_ms() / 1000)?;
            Some(text)
        }
        None => None,
    };
    let (paths, _) = crate::keyfile::generate(&req.dir, "agent")?;
    let mut copied = None;
    if let Some(text) = root_text {
        let policy = req.dir.join("policy");
        let manifests = policy.join("manifests");
        std::fs::create_dir_all(&manifests)
            .map_err(|e| invalid(format_args!("{}: cannot create: {e}", manifests.display())))?;
        let root = policy.join("root.toml");
        write_file(&root, &text)?;
        copied = Some(root);
    }
    write_file(
        &config_path,
        &format!("# IF edge agent {}/{}; see README for every key.\n{text}", req.site, req.agent),
    )?;
    Ok(Written { config: config_path, key: paths.secret, public: paths.public, trust_root: copied })
}

/// The TLS files with paths made absolute from the current directory, where they were named.
fn absolute(mut files: crate::tls::TlsFiles) -> Result<crate::tls::TlsFiles, IfError> {
    let here = std::env::current_dir().map_err(|e| invalid(format_args!("current directory: {e}")))?;
    files.resolve(&here);
    Ok(files)
}

fn write_file(path: &Path, text: &str) -> Result<(), IfError> {
    std::fs::write(path, text).map_err(|e| invalid(format_args!("{}: cannot write: {e}", path.display())))
}
