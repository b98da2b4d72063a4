//! The agent's configuration file (`edge.toml`): typed, with unknown keys refused.
//!
//! Every error names the file and the key (`edge.toml: mqtt.keep_alive_s (line 8): invalid type ...`) and
//! carries IF_ERR_503 CONFIG_INVALID. Relative paths in the file are relative to the file's directory, so
//! a config directory can be moved as a whole. The file holds no secrets, only paths to key files.
//!
//! One file, though long: `edge.toml` is one contract (its sections, their defaults, the rules types
//! cannot express and how an error finds its key and line), read in one place; a third of it is the
//! tests of that contract.

use std::path::{Path, PathBuf};

use if_protocol::{ErrorCode, IfError};
use serde::{Deserialize, Serialize};

use crate::mqtt::BrokerAddr;
use crate::policy::load::Sources;
use crate::policy::manifests::Allowed;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this agent is.
    pub agent: AgentSection,
    /// The control broker.
    pub mqtt: MqttSection,
    /// Admission of envelopes.
    #[serde(default)]
    pub admission: AdmissionSection,
    /// The witness log.
    #[serde(default)]
    pub witness: WitnessSection,
    /// The trust root, signed manifests and the allow-list.
    #[serde(default)]
    pub trust: TrustSection,
    /// Where drivers' secrets are kept.
    #[serde(default)]
    pub vault: VaultSection,
    /// Spending allowances per provider.
    #[serde(default, rename = "budget", skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetEntry>,
    /// Where anchors go.
    #[serde(default)]
    pub uplink: UplinkSection,
}

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
}

impl Default for UplinkSection {
    fn default() -> Self {
        UplinkSection { broker: None, tls: None, republish_s: default_republish(), collector_key: None }
    }
}

fn default_republish() -> u32 {
    10
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
    /// redb page cache, MiB (redb's own default is 1 GiB; the log is append-mostly and needs little).
    pub cache_mb: u32,
    /// Sign a checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ...or after this many seconds with new records.
    pub checkpoint_interval_s: u32,
    /// REJECTED records written one by one per second; more are counted into one record per second.
    pub rejected_per_s: u32,
}

impl Default for WitnessSection {
    fn default() -> Self {
        WitnessSection {
            path: PathBuf::from("data/witness.redb"),
            cache_mb: 4,
            checkpoint_every: 1000,
            checkpoint_interval_s: 60,
            rejected_per_s: 20,
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

/// A loaded config with paths resolved against its file's directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file it came from.
    pub file: PathBuf,
    /// The content, paths made absolute.
    pub config: Config,
}

/// The top-level sections a config file may have.
const SECTIONS: &[&str] = &["agent", "mqtt", "admission", "witness", "trust", "vault", "budget", "uplink"];

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    /// The file.
    pub file: PathBuf,
    /// One line each: `key (line N): what is wrong`.
    pub list: Vec<String>,
}

impl Problems {
    /// The first problem as an error, saying how many more there are.
    pub fn to_error(&self) -> IfError {
        let first = self.list.first().map_or("invalid", String::as_str);
        match self.list.len() {
            0 | 1 => invalid(&self.file, first),
            n => invalid(&self.file, format_args!("{first} (and {} more: if-edge check-config lists them)", n - 1)),
        }
    }
}

/// One section read on its own from the whole text, so error positions stay those of the file.
fn part<T: serde::de::DeserializeOwned>(text: &str, problems: &mut Vec<String>) -> Option<T> {
    toml::from_str(text).map_err(|e| problems.push(describe(text, &e))).ok()
}

#[derive(Deserialize)]
struct AgentPart {
    agent: AgentSection,
}

#[derive(Deserialize)]
struct MqttPart {
    mqtt: MqttSection,
}

#[derive(Deserialize)]
struct AdmissionPart {
    #[serde(default)]
    admission: AdmissionSection,
}

#[derive(Deserialize)]
struct WitnessPart {
    #[serde(default)]
    witness: WitnessSection,
}

#[derive(Deserialize)]
struct VaultPart {
    #[serde(default)]
    vault: VaultSection,
}

#[derive(Deserialize)]
struct BudgetPart {
    #[serde(default)]
    budget: Vec<BudgetEntry>,
}

#[derive(Deserialize)]
struct UplinkPart {
    #[serde(default)]
    uplink: UplinkSection,
}

#[derive(Deserialize)]
struct TrustPart {
    #[serde(default)]
    trust: TrustSection,
}

fn invalid(file: &Path, what: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::ConfigInvalid, format_args!("{}: {what}", file.display()))
}

