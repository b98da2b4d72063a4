//! What a crash costs the next open of the witness log, with the writer's seal and without it. Each test
//! runs its writer in a child process (this test binary again) that aborts, as `kill -9` or a power
//! loss leaves the file; the parent then opens the file with a redb repair callback that records whether
//! redb had to walk it.
//!
//! - After the writer went idle and sealed, the open needs no repair.
//! - A crash right after a plain append (a burst, before any seal) is repaired, and every append that
//!   returned is in the log.

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, Store};
use if_edge::witness::writer::Witness;

const CHILD: &str = "IF_TEST_WITNESS_SEAL_CHILD";
const RECORDS: u64 = 40;

fn records(n: u64) -> Vec<Append> {
    (0..n).map(|i| Append::record(Kind::Executed, Entry { wall_ms: i, ..Entry::default() })).collect()
}

/// Runs test `name` of this binary as a child with `CHILD` set to `path`; it must abort.
fn crash_child(name: &str, path: &Path) {
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, path)
        .status()
        .expect("child");
    assert!(!status.success(), "the child aborted: {status}");
}

/// Opens the file as the agent's next start would, and says whether redb repaired it.
fn repaired_on_open(path: &Path) -> bool {
    let repaired = Rc::new(Cell::new(false));
    let seen = repaired.clone();
    let db = redb::Database::builder()
        .set_repair_callback(move |_| seen.set(true))
        .open(path)
        .expect("the file opens after the crash");
    drop(db);
    repaired.get()
}

/// Waits until the writer's store says its last commit saved the allocator state.
async fn sealed_within(witness: &Witness, wait: Duration) -> bool {
    let end = Instant::now() + wait;
    loop {
        if witness.with_store(|s| Ok(s.sealed())).await.expect("store") {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_crash_after_the_writer_went_idle_needs_no_repair_at_the_next_open() {
    if let Ok(path) = std::env::var(CHILD) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let witness =
                Witness::spawn(Store::open(Path::new(&path), 1 << 20).expect("open"), None, 16).expect("writer");
            for _ in 0..4 {
                witness.append(records(RECORDS / 4)).await.expect("append");
            }
            assert!(sealed_within(&witness, Duration::from_secs(30)).await, "sealed once idle");
        });
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    crash_child("a_crash_after_the_writer_went_idle_needs_no_repair_at_the_next_open", &path);
    assert!(!repaired_on_open(&path), "the seal saved the allocator state: no walk of the file");
    assert_eq!(Store::open_existing(&path).expect("open").size(), RECORDS);
}

#[test]
fn a_crash_inside_a_burst_is_repaired_at_the_next_open_and_keeps_every_append_that_returned() {
    if let Ok(path) = std::env::var(CHILD) {
        // The store alone: plain appends and nothing to seal them, as a crash in the middle of a burst.
        let mut store = Store::open(Path::new(&path), 1 << 20).expect("open");
        for _ in 0..4 {
            store.append(&records(RECORDS / 4), None).expect("append");
        }
        assert!(!store.sealed());
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    crash_child("a_crash_inside_a_burst_is_repaired_at_the_next_open_and_keeps_every_append_that_returned", &path);
    assert!(repaired_on_open(&path), "an append saves no allocator state: the open walks the file");
    let mut store = Store::open_existing(&path).expect("open");
    assert_eq!(store.size(), RECORDS, "every append that returned is there");
    let report = if_edge::witness::verify::verify(&mut store, None, None).expect("verifies");
    assert_eq!(report.size, RECORDS);
}

#[tokio::test]
async fn the_writer_seals_when_it_goes_idle_and_when_it_closes() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    let witness = Witness::spawn(Store::open(&path, 1 << 20).expect("open"), None, 16).expect("writer");
    assert!(witness.with_store(|s| Ok(s.sealed())).await.expect("store"), "a new file starts sealed");
    witness.append(records(3)).await.expect("append");
    assert!(sealed_within(&witness, Duration::from_secs(30)).await, "sealed once idle");
    let seals = witness.stats().seals.load(Ordering::Relaxed);
    assert!(seals >= 1, "by a seal of its own");
    witness.append(records(3)).await.expect("append");
    witness.close().await;
    assert!(witness.stats().seals.load(Ordering::Relaxed) > seals, "closing seals what the last append left");
}
