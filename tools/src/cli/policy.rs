//! `ifctl trust|talent|manifest`: the trust root, talents and grants (signed policy commands), and
//! capability manifests.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use if_protocol::IfError;

use super::{AgentAddr, Cli, answer};
use crate::{message, policy as docs, settings, talent};

/// How wide a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Reach {
    /// Envelopes for one named agent.
    Agent,
    /// Also envelopes for every agent of a site (SITE/*).
    Site,
    /// Also envelopes for the whole fleet (*).
    Fleet,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct RootArgs {
    /// A secret key that signs roots and manifests (repeatable); each signs the new root too. The
    /// key's name in the root is the file stem.
    #[arg(long = "key", required = true)]
    pub(crate) keys: Vec<PathBuf>,
    /// A public key that signs policy commands (repeatable).
    #[arg(long = "policy-key")]
    pub(crate) policy_keys: Vec<PathBuf>,
    /// Signatures required on roots and manifests (k of n).
    #[arg(long, default_value_t = 1)]
    pub(crate) threshold: u8,
    /// Days until the root expires.
    #[arg(long, default_value_t = 365)]
    pub(crate) expires_days: u64,
    /// Where to write the signed root.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

impl RootArgs {
    pub(crate) fn spec(&self) -> docs::RootSpec {
        docs::RootSpec {
            keys: self.keys.clone(),
            policy_keys: self.policy_keys.clone(),
            threshold: self.threshold,
            expires_days: self.expires_days,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TrustCommand {
    /// Write trust root version 1, signed by its own keys.
    Init(RootArgs),
    /// Push a signed root to a running agent (accepted only by the rotation rule).
    Push(PushArgs),
    /// Write the next version of a root, signed by the new keys and by the current ones.
    Rotate {
        /// The current root file.
        #[arg(long)]
        current: PathBuf,
        /// A secret key of the current root that signs the new one (repeatable).
        #[arg(long = "sign", required = true)]
        current_keys: Vec<PathBuf>,
        #[command(flatten)]
        root: RootArgs,
    },
}

/// Where a policy command goes and who signs it.
#[derive(Debug, ClapArgs)]
pub(crate) struct PolicyConn {
    #[command(flatten)]
    pub(crate) to: AgentAddr,
    /// A policy key of the trust root (secret key file).
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// The signer's name in the trust root (default: the key file's stem).
    #[arg(long)]
    pub(crate) sender: Option<String>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TalentCommand {
    /// Add a talent: a name, a role and the public key that signs its envelopes.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// The talent's public key file.
        #[arg(long)]
        pubkey: PathBuf,
        #[command(flatten)]
        conn: PolicyConn,
    },
    /// Grant a talent a capability in a scope, with actions and hazards (replaces its earlier grant).
    Grant {
        #[arg(long)]
        name: String,
        /// if://capability/NAME
        #[arg(long)]
        capability: String,
        /// A scope (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// An allowed action (repeatable).
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// An allowed hazard (repeatable).
        #[arg(long = "hazard")]
        hazards: Vec<String>,
        /// Unix seconds after which the grant no longer applies (in the future).
        #[arg(long)]
        expires: Option<u64>,
        /// The widest audience the talent's envelopes may name: agent (the default), site or fleet.
        #[arg(long, value_enum, default_value_t = Reach::Agent)]
        reach: Reach,
        #[command(flatten)]
        conn: PolicyConn,
    },
    /// Revoke a talent: its envelopes are refused with KEY_REVOKED.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: PolicyConn,
    },
    /// Start a sender's sequence numbers over (a talent, or a policy key of the root): its replay window
    /// is forgotten, and its envelopes issued before now are refused. Witnessed like every policy change.
    Reset {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: PolicyConn,
    },
}

/// Where a pushed document goes.
#[derive(Debug, ClapArgs)]
pub(crate) struct PushArgs {
    /// The signed document.
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) to: AgentAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Push a signed manifest to a running agent; it answers what it did, or the refusal's code.
    Push(PushArgs),
    /// Sign a manifest (or add signatures to a signed one) and print its allow-list entry.
    Sign {
        /// The manifest TOML.
        file: PathBuf,
        /// A secret key of the trust root (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Where to write the signed manifest.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Carries out `ifctl trust ...`.
pub(crate) async fn trust(command: &TrustCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    match command {
        TrustCommand::Init(root) => docs::init_root(&root.spec(), &root.out).map(|w| w.print(cli.json)),
        TrustCommand::Rotate { current, current_keys, root } => {
            docs::rotate_root(current, current_keys, &root.spec(), &root.out).map(|w| w.print(cli.json))
        }
        TrustCommand::Push(a) => push(a, s).await,
    }
}

/// Carries out `ifctl manifest ...`.
pub(crate) async fn manifest(command: &ManifestCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    match command {
        ManifestCommand::Push(a) => push(a, s).await,
        ManifestCommand::Sign { file, keys, out } => docs::sign_manifest(file, keys, out).map(|w| w.print(cli.json)),
    }
}

/// Carries out `ifctl talent ...`: a policy command signed by a policy key of the root.
pub(crate) async fn talent(command: &TalentCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let why = cli.why()?;
    let (conn, action, args) = match command {
        TalentCommand::Add { name, role, pubkey, conn } => (conn, "talent.add", talent::add(name, role, pubkey)?),
        TalentCommand::Grant { name, capability, scopes, actions, hazards, expires, reach, conn } => {
            let reach = match reach {
                Reach::Agent => None,
                Reach::Site => Some("site"),
                Reach::Fleet => Some("fleet"),
            };
            (conn, "talent.grant", talent::grant(name, capability, scopes, actions, hazards, *expires, reach))
        }
        TalentCommand::Revoke { name, conn } => (conn, "talent.revoke", talent::revoke(name)),
        TalentCommand::Reset { name, conn } => (conn, "talent.reset", talent::revoke(name)),
    };
    let target = conn.to.target(s, conn.timeout)?;
    let cmd = cli.globals(talent::command(action, args, &conn.key, conn.sender.as_deref(), &why));
    answer(message::send_command(&target, &cmd)).await
}

/// Publishes a signed policy document on the agent's policy topic and prints its answer.
async fn push(a: &PushArgs, s: &settings::Settings) -> Result<(), IfError> {
    let text = if_edge::policy::file::read(&a.file)?;
    let target = a.to.target(s, a.timeout)?;
    let topic = if_protocol::topics::Topics::new(&target.site, &target.agent).policy;
    answer(message::request(&target, &topic, "policy", text.into_bytes())).await
}
