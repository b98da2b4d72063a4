//! `ifctl status`: every agent on a broker, online or offline, with its figures, from the retained
//! status each agent keeps on `if/v1/{site}/{agent}/status`.
//!
//! A status names the MQTT session it belongs to (`boot`, `session`). For each agent the message of the
//! newest session wins, and an `offline` counts only for its own session or a newer one: a Will the
//! broker sends late, after the agent's next birth, never marks a live agent offline.
//!
//! Every status is signed by its agent's identity key for its own topic. Only a status that verifies
//! against the agent's pinned key counts; any other is shown as `forged` (it never hides or replaces a
//! genuine one) and makes the command fail once the table is printed. A genuine `online` whose time
//! (`at_ms`) is more than three status intervals old is shown as `stale`: the agent has gone quiet, or
//! someone replayed an old retained status.

use std::collections::BTreeMap;
use std::time::Duration;

use if_protocol::attest::{self, PUBLISH_DOMAIN};
use if_protocol::{ErrorCode, IfError};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::Value;

/// The session a status belongs to; later sessions compare greater.
fn session(v: &Value) -> (u64, u64) {
    (v["boot"].as_u64().unwrap_or(0), v["session"].as_u64().unwrap_or(0))
}

/// Folds one status message into what is known of its agent.
pub fn fold(known: &mut BTreeMap<String, Value>, agent: &str, status: Value) {
    let newer = match known.get(agent) {
        None => true,
        Some(old) => {
            let (new_s, old_s) = (session(&status), session(old));
            // The same session: its offline ends it, and a newer health update replaces the older.
            new_s > old_s || (new_s == old_s && (status["state"] == "offline" || old["state"] == "online"))
        }
    };
    if newer {
        known.insert(agent.to_string(), status);
    }
}

/// What the status topics said, checked.
#[derive(Debug, Default)]
pub struct Statuses {
    /// The newest genuine status of each agent (`site/agent`).
    pub known: BTreeMap<String, Value>,
    /// Agents with status messages that did not verify against their pinned key, and how many.
    pub forged: BTreeMap<String, usize>,
    /// Agents with no pinned key, whose statuses cannot be checked (and are not shown).
    pub unpinned: std::collections::BTreeSet<String>,
}

/// The pinned key of an agent (site, name), if there is one.
pub type Keys<'a> = &'a dyn Fn(&str, &str) -> Option<ed25519_dalek::VerifyingKey>;

/// What a status message on a topic turned out to be.
enum Checked {
    /// Signed by its agent's pinned key.
    Genuine(Value),
    /// Not signed by its agent's pinned key.
    Forged,
    /// No key is pinned for its agent.
    Unpinned,
}

/// The status on `topic` checked against its agent's key in `keys`; the agent's name either way.
fn check(keys: Keys<'_>, topic: &str, payload: &[u8]) -> (String, Checked) {
    let agent = topic.strip_prefix("if/v1/").and_then(|t| t.strip_suffix("/status")).unwrap_or(topic).to_string();
    let Some(key) = agent.split_once('/').and_then(|(site, name)| keys(site, name)) else {
        return (agent, Checked::Unpinned);
    };
    let object = attest::verify(&key, PUBLISH_DOMAIN, &attest::topic_context(topic), payload).ok();
    match object.and_then(|o| serde_json::from_slice::<Value>(&o).ok()) {
        Some(v) => (agent, Checked::Genuine(v)),
        None => (agent, Checked::Forged),
    }
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
    let unreachable =
        |e: &dyn std::fmt::Display| IfError::format(ErrorCode::SystemError, format_args!("broker {broker}: {e}"));
    let id = format!("ifctl-status-{}", uuid::Uuid::new_v4());
    let (client, mut events) = AsyncClient::new(crate::connect::options(broker, id, tls)?, 256);
    let filter = format!("if/v1/{site}/+/status");
    let mut out = Statuses::default();
    let mut connected = false;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) if connected => break,
            Err(_) => return Err(unreachable(&"no connection in time")),
            Ok(e) => e.map_err(|e| unreachable(&e))?,
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                connected = true;
                client.subscribe(filter.clone(), QoS::AtMostOnce).await.map_err(|e| unreachable(&e))?;
            }
            Event::Incoming(Packet::Publish(p)) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                match check(keys, &topic, &p.payload) {
                    (agent, Checked::Genuine(v)) => fold(&mut out.known, &agent, v),
                    (agent, Checked::Forged) => *out.forged.entry(agent).or_insert(0) += 1,
                    (agent, Checked::Unpinned) => {
                        out.unpinned.insert(agent);
                    }
                }
            }
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    Ok(out)
}

