//! Anchors to a fleet broker over TLS: Mosquitto with a TLS listener that accepts only clients with a
//! certificate of the fleet's CA, the agent's uplink and the collector each with their own client
//! certificate. And the refusals: a broker certificate of another CA, a client without a certificate,
//! an `mqtts://` broker without a CA, a client key that others can read. The key never reaches the log.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::collector::Collector;
use if_tests::pki::{Identity, Pki};
use if_tests::probe::Probe;
use if_tests::talent::Talent;

const WAIT: Duration = Duration::from_secs(30);

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The agent's (acknowledged, pending) anchors from its retained status on the site broker.
fn anchors(local: &Broker, agent: &Agent) -> (u64, u64) {
    let w = Probe::connect(local, &agent.site, &agent.name);
    w.subscribe(&w.topics.status);
    let s = w.next_on(&w.topics.status, Duration::from_secs(5)).map(|m| m.json()).unwrap_or_default();
    (s["anchors"]["acked"].as_u64().unwrap_or(0), s["anchors"]["pending"].as_u64().unwrap_or(u64::MAX))
}

/// An agent on `local` whose anchors go to `uplink` over TLS with `ca` and the client identity `me`.
fn agent_with_tls_uplink(local: &Broker, uplink: &str, ca: &Path, me: &Identity, desk: &Talent) -> Agent {
    let agent = Agent::init(local, &[desk]);
    agent.edit_config(|t| {
        let t = t
            .replace("checkpoint_every = 1000", "checkpoint_every = 10")
            .replace("status_interval_s = 30", "status_interval_s = 1")
            .replace("backoff_s = [1, 2, 5, 10, 30]", "backoff_s = [1]")
            .replace("republish_s = 10", "republish_s = 1")
            .replace("[uplink]", &format!("[uplink]\nbroker = \"{uplink}\""));
        format!("{t}\n[uplink.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n", p(ca), p(&me.cert), p(&me.key))
    });
    agent
}

fn pings(local: &Broker, agent: &Agent, desk: &Talent, n: usize) {
    let probe = Probe::connect(local, &agent.site, &agent.name);
    for i in 0..n {
        probe.request(desk.sign(&desk.next_ping()), &(i as u64).to_be_bytes());
    }
    let ok = probe.until_replies(n, WAIT).iter().filter(|m| m.json()["ok"] == true).count();
    assert_eq!(ok, n, "every command ran on the site broker");
}

#[test]
fn anchors_reach_the_collector_through_a_broker_that_requires_client_certificates() {
    let pki = Pki::new("fleet");
    let local = Broker::start();
    let fleet = Broker::start_tls(&pki);
    let seen = pki.client("collector");
    let collector = Collector::start_at(
        &fleet.tls_url(),
        &["--tls-ca", p(&pki.ca), "--tls-cert", p(&seen.cert), "--tls-key", p(&seen.key)],
    );
    let desk = Talent::new("desk");
    let me = pki.client("edge-1");
    let mut agent = agent_with_tls_uplink(&local, &fleet.tls_url(), &pki.ca, &me, &desk);
    let check = std::process::Command::new(if_tests::bin("if-edge"))
        .arg("check-config")
        .arg(agent.config())
        .output()
        .expect("check-config");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    collector.trust(&agent.site, &agent.name, &agent.public_key());
    agent.start();

    pings(&local, &agent, &desk, 30);
    let acked = if_tests::wait_for(WAIT, || {
        let (acked, pending) = anchors(&local, &agent);
        (pending == 0 && acked >= 30).then_some(acked)
    });
    assert!(acked.is_some(), "anchors acknowledged over TLS; status {:?}\n{}", anchors(&local, &agent), agent.log());
    let accepted = collector.accepted();
    assert!(accepted.len() >= 2 && accepted.windows(2).all(|w| w[0] < w[1]), "{accepted:?}");
    assert_eq!(accepted.last(), acked.as_ref(), "the collector accepted what the agent saw acknowledged");

    // The client key is never logged, even at debug level.
    agent.stop();
    agent.log_filter = "debug".into();
    agent.start();
    agent.stop();
    let key = std::fs::read_to_string(&me.key).expect("key");
    let log = agent.log();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "a line of the client key is in the agent's log");
    }
}

/// `ifctl --json status` against `url` with `args`: exit status and the error's code.
fn status(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let keys = tempfile::tempdir().expect("tempdir");
    let mut all = vec!["--json", "status", "--broker", url, "--wait-ms", "300", "--agent-keys", p(keys.path())];
    all.extend_from_slice(args);
    let out = Agent::ifctl(&all);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap_or_default();
    (out.status.code(), format!("{} {}", err["code"].as_str().unwrap_or("OK"), err["message"].as_str().unwrap_or("")))
}

