//! The room for commands inside the agent at once (1024, `pipeline::MAX_RUNNING`): a flood larger than
//! it, with refusals mixed in, is answered whole, and the room it took is all given back, so the agent
//! still takes commands after it. A slot kept by a refused or answered command would show here as a
//! flood that stops being answered once the room ran out.

use std::collections::HashSet;
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

const ROUND: usize = 1500;

#[test]
fn floods_past_the_room_for_running_commands_are_answered_whole_and_give_all_of_it_back() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let stranger = Talent::new("stranger");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    for round in 0..2u8 {
        let frames: Vec<Vec<u8>> = (0..ROUND).map(|_| desk.sign(&desk.next_ping())).collect();
        for (i, f) in frames.iter().enumerate() {
            probe.request(f.clone(), &[round, (i >> 8) as u8, i as u8]);
            // Refused before admission (a key the agent does not know): they take no room.
            if i % 3 == 0 {
                probe.request(stranger.sign(&stranger.next_ping()), &[0xff, 0, 0]);
            }
        }
        let mut answered = HashSet::new();
        let end = std::time::Instant::now() + Duration::from_secs(60);
        while answered.len() < ROUND && std::time::Instant::now() < end {
            for m in probe.until_replies(ROUND - answered.len(), Duration::from_secs(5)) {
                let c = m.correlation.clone().unwrap_or_default();
                if c.first() == Some(&round) && m.json()["ok"] == true {
                    answered.insert(c);
                }
            }
        }
        assert_eq!(answered.len(), ROUND, "round {round}: every command of the flood ran and was answered");
    }
    agent.stop();
    let executed = agent.executed_pings();
    assert_eq!(executed, 2 * ROUND, "each ran once");
}
