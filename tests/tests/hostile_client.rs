//! A client on the same broker that holds no key at all, only network access to MQTT: the threat the
//! signed envelope exists for. Each test is one thing such a client tried against the real agent and
//! the real `ifctl` on a real Mosquitto, and what the agent and `ifctl` do about it.

use std::process::{Command, Stdio};
use std::time::Duration;

use if_protocol::envelope::Audience;
use if_protocol::topics::Topics;
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::device::{self, DeviceRig, Limits};
use if_tests::probe::Probe;
use if_tests::talent::Talent;

const WAIT: Duration = Duration::from_secs(10);
const LOOP: &str = "if://capability/studio.loop";

fn p(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Two agents of one fleet with the same trust root, both knowing `desk`.
fn two_agents(broker: &Broker, desk: &Talent) -> (Agent, Agent) {
    let mut a1 = Agent::init(broker, &[desk]);
    let mut a3 = Agent::init_like(&a1, broker, "studio-b", "edge-3", &[desk]);
    a1.start();
    a3.start();
    (a1, a3)
}

#[test]
fn a_frame_captured_on_one_agent_is_refused_by_another_before_anything_happens() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let (mut a1, mut a3) = two_agents(&broker, &desk);
    let hostile = Probe::connect(&broker, &a3.site, &a3.name);
    let a1_cmd = Topics::new(&a1.site, &a1.name).cmd;
    hostile.subscribe(&a1_cmd);

    // The desk pings a1 with ifctl; the hostile client sees the frame go by and sends it to a3.
    let mut ping = vec!["message", "send", "--key", p(&desk.secret), "--sender", "desk"];
    ping.extend(["--capability", "if://capability/edge.ping", "--action", "ping", "--why", "line check"]);
    let addr = a1.addr();
    let out = Agent::ifctl(&[&ping[..], &addr.iter().map(String::as_str).collect::<Vec<_>>()].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let captured = hostile.next_on(&a1_cmd, WAIT).expect("captured");
    hostile.request(captured.payload.clone(), b"replayed-ping");
    let reply = hostile.next_on(&hostile.reply_topic_for("desk"), WAIT).expect("a3 answers");
    assert_eq!(reply.code().as_deref(), Some("IF_ERR_109"), "{}", reply.json());
    assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("studio-a/edge-1")));
    let dlq = hostile.next_on(&hostile.topics.dlq, WAIT).expect("dead letter");
    assert_eq!(dlq.code().as_deref(), Some("IF_ERR_109"));

    // A policy command for a1 (a talent added there only), captured and sent to a3.
    let bot = Talent::new("bot");
    let add = a1.talent("add", &["--name", "bot", "--role", "automation", "--pubkey", p(&bot.public)]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let captured = hostile.next_on(&a1_cmd, WAIT).expect("captured");
    hostile.request(captured.payload, b"replayed-add");
    let reply = hostile.next_on(&hostile.reply_topic_for("sec"), WAIT).expect("a3 answers");
    assert_eq!(reply.code().as_deref(), Some("IF_ERR_109"), "{}", reply.json());

    // On a3, the bot is unknown and only the desk can ping; nothing of a1's ran there.
    let frame = bot.sign(&bot.ping(1));
    hostile.request(frame, b"bot-on-a3");
    let reply = hostile.next_on(&hostile.reply_topic_for("bot"), WAIT).expect("a3 answers");
    assert_eq!(reply.code().as_deref(), Some("IF_ERR_004"), "the bot's key is not known on a3: {}", reply.json());
    let mut for_a3 = desk.ping(7);
    for_a3.audience = Audience::agent("studio-b", "edge-3").expect("names");
    hostile.request(desk.sign(&for_a3), b"desk-on-a3");
    let reply = hostile.next_on(&hostile.reply_topic_for("desk"), WAIT).expect("a3 answers");
    assert_eq!(reply.json()["ok"], true, "a frame for a3 runs on a3: {}", reply.json());
    a1.stop();
    a3.stop();
    assert_eq!(a1.executed_pings(), 1);
    assert_eq!(a3.executed_pings(), 1, "only the ping addressed to a3 ran on a3");
    let refused = a3.export().into_iter().filter(|r| r["kind"] == "REJECTED" && r["code"] == "IF_ERR_109").count();
    assert_eq!(refused, 2, "both refusals are witnessed on a3");
}

