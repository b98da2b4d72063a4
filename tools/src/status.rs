//! `ifctl status`: every agent on a broker, online or offline, with its figures, from the retained
//! status each agent keeps on `if/v1/{site}/{agent}/status`.
//!
//! A status names the MQTT session it belongs to (`boot`, `session`). For each agent the message of the
//! newest session wins, and an `offline` counts only for its own session or a newer one: a Will the
//! broker sends late, after the agent's next birth, never marks a live agent offline.

use std::collections::BTreeMap;
use std::time::Duration;

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

/// Collects the retained statuses (and any that arrive within `wait`) for `site` (`+`: every site).
pub async fn collect(
    broker: &str,
    tls: Option<&if_edge::tls::Tls>,
    site: &str,
    wait: Duration,
) -> Result<BTreeMap<String, Value>, IfError> {
    let unreachable =
        |e: &dyn std::fmt::Display| IfError::format(ErrorCode::SystemError, format_args!("broker {broker}: {e}"));
    let id = format!("ifctl-status-{}", uuid::Uuid::new_v4());
    let (client, mut events) = AsyncClient::new(crate::connect::options(broker, id, tls)?, 256);
    let filter = format!("if/v1/{site}/+/status");
    let mut known = BTreeMap::new();
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
                let agent = topic.strip_prefix("if/v1/").and_then(|t| t.strip_suffix("/status")).unwrap_or(&topic);
                if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                    fold(&mut known, agent, v);
                }
            }
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    Ok(known)
}

/// Prints one line per agent, or a JSON array.
pub fn print(known: &BTreeMap<String, Value>, json: bool) {
    if json {
        let rows: Vec<Value> = known
            .iter()
            .map(|(agent, v)| {
                let mut v = v.clone();
                v["agent"] = Value::String(agent.clone());
                v
            })
            .collect();
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
        println!(
            "{agent:<28} {:<8} {:>5} {:>7} {uptime:>8} {:>8} {:>8} {anchors:>8} {:>14}  {breakers}",
            v["state"].as_str().unwrap_or("?"),
            n("boot"),
            n("session"),
            n("log_size"),
            n("executed"),
            fullest_budget(v),
        );
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
