//! `ifctl --json` for every verb, as a program drives it: the real binary against a real agent, broker
//! and simulators. Each verb's output is one JSON value per line with the fields asserted here, and a
//! refusal is the reply on stdout plus the error as JSON on stderr, with the error class's exit status.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::talent::Talent;
use serde_json::Value;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `ifctl --json ARGS`: its exit status and every stdout line parsed as JSON.
fn json(args: &[&str]) -> (Option<i32>, Vec<Value>, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out: Output = Agent::ifctl(&all);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: {e} in {l:?}")))
        .collect();
    let err = serde_json::from_slice(&out.stderr).unwrap_or(Value::Null);
    (out.status.code(), lines, err)
}

/// The one JSON line of a successful `ifctl --json ARGS`.
fn ok(args: &[&str]) -> Value {
    let (code, mut lines, err) = json(args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    lines.remove(0)
}

/// Starts a long-running verb and returns its first line of output, parsed, then kills it.
fn first_line(args: &[&str]) -> Value {
    let mut child = Command::new(if_tests::bin("ifctl"))
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ifctl");
    let mut line = String::new();
    let read = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    assert!(read.is_ok_and(|n| n > 0), "{args:?} printed nothing");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{args:?}: {e} in {line:?}"))
}

#[test]
fn key_root_and_manifest_verbs_and_the_long_running_ones_print_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let key = ok(&["keygen", "--name", "sec-a", "--out", p(d)]);
    assert_eq!(key["key_id"].as_str().map(str::len), Some(16), "{key}");
    for name in ["sec-b", "policy"] {
        ok(&["keygen", "--name", name, "--out", p(d)]);
    }
    let (a, b, policy) = (d.join("sec-a.key"), d.join("sec-b.key"), d.join("policy.pub"));
    let root = d.join("root.toml");
    let init = ok(&["trust", "init", "--key", p(&a), "--policy-key", p(&policy), "--out", p(&root)]);
    assert_eq!(
        init,
        serde_json::json!({ "wrote": p(&root), "version": 1, "keys": 2, "threshold": 1, "signatures": 1 }),
        "a root key and a policy key, signed by the root key"
    );
    let next = d.join("root-v2.toml");
    let rotate = ok(&["trust", "rotate", "--current", p(&root), "--sign", p(&a), "--key", p(&b), "--out", p(&next)]);
    assert_eq!(
        (rotate["version"].as_u64(), rotate["keys"].as_u64(), rotate["signatures"].as_u64()),
        (Some(2), Some(1), Some(2))
    );
    let (code, _, err) =
        json(&["trust", "rotate", "--current", p(&root), "--sign", p(&b), "--key", p(&b), "--out", p(&next)]);
    assert_eq!((code, err["code"].as_str()), (Some(10), Some("IF_ERR_001")), "not signed by the current keys: {err}");

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/manifests/loopback.toml");
    let signed = d.join("loopback.toml");
    let sign = ok(&["manifest", "sign", p(&manifest), "--key", p(&a), "--out", p(&signed)]);
    assert_eq!((sign["id"].as_str(), sign["version"].as_str()), (Some("if://capability/studio.loop"), Some("1.0.0")));
    let allow = sign["allow"].as_str().expect("allow");
    assert_eq!(allow, format!("if://capability/studio.loop@1.0.0#sha256:{}", sign["sha256"].as_str().unwrap_or("")));
    assert_eq!(sign["sha256"].as_str().map(str::len), Some(64));

    let errors = ok(&["errors"]);
    assert!(
        errors.as_array().is_some_and(|rows| rows.iter().all(|r| r["code"].is_string() && r["exit_status"].is_u64()))
    );

    let broker = first_line(&["broker", "--port", "0"]);
    assert!(broker["broker"].as_str().is_some_and(|u| u.starts_with("mqtt://127.0.0.1:")), "{broker}");
    for device in ["vmix", "videohub"] {
        let sim = first_line(&["sim", device, "--port", "0"]);
        assert_eq!(sim["simulator"], device);
        assert!(sim["listening"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{sim}");
    }
    let link = d.join("camera");
    let sim = first_line(&["sim", "visca", "--link", p(&link)]);
    assert_eq!((sim["simulator"].as_str(), sim["link"].as_str()), (Some("visca"), Some(p(&link))));
    assert!(sim["pty"].as_str().is_some_and(|t| t.starts_with("/dev/")), "{sim}");
}

#[test]
fn verbs_that_talk_to_the_agent_and_read_its_log_print_json() {
    let broker = Broker::start();
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.start();
    let url = broker.url();
    let pinned = agent.public_key();
    let to = ["--broker", url.as_str(), "--site", agent.site.as_str(), "--agent", agent.name.as_str()];
    let to = [&to[..], &["--agent-key", p(&pinned)]].concat();
    let policy = agent.policy_key.as_ref().expect("policy key");
    let with = |args: &[&str], extra: &[&str]| -> Vec<String> {
        args.iter().chain(&to).chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| json(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Policy commands: the agent's reply.
    let key = ["--key", p(&policy.secret), "--why", "json check"];
    let bot = Talent::new("bot");
    for (args, action) in [
        (vec!["talent", "add", "--name", "bot", "--role", "automation", "--pubkey", p(&bot.public)], "talent.add"),
        (
            vec![
                "talent",
                "grant",
                "--name",
                "bot",
                "--capability",
                "if://capability/studio.loop",
                "--scope",
                "studio:control",
                "--action",
                "preview",
            ],
            "talent.grant",
        ),
        (vec!["talent", "revoke", "--name", "bot"], "talent.revoke"),
    ] {
        let (code, lines, err) = run(with(&args, &key));
        assert_eq!(code, Some(0), "{action}: {err}");
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0]["ok"].as_bool(), lines[0]["sender"].as_str()),
            (Some(true), Some("sec")),
            "{action}: {}",
            lines[0]
        );
        assert!(lines[0]["witness"].is_u64(), "{action}: the outcome's record: {}", lines[0]);
    }

    // A command: the reply, and its refusal class.
    let trace = "0b9a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
    let desk_key = ["--key", p(&desk.secret), "--sender", "desk"];
    let send = [
        "message",
        "send",
        "--capability",
        "if://capability/edge.ping",
        "--action",
        "ping",
        "--why",
        "line check",
        "--trace",
        trace,
    ];
    let (code, lines, _) = run(with(&send, &desk_key));
    assert_eq!(code, Some(0));
    assert_eq!(
        (lines[0]["ok"].as_bool(), lines[0]["seq"].is_u64(), lines[0]["id"].is_string()),
        (Some(true), true, true),
        "{}",
        lines[0]
    );
    let loop_cut = ["capability", "apply", "if://capability/studio.loop", "--action", "cut", "--why", "not offered"];
    let (code, lines, err) = run(with(&loop_cut, &desk_key));
    assert_eq!(code, Some(12), "{err}");
    assert_eq!((lines[0]["ok"].as_bool(), lines[0]["error"]["code"].as_str()), (Some(false), Some("IF_ERR_201")));
    assert_eq!((err["code"].as_str(), err["name"].as_str()), (Some("IF_ERR_201"), Some("CAPABILITY_NOT_ALLOWED")));

    // Pushed documents: a manifest the allow list does not name, and the root the agent already has.
    let root_key = agent.root_key.as_ref().expect("root key");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/manifests/loopback.toml");
    let signed = agent.dir.path().join("loopback.signed.toml");
    ok(&["manifest", "sign", p(&manifest), "--key", p(&root_key.secret), "--out", p(&signed)]);
    let (code, lines, err) = run(with(&["manifest", "push", p(&signed)], &[]));
    assert_eq!(
        (code, lines[0]["error"]["code"].as_str(), err["code"].as_str()),
        (Some(12), Some("IF_ERR_201"), Some("IF_ERR_201"))
    );
    let root = agent.home().join("policy/root.toml");
    let (code, lines, err) = run(with(&["trust", "push", p(&root)], &[]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines[0]["ok"], true, "the same root again is a no-op: {}", lines[0]);

    // What the agent offers, and every agent on the broker.
    let (code, lines, _) = run(with(&["capability", "list"], &[]));
    assert_eq!(code, Some(0));
    assert!(lines[0].as_array().is_some_and(|a| a.is_empty()), "no manifest is trusted: {}", lines[0]);
    let keys = tempfile::tempdir().expect("tempdir");
    agent.pin(keys.path());
    let status = ok(&["status", "--broker", &url, "--agent-keys", p(keys.path())]);
    let row = &status.as_array().expect("rows")[0];
    assert_eq!((row["agent"].as_str(), row["state"].as_str()), (Some("studio-a/edge-1"), Some("online")), "{row}");
    // Published again after each policy command, not only every status_interval_s (30 s): the grant
    // counts, and the revoked talent does not.
    assert_eq!((row["policy"]["talents"].as_u64(), row["policy"]["grants"].as_u64()), (Some(1), Some(1)), "{row}");

    // The trace, asked of the running agent.
    let (code, lines, _) = run(with(&["witness", "query", "--trace-token", trace], &desk_key));
    assert_eq!(code, Some(0));
    let kinds: Vec<&str> = lines.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["RECEIVED", "EXECUTED"], "{lines:?}");

    // The log, read from its file once the agent stopped.
    agent.stop();
    let db = agent.db();
    let verify = ok(&["witness", "verify", "--db", p(&db), "--key", p(&agent.public_key())]);
    assert_eq!(verify["ok"], true);
    let size = verify["size"].as_u64().expect("size");
    let checkpoint = ok(&["witness", "checkpoint", "--db", p(&db)]);
    assert_eq!(checkpoint["origin"], "local/if-edge/studio-a.edge-1");
    assert_eq!(
        (checkpoint["size"].as_u64(), &checkpoint["root"]),
        (Some(size), &verify["root"]),
        "the final checkpoint covers the log"
    );
    assert!(checkpoint["note"].as_str().is_some_and(|n| n.starts_with("local/if-edge/studio-a.edge-1\n")));
    let (code, lines, _) = json(&["witness", "query", "--trace-token", trace, "--db", p(&db)]);
    assert_eq!(code, Some(0));
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|r| r["trace"] == trace && r["leaf"].is_string()), "{lines:?}");
    let (code, lines, _) = json(&["witness", "export", "--db", p(&db)]);
    assert_eq!((code, lines.len() as u64), (Some(0), size));
    assert!(lines.iter().enumerate().all(|(i, r)| r["index"].as_u64() == Some(i as u64)));
}
