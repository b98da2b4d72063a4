//! The agent's own identity on the broker, watched from its status topic and its session: the state
//! machine, without I/O (the MQTT driver feeds it and acts on what it answers).
//!
//! Anyone on the broker may publish on the agent's status topic, and a retained message there is what
//! every operator sees. The agent subscribes to its own topic and answers:
//! - a message that is not its own signed status (forged, or garbage): by publishing its birth again,
//!   so the genuine status is the retained one a moment later;
//! - its own `offline` of an earlier session or boot (a late Will): by its birth again, as before;
//! - its own signed `online` with another process's `instance`: a second process runs with this
//!   agent's key and name (a copied configuration). So is a broker that hands this agent's MQTT session
//!   to another client (`SESSION_TAKEN_OVER`) twice within a minute. Either is a conflict: the agent says
//!   so loudly (log, status, a SECURITY record) and, rather than take the session back every second, it
//!   waits the longest reconnect delay before each reconnect while the conflict lasts. A conflict ends
//!   after [`QUIET_MS`] with no new sign of the other process. A signed status of an earlier boot, or an
//!   old one, with another instance is a replay, not a second process: it is answered with the birth.
//!
//! Births answer at most one per second however many messages arrive, and past [`CHECKS_PER_S`]
//! messages a second the rest are not even verified: a flood on the status topic costs the agent a
//! bounded amount of work and one retained publish per second.

use std::collections::VecDeque;

use if_protocol::messages::{State, Status};

/// Status messages verified per second; past that, each only asks for a (coalesced) birth.
pub const CHECKS_PER_S: u32 = 50;
/// Takeovers within this window that make a conflict.
const TAKEOVER_WINDOW_MS: u64 = 60_000;
/// A status of another process older than this is no sign that it is alive.
const FRESH_MS: u64 = 120_000;
/// A conflict with no new sign of the other process for this long is over.
pub const QUIET_MS: u64 = 300_000;

/// What the driver should do about a status message or a takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Publish the birth again (coalesced to one per second by the caller).
    Rebirth(&'static str),
    /// Another process holds this identity: report it, and keep the long reconnect delay.
    Conflict(Conflict),
}

/// A second process with this agent's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// How it was noticed.
    pub how: String,
    /// The other process's `instance`, when its status was seen.
    pub other: Option<String>,
}

/// The watch over the status topic and the session.
#[derive(Debug)]
pub struct Watch {
    instance: String,
    second: u64,
    checked: u32,
    takeovers: VecDeque<u64>,
    /// The conflict in force, if any.
    pub conflict: Option<Conflict>,
    last_sign: Option<u64>,
}

/// What a status message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'a> {
    /// Not this agent's signed status.
    NotOwn,
    /// This agent's own signed status (the object, without its signature).
    Own(&'a Status),
}

impl Watch {
    /// The watch of the process whose random instance id is `instance`.
    pub fn new(instance: String) -> Self {
        Watch { instance, second: 0, checked: 0, takeovers: VecDeque::new(), conflict: None, last_sign: None }
    }

