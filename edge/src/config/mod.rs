//! The agent's configuration file (`edge.toml`): typed, with unknown keys refused.
//!
//! Every error names the file and the key (`edge.toml: mqtt.keep_alive_s (line 8): invalid type ...`) and
//! carries IF_ERR_503 CONFIG_INVALID. Relative paths in the file are relative to the file's directory, so
//! a config directory can be moved as a whole. The file holds no secrets, only paths to key files.
//!
//! `edge.toml` is one contract, read in one place: its sections and their defaults are in `sections.rs`;
//! reading it, the rules types cannot express, and how an error finds its key and line are here; the
//! tests of the contract are in `tests.rs`.

use std::path::{Path, PathBuf};

use if_protocol::{ErrorCode, IfError};
use serde::{Deserialize, Serialize};

use crate::mqtt::BrokerAddr;
use crate::policy::manifests::Allowed;

mod sections;
#[cfg(test)]
mod tests;

pub use sections::*;

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