#[test]
fn another_ca_no_client_certificate_no_ca_and_an_open_key_are_each_refused() {
    let pki = Pki::new("fleet");
    let rogue = Pki::new("rogue");
    let fleet = Broker::start_tls(&pki);
    let url = fleet.tls_url();
    let me = pki.client("operator");
    let mine = ["--tls-cert", p(&me.cert), "--tls-key", p(&me.key)];

    let with = |ca: &Path, extra: &[&str]| {
        let mut args = vec!["--tls-ca", p(ca)];
        args.extend_from_slice(extra);
        status(&url, &args)
    };
    assert_eq!(with(&pki.ca, &mine).0, Some(0), "the fleet's CA and a client certificate of it");
    let (code, err) = with(&rogue.ca, &mine);
    assert_eq!(code, Some(15), "a broker certificate of another CA: {err}");
    assert!(err.starts_with("IF_ERR_500 broker mqtts://"), "{err}");
    let (code, err) = with(&pki.ca, &[]);
    assert_eq!(code, Some(15), "the broker requires a client certificate: {err}");
    let (code, err) = status(&url, &[]);
    assert_eq!(code, Some(15));
    assert!(err.starts_with("IF_ERR_503") && err.contains("needs the broker's CA certificate (--tls-ca)"), "{err}");
    let (code, err) = with(&pki.ca, &["--tls-cert", p(&me.cert)]);
    assert_eq!((code, err.contains("tls.key")), (Some(15), true), "a certificate without its key: {err}");

    // The agent: a key others can read stops it before it connects anywhere, named by its key.
    let local = Broker::start();
    let desk = Talent::new("desk");
    let edge = pki.client("edge-1");
    std::fs::set_permissions(&edge.key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let agent = agent_with_tls_uplink(&local, &url, &pki.ca, &edge, &desk);
    let check = std::process::Command::new(if_tests::bin("if-edge"))
        .arg("check-config")
        .arg(agent.config())
        .output()
        .expect("check-config");
    let said = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(15), "{said}");
    assert!(said.contains("uplink.tls.key: ") && said.contains("chmod 600"), "{said}");
    let run = std::process::Command::new(if_tests::bin("if-edge"))
        .args(["run", "--config", p(&agent.config())])
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(15), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(!agent.db().exists(), "nothing was started: no witness log");

    // An uplink broker whose certificate the agent's CA did not sign: commands still run on the site
    // broker, anchors wait, and the log says why once.
    let mut agent = agent_with_tls_uplink(&local, &url, &rogue.ca, &pki.client("edge-2"), &desk);
    agent.log_filter = "info,if_edge::anchor=debug".into();
    agent.start();
    pings(&local, &agent, &desk, 20);
    let waiting = if_tests::wait_for(WAIT, || {
        let (acked, pending) = anchors(&local, &agent);
        (2..u64::MAX).contains(&pending).then_some(acked)
    });
    assert_eq!(waiting, Some(0), "anchors wait, none acknowledged through an untrusted broker");
    // At least one retry after the warning (the first comes about a second after it).
    let retried = if_tests::wait_for(WAIT, || (agent.log().matches("uplink down").count() >= 2).then_some(()));
    assert!(retried.is_some(), "the uplink is retried: {}", agent.log());
    agent.stop();
    let log = agent.log();
    let warned = log.matches("uplink down; anchors wait").count();
    let retries = log.matches("uplink down").count() - warned;
    assert_eq!(warned, 1, "said once for the outage: {log}");
    assert!(retries >= 1, "the retries go to the debug level: {log}");
}

#[test]
fn the_control_connection_and_ifctl_over_tls_and_init_writes_the_tls_table() {
    let pki = Pki::new("site");
    let broker = Broker::start_tls(&pki);
    let url = broker.tls_url();
    let edge = pki.client("edge-1");

    // init: an mqtts:// broker needs its CA; given one, the files go in [mqtt.tls], checked first.
    let dir = tempfile::tempdir().expect("tempdir");
    let init = |d: &Path, extra: &[&str]| {
        std::process::Command::new(if_tests::bin("if-edge"))
            .args(["init", "--dir", p(d), "--broker", &url, "--site", "studio-a", "--agent", "edge-1"])
            .args(extra)
            .output()
            .expect("if-edge init")
    };
    let out = init(&dir.path().join("a"), &[]);
    assert_eq!(out.status.code(), Some(15));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mqtt.tls: an mqtts:// broker needs [tls]"));
    assert!(!dir.path().join("a/edge.toml").exists(), "nothing written");
    let tls = ["--tls-ca", p(&pki.ca), "--tls-cert", p(&edge.cert), "--tls-key", p(&edge.key)];
    let out = init(&dir.path().join("b"), &tls);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(dir.path().join("b/edge.toml")).expect("edge.toml");
    assert!(config.contains("[mqtt.tls]") && config.contains(&format!("ca = \"{}\"", p(&pki.ca))), "{config}");

    // The agent on the TLS listener; its talents arrive through the broker's plain listener.
    let desk = Talent::new("desk");
    let mut agent = Agent::init(&broker, &[&desk]);
    agent.edit_config(|t| {
        let t = t.replace(&broker.url(), &url);
        format!("{t}\n[mqtt.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n", p(&pki.ca), p(&edge.cert), p(&edge.key))
    });
    let config = std::fs::read_to_string(agent.config()).expect("edge.toml");
    assert!(config.contains(&format!("broker = \"{url}\"")), "the agent is on the TLS listener: {config}");
    agent.start();
    let desk_tls = ["--tls-ca", p(&pki.ca), "--tls-cert", p(&edge.cert), "--tls-key", p(&edge.key)];
    let pinned = agent.public_key();
    let mut args = vec!["--json", "message", "send", "--broker", &url, "--site", "studio-a", "--agent", "edge-1"];
    args.extend(["--agent-key", p(&pinned)]);
    args.extend(["--key", p(&desk.secret), "--sender", "desk", "--capability", "if://capability/edge.ping"]);
    args.extend(["--action", "ping", "--why", "over TLS"]);
    args.extend_from_slice(&desk_tls);
    let out = Agent::ifctl(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reply");
    assert_eq!(reply["ok"], true, "{reply}");
    agent.stop();
}
