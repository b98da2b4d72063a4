//! Shared machinery for the end-to-end suites: finding the workspace's real binaries (and, as the suites
//! grow, starting brokers, agents and simulators on free loopback ports).
//!
//! The suites run the binaries that `cargo build --workspace --bins` produced, the same ones an operator
//! runs; `tools/test.sh` builds them before the tests start.

use std::path::PathBuf;

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