impl Config {
    /// Reads, parses, checks and resolves `file`.
    pub fn load(file: &Path) -> Result<Loaded, IfError> {
        let text = crate::files::read_text(file, crate::files::DOC_MAX).map_err(|e| invalid(file, e))?;
        Config::from_text(file, &text).map_err(|p| p.to_error())
    }

    /// Parses and checks `text` of `file`, collecting every problem, and resolves its paths.
    pub fn from_text(file: &Path, text: &str) -> Result<Loaded, Problems> {
        let mut config = Config::problems(file, text)?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve(&base);
        Ok(Loaded { file: file.to_path_buf(), config })
    }

    /// Parses and checks `text` (named `file` in errors), without touching paths. The error carries the
    /// first problem and how many more there are; [`Config::problems`] lists them all.
    pub fn parse(file: &Path, text: &str) -> Result<Config, IfError> {
        Config::problems(file, text).map_err(|p| p.to_error())
    }

    /// Parses and checks `text`, collecting every problem: each section is read on its own, so a
    /// mistake in one does not hide those in the others, and every value rule is applied.
    pub fn problems(file: &Path, text: &str) -> Result<Config, Problems> {
        let fail = |list: Vec<String>| Problems { file: file.to_path_buf(), list };
        let table: toml::Table = toml::from_str(text).map_err(|e| fail(vec![describe(text, &e)]))?;
        let mut list: Vec<String> =
            table.keys().filter(|k| !SECTIONS.contains(&k.as_str())).map(|k| format!("{k}: unknown section")).collect();
        let agent = part::<AgentPart>(text, &mut list).map(|p| p.agent);
        let mqtt = part::<MqttPart>(text, &mut list).map(|p| p.mqtt);
        let admission = part::<AdmissionPart>(text, &mut list).map(|p| p.admission);
        let witness = part::<WitnessPart>(text, &mut list).map(|p| p.witness);
        let trust = part::<TrustPart>(text, &mut list).map(|p| p.trust);
        let vault = part::<VaultPart>(text, &mut list).map(|p| p.vault);
        let budgets = part::<BudgetPart>(text, &mut list).map(|p| p.budget);
        let uplink = part::<UplinkPart>(text, &mut list).map(|p| p.uplink);
        let (
            Some(agent),
            Some(mqtt),
            Some(admission),
            Some(witness),
            Some(trust),
            Some(vault),
            Some(budgets),
            Some(uplink),
        ) = (agent, mqtt, admission, witness, trust, vault, budgets, uplink)
        else {
            return Err(fail(list));
        };
        let mut config = Config { agent, mqtt, admission, witness, trust, vault, budgets, uplink };
        list.extend(config.rule_problems().into_iter().map(|(key, what)| format!("{key}: {what}")));
        if !list.is_empty() {
            return Err(fail(list));
        }
        config.trust.allowed = config.trust.allow.iter().filter_map(|a| Allowed::parse(a).ok()).collect();
        Ok(config)
    }

