//! The archive's throughput and what pruning gives back: an agent with a log of `n` records (written
//! through the store's API, `if_tests::bench::fill_agent_log`) starts against the collector with a
//! directory archive over a real Mosquitto; the time from `if-edge run` until the archive's `checkpoint`
//! covers all `n` records, as entry bundles per second. The floor, in the same run: as many QoS 1
//! messages of the same size from one client to another through the same broker. Then, with
//! `keep_records = 1000`, the log is pruned; the agent stops, and `ifctl witness compact` is timed.
//!
//! Twice: records as small as they come, and a quarter as many with 512-byte answers, whose bundles go
//! in parts.
//!
//! `cargo build --release --workspace --bins && cargo bench -p if-tests --bench archive`
//! (`IF_BENCH_ARCHIVE_RECORDS=N`, default 262,144: 1,024 bundles.)

use std::path::Path;
use std::time::{Duration, Instant};

use if_protocol::witness::checkpoint::Checkpoint;
use if_tests::agent::Agent;
use if_tests::broker::Broker;
use if_tests::collector::{Collector, archiving_agent_sized, status};
use if_tests::probe::Probe;
use if_tests::talent::Talent;

fn published(dir: &Path) -> u64 {
    let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap_or_default();
    Checkpoint::parse_note(&note).map_or(0, |cp| cp.size)
}

/// `count` QoS 1 messages of `len` bytes from one client to another through `broker`: messages/s.
fn floor(broker: &Broker, count: usize, len: usize) -> f64 {
    let (tx, rx) = (Probe::connect(broker, "bench", "tx"), Probe::connect(broker, "bench", "rx"));
    let topic = "bench/archive/floor";
    rx.subscribe(topic);
    let begun = Instant::now();
    for i in 0..count {
        let mut payload = vec![b'A'; len];
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        tx.publish_to(topic, payload, false);
    }
    let mut got = 0;
    while got < count && rx.next_on(topic, Duration::from_secs(30)).is_some() {
        got += 1;
    }
    assert_eq!(got, count, "the floor's messages all arrived");
    count as f64 / begun.elapsed().as_secs_f64()
}

/// One agent's log of `n` records of `detail` bytes of answer each, archived, pruned and compacted.
fn run(n: u64, detail: usize) {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let desk = Talent::new("desk");
    let mut agent = archiving_agent_sized(&broker, &desk, n, Some(1000), detail);
    let file = std::fs::metadata(agent.db()).map(|m| m.len()).unwrap_or(0);
    collector.trust(&agent.site, &agent.name, &agent.public_key());
    let dir = collector.tiles_of(&agent);

    let begun = Instant::now();
    agent.start();
    let done = if_tests::wait_for(Duration::from_secs(1800), || (published(&dir) >= n).then_some(()));
    let took = begun.elapsed();
    assert!(done.is_some(), "the archive reached {n}");
    let bundles = n.div_ceil(256) as usize;
    let bytes: u64 = std::fs::read_dir(dir.join("tile/entries"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()))
        .sum();
    let parts = collector.said().iter().filter(|l| l.contains("PART of bundle")).count();
    // Every part but the last of a bundle is said as a PART; the last makes it ARCHIVED. On the wire a
    // message is base64 in JSON with its proof of some 20 hashes.
    let sent = bundles + parts;
    let message = (bytes as usize / sent) * 4 / 3 + 20 * 48;
    let floor = floor(&broker, sent, message);
    let rate = sent as f64 / took.as_secs_f64();

    let pruned = if_tests::wait_for(Duration::from_secs(120), || {
        (status(&broker, &agent)["log_from"].as_u64()? + 1000 + 512 >= n).then_some(())
    });
    assert!(pruned.is_some(), "pruned to the retention");
    agent.stop();
    let db = agent.db();
    let out = Agent::ifctl(&["--json", "witness", "compact", "--db", db.to_str().expect("utf8")]);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).expect("compact --json");

    println!(
        "log: {n} records with {detail} bytes of answer, {file} bytes on disk ({:.0} a record)",
        file as f64 / n as f64
    );
    println!(
        "archive: {bundles} bundles ({:.1} MB of entries) in {sent} messages, {:.2} s from start: {:.0} bundles/s, {rate:.0} msgs/s, {:.0} records/s",
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        bundles as f64 / took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!("floor: {sent} QoS 1 messages of {message} bytes, client to client: {floor:.0} msgs/s");
    println!("archive/floor: {:.3}", rate / floor);
    println!("compaction after pruning to the newest 1000: {} -> {} bytes in {} ms", c["before"], c["after"], c["ms"]);
}

fn main() {
    let n: u64 = std::env::var("IF_BENCH_ARCHIVE_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(262_144);
    println!("machine: {} cores; release build", std::thread::available_parallelism().map_or(0, |n| n.get()));
    run(n, 0);
    // Records with the longest answer an EXECUTED record keeps: bundles too large for one message.
    run(n / 4, 512);
}
