//! A fleet on one broker: twenty real agents, some killed with -9 and restarted, seen through
//! `ifctl status`. A killed agent shows offline by its Will; a restarted one is online again with the
//! next boot; a Will that arrives late, after the agent's next birth, does not mark it offline.

use std::collections::BTreeMap;
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;

const SIZE: usize = 20;
const KILLED: [usize; 5] = [1, 4, 9, 13, 18];

/// `ifctl status --json` with the agents' keys pinned in `keys`, by agent.
fn status(broker: &Broker, keys: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    let keys = keys.to_str().expect("utf-8 path");
    let out = Agent::ifctl(&["--json", "status", "--broker", &broker.url(), "--wait-ms", "700", "--agent-keys", keys]);
    assert!(out.status.success(), "ifctl status: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    rows.into_iter().map(|r| (r["agent"].as_str().unwrap_or("").to_string(), r)).collect()
}

fn name(i: usize) -> String {
    format!("edge-{i:02}")
}

/// Waits until `ifctl status` shows `want` for each listed agent; returns the last status.
fn until(broker: &Broker, keys: &std::path::Path, want: &[(usize, &str)]) -> BTreeMap<String, serde_json::Value> {
    let mut last = BTreeMap::new();
    let ok = if_tests::wait_for(Duration::from_secs(20), || {
        last = status(broker, keys);
        want.iter()
            .all(|(i, s)| last.get(&format!("fleet/{}", name(*i))).is_some_and(|v| v["state"] == *s))
            .then_some(())
    });
    assert!(ok.is_some(), "wanted {want:?}; ifctl status shows {last:#?}");
    last
}

#[test]
fn twenty_agents_killed_and_restarted_show_offline_by_will_then_online_with_the_next_boot() {
    let broker = Broker::start();
    let mut fleet: Vec<Agent> = (0..SIZE).map(|i| Agent::init_named(&broker, "fleet", &name(i))).collect();
    let pinned = tempfile::tempdir().expect("tempdir");
    let keys = pinned.path();
    for a in &mut fleet {
        a.pin(keys);
        a.start();
    }
    let all_online: Vec<(usize, &str)> = (0..SIZE).map(|i| (i, "online")).collect();
    let first = until(&broker, keys, &all_online);
    assert_eq!(first.len(), SIZE, "{first:#?}");
    let boot = |s: &BTreeMap<String, serde_json::Value>, i: usize| s[&format!("fleet/{}", name(i))]["boot"].as_u64();

    for &i in &KILLED {
        fleet[i].kill9();
    }
    let mut want: Vec<(usize, &str)> = all_online.clone();
    for &i in &KILLED {
        want[i].1 = "offline";
    }
    let after_kill = until(&broker, keys, &want);
    for &i in &KILLED {
        let v = &after_kill[&format!("fleet/{}", name(i))];
        assert_eq!(v["boot"].as_u64(), boot(&first, i), "the Will names the session it ends: {v}");
    }
    assert_eq!(after_kill.values().filter(|v| v["state"] == "online").count(), SIZE - KILLED.len());

    for &i in &KILLED {
        fleet[i].start();
    }
    let back = until(&broker, keys, &all_online);
    for &i in &KILLED {
        assert_eq!(boot(&back, i), boot(&first, i).map(|b| b + 1), "restarted with the next boot");
    }

    // A Will of the killed run that the broker delivers late, after the new birth.
    let i = KILLED[0];
    let watcher = Probe::connect(&broker, "fleet", &name(i));
    watcher.subscribe(&watcher.topics.status);
    assert_eq!(
        watcher.next_on(&watcher.topics.status, Duration::from_secs(5)).expect("retained").json()["state"],
        "online"
    );
    // The Will of the killed run was signed by the agent's key when that session began; sign one like it.
    let identity = if_edge::keyfile::read_secret(&fleet[i].home().join("agent.key")).expect("agent key");
    let stale = serde_json::json!({ "state": "offline", "agent": format!("fleet/{}", name(i)), "boot": boot(&first, i), "session": 1 });
    let will =
        if_edge::attest::Signer::new(identity).publication(&watcher.topics.status, stale.to_string().into_bytes());
    watcher.publish_to(&watcher.topics.status, will, true);
    let seen = watcher.next_on(&watcher.topics.status, Duration::from_secs(5)).expect("the late Will").json();
    assert_eq!(seen["state"], "offline");
    let reborn = watcher.next_on(&watcher.topics.status, Duration::from_secs(5)).expect("the agent answers it").json();
    assert_eq!(reborn["state"], "online", "born again over the late Will: {reborn}");
    assert_eq!(reborn["boot"].as_u64(), boot(&back, i));
    let now = status(&broker, keys);
    assert_eq!(now[&format!("fleet/{}", name(i))]["state"], "online", "ifctl status: {now:#?}");
    assert_eq!(now.values().filter(|v| v["state"] == "online").count(), SIZE);
}
