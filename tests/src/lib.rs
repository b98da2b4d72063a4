//! Shared machinery for the end-to-end suites: the workspace's real binaries, a real Mosquitto on a free
//! loopback port, agents started from `if-edge init` directories, an MQTT probe that publishes payloads
//! and collects replies and dead letters, and talents that sign envelopes.
//!
//! The suites run the binaries that `cargo build --workspace --bins` produced, the same ones an operator
//! runs; `tools/test.sh` builds them before the tests start.

pub mod agent;
pub mod bench;
pub mod broker;
pub mod collector;
pub mod device;
pub mod pki;
pub mod probe;
pub mod rack;
pub mod sim;
pub mod talent;
pub mod visca;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Resident memory of process `pid` in KiB (`VmRSS`), or `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    memory_kib(pid, "VmRSS")
}

/// A KiB figure of `/proc/PID/status` (`VmRSS`, `RssAnon`, `RssFile`), or `None` once it is gone.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.trim().parse().ok())
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// Path of a workspace binary in the target directory the tests were built into.
///
/// Panics with the command to run when the binary has not been built, or was built before the newest
/// change to the sources it is made of: a missing or stale binary is a broken test setup, not a
/// condition to skip, and a suite that ran an old binary would prove nothing about the code.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps layout");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (tools/test.sh does)",
        path.display()
    );
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).expect("the binary's time");
    if let Some((changed, source)) = newest_source(name).filter(|(t, _)| *t > built) {
        let ago = changed.duration_since(built).unwrap_or_default().as_secs();
        panic!(
            "{} is older than {} (changed {ago} s after it was built): run `cargo build --workspace --bins`",
            path.display(),
            source.display()
        );
    }
    path
}

/// `target/TRIPLE/PROFILE/NAME`, a cross-built image (the firmware, the Arm agent), checked to exist and
/// to be newer than every source file of this workspace that cargo's dep-info lists for it (a no_std or
/// cross build compiles only part of a crate, so the dep-info, not the crate's tree, says what counts).
pub fn cross_image(triple_profile_name: &str, build: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/
    let target = exe.ancestors().nth(3).expect("target/<profile>/deps layout");
    let path = target.join(triple_profile_name);
    assert!(path.is_file(), "{} is missing: run `{build}` (tools/test.sh does)", path.display());
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).expect("the image's time");
    let root = workspace();
    let deps = std::fs::read_to_string(path.with_extension("d")).unwrap_or_default();
    let sources = deps.split_once(": ").map_or("", |(_, d)| d).split_whitespace().map(PathBuf::from);
    let newer = sources
        .filter(|s| s.starts_with(&root) && !s.starts_with(target))
        .find(|s| std::fs::metadata(s).and_then(|m| m.modified()).is_ok_and(|t| t > built));
    if let Some(source) = newer {
        panic!("{} is older than {}: run `{build}`", path.display(), source.display());
    }
    path
}

/// The binary's own crate, and the library crates it is built from.
fn crates_of(bin: &str) -> (&'static str, &'static [&'static str]) {
    match bin {
        "if-edge" => ("edge", &["protocol", "edge"]),
        "if-sim" => ("sim", &["sim"]),
        "if-collector" => ("collector", &["protocol", "edge", "collector"]),
        _ => ("tools", &["protocol", "edge", "sim", "collector"]),
    }
}

/// The most recently changed source file binary `bin` is built from (once per binary and test process:
/// the sources do not change under a running test).
fn newest_source(bin: &str) -> Option<(std::time::SystemTime, PathBuf)> {
    type Newest = Option<(std::time::SystemTime, PathBuf)>;
    static SEEN: std::sync::Mutex<Vec<(String, Newest)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, newest)) = seen.iter().find(|(b, _)| b == bin) {
        return newest.clone();
    }
    let newest = scan_sources(bin);
    seen.push((bin.to_string(), newest.clone()));
    newest
}

/// The libraries' sources and the binary's own crate's, leaving out other binaries' `main.rs` and test
/// modules (`tests.rs`), a change to which never makes cargo build this binary again.
fn scan_sources(bin: &str) -> Option<(std::time::SystemTime, PathBuf)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
    let (own, libraries) = crates_of(bin);
    let mut files = Vec::new();
    for krate in libraries.iter().chain([&own]) {
        let src = root.join(krate).join("src");
        walk(&src, &mut files);
        if *krate != own {
            files.retain(|f| f != &src.join("main.rs"));
        }
    }
    files
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .filter_map(|f| Some((std::fs::metadata(&f).and_then(|m| m.modified()).ok()?, f)))
        .max_by_key(|(t, _)| *t)
}

fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Sends `SIGNAL` (e.g. `TERM`, `KILL`) to a child with `kill(1)`.
pub fn signal(child: &std::process::Child, name: &str) {
    let _ = std::process::Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status();
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
