//! The grammar of `ifctl` and its dispatch: the global flags and the verbs here, one module per verb
//! family with its flags and what it does (`message`, `capability`, `policy`, `witness`, `status`,
//! `tally` (here), `local` for what runs on this machine). Flags and `ifctl.toml` make a target ([`AgentAddr`]) and a
//! signer ([`Signer`]); every command starts from [`message::Command::new`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use if_protocol::IfError;

mod binding;
mod capability;
mod local;
mod message;
mod policy;
mod status;
mod witness;

pub(crate) use binding::BindingCommand;
pub(crate) use capability::CapabilityCommand;
pub(crate) use message::MessageCommand;
pub(crate) use policy::{ManifestCommand, TalentCommand, TrustCommand};
pub(crate) use witness::WitnessCommand;

use crate::settings;

#[derive(Debug, Parser)]
#[command(name = "ifctl", version, about = "Operate IF edge agents")]
pub(crate) struct Cli {
    /// Print results and errors as JSON (before the verb: `ifctl --json status ...`).
    #[arg(long)]
    pub(crate) json: bool,
    /// Connection settings file (default: $IFCTL_CONFIG, else ./ifctl.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Why the command is sent; witnessed with it. Needed by every verb that sends one.
    #[arg(long, global = true)]
    pub(crate) why: Option<String>,
    /// Trace token (a UUID) tying related commands together.
    #[arg(long, global = true)]
    pub(crate) trace: Option<uuid::Uuid>,
    /// `falsify`: a dry run that touches no hardware and lists every problem (capability apply,
    /// message send); `pre-commit`: how `falsify --task` checks a cue list (its default).
    #[arg(long, global = true, value_enum)]
    pub(crate) mode: Option<Mode>,
    /// Whom a command is for: SITE/* (every agent of the site) or * (the fleet); a grant must reach that
    /// far (`talent grant --reach`). Default: the one agent named by --site and --agent.
    #[arg(long, global = true, value_name = "AUDIENCE")]
    pub(crate) audience: Option<String>,
    /// The CA certificate (PEM) of an mqtts:// broker (or tls_ca in ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for a broker that requires one (or tls_cert in ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM, mode 0600; or tls_key in ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The agent's public key (its agent.pub): every reply must be signed by it (or agent_key in
    /// ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) agent_key: Option<PathBuf>,
    /// A directory of agents' public keys, {site}.{agent}.pub, for replies and statuses (or agent_keys
    /// in ifctl.toml).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) agent_keys: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate an Ed25519 key pair: DIR/NAME.key (mode 0600) and DIR/NAME.pub.
    Keygen {
        /// Key name: letters, digits, '_', '.', '-'.
        #[arg(long)]
        name: String,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// List every IF error code with its name, exit status and whether it is retryable.
    Errors,
    /// Signed command envelopes.
    Message {
        #[command(subcommand)]
        command: MessageCommand,
    },
    /// The trust root: the keys that sign manifests and policy.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Talents and their grants, changed by signed policy commands.
    Talent {
        #[command(subcommand)]
        command: TalentCommand,
    },
    /// Rack-node buttons bound to actions and lamps bound to tally, by signed policy commands.
    Binding {
        #[command(subcommand)]
        command: BindingCommand,
    },
    /// Capability manifests.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// What an agent offers, and commands by capability (with `--mode falsify`, a dry run).
    Capability {
        #[command(subcommand)]
        command: CapabilityCommand,
    },
    /// Check a show's cue list against the agent's policy, limits, budgets and device health without
    /// executing anything; lists every failing cue with its codes and exits non-zero if any would fail
    /// (usable as a git pre-commit hook for show files).
    Falsify {
        /// The cue list: TOML `[[cue]]` tables or JSON `{"cue": [...]}`, each with name, capability,
        /// action, and optional args, hazards and scope.
        #[arg(long)]
        task: PathBuf,
        #[command(flatten)]
        who: Signer,
        /// Seconds to wait for each answer.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Print shell completions for ifctl.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print ifctl's man page (roff).
    Man,
    /// Run a device simulator until killed.
    Sim {
        #[command(subcommand)]
        device: if_sim::Device,
    },
    /// The whole system on this machine: a broker, simulated vMix, Videohub and camera, the agent, and a
    /// story of signed commands good and bad; then the witness log verified. Exits 0 when every step
    /// behaved as expected.
    Demo {
        /// Keep keys, configuration, logs and records here (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Leave the site running after the story, until Ctrl-C.
        #[arg(long)]
        keep_running: bool,
        /// The rack node's firmware image for QEMU (default: the one built beside ifctl).
        #[arg(long)]
        firmware: Option<PathBuf>,
    },
    /// Every agent on a broker, online or offline, with its boot, session, uptime, log size and
    /// breakers (a late Will never marks a live agent offline).
    Status {
        /// The broker, mqtt://HOST:PORT.
        #[arg(long)]
        broker: String,
        /// Only this site.
        #[arg(long, default_value = "+")]
        site: String,
        /// Milliseconds to listen for statuses after subscribing.
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
    },
    /// An agent's tally (inputs on program and preview, from its switcher), checked against its pinned
    /// key; fails if a tally signed by another key was seen.
    Tally {
        #[command(flatten)]
        to: AgentAddr,
        /// Milliseconds to listen after subscribing (the retained tally comes at once; changes too).
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
    },
    /// Run a small MQTT 5 broker on loopback until killed (for trying the agent out; a site runs Mosquitto).
    Broker {
        /// Port on 127.0.0.1; 0 picks a free one (printed).
        #[arg(long, default_value_t = 1883)]
        port: u16,
    },
    /// Inspect a witness log file.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
}

/// How a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Run it.
    Run,
    /// Ask the agent whether it would run, touching nothing.
    Falsify,
    /// `falsify --task`: dry-run every cue; exit non-zero if any would fail.
    PreCommit,
}

/// What a command carries besides its capability and action.
#[derive(Debug, ClapArgs)]
pub(crate) struct Body {
    /// An argument KEY=VALUE (repeatable; true/false and integers are typed).
    #[arg(long = "arg")]
    pub(crate) args: Vec<String>,
    /// Declared hazard (repeatable): on_air, irreversible, motion, power, loud.
    #[arg(long = "hazard")]
    pub(crate) hazards: Vec<String>,
    /// Scope the command acts in.
    #[arg(long, default_value = "studio:control")]
    pub(crate) scope: String,
}

impl Body {
    /// Puts these into `cmd`.
    pub(crate) fn fill(&self, cmd: &mut crate::message::Command) {
        cmd.args.clone_from(&self.args);
        cmd.hazards.clone_from(&self.hazards);
        cmd.scope.clone_from(&self.scope);
    }
}

/// Who signs, and which agent: flags, or `ifctl.toml`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Signer {
    #[command(flatten)]
    pub(crate) to: AgentAddr,
    /// The talent's secret key file (or `key` in ifctl.toml).
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
    /// The talent name (or `sender` in ifctl.toml).
    #[arg(long)]
    pub(crate) sender: Option<String>,
}

