//! The operator verbs against a running agent and a vMix simulator: `capability list|apply` (also as a
//! dry run), `falsify --task` on a good and a bad cue list, and `witness query` by trace token (of the
//! running agent over MQTT, and of its file), with connection settings from an `ifctl.toml`. Dry runs must never reach the device.

use std::path::Path;
use std::process::Output;

use if_protocol::envelope::{ArgValue, Hazards};
use if_tests::agent::Agent;
use if_tests::device::{self, DeviceRig, Limits, code};
use if_tests::sim::Sim;

const VMIX: &str = "if://capability/vmix.switcher";

fn ifctl(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--config", config.to_str().expect("utf8")];
    all.extend_from_slice(args);
    Agent::ifctl(&all)
}

fn cuts(sim: &Sim) -> usize {
    sim.received().iter().filter(|l| l.starts_with("FUNCTION Cut")).count()
}

#[test]
fn capability_verbs_dry_runs_cue_lists_and_trace_queries() {
    let sim = Sim::start("vmix");
    let m = device::manifest(
        VMIX,
        "vmix-tcp",
        &sim.endpoint(),
        Limits::default(),
        &["cut", "preview_input"],
        &["cut"],
        &[],
    );
    let mut r = DeviceRig::new(&m, VMIX, &["cut", "preview_input"], |_, _| {});
    let ready = if_tests::wait_for(std::time::Duration::from_secs(10), || {
        (code(&r.ask("preview_input", Hazards::NONE, &[("Input", ArgValue::Int(2))])) == "OK").then_some(())
    });
    assert!(ready.is_some());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ifctl.toml");
    let settings = r.agent.ifctl_toml("desk", &r.desk.secret);
    std::fs::write(&config, settings).expect("ifctl.toml");

    let list = ifctl(&config, &["--json", "capability", "list"]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let vmix = rows.as_array().and_then(|a| a.iter().find(|m| m["id"] == VMIX)).expect("vMix listed").clone();
    assert_eq!(vmix["driver"], "vmix-tcp");
    assert_eq!(vmix["breaker"], "closed");
    assert_eq!(vmix["actions"], serde_json::json!(["cut", "preview_input"]));

    // A dry run of a good cut: would run, says what it would send, sends nothing.
    let dry = ifctl(
        &config,
        &[
            "capability",
            "apply",
            VMIX,
            "--action",
            "cut",
            "--hazard",
            "on_air",
            "--why",
            "rehearse",
            "--mode",
            "falsify",
        ],
    );
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("reply");
    assert_eq!(reply["result"]["would_run"], true, "{reply}");
    assert_eq!(reply["result"]["sends"], serde_json::json!(["FUNCTION Cut"]));
    // Without the hazard: every problem listed, the exit status of the first.
    let dry =
        ifctl(&config, &["capability", "apply", VMIX, "--action", "cut", "--why", "rehearse", "--mode", "falsify"]);
    assert_eq!(dry.status.code(), Some(12), "a policy-class problem: {}", String::from_utf8_lossy(&dry.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("reply");
    assert_eq!(reply["result"]["problems"][0]["code"], "IF_ERR_205", "{reply}");
    assert_eq!(cuts(&sim), 0, "no dry run reached vMix");

    // The real thing, with a trace token.
    let trace = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f";
    let real = ifctl(
        &config,
        &["capability", "apply", VMIX, "--action", "cut", "--hazard", "on_air", "--why", "on air", "--trace", trace],
    );
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));
    assert_eq!(cuts(&sim), 1);

    // A show's cue list: the good cues pass, each bad one is listed with its code, and nothing runs.
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[[cue]]\nname = \"open\"\ncapability = \"{VMIX}\"\naction = \"cut\"\nhazards = [\"on_air\"]\n\n\
             [[cue]]\nname = \"pre\"\ncapability = \"{VMIX}\"\naction = \"preview_input\"\nargs = {{ Input = 2 }}\n"
        ),
    )
    .expect("write");
    let out = ifctl(&config, &["falsify", "--task", good.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 of 2 cues would fail"));
    let bad = dir.path().join("bad.json");
    let cues = serde_json::json!({ "cue": [
        { "name": "open", "capability": VMIX, "action": "cut", "hazards": ["on_air"] },
        { "name": "no consent", "capability": VMIX, "action": "cut" },
        { "name": "fade", "capability": VMIX, "action": "fade" },
        { "name": "lights", "capability": "if://capability/lights.dmx", "action": "on" },
    ]});
    std::fs::write(&bad, cues.to_string()).expect("write");
    let out = ifctl(&config, &["falsify", "--task", bad.to_str().expect("utf8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(12), "{text}");
    assert!(text.contains("ok    open"), "{text}");
    assert!(text.contains("FAIL  no consent: IF_ERR_205"), "{text}");
    assert!(text.contains("FAIL  fade: IF_ERR_206"), "{text}");
    assert!(text.contains("FAIL  lights: IF_ERR_201"), "{text}");
    assert!(text.contains("3 of 4 cues would fail"), "{text}");
    let out = ifctl(&config, &["--json", "falsify", "--task", bad.to_str().expect("utf8")]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report.as_array().map(|a| a.iter().filter(|c| c["ok"] == false).count()), Some(3));
    assert_eq!(cuts(&sim), 1, "a cue list check runs nothing");

    // Asked of the running agent, over MQTT: the same two records.
    let live = ifctl(&config, &["--json", "witness", "query", "--trace-token", trace]);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&live.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["RECEIVED", "EXECUTED"], "{records:#?}");
    assert!(records.iter().all(|r| r["trace"] == trace && r["why"] == "on air"), "{records:#?}");

    r.agent.stop();
    let db = r.agent.db();
    let q = ifctl(&config, &["witness", "query", "--trace-token", trace, "--db", db.to_str().expect("utf8")]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let lines = String::from_utf8_lossy(&q.stdout).lines().map(String::from).collect::<Vec<_>>();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("RECEIVED") && lines[0].contains("why \"on air\""), "{lines:#?}");
    assert!(lines[1].contains("EXECUTED"), "{lines:#?}");
    let kinds: Vec<String> =
        r.agent.export().iter().map(|rec| rec["kind"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "FALSIFY").count(), 2 + 2 + 4 + 4, "every dry run is witnessed");
}
