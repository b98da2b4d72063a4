//! `ifctl status`: every agent on a broker, online or offline, with its figures, from the retained
//! status each agent keeps on its `status` topic.
//!
//! For each agent the newest status wins by the contract's rule ([`Status::supersedes`]): a Will the
//! broker sends late, after the agent's next birth, never marks a live agent offline.
//!
//! Every status is signed by its agent's identity key for its own topic. Only a status that verifies
//! against the agent's pinned key counts; any other is shown as `forged` (it never hides or replaces a
//! genuine one) and makes the command fail once the table is printed. A genuine `online` whose time
//! (`at_ms`) is more than three status intervals old is shown as `stale`: the agent has gone quiet, or
//! someone replayed an old retained status.

use std::collections::BTreeMap;
use std::time::Duration;

use if_protocol::messages::{State, Status};
use if_protocol::topics::{self, Kind};
use if_protocol::{ErrorCode, IfError};

use crate::retained::Checked;
use serde_json::Value;

/// Folds one status message into what is known of its agent.
pub fn fold(known: &mut BTreeMap<String, Status>, agent: &str, status: Status) {
    if known.get(agent).is_none_or(|old| status.supersedes(old)) {
        known.insert(agent.to_string(), status);
    }
}

/// What the status topics said, checked.
#[derive(Debug, Default)]
pub struct Statuses {
    /// The newest genuine status of each agent (`site/agent`).
    pub known: BTreeMap<String, Status>,
    /// Agents with status messages that did not verify against their pinned key, and how many.
    pub forged: BTreeMap<String, usize>,
    /// Agents with no pinned key, whose statuses cannot be checked (and are not shown).
    pub unpinned: std::collections::BTreeSet<String>,
    /// Agents whose genuine status this ifctl cannot read (a newer agent's), with why.
    pub unreadable: BTreeMap<String, String>,
}

/// The pinned key of an agent (site, name), if there is one.
pub type Keys<'a> = &'a dyn Fn(&str, &str) -> Option<ed25519_dalek::VerifyingKey>;

/// The status on `topic` checked against its agent's key in `keys` (`None`: no key is pinned for it);
/// the agent's name either way.
fn check(keys: Keys<'_>, topic: &str, payload: &[u8]) -> (String, Option<Checked<Status>>) {
    let of = topics::agent_of(topic, Kind::Status);
    let agent = of.map_or_else(|| topic.to_string(), |(site, name)| format!("{site}/{name}"));
    let checked = of.and_then(|(site, name)| keys(site, name)).map(|key| crate::retained::check(&key, topic, payload));
    (agent, checked)
}

/// Collects the retained statuses (and any that arrive within `wait`) for `site` (`+`: every site),
/// each checked against its agent's pinned key in `keys`.
pub async fn collect(
    broker: &str,
    tls: Option<&if_edge::tls::Tls>,
    site: &str,
    wait: Duration,
    keys: Keys<'_>,
) -> Result<Statuses, IfError> {
    let mut out = Statuses::default();
    crate::retained::listen(
        broker,
        tls,
        "status",
        topics::every(site, Kind::Status),
        wait,
        |topic, payload| match check(keys, topic, payload) {
            (agent, Some(Checked::Genuine(v))) => fold(&mut out.known, &agent, v),
            (agent, Some(Checked::Forged)) => *out.forged.entry(agent).or_insert(0) += 1,
            (agent, None) => {
                out.unpinned.insert(agent);
            }
            (agent, Some(Checked::Unreadable(why))) => {
                out.unreadable.insert(agent, why);
            }
        },
    )
    .await?;
    Ok(out)
}

/// The error when any status did not verify, after the table is shown.
pub fn forged_error(statuses: &Statuses) -> Result<(), IfError> {
    if statuses.forged.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = statuses.forged.iter().map(|(a, n)| format!("{a} ({n})")).collect();
    Err(IfError::format(
        ErrorCode::InvalidSignature,
        format_args!("status messages not signed by the agent's pinned key were ignored: {}", names.join(", ")),
    ))
}

