//! The archive, end to end: an agent with a log of 70,000 records anchors to the collector
//! (`if-collector --follow` with a directory archive) over a real Mosquitto and sends its records as
//! tlog-tiles entry bundles; the tiles land in the directory, and an independent verifier
//! (`fixtures/tlog_verify.py`, the Python standard library and nothing of this project) checks the
//! checkpoint's signature, every tile, the tree head and inclusion proofs built from the tiles alone.
//! Bundles someone else publishes are refused unless they are the agent's own, and nothing of a refused
//! one is written.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use if_protocol::witness::tiles::{bundle, unbundle};
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::collector::{Collector, archiving_agent, status, tlog_verify as verify};
use if_tests::probe::Probe;
use if_tests::talent::Talent;

const RECORDS: u64 = 70_000;

/// (acknowledged checkpoint, anchors pending, records archived) from the agent's status.
fn progress(broker: &Broker, agent: &Agent) -> (u64, u64, u64) {
    let s = status(broker, agent);
    let a = &s["anchors"];
    (a["acked"].as_u64().unwrap_or(0), a["pending"].as_u64().unwrap_or(u64::MAX), a["archived"].as_u64().unwrap_or(0))
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn the_log_reaches_the_archive_as_tiles_an_independent_verifier_checks_and_forged_bundles_are_refused() {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let desk = Talent::new("desk");
    let mut agent = archiving_agent(&broker, &desk, RECORDS, None);
    collector.trust(&agent.site, &agent.name, &agent.public_key());
    agent.start();
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    for _ in 0..3 {
        probe.publish(desk.sign(&desk.next_ping()));
    }
    assert_eq!(probe.until_replies(3, Duration::from_secs(10)).len(), 3, "commands run while the log is archived");

    let dir = collector.tiles_of(&agent);
    // Done when the archive's checkpoint is the one the agent had acknowledged last, with nothing pending.
    let done = if_tests::wait_for(Duration::from_secs(90), || {
        let (acked, pending, archived) = progress(&broker, &agent);
        let whole = acked / 256 * 256;
        (pending == 0 && acked >= RECORDS && archived == whole && collector.published(&agent) == Some(acked))
            .then_some(acked)
    });
    let said = collector.said();
    let size =
        done.unwrap_or_else(|| panic!("archived: {:?}, collector: {:?}", progress(&broker, &agent), said.last()));
    assert!(!said.iter().any(|l| l.contains("REFUSED")), "nothing of the agent's was refused: {said:#?}");
    assert!(said.iter().any(|l| l.contains(&format!("checkpoint {size} published"))), "{:?}", said.last());

    let loaded = if_edge::config::Config::load(&agent.config()).expect("config");
    let vkey = if_tests::collector::vkey(&agent);
    let key = agent.public_key();
    let printed =
        Agent::ifctl(&["witness", "vkey", "--key", key.to_str().expect("utf8"), "--origin", &loaded.config.origin()]);
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), vkey, "ifctl witness vkey prints the verifier key");
    let (ok, out) = verify(&dir, &vkey, &[0, 255, 256, 65_535, 65_536, RECORDS - 1, size - 1]);
    println!("{out}");
    assert!(ok, "{out}");
    assert!(
        out.contains("level-1 tiles: 273 nodes") || out.contains(&format!("level-1 tiles: {} nodes", size >> 8)),
        "{out}"
    );
    assert!(out.contains(&format!("entry {} included", size - 1)) && out.ends_with("verified\n"), "{out}");

    // The verifier is not a formality: one byte changed in an archived record, and it says where.
    let tampered = tempfile::tempdir().expect("tempdir");
    copy_dir(&dir, tampered.path());
    let victim = tampered.path().join("tile/entries/005");
    let mut bytes = std::fs::read(&victim).expect("bundle 5");
    bytes[12] ^= 1;
    std::fs::write(&victim, bytes).expect("write");
    let (ok, out) = verify(tampered.path(), &vkey, &[]);
    assert!(!ok && out.contains("entry bundle 5 does not hash"), "{out}");
    let note = std::fs::read_to_string(dir.join("checkpoint")).expect("checkpoint");
    let other_size = note.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    std::fs::write(tampered.path().join("checkpoint"), other_size).expect("write");
    let (ok, out) = verify(tampered.path(), &vkey, &[]);
    assert!(!ok && out.contains("no valid signature"), "a checkpoint changed after signing: {out}");

    // The agent keeps what the archive acknowledged across a restart.
    agent.stop();
    let mut store = if_edge::witness::store::Store::open_existing(&agent.db()).expect("open the log");
    let log = store.snapshot().expect("snapshot");
    assert_eq!(log.archived().expect("archived"), size / 256 * 256);

    // Someone on the broker without the agent's key: a bundle of the agent's with one record changed,
    // one proven in a checkpoint the collector never accepted, and a message that is no bundle.
    let name = format!("{}/{}", agent.site, agent.name);
    let message = |size: u64| {
        let offer = if_edge::anchor::archive::offer(&log, &name, 3, size).expect("bundle 3");
        assert_eq!(offer.messages.len(), 1, "one message");
        serde_json::from_slice::<if_protocol::messages::Bundle>(&offer.messages[0]).expect("a bundle")
    };
    let real = message(size);
    let mut forged = real.clone();
    let raw = B64.decode(&forged.entries).expect("base64");
    let mut entries: Vec<Vec<u8>> = unbundle(&raw).expect("entries").into_iter().map(<[u8]>::to_vec).collect();
    entries[7][20] ^= 0x20;
    forged.entries = B64.encode(bundle(entries.iter().map(Vec::as_slice)).expect("bundle"));
    let unaccepted = message(size - 1);
    drop(log);
    let before = std::fs::read(dir.join("tile/entries/003")).expect("bundle 3 archived");
    let topic = probe.topics.tiles.clone();
    for b in [&forged, &unaccepted] {
        probe.publish_to(&topic, serde_json::to_vec(b).expect("json"), false);
    }
    probe.publish_to(&topic, b"{\"index\": 3}".to_vec(), false);
    probe.publish_to(&topic, serde_json::to_vec(&real).expect("json"), false);
    let refusals = if_tests::wait_for(Duration::from_secs(10), || {
        let said = collector.said();
        let n = said.iter().filter(|l| l.contains("REFUSED bundle 3") || l.contains("not an entry bundle")).count();
        (n == 3 && said.iter().any(|l| l.contains("AGAIN bundle 3"))).then_some(said)
    });
    let said = refusals.unwrap_or_else(|| panic!("{:#?}", collector.said()));
    assert!(said.iter().any(|l| l.contains("REFUSED bundle 3") && l.contains("no checkpoint of size")), "{said:#?}");
    assert!(said.iter().any(|l| l.contains("REFUSED bundle 3") && l.contains("does not match the proof")), "{said:#?}");
    assert_eq!(std::fs::read(dir.join("tile/entries/003")).expect("bundle 3"), before, "nothing forged was written");
    let (ok, out) = verify(&dir, &vkey, &[3 * 256 + 7]);
    assert!(ok, "{out}");
}

