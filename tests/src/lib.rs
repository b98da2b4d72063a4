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
pub mod sim;
pub mod talent;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Path of a workspace binary in the target directory the tests were built into.
///
/// Panics with the command to run when the binary has not been built: a missing binary is a broken test
/// setup, not a condition to skip.
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
    path
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
