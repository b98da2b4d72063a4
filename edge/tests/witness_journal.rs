//! What a crash leaves of the witness log, with appends in the journal and the tables behind them. Each
//! crash test runs its writer in a child process (this test binary again) that aborts, as `kill -9` or a
//! power loss leaves the files; the parent then opens the file with a redb repair callback that records
//! whether redb had to walk it, and opens the log as the agent's next start would.
//!
//! - A crash in the middle of a burst (records only in the journal) loses nothing that returned, and the
//!   open needs no repair: the tables are only ever written by commits that save redb's allocator state.
//! - A crash after a fold (older frames still in the journal) adds nothing twice.
//! - A torn last frame is left out; a damaged frame with records of the run after it, or a frame that
//!   does not follow the log, stops the open.
//! - The writer folds when it goes idle and when it closes; a full read folds first, a folded read does
//!   not.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use if_edge::witness::journal::Journal;
use if_edge::witness::record::{Entry, Kind};
use if_edge::witness::store::{Append, Store};
use if_edge::witness::writer::Witness;
use if_protocol::ErrorCode;

const CHILD: &str = "IF_TEST_WITNESS_JOURNAL_CHILD";
const RECORDS: u64 = 40;

fn records(n: u64) -> Vec<Append> {
    (0..n)
        .map(|i| {
            let mut item =
                Append::record(Kind::Executed, Entry { wall_ms: i, why: format!("r{i}"), ..Entry::default() });
            item.replay =
                Some((format!("desk-{}", i % 3), if_protocol::replay::ReplayWindow::new(64).expect("window")));
            item
        })
        .collect()
}

/// Runs test `name` of this binary as a child with `CHILD` set to `path`; it must end by its abort, not
/// by a failed assertion (whose unwinding would close the store cleanly).
fn crash_child(name: &str, path: &Path) {
    use std::os::unix::process::ExitStatusExt as _;
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, path)
        .status()
        .expect("child");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "the child aborted: {status}");
}

/// Opens the file as redb would at the agent's next start, and says whether redb repaired it.
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

/// Records in the tables alone (without the journal), as redb has them.
fn in_tables(path: &Path) -> u64 {
    use redb::{ReadableDatabase as _, ReadableTableMetadata as _};
    let db = redb::Database::open(path).expect("db");
    let txn = db.begin_read().expect("read");
    let def: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("records");
    txn.open_table(def).expect("records").len().expect("len")
}

