//! `ifctl capability list|apply` and `ifctl falsify --task`: what an agent offers, a command by
//! capability, and a show's cue list checked without executing anything.

use std::path::Path;
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};
use if_protocol::IfError;

use super::{AgentAddr, Body, Cli, Mode, Signer, usage};
use crate::settings;

#[derive(Debug, Subcommand)]
pub(crate) enum CapabilityCommand {
    /// The agent's capabilities: id, version, driver, breaker state and actions (from its status).
    List {
        #[command(flatten)]
        to: AgentAddr,
        /// Milliseconds to wait for the agent's status.
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
    },
    /// Sign and send one command to a capability and print the reply.
    Apply(Box<ApplyArgs>),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ApplyArgs {
    /// The capability, if://capability/NAME.
    pub(crate) id: String,
    /// The action.
    #[arg(long)]
    pub(crate) action: String,
    #[command(flatten)]
    pub(crate) body: Body,
    #[command(flatten)]
    pub(crate) who: Signer,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
}

/// Carries out `ifctl capability ...`.
pub(crate) async fn run(command: &CapabilityCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    match command {
        CapabilityCommand::List { to, wait_ms } => {
            let target = to.target(s, 10)?;
            crate::capability::list(&target, Duration::from_millis(*wait_ms), cli.json).await
        }
        CapabilityCommand::Apply(a) => {
            let target = a.who.to.target(s, a.timeout)?;
            let mut cmd = a.who.command(cli, s, &a.id, &a.action, &cli.why()?)?;
            a.body.fill(&mut cmd);
            crate::capability::apply(&target, cmd, cli.mode == Some(Mode::Falsify)).await
        }
    }
}

/// Carries out `ifctl falsify --task`.
pub(crate) async fn falsify(
    task: &Path,
    who: &Signer,
    timeout: u64,
    cli: &Cli,
    s: &settings::Settings,
) -> Result<(), IfError> {
    if matches!(cli.mode, Some(Mode::Run | Mode::Falsify)) {
        return usage("falsify --task checks a cue list with --mode pre-commit (its default)");
    }
    let cues = crate::capability::read_cues(task)?;
    let target = who.to.target(s, timeout)?;
    let base = who.command(cli, s, "", "", "")?;
    crate::capability::falsify_task(&target, &base, &cues, cli.json).await
}