#[test]
fn a_forged_reply_published_before_the_agents_own_is_reported_and_ignored() {
    let m = device::manifest(LOOP, "loopback", "loopback:", Limits::default(), &["preview"], &[], &[]);
    let rig = DeviceRig::new(&m, LOOP, &["preview"], |_, _| {});
    let hostile = Probe::connect(&rig.broker, &rig.agent.site, &rig.agent.name);
    hostile.subscribe(&hostile.topics.cmd);

    // The device is unreachable: the agent retries on its backoff before it answers IF_ERR_401.
    let mut args = vec!["capability", "apply", LOOP, "--action", "preview", "--arg", "fail=unreachable"];
    args.extend(["--key", p(&rig.desk.secret), "--sender", "desk", "--why", "forged reply test"]);
    let addr = rig.agent.addr();
    args.extend(addr.iter().map(String::as_str));
    let ifctl = Command::new(if_tests::bin("ifctl"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ifctl");
    let request = hostile.next_on(&hostile.topics.cmd, WAIT).expect("the request goes by");
    let response = request.response_topic.clone().expect("ifctl names a response topic");
    let body = if_protocol::json::frame_to_json(&request.payload).expect("a frame").body;
    let fake = serde_json::json!({
        "id": body.id, "sender": "desk", "seq": body.seq, "ok": true, "result": { "loopback": "preview" }
    });
    hostile.request_to(&response, fake.to_string().into_bytes(), None, request.correlation.as_deref());
    // A reply signed with someone else's key, and a genuine signature over another request, too.
    let other = if_edge::attest::Signer::new(Talent::new("mallory").key);
    hostile.request_to(
        &response,
        other.reply(&[0; 32], fake.to_string().into_bytes()),
        None,
        request.correlation.as_deref(),
    );

    let out = ifctl.wait_with_output().expect("ifctl ends");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(14), "the agent's real answer, a device error: {stdout} {stderr}");
    assert!(stdout.contains("IF_ERR_401") && !stdout.contains("\"ok\":true"), "{stdout}");
    assert_eq!(stderr.matches("ignored a reply").count(), 2, "both forgeries are reported: {stderr}");
}

#[test]
fn a_forged_status_is_never_believed_and_the_agent_restores_its_own() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let keys = tempfile::tempdir().expect("tempdir");
    agent.pin(keys.path());
    let hostile = Probe::connect(&broker, &agent.site, &agent.name);
    hostile.subscribe(&hostile.topics.status);
    let status = || {
        let out = Agent::ifctl(&["--json", "status", "--broker", &broker.url(), "--agent-keys", p(keys.path())]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (
            out.status.code(),
            rows.into_iter().next().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(status().1["state"], "online");

    // While the agent runs, a forged retained `offline` is answered with its signed birth at once.
    let fake = serde_json::json!({ "state": "offline", "agent": "studio-a/edge-1", "boot": 99, "session": 9 });
    hostile.publish_to(&hostile.topics.status, fake.to_string().into_bytes(), true);
    let restored = if_tests::wait_for(WAIT, || {
        let m = hostile.next_on(&hostile.topics.status, Duration::from_millis(200))?;
        (m.json()["state"] == "online" && m.json()["sig"].is_string()).then_some(())
    });
    assert!(restored.is_some(), "the agent published its own status over the forged one");
    let (code, row, _) = status();
    assert_eq!(
        (code, row["state"].as_str(), row["verified"].as_bool()),
        (Some(0), Some("online"), Some(true)),
        "{row}"
    );

    // Stopped, its signed `offline` is retained; a forged `online` over it is shown as forged.
    agent.stop();
    let fake = serde_json::json!({ "state": "online", "agent": "studio-a/edge-1", "boot": 99, "session": 1 });
    hostile.publish_to(&hostile.topics.status, fake.to_string().into_bytes(), true);
    std::thread::sleep(Duration::from_millis(300));
    let (code, row, err) = status();
    assert_eq!(code, Some(10), "INVALID_SIGNATURE: {err}");
    assert_eq!((row["state"].as_str(), row["verified"].as_bool()), (Some("forged"), Some(false)), "{row}");
    assert!(err.contains("IF_ERR_001") && err.contains("studio-a/edge-1"), "{err}");

    // A genuine but old `online`, replayed: signed by the agent, so it verifies, and shown as stale.
    let identity = if_edge::keyfile::read_secret(&agent.home().join("agent.key")).expect("agent key");
    let old = serde_json::json!({
        "state": "online", "agent": "studio-a/edge-1", "boot": 1, "session": 1,
        "at_ms": if_tests::talent::now_ms() - 600_000, "interval_s": 30,
    });
    let replayed =
        if_edge::attest::Signer::new(identity).publication(&hostile.topics.status, old.to_string().into_bytes());
    hostile.publish_to(&hostile.topics.status, replayed, true);
    std::thread::sleep(Duration::from_millis(300));
    let out = Agent::ifctl(&["status", "--broker", &broker.url(), "--agent-keys", p(keys.path())]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.lines().any(|l| l.starts_with("studio-a/edge-1") && l.contains("stale")), "{table}");
}

#[test]
fn a_forged_tally_is_never_shown_and_makes_ifctl_tally_fail() {
    let broker = Broker::start();
    let mut agent = Agent::init_bare(&broker);
    agent.start();
    let mut tally = vec!["tally", "--wait-ms", "300"];
    let addr = agent.addr();
    tally.extend(addr.iter().map(String::as_str));
    let out = Agent::ifctl(&tally);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("no tally published"), "{said}");

    // A panel on the broker claims input 3 is on air, unsigned and then signed by another key.
    let hostile = Probe::connect(&broker, &agent.site, &agent.name);
    let fake = if_protocol::messages::Tally::from_digits("if://capability/vmix.switcher", "001", 1);
    let fake = serde_json::to_vec(&fake).expect("json");
    let mallory = if_edge::attest::Signer::new(Talent::new("mallory").key);
    let json = [&["--json"][..], &tally].concat();
    for forged in [fake.clone(), mallory.publication(&hostile.topics.tally, fake)] {
        hostile.publish_to(&hostile.topics.tally, forged, true);
        std::thread::sleep(Duration::from_millis(200));
        let out = Agent::ifctl(&json);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(10), "INVALID_SIGNATURE: {err}");
        assert!(err.contains("IF_ERR_001") && err.contains("studio-a/edge-1"), "{err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "null", "nothing forged is shown as the tally");
    }
}

#[test]
fn a_second_process_with_the_same_identity_is_reported_instead_of_fought() {
    let broker = Broker::start();
    let mut first = Agent::init_bare(&broker);
    let mut copy = first.twin();
    first.start();
    copy.start();
    let both = [&first, &copy];
    let found = if_tests::wait_for(Duration::from_secs(20), || {
        both.iter().all(|a| a.log().contains("another process is using this agent's identity")).then_some(())
    });
    assert!(found.is_some(), "both say so:\n{}\n---\n{}", first.log(), copy.log());
    // From then on each takes the session back only after the longest reconnect delay (30 s, jittered).
    let connects = || both.iter().map(|a| a.log().matches("connected to the broker").count()).sum::<usize>();
    let before = connects();
    std::thread::sleep(Duration::from_secs(8));
    assert!(connects() <= before + 2, "no fight over the session: {} more connects in 8 s", connects() - before);
    first.stop();
    copy.stop();
    for a in [&first, &copy] {
        let security: Vec<_> = a.export().into_iter().filter(|r| r["kind"] == "SECURITY").collect();
        assert_eq!(security.len(), 1, "one SECURITY record each: {security:?}");
        assert_eq!(security[0]["code"], "IF_ERR_504");
    }
}

#[test]
fn the_agent_answers_only_under_the_senders_reply_topic_whatever_the_response_topic_says() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let (mut a1, mut a3) = two_agents(&broker, &desk);
    let hostile = Probe::connect(&broker, &a1.site, &a1.name);
    hostile.subscribe("if/v1/#");
    let t = hostile.topics.clone();
    let captured = desk.sign(&desk.ping(1));
    let mut expired = desk.ping(2);
    expired.issued_at_ms -= 600_000;
    let expired = desk.sign(&expired);
    let targets = [
        t.status.clone(),
        t.tally.clone(),
        t.policy.clone(),
        t.dlq.clone(),
        t.cmd.clone(),
        t.anchors.clone(),
        t.security.clone(),
        Topics::new(&a3.site, &a3.name).cmd,
        t.reply_for("op"),
    ];
    let mut n = 0u32;
    for target in &targets {
        for (what, frame) in
            [("a valid frame", &captured), ("an expired frame", &expired), ("garbage", &b"{x".to_vec())]
        {
            n += 1;
            let corr = n.to_be_bytes();
            hostile.request_to(&t.cmd, frame.clone(), Some(target), Some(&corr));
            let msgs = hostile.drain(Duration::from_millis(150));
            // The hostile client's own publish comes back to it too (it listens to every topic).
            let answers: Vec<_> = msgs
                .iter()
                .filter(|m| m.correlation.as_deref() == Some(&corr[..]) && !(m.topic == t.cmd && m.payload == *frame))
                .collect();
            // Garbage names no sender that could be checked: it may be answered under any sender's reply
            // topic of this agent (a forged answer for nobody's request), never elsewhere.
            let unverified_ok = |m: &&if_tests::probe::Msg| what == "garbage" && m.topic == t.reply_for("op");
            assert!(
                answers.iter().all(|m| m.topic == t.reply_for("desk") || unverified_ok(m)),
                "{what} with response topic {target}: the agent published on {:?}",
                answers.iter().map(|m| &m.topic).collect::<Vec<_>>()
            );
            let refusal = answers.iter().find(|m| m.topic == t.reply_for("desk"));
            match what {
                "garbage" => assert!(refusal.is_none(), "no sender, no answer"),
                _ => assert_eq!(refusal.and_then(|m| m.code()).as_deref(), Some("IF_ERR_111"), "{what} to {target}"),
            }
        }
    }
    // Once the frame has run, a copy with any response topic gets the original answer, not a refusal
    // that would tell its sender it did not run.
    hostile.request(captured.clone(), b"the real one");
    let original = hostile.next_on(&hostile.reply_topic_for("desk"), WAIT).expect("answered");
    assert_eq!(original.json()["ok"], true, "{}", original.json());
    hostile.request_to(&t.cmd, captured, Some(&t.status), Some(b"copy"));
    let copy = if_tests::wait_for(WAIT, || {
        hostile
            .next(Duration::from_millis(200))
            .filter(|m| m.correlation.as_deref() == Some(&b"copy"[..]) && m.topic != t.cmd)
    })
    .expect("the copy is answered");
    assert_eq!(
        (copy.topic.as_str(), copy.payload.as_slice()),
        (t.reply_for("desk").as_str(), original.payload.as_slice())
    );
    a1.stop();
    a3.stop();
    let ran = a1.export().iter().filter(|r| r["kind"] == "EXECUTED").count();
    assert_eq!(ran, 2, "the talent add at start and the one real ping: {ran}");
    assert!(!a1.export().iter().any(|r| r["kind"] == "POLICY" && r["code"].is_string()), "no pushed reply was parsed");
    assert_eq!(a3.executed_pings(), 0);
}

#[test]
fn floods_of_garbage_on_cmd_and_policy_cost_a_bounded_amount_and_every_refusal_is_counted() {
    const N: usize = 20_000;
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let hostile = Probe::connect(&broker, &agent.site, &agent.name);
    hostile.subscribe(&hostile.topics.status);
    let _ = hostile.drain(Duration::from_millis(300));
    let rss_before = if_tests::rss_kib(agent.pid().expect("running")).expect("VmRSS");
    let start = std::time::Instant::now();
    let t = hostile.topics.clone();
    let policy_reply = t.reply_for("policy") + "/x";
    for i in 0..N {
        hostile.request_to(&t.policy, format!("not a document {i}").into_bytes(), Some(&policy_reply), Some(b"p"));
        hostile.request_to(&t.cmd, format!("{{garbage {i}").into_bytes(), Some(&hostile.response_topic), Some(b"c"));
        // At most once, nothing would hold these back: they are dropped unread (and never witnessed).
        hostile.publish_qos0(&t.cmd, vec![b'x'; 60_000]);
    }
    // A good ping after the flood: once it is answered, the agent has read everything before it.
    let mut n = 0u64;
    let mut seen = Vec::new();
    let answered = if_tests::wait_for(Duration::from_secs(120), || {
        n += 1;
        hostile.request(desk.sign(&desk.ping(n)), b"ping");
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while let Some(m) = hostile.next(until.saturating_duration_since(std::time::Instant::now())) {
            let done = m.correlation.as_deref() == Some(b"ping") && m.json()["ok"] == true;
            seen.push(m);
            if done {
                return Some(());
            }
        }
        None
    });
    assert!(answered.is_some(), "the agent kept serving through the flood");
    seen.extend(hostile.drain(Duration::from_millis(1500)));
    let secs = start.elapsed().as_secs() + 2;
    let rss_after = if_tests::rss_kib(agent.pid().expect("running")).expect("VmRSS");
    agent.stop();

    let on = |topic: &str| seen.iter().filter(|m| m.topic == topic).count() as u64;
    let per_s = 20 + 1;
    assert!(on(&t.status) <= secs + 2, "{} status republishes in {secs} s", on(&t.status));
    assert!(on(&t.dlq) <= per_s * secs, "{} dead letters in {secs} s", on(&t.dlq));
    assert!(on(&policy_reply) <= per_s * secs, "{} policy answers in {secs} s", on(&policy_reply));
    assert!(on(&hostile.response_topic) <= per_s * secs, "{} cmd answers in {secs} s", on(&hostile.response_topic));
    let records = agent.export();
    let policy_refusals = records.iter().filter(|r| r["kind"] == "POLICY" && r["code"].is_string()).count() as u64;
    let rejected: Vec<_> = records.iter().filter(|r| r["kind"] == "REJECTED").collect();
    assert!(policy_refusals + rejected.len() as u64 <= 2 * per_s * secs, "records stay bounded: {}", rejected.len());
    let counted: u64 = rejected.iter().filter_map(|r| r["count"].as_u64()).sum();
    assert_eq!(counted + policy_refusals, 2 * N as u64, "every refusal is witnessed or counted in a summary");
    assert!(rss_after < rss_before + 10 * 1024, "RSS {rss_before} KiB -> {rss_after} KiB");
}

#[test]
fn a_first_trust_root_pushed_on_the_broker_is_refused() {
    let broker = Broker::start();
    let mut agent = Agent::init_bare(&broker);
    agent.start();
    let mallory = Talent::new("mallory");
    let root = agent.dir.path().join("mallory-root.toml");
    Agent::trust_root(&mallory, &mallory, &root);
    let hostile = Probe::connect(&broker, &agent.site, &agent.name);
    let answer = hostile.reply_topic_for("policy");
    let text = std::fs::read(&root).expect("root");
    hostile.request_to(&hostile.topics.policy, text, Some(&answer), Some(b"root"));
    let reply = hostile.next_on(&answer, WAIT).expect("answered");
    assert_eq!(reply.code().as_deref(), Some("IF_ERR_003"), "{}", reply.json());
    agent.stop();
    let installed = agent.export().iter().any(|r| r["kind"] == "POLICY" && r["code"].is_null());
    assert!(!installed, "no root was installed");
}

#[test]
fn a_pushed_manifest_with_400_actions_is_refused_naming_the_key_and_the_limit() {
    let broker = Broker::start();
    let mut agent = Agent::init(&broker, &[]);
    agent.start();
    let hostile = Probe::connect(&broker, &agent.site, &agent.name);
    let mut text = include_str!("../fixtures/manifests/loopback.toml").to_string();
    for i in 0..400 {
        text += &format!("\n[[actions]]\nname = \"a{i}\"\nhazards = []\ncost = 0\n");
    }
    let answer = hostile.reply_topic_for("policy");
    hostile.request_to(&hostile.topics.policy, text.into_bytes(), Some(&answer), Some(b"big"));
    let reply = hostile.next_on(&answer, WAIT).expect("answered");
    assert_eq!(reply.code().as_deref(), Some("IF_ERR_101"), "{}", reply.json());
    let message = reply.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("actions: at most 32 entries, got 402"), "{message}");
    agent.stop();
}