    /// The rules types cannot express, as (key, problem), all of them.
    fn rule_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, what: &str| out.push((key.to_string(), what.to_string()));
        for (key, v) in
            [("agent.site", &self.agent.site), ("agent.name", &self.agent.name), ("agent.org", &self.agent.org)]
        {
            if let Err(e) = if_protocol::envelope::check_token(key, v, 64) {
                bad(key, e.detail());
            }
        }
        for (at, url, tls) in [
            ("mqtt", Some(&self.mqtt.broker), &self.mqtt.tls),
            ("uplink", self.uplink.broker.as_ref(), &self.uplink.tls),
        ] {
            match (url.map(|u| BrokerAddr::parse(u)), tls) {
                (Some(Err(e)), _) => bad(&format!("{at}.broker"), &e),
                (Some(Ok(a)), None) if a.tls => {
                    bad(&format!("{at}.tls"), "an mqtts:// broker needs [tls] with ca = FILE")
                }
                (Some(Ok(a)), Some(_)) if !a.tls => bad(&format!("{at}.tls"), "is set, but the broker is mqtt://"),
                (None, Some(_)) => bad("uplink.tls", "is set, but uplink.broker is not"),
                _ => {}
            }
            for (key, what) in tls.iter().flat_map(|t| t.problems(&format!("{at}.tls"))) {
                bad(&key, &what);
            }
        }
        if self.uplink.republish_s == 0 {
            bad("uplink.republish_s", "must be at least 1");
        }
        if self.mqtt.keep_alive_s < 5 {
            bad("mqtt.keep_alive_s", "must be at least 5");
        }
        if self.mqtt.receive_maximum == 0 {
            bad("mqtt.receive_maximum", "must be at least 1");
        }
        if self.mqtt.status_interval_s == 0 {
            bad("mqtt.status_interval_s", "must be at least 1");
        }
        if self.mqtt.outgoing_inflight == 0 {
            bad("mqtt.outgoing_inflight", "must be at least 1");
        }
        if self.mqtt.backoff_s.is_empty() || self.mqtt.backoff_s.contains(&0) {
            bad("mqtt.backoff_s", "must list at least one delay, each at least 1 s");
        }
        let width = self.admission.replay_window;
        if width == 0 || width > if_protocol::replay::MAX_WIDTH {
            bad("admission.replay_window", "must be 1..=1024");
        }
        if self.admission.nonce_cache == 0 {
            bad("admission.nonce_cache", "must be at least 1");
        }
        for (key, v) in [
            ("witness.cache_mb", u64::from(self.witness.cache_mb)),
            ("witness.checkpoint_every", self.witness.checkpoint_every),
            ("witness.checkpoint_interval_s", u64::from(self.witness.checkpoint_interval_s)),
        ] {
            if v == 0 {
                bad(key, "must be at least 1");
            }
        }
        for (i, a) in self.trust.allow.iter().enumerate() {
            if let Err(why) = Allowed::parse(a) {
                bad(&format!("trust.allow[{i}]"), &why);
            }
        }
        let mut providers = std::collections::HashSet::new();
        for (i, b) in self.budgets.iter().enumerate() {
            if if_protocol::envelope::capability_name(&b.provider).is_err() {
                bad(&format!("budget[{i}].provider"), "must read if://capability/NAME");
            }
            if !providers.insert(b.provider.as_str()) {
                bad(&format!("budget[{i}].provider"), "has a budget already");
            }
            if b.period_s == 0 {
                bad(&format!("budget[{i}].period_s"), "must be at least 1");
            }
        }
        out
    }

    /// The budgets by provider.
    pub fn budget_limits(&self) -> std::collections::HashMap<String, crate::budget::Limit> {
        self.budgets
            .iter()
            .map(|b| (b.provider.clone(), crate::budget::Limit { units: b.units, period_s: b.period_s.max(1) }))
            .collect()
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.agent.key);
        abs(&mut self.witness.path);
        if let Some(p) = &mut self.trust.root {
            abs(p);
        }
        if let Some(p) = &mut self.trust.manifests {
            abs(p);
        }
        if let Some(p) = &mut self.vault.dir {
            abs(p);
        }
        if let Some(p) = &mut self.uplink.collector_key {
            abs(p);
        }
        for tls in [self.mqtt.tls.as_mut(), self.uplink.tls.as_mut()].into_iter().flatten() {
            tls.resolve(base);
        }
    }

    /// Every problem of the TLS files (missing, not PEM, a key others can read), one line each; paths
    /// must be resolved. The agent stops at the first, through [`Config::tls`].
    pub fn tls_problems(&self) -> Vec<String> {
        [("mqtt.tls", &self.mqtt.tls), ("uplink.tls", &self.uplink.tls)]
            .into_iter()
            .filter_map(|(at, files)| files.as_ref()?.load(at).err())
            .map(|e| e.detail().to_string())
            .collect()
    }

    /// The checked TLS settings of the control broker and of the uplink (each `None` for `mqtt://`);
    /// the uplink shares the control broker's when it has no broker of its own.
    pub fn tls(&self) -> Result<(Option<crate::tls::Tls>, Option<crate::tls::Tls>), IfError> {
        let control = self.mqtt.tls.as_ref().map(|t| t.load("mqtt.tls")).transpose()?;
        let uplink = match &self.uplink.broker {
            Some(_) => self.uplink.tls.as_ref().map(|t| t.load("uplink.tls")).transpose()?,
            None => control.clone(),
        };
        Ok((control, uplink))
    }

    /// The broker address (checked by [`Config::parse`]).
    pub fn broker(&self) -> BrokerAddr {
        BrokerAddr::parse(&self.mqtt.broker).unwrap_or(BrokerAddr { host: String::new(), port: 0, tls: false })
    }

    /// The broker anchors go to.
    pub fn uplink_broker(&self) -> BrokerAddr {
        self.uplink.broker.as_deref().and_then(|b| BrokerAddr::parse(b).ok()).unwrap_or_else(|| self.broker())
    }

    /// The control broker session's settings.
    pub fn session(&self) -> crate::mqtt::Session {
        let m = &self.mqtt;
        crate::mqtt::Session {
            client_id: self.client_id(),
            broker: self.broker(),
            keep_alive_s: m.keep_alive_s,
            session_expiry_s: m.session_expiry_s,
            receive_maximum: m.receive_maximum,
            outgoing_inflight: m.outgoing_inflight,
        }
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> String {
        self.mqtt.client_id.clone().unwrap_or_else(|| format!("if-edge-{}-{}", self.agent.site, self.agent.name))
    }

    /// The checkpoint origin and note key name.
    pub fn origin(&self) -> String {
        format!("{}/if-edge/{}.{}", self.agent.org, self.agent.site, self.agent.name)
    }

    /// The reconnect schedule.
    pub fn backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff::from_secs(&self.mqtt.backoff_s)
    }
}

