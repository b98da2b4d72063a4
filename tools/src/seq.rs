//! Sequence numbers for the envelopes `ifctl` signs: one counter per signing key, in a state file that is
//! locked while a number is taken.
//!
//! Thirty `ifctl` processes started at once with one key (a show script firing cues in parallel) each
//! take a different number, and the numbers they take lie next to each other, so however the broker
//! reorders them they all fall inside the agent's replay window (1024 by default). A counter starts at
//! the clock in microseconds the first time a key is used on a machine: numbers never go below what an
//! earlier `ifctl` took from the clock, and never run ahead of the agent's clock bound.
//!
//! The files live in `$IFCTL_STATE_DIR`, else `$XDG_STATE_HOME/ifctl`, else `~/.local/state/ifctl`, one
//! per key id (`seq-<key id>`), holding the last number taken in decimal.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use if_protocol::keys::KeyId;
use if_protocol::{ErrorCode, IfError};

fn failed(path: &Path, e: impl std::fmt::Display) -> IfError {
    IfError::format(ErrorCode::SystemError, format_args!("{}: sequence counter: {e}", path.display()))
}

/// Where the counters are kept.
pub fn state_dir() -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("IFCTL_STATE_DIR")
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("ifctl")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/ifctl")))
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Takes the next number for `key`, at least `floor` (the agent's word on what is new, after a refusal).
pub fn take(key: &KeyId, floor: u64) -> Result<u64, IfError> {
    let dir = state_dir().ok_or_else(|| {
        IfError::with(ErrorCode::ConfigInvalid, "no place for sequence counters: set IFCTL_STATE_DIR or HOME")
    })?;
    take_in(&dir, key, floor)
}

/// [`take`] with the counters in `dir`.
pub fn take_in(dir: &Path, key: &KeyId, floor: u64) -> Result<u64, IfError> {
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let path = dir.join(format!("seq-{}", hex::encode(key)));
    let mut file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| failed(&path, e))?;
    // Held until the file is closed at the end of this function: one process at a time takes a number.
    file.lock().map_err(|e| failed(&path, e))?;
    let mut text = String::new();
    std::io::Read::by_ref(&mut file).take(32).read_to_string(&mut text).map_err(|e| failed(&path, e))?;
    let last = match text.trim() {
        "" => now_micros().saturating_sub(1),
        t => t.parse::<u64>().map_err(|_| failed(&path, "does not hold a number"))?,
    };
    let next = last.saturating_add(1).max(floor);
    file.set_len(0).and_then(|()| file.seek(SeekFrom::Start(0))).map_err(|e| failed(&path, e))?;
    writeln!(file, "{next}").and_then(|()| file.sync_data()).map_err(|e| failed(&path, e))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dense_unique_and_never_below_a_floor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = [7u8; 8];
        let first = take_in(dir.path(), &key, 0).expect("take");
        assert!(first > 1_700_000_000_000_000, "a new counter starts at the clock in microseconds");
        assert_eq!(take_in(dir.path(), &key, 0).expect("take"), first + 1);
        assert_eq!(take_in(dir.path(), &key, first + 100).expect("take"), first + 100, "raised to the floor");
        assert_eq!(take_in(dir.path(), &key, 0).expect("take"), first + 101);
        assert!(take_in(dir.path(), &[8u8; 8], 0).expect("other key") <= first + 1_000_000_000, "its own counter");
        std::fs::write(dir.path().join(format!("seq-{}", hex::encode(key))), "garbage").expect("write");
        assert_eq!(take_in(dir.path(), &key, 0).expect_err("garbage").code(), ErrorCode::SystemError);
    }

    #[test]
    fn concurrent_takers_never_share_a_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = [9u8; 8];
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || (0..25).map(|_| take_in(&d, &key, 0).expect("take")).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().expect("thread")).collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "no number taken twice");
        assert_eq!(all[n - 1] - all[0], n as u64 - 1, "dense");
    }
}