    /// Whether the next status message at `now_ms` is to be verified; past [`CHECKS_PER_S`] in a second
    /// it only asks for a birth.
    pub fn should_check(&mut self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.checked = 0;
        }
        self.checked += 1;
        self.checked <= CHECKS_PER_S
    }

    /// Decides about a status message at `now_ms`; `current` is (boot, session) of this process.
    pub fn status(&mut self, seen: Seen<'_>, current: (u64, u64), now_ms: u64) -> Action {
        let status = match seen {
            Seen::NotOwn => return Action::Rebirth("a status this agent did not sign replaced its own"),
            Seen::Own(v) => v,
        };
        let instance = status.instance.as_deref().unwrap_or_default();
        if status.state == State::Online && !instance.is_empty() && instance != self.instance {
            // Only a status of this boot or a later one, and fresh, is another live process; an older
            // one (a replay of an earlier run's retained status) is only put right.
            let fresh = now_ms.saturating_sub(status.at_ms.unwrap_or(0)) <= FRESH_MS;
            if status.boot < current.0 || !fresh {
                return Action::Rebirth("an old status of an earlier run replaced the status");
            }
            let c = Conflict {
                how: "another process published this agent's signed status".into(),
                other: Some(instance.to_string()),
            };
            return self.raise(c, now_ms);
        }
        let mine = instance.is_empty() || instance == self.instance;
        if status.state == State::Offline && (status.of_session() != current || !mine) {
            return Action::Rebirth("a late Will of an earlier session replaced the status");
        }
        Action::None
    }

    /// The broker gave this agent's session to another client at `now_ms`.
    pub fn taken_over(&mut self, now_ms: u64) -> Action {
        self.takeovers.push_back(now_ms);
        while self.takeovers.front().is_some_and(|t| now_ms.saturating_sub(*t) > TAKEOVER_WINDOW_MS) {
            self.takeovers.pop_front();
        }
        if self.takeovers.len() >= 2 {
            let how = format!(
                "the broker gave this agent's session to another client {} times in a minute",
                self.takeovers.len()
            );
            return self.raise(Conflict { how, other: None }, now_ms);
        }
        Action::None
    }

    /// Whether a conflict is in force at `now_ms`: one with no new sign of the other process for
    /// [`QUIET_MS`] is over (it was stopped, or it was someone replaying), and the agent reconnects as usual.
    pub fn in_conflict(&mut self, now_ms: u64) -> bool {
        if self.last_sign.is_some_and(|t| now_ms.saturating_sub(t) > QUIET_MS) {
            self.conflict = None;
            self.last_sign = None;
        }
        self.conflict.is_some()
    }

    fn raise(&mut self, c: Conflict, now_ms: u64) -> Action {
        let first = !self.in_conflict(now_ms);
        self.last_sign = Some(now_ms);
        let other = c.other.clone().or_else(|| self.conflict.as_ref().and_then(|old| old.other.clone()));
        self.conflict = Some(Conflict { other, ..c.clone() });
        if first { Action::Conflict(c) } else { Action::None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn status(state: &str, boot: u64, session: u64, instance: &str) -> Status {
        let state = if state == "online" { State::Online } else { State::Offline };
        let mut s = Status::new(state, "a/b", boot, session);
        s.instance = (!instance.is_empty()).then(|| instance.to_string());
        s.at_ms = Some(NOW);
        s
    }

    #[test]
    fn forged_and_late_statuses_ask_for_a_birth_and_its_own_do_not() {
        let mut w = Watch::new("aa".into());
        assert!(matches!(w.status(Seen::NotOwn, (3, 1), NOW), Action::Rebirth(_)));
        assert_eq!(w.status(Seen::Own(&status("online", 3, 1, "aa")), (3, 1), NOW), Action::None);
        assert_eq!(w.status(Seen::Own(&status("offline", 3, 1, "aa")), (3, 1), NOW), Action::None, "its own end");
        assert!(matches!(w.status(Seen::Own(&status("offline", 2, 4, "")), (3, 1), NOW), Action::Rebirth(_)));
        assert!(matches!(w.status(Seen::Own(&status("offline", 3, 0, "aa")), (3, 1), NOW), Action::Rebirth(_)));
        assert!(
            matches!(w.status(Seen::Own(&status("offline", 3, 1, "bb")), (3, 1), NOW), Action::Rebirth(_)),
            "another process's Will"
        );
        assert!(
            matches!(w.status(Seen::Own(&status("online", 2, 1, "bb")), (3, 1), NOW), Action::Rebirth(_)),
            "a replayed status of an earlier boot is put right, not taken for a second process"
        );
        let mut old = status("online", 3, 1, "bb");
        old.at_ms = Some(NOW - 600_000);
        assert!(matches!(w.status(Seen::Own(&old), (3, 1), NOW), Action::Rebirth(_)), "an old one too");
        assert!(w.conflict.is_none());
    }

    #[test]
    fn another_instance_or_repeated_takeovers_are_a_conflict_reported_once() {
        let mut w = Watch::new("aa".into());
        let Action::Conflict(c) = w.status(Seen::Own(&status("online", 3, 1, "bb")), (3, 1), NOW) else {
            panic!("a conflict")
        };
        assert_eq!(c.other.as_deref(), Some("bb"));
        assert_eq!(w.status(Seen::Own(&status("online", 3, 1, "bb")), (3, 1), NOW), Action::None, "said once");
        assert!(w.in_conflict(NOW + QUIET_MS));
        assert!(!w.in_conflict(NOW + QUIET_MS + 1), "over after a quiet while");
        let mut w = Watch::new("aa".into());
        assert_eq!(w.taken_over(1_000), Action::None, "one takeover can be a broker restart or a reconnect race");
        assert_eq!(w.taken_over(70_000), Action::None, "a minute apart");
        assert!(matches!(w.taken_over(75_000), Action::Conflict(_)));
        assert!(w.conflict.is_some());
    }

    #[test]
    fn a_flood_is_checked_only_so_far_each_second() {
        let mut w = Watch::new("aa".into());
        let checked = (0..1000).filter(|_| w.should_check(5_000)).count();
        assert_eq!(checked, CHECKS_PER_S as usize);
        assert!(w.should_check(6_000), "a new second");
    }
}