/// Prints one line per agent, or a JSON array (each row with `verified` and `stale`).
pub fn print(statuses: &Statuses, json: bool) {
    let now_ms = if_edge::clock::Clock::system_ms();
    let known = &statuses.known;
    if json {
        let mut rows: Vec<Value> = known
            .iter()
            .map(|(agent, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["agent"] = Value::String(agent.clone());
                v["verified"] = Value::Bool(true);
                v["stale"] = Value::Bool(s.is_stale(now_ms));
                v
            })
            .collect();
        for (agent, n) in statuses.forged.iter().filter(|(a, _)| !known.contains_key(*a)) {
            rows.push(serde_json::json!({ "agent": agent, "state": "forged", "verified": false, "forged": n }));
        }
        for agent in &statuses.unpinned {
            rows.push(serde_json::json!({ "agent": agent, "state": "unpinned", "verified": false }));
        }
        for (agent, why) in statuses.unreadable.iter().filter(|(a, _)| !known.contains_key(*a)) {
            rows.push(serde_json::json!({ "agent": agent, "state": "unreadable", "verified": true, "why": why }));
        }
        println!("{}", Value::Array(rows));
        return;
    }
    println!(
        "{:<28} {:<8} {:>5} {:>7} {:>8} {:>8} {:>8} {:>8} {:>14}  breakers",
        "agent", "state", "boot", "session", "uptime", "log", "executed", "anchors", "budget"
    );
    let n = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
    for (agent, s) in known {
        let open: Vec<String> = s
            .breakers
            .iter()
            .filter(|b| b.state != "closed")
            .map(|b| format!("{} {}", b.capability, b.state))
            .collect();
        let breakers = if open.is_empty() { format!("{} closed", s.breakers.len()) } else { open.join(", ") };
        // Checkpoints signed but not yet acknowledged upstream.
        let anchors = s.anchors.map_or("-".to_string(), |a| format!("{} due", a.pending));
        let uptime = s.uptime_s.map_or("-".to_string(), |u| format!("{u}s"));
        let state = match s.state {
            State::Online if s.is_stale(now_ms) => "stale",
            State::Online => "online",
            State::Offline => "offline",
        };
        let budget = s.fullest_budget().map_or("-".into(), |b| format!("{} {}/{}", b.provider, b.spent, b.units));
        println!(
            "{agent:<28} {state:<8} {:>5} {:>7} {uptime:>8} {:>8} {:>8} {anchors:>8} {budget:>14}  {breakers}",
            s.boot,
            s.session,
            n(s.log_size),
            n(s.executed),
        );
    }
    for (agent, n) in statuses.forged.iter().filter(|(a, _)| !known.contains_key(*a)) {
        println!("{agent:<28} {:<8} ({n} status message(s) not signed by its pinned key)", "forged");
    }
    for (agent, why) in statuses.unreadable.iter().filter(|(a, _)| !known.contains_key(*a)) {
        println!("{agent:<28} {:<8} (signed by its key, but not a status this ifctl reads: {why})", "unread");
    }
    if !statuses.unpinned.is_empty() {
        let names: Vec<&str> = statuses.unpinned.iter().map(String::as_str).collect();
        eprintln!("ifctl: no pinned key, not shown: {}", names.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_genuine_forged_unpinned_or_unreadable() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let signer = if_edge::attest::Signer::new(key.clone());
        let topic = topics::of("s", "a", Kind::Status);
        let pinned = |site: &str, agent: &str| (site == "s" && agent == "a").then(|| key.verifying_key());
        let good = signer.publication(&topic, br#"{"state":"online","boot":2,"session":1}"#.to_vec());
        assert!(matches!(check(&pinned, &topic, &good), (a, Some(Checked::Genuine(s))) if a == "s/a" && s.boot == 2));
        let other = if_edge::attest::Signer::new(ed25519_dalek::SigningKey::from_bytes(&[8; 32]));
        let forged = other.publication(&topic, br#"{"state":"online"}"#.to_vec());
        assert!(matches!(check(&pinned, &topic, &forged), (_, Some(Checked::Forged))));
        let newer = signer.publication(&topic, br#"{"state":"dreaming"}"#.to_vec());
        assert!(matches!(check(&pinned, &topic, &newer), (_, Some(Checked::Unreadable(_)))), "not taken for a forgery");
        let elsewhere = topics::of("s", "b", Kind::Status);
        assert!(matches!(check(&pinned, &elsewhere, &good), (a, None) if a == "s/b"));
    }

    #[test]
    fn the_newest_session_is_what_is_known() {
        let mut known = BTreeMap::new();
        fold(&mut known, "a", Status::new(State::Online, "a", 2, 1));
        fold(&mut known, "a", Status::new(State::Offline, "a", 1, 4));
        assert_eq!(known["a"].state, State::Online, "an earlier boot's Will");
        fold(&mut known, "a", Status::new(State::Offline, "a", 2, 1));
        assert_eq!(known["a"].state, State::Offline, "its own session's Will");
    }
}
