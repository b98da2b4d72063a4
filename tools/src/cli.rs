//! The grammar of `ifctl`: every verb, its flags and how flags and `ifctl.toml` make a target and a
//! command. `main.rs` carries them out.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use if_protocol::IfError;

use crate::{message, policy, settings};

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
pub(crate) enum Reach {
    /// Envelopes for one named agent.
    Agent,
    /// Also envelopes for every agent of a site (SITE/*).
    Site,
    /// Also envelopes for the whole fleet (*).
    Fleet,
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
    pub(crate) fn command(&self, s: &settings::Settings) -> Result<message::Command, IfError> {
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
    /// An argument KEY=VALUE (repeatable).
    #[arg(long = "arg")]
    pub(crate) args: Vec<String>,
    /// Declared hazard (repeatable).
    #[arg(long = "hazard")]
    pub(crate) hazards: Vec<String>,
    /// Scope.
    #[arg(long, default_value = "studio:control")]
    pub(crate) scope: String,
    #[command(flatten)]
    pub(crate) who: Signer,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MessageCommand {
    /// Sign an envelope, publish it, wait for the reply and print it; exit 0 on success, else the
    /// error's exit status.
    Send(Box<SendArgs>),
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
    pub(crate) fn target(&self, s: &settings::Settings, timeout_s: u64) -> Result<message::Target, IfError> {
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
    /// An argument KEY=VALUE (repeatable; true/false and integers are typed).
    #[arg(long = "arg")]
    pub(crate) args: Vec<String>,
    /// Declared hazard (repeatable): on_air, irreversible, motion, power, loud.
    #[arg(long = "hazard")]
    pub(crate) hazards: Vec<String>,
    /// Scope the command acts in.
    #[arg(long, default_value = "studio:control")]
    pub(crate) scope: String,
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
    pub(crate) fn spec(&self) -> policy::RootSpec {
        policy::RootSpec {
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

#[derive(Debug, Subcommand)]
pub(crate) enum SimDevice {
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
pub(crate) enum WitnessCommand {
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
