//! `ifctl binding add|list|remove`: rack-node buttons and lamps, and tally displays, bound by signed
//! policy commands (see
//! `if_edge::policy::bindings` for what the agent reads from them).

use clap::Subcommand;
use if_protocol::IfError;

use super::policy::PolicyConn;
use super::{Cli, answer};
use crate::{message, settings, talent};

// Parsed once per run of ifctl: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum BindingCommand {
    /// Bind a button (`--input`) to an action, or a lamp (`--lamp`), a tally display (`--display`) or a
    /// camera's tally lamp (`--camera`) to a switcher's tally; replaces an earlier binding of the same name.
    Add {
        /// The binding's name.
        #[arg(long)]
        name: String,
        /// The rack node, or the tally display output (`tsl-umd`): if://capability/NAME.
        #[arg(long)]
        node: String,
        /// A button: the node's input, from 0.
        #[arg(long, conflicts_with_all = ["lamp", "display", "follow", "follow_input"], requires_all = ["talent", "capability", "action", "scope"])]
        input: Option<u8>,
        /// The talent a press acts as (its grants decide, at each press).
        #[arg(long)]
        talent: Option<String>,
        /// The capability a press drives.
        #[arg(long)]
        capability: Option<String>,
        /// Its action.
        #[arg(long)]
        action: Option<String>,
        /// The scope of the command.
        #[arg(long)]
        scope: Option<String>,
        /// A hazard the command accepts (repeatable).
        #[arg(long = "hazard")]
        hazards: Vec<String>,
        /// An argument of the command, KEY=VALUE (repeatable; no commas in values).
        #[arg(long = "arg")]
        args: Vec<String>,
        /// A lamp: the node's lamp, from 0.
        #[arg(long, requires_all = ["follow", "follow_input"], conflicts_with = "display")]
        lamp: Option<u8>,
        /// A camera: its own tally lamp follows (on while the input is on program).
        #[arg(long, requires_all = ["follow", "follow_input"], conflicts_with_all = ["lamp", "display"])]
        camera: bool,
        /// A tally display: its index (TSL v5) or address (v3.1), from 0.
        #[arg(long, requires_all = ["follow", "follow_input"])]
        display: Option<u16>,
        /// What the display reads (default: `Input N`).
        #[arg(long, requires = "display")]
        label: Option<String>,
        /// The switcher whose tally the lamp or display follows.
        #[arg(long)]
        follow: Option<String>,
        /// The switcher's input it follows, from 1 (red on program, green on preview).
        #[arg(long)]
        follow_input: Option<u32>,
        #[command(flatten)]
        conn: PolicyConn,
    },
    /// The agent's bindings.
    List {
        #[command(flatten)]
        conn: PolicyConn,
    },
    /// Remove a binding.
    Remove {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: PolicyConn,
    },
}

/// The arguments of `binding.add`.
fn add_args(command: &BindingCommand) -> Vec<String> {
    let BindingCommand::Add {
        name,
        node,
        input,
        talent,
        capability,
        action,
        scope,
        hazards,
        args,
        lamp,
        camera,
        display,
        label,
        follow,
        follow_input,
        ..
    } = command
    else {
        return Vec::new();
    };
    let mut out = vec![format!("name={name}"), format!("node={node}")];
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.push(format!("{k}={v}"));
        }
    };
    put("input", &input.map(|i| i.to_string()));
    put("talent", talent);
    put("capability", capability);
    put("action", action);
    put("scope", scope);
    put("hazards", &(!hazards.is_empty()).then(|| hazards.join(",")));
    put("args", &(!args.is_empty()).then(|| args.join(",")));
    put("lamp", &lamp.map(|l| l.to_string()));
    put("camera", &camera.then(|| "true".to_string()));
    put("display", &display.map(|d| d.to_string()));
    put("label", label);
    put("follow", follow);
    put("follow_input", &follow_input.map(|i| i.to_string()));
    out
}

/// Carries out `ifctl binding ...`: a policy command signed by a policy key of the root.
pub(crate) async fn run(command: &BindingCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let why = cli.why()?;
    let (conn, action, args) = match command {
        BindingCommand::Add { conn, .. } => (conn, "binding.add", add_args(command)),
        BindingCommand::List { conn } => (conn, "binding.list", Vec::new()),
        BindingCommand::Remove { name, conn } => (conn, "binding.remove", vec![format!("name={name}")]),
    };
    let target = conn.to.target(s, conn.timeout)?;
    let cmd = cli.globals(talent::command(action, args, &conn.key, conn.sender.as_deref(), &why));
    answer(message::send_command(&target, &cmd)).await
}