impl Signer {
    /// `action` on `capability`, signed as the flags or `ifctl.toml` say, with the global `--trace` and
    /// `--audience`.
    pub(crate) fn command(
        &self,
        cli: &Cli,
        s: &settings::Settings,
        capability: &str,
        action: &str,
        why: &str,
    ) -> Result<crate::message::Command, IfError> {
        let key = settings::pick(self.key.as_ref(), s.key.as_ref(), "key")?;
        let sender = settings::pick(self.sender.as_ref(), s.sender.as_ref(), "sender")?;
        Ok(cli.globals(crate::message::Command::new(key, sender, capability, action, why)))
    }
}

/// Which agent, on which broker: flags, or `ifctl.toml`.
#[derive(Debug, ClapArgs)]
pub(crate) struct AgentAddr {
    /// The broker, mqtt://HOST:PORT.
    #[arg(long)]
    pub(crate) broker: Option<String>,
    /// The agent's site.
    #[arg(long)]
    pub(crate) site: Option<String>,
    /// The agent's name.
    #[arg(long)]
    pub(crate) agent: Option<String>,
}

impl AgentAddr {
    pub(crate) fn target(&self, s: &settings::Settings, timeout_s: u64) -> Result<crate::message::Target, IfError> {
        let broker = settings::pick(self.broker.as_ref(), s.broker.as_ref(), "broker")?;
        let site = settings::pick(self.site.as_ref(), s.site.as_ref(), "site")?;
        let agent = settings::pick(self.agent.as_ref(), s.agent.as_ref(), "agent")?;
        Ok(crate::message::Target {
            broker,
            key: s.keys(Some(&site), Some(&agent)).require(&site, &agent)?,
            site,
            agent,
            timeout: Duration::from_secs(timeout_s),
            tls: s.tls()?,
        })
    }
}