/// Waits until the writer's store has folded its journal into the tables.
async fn folded_within(witness: &Witness, wait: Duration) -> bool {
    let end = Instant::now() + wait;
    loop {
        if witness.with_store(|s| Ok(s.folded())).await.expect("store") {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The child's log path, or `None` in the parent.
fn child() -> Option<PathBuf> {
    std::env::var(CHILD).ok().map(PathBuf::from)
}

/// A crash after `RECORDS` appends of the store alone (no fold), as a crash in the middle of a burst:
/// test `name` calls it first, and in its child it appends and aborts there.
fn crashed_in_a_burst(name: &str) -> (tempfile::TempDir, PathBuf) {
    if let Some(path) = child() {
        appended_without_a_fold(&path);
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    crash_child(name, &path);
    (dir, path)
}

fn appended_without_a_fold(path: &Path) -> ! {
    let mut store = Store::open(path, 1 << 20).expect("open");
    for _ in 0..4 {
        store.append(records(RECORDS / 4), None).expect("append");
    }
    assert!(!store.folded());
    std::process::abort();
}

#[test]
fn a_crash_in_a_burst_keeps_every_append_that_returned_and_needs_no_repair() {
    let (_dir, path) = crashed_in_a_burst("a_crash_in_a_burst_keeps_every_append_that_returned_and_needs_no_repair");
    assert!(!repaired_on_open(&path), "the tables were last committed with the allocator state");
    assert_eq!(in_tables(&path), 0, "the records were in the journal only");
    let mut store = Store::open(&path, 1 << 20).expect("open");
    assert_eq!(store.size(), RECORDS, "every append that returned is there");
    assert!(store.folded(), "folded in at the open");
    assert_eq!(store.replay_windows().expect("windows").len(), 3, "with the state that came with them");
    let report = if_edge::witness::verify::verify(&mut store, None, None).expect("verifies");
    assert_eq!(report.size, RECORDS);
    drop(store);
    assert_eq!(in_tables(&path), RECORDS);
    // The next start finds the same frames again, now below the log's head: nothing is added twice.
    let mut store = Store::open(&path, 1 << 20).expect("open again");
    assert_eq!(store.size(), RECORDS);
    store.append(records(1), None).expect("append");
    assert_eq!(if_edge::witness::verify::verify(&mut store, None, None).expect("verifies").size, RECORDS + 1);
}

#[test]
fn inspection_folds_what_a_crash_left_in_the_journal() {
    let (_dir, path) = crashed_in_a_burst("inspection_folds_what_a_crash_left_in_the_journal");
    let mut store = Store::open_existing(&path).expect("open");
    assert_eq!(store.size(), RECORDS);
    assert_eq!(if_edge::witness::verify::verify(&mut store, None, None).expect("verifies").size, RECORDS);
    drop(store);
    assert_eq!(Store::open(&path, 1 << 20).expect("open").size(), RECORDS, "and the agent's next start agrees");
}

#[test]
fn a_crash_after_a_fold_adds_nothing_twice() {
    if let Some(path) = child() {
        let mut store = Store::open(&path, 1 << 20).expect("open");
        store.append(records(RECORDS / 2), None).expect("append");
        store.append(records(RECORDS / 2), None).expect("append");
        store.fold().expect("fold");
        // The folded frames are still in the journal; one more after them would overwrite the first.
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    crash_child("a_crash_after_a_fold_adds_nothing_twice", &path);
    assert!(!repaired_on_open(&path));
    assert_eq!(in_tables(&path), RECORDS);
    let mut store = Store::open(&path, 1 << 20).expect("open");
    assert_eq!(store.size(), RECORDS);
    assert_eq!(if_edge::witness::verify::verify(&mut store, None, None).expect("verifies").size, RECORDS);
}

/// The crash comes while the first segment's fold runs or just after it committed: either way the log is
/// the same.
#[test]
fn a_crash_after_a_hand_off_keeps_both_segments_records_in_order() {
    if let Some(path) = child() {
        let mut store = Store::open(&path, 1 << 20).expect("open");
        store.append(records(RECORDS / 2), None).expect("append");
        // The folding thread takes the first segment; the next appends go into the second at once,
        // whether or not that fold has committed when the crash comes.
        store.hand_off().expect("hand off");
        store.append(records(RECORDS / 4), None).expect("append");
        store.append(records(RECORDS / 4), None).expect("append");
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    crash_child("a_crash_after_a_hand_off_keeps_both_segments_records_in_order", &path);
    assert!(!repaired_on_open(&path));
    let in_second = {
        let bytes = std::fs::read(Journal::path_of(&path)).expect("journal");
        let [_, second] = if_edge::witness::journal::read(&bytes);
        second.frames.iter().map(|f| (f.first, f.records)).collect::<Vec<_>>()
    };
    assert_eq!(in_second, [(RECORDS / 2, 10), (RECORDS / 2 + 10, 10)], "the later appends went to the second segment");
    let mut store = Store::open(&path, 1 << 20).expect("open");
    assert_eq!(store.size(), RECORDS);
    assert_eq!(if_edge::witness::verify::verify(&mut store, None, None).expect("verifies").size, RECORDS);
}

/// Sets the soft file size limit of this process (the hard limit stays unlimited), as a full disk would
/// stop the file growing.
fn limit_file_size(limit: &str) {
    let ok = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--fsize={limit}:unlimited"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(ok.success(), "prlimit failed");
}

#[test]
fn a_fold_that_fails_refuses_appends_until_it_succeeds_and_loses_nothing() {
    if let Some(path) = child() {
        // Writes past the limit fail with EFBIG instead of killing the process, as in the agent.
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let _xfsz = runtime
            .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ)) })
            .expect("SIGXFSZ");
        let mut store = Store::open(&path, 1 << 20).expect("open");
        store.append(records(10), None).expect("append");
        store.fold().expect("fold");
        // The first segment's first frames still fit under the limit; the tables' pages and the second
        // segment (from 2 MiB) do not.
        limit_file_size("65536");
        store.append(records(10), None).expect("into the journal");
        store.hand_off().expect("handed to the folding thread");
        let full = |e: if_protocol::IfError| assert_eq!(e.code(), ErrorCode::StorageFull, "{e}");
        full(store.append(records(10), None).expect_err("the second segment cannot be written"));
        full(store.append(records(10), None).expect_err("nor the end mark that voids the failed write"));
        full(store.fold().expect_err("the tables cannot grow"));
        full(store.append(records(10), None).expect_err("refused while the fold fails"));
        assert_eq!(store.size(), 20, "nothing refused was counted");
        limit_file_size("unlimited");
        store.append(records(10), None).expect("the fold went through first, then the append");
        assert_eq!(store.size(), 30);
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    crash_child("a_fold_that_fails_refuses_appends_until_it_succeeds_and_loses_nothing", &path);
    let mut store = Store::open(&path, 1 << 20).expect("open");
    assert_eq!(store.size(), 30, "every append that returned, none that was refused");
    assert_eq!(if_edge::witness::verify::verify(&mut store, None, None).expect("verifies").size, 30);
}

/// Flips a byte in the payload of the journal's frame number `frame` (of the four that
/// `appended_without_a_fold` wrote, 10 records each).
fn damage_frame(path: &Path, frame: usize) {
    let journal = Journal::path_of(path);
    let mut bytes = std::fs::read(&journal).expect("journal");
    let at = {
        let [segment, _] = if_edge::witness::journal::read(&bytes);
        assert_eq!(segment.frames.len(), 4, "the four appends' frames");
        segment.frames[frame].offset
    };
    bytes[at + 70] ^= 0x5a;
    std::fs::write(&journal, bytes).expect("write");
}

#[test]
fn a_torn_last_frame_is_left_out() {
    let (_dir, path) = crashed_in_a_burst("a_torn_last_frame_is_left_out");
    damage_frame(&path, 3);
    let mut store = Store::open(&path, 1 << 20).expect("open");
    assert_eq!(store.size(), RECORDS / 4 * 3, "the last frame's records were never acknowledged");
    assert!(if_edge::witness::verify::verify(&mut store, None, None).is_ok());
}

#[test]
fn a_damaged_frame_with_later_records_after_it_stops_the_open() {
    let (_dir, path) = crashed_in_a_burst("a_damaged_frame_with_later_records_after_it_stops_the_open");
    damage_frame(&path, 1);
    let e = Store::open(&path, 1 << 20).expect_err("records 20..40 would be lost");
    assert_eq!(e.code(), ErrorCode::InvalidProof);
    assert!(e.to_string().contains("record 20"), "{e}");
    let e = Store::open_existing(&path).expect_err("inspection refuses it too");
    assert_eq!(e.code(), ErrorCode::InvalidProof);
}

#[test]
fn a_journal_that_does_not_follow_the_log_stops_the_open() {
    let (_dir, path) = crashed_in_a_burst("a_journal_that_does_not_follow_the_log_stops_the_open");
    // Another log, whose records differ: its journal is put beside this one.
    let other = path.with_file_name("other.redb");
    {
        let mut store = Store::open(&other, 1 << 20).expect("other");
        store.append(records(1), None).expect("append");
        store.fold().expect("fold");
    }
    let mut log = Store::open(&path, 1 << 20).expect("open");
    assert_eq!(log.size(), RECORDS);
    drop(log);
    std::fs::copy(Journal::path_of(&other), Journal::path_of(&path)).expect("copy");
    // The other journal's frame (record 0) is below this log's head: it is not read.
    log = Store::open(&path, 1 << 20).expect("open");
    assert_eq!(log.size(), RECORDS);
    drop(log);
    // A frame at this log's head that links to another record is refused.
    let mut frame_log = Store::open(&other, 1 << 20).expect("other");
    frame_log.append(records(RECORDS - 1), None).expect("append");
    frame_log.fold().expect("fold");
    frame_log.append(records(1), None).expect("the frame of record 40");
    drop(frame_log);
    std::fs::copy(Journal::path_of(&other), Journal::path_of(&path)).expect("copy");
    let e = Store::open(&path, 1 << 20).expect_err("a frame of another log");
    assert_eq!(e.code(), ErrorCode::InvalidProof);
    assert!(e.to_string().contains("does not follow record 40"), "{e}");
}

#[tokio::test]
async fn the_writer_folds_when_it_goes_idle_and_when_it_closes() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    let witness = Witness::spawn(Store::open(&path, 1 << 20).expect("open"), None, 16).expect("writer");
    assert!(witness.with_store(|s| Ok(s.folded())).await.expect("store"), "a new log has nothing to fold");
    witness.append(records(3)).await.expect("append");
    assert!(folded_within(&witness, Duration::from_secs(30)).await, "folded once idle");
    let folds = witness.stats().folds.load(Ordering::Relaxed);
    witness.append(records(3)).await.expect("append");
    witness.close().await;
    assert!(witness.stats().folds.load(Ordering::Relaxed) > folds, "closing folds what the last append left");
    assert_eq!(in_tables(&path), 6);
}

#[tokio::test]
async fn a_read_sees_every_append_before_it() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("witness.redb");
    let witness = Witness::spawn(Store::open(&path, 1 << 20).expect("open"), None, 16).expect("writer");
    witness.append(records(5)).await.expect("append");
    let size = witness.read(|log| log.size()).await.expect("read");
    assert_eq!(size, 5, "the snapshot folded the journal first");
    witness.close().await;
}

#[test]
fn a_folded_read_leaves_the_journal_to_the_folds() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = Store::open(&dir.path().join("witness.redb"), 1 << 20).expect("open");
    store.append(records(5), None).expect("append");
    let folded = store.folded_reader().expect("reader").snapshot().expect("snapshot").size().expect("size");
    assert_eq!(folded, 0, "the tables as the last fold left them");
    assert!(!store.folded(), "the records still wait in the journal");
    assert_eq!(store.reader().expect("reader").snapshot().expect("snapshot").size().expect("size"), 5);
    assert!(store.folded(), "a full read folds first");
}
