//! The retained status on `status`: the birth (`online`, refreshed periodically) and the Will
//! (`offline`), and the rule that orders them.
//!
//! A status names the MQTT session it belongs to (`boot`, `session`). The newest session wins, and an
//! `offline` counts only for its own session or a newer one: a Will the broker sends late, after the
//! agent's next birth, never marks a live agent offline ([`Status::supersedes`]).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Serving (the birth and its refreshes).
    Online,
    /// Gone (the Will, or a clean stop).
    Offline,
}

/// An agent's status. Everything but the state and the session is a figure a reader may not find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Online or offline.
    pub state: State,
    /// `site/agent`.
    #[serde(default)]
    pub agent: String,
    /// The agent's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The boot counter.
    #[serde(default)]
    pub boot: u64,
    /// The MQTT session of this boot, from 1.
    #[serde(default)]
    pub session: u64,
    /// A random number of the process, in hex: two processes with one identity are told apart by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// When it was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// Seconds between periodic statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u64>,
    /// Seconds since the agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// Records in the witness log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_size: Option<u64>,
    /// The first record the witness log still holds here (those before were archived and pruned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_from: Option<u64>,
    /// Commands executed this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed: Option<u64>,
    /// Inputs refused this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
    /// Checkpoints upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<Anchoring>,
    /// Another process using this identity, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<Conflict>,
    /// The full check of the witness log last asked for this run (`edge.witness`, action `verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_check: Option<LogCheck>,
    /// The witness file against its disk budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
    /// What the agent trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Spending against each provider's budget this period.
    #[serde(default)]
    pub budgets: Vec<Budget>,
    /// Each device's circuit breaker.
    #[serde(default)]
    pub breakers: Vec<Breaker>,
}

/// Checkpoints upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Anchoring {
    /// The largest checkpoint the upstream acknowledged.
    pub acked: u64,
    /// Checkpoints signed and not yet acknowledged.
    pub pending: u64,
    /// Records whose entry bundles the archive acknowledged, from the first.
    #[serde(default)]
    pub archived: u64,
}

/// A full check of the witness log, run beside the serving agent on a snapshot of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCheck {
    /// `running`, `passed` or `failed`.
    pub state: LogCheckState,
    /// Records in the snapshot checked.
    pub size: u64,
    /// Records checked so far.
    pub checked: u64,
    /// When it started.
    pub started_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// The record where it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How far a [`LogCheck`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogCheckState {
    /// Still reading.
    Running,
    /// Every record, node and checkpoint matched.
    Passed,
    /// A fault was found (the index and error say where).
    Failed,
}

/// The witness file against its disk budget and its file system's floor of free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// `ok`, `warning` (80 % of the budget, or under twice the floor free) or `full` (commands refused).
    pub state: DiskState,
    /// The file's size, MiB.
    pub file_mb: u64,
    /// Free space on its file system, MiB.
    pub free_mb: u64,
    /// The budget, MiB (none: only the floor applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_mb: Option<u64>,
    /// The floor, MiB.
    pub floor_mb: u64,
}

/// How near the witness file is to its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskState {
    /// Room to spare.
    Ok,
    /// Near a limit: archive and prune, or make room.
    Warning,
    /// At a limit: nothing is written, so nothing runs.
    Full,
}

/// A second process with this agent's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Always `IdentityConflict`.
    pub code: ErrorCode,
    /// How it was noticed.
    pub how: String,
    /// The other process's instance, when its status was seen.
    pub other_instance: Option<String>,
    /// Since when.
    pub since_ms: u64,
}

/// What the agent trusts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// The trust root's version, once there is one.
    pub trust_root: Option<u32>,
    /// The capability manifests in force.
    pub manifests: Vec<Manifest>,
    /// Active talents.
    pub talents: u64,
    /// Grants.
    pub grants: u64,
    /// The latest refused policy documents, oldest first.
    pub refused: Vec<Refused>,
}

/// A capability manifest in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The capability id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// The driver that serves it.
    pub driver: String,
    /// Its actions.
    pub actions: Vec<String>,
}

/// A refused policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// Where it came from (a file, the policy topic).
    pub source: String,
    /// Why, as a code...
    pub code: ErrorCode,
    /// ...its name...
    pub name: String,
    /// ...and in words.
    pub message: String,
}

/// Spending against one provider's budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// The provider.
    pub provider: String,
    /// Units allowed per period.
    pub units: u64,
    /// The period.
    pub period_s: u64,
    /// Units spent this period.
    pub spent: u64,
}

