//! Talents and grants through the real binaries: `ifctl talent add|grant|revoke` signs policy commands
//! with a policy key of the trust root, the agent witnesses and persists them, and every command a
//! talent sends is authorized against them. Each refusal has its code on the reply, runs nothing, and
//! is witnessed; the policy survives `kill -9`; a replayed policy command is answered like any replayed
//! envelope and changes nothing.

use std::path::Path;
use std::time::Duration;

use if_protocol::envelope::{ArgValue, Args, EnvelopeBody, Hazards};
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::{Talent, now_ms};

const LOOP: &str = "if://capability/studio.loop";
const AUX: &str = "if://capability/studio.aux";
const EXTRA: &str = "if://capability/studio.extra";
const LOOPBACK: &str = include_str!("../fixtures/manifests/loopback.toml");

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn ifctl_ok(args: &[&str]) -> String {
    let out = Agent::ifctl(args);
    assert!(out.status.success(), "ifctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Site {
    broker: Broker,
    agent: Agent,
    sec: Talent,
    root_key: Talent,
    files: std::path::PathBuf,
}

impl Site {
    /// `ifctl talent VERB ...` signed by the policy key.
    fn talent(&self, verb: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["talent", verb];
        all.extend_from_slice(args);
        let url = self.broker.url();
        let pinned = self.agent.public_key();
        all.extend(["--broker", &url, "--site", &self.agent.site, "--agent", &self.agent.name]);
        all.extend(["--agent-key", p(&pinned)]);
        all.extend(["--key", p(&self.sec.secret), "--why", "policy test"]);
        Agent::ifctl(&all)
    }

    /// Grants `desk` cut and preview on the loopback capability, with the on-air hazard.
    fn grant_desk_cut_and_preview(&self) {
        let args = ["--name", "desk", "--capability", LOOP, "--scope", "studio:control", "--action", "cut"];
        self.talent_ok("grant", &[&args[..], &["--action", "preview", "--hazard", "on_air"]].concat());
    }

    fn talent_ok(&self, verb: &str, args: &[&str]) {
        let out = self.talent(verb, args);
        assert!(out.status.success(), "talent {verb} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A root with signing key `root` and policy key `sec`, two loopback capabilities, an agent.
fn site() -> Site {
    site_with("")
}

/// [`site`] with `extra` appended to the agent's config.
fn site_with(extra: &str) -> Site {
    let broker = Broker::start();
    let root_key = Talent::new("root");
    let sec = Talent::new("sec");
    let mut agent = Agent::init_bare(&broker);
    let files = agent.dir.path().join("policy");
    let manifests = files.join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    let root = files.join("root.toml");
    ifctl_ok(&["trust", "init", "--key", p(&root_key.secret), "--policy-key", p(&sec.public), "--out", p(&root)]);
    for (name, text) in [("loop", LOOPBACK.to_string()), ("aux", LOOPBACK.replace("studio.loop", "studio.aux"))] {
        let unsigned = files.join(format!("{name}.toml"));
        std::fs::write(&unsigned, text).expect("write");
        let out = manifests.join(format!("{name}.toml"));
        ifctl_ok(&["manifest", "sign", p(&unsigned), "--key", p(&root_key.secret), "--out", p(&out)]);
    }
    let section = format!(
        "[trust]\nroot = {:?}\nmanifests = {:?}\nallow = [\"{LOOP}@1.0.0\", \"{AUX}@1.0.0\", \"{EXTRA}@1.0.0\"]\n",
        p(&root),
        p(&manifests)
    );
    agent.edit_config(|t| t.replace("[trust]\nallow = []\nno_root = true\n", &section) + extra);
    agent.start();
    Site { broker, agent, sec, root_key, files }
}

fn command(t: &Talent, capability: &str, action: &str, hazards: Hazards, scope: &str) -> EnvelopeBody {
    let mut b = t.next_ping();
    b.capability = capability.try_into().expect("short");
    b.action = action.try_into().expect("short");
    b.hazards = hazards;
    b.scope = scope.try_into().expect("short");
    b
}

/// Publishes `frame` and returns the reply to it.
fn ask(probe: &Probe, frame: Vec<u8>, n: &mut u64) -> serde_json::Value {
    *n += 1;
    let corr = n.to_be_bytes();
    probe.request(frame, &corr);
    loop {
        let m = probe.next(Duration::from_secs(10)).expect("a reply");
        if m.correlation.as_deref() == Some(&corr[..]) {
            return m.json();
        }
    }
}

fn code(reply: &serde_json::Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("OK")
}

#[test]
fn talents_and_grants_decide_every_command_and_survive_a_crash() {
    let mut s = site();
    let probe = Probe::connect(&s.broker, &s.agent.site, &s.agent.name);
    let mut n = 0;
    let (desk, guest) = (Talent::new("desk"), Talent::new("guest"));
    let ctl = "studio:control";

    // Before it is added, the desk is unknown.
    let early = ask(&probe, desk.sign(&command(&desk, LOOP, "preview", Hazards::NONE, ctl)), &mut n);
    assert_eq!(code(&early), "IF_ERR_004", "{early}");

    s.talent_ok("add", &["--name", "desk", "--role", "director", "--pubkey", p(&desk.public)]);
    s.talent_ok("add", &["--name", "guest", "--role", "guest", "--pubkey", p(&guest.public)]);
    // Known but not granted.
    let none = ask(&probe, desk.sign(&command(&desk, LOOP, "preview", Hazards::NONE, ctl)), &mut n);
    assert_eq!(code(&none), "IF_ERR_003", "{none}");
    s.grant_desk_cut_and_preview();
    s.talent_ok("grant", &["--name", "guest", "--capability", LOOP, "--scope", ctl, "--action", "preview"]);
    s.talent_ok(
        "grant",
        &["--name", "guest", "--capability", AUX, "--scope", ctl, "--action", "cut", "--action", "preview"],
    );
    // A grant that has already expired is refused when it is sent, and would not replace a working one.
    let past = s.talent(
        "grant",
        &["--name", "desk", "--capability", AUX, "--scope", ctl, "--action", "preview", "--expires", "1000"],
    );
    assert_eq!(past.status.code(), Some(10), "PERMISSION_DENIED exits 10");
    assert!(
        String::from_utf8_lossy(&past.stderr)
            .contains("IF_ERR_003 PERMISSION_DENIED: the grant would have expired at 1000")
    );
    // One that expires in two seconds is taken, and refuses its commands once the time is past.
    let soon = now_ms() / 1000 + 2;
    let expires = soon.to_string();
    s.talent_ok(
        "grant",
        &["--name", "desk", "--capability", AUX, "--scope", ctl, "--action", "preview", "--expires", &expires],
    );
    while now_ms() / 1000 < soon {
        std::thread::sleep(Duration::from_millis(100));
    }

    let cases: Vec<(&str, &Talent, EnvelopeBody, &str)> = vec![
        ("granted, no hazard", &desk, command(&desk, LOOP, "preview", Hazards::NONE, ctl), "OK"),
        ("granted, hazard declared and allowed", &desk, command(&desk, LOOP, "cut", Hazards::ON_AIR, ctl), "OK"),
        ("hazard not declared", &desk, command(&desk, LOOP, "cut", Hazards::NONE, ctl), "IF_ERR_205"),
        ("wrong scope", &desk, command(&desk, LOOP, "preview", Hazards::NONE, "studio:admin"), "IF_ERR_204"),
        ("action not in the manifest", &desk, command(&desk, LOOP, "fade", Hazards::NONE, ctl), "IF_ERR_206"),
        ("action not in the grant", &guest, command(&guest, LOOP, "cut", Hazards::ON_AIR, ctl), "IF_ERR_206"),
        ("hazard not granted", &guest, command(&guest, AUX, "cut", Hazards::ON_AIR, ctl), "IF_ERR_205"),
        ("expired grant", &desk, command(&desk, AUX, "preview", Hazards::NONE, ctl), "IF_ERR_003"),
        (
            "no trusted manifest",
            &desk,
            command(&desk, "if://capability/vmix.switcher", "cut", Hazards::ON_AIR, ctl),
            "IF_ERR_201",
        ),
        (
            "a talent sending policy",
            &desk,
            command(&desk, "if://capability/edge.policy", "talent.revoke", Hazards::NONE, ctl),
            "IF_ERR_003",
        ),
    ];
    for (what, who, body, want) in &cases {
        let reply = ask(&probe, who.sign(body), &mut n);
        assert_eq!(code(&reply), *want, "{what}: {reply}");
        if *want == "OK" {
            assert_eq!(reply["result"]["loopback"], body.action.as_str(), "{what}: {reply}");
        }
    }

    // A policy command sent again is a replay: the same answer, and nothing changes.
    let mut revoke = command(&s.sec, "if://capability/edge.policy", "talent.revoke", Hazards::NONE, "policy");
    let mut args = Args::new();
    args.insert("name", ArgValue::Text("guest".try_into().expect("short"))).expect("arg");
    revoke.args = args;
    // ifctl's counter for the key started at the clock in microseconds; stay ahead of it, but within the
    // clock bound (the agent's clock plus its 30 s skew).
    revoke.seq = if_tests::talent::now_ms() * 1000 + 10_000_000;
    let frame = s.sec.sign(&revoke);
    let first = ask(&probe, frame.clone(), &mut n);
    assert_eq!(code(&first), "OK", "{first}");
    let again = ask(&probe, frame, &mut n);
    assert_eq!(again, first, "a replayed policy command gets the original reply");
    let guest_now = ask(&probe, guest.sign(&command(&guest, LOOP, "preview", Hazards::NONE, ctl)), &mut n);
    assert_eq!(code(&guest_now), "IF_ERR_005", "{guest_now}");

    // The policy is in the log: after kill -9 the desk is still granted and the guest still revoked.
    s.agent.kill9();
    s.agent.start();
    let desk_after = ask(&probe, desk.sign(&command(&desk, LOOP, "cut", Hazards::ON_AIR, ctl)), &mut n);
    assert_eq!(code(&desk_after), "OK", "{desk_after}");
    let guest_after = ask(&probe, guest.sign(&command(&guest, LOOP, "preview", Hazards::NONE, ctl)), &mut n);
    assert_eq!(code(&guest_after), "IF_ERR_005", "{guest_after}");
    s.agent.stop();

    let records = s.agent.export();
    let executed = records.iter().filter(|r| r["kind"] == "EXECUTED" && r["capability"] == LOOP).count();
    assert_eq!(executed, 3, "only the three allowed commands ran");
    let policy: Vec<_> = records.iter().filter(|r| r["kind"] == "POLICY" && r["sender"] == "sec").collect();
    assert_eq!(policy.len(), 7, "2 adds, 4 grants, 1 revoke: {policy:?}");
    let rejected: Vec<&str> =
        records.iter().filter(|r| r["kind"] == "REJECTED").filter_map(|r| r["code"].as_str()).collect();
    for want in ["IF_ERR_003", "IF_ERR_004", "IF_ERR_005", "IF_ERR_201", "IF_ERR_204", "IF_ERR_205", "IF_ERR_206"] {
        assert!(rejected.contains(&want), "{want} witnessed: {rejected:?}");
    }
    let verify = s.agent.verify_witness();
    assert!(verify.status.success(), "verify: {}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn policy_commands_are_refused_with_their_code() {
    let s = site();
    let desk = Talent::new("desk");
    let other = Talent::new("other");
    // Granting a talent that does not exist.
    let out =
        s.talent("grant", &["--name", "ghost", "--capability", LOOP, "--scope", "studio:control", "--action", "cut"]);
    assert_eq!(out.status.code(), Some(12), "TALENT_NOT_FOUND exits 12");
    assert!(String::from_utf8_lossy(&out.stderr).contains("IF_ERR_203"));
    s.talent_ok("add", &["--name", "desk", "--role", "director", "--pubkey", p(&desk.public)]);
    // The same name with another key, while active.
    let out = s.talent("add", &["--name", "desk", "--role", "director", "--pubkey", p(&other.public)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("IF_ERR_003"), "{}", String::from_utf8_lossy(&out.stderr));
    // The policy key itself cannot become a talent.
    let out = s.talent("add", &["--name", "sneaky", "--role", "x", "--pubkey", p(&s.sec.public)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("IF_ERR_003"));
    // A key that is not a policy key of the root cannot sign policy.
    let mut args = vec!["talent", "revoke", "--name", "desk"];
    let url = s.broker.url();
    let pinned = s.agent.public_key();
    args.extend(["--broker", &url, "--site", &s.agent.site, "--agent", &s.agent.name]);
    args.extend(["--key", p(&desk.secret), "--why", "self-revoke", "--agent-key", p(&pinned)]);
    let out = Agent::ifctl(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("IF_ERR_003"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_budget_allows_exactly_its_units_per_period_and_survives_a_crash() {
    let mut s = site_with(&format!("\n[[budget]]\nprovider = \"{LOOP}\"\nunits = 2\nperiod_s = 86400\n"));
    let probe = Probe::connect(&s.broker, &s.agent.site, &s.agent.name);
    let mut n = 0;
    let desk = Talent::new("desk");
    let ctl = "studio:control";
    s.talent_ok("add", &["--name", "desk", "--role", "director", "--pubkey", p(&desk.public)]);
    s.grant_desk_cut_and_preview();
    let cut = |n: &mut u64| ask(&probe, desk.sign(&command(&desk, LOOP, "cut", Hazards::ON_AIR, ctl)), n);
    assert_eq!(code(&cut(&mut n)), "OK", "1 of 2");
    assert_eq!(code(&cut(&mut n)), "OK", "2 of 2: exactly at the limit");
    let over = cut(&mut n);
    assert_eq!(code(&over), "IF_ERR_301", "one past the limit: {over}");
    let free = ask(&probe, desk.sign(&command(&desk, LOOP, "preview", Hazards::NONE, ctl)), &mut n);
    assert_eq!(code(&free), "OK", "an action of cost 0 is never refused: {free}");

    s.agent.kill9();
    s.agent.start();
    assert_eq!(code(&cut(&mut n)), "IF_ERR_301", "the spending survives kill -9");
    let watcher = Probe::connect(&s.broker, &s.agent.site, &s.agent.name);
    watcher.subscribe(&watcher.topics.status);
    let status = watcher.next_on(&watcher.topics.status, Duration::from_secs(10)).expect("status").json();
    assert_eq!(status["budgets"][0]["provider"], LOOP, "{status}");
    assert_eq!((status["budgets"][0]["spent"].as_u64(), status["budgets"][0]["units"].as_u64()), (Some(2), Some(2)));
    s.agent.stop();

    let records = s.agent.export();
    let charged: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "RECEIVED")
        .filter_map(|r| r["detail"].as_str())
        .filter(|d| d.starts_with("cost 1 charged"))
        .collect();
    assert_eq!(
        charged,
        [
            format!("cost 1 charged to {LOOP}: 1 of 2 units this period"),
            format!("cost 1 charged to {LOOP}: 2 of 2 units this period")
        ]
    );
    let refused = records.iter().filter(|r| r["kind"] == "REJECTED" && r["code"] == "IF_ERR_301").count();
    assert_eq!(refused, 2, "each refusal witnessed");
}

#[test]
fn a_manifest_pushed_at_run_time_is_checked_witnessed_and_offered() {
    let mut s = site();
    let desk = Talent::new("desk");
    let probe = Probe::connect(&s.broker, &s.agent.site, &s.agent.name);
    let mut n = 0;
    s.talent_ok("add", &["--name", "desk", "--role", "director", "--pubkey", p(&desk.public)]);
    let unsigned = s.files.join("extra.unsigned.toml");
    std::fs::write(&unsigned, LOOPBACK.replace("studio.loop", "studio.extra")).expect("write");
    let signed = s.files.join("extra.toml");
    ifctl_ok(&["manifest", "sign", p(&unsigned), "--key", p(&s.root_key.secret), "--out", p(&signed)]);
    let forged = s.files.join("forged.toml");
    ifctl_ok(&["manifest", "sign", p(&unsigned), "--key", p(&s.sec.secret), "--out", p(&forged)]);
    let url = s.broker.url();
    let pinned = s.agent.public_key();
    let push = |file: &Path| {
        Agent::ifctl(&[
            "manifest",
            "push",
            p(file),
            "--broker",
            &url,
            "--site",
            &s.agent.site,
            "--agent",
            &s.agent.name,
            "--agent-key",
            p(&pinned),
        ])
    };

    let refused = push(&forged);
    assert_eq!(refused.status.code(), Some(10), "signed by a key that may not sign manifests");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("IF_ERR_001"));
    let first = push(&signed);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains(&format!("manifest {EXTRA}@1.0.0 installed")));
    let again = push(&signed);
    assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged"), "a replay is a no-op");

    s.talent_ok(
        "grant",
        &["--name", "desk", "--capability", EXTRA, "--scope", "studio:control", "--action", "preview"],
    );
    let reply = ask(&probe, desk.sign(&command(&desk, EXTRA, "preview", Hazards::NONE, "studio:control")), &mut n);
    assert_eq!(reply["result"]["loopback"], "preview", "the pushed capability is offered at once: {reply}");

    let watcher = Probe::connect(&s.broker, &s.agent.site, &s.agent.name);
    watcher.subscribe(&watcher.topics.status);
    // Status republishes after changes are coalesced to one a second: the new manifest shows within one.
    let offers_extra = |status: &serde_json::Value| {
        status["policy"]["manifests"].as_array().is_some_and(|a| a.iter().any(|m| m["id"] == EXTRA))
    };
    let mut status = serde_json::Value::Null;
    let shown = if_tests::wait_for(Duration::from_secs(5), || {
        status = watcher.next_on(&watcher.topics.status, Duration::from_millis(500))?.json();
        offers_extra(&status).then_some(())
    });
    assert!(shown.is_some(), "the retained status was published again: {status}");
    s.agent.stop();
    let pushed: Vec<String> = s
        .agent
        .export()
        .iter()
        .filter(|r| r["kind"] == "POLICY" && r["detail"].as_str().is_some_and(|d| d.starts_with("pushed on")))
        .map(|r| r["code"].as_str().unwrap_or("installed").to_string())
        .collect();
    assert_eq!(pushed, ["IF_ERR_001", "installed"], "the refusal and the install are witnessed; the replay is not");
}

#[test]
fn device_failures_open_the_lane_breaker_which_is_witnessed_and_closes_after_a_good_probe() {
    let mut s = site();
    let desk = Talent::new("desk");
    let probe = Probe::connect(&s.broker, &s.agent.site, &s.agent.name);
    let watcher = Probe::connect(&s.broker, &s.agent.site, &s.agent.name);
    watcher.subscribe(&watcher.topics.status);
    let mut n = 0;
    s.talent_ok("add", &["--name", "desk", "--role", "director", "--pubkey", p(&desk.public)]);
    s.grant_desk_cut_and_preview();
    let failing = || {
        let mut b = command(&desk, LOOP, "preview", Hazards::NONE, "studio:control");
        let mut a = Args::new();
        a.insert("fail", ArgValue::Text("unreachable".try_into().expect("short"))).expect("arg");
        b.args = a;
        desk.sign(&b)
    };
    // The lane tries an unreachable device three times (two retries, 1 s and 2 s apart): three
    // consecutive failures open the breaker.
    assert_eq!(code(&ask(&probe, failing(), &mut n)), "IF_ERR_401");
    let fast = ask(&probe, desk.sign(&command(&desk, LOOP, "preview", Hazards::NONE, "studio:control")), &mut n);
    assert_eq!(code(&fast), "IF_ERR_303", "open after 3 consecutive failures: fails fast: {fast}");

    // The status follows the breaker: open, then (after the 1 s wait and one good probe) closed.
    let breaker = |want: &str| {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < end {
            let Some(m) = watcher.next_on(&watcher.topics.status, Duration::from_millis(500)) else { continue };
            let st = m.json();
            let states = st["breakers"].as_array().cloned().unwrap_or_default();
            if states.iter().any(|b| b["capability"] == LOOP && b["state"] == want) {
                return true;
            }
        }
        false
    };
    assert!(breaker("open"), "the status shows the breaker open");
    assert!(breaker("closed"), "the status shows it closed again after the probe");
    let ok = ask(&probe, desk.sign(&command(&desk, LOOP, "preview", Hazards::NONE, "studio:control")), &mut n);
    assert_eq!(code(&ok), "OK", "{ok}");
    s.agent.stop();

    let changes: Vec<String> = s
        .agent
        .export()
        .iter()
        .filter(|r| r["kind"] == "BREAKER" && r["capability"] == LOOP)
        .filter_map(|r| r["detail"].as_str().and_then(|d| d.split(':').next()).map(String::from))
        .collect();
    assert_eq!(changes, ["closed -> open", "open -> half_open", "half_open -> closed"], "every change witnessed");
}
