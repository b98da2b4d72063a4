//! `if-edge init`: a working agent directory in one command.
//!
//! Writes `DIR/edge.toml`, the agent identity key `DIR/agent.key` (0600) and `DIR/agent.pub`, and copies
//! each talent's public key to `DIR/talents/NAME.pub` so the directory can be moved as a whole. Nothing
//! is overwritten: an existing `edge.toml` or key stops it before anything is written.

use std::path::{Path, PathBuf};

use if_protocol::{ErrorCode, IfError};

use crate::config::{AdmissionSection, AgentSection, Config, MqttSection, TalentEntry, TrustSection, WitnessSection};

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
    /// `(name, public key file)` per talent.
    pub talents: Vec<(String, PathBuf)>,
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
    /// The copied talent keys.
    pub talents: Vec<PathBuf>,
}

fn invalid(what: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::ConfigInvalid, format_args!("{what}"))
}

/// Parses `NAME=PUBKEY_FILE`.
pub fn parse_talent(arg: &str) -> Result<(String, PathBuf), IfError> {
    let (name, file) =
        arg.split_once('=').ok_or_else(|| invalid(format_args!("--talent {arg:?}: want NAME=PUBKEY_FILE")))?;
    Ok((name.to_string(), PathBuf::from(file)))
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
            client_id: None,
            keep_alive_s: 10,
            session_expiry_s: 86_400,
            receive_maximum: 256,
            outgoing_inflight: 512,
            backoff_s: vec![1, 2, 5, 10, 30],
        },
        admission: AdmissionSection::default(),
        witness: WitnessSection::default(),
        trust: TrustSection::default(),
        talents: req
            .talents
            .iter()
            .map(|(name, _)| TalentEntry {
                name: name.clone(),
                public_key: PathBuf::from(format!("talents/{name}.pub")),
            })
            .collect(),
    };
    let text = toml::to_string(&config).map_err(|e| invalid(format_args!("config does not serialize: {e}")))?;
    // Check everything before writing anything.
    Config::parse(&config_path, &text)?;
    let mut keys = Vec::new();
    for (_, file) in &req.talents {
        keys.push(crate::keyfile::read_public(file)?);
    }
    let (paths, _) = crate::keyfile::generate(&req.dir, "agent")?;
    let talent_dir = req.dir.join("talents");
    let mut copied = Vec::new();
    for ((name, _), key) in req.talents.iter().zip(keys) {
        copied.push(write_public(&talent_dir, name, &key)?);
    }
    write_file(
        &config_path,
        &format!("# IF edge agent {}/{}; see README for every key.\n{text}", req.site, req.agent),
    )?;
    Ok(Written { config: config_path, key: paths.secret, public: paths.public, talents: copied })
}

fn write_public(dir: &Path, name: &str, key: &ed25519_dalek::VerifyingKey) -> Result<PathBuf, IfError> {
    use base64::Engine as _;
    std::fs::create_dir_all(dir).map_err(|e| invalid(format_args!("{}: cannot create: {e}", dir.display())))?;
    let path = dir.join(format!("{name}.pub"));
    write_file(&path, &format!("{}\n", base64::engine::general_purpose::STANDARD.encode(key.as_bytes())))?;
    Ok(path)
}

fn write_file(path: &Path, text: &str) -> Result<(), IfError> {
    std::fs::write(path, text).map_err(|e| invalid(format_args!("{}: cannot write: {e}", path.display())))
}
