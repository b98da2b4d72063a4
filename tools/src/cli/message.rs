//! `ifctl message send`: sign an envelope (or take a saved frame) and send it.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use if_protocol::IfError;

use super::{AgentAddr, Body, Cli, Mode, answer};
use crate::message::{self, Target};
use crate::settings;

#[derive(Debug, Subcommand)]
pub(crate) enum MessageCommand {
    /// Sign an envelope, publish it, wait for the reply and print it; exit 0 on success, else the
    /// error's exit status.
    Send(Box<SendArgs>),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub(crate) to: AgentAddr,
    /// Send the frame described by this JSON view (@FILE or inline) instead of signing a new one.
    #[arg(long = "json", value_name = "@FILE", conflicts_with_all = ["key", "sender", "capability", "action"])]
    pub(crate) frame_json: Option<String>,
    /// The talent's secret key file (or `key` in ifctl.toml).
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
    /// The talent name (or `sender` in ifctl.toml).
    #[arg(long)]
    pub(crate) sender: Option<String>,
    /// The capability, if://capability/NAME.
    #[arg(long, required_unless_present = "frame_json")]
    pub(crate) capability: Option<String>,
    /// The action.
    #[arg(long, required_unless_present = "frame_json")]
    pub(crate) action: Option<String>,
    #[command(flatten)]
    pub(crate) body: Body,
    /// Sequence number; by default the next of this key's counter (kept locked in ifctl's state
    /// directory, so concurrent ifctl processes with one key never share one). A number ifctl chose and
    /// the agent refused as taken or too old is signed again once, and ifctl says so.
    #[arg(long)]
    pub(crate) seq: Option<u64>,
    /// Seconds the envelope stays valid.
    #[arg(long, default_value_t = 30)]
    pub(crate) ttl: u32,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
    /// Write the exact signed frame bytes that were sent to this file.
    #[arg(long)]
    pub(crate) save: Option<PathBuf>,
}

/// Carries out `ifctl message ...`.
pub(crate) async fn run(command: &MessageCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let MessageCommand::Send(a) = command;
    let target = a.to.target(s, a.timeout)?;
    if let Some(j) = &a.frame_json {
        return deliver(&target, message::frame_from_json(j)?).await;
    }
    let key = settings::pick(a.key.as_ref(), s.key.as_ref(), "key")?;
    let sender = settings::pick(a.sender.as_ref(), s.sender.as_ref(), "sender")?;
    let (capability, action) = (a.capability.as_deref().unwrap_or_default(), a.action.as_deref().unwrap_or_default());
    let mut cmd = cli.globals(message::Command::new(key, sender, capability, action, &cli.why()?));
    a.body.fill(&mut cmd);
    if cli.mode == Some(Mode::Falsify) {
        cmd.args.push(format!("{}=falsify", if_edge::falsify::MODE_ARG));
    }
    cmd.seq = a.seq;
    cmd.ttl_s = a.ttl;
    match &a.save {
        // The saved frame is the one sent: it is never signed again.
        Some(path) => {
            let frame = message::sign(&cmd, &target)?;
            message::save(path, &frame)?;
            deliver(&target, frame).await
        }
        None => answer(message::send_command(&target, &cmd)).await,
    }
}

/// Publishes `frame`, prints the reply, and turns an error reply into the error.
async fn deliver(target: &Target, frame: Vec<u8>) -> Result<(), IfError> {
    answer(message::send(target, frame)).await
}
