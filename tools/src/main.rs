//! `ifctl`: the IF edge operator CLI.
//!
//! Every failure prints as `IF_ERR_xxx NAME: message` on stderr (or as JSON with `--json`) and exits with
//! the code's stable exit status (10 + class); usage errors exit 2.

mod broker;
mod capability;
mod collector;
mod connect;
mod demo;
mod message;
mod policy;
mod seq;
mod settings;
mod sim;
mod status;
mod talent;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use if_protocol::error::ErrorReport;
use if_protocol::{ErrorCode, IfError, keys};

#[derive(Debug, Parser)]
#[command(name = "ifctl", version, about = "Operate IF edge agents")]
struct Cli {
    /// Print results and errors as JSON (before the verb: `ifctl --json status ...`).
    #[arg(long)]
    json: bool,
    /// Connection settings file (default: $IFCTL_CONFIG, else ./ifctl.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Why the command is sent; witnessed with it. Needed by every verb that sends one.
    #[arg(long, global = true)]
    why: Option<String>,
    /// Trace token (a UUID) tying related commands together.
    #[arg(long, global = true)]
    trace: Option<uuid::Uuid>,
    /// `falsify`: a dry run that touches no hardware and lists every problem (capability apply,
    /// message send); `pre-commit`: how `falsify --task` checks a cue list (its default).
    #[arg(long, global = true, value_enum)]
    mode: Option<Mode>,
    /// Whom a command is for: SITE/* (every agent of the site) or * (the fleet); a grant must reach that
    /// far (`talent grant --reach`). Default: the one agent named by --site and --agent.
    #[arg(long, global = true, value_name = "AUDIENCE")]
    audience: Option<String>,
    /// The CA certificate (PEM) of an mqtts:// broker (or tls_ca in ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for a broker that requires one (or tls_cert in ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM, mode 0600; or tls_key in ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The agent's public key (its agent.pub): every reply must be signed by it (or agent_key in
    /// ifctl.toml).
    #[arg(long, global = true, value_name = "FILE")]
    agent_key: Option<PathBuf>,
    /// A directory of agents' public keys, {site}.{agent}.pub, for replies and statuses (or agent_keys
    /// in ifctl.toml).
    #[arg(long, global = true, value_name = "DIR")]
    agent_keys: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        device: SimDevice,
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

/// How wide a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Reach {
    /// Envelopes for one named agent.
    Agent,
    /// Also envelopes for every agent of a site (SITE/*).
    Site,
    /// Also envelopes for the whole fleet (*).
    Fleet,
}

/// How a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Run it.
    Run,
    /// Ask the agent whether it would run, touching nothing.
    Falsify,
    /// `falsify --task`: dry-run every cue; exit non-zero if any would fail.
    PreCommit,
}

/// Who signs, and which agent: flags, or `ifctl.toml`.
#[derive(Debug, ClapArgs)]
struct Signer {
    #[command(flatten)]
    to: AgentAddr,
    /// The talent's secret key file (or `key` in ifctl.toml).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The talent name (or `sender` in ifctl.toml).
    #[arg(long)]
    sender: Option<String>,
}

impl Signer {
    fn command(&self, s: &settings::Settings) -> Result<message::Command, IfError> {
        Ok(message::Command {
            key: settings::pick(self.key.as_ref(), s.key.as_ref(), "key")?,
            sender: settings::pick(self.sender.as_ref(), s.sender.as_ref(), "sender")?,
            capability: String::new(),
            action: String::new(),
            args: Vec::new(),
            why: String::new(),
            trace: None,
            seq: None,
            ttl_s: 30,
            scope: "studio:control".into(),
            hazards: Vec::new(),
            audience: None,
        })
    }
}

