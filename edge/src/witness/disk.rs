//! The witness file's disk budget and the file system's floor of free space: warnings before either is
//! reached, and refusal (`STORAGE_FULL`, nothing runs un-witnessed) once one is.
//!
//! The file is measured before a batch is written (its length, and the file system's space for
//! unprivileged writers): every quarter second while all is well, before every batch once it is not.
//! redb grows its file in steps (doubling, up to 4 GiB at a time) and reuses the pages that pruning
//! frees, so over its budget the log writes only into space pruning freed since the file last grew: a
//! prune lets it go on, the next growth stops it again. The file may thus pass its budget by at most one
//! growth step; the floor of free space is checked the same way, so the file system keeps its margin.

use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use if_protocol::messages::status::{Disk, DiskState};
use if_protocol::{ErrorCode, IfError};

/// The limits: a budget for the file (none: only the floor) and the free space to leave the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// The file's budget, bytes.
    pub budget: Option<u64>,
    /// Free space the file system keeps, bytes.
    pub floor: u64,
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The witness file's length, bytes.
    pub file: u64,
    /// Free space on its file system for unprivileged writers, bytes.
    pub free: u64,
}

impl Room {
    /// What `u` means: full when the file is at its budget with no pruned space to write into
    /// (`reusable`), or the file system is down to its floor; a warning from 80 % of the budget, or
    /// with less than twice the floor free.
    pub fn judge(&self, u: Usage, reusable: bool) -> DiskState {
        let over = self.budget.is_some_and(|b| u.file >= b);
        let near = self.budget.is_some_and(|b| u.file.saturating_mul(5) >= b.saturating_mul(4));
        if (over && !reusable) || u.free < self.floor {
            DiskState::Full
        } else if near || u.free < self.floor.saturating_mul(2) {
            DiskState::Warning
        } else {
            DiskState::Ok
        }
    }
}

/// The last measurement, for the status topic, shared with the agent's status loop.
#[derive(Debug)]
pub struct DiskStats {
    room: Room,
    state: AtomicU8,
    file: AtomicU64,
    free: AtomicU64,
    /// Notified when the state changes.
    pub changed: tokio::sync::Notify,
}

