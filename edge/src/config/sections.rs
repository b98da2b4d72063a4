//! The sections of `edge.toml`, each with its defaults: what a key means and what it is when absent.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::load::Sources;
use crate::policy::manifests::Allowed;

/// `[uplink]`: the fleet broker that receives the agent's anchors. Absent, anchors go to the control
/// broker. Either broker may be down without stopping the other's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSection {
    /// `mqtt://HOST:PORT` or `mqtts://HOST:PORT`; defaults to `mqtt.broker` (and its `tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// TLS files for an `mqtts://` uplink broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsFiles>,
    /// Seconds after which anchors not yet acknowledged are published again.
    #[serde(default = "default_republish")]
    pub republish_s: u32,
    /// The collector's public key: only acknowledgements it signed move the anchor queue. Without it,
    /// any acknowledgement that names one of this log's checkpoints does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector_key: Option<PathBuf>,
    /// Send the log's records upstream as tlog-tiles entry bundles, for an archive (and then pruning).
    /// On unless turned off: without it nothing is ever pruned.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub archive: bool,
}

impl Default for UplinkSection {
    fn default() -> Self {
        UplinkSection { broker: None, tls: None, republish_s: default_republish(), collector_key: None, archive: true }
    }
}

fn default_republish() -> u32 {
    10
}

fn yes() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_yes(b: &bool) -> bool {
    *b
}

/// `[vault]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// A directory with one file per secret, each mode 0600 (or 0400). The systemd credentials
    /// directory (`$CREDENTIALS_DIRECTORY`), when set, is searched first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// `[[budget]]`: a provider (a capability) may spend `units` of cost per `period_s` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetEntry {
    /// The capability that charges, `if://capability/NAME`.
    pub provider: String,
    /// Units per period; an action's cost comes from its manifest.
    pub units: u64,
    /// Period length in seconds, aligned to the Unix epoch (86400 = a UTC day).
    pub period_s: u64,
}

/// `[agent]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Site name, part of every topic.
    pub site: String,
    /// Agent name, part of every topic.
    pub name: String,
    /// The agent's identity key file (mode 0600).
    pub key: PathBuf,
    /// Organisation prefix of the checkpoint origin `<org>/if-edge/<site>.<name>`.
    #[serde(default = "default_org")]
    pub org: String,
}

/// `[mqtt]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://HOST:PORT`, or `mqtts://HOST:PORT` with `[mqtt.tls]`.
    pub broker: String,
    /// TLS files for an `mqtts://` broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsFiles>,
    /// Client id; defaults to `if-edge-<site>-<name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Keep-alive in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u16,
    /// How long the broker keeps the session (and queued commands) while the agent is away.
    #[serde(default = "default_session_expiry")]
    pub session_expiry_s: u32,
    /// Most unacknowledged commands the broker may send at once (MQTT 5 receive maximum).
    #[serde(default = "default_receive_maximum")]
    pub receive_maximum: u16,
    /// Most unacknowledged replies, DLQ entries and status messages the agent keeps in flight.
    #[serde(default = "default_outgoing_inflight")]
    pub outgoing_inflight: u16,
    /// Reconnect delays in seconds, each jittered; the last repeats.
    #[serde(default = "default_backoff")]
    pub backoff_s: Vec<u32>,
    /// Seconds between retained health updates on the status topic (besides birth and changes).
    #[serde(default = "default_status_interval")]
    pub status_interval_s: u32,
}

/// `[admission]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionSection {
    /// Allowed clock difference to senders, ms.
    pub clock_skew_ms: u64,
    /// Replay window width per sender, 1..=1024 (1 = strict order); also how many replies per sender are
    /// kept for redeliveries.
    pub replay_window: u16,
    /// Most nonces remembered.
    pub nonce_cache: usize,
}

impl Default for AdmissionSection {
    fn default() -> Self {
        AdmissionSection {
            clock_skew_ms: 30_000,
            replay_window: if_protocol::replay::DEFAULT_WIDTH,
            nonce_cache: 100_000,
        }
    }
}

/// `[witness]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSection {
    /// The redb file.
    pub path: PathBuf,
    /// redb page cache, MiB (redb's own default is 1 GiB). The tables are written in folds beside the
    /// command path and read by queries and proofs: 1 MiB holds the pages a fold touches, and a 4 MiB
    /// cache left about 2 MiB more resident after a flood (docs/BENCHMARKS.md).
    pub cache_mb: u32,
    /// Sign a checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ...or after this many seconds with new records.
    pub checkpoint_interval_s: u32,
    /// REJECTED records written one by one per second; more are counted into one record per second.
    pub rejected_per_s: u32,
    /// Records the archive acknowledged may be pruned here, keeping at least the newest this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_records: Option<u64>,
    /// ...and at least those of the last this many days. Neither set: nothing is pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
    /// The witness file's budget, MiB: warnings from 80 %, commands refused (STORAGE_FULL) at 100 %
    /// until pruning makes room. Absent: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_budget_mb: Option<u64>,
    /// Free space, MiB, the log leaves its file system: the same warnings and refusal.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
}

fn default_min_free_mb() -> u64 {
    64
}

impl Default for WitnessSection {
    fn default() -> Self {
        WitnessSection {
            path: PathBuf::from("data/witness.redb"),
            cache_mb: 1,
            checkpoint_every: 1000,
            checkpoint_interval_s: 60,
            rejected_per_s: 20,
            keep_records: None,
            keep_days: None,
            disk_budget_mb: None,
            min_free_mb: default_min_free_mb(),
        }
    }
}

/// `[trust]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// The signed trust root provisioned at install. Read at every start: a newer version in the file
    /// replaces the one in the log only by the rotation rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// A directory of signed manifests (`*.toml`) offered at every start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<PathBuf>,
    /// Manifests that may be loaded: `if://capability/NAME@MAJOR.MINOR.PATCH`, optionally pinned with
    /// `#sha256:HEX` (the SHA-256 of the manifest's canonical bytes, as `ifctl manifest sign` prints it).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Start with no trust root on purpose (`root` unset): only the built-in capabilities run, and a
    /// root is installed by setting `root` and restarting (a first root is never taken from the network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_root: bool,
    /// `allow`, parsed once when the file is read ([`Config::problems`] names every entry that does not).
    #[serde(skip)]
    pub allowed: Vec<Allowed>,
}

impl TrustSection {
    /// Where policy comes from at start, for [`crate::policy::load::at_start`].
    pub fn sources(&self) -> Sources<'_> {
        Sources { root: self.root.as_deref(), manifests: self.manifests.as_deref(), allowed: &self.allowed }
    }
}

fn default_org() -> String {
    "local".into()
}
fn default_keep_alive() -> u16 {
    10
}
fn default_session_expiry() -> u32 {
    86_400
}
fn default_receive_maximum() -> u16 {
    256
}

fn default_status_interval() -> u32 {
    30
}

fn default_outgoing_inflight() -> u16 {
    512
}
fn default_backoff() -> Vec<u32> {
    vec![1, 2, 5, 10, 30]
}