/// One line: `key (line N): problem`, with the dotted key found from the error's position.
fn describe(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return message };
    let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
    match key_at(text, line_no) {
        Some(key) => format!("{key} (line {line_no}): {message}"),
        None => format!("line {line_no}: {message}"),
    }
}

/// The dotted key defined on `line_no`, prefixed with the table it is in.
fn key_at(text: &str, line_no: usize) -> Option<String> {
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if i + 1 == line_no {
            if t.starts_with('[') {
                return Some(table);
            }
            let key = t.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string())?;
            return Some(if table.is_empty() { key } else { format!("{table}.{key}") });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[agent]
site = "studio-a"
name = "edge-1"
key = "agent.key"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
"#;

    fn err(text: &str) -> String {
        Config::parse(Path::new("edge.toml"), text).expect_err("must fail").to_string()
    }

    #[test]
    fn a_minimal_file_gets_defaults() {
        let c = Config::parse(Path::new("edge.toml"), GOOD).expect("parses");
        assert_eq!(c.admission.replay_window, 1024);
        assert_eq!(c.mqtt.backoff_s, vec![1, 2, 5, 10, 30]);
        assert_eq!(c.client_id(), "if-edge-studio-a-edge-1");
        assert_eq!(c.broker(), BrokerAddr { host: "127.0.0.1".into(), port: 1883, tls: false });
        assert_eq!(c.origin(), "local/if-edge/studio-a.edge-1");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_table_and_line() {
        let e = err(&GOOD.replace("broker =", "brokr = \"x\"\nbroker ="));
        assert!(e.starts_with("IF_ERR_503 CONFIG_INVALID: edge.toml: mqtt.brokr (line 8)"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named() {
        let e = err(&GOOD.replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = \"ten\"\n"));
        assert!(e.contains("mqtt.keep_alive_s (line 8)"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        assert!(err(&GOOD.replace("mqtt://127.0.0.1:1883", "tcp://x")).contains("edge.toml: mqtt.broker: must start"));
        let e = err(&GOOD.replace("[mqtt]\n", "[mqtt]\nbackoff_s = []\n"));
        assert!(e.contains("mqtt.backoff_s"), "{e}");
        let e = err(&format!("{GOOD}\n[admission]\nclock_skew_ms = 1\nreplay_window = 0\nnonce_cache = 5\n"));
        assert!(e.contains("admission.replay_window"), "{e}");
        assert!(err(&GOOD.replace("edge-1", "edge 1")).contains("agent.name"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = GOOD
            .replace("name = \"edge-1\"", "name = \"edge 1\"")
            .replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = 1\nbackoff_s = [0]\n")
            + "\n[witness]\ncache_mb = \"big\"\n\n[trust]\nallow = [\"vmix@1\"]\n\n[talent]\nname = \"x\"\n";
        let p = Config::problems(Path::new("edge.toml"), &text).expect_err("problems");
        let all = p.list.join("\n");
        assert!(all.contains("talent: unknown section"), "{all}");
        assert!(all.contains("witness.cache_mb"), "{all}");
        // A type error in one section does not hide the rule problems found once every section reads.
        let rules = GOOD
            .replace("name = \"edge-1\"", "name = \"edge 1\"")
            .replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = 1\nbackoff_s = [0]\n")
            + "\n[trust]\nallow = [\"vmix@1\"]\n[admission]\nclock_skew_ms = 1\nreplay_window = 0\nnonce_cache = 0\n";
        let p = Config::problems(Path::new("edge.toml"), &rules).expect_err("problems");
        let keys: Vec<&str> = p.list.iter().map(|l| l.split(':').next().unwrap_or("")).collect();
        assert_eq!(
            keys,
            [
                "agent.name",
                "mqtt.keep_alive_s",
                "mqtt.backoff_s",
                "admission.replay_window",
                "admission.nonce_cache",
                "trust.allow[0]"
            ],
            "{:?}",
            p.list
        );
        let e = p.to_error().to_string();
        assert!(e.contains("agent.name") && e.contains("and 5 more"), "{e}");
    }

    #[test]
    fn a_missing_section_is_reported() {
        let e = err("[agent]\nsite = \"a\"\nname = \"b\"\nkey = \"k\"\n");
        assert!(e.contains("mqtt"), "{e}");
    }

    #[test]
    fn every_tls_file_problem_is_listed_with_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("edge.toml");
        let text = GOOD.replace("mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:8883")
            + "[mqtt.tls]\nca = \"missing-ca.pem\"\n[uplink]\nbroker = \"mqtts://fleet\"\n[uplink.tls]\nca = \"ca.pem\"\n";
        std::fs::write(&file, text).expect("write");
        std::fs::write(dir.path().join("ca.pem"), "no certificate here\n").expect("write");
        let problems = Config::load(&file).expect("the rules pass").config.tls_problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("mqtt.tls.ca (") && problems[0].contains("cannot read"), "{problems:?}");
        assert!(
            problems[1].starts_with("uplink.tls.ca (") && problems[1].contains("no PEM certificate"),
            "{problems:?}"
        );
    }

    #[test]
    fn tls_goes_with_mqtts_and_a_client_cert_with_its_key() {
        let with = |extra: &str| format!("{GOOD}{extra}");
        let e = err(&with("[uplink]\nbroker = \"mqtts://fleet:8883\"\n"));
        assert!(e.contains("uplink.tls: an mqtts:// broker needs [tls] with ca = FILE"), "{e}");
        let e = err(&with("[mqtt.tls]\nca = \"ca.pem\"\n"));
        assert!(e.contains("mqtt.tls: is set, but the broker is mqtt://"), "{e}");
        let e = err(&with("[uplink]\nbroker = \"mqtts://f\"\n[uplink.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\n"));
        assert!(e.contains("uplink.tls.key: a client certificate needs its key"), "{e}");
        let e = err(&with("[uplink.tls]\nca = \"ca.pem\"\n"));
        assert!(e.contains("uplink.tls: is set, but uplink.broker is not"), "{e}");
        let ok = with(
            "[uplink]\nbroker = \"mqtts://f\"\n[uplink.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n",
        );
        let c = Config::parse(Path::new("edge.toml"), &ok).expect("parses");
        assert!(c.uplink_broker().tls);
        assert_eq!(c.uplink.tls.and_then(|t| t.key), Some(PathBuf::from("c.key")));
    }
}