/// Whether a genuine `online` is older than three of its status intervals (plus a margin for clocks).
pub fn stale(status: &Value, now_ms: u64) -> bool {
    let interval_ms = status["interval_s"].as_u64().unwrap_or(30).saturating_mul(1000);
    let at = status["at_ms"].as_u64().unwrap_or(0);
    status["state"] == "online" && now_ms.saturating_sub(at) > interval_ms.saturating_mul(3).saturating_add(10_000)
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
            .map(|(agent, v)| {
                let mut v = v.clone();
                v["agent"] = Value::String(agent.clone());
                v["verified"] = Value::Bool(true);
                v["stale"] = Value::Bool(stale(&v, now_ms));
                v
            })
            .collect();
        for (agent, n) in statuses.forged.iter().filter(|(a, _)| !known.contains_key(*a)) {
            rows.push(serde_json::json!({ "agent": agent, "state": "forged", "verified": false, "forged": n }));
        }
        for agent in &statuses.unpinned {
            rows.push(serde_json::json!({ "agent": agent, "state": "unpinned", "verified": false }));
        }
        println!("{}", Value::Array(rows));
        return;
    }
    println!(
        "{:<28} {:<8} {:>5} {:>7} {:>8} {:>8} {:>8} {:>8} {:>14}  breakers",
        "agent", "state", "boot", "session", "uptime", "log", "executed", "anchors", "budget"
    );
    for (agent, v) in known {
        let n = |k: &str| v[k].as_u64().map_or("-".to_string(), |n| n.to_string());
        let breakers: Vec<String> = v["breakers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|b| b["state"] != "closed")
                    .map(|b| {
                        format!("{} {}", b["capability"].as_str().unwrap_or("?"), b["state"].as_str().unwrap_or("?"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let devices = v["breakers"].as_array().map_or(0, Vec::len);
        let breakers = if breakers.is_empty() { format!("{devices} closed") } else { breakers.join(", ") };
        // Checkpoints signed but not yet acknowledged upstream.
        let anchors = v["anchors"]["pending"].as_u64().map_or("-".to_string(), |p| format!("{p} due"));
        let uptime = v["uptime_s"].as_u64().map_or("-".to_string(), |s| format!("{s}s"));
        let state = match v["state"].as_str() {
            Some("online") if stale(v, now_ms) => "stale",
            Some(s) => s,
            None => "?",
        };
        println!(
            "{agent:<28} {state:<8} {:>5} {:>7} {uptime:>8} {:>8} {:>8} {anchors:>8} {:>14}  {breakers}",
            n("boot"),
            n("session"),
            n("log_size"),
            n("executed"),
            fullest_budget(v),
        );
    }
    for (agent, n) in statuses.forged.iter().filter(|(a, _)| !known.contains_key(*a)) {
        println!("{agent:<28} {:<8} ({n} status message(s) not signed by its pinned key)", "forged");
    }
    if !statuses.unpinned.is_empty() {
        let names: Vec<&str> = statuses.unpinned.iter().map(String::as_str).collect();
        eprintln!("ifctl: no pinned key, not shown: {}", names.join(", "));
    }
}

/// The budget closest to its limit in this period, as `provider spent/units` (`-` when none is set).
fn fullest_budget(status: &Value) -> String {
    let rows = status["budgets"].as_array().map(Vec::as_slice).unwrap_or_default();
    let used = |b: &Value| {
        let (spent, units) = (b["spent"].as_u64().unwrap_or(0), b["units"].as_u64().unwrap_or(0).max(1));
        spent as f64 / units as f64
    };
    rows.iter()
        .max_by(|a, b| used(a).total_cmp(&used(b)))
        .map_or("-".into(), |b| format!("{} {}/{}", b["provider"].as_str().unwrap_or("?"), b["spent"], b["units"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_shown_is_the_one_closest_to_its_limit() {
        let v = serde_json::json!({ "budgets": [
            { "provider": "cam", "units": 100, "spent": 30 },
            { "provider": "vmix", "units": 10, "spent": 9 },
        ]});
        assert_eq!(fullest_budget(&v), "vmix 9/10");
        assert_eq!(fullest_budget(&serde_json::json!({ "budgets": [] })), "-");
        assert_eq!(fullest_budget(&serde_json::json!({})), "-", "an agent that reports none");
    }

    #[test]
    fn a_late_will_never_marks_a_newer_session_offline() {
        let mut known = BTreeMap::new();
        let s = |state: &str, boot: u64, session: u64| serde_json::json!({ "state": state, "boot": boot, "session": session });
        fold(&mut known, "a", s("online", 2, 1));
        fold(&mut known, "a", s("offline", 1, 4));
        assert_eq!(known["a"]["state"], "online", "an earlier boot's Will");
        fold(&mut known, "a", s("online", 2, 2));
        fold(&mut known, "a", s("offline", 2, 1));
        assert_eq!(known["a"]["state"], "online", "an earlier session's Will");
        fold(&mut known, "a", s("offline", 2, 2));
        assert_eq!(known["a"]["state"], "offline", "its own session's Will");
        fold(&mut known, "a", s("online", 2, 2));
        assert_eq!(known["a"]["state"], "offline", "a stale health update does not undo it");
        fold(&mut known, "a", s("online", 3, 1));
        assert_eq!(known["a"]["state"], "online", "the next boot");
    }
}
