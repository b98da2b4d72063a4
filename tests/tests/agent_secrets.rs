//! Secrets never leave the agent. A run at `RUST_LOG=trace` drives every path that touches a secret: a driver using its listed secret, a driver asking for one
//! its manifest does not list, a vault file with a loose mode, a sender putting the secret value itself
//! into arguments (under a sensitive key, under a plain key, and in `why`), and refusals. Then the agent's
//! whole log, the witness export and every MQTT message seen on `#` (but the commands the sender itself
//! wrote) are searched: zero occurrences.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use if_protocol::envelope::{ArgValue, Args, EnvelopeBody, Hazards};
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::{Msg, Probe};
use if_tests::talent::Talent;

const LOOP: &str = "if://capability/studio.loop";
const AUX: &str = "if://capability/studio.aux";
const TOKEN: &str = "tok-7f3a9c-VERY-SECRET-0042";
const AUX_KEY: &str = "aux-5521-ALSO-SECRET-9911";
const LOOPBACK: &str = include_str!("../fixtures/manifests/loopback.toml");

fn text(v: &str) -> ArgValue {
    ArgValue::Text(v.try_into().expect("short"))
}

fn preview(desk: &Talent, capability: &str, args: &[(&str, ArgValue)], why: &str) -> EnvelopeBody {
    let mut b = desk.next_ping();
    b.capability = capability.try_into().expect("short");
    b.action = "preview".try_into().expect("short");
    b.hazards = Hazards::NONE;
    b.why = why.try_into().expect("short");
    let mut a = Args::new();
    for (k, v) in args {
        a.insert(k, v.clone()).expect("arg");
    }
    b.args = a;
    b
}

fn ask(probe: &Probe, seen: &mut Vec<Msg>, frame: Vec<u8>, n: &mut u64) -> serde_json::Value {
    *n += 1;
    let corr = n.to_be_bytes();
    probe.request(frame, &corr);
    loop {
        let m = probe.next(Duration::from_secs(10)).expect("a reply");
        let mine = m.correlation.as_deref() == Some(&corr[..]) && m.topic != probe.topics.dlq;
        seen.push(m.clone());
        if mine {
            return m.json();
        }
    }
}

#[test]
fn no_secret_value_reaches_the_log_the_witness_or_mqtt() {
    secrets_stay_out(false);
}

#[test]
fn in_the_json_log_too_no_secret_value_appears_and_every_line_is_one_object() {
    let log = secrets_stay_out(true);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: a log line that is not JSON: {l:?}")))
        .collect();
    assert!(events.len() > 20, "{}", events.len());
    assert!(events.iter().all(|e| e["level"].is_string() && e["target"].is_string() && e["fields"].is_object()));
    let rumqttc = events.iter().filter(|e| e["target"].as_str().is_some_and(|t| t.starts_with("rumqttc"))).count();
    assert!(rumqttc > 0, "rumqttc's own log records come through the agent's log");
}

/// Runs the secret-handling story with the log in text or JSON; returns the log.
fn secrets_stay_out(json: bool) -> String {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    let vault = agent.dir.path().join("vault");
    std::fs::create_dir_all(&vault).expect("mkdir");
    for (name, value, mode) in [("studio_token", TOKEN, 0o600), ("aux_key", AUX_KEY, 0o644)] {
        let path = vault.join(name);
        std::fs::write(&path, format!("{value}\n")).expect("write secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let with_secret = |id: &str, secret: &str| {
        LOOPBACK
            .replace("studio.loop", id)
            .replace("requires_secrets = []", &format!("requires_secrets = [\"{secret}\"]"))
    };
    agent.add_manifest("loop", &with_secret("studio.loop", "studio_token"));
    agent.add_manifest("aux", &with_secret("studio.aux", "aux_key"));
    agent.edit_config(|t| {
        t.replace("allow = []", &format!("allow = [\"{LOOP}@1.0.0\", \"{AUX}@1.0.0\"]"))
            .replace("[vault]\n", &format!("[vault]\ndir = {:?}\n", vault.to_str().expect("utf-8")))
    });
    agent.log_filter = "trace".into();
    if json {
        agent.run_args = vec!["--log-format".into(), "json".into()];
    }

    let everything = Probe::connect(&broker, &agent.site, &agent.name);
    everything.subscribe("#");
    agent.start();
    for cap in [LOOP, AUX] {
        let out = agent.talent(
            "grant",
            &["--name", "desk", "--capability", cap, "--scope", "studio:control", "--action", "preview"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    let mut seen = Vec::new();
    let mut n = 0;

    let used =
        ask(&probe, &mut seen, desk.sign(&preview(&desk, LOOP, &[("vault", text("studio_token"))], "go")), &mut n);
    assert_eq!(used["result"]["vault"]["held"], true, "{used}");
    assert_eq!(used["result"]["vault"]["bytes"], TOKEN.len());
    let unlisted =
        ask(&probe, &mut seen, desk.sign(&preview(&desk, LOOP, &[("vault", text("aux_key"))], "go")), &mut n);
    assert_eq!(unlisted["error"]["code"], "IF_ERR_003", "a driver asking for an unlisted secret: {unlisted}");
    let aux = ask(&probe, &mut seen, desk.sign(&preview(&desk, AUX, &[], "go")), &mut n);
    assert_eq!(aux["error"]["code"], "IF_ERR_201", "its vault file has mode 0644, so it is not offered: {aux}");
    let keyed = ask(&probe, &mut seen, desk.sign(&preview(&desk, LOOP, &[("api_key", text(TOKEN))], "go")), &mut n);
    assert_eq!(keyed["result"]["args"]["api_key"], "[REDACTED]", "{keyed}");
    let plain = ask(&probe, &mut seen, desk.sign(&preview(&desk, LOOP, &[("note", text(TOKEN))], TOKEN)), &mut n);
    assert_eq!(plain["result"]["args"]["note"], "[REDACTED]", "{plain}");
    let refused = ask(
        &probe,
        &mut seen,
        desk.sign(&preview(&desk, "if://capability/nowhere", &[("k", text(TOKEN))], "x")),
        &mut n,
    );
    assert_eq!(refused["error"]["code"], "IF_ERR_201");
    // The agent stops in order: whatever it queued is published before it disconnects.
    agent.stop();
    seen.extend(everything.drain(Duration::from_millis(300)));

    let log = agent.log();
    assert!(log.contains("mode 0644"), "the loose vault file is reported");
    assert!(log.contains("DEBUG"), "the run logged at debug level and below");
    let export = serde_json::to_string(&agent.export()).expect("json");
    let status = seen.iter().filter(|m| m.topic.ends_with("/status")).map(Msg::json).find(|s| s["state"] == "online");
    let refusals = status.map(|s| s["policy"]["refused"].to_string()).unwrap_or_default();
    assert!(refusals.contains("studio.aux driver") && refusals.contains("IF_ERR_003"), "status shows it: {refusals}");
    assert!(seen.len() >= 12, "every MQTT message was captured: {}", seen.len());
    for secret in [TOKEN, AUX_KEY] {
        assert_eq!(log.matches(secret).count(), 0, "the log holds {secret}");
        assert_eq!(export.matches(secret).count(), 0, "the witness holds {secret}");
        // The command topic carries what the sender itself wrote; everything else is the agent's.
        for m in seen.iter().filter(|m| !m.topic.ends_with("/cmd")) {
            assert!(!String::from_utf8_lossy(&m.payload).contains(secret), "{} carries {secret}", m.topic);
        }
    }
    assert!(log.contains("rumqttc"), "rumqttc's log records are bridged into the agent's log");
    log
}
