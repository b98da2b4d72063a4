//! Trust through the real binaries: `ifctl trust init|rotate` and `ifctl manifest sign` make the files,
//! `if-edge run` loads them at start. Every refused manifest shows its code on the retained status, in
//! the witness (a POLICY record carrying the code) and in the log; the agent keeps what it trusted
//! before, across restarts, and a rotated root takes the old keys' power away.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::probe::Probe;
use if_tests::talent::Talent;

const FIXTURE: &str = include_str!("../fixtures/manifests/vmix.toml");

fn ifctl(args: &[&str]) -> String {
    let out = Agent::ifctl(args);
    assert!(out.status.success(), "ifctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Writes `text` as an unsigned manifest and signs it with `keys` into `out`.
fn sign(dir: &Path, name: &str, text: &str, keys: &[&Talent], out: &Path) -> String {
    let unsigned = dir.join(format!("{name}.unsigned"));
    std::fs::write(&unsigned, text).expect("write manifest");
    let mut args = vec!["manifest", "sign", p(&unsigned), "--out", p(out)];
    for k in keys {
        args.extend(["--key", p(&k.secret)]);
    }
    ifctl(&args)
}

fn variant(id: &str, version: &str) -> String {
    FIXTURE.replace("vmix.switcher", id).replace("\"1.2.0\"", &format!("\"{version}\""))
}

fn status(broker: &Broker, agent: &Agent) -> serde_json::Value {
    let watcher = Probe::connect(broker, &agent.site, &agent.name);
    watcher.subscribe(&watcher.topics.status);
    watcher.next_on(&watcher.topics.status, Duration::from_secs(15)).expect("retained status").json()
}

fn installed(status: &serde_json::Value) -> Vec<String> {
    let list = status["policy"]["manifests"].as_array().cloned().unwrap_or_default();
    list.iter().map(|m| format!("{}@{}", m["id"].as_str().unwrap_or(""), m["version"].as_str().unwrap_or(""))).collect()
}

/// Refused files by name (a manifest whose driver this build lacks is listed too, under its id; not here).
fn refused(status: &serde_json::Value) -> HashMap<String, String> {
    let list = status["policy"]["refused"].as_array().cloned().unwrap_or_default();
    list.iter()
        .filter(|r| r["source"].as_str().is_some_and(|s| s.ends_with(".toml")))
        .map(|r| (r["source"].as_str().unwrap_or("").to_string(), r["code"].as_str().unwrap_or("").to_string()))
        .collect()
}

struct Site {
    broker: Broker,
    agent: Agent,
    files: PathBuf,
    manifests: PathBuf,
    a: Talent,
    b: Talent,
}

/// A root of keys `a` and `b` (threshold 2) and an agent configured with it, `allow` and a manifest dir.
fn site(allow: &[&str]) -> Site {
    let broker = Broker::start();
    let (a, b) = (Talent::new("root-a"), Talent::new("root-b"));
    let agent = Agent::init_bare(&broker);
    let files = agent.dir.path().join("policy");
    let manifests = files.join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    let root = files.join("root.toml");
    ifctl(&["trust", "init", "--key", p(&a.secret), "--key", p(&b.secret), "--threshold", "2", "--out", p(&root)]);
    let allow: Vec<String> = allow.iter().map(|e| format!("{e:?}")).collect();
    let section =
        format!("[trust]\nroot = {:?}\nmanifests = {:?}\nallow = [{}]\n", p(&root), p(&manifests), allow.join(", "));
    agent.edit_config(|t| t.replace("[trust]\nallow = []\nno_root = true\n", &section));
    Site { broker, agent, files, manifests, a, b }
}

#[test]
fn manifests_load_only_when_the_trust_root_vouches_and_the_allow_list_agrees() {
    let zeros = "00".repeat(32);
    let pinned = format!("if://capability/vmix.graphics@1.2.0#sha256:{zeros}");
    let mut s = site(&[
        "if://capability/vmix.switcher@1.2.0",
        "if://capability/vmix.switcher@1.1.0",
        "if://capability/vmix.preview@1.2.0",
        "if://capability/vmix.aux@1.2.0",
        "if://capability/vmix.replay@1.0.0",
        &pinned,
        "if://capability/vmix.audio@1.2.0",
    ]);
    let outsider = Talent::new("outsider");
    let m = |name: &str| s.manifests.join(format!("{name}.toml"));
    let out = sign(&s.files, "good", FIXTURE, &[&s.a, &s.b], &m("10-switcher"));
    assert!(out.contains("allow = \"if://capability/vmix.switcher@1.2.0#sha256:"), "{out}");
    sign(&s.files, "one", &variant("vmix.preview", "1.2.0"), &[&s.a], &m("20-one-signature"));
    // The outsider's key may be carried anywhere; the root does not list it, so it counts for nothing.
    sign(&s.files, "out", &variant("vmix.aux", "1.2.0"), &[&outsider, &s.a], &m("30-outsider"));
    sign(&s.files, "unk", &variant("videohub.router", "1.2.0"), &[&s.a, &s.b], &m("40-unknown-id"));
    sign(&s.files, "ver", &variant("vmix.replay", "2.0.0"), &[&s.a, &s.b], &m("50-version"));
    sign(&s.files, "pin", &variant("vmix.graphics", "1.2.0"), &[&s.a, &s.b], &m("60-pin"));
    let expired = variant("vmix.audio", "1.2.0").replace("4000000000", "1000000000");
    sign(&s.files, "exp", &expired, &[&s.a, &s.b], &m("70-expired"));

    // A manifest that breaks a value rule is not even signed.
    let broken = s.files.join("broken.toml");
    std::fs::write(&broken, FIXTURE.replace("rps = 10.0", "rps = 0.0")).expect("write");
    let out = Agent::ifctl(&["manifest", "sign", p(&broken), "--key", p(&s.a.secret), "--out", p(&m("99-broken"))]);
    assert_eq!(out.status.code(), Some(11), "INVALID_ENVELOPE exits 11");
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.rps must be > 0"));

    s.agent.start();
    let st = status(&s.broker, &s.agent);
    assert_eq!(st["policy"]["trust_root"], 1, "{st}");
    assert_eq!(installed(&st), ["if://capability/vmix.switcher@1.2.0"]);
    let want: HashMap<String, String> = [
        ("20-one-signature.toml", "IF_ERR_001"),
        ("30-outsider.toml", "IF_ERR_001"),
        ("40-unknown-id.toml", "IF_ERR_201"),
        ("50-version.toml", "IF_ERR_202"),
        ("60-pin.toml", "IF_ERR_202"),
        ("70-expired.toml", "IF_ERR_207"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(refused(&st), want);

    // Rollback and same-version-different-bytes, offered at the next start, are refused.
    std::fs::remove_file(m("20-one-signature")).expect("rm");
    sign(&s.files, "down", &variant("vmix.switcher", "1.1.0"), &[&s.a, &s.b], &m("80-rollback"));
    let changed = FIXTURE.replace("rps = 10.0", "rps = 50.0");
    sign(&s.files, "chg", &changed, &[&s.a, &s.b], &m("90-same-version"));
    s.agent.stop();
    s.agent.start();
    let st = status(&s.broker, &s.agent);
    assert_eq!(installed(&st), ["if://capability/vmix.switcher@1.2.0"], "{st}");
    let r = refused(&st);
    assert_eq!(r.get("80-rollback.toml").map(String::as_str), Some("IF_ERR_208"), "{r:?}");
    assert_eq!(r.get("90-same-version.toml").map(String::as_str), Some("IF_ERR_208"), "{r:?}");
    assert!(!r.contains_key("20-one-signature.toml"), "refusals are of this start only");

    // The log holds the policy: with the directory gone, the manifest is still trusted.
    std::fs::remove_dir_all(&s.manifests).expect("rm dir");
    s.agent.stop();
    s.agent.start();
    assert_eq!(installed(&status(&s.broker, &s.agent)), ["if://capability/vmix.switcher@1.2.0"]);
    s.agent.stop();

    let records = s.agent.export();
    let policy: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "POLICY").collect();
    let installs = policy.iter().filter(|r| r["code"].is_null()).count();
    assert_eq!(installs, 2, "the root and one manifest, each installed once: {policy:?}");
    let codes: Vec<&str> = policy.iter().filter_map(|r| r["code"].as_str()).collect();
    for code in ["IF_ERR_001", "IF_ERR_201", "IF_ERR_202", "IF_ERR_207", "IF_ERR_208"] {
        assert!(codes.contains(&code), "{code} witnessed: {codes:?}");
        assert!(s.agent.log().contains(code), "{code} logged");
    }
    let verify = s.agent.verify_witness();
    assert!(verify.status.success(), "verify: {}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn a_rotated_root_needs_both_key_sets_and_takes_the_old_keys_power_away() {
    let mut s = site(&["if://capability/vmix.switcher@1.2.0", "if://capability/vmix.preview@1.2.0"]);
    s.agent.start();
    assert_eq!(status(&s.broker, &s.agent)["policy"]["trust_root"], 1);
    s.agent.stop();

    let (c, d) = (Talent::new("root-c"), Talent::new("root-d"));
    let root = s.files.join("root.toml");
    let next = s.files.join("root-v2.toml");
    let rotate = |sign_with: &[&Talent]| {
        let mut args = vec!["trust", "rotate", "--current", p(&root), "--key", p(&c.secret), "--key", p(&d.secret)];
        args.extend(["--threshold", "2", "--out", p(&next)]);
        for k in sign_with {
            args.extend(["--sign", p(&k.secret)]);
        }
        Agent::ifctl(&args)
    };
    // One old key is below the old threshold: ifctl applies the agent's rule and writes nothing.
    let refused_rotation = rotate(&[&s.a]);
    assert_eq!(refused_rotation.status.code(), Some(10), "IF_ERR_001 exits 10");
    assert!(String::from_utf8_lossy(&refused_rotation.stderr).contains("IF_ERR_001"));
    assert!(!next.exists());
    let ok = rotate(&[&s.a, &s.b]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    std::fs::copy(&root, s.files.join("root-v1.toml")).expect("keep v1");
    std::fs::copy(&next, &root).expect("install v2");

    // Old keys now sign nothing that counts; the new keys do.
    sign(&s.files, "old", FIXTURE, &[&s.a, &s.b], &s.manifests.join("old-keys.toml"));
    sign(&s.files, "new", &variant("vmix.preview", "1.2.0"), &[&c, &d], &s.manifests.join("new-keys.toml"));
    s.agent.start();
    let st = status(&s.broker, &s.agent);
    assert_eq!(st["policy"]["trust_root"], 2, "{st}");
    assert_eq!(installed(&st), ["if://capability/vmix.preview@1.2.0"]);
    assert_eq!(refused(&st).get("old-keys.toml").map(String::as_str), Some("IF_ERR_001"));

    // The old root offered again is a rollback; the agent keeps v2.
    std::fs::copy(s.files.join("root-v1.toml"), &root).expect("put v1 back");
    s.agent.stop();
    s.agent.start();
    let st = status(&s.broker, &s.agent);
    assert_eq!(st["policy"]["trust_root"], 2);
    assert_eq!(refused(&st).get("root.toml").map(String::as_str), Some("IF_ERR_208"), "{st}");
    s.agent.stop();
}
