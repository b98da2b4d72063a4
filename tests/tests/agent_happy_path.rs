//! N signed pings through a real Mosquitto and the real agent: N OK replies, one RECEIVED and one
//! EXECUTED record each, and a witness log that verifies. The same through `ifctl message send`.

use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

#[test]
fn signed_pings_are_answered_witnessed_and_verified() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    // The reply cache reaches as far back as the replay window: make it cover every frame.
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);

    const N: usize = 200;
    let frames: Vec<Vec<u8>> = (0..N).map(|_| desk.sign(&desk.next_ping())).collect();
    for f in &frames {
        probe.publish(f.clone());
    }
    let msgs = probe.until_replies(N, Duration::from_secs(30));
    let (replies, dlq) = probe.split(msgs);
    assert_eq!(replies.len(), N, "every ping is answered");
    assert!(dlq.is_empty(), "nothing dead-lettered: {:?}", dlq.first().map(|m| m.json()));
    for r in &replies {
        let v = r.json();
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["result"]["pong"], true);
        assert_eq!(r.topic, probe.topics.reply_for("desk"), "no response topic: the sender's reply topic");
    }

    // Every frame again: the same replies, nothing runs again.
    for f in &frames {
        probe.publish(f.clone());
    }
    let (again, dlq) = probe.split(probe.until_replies(N, Duration::from_secs(30)));
    assert_eq!(again.len(), N, "every redelivery is answered");
    let mut first: Vec<&[u8]> = replies.iter().map(|m| m.payload.as_slice()).collect();
    let codes = if_tests::probe::codes(&again);
    assert_eq!(codes.get("OK"), Some(&N), "{codes:?}");
    let mut second: Vec<&[u8]> = again.iter().map(|m| m.payload.as_slice()).collect();
    first.sort();
    second.sort();
    assert_eq!(first, second, "redeliveries get the original replies");
    // Dead letters are sampled like refusals: some one by one, the rest counted in a summary a second.
    let letters: Vec<serde_json::Value> =
        dlq.into_iter().chain(probe.drain(Duration::from_millis(1500))).map(|m| m.json()).collect();
    let single = letters.iter().filter(|d| d["code"] == "IF_ERR_106" && d["summarized"].is_null()).count();
    let summarized: u64 = letters.iter().filter_map(|d| d["summarized"].as_u64()).sum();
    assert!((1..=20).contains(&single), "{single} one by one (rejected_per_s is 20)");
    assert_eq!(single as u64 + summarized, N as u64, "each redelivery is dead-lettered or counted: {letters:?}");

    // One through the operator CLI, with --save.
    let frame_file = agent.dir.path().join("sent.frame");
    let out = Agent::ifctl(&[
        "message",
        "send",
        "--broker",
        &broker.url(),
        "--site",
        &agent.site,
        "--agent",
        &agent.name,
        "--agent-key",
        agent.public_key().to_str().expect("utf8"),
        "--key",
        desk.secret.to_str().expect("utf8"),
        "--sender",
        "desk",
        "--capability",
        "if://capability/edge.ping",
        "--action",
        "ping",
        "--why",
        "operator check",
        "--save",
        frame_file.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "ifctl: {}", String::from_utf8_lossy(&out.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reply JSON");
    assert_eq!(reply["ok"], true);
    let saved = std::fs::read(&frame_file).expect("saved frame");
    let view = if_protocol::json::frame_to_json(&saved).expect("saved bytes are a frame");
    assert_eq!(reply["id"], view.body.id.to_string(), "the saved frame is the one answered");

    agent.stop();
    let verify = agent.verify_witness();
    assert!(verify.status.success(), "verify: {}", String::from_utf8_lossy(&verify.stderr));
    let records = agent.export();
    // Pings only: the set-up's `talent add` commands are in the log too.
    let count = |kind: &str| {
        records.iter().filter(|r| r["kind"] == kind && r["capability"] == "if://capability/edge.ping").count()
    };
    assert_eq!(count("RECEIVED"), N + 1);
    assert_eq!(count("EXECUTED"), N + 1);
    assert_eq!(records.iter().filter(|r| r["kind"] == "BOOT").count(), 1);
    assert!(records.iter().all(|r| r["leaf"].as_str().is_some_and(|l| !l.is_empty())));
    let cp = Agent::ifctl(&["witness", "checkpoint", "--db", agent.db().to_str().expect("utf8")]);
    assert!(cp.status.success());
    let note = String::from_utf8(cp.stdout).expect("utf8");
    assert!(note.starts_with("local/if-edge/studio-a.edge-1\n"), "{note}");
    assert!(note.contains(&format!("\n{}\n", records.len())), "the final checkpoint covers the whole log: {note}");
}
