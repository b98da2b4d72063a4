//! The stage times the path benchmark reads (`IF_EDGE_STAGES`): the real agent, asked for them, writes a
//! row for each command it ran when it stops, every stage reached and in the order of the path; not
//! asked, it writes nothing.

use std::time::Duration;

use if_edge::stages::{COLUMNS, ENV};
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

#[test]
fn an_agent_asked_for_stage_times_writes_every_commands_stages_in_order_when_it_stops() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    let file = agent.home().join("stages.csv");
    agent.env.push((ENV.into(), file.display().to_string()));
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let ids: Vec<String> = (0..5u64)
        .map(|n| {
            let body = desk.next_ping();
            probe.request(desk.sign(&body), &n.to_be_bytes());
            body.id.to_string()
        })
        .collect();
    assert_eq!(probe.until_replies(5, Duration::from_secs(20)).len(), 5, "every ping answered");
    assert!(!file.exists(), "written when the agent stops");
    agent.stop();
    let text = std::fs::read_to_string(&file).expect("the stage times");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(format!("id,{}", COLUMNS.join(",")).as_str()));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // The talents the harness adds at start are commands too.
    assert!(rows.len() >= 5, "a row for each command: {text}");
    for id in &ids {
        let row = rows.iter().find(|r| r[0] == id).unwrap_or_else(|| panic!("{id} has a row: {text}"));
        let times: Vec<u64> = row[1..].iter().map(|t| t.parse().expect("a number")).collect();
        assert_eq!(times.len(), COLUMNS.len());
        assert!(times.iter().all(|t| *t > 0), "{id}: every stage reached: {times:?}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{id}: in the order of the path: {times:?}");
    }
}

#[test]
fn an_agent_not_asked_writes_no_stage_times() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    probe.request(desk.sign(&desk.next_ping()), &0u64.to_be_bytes());
    assert_eq!(probe.until_replies(1, Duration::from_secs(20)).len(), 1);
    agent.stop();
    let written: Vec<_> = std::fs::read_dir(agent.home()).expect("home").flatten().map(|e| e.file_name()).collect();
    assert!(!written.iter().any(|n| n.to_string_lossy().contains("stages")), "{written:?}");
}