#[derive(Debug, Subcommand)]
enum CapabilityCommand {
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
struct ApplyArgs {
    /// The capability, if://capability/NAME.
    id: String,
    /// The action.
    #[arg(long)]
    action: String,
    /// An argument KEY=VALUE (repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
    /// Declared hazard (repeatable).
    #[arg(long = "hazard")]
    hazards: Vec<String>,
    /// Scope.
    #[arg(long, default_value = "studio:control")]
    scope: String,
    #[command(flatten)]
    who: Signer,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum MessageCommand {
    /// Sign an envelope, publish it, wait for the reply and print it; exit 0 on success, else the
    /// error's exit status.
    Send(Box<SendArgs>),
}

/// Which agent, on which broker: flags, or `ifctl.toml`.
#[derive(Debug, ClapArgs)]
struct AgentAddr {
    /// The broker, mqtt://HOST:PORT.
    #[arg(long)]
    broker: Option<String>,
    /// The agent's site.
    #[arg(long)]
    site: Option<String>,
    /// The agent's name.
    #[arg(long)]
    agent: Option<String>,
}

impl AgentAddr {
    fn target(&self, s: &settings::Settings, timeout_s: u64) -> Result<message::Target, IfError> {
        let broker = settings::pick(self.broker.as_ref(), s.broker.as_ref(), "broker")?;
        let site = settings::pick(self.site.as_ref(), s.site.as_ref(), "site")?;
        let agent = settings::pick(self.agent.as_ref(), s.agent.as_ref(), "agent")?;
        Ok(message::Target {
            broker,
            key: s.keys(Some(&site), Some(&agent)).require(&site, &agent)?,
            site,
            agent,
            timeout: Duration::from_secs(timeout_s),
            tls: s.tls()?,
        })
    }
}

#[derive(Debug, ClapArgs)]
struct SendArgs {
    #[command(flatten)]
    to: AgentAddr,
    /// Send the frame described by this JSON view (@FILE or inline) instead of signing a new one.
    #[arg(long = "json", value_name = "@FILE", conflicts_with_all = ["key", "sender", "capability", "action"])]
    frame_json: Option<String>,
    /// The talent's secret key file (or `key` in ifctl.toml).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The talent name (or `sender` in ifctl.toml).
    #[arg(long)]
    sender: Option<String>,
    /// The capability, if://capability/NAME.
    #[arg(long, required_unless_present = "frame_json")]
    capability: Option<String>,
    /// The action.
    #[arg(long, required_unless_present = "frame_json")]
    action: Option<String>,
    /// An argument KEY=VALUE (repeatable; true/false and integers are typed).
    #[arg(long = "arg")]
    args: Vec<String>,
    /// Declared hazard (repeatable): on_air, irreversible, motion, power, loud.
    #[arg(long = "hazard")]
    hazards: Vec<String>,
    /// Scope the command acts in.
    #[arg(long, default_value = "studio:control")]
    scope: String,
    /// Sequence number; by default the next of this key's counter (kept locked in ifctl's state
    /// directory, so concurrent ifctl processes with one key never share one). A number ifctl chose and
    /// the agent refused as taken or too old is signed again once, and ifctl says so.
    #[arg(long)]
    seq: Option<u64>,
    /// Seconds the envelope stays valid.
    #[arg(long, default_value_t = 30)]
    ttl: u32,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Write the exact signed frame bytes that were sent to this file.
    #[arg(long)]
    save: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct RootArgs {
    /// A secret key that signs roots and manifests (repeatable); each signs the new root too. The
    /// key's name in the root is the file stem.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// A public key that signs policy commands (repeatable).
    #[arg(long = "policy-key")]
    policy_keys: Vec<PathBuf>,
    /// Signatures required on roots and manifests (k of n).
    #[arg(long, default_value_t = 1)]
    threshold: u8,
    /// Days until the root expires.
    #[arg(long, default_value_t = 365)]
    expires_days: u64,
    /// Where to write the signed root.
    #[arg(long)]
    out: PathBuf,
}

impl RootArgs {
    fn spec(&self) -> policy::RootSpec {
        policy::RootSpec {
            keys: self.keys.clone(),
            policy_keys: self.policy_keys.clone(),
            threshold: self.threshold,
            expires_days: self.expires_days,
        }
    }
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
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
struct PolicyConn {
    #[command(flatten)]
    to: AgentAddr,
    /// A policy key of the trust root (secret key file).
    #[arg(long)]
    key: PathBuf,
    /// The signer's name in the trust root (default: the key file's stem).
    #[arg(long)]
    sender: Option<String>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum TalentCommand {
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
struct PushArgs {
    /// The signed document.
    file: PathBuf,
    #[command(flatten)]
    to: AgentAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum ManifestCommand {
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

#[derive(Debug, Subcommand)]
enum SimDevice {
    /// The vMix TCP API (port 8099 on a real vMix).
    Vmix {
        /// Port on 127.0.0.1; 0 picks a free one (printed).
        #[arg(long, default_value_t = 8099)]
        port: u16,
        /// Append every received line to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Read the current fault from this file: refuse, http, hang, garbage, slow, er, drop.
        #[arg(long)]
        fault_file: Option<PathBuf>,
        /// Number of inputs.
        #[arg(long, default_value_t = 4)]
        inputs: usize,
    },
    /// A Sony VISCA camera on a pseudo-terminal.
    Visca {
        /// Where to link the serial port the agent opens.
        #[arg(long)]
        link: PathBuf,
        /// Append every received packet (MS HEX) to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Read the current fault from this file: hang, syntax, busy, notexec, garbage.
        #[arg(long)]
        fault_file: Option<PathBuf>,
    },
    /// A Blackmagic Videohub (port 9990 on a real router).
    Videohub {
        /// Port on 127.0.0.1; 0 picks a free one (printed).
        #[arg(long, default_value_t = 9990)]
        port: u16,
        /// Append every received block to this file, one line each.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Read faults from this file, one per line: refuse, hang, nak, drop, lock N.
        #[arg(long)]
        fault_file: Option<PathBuf>,
        /// Inputs and outputs.
        #[arg(long, default_value_t = 12)]
        size: usize,
    },
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Check chain, tree and checkpoints; exits non-zero naming the first bad index.
    Verify {
        /// The witness log file.
        #[arg(long)]
        db: PathBuf,
        /// The agent's public key; defaults to the one its latest BOOT record names.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Every record of one trace: received, executed or failed, rejected, falsified, with why.
    Query {
        /// The trace token.
        #[arg(long)]
        trace_token: uuid::Uuid,
        /// Read this witness log file (of a stopped agent, or a copy) instead of asking the running
        /// agent over MQTT.
        #[arg(long)]
        db: Option<PathBuf>,
        #[command(flatten)]
        who: Signer,
        /// Seconds to wait for the agent's answer.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Print every record as a JSON line (`leaf` is the exact RFC 6962 leaf, base64).
    Export {
        /// The witness log file.
        #[arg(long)]
        db: PathBuf,
    },
    /// Verify and collect agents' anchors: signature by the agent's pinned key, origin, consistency with
    /// the last accepted checkpoint; acknowledge accepted ones, archive them, and publish a shrinking or
    /// forked log with both checkpoints on the agent's `security` topic.
    VerifyAnchors {
        /// The broker the anchors arrive on, mqtt://HOST:PORT.
        #[arg(long)]
        broker: String,
        /// Directory of agents' public keys, `{site}.{agent}.pub`.
        #[arg(long)]
        keys: PathBuf,
        /// The collector's own state (redb file; created if missing).
        #[arg(long)]
        store: PathBuf,
        /// Archive accepted notes here: a directory, or an object store URL.
        #[arg(long)]
        archive: Option<String>,
        /// Keep running until killed.
        #[arg(long)]
        follow: bool,
        /// Without --follow: stop after this many milliseconds without an anchor.
        #[arg(long, default_value_t = 2000)]
        wait_ms: u64,
        /// The collector's own secret key: acknowledgements and evidence are signed with it, so an agent
        /// that pins its public key (`[uplink] collector_key`) believes no other acknowledgement.
        #[arg(long, value_name = "FILE")]
        sign_key: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint note verbatim.
    Checkpoint {
        /// The witness log file.
        #[arg(long)]
        db: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = settings::Settings::load(cli.config.as_deref()).and_then(|mut s| {
        // A flag wins over the file.
        for (flag, file) in [
            (&cli.tls_ca, &mut s.tls_ca),
            (&cli.tls_cert, &mut s.tls_cert),
            (&cli.tls_key, &mut s.tls_key),
            (&cli.agent_key, &mut s.agent_key),
            (&cli.agent_keys, &mut s.agent_keys),
        ] {
            if flag.is_some() {
                file.clone_from(flag);
            }
        }
        run(&cli, &s)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                let report = serde_json::to_string(&ErrorReport::from(&e)).unwrap_or_default();
                eprintln!("{report}");
            } else {
                eprintln!("{e}");
            }
            ExitCode::from(e.code().exit_status())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, IfError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))
}

fn run(cli: &Cli, settings: &settings::Settings) -> Result<(), IfError> {
    match &cli.command {
        Command::Keygen { name, out } => keygen(name, out, cli.json),
        Command::Errors => {
            errors(cli.json);
            Ok(())
        }
        Command::Message { command: MessageCommand::Send(args) } => send(args, cli, settings),
        Command::Witness { command } => witness_cmd(command, settings, cli.json),
        Command::Demo { dir, keep_running } => {
            demo::run(&demo::Options { dir: dir.clone(), keep_running: *keep_running, json: cli.json })
        }
        Command::Status { broker, site, wait_ms } => status_cmd(broker, settings, site, *wait_ms, cli.json),
        Command::Broker { port } => broker::start(*port).map(|addr| {
            if cli.json {
                println!("{}", serde_json::json!({ "broker": format!("mqtt://{addr}") }));
            } else {
                println!("broker listening on mqtt://{addr}");
            }
            loop {
                std::thread::park();
            }
        }),
        Command::Trust { command: TrustCommand::Init(root) } => {
            policy::init_root(&root.spec(), &root.out).map(|w| w.print(cli.json))
        }
        Command::Trust { command: TrustCommand::Rotate { current, current_keys, root } } => {
            policy::rotate_root(current, current_keys, &root.spec(), &root.out).map(|w| w.print(cli.json))
        }
        Command::Talent { command } => talent_cmd(command, cli, settings),
        Command::Sim { device: SimDevice::Vmix { port, record, fault_file, inputs } } => {
            sim::run(sim::Kind::Vmix(*inputs), *port, record.clone(), fault_file.clone(), cli.json)
        }
        Command::Sim { device: SimDevice::Visca { link, record, fault_file } } => {
            sim::run_visca(link.clone(), record.clone(), fault_file.clone(), cli.json)
        }
        Command::Sim { device: SimDevice::Videohub { port, record, fault_file, size } } => {
            sim::run(sim::Kind::Videohub(*size), *port, record.clone(), fault_file.clone(), cli.json)
        }
        Command::Manifest { command: ManifestCommand::Push(a) } | Command::Trust { command: TrustCommand::Push(a) } => {
            push(a, settings)
        }
        Command::Manifest { command: ManifestCommand::Sign { file, keys, out } } => {
            policy::sign_manifest(file, keys, out).map(|w| w.print(cli.json))
        }
        Command::Capability { command: CapabilityCommand::List { to, wait_ms } } => {
            let target = to.target(settings, 10)?;
            runtime()?.block_on(capability::list(&target, Duration::from_millis(*wait_ms), cli.json))
        }
        Command::Capability { command: CapabilityCommand::Apply(a) } => {
            let why = why(cli)?;
            let target = a.who.to.target(settings, a.timeout)?;
            let cmd = message::Command {
                capability: a.id.clone(),
                action: a.action.clone(),
                args: a.args.clone(),
                why,
                trace: cli.trace,
                scope: a.scope.clone(),
                hazards: a.hazards.clone(),
                audience: cli.audience.clone(),
                ..a.who.command(settings)?
            };
            runtime()?.block_on(capability::apply(&target, cmd, cli.mode == Some(Mode::Falsify)))
        }
        Command::Falsify { .. } if matches!(cli.mode, Some(Mode::Run | Mode::Falsify)) => {
            usage("falsify --task checks a cue list with --mode pre-commit (its default)")
        }
        Command::Falsify { task, who, timeout } => {
            let cues = capability::read_cues(task)?;
            let target = who.to.target(settings, *timeout)?;
            let base = who.command(settings)?;
            runtime()?.block_on(capability::falsify_task(&target, &base, &cues, cli.json))
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a closed pipe, a write here only errs.
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "ifctl", &mut text);
            std::io::Write::write_all(&mut std::io::stdout(), &text)
                .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("completions: {e}")))
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("man page: {e}")))
        }
    }
}

/// `--why`, which every verb that sends a command needs.
fn why(cli: &Cli) -> Result<String, IfError> {
    match &cli.why {
        Some(w) => Ok(w.clone()),
        None => usage("--why is required: it is witnessed with the command"),
    }
}

/// Ends with clap's usage error (exit status 2).
fn usage<T>(message: &str) -> T {
    <Cli as clap::CommandFactory>::command().error(clap::error::ErrorKind::MissingRequiredArgument, message).exit()
}

fn keygen(name: &str, out: &std::path::Path, json: bool) -> Result<(), IfError> {
    let (paths, public) = if_edge::keyfile::generate(out, name)?;
    let id = hex::encode(keys::key_id(&public));
    if json {
        let v = serde_json::json!({ "secret": paths.secret, "public": paths.public, "key_id": id });
        println!("{v}");
    } else {
        println!("wrote {} (secret key, mode 0600: keep it on this machine)", paths.secret.display());
        println!("wrote {} (public key: give it to the agent's trust configuration)", paths.public.display());
        println!("key id {id}");
    }
    Ok(())
}

fn errors(json: bool) {
    if json {
        let rows: Vec<_> = ErrorCode::ALL
            .iter()
            .map(|c| {
                serde_json::json!({
                    "code": format!("IF_ERR_{:03}", c.number()),
                    "name": c.name(),
                    "message": c.message(),
                    "retryable": c.retryable(),
                    "exit_status": c.exit_status(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!("{:<11} {:<24} {:>4} {:<9} message", "code", "name", "exit", "retryable");
    for c in ErrorCode::ALL {
        let retry = if c.retryable() { "yes" } else { "no" };
        println!("IF_ERR_{:03} {:<24} {:>4} {:<9} {}", c.number(), c.name(), c.exit_status(), retry, c.message());
    }
}

fn send(a: &SendArgs, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let target = a.to.target(s, a.timeout)?;
    if let Some(j) = &a.frame_json {
        return deliver(&target, message::frame_from_json(j)?);
    }
    let cmd = message::Command {
        key: settings::pick(a.key.as_ref(), s.key.as_ref(), "key")?,
        sender: settings::pick(a.sender.as_ref(), s.sender.as_ref(), "sender")?,
        capability: a.capability.clone().unwrap_or_default(),
        action: a.action.clone().unwrap_or_default(),
        args: match cli.mode {
            Some(Mode::Falsify) => {
                a.args.iter().cloned().chain([format!("{}=falsify", if_edge::falsify::MODE_ARG)]).collect()
            }
            _ => a.args.clone(),
        },
        why: why(cli)?,
        trace: cli.trace,
        seq: a.seq,
        ttl_s: a.ttl,
        scope: a.scope.clone(),
        hazards: a.hazards.clone(),
        audience: cli.audience.clone(),
    };
    match &a.save {
        // The saved frame is the one sent: it is never signed again.
        Some(path) => {
            let frame = message::sign(&cmd, &target)?;
            message::save(path, &frame)?;
            deliver(&target, frame)
        }
        None => answer(&target, |t| message::send_command(t, &cmd)),
    }
}

fn talent_cmd(command: &TalentCommand, cli: &Cli, s: &settings::Settings) -> Result<(), IfError> {
    let why = why(cli)?;
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
    let mut cmd = talent::command(action, args, &conn.key, conn.sender.as_deref(), &why);
    cmd.audience.clone_from(&cli.audience);
    answer(&target, |t| message::send_command(t, &cmd))
}

/// Publishes a signed policy document on the agent's policy topic and prints its answer.
fn push(a: &PushArgs, s: &settings::Settings) -> Result<(), IfError> {
    let text = if_edge::policy::file::read(&a.file)?;
    let target = a.to.target(s, a.timeout)?;
    let topic = if_edge::mqtt::Topics::new(&target.site, &target.agent).policy;
    answer(&target, |t| message::request(t, &topic, "policy", text.into_bytes()))
}

/// Publishes `frame`, prints the reply, and turns an error reply into the error.
fn deliver(target: &message::Target, frame: Vec<u8>) -> Result<(), IfError> {
    answer(target, |t| message::send(t, frame))
}

/// Runs one request and prints its reply.
fn answer<'a, F, Fut>(target: &'a message::Target, call: F) -> Result<(), IfError>
where
    F: FnOnce(&'a message::Target) -> Fut,
    Fut: std::future::Future<Output = Result<if_edge::reply::Reply, IfError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))?;
    let reply = runtime.block_on(call(target))?;
    print_reply(&reply)
}

fn print_reply(reply: &if_edge::reply::Reply) -> Result<(), IfError> {
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    match &reply.error {
        None => Ok(()),
        Some(report) => Err(IfError::from(report)),
    }
}

fn status_cmd(
    broker: &str,
    settings: &settings::Settings,
    site: &str,
    wait_ms: u64,
    json: bool,
) -> Result<(), IfError> {
    let keys = settings.keys(None, None);
    if keys.is_empty() {
        return Err(IfError::with(
            ErrorCode::ConfigInvalid,
            "no pinned agent keys: a status cannot be told from a forged one without them; give --agent-keys DIR \
             ({site}.{agent}.pub files), or --agent-key FILE with site and agent in ifctl.toml",
        ));
    }
    let pinned = |site: &str, agent: &str| keys.get(site, agent).ok().flatten();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))?;
    let tls = settings.tls()?;
    let statuses =
        runtime.block_on(status::collect(broker, tls.as_ref(), site, Duration::from_millis(wait_ms), &pinned))?;
    status::print(&statuses, json);
    status::forged_error(&statuses)
}

fn witness_cmd(command: &WitnessCommand, settings: &settings::Settings, json: bool) -> Result<(), IfError> {
    match command {
        WitnessCommand::Verify { db, key } => {
            let report = witness::verify_db(db, key.as_deref())?;
            witness::print_report(&report, json);
            Ok(())
        }
        WitnessCommand::Export { db } => witness::export(db),
        WitnessCommand::Query { trace_token, db: Some(db), .. } => witness::query(db, *trace_token, json),
        WitnessCommand::Query { trace_token, db: None, who, timeout } => {
            let target = who.to.target(settings, *timeout)?;
            let cmd = message::Command {
                capability: if_edge::witness::query::WitnessQuery::ID.into(),
                action: "query".into(),
                args: vec![format!("trace={trace_token}")],
                why: format!("query of trace {trace_token}"),
                ..who.command(settings)?
            };
            let reply = runtime()?.block_on(message::send_command(&target, &cmd))?;
            if let Some(e) = &reply.error {
                return Err(IfError::from(e));
            }
            let result = reply.result.unwrap_or_default();
            for r in result["records"].as_array().into_iter().flatten() {
                println!("{}", witness::show_line(r, json));
            }
            Ok(())
        }
        WitnessCommand::VerifyAnchors { broker, keys, store, archive, follow, wait_ms, sign_key } => {
            let opts = collector::Options {
                signer: sign_key
                    .as_deref()
                    .map(if_edge::keyfile::read_secret)
                    .transpose()?
                    .map(if_edge::attest::Signer::new),
                broker: broker.clone(),
                tls: settings.tls()?,
                keys: keys.clone(),
                store: store.clone(),
                archive: archive.clone(),
                follow: *follow,
                wait: Duration::from_millis(*wait_ms),
                json,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| IfError::format(ErrorCode::SystemError, format_args!("runtime: {e}")))?
                .block_on(collector::run(opts))
        }
        WitnessCommand::Checkpoint { db } => {
            let note = witness::checkpoint(db)?;
            match json {
                true => println!("{}", witness::checkpoint_json(&note)?),
                false => print!("{note}"),
            }
            Ok(())
        }
    }
}
