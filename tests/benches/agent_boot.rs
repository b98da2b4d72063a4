//! Start-to-serving time of the real agent against the size of its witness log: from `if-edge run` to
//! its signed `online` status on the broker, with logs of 10k, 1M and 10M records written through the
//! store's API (`if_tests::bench::fill_log`; a checkpoint every 1000 records, in the agent's own key),
//! after a clean stop, after `kill -9` between commands (5x `FOLD_AFTER` after the start), and after a
//! crash that left 1536 records in the journal (a child process appends them through the store and
//! aborts), which the start folds in. Beside it, the full check of the
//! same file (`ifctl witness verify`), which reads every record, and the bytes per record on disk. And
//! what saving redb's allocator state in a commit (quick repair, which keeps the open after a crash
//! short) costs a commit: one-record durable commits with and without it, on the same disk.
//!
//! `cargo build --release --workspace --bins && cargo bench -p if-tests --bench agent_boot`
//! (`IF_BENCH_BOOT_MAX=1000000` stops at 1M records: writing the 10M log takes minutes.)

use std::time::{Duration, Instant};

use if_tests::agent::Agent;
use if_tests::broker::Broker;

/// `if-edge run` until its online status is on the broker.
fn start(agent: &mut Agent) -> Duration {
    let begun = Instant::now();
    agent.start();
    begun.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of `n` one-record durable commits of 200 bytes into a fresh file in `dir`.
fn commits(dir: &std::path::Path, quick_repair: bool, n: usize) -> (f64, f64) {
    let path = dir.join(format!("commits-{quick_repair}.redb"));
    let db = redb::Database::create(&path).expect("db");
    let table: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("records");
    let mut took = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let begun = Instant::now();
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(redb::Durability::Immediate).expect("durability");
        txn.set_quick_repair(quick_repair);
        txn.open_table(table).expect("table").insert(i, [7u8; 200].as_slice()).expect("insert");
        txn.commit().expect("commit");
        took.push(begun.elapsed());
    }
    took.sort();
    (ms(took[n / 2]), ms(took[n * 99 / 100]))
}

/// In a child process: about one journal segment of appends (2 MiB of frames) through the store, then an
/// abort, as a crash in the middle of a burst leaves the log: the next start folds them in.
fn crash_with_a_journal_to_fold(path: &str) -> ! {
    use if_edge::witness::record::{Entry, Kind};
    use if_edge::witness::store::{Append, Store};
    let mut store = Store::open(std::path::Path::new(path), 1 << 20).expect("open");
    let why = "x".repeat(1000);
    for batch in 0..JOURNAL_BATCHES {
        let items = (0..32)
            .map(|i| {
                Append::record(Kind::Executed, Entry { wall_ms: batch * 32 + i, why: why.clone(), ..Entry::default() })
            })
            .collect();
        store.append(items, None).expect("append");
    }
    std::process::abort()
}

/// Batches of 32 records of about 1.1 KB each (1.7 MB of frames, in one segment) that
/// [`crash_with_a_journal_to_fold`] appends.
const JOURNAL_BATCHES: u64 = 48;

/// Starts the agent on a log that a crash left with a journal to fold, and how long that took.
fn start_with_a_journal_to_fold(agent: &mut Agent) -> Duration {
    let status = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .env(CRASH, agent.db())
        .status()
        .expect("child");
    assert!(!status.success(), "the child aborted");
    start(agent)
}

const CRASH: &str = "IF_BENCH_CRASH_WITH_A_JOURNAL";

fn main() {
    if let Ok(path) = std::env::var(CRASH) {
        crash_with_a_journal_to_fold(&path);
    }
    let max: u64 = std::env::var("IF_BENCH_BOOT_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("dir");
    for _ in 0..2 {
        let (plain, quick) = (commits(dir.path(), false, 2000), commits(dir.path(), true, 2000));
        println!(
            "one-record commit p50/p99: {:.3}/{:.3} ms plain, {:.3}/{:.3} ms with quick repair ({:.2}x / {:.2}x)",
            plain.0,
            plain.1,
            quick.0,
            quick.1,
            quick.0 / plain.0,
            quick.1 / plain.1
        );
    }
    let broker = Broker::start();
    println!(
        "records     write s  bytes/rec  start clean ms (best, worst of 3)  start after kill -9 ms  full check s  \
         start with 1536 records in the journal ms"
    );
    for n in [10_000u64, 1_000_000, 10_000_000].into_iter().filter(|n| *n <= max) {
        let mut agent = Agent::init(&broker, &[]);
        let written = Instant::now();
        if_tests::bench::fill_agent_log(&agent, n);
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
            std::thread::sleep(5 * if_edge::witness::writer::FOLD_AFTER);
            agent.kill9();
            crashed.push(start(&mut agent));
            agent.stop();
        }
        let checked = Instant::now();
        let out = agent.verify_witness();
        assert!(out.status.success(), "the log verifies: {}", String::from_utf8_lossy(&out.stderr));
        let check_s = checked.elapsed().as_secs_f64();
        let journal = start_with_a_journal_to_fold(&mut agent);
        agent.stop();
        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
        let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
        println!(
            "{n:>10}  {write_s:>7.1}  {bytes:>9.0}  {:>10.0} {:>10.0}                  {:>6.0} {:>6.0}        \
             {check_s:>8.1}  {:>8.0}",
            ms(best(&clean)),
            ms(worst(&clean)),
            ms(best(&crashed)),
            ms(worst(&crashed)),
            ms(journal),
        );
    }
}
