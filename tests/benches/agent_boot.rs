//! Start-to-serving time of the real agent against the size of its witness log: from `if-edge run` to
//! its signed `online` status on the broker, with logs of 10k, 1M and 10M records written through the
//! store's API (signed by the agent's own key, a checkpoint every 1000 records as the default config),
//! after a clean stop and after `kill -9` (redb's open after a crash). Beside it, the full check of the
//! same file (`ifctl witness verify`), which reads every record, and the bytes per record on disk.
//!
//! `cargo build --release --workspace --bins && cargo bench -p if-tests --bench agent_boot`
//! (`IF_BENCH_BOOT_MAX=1000000` stops at 1M records: writing the 10M log takes minutes.)

use std::time::{Duration, Instant};

use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, CheckpointSigner, Store};
use if_tests::agent::Agent;
use if_tests::broker::Broker;

/// Records `n` commands (RECEIVED and EXECUTED with one trace each) into the agent's log, as its own
/// key would have signed the checkpoints.
fn fill(agent: &Agent, n: u64) {
    let loaded = if_edge::config::Config::load(&agent.config()).expect("config");
    let key = if_edge::keyfile::read_secret(&agent.home().join(&loaded.config.agent.key)).expect("agent key");
    let signer = CheckpointSigner { key, origin: loaded.config.origin(), every: 1000 };
    let mut store = Store::open(&agent.db(), 4 << 20).expect("open");
    let entry = Entry {
        sender: "desk".into(),
        capability: "if://capability/vmix.switcher".into(),
        action: "cut".into(),
        why: "bench".into(),
        count: 1,
        ..Entry::default()
    };
    let mut at = store.size();
    while at < n {
        let k = (n - at).min(8192);
        let batch: Vec<Append> = (at..at + k)
            .map(|i| {
                let kind = if i.is_multiple_of(2) { Kind::Received } else { Kind::Executed };
                let trace = uuid::Uuid::from_u128(0x51a7_0000_0000_0000_0000_0000_0000_0000 | u128::from(i / 2));
                Append::record(kind, Entry { trace: Some(trace), ..entry.clone() })
            })
            .collect();
        store.append(&batch, Some(&signer)).expect("append");
        at += k;
    }
    store.checkpoint_now(&signer).expect("checkpoint");
}

/// `if-edge run` until its online status is on the broker.
fn start(agent: &mut Agent) -> Duration {
    let begun = Instant::now();
    agent.start();
    begun.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let max: u64 = std::env::var("IF_BENCH_BOOT_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let broker = Broker::start();
    println!("records     write s  bytes/rec  start clean ms (best, worst of 3)  start after kill -9 ms  full check s");
    for n in [10_000u64, 1_000_000, 10_000_000].into_iter().filter(|n| *n <= max) {
        let mut agent = Agent::init(&broker, &[]);
        let written = Instant::now();
        fill(&agent, n);
        let write_s = written.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(agent.db()).expect("db").len() as f64 / n as f64;
        let mut clean = Vec::new();
        for _ in 0..3 {
            clean.push(start(&mut agent));
            agent.stop();
        }
        let mut crashed = Vec::new();
        for _ in 0..3 {
            agent.start();
            agent.kill9();
            crashed.push(start(&mut agent));
            agent.stop();
        }
        let checked = Instant::now();
        let out = agent.verify_witness();
        assert!(out.status.success(), "the log verifies: {}", String::from_utf8_lossy(&out.stderr));
        let check_s = checked.elapsed().as_secs_f64();
        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
        let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
        println!(
            "{n:>10}  {write_s:>7.1}  {bytes:>9.0}  {:>10.0} {:>10.0}                  {:>6.0} {:>6.0}        {check_s:>8.1}",
            ms(best(&clean)),
            ms(worst(&clean)),
            ms(best(&crashed)),
            ms(worst(&crashed)),
        );
    }
}