fn ifctl(args: &[&str]) -> (bool, String) {
    let out = Agent::ifctl(args);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn archived_records_are_pruned_to_the_retention_and_the_kept_log_verifies_anchors_on_and_traces_name_the_archive() {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let desk = Talent::new("desk");
    let mut agent = archiving_agent(&broker, &desk, RECORDS, Some(1000));
    agent.start();
    // The collector does not know the agent yet: nothing is acknowledged, so nothing is pruned.
    std::thread::sleep(Duration::from_secs(7));
    let s = status(&broker, &agent);
    assert_eq!((s["log_from"].as_u64(), s["anchors"]["archived"].as_u64()), (Some(0), Some(0)), "{s}");

    collector.trust(&agent.site, &agent.name, &agent.public_key());
    let kept = if_tests::wait_for(Duration::from_secs(60), || {
        let s = status(&broker, &agent);
        let from = s["log_from"].as_u64()?;
        (from >= RECORDS - 1000 - 256).then_some((from, s["anchors"]["archived"].as_u64()?, s["log_size"].as_u64()?))
    });
    let (from, archived, size) = kept.unwrap_or_else(|| panic!("pruned: {}", status(&broker, &agent)));
    assert_eq!(from % 256, 0, "whole bundles");
    assert!(
        from <= archived && size - from >= 1000,
        "only acknowledged records, and the newest 1000 kept: {from} {archived} {size}"
    );
    let probe = Probe::connect(&broker, &agent.site, &agent.name);
    probe.publish(desk.sign(&desk.next_ping()));
    assert_eq!(probe.until_replies(1, Duration::from_secs(10)).len(), 1, "commands run on the pruned log");
    let acked = status(&broker, &agent)["anchors"]["acked"].as_u64().unwrap_or(0);
    agent.stop();

    let db = agent.db();
    let db = db.to_str().expect("utf8");
    let (ok, out) = ifctl(&["witness", "compact", "--db", db]);
    assert!(ok, "{out}");
    let bytes = |s: &str, after: &str| s.split(after).nth(1)?.split_whitespace().next()?.parse::<u64>().ok();
    let (before, after) = (bytes(&out, ": ").unwrap_or(0), bytes(&out, "-> ").unwrap_or(u64::MAX));
    println!("{out}");
    // Of 70,000 records, about 1,000 are kept; the pruned ones leave a node per 256 of them behind, not
    // their trace rows or smaller nodes (which would keep a seventh of the file).
    assert!(after * 30 < before, "compaction gave the pruned pages back: {out}");
    let (ok, out) = ifctl(&["witness", "verify", "--db", db]);
    assert!(ok && out.contains(&format!("records {from} on kept")), "the kept log verifies from its boundary: {out}");
    // Records 20 and 21 share a trace; both were pruned: the log says so, and the archive has them.
    let trace = uuid::Uuid::from_u128(0x6f1c_2a4e_0000_0000_0000_0000_0000_0000 | 10).to_string();
    let (ok, out) = ifctl(&["witness", "query", "--trace-token", &trace, "--db", db]);
    assert!(ok && out.contains(&format!("records #0 to #{} were pruned here", from - 1)), "{out}");
    let tiles = collector.tiles_of(&agent);
    let (ok, out) = ifctl(&["witness", "query", "--trace-token", &trace, "--archive", tiles.to_str().expect("utf8")]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(ok && lines.len() == 2, "{out}");
    assert!(lines[0].starts_with("#20 ") && lines[1].starts_with("#21 "), "{out}");
    assert!(lines.iter().all(|l| l.ends_with("(archived in tile/entries/000)")), "{out}");
    // A file in the archive that is no entry bundle is an error that names it, not a silent skip.
    let odd = tempfile::tempdir().expect("tempdir");
    copy_dir(&tiles, odd.path());
    std::fs::write(odd.path().join("tile/entries/001"), [0x01, 0x00, b'x']).expect("write");
    let (ok, out) =
        ifctl(&["witness", "query", "--trace-token", &trace, "--archive", odd.path().to_str().expect("utf8")]);
    assert!(!ok && out.contains("IF_ERR") && out.contains("tile/entries/001"), "{out}");

    // Anchors go on: the stop's checkpoint and the next ones are proven consistent with the acknowledged
    // one, which the pruned records were below.
    agent.start();
    probe.publish(desk.sign(&desk.next_ping()));
    assert_eq!(probe.until_replies(1, Duration::from_secs(10)).len(), 1);
    let on = if_tests::wait_for(Duration::from_secs(30), || {
        let s = status(&broker, &agent);
        let a = &s["anchors"];
        (a["pending"].as_u64()? == 0 && a["acked"].as_u64()? > acked).then_some(())
    });
    assert!(on.is_some(), "anchors after the prune: {}", status(&broker, &agent));
    let said = collector.said();
    assert!(!said.iter().any(|l| l.contains("REFUSED") && !l.contains("its proof starts at size")), "{said:#?}");
}