impl DiskStats {
    /// Nothing measured yet, under `room`.
    pub fn new(room: Room) -> Self {
        DiskStats {
            room,
            state: AtomicU8::new(0),
            file: AtomicU64::new(0),
            free: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The state last judged.
    pub fn state(&self) -> DiskState {
        match self.state.load(Ordering::Relaxed) {
            2 => DiskState::Full,
            1 => DiskState::Warning,
            _ => DiskState::Ok,
        }
    }

    /// The `disk` field of the status.
    pub fn status(&self) -> Disk {
        let mib = |b: u64| b >> 20;
        Disk {
            state: self.state(),
            file_mb: mib(self.file.load(Ordering::Relaxed)),
            free_mb: mib(self.free.load(Ordering::Relaxed)),
            budget_mb: self.room.budget.map(mib),
            floor_mb: mib(self.room.floor),
        }
    }
}

/// How often the file is measured while all is well.
const MEASURE_EVERY: Duration = Duration::from_millis(250);

/// The store's side: measures, judges and refuses.
#[derive(Debug)]
pub struct Gauge {
    stats: std::sync::Arc<DiskStats>,
    at: Option<Instant>,
    last_file: u64,
    reusable: bool,
}

fn code(s: DiskState) -> u8 {
    match s {
        DiskState::Ok => 0,
        DiskState::Warning => 1,
        DiskState::Full => 2,
    }
}

impl Gauge {
    /// A gauge reporting to `stats`.
    pub fn new(stats: std::sync::Arc<DiskStats>) -> Self {
        Gauge { stats, at: None, last_file: 0, reusable: false }
    }

    /// Whether a batch may be written to the file at `path`: an error (STORAGE_FULL) when it may not.
    pub fn admit(&mut self, path: &Path) -> Result<(), IfError> {
        let due = self.at.is_none_or(|t| t.elapsed() >= MEASURE_EVERY) || self.stats.state() != DiskState::Ok;
        if due {
            self.measure(path);
        }
        if self.stats.state() != DiskState::Full {
            return Ok(());
        }
        let s = self.stats.status();
        let why = match s.budget_mb {
            Some(b) if s.file_mb >= b => format!("the witness log is at its disk budget ({} of {b} MiB)", s.file_mb),
            _ => format!("{} MiB free, the floor is {} MiB", s.free_mb, s.floor_mb),
        };
        Err(IfError::format(ErrorCode::StorageFull, format_args!("{why}; nothing was executed")))
    }

    /// Records were pruned: their pages are free inside the file for new records.
    pub fn freed(&mut self) {
        self.reusable = true;
        self.at = None;
    }

    fn measure(&mut self, path: &Path) {
        let file = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // Unreadable: counted as no space at all, so the log fails closed rather than fills the disk.
        let free = rustix::fs::statvfs(dir).map(|v| v.f_bavail.saturating_mul(v.f_frsize)).unwrap_or(0);
        if file > self.last_file && self.last_file > 0 {
            // The file grew: whatever pruning freed is used up.
            self.reusable = false;
        }
        self.last_file = file;
        self.at = Some(Instant::now());
        let s = &self.stats;
        let state = s.room.judge(Usage { file, free }, self.reusable);
        s.file.store(file, Ordering::Relaxed);
        s.free.store(free, Ordering::Relaxed);
        let before = s.state.swap(code(state), Ordering::Relaxed);
        if before != code(state) {
            let d = s.status();
            match state {
                DiskState::Full => tracing::error!(
                    code = %ErrorCode::StorageFull, file_mb = d.file_mb, free_mb = d.free_mb, budget_mb = ?d.budget_mb,
                    "witness log: no room left; commands are refused until records are archived and pruned"
                ),
                DiskState::Warning => tracing::warn!(
                    file_mb = d.file_mb, free_mb = d.free_mb, budget_mb = ?d.budget_mb,
                    "witness log: near its disk budget or the file system's floor"
                ),
                DiskState::Ok => tracing::info!(file_mb = d.file_mb, free_mb = d.free_mb, "witness log: room again"),
            }
            s.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_budget_warns_at_80_percent_and_is_full_at_100_unless_pruning_freed_space() {
        let room = Room { budget: Some(100 * MIB), floor: 10 * MIB };
        let u = |file: u64, free: u64| Usage { file: file * MIB, free: free * MIB };
        assert_eq!(room.judge(u(79, 1000), false), DiskState::Ok);
        assert_eq!(room.judge(u(80, 1000), false), DiskState::Warning);
        assert_eq!(room.judge(u(100, 1000), false), DiskState::Full);
        assert_eq!(room.judge(u(130, 1000), true), DiskState::Warning, "writes go into pruned space");
        assert_eq!(room.judge(u(10, 19), false), DiskState::Warning, "under twice the floor");
        assert_eq!(room.judge(u(10, 9), true), DiskState::Full, "under the floor, pruned or not");
        let floor_only = Room { budget: None, floor: 10 * MIB };
        assert_eq!(floor_only.judge(u(1 << 20, 1000), false), DiskState::Ok);
    }

    #[test]
    fn a_gauge_refuses_with_storage_full_and_lets_writes_go_on_after_a_prune_until_the_file_grows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, vec![0u8; 2048]).expect("write");
        let stats = std::sync::Arc::new(DiskStats::new(Room { budget: Some(1024), floor: 0 }));
        let mut g = Gauge::new(stats.clone());
        let e = g.admit(&path).expect_err("over the budget");
        assert_eq!(e.code(), ErrorCode::StorageFull);
        assert!(e.detail().contains("disk budget") && e.detail().contains("nothing was executed"), "{e}");
        g.freed();
        assert!(g.admit(&path).is_ok(), "pruned space");
        assert_eq!(stats.state(), DiskState::Warning);
        std::fs::write(&path, vec![0u8; 4096]).expect("grow");
        assert!(g.admit(&path).is_err(), "the file grew: the freed space is used up");
        assert_eq!(stats.status().state, DiskState::Full);
    }
}