impl Cli {
    /// `cmd` with the global flags that shape every command: `--trace` and `--audience`.
    pub(crate) fn globals(&self, mut cmd: crate::message::Command) -> crate::message::Command {
        cmd.trace = cmd.trace.or(self.trace);
        cmd.audience.clone_from(&self.audience);
        cmd
    }

    /// `--why`, which every verb that sends a command needs.
    pub(crate) fn why(&self) -> Result<String, IfError> {
        match &self.why {
            Some(w) => Ok(w.clone()),
            None => usage("--why is required: it is witnessed with the command"),
        }
    }
}

/// Ends with clap's usage error (exit status 2).
pub(crate) fn usage<T>(message: &str) -> T {
    <Cli as clap::CommandFactory>::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit()
}

/// Carries out the verb.
pub(crate) async fn run(cli: &Cli, settings: &settings::Settings) -> Result<(), IfError> {
    match &cli.command {
        Command::Keygen { name, out } => local::keygen(name, out, cli.json),
        Command::Errors => {
            local::errors(cli.json);
            Ok(())
        }
        Command::Completions { shell } => local::completions(*shell),
        Command::Man => local::man(),
        Command::Demo { dir, keep_running, firmware } => {
            let opts = crate::demo::Options {
                dir: dir.clone(),
                keep_running: *keep_running,
                json: cli.json,
                firmware: firmware.clone(),
            };
            crate::demo::run(&opts).await
        }
        Command::Sim { device } => local::sim(device.clone(), cli.json).await,
        Command::Broker { port } => local::broker(*port, cli.json).await,
        Command::Status { broker, site, wait_ms } => status::run(broker, settings, site, *wait_ms, cli.json).await,
        Command::Tally { to, wait_ms } => {
            let wait = Duration::from_millis(*wait_ms);
            crate::tally::run(&to.target(settings, wait.as_secs())?, wait, cli.json).await
        }
        Command::Message { command } => message::run(command, cli, settings).await,
        Command::Capability { command } => capability::run(command, cli, settings).await,
        Command::Falsify { task, who, timeout } => capability::falsify(task, who, *timeout, cli, settings).await,
        Command::Trust { command } => policy::trust(command, cli, settings).await,
        Command::Talent { command } => policy::talent(command, cli, settings).await,
        Command::Binding { command } => binding::run(command, cli, settings).await,
        Command::Manifest { command } => policy::manifest(command, cli, settings).await,
        Command::Witness { command } => witness::run(command, cli, settings).await,
    }
}

/// Waits for one reply, prints it, and turns an error reply into the error.
pub(crate) async fn answer(
    reply: impl std::future::Future<Output = Result<if_edge::reply::Reply, IfError>>,
) -> Result<(), IfError> {
    let reply = reply.await?;
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    match &reply.error {
        None => Ok(()),
        Some(report) => Err(IfError::from(report)),
    }
}
