//! The contract of `edge.toml`: its sections, defaults and rules, and how an error finds its key and
//! line.

use super::*;

const GOOD: &str = r#"
[agent]
site = "studio-a"
name = "edge-1"
key = "agent.key"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
"#;

fn err(text: &str) -> String {
    Config::parse(Path::new("edge.toml"), text).expect_err("must fail").to_string()
}

#[test]
fn a_minimal_file_gets_defaults() {
    let c = Config::parse(Path::new("edge.toml"), GOOD).expect("parses");
    assert_eq!(c.admission.replay_window, 1024);
    assert_eq!(c.mqtt.backoff_s, vec![1, 2, 5, 10, 30]);
    assert_eq!(c.client_id(), "if-edge-studio-a-edge-1");
    assert_eq!(c.broker(), BrokerAddr { host: "127.0.0.1".into(), port: 1883, tls: false });
    assert_eq!(c.origin(), "local/if-edge/studio-a.edge-1");
}

#[test]
fn an_unknown_key_is_named_with_its_table_and_line() {
    let e = err(&GOOD.replace("broker =", "brokr = \"x\"\nbroker ="));
    assert!(e.starts_with("IF_ERR_503 CONFIG_INVALID: edge.toml: mqtt.brokr (line 8)"), "{e}");
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn a_wrong_type_is_named() {
    let e = err(&GOOD.replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = \"ten\"\n"));
    assert!(e.contains("mqtt.keep_alive_s (line 8)"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    assert!(err(&GOOD.replace("mqtt://127.0.0.1:1883", "tcp://x")).contains("edge.toml: mqtt.broker: must start"));
    let e = err(&GOOD.replace("[mqtt]\n", "[mqtt]\nbackoff_s = []\n"));
    assert!(e.contains("mqtt.backoff_s"), "{e}");
    let e = err(&format!("{GOOD}\n[admission]\nclock_skew_ms = 1\nreplay_window = 0\nnonce_cache = 5\n"));
    assert!(e.contains("admission.replay_window"), "{e}");
    assert!(err(&GOOD.replace("edge-1", "edge 1")).contains("agent.name"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("name = \"edge-1\"", "name = \"edge 1\"")
        .replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = 1\nbackoff_s = [0]\n")
        + "\n[witness]\ncache_mb = \"big\"\n\n[trust]\nallow = [\"vmix@1\"]\n\n[talent]\nname = \"x\"\n";
    let p = Config::problems(Path::new("edge.toml"), &text).expect_err("problems");
    let all = p.list.join("\n");
    assert!(all.contains("talent: unknown section"), "{all}");
    assert!(all.contains("witness.cache_mb"), "{all}");
    // A type error in one section does not hide the rule problems found once every section reads.
    let rules = GOOD
        .replace("name = \"edge-1\"", "name = \"edge 1\"")
        .replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = 1\nbackoff_s = [0]\n")
        + "\n[trust]\nallow = [\"vmix@1\"]\n[admission]\nclock_skew_ms = 1\nreplay_window = 0\nnonce_cache = 0\n";
    let p = Config::problems(Path::new("edge.toml"), &rules).expect_err("problems");
    let keys: Vec<&str> = p.list.iter().map(|l| l.split(':').next().unwrap_or("")).collect();
    assert_eq!(
        keys,
        [
            "agent.name",
            "mqtt.keep_alive_s",
            "mqtt.backoff_s",
            "admission.replay_window",
            "admission.nonce_cache",
            "trust.allow[0]"
        ],
        "{:?}",
        p.list
    );
    let e = p.to_error().to_string();
    assert!(e.contains("agent.name") && e.contains("and 5 more"), "{e}");
}

#[test]
fn a_missing_section_is_reported() {
    let e = err("[agent]\nsite = \"a\"\nname = \"b\"\nkey = \"k\"\n");
    assert!(e.contains("mqtt"), "{e}");
}

#[test]
fn every_tls_file_problem_is_listed_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("edge.toml");
    let text = GOOD.replace("mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:8883")
        + "[mqtt.tls]\nca = \"missing-ca.pem\"\n[uplink]\nbroker = \"mqtts://fleet\"\n[uplink.tls]\nca = \"ca.pem\"\n";
    std::fs::write(&file, text).expect("write");
    std::fs::write(dir.path().join("ca.pem"), "no certificate here\n").expect("write");
    let problems = Config::load(&file).expect("the rules pass").config.tls_problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("mqtt.tls.ca (") && problems[0].contains("cannot read"), "{problems:?}");
    assert!(problems[1].starts_with("uplink.tls.ca (") && problems[1].contains("no PEM certificate"), "{problems:?}");
}

#[test]
fn tls_goes_with_mqtts_and_a_client_cert_with_its_key() {
    let with = |extra: &str| format!("{GOOD}{extra}");
    let e = err(&with("[uplink]\nbroker = \"mqtts://fleet:8883\"\n"));
    assert!(e.contains("uplink.tls: an mqtts:// broker needs [tls] with ca = FILE"), "{e}");
    let e = err(&with("[mqtt.tls]\nca = \"ca.pem\"\n"));
    assert!(e.contains("mqtt.tls: is set, but the broker is mqtt://"), "{e}");
    let e = err(&with("[uplink]\nbroker = \"mqtts://f\"\n[uplink.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\n"));
    assert!(e.contains("uplink.tls.key: a client certificate needs its key"), "{e}");
    let e = err(&with("[uplink.tls]\nca = \"ca.pem\"\n"));
    assert!(e.contains("uplink.tls: is set, but uplink.broker is not"), "{e}");
    let ok =
        with("[uplink]\nbroker = \"mqtts://f\"\n[uplink.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n");
    let c = Config::parse(Path::new("edge.toml"), &ok).expect("parses");
    assert!(c.uplink_broker().tls);
    assert_eq!(c.uplink.tls.and_then(|t| t.key), Some(PathBuf::from("c.key")));
}
