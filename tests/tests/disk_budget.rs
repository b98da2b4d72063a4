//! The disk budget with the uplink down: an agent whose log is near its budget warns (status and log),
//! keeps taking commands until the file has to grow past it, then refuses every command with IF_ERR_502
//! STORAGE_FULL (nothing runs un-witnessed); the uplink comes back, the collector acknowledges the
//! records' bundles, the agent prunes them and takes commands again; what it pruned, an independent
//! verifier finds in the archive, and its log verifies from there.

use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::collector::{Collector, archiving_agent, status, tlog_verify, vkey};
use if_tests::probe::Probe;
use if_tests::talent::Talent;

/// Sends `n` pings at once and returns their replies' error codes (`None`: it ran).
fn pings(probe: &Probe, desk: &Talent, n: usize) -> Vec<Option<String>> {
    for i in 0..n {
        probe.request(desk.sign(&desk.next_ping()), &(i as u64).to_be_bytes());
    }
    let replies = probe.until_replies(n, Duration::from_secs(30));
    replies.iter().filter(|m| m.topic == probe.reply_topic_for(&desk.name)).map(|m| m.code()).collect()
}

#[test]
fn with_the_uplink_down_the_log_warns_then_refuses_and_takes_commands_again_once_archived_and_pruned() {
    let local = Broker::start();
    let mut uplink = Broker::start();
    let collector = Collector::start(&uplink);
    let desk = Talent::new("desk");
    let mut agent = archiving_agent(&local, &desk, 20_000, Some(1000));
    let file = std::fs::metadata(agent.db()).expect("the log").len();
    // A budget the file is at 80 % or more of, and under.
    let budget_mb = (file * 5 / 4) >> 20;
    assert!(budget_mb << 20 > file && file * 5 >= (budget_mb << 20) * 4, "{file} bytes, {budget_mb} MiB");
    let up = uplink.url();
    agent.edit_config(|t| {
        t.replace("keep_records = 1000", &format!("keep_records = 1000\ndisk_budget_mb = {budget_mb}"))
            .replace("[uplink]", &format!("[uplink]\nbroker = \"{up}\""))
            .replace("backoff_s = [1, 2, 5, 10, 30]", "backoff_s = [1]")
    });
    collector.trust(&agent.site, &agent.name, &agent.public_key());
    uplink.stop();
    agent.start();
    let probe = Probe::connect(&local, &agent.site, &agent.name);

    let warned = if_tests::wait_for(Duration::from_secs(10), || {
        let s = status(&local, &agent);
        (s["disk"]["state"] == "warning").then_some(s)
    });
    let s = warned.unwrap_or_else(|| panic!("a warning first: {}", status(&local, &agent)));
    assert_eq!(s["disk"]["budget_mb"], budget_mb, "{s}");
    assert_eq!(pings(&probe, &desk, 10), vec![None; 10], "commands run while it warns");
    assert!(agent.log().contains("near its disk budget"), "{}", agent.log());

    // Until the file has to grow past its budget.
    let mut ran = 10;
    let mut full = None;
    while ran < 40_000 && full.is_none() {
        let codes = pings(&probe, &desk, 250);
        ran += codes.iter().filter(|c| c.is_none()).count();
        full = codes.iter().flatten().next().cloned();
    }
    assert_eq!(full.as_deref(), Some("IF_ERR_502"), "STORAGE_FULL after {ran} commands ran");
    println!("STORAGE_FULL after {ran} commands ran");
    let full = if_tests::wait_for(Duration::from_secs(10), || {
        (status(&local, &agent)["disk"]["state"] == "full").then_some(())
    });
    assert!(full.is_some(), "the status says so: {}", status(&local, &agent));
    assert_eq!(pings(&probe, &desk, 5), vec![Some("IF_ERR_502".to_string()); 5], "nothing runs while it is full");
    assert!(agent.log().contains("no room left"), "{}", agent.log());

    uplink.restart();
    let again = if_tests::wait_for(Duration::from_secs(90), || pings(&probe, &desk, 1)[0].is_none().then_some(()));
    assert!(again.is_some(), "commands run again: {}", status(&local, &agent));
    // The status follows within a second or two of the change.
    let room = if_tests::wait_for(Duration::from_secs(10), || {
        let s = status(&local, &agent);
        (s["disk"]["state"] != "full").then_some(s)
    });
    let s = room.unwrap_or_else(|| panic!("the status says there is room: {}", status(&local, &agent)));
    // The same status shows the boundary that made the room; pruning goes on, 4096 records a step, down
    // to the retention.
    assert!(s["log_from"].as_u64().unwrap_or(0) > 0, "archived records were pruned: {s}");
    let retained = if_tests::wait_for(Duration::from_secs(30), || {
        (status(&local, &agent)["log_from"].as_u64()? >= 20_000 - 1000 - 256).then_some(())
    });
    assert!(retained.is_some(), "pruned to the retention: {}", status(&local, &agent));
    // Once every checkpoint is acknowledged, the archive publishes the last with its tiles.
    let settled = if_tests::wait_for(Duration::from_secs(60), || {
        let s = status(&local, &agent);
        let a = &s["anchors"];
        (a["pending"] == 0 && collector.published(&agent) == a["acked"].as_u64()).then_some(())
    });
    let said = collector.said();
    let last = &said[said.len().saturating_sub(5)..];
    assert!(settled.is_some(), "archive {:?} {last:?}, agent {}", collector.published(&agent), status(&local, &agent));
    // The commands' own records make bundles larger than an uplink message: they went in parts.
    assert!(said.iter().any(|l| l.contains("PART of bundle")), "{last:?}");
    agent.stop();
    let out = Agent::ifctl(&["witness", "verify", "--db", agent.db().to_str().expect("utf8")]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let kept_from = said.split("(records ").nth(1).and_then(|r| r.split(' ').next()?.parse::<u64>().ok());
    let from = kept_from.unwrap_or_else(|| panic!("the kept log starts past record 0: {said}"));
    // Nothing acknowledged is lost: what the agent no longer holds, the archive does. An independent
    // verifier checks every tile of it against the agent's signed checkpoint and proves the first record
    // and the last one pruned from the tiles alone.
    let (ok, out) = tlog_verify(&collector.tiles_of(&agent), &vkey(&agent), &[0, from - 1]);
    assert!(ok, "{out}");
}