/// One device's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    /// The capability.
    pub capability: String,
    /// `closed`, `open` or `half-open`.
    pub state: String,
}

/// Seconds between statuses a reader assumes when a status does not say.
pub const DEFAULT_INTERVAL_S: u64 = 30;

impl Status {
    /// A status of `state` for `agent` in session (`boot`, `session`), with no figures.
    pub fn new(state: State, agent: &str, boot: u64, session: u64) -> Self {
        Status {
            state,
            agent: agent.into(),
            version: None,
            boot,
            session,
            instance: None,
            at_ms: None,
            interval_s: None,
            uptime_s: None,
            log_size: None,
            log_from: None,
            disk: None,
            executed: None,
            rejected: None,
            anchors: None,
            conflict: None,
            log_check: None,
            policy: None,
            budgets: Vec::new(),
            breakers: Vec::new(),
        }
    }

    /// The session it belongs to; later sessions compare greater.
    pub fn of_session(&self) -> (u64, u64) {
        (self.boot, self.session)
    }

    /// Whether this status replaces `older` as what is known of the agent: a later session does, and
    /// within one session its `offline` ends it and a newer `online` refreshes an `online`. An `online`
    /// never undoes its own session's `offline`, and nothing of an earlier session replaces a later one.
    pub fn supersedes(&self, older: &Status) -> bool {
        let (new, old) = (self.of_session(), older.of_session());
        new > old || (new == old && (self.state == State::Offline || older.state == State::Online))
    }

    /// Whether an `online` is older than three of its status intervals (plus a margin for clocks) at
    /// `now_ms`: the agent went quiet without its Will, or someone replayed an old retained status.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        let interval_ms = self.interval_s.unwrap_or(DEFAULT_INTERVAL_S).saturating_mul(1000);
        let at = self.at_ms.unwrap_or(0);
        self.state == State::Online && now_ms.saturating_sub(at) > interval_ms.saturating_mul(3).saturating_add(10_000)
    }

    /// The budget closest to its limit, if any.
    pub fn fullest_budget(&self) -> Option<&Budget> {
        let used = |b: &Budget| b.spent as f64 / b.units.max(1) as f64;
        self.budgets.iter().max_by(|a, b| used(a).total_cmp(&used(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(state: State, boot: u64, session: u64) -> Status {
        Status::new(state, "a/b", boot, session)
    }

    #[test]
    fn a_late_will_never_marks_a_newer_session_offline() {
        use State::{Offline, Online};
        let mut known = s(Online, 2, 1);
        let mut fold = |next: Status| {
            if next.supersedes(&known) {
                known = next;
            }
            known.state
        };
        assert_eq!(fold(s(Offline, 1, 4)), Online, "an earlier boot's Will");
        fold(s(Online, 2, 2));
        assert_eq!(fold(s(Offline, 2, 1)), Online, "an earlier session's Will");
        assert_eq!(fold(s(Offline, 2, 2)), Offline, "its own session's Will");
        assert_eq!(fold(s(Online, 2, 2)), Offline, "a stale health update does not undo it");
        assert_eq!(fold(s(Online, 3, 1)), Online, "the next boot");
    }

    #[test]
    fn an_online_goes_stale_after_three_intervals_and_an_offline_never() {
        let mut on = s(State::Online, 1, 1);
        on.at_ms = Some(1_000_000);
        on.interval_s = Some(10);
        assert!(!on.is_stale(1_000_000 + 40_000));
        assert!(on.is_stale(1_000_000 + 40_001));
        let mut off = on.clone();
        off.state = State::Offline;
        assert!(!off.is_stale(u64::MAX));
    }

    #[test]
    fn the_fullest_budget_is_the_one_closest_to_its_limit() {
        let b = |provider: &str, units, spent| Budget { provider: provider.into(), units, period_s: 60, spent };
        let mut st = s(State::Online, 1, 1);
        assert_eq!(st.fullest_budget(), None);
        st.budgets = alloc::vec![b("cam", 100, 30), b("vmix", 10, 9), b("none", 0, 0)];
        assert_eq!(st.fullest_budget().map(|b| b.provider.as_str()), Some("vmix"));
    }

    #[test]
    fn a_status_with_unknown_fields_or_few_figures_still_reads() {
        let st: Status =
            serde_json::from_str(r#"{"state":"offline","boot":3,"session":2,"new_thing":1}"#).expect("reads");
        assert_eq!((st.state, st.of_session(), st.log_size), (State::Offline, (3, 2), None));
        assert!(serde_json::from_str::<Status>(r#"{"state":"maybe"}"#).is_err());
    }
}
